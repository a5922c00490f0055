//! np-agent against the real np-server on 127.0.0.1: upgrades under warranty, refusal
//! after expiry and upgrade after reinstatement, trial rollback, manual and remote
//! rollback, a wrong device key, and bad transfers (cut, corrupt, oversize) through a
//! proxy.

#![allow(clippy::unwrap_used)]

use np_common::Envelope;
use np_tests::agent::{image_bytes, TestAgent, SERIAL};
use np_tests::proxy::{Mode, Proxy};
use np_tests::server::TestServer;
use np_tests::{wait_until, Running};
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) struct Online {
    pub(crate) srv: TestServer,
    pub(crate) agent: TestAgent,
    pub(crate) proxy: Option<Proxy>,
}

pub(crate) fn publish(
    srv: &TestServer,
    version: &str,
    security_version: u64,
    image: &[u8],
) -> Envelope {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("image");
    std::fs::write(&p, image).unwrap();
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
    serde_json::from_value(rel["manifest"].clone()).unwrap()
}

pub(crate) fn v1() -> Vec<u8> {
    image_bytes(11, 200_000)
}

pub(crate) fn v2() -> Vec<u8> {
    image_bytes(12, 400_000)
}

/// A server, a box registered with `purchase_date` and provisioned with 1.0.0, and 2.0.0
/// published. With `proxy`, the box talks to the server through a [`Proxy`].
pub(crate) fn setup(purchase_date: &str, install: &str, proxy: bool) -> Online {
    setup_with(purchase_date, install, proxy, "10s")
}

fn setup_with(purchase_date: &str, install: &str, proxy: bool, stall: &str) -> Online {
    let srv = TestServer::start();
    let proxy = proxy.then(|| Proxy::start(&srv.url));
    let url = proxy
        .as_ref()
        .map(|p| p.url.clone())
        .unwrap_or_else(|| srv.url.clone());
    let extra = format!("[server]\nurl = \"{url}\"\ncheck_interval = \"1h\"\nstall_timeout = \"{stall}\"\n\n[install]\n{install}\n");
    let agent = TestAgent::new(SERIAL, &srv.root_public_key, &extra);
    let key_path = agent.dir.path().join("device.key");
    let out = agent.run(&["keygen", "--out", key_path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let public = out.stdout.trim().to_owned();
    let (status, d) = srv.post_json(
        "/api/v1/devices",
        json!({"serial": SERIAL, "purchase_date": purchase_date, "customer": "ACME", "device_key": public}),
    );
    assert_eq!(status, 201, "{d}");
    let manifest = publish(&srv, "1.0.0", 1, &v1());
    let (status, keyring) = srv.get_json("/api/v1/keyring");
    assert_eq!(status, 200, "{keyring}");
    let (status, ent) = srv.get_json(&format!("/api/v1/devices/{SERIAL}/entitlement"));
    assert_eq!(status, 200, "{ent}");
    let keyring: Envelope = serde_json::from_value(keyring).unwrap();
    let ent: Envelope = serde_json::from_value(ent).unwrap();
    agent.provision(&keyring, &manifest, &v1(), Some(&ent));
    publish(&srv, "2.0.0", 2, &v2());
    Online { srv, agent, proxy }
}

pub(crate) fn today() -> String {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

pub(crate) fn device(o: &Online) -> Value {
    let (status, d) = o.srv.get_json(&format!("/api/v1/devices/{SERIAL}"));
    assert_eq!(status, 200, "{d}");
    d
}

#[test]
fn a_covered_box_upgrades_and_reports() {
    let o = setup(&today(), "", false);
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("2.0.0 installed and committed"),
        "{out:?}"
    );
    let (v, bytes) = o.agent.assert_consistent();
    assert_eq!((v.as_str(), bytes), ("2.0.0", v2()));
    let st = o.agent.status();
    assert_eq!(st["previous_version"], "1.0.0");
    assert_eq!(st["entitlement_status"], "active");
    assert!(st["last_check"].is_string(), "{st}");
    // 2.0.0 runs now: nothing newer is available.
    assert!(st["update_available"].is_null(), "{st}");
    assert_eq!(st["last_result"]["outcome"], "installed", "{st}");
    let (status, events) = o.srv.get_json(&format!("/api/v1/devices/{SERIAL}/events"));
    assert_eq!(status, 200, "{events}");
    assert!(events.to_string().contains("commit"), "{events}");
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("up to date"), "{out:?}");
    assert_eq!(device(&o)["version"], "2.0.0");
}

#[test]
fn an_expired_box_is_refused_until_reinstated() {
    let o = setup("2024-01-10", "", false);
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("warranty_expired") && out.stderr.contains("ended on 2025-01-10"),
        "{out:?}"
    );
    let st = o.agent.status();
    assert_eq!(st["version"], "1.0.0");
    assert_eq!(st["update_available"], "2.0.0");
    assert_eq!(st["coverage_end"], "2025-01-10");
    assert_eq!(st["last_result"]["outcome"], "refused");
    let (status, e) = o.srv.post_json(
        &format!("/api/v1/devices/{SERIAL}/extensions"),
        json!({"years": 1, "reinstate": true}),
    );
    assert!(status == 200 || status == 201, "{e}");
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(o.agent.assert_consistent().0, "2.0.0");
    assert_ne!(o.agent.status()["coverage_end"], "2025-01-10");
}

