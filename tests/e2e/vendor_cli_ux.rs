//! What a new user trips over with np-vendor and np-server (issue 11), run as the real
//! binaries against a real server: a closed pipe, errors in the CLI's own words (commands
//! and flags, JSON errors with `--json`, connection causes, a scheme mismatch, a store
//! shared by two servers), coverage beside status, pending actions in words, replaced
//! and cancelled, yanked and unreachable releases, future purchase dates, lists with
//! `--limit`/`--all`/`--csv`, events, corrections and the audit log, and a bulk import.

use np_tests::server::TestServer;
use np_tests::{bin, run, wait_until, Output};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SERIAL: &str = "NR-2000-123456-4";
const OTHER: &str = "NR-2000-654321-7";

fn luhn_serial(model: &str, n: u32) -> String {
    let digits = format!("{}{n:06}", &model[3..]);
    format!(
        "{model}-{n:06}-{}",
        np_common::serial::luhn_check_digit(&digits)
    )
}

fn vendor(srv: &TestServer, args: &[&str]) -> Output {
    let out = run(
        Command::new(bin("np-vendor"))
            .args(args)
            .env("NP_SERVER", &srv.url)
            .env("NP_TOKEN", &srv.admin_token),
        Duration::from_secs(60),
    );
    assert!(!out.stderr.contains("panicked"), "{args:?}: {out:?}");
    assert!(
        !out.stderr.contains("/api/v1"),
        "an HTTP route in a CLI error: {out:?}"
    );
    out
}

fn ok(srv: &TestServer, args: &[&str]) -> String {
    let out = vendor(srv, args);
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    out.stdout
}

fn refused(srv: &TestServer, args: &[&str], code: i32, needles: &[&str]) -> String {
    let out = vendor(srv, args);
    assert_eq!(out.code, code, "{args:?}: {out:?}");
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{args:?}: expected {n:?} in {}",
            out.stderr
        );
    }
    out.stderr
}

fn days_from_today(days: i64) -> String {
    jiff::Zoned::now()
        .date()
        .checked_add(jiff::Span::new().days(days))
        .expect("date")
        .to_string()
}

/// Runs `cmd` with its standard output a pipe whose reading end is already closed; returns
/// the exit code and standard error.
fn into_closed_pipe(cmd: &mut Command) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_until("the command to end", Duration::from_secs(60), || {
        child.try_wait().ok().flatten()
    });
    (status.code(), reader.join().unwrap_or_default())
}

