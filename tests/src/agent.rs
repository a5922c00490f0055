//! Setting up and running a real np-agent for a test: documents signed with the TEST-ONLY
//! keys, bundles built with the `tar` crate (hostile ones too), a provisioned box in a
//! temp folder, and helpers to run its commands and read its status.

#![allow(clippy::unwrap_used)]

use crate::{bin, run, test_key, Output, Running};
use np_common::docs::{self, Document, Entitlement, ImageRef, Release, Role, Status};
use np_common::keyring::{KeyEntry, Keyring, RootSpec};
use np_common::warranty::{Term, TermKind};
use np_common::{Envelope, Model, SecretKey, Serial, Sha256Digest, Version};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long one agent command may take in a test.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// The TEST-ONLY signing keys.
pub struct Keys {
    pub root: SecretKey,
    pub online: SecretKey,
    pub release: SecretKey,
}

fn key(name: &str) -> SecretKey {
    let text = std::fs::read_to_string(test_key(name)).unwrap();
    SecretKey::from_base64(&text).unwrap()
}

impl Keys {
    /// Loads the TEST-ONLY root, online and release keys.
    pub fn load() -> Keys {
        Keys {
            root: key("TEST-ONLY-root.key"),
            online: key("TEST-ONLY-online.key"),
            release: key("TEST-ONLY-release.key"),
        }
    }

    /// A keyring of `version` signed by the root.
    pub fn keyring(&self, version: u64) -> Envelope {
        let entry = |sk: &SecretKey, roles: Vec<Role>| KeyEntry {
            keyid: sk.public_key().key_id(),
            public_key: sk.public_key(),
            roles,
        };
        Keyring {
            version,
            expires: "2099-01-01T00:00:00Z".parse().unwrap(),
            root: RootSpec::pinned(vec![self.root.public_key()]),
            keys: vec![
                entry(&self.online, vec![Role::Entitlement, Role::Time]),
                entry(&self.release, vec![Role::Release]),
            ],
        }
        .sign(&[&self.root])
    }

    /// Signs with the online (entitlement, time, action) key.
    pub fn online<T: Document>(&self, doc: &T) -> Envelope {
        docs::sign(doc, &self.online)
    }

    /// Signs a release manifest.
    pub fn release(&self, r: &Release) -> Envelope {
        docs::sign(r, &self.release)
    }
}

/// An active entitlement for `serial` ending on `end` (YYYY-MM-DD).
pub fn entitlement(serial: &str, sequence: u64, end: &str) -> Entitlement {
    let serial = Serial::parse(serial).unwrap();
    Entitlement {
        model: serial.model(),
        serial,
        device_key: None,
        sequence,
        issued_at: "2025-06-01T00:00:00Z".parse().unwrap(),
        coverage_end: end.parse().unwrap(),
        status: Status::Active,
        terms: vec![Term {
            kind: TermKind::Warranty,
            start: "2025-01-01".parse().unwrap(),
            end: end.parse().unwrap(),
        }],
    }
}

/// A release of `version` for NR-2000 over `image`.
pub fn release(version: &str, security_version: u64, image: &[u8]) -> Release {
    Release {
        product: "n-reporter".into(),
        version: Version::parse(version).unwrap(),
        security_version,
        models: vec![Model::parse("NR-2000").unwrap()],
        channel: "stable".into(),
        released_at: "2025-06-01T00:00:00Z".parse().unwrap(),
        min_from_version: Version::parse("1.0.0").unwrap(),
        image: ImageRef {
            name: format!("n-reporter-{version}.img"),
            size: image.len() as u64,
            sha256: Sha256Digest::of(image),
        },
        notes: String::new(),
    }
}

/// Deterministic image bytes of `len` for `seed`.
pub fn image_bytes(seed: u8, len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect()
}

/// A bundle entry: a name and its bytes (`None`: a symlink to /etc/passwd).
pub type BundleEntry = (String, Option<Vec<u8>>);

/// The entries of a good bundle.
pub fn good_entries(k: &Keys, r: &Release, ent: &Entitlement, image: &[u8]) -> Vec<BundleEntry> {
    vec![
        ("keyring.json".into(), Some(k.keyring(1).to_json())),
        ("manifest.json".into(), Some(k.release(r).to_json())),
        ("entitlement.json".into(), Some(k.online(ent).to_json())),
        ("image".into(), Some(image.to_vec())),
    ]
}

/// Writes a tar (or tar.gz) bundle of raw entries to `path`; names are written as given.
/// Writes a plain tar bundle of `r` and `image` for [`SERIAL`], with the keyring and an
/// entitlement of sequence `seq` that ends on `coverage_end`.
pub fn write_good_bundle(
    path: &Path,
    k: &Keys,
    r: &Release,
    seq: u64,
    coverage_end: &str,
    image: &[u8],
) {
    let ent = entitlement(SERIAL, seq, coverage_end);
    write_bundle(path, &good_entries(k, r, &ent, image), false);
}

