//! The attack review's steps against the real np-agent binary: an admin (a member of the
//! inbox's group, not root) attacking the inbox, hostile archives and hostile server
//! answers measured for memory, and file modes under hostile umasks.
//!
//! The inbox tests need root (to run the attacker as `nobody` with `setpriv`), as CI is.

#![allow(clippy::unwrap_used)]

use np_tests::agent::{
    entitlement, good_entries, image_bytes, release, write_bundle, write_good_bundle, Keys,
    TestAgent, SERIAL,
};
use np_tests::{bin, wait_until, Running};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const SECRET: &str = "ROOT-ONLY-SECRET";
/// The group of the inbox in these tests (made if missing).
const GROUP: &str = "np-sec-e2e";
/// The memory bound of the issue: the agent's peak RSS.
const MAX_RSS_KIB: u64 = 48 * 1024;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn group_id() -> u32 {
    let _ = Command::new("groupadd").args(["-f", GROUP]).status();
    let out = Command::new("getent")
        .args(["group", GROUP])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':').nth(2).unwrap().trim().parse().unwrap()
}

/// Runs `script` with `sh -c` as `nobody` whose only group is the inbox's.
fn as_admin(gid: u32, script: &str) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            &format!("--regid={gid}"),
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{o:?}");
}

/// A member of the admins' group (`gid`) copies a good 2.0.0 bundle into the inbox (the
/// shell `prefix` runs first, such as a umask); returns once it is in `processed/applied`.
fn admin_drops_a_good_bundle(a: &TestAgent, gid: u32, prefix: &str) {
    let src = a.dir.path().join("good.tar");
    let img = image_bytes(2, 400_000);
    let k = Keys::load();
    write_good_bundle(&src, &k, &release("2.0.0", 3, &img), 2, "2099-01-01", &img);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = a.state_dir.display();
    ok(&as_admin(
        gid,
        &format!("{prefix}cp {} {s}/inbox/good.tar", src.display()),
    ));
    let applied = a.state("processed/applied/good.tar");
    wait_until("good.tar to be applied", T, || {
        applied.exists().then_some(())
    });
}

fn failed(o: &std::process::Output) {
    assert!(!o.status.success(), "the attacker step worked: {o:?}");
}

/// Starts `np-agent run` under `umask` (the unit's is 0077).
fn daemon_with_umask(a: &TestAgent, umask: &str) -> Running {
    let mut c = Command::new("sh");
    c.args(["-c", &format!("umask {umask}; exec \"$0\" \"$@\"")])
        .arg(bin("np-agent"))
        .arg("--config")
        .arg(&a.config)
        .arg("run")
        .env("NP_AGENT_LOG", "info");
    let mut r = Running::spawn(&mut c);
    r.wait_for("np-agent running", T);
    r
}

/// A box laid out as the package lays it out, for group `gid`: the test folder
/// traversable, the state folder 0710 root:GROUP, the inbox of that group.
fn packaged_box(gid: u32, extra: &str) -> TestAgent {
    let a = TestAgent::offline("2099-01-01", extra, &image_bytes(1, 300_000));
    std::fs::set_permissions(a.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let chown = |p: &Path, mode: u32| {
        rustix::fs::chown(p, None, Some(rustix::fs::Gid::from_raw(gid))).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chown(&a.state_dir, 0o710);
    chown(&a.state("inbox"), 0o3770);
    a
}

fn victim(a: &TestAgent) -> std::path::PathBuf {
    let v = a.dir.path().join("root-only");
    std::fs::write(&v, SECRET).unwrap();
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o600)).unwrap();
    v
}

fn no_secret_in_reasons(a: &TestAgent) {
    for e in std::fs::read_dir(a.state("processed/rejected")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "reason") {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(!text.contains(SECRET), "{} leaks: {text}", p.display());
            assert_eq!(mode_of(&p), 0o640, "{}", p.display());
        }
    }
}

