//! A staged rollout halted by the server itself: real np-server, np-vendor and np-agent
//! processes. A release goes out under a plan with a failure threshold; boxes whose health
//! check fails roll back and report it; after enough of them the rollout guard pauses the
//! release, the remaining boxes are not offered it, `release list`, the audit log and
//! `/metrics` show the halt, and after staff resume it the healthy boxes install it.

use np_common::Envelope;
use np_tests::agent::{image_bytes, TestAgent};
use np_tests::server::TestServer;
use np_tests::{bin, run, wait_until, Output};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

fn serial(n: u32) -> String {
    let digits = format!("2000{n:06}");
    format!(
        "NR-2000-{n:06}-{}",
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
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    out
}

fn publish(srv: &TestServer, version: &str, security_version: u64, image: &[u8]) -> Envelope {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("image");
    std::fs::write(&p, image).expect("image");
    let (status, blob) = srv.put_blob(&p);
    assert!(status == 201 || status == 200, "{blob}");
    let (status, rel) = srv.post_json(
        "/api/v1/releases",
        json!({"version": version, "security_version": security_version, "models": ["NR-2000"],
               "channel": "stable", "min_from_version": if version == "1.0.0" { "0.0.0" } else { "1.0.0" },
               "image": {"name": format!("n-reporter-{version}.img"), "sha256": blob["sha256"]},
               "notes": "e2e"}),
    );
    assert_eq!(status, 201, "{rel}");
    serde_json::from_value(rel["manifest"].clone()).expect("manifest")
}

/// A registered box provisioned with 1.0.0; `health` is its health command.
fn new_box(srv: &TestServer, n: u32, health: &str, v1: &Envelope) -> TestAgent {
    let s = serial(n);
    let extra = format!(
        "[server]\nurl = \"{}\"\ncheck_interval = \"1h\"\n\n[install]\nhealth_command = \"{health}\"\n",
        srv.url
    );
    let agent = TestAgent::new(&s, &srv.root_public_key, &extra);
    let key_path = agent.dir.path().join("device.key");
    let out = agent.run(&["keygen", "--out", key_path.to_str().expect("utf-8")]);
    assert_eq!(out.code, 0, "{out:?}");
    let (status, d) = srv.post_json(
        "/api/v1/devices",
        json!({"serial": s, "purchase_date": jiff::Zoned::now().date().to_string(),
               "customer": "ACME", "device_key": out.stdout.trim()}),
    );
    assert_eq!(status, 201, "{d}");
    let (status, keyring) = srv.get_json("/api/v1/keyring");
    assert_eq!(status, 200, "{keyring}");
    let (status, ent) = srv.get_json(&format!("/api/v1/devices/{s}/entitlement"));
    assert_eq!(status, 200, "{ent}");
    let keyring: Envelope = serde_json::from_value(keyring).expect("keyring");
    let ent: Envelope = serde_json::from_value(ent).expect("entitlement");
    agent.provision(&keyring, v1, &image_bytes(11, 200_000), Some(&ent));
    agent
}

fn release(srv: &TestServer) -> Value {
    let (status, r) = srv.get_json("/api/v1/releases/2.0.0");
    assert_eq!(status, 200, "{r}");
    r
}

#[test]
fn the_guard_halts_a_release_whose_boxes_roll_back_until_staff_resume_it() {
    let mut srv = TestServer::start();
    let v1 = publish(&srv, "1.0.0", 1, &image_bytes(11, 200_000));
    let healthy: Vec<TestAgent> = (1..=3).map(|n| new_box(&srv, n, "true", &v1)).collect();
    let failing: Vec<TestAgent> = (4..=6).map(|n| new_box(&srv, n, "exit 3", &v1)).collect();
    publish(&srv, "2.0.0", 2, &image_bytes(12, 300_000));

    // Bad plans are refused in the flags' words, before anything reaches the server.
    let out = vendor(&srv, &["release", "set", "2.0.0", "--stages", "10:1h,5"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("--stages \"10:1h,5\": stage 2: 5% is not above"),
        "{out:?}"
    );
    // The guard's flags alone change the guard of a plan; this release has none yet.
    let out = vendor(
        &srv,
        &["release", "set", "2.0.0", "--max-failure-percent", "5"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("release 2.0.0 has no plan") && out.stderr.contains("--stages"),
        "{out:?}"
    );
    // A plan without --max-failure-percent has no automatic halt, and says so.
    let out = vendor(&srv, &["release", "set", "2.0.0", "--stages", "100"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("note: this plan has no automatic halt"),
        "{out:?}"
    );

    let out = vendor(
        &srv,
        &[
            "release",
            "set",
            "2.0.0",
            "--stages",
            "100",
            "--max-failure-percent",
            "60",
            "--min-attempts",
            "4",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("100% (stage 1 of 1)"), "{out:?}");
    assert!(!out.stderr.contains("no automatic halt"), "{out:?}");

    // One healthy box installs it; three boxes fail their health check and roll back.
    let out = healthy[0].run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(healthy[0].assert_consistent().0, "2.0.0");
    for (i, a) in failing.iter().enumerate() {
        let out = a.run(&["check"]);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("rolled back"), "{out:?}");
        assert_eq!(a.assert_consistent().0, "1.0.0");
        if i < 2 {
            // Below min_attempts (4): still rolling out.
            assert_eq!(release(&srv)["paused"], false);
        }
    }
    // 3 of 4 attempts failed (75 % ≥ 60 %; the third box's install made 2 of 4, 50 %;
    // its download counted nothing): the server paused the release by itself.
    let r = wait_until("the guard's halt", Duration::from_secs(30), || {
        Some(release(&srv)).filter(|r| r["paused"] == true)
    });
    assert_eq!(
        r["halt"]["figures"],
        json!({"attempts": 4, "failures": 3}),
        "{r}"
    );
    let out = vendor(&srv, &["release", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("halted (3 of 4 failed)"), "{out:?}");

    // The remaining boxes are not offered it.
    for a in &healthy[1..] {
        let out = a.run(&["check"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout
                .contains("2.0.0 is available but the server holds it back: the rollout of release 2.0.0 is paused"),
            "{out:?}"
        );
        assert_eq!(a.assert_consistent().0, "1.0.0");
    }

    // The audit log and /metrics show the halt.
    let (status, audit) = srv.get_json("/api/v1/audit");
    assert_eq!(status, 200, "{audit}");
    let halts: Vec<&Value> = audit["entries"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["action"] == "release_halt").collect())
        .unwrap_or_default();
    assert_eq!(halts.len(), 1, "{audit}");
    assert_eq!(halts[0]["actor"], "rollout-guard");
    assert_eq!(
        (
            halts[0]["after"]["attempts"].clone(),
            halts[0]["after"]["failures"].clone()
        ),
        (json!(4), json!(3))
    );
    let metrics = srv
        .client()
        .get(format!("{}/metrics", srv.url))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    assert!(
        metrics.contains("np_rollout_halts_total{version=\"2.0.0\"} 1"),
        "{metrics}"
    );

    // Staff resume: the healthy boxes install it; the old failures do not halt it again.
    let out = vendor(&srv, &["release", "set", "2.0.0", "--resume"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("active"), "{out:?}");
    for a in &healthy[1..] {
        let out = a.run(&["check"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(a.assert_consistent().0, "2.0.0");
    }
    for a in &failing {
        let out = a.run(&["check"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(a.assert_consistent().0, "1.0.0");
    }
    let r = release(&srv);
    assert_eq!(
        (
            r["paused"].clone(),
            r["attempts"].clone(),
            r["failures"].clone()
        ),
        (json!(false), json!(6), json!(3)),
        "{r}"
    );
    assert!(r.get("halt").is_none(), "{r}");

    // Staff order a healthy box back: its rollback is no failure of the release.
    let out = vendor(&srv, &["device", "action", &serial(2), "rollback"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = healthy[1].run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("rolled back by a staff action"),
        "{out:?}"
    );
    assert_eq!(healthy[1].assert_consistent().0, "1.0.0");
    let out = healthy[1].run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let r = release(&srv);
    assert_eq!(
        (r["attempts"].clone(), r["failures"].clone()),
        (json!(6), json!(3)),
        "{r}"
    );

    // Changing only the guard keeps the plan's stages and progress.
    let out = vendor(
        &srv,
        &["release", "set", "2.0.0", "--min-attempts", "10", "--json"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        (
            v["plan"]["min_attempts"].clone(),
            v["plan"]["max_failure_percent"].clone(),
            v["stage"]["stage"].clone()
        ),
        (json!(10), json!(60), json!(1)),
        "{v}"
    );

    // The counts survive a restart exactly.
    srv.kill9_and_restart();
    let r = release(&srv);
    assert_eq!(
        (r["attempts"].clone(), r["failures"].clone()),
        (json!(6), json!(3)),
        "{r}"
    );

    // A yanked release cannot be resumed (409 from the server, exit 1 from np-vendor).
    let out = vendor(&srv, &["release", "set", "2.0.0", "--yank"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = vendor(&srv, &["release", "set", "2.0.0", "--resume"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("release 2.0.0 is yanked") && out.stderr.contains("(yanked)"),
        "{out:?}"
    );
    let out = vendor(&srv, &["release", "set", "2.0.0", "--rollout", "50"]);
    assert_eq!(out.code, 1, "{out:?}");
}
