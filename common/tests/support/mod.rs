//! Fixed keys and documents shared by np-common's integration tests.
#![allow(dead_code)]

use jiff::civil::date;
use jiff::Timestamp;
use np_common::docs::{Entitlement, ImageRef, Release, Role, Status};
use np_common::keyring::{KeyEntry, Keyring, RootSpec};
use np_common::warranty::{Term, TermKind};
use np_common::{Model, SecretKey, Serial, Sha256Digest, Version};

pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}
pub fn root() -> SecretKey {
    key(1)
}
pub fn online() -> SecretKey {
    key(2)
}
pub fn release_key() -> SecretKey {
    key(3)
}
pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("valid timestamp")
}
pub fn v(s: &str) -> Version {
    Version::parse(s).expect("valid version")
}
pub fn serial() -> Serial {
    Serial::parse("NR-2000-123456-4").expect("valid serial")
}
pub fn model() -> Model {
    Model::parse("NR-2000").expect("valid model")
}

pub fn keyring_doc(version: u64) -> Keyring {
    let entry = |k: &SecretKey, roles: Vec<Role>| KeyEntry {
        keyid: k.public_key().key_id(),
        public_key: k.public_key(),
        roles,
    };
    Keyring {
        version,
        expires: ts("2027-12-31T00:00:00Z"),
        root: RootSpec {
            threshold: 1,
            keys: vec![root().public_key()],
        },
        keys: vec![
            entry(&online(), vec![Role::Entitlement, Role::Time]),
            entry(&release_key(), vec![Role::Release]),
        ],
    }
}

pub fn entitlement() -> Entitlement {
    Entitlement {
        serial: serial(),
        model: model(),
        device_key: None,
        sequence: 7,
        issued_at: ts("2026-11-23T10:00:00Z"),
        coverage_end: date(2027, 3, 1),
        status: Status::Active,
        terms: vec![
            Term {
                kind: TermKind::Warranty,
                start: date(2025, 3, 1),
                end: date(2026, 3, 1),
            },
            Term {
                kind: TermKind::Extension,
                start: date(2026, 3, 1),
                end: date(2027, 3, 1),
            },
        ],
    }
}

pub fn release() -> Release {
    Release {
        product: "n-reporter".into(),
        version: v("5.3.0"),
        security_version: 4,
        models: vec![Model::parse("NR-1000").expect("valid"), model()],
        channel: "stable".into(),
        released_at: ts("2026-10-01T00:00:00Z"),
        min_from_version: v("5.0.0"),
        image: ImageRef {
            name: "n-reporter-5.3.0.img".into(),
            size: 268_435_456,
            sha256: Sha256Digest::of(b"image"),
        },
        notes: "Fixes the report scheduler.".into(),
    }
}

/// The box's own device key (signs requests and receipts).
pub fn device_key() -> SecretKey {
    key(5)
}

pub fn request() -> np_common::device_docs::DeviceRequest {
    np_common::device_docs::DeviceRequest {
        serial: serial(),
        model: model(),
        version: v("5.2.1"),
        security_version: 3,
        active_slot: np_common::device_docs::SlotName::A,
        entitlement_sequence: Some(7),
        time_floor: Some(ts("2026-11-20T08:00:00Z")),
        nonce: "00112233445566778899aabbccddeeff".into(),
        created_at: ts("2026-11-23T10:00:00Z"),
    }
}

pub fn receipt() -> np_common::device_docs::Receipt {
    np_common::device_docs::Receipt {
        serial: serial(),
        seq: 12,
        from_version: Some(v("5.2.1")),
        to_version: Some(v("5.3.0")),
        outcome: np_common::api::Outcome::Installed,
        detail: "5.3.0 installed and committed".into(),
        at: ts("2026-11-24T09:30:00Z"),
        image_sha256: Some(release().image.sha256),
        request_nonce: Some("00112233445566778899aabbccddeeff".into()),
    }
}