/// The attacker tests run the attacker as `nobody`, which needs root. Outside CI a
/// non-root run says so in one line and skips; in CI (`CI` set) it fails instead, so CI
/// never passes by skipping them.
fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    let why = "needs root to run the attacker as nobody (CI runs as root)";
    assert!(std::env::var_os("CI").is_none(), "cannot run: {why}");
    eprintln!("skipped: {why}");
    false
}

#[test]
fn an_admin_cannot_redirect_the_inbox_or_make_root_read_another_file() {
    if !root_or_skip() {
        return;
    }
    let gid = group_id();
    let a = packaged_box(gid, "");
    let victim = victim(&a);
    let slot_a = std::fs::read(a.state("slots/a/image")).unwrap();
    let mut d = daemon_with_umask(&a, "077");
    let s = a.state_dir.display().to_string();
    assert_eq!(mode_of(&a.state("processed")), 0o750);
    // The processed folders are out of the admin's reach.
    failed(&as_admin(gid, &format!("mv {s}/processed {s}/p2")));
    failed(&as_admin(
        gid,
        &format!("mv {s}/processed/rejected {s}/processed/r2"),
    ));
    failed(&as_admin(
        gid,
        &format!("ln -s {} {s}/processed/rejected/x", victim.display()),
    ));
    failed(&as_admin(gid, &format!("touch {s}/processed/applied/x")));
    // The old attack: links in the inbox where the agent used to move files to.
    let v = victim.display();
    ok(&as_admin(
        gid,
        &format!("ln -s {} {s}/inbox/applied && ln -s {v} {s}/inbox/evil.tar && mkfifo {s}/inbox/pipe.tar", a.dir.path().display()),
    ));
    for name in ["applied", "evil.tar", "pipe.tar"] {
        let reason = a.state(&format!("processed/rejected/{name}.reason"));
        wait_until(&format!("{name} to be moved aside"), T, || {
            reason.exists().then_some(())
        });
        let text = std::fs::read_to_string(&reason).unwrap();
        assert!(text.starts_with("not_regular_file: "), "{text}");
        // The admins' group reads the reason, though the daemon runs with umask 077.
        ok(&as_admin(gid, &format!("cat {}", reason.display())));
    }
    assert!(
        std::fs::symlink_metadata(a.state("processed/rejected/evil.tar"))
            .unwrap()
            .is_symlink()
    );
    // A bundle a good admin drops is still applied (the fifo did not block the daemon).
    admin_drops_a_good_bundle(&a, gid, "");
    d.wait_for("moved good.tar", T);
    // The bundle leaves the inbox before the staged update is installed.
    d.wait_for("staged update:", T);
    assert_eq!(a.assert_consistent().0, "2.0.0");
    assert_eq!(
        std::fs::read(a.state("slots/a/image")).unwrap(),
        slot_a,
        "the old slot is intact"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), SECRET);
    assert_eq!(mode_of(&victim), 0o600);
    no_secret_in_reasons(&a);
}

