//! What a new user of np-agent trips over (the field report): outcomes reported to the
//! server at once, a closed pipe, coverage as its own state, the server's reason for a
//! held update, errors that blame the right thing, log lines without Rust debug
//! formatting, and a stored trust that wins over an edited config.

#![allow(clippy::unwrap_used)]

use crate::agent_online::{device, setup, today, v1};
use np_common::docs::Entitlement;
use np_tests::agent::{
    entitlement, image_bytes, release, write_good_bundle, Keys, TestAgent, SERIAL,
};
use np_tests::server::TestServer;
use np_tests::{bin, Output, Running};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn no_debug_formatting(text: &str) {
    for needle in [
        "Some(",
        "None)",
        "Version(",
        "Installed(",
        "Staged(",
        "Rebooting(",
    ] {
        assert!(
            !text.contains(needle),
            "Rust debug formatting {needle:?} in:\n{text}"
        );
    }
}

// Item 1: a staff rollback (and a local one) is reported as it completes, so the server's
// record follows at once, not at the next check-in.
#[test]
fn a_rollback_is_reported_to_the_server_as_it_completes() {
    let o = setup(&today(), "", false);
    assert_eq!(o.agent.run(&["check"]).code, 0);
    assert_eq!(device(&o)["version"], "2.0.0");
    let (status, a) = o.srv.post_json(
        &format!("/api/v1/devices/{SERIAL}/actions"),
        json!({"action": "rollback"}),
    );
    assert!(status == 200 || status == 201, "{a}");
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("rolled back by a staff action"),
        "{out:?}"
    );
    assert_eq!(o.agent.assert_consistent().1, v1());
    // No other check-in happened: the server knows already.
    let d = device(&o);
    assert_eq!(d["version"], "1.0.0", "{d}");
    assert_eq!(d["last_result"]["outcome"], "rolled_back", "{d}");
    assert!(d["pending_action"].is_null(), "{d}");

    // A staff upgrade, then a local `np-agent rollback`: reported at once as well.
    let (status, a) = o.srv.post_json(
        &format!("/api/v1/devices/{SERIAL}/actions"),
        json!({"action": "upgrade", "version": "2.0.0"}),
    );
    assert!(status == 200 || status == 201, "{a}");
    assert_eq!(o.agent.run(&["check"]).code, 0);
    let d = device(&o);
    assert_eq!(d["version"], "2.0.0", "{d}");
    assert!(d["pending_action"].is_null(), "{d}");
    let out = o.agent.run(&["rollback"]);
    assert_eq!(out.code, 0, "{out:?}");
    let d = device(&o);
    assert_eq!(d["version"], "1.0.0", "{d}");
    assert_eq!(d["last_result"]["outcome"], "rolled_back", "{d}");
}

// Item 8: after a rollback, `check` prints the server's reason and how to override it.
#[test]
fn check_after_a_rollback_prints_the_servers_reason_and_the_override() {
    let o = setup(&today(), "", false);
    assert_eq!(o.agent.run(&["check"]).code, 0);
    assert_eq!(o.agent.run(&["rollback"]).code, 0);
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("rolled back from release 2.0.0"),
        "the server's reason is missing: {out:?}"
    );
    assert!(out.stdout.contains("np-agent apply"), "{out:?}");
    assert!(out.stdout.contains("staff upgrade action"), "{out:?}");
    assert!(
        !out.stdout.contains("not offered to this box yet"),
        "{out:?}"
    );
    assert_eq!(o.agent.assert_consistent().0, "1.0.0");
}

// Item 13: no Rust debug formatting in what the agent prints or logs, the daemon included.
#[test]
fn logs_and_messages_carry_no_debug_formatting() {
    let o = setup(&today(), "", false);
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    no_debug_formatting(&out.stdout);
    no_debug_formatting(&out.stderr);
    let out = o.agent.run(&["rollback"]);
    assert_eq!(out.code, 0, "{out:?}");
    no_debug_formatting(&out.stderr);

    let o = setup(&today(), "", false);
    let mut d = o.agent.daemon();
    d.wait_for("check-in: ", T);
    d.kill();
    no_debug_formatting(&d.seen.join("\n"));
    assert_eq!(o.agent.assert_consistent().0, "2.0.0");
}

