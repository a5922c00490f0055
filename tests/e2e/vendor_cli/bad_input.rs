//! Bad input for np-vendor's offline commands: empty files, junk bytes, truncated JSON,
//! wrong base64, missing signatures, huge payloads, wrong keys and kinds. Each must end
//! with exit 1 and one sentence, no panic, and no output file; usage errors exit 2 and
//! missing files exit 3.

use super::{assert_refused, key_copy, p, vendor};
use np_tests::{repo_root, test_key};
use std::fs;
use std::os::unix::fs::PermissionsExt as _;

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
