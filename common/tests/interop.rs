//! Interoperability with an independent DSSE implementation: vectors pinned from Python's
//! `securesystemslib` (PAE) and `cryptography` (Ed25519) by
//! `tests/data/interop/make_vectors.py`. Our PAE must equal theirs byte for byte, their
//! envelopes must verify here, and our signatures over the same inputs must be the same
//! bytes (Ed25519 is deterministic).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use np_common::docs::{self, Entitlement, Release};
use np_common::dsse::pae;
use np_common::keyring::{accept_keyring, RootSpec};
use np_common::{Envelope, PublicKey, SecretKey, Timestamp};
use serde_json::Value;

fn vectors() -> Value {
    let text = include_str!("data/interop/vectors.json");
    serde_json::from_str(text).expect("vectors.json parses")
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} is a string"))
}

fn keys(v: &Value) -> Vec<(SecretKey, PublicKey)> {
    v["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            let seed: [u8; 32] = hex::decode(s(k, "seed_hex"))
                .expect("hex")
                .try_into()
                .expect("32 bytes");
            let sk = SecretKey::from_seed(&seed);
            let pk = PublicKey::from_base64(s(k, "public_key")).expect("public key");
            assert_eq!(sk.public_key(), pk, "seed and public key agree");
            assert_eq!(pk.key_id().as_str(), s(k, "keyid"));
            (sk, pk)
        })
        .collect()
}

fn signers(v: &Value) -> Vec<usize> {
    v["signers"]
        .as_array()
        .expect("signers")
        .iter()
        .map(|i| i.as_u64().expect("index") as usize)
        .collect()
}

#[test]
fn pae_matches_securesystemslib_byte_for_byte() {
    let v = vectors();
    let cases = v["pae"].as_array().expect("pae");
    assert!(cases.len() >= 8);
    for c in cases {
        let payload = B64.decode(s(c, "payload_b64")).expect("payload");
        let expected = B64.decode(s(c, "pae_b64")).expect("pae");
        assert_eq!(pae(s(c, "payload_type"), &payload), expected, "{c}");
    }
}

#[test]
fn python_signed_envelopes_verify_and_our_signatures_are_identical() {
    let v = vectors();
    let keys = keys(&v);
    for case in v["envelopes"].as_array().expect("envelopes") {
        let json = serde_json::to_vec(&case["envelope"]).expect("json");
        let theirs = Envelope::parse(&json).expect("their envelope parses");
        let idx = signers(case);
        let pubs: Vec<&PublicKey> = idx.iter().map(|i| &keys[*i].1).collect();
        let (payload, found) = theirs
            .verified_signers(&theirs.payload_type, pubs.iter().copied())
            .expect("verifies");
        assert_eq!(found.len(), idx.len(), "every Python signature verifies");
        let sks: Vec<&SecretKey> = idx.iter().map(|i| &keys[*i].0).collect();
        let ours = Envelope::sign(&theirs.payload_type, &payload, &sks);
        assert_eq!(ours.payload, theirs.payload);
        assert_eq!(ours.signatures, theirs.signatures, "identical signatures");

        // A flipped payload byte breaks every signature.
        let mut tampered = theirs.clone();
        let mut bytes = payload.clone();
        bytes.push(b'!');
        tampered.payload = B64.encode(&bytes);
        let (_, none) = tampered
            .verified_signers(&theirs.payload_type, pubs.iter().copied())
            .expect("parses");
        assert!(none.is_empty());
    }
}

#[test]
fn python_signed_documents_verify_as_np_documents() {
    let v = vectors();
    let keys = keys(&v);
    let docs_v = v["documents"].as_array().expect("documents");
    let env = |kind: &str| {
        let d = docs_v.iter().find(|d| d["kind"] == kind).expect("kind");
        Envelope::parse(&serde_json::to_vec(&d["envelope"]).expect("json")).expect("parses")
    };
    let now: Timestamp = "2026-11-23T00:00:00Z".parse().expect("time");
    let root = RootSpec::pinned(vec![keys[0].1.clone()]);
    let accepted = accept_keyring(&env("keyring"), &root, None, now).expect("keyring accepted");
    assert_eq!(accepted.keyring.version, 7);
    let release: Release = docs::verify(&env("release"), &accepted.keyring).expect("release");
    assert_eq!(release.version.to_string(), "5.3.0");
    assert_eq!(release.notes, "Behebt Fehler – 修正");
    let e: Entitlement = docs::verify(&env("entitlement"), &accepted.keyring).expect("ent");
    assert_eq!(e.sequence, 7);
}
