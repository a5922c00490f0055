//! Fuzzes envelope parsing and document verification.
//!
//! Every input is (1) parsed as a DSSE envelope and, if it parses, verified as a keyring
//! under a fixed root and as each document kind under a fixed keyring, and re-serialized;
//! and (2) past its first byte, signed as the payload of the kind that byte picks, by the
//! key holding that kind's role: verification must then succeed exactly when the payload
//! parses as that kind. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use np_common::docs::{self, Action, Document, Entitlement, Release, Role, TimeToken};
use np_common::keyring::{accept_keyring, KeyEntry, Keyring, RootSpec};
use np_common::{Envelope, SecretKey, Serial, Timestamp};
use std::sync::OnceLock;

struct Fixture {
    root_key: SecretKey,
    root: RootSpec,
    keyring: Keyring,
    online: SecretKey,
    release: SecretKey,
    now: Timestamp,
    serial: Serial,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = SecretKey::from_seed(&[1; 32]);
        let online = SecretKey::from_seed(&[2; 32]);
        let release = SecretKey::from_seed(&[3; 32]);
        let entry = |k: &SecretKey, roles: Vec<Role>| KeyEntry {
            keyid: k.public_key().key_id(),
            public_key: k.public_key(),
            roles,
        };
        let root_spec = RootSpec::pinned(vec![root.public_key()]);
        let keyring = Keyring {
            version: 1,
            expires: "2099-01-01T00:00:00Z".parse().expect("time"),
            root: root_spec.clone(),
            keys: vec![
                entry(&online, vec![Role::Entitlement, Role::Time]),
                entry(&release, vec![Role::Release]),
            ],
        };
        Fixture {
            root_key: root,
            root: root_spec,
            keyring,
            online,
            release,
            now: "2026-11-23T00:00:00Z".parse().expect("time"),
            serial: Serial::parse("NR-2000-123456-4").expect("serial"),
        }
    })
}

fn sign_then_verify<T: Document>(data: &[u8], key: &SecretKey, f: &Fixture) {
    let env = Envelope::sign(T::PAYLOAD_TYPE, data, &[key]);
    let parsed = Envelope::parse(&env.to_json()).expect("our own envelope parses");
    let verified = docs::verify::<T>(&parsed, &f.keyring);
    let parses = serde_json::from_slice::<T>(data).is_ok();
    assert_eq!(
        verified.is_ok(),
        parses,
        "verification must succeed iff the payload parses"
    );
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(env) = Envelope::parse(data) {
        let _ = env.payload_bytes();
        let _ = accept_keyring(&env, &f.root, None, f.now);
        let _ = docs::verify::<Release>(&env, &f.keyring);
        let _ = Entitlement::verify_for(&env, &f.keyring, &f.serial, Some(3));
        let _ = TimeToken::verify_nonce(&env, &f.keyring, "00");
        let _ = Action::verify_for(&env, &f.keyring, &f.serial, Some(f.now));
        let again = Envelope::parse(&env.to_json()).expect("re-serialized envelope parses");
        assert_eq!(again, env);
    }
    // One signed-payload check per input, chosen by its first byte (signing is the
    // expensive part; this keeps executions fast).
    if let Some((first, payload)) = data.split_first() {
        if payload.len() <= 4096 {
            match first % 5 {
                0 => sign_then_verify::<Release>(payload, &f.release, f),
                1 => sign_then_verify::<Entitlement>(payload, &f.online, f),
                2 => sign_then_verify::<TimeToken>(payload, &f.online, f),
                3 => sign_then_verify::<Action>(payload, &f.online, f),
                _ => {
                    let kr = Envelope::sign(docs::KEYRING_TYPE, payload, &[&f.root_key]);
                    let _ = accept_keyring(&kr, &f.root, None, f.now);
                }
            }
        }
    }
});
