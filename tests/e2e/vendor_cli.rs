//! np-vendor's offline commands, run as the real binary: a full round trip from new keys
//! to a signed keyring, a signed release, verification and offline bundles (plain and
//! gzip, entries checked in order with the `tar` crate), and bad input of every kind,
//! which must end with exit 1 and one sentence, no panic, and no output file.

use np_tests::{bin, repo_root, run, test_key, Output};
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn vendor(args: &[&str]) -> Output {
    run(
        Command::new(bin("np-vendor")).args(args),
        Duration::from_secs(60),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Exit 1 with exactly one line `error: ...`, and no panic.
fn assert_refused(out: &Output, needle: &str) {
    assert_eq!(out.code, 1, "expected exit 1: {out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one sentence: {out:?}");
    assert!(lines[0].starts_with("error: "), "{out:?}");
    assert!(
        lines[0].contains(needle),
        "expected {needle:?} in {:?}",
        lines[0]
    );
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

/// A test-only key copied into `dir` with mode 0600 (a git checkout leaves them 0644).
fn key_copy(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    fs::copy(test_key(name), &to).expect("copy key");
    fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).expect("chmod");
    to
}

fn new_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = vendor(&["key", "new", "--out", p(&path)]);
    assert_eq!(out.code, 0, "{out:?}");
    let mode = fs::metadata(&path).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    (path, out.stdout.trim().to_owned())
}

fn key_id(b64: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    hex::encode(sha2::Sha256::digest(raw))
}

fn tar_entries(bundle: &Path) -> Vec<(String, u64)> {
    let bytes = fs::read(bundle).expect("bundle");
    let tar_bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    } else {
        bytes
    };
    let mut ar = tar::Archive::new(tar_bytes.as_slice());
    ar.entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            (name, e.header().size().expect("size"))
        })
        .collect()
}

