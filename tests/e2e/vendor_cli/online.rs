//! np-vendor's online commands against a real np-server (`TestServer`): devices and
//! warranties, releases, remote actions, bundles and the audit log, with the server's
//! refusals shown as `error: <message> (<code>)` and exit 1, an unreachable server exit 3,
//! and the token never printed.

use super::{assert_refused, p, tar_entries};
use np_tests::server::TestServer;
use np_tests::{bin, run, Output};
use serde_json::Value;
use std::fs;
use std::process::Command;
use std::time::Duration;

const SERIAL: &str = "NR-2000-123456-4";
const NEW_SERIAL: &str = "NR-3000-123456-3";
const OTHER: &str = "NR-2000-654321-7";

/// `release upload IMAGE --version 5.3.0 --models MODELS --security-version 4
/// --min-from-version 5.0.0`, as np-vendor's arguments.
fn upload_5_3_0<'a>(image: &'a str, models: &'a str) -> [&'a str; 11] {
    [
        "release",
        "upload",
        image,
        "--version",
        "5.3.0",
        "--models",
        models,
        "--security-version",
        "4",
        "--min-from-version",
        "5.0.0",
    ]
}

/// Runs np-vendor with the server and token in the environment (NP_SERVER / NP_TOKEN).
fn online(srv: &TestServer, args: &[&str]) -> Output {
    let out = run(
        Command::new(bin("np-vendor"))
            .args(args)
            .env("NP_SERVER", &srv.url)
            .env("NP_TOKEN", &srv.admin_token),
        Duration::from_secs(60),
    );
    assert!(
        !out.stdout.contains(&srv.admin_token) && !out.stderr.contains(&srv.admin_token),
        "the token must never be printed: {out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    out
}

fn ok(srv: &TestServer, args: &[&str]) -> String {
    let out = online(srv, args);
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    out.stdout
}

fn json(srv: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(srv, &all)).expect("--json prints JSON")
}

fn a_month_ago() -> String {
    let today = jiff::Zoned::now().date();
    today
        .checked_sub(jiff::Span::new().days(30))
        .expect("date")
        .to_string()
}

