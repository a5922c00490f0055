//! Test fixtures: documents signed with the TEST-ONLY keys of `firmware-samples/keys/`.
//! Compiled only for tests.

use jiff::Timestamp;
use np_common::docs::{self, Document, Entitlement, ImageRef, Release, Role, Status};
use np_common::keyring::{KeyEntry, Keyring, RootSpec};
use np_common::warranty::{Term, TermKind};
use np_common::{Envelope, SecretKey, Serial, Sha256Digest, Version};
use std::path::PathBuf;

/// The test-only keys, and two more made from fixed seeds for rotation tests.
pub struct Keys {
    pub root: SecretKey,
    pub online: SecretKey,
    pub release: SecretKey,
    /// TEST-ONLY: the online key that replaces `online` in a rotation.
    pub online2: SecretKey,
    /// TEST-ONLY: the release key that replaces `release` in a rotation.
    pub release2: SecretKey,
}

fn key(name: &str) -> SecretKey {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware-samples/keys")
        .join(name);
    SecretKey::from_base64(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// This box's serial in tests.
pub fn serial() -> Serial {
    "NR-2000-123456-4".parse().unwrap()
}

/// A fixed "now" for tests.
pub fn now() -> Timestamp {
    "2026-11-23T12:00:00Z".parse().unwrap()
}

impl Keys {
    /// Loads the TEST-ONLY root, online and release keys.
    pub fn load() -> Keys {
        Keys {
            root: key("TEST-ONLY-root.key"),
            online: key("TEST-ONLY-online.key"),
            release: key("TEST-ONLY-release.key"),
            online2: SecretKey::from_seed(&[0x02; 32]),
            release2: SecretKey::from_seed(&[0x03; 32]),
        }
    }

    /// A keyring of `version` listing `online` (entitlement, time) and `release`, with
    /// `expires`, signed by the root.
    pub fn keyring_with(
        &self,
        version: u64,
        online: &SecretKey,
        release: &SecretKey,
        expires: &str,
    ) -> Envelope {
        let entry = |sk: &SecretKey, roles: Vec<Role>| KeyEntry {
            keyid: sk.public_key().key_id(),
            public_key: sk.public_key(),
            roles,
        };
        Keyring {
            version,
            expires: expires.parse().unwrap(),
            root: RootSpec::pinned(vec![self.root.public_key()]),
            keys: vec![
                entry(online, vec![Role::Entitlement, Role::Time]),
                entry(release, vec![Role::Release]),
            ],
        }
        .sign(&[&self.root])
    }

    /// A keyring of `version`, signed by the root.
    pub fn keyring_env(&self, version: u64) -> Envelope {
        keyring_signed_by(self, version, &self.root)
    }

    /// Signs with the online (entitlement + time) key.
    pub fn sign_online<T: Document>(&self, doc: &T) -> Envelope {
        docs::sign(doc, &self.online)
    }

    /// Signs a release with the release key.
    pub fn sign_release(&self, r: &Release) -> Envelope {
        docs::sign(r, &self.release)
    }
}

/// A keyring of `version` signed by `signer` (the root, or a forger).
pub fn keyring_signed_by(k: &Keys, version: u64, signer: &SecretKey) -> Envelope {
    let entry = |sk: &SecretKey, roles: Vec<Role>| KeyEntry {
        keyid: sk.public_key().key_id(),
        public_key: sk.public_key(),
        roles,
    };
    Keyring {
        version,
        expires: "2099-01-01T00:00:00Z".parse().unwrap(),
        root: RootSpec::pinned(vec![k.root.public_key()]),
        keys: vec![
            entry(&k.online, vec![Role::Entitlement, Role::Time]),
            entry(&k.release, vec![Role::Release]),
        ],
    }
    .sign(&[signer])
}

/// An active entitlement of `sequence` ending on `end`.
pub fn entitlement(sequence: u64, end: &str, serial: &Serial) -> Entitlement {
    Entitlement {
        serial: serial.clone(),
        model: serial.model(),
        device_key: None,
        sequence,
        issued_at: "2026-01-01T00:00:00Z".parse().unwrap(),
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
        models: vec![np_common::Model::parse("NR-2000").unwrap()],
        channel: "stable".into(),
        released_at: "2026-06-01T00:00:00Z".parse().unwrap(),
        min_from_version: Version::parse("1.0.0").unwrap(),
        image: ImageRef {
            name: format!("n-reporter-{version}.img"),
            size: image.len() as u64,
            sha256: Sha256Digest::of(image),
        },
        notes: String::new(),
    }
}

/// The running image of a provisioned test box.
pub const RUNNING_IMAGE: &[u8] = b"firmware 1.0.0 running image bytes";

/// A provisioned box in `root/state` running 1.0.0 (security version 2) in slot a, with
/// the test keyring and an entitlement ending on `coverage_end`.
pub fn provisioned_box(root: &std::path::Path, coverage_end: &str) -> crate::agent::Agent {
    use crate::slots::{SlotWriter, Slots};
    use crate::state::{Slot, State};
    let k = Keys::load();
    let state_dir = root.join("state");
    let text = format!(
        "serial = \"{}\"\nstate_dir = \"{}\"\n[trust]\nroot_keys = [\"{}\"]\n",
        serial(),
        state_dir.display(),
        k.root.public_key().to_base64()
    );
    let cfg = crate::config::Config::parse(std::path::Path::new("agent.toml"), &text).unwrap();
    let clock: std::sync::Arc<dyn crate::clock::Clock> =
        std::sync::Arc::new(crate::clock::FixedClock(now()));
    let mut trust = crate::trust::Trust::load(
        &state_dir.join("trust"),
        &cfg.root_keys,
        &serial(),
        clock.clone(),
    )
    .unwrap();
    trust.accept_keyring(&k.keyring_env(1)).unwrap();
    trust
        .accept_entitlement(&k.sign_online(&entitlement(3, coverage_end, &serial())))
        .unwrap();
    let r = release("1.0.0", 2, RUNNING_IMAGE);
    let slots = Slots::new(&state_dir);
    slots.mark_invalid(Slot::A).unwrap();
    let mut w = SlotWriter::create(&slots.image(Slot::A), r.image.size, r.image.sha256).unwrap();
    w.write(RUNNING_IMAGE).unwrap();
    w.finish().unwrap();
    slots.mark_valid(Slot::A, &k.sign_release(&r)).unwrap();
    State::provisioned().save(&state_dir).unwrap();
    crate::agent::Agent::open(cfg, clock).unwrap()
}

/// What a test bundle entry is.
pub enum Kind {
    File,
    Symlink,
}

/// Builds a tar (optionally gzip) bundle from raw entries; names are written as given,
/// even when a well-behaved writer would refuse them.
pub fn tar_bundle(entries: &[(&str, Kind, Vec<u8>)], gzip: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        h.set_mode(0o644);
        match kind {
            Kind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
            }
            Kind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name("/etc/passwd").unwrap();
                h.set_size(0);
            }
        }
        h.set_cksum();
        let body: &[u8] = match kind {
            Kind::File => data,
            Kind::Symlink => &[],
        };
        b.append(&h, body).unwrap();
    }
    let tar = b.into_inner().unwrap();
    if !gzip {
        return tar;
    }
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// A provisioned box like [`provisioned_box`], with `top` TOML lines before `[trust]`
/// (e.g. `device_key`) and `tail` TOML after it (e.g. `[server]`).
pub fn provisioned_box_with(
    root: &std::path::Path,
    coverage_end: &str,
    top: &str,
    tail: &str,
) -> crate::agent::Agent {
    let a = provisioned_box(root, coverage_end);
    let k = Keys::load();
    let text = format!(
        "serial = \"{}\"\nstate_dir = \"{}\"\n{top}\n[trust]\nroot_keys = [\"{}\"]\n{tail}\n",
        serial(),
        a.cfg.state_dir.display(),
        k.root.public_key().to_base64()
    );
    let cfg = crate::config::Config::parse(std::path::Path::new("agent.toml"), &text).unwrap();
    crate::agent::Agent::open(cfg, a.clock.clone()).unwrap()
}

