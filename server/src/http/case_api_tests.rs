//! In-process tests of support cases, RMA and diagnostics against `app(state)` with a
//! controlled clock: every transition and refusal with its exact code, the RMA clock with
//! a shortage pause, each ending, the audit entries, and a box's signed report.

use crate::http::app;
use crate::http::device_auth::sign_request;
use crate::state::{AppState, Clock};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use jiff::Timestamp;
use np_common::api::{HEADER_NONCE, HEADER_SERIAL, HEADER_SIGNATURE, HEADER_TIME};
use np_common::device_docs::{sign_device, Diagnostics, DiagnosticsSlots, SlotName};
use np_common::docs::{self, Action, ActionKind, Entitlement};
use np_common::{Envelope, SecretKey};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tower::ServiceExt as _;

const SERIAL: &str = "NR-2000-123456-4";
/// A second box of the same customer (NR-2000, digits 2000000001: check digit 6).
const OTHER: &str = "NR-2000-000001-6";

struct H {
    app: Router,
    state: AppState,
    token: String,
    clock: Arc<Mutex<Timestamp>>,
    key: SecretKey,
    _dir: tempfile::TempDir,
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Monday 2026-11-23 10:00 UTC = 18:00 in Taipei.
fn now0() -> Timestamp {
    t("2026-11-23T10:00:00Z")
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// Asserts that `answer` is the refusal `status` with error `code`, and gives back its
/// body, for the checks of its message or details.
#[track_caller]
fn refused(answer: (StatusCode, Value), status: StatusCode, code: &str) -> Value {
    refused_for("", answer, status, code)
}

/// As [`refused`], naming `what` was sent (a loop's body, path or case) when it fails.
#[track_caller]
fn refused_for(what: &str, answer: (StatusCode, Value), status: StatusCode, code: &str) -> Value {
    let (s, v) = answer;
    assert_eq!((s, self::code(&v)), (status, code), "{what}: {v}");
    v
}

fn fresh_nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).unwrap();
    hex::encode(b)
}

impl H {
    async fn new() -> H {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = crate::datadir::init(&data, now0()).unwrap();
        let clock = Arc::new(Mutex::new(now0()));
        let c = clock.clone();
        let clock_fn: Clock = Arc::new(move || *c.lock().unwrap());
        let config = crate::config::default_config(&data);
        let state = crate::datadir::open(config, clock_fn).unwrap();
        H {
            app: app(state.clone()),
            state,
            token: out.admin_token,
            clock,
            key: SecretKey::from_seed(&[42; 32]),
            _dir: dir,
        }
    }

    fn set_now(&self, at: &str) {
        *self.clock.lock().unwrap() = t(at);
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.send(b.body(body).unwrap()).await
    }

    async fn staff(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(&self.token.clone(), method, path, body).await
    }

