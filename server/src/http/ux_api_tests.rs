//! In-process tests of what a new user trips over (issue 11): the record following a
//! box's reported rollback, refusal codes that name the rule, coverage beside status,
//! pending actions (refused twice, replaced, cancelled), bulk import, corrections, the
//! audit log newest first with filters, releases that cannot be rolled out or reached,
//! future purchase dates, serials as typed and whole-second times.

use crate::http::app;
use crate::http::device_auth::sign_request;
use crate::state::{AppState, Clock};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use jiff::Timestamp;
use np_common::SecretKey;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tower::ServiceExt as _;

const SERIAL: &str = "NR-2000-123456-4";

/// A valid NR-1000 serial with number `n`.
fn nr1000(n: u32) -> String {
    let digits = format!("1000{n:06}");
    format!(
        "NR-1000-{n:06}-{}",
        np_common::serial::luhn_check_digit(&digits)
    )
}
const IMAGE: &[u8] = b"ux test firmware image bytes";

struct H {
    app: Router,
    state: AppState,
    token: String,
    clock: Arc<Mutex<Timestamp>>,
    key: SecretKey,
    _dir: tempfile::TempDir,
}

impl H {
    fn new() -> H {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let start: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let out = crate::datadir::init(&data, start).unwrap();
        let clock = Arc::new(Mutex::new(start));
        let c = clock.clone();
        let clock_fn: Clock = Arc::new(move || *c.lock().unwrap());
        let state = crate::datadir::open(crate::config::default_config(&data), clock_fn).unwrap();
        H {
            app: app(state.clone()),
            state,
            token: out.admin_token,
            clock,
            key: SecretKey::from_seed(&[7; 32]),
            _dir: dir,
        }
    }