/// What the fake server answers.
pub enum Body {
    Bytes(u16, Vec<u8>),
    /// `len` bytes of `x`, streamed (never held), with or without a Content-Length.
    Endless {
        len: u64,
        with_length: bool,
    },
}

/// The handler of a [`FakeServer`]: method, path and body in, an answer out.
pub type Handler = dyn Fn(&str, &str, &[u8]) -> Body + Send + Sync;

/// A tiny HTTP/1.1 server on 127.0.0.1:0 for agent-level tests: one connection at a
/// time, `Connection: close`. Stops when dropped.
pub struct FakeServer {
    pub url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
}

impl FakeServer {
    pub fn start(handler: std::sync::Arc<Handler>) -> FakeServer {
        use std::io::{BufRead as _, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let mut r = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_owned();
                let path = parts.next().unwrap_or("").to_owned();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                let mut w = conn;
                match handler(&method, &path, &body) {
                    Body::Bytes(status, b) => {
                        let _ = write!(
                            w,
                            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
                            b.len()
                        );
                        let _ = w.write_all(&b);
                    }
                    Body::Endless { len, with_length } => {
                        let _ = write!(w, "HTTP/1.1 200 OK\r\nConnection: close\r\n");
                        if with_length {
                            let _ = write!(w, "Content-Length: {len}\r\n");
                        }
                        let _ = write!(w, "\r\n");
                        let chunk = vec![b'x'; 64 << 10];
                        let mut left = len;
                        while left > 0 {
                            let n = left.min(chunk.len() as u64) as usize;
                            if w.write_all(&chunk[..n]).is_err() {
                                break;
                            }
                            left -= n as u64;
                        }
                    }
                }
            }
        });
        FakeServer {
            url: format!("http://{addr}"),
            stop,
            addr,
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

/// Writes a TEST-ONLY device key into `dir` and returns its path.
pub fn device_key(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("device.key");
    std::fs::write(&p, SecretKey::from_seed(&[0x0d; 32]).to_base64()).unwrap();
    p
}