#[test]
fn a_closed_pipe_ends_np_vendor_and_np_server_quietly() {
    let srv = TestServer::start();
    ok(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &days_from_today(-10),
            "--customer",
            "A",
        ],
    );
    for args in [
        vec!["device", "list"],
        vec!["device", "show", SERIAL],
        vec!["audit"],
    ] {
        let (code, stderr) = into_closed_pipe(
            Command::new(bin("np-vendor"))
                .args(&args)
                .env("NP_SERVER", &srv.url)
                .env("NP_TOKEN", &srv.admin_token),
        );
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    let data = srv.data_dir.to_str().expect("utf-8");
    let (code, stderr) =
        into_closed_pipe(Command::new(bin("np-server")).args(["token", "list", "--data", data]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn errors_name_commands_flags_and_causes() {
    let srv = TestServer::start();
    // A box nobody registered: the remedy is a command.
    let e = refused(
        &srv,
        &["device", "show", SERIAL],
        1,
        &["np-vendor device add", "(not_found)"],
    );
    assert!(!e.contains("POST"), "{e}");
    // --json: the error is JSON on standard error.
    let out = vendor(&srv, &["device", "show", SERIAL, "--json"]);
    assert_eq!(out.code, 1);
    let j: Value = serde_json::from_str(out.stderr.trim()).expect("a JSON error");
    assert_eq!(j["error"]["code"], "not_found");
    assert_eq!(j["error"]["exit_code"], 1);
    let out = vendor(&srv, &["device", "show", "--json"]);
    let j: Value = serde_json::from_str(out.stderr.trim()).expect("a JSON usage error");
    assert_eq!((out.code, j["error"]["exit_code"].as_i64()), (2, Some(2)));

    // A purchase date years ahead is a typo unless said otherwise.
    let future = days_from_today(400);
    refused(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &future,
            "--customer",
            "A",
        ],
        1,
        &[
            "--purchase-date",
            "--allow-future",
            "(future_purchase_date)",
        ],
    );
    // A lapsed box: the remedy is a flag, not a JSON body.
    ok(
        &srv,
        &[
            "device",
            "add",
            " nr-2000-123456-4 ",
            "--purchase-date",
            "2024-01-02",
            "--customer",
            "A",
        ],
    );
    let e = refused(
        &srv,
        &["device", "extend", SERIAL, "--months", "12"],
        1,
        &["--reinstate", "(lapsed)"],
    );
    assert!(!e.contains('{'), "{e}");
    refused(
        &srv,
        &["device", "extend", SERIAL, "--months", "0"],
        1,
        &["--months"],
    );
    ok(
        &srv,
        &["device", "extend", SERIAL, "--months", "12", "--reinstate"],
    );

    // The cause of a connection failure is kept.
    let out = run(
        Command::new(bin("np-vendor")).args([
            "device",
            "list",
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "t",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("onnection refused"), "{}", out.stderr);
    // …without the HTTP client's wrappers, and with what to check.
    assert!(
        !out.stderr.contains("error sending request") && !out.stderr.contains("client error"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--server or NP_SERVER"),
        "{}",
        out.stderr
    );
    // https:// against a plain HTTP server says so.
    let https = srv.url.replace("http://", "https://");
    let out = run(
        Command::new(bin("np-vendor")).args(["device", "list", "--server", &https, "--token", "t"]),
        Duration::from_secs(60),
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("plain HTTP, not HTTPS"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("--server {}", srv.url)),
        "{}",
        out.stderr
    );

    // A second server on the same data folder is told why it cannot start.
    let data = srv.data_dir.to_str().expect("utf-8");
    let out = run(
        Command::new(bin("np-server")).args(["serve", "--data", data, "--listen", "127.0.0.1:0"]),
        Duration::from_secs(60),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("in use by another process"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Os {"), "{}", out.stderr);
}

#[test]
fn pending_actions_in_words_refused_twice_replaced_and_cancelled() {
    let srv = TestServer::start();
    ok(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &days_from_today(-10),
            "--customer",
            "A",
        ],
    );
    refused(
        &srv,
        &["device", "action", SERIAL, "rollback", "--version", "5.2.0"],
        2,
        &["rollback takes no --version"],
    );
    ok(&srv, &["device", "action", SERIAL, "rollback"]);
    let shown = ok(&srv, &["device", "show", SERIAL]);
    let line = shown
        .lines()
        .find(|l| l.starts_with("pending action:"))
        .expect("a pending action line");
    assert!(line.contains("rollback, asked at "), "{shown}");
    assert!(!line.contains('{'), "{shown}");
    assert!(
        shown.contains("coverage:") && shown.contains("covered"),
        "{shown}"
    );
    refused(
        &srv,
        &["device", "action", SERIAL, "rollback"],
        1,
        &[
            "--replace",
            &format!("np-vendor device action {SERIAL} cancel"),
            "(action_pending)",
        ],
    );
    ok(&srv, &["device", "action", SERIAL, "rollback", "--replace"]);
    ok(&srv, &["device", "action", SERIAL, "cancel"]);
    let shown = ok(&srv, &["device", "show", SERIAL]);
    assert!(shown.contains("pending action: -"), "{shown}");
    refused(
        &srv,
        &["device", "action", SERIAL, "cancel"],
        1,
        &["(no_pending_action)"],
    );
    let audit = ok(
        &srv,
        &["audit", "--serial", SERIAL, "--action", "action_cancel"],
    );
    assert!(
        audit.contains("action_cancel") && audit.contains("pending_action: rollback → -"),
        "{audit}"
    );
}

#[test]
fn yanked_releases_are_refused_and_unreachable_ones_warned_about() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let img = dir.path().join("n-reporter-5.3.0.img");
    std::fs::write(&img, b"an image for the yank test").expect("image");
    let img = img.to_str().expect("utf-8");
    let upload = |v: &str, from: &str| {
        vendor(
            &srv,
            &[
                "release",
                "upload",
                img,
                "--version",
                v,
                "--models",
                "NR-2000",
                "--security-version",
                "1",
                "--min-from-version",
                from,
            ],
        )
    };
    assert_eq!(upload("5.2.0", "5.0.0").code, 0);
    assert_eq!(upload("5.3.0", "5.0.0").code, 0);
    ok(&srv, &["release", "set", "5.3.0", "--yank"]);
    // The minimum must be below the release's own version: refused before the upload.
    for from in ["5.4.0", "6.0.0"] {
        let out = upload("5.4.0", from);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.contains(&format!(
                "--min-from-version {from} must be below --version 5.4.0"
            )),
            "{out:?}"
        );
    }
    refused(
        &srv,
        &["release", "set", "5.3.0", "--resume"],
        1,
        &["yanked", "(yanked)"],
    );
    refused(
        &srv,
        &["release", "set", "5.3.0", "--rollout", "50"],
        1,
        &["(yanked)"],
    );
    // A bundle of a yanked release: the code once, not "(yanked) (yanked)".
    ok(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &days_from_today(-30),
            "--customer",
            "A",
        ],
    );
    let out_bundle = dir.path().join("b.npb");
    let err = refused(
        &srv,
        &[
            "bundle",
            "get",
            SERIAL,
            "--version",
            "5.3.0",
            "--out",
            out_bundle.to_str().expect("utf-8"),
        ],
        1,
        &["(yanked)"],
    );
    assert_eq!(err.matches("(yanked)").count(), 1, "{err}");
    // Published, with a warning on stderr that names the flag's value and the newest
    // release that is not yanked.
    let out = upload("5.4.0", "5.3.5");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.starts_with("warning: ")
            && out.stderr.contains("--min-from-version 5.3.5 is above")
            && out.stderr.contains("NR-2000 5.2.0")
            && !out.stderr.contains("5.3.0"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("published release 5.4.0"), "{out:?}");
}

#[test]
fn lists_filter_by_coverage_page_and_print_csv_and_corrections_are_audited() {
    let srv = TestServer::start();
    let recent = days_from_today(-10);
    ok(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &recent,
            "--customer",
            "ACEM",
        ],
    );
    ok(
        &srv,
        &[
            "device",
            "add",
            OTHER,
            "--purchase-date",
            "2023-05-01",
            "--customer",
            "B",
        ],
    );
    let third = luhn_serial("NR-1000", 3);
    ok(
        &srv,
        &[
            "device",
            "add",
            &third,
            "--purchase-date",
            &recent,
            "--customer",
            "C, Inc.",
        ],
    );

    let expired = ok(&srv, &["device", "list", "--status", "expired"]);
    let rows: Vec<&str> = expired.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{expired}");
    assert!(
        rows[0].starts_with(OTHER) && rows[0].contains("active") && rows[0].contains("expired"),
        "{expired}"
    );
    let csv = ok(&srv, &["device", "list", "--coverage", "covered", "--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("serial,model,status,coverage,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(csv.contains("\"C, Inc.\""), "{csv}");
    let one = vendor(&srv, &["device", "list", "--limit", "1"]);
    assert_eq!(one.stdout.lines().count(), 2, "{one:?}");
    assert!(one.stderr.contains("more: --cursor"), "{one:?}");
    let all = ok(&srv, &["device", "list", "--limit", "1", "--all"]);
    assert_eq!(all.lines().count(), 4, "{all}");
    // Columns line up: every row starts its second column where the header does.
    let col = all
        .lines()
        .next()
        .unwrap_or_default()
        .find("MODEL")
        .expect("MODEL");
    for l in all.lines().skip(1) {
        assert_eq!(&l[col..col + 3], "NR-", "{all}");
    }
    let never = ok(
        &srv,
        &["device", "list", "--checked-in-before", &days_from_today(1)],
    );
    assert_eq!(never.lines().count(), 4, "{never}");

    ok(&srv, &["device", "edit", SERIAL, "--customer", "ACME"]);
    let audit = ok(
        &srv,
        &["audit", "--action", "edit", "--since", &days_from_today(-1)],
    );
    assert!(audit.contains("customer: ACEM → ACME"), "{audit}");
    let newest = ok(&srv, &["audit", "--limit", "1"]);
    assert!(newest.contains(" edit "), "newest first: {newest}");
    let events = ok(&srv, &["device", "events", "nr-2000-123456-4"]);
    assert!(events.contains("no events yet"), "{events}");

    // show: the revoke reason and the box a replacement replaces.
    ok(
        &srv,
        &["device", "revoke", &third, "--reason", "chargeback"],
    );
    let shown = ok(&srv, &["device", "show", &third]);
    assert!(shown.contains("revoke reason:  chargeback"), "{shown}");
    let new = luhn_serial("NR-3000", 4);
    ok(
        &srv,
        &[
            "device",
            "swap",
            OTHER,
            "--new-serial",
            &new,
            "--reason",
            "RMA-7",
        ],
    );
    let shown = ok(&srv, &["device", "show", &new]);
    assert!(
        shown.contains(&format!("replaces:       {OTHER}")),
        "{shown}"
    );
}

#[test]
fn a_thousand_boxes_import_in_one_request_and_bad_lines_are_named() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let purchase = days_from_today(-30);
    let mut csv = String::from("serial,purchase_date,customer,model\n");
    for n in 0..1000 {
        let _ = writeln!(
            csv,
            "{},{purchase},\"Fleet, {n}\",",
            luhn_serial("NR-2000", 100_000 + n)
        );
    }
    let good = dir.path().join("fleet.csv");
    std::fs::write(&good, &csv).expect("csv");
    let mut bad_csv = csv.clone();
    bad_csv.push_str("NR-2000-999999-1,2026-02-30,X,\n");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, &bad_csv).expect("csv");
    refused(
        &srv,
        &["device", "import", bad.to_str().expect("utf-8")],
        1,
        &["line 1002:", "nothing was sent"],
    );

    let started = Instant::now();
    let out = ok(&srv, &["device", "import", good.to_str().expect("utf-8")]);
    let took = started.elapsed();
    assert!(
        out.contains("imported 1000 boxes") && out.contains("in 1 request"),
        "{out}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    let again = refused(
        &srv,
        &["device", "import", good.to_str().expect("utf-8")],
        1,
        &["line 2:", "(exists)"],
    );
    assert!(again.contains("none of it registered"), "{again}");
    let listed = ok(&srv, &["device", "list", "--all", "--csv"]);
    assert_eq!(listed.lines().count(), 1001);
}

#[test]
fn plain_http_against_an_https_server_is_explained() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let tls = np_tests::repo_root().join("server/tests/data/tls");
    let toml = tmp.path().join("server.toml");
    std::fs::write(
        &toml,
        format!(
            "data = \"{}\"\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            data.display(),
            tls.join("TEST-ONLY-server.pem").display(),
            tls.join("TEST-ONLY-server.key").display()
        ),
    )
    .expect("server.toml");
    let mut srv = np_tests::Running::spawn(Command::new(bin("np-server")).args([
        "serve",
        "--config",
        toml.to_str().expect("utf-8"),
    ]));
    let line = srv.wait_for("np-server listening on https://", Duration::from_secs(30));
    let addr = line
        .split("https://")
        .nth(1)
        .map(str::trim)
        .expect("an address")
        .to_owned();
    let out = run(
        Command::new(bin("np-vendor")).args([
            "device",
            "list",
            "--server",
            &format!("http://{addr}"),
            "--token",
            "t",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains(&format!("use --server https://{addr}")),
        "{}",
        out.stderr
    );
}

/// An np-server serving HTTPS with the test CA's certificate; its address
/// (`localhost:PORT`, the name the certificate is made out for) and admin token file.
fn https_server(tmp: &std::path::Path) -> (np_tests::Running, String, std::path::PathBuf) {
    let tls = np_tests::repo_root().join("server/tests/data/tls");
    let toml = tmp.join("server.toml");
    std::fs::write(
        &toml,
        format!(
            "data = {:?}\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n",
            tmp.join("data"),
            tls.join("TEST-ONLY-server.pem"),
            tls.join("TEST-ONLY-server.key")
        ),
    )
    .expect("server.toml");
    let mut srv = np_tests::Running::spawn(Command::new(bin("np-server")).args([
        "serve",
        "--config",
        toml.to_str().expect("utf-8"),
    ]));
    let line = srv.wait_for("np-server listening on https://", Duration::from_secs(30));
    let port = line
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let token = tmp.join("data/admin-token");
    if !srv
        .seen
        .iter()
        .any(|l| l.starts_with("admin token written to "))
    {
        srv.wait_for("admin token written to ", Duration::from_secs(10));
    }
    (srv, format!("localhost:{port}"), token)
}

#[test]
fn np_vendor_trusts_a_private_ca_with_ca_cert() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_srv, addr, token) = https_server(tmp.path());
    let ca = np_tests::repo_root().join("server/tests/data/tls/TEST-ONLY-ca.pem");
    let url = format!("https://{addr}");
    let token = token.to_str().expect("utf-8").to_owned();
    let vendor = |args: &[&str], ca_env: Option<&std::path::Path>| {
        let mut cmd = Command::new(bin("np-vendor"));
        cmd.args(args)
            .env_remove("NP_CA_CERT")
            .env_remove("NP_TOKEN");
        if let Some(ca) = ca_env {
            cmd.env("NP_CA_CERT", ca);
        }
        let out = run(&mut cmd, Duration::from_secs(60));
        assert!(!out.stderr.contains("panicked"), "{out:?}");
        out
    };
    // Without the CA: refused in words, with what to do.
    let out = vendor(
        &["device", "list", "--server", &url, "--token-file", &token],
        None,
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains(
            "the server's certificate is not signed by a CA this machine trusts: pass --ca-cert FILE"
        ),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("UnknownIssuer"), "{}", out.stderr);
    // With --ca-cert (given before the subcommand, as a global option), and with NP_CA_CERT.
    let ca_s = ca.to_str().expect("utf-8");
    let out = vendor(
        &[
            "--server",
            &url,
            "--token-file",
            &token,
            "--ca-cert",
            ca_s,
            "device",
            "list",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("no devices") || out.stdout.contains("SERIAL"),
        "{out:?}"
    );
    let out = vendor(
        &["device", "list", "--server", &url, "--token-file", &token],
        Some(&ca),
    );
    assert_eq!(out.code, 0, "{out:?}");
    // A missing or bad CA file is a usage error naming the flag.
    let missing = tmp.path().join("nope.pem");
    let out = vendor(
        &[
            "device",
            "list",
            "--server",
            &url,
            "--token-file",
            &token,
            "--ca-cert",
            missing.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("cannot read --ca-cert") && out.stderr.contains("no such file"),
        "{}",
        out.stderr
    );
    let out = vendor(
        &[
            "device",
            "list",
            "--server",
            &url,
            "--token-file",
            &token,
            "--ca-cert",
            &token,
        ],
        None,
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("holds no PEM certificate"),
        "{}",
        out.stderr
    );
}

#[test]
fn csv_import_reads_spreadsheet_files_skips_existing_and_says_where_to_resume() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let purchase = days_from_today(-30);
    let serials: Vec<String> = (0..4)
        .map(|n| luhn_serial("NR-2000", 200_000 + n))
        .collect();
    // A spreadsheet's export: a byte-order mark, semicolons, CRLF.
    let mut text = String::from("\u{feff}Serial;Purchase Date;Customer\r\n");
    for s in &serials[..3] {
        let _ = write!(text, "{s};{purchase};\"Fleet; North\"\r\n");
    }
    let first = dir.path().join("first.csv");
    std::fs::write(&first, &text).expect("csv");
    let out = vendor(&srv, &["device", "import", first.to_str().expect("utf-8")]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("imported 3 boxes from "), "{out:?}");
    assert!(out.stderr.contains("separated by semicolons"), "{out:?}");

    let one = dir.path().join("one.csv");
    std::fs::write(
        &one,
        format!(
            "serial,purchase_date,customer\n{},{purchase},Solo\n",
            serials[3]
        ),
    )
    .expect("csv");
    let out = ok(&srv, &["device", "import", one.to_str().expect("utf-8")]);
    assert!(out.starts_with("imported 1 box from "), "{out}");
    assert!(out.contains("in 1 request,"), "{out}");

    // A line with one field.
    let short = dir.path().join("short.csv");
    std::fs::write(
        &short,
        format!(
            "serial,purchase_date,customer\n{}\n",
            luhn_serial("NR-2000", 299_999)
        ),
    )
    .expect("csv");
    refused(
        &srv,
        &["device", "import", short.to_str().expect("utf-8")],
        1,
        &["line 2: too few fields: it has 1 field"],
    );

    // The whole file again, with a new box, in batches of two: refused in its first batch,
    // with --skip-existing as the way out; with it, the known boxes are skipped.
    let mut again = String::from("serial,purchase_date,customer\n");
    for s in &serials[..3] {
        let _ = writeln!(again, "{s},{purchase},\"Fleet; North\"");
    }
    let new = luhn_serial("NR-2000", 200_010);
    let _ = writeln!(again, "{new},{purchase},Fresh");
    let again_f = dir.path().join("again.csv");
    std::fs::write(&again_f, &again).expect("csv");
    let path = again_f.to_str().expect("utf-8");
    refused(
        &srv,
        &["device", "import", path, "--batch-size", "2"],
        1,
        &["batch 1 (from line 2)", "(exists)", "pass --skip-existing"],
    );
    let out = ok(
        &srv,
        &[
            "device",
            "import",
            path,
            "--batch-size",
            "2",
            "--skip-existing",
        ],
    );
    assert!(out.starts_with("imported 1 box from "), "{out}");
    assert!(out.contains(" in 2 requests, "), "{out}");
    assert!(
        out.trim_end()
            .ends_with("; skipped 3 boxes registered already with the same facts"),
        "{out}"
    );

    // A later batch refused: where to resume.
    let mut mixed = String::from("serial,purchase_date,customer\n");
    let fresh: Vec<String> = (20..22)
        .map(|n| luhn_serial("NR-2000", 200_000 + n))
        .collect();
    for s in &fresh {
        let _ = writeln!(mixed, "{s},{purchase},Mixed");
    }
    let _ = writeln!(mixed, "{},{purchase},Someone Else", serials[0]);
    let mixed_f = dir.path().join("mixed.csv");
    std::fs::write(&mixed_f, &mixed).expect("csv");
    refused(
        &srv,
        &[
            "device",
            "import",
            mixed_f.to_str().expect("utf-8"),
            "--batch-size",
            "2",
            "--skip-existing",
        ],
        1,
        &[
            "batch 2 (from line 4) was refused",
            "the 2 boxes of the batches before it are registered",
            "resume from line 4",
            "line 4:",
        ],
    );
}

#[test]
fn device_keys_edits_swaps_filters_and_codes_read_as_words() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let purchase = days_from_today(-30);
    let missing = dir.path().join("box.pub");
    let m = missing.to_str().expect("utf-8");
    let err = refused(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &purchase,
            "--customer",
            "A",
            "--device-key",
            m,
        ],
        2,
        &["no such file"],
    );
    assert!(!err.contains("Invalid symbol"), "{err}");
    let key = np_common::SecretKey::from_seed(&[3; 32])
        .public_key()
        .to_base64();
    let two = dir.path().join("two.pub");
    std::fs::write(&two, format!("{key}\n{key}\n")).expect("key");
    refused(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &purchase,
            "--customer",
            "A",
            "--device-key",
            two.to_str().expect("utf-8"),
        ],
        1,
        &["has 2 lines"],
    );
    ok(
        &srv,
        &[
            "device",
            "add",
            SERIAL,
            "--purchase-date",
            &purchase,
            "--customer",
            "A",
        ],
    );

    // edit: which options exist; --device-key is set and audited.
    refused(
        &srv,
        &["device", "edit", SERIAL],
        2,
        &["--customer NAME, --purchase-date YYYY-MM-DD and/or --device-key FILE"],
    );
    let one = dir.path().join("one.pub");
    std::fs::write(&one, format!("{key}\n")).expect("key");
    let out = ok(
        &srv,
        &[
            "device",
            "edit",
            SERIAL,
            "--device-key",
            one.to_str().expect("utf-8"),
        ],
    );
    assert!(out.contains(&key), "{out}");
    let audit = ok(&srv, &["audit", "--action", "edit"]);
    assert!(audit.contains("device_key: - → "), "{audit}");

    // swap without a key for the new box: warned; one line, one label.
    let out = vendor(
        &srv,
        &[
            "device",
            "swap",
            SERIAL,
            "--new-serial",
            OTHER,
            "--reason",
            "RMA-7",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "warning: {OTHER} has no device key, so it cannot check in until it has one"
        )),
        "{out:?}"
    );
    assert_eq!(out.stdout.matches("moved to").count(), 1, "{}", out.stdout);
    assert!(!out.stdout.contains("swapped; now"), "{}", out.stdout);
    assert!(out.stdout.contains("swap reason:"), "{}", out.stdout);
    let old = ok(&srv, &["device", "show", SERIAL]);
    assert!(old.contains("swap reason:"), "{old}");

    // A revoked box says once why it cannot change.
    ok(&srv, &["device", "revoke", OTHER, "--reason", "chargeback"]);
    let err = refused(
        &srv,
        &["device", "extend", OTHER, "--months", "1"],
        1,
        &["is revoked"],
    );
    assert_eq!(err.matches("revoked").count(), 1, "{err}");

    // Filters and actions checked here, in words.
    let err = refused(
        &srv,
        &["device", "list", "--running-version", "5.3"],
        2,
        &["--running-version \"5.3\" is not a full version: give MAJOR.MINOR.PATCH"],
    );
    assert!(!err.contains("unexpected end"), "{err}");
    let err = refused(
        &srv,
        &["device", "list", "--coverage", "bogus"],
        2,
        &["is not one of covered, expired, not_yet_started"],
    );
    assert!(!err.contains("active"), "{err}");
    refused(
        &srv,
        &["audit", "--action", "bogus"],
        2,
        &["not an audited action", "release_halt"],
    );

    // A --json error carries its code once, in its own field.
    let out = run(
        Command::new(bin("np-vendor"))
            .args(["device", "show", SERIAL, "--json"])
            .env("NP_SERVER", &srv.url)
            .env("NP_TOKEN", "npt_not-a-token"),
        Duration::from_secs(60),
    );
    assert_eq!(out.code, 1, "{out:?}");
    let v: Value = serde_json::from_str(out.stderr.trim()).expect("JSON error");
    assert_eq!(v["error"]["code"], "unauthorized");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(!msg.ends_with("(unauthorized)"), "{msg}");
}
