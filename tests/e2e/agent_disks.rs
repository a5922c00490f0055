//! np-agent with its slots on real block devices (loop devices, where this machine lets
//! the test attach them) and on fixed-size files, driving the GRUB boot loader's
//! environment block: install, commit, rollback, a boot-loader fallback, `slot_too_small`.
//! The VM test (`tests/vm/run.sh`, run by `vm_test_boots_grub_and_survives_power_cuts`)
//! takes the same path through a real GRUB.

#![allow(clippy::unwrap_used)]

use np_tests::agent::{
    entitlement, good_entries, image_bytes, release, write_bundle, Keys, TestAgent, SERIAL,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A slot's backing: a loop device over a file, or the file itself.
struct Disk {
    file: PathBuf,
    loopdev: Option<PathBuf>,
}

impl Disk {
    /// A `len`-byte file filled with 0xEE, attached to a loop device when `as_loop`.
    fn new(file: PathBuf, len: usize, as_loop: bool) -> Result<Disk, String> {
        std::fs::write(&file, vec![0xEEu8; len]).unwrap();
        if !as_loop {
            return Ok(Disk {
                file,
                loopdev: None,
            });
        }
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&file)
            .output()
            .map_err(|e| format!("cannot run losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup -f --show failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(Disk {
            file,
            loopdev: Some(dev),
        })
    }

    /// What the agent is given: the device, or the file.
    fn path(&self) -> &Path {
        self.loopdev.as_deref().unwrap_or(&self.file)
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(self.path()).unwrap()
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Some(dev) = &self.loopdev {
            let _ = Command::new("losetup").arg("-d").arg(dev).status();
        }
    }
}

const SLOT_LEN: usize = 1 << 20;

/// A GRUB environment block as GRUB leaves it after a boot (in the format of the agent's
/// own writer, which `grub-editenv` reads: see the agent's unit tests).
fn grubenv(vars: &[(&str, &str)]) -> Vec<u8> {
    let mut s = String::from("# GRUB Environment Block\n");
    for (n, v) in vars {
        s.push_str(&format!("{n}={v}\n"));
    }
    let mut b = s.into_bytes();
    b.resize(1024, b'#');
    b
}

fn env_vars(path: &Path) -> Vec<(String, String)> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(b.len(), 1024, "the grubenv is not a 1024-byte block");
    let text = String::from_utf8(b).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (n, v) = l.split_once('=').unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect()
}