#[test]
fn a_link_planted_while_the_bundle_is_installed_is_moved_aside_unread() {
    if !root_or_skip() {
        return;
    }
    let gid = group_id();
    let a = packaged_box(gid, "");
    // The daemon stages an inbox bundle, moves it to processed/applied, then installs it
    // (so a reboot never finds it in the inbox again). The trial waits until the test says
    // go; meanwhile the attacker plants a link under the bundle's name. The race of a swap
    // while the agent reads the bundle is `inbox::tests::an_entry_swapped_while_it_was_read_*`.
    let started = a.dir.path().join("trial-started");
    let go = a.dir.path().join("go");
    let mut cfg = std::fs::read_to_string(&a.config).unwrap();
    cfg.push_str(&format!(
        "[install]\nhealth_command = \"touch {}; for i in $(seq 1 1200); do [ -e {} ] && break; sleep 0.05; done; true\"\n",
        started.display(),
        go.display()
    ));
    std::fs::write(&a.config, cfg).unwrap();
    let victim = victim(&a);
    let mut c = Command::new(bin("np-agent"));
    c.arg("--config")
        .arg(&a.config)
        .arg("run")
        .current_dir(a.dir.path());
    let mut d = Running::spawn(&mut c);
    d.wait_for("np-agent running", T);
    let s = a.state_dir.display().to_string();
    let src = a.dir.path().join("good.tar");
    let img = image_bytes(2, 400_000);
    let k = Keys::load();
    write_good_bundle(&src, &k, &release("2.0.0", 3, &img), 2, "2099-01-01", &img);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(&as_admin(
        gid,
        &format!("cp {} {s}/inbox/good.tar", src.display()),
    ));
    wait_until("the trial to start", T, || started.exists().then_some(()));
    ok(&as_admin(
        gid,
        &format!("ln -s {} {s}/inbox/good.tar", victim.display()),
    ));
    std::fs::write(&go, b"").unwrap();
    let reason = a.state("processed/rejected/good.tar.reason");
    wait_until("the planted link to be moved aside", T, || {
        reason.exists().then_some(())
    });
    let text = std::fs::read_to_string(&reason).unwrap();
    assert!(text.starts_with("not_regular_file: "), "{text}");
    assert!(
        std::fs::symlink_metadata(a.state("processed/rejected/good.tar"))
            .unwrap()
            .is_symlink()
    );
    assert!(
        std::fs::symlink_metadata(a.state("processed/applied/good.tar"))
            .unwrap()
            .is_file(),
        "the bundle that was read is the one in applied"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), SECRET);
    assert_eq!(
        a.assert_consistent().0,
        "2.0.0",
        "the bundle that was read was applied"
    );
    no_secret_in_reasons(&a);
}

#[test]
fn a_copy_in_progress_is_not_taken_and_a_part_file_is_ignored() {
    let a = TestAgent::offline("2099-01-01", "", &image_bytes(1, 300_000));
    let mut d = a.daemon();
    let src = a.dir.path().join("good.tar");
    let img = image_bytes(2, 400_000);
    let k = Keys::load();
    write_good_bundle(&src, &k, &release("2.0.0", 3, &img), 2, "2099-01-01", &img);
    let bytes = std::fs::read(&src).unwrap();
    // First half copied and closed: truncated but young, so it waits in the inbox.
    let dest = a.state("inbox/good.tar");
    std::fs::write(&dest, &bytes[..bytes.len() / 2]).unwrap();
    d.wait_for("waiting for the rest of the copy", T);
    assert!(dest.exists());
    assert!(!a.state("processed/rejected/good.tar").exists());
    // The rest arrives: applied.
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&dest)
            .unwrap();
        f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    }
    let applied = a.state("processed/applied/good.tar");
    wait_until("good.tar to be applied", T, || {
        applied.exists().then_some(())
    });
    // The bundle leaves the inbox once staged; the install that follows is logged.
    d.wait_for("staged update:", T);
    assert_eq!(a.assert_consistent().0, "2.0.0");
    assert_eq!(a.status()["phase"], "idle");
    // A `.part` copy is left alone until renamed.
    let part = a.state("inbox/next.tar.part");
    std::fs::write(&part, b"not yet").unwrap();
    std::thread::sleep(Duration::from_millis(600)); // two inbox polls (250 ms): nothing happens
    assert!(part.exists());
    std::fs::rename(&part, a.state("inbox/next.tar")).unwrap();
    let r = a.state("processed/rejected/next.tar.reason");
    wait_until("next.tar to be rejected", T, || r.exists().then_some(()));
    // A refused bundle leaves the agent idle, not `downloading`.
    assert_eq!(a.status()["phase"], "idle");
}

/// Runs `np-agent ARGS` under `/usr/bin/time -f %M`; returns its output and peak RSS (KiB).
fn measured(a: &TestAgent, args: &[&str]) -> (np_tests::Output, u64) {
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "peak-rss-kib %M"])
        .arg(bin("np-agent"))
        .arg("--config")
        .arg(&a.config)
        .args(args);
    let out = np_tests::run(&mut c, T);
    let kib = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no measurement: {out:?}"));
    (out, kib)
}

