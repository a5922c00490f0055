//! API tests: extensions (stacking, clamping, lapse, reinstatement), swap, revoke, and
//! 50 parallel extensions of one box (docs/api.md).
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_error, serial, Api, NR2000};
use np_common::docs::{verify, Entitlement, Status};
use np_common::Envelope;
use serde_json::{json, Value};

fn ext_path(s: &str) -> String {
    format!("/api/v1/devices/{s}/extensions")
}

fn entitlement_of(api: &Api, v: &Value) -> Entitlement {
    let env: Envelope = serde_json::from_value(v.clone()).unwrap();
    verify(&env, &api.keyring()).unwrap()
}

#[tokio::test]
async fn extensions_stack_on_the_end_and_answer_the_new_entitlement() {
    let api = Api::new();
    api.set_now("2025-06-01T09:00:00Z");
    api.register(NR2000, "2025-03-01").await;
    let (s, v) = api
        .call("POST", &ext_path(NR2000), Some(json!({"years": 1})))
        .await;
    assert_eq!(s, 200, "{v}");
    // The answer is the signed entitlement envelope itself (plus the device).
    let e = entitlement_of(&api, &v);
    assert_eq!(
        (e.sequence, e.coverage_end.to_string()),
        (2, "2027-03-01".to_owned())
    );
    let (s, v) = api
        .call("POST", &ext_path(NR2000), Some(json!({"months": 6})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["device"]["coverage_end"], "2027-09-01");
    assert_eq!(
        v["device"]["terms"],
        json!([
            {"kind": "warranty", "start": "2025-03-01", "end": "2026-03-01"},
            {"kind": "extension", "start": "2026-03-01", "end": "2027-03-01"},
            {"kind": "extension", "start": "2027-03-01", "end": "2027-09-01"},
        ])
    );
    assert_eq!(entitlement_of(&api, &v).sequence, 3);
}

#[tokio::test]
async fn month_arithmetic_clamps_to_the_month_end() {
    let api = Api::new();
    api.set_now("2025-02-01T00:00:00Z");
    api.register(NR2000, "2025-01-31").await;
    let (_, v) = api
        .call("POST", &ext_path(NR2000), Some(json!({"months": 1})))
        .await;
    assert_eq!(v["device"]["coverage_end"], "2026-02-28");
}

#[tokio::test]
async fn a_lapsed_box_reports_the_gap_and_can_be_reinstated() {
    let api = Api::new();
    api.set_now("2026-05-02T12:00:00Z");
    api.register(NR2000, "2025-03-01").await;
    let got = api
        .call("POST", &ext_path(NR2000), Some(json!({"months": 12})))
        .await;
    assert_error(&got, 409, "lapsed");
    assert_eq!(got.1["error"]["details"]["gap_days"], 62);
    assert_eq!(got.1["error"]["details"]["billable_months"], 3);
    let (_, d) = api
        .call("GET", &format!("/api/v1/devices/{NR2000}"), None)
        .await;
    assert_eq!(d["sequence"], 1, "a refused extension changes nothing");

    let (s, v) = api
        .call(
            "POST",
            &ext_path(NR2000),
            Some(json!({"months": 12, "reinstate": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["device"]["terms"].as_array().unwrap()[1..],
        json!([
            {"kind": "reinstatement", "start": "2026-03-01", "end": "2026-05-02"},
            {"kind": "extension", "start": "2026-05-02", "end": "2027-05-02"},
        ])
        .as_array()
        .unwrap()[..]
    );
    assert_eq!(v["device"]["coverage_end"], "2027-05-02");
}

#[tokio::test]
async fn bad_durations_and_unknown_boxes() {
    let api = Api::new();
    api.register(NR2000, "2026-03-01").await;
    for body in [
        json!({"months": 0}),
        json!({"months": -1}),
        json!({"months": 121}),
        json!({"years": 11}),
        json!({"years": 1000000}),
        json!({"months": 1, "years": 1}),
        json!({}),
        json!({"reinstate": true}),
    ] {
        assert_error(
            &api.call("POST", &ext_path(NR2000), Some(body)).await,
            422,
            "bad_duration",
        );
    }
    for body in [
        json!({"months": 1.5}),
        json!({"months": "3"}),
        json!({"days": 3}),
    ] {
        assert_error(
            &api.call("POST", &ext_path(NR2000), Some(body)).await,
            400,
            "bad_request",
        );
    }
    let admin = api.admin.clone();
    let huge = api
        .raw(
            "POST",
            &ext_path(NR2000),
            Some(&admin),
            b"{\"months\": 99999999999999999999999}",
        )
        .await;
    assert_error(&huge, 400, "bad_request");
    let other = serial("NR-2000", 999);
    assert_error(
        &api.call("POST", &ext_path(&other), Some(json!({"months": 1})))
            .await,
        404,
        "not_found",
    );
    api.assert_healthy().await;
}

#[tokio::test]
async fn swap_moves_every_term_and_replaces_the_old_box() {
    let api = Api::new();
    api.set_now("2025-06-01T00:00:00Z");
    api.register(NR2000, "2025-03-01").await;
    api.call("POST", &ext_path(NR2000), Some(json!({"years": 2})))
        .await;
    let new = serial("NR-3000", 42);
    let (s, v) = api
        .call(
            "POST",
            &format!("/api/v1/devices/{NR2000}/swap"),
            Some(json!({"new_serial": new, "reason": "RMA 17: disk"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["old"]["status"], "replaced");
    assert_eq!(v["old"]["replaced_by"], new.as_str());
    assert_eq!(v["new"]["replaces"], NR2000);
    assert_eq!(v["new"]["terms"], v["old"]["terms"]);
    assert_eq!(v["new"]["coverage_end"], "2028-03-01");
    assert_eq!(v["new"]["model"], "NR-3000");
    let old_e = entitlement_of(&api, &v["old"]["entitlement"]);
    assert_eq!((old_e.status, old_e.sequence), (Status::Replaced, 3));
    let new_e = entitlement_of(&api, &v["new"]["entitlement"]);
    assert_eq!(
        (new_e.status, new_e.serial.as_str()),
        (Status::Active, new.as_str())
    );
    // The served entitlement of the old box is the re-issued one.
    let (_, served) = api
        .call(
            "GET",
            &format!("/api/v1/devices/{NR2000}/entitlement"),
            None,
        )
        .await;
    assert_eq!(entitlement_of(&api, &served).status, Status::Replaced);
    // A replaced box can be neither extended nor swapped again.
    assert_error(
        &api.call("POST", &ext_path(NR2000), Some(json!({"months": 1})))
            .await,
        409,
        "not_active",
    );
    let again = json!({"new_serial": serial("NR-3000", 43), "reason": "x"});
    assert_error(
        &api.call(
            "POST",
            &format!("/api/v1/devices/{NR2000}/swap"),
            Some(again),
        )
        .await,
        409,
        "not_active",
    );
}

#[tokio::test]
async fn swap_refusals() {
    let api = Api::new();
    let src = serial("NR-2000", 1);
    api.register(&src, "2026-03-01").await;
    api.register(&serial("NR-2000", 2), "2026-03-01").await;
    let path = format!("/api/v1/devices/{src}/swap");
    let cases = [
        (
            json!({"new_serial": serial("NR-1000", 5), "reason": "r"}),
            422,
            "swap_not_allowed",
        ),
        (
            json!({"new_serial": serial("NC-2000", 5), "reason": "r"}),
            422,
            "swap_not_allowed",
        ),
        (
            json!({"new_serial": src, "reason": "r"}),
            422,
            "swap_not_allowed",
        ),
        (
            json!({"new_serial": serial("NR-9000", 5), "reason": "r"}),
            422,
            "bad_model",
        ),
        (
            json!({"new_serial": serial("NR-3000", 5), "new_model": "NR-2000", "reason": "r"}),
            422,
            "bad_model",
        ),
        (
            json!({"new_serial": "NR-3000-000005-0", "reason": "r"}),
            422,
            "bad_serial",
        ),
        (
            json!({"new_serial": serial("NR-2000", 2), "reason": "r"}),
            409,
            "exists",
        ),
        (
            json!({"new_serial": serial("NR-3000", 5), "reason": ""}),
            422,
            "bad_reason",
        ),
        (
            json!({"new_serial": serial("NR-3000", 5)}),
            400,
            "bad_request",
        ),
    ];
    for (body, status, code) in cases {
        assert_error(&api.call("POST", &path, Some(body)).await, status, code);
    }
    let unknown = format!("/api/v1/devices/{}/swap", serial("NR-2000", 77));
    let body = json!({"new_serial": serial("NR-3000", 5), "reason": "r"});
    assert_error(
        &api.call("POST", &unknown, Some(body)).await,
        404,
        "not_found",
    );
    let (_, d) = api
        .call("GET", &format!("/api/v1/devices/{src}"), None)
        .await;
    assert_eq!(
        (d["status"].as_str(), d["sequence"].as_u64()),
        (Some("active"), Some(1))
    );
    api.assert_healthy().await;
}

#[tokio::test]
async fn revoke_re_signs_with_status_revoked() {
    let api = Api::new();
    api.register(NR2000, "2026-03-01").await;
    let path = format!("/api/v1/devices/{NR2000}/revoke");
    assert_error(
        &api.call("POST", &path, Some(json!({"reason": ""}))).await,
        422,
        "bad_reason",
    );
    assert_error(
        &api.call("POST", &path, Some(json!({}))).await,
        400,
        "bad_request",
    );
    let (s, d) = api
        .call("POST", &path, Some(json!({"reason": "chargeback"})))
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        (d["status"].as_str(), d["status_reason"].as_str()),
        (Some("revoked"), Some("chargeback"))
    );
    let e = entitlement_of(&api, &d["entitlement"]);
    assert_eq!((e.status, e.sequence), (Status::Revoked, 2));
    assert_error(
        &api.call("POST", &path, Some(json!({"reason": "again"})))
            .await,
        409,
        "not_active",
    );
    assert_error(
        &api.call("POST", &ext_path(NR2000), Some(json!({"months": 1})))
            .await,
        409,
        "not_active",
    );
    let unknown = format!("/api/v1/devices/{}/revoke", serial("NR-2000", 9));
    assert_error(
        &api.call("POST", &unknown, Some(json!({"reason": "x"})))
            .await,
        404,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_extensions_lose_no_update() {
    let api = std::sync::Arc::new(Api::new());
    api.register(NR2000, "2026-03-01").await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.call("POST", &ext_path(NR2000), Some(json!({"months": 1})))
                .await
                .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (_, d) = api
        .call("GET", &format!("/api/v1/devices/{NR2000}"), None)
        .await;
    assert_eq!(d["terms"].as_array().unwrap().len(), 51);
    assert_eq!(d["sequence"], 51);
    assert_eq!(d["coverage_end"], "2031-05-01");
}
