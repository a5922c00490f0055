//! Signed documents: every keyring rejection, every document refusal, and tamper
//! properties of envelopes.

mod support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use np_common::docs::{self, Action, ActionKind, DocError, Entitlement, Release, Role, TimeToken};
use np_common::dsse::{Envelope, EnvelopeError};
use np_common::keyring::{accept_keyring, AcceptedKeyring, KeyringError, RootSpec};
use proptest::prelude::*;
use support::*;

fn pinned() -> RootSpec {
    RootSpec::pinned(vec![root().public_key()])
}

fn accepted(version: u64) -> AcceptedKeyring {
    let env = keyring_doc(version).sign(&[&root()]);
    accept_keyring(&env, &pinned(), None, ts("2026-11-23T00:00:00Z")).expect("valid keyring")
}

const NOW: &str = "2026-11-23T00:00:00Z";

#[test]
fn keyring_accepts_newer_and_same_bytes() {
    let stored = accepted(3);
    let again = keyring_doc(3).sign(&[&root()]);
    assert!(accept_keyring(&again, &pinned(), Some(&stored), ts(NOW)).is_ok());
    let newer = keyring_doc(4).sign(&[&root()]);
    assert_eq!(
        accept_keyring(&newer, &stored.keyring.root, Some(&stored), ts(NOW))
            .map(|k| k.keyring.version),
        Ok(4)
    );
}

#[test]
fn keyring_rejections_each_name_their_rule() {
    let stored = accepted(3);
    let now = ts(NOW);

    let older = keyring_doc(2).sign(&[&root()]);
    assert_eq!(
        accept_keyring(&older, &pinned(), Some(&stored), now),
        Err(KeyringError::VersionRollback { stored: 3, got: 2 })
    );

    let mut same_version = keyring_doc(3);
    same_version.expires = ts("2027-06-30T00:00:00Z");
    assert_eq!(
        accept_keyring(
            &same_version.sign(&[&root()]),
            &pinned(),
            Some(&stored),
            now
        ),
        Err(KeyringError::SameVersionDiffers { version: 3 })
    );

    assert_eq!(
        accept_keyring(
            &keyring_doc(4).sign(&[&root()]),
            &pinned(),
            None,
            ts("2028-01-01T00:00:00Z")
        ),
        Err(KeyringError::Expired {
            expires: ts("2027-12-31T00:00:00Z")
        })
    );

    // Signed by a key that is not the pinned root.
    assert_eq!(
        accept_keyring(&keyring_doc(4).sign(&[&key(9)]), &pinned(), None, now),
        Err(KeyringError::RootThreshold { have: 0, need: 1 })
    );

    // Threshold 2 of the trusted root: one signature is not enough.
    let two = RootSpec {
        threshold: 2,
        keys: vec![root().public_key(), key(8).public_key()],
    };
    assert_eq!(
        accept_keyring(&keyring_doc(4).sign(&[&root()]), &two, None, now),
        Err(KeyringError::RootThreshold { have: 1, need: 2 })
    );

    // Root rotation: the new root must sign too.
    let mut rotated = keyring_doc(4);
    rotated.root = RootSpec {
        threshold: 1,
        keys: vec![key(8).public_key()],
    };
    assert_eq!(
        accept_keyring(&rotated.sign(&[&root()]), &pinned(), Some(&stored), now),
        Err(KeyringError::NewRootThreshold { have: 0, need: 1 })
    );
    let both = accept_keyring(
        &rotated.sign(&[&root(), &key(8)]),
        &pinned(),
        Some(&stored),
        now,
    );
    assert_eq!(
        both.map(|k| k.keyring.root.keys[0].clone()),
        Ok(key(8).public_key())
    );

    let mut impossible = keyring_doc(4);
    impossible.root.threshold = 2;
    assert_eq!(
        accept_keyring(&impossible.sign(&[&root()]), &pinned(), None, now),
        Err(KeyringError::BadThreshold {
            threshold: 2,
            keys: 1
        })
    );

    let mut bad_id = keyring_doc(4);
    bad_id.keys[0].keyid = release_key().public_key().key_id();
    assert!(matches!(
        accept_keyring(&bad_id.sign(&[&root()]), &pinned(), None, now),
        Err(KeyringError::KeyIdMismatch { .. })
    ));

    let wrong_type = Envelope::sign("application/vnd.np.release+json", b"{}", &[&root()]);
    assert!(matches!(
        accept_keyring(&wrong_type, &pinned(), None, now),
        Err(KeyringError::Envelope(EnvelopeError::WrongType { .. }))
    ));

    let junk = Envelope::sign(docs::KEYRING_TYPE, b"not json", &[&root()]);
    assert!(matches!(
        accept_keyring(&junk, &pinned(), None, now),
        Err(KeyringError::Payload(_))
    ));
}

