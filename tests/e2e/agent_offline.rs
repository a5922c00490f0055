//! np-agent offline, with no server: bundles applied by `apply` and through the inbox,
//! trial and rollback, staged installs, and power cuts (SIGKILL) at many points.

#![allow(clippy::unwrap_used)]

use np_tests::agent::{
    entitlement, good_entries, image_bytes, release, write_bundle, write_good_bundle, Keys,
    TestAgent, SERIAL,
};
use np_tests::{wait_until, Running};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn old_image() -> Vec<u8> {
    image_bytes(1, 300_000)
}

fn new_image() -> Vec<u8> {
    image_bytes(2, 400_000)
}

/// A good 2.0.0 bundle for the test box at `path`.
fn good_bundle(path: &std::path::Path, gzip: bool) {
    let k = Keys::load();
    let img = new_image();
    write_bundle(
        path,
        &good_entries(
            &k,
            &release("2.0.0", 3, &img),
            &entitlement(SERIAL, 2, "2099-01-01"),
            &img,
        ),
        gzip,
    );
}

#[test]
fn apply_installs_a_bundle_and_status_reports_it() {
    for gzip in [false, true] {
        let a = TestAgent::offline("2099-01-01", "", &old_image());
        let st = a.status();
        assert_eq!(st["version"], "1.0.0");
        assert_eq!(st["phase"], "idle");
        assert_eq!(st["previous_version"], serde_json::Value::Null);
        let b = a.dir.path().join("b.tar");
        good_bundle(&b, gzip);
        let out = a.run(&["apply", b.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout.contains("2.0.0 installed and committed"),
            "{out:?}"
        );
        // --config after the subcommand works too.
        let out = np_tests::run(
            std::process::Command::new(np_tests::bin("np-agent"))
                .args(["status", "--json", "--config"])
                .arg(&a.config),
            T,
        );
        assert_eq!(out.code, 0, "{out:?}");
        let st: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        for key in [
            "serial",
            "model",
            "version",
            "security_version",
            "active_slot",
            "previous_version",
            "phase",
            "coverage_end",
            "entitlement_status",
            "time_floor",
            "last_check",
            "last_result",
            "update_available",
        ] {
            assert!(st.get(key).is_some(), "status lacks {key}: {st}");
        }
        assert_eq!(st["version"], "2.0.0");
        assert_eq!(st["security_version"], 3);
        assert_eq!(st["active_slot"], "b");
        assert_eq!(st["previous_version"], "1.0.0");
        assert_eq!(st["coverage_end"], "2099-01-01");
        assert_eq!(st["entitlement_status"], "active");
        assert_eq!(st["last_result"]["outcome"], "installed");
        assert_eq!(a.assert_consistent().1, new_image());
        // The same bundle again is not newer.
        let out = a.run(&["apply", b.to_str().unwrap()]);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("not_newer"), "{out:?}");
    }
}

