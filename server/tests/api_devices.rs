//! API tests: register, show, list, the entitlement and keyring routes (docs/api.md).
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_error, serial, Api, NR2000};
use np_common::docs::{verify, Entitlement, Status};
use np_common::keyring::{accept_keyring, RootSpec};
use np_common::{Envelope, PublicKey};
use serde_json::json;

#[tokio::test]
async fn register_answers_the_device_with_a_signed_entitlement() {
    let api = Api::new();
    let d = api.register(NR2000, "2025-03-01").await;
    assert_eq!(d["model"], "NR-2000");
    assert_eq!(d["status"], "active");
    assert_eq!(d["coverage_end"], "2026-03-01");
    assert_eq!(
        d["terms"],
        json!([{"kind": "warranty", "start": "2025-03-01", "end": "2026-03-01"}])
    );
    assert_eq!(d["sequence"], 1);
    for k in [
        "customer",
        "purchase_date",
        "device_key",
        "replaced_by",
        "last_check_in",
        "version",
        "pending_action",
    ] {
        assert!(d.get(k).is_some(), "device lacks {k}");
    }
    let env: Envelope = serde_json::from_value(d["entitlement"].clone()).unwrap();
    let e: Entitlement = verify(&env, &api.keyring()).unwrap();
    assert_eq!(
        (e.serial.as_str(), e.sequence, e.status),
        (NR2000, 1, Status::Active)
    );
    assert_eq!(e.coverage_end.to_string(), "2026-03-01");

    let (s, shown) = api
        .call("GET", &format!("/api/v1/devices/{NR2000}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(shown, d);
    let (s, ent) = api
        .call(
            "GET",
            &format!("/api/v1/devices/{NR2000}/entitlement"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(ent, d["entitlement"]);
}

#[tokio::test]
async fn register_with_model_and_device_key() {
    let api = Api::new();
    let key = np_common::SecretKey::from_seed(&[5; 32])
        .public_key()
        .to_base64();
    let (s, d) = api
        .call(
            "POST",
            "/api/v1/devices",
            Some(
                json!({"serial": NR2000, "model": "NR-2000", "purchase_date": "2024-02-29",
                        "customer": "Globex", "device_key": key}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    assert_eq!(d["device_key"], key.as_str());
    assert_eq!(d["coverage_end"], "2025-02-28", "Feb 29 + 1 year clamps");
    let env: Envelope = serde_json::from_value(d["entitlement"].clone()).unwrap();
    let e: Entitlement = verify(&env, &api.keyring()).unwrap();
    assert_eq!(e.device_key.as_deref(), Some(key.as_str()));
}

#[tokio::test]
async fn register_refuses_bad_values_with_their_codes() {
    let api = Api::new();
    let unknown_model = serial("NR-9000", 1);
    let cases = [
        (
            json!({"serial": "NR-2000-123456-5", "purchase_date": "2025-03-01", "customer": "A"}),
            422,
            "bad_serial",
        ),
        (
            // Case and spaces are normalized; other characters are not.
            json!({"serial": "NR_2000-123456-4", "purchase_date": "2025-03-01", "customer": "A"}),
            422,
            "bad_serial",
        ),
        (
            json!({"serial": "", "purchase_date": "2025-03-01", "customer": "A"}),
            422,
            "bad_serial",
        ),
        (
            json!({"serial": unknown_model, "purchase_date": "2025-03-01", "customer": "A"}),
            422,
            "bad_model",
        ),
        (
            json!({"serial": NR2000, "model": "NR-3000", "purchase_date": "2025-03-01", "customer": "A"}),
            422,
            "bad_model",
        ),
        (
            json!({"serial": NR2000, "model": "2000", "purchase_date": "2025-03-01", "customer": "A"}),
            422,
            "bad_model",
        ),
        (
            json!({"serial": NR2000, "purchase_date": "2026-13-45", "customer": "A"}),
            422,
            "bad_date",
        ),
        (
            json!({"serial": NR2000, "purchase_date": "2025-02-30", "customer": "A"}),
            422,
            "bad_date",
        ),
        (
            json!({"serial": NR2000, "purchase_date": "yesterday", "customer": "A"}),
            422,
            "bad_date",
        ),
        (
            json!({"serial": NR2000, "purchase_date": "9999-01-01", "customer": "A"}),
            422,
            "bad_date",
        ),
        (
            json!({"serial": NR2000, "purchase_date": "2025-03-01", "customer": " "}),
            422,
            "bad_customer",
        ),
        (
            json!({"serial": NR2000, "purchase_date": "2025-03-01", "customer": "A", "device_key": "abc"}),
            422,
            "bad_device_key",
        ),
        (
            json!({"serial": NR2000, "purchase_date": "2025-03-01", "customer": "A", "colour": "red"}),
            400,
            "bad_request",
        ),
        (
            json!({"serial": NR2000, "purchase_date": 20250301, "customer": "A"}),
            400,
            "bad_request",
        ),
        (
            json!({"serial": NR2000, "customer": "A"}),
            400,
            "bad_request",
        ),
        (json!(["not", "an", "object"]), 400, "bad_request"),
    ];
    for (body, status, code) in cases {
        let got = api
            .call("POST", "/api/v1/devices", Some(body.clone()))
            .await;
        assert_error(&got, status, code);
        api.assert_healthy().await;
    }
    api.register(NR2000, "2025-03-01").await;
    let again = api
        .call(
            "POST",
            "/api/v1/devices",
            Some(json!({"serial": NR2000, "purchase_date": "2025-03-01", "customer": "B"})),
        )
        .await;
    assert_error(&again, 409, "exists");
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let api = Api::new();
    let admin = api.admin.clone();
    assert_error(
        &api.raw("POST", "/api/v1/devices", Some(&admin), b"{\"serial\": ")
            .await,
        400,
        "bad_request",
    );
    assert_error(
        &api.raw("POST", "/api/v1/devices", Some(&admin), b"\xff\xfe")
            .await,
        400,
        "bad_request",
    );
    assert_error(
        &api.raw("POST", "/api/v1/devices", Some(&admin), b"").await,
        400,
        "bad_request",
    );
    let big = format!("{{\"customer\": \"{}\"}}", "x".repeat(200_000));
    assert_error(
        &api.raw("POST", "/api/v1/devices", Some(&admin), big.as_bytes())
            .await,
        413,
        "too_large",
    );
    let req = axum::http::Request::post("/api/v1/devices")
        .header("authorization", format!("Bearer {admin}"))
        .body(axum::body::Body::from("{}"))
        .unwrap();
    assert_error(&api.send(req).await, 415, "unsupported_media_type");
    api.assert_healthy().await;
}

#[tokio::test]
async fn show_unknown_and_malformed_serials() {
    let api = Api::new();
    assert_error(
        &api.call("GET", &format!("/api/v1/devices/{NR2000}"), None)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(
            "GET",
            &format!("/api/v1/devices/{NR2000}/entitlement"),
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call("GET", "/api/v1/devices/NR-2000-123456-5", None)
            .await,
        422,
        "bad_serial",
    );
    assert_error(
        &api.call("GET", "/api/v1/devices/%FF%00", None).await,
        400,
        "bad_request",
    );
    api.assert_healthy().await;
}

#[tokio::test]
async fn list_filters_and_pages_with_a_cursor() {
    let api = Api::new();
    for n in 0..5 {
        api.register(&serial("NR-1000", n), "2025-01-10").await;
    }
    for n in 0..3 {
        api.register(&serial("NC-2000", n), "2025-06-10").await;
    }
    let (s, v) = api
        .call(
            "POST",
            &format!("/api/v1/devices/{}/revoke", serial("NC-2000", 0)),
            Some(json!({"reason": "fraud"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    let (s, all) = api.call("GET", "/api/v1/devices", None).await;
    assert_eq!(s, 200);
    assert_eq!(all["devices"].as_array().unwrap().len(), 8);
    assert_eq!(all["next_cursor"], serde_json::Value::Null);

    let count = |v: &serde_json::Value| v["devices"].as_array().unwrap().len();
    assert_eq!(
        count(
            &api.call("GET", "/api/v1/devices?status=revoked", None)
                .await
                .1
        ),
        1
    );
    assert_eq!(
        count(
            &api.call("GET", "/api/v1/devices?status=active&model=NC-2000", None)
                .await
                .1
        ),
        2
    );
    assert_eq!(
        count(
            &api.call("GET", "/api/v1/devices?customer=acm", None)
                .await
                .1
        ),
        8
    );
    assert_eq!(
        count(
            &api.call("GET", "/api/v1/devices?customer=nobody", None)
                .await
                .1
        ),
        0
    );
    assert_eq!(
        count(
            &api.call("GET", "/api/v1/devices?expiring_before=2026-02-01", None)
                .await
                .1
        ),
        5
    );

    let mut seen = Vec::new();
    let mut path = "/api/v1/devices?limit=3".to_owned();
    for _ in 0..10 {
        let (s, page) = api.call("GET", &path, None).await;
        assert_eq!(s, 200, "{page}");
        for d in page["devices"].as_array().unwrap() {
            seen.push(d["serial"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/devices?limit=3&cursor={c}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), sorted), (8, seen.clone()));

    assert_error(
        &api.call("GET", "/api/v1/devices?status=lost", None).await,
        422,
        "bad_status",
    );
    assert_error(
        &api.call("GET", "/api/v1/devices?expiring_before=2026-13-45", None)
            .await,
        422,
        "bad_date",
    );
    assert_error(
        &api.call("GET", "/api/v1/devices?model=XX", None).await,
        422,
        "bad_model",
    );
    assert_error(
        &api.call("GET", "/api/v1/devices?cursor=garbage!", None)
            .await,
        400,
        "bad_cursor",
    );
    assert_error(
        &api.call("GET", "/api/v1/devices?limit=0", None).await,
        422,
        "bad_limit",
    );
    assert_error(
        &api.call("GET", "/api/v1/devices?limit=-1", None).await,
        400,
        "bad_request",
    );
    assert_error(
        &api.call("GET", "/api/v1/devices?colour=red", None).await,
        400,
        "bad_request",
    );
    api.assert_healthy().await;
}

#[tokio::test]
async fn keyring_needs_no_credentials_and_verifies_under_the_root() {
    let api = Api::new();
    let (s, v) = api.raw("GET", "/api/v1/keyring", None, b"").await;
    assert_eq!(s, 200);
    let env: Envelope = serde_json::from_value(v).unwrap();
    let root_text = std::fs::read_to_string(api.state.config.data_dir.join("root.pub")).unwrap();
    let root = PublicKey::from_base64(root_text.trim()).unwrap();
    let now = api.state.now();
    let k = accept_keyring(&env, &RootSpec::pinned(vec![root]), None, now).unwrap();
    let roles: Vec<_> = k.keyring.keys.iter().map(|e| e.roles.clone()).collect();
    use np_common::docs::Role;
    assert_eq!(
        roles,
        vec![vec![Role::Entitlement, Role::Time], vec![Role::Release]]
    );
}