#[test]
fn a_300_mib_pax_header_keeps_apply_under_48_mib() {
    let a = TestAgent::offline("2099-01-01", "", &image_bytes(1, 300_000));
    let path = a.dir.path().join("hostile.tar");
    // One PAX header block announcing 300 MiB of extension records, and the 300 MiB
    // themselves (a sparse file): the old reader buffered them whole.
    let mut h = [0u8; 512];
    h[..9].copy_from_slice(b"PaxHeader");
    h[100..107].copy_from_slice(b"0000644");
    h[124..135].copy_from_slice(format!("{:011o}", 300u64 << 20).as_bytes());
    h[156] = b'x';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&h).unwrap();
        f.set_len(512 + (300 << 20) + 1024).unwrap();
    }
    let (out, kib) = measured(&a, &["apply", path.to_str().unwrap()]);
    eprintln!("np-agent apply of a 300 MiB PAX header: peak RSS {kib} KiB");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("PAX extension header is 314572800 bytes"),
        "{out:?}"
    );
    assert!(kib < MAX_RSS_KIB, "peak RSS {kib} KiB");
    assert_eq!(a.status()["phase"], "idle");
}

#[test]
fn a_300_mib_server_answer_keeps_check_under_48_mib() {
    use std::io::{BufRead as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // A hostile server: answers the check-in with 300 MiB and no Content-Length.
    let server = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut r = std::io::BufReader::new(conn.try_clone().unwrap());
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                break;
            }
        }
        let mut w = conn;
        let _ = w.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        );
        let chunk = vec![b' '; 1 << 16];
        for _ in 0..(300 << 20) / chunk.len() {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let a = TestAgent::offline(
        "2099-01-01",
        &format!("[server]\nurl = \"{url}\""),
        &image_bytes(1, 300_000),
    );
    let key = a.dir.path().join("device.key");
    assert_eq!(a.run(&["keygen", "--out", key.to_str().unwrap()]).code, 0);
    let (out, kib) = measured(&a, &["check"]);
    eprintln!("np-agent check against a 300 MiB answer: peak RSS {kib} KiB");
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("larger than 1048576 bytes"), "{out:?}");
    assert!(kib < MAX_RSS_KIB, "peak RSS {kib} KiB");
    server.join().unwrap();
}