#[test]
fn a_failing_health_check_rolls_back_and_is_not_retried() {
    let o = setup(&today(), "health_command = \"exit 3\"", false);
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("rolled back"), "{out:?}");
    let (v, bytes) = o.agent.assert_consistent();
    assert_eq!((v.as_str(), bytes), ("1.0.0", v1()));
    // Not installed again automatically: the agent skips it (or the server, told of the
    // rollback at check-in, no longer offers it).
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("not installed again automatically")
            || out.stdout.contains("not offered"),
        "{out:?}"
    );
    assert_eq!(o.agent.assert_consistent().0, "1.0.0");
    let (status, events) = o.srv.get_json(&format!("/api/v1/devices/{SERIAL}/events"));
    assert_eq!(status, 200);
    assert!(events.to_string().contains("rollback"), "{events}");
}

#[test]
fn manual_and_remote_rollback() {
    let o = setup(&today(), "", false);
    assert_eq!(o.agent.run(&["check"]).code, 0);
    let out = o.agent.run(&["rollback"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(o.agent.assert_consistent().0, "1.0.0");
    // The next check-in tells the server; 2.0.0 is not installed again automatically.
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(o.agent.assert_consistent().0, "1.0.0");
    assert_eq!(device(&o)["version"], "1.0.0");
    // A staff upgrade installs the version the box rolled back from.
    let (status, a) = o.srv.post_json(
        &format!("/api/v1/devices/{SERIAL}/actions"),
        json!({"action": "upgrade", "version": "2.0.0"}),
    );
    assert!(status == 200 || status == 201, "{a}");
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(o.agent.assert_consistent().0, "2.0.0");
    // A staff rollback switches back to the previous slot.
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
    let (v, bytes) = o.agent.assert_consistent();
    assert_eq!((v.as_str(), bytes), ("1.0.0", v1()));
}

#[test]
fn a_wrong_device_key_is_turned_away() {
    let o = setup(&today(), "", false);
    let key = o.agent.dir.path().join("device.key");
    std::fs::remove_file(&key).unwrap();
    let out = o.agent.run(&["keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(out.code, 0);
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("turned the box away (401"), "{out:?}");
    assert_eq!(o.agent.assert_consistent().0, "1.0.0");
}

#[test]
fn a_cut_download_resumes_with_range() {
    let o = setup(&today(), "", true);
    let p = o.proxy.as_ref().unwrap();
    p.set(Mode::CutOnce(150_000));
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let (v, bytes) = o.agent.assert_consistent();
    assert_eq!((v.as_str(), bytes), ("2.0.0", v2()));
    let reqs = p.requests();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("GET /api/v1/device/blobs/") && r.ends_with("bytes=150000-")),
        "no Range request after the cut: {reqs:?}"
    );
}

#[test]
fn corrupt_or_oversize_bytes_never_reach_a_slot() {
    for (mode, says) in [(Mode::Corrupt, "SHA-256"), (Mode::Oversize, "longer than")] {
        let o = setup(&today(), "", true);
        o.proxy.as_ref().unwrap().set(mode);
        let out = o.agent.run(&["check"]);
        assert_eq!(out.code, 1, "{mode:?}: {out:?}");
        assert!(out.stderr.contains(says), "{mode:?}: {out:?}");
        let (v, bytes) = o.agent.assert_consistent();
        assert_eq!((v.as_str(), bytes), ("1.0.0", v1()));
        assert!(!o.agent.state("slots/b/manifest.json").exists(), "{mode:?}");
        assert!(
            !o.agent.state("slots/b/image").exists(),
            "{mode:?}: partial bytes kept"
        );
        assert_eq!(o.agent.status()["phase"], "idle");
    }
}

#[test]
fn a_stalled_download_times_out_and_resumes() {
    let o = setup_with(&today(), "", true, "1s");
    let p = o.proxy.as_ref().unwrap();
    p.set(Mode::StallOnce(100_000));
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(o.agent.assert_consistent().1, v2());
    let reqs = p.requests();
    assert!(
        reqs.iter().any(|r| r.ends_with("bytes=100000-")),
        "{reqs:?}"
    );
}

#[test]
fn a_download_killed_mid_way_resumes_after_a_restart() {
    let o = setup(&today(), "", true);
    let p = o.proxy.as_ref().unwrap();
    p.set(Mode::StallOnce(100_000));
    let mut check = Running::spawn(&mut o.agent.cmd(&["check"]));
    let image = o.agent.state("slots/b/image");
    wait_until("100000 bytes in slot b", Duration::from_secs(30), || {
        (std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0) >= 100_000).then_some(())
    });
    check.kill();
    assert_eq!(o.agent.status()["phase"], "downloading");
    assert_eq!(o.agent.assert_consistent().0, "1.0.0");
    let out = o.agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(o.agent.assert_consistent().1, v2());
    let reqs = p.requests();
    assert!(
        reqs.iter().any(|r| r.ends_with("bytes=100000-")),
        "{reqs:?}"
    );
}

#[test]
fn the_daemon_checks_in_and_upgrades_then_stops_on_sigterm() {
    let o = setup(&today(), "", false);
    let mut d = o.agent.daemon();
    d.wait_for("committed", Duration::from_secs(60));
    assert_eq!(o.agent.assert_consistent().0, "2.0.0");
    let pid = d.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    d.wait_for("np-agent stopped", Duration::from_secs(30));
}

#[test]
fn with_auto_off_an_update_is_downloaded_once_and_installed_on_demand() {
    let o = setup(&today(), "auto = false", true);
    for _ in 0..2 {
        let out = o.agent.run(&["check"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("2.0.0 staged"), "{out:?}");
        let st = o.agent.status();
        assert_eq!(
            (st["phase"].as_str(), st["version"].as_str()),
            (Some("staged"), Some("1.0.0"))
        );
    }
    let blobs = o.proxy.as_ref().unwrap().requests();
    let gets = blobs
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/device/blobs/"))
        .count();
    assert_eq!(gets, 1, "{blobs:?}");
    let out = o.agent.run(&["install"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(o.agent.assert_consistent().1, v2());
}