/// Runs `np-agent ARGS` with its stdout on a pipe whose reading end is already closed.
fn run_into_closed_pipe(a: &TestAgent, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = a
        .cmd(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "np-agent {args:?} did not end");
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: t.join().unwrap(),
    }
}

// Item 3: a reader that goes away ends the command quietly, never a panic.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let a = TestAgent::offline("2099-01-01", "", &image_bytes(1, 50_000));
    for args in [
        &["status", "--json"][..],
        &["status"][..],
        &["--help"][..],
        &["status", "--help"][..],
    ] {
        let out = run_into_closed_pipe(&a, args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{args:?}: {out:?}");
        assert!(out.stderr.trim().is_empty(), "{args:?}: {out:?}");
    }
    // Through a shell pipeline too, as a user types it.
    for line in ["status --json | true", "status | head -1"] {
        let script = format!(
            "set -o pipefail; {} --config {} {line}",
            bin("np-agent").display(),
            a.config.display()
        );
        let out = np_tests::run(Command::new("bash").arg("-c").arg(&script), T);
        assert_eq!(out.code, 0, "{line}: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{line}: {out:?}");
    }
}

// Item 7: coverage is its own state beside the entitlement status, and an expired box is
// told to contact the vendor.
#[test]
fn status_shows_coverage_beside_the_entitlement_status() {
    let img = image_bytes(1, 50_000);
    let a = TestAgent::offline("2025-01-10", "", &img);
    let st = a.status();
    assert_eq!(st["entitlement_status"], "active", "{st}");
    assert_eq!(st["coverage"], "expired", "{st}");
    assert_eq!(st["coverage_end"], "2025-01-10", "{st}");
    let out = a.run(&["status"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("active until"), "{out:?}");
    assert!(out.stdout.contains("expired"), "{out:?}");

    // The refusal tells the customer whom to ask.
    let k = Keys::load();
    let new = image_bytes(2, 60_000);
    let b = a.dir.path().join("b.tar");
    write_good_bundle(&b, &k, &release("2.0.0", 3, &new), 1, "2025-01-10", &new);
    let out = a.run(&["apply", b.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("warranty_expired"), "{out:?}");
    assert!(out.stderr.contains("contact the vendor"), "{out:?}");
    assert!(!out.stderr.contains("extend it"), "{out:?}");

    let a = TestAgent::offline("2099-01-01", "", &img);
    assert_eq!(a.status()["coverage"], "covered");

    // A coverage that starts later (a purchase date ahead).
    let a = TestAgent::new(SERIAL, &k.root.public_key().to_base64(), "");
    let mut e: Entitlement = entitlement(SERIAL, 1, "2099-01-01");
    e.terms[0].start = "2098-01-01".parse().unwrap();
    a.provision(
        &k.keyring(1),
        &k.release(&release("1.0.0", 2, &img)),
        &img,
        Some(&k.online(&e)),
    );
    let st = a.status();
    assert_eq!(st["coverage"], "not_yet_started", "{st}");
    assert!(a.run(&["status"]).stdout.contains("2098-01-01"));
}

// Item 9: a folder given to `apply` is named as such.
#[test]
fn apply_of_a_folder_says_it_is_a_folder() {
    let a = TestAgent::offline("2099-01-01", "", &image_bytes(1, 50_000));
    let out = a.run(&["apply", a.dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("is a directory"), "{out:?}");
    assert!(!out.stderr.contains("damaged"), "{out:?}");
    assert!(!out.stderr.contains("truncated"), "{out:?}");
    assert_eq!(a.status()["phase"], "idle");
}

/// An offline-provisioned box whose config names `url` as its server, with a device key.
fn box_pointing_at(url: &str) -> TestAgent {
    let a = TestAgent::offline(
        "2099-01-01",
        &format!("[server]\nurl = \"{url}\"\nstall_timeout = \"10s\"\n"),
        &image_bytes(1, 50_000),
    );
    let key = a.dir.path().join("device.key");
    assert_eq!(a.run(&["keygen", "--out", key.to_str().unwrap()]).code, 0);
    a
}

// Item 9: the cause of a connection failure is kept; a missing key file is reported as
// missing.
#[test]
fn network_errors_keep_their_cause_and_a_missing_key_is_missing() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = box_pointing_at(&format!("http://127.0.0.1:{port}"));
    let out = a.run(&["check"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("Connection refused"), "{out:?}");

    std::fs::remove_file(a.dir.path().join("device.key")).unwrap();
    let out = a.run(&["check"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("No such file"), "{out:?}");
    assert!(out.stderr.contains("np-agent keygen"), "{out:?}");
    assert!(!out.stderr.contains("base64"), "{out:?}");
}

fn https_server(dir: &std::path::Path) -> (Running, u16) {
    let tls = np_tests::repo_root().join("server/tests/data/tls");
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n",
            dir.join("data"),
            tls.join("TEST-ONLY-server.pem"),
            tls.join("TEST-ONLY-server.key"),
        ),
    )
    .unwrap();
    let mut p = Running::spawn(
        Command::new(bin("np-server"))
            .arg("serve")
            .arg("--config")
            .arg(&config),
    );
    let line = p.wait_for("np-server listening on https://", T);
    let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    (p, port)
}

// Item 9: plain HTTP against HTTPS (and the reverse) is explained, not "corrupt message".
#[test]
fn http_against_https_and_the_reverse_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let (_https, port) = https_server(tmp.path());
    let a = box_pointing_at(&format!("http://127.0.0.1:{port}"));
    let out = a.run(&["check"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("speaks HTTPS, not plain HTTP"),
        "{out:?}"
    );
    assert!(out.stderr.contains("write https://"), "{out:?}");

    let srv = TestServer::start();
    let plain = srv.url.replace("http://", "https://");
    let a = box_pointing_at(&plain);
    let out = a.run(&["check"]);
    assert_eq!(out.code, 3, "{out:?}");
    // The explanation first; TLS's own words ("corrupt message") only as the cause after it.
    let explained = out.stderr.find("does not speak HTTPS");
    assert!(explained.is_some(), "{out:?}");
    assert!(
        out.stderr
            .find("corrupt message")
            .is_none_or(|c| Some(c) > explained),
        "{out:?}"
    );
}

// Item 13: a stored trust wins over an edited `trust.root_keys`, and the agent says so.
#[test]
fn editing_root_keys_after_provisioning_says_the_stored_trust_wins() {
    let a = TestAgent::offline("2099-01-01", "", &image_bytes(1, 50_000));
    assert!(!a.run(&["status"]).stderr.contains("stored"));
    let k = Keys::load();
    let text = std::fs::read_to_string(&a.config).unwrap();
    let edited = text.replace(
        &k.root.public_key().to_base64(),
        &k.online.public_key().to_base64(),
    );
    assert_ne!(text, edited);
    std::fs::write(&a.config, edited).unwrap();
    let out = a.run(&["status"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("trust.root_keys"), "{out:?}");
    assert!(out.stderr.contains("stored keyring wins"), "{out:?}");
    assert!(out.stderr.contains("np-agent provision"), "{out:?}");
}

// A rollback typed while `np-agent run` is running stays done: the daemon takes each step
// under the state folder's lock and reads the state again, so its older copy in memory
// never overwrites the admin's step.
#[test]
fn a_rollback_typed_while_the_daemon_runs_is_not_undone() {
    let img = image_bytes(1, 50_000);
    let a = TestAgent::offline("2099-01-01", "", &img);
    let k = Keys::load();
    let new = image_bytes(2, 60_000);
    let b = a.dir.path().join("b.tar");
    write_good_bundle(&b, &k, &release("2.0.0", 3, &new), 2, "2099-01-01", &new);
    let out = a.run(&["apply", b.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(a.assert_consistent().0, "2.0.0");
    let mut d = a.daemon();
    let out = a.run(&["rollback"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(a.assert_consistent().0, "1.0.0");
    // Make the daemon take a step that saves its state: a bundle it refuses by rule.
    let old = a.dir.path().join("old.tar");
    write_good_bundle(&old, &k, &release("0.9.0", 3, &new), 2, "2099-01-01", &new);
    std::fs::copy(&old, a.state("inbox/junk.tar")).unwrap();
    let reason = a.state("processed/rejected/junk.tar.reason");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reason.exists() {
        assert!(Instant::now() < deadline, "junk.tar was not rejected");
        d.wait_for("junk.tar", Duration::from_secs(60));
    }
    let st = a.status();
    assert_eq!(st["version"], "1.0.0", "{st}");
    assert_eq!(a.assert_consistent().0, "1.0.0");
    assert_eq!(
        st["boot_loader"]["record"]["active"], st["active_slot"],
        "{st}"
    );
}