    fn set_now(&self, t: &str) {
        *self.clock.lock().unwrap() = t.parse().unwrap();
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

    async fn staff(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json");
        let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
        self.send(b.body(body).unwrap()).await
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.staff(method, path, body).await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    async fn register(&self, serial: &str, purchase: &str) -> Value {
        self.ok(
            "POST",
            "/api/v1/devices",
            Some(
                json!({"serial": serial, "purchase_date": purchase, "customer": "ACME",
                "device_key": self.key.public_key().to_base64()}),
            ),
        )
        .await
    }

    async fn publish(&self, version: &str, min_from: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method("PUT")
            .uri("/api/v1/blobs")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Body::from(IMAGE))
            .unwrap();
        let (_, blob) = self.send(req).await;
        self.staff(
            "POST",
            "/api/v1/releases",
            Some(json!({"version": version, "security_version": 1,
                "models": ["NR-1000", "NR-2000"], "channel": "stable",
                "released_at": "2026-10-01T00:00:00Z", "min_from_version": min_from,
                "image": {"name": "img", "sha256": blob["sha256"]}, "notes": ""})),
        )
        .await
    }

    async fn device_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let bytes = body.to_string().into_bytes();
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce).unwrap();
        let sig = sign_request(
            &self.key,
            "POST",
            path,
            self.state.now(),
            &hex::encode(nonce),
            &bytes,
        );
        let mut req = Request::builder().method("POST").uri(path);
        for (name, value) in sig.headers(SERIAL) {
            req = req.header(name, value);
        }
        let req = req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .unwrap();
        self.send(req).await
    }

    async fn check_in(&self, version: &str) -> Value {
        let (s, v) = self
            .device_post(
                "/api/v1/device/check-in",
                json!({"version": version, "slot": "a", "state": "idle", "nonce": "00ff"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_reported_rollback_moves_the_record_at_once_and_bundles_name_the_rule() {
    let h = H::new();
    h.register(SERIAL, "2026-06-01").await;
    assert_eq!(h.publish("5.2.0", "0.0.0").await.0, StatusCode::CREATED);
    assert_eq!(h.publish("5.3.0", "5.0.0").await.0, StatusCode::CREATED);
    h.check_in("5.2.0").await;
    h.set_now("2026-11-23T10:01:00Z");
    let (s, _) = h
        .device_post(
            "/api/v1/device/events",
            json!({"version": "5.3.0", "event": "commit", "detail": "health check passed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let dev = format!("/api/v1/devices/{SERIAL}");
    assert_eq!(h.ok("GET", &dev, None).await["version"], "5.3.0");
    // While it runs 5.3.0, a bundle of 5.2.0 is refused with the rule as the code.
    let (s, v) = h
        .staff("GET", &format!("{dev}/bundle?version=5.2.0"), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "not_newer"), "{v}");
    assert_eq!(v["error"]["details"]["rule"], "not_newer");

    h.ok(
        "POST",
        &format!("{dev}/actions"),
        Some(json!({"action": "rollback"})),
    )
    .await;
    assert!(h.check_in("5.3.0").await["action"].is_object());
    h.set_now("2026-11-23T10:02:00Z");
    let (s, _) = h
        .device_post(
            "/api/v1/device/events",
            json!({"version": "5.3.0", "event": "rollback", "detail": "staff asked"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // No further check-in: the record already follows the box.
    let d = h.ok("GET", &dev, None).await;
    assert_eq!(d["version"], "5.2.0", "{d}");
    assert_eq!(d["pending_action"], Value::Null);
    assert_eq!(d["last_result"]["outcome"], "rolled_back");
    let (s, v) = h
        .staff("GET", &format!("{dev}/bundle?version=5.3.0"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn coverage_is_its_own_state_and_lists_filter_by_it() {
    let h = H::new();
    let expired = &nr1000(1);
    let later = &nr1000(2);
    let d = h.register(SERIAL, "2026-01-01").await;
    assert_eq!(
        (d["status"].as_str(), d["coverage"].as_str()),
        (Some("active"), Some("covered"))
    );
    let e = h.register(expired, "2024-01-01").await;
    assert_eq!(
        (e["status"].as_str(), e["coverage"].as_str()),
        (Some("active"), Some("expired"))
    );
    let n = h
        .ok(
            "POST",
            "/api/v1/devices",
            Some(
                json!({"serial": later, "purchase_date": "2027-01-01", "customer": "B",
                "allow_future": true}),
            ),
        )
        .await;
    assert_eq!(n["coverage"], "not_yet_started");
    let serials = |v: &Value| -> Vec<String> {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["serial"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_status = h.ok("GET", "/api/v1/devices?status=expired", None).await;
    assert_eq!(serials(&by_status), [expired.as_str()]);
    let by_cov = h.ok("GET", "/api/v1/devices?coverage=covered", None).await;
    assert_eq!(serials(&by_cov), [SERIAL]);
    assert_eq!(by_cov["devices"][0]["coverage"], "covered");
    let (s, v) = h
        .staff("GET", "/api/v1/devices?coverage=lapsed", None)
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bad_status")
    );
    let shown = h
        .ok("GET", &format!("/api/v1/devices/{expired}"), None)
        .await;
    assert_eq!(shown["coverage"], "expired");
}

#[tokio::test]
async fn list_filters_by_running_version_and_silence() {
    let h = H::new();
    let other = &nr1000(1);
    h.register(SERIAL, "2026-06-01").await;
    h.register(other, "2026-06-01").await;
    h.check_in("5.2.0").await;
    let v = h.ok("GET", "/api/v1/devices?version=5.2.0", None).await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 1);
    assert_eq!(v["devices"][0]["serial"], SERIAL);
    let v = h
        .ok("GET", "/api/v1/devices?checked_in_before=2026-11-23", None)
        .await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["devices"][0]["serial"], other.as_str());
    let v = h
        .ok("GET", "/api/v1/devices?checked_in_before=2026-11-24", None)
        .await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_second_action_is_refused_unless_replaced_and_one_can_be_cancelled() {
    let h = H::new();
    h.register(SERIAL, "2026-06-01").await;
    let path = format!("/api/v1/devices/{SERIAL}/actions");
    h.ok("POST", &path, Some(json!({"action": "rollback"})))
        .await;
    let (s, v) = h
        .staff("POST", &path, Some(json!({"action": "rollback"})))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "action_pending"),
        "{v}"
    );
    assert_eq!(v["error"]["details"]["pending"]["action"], "rollback");
    let (s, v) = h
        .staff(
            "POST",
            &path,
            Some(json!({"action": "rollback", "version": "5.2.0"})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bad_action")
    );
    h.set_now("2026-11-23T10:00:00.250Z");
    let d = h
        .ok(
            "POST",
            &path,
            Some(json!({"action": "rollback", "replace": true})),
        )
        .await;
    // Whole seconds, and newer than the one it replaced.
    assert_eq!(d["pending_action"]["issued_at"], "2026-11-23T10:00:02Z");
    let d = h.ok("DELETE", &path, None).await;
    assert_eq!(d["pending_action"], Value::Null);
    let (s, v) = h.staff("DELETE", &path, None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "no_pending_action"));
    let audit = h
        .ok("GET", &format!("/api/v1/audit?serial={SERIAL}"), None)
        .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["action_cancel", "action", "action", "register"]);
}

#[tokio::test]
async fn import_registers_a_batch_in_one_go_or_names_every_bad_line() {
    let h = H::new();
    let rows: Vec<Value> = (1..=50u32)
        .map(|n| {
            let serial = nr1000(n);
            json!({"line": n + 1, "serial": serial.to_lowercase(), "purchase_date": "2026-01-02",
                "customer": "Fleet"})
        })
        .collect();
    let mut bad = rows.clone();
    bad[3]["serial"] = json!(format!("{}0", &nr1000(4)[..15]));
    if bad[3]["serial"] == json!(nr1000(4)) {
        bad[3]["serial"] = json!(format!("{}1", &nr1000(4)[..15]));
    }
    bad[7]["purchase_date"] = json!("2030-01-01");
    bad[9]["serial"] = bad[8]["serial"].clone();
    let (s, v) = h
        .staff(
            "POST",
            "/api/v1/devices/import",
            Some(json!({"devices": bad})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "import_rejected"),
        "{v}"
    );
    let errs = v["error"]["details"]["errors"].as_array().unwrap();
    let lines: Vec<(u64, &str)> = errs
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [
            (5, "bad_serial"),
            (9, "future_purchase_date"),
            (11, "duplicate")
        ]
    );
    let none = h.ok("GET", "/api/v1/devices", None).await;
    assert!(none["devices"].as_array().unwrap().is_empty());

    let v = h
        .ok(
            "POST",
            "/api/v1/devices/import",
            Some(json!({"devices": rows})),
        )
        .await;
    assert_eq!(v["imported"], 50);
    let again = h
        .staff(
            "POST",
            "/api/v1/devices/import",
            Some(json!({"devices": rows[..2]})),
        )
        .await;
    assert_eq!(again.1["error"]["details"]["errors"][0]["code"], "exists");
    // A re-run with skip_existing skips (and counts) boxes with the same facts, registers
    // the new ones, and still refuses a box registered with other facts.
    let mut more: Vec<Value> = rows[..2].to_vec();
    let mut fresh = rows[0].clone();
    fresh["serial"] = json!(nr1000(900));
    more.push(fresh);
    let v = h
        .ok(
            "POST",
            "/api/v1/devices/import",
            Some(json!({"devices": more, "skip_existing": true})),
        )
        .await;
    assert_eq!(
        (v["imported"].as_u64(), v["skipped"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
    assert_eq!(v["serials"][0], nr1000(900));
    let mut other = rows[0].clone();
    other["customer"] = json!("Someone Else");
    let (s, v) = h
        .staff(
            "POST",
            "/api/v1/devices/import",
            Some(json!({"devices": [other], "skip_existing": true})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "import_rejected")
    );
    assert_eq!(v["error"]["details"]["errors"][0]["code"], "exists");
    let audit = h
        .ok("GET", "/api/v1/audit?action=import&limit=1000", None)
        .await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 51);
}

#[tokio::test]
async fn corrections_are_audited_and_re_sign_when_terms_change() {
    let h = H::new();
    let d = h.register(SERIAL, "2026-02-01").await;
    let path = format!("/api/v1/devices/{SERIAL}");
    let e = h
        .ok(
            "PATCH",
            &path,
            Some(json!({"customer": "ACME Logs", "purchase_date": "2026-01-02"})),
        )
        .await;
    assert_eq!(e["customer"], "ACME Logs");
    assert_eq!(e["coverage_end"], "2027-01-02");
    assert_eq!(e["sequence"], d["sequence"].as_u64().unwrap() + 1);
    assert_ne!(e["entitlement"], d["entitlement"]);
    let (s, v) = h.staff("PATCH", &path, Some(json!({}))).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "nothing_to_change")
    );
    h.ok(
        "POST",
        &format!("{path}/extensions"),
        Some(json!({"months": 12})),
    )
    .await;
    let (s, v) = h
        .staff("PATCH", &path, Some(json!({"purchase_date": "2026-01-03"})))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "has_extensions"));
    h.set_now("2026-11-24T09:00:00Z");
    let audit = h
        .ok(
            "GET",
            "/api/v1/audit?action=edit&since=2026-11-23&actor=admin",
            None,
        )
        .await;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["before"]["customer"], "ACME");
    assert_eq!(entries[0]["after"]["customer"], "ACME Logs");
    let newest = h.ok("GET", "/api/v1/audit?limit=1", None).await;
    assert_eq!(newest["entries"][0]["action"], "extend");
    let later = h.ok("GET", "/api/v1/audit?since=2026-11-24", None).await;
    assert!(later["entries"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn yanked_releases_cannot_resume_and_unreachable_minimums_are_warned_about() {
    let h = H::new();
    assert_eq!(h.publish("5.2.0", "5.0.0").await.0, StatusCode::CREATED);
    assert_eq!(h.publish("5.3.0", "5.0.0").await.0, StatusCode::CREATED);
    h.ok(
        "PATCH",
        "/api/v1/releases/5.3.0",
        Some(json!({"yanked": true})),
    )
    .await;
    for body in [
        json!({"paused": false}),
        json!({"rollout_percent": 50}),
        json!({"yanked": false}),
        json!({"yanked": false, "paused": false}),
    ] {
        let (s, v) = h
            .staff("PATCH", "/api/v1/releases/5.3.0", Some(body.clone()))
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::CONFLICT, "yanked"),
            "{body}: {v}"
        );
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("publish a new version"), "{v}");
    }
    let (_, v) = h.staff("GET", "/api/v1/releases/5.3.0", None).await;
    assert_eq!(v["yanked"], true, "a yanked release stays yanked: {v}");
    // Above every listed model's newest release: published, with a warning that names
    // them; the yanked 5.3.0 is not a model's newest.
    let (s, v) = h.publish("7.0.0", "6.0.0").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let w = v["warnings"][0].as_str().unwrap_or_default();
    assert!(
        w.contains("6.0.0") && w.contains("NR-2000 5.2.0") && !w.contains("5.3.0"),
        "{v}"
    );
    // Dated ahead of the server's clock: refused (boxes would refuse its manifest).
    let req = Request::builder()
        .method("PUT")
        .uri("/api/v1/blobs")
        .header(header::AUTHORIZATION, format!("Bearer {}", h.token))
        .body(Body::from(IMAGE))
        .unwrap();
    let (_, blob) = h.send(req).await;
    let (s, v) = h
        .staff(
            "POST",
            "/api/v1/releases",
            Some(
                json!({"version": "5.5.0", "security_version": 1, "models": ["NR-2000"],
                "released_at": "2199-01-01T00:00:00Z", "min_from_version": "5.0.0",
                "image": {"sha256": blob["sha256"]}}),
            ),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "future_release_date"),
        "{v}"
    );
    // Reachable from a published release: no warning.
    let (s, v) = h.publish("7.1.0", "7.0.0").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
}

#[tokio::test]
async fn a_minimum_version_at_or_above_the_release_itself_is_refused() {
    let h = H::new();
    for (version, min) in [("6.0.0", "6.0.0"), ("5.9.0", "6.0.0")] {
        let (s, v) = h.publish(version, min).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "bad_min_from_version"),
            "{v}"
        );
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!(
                "must be below the release's own version {version}"
            )),
            "{v}"
        );
    }
    let (s, v) = h.staff("GET", "/api/v1/releases", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["releases"], json!([]), "nothing was published");
}