    async fn register(&self, serial: &str, purchase: &str) {
        let (s, v) = self
            .staff(
                "POST",
                "/api/v1/devices",
                Some(
                    json!({"serial": serial, "purchase_date": purchase, "customer": "ACME",
                    "device_key": self.key.public_key().to_base64()}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    async fn open_case(&self, serial: &str) -> (StatusCode, Value) {
        self.staff(
            "POST",
            "/api/v1/cases",
            Some(json!({"serial": serial, "summary": "the reports stopped"})),
        )
        .await
    }

    async fn case_id(&self, serial: &str) -> String {
        let (s, v) = self.open_case(serial).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    async fn entry(&self, id: &str, body: Value) -> (StatusCode, Value) {
        self.staff("POST", &format!("/api/v1/cases/{id}/entries"), Some(body))
            .await
    }

    async fn status(&self, id: &str, status: &str) -> (StatusCode, Value) {
        self.entry(id, json!({"kind": "status", "status": status, "text": ""}))
            .await
    }

    async fn rma(&self, id: &str, body: Value) -> (StatusCode, Value) {
        self.staff("PATCH", &format!("/api/v1/cases/{id}/rma"), Some(body))
            .await
    }

    async fn device(
        &self,
        key: &SecretKey,
        serial: &str,
        path: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let s = sign_request(key, "POST", path, self.state.now(), &fresh_nonce(), body);
        let req = Request::builder()
            .method("POST")
            .uri(path)
            .header(HEADER_SERIAL, serial)
            .header(HEADER_TIME, s.time)
            .header(HEADER_NONCE, s.nonce)
            .header(HEADER_SIGNATURE, s.signature)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_vec()))
            .unwrap();
        self.send(req).await
    }

    async fn check_in(&self, last_result: Option<Value>) -> Value {
        let mut body = json!({"version": "5.2.0", "slot": "a", "state": "idle", "nonce": "00ff"});
        if let Some(r) = last_result {
            body["last_result"] = r;
        }
        let (s, v) = self
            .device(
                &self.key,
                SERIAL,
                "/api/v1/device/check-in",
                &serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    fn action_of(&self, answer: &Value) -> Option<Action> {
        let env: Envelope = serde_json::from_value(answer["action"].clone()).ok()?;
        Some(docs::verify(&env, &self.state.keys().keyring).unwrap())
    }

    /// The box's audit actions, oldest first.
    async fn audit_actions(&self, serial: &str) -> Vec<String> {
        let (s, v) = self
            .staff(
                "GET",
                &format!("/api/v1/audit?serial={serial}&limit=1000"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn report(serial: &str, case: &str, requested_at: Timestamp) -> Diagnostics {
    Diagnostics {
        serial: np_common::Serial::parse(serial).unwrap(),
        case: case.to_owned(),
        requested_at,
        at: requested_at,
        agent_version: "0.1.0".into(),
        status: json!({"phase": "idle"}),
        events: vec![json!({"event": "commit", "version": "5.2.0"})],
        slots: DiagnosticsSlots {
            active: SlotName::A,
            booted: Some(SlotName::A),
            a: Some("5.2.0".parse().unwrap()),
            b: Some("5.1.0".parse().unwrap()),
        },
        state_free_bytes: Some(1 << 30),
        health: None,
        truncated: false,
    }
}

#[tokio::test]
async fn a_covered_box_gets_a_case_and_the_refusals_have_their_codes() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let (s, v) = h.open_case(SERIAL).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("C-"), "{id}");
    assert_eq!(
        (&v["status"], &v["channel"], &v["severity"], &v["opened_by"]),
        (
            &json!("open"),
            &json!("phone"),
            &json!("normal"),
            &json!("admin")
        )
    );
    assert_eq!(v["first_response_at"], Value::Null);
    assert_eq!(v["rma"], Value::Null);
    let (s, got) = h.staff("GET", &format!("/api/v1/cases/{id}"), None).await;
    assert_eq!(
        (s, &got["summary"]),
        (StatusCode::OK, &json!("the reports stopped"))
    );
    // A second case gets another id.
    let (_, second) = h
        .staff(
            "POST",
            "/api/v1/cases",
            Some(json!({"serial": " nr-2000-123456-4", "summary": "slow", "channel": "email", "severity": "high"})),
        )
        .await;
    assert_ne!(second["id"], v["id"]);
    assert_eq!(
        (&second["channel"], &second["severity"]),
        (&json!("email"), &json!("high"))
    );

    let cases = [
        (
            json!({"serial": "NR-2000-123456-5", "summary": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_serial",
        ),
        (
            json!({"serial": "NR-3000-000000-7", "summary": "x"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"serial": SERIAL, "summary": "x", "channel": "fax"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_channel",
        ),
        (
            json!({"serial": SERIAL, "summary": "x", "severity": "urgent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_severity",
        ),
        (
            json!({"serial": SERIAL, "summary": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_summary",
        ),
        (
            json!({"serial": SERIAL}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (body, status, c) in cases {
        refused_for(
            &body.to_string(),
            h.staff("POST", "/api/v1/cases", Some(body.clone())).await,
            status,
            c,
        );
    }
    for path in ["/api/v1/cases/1042", "/api/v1/cases/C-x"] {
        refused_for(
            path,
            h.staff("GET", path, None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_case_id",
        );
    }
    refused(
        h.staff("GET", "/api/v1/cases/C-99", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // The release role is refused, as for devices; no token at all is 401.
    let release = crate::tokens::create(
        &h.state.config.data_dir,
        crate::tokens::TokenRole::Release,
        "rita",
        h.state.now(),
    )
    .unwrap();
    refused(
        h.call(
            &release,
            "POST",
            "/api/v1/cases",
            Some(json!({"serial": SERIAL, "summary": "x"})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (s, _) = h.call("nope", "GET", "/api/v1/cases", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Audited on the box.
    let actions = h.audit_actions(SERIAL).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "case_open").count(),
        2,
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_lapsed_box_gets_no_case_until_reinstated_and_revoked_or_replaced_boxes_none() {
    let h = H::new().await;
    h.register(SERIAL, "2025-01-01").await;
    let v = refused(
        h.open_case(SERIAL).await,
        StatusCode::FORBIDDEN,
        "not_covered",
    );
    assert_eq!(v["error"]["details"]["coverage_end"], "2026-01-01");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("2026-01-01") && m.contains("reinstate"), "{m}");
    let (s, v) = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{SERIAL}/extensions"),
            Some(json!({"years": 1, "reinstate": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = h.open_case(SERIAL).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    h.register(OTHER, "2026-01-01").await;
    let (s, v) = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{OTHER}/revoke"),
            Some(json!({"reason": "stolen"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = refused(h.open_case(OTHER).await, StatusCode::FORBIDDEN, "revoked");
    assert!(v["error"]["message"].as_str().unwrap().contains("stolen"));

    let (s, v) = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{SERIAL}/swap"),
            Some(json!({"new_serial": "NR-3000-000000-7", "reason": "upgrade"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = refused(h.open_case(SERIAL).await, StatusCode::FORBIDDEN, "replaced");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("NR-3000-000000-7"));
}

#[tokio::test]
async fn status_entries_follow_the_status_machine_and_the_first_response_counts_service_hours() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    // Opened Friday 2026-11-27 19:00 in Taipei (11:00Z).
    h.set_now("2026-11-27T11:00:00Z");
    let id = h.case_id(SERIAL).await;
    let (_, v) = h.staff("GET", &format!("/api/v1/cases/{id}"), None).await;
    assert_eq!(v["waiting_service_minutes"], 0);
    // Saturday: still one hour of Friday.
    h.set_now("2026-11-28T05:00:00Z");
    let (_, v) = h.staff("GET", &format!("/api/v1/cases/{id}"), None).await;
    assert_eq!(v["waiting_service_minutes"], 60);
    // Answered Monday 10:00 Taipei (02:00Z): 1 h Friday + 1 h Monday.
    h.set_now("2026-11-30T02:00:00Z");
    let (s, v) = h
        .entry(&id, json!({"kind": "note", "text": "called the customer"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["first_response_at"], "2026-11-30T02:00:00Z");
    assert_eq!(v["first_response_service_minutes"], 120);
    assert_eq!(v["waiting_service_minutes"], Value::Null);
    assert_eq!(v["entries"][0]["kind"], "note");
    assert_eq!(v["entries"][0]["by"], "admin");

    for (to, ok) in [
        ("remote_session", true),
        ("remote_session", false),
        ("waiting_customer", true),
        ("open", true),
        ("resolved", true),
        ("waiting_customer", false),
        ("remote_session", false),
        ("open", true),
        ("rma", false),
        ("closed", true),
    ] {
        let (s, v) = h.status(&id, to).await;
        if ok {
            assert_eq!(s, StatusCode::CREATED, "{to}: {v}");
            assert_eq!(v["status"], to);
        } else {
            refused_for(to, (s, v), StatusCode::CONFLICT, "bad_transition");
        }
    }
    // Nothing after closed.
    for body in [
        json!({"kind": "status", "status": "open"}),
        json!({"kind": "note", "text": "late"}),
    ] {
        refused(
            h.entry(&id, body).await,
            StatusCode::CONFLICT,
            "case_closed",
        );
    }
    refused(
        h.staff("POST", &format!("/api/v1/cases/{id}/rma"), None)
            .await,
        StatusCode::CONFLICT,
        "case_closed",
    );
    refused(
        h.staff("POST", &format!("/api/v1/cases/{id}/diagnostics"), None)
            .await,
        StatusCode::CONFLICT,
        "case_closed",
    );

    let other = h.case_id(SERIAL).await;
    for (body, c) in [
        (json!({"kind": "status", "status": "done"}), "bad_status"),
        (json!({"kind": "status"}), "bad_entry"),
        (
            json!({"kind": "note", "text": "x", "status": "open"}),
            "bad_entry",
        ),
        (json!({"kind": "memo", "text": "x"}), "bad_entry"),
        (json!({"kind": "note", "text": "  "}), "bad_text"),
    ] {
        refused_for(
            &body.to_string(),
            h.entry(&other, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            c,
        );
    }
    refused(
        h.entry("C-99999", json!({"kind": "note", "text": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let actions = h.audit_actions(SERIAL).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "case_status").count(),
        6,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "case_note").count(),
        1,
        "{actions:?}"
    );
}

#[tokio::test]
async fn the_rma_clock_stops_for_a_shortage_and_an_open_rma_past_due_is_overdue() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let id = h.case_id(SERIAL).await;
    refused(
        h.rma(&id, json!({"shortage": true})).await,
        StatusCode::CONFLICT,
        "bad_transition",
    );
    let (s, v) = h
        .staff(
            "POST",
            &format!("/api/v1/cases/{id}/rma"),
            Some(json!({"note": "fan noise"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "rma");
    assert_eq!(v["rma"]["opened_at"], "2026-11-23T10:00:00Z");
    assert_eq!(v["rma"]["due"], "2026-11-28T10:00:00Z");
    assert_eq!(
        (&v["rma"]["overdue"], &v["rma"]["shortage"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(v["rma"]["outcome"], Value::Null);
    assert!(v["entries"][0]["text"]
        .as_str()
        .unwrap()
        .ends_with("fan noise"));
    // The RMA is the first response.
    assert_eq!(v["first_response_at"], "2026-11-23T10:00:00Z");
    refused(
        h.staff("POST", &format!("/api/v1/cases/{id}/rma"), None)
            .await,
        StatusCode::CONFLICT,
        "bad_transition",
    );
    // Status entries cannot leave rma.
    refused(
        h.status(&id, "resolved").await,
        StatusCode::CONFLICT,
        "bad_transition",
    );

    // Parts short from day 1 to day 3: due moves by two days.
    h.set_now("2026-11-24T10:00:00Z");
    let (s, v) = h
        .rma(&id, json!({"shortage": true, "note": "no PSU in stock"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["rma"]["shortage"], true);
    refused(
        h.rma(&id, json!({"shortage": true})).await,
        StatusCode::CONFLICT,
        "bad_transition",
    );
    // While short, past the first due time: not overdue, due moving.
    h.set_now("2026-11-29T10:00:00Z");
    let (_, v) = h.staff("GET", &format!("/api/v1/cases/{id}"), None).await;
    assert_eq!(
        (&v["rma"]["overdue"], &v["rma"]["due"]),
        (&json!(false), &json!("2026-12-03T10:00:00Z"))
    );
    h.set_now("2026-11-26T10:00:00Z");
    let (s, v) = h.rma(&id, json!({"shortage": false})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["rma"]["due"], "2026-11-30T10:00:00Z");
    assert_eq!(v["rma"]["stopped_secs"], 2 * 86_400);
    refused(
        h.rma(&id, json!({"shortage": false})).await,
        StatusCode::CONFLICT,
        "bad_transition",
    );

    let list = |q: &'static str| {
        let h = &h;
        async move {
            let (s, v) = h.staff("GET", &format!("/api/v1/cases?{q}"), None).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v["cases"].as_array().unwrap().len()
        }
    };
    h.set_now("2026-11-30T10:00:00Z");
    assert_eq!(list("overdue=true").await, 0);
    h.set_now("2026-11-30T10:00:01Z");
    assert_eq!(list("overdue=true").await, 1);
    assert_eq!(list("overdue=false").await, 0);
    assert_eq!(list("status=rma").await, 1);
    assert_eq!(list("status=open").await, 0);
    assert_eq!(list("serial=NR-2000-000001-6").await, 0);
    refused(
        h.staff("GET", "/api/v1/cases?status=done", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_status",
    );
    refused(
        h.staff("GET", "/api/v1/cases?cursor=zzz", None).await,
        StatusCode::BAD_REQUEST,
        "bad_cursor",
    );

    // Repaired: the case is resolved, the RMA no longer overdue, and it cannot change.
    for (body, c) in [
        (json!({}), "bad_rma_change"),
        (
            json!({"shortage": true, "outcome": "repaired"}),
            "bad_rma_change",
        ),
        (json!({"outcome": "fixed"}), "bad_outcome"),
        (
            json!({"outcome": "repaired", "exclusion": "force_majeure"}),
            "bad_rma_change",
        ),
    ] {
        refused_for(
            &body.to_string(),
            h.rma(&id, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            c,
        );
    }
    let (s, v) = h
        .rma(&id, json!({"outcome": "repaired", "note": "new PSU"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["status"], &v["rma"]["outcome"], &v["rma"]["overdue"]),
        (&json!("resolved"), &json!("repaired"), &json!(false))
    );
    assert_eq!(v["rma"]["ended_at"], "2026-11-30T10:00:01Z");
    assert!(v.get("swapped").is_none());
    refused(
        h.rma(&id, json!({"outcome": "repaired"})).await,
        StatusCode::CONFLICT,
        "bad_transition",
    );
    let (s, v) = h.status(&id, "closed").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let actions = h.audit_actions(SERIAL).await;
    for (a, n) in [("rma_open", 1), ("rma_shortage", 2), ("rma_end", 1)] {
        assert_eq!(
            actions.iter().filter(|x| *x == a).count(),
            n,
            "{a}: {actions:?}"
        );
    }
}

#[tokio::test]
async fn an_rma_not_covered_names_an_exclusion_of_the_warranty_page() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let id = h.case_id(SERIAL).await;
    h.staff("POST", &format!("/api/v1/cases/{id}/rma"), None)
        .await;
    for body in [
        json!({"outcome": "not_covered"}),
        json!({"outcome": "not_covered", "exclusion": "coffee"}),
    ] {
        let v = refused(
            h.rma(&id, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_exclusion",
        );
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("misuse_or_wear"));
    }
    refused(h
        .rma(&id, json!({"outcome": "not_covered", "exclusion": "misuse_or_wear", "replacement_serial": "NR-3000-000000-7"}))
        .await, StatusCode::UNPROCESSABLE_ENTITY, "bad_rma_change");
    let (s, v) = h
        .rma(
            &id,
            json!({"outcome": "not_covered", "exclusion": "misuse_or_wear"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["status"], &v["rma"]["exclusion"]),
        (&json!("resolved"), &json!("misuse_or_wear"))
    );
    let last = v["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["text"], "RMA ended: not covered (misuse_or_wear)");
}

#[tokio::test]
async fn an_rma_swap_follows_the_swap_rule_and_the_replacement_takes_the_coverage() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let id = h.case_id(SERIAL).await;
    h.staff("POST", &format!("/api/v1/cases/{id}/rma"), None)
        .await;
    let before = h.audit_actions(SERIAL).await.len();
    // A lower tier is refused, and nothing changes.
    refused(
        h.rma(
            &id,
            json!({"outcome": "swapped", "replacement_serial": "NR-1000-000000-9"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "swap_not_allowed",
    );
    refused(
        h.rma(&id, json!({"outcome": "swapped"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_rma_change",
    );
    refused(
        h.rma(
            &id,
            json!({"outcome": "swapped", "replacement_serial": "NR-3000-000000-8"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_serial",
    );
    refused(
        h.rma(
            &id,
            json!({"outcome": "swapped", "replacement_serial": "NC-1000-000000-9"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "swap_not_allowed",
    );
    let (_, c) = h.staff("GET", &format!("/api/v1/cases/{id}"), None).await;
    assert_eq!(c["status"], "rma");
    assert_eq!(h.audit_actions(SERIAL).await.len(), before);
    let (s, _) = h
        .staff("GET", "/api/v1/devices/NR-1000-000000-9", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A higher tier: both boxes re-signed, the new one with every term.
    let new_key = SecretKey::from_seed(&[7; 32]);
    let (s, v) = h
        .rma(
            &id,
            json!({"outcome": "swapped", "replacement_serial": "NR-3000-000000-7",
                   "replacement_device_key": new_key.public_key().to_base64()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (
            &v["status"],
            &v["rma"]["outcome"],
            &v["rma"]["replacement_serial"]
        ),
        (
            &json!("resolved"),
            &json!("swapped"),
            &json!("NR-3000-000000-7")
        )
    );
    let old = &v["swapped"]["old"];
    let new = &v["swapped"]["new"];
    assert_eq!(
        (&old["status"], &old["replaced_by"]),
        (&json!("replaced"), &json!("NR-3000-000000-7"))
    );
    assert_eq!(
        (&new["status"], &new["replaces"], &new["model"]),
        (&json!("active"), &json!(SERIAL), &json!("NR-3000"))
    );
    assert_eq!(new["coverage_end"], old["coverage_end"]);
    assert_eq!(new["status_reason"], format!("RMA of case {id}"));
    let keyring = &h.state.keys().keyring;
    let env: Envelope = serde_json::from_value(new["entitlement"].clone()).unwrap();
    let e: Entitlement = docs::verify(&env, keyring).unwrap();
    assert_eq!(
        (e.serial.as_str(), e.coverage_end.to_string()),
        ("NR-3000-000000-7", "2027-01-01".to_owned())
    );
    let env: Envelope = serde_json::from_value(old["entitlement"].clone()).unwrap();
    let e: Entitlement = docs::verify(&env, keyring).unwrap();
    assert_eq!(e.status, np_common::docs::Status::Replaced);
    // Audited: the swap on both boxes and the RMA's end on the case's box.
    let old_actions = h.audit_actions(SERIAL).await;
    assert_eq!(old_actions[before..], ["swap", "rma_end"]);
    assert_eq!(h.audit_actions("NR-3000-000000-7").await, ["swap"]);
    // The replacement may get cases of its own; the old box none.
    let (s, _) = h.open_case("NR-3000-000000-7").await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn diagnostics_wait_behind_an_older_action_and_the_signed_report_lands_on_the_case() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    h.register(OTHER, "2026-01-01").await;
    let id = h.case_id(SERIAL).await;
    let other_case = h.case_id(OTHER).await;
    // A pending rollback, asked first.
    let (s, v) = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{SERIAL}/actions"),
            Some(json!({"action": "rollback"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .staff("POST", &format!("/api/v1/cases/{id}/diagnostics"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let asked_at = v["diagnostics_pending"]["issued_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(v["entries"][0]["kind"], "diagnostics_requested");
    let (_, d) = h
        .staff("GET", &format!("/api/v1/devices/{SERIAL}"), None)
        .await;
    assert_eq!(
        (
            &d["pending_action"]["action"],
            &d["pending_diagnostics"]["case"]
        ),
        (&json!("rollback"), &json!(id))
    );
    // The older rollback goes first; the diagnostics once it is done.
    let first = h.action_of(&h.check_in(None).await).unwrap();
    assert_eq!(first.action, ActionKind::Rollback);
    h.set_now("2026-11-23T10:05:00Z");
    let done = json!({"version": "5.1.0", "outcome": "rolled_back", "detail": "asked", "at": "2026-11-23T10:04:00Z"});
    let second = h.action_of(&h.check_in(Some(done)).await).unwrap();
    assert_eq!(second.action, ActionKind::Diagnostics);
    assert_eq!(second.case.as_deref(), Some(id.as_str()));
    assert_eq!(second.issued_at.to_string(), asked_at);
    assert!(second.issued_at > first.issued_at);
    // Asking for another case of the box while one is pending: refused.
    let (s, v) = h
        .staff(
            "POST",
            &format!("/api/v1/cases/{other_case}/diagnostics"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id2 = h.case_id(SERIAL).await;
    refused(
        h.staff("POST", &format!("/api/v1/cases/{id2}/diagnostics"), None)
            .await,
        StatusCode::CONFLICT,
        "diagnostics_pending",
    );

    let path = "/api/v1/device/diagnostics";
    let doc = report(SERIAL, &id, second.issued_at);
    // Signed by another key: 401; another box's case or no case: 404; not an envelope: 400.
    let forged = serde_json::to_vec(&sign_device(&doc, &SecretKey::from_seed(&[9; 32]))).unwrap();
    refused(
        h.device(&h.key, SERIAL, path, &forged).await,
        StatusCode::UNAUTHORIZED,
        "bad_diagnostics_signature",
    );
    for case in [other_case.as_str(), "C-99999", "not-a-case"] {
        let body = serde_json::to_vec(&sign_device(
            &report(SERIAL, case, second.issued_at),
            &h.key,
        ))
        .unwrap();
        refused_for(
            case,
            h.device(&h.key, SERIAL, path, &body).await,
            StatusCode::NOT_FOUND,
            "no_such_case",
        );
    }
    refused(
        h.device(&h.key, SERIAL, path, b"{\"x\": 1}").await,
        StatusCode::BAD_REQUEST,
        "bad_document",
    );
    let receipt_typed = Envelope::sign("application/vnd.np.receipt+json", b"{}", &[&h.key]);
    refused(
        h.device(
            &h.key,
            SERIAL,
            path,
            &serde_json::to_vec(&receipt_typed).unwrap(),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_document",
    );
    let mut huge = doc.clone();
    huge.status = json!({"x": "y".repeat(400 * 1024)});
    refused(
        h.device(
            &h.key,
            SERIAL,
            path,
            &serde_json::to_vec(&sign_device(&huge, &h.key)).unwrap(),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );

    // The real one: filed as an entry whose text is the report, the requests cleared.
    let body = serde_json::to_vec(&sign_device(&doc, &h.key)).unwrap();
    let (s, v) = h.device(&h.key, SERIAL, path, &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["case"], json!(id));
    let (_, c) = h.staff("GET", &format!("/api/v1/cases/{id}"), None).await;
    let last = c["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["kind"], &last["by"]),
        (&json!("diagnostics"), &json!(format!("device:{SERIAL}")))
    );
    let filed: Diagnostics = serde_json::from_str(last["text"].as_str().unwrap()).unwrap();
    assert_eq!(filed, doc);
    assert_eq!(c["diagnostics_pending"], Value::Null);
    let (_, d) = h
        .staff("GET", &format!("/api/v1/devices/{SERIAL}"), None)
        .await;
    assert_eq!(d["pending_diagnostics"], Value::Null);
    assert!(h.check_in(None).await["action"].is_null());
    // Sent again: nothing pending any more.
    refused(
        h.device(&h.key, SERIAL, path, &body).await,
        StatusCode::CONFLICT,
        "no_diagnostics_pending",
    );
    let actions = h.audit_actions(SERIAL).await;
    // One row per step in the box's history (the case's entry carries the box's change).
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "diagnostics_request")
            .count(),
        1,
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "diagnostics_report")
            .count(),
        1,
        "{actions:?}"
    );
    // A report is audited with the box as actor.
    let (_, a) = h
        .staff(
            "GET",
            &format!("/api/v1/audit?serial={SERIAL}&limit=1000"),
            None,
        )
        .await;
    let report_entry = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["action"] == "diagnostics_report")
        .unwrap()
        .clone();
    assert_eq!(report_entry["actor"], format!("device:{SERIAL}"));
}

#[tokio::test]
async fn a_diagnostics_request_keeps_its_case_through_a_re_signing() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let id = h.case_id(SERIAL).await;
    let (s, _) = h
        .staff("POST", &format!("/api/v1/cases/{id}/diagnostics"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    crate::domain::rotation::resign(&h.state, crate::domain::rotation::Only::All, h.state.now())
        .await
        .unwrap();
    let action = h.action_of(&h.check_in(None).await).unwrap();
    assert_eq!(
        (action.action, action.case.as_deref()),
        (ActionKind::Diagnostics, Some(id.as_str()))
    );
}

#[tokio::test]
async fn a_diagnostics_request_handed_over_already_does_not_hold_back_a_newer_action() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let id = h.case_id(SERIAL).await;
    let (s, _) = h
        .staff("POST", &format!("/api/v1/cases/{id}/diagnostics"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let first = h.action_of(&h.check_in(None).await).unwrap();
    assert_eq!(first.action, ActionKind::Diagnostics);
    // The box never reports; staff ask for a rollback: it goes out next, newer.
    let (s, v) = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{SERIAL}/actions"),
            Some(json!({"action": "rollback"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let next = h.action_of(&h.check_in(None).await).unwrap();
    assert_eq!(next.action, ActionKind::Rollback);
    assert!(next.issued_at > first.issued_at);
    // Still the rollback until it is done; the case still waits for its report.
    let again = h.action_of(&h.check_in(None).await).unwrap();
    assert_eq!(again.action, ActionKind::Rollback);
    let (_, c) = h.staff("GET", &format!("/api/v1/cases/{id}"), None).await;
    assert!(c["diagnostics_pending"].is_object(), "{c}");
}

impl H {
    /// Asks case `id`'s box for diagnostics; the request's issued_at.
    async fn ask(&self, id: &str) -> Timestamp {
        let (s, v) = self
            .staff("POST", &format!("/api/v1/cases/{id}/diagnostics"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        v["diagnostics_pending"]["issued_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The box posts `doc`, signed.
    async fn post_report(&self, doc: &Diagnostics) -> (StatusCode, Value) {
        let body = serde_json::to_vec(&sign_device(doc, &self.key)).unwrap();
        self.device(&self.key, SERIAL, "/api/v1/device/diagnostics", &body)
            .await
    }

    async fn box_pending(&self) -> Value {
        let (_, d) = self
            .staff("GET", &format!("/api/v1/devices/{SERIAL}"), None)
            .await;
        d["pending_diagnostics"].clone()
    }

    async fn case(&self, id: &str) -> Value {
        let (s, c) = self
            .staff("GET", &format!("/api/v1/cases/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{c}");
        c
    }
}

#[tokio::test]
async fn ending_a_case_withdraws_its_diagnostics_request_so_the_box_can_be_asked_again() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let a = h.case_id(SERIAL).await;
    let b = h.case_id(SERIAL).await;
    h.ask(&a).await;
    let (s, v) = h.status(&a, "closed").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["diagnostics_pending"], Value::Null, "{v}");
    let last = v["entries"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["text"]
            .as_str()
            .unwrap()
            .contains("withdrawn: the case is closed"),
        "{last}"
    );
    assert_eq!(h.box_pending().await, Value::Null);
    // The closing is one audit row that carries the box's change.
    let (_, audit) = h
        .staff(
            "GET",
            &format!("/api/v1/audit?serial={SERIAL}&limit=5"),
            None,
        )
        .await;
    let newest = audit["entries"][0].clone();
    assert_eq!(newest["action"], "case_status", "{newest}");
    assert!(
        newest["before"]["device"]["pending_diagnostics"].is_object(),
        "{newest}"
    );
    assert_eq!(
        newest["after"]["device"]["pending_diagnostics"],
        Value::Null,
        "{newest}"
    );
    // Another case of the box may ask now.
    let asked_b = h.ask(&b).await;
    // Resolving ends it too.
    let (s, v) = h.status(&b, "resolved").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["diagnostics_pending"], Value::Null, "{v}");
    assert_eq!(h.box_pending().await, Value::Null);
    // The box's report for the withdrawn request is refused.
    refused(
        h.post_report(&report(SERIAL, &b, asked_b)).await,
        StatusCode::CONFLICT,
        "no_diagnostics_pending",
    );
    // An RMA that ends (resolving the case) withdraws it as well.
    let c = h.case_id(SERIAL).await;
    let (s, v) = h
        .staff("POST", &format!("/api/v1/cases/{c}/rma"), Some(json!({})))
        .await;
    assert!(s.is_success(), "{v}");
    h.ask(&c).await;
    let (s, v) = h.rma(&c, json!({"outcome": "repaired"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["case"]["diagnostics_pending"], Value::Null, "{v}");
    assert_eq!(h.box_pending().await, Value::Null);
}

#[tokio::test]
async fn a_report_for_a_closed_case_is_refused_but_clears_the_request_on_the_box() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let a = h.case_id(SERIAL).await;
    let b = h.case_id(SERIAL).await;
    let asked = h.ask(&a).await;
    // A case closed while its request stayed on the box (as an older server left it).
    let change = crate::store::CaseChange {
        actor: "test",
        action: "case_status",
        device_action: "case_status",
        at: h.state.now(),
    };
    h.state
        .store
        .mutate_case(
            crate::domain::case::CaseId::parse(&a).unwrap(),
            &[],
            &change,
            |c, _| {
                c.status = crate::domain::case::CaseStatus::Closed;
                Ok::<(), ()>(())
            },
        )
        .await
        .unwrap();
    assert!(h.box_pending().await.is_object());
    refused(
        h.staff("POST", &format!("/api/v1/cases/{b}/diagnostics"), None)
            .await,
        StatusCode::CONFLICT,
        "diagnostics_pending",
    );
    refused(
        h.post_report(&report(SERIAL, &a, asked)).await,
        StatusCode::CONFLICT,
        "case_closed",
    );
    assert_eq!(h.box_pending().await, Value::Null);
    // Nothing changes the closed case itself: its one entry is the request.
    assert_eq!(h.case(&a).await["entries"].as_array().unwrap().len(), 1);
    h.ask(&b).await;
}

#[tokio::test]
async fn staff_cancel_a_diagnostics_request_on_the_case_or_as_the_boxs_pending_action() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let a = h.case_id(SERIAL).await;
    let asked = h.ask(&a).await;
    let (s, v) = h
        .staff("DELETE", &format!("/api/v1/cases/{a}/diagnostics"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["diagnostics_pending"], Value::Null, "{v}");
    assert_eq!(h.box_pending().await, Value::Null);
    refused(
        h.staff("DELETE", &format!("/api/v1/cases/{a}/diagnostics"), None)
            .await,
        StatusCode::CONFLICT,
        "no_diagnostics_pending",
    );
    refused(
        h.post_report(&report(SERIAL, &a, asked)).await,
        StatusCode::CONFLICT,
        "no_diagnostics_pending",
    );
    // With no update action pending, cancelling the box's action cancels the request.
    h.ask(&a).await;
    let (s, v) = h
        .staff("DELETE", &format!("/api/v1/devices/{SERIAL}/actions"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["pending_diagnostics"], Value::Null, "{v}");
    assert_eq!(h.case(&a).await["diagnostics_pending"], Value::Null);
    refused(
        h.staff("DELETE", &format!("/api/v1/devices/{SERIAL}/actions"), None)
            .await,
        StatusCode::NOT_FOUND,
        "no_pending_action",
    );
    let actions = h.audit_actions(SERIAL).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "diagnostics_cancel")
            .count(),
        2,
        "{actions:?}"
    );
}

#[tokio::test]
async fn revoking_or_swapping_the_box_withdraws_its_cases_diagnostics_requests() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    h.register(OTHER, "2026-01-01").await;
    let a = h.case_id(SERIAL).await;
    h.ask(&a).await;
    let (s, v) = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{SERIAL}/revoke"),
            Some(json!({"reason": "stolen"})),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let c = h.case(&a).await;
    assert_eq!(c["diagnostics_pending"], Value::Null, "{c}");
    assert!(c["entries"].as_array().unwrap().last().unwrap()["text"]
        .as_str()
        .unwrap()
        .contains("the box was revoked"));
    // A swap outside an RMA.
    let b = h.case_id(OTHER).await;
    let (s, v) = h
        .staff("POST", &format!("/api/v1/cases/{b}/diagnostics"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, v) = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{OTHER}/swap"),
            Some(json!({"new_serial": "NR-3000-000000-7", "reason": "dead on arrival"})),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let c = h.case(&b).await;
    assert_eq!(c["diagnostics_pending"], Value::Null, "{c}");
}

#[tokio::test]
async fn a_stale_or_replayed_report_is_not_the_answer_to_a_newer_request() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let a = h.case_id(SERIAL).await;
    let first = h.ask(&a).await;
    let old = report(SERIAL, &a, first);
    let (s, v) = h.post_report(&old).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.set_now("2026-11-23T11:00:00Z");
    let second = h.ask(&a).await;
    assert!(second > first);
    // The earlier real report, signed again (fresh request signature): refused.
    let v = refused(
        h.post_report(&old).await,
        StatusCode::CONFLICT,
        "stale_diagnostics",
    );
    assert_eq!(
        v["error"]["details"]["pending_issued_at"],
        json!(second.to_string())
    );
    // A made-up requested_at: refused too.
    refused(
        h.post_report(&report(SERIAL, &a, t("2020-01-01T00:00:00Z")))
            .await,
        StatusCode::CONFLICT,
        "stale_diagnostics",
    );
    // The request still waits, and the right report is filed.
    assert!(h.box_pending().await.is_object());
    let (s, v) = h.post_report(&report(SERIAL, &a, second)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = h.case(&a).await;
    let filed: Vec<Diagnostics> = c["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "diagnostics")
        .map(|e| serde_json::from_str(e["text"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        filed.iter().map(|d| d.requested_at).collect::<Vec<_>>(),
        vec![first, second]
    );
}

#[tokio::test]
async fn a_payload_over_the_bound_inside_the_body_cap_is_413() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let a = h.case_id(SERIAL).await;
    let asked = h.ask(&a).await;
    let mut doc = report(SERIAL, &a, asked);
    let base = serde_json::to_vec(&doc).unwrap().len();
    let pad = np_common::device_docs::MAX_DIAGNOSTICS_BYTES + 1 - base - r#","x":"""#.len();
    doc.status = json!({"phase": "idle", "x": "y".repeat(pad)});
    let env = sign_device(&doc, &h.key);
    assert_eq!(
        env.payload_bytes().unwrap().len(),
        np_common::device_docs::MAX_DIAGNOSTICS_BYTES + 1
    );
    let body = serde_json::to_vec(&env).unwrap();
    assert!(body.len() < super::DIAGNOSTICS_BODY_BYTES);
    refused(
        h.device(&h.key, SERIAL, "/api/v1/device/diagnostics", &body)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    assert!(h.box_pending().await.is_object());
}

#[tokio::test]
async fn a_case_keeps_its_newest_reports_and_lists_carry_only_previews() {
    let h = H::new().await;
    h.register(SERIAL, "2026-01-01").await;
    let a = h.case_id(SERIAL).await;
    let n = crate::domain::case::MAX_KEPT_REPORTS + 2;
    for i in 0..n {
        h.set_now(&format!("2026-11-23T{:02}:00:00Z", 10 + i));
        let asked = h.ask(&a).await;
        let (s, v) = h.post_report(&report(SERIAL, &a, asked)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let c = h.case(&a).await;
    let reports: Vec<&str> = c["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "diagnostics")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(reports.len(), n);
    assert!(reports[..2]
        .iter()
        .all(|t| *t == crate::domain::case::DROPPED_REPORT));
    assert!(reports[2..]
        .iter()
        .all(|t| serde_json::from_str::<Diagnostics>(t).is_ok()));
    let (s, l) = h.staff("GET", "/api/v1/cases", None).await;
    assert_eq!(s, StatusCode::OK, "{l}");
    let listed = l["cases"][0]["entries"].as_array().unwrap().clone();
    assert_eq!(listed.len(), c["entries"].as_array().unwrap().len());
    let longest = listed
        .iter()
        .map(|e| e["text"].as_str().unwrap().chars().count())
        .max()
        .unwrap();
    assert!(
        longest <= crate::domain::case::LIST_PREVIEW_CHARS + 1,
        "{longest}"
    );
    assert!(listed
        .iter()
        .any(|e| e["text"].as_str().unwrap().ends_with('…')));
}