#[test]
fn keys_and_state_get_our_modes_whatever_the_umask() {
    for umask in ["000", "077"] {
        let k = Keys::load();
        let a = TestAgent::new(SERIAL, &k.root.public_key().to_base64(), "");
        let key = a.dir.path().join("device.key");
        let script = format!("umask {umask}; exec \"$0\" \"$@\"");
        let o = Command::new("sh")
            .args(["-c", &script])
            .arg(bin("np-agent"))
            .args(["keygen", "--out"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        assert_eq!(mode_of(&key), 0o600, "umask {umask}");
        // keygen never writes over an existing file (or through a link).
        let again = a.run(&["keygen", "--out", key.to_str().unwrap()]);
        assert_eq!(again.code, 2, "{again:?}");
        let img = image_bytes(1, 1000);
        let p = |n: &str| a.dir.path().join(n);
        std::fs::write(p("m.json"), k.release(&release("1.0.0", 2, &img)).to_json()).unwrap();
        std::fs::write(p("k.json"), k.keyring(1).to_json()).unwrap();
        std::fs::write(
            p("e.json"),
            k.online(&entitlement(SERIAL, 1, "2099-01-01")).to_json(),
        )
        .unwrap();
        std::fs::write(p("i.img"), &img).unwrap();
        let o = Command::new("sh")
            .args(["-c", &script])
            .arg(bin("np-agent"))
            .arg("--config")
            .arg(&a.config)
            .args(["provision", "--manifest"])
            .args([
                p("m.json"),
                "--image".into(),
                p("i.img"),
                "--keyring".into(),
                p("k.json"),
                "--entitlement".into(),
                p("e.json"),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        for f in [
            "state.json",
            "trust/keyring.json",
            "trust/entitlement.json",
            "trust/time_floor.json",
            "slots/a/image",
            "slots/a/manifest.json",
        ] {
            assert_eq!(mode_of(&a.state(f)), 0o600, "{f} under umask {umask}");
        }
        assert_eq!(mode_of(&a.state("inbox")), 0o3770, "umask {umask}");
        assert_eq!(
            mode_of(&a.state("processed/rejected")),
            0o750,
            "umask {umask}"
        );
        let names: Vec<String> = std::fs::read_dir(a.state("trust"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }
}

/// Runs `np-agent ARGS` under `faketime` at `at` (a box whose clock battery died).
fn at_time(a: &TestAgent, at: &str, args: &[&str]) -> np_tests::Output {
    let mut c = Command::new("faketime");
    c.arg(at)
        .arg(bin("np-agent"))
        .arg("--config")
        .arg(&a.config)
        .args(args)
        .env("NP_AGENT_LOG", "info");
    np_tests::run(&mut c, T)
}

fn faketime_or_skip() -> bool {
    let there = Command::new("faketime")
        .args(["2001-01-01 00:00:00", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !there {
        let why = "needs faketime (the package faketime)";
        assert!(std::env::var_os("CI").is_none(), "cannot run: {why}");
        eprintln!("skipped: {why}");
    }
    there
}

#[test]
fn a_future_document_never_poisons_the_floor_and_rotation_recovers_a_poisoned_box() {
    use np_common::docs::Role;
    use np_common::keyring::{KeyEntry, Keyring, RootSpec};
    if !faketime_or_skip() {
        return;
    }
    let k = Keys::load();
    let a = TestAgent::offline("2099-01-01", "", &image_bytes(1, 300_000));
    let floor = a.status()["time_floor"].clone();
    assert_eq!(floor, "2025-06-01T00:00:00Z");
    let dead_clock = "2001-01-01 00:00:00";
    // 1. A dead clock and an entitlement from 2199 (a wrong server clock, or a stolen
    //    online key): refused as from the future, and the floor does not move.
    let img = image_bytes(2, 4096);
    let r = release("1.1.0", 2, &img);
    let mut far = entitlement(SERIAL, 5, "2099-01-01");
    far.issued_at = "2199-01-01T00:00:00Z".parse().unwrap();
    let future = a.dir.path().join("future.tar");
    write_bundle(&future, &good_entries(&k, &r, &far, &img), false);
    let out = at_time(&a, dead_clock, &["apply", future.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("is dated 2199-01-01T00:00:00Z, more than 366 days ahead"),
        "{out:?}"
    );
    assert_eq!(a.status()["time_floor"], floor);
    // 2. A bundle refused by a rule (a lapsed warranty) leaves the floor too, though
    //    its entitlement was genuine and of today.
    let mut lapsed = entitlement(SERIAL, 6, "2025-12-01");
    lapsed.issued_at = "2026-01-01T00:00:00Z".parse().unwrap();
    let refused = a.dir.path().join("lapsed.tar");
    write_bundle(&refused, &good_entries(&k, &r, &lapsed, &img), false);
    let out = at_time(&a, dead_clock, &["apply", refused.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("warranty_expired"), "{out:?}");
    assert_eq!(a.status()["time_floor"], floor);
    assert_eq!(a.status()["version"], "1.0.0");
    // 3. A box an older agent let poison (the online key's part of the floor in 2199):
    //    a root-signed keyring that drops that key and expires in 2099 is taken, and
    //    the box works again.
    let online = k.online.public_key().key_id();
    std::fs::write(
        a.state("trust/time_floor.json"),
        serde_json::json!({
            "keys": { online.to_string(): "2199-01-01T00:00:00Z" },
            "installed": "2025-06-01T00:00:00Z",
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(a.status()["time_floor"], "2199-01-01T00:00:00Z");
    let online2 = np_common::SecretKey::from_seed(&[0x42; 32]);
    let entry = |sk: &np_common::SecretKey, roles: Vec<Role>| KeyEntry {
        keyid: sk.public_key().key_id(),
        public_key: sk.public_key(),
        roles,
    };
    let v2 = Keyring {
        version: 2,
        expires: "2099-01-01T00:00:00Z".parse().unwrap(),
        root: RootSpec::pinned(vec![k.root.public_key()]),
        keys: vec![
            entry(&online2, vec![Role::Entitlement, Role::Time]),
            entry(&k.release, vec![Role::Release]),
        ],
    }
    .sign(&[&k.root]);
    let mut fresh = entitlement(SERIAL, 1, "2099-01-01");
    fresh.issued_at = "2026-11-29T00:00:00Z".parse().unwrap();
    let rotated = a.dir.path().join("rotated.tar");
    write_bundle(
        &rotated,
        &[
            ("keyring.json".into(), Some(v2.to_json())),
            ("manifest.json".into(), Some(k.release(&r).to_json())),
            (
                "entitlement.json".into(),
                Some(np_common::docs::sign(&fresh, &online2).to_json()),
            ),
            ("image".into(), Some(img.clone())),
        ],
        false,
    );
    let out = a.run(&["apply", rotated.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let s = a.status();
    assert_eq!(s["version"], "1.1.0", "{s}");
    assert!(
        s["time_floor"].as_str().unwrap() < "2027-01-01",
        "the rotated-out key's part is forgotten: {s}"
    );
}

#[test]
fn what_an_admin_drops_becomes_roots_and_its_name_cannot_forge_a_log_line() {
    use std::os::unix::fs::MetadataExt as _;
    if !root_or_skip() {
        return;
    }
    let gid = group_id();
    let a = packaged_box(gid, "");
    let mut d = daemon_with_umask(&a, "077");
    let s = a.state_dir.display().to_string();
    // A folder, and a bad bundle whose name carries a forged log line.
    ok(&as_admin(
        gid,
        &format!(
            "umask 000; mkdir {s}/inbox/d.tar && printf 'not a bundle' > \"{s}/inbox/$(printf 'bad.tar\\nINFO forged')\""
        ),
    ));
    let forged = "bad.tar\nINFO forged";
    for name in ["d.tar", forged] {
        let reason = a.state(&format!("processed/rejected/{name}.reason"));
        wait_until(&format!("{name:?} to be moved aside"), T, || {
            reason.exists().then_some(())
        });
    }
    d.wait_for("moved bad.tar\\nINFO forged to", T);
    // A good bundle, applied.
    admin_drops_a_good_bundle(&a, gid, "umask 000; ");
    for (rel, mode) in [
        ("processed/applied/good.tar", 0o640),
        ("processed/rejected/d.tar", 0o750),
        (&format!("processed/rejected/{forged}"), 0o640),
    ] {
        let md = std::fs::symlink_metadata(a.state(rel)).unwrap();
        assert_eq!((md.uid(), md.gid()), (0, gid), "{rel:?}");
        assert_eq!(md.mode() & 0o7777, mode, "{rel:?}");
    }
    // The admin reads what was dropped, and writes nothing in processed/.
    ok(&as_admin(
        gid,
        &format!("cat {s}/processed/applied/good.tar >/dev/null"),
    ));
    failed(&as_admin(
        gid,
        &format!("touch {s}/processed/rejected/d.tar/x"),
    ));
    failed(&as_admin(
        gid,
        &format!("echo x >> {s}/processed/applied/good.tar"),
    ));
    d.kill();
    assert!(
        !d.seen.iter().any(|l| l.starts_with("INFO forged")),
        "{:#?}",
        d.seen
    );
}
