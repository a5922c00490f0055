//! Support cases with the real binaries on 127.0.0.1: np-vendor opens a case for a covered
//! box; a lapsed box is refused one until it is reinstated; an RMA (with a parts shortage)
//! ends in a swap to a higher model (NR-2000 → NR-3000), and the replacement's np-agent
//! upgrades under the old box's coverage; staff request diagnostics on a case, the box's
//! next check-in gathers and posts them, signed, and the case shows them, with no secret.

#![allow(clippy::unwrap_used)]

use crate::agent_online::{today, v1, v2};
use np_common::Envelope;
use np_tests::agent::TestAgent;
use np_tests::server::TestServer;
use np_tests::{bin, run, Output};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const OLD: &str = "NR-2000-123456-4";
const NEW: &str = "NR-3000-000000-7";
const LAPSED: &str = "NR-2000-000001-6";

fn vendor(srv: &TestServer, args: &[&str]) -> Output {
    run(
        Command::new(bin("np-vendor"))
            .args(args)
            .env("NP_SERVER", &srv.url)
            .env("NP_TOKEN", &srv.admin_token),
        Duration::from_secs(60),
    )
}

fn vendor_json(srv: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = vendor(srv, &all);
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

/// Publishes `version` for both models from `image`; answers its signed manifest.
fn publish(srv: &TestServer, version: &str, security_version: u64, image: &[u8]) -> Envelope {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("image");
    std::fs::write(&p, image).unwrap();
    let (status, blob) = srv.put_blob(&p);
    assert!(status == 201 || status == 200, "{blob}");
    let (status, rel) = srv.post_json(
        "/api/v1/releases",
        json!({"version": version, "security_version": security_version,
               "models": ["NR-2000", "NR-3000"], "channel": "stable",
               "min_from_version": if version == "1.0.0" { "0.0.0" } else { "1.0.0" },
               "image": {"name": format!("n-reporter-{version}.img"), "sha256": blob["sha256"]},
               "notes": "e2e"}),
    );
    assert_eq!(status, 201, "{rel}");
    serde_json::from_value(rel["manifest"].clone()).unwrap()
}

fn days_ago(n: i64) -> String {
    let today: jiff::civil::Date = today().parse().unwrap();
    today
        .checked_sub(jiff::Span::new().days(n))
        .unwrap()
        .to_string()
}

#[test]
fn a_covered_box_gets_a_case_and_a_lapsed_one_only_after_reinstatement() {
    let srv = TestServer::start();
    for (serial, purchase) in [(OLD, today()), (LAPSED, "2024-01-10".to_owned())] {
        let (s, d) = srv.post_json(
            "/api/v1/devices",
            json!({"serial": serial, "purchase_date": purchase, "customer": "ACME"}),
        );
        assert_eq!(s, 201, "{d}");
    }
    let case = vendor_json(
        &srv,
        &[
            "case",
            "open",
            OLD,
            "--summary",
            "reports stopped",
            "--severity",
            "high",
        ],
    );
    let id = case["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (&case["status"], &case["severity"]),
        (&json!("open"), &json!("high"))
    );
    let out = vendor(&srv, &["case", "note", &id, "called back, disk full"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = vendor(&srv, &["case", "show", &id]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("called back, disk full")
            && out.stdout.contains("min of service hours"),
        "{out:?}"
    );

    // Lapsed: refused in the command line's words, until the gap is paid.
    let out = vendor(&srv, &["case", "open", LAPSED, "--summary", "dead"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("ended on 2025-01-10")
            && out.stderr.contains(&format!(
                "np-vendor device extend {LAPSED} --months N --reinstate"
            ))
            && out.stderr.contains("(not_covered)")
            && !out.stderr.contains("\"reinstate\""),
        "{out:?}"
    );
    let out = vendor(
        &srv,
        &["case", "open", LAPSED, "--summary", "dead", "--json"],
    );
    let err: Value = serde_json::from_str(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "not_covered", "{out:?}");
    assert_eq!(err["error"]["details"]["coverage_end"], "2025-01-10");
    let out = vendor(
        &srv,
        &["device", "extend", LAPSED, "--years", "1", "--reinstate"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let case = vendor_json(&srv, &["case", "open", LAPSED, "--summary", "dead"]);
    assert_eq!(case["serial"], LAPSED);

    let list = vendor_json(&srv, &["case", "list", "--status", "open"]);
    assert_eq!(list["cases"].as_array().unwrap().len(), 2, "{list}");
    let list = vendor_json(&srv, &["case", "list", "--serial", LAPSED]);
    assert_eq!(list["cases"][0]["serial"], LAPSED);
    let out = vendor(&srv, &["case", "list"]);
    assert!(out.stdout.starts_with("ID"), "{out:?}");
    // Both openings and the note are in the audit log.
    let (_, audit) = srv.get_json(&format!("/api/v1/audit?serial={OLD}"));
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"case_open") && actions.contains(&"case_note"),
        "{actions:?}"
    );
}

#[test]
fn an_rma_swap_to_a_higher_model_lets_the_replacement_upgrade_under_the_old_coverage() {
    let srv = TestServer::start();
    // The failed box: bought almost a year ago, extended by a year.
    let (s, d) = srv.post_json(
        "/api/v1/devices",
        json!({"serial": OLD, "purchase_date": days_ago(360), "customer": "ACME"}),
    );
    assert_eq!(s, 201, "{d}");
    let out = vendor(&srv, &["device", "extend", OLD, "--years", "1"]);
    assert_eq!(out.code, 0, "{out:?}");
    let (_, old) = srv.get_json(&format!("/api/v1/devices/{OLD}"));
    let coverage_end = old["coverage_end"].as_str().unwrap().to_owned();

    let manifest = publish(&srv, "1.0.0", 1, &v1());
    publish(&srv, "2.0.0", 2, &v2());

    let case = vendor_json(&srv, &["case", "open", OLD, "--summary", "does not boot"]);
    let id = case["id"].as_str().unwrap().to_owned();
    let out = vendor(&srv, &["case", "rma", &id, "--note", "shipped to us"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("RMA opened; repair due by"), "{out:?}");
    let v = vendor_json(&srv, &["case", "rma", &id, "--shortage", "on"]);
    assert_eq!(v["rma"]["shortage"], true);
    let v = vendor_json(&srv, &["case", "rma", &id, "--shortage", "off"]);
    assert_eq!(v["rma"]["shortage"], false);
    // A lower model is refused with the swap rule's words.
    let out = vendor(
        &srv,
        &[
            "case",
            "rma",
            &id,
            "--outcome",
            "swapped",
            "--replacement-serial",
            "NR-1000-000000-9",
        ],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("(swap_not_allowed)"), "{out:?}");
    let out = vendor(&srv, &["case", "rma", &id, "--outcome", "swapped"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--replacement-serial"), "{out:?}");

    // The replacement box and its key.
    let agent = TestAgent::new(
        NEW,
        &srv.root_public_key,
        &format!("[server]\nurl = \"{}\"\ncheck_interval = \"1h\"\n", srv.url),
    );
    let key_path = agent.dir.path().join("device.key");
    let out = agent.run(&["keygen", "--out", key_path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let public = agent.dir.path().join("device.pub");
    std::fs::write(&public, out.stdout.trim()).unwrap();
    let out = vendor(
        &srv,
        &[
            "case",
            "rma",
            &id,
            "--outcome",
            "swapped",
            "--replacement-serial",
            NEW,
            "--replacement-device-key",
            public.to_str().unwrap(),
            "--note",
            "NR-3000 sent",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("{NEW} took over the coverage of {OLD}")),
        "{out:?}"
    );
    let shown = vendor_json(&srv, &["case", "show", &id]);
    assert_eq!(
        (&shown["status"], &shown["rma"]["outcome"]),
        (&json!("resolved"), &json!("swapped"))
    );
    let (_, new) = srv.get_json(&format!("/api/v1/devices/{NEW}"));
    assert_eq!(
        (&new["model"], &new["coverage_end"]),
        (&json!("NR-3000"), &json!(coverage_end))
    );
    assert_eq!(new["terms"].as_array().unwrap().len(), 2, "{new}");
    let (_, old) = srv.get_json(&format!("/api/v1/devices/{OLD}"));
    assert_eq!(
        (&old["status"], &old["replaced_by"]),
        (&json!("replaced"), &json!(NEW))
    );

    // The replacement comes up on 1.0.0 with its entitlement and upgrades online.
    let (_, keyring) = srv.get_json("/api/v1/keyring");
    let (_, ent) = srv.get_json(&format!("/api/v1/devices/{NEW}/entitlement"));
    let keyring: Envelope = serde_json::from_value(keyring).unwrap();
    let ent: Envelope = serde_json::from_value(ent).unwrap();
    agent.provision(&keyring, &manifest, &v1(), Some(&ent));
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("2.0.0 installed and committed"),
        "{out:?}"
    );
    let (v, bytes) = agent.assert_consistent();
    assert_eq!((v.as_str(), bytes), ("2.0.0", v2()));
    let st = agent.status();
    assert_eq!(
        (&st["coverage_end"], &st["entitlement_status"]),
        (&json!(coverage_end), &json!("active")),
        "{st}"
    );
    // No case for the old box any more: it was replaced.
    let out = vendor(&srv, &["case", "open", OLD, "--summary", "again"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("np-vendor case open {NEW}")),
        "{out:?}"
    );
}

#[test]
fn diagnostics_requested_on_a_case_arrive_with_the_next_check_in_and_hold_no_secret() {
    let srv = TestServer::start();
    let manifest = publish(&srv, "1.0.0", 1, &v1());
    // The box's health command prints its own device key file and a password URL: the
    // report must carry neither.
    let agent = TestAgent::new(
        OLD,
        &srv.root_public_key,
        &format!(
            "[server]\nurl = \"{}\"\ncheck_interval = \"1h\"\n\n[install]\nhealth_command = \"echo disk ok; cat device.key; echo postgres://np:hunter2secret@db/np\"\n",
            srv.url
        ),
    );
    let key_path = agent.dir.path().join("device.key");
    // The command runs in the agent's working folder: name the key file in full.
    let config = std::fs::read_to_string(&agent.config).unwrap();
    let config = config.replace("cat device.key", &format!("cat {}", key_path.display()));
    std::fs::write(&agent.config, config).unwrap();
    let out = agent.run(&["keygen", "--out", key_path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let public = out.stdout.trim().to_owned();
    let (s, d) = srv.post_json(
        "/api/v1/devices",
        json!({"serial": OLD, "purchase_date": today(), "customer": "ACME", "device_key": public}),
    );
    assert_eq!(s, 201, "{d}");
    let (_, keyring) = srv.get_json("/api/v1/keyring");
    let (_, ent) = srv.get_json(&format!("/api/v1/devices/{OLD}/entitlement"));
    agent.provision(
        &serde_json::from_value(keyring).unwrap(),
        &manifest,
        &v1(),
        Some(&serde_json::from_value(ent).unwrap()),
    );
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");

    let case = vendor_json(&srv, &["case", "open", OLD, "--summary", "slow reports"]);
    let id = case["id"].as_str().unwrap().to_owned();
    let out = vendor(&srv, &["case", "diagnostics", &id]);
    assert_eq!(out.code, 0, "{out:?}");

    // The box's next check-in delivers the action; the agent gathers and posts the report.
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let shown = vendor_json(&srv, &["case", "show", &id]);
    let entries = shown["entries"].as_array().unwrap();
    let diag = entries
        .iter()
        .find(|e| e["kind"] == "diagnostics")
        .unwrap_or_else(|| panic!("no diagnostics entry: {shown}"));
    let text = diag["text"].as_str().unwrap();
    let report: Value = serde_json::from_str(text).unwrap();
    assert_eq!(report["serial"], OLD, "{report}");
    assert_eq!(report["case"], id.as_str(), "{report}");
    assert_eq!(report["slots"]["a"], "1.0.0", "{report}");
    assert!(report["state_free_bytes"].as_u64().unwrap() > 0, "{report}");
    // The output held the device key: it is replaced whole.
    let health = report["health"]["output"].as_str().unwrap();
    assert_eq!(health, "[redacted: it held the device key]", "{report}");
    assert_eq!(report["health"]["exit_code"], 0, "{report}");
    let key_text = std::fs::read_to_string(&key_path).unwrap();
    assert!(
        !text.contains(key_text.trim()),
        "the device key leaked: {text}"
    );
    assert!(!text.contains("hunter2secret"), "a password leaked: {text}");
    // Nothing is pending any more, and the agent has nothing left to send.
    let st = agent.status();
    assert_eq!(st["diagnostics_unsent"], 0, "{st}");
    let out = vendor(&srv, &["case", "diagnostics", &id]);
    assert_eq!(out.code, 0, "a new request after the report: {out:?}");
    let (_, audit) = srv.get_json(&format!("/api/v1/audit?serial={OLD}"));
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.iter().any(|a| a.contains("diagnostics")),
        "{actions:?}"
    );

    // Closing the case withdraws the new request on the box: another case may ask, and
    // staff cancel that one as the box's pending action.
    let out = vendor(&srv, &["case", "status", &id, "closed"]);
    assert_eq!(out.code, 0, "{out:?}");
    let (_, d) = srv.get_json(&format!("/api/v1/devices/{OLD}"));
    assert_eq!(d["pending_diagnostics"], Value::Null, "{d}");
    let second = vendor_json(&srv, &["case", "open", OLD, "--summary", "again"]);
    let id2 = second["id"].as_str().unwrap().to_owned();
    let out = vendor(&srv, &["case", "diagnostics", &id2]);
    assert_eq!(out.code, 0, "another case may ask now: {out:?}");
    let out = vendor(&srv, &["device", "action", OLD, "cancel"]);
    assert_eq!(out.code, 0, "{out:?}");
    let shown = vendor_json(&srv, &["case", "show", &id2]);
    assert_eq!(shown["diagnostics_pending"], Value::Null, "{shown}");
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let shown = vendor_json(&srv, &["case", "show", &id2]);
    assert!(
        !shown["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "diagnostics"),
        "a cancelled request got a report: {shown}"
    );
    // The command line names its own arguments.
    let out = vendor(&srv, &["case", "note", &id2, "line1\nline2"]);
    assert!(
        out.code != 0 && out.stderr.contains("TEXT has a line break"),
        "{out:?}"
    );
    let long = "x".repeat(70_000);
    let out = vendor(&srv, &["case", "note", &id2, &long]);
    assert!(
        out.code != 0
            && out.stderr.contains("TEXT is 70000 characters")
            && out.stderr.contains("4000"),
        "{out:?}"
    );
    let out = vendor(&srv, &["case", "list", "--limit", "0"]);
    assert!(out.code != 0 && out.stderr.contains("--limit 0"), "{out:?}");
}
