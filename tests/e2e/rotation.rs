//! Key rotation with real binaries: the release key, then the online keys, then a keyring
//! renewal, each drafted on the server, signed offline with `np-vendor keyring sign` and
//! installed with `np-vendor keyring install`. An online box (check-ins) and an offline box
//! (bundles fetched with `np-vendor bundle get`) keep working through each: status,
//! check-in, the install of a new release, and rollback to firmware whose manifest was
//! signed by a key that has been rotated out. Afterwards a manifest signed by a rotated-out
//! key is refused.

#![allow(clippy::unwrap_used)]

use np_common::docs::{self, Release};
use np_common::{Envelope, SecretKey};
use np_tests::agent::{image_bytes, write_bundle, TestAgent, SERIAL};
use np_tests::server::TestServer;
use np_tests::{bin, run, Output};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The offline box's serial (Luhn digit included).
fn offline_serial() -> String {
    let digits = "2000654321";
    format!(
        "NR-2000-654321-{}",
        np_common::serial::luhn_check_digit(digits)
    )
}

fn image(major: u8) -> Vec<u8> {
    image_bytes(40 + major, 50_000 + usize::from(major) * 1000)
}

fn vendor(srv: &TestServer, token_file: &Path, args: &[&str]) -> Output {
    run(
        Command::new(bin("np-vendor"))
            .args(args)
            .env("NP_SERVER", &srv.url)
            .env("NP_TOKEN_FILE", token_file)
            .env_remove("NP_TOKEN"),
        Duration::from_secs(60),
    )
}

fn publish(srv: &TestServer, version: &str) -> Envelope {
    let major: u8 = version[..1].parse().unwrap();
    srv.publish(
        &image(major),
        json!({"version": version, "security_version": 1, "models": ["NR-2000"],
               "min_from_version": if version == "1.0.0" { "0.0.0" } else { "1.0.0" },
               "notes": "rotation e2e"}),
    )
}

struct World {
    srv: TestServer,
    online: TestAgent,
    offline: TestAgent,
    tmp: tempfile::TempDir,
    token_file: PathBuf,
}

fn setup() -> World {
    let srv = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{}\n", srv.admin_token)).unwrap();
    let extra = format!(
        "[server]\nurl = \"{}\"\ncheck_interval = \"1h\"\nstall_timeout = \"10s\"\n",
        srv.url
    );
    let online = TestAgent::new(SERIAL, &srv.root_public_key, &extra);
    let offline = TestAgent::new(&offline_serial(), &srv.root_public_key, "");
    srv.register_agent(&online);
    srv.register_agent(&offline);
    let manifest = publish(&srv, "1.0.0");
    for a in [&online, &offline] {
        srv.provision_agent(a, &manifest, &image(1));
    }
    World {
        srv,
        online,
        offline,
        tmp,
        token_file,
    }
}

impl World {
    fn vendor(&self, args: &[&str]) -> Output {
        vendor(&self.srv, &self.token_file, args)
    }