#[test]
fn devices_warranties_and_audit() {
    let srv = TestServer::start();
    let purchase = a_month_ago();
    let out = ok(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &purchase,
            "--customer",
            "ACME Logs",
        ],
    );
    assert!(out.contains(&format!("registered {SERIAL}")), "{out}");
    let again = online(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &purchase,
            "--customer",
            "ACME",
        ],
    );
    assert_refused(&again, "(exists)");
    let bad_model = online(
        &srv,
        &[
            "device",
            "add",
            OTHER,
            "--purchase-date",
            &purchase,
            "--customer",
            "x",
            "--model",
            "NC-1000",
        ],
    );
    assert_refused(&bad_model, "(bad_model)");
    let bad_date = online(
        &srv,
        &[
            "device",
            "add",
            OTHER,
            "--purchase-date",
            "2026-13-45",
            "--customer",
            "x",
        ],
    );
    assert_refused(&bad_date, "(bad_date)");

    let shown = ok(&srv, &["device", "show", SERIAL]);
    assert!(
        shown.contains("coverage end:") && shown.contains("warranty"),
        "{shown}"
    );
    let before = json(&srv, &["device", "show", SERIAL]);
    assert_eq!(before["serial"], SERIAL);
    let list = ok(&srv, &["device", "list"]);
    assert!(
        list.starts_with("SERIAL") && list.contains(SERIAL),
        "{list}"
    );
    let page = json(&srv, &["device", "list", "--model", "NR-2000"]);
    assert_eq!(page["devices"][0]["serial"], SERIAL);
    let none = ok(&srv, &["device", "list", "--model", "NC-1000"]);
    assert!(none.contains("no devices"), "{none}");

    let ext = ok(&srv, &["device", "extend", SERIAL, "--months", "6"]);
    assert!(ext.contains("extension"), "{ext}");
    let after = json(&srv, &["device", "show", SERIAL]);
    assert_eq!(after["terms"].as_array().map(Vec::len), Some(2));
    assert_ne!(after["coverage_end"], before["coverage_end"]);
    let zero = online(&srv, &["device", "extend", SERIAL, "--months", "0"]);
    assert_refused(&zero, "(bad_duration)");
    let unknown = online(&srv, &["device", "show", OTHER]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown.stderr.starts_with("error: ") && unknown.stderr.contains("not_found"),
        "{unknown:?}"
    );

    let swap = ok(
        &srv,
        &[
            "device",
            "swap",
            SERIAL,
            "--new-serial",
            NEW_SERIAL,
            "--reason",
            "RMA 17",
        ],
    );
    assert!(
        swap.contains("replaced") && swap.contains(NEW_SERIAL),
        "{swap}"
    );
    let old = json(&srv, &["device", "show", SERIAL]);
    assert_eq!(old["status"], "replaced");
    let new = json(&srv, &["device", "show", NEW_SERIAL]);
    assert_eq!(new["coverage_end"], after["coverage_end"]);
    let revoked = ok(&srv, &["device", "revoke", NEW_SERIAL, "--reason", "fraud"]);
    assert!(revoked.contains("revoked"), "{revoked}");

    let audit = ok(&srv, &["audit"]);
    assert!(
        audit.starts_with("TIME") && audit.contains(NEW_SERIAL),
        "{audit}"
    );
    let entries = json(&srv, &["audit", "--serial", SERIAL]);
    let n = entries["entries"].as_array().map(Vec::len).unwrap_or(0);
    assert!(n >= 3, "register, extend, swap: {entries}");

    // Wrong token: a refusal (exit 1); no server: exit 3; no server given: exit 2.
    let wrong = run(
        Command::new(bin("np-vendor")).args([
            "device",
            "list",
            "--server",
            &srv.url,
            "--token",
            "not-a-token",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(
        wrong.stderr.starts_with("error: ") && !wrong.stderr.contains("not-a-token"),
        "{wrong:?}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let down = run(
        Command::new(bin("np-vendor")).args([
            "device",
            "list",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--token",
            "t",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(down.code, 3, "{down:?}");
    assert!(
        down.stderr.starts_with("error: cannot reach the server"),
        "{down:?}"
    );
}

#[test]
fn releases_actions_and_bundles() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let purchase = a_month_ago();
    ok(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &purchase,
            "--customer",
            "ACME",
        ],
    );
    let image = d.join("n-reporter-5.3.0.img");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    fs::write(&image, &bytes).expect("image");

    let up = ok(
        &srv,
        &[
            &upload_5_3_0(p(&image), "NR-1000,NR-2000")[..],
            &["--channel", "stable", "--notes", "Fixes"],
        ]
        .concat(),
    );
    assert!(up.contains("published release 5.3.0"), "{up}");
    let dup = online(&srv, &upload_5_3_0(p(&image), "NR-2000"));
    assert_refused(&dup, "(exists)");
    assert!(dup.stderr.contains("the server holds it again"), "{dup:?}");
    let old = json(
        &srv,
        &[
            "release",
            "upload",
            p(&image),
            "--version",
            "5.2.0",
            "--models",
            "NR-2000",
            "--security-version",
            "3",
            "--min-from-version",
            "5.0.0",
            "--released-at",
            "2026-01-01T00:00:00Z",
        ],
    );
    assert_eq!(old["released_at"], "2026-01-01T00:00:00Z", "{old}");

    let list = ok(&srv, &["release", "list"]);
    assert!(
        list.starts_with("VERSION") && list.contains("5.3.0") && list.contains("5.2.0"),
        "{list}"
    );
    ok(&srv, &["release", "set", "5.3.0", "--rollout", "50"]);
    ok(&srv, &["release", "set", "5.3.0", "--pause"]);
    let listed = json(&srv, &["release", "list"]);
    let r = listed["releases"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["version"] == "5.3.0"))
        .cloned()
        .expect("5.3.0 listed");
    assert_eq!(
        (r["rollout_percent"].as_u64(), r["paused"].as_bool()),
        (Some(50), Some(true))
    );
    let set = ok(&srv, &["release", "set", "5.3.0", "--resume"]);
    assert!(set.contains("active"), "{set}");
    let usage = online(&srv, &["release", "set", "5.3.0", "--pause", "--yank"]);
    assert_eq!(usage.code, 2, "{usage:?}");
    let missing = online(&srv, &["release", "set", "9.9.9", "--pause"]);
    assert_eq!(missing.code, 1, "{missing:?}");

    let act = ok(
        &srv,
        &["device", "action", SERIAL, "upgrade", "--version", "5.3.0"],
    );
    assert!(act.contains("upgrade to 5.3.0 requested"), "{act}");
    let device = json(&srv, &["device", "show", SERIAL]);
    assert!(!device["pending_action"].is_null(), "{device}");

    let bundle = d.join("b.tar");
    let got = ok(
        &srv,
        &[
            "bundle",
            "get",
            SERIAL,
            "--version",
            "5.3.0",
            "--out",
            p(&bundle),
        ],
    );
    assert!(got.contains("wrote bundle"), "{got}");
    let entries = tar_entries(&bundle);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["keyring.json", "manifest.json", "entitlement.json", "image"]
    );
    assert_eq!(entries[3].1, bytes.len() as u64);

    // The server's documents verify offline under its root key.
    let root = d.join("root.pub");
    fs::write(&root, &srv.root_public_key).expect("root");
    let mut ar = tar::Archive::new(fs::File::open(&bundle).expect("bundle"));
    ar.unpack(d.join("unpacked")).expect("unpack");
    let u = d.join("unpacked");
    for doc in ["manifest.json", "entitlement.json"] {
        let out = run(
            Command::new(bin("np-vendor")).args([
                "verify",
                "--root",
                p(&root),
                "--keyring",
                p(&u.join("keyring.json")),
                p(&u.join(doc)),
            ]),
            Duration::from_secs(30),
        );
        assert_eq!(out.code, 0, "{doc}: {out:?}");
    }

    // The image leaves the blob folder (a lost disk): a server-side fault naming the
    // release and the remedy, in np-vendor's words; uploading it again repairs it.
    let blob = srv
        .data_dir
        .join("blobs")
        .join(np_common::Sha256Digest::of(&bytes).to_hex());
    fs::remove_file(&blob).expect("blob removed");
    let lost = d.join("lost.tar");
    let out = online(
        &srv,
        &[
            "bundle",
            "get",
            SERIAL,
            "--version",
            "5.3.0",
            "--out",
            p(&lost),
        ],
    );
    assert_eq!(out.code, 3, "a server fault: {out:?}");
    for needed in [
        "release 5.3.0 but lost its image",
        "np-vendor release upload IMAGE --version 5.3.0",
        "(blob_missing)",
    ] {
        assert!(out.stderr.contains(needed), "{needed}: {out:?}");
    }
    assert!(!out.stderr.contains("/api/v1/"), "{out:?}");
    assert!(!lost.exists());
    let again = online(&srv, &upload_5_3_0(p(&image), "NR-1000,NR-2000"));
    assert_refused(&again, "the server holds it again");
    assert!(blob.exists(), "the image is stored again");
    ok(
        &srv,
        &[
            "bundle",
            "get",
            SERIAL,
            "--version",
            "5.3.0",
            "--out",
            p(&lost),
        ],
    );
    assert_eq!(tar_entries(&lost)[3].1, bytes.len() as u64);

    let none = d.join("none.tar");
    let refused = online(
        &srv,
        &[
            "bundle",
            "get",
            SERIAL,
            "--version",
            "9.9.9",
            "--out",
            p(&none),
        ],
    );
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(!none.exists());
    ok(&srv, &["device", "revoke", SERIAL, "--reason", "test"]);
    let revoked = online(
        &srv,
        &[
            "bundle",
            "get",
            SERIAL,
            "--version",
            "5.3.0",
            "--out",
            p(&none),
        ],
    );
    assert_eq!(revoked.code, 1, "a revoked box gets no bundle: {revoked:?}");
    assert!(!none.exists());
    ok(&srv, &["release", "set", "5.3.0", "--yank"]);
}
