//! API tests: tokens and roles (401/403), the audit log, metrics, and JSON answers for
//! unknown routes and methods.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_error, Api, NR2000};
use np_server::tokens::TokenRole;
use serde_json::json;

#[tokio::test]
async fn tokens_and_roles() {
    let api = Api::new();
    let body = json!({"serial": NR2000, "purchase_date": "2026-03-01", "customer": "ACME"});
    let bytes = serde_json::to_vec(&body).unwrap();
    assert_error(
        &api.raw("POST", "/api/v1/devices", None, &bytes).await,
        401,
        "unauthorized",
    );
    assert_error(
        &api.raw("POST", "/api/v1/devices", Some("npt_wrong"), &bytes)
            .await,
        401,
        "unauthorized",
    );
    let req = axum::http::Request::get("/api/v1/devices")
        .header("authorization", format!("Basic {}", api.admin))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_error(&api.send(req).await, 401, "unauthorized");

    let release = api.token(TokenRole::Release, "builder");
    assert_error(
        &api.raw("POST", "/api/v1/devices", Some(&release), &bytes)
            .await,
        403,
        "forbidden",
    );
    assert_error(
        &api.raw("GET", "/api/v1/audit", Some(&release), b"").await,
        403,
        "forbidden",
    );

    let staff = api.token(TokenRole::Staff, "alice");
    let (s, _) = api
        .raw("POST", "/api/v1/devices", Some(&staff), &bytes)
        .await;
    assert_eq!(s, 201);
    let (s, _) = api
        .raw(
            "GET",
            &format!("/api/v1/devices/{NR2000}"),
            Some(&staff),
            b"",
        )
        .await;
    assert_eq!(s, 200);

    // Revoking the token in the data folder takes effect at once.
    np_server::tokens::revoke(&api.state.config.data_dir, "alice").unwrap();
    assert_error(
        &api.raw("GET", "/api/v1/devices", Some(&staff), b"").await,
        401,
        "unauthorized",
    );
    api.assert_healthy().await;
}

#[tokio::test]
async fn the_audit_log_records_who_what_before_and_after() {
    let api = Api::new();
    let staff = api.token(TokenRole::Staff, "alice");
    let body = serde_json::to_vec(
        &json!({"serial": NR2000, "purchase_date": "2026-03-01", "customer": "ACME"}),
    )
    .unwrap();
    api.raw("POST", "/api/v1/devices", Some(&staff), &body)
        .await;
    api.call(
        "POST",
        &format!("/api/v1/devices/{NR2000}/extensions"),
        Some(json!({"months": 3})),
    )
    .await;
    let other = common::serial("NR-1000", 7);
    api.register(&other, "2026-01-01").await;
    api.call(
        "POST",
        &format!("/api/v1/devices/{NR2000}/revoke"),
        Some(json!({"reason": "fraud"})),
    )
    .await;
    // A refused change is not logged.
    api.call(
        "POST",
        &format!("/api/v1/devices/{NR2000}/revoke"),
        Some(json!({"reason": "again"})),
    )
    .await;

    let (s, v) = api
        .call("GET", &format!("/api/v1/audit?serial={NR2000}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    let summary: Vec<_> = entries
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    // Newest first.
    assert_eq!(
        summary,
        vec![
            ("admin", "revoke"),
            ("admin", "extend"),
            ("alice", "register")
        ]
    );
    assert_eq!(entries[2]["before"], serde_json::Value::Null);
    assert_eq!(entries[1]["before"]["coverage_end"], "2027-03-01");
    assert_eq!(entries[1]["after"]["coverage_end"], "2027-06-01");
    assert_eq!(entries[0]["after"]["status"], "revoked");
    assert!(entries[0]["at"].as_str().is_some() && entries[0]["serial"] == NR2000);

    let (_, page1) = api.call("GET", "/api/v1/audit?limit=2", None).await;
    assert_eq!(page1["entries"].as_array().unwrap().len(), 2);
    let c = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = api
        .call("GET", &format!("/api/v1/audit?limit=2&cursor={c}"), None)
        .await;
    assert_eq!(page2["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page2["next_cursor"], serde_json::Value::Null);
    assert_eq!(page1["entries"][1]["serial"], other.as_str());
    assert_eq!(page2["entries"][1]["action"], "register");
    assert_error(
        &api.call("GET", "/api/v1/audit?cursor=ZDpOUg", None).await,
        400,
        "bad_cursor",
    );
}

#[tokio::test]
async fn metrics_count_requests_and_devices() {
    let api = Api::new();
    api.register(NR2000, "2026-03-01").await;
    api.call("GET", "/api/v1/devices/NR-2000-999999-0", None)
        .await;
    let (s, v) = api.raw("GET", "/metrics", None, b"").await;
    assert_eq!(s, 200);
    let text = v.as_str().unwrap();
    assert!(
        text.contains(
            "np_http_requests_total{method=\"POST\",route=\"/api/v1/devices\",status=\"201\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("route=\"/api/v1/devices/{serial}\""),
        "{text}"
    );
    assert!(
        text.contains(
            "np_http_request_duration_seconds_bucket{route=\"/api/v1/devices\",le=\"+Inf\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("np_devices{status=\"active\"} 1"), "{text}");
    assert!(!text.contains(&api.admin));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let api = Api::new();
    assert_error(
        &api.call("GET", "/api/v1/nothing", None).await,
        404,
        "not_found",
    );
    assert_error(
        &api.call("DELETE", &format!("/api/v1/devices/{NR2000}"), None)
            .await,
        405,
        "method_not_allowed",
    );
    let (s, v) = api.raw("GET", "/healthz", None, b"").await;
    assert_eq!((s, v.as_str()), (200, Some("ok\n")));
}