pub fn write_bundle(path: &Path, entries: &[BundleEntry], gzip: bool) {
    let file = std::fs::File::create(path).unwrap();
    let out: Box<dyn std::io::Write> = if gzip {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(file)
    };
    let mut b = tar::Builder::new(out);
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                h.set_cksum();
                b.append(&h, &d[..]).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name("/etc/passwd").unwrap();
                h.set_size(0);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap().flush().unwrap();
}

/// A box with its own temp folder, config and state folder.
pub struct TestAgent {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub serial: String,
}

/// The serial of test boxes unless a test names another.
pub const SERIAL: &str = "NR-2000-123456-4";

impl TestAgent {
    /// Writes a config with `root_key` (base64) and extra TOML (sections such as
    /// `[server]` or `[install]`); nothing provisioned yet.
    pub fn new(serial: &str, root_key: &str, extra: &str) -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let config = dir.path().join("agent.toml");
        let text = format!(
            "serial = \"{serial}\"\nmodel = \"{}\"\nstate_dir = \"{}\"\ndevice_key = \"{}\"\n\n[trust]\nroot_keys = [\"{root_key}\"]\n\n[inbox]\npoll_interval = \"250ms\"\n\n{extra}\n",
            &serial[..7],
            state_dir.display(),
            dir.path().join("device.key").display(),
        );
        std::fs::write(&config, text).unwrap();
        TestAgent {
            dir,
            config,
            state_dir,
            serial: serial.into(),
        }
    }

    /// An offline box provisioned with `image` as 1.0.0 (security version 2) and an
    /// entitlement ending on `coverage_end`, all signed with the TEST-ONLY keys.
    pub fn offline(coverage_end: &str, extra: &str, image: &[u8]) -> TestAgent {
        let k = Keys::load();
        let a = TestAgent::new(SERIAL, &k.root.public_key().to_base64(), extra);
        let r = release("1.0.0", 2, image);
        a.provision(
            &k.keyring(1),
            &k.release(&r),
            image,
            Some(&k.online(&entitlement(SERIAL, 1, coverage_end))),
        );
        a
    }

    /// Runs `np-agent provision` with these documents; panics if it fails.
    pub fn provision(
        &self,
        keyring: &Envelope,
        manifest: &Envelope,
        image: &[u8],
        ent: Option<&Envelope>,
    ) {
        let p = |n: &str| self.dir.path().join(n);
        std::fs::write(p("factory-keyring.json"), keyring.to_json()).unwrap();
        std::fs::write(p("factory-manifest.json"), manifest.to_json()).unwrap();
        std::fs::write(p("factory.img"), image).unwrap();
        let mut args = vec![
            "provision".to_owned(),
            "--manifest".into(),
            p("factory-manifest.json").display().to_string(),
            "--image".into(),
            p("factory.img").display().to_string(),
            "--keyring".into(),
            p("factory-keyring.json").display().to_string(),
        ];
        if let Some(e) = ent {
            std::fs::write(p("factory-entitlement.json"), e.to_json()).unwrap();
            args.push("--entitlement".into());
            args.push(p("factory-entitlement.json").display().to_string());
        }
        let out = self.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.code, 0, "provision failed: {out:?}");
    }

    /// `np-agent --config CONFIG ARGS...` as a command.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("np-agent"));
        c.arg("--config").arg(&self.config).args(args);
        c.env("NP_AGENT_LOG", "info");
        c
    }

    /// Runs an agent command to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        run(&mut self.cmd(args), CMD_TIMEOUT)
    }

    /// Starts `np-agent run`, waiting until it says it runs.
    pub fn daemon(&self) -> Running {
        let mut r = Running::spawn(&mut self.cmd(&["run"]));
        r.wait_for("np-agent running", CMD_TIMEOUT);
        r
    }

    /// `status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.run(&["status", "--json"]);
        assert_eq!(out.code, 0, "status failed: {out:?}");
        serde_json::from_str(out.stdout.trim()).unwrap()
    }

    /// A path inside the state folder.
    pub fn state(&self, rel: &str) -> PathBuf {
        self.state_dir.join(rel)
    }

    /// Asserts that the active slot's image matches its manifest; returns the version
    /// it runs and the image bytes.
    pub fn assert_consistent(&self) -> (String, Vec<u8>) {
        let st = self.status();
        let slot = st["active_slot"].as_str().unwrap().to_owned();
        let env = Envelope::parse(
            &std::fs::read(self.state(&format!("slots/{slot}/manifest.json"))).unwrap(),
        )
        .unwrap();
        let r: Release = serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap();
        let bytes = std::fs::read(self.state(&format!("slots/{slot}/image"))).unwrap();
        assert_eq!(
            bytes.len() as u64,
            r.image.size,
            "slot {slot} has the wrong size"
        );
        assert_eq!(
            Sha256Digest::of(&bytes),
            r.image.sha256,
            "slot {slot} bytes do not match its manifest"
        );
        assert_eq!(st["version"].as_str().unwrap(), r.version.to_string());
        (r.version.to_string(), bytes)
    }
}