/// Writes a release payload for `image` and signs it; returns the envelope's path.
fn signed_release(dir: &Path, key: &Path, image: &Path, version: &str) -> PathBuf {
    use sha2::Digest as _;
    let bytes = fs::read(image).expect("image");
    let payload = serde_json::json!({
        "product": "n-reporter", "version": version, "security_version": 4,
        "models": ["NR-2000"], "channel": "stable",
        "released_at": "2026-10-01T00:00:00Z", "min_from_version": "5.0.0",
        "image": {"name": "test.img", "size": bytes.len(),
                  "sha256": hex::encode(sha2::Sha256::digest(&bytes))},
        "notes": "test"
    });
    let input = dir.join(format!("release-{version}.json"));
    fs::write(&input, payload.to_string()).expect("payload");
    let out_path = dir.join(format!("release-{version}.signed.json"));
    let out = vendor(&[
        "sign",
        "--kind",
        "release",
        "--key",
        p(key),
        "--in",
        p(&input),
        "--out",
        p(&out_path),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    out_path
}

#[test]
fn round_trip_from_new_keys_to_bundles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (root, root_pub) = new_key(d, "root.key");
    let (_online, online_pub) = new_key(d, "online.key");
    let (release, release_pub) = new_key(d, "release.key");
    let root_pub_file = d.join("root.pub");
    fs::write(&root_pub_file, format!("{root_pub}\n")).expect("root.pub");
    let keyring = serde_json::json!({
        "version": 2, "expires": "2099-01-01T00:00:00Z",
        "root": {"threshold": 1, "keys": [root_pub]},
        "keys": [
            {"keyid": key_id(&online_pub), "public_key": online_pub, "roles": ["entitlement", "time"]},
            {"keyid": key_id(&release_pub), "public_key": release_pub, "roles": ["release"]}
        ]
    });
    let kin = d.join("keyring.json");
    fs::write(&kin, serde_json::to_vec_pretty(&keyring).expect("json")).expect("write");
    let kout = d.join("keyring.signed.json");
    let out = vendor(&[
        "keyring",
        "sign",
        "--root-key",
        p(&root),
        "--in",
        p(&kin),
        "--out",
        p(&kout),
    ]);
    assert_eq!(out.code, 0, "{out:?}");

    let out = vendor(&["verify", "--root", p(&root_pub_file), p(&kout)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("verified keyring version 2"), "{out:?}");

    let image = d.join("fw.img");
    let image_bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&image, &image_bytes).expect("image");
    let manifest = signed_release(d, &release, &image, "5.3.0");
    let out = vendor(&[
        "verify",
        "--root",
        p(&root_pub_file),
        "--keyring",
        p(&kout),
        p(&manifest),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("verified release manifest n-reporter 5.3.0"),
        "{out:?}"
    );

    // A release signed by the root key lacks the release role.
    let wrong = signed_release(d, &root, &image, "5.3.1");
    let out = vendor(&[
        "verify",
        "--root",
        p(&root_pub_file),
        "--keyring",
        p(&kout),
        p(&wrong),
    ]);
    assert_refused(&out, "not signed by any key");

    for gzip in [false, true] {
        let bundle = d.join(if gzip { "b.tar.gz" } else { "b.tar" });
        let mut args = vec![
            "bundle",
            "build",
            "--manifest",
            p(&manifest),
            "--image",
            p(&image),
            "--keyring",
            p(&kout),
            "--out",
            p(&bundle),
        ];
        if gzip {
            args.push("--gzip");
        }
        let out = vendor(&args);
        assert_eq!(out.code, 0, "{out:?}");
        let entries = tar_entries(&bundle);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["keyring.json", "manifest.json", "image"]);
        assert_eq!(entries[2].1, image_bytes.len() as u64);
        let head = fs::read(&bundle).expect("bundle");
        assert_eq!(head.starts_with(&[0x1f, 0x8b]), gzip);
    }
}

#[test]
fn the_samples_readme_flow_works_with_the_test_only_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let samples = repo_root().join("firmware-samples");
    let gen = run(
        Command::new("sh")
            .arg(samples.join("make-samples.sh"))
            .arg(d.join("images")),
        Duration::from_secs(60),
    );
    assert_eq!(gen.code, 0, "{gen:?}");
    let root = key_copy(d, "TEST-ONLY-root.key");
    let release = key_copy(d, "TEST-ONLY-release.key");
    let online = key_copy(d, "TEST-ONLY-online.key");
    let root_pub = test_key("TEST-ONLY-root.pub");
    let payloads = samples.join("payloads");
    let kout = d.join("keyring.signed.json");
    let out = vendor(&[
        "keyring",
        "sign",
        "--root-key",
        p(&root),
        "--in",
        p(&payloads.join("keyring.json")),
        "--out",
        p(&kout),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    for (kind, key, payload) in [
        ("release", &release, "release-5.2.0.json"),
        ("release", &release, "release-5.3.0.json"),
        ("release", &release, "release-nc-2.1.0.json"),
        ("entitlement", &online, "entitlement-NR-2000-123456-4.json"),
        ("time", &online, "time.json"),
        ("action", &online, "action-upgrade.json"),
    ] {
        let signed = d.join(format!("signed-{payload}"));
        let out = vendor(&[
            "sign",
            "--kind",
            kind,
            "--key",
            p(key),
            "--in",
            p(&payloads.join(payload)),
            "--out",
            p(&signed),
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stderr.is_empty(), "no warning for a 0600 key: {out:?}");
        let out = vendor(&[
            "verify",
            "--root",
            p(&root_pub),
            "--keyring",
            p(&kout),
            p(&signed),
        ]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    // The pinned image digests match the script's images: every sample bundles.
    for (payload, image) in [
        ("release-5.2.0.json", "n-reporter-5.2.0.img"),
        ("release-5.3.0.json", "n-reporter-5.3.0.img"),
        ("release-nc-2.1.0.json", "n-cloud-2.1.0.img"),
    ] {
        let bundle = d.join(format!("{image}.bundle"));
        let out = vendor(&[
            "bundle",
            "build",
            "--manifest",
            p(&d.join(format!("signed-{payload}"))),
            "--image",
            p(&d.join("images").join(image)),
            "--entitlement",
            p(&d.join("signed-entitlement-NR-2000-123456-4.json")),
            "--out",
            p(&bundle),
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        let names: Vec<String> = tar_entries(&bundle).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["manifest.json", "entitlement.json", "image"]);
    }
}

#[test]
fn a_readable_private_key_gives_a_warning_but_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k.key");
    fs::copy(test_key("TEST-ONLY-online.key"), &key).expect("copy");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    let out_path = dir.path().join("time.signed.json");
    let input = repo_root().join("firmware-samples/payloads/time.json");
    let out = vendor(&[
        "sign",
        "--kind",
        "time",
        "--key",
        p(&key),
        "--in",
        p(&input),
        "--out",
        p(&out_path),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("chmod 600") && out.stderr.contains(p(&key)),
        "{out:?}"
    );
    assert!(out_path.exists());
}

#[test]
fn key_new_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, pubkey) = new_key(dir.path(), "a.key");
    let before = fs::read(&path).expect("key");
    let out = vendor(&["key", "new", "--out", p(&path)]);
    assert_refused(&out, "already exists");
    assert_eq!(fs::read(&path).expect("key"), before);
    assert_eq!(pubkey.len(), 44);
}

/// Every kind of bad input, fed to each offline command that reads it.
#[test]
fn bad_input_is_refused_with_one_sentence_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let release_key = key_copy(d, "TEST-ONLY-release.key");
    let root_key = key_copy(d, "TEST-ONLY-root.key");
    let root_pub = test_key("TEST-ONLY-root.pub");
    let samples = repo_root().join("firmware-samples/payloads");
    let kout = d.join("keyring.signed.json");
    let out = vendor(&[
        "keyring",
        "sign",
        "--root-key",
        p(&root_key),
        "--in",
        p(&samples.join("keyring.json")),
        "--out",
        p(&kout),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let image = d.join("img");
    fs::write(&image, b"x").expect("image");

    let good_payload = fs::read_to_string(samples.join("release-5.3.0.json")).expect("payload");
    let huge = {
        let mut s = String::from("{\"notes\": \"");
        s.push_str(&"a".repeat(1 << 21));
        s.push_str("\"}");
        s
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "is empty"),
        ("junk", vec![0x00, 0xff, 0x13, 0x37, 0xfe], "not"),
        (
            "truncated",
            good_payload.as_bytes()[..good_payload.len() / 2].to_vec(),
            "not",
        ),
        ("huge", huge.into_bytes(), "larger than 1 MiB"),
    ];
    for (name, bytes, needle) in &cases {
        let input = d.join(format!("{name}.json"));
        fs::write(&input, bytes).expect("write");
        let out_path = d.join(format!("{name}.out"));
        let out = vendor(&[
            "sign",
            "--kind",
            "release",
            "--key",
            p(&release_key),
            "--in",
            p(&input),
            "--out",
            p(&out_path),
        ]);
        assert_refused(&out, needle);
        let out = vendor(&[
            "keyring",
            "sign",
            "--root-key",
            p(&root_key),
            "--in",
            p(&input),
            "--out",
            p(&out_path),
        ]);
        assert_refused(&out, needle);
        let out = vendor(&[
            "verify",
            "--root",
            p(&root_pub),
            "--keyring",
            p(&kout),
            p(&input),
        ]);
        assert_refused(&out, needle);
        let out = vendor(&[
            "bundle",
            "build",
            "--manifest",
            p(&input),
            "--image",
            p(&image),
            "--out",
            p(&out_path),
        ]);
        assert_refused(&out, needle);
        assert!(!out_path.exists(), "{name}: nothing may be written");
    }

    // Envelopes that parse but are wrong.
    let signed = d.join("r.signed.json");
    let out = vendor(&[
        "sign",
        "--kind",
        "release",
        "--key",
        p(&release_key),
        "--in",
        p(&samples.join("release-5.3.0.json")),
        "--out",
        p(&signed),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let env: serde_json::Value =
        serde_json::from_slice(&fs::read(&signed).expect("read")).expect("json");
    let mut bad_b64 = env.clone();
    bad_b64["payload"] = serde_json::json!("!!not base64!!");
    let mut no_sigs = env.clone();
    no_sigs["signatures"] = serde_json::json!([]);
    let mut bad_sig = env.clone();
    bad_sig["signatures"][0]["sig"] = serde_json::json!("AAAA");
    let mut other_type = env.clone();
    other_type["payloadType"] = serde_json::json!("application/vnd.example+json");
    for (name, v, needle) in [
        ("bad-base64", bad_b64, "base64"),
        ("no-signatures", no_sigs, "no signatures"),
        ("bad-signature", bad_sig, "does not verify"),
        ("other-type", other_type, "not an np document kind"),
    ] {
        let f = d.join(format!("{name}.json"));
        fs::write(&f, v.to_string()).expect("write");
        let out = vendor(&[
            "verify",
            "--root",
            p(&root_pub),
            "--keyring",
            p(&kout),
            p(&f),
        ]);
        assert_refused(&out, needle);
    }

    // A wrong root key file, and a bad private key file.
    let bad_pub = d.join("bad.pub");
    fs::write(&bad_pub, "not-a-key").expect("write");
    let out = vendor(&["verify", "--root", p(&bad_pub), p(&kout)]);
    assert_refused(&out, "not a public key");
    let bad_key = d.join("bad.key");
    fs::write(&bad_key, "AAAA\n").expect("write");
    fs::set_permissions(&bad_key, fs::Permissions::from_mode(0o600)).expect("chmod");
    let out_path = d.join("never.json");
    let out = vendor(&[
        "sign",
        "--kind",
        "release",
        "--key",
        p(&bad_key),
        "--in",
        p(&samples.join("release-5.3.0.json")),
        "--out",
        p(&out_path),
    ]);
    assert_refused(&out, "not a private key");
    // A payload of another kind, and an unknown field.
    let out = vendor(&[
        "sign",
        "--kind",
        "release",
        "--key",
        p(&release_key),
        "--in",
        p(&samples.join("time.json")),
        "--out",
        p(&out_path),
    ]);
    assert_refused(&out, "not a valid release manifest payload");
    let typo = d.join("typo.json");
    fs::write(&typo, good_payload.replace("\"notes\"", "\"nots\"")).expect("write");
    let out = vendor(&[
        "sign",
        "--kind",
        "release",
        "--key",
        p(&release_key),
        "--in",
        p(&typo),
        "--out",
        p(&out_path),
    ]);
    assert_refused(&out, "\"nots\"");
    // A keyring signed by a key that is not among its own root keys.
    let out = vendor(&[
        "keyring",
        "sign",
        "--root-key",
        p(&release_key),
        "--in",
        p(&samples.join("keyring.json")),
        "--out",
        p(&out_path),
    ]);
    assert_refused(&out, "own root keys");
    // An image that is not the manifest's.
    let out = vendor(&[
        "bundle",
        "build",
        "--manifest",
        p(&signed),
        "--image",
        p(&image),
        "--out",
        p(&out_path),
    ]);
    assert_refused(&out, "bytes but the manifest names");
    let same_size = d.join("same-size.img");
    fs::write(&same_size, vec![0u8; 65536]).expect("write");
    let out = vendor(&[
        "bundle",
        "build",
        "--manifest",
        p(&signed),
        "--image",
        p(&same_size),
        "--out",
        p(&out_path),
    ]);
    assert_refused(&out, "SHA-256");
    assert!(!out_path.exists());
    let leftovers: Vec<_> = fs::read_dir(d)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn usage_errors_exit_2_and_missing_files_exit_3() {
    let out = vendor(&["sign", "--kind", "nonsense"]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = vendor(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let signed = dir.path().join("r.json");
    let key = key_copy(dir.path(), "TEST-ONLY-release.key");
    let input = repo_root().join("firmware-samples/payloads/release-5.3.0.json");
    let out = vendor(&[
        "sign",
        "--kind",
        "release",
        "--key",
        p(&key),
        "--in",
        p(&input),
        "--out",
        p(&signed),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let root_pub = test_key("TEST-ONLY-root.pub");
    let out = vendor(&["verify", "--root", p(&root_pub), p(&signed)]);
    assert_eq!(out.code, 2, "a release needs --keyring: {out:?}");
    let missing = dir.path().join("missing.json");
    let out = vendor(&["verify", "--root", p(&root_pub), p(&missing)]);
    assert_eq!(out.code, 3, "{out:?}");
    let out = vendor(&["device", "list"]);
    assert_eq!(out.code, 2, "no server given: {out:?}");
}