    /// draft → offline sign with the root key → install.
    fn rotate(&self, step: &str, draft_args: &[&str]) -> Value {
        let draft = self.tmp.path().join(format!("{step}-draft.json"));
        let signed = self.tmp.path().join(format!("{step}-signed.json"));
        let mut args = vec!["keyring", "draft", "--out", draft.to_str().unwrap()];
        args.extend_from_slice(draft_args);
        let out = self.vendor(&args);
        assert_eq!(out.code, 0, "{out:?}");
        let root = self.srv.data_dir.join("offline/root.key");
        let out = self.vendor(&[
            "keyring",
            "sign",
            "--root-key",
            root.to_str().unwrap(),
            "--in",
            draft.to_str().unwrap(),
            "--out",
            signed.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        let out = self.vendor(&["keyring", "install", signed.to_str().unwrap(), "--json"]);
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str(&out.stdout).unwrap()
    }

    /// The online box checks in and installs `version`.
    fn online_installs(&self, version: &str) {
        let out = self.online.run(&["check"]);
        assert_eq!(out.code, 0, "online box check: {out:?}");
        assert_eq!(self.online.assert_consistent().0, version, "{out:?}");
    }

    /// The offline box applies a bundle of `version` fetched from the server.
    fn offline_installs(&self, version: &str) {
        let bundle = self.tmp.path().join(format!("bundle-{version}.tar"));
        let out = self.vendor(&[
            "bundle",
            "get",
            &self.offline.serial,
            "--version",
            version,
            "--out",
            bundle.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        let out = self.offline.run(&["apply", bundle.to_str().unwrap()]);
        assert_eq!(out.code, 0, "offline box apply {version}: {out:?}");
        assert_eq!(self.offline.assert_consistent().0, version);
    }

    /// Both boxes: status works, a new release installs, and rollback returns to `back`
    /// (whose manifest may be signed by a rotated-out key).
    fn both_survive(&self, new: &str, back: &str) {
        for a in [&self.online, &self.offline] {
            let st = a.status();
            assert!(st["version"].is_string(), "{st}");
        }
        publish(&self.srv, new);
        self.online_installs(new);
        self.offline_installs(new);
        for a in [&self.online, &self.offline] {
            let out = a.run(&["rollback"]);
            assert_eq!(out.code, 0, "{} rollback: {out:?}", a.serial);
            assert_eq!(a.assert_consistent().0, back);
            assert_eq!(a.status()["version"], back);
        }
        // The online box still checks in afterwards (and reports the rollback).
        let out = self.online.run(&["check"]);
        assert_eq!(out.code, 0, "{out:?}");
        let (_, d) = self.srv.get_json(&format!("/api/v1/devices/{SERIAL}"));
        assert_eq!(d["version"], back, "{d}");
    }
}

/// The key id of the key holding `role` in the server's keyring now.
fn key_id_of(srv: &TestServer, role: &str) -> String {
    let (_, kr) = srv.get_json("/api/v1/keyring");
    let kr: Envelope = serde_json::from_value(kr).unwrap();
    let payload: Value = serde_json::from_slice(&kr.payload_bytes().unwrap()).unwrap();
    payload["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["roles"].as_array().unwrap().iter().any(|r| r == role))
        .unwrap()["keyid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A rotated-out key, kept by the server in `keys/retired/`.
fn retired_key(srv: &TestServer, keyid: &str) -> SecretKey {
    let path = srv.data_dir.join(format!("keys/retired/{keyid}.key"));
    SecretKey::from_base64(std::fs::read_to_string(path).unwrap().trim()).unwrap()
}

#[test]
fn boxes_survive_release_key_online_key_rotation_and_renewal() {
    let w = setup();
    publish(&w.srv, "2.0.0");
    w.online_installs("2.0.0");
    w.offline_installs("2.0.0");

    // 1. The release key: 2.0.0 (kept for rollback) was signed by the key that leaves.
    let first_release_key = key_id_of(&w.srv, "release");
    let done = w.rotate("release", &["--rotate", "release"]);
    assert_eq!(done["version"], 2, "{done}");
    assert_eq!(done["releases_resigned"], 2, "{done}");
    w.both_survive("3.0.0", "2.0.0");

    // 2. The online keys (entitlements, time tokens).
    let done = w.rotate("online", &["--rotate", "entitlement", "--rotate", "time"]);
    assert_eq!(done["version"], 3, "{done}");
    w.both_survive("4.0.0", "2.0.0");

    // 3. A renewal: same keys, a later expiry.
    let done = w.rotate("renewal", &["--expires", "2031-01-01"]);
    assert_eq!(done["version"], 4, "{done}");
    w.both_survive("5.0.0", "2.0.0");
    let (_, kr) = w.srv.get_json("/api/v1/keyring");
    let kr: Envelope = serde_json::from_value(kr).unwrap();
    let payload: Value = serde_json::from_slice(&kr.payload_bytes().unwrap()).unwrap();
    assert_eq!(payload["expires"], "2031-01-01T00:00:00Z");

    // A manifest signed by the rotated-out release key is refused, in a bundle with the
    // current keyring and a valid entitlement.
    assert_ne!(key_id_of(&w.srv, "release"), first_release_key);
    let old_release_key = retired_key(&w.srv, &first_release_key);
    let img = image(6);
    let (_, m5) = w.srv.get_json("/api/v1/releases");
    let m5: Envelope = serde_json::from_value(m5["releases"][0]["manifest"].clone()).unwrap();
    let mut r: Release = serde_json::from_slice(&m5.payload_bytes().unwrap()).unwrap();
    r.version = np_common::Version::parse("6.0.0").unwrap();
    r.image.size = img.len() as u64;
    r.image.sha256 = np_common::Sha256Digest::of(&img);
    let forged = docs::sign(&r, &old_release_key);
    let (_, ent) = w
        .srv
        .get_json(&format!("/api/v1/devices/{}/entitlement", w.offline.serial));
    let ent: Envelope = serde_json::from_value(ent).unwrap();
    let bundle = w.tmp.path().join("forged.tar");
    write_bundle(
        &bundle,
        &[
            ("keyring.json".into(), Some(kr.to_json())),
            ("manifest.json".into(), Some(forged.to_json())),
            ("entitlement.json".into(), Some(ent.to_json())),
            ("image".into(), Some(img)),
        ],
        false,
    );
    let out = w.offline.run(&["apply", bundle.to_str().unwrap()]);
    assert_eq!(out.code, 1, "a manifest of a rotated-out key: {out:?}");
    assert_eq!(w.offline.assert_consistent().0, "2.0.0");

    // 4. The root key itself, from the command line: a new root key made offline, a draft
    // naming it, signed by the old root key and the new one.
    let new_root = w.tmp.path().join("root2.key");
    let out = w.vendor(&["key", "new", "--out", new_root.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let new_root_pub = w.tmp.path().join("root2.pub");
    std::fs::write(&new_root_pub, &out.stdout).unwrap();
    let draft = w.tmp.path().join("root-draft.json");
    let signed = w.tmp.path().join("root-signed.json");
    let out = w.vendor(&[
        "keyring",
        "draft",
        "--new-root-key",
        new_root_pub.to_str().unwrap(),
        "--out",
        draft.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let old_root = w.srv.data_dir.join("offline/root.key");
    let out = w.vendor(&[
        "keyring",
        "sign",
        "--root-key",
        old_root.to_str().unwrap(),
        new_root.to_str().unwrap(),
        "--in",
        draft.to_str().unwrap(),
        "--out",
        signed.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = w.vendor(&["keyring", "install", signed.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let (_, kr) = w.srv.get_json("/api/v1/keyring");
    let kr: Envelope = serde_json::from_value(kr).unwrap();
    let payload: Value = serde_json::from_slice(&kr.payload_bytes().unwrap()).unwrap();
    let new_pub = std::fs::read_to_string(&new_root_pub).unwrap();
    assert_eq!(
        payload["root"]["keys"][0].as_str(),
        Some(new_pub.trim()),
        "{payload}"
    );
    w.both_survive("7.0.0", "2.0.0");
}