#[tokio::test]
async fn future_purchase_dates_need_allow_future_and_serials_are_normalized() {
    let h = H::new();
    let (s, v) = h
        .staff(
            "POST",
            "/api/v1/devices",
            Some(json!({"serial": SERIAL, "purchase_date": "2029-11-23", "customer": "A"})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "future_purchase_date")
    );
    assert_eq!(v["error"]["details"]["days_ahead"], 1096);
    // Three days ahead is accepted (time zones, shipping).
    let d = h
        .ok(
            "POST",
            "/api/v1/devices",
            Some(json!({"serial": " nr-2000-123456-4 ", "purchase_date": "2026-11-26", "customer": "A"})),
        )
        .await;
    assert_eq!(d["serial"], SERIAL);
    assert_eq!(d["registered_at"], "2026-11-23T10:00:00Z");
    let shown = h.ok("GET", "/api/v1/devices/nr-2000-123456-4", None).await;
    assert_eq!(shown["serial"], SERIAL);
    let (s, v) = h
        .staff("GET", "/api/v1/devices/NR-2000-654321-7", None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(v["error"]["details"]["serial"], "NR-2000-654321-7");
}

#[tokio::test]
async fn a_revoked_box_says_once_why_it_cannot_change() {
    let h = H::new();
    h.register(SERIAL, "2026-02-01").await;
    let path = format!("/api/v1/devices/{SERIAL}");
    h.ok(
        "POST",
        &format!("{path}/revoke"),
        Some(json!({"reason": "stolen"})),
    )
    .await;
    let (s, v) = h
        .staff(
            "POST",
            &format!("{path}/extensions"),
            Some(json!({"months": 12})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "not_active"));
    assert_eq!(
        v["error"]["message"],
        format!("device {SERIAL} is revoked, so its coverage cannot change any more")
    );
}

#[tokio::test]
async fn an_edit_sets_the_device_key_and_is_audited() {
    let h = H::new();
    h.ok(
        "POST",
        "/api/v1/devices",
        Some(json!({"serial": SERIAL, "purchase_date": "2026-02-01", "customer": "ACME"})),
    )
    .await;
    let key = np_common::SecretKey::from_seed(&[5; 32])
        .public_key()
        .to_base64();
    let path = format!("/api/v1/devices/{SERIAL}");
    let e = h.ok("PATCH", &path, Some(json!({"device_key": key}))).await;
    assert_eq!(e["device_key"], key);
    let audit = h.ok("GET", "/api/v1/audit?action=edit", None).await;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["before"]["device_key"], Value::Null);
    assert_eq!(entries[0]["after"]["device_key"], key);
    let (s, v) = h
        .staff("PATCH", &path, Some(json!({"device_key": "abcd"})))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bad_device_key")
    );
}

#[tokio::test]
async fn a_staff_token_on_a_keyring_draft_is_told_the_role_it_needs() {
    let h = H::new();
    let dir = h.state.config.data_dir.clone();
    let staff =
        crate::tokens::create(&dir, crate::tokens::TokenRole::Staff, "sam", h.state.now()).unwrap();
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/keyring/drafts")
        .header(header::AUTHORIZATION, format!("Bearer {staff}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (s, v) = h.send(req).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("may not draft or install signing keyrings"),
        "{m}"
    );
    assert!(m.contains("np-server token create --role admin"), "{m}");
    assert!(!m.contains("manage tokens"), "{m}");
}