#[test]
fn documents_need_a_key_with_their_role() {
    let kr = accepted(3).keyring;
    let ent = entitlement();
    let good = docs::sign(&ent, &online());
    assert_eq!(docs::verify::<Entitlement>(&good, &kr), Ok(ent.clone()));

    // The release key lacks the entitlement role.
    let by_release = docs::sign(&ent, &release_key());
    assert!(matches!(
        docs::verify::<Entitlement>(&by_release, &kr),
        Err(DocError::WrongRole {
            role: Role::Entitlement,
            ..
        })
    ));
    // The online key lacks the release role.
    assert!(matches!(
        docs::verify::<Release>(&docs::sign(&release(), &online()), &kr),
        Err(DocError::WrongRole {
            role: Role::Release,
            ..
        })
    ));
    assert_eq!(
        docs::verify::<Entitlement>(&docs::sign(&ent, &key(9)), &kr),
        Err(DocError::UnknownSigner {
            kind: "entitlement"
        })
    );
    let mut forged = good.clone();
    forged.payload = B64.encode(br#"{"serial":"NR-2000-123456-4"}"#);
    assert_eq!(
        docs::verify::<Entitlement>(&forged, &kr),
        Err(DocError::BadSignature {
            kind: "entitlement"
        })
    );
    let mut unsigned = good.clone();
    unsigned.signatures.clear();
    assert_eq!(
        docs::verify::<Entitlement>(&unsigned, &kr),
        Err(DocError::Envelope(EnvelopeError::NoSignatures))
    );
    // payloadType is checked before anything else.
    assert!(matches!(
        docs::verify::<Release>(&good, &kr),
        Err(DocError::Envelope(EnvelopeError::WrongType { .. }))
    ));
    let bad_payload = Envelope::sign(Entitlement_TYPE, b"{\"serial\": 1}", &[&online()]);
    assert!(matches!(
        docs::verify::<Entitlement>(&bad_payload, &kr),
        Err(DocError::Payload { .. })
    ));
}

#[allow(non_upper_case_globals)]
const Entitlement_TYPE: &str = "application/vnd.np.entitlement+json";

#[test]
fn entitlement_time_and_action_checks() {
    let kr = accepted(3).keyring;
    let env = docs::sign(&entitlement(), &online());
    let other = np_common::Serial::parse("NR-1000-000001-7").expect("valid");
    assert!(matches!(
        Entitlement::verify_for(&env, &kr, &other, None),
        Err(DocError::OtherSerial { .. })
    ));
    assert_eq!(
        Entitlement::verify_for(&env, &kr, &serial(), Some(8)),
        Err(DocError::Replay { stored: 8, got: 7 })
    );
    assert!(Entitlement::verify_for(&env, &kr, &serial(), Some(7)).is_ok());

    let tok = docs::sign(
        &TimeToken {
            now: ts(NOW),
            nonce: "ab".into(),
        },
        &online(),
    );
    assert!(TimeToken::verify_nonce(&tok, &kr, "ab").is_ok());
    assert!(matches!(
        TimeToken::verify_nonce(&tok, &kr, "cd"),
        Err(DocError::NonceMismatch { .. })
    ));

    let act = Action {
        serial: serial(),
        action: ActionKind::Rollback,
        version: None,
        issued_at: ts(NOW),
        case: None,
    };
    let aenv = docs::sign(&act, &online());
    assert!(Action::verify_for(&aenv, &kr, &serial(), Some(ts("2026-11-22T00:00:00Z"))).is_ok());
    assert!(matches!(
        Action::verify_for(&aenv, &kr, &serial(), Some(ts(NOW))),
        Err(DocError::StaleAction { .. })
    ));
    assert!(matches!(
        Action::verify_for(&aenv, &kr, &other, None),
        Err(DocError::OtherSerial { .. })
    ));
}

#[test]
fn device_documents_verify_only_under_their_own_device_key() {
    use np_common::device_docs::{
        claimed_serial, sign_device, verify_device, DeviceDocError, DeviceRequest, Receipt,
    };
    let dk = device_key().public_key();
    let req = sign_device(&request(), &device_key());
    assert_eq!(
        verify_device::<DeviceRequest>(&req, &dk, &serial()),
        Ok(request())
    );
    assert_eq!(claimed_serial::<DeviceRequest>(&req), Ok(serial()));
    let rec = sign_device(&receipt(), &device_key());
    assert_eq!(
        verify_device::<Receipt>(&rec, &dk, &serial()),
        Ok(receipt())
    );

    // Another box's key: refused, naming the box whose key it is not.
    let by_other = sign_device(&receipt(), &key(6));
    assert_eq!(
        verify_device::<Receipt>(&by_other, &dk, &serial()),
        Err(DeviceDocError::NotSignedByDevice {
            kind: "receipt",
            serial: serial().to_string()
        })
    );
    // A request is not a receipt: the payloadType is checked first.
    assert!(matches!(
        verify_device::<Receipt>(&req, &dk, &serial()),
        Err(DeviceDocError::Envelope(EnvelopeError::WrongType { .. }))
    ));
    // A payload naming another serial, even signed by the right key.
    let mut other = receipt();
    other.serial = np_common::Serial::parse("NR-1000-000001-7").expect("valid");
    assert!(matches!(
        verify_device::<Receipt>(&sign_device(&other, &device_key()), &dk, &serial()),
        Err(DeviceDocError::Payload {
            kind: "receipt",
            ..
        })
    ));
    // Field checks: seq 0, a long detail, a short nonce.
    let mut zero = receipt();
    zero.seq = 0;
    assert!(matches!(
        verify_device::<Receipt>(&sign_device(&zero, &device_key()), &dk, &serial()),
        Err(DeviceDocError::Payload { .. })
    ));
    let mut long = receipt();
    long.detail = "x".repeat(4097);
    assert!(matches!(
        verify_device::<Receipt>(&sign_device(&long, &device_key()), &dk, &serial()),
        Err(DeviceDocError::Payload { .. })
    ));
    let mut short = request();
    short.nonce = "abc".into();
    assert!(matches!(
        verify_device::<DeviceRequest>(&sign_device(&short, &device_key()), &dk, &serial()),
        Err(DeviceDocError::Payload { .. })
    ));
    // Unknown fields are refused (a signed document means exactly what it says).
    let extra = Envelope::sign(
        "application/vnd.np.receipt+json",
        br#"{"serial":"NR-2000-123456-4","seq":1,"from_version":null,"to_version":null,"outcome":"installed","detail":"","at":"2026-11-24T09:30:00Z","image_sha256":null,"x":1}"#,
        &[&device_key()],
    );
    assert!(matches!(
        verify_device::<Receipt>(&extra, &dk, &serial()),
        Err(DeviceDocError::Payload { .. })
    ));
}

#[test]
fn a_receipt_names_the_version_the_box_runs_after_it() {
    use np_common::api::Outcome;
    let mut r = receipt();
    assert_eq!(r.running_after(), Some(&v("5.3.0")));
    r.outcome = Outcome::Refused;
    assert_eq!(r.running_after(), Some(&v("5.2.1")));
    r.outcome = Outcome::RolledBack;
    assert_eq!(r.running_after(), Some(&v("5.3.0")));
    r.outcome = Outcome::Failed;
    assert_eq!(r.running_after(), Some(&v("5.2.1")));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_change_to_a_signed_receipt_or_request_fails(
        flip in any::<usize>(),
        bit in 0u8..8,
        which in any::<bool>(),
    ) {
        use np_common::device_docs::{sign_device, verify_device, DeviceRequest, Receipt};
        let dk = device_key().public_key();
        let env = if which {
            sign_device(&receipt(), &device_key())
        } else {
            sign_device(&request(), &device_key())
        };
        let check = |e: &Envelope| if which {
            verify_device::<Receipt>(e, &dk, &serial()).is_ok()
        } else {
            verify_device::<DeviceRequest>(e, &dk, &serial()).is_ok()
        };
        prop_assert!(check(&env));
        let mut p = env.payload_bytes().expect("b64");
        let i = flip % p.len();
        p[i] ^= 1 << bit;
        let mut t = env.clone();
        t.payload = B64.encode(&p);
        prop_assert!(!check(&t));
        let mut raw = B64.decode(&env.signatures[0].sig).expect("b64");
        let i = flip % raw.len();
        raw[i] ^= 1 << bit;
        let mut t = env.clone();
        t.signatures[0].sig = B64.encode(&raw);
        prop_assert!(!check(&t));
    }

    #[test]
    fn any_change_to_payload_type_or_signature_fails(
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        flip in any::<usize>(),
        bit in 0u8..8,
    ) {
        let sk = online();
        let pk = sk.public_key();
        let env = Envelope::sign("application/vnd.np.time+json", &payload, &[&sk]);
        let (_, ok) = env.verified_signers("application/vnd.np.time+json", [&pk]).expect("parses");
        prop_assert_eq!(ok.len(), 1);

        // Payload: flip one bit (or append a byte to an empty payload).
        let mut p = payload.clone();
        if p.is_empty() { p.push(0) } else { let i = flip % p.len(); p[i] ^= 1 << bit; }
        let mut t = env.clone();
        t.payload = B64.encode(&p);
        let (_, s) = t.verified_signers("application/vnd.np.time+json", [&pk]).expect("parses");
        prop_assert!(s.is_empty());

        // Type: a different payloadType never verifies, even if the caller expects it.
        let mut t = env.clone();
        t.payload_type = "application/vnd.np.time+jsoN".into();
        let (_, s) = t.verified_signers("application/vnd.np.time+jsoN", [&pk]).expect("parses");
        prop_assert!(s.is_empty());

        // Signature: flip one bit of the raw signature.
        let mut raw = B64.decode(&env.signatures[0].sig).expect("b64");
        let i = flip % raw.len();
        raw[i] ^= 1 << bit;
        let mut t = env.clone();
        t.signatures[0].sig = B64.encode(&raw);
        let (_, s) = t.verified_signers("application/vnd.np.time+json", [&pk]).expect("parses");
        prop_assert!(s.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let kr = accepted(3).keyring;
        if let Ok(env) = Envelope::parse(&bytes) {
            let _ = docs::verify::<Entitlement>(&env, &kr);
            let _ = accept_keyring(&env, &pinned(), None, ts(NOW));
            let dk = device_key().public_key();
            let _ = np_common::device_docs::verify_device::<np_common::device_docs::Receipt>(&env, &dk, &serial());
            let _ = np_common::device_docs::claimed_serial::<np_common::device_docs::DeviceRequest>(&env);
        }
    }
}
