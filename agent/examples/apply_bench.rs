//! Benchmark (not a test): applies a large offline bundle with the real `np-agent apply`
//! and compares its wall time with `dd conv=fsync` plus `openssl dgst -sha256` on the same
//! bundle in the same run (reading, hashing and writing one after another), and reports
//! the agent's peak RSS (from `/usr/bin/time -v`).
//!
//! `cargo build --release -p np-agent --examples && target/release/examples/apply_bench [MiB]`
//! Goal (issue 6): ratio agent / (dd + openssl) <= 0.85, peak RSS <= 32 MiB.
//! Documents are signed with the TEST-ONLY keys of `firmware-samples/keys/`.

use anyhow::{bail, Context as _, Result};
use np_common::docs::{self, Entitlement, ImageRef, Release, Role, Status};
use np_common::keyring::{KeyEntry, Keyring, RootSpec};
use np_common::warranty::{Term, TermKind};
use np_common::{Model, SecretKey, Serial, Sha256Digest, Version};
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SERIAL: &str = "NR-2000-123456-4";

fn key(name: &str) -> Result<SecretKey> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware-samples/keys")
        .join(name);
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(SecretKey::from_base64(&text)?)
}

/// Writes `len` pseudo-random bytes to `path`; returns their digest.
fn write_image(path: &Path, len: u64) -> Result<Sha256Digest> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut h = Sha256::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        h.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(Sha256Digest::from_bytes(h.finalize().into()))
}

fn release(version: &str, size: u64, sha256: Sha256Digest) -> Result<Release> {
    Ok(Release {
        product: "n-reporter".into(),
        version: Version::parse(version)?,
        security_version: 2,
        models: vec![Model::parse("NR-2000")?],
        channel: "stable".into(),
        released_at: "2025-06-01T00:00:00Z".parse()?,
        min_from_version: Version::parse("1.0.0")?,
        image: ImageRef {
            name: format!("n-reporter-{version}.img"),
            size,
            sha256,
        },
        notes: String::new(),
    })
}

fn timed(cmd: &mut Command) -> Result<(f64, String)> {
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((secs, String::from_utf8_lossy(&out.stderr).into_owned()))
}

fn main() -> Result<()> {
    let mib: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1024);
    let size = mib << 20;
    let exe = std::env::current_exe()?;
    let agent = exe
        .parent()
        .and_then(Path::parent)
        .context("no target dir")?
        .join("np-agent");
    let dir = tempfile::tempdir_in(std::env::temp_dir())?;
    let d = dir.path();
    let (root, online, rel_key) = (
        key("TEST-ONLY-root.key")?,
        key("TEST-ONLY-online.key")?,
        key("TEST-ONLY-release.key")?,
    );
    let entry = |sk: &SecretKey, roles: Vec<Role>| KeyEntry {
        keyid: sk.public_key().key_id(),
        public_key: sk.public_key(),
        roles,
    };
    let keyring = Keyring {
        version: 1,
        expires: "2099-01-01T00:00:00Z".parse()?,
        root: RootSpec::pinned(vec![root.public_key()]),
        keys: vec![
            entry(&online, vec![Role::Entitlement, Role::Time]),
            entry(&rel_key, vec![Role::Release]),
        ],
    }
    .sign(&[&root]);
    let serial = Serial::parse(SERIAL)?;
    let ent = Entitlement {
        model: serial.model(),
        serial,
        device_key: None,
        sequence: 1,
        issued_at: "2025-06-01T00:00:00Z".parse()?,
        coverage_end: "2099-01-01".parse()?,
        status: Status::Active,
        terms: vec![Term {
            kind: TermKind::Warranty,
            start: "2025-01-01".parse()?,
            end: "2099-01-01".parse()?,
        }],
    };
    // The running 1.0.0, provisioned.
    let small = d.join("v1.img");
    let small_sha = write_image(&small, 4096)?;
    std::fs::write(d.join("keyring.json"), keyring.to_json())?;
    std::fs::write(
        d.join("v1.json"),
        docs::sign(&release("1.0.0", 4096, small_sha)?, &rel_key).to_json(),
    )?;
    std::fs::write(
        d.join("entitlement.json"),
        docs::sign(&ent, &online).to_json(),
    )?;
    let config = d.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "serial = \"{SERIAL}\"\nstate_dir = \"{}\"\n[trust]\nroot_keys = [\"{}\"]\n",
            d.join("state").display(),
            root.public_key().to_base64()
        ),
    )?;
    let s = |p: &str| d.join(p).display().to_string();
    timed(Command::new(&agent).arg("--config").arg(&config).args([
        "provision",
        "--manifest",
        &s("v1.json"),
        "--image",
        &s("v1.img"),
        "--keyring",
        &s("keyring.json"),
        "--entitlement",
        &s("entitlement.json"),
    ]))?;
    // The bundle: a plain tar whose image is `mib` MiB.
    eprintln!("writing a {mib} MiB image and its bundle ...");
    let img = d.join("v2.img");
    let sha = write_image(&img, size)?;
    let manifest = docs::sign(&release("2.0.0", size, sha)?, &rel_key);
    let bundle = d.join("bundle.tar");
    {
        let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&bundle)?,
        ));
        for (name, bytes) in [
            ("keyring.json", keyring.to_json()),
            ("manifest.json", manifest.to_json()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &bytes[..])?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        b.append_data(&mut h, "image", std::fs::File::open(&img)?)?;
        b.into_inner()?.flush()?;
    }
    std::fs::remove_file(&img)?;
    let bsize = std::fs::metadata(&bundle)?.len() as f64;
    // Baseline: copy with fsync, then hash, one after the other.
    let (dd, _) = timed(
        Command::new("dd")
            .arg(format!("if={}", bundle.display()))
            .arg(format!("of={}", s("dd.out")))
            .args(["bs=1M", "conv=fsync"]),
    )?;
    std::fs::remove_file(d.join("dd.out"))?;
    let (ossl, _) = timed(
        Command::new("openssl")
            .args(["dgst", "-sha256"])
            .arg(&bundle),
    )?;
    // The agent.
    let (ag, err) = timed(
        Command::new("/usr/bin/time")
            .arg("-v")
            .arg(&agent)
            .arg("--config")
            .arg(&config)
            .arg("apply")
            .arg(&bundle),
    )?;
    let rss_kib: u64 = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let gbs = |t: f64| bsize / t / 1e9;
    println!("bundle {:.0} MiB", bsize / 1048576.0);
    println!("dd conv=fsync      {dd:.2} s  ({:.2} GB/s)", gbs(dd));
    println!("openssl dgst       {ossl:.2} s  ({:.2} GB/s)", gbs(ossl));
    println!("baseline dd+ossl   {:.2} s", dd + ossl);
    println!("np-agent apply     {ag:.2} s  ({:.2} GB/s)", gbs(ag));
    println!(
        "ratio agent/(dd+openssl) = {:.2}   (goal <= 0.85)",
        ag / (dd + ossl)
    );
    println!(
        "np-agent peak RSS  {:.1} MiB   (goal <= 32 MiB)",
        rss_kib as f64 / 1024.0
    );
    Ok(())
}
