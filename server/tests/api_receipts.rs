//! Offline requests and receipts through the API in process: every refusal with its exact
//! code, all-or-nothing lists, the audit entry of an upload, receipts carried by a
//! check-in, and bundles compressed only for a client that accepts gzip.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{assert_error, Api, NR2000};
use http_body_util::BodyExt as _;
use np_common::api::Outcome;
use np_common::device_docs::{sign_device, DeviceRequest, Receipt, SlotName};
use np_common::{SecretKey, Serial, Version};
use serde_json::{json, Value};
use tower::ServiceExt as _;

fn key() -> SecretKey {
    SecretKey::from_seed(&[42; 32])
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

async fn publish(api: &Api, version: &str) {
    let image = format!("image of {version}").into_bytes();
    let admin = api.admin.clone();
    let (s, blob) = api.raw("PUT", "/api/v1/blobs", Some(&admin), &image).await;
    assert_eq!(s, 201, "{blob}");
    let (s, r) = api
        .call(
            "POST",
            "/api/v1/releases",
            Some(
                json!({"version": version, "security_version": 1, "models": ["NR-2000"],
                "min_from_version": "0.0.0", "released_at": "2026-10-01T00:00:00Z",
                "image": {"sha256": blob["sha256"]}, "notes": ""}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{r}");
}

fn request(serial: &str) -> DeviceRequest {
    DeviceRequest {
        serial: Serial::parse(serial).unwrap(),
        model: Serial::parse(serial).unwrap().model(),
        version: v("1.0.0"),
        security_version: 1,
        active_slot: SlotName::A,
        entitlement_sequence: Some(1),
        time_floor: None,
        nonce: "00112233445566778899aabbccddeeff".into(),
        created_at: "2026-11-23T09:00:00Z".parse().unwrap(),
    }
}

fn receipt(seq: u64, outcome: Outcome, from: &str, to: &str) -> Receipt {
    Receipt {
        serial: Serial::parse(NR2000).unwrap(),
        seq,
        from_version: Some(v(from)),
        to_version: Some(v(to)),
        outcome,
        detail: format!("receipt {seq}"),
        at: "2026-11-23T09:30:00Z".parse().unwrap(),
        image_sha256: None,
        request_nonce: None,
    }
}

fn to_json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

#[tokio::test]
async fn requests_are_refused_with_their_exact_codes() {
    let api = Api::new();
    publish(&api, "2.0.0").await;
    let env = sign_device(&request(NR2000), &key());
    let got = api
        .call("POST", "/api/v1/bundles", Some(to_json(&env)))
        .await;
    assert_error(&got, 404, "not_found");
    api.register(NR2000, "2026-01-01").await;
    let got = api
        .call("POST", "/api/v1/bundles", Some(to_json(&env)))
        .await;
    assert_error(&got, 409, "no_device_key");
    let other = common::serial("NR-2000", 7);
    api.register_box(&other, "2026-01-01", &SecretKey::from_seed(&[7; 32]))
        .await;
    // Another box's request signed with a key that is not its own.
    let forged = sign_device(&request(&other), &key());
    let got = api
        .call("POST", "/api/v1/bundles", Some(to_json(&forged)))
        .await;
    assert_error(&got, 401, "bad_request_signature");
    // A receipt is not a request.
    let wrong = sign_device(&receipt(1, Outcome::Installed, "1.0.0", "2.0.0"), &key());
    let got = api
        .call("POST", "/api/v1/bundles", Some(to_json(&wrong)))
        .await;
    assert_error(&got, 400, "bad_document");
    let got = api
        .call("POST", "/api/v1/bundles", Some(json!({"x": 1})))
        .await;
    assert_eq!(got.0, 400, "{}", got.1);
}

#[tokio::test]
async fn bundles_are_gzip_only_for_a_client_that_accepts_it() {
    let api = Api::new();
    publish(&api, "2.0.0").await;
    let k = SecretKey::from_seed(&[7; 32]);
    let serial = common::serial("NR-2000", 7);
    api.register_box(&serial, "2026-01-01", &k).await;
    let body = serde_json::to_vec(&sign_device(&request(&serial), &k)).unwrap();
    for gzip in [false, true] {
        let mut b = Request::post("/api/v1/bundles")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", api.admin));
        if gzip {
            b = b.header("accept-encoding", "br, gzip;q=0.8");
        }
        let resp = api
            .app
            .clone()
            .oneshot(b.body(Body::from(body.clone())).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(h.get("content-encoding").is_some(), gzip);
        assert_eq!(h.get("content-length").is_some(), !gzip);
        assert_eq!(
            h["content-disposition"],
            format!("attachment; filename=\"{serial}-2.0.0.tar\"")
        );
        assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), gzip);
        // Nothing was heard from the box since the request: not stale.
        assert!(h.get("x-np-stale-request").is_none());
    }
}

#[tokio::test]
async fn a_lapsed_box_is_refused_naming_the_rule() {
    let api = Api::new();
    publish(&api, "2.0.0").await;
    api.register_box(NR2000, "2024-01-10", &key()).await;
    let env = sign_device(&request(NR2000), &key());
    let got = api
        .call("POST", "/api/v1/bundles", Some(to_json(&env)))
        .await;
    assert_error(&got, 403, "warranty_expired");
    assert_eq!(got.1["error"]["details"]["rule"], "warranty_expired");
}

#[tokio::test]
async fn receipt_lists_are_checked_whole_before_anything_is_stored() {
    let api = Api::new();
    api.register_box(NR2000, "2026-01-01", &key()).await;
    let good = sign_device(&receipt(1, Outcome::Installed, "1.0.0", "2.0.0"), &key());
    let forged = sign_device(
        &receipt(2, Outcome::Installed, "2.0.0", "3.0.0"),
        &SecretKey::from_seed(&[9; 32]),
    );
    let got = api
        .call("POST", "/api/v1/receipts", Some(json!([good, forged])))
        .await;
    assert_error(&got, 401, "bad_receipt_signature");
    assert!(got.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("receipt 2 of the list"));
    let (_, list) = api
        .call("GET", &format!("/api/v1/devices/{NR2000}/receipts"), None)
        .await;
    assert_eq!(list, json!([]), "nothing of a refused list is stored");

    let got = api.call("POST", "/api/v1/receipts", Some(json!([]))).await;
    assert_error(&got, 400, "no_receipts");
    let many: Vec<_> = (1..=65)
        .map(|i| sign_device(&receipt(i, Outcome::Installed, "1.0.0", "2.0.0"), &key()))
        .collect();
    let got = api
        .call("POST", "/api/v1/receipts", Some(to_json(&many)))
        .await;
    assert_error(&got, 400, "too_many_receipts");

    // One receipt alone (not a list) is stored, audited with the uploader's name.
    let (s, a) = api
        .call("POST", "/api/v1/receipts", Some(to_json(&good)))
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        a["receipts"][0],
        json!({"serial": NR2000, "seq": 1, "new": true, "latest": true})
    );
    let (_, audit) = api
        .call("GET", &format!("/api/v1/audit?serial={NR2000}"), None)
        .await;
    // Newest first.
    let last = audit["entries"][0].clone();
    assert_eq!(
        (last["action"].as_str(), last["actor"].as_str()),
        (Some("receipt"), Some("admin")),
        "{last}"
    );
    assert_eq!(last["after"]["version"], "2.0.0");

    // Another receipt with the same seq: the box's state was reset; nothing is stored.
    let other = sign_device(&receipt(1, Outcome::Refused, "1.0.0", "2.0.0"), &key());
    let got = api
        .call("POST", "/api/v1/receipts", Some(to_json(&other)))
        .await;
    assert_error(&got, 409, "receipt_conflict");
    let (_, d) = api
        .call("GET", &format!("/api/v1/devices/{NR2000}"), None)
        .await;
    assert_eq!(d["last_result"]["outcome"], "installed");
}

#[tokio::test]
async fn receipts_ride_on_a_check_in_and_the_box_is_told_which_are_done() {
    let api = Api::new();
    api.register_box(NR2000, "2026-01-01", &key()).await;
    let r1 = sign_device(&receipt(1, Outcome::Installed, "1.0.0", "2.0.0"), &key());
    let r2 = sign_device(&receipt(2, Outcome::RolledBack, "2.0.0", "1.0.0"), &key());
    // Signed by a key the box no longer has: refused for good, so done too.
    let stale = sign_device(
        &receipt(3, Outcome::Installed, "1.0.0", "2.0.0"),
        &SecretKey::from_seed(&[9; 32]),
    );
    let body = serde_json::to_vec(&json!({"version": "1.0.0", "slot": "a", "state": "idle",
        "nonce": "00ff", "receipts": [r1, r2, stale]}))
    .unwrap();
    let (s, v) = api
        .device(&key(), NR2000, "POST", "/api/v1/device/check-in", &body)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["receipts_done"], json!([1, 2, 3]));
    let (_, list) = api
        .call("GET", &format!("/api/v1/devices/{NR2000}/receipts"), None)
        .await;
    let seqs: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["receipt"]["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(2), json!(1)]);
    assert_eq!(list[0]["via"], "check-in");
    // The rollback receipt marks 2.0.0 as rolled back from.
    let (_, ev) = api
        .call("GET", &format!("/api/v1/devices/{NR2000}/events"), None)
        .await;
    assert_eq!(ev["report"]["rolled_back_from"], json!(["2.0.0"]));

    let too_many: Vec<_> = (1..=17)
        .map(|i| sign_device(&receipt(i, Outcome::Installed, "1.0.0", "2.0.0"), &key()))
        .collect();
    let body = serde_json::to_vec(&json!({"version": "1.0.0", "slot": "a", "state": "idle",
        "nonce": "00ff", "receipts": too_many}))
    .unwrap();
    let got = api
        .device(&key(), NR2000, "POST", "/api/v1/device/check-in", &body)
        .await;
    assert_error(&got, 400, "too_many_receipts");
}
