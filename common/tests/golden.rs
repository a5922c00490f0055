//! Golden files for every wire type: a format change shows up as a reviewed diff.
//! Run with `UPDATE_GOLDEN=1` to rewrite them after an intended change.

mod support;

use np_common::api::*;
use np_common::device_docs;
use np_common::docs::{self, Action, ActionKind, TimeToken};
use np_common::Envelope;
use serde::Serialize;
use std::path::PathBuf;
use support::*;

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "{name} changed; if intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    );
}

fn pretty<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("serializes");
    s.push('\n');
    s
}

/// Checks the payload's JSON and the signed envelope (Ed25519 is deterministic).
fn check_doc<T: Serialize>(name: &str, doc: &T, env: &Envelope) {
    check(&format!("{name}.json"), &pretty(doc));
    check(&format!("{name}.envelope.json"), &env.to_json_pretty());
    // The envelope's payload is exactly the compact JSON of the document.
    assert_eq!(
        env.payload_bytes().expect("b64"),
        serde_json::to_vec(doc).expect("ser")
    );
}

fn time_token() -> TimeToken {
    TimeToken {
        now: ts("2026-11-23T10:00:00Z"),
        nonce: "8f1c2a".into(),
    }
}

fn action() -> Action {
    Action {
        serial: serial(),
        action: ActionKind::Upgrade,
        version: Some(v("5.3.0")),
        issued_at: ts("2026-11-23T10:05:00Z"),
        case: None,
    }
}

#[test]
fn signed_documents() {
    let kr = keyring_doc(3);
    check_doc("keyring", &kr, &kr.sign(&[&root()]));
    check_doc(
        "entitlement",
        &entitlement(),
        &docs::sign(&entitlement(), &online()),
    );
    check_doc("time", &time_token(), &docs::sign(&time_token(), &online()));
    check_doc(
        "release",
        &release(),
        &docs::sign(&release(), &release_key()),
    );
    check_doc("action", &action(), &docs::sign(&action(), &online()));
    check_doc(
        "request",
        &request(),
        &device_docs::sign_device(&request(), &device_key()),
    );
    check_doc(
        "receipt",
        &receipt(),
        &device_docs::sign_device(&receipt(), &device_key()),
    );
    check(
        "receipt-upload-answer.json",
        &pretty(&ReceiptUploadAnswer {
            receipts: vec![ReceiptStored {
                serial: serial(),
                seq: 12,
                new: true,
                latest: true,
            }],
        }),
    );
}

#[test]
fn api_bodies() {
    check("error.json", &pretty(&ErrorBody {
        error: ErrorInfo {
            code: "lapsed".into(),
            message: "coverage ended on 2026-03-01, 62 days ago (3 billable months); pay for the gap with reinstate to start a new term".into(),
            details: Some(serde_json::json!({"gap_days": 62, "billable_months": 3})),
        },
    }));
    check(
        "check-in-request.json",
        &pretty(&CheckInRequest {
            version: v("5.2.1"),
            slot: "a".into(),
            state: Phase::Idle,
            last_result: Some(LastResult {
                version: Some(v("5.2.1")),
                outcome: Outcome::Installed,
                detail: "committed".into(),
                at: ts("2026-11-01T03:00:00Z"),
            }),
            nonce: "8f1c2a".into(),
            receipts: vec![device_docs::sign_device(&receipt(), &device_key())],
        }),
    );
    let manifest = docs::sign(&release(), &release_key());
    check(
        "check-in-response.json",
        &pretty(&CheckInResponse {
            keyring: keyring_doc(3).sign(&[&root()]),
            entitlement: docs::sign(&entitlement(), &online()),
            time: docs::sign(&time_token(), &online()),
            available: Some(Available {
                manifest: manifest.clone(),
                refusal: None,
            }),
            offer: Some(Offer {
                manifest,
                url: format!("/api/v1/device/blobs/{}", release().image.sha256),
            }),
            action: Some(docs::sign(&action(), &online())),
            receipts_done: vec![12],
        }),
    );
    check(
        "device-event.json",
        &pretty(&DeviceEvent {
            version: Some(v("5.3.0")),
            event: EventKind::Commit,
            detail: "health check passed".into(),
        }),
    );
}

#[test]
fn device_request_message_layout() {
    let msg = device_request_message(
        "post",
        "/api/v1/device/check-in?x=1",
        "2026-11-23T10:00:00Z",
        "00112233445566778899aabbccddeeff",
        b"{}",
    );
    assert_eq!(
        String::from_utf8(msg).expect("ascii"),
        "POST\n/api/v1/device/check-in?x=1\n2026-11-23T10:00:00Z\n00112233445566778899aabbccddeeff\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
}

#[test]
fn request_signature_headers_verify_and_nonces_are_checked() {
    use np_common::api::{is_request_nonce, RequestSignature};
    let key = np_common::SecretKey::from_seed(&[3; 32]);
    let at: np_common::Timestamp = "2026-11-23T10:00:00.75Z".parse().expect("time");
    let sig = RequestSignature::sign(&key, "GET", "/p?q=1", at, "0123456789abcdef", b"");
    assert_eq!(sig.time, "2026-11-23T10:00:00Z");
    let msg = device_request_message("GET", "/p?q=1", &sig.time, &sig.nonce, b"");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&sig.signature)
        .expect("b64");
    assert!(key.public_key().verify(&msg, &raw));
    let names: Vec<_> = sig
        .headers("NR-2000-123456-4")
        .iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(
        names,
        ["x-np-serial", "x-np-time", "x-np-nonce", "x-np-signature"]
    );
    assert!(is_request_nonce("0123456789abcdef"));
    assert!(
        !is_request_nonce("0123456789abcde"),
        "15 digits is too short"
    );
    assert!(!is_request_nonce("0123456789abcdeg"));
    assert!(!is_request_nonce(&"a".repeat(129)));
}