fn env_get(path: &Path, name: &str) -> String {
    env_vars(path)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// GRUB booted `slot` and counted the try.
fn grub_booted(env: &Path, cmdline: &Path, slot: &str, tries: &str) {
    let mut vars = env_vars(env);
    let key = format!("NP_{}_TRY", slot.to_uppercase());
    for (n, v) in vars.iter_mut() {
        if *n == key {
            *v = tries.to_owned();
        }
    }
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    std::fs::write(env, grubenv(&pairs)).unwrap();
    std::fs::write(cmdline, format!("root=/dev/x ro np.slot={slot}\n")).unwrap();
}

fn bundle(dir: &Path, version: &str, img: &[u8]) -> PathBuf {
    let k = Keys::load();
    let p = dir.join(format!("{version}.tar"));
    write_bundle(
        &p,
        &good_entries(
            &k,
            &release(version, 3, img),
            &entitlement(SERIAL, 2, "2099-01-01"),
            img,
        ),
        false,
    );
    p
}

/// The whole flow on one kind of slot backing.
fn flow(as_loop: bool) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let a = Disk::new(tmp.path().join("part-a"), SLOT_LEN, as_loop)?;
    let b = Disk::new(tmp.path().join("part-b"), SLOT_LEN, as_loop)?;
    let env = tmp.path().join("grubenv");
    let cmdline = tmp.path().join("cmdline");
    std::fs::write(&cmdline, "root=/dev/x ro np.slot=a\n").unwrap();
    let extra = format!(
        "[install]\nhealth_command = \"true\"\nreboot_command = \"true\"\nmax_boot_attempts = 3\n\n[slots]\na = \"{}\"\nb = \"{}\"\n\n[boot]\nloader = \"grub\"\ngrubenv = \"{}\"\ncmdline = \"{}\"\n",
        a.path().display(),
        b.path().display(),
        env.display(),
        cmdline.display()
    );
    let factory = image_bytes(1, 300_000);
    let agent = TestAgent::offline("2099-01-01", &extra, &factory);
    // Provision wrote slot a from byte 0 and the whole block for slot a, committed.
    assert_eq!(&a.bytes()[..factory.len()], &factory[..]);
    assert!(a.bytes()[factory.len()..].iter().all(|x| *x == 0xEE));
    assert_eq!(
        env_vars(&env),
        [
            ("NP_ORDER", "a b"),
            ("NP_A_OK", "1"),
            ("NP_A_TRY", "0"),
            ("NP_B_OK", "0"),
            ("NP_B_TRY", "0"),
            ("NP_MAX_TRIES", "3")
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
    let st = agent.status();
    assert_eq!(st["boot_loader"]["kind"], "grub");
    assert_eq!(st["booted_slot"], "a");
    assert_eq!(st["slot_targets"]["b"], b.path().display().to_string());

    // Install 2.0.0 into b: written from byte 0, never past its size; activated; "reboot".
    let two = image_bytes(2, 400_000);
    let out = agent.run(&["apply", bundle(tmp.path(), "2.0.0", &two).to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("2.0.0 activated; the box is rebooting"),
        "{out:?}"
    );
    assert_eq!(&b.bytes()[..two.len()], &two[..]);
    assert!(
        b.bytes()[two.len()..].iter().all(|x| *x == 0xEE),
        "bytes past the image changed"
    );
    assert_eq!(env_get(&env, "NP_ORDER"), "b a");
    assert_eq!(env_get(&env, "NP_B_OK"), "1");
    assert_eq!(env_get(&env, "NP_B_TRY"), "0");
    assert_eq!(agent.status()["phase"], "trial");

    // GRUB boots b; `np-agent commit` commits it and resets its tries.
    grub_booted(&env, &cmdline, "b", "1");
    let out = agent.run(&["commit"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("2.0.0 committed in slot b"), "{out:?}");
    assert_eq!(env_get(&env, "NP_B_TRY"), "0");
    let st = agent.status();
    assert_eq!(st["version"], "2.0.0");
    assert_eq!(st["active_slot"], "b");
    assert_eq!(st["booted_slot"], "b");
    assert_eq!(st["boot_loader"]["record"]["variables"]["NP_ORDER"], "b a");

    // `np-agent rollback`: back to 1.0.0 in a; b marked bad.
    let out = agent.run(&["rollback"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(env_get(&env, "NP_ORDER"), "a b");
    assert_eq!(env_get(&env, "NP_B_OK"), "0");
    assert_eq!(env_get(&env, "NP_A_OK"), "1");
    grub_booted(&env, &cmdline, "a", "1");
    let st = agent.status();
    assert_eq!(st["version"], "1.0.0");
    assert_eq!(st["active_slot"], "a");
    assert_eq!(st["last_result"]["outcome"], "rolled_back");

    // 3.0.0 into b, whose kernel never comes up: GRUB tries it three times, then boots a.
    let three = image_bytes(3, 500_000);
    let out = agent.run(&[
        "apply",
        bundle(tmp.path(), "3.0.0", &three).to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(env_get(&env, "NP_ORDER"), "b a");
    grub_booted(&env, &cmdline, "b", "3");
    grub_booted(&env, &cmdline, "a", "1");
    let mut d = agent.daemon();
    let line = d.wait_for("rolled back to slot a", Duration::from_secs(60));
    drop(d);
    assert!(line.contains("3 boot attempts"), "{line}");
    let st = agent.status();
    assert_eq!(st["version"], "1.0.0");
    assert_eq!(st["phase"], "idle");
    assert_eq!(st["last_result"]["outcome"], "rolled_back");
    assert_eq!(st["last_result"]["version"], "3.0.0");
    let detail = st["last_result"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("fell back to slot a")
            && detail.contains("slot b did not come up after 3 boot attempts"),
        "{detail}"
    );
    assert_eq!(env_get(&env, "NP_B_OK"), "0");
    assert_eq!(env_get(&env, "NP_ORDER"), "a b");
    assert_eq!(
        env_get(&env, "NP_A_TRY"),
        "0",
        "the agent came up: a's tries reset"
    );

    // An image larger than the slot: refused before a byte is written.
    let before = b.bytes();
    let big = image_bytes(4, SLOT_LEN + 1);
    let out = agent.run(&["apply", bundle(tmp.path(), "4.0.0", &big).to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    let want = format!(
        "slot b ({}) holds {SLOT_LEN} bytes but the image is {} bytes",
        b.path().display(),
        SLOT_LEN + 1
    );
    assert!(out.stderr.contains(&want), "{out:?}");
    assert_eq!(b.bytes(), before, "slot b was written");
    let st = agent.status();
    assert_eq!(st["last_result"]["outcome"], "refused");
    assert_eq!(st["version"], "1.0.0");
    assert_eq!(st["phase"], "idle");
    Ok(())
}

#[test]
fn slots_on_files_install_commit_rollback_fallback_too_small() {
    flow(false).unwrap();
}

#[test]
fn slots_on_loop_devices_install_commit_rollback_fallback_too_small() {
    match flow(true) {
        Ok(()) => {}
        // The files test above covers the same flow; this machine cannot attach devices.
        // Written past the test harness's capture, so that it shows in every run.
        Err(why) => {
            use std::io::Write as _;
            // CI runs as root on a machine that has loop devices: there it must run.
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot run: slots on loop devices need losetup as root ({why})"
            );
            let _ = writeln!(
                std::io::stderr().lock(),
                "LOOP DEVICES UNAVAILABLE: slots on block devices NOT tested here ({why}); the same flow ran on files"
            );
        }
    }
}

/// The VM test: GRUB, two root partitions and power cuts, in QEMU. It fails (never skips)
/// when it cannot run, with the one-line reason `tests/vm/run.sh` gives.
#[test]
fn vm_test_boots_grub_and_survives_power_cuts() {
    let cuts = std::env::var("NP_VM_CUTS").unwrap_or_else(|_| "3".into());
    let script = np_tests::repo_root().join("tests/vm/run.sh");
    let out = np_tests::run(
        Command::new("bash")
            .arg(&script)
            .args(["--cuts", &cuts])
            .env("NP_BIN_DIR", np_tests::bin_dir()),
        Duration::from_secs(40 * 60),
    );
    let last = out.stdout.lines().last().unwrap_or("").to_owned();
    if out.code == 2 {
        panic!("{}", out.stdout.trim());
    }
    assert_eq!(
        out.code, 0,
        "VM test failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(
        last.ends_with(" bricked")
            && last.contains(&format!("{cuts} cuts"))
            && last.ends_with(", 0 bricked"),
        "{}",
        out.stdout
    );
    println!("{}", out.stdout);
}
