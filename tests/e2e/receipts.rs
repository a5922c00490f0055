//! Offline requests and signed receipts with the real binaries: an offline box writes a
//! request, staff turn it into a bundle with np-vendor, the box applies it, and its
//! receipts, uploaded later, move the server's record of the box (once, and never back);
//! a receipt signed by another key and a request of a lapsed box are refused; an online
//! box whose report could not reach the server sends its receipt at its next check-in.

#![allow(clippy::unwrap_used)]

use crate::agent_online::{publish, setup, today, v1, v2};
use np_common::Envelope;
use np_tests::agent::{TestAgent, SERIAL};
use np_tests::server::TestServer;
use np_tests::{bin, run, Output};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A lapsed box (purchased long ago, never extended).
const LAPSED: &str = "NR-2000-654321-7";

fn vendor(srv: &TestServer, args: &[&str]) -> Output {
    run(
        Command::new(bin("np-vendor"))
            .args(args)
            .env("NP_SERVER", &srv.url)
            .env("NP_TOKEN", &srv.admin_token),
        Duration::from_secs(60),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An offline box (no `[server]`) with its own device key, registered on `srv` with
/// `purchase_date`, provisioned with the server's keyring, entitlement and 1.0.0.
fn offline_box(
    srv: &TestServer,
    serial: &str,
    purchase_date: &str,
    manifest: &Envelope,
) -> TestAgent {
    let agent = TestAgent::new(serial, &srv.root_public_key, "[install]\n");
    let key = agent.dir.path().join("device.key");
    let out = agent.run(&["keygen", "--out", p(&key)]);
    assert_eq!(out.code, 0, "{out:?}");
    let (status, d) = srv.post_json(
        "/api/v1/devices",
        json!({"serial": serial, "purchase_date": purchase_date, "customer": "ACME",
               "device_key": out.stdout.trim()}),
    );
    assert_eq!(status, 201, "{d}");
    let (_, keyring) = srv.get_json("/api/v1/keyring");
    let (_, ent) = srv.get_json(&format!("/api/v1/devices/{serial}/entitlement"));
    agent.provision(
        &serde_json::from_value(keyring).unwrap(),
        manifest,
        &v1(),
        Some(&serde_json::from_value(ent).unwrap()),
    );
    agent
}

fn device(srv: &TestServer, serial: &str) -> Value {
    let (status, d) = srv.get_json(&format!("/api/v1/devices/{serial}"));
    assert_eq!(status, 200, "{d}");
    d
}

/// Copies the box's receipts into a fresh folder; answers the folder and the output.
fn copy_receipts(agent: &TestAgent, name: &str) -> (std::path::PathBuf, Output) {
    let dir = agent.dir.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    let out = agent.run(&["receipts", "--out", p(&dir)]);
    assert_eq!(out.code, 0, "{out:?}");
    (dir, out)
}

#[test]
fn an_offline_box_is_answered_from_its_request_and_its_receipts_move_its_record_once() {
    let srv = TestServer::start();
    let m1 = publish(&srv, "1.0.0", 1, &v1());
    let agent = offline_box(&srv, SERIAL, &today(), &m1);
    publish(&srv, "2.0.0", 2, &v2());

    // The box asks; staff answer with the bundle the server picks for it.
    let req = agent.dir.path().join("request.json");
    let out = agent.run(&["request", "--out", p(&req)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("running 1.0.0"), "{out:?}");
    let bundle = agent.dir.path().join("answer.tar");
    let out = vendor(
        &srv,
        &["bundle", "get", "--request", p(&req), "--out", p(&bundle)],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!("{SERIAL}-2.0.0.tar")),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("warning"),
        "a fresh request is not stale: {out:?}"
    );
    // np-vendor accepts gzip, so the server compressed it on the wire; the file is the
    // plain tar.
    assert!(out.stderr.contains("gzip-compressed for the"), "{out:?}");
    assert_ne!(&std::fs::read(&bundle).unwrap()[..2], &[0x1f, 0x8b]);
    let out = agent.run(&["apply", p(&bundle)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("2.0.0 installed and committed"),
        "{out:?}"
    );

    // The receipt is signed and names the request; the server knows nothing yet.
    let (dir, out) = copy_receipts(&agent, "usb1");
    assert!(out.stdout.contains("1 receipt from seq 1 to 1"), "{out:?}");
    let r1 = dir.join("receipt-0000000001.json");
    let env = Envelope::parse(&std::fs::read(&r1).unwrap()).unwrap();
    let payload: Value = serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap();
    let request: Value = serde_json::from_slice(
        &Envelope::parse(&std::fs::read(&req).unwrap())
            .unwrap()
            .payload_bytes()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["request_nonce"], request["nonce"], "{payload}");
    assert_eq!(
        (payload["outcome"].as_str(), payload["to_version"].as_str()),
        (Some("installed"), Some("2.0.0"))
    );
    assert!(device(&srv, SERIAL)["version"].is_null());

    // Uploaded, it moves the record to 2.0.0 and shows in the history.
    let out = vendor(&srv, &["receipt", "upload", p(&r1)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("the box's record follows it"),
        "{out:?}"
    );
    let d = device(&srv, SERIAL);
    assert_eq!(d["version"], "2.0.0", "{d}");
    assert_eq!(d["last_result"]["outcome"], "installed", "{d}");
    assert_eq!(d["last_receipt_seq"], 1, "{d}");
    let out = vendor(&srv, &["device", "events", SERIAL]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("receipt 1"), "{out:?}");
    let out = vendor(&srv, &["device", "show", SERIAL]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("RECEIPT"), "{out:?}");
    assert!(out.stdout.contains("installed"), "{out:?}");

    // Twice: accepted, nothing changes.
    let out = vendor(&srv, &["receipt", "upload", p(&r1)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("already held; nothing changed"),
        "{out:?}"
    );
    assert_eq!(device(&srv, SERIAL), d);

    // The old request, used again, is answered but called stale.
    let again = agent.dir.path().join("again.tar");
    let out = vendor(
        &srv,
        &["bundle", "get", "--request", p(&req), "--out", p(&again)],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("warning: the request names 1.0.0 but the box has reported 2.0.0 after it"),
        "{out:?}"
    );

    // A rollback (seq 2) and a reinstall (seq 3); 3 uploaded first, then the older 2:
    // kept in the history, but the box is not moved back.
    let out = agent.run(&["rollback"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = agent.run(&["apply", p(&bundle)]);
    assert_eq!(out.code, 0, "{out:?}");
    let (dir, out) = copy_receipts(&agent, "usb2");
    assert!(out.stdout.contains("3 receipts from seq 1 to 3"), "{out:?}");
    let out = vendor(
        &srv,
        &["receipt", "upload", p(&dir.join("receipt-0000000003.json"))],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let d3 = device(&srv, SERIAL);
    assert_eq!(
        (d3["version"].as_str(), d3["last_receipt_seq"].as_u64()),
        (Some("2.0.0"), Some(3))
    );
    let out = vendor(
        &srv,
        &["receipt", "upload", p(&dir.join("receipt-0000000002.json"))],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("older than the box's newest receipt"),
        "{out:?}"
    );
    let after = device(&srv, SERIAL);
    assert_eq!(
        (
            &after["version"],
            &after["last_result"],
            &after["last_receipt_seq"]
        ),
        (&d3["version"], &d3["last_result"], &d3["last_receipt_seq"])
    );
    let (status, list) = srv.get_json(&format!("/api/v1/devices/{SERIAL}/receipts"));
    assert_eq!(status, 200, "{list}");
    let seqs: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["receipt"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 2, 1]);

    // A receipt signed by another box's device key is refused, and stores nothing.
    let lapsed = offline_box(&srv, LAPSED, "2024-01-10", &m1);
    let other = np_common::SecretKey::from_base64(
        &std::fs::read_to_string(lapsed.dir.path().join("device.key")).unwrap(),
    )
    .unwrap();
    let mut forged: Value = payload.clone();
    forged["seq"] = json!(9);
    let forged = Envelope::sign(
        &env.payload_type,
        &serde_json::to_vec(&forged).unwrap(),
        &[&other],
    );
    let fp = agent.dir.path().join("forged.json");
    std::fs::write(&fp, forged.to_json()).unwrap();
    let out = vendor(&srv, &["receipt", "upload", p(&r1), p(&fp)]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("bad_receipt_signature"), "{out:?}");
    assert!(
        out.stderr.contains("forged.json"),
        "names the file: {out:?}"
    );
    assert_eq!(device(&srv, SERIAL)["last_receipt_seq"], 3);

    // A lapsed box's request is refused, naming the rule.
    let lreq = lapsed.dir.path().join("request.json");
    let out = lapsed.run(&["request", "--out", p(&lreq)]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = vendor(
        &srv,
        &[
            "bundle",
            "get",
            "--request",
            p(&lreq),
            "--out",
            p(&lapsed.dir.path().join("x.tar")),
        ],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("warranty_expired"), "{out:?}");
    assert!(!lapsed.dir.path().join("x.tar").exists());

    // A request whose signature does not verify under its box's key is 401
    // bad_request_signature.
    let mut lenv = Envelope::parse(&std::fs::read(&lreq).unwrap()).unwrap();
    lenv.signatures[0].sig = forged.signatures[0].sig.clone();
    let (status, body) = srv.post_json("/api/v1/bundles", serde_json::to_value(&lenv).unwrap());
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "bad_request_signature", "{body}");
}

#[test]
fn an_online_box_sends_a_receipt_its_report_could_not_deliver_at_its_next_check_in() {
    let o = setup(&today(), "", false);
    let bundle = o.agent.dir.path().join("2.0.0.tar");
    let out = vendor(
        &o.srv,
        &[
            "bundle",
            "get",
            SERIAL,
            "--version",
            "2.0.0",
            "--out",
            p(&bundle),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");

    // The server is out of reach while the bundle is applied: the report fails, the
    // receipt stays in the outbox.
    let config = std::fs::read_to_string(&o.agent.config).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    std::fs::write(&o.agent.config, config.replace(&o.srv.url, &nowhere)).unwrap();
    let out = o.agent.run(&["apply", p(&bundle)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("cannot report the outcome"), "{out:?}");
    let outbox = o.agent.state("outbox/receipt-0000000001.json");
    assert!(outbox.exists());
    let (_, list) = o
        .srv
        .get_json(&format!("/api/v1/devices/{SERIAL}/receipts"));
    assert_eq!(list, json!([]));

    // Back in reach: the next check-in carries it, and the box drops it once it is held.
    std::fs::write(&o.agent.config, &config).unwrap();
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let (_, list) = o
        .srv
        .get_json(&format!("/api/v1/devices/{SERIAL}/receipts"));
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["via"], "check-in");
    assert_eq!(list[0]["receipt"]["outcome"], "installed");
    assert!(
        !outbox.exists(),
        "the outbox keeps only what the server lacks"
    );
    let d = device(&o.srv, SERIAL);
    assert_eq!(
        (d["version"].as_str(), d["last_receipt_seq"].as_u64()),
        (Some("2.0.0"), Some(1))
    );
}

#[test]
fn request_and_receipts_say_what_is_wrong_in_the_words_of_the_command_line() {
    let a = TestAgent::offline("2099-01-01", "", &v1());
    let req = a.dir.path().join("request.json");
    // No device key yet: a usage error that says how to make one.
    let out = a.run(&["request", "--out", p(&req)]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("np-agent keygen"), "{out:?}");
    assert!(!req.exists());
    let out = a.run(&["keygen", "--out", p(&a.dir.path().join("device.key"))]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = a.run(&["request", "--out", p(&req)]);
    assert_eq!(out.code, 0, "{out:?}");
    // Never over an existing file.
    let out = a.run(&["request", "--out", p(&req)]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("already exists"), "{out:?}");
    // Nothing happened yet: no receipts; a folder that is not there is named.
    let dir = a.dir.path().join("usb");
    let out = a.run(&["receipts", "--out", p(&dir)]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("is not a folder; create it first"),
        "{out:?}"
    );
    std::fs::create_dir(&dir).unwrap();
    let out = a.run(&["receipts", "--out", p(&dir)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("the outbox holds no receipts"),
        "{out:?}"
    );
    // A refused bundle leaves a receipt; copied twice, the second copy finds it there.
    let junk = a.dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a bundle").unwrap();
    let out = a.run(&["apply", p(&junk)]);
    assert_eq!(out.code, 1, "{out:?}");
    let out = a.run(&["receipts", "--out", p(&dir)]);
    assert!(out.stdout.contains("1 receipt from seq 1 to 1"), "{out:?}");
    let out = a.run(&["receipts", "--out", p(&dir)]);
    assert!(out.stdout.contains("(1 of them already there)"), "{out:?}");
    let st = a.status();
    assert_eq!(
        (st["receipt_seq"].as_u64(), st["receipts_unsent"].as_u64()),
        (Some(1), Some(1))
    );
    let env =
        Envelope::parse(&std::fs::read(dir.join("receipt-0000000001.json")).unwrap()).unwrap();
    let r: Value = serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap();
    assert_eq!(
        (r["outcome"].as_str(), r["from_version"].as_str()),
        (Some("refused"), Some("1.0.0"))
    );
    assert!(r["to_version"].is_null(), "{r}");
}