#[test]
fn refusals_name_their_rule_and_leave_the_running_slot_alone() {
    let a = TestAgent::offline("2026-03-01", "", &old_image());
    let b = a.dir.path().join("b.tar");
    good_bundle(&b, false);
    // The bundle's own entitlement also ended on 2026-03-01 (sequence 2 replaces 1).
    let k = Keys::load();
    let img = new_image();
    write_good_bundle(&b, &k, &release("2.0.0", 3, &img), 2, "2026-03-01", &img);
    let out = a.run(&["apply", b.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("warranty_expired") && out.stderr.contains("ended on 2026-03-01"),
        "{out:?}"
    );
    assert_eq!(a.assert_consistent().1, old_image());
    assert_eq!(a.status()["last_result"]["outcome"], "refused");

    let mut bad = img.clone();
    bad[1000] ^= 0xff;
    let a = TestAgent::offline("2099-01-01", "", &old_image());
    write_bundle(
        &b,
        &good_entries(
            &k,
            &release("2.0.0", 3, &img),
            &entitlement(SERIAL, 2, "2099-01-01"),
            &bad,
        ),
        true,
    );
    let out = a.run(&["apply", b.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("SHA-256"), "{out:?}");
    assert_eq!(a.assert_consistent().1, old_image());
    assert!(!a.state("slots/b/manifest.json").exists());

    let out = a.run(&["apply", a.dir.path().join("missing.tar").to_str().unwrap()]);
    assert_eq!(out.code, 3, "{out:?}");
    let out = a.run(&["frobnicate"]);
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn a_failing_health_check_rolls_back_and_the_version_is_remembered() {
    let a = TestAgent::offline(
        "2099-01-01",
        "[install]\nhealth_command = \"echo unhealthy >&2; exit 1\"",
        &old_image(),
    );
    let b = a.dir.path().join("b.tar.gz");
    good_bundle(&b, true);
    let out = a.run(&["apply", b.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("rolled back") && out.stderr.contains("unhealthy"),
        "{out:?}"
    );
    let st = a.status();
    assert_eq!(st["version"], "1.0.0");
    assert_eq!(st["active_slot"], "a");
    assert_eq!(st["last_result"]["outcome"], "rolled_back");
    assert_eq!(st["rolled_back_from"][0], "2.0.0");
    assert_eq!(a.assert_consistent().1, old_image());
}

#[test]
fn manual_rollback_and_staged_install() {
    let a = TestAgent::offline("2099-01-01", "[install]\nauto = false", &old_image());
    let b = a.dir.path().join("b.tar");
    good_bundle(&b, false);
    let out = a.run(&["apply", b.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("staged"), "{out:?}");
    assert_eq!(a.status()["phase"], "staged");
    assert_eq!(a.status()["version"], "1.0.0");
    let out = a.run(&["commit"]);
    assert_eq!(out.code, 1, "nothing on trial: {out:?}");
    let out = a.run(&["install"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(a.assert_consistent().0, "2.0.0");
    let out = a.run(&["install"]);
    assert_eq!(out.code, 1, "nothing staged: {out:?}");

    let out = a.run(&["rollback"]);
    assert_eq!(out.code, 0, "{out:?}");
    let st = a.status();
    assert_eq!(st["version"], "1.0.0");
    assert_eq!(st["last_result"]["outcome"], "rolled_back");
    assert_eq!(a.assert_consistent().1, old_image());
    let out = a.run(&["rollback"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no previous image"), "{out:?}");
}

fn wait_moved(a: &TestAgent, rel: &str) {
    let p = a.state(rel);
    wait_until(&format!("{} to appear", p.display()), T, || {
        p.exists().then_some(())
    });
}

#[test]
fn the_inbox_takes_complete_files_only_and_never_deletes() {
    let a = TestAgent::offline("2099-01-01", "", &old_image());
    let mut d: Running = a.daemon();
    // A bad bundle first.
    std::fs::write(
        a.state("inbox/junk.tar"),
        b"this is not a tar archive at all",
    )
    .unwrap();
    wait_moved(&a, "processed/rejected/junk.tar.reason");
    assert!(a.state("processed/rejected/junk.tar").exists());
    let reason = std::fs::read_to_string(a.state("processed/rejected/junk.tar.reason")).unwrap();
    assert!(!reason.trim().is_empty());
    // A good one, copied in slowly (chunks written faster than the agent polls).
    let src = a.dir.path().join("good.tar");
    good_bundle(&src, false);
    let bytes = std::fs::read(&src).unwrap();
    let dest = a.state("inbox/good.tar");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&dest).unwrap();
        for chunk in bytes.chunks(bytes.len() / 10 + 1) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    wait_moved(&a, "processed/applied/good.tar");
    d.wait_for("applied", T);
    // The bundle leaves the inbox before the staged update is installed.
    d.wait_for("staged update:", T);
    assert!(
        !a.state("processed/rejected/good.tar").exists(),
        "a partial copy was taken"
    );
    assert_eq!(a.assert_consistent().0, "2.0.0");
    assert!(!dest.exists());
    sigterm_stops_cleanly(&mut d);
}

/// Stops the daemon with SIGTERM and checks it stops cleanly.
fn sigterm_stops_cleanly(d: &mut Running) {
    let pid = d.child.id().to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    d.wait_for("np-agent stopped", T);
    let code = wait_until("the daemon to exit", T, || {
        d.child.try_wait().ok().flatten()
    });
    assert!(code.success(), "{code:?}");
}

/// SIGKILL `apply` at many points: the box always runs the old or the new image with
/// bytes that match its manifest, and a later apply completes.
#[test]
fn power_cut_at_many_points_leaves_old_or_new() {
    let k = Keys::load();
    let old = image_bytes(3, 4 << 20);
    let img = image_bytes(4, 24 << 20);
    let marker = "trial-started";
    // The health check says when the trial runs, then takes a moment.
    let extra = format!("[install]\nhealth_command = \"touch {marker}; sleep 0.3\"");
    type Point = (&'static str, fn(&TestAgent) -> bool);
    let points: [Point; 6] = [
        ("at once", |_| true),
        ("slot b marked invalid", |a| a.state("slots/b").exists()),
        ("first bytes in slot b", |a| {
            std::fs::metadata(a.state("slots/b/image"))
                .map(|m| m.len() > 0)
                .unwrap_or(false)
        }),
        ("half the image in slot b", |a| {
            std::fs::metadata(a.state("slots/b/image"))
                .map(|m| m.len() > 12 << 20)
                .unwrap_or(false)
        }),
        ("slot b valid", |a| {
            a.state("slots/b/manifest.json").exists()
        }),
        ("trial running", |a| {
            a.dir.path().join("trial-started").exists()
        }),
    ];
    for (what, reached) in points {
        let a = TestAgent::offline("2099-01-01", &extra, &old);
        let b = a.dir.path().join("b.tar");
        write_good_bundle(&b, &k, &release("2.0.0", 3, &img), 2, "2099-01-01", &img);
        let mut cmd = a.cmd(&["apply", b.to_str().unwrap()]);
        cmd.current_dir(a.dir.path());
        let mut p = Running::spawn(&mut cmd);
        let hit = wait_until(&format!("{what} or the end of apply"), T, || {
            if reached(&a) {
                Some(true)
            } else if p.child.try_wait().ok().flatten().is_some() {
                Some(false)
            } else {
                None
            }
        });
        p.kill();
        eprintln!("power cut {what}: reached = {hit}");
        let (v, bytes) = a.assert_consistent();
        match v.as_str() {
            "1.0.0" => assert_eq!(bytes, old),
            "2.0.0" => assert_eq!(bytes, img),
            other => panic!("runs {other}"),
        }
        let out = np_tests::run(&mut cmd, T);
        assert!(
            out.code == 0 || (out.code == 1 && out.stderr.contains("not_newer")),
            "after a cut {what}, a later apply fails: {out:?}"
        );
        let (v, bytes) = a.assert_consistent();
        assert_eq!(v, "2.0.0", "after a cut {what}");
        assert_eq!(bytes, img);
        assert_eq!(a.status()["phase"], "idle");
    }
}
