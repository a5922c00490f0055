//! In-process tests of releases, blobs, the device API, actions and bundles against
//! `app(state)` with a controlled clock.

use crate::http::app;
use crate::http::device_auth::sign_request;
use crate::state::{AppState, Clock};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use jiff::Timestamp;
use np_common::api::{HEADER_NONCE, HEADER_SERIAL, HEADER_SIGNATURE, HEADER_TIME};
use np_common::bundle::{EntryType, LayoutCheck};
use np_common::docs::{self, Release};
use np_common::{Envelope, SecretKey};
use serde_json::{json, Value};
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use tower::ServiceExt as _;

const SERIAL: &str = "NR-2000-123456-4";
const IMAGE: &[u8] = b"firmware image bytes 0123456789 abcdefghijklmnopqrstuvwxyz";

struct H {
    app: Router,
    state: AppState,
    token: String,
    clock: Arc<Mutex<Timestamp>>,
    key: SecretKey,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

/// A new random request nonce (as a box makes for every request).
fn fresh_nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).unwrap();
    hex::encode(b)
}

fn now0() -> Timestamp {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

impl H {
    async fn new() -> H {
        Self::with_blob_limit(None).await
    }

    async fn with_blob_limit(limit: Option<u64>) -> H {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = crate::datadir::init(&data, now0()).unwrap();
        let clock = Arc::new(Mutex::new(now0()));
        let c = clock.clone();
        let clock_fn: Clock = Arc::new(move || *c.lock().unwrap());
        let mut config = crate::config::default_config(&data);
        if let Some(l) = limit {
            config.limits.blob_bytes = l;
        }
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

    fn set_now(&self, t: &str) {
        *self.clock.lock().unwrap() = t.parse().unwrap();
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            bytes,
        }
    }

    async fn staff(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.send(b.body(body).unwrap()).await
    }

    async fn put_blob(&self, bytes: &'static [u8]) -> Value {
        let req = Request::builder()
            .method("PUT")
            .uri("/api/v1/blobs")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Body::from(bytes))
            .unwrap();
        let a = self.send(req).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.json());
        a.json()
    }

    async fn register(&self, serial: &str, purchase: &str) {
        let a = self
            .staff(
                "POST",
                "/api/v1/devices",
                Some(
                    json!({"serial": serial, "purchase_date": purchase, "customer": "ACME",
                    "device_key": self.key.public_key().to_base64()}),
                ),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.json());
    }

    async fn release(&self, version: &str, extra: Value) -> Answer {
        let blob = self.put_blob(IMAGE).await;
        let mut body = json!({"version": version, "security_version": 2,
            "models": ["NR-1000", "NR-2000"], "channel": "stable",
            "released_at": "2026-10-01T00:00:00Z", "min_from_version": "5.0.0",
            "image": {"name": format!("n-reporter-{version}.img"), "sha256": blob["sha256"]},
            "notes": "fixes"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.staff("POST", "/api/v1/releases", Some(body)).await
    }

    async fn publish(&self, version: &str, extra: Value) {
        let a = self.release(version, extra).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.json());
    }

    #[allow(clippy::too_many_arguments)]
    async fn device(
        &self,
        key: &SecretKey,
        serial: &str,
        method: &str,
        path_q: &str,
        body: &[u8],
        at: Timestamp,
        range: Option<&str>,
    ) -> Answer {
        let s = sign_request(key, method, path_q, at, &fresh_nonce(), body);
        let mut b = Request::builder()
            .method(method)
            .uri(path_q)
            .header(HEADER_SERIAL, serial)
            .header(HEADER_TIME, s.time)
            .header(HEADER_NONCE, s.nonce)
            .header(HEADER_SIGNATURE, s.signature)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(r) = range {
            b = b.header(header::RANGE, r);
        }
        self.send(b.body(Body::from(body.to_vec())).unwrap()).await
    }

    async fn check_in(&self, version: &str) -> Value {
        let body = serde_json::to_vec(
            &json!({"version": version, "slot": "a", "state": "idle", "nonce": "00ff"}),
        )
        .unwrap();
        let now = self.state.now();
        let a = self
            .device(
                &self.key,
                SERIAL,
                "POST",
                "/api/v1/device/check-in",
                &body,
                now,
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
        a.json()
    }

    async fn event(&self, event: Value) -> Answer {
        let body = serde_json::to_vec(&event).unwrap();
        let now = self.state.now();
        self.device(
            &self.key,
            SERIAL,
            "POST",
            "/api/v1/device/events",
            &body,
            now,
            None,
        )
        .await
    }

    async fn blob_get(&self, range: Option<&str>) -> Answer {
        let sha = np_common::Sha256Digest::of(IMAGE);
        let now = self.state.now();
        self.device(
            &self.key,
            SERIAL,
            "GET",
            &format!("/api/v1/device/blobs/{sha}"),
            b"",
            now,
            range,
        )
        .await
    }
}

/// (available version, its refusal rule, offered version)
fn summary(v: &Value) -> (Option<String>, Option<String>, Option<String>) {
    let s = |x: &Value| x.as_str().map(str::to_owned);
    let version_of = |env: &Value| -> Option<String> {
        let env: Envelope = serde_json::from_value(env.clone()).ok()?;
        let r: Release = serde_json::from_slice(&env.payload_bytes().ok()?).ok()?;
        Some(r.version.to_string())
    };
    (
        version_of(&v["available"]["manifest"]),
        s(&v["available"]["refusal"]["rule"]),
        version_of(&v["offer"]["manifest"]),
    )
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[tokio::test]
async fn a_covered_box_is_offered_the_newest_release_with_signed_documents() {
    let h = H::new().await;
    h.register(SERIAL, "2026-03-01").await;
    h.publish("5.2.0", json!({})).await;
    h.publish("5.3.0", json!({})).await;
    let v = h.check_in("5.1.0").await;
    assert_eq!(summary(&v), (some("5.3.0"), None, some("5.3.0")));
    let sha = np_common::Sha256Digest::of(IMAGE);
    assert_eq!(v["offer"]["url"], format!("/api/v1/device/blobs/{sha}"));
    // Every document verifies under the keyring the answer carries.
    let kr = &h.state.keys().keyring;
    let t: Envelope = serde_json::from_value(v["time"].clone()).unwrap();
    let t = docs::TimeToken::verify_nonce(&t, kr, "00ff").unwrap();
    assert_eq!(t.now, now0());
    let m: Envelope = serde_json::from_value(v["offer"]["manifest"].clone()).unwrap();
    let r: Release = docs::verify(&m, kr).unwrap();
    assert_eq!(
        (r.product.as_str(), r.image.size),
        ("n-reporter", IMAGE.len() as u64)
    );
    let e: Envelope = serde_json::from_value(v["entitlement"].clone()).unwrap();
    docs::Entitlement::verify_for(&e, kr, &SERIAL.parse().unwrap(), None).unwrap();
    // The check-in is recorded on the device.
    let d = h
        .staff("GET", &format!("/api/v1/devices/{SERIAL}"), None)
        .await
        .json();
    assert_eq!(d["version"], "5.1.0");
    assert_eq!(d["last_check_in"], "2026-11-23T10:00:00Z");
    let list = h.staff("GET", "/api/v1/releases", None).await.json();
    assert_eq!(list["releases"][0]["version"], "5.3.0");
    assert_eq!(list["releases"][1]["installs"], 0);
}

#[tokio::test]
async fn each_offer_rule_is_named_in_the_answer() {
    // Expired: purchased 2024-06-01, covered until 2025-06-01.
    let h = H::new().await;
    h.register(SERIAL, "2024-06-01").await;
    h.publish("5.3.0", json!({})).await;
    assert_eq!(
        summary(&h.check_in("5.1.0").await),
        (some("5.3.0"), some("warranty_expired"), None)
    );

    // Revoked.
    let h = H::new().await;
    h.register(SERIAL, "2026-03-01").await;
    h.publish("5.3.0", json!({})).await;
    let a = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{SERIAL}/revoke"),
            Some(json!({"reason": "stolen"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
    assert_eq!(
        summary(&h.check_in("5.1.0").await),
        (some("5.3.0"), some("entitlement_not_active"), None)
    );

    let h = H::new().await;
    h.register(SERIAL, "2026-03-01").await;
    // Security downgrade: the box runs 5.2.0 (security 5); 5.3.0 has 4.
    h.publish("5.2.0", json!({"security_version": 5})).await;
    h.publish("5.3.0", json!({"security_version": 4})).await;
    assert_eq!(
        summary(&h.check_in("5.2.0").await),
        (some("5.3.0"), some("security_downgrade"), None)
    );
    // Not newer.
    assert_eq!(
        summary(&h.check_in("5.3.0").await),
        (some("5.3.0"), some("not_newer"), None)
    );
    // min_from_version: 5.3.0 installs over 5.0.0 or later.
    assert_eq!(
        summary(&h.check_in("4.9.0").await).1,
        some("from_version_too_old")
    );

    // Paused, then yanked, then outside the rollout.
    let h = H::new().await;
    h.register(SERIAL, "2026-03-01").await;
    h.publish("5.3.0", json!({})).await;
    let set = |body: Value| h.staff("PATCH", "/api/v1/releases/5.3.0", Some(body));
    assert_eq!(set(json!({"paused": true})).await.status, StatusCode::OK);
    assert_eq!(
        summary(&h.check_in("5.1.0").await),
        (some("5.3.0"), some("paused"), None)
    );
    assert_eq!(
        set(json!({"paused": false, "rollout_percent": 0}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        summary(&h.check_in("5.1.0").await),
        (some("5.3.0"), some("outside_rollout"), None)
    );
    let bad = set(json!({"rollout_percent": 101})).await;
    assert_eq!(
        (bad.status, bad.json()["error"]["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("bad_rollout"))
    );

    // A staff upgrade overrides the rollout.
    let a = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{SERIAL}/actions"),
            Some(json!({"action": "upgrade", "version": "5.3.0"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.json());
    assert_eq!(a.json()["pending_action"]["version"], "5.3.0");
    let v = h.check_in("5.1.0").await;
    assert_eq!(summary(&v), (some("5.3.0"), None, some("5.3.0")));
    let act: Envelope = serde_json::from_value(v["action"].clone()).unwrap();
    let act = docs::Action::verify_for(
        &act,
        &h.state.keys().keyring,
        &SERIAL.parse().unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(act.version.map(|v| v.to_string()), some("5.3.0"));
    // Handed over again until the box acts on it (an answer may be lost on the way); the
    // box takes each action once.
    let v = h.check_in("5.1.0").await;
    let again: Envelope = serde_json::from_value(v["action"].clone()).unwrap();
    let again = docs::Action::verify_for(
        &again,
        &h.state.keys().keyring,
        &SERIAL.parse().unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(again.issued_at, act.issued_at, "{v}");
    assert_eq!(summary(&v).2, some("5.3.0"), "still offered while pending");
    // The box reports: the action is done, the rollout applies again.
    let a = h
        .event(json!({"version": "5.3.0", "event": "commit", "detail": "healthy"}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
    let d = h
        .staff("GET", &format!("/api/v1/devices/{SERIAL}"), None)
        .await
        .json();
    assert_eq!(
        (d["pending_action"].clone(), d["version"].clone()),
        (Value::Null, json!("5.3.0"))
    );
    assert_eq!(d["last_result"]["outcome"], "installed");
    // Yanking and resuming (or giving a percent) in one request is refused as a whole.
    for body in [
        json!({"paused": false, "yanked": true}),
        json!({"rollout_percent": 40, "yanked": true}),
    ] {
        let a = set(body).await;
        assert_eq!(
            (a.status, a.json()["error"]["code"].clone()),
            (StatusCode::CONFLICT, json!("yanked"))
        );
    }
    // Yanked: never offered again, and it stays yanked.
    assert_eq!(set(json!({"yanked": true})).await.status, StatusCode::OK);
    assert_eq!(
        summary(&h.check_in("5.1.0").await),
        (some("5.3.0"), some("yanked"), None)
    );
    let a = set(json!({"yanked": false, "rollout_percent": 0})).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("yanked"))
    );
}

#[tokio::test]
async fn wrong_model_and_rolled_back_versions() {
    let h = H::new().await;
    h.register(SERIAL, "2026-03-01").await;
    h.publish("5.3.0", json!({"models": ["NR-3000"]})).await;
    // Nothing for NR-2000 at all.
    assert_eq!(summary(&h.check_in("5.1.0").await), (None, None, None));
    let a = h
        .staff(
            "GET",
            &format!("/api/v1/devices/{SERIAL}/bundle?version=5.3.0"),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.json()["error"]["details"]["rule"], "model_not_listed");
    let a = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{SERIAL}/actions"),
            Some(json!({"action": "upgrade", "version": "5.3.0"})),
        )
        .await;
    assert_eq!(a.json()["error"]["details"]["rule"], "model_not_listed");

    h.publish("5.4.0", json!({})).await;
    assert_eq!(summary(&h.check_in("5.1.0").await).2, some("5.4.0"));
    assert_eq!(
        h.event(json!({"version": "5.4.0", "event": "rollback", "detail": "health check failed"}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        summary(&h.check_in("5.1.0").await),
        (some("5.4.0"), some("rolled_back"), None)
    );
    let ev = h
        .staff("GET", &format!("/api/v1/devices/{SERIAL}/events"), None)
        .await
        .json();
    assert_eq!(ev["report"]["last_result"]["outcome"], "rolled_back");
    assert_eq!(ev["events"][0]["event"], "rollback");
}

#[tokio::test]
async fn a_rollback_action_is_delivered_and_cleared_by_the_report() {
    let h = H::new().await;
    h.register(SERIAL, "2024-01-01").await; // expired: rollback is still allowed
    let a = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{SERIAL}/actions"),
            Some(json!({"action": "rollback"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.json());
    assert_eq!(a.json()["pending_action"]["action"], "rollback");
    let v = h.check_in("5.3.0").await;
    assert!(v["action"].is_object());
    h.set_now("2026-11-23T10:05:00Z");
    assert_eq!(
        h.event(json!({"version": "5.3.0", "event": "rollback", "detail": "staff asked"}))
            .await
            .status,
        StatusCode::OK
    );
    let d = h
        .staff("GET", &format!("/api/v1/devices/{SERIAL}"), None)
        .await
        .json();
    assert_eq!(d["pending_action"], Value::Null);
    for (body, code) in [
        (json!({"action": "upgrade"}), "bad_action"),
        (
            json!({"action": "rollback", "version": "5.3.0"}),
            "bad_action",
        ),
        (json!({"action": "reboot"}), "bad_action"),
        (
            json!({"action": "upgrade", "version": "9.9.9"}),
            "unknown_version",
        ),
        (
            json!({"action": "upgrade", "version": "nine"}),
            "bad_version",
        ),
    ] {
        let a = h
            .staff(
                "POST",
                &format!("/api/v1/devices/{SERIAL}/actions"),
                Some(body),
            )
            .await;
        assert_eq!(a.json()["error"]["code"], code);
    }
}

#[tokio::test]
async fn signed_requests_that_do_not_verify_are_401() {
    let h = H::new().await;
    h.register(SERIAL, "2026-03-01").await;
    let body = serde_json::to_vec(
        &json!({"version": "5.1.0", "slot": "a", "state": "idle", "nonce": "01"}),
    )
    .unwrap();
    let path = "/api/v1/device/check-in";
    let reason = |a: Answer| {
        (
            a.status,
            a.json()["error"]["details"]["reason"]
                .as_str()
                .map(str::to_owned),
        )
    };
    let unauthorized = |r: &str| (StatusCode::UNAUTHORIZED, some(r));
    let other = SecretKey::from_seed(&[7; 32]);
    assert_eq!(
        reason(
            h.device(&other, SERIAL, "POST", path, &body, now0(), None)
                .await
        ),
        unauthorized("bad_signature")
    );
    assert_eq!(
        reason(
            h.device(
                &h.key,
                "NR-2000-000001-6",
                "POST",
                path,
                &body,
                now0(),
                None
            )
            .await
        ),
        unauthorized("unknown_serial")
    );
    let stale = now0()
        .checked_sub(jiff::SignedDuration::from_secs(600))
        .unwrap();
    assert_eq!(
        reason(
            h.device(&h.key, SERIAL, "POST", path, &body, stale, None)
                .await
        ),
        unauthorized("clock_skew")
    );
    // A body signed for check-in, replayed to the events path.
    let sig = sign_request(&h.key, "POST", path, now0(), &fresh_nonce(), &body);
    let replay = |p: &str, b: Vec<u8>| {
        Request::builder()
            .method("POST")
            .uri(p)
            .header(HEADER_SERIAL, SERIAL)
            .header(HEADER_TIME, sig.time.clone())
            .header(HEADER_NONCE, sig.nonce.clone())
            .header(HEADER_SIGNATURE, sig.signature.clone())
            .body(Body::from(b))
            .unwrap()
    };
    assert_eq!(
        reason(h.send(replay("/api/v1/device/events", body.clone())).await),
        unauthorized("bad_signature")
    );
    let mut tampered = body.clone();
    tampered[13] = b'9';
    assert_eq!(
        reason(h.send(replay(path, tampered)).await),
        unauthorized("bad_signature")
    );
    // The untouched request passes, once.
    assert_eq!(
        h.send(replay(path, body.clone())).await.status,
        StatusCode::OK
    );
    let again = h.send(replay(path, body)).await;
    assert_eq!(
        (again.status, again.json()["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("replayed"))
    );
    let none = Request::builder()
        .method("POST")
        .uri(path)
        .body(Body::empty())
        .unwrap();
    assert_eq!(reason(h.send(none).await), unauthorized("missing_header"));
    // An oversized body is refused in the API's JSON shape.
    let big = vec![b' '; 200 * 1024];
    let a = h
        .device(&h.key, SERIAL, "POST", path, &big, now0(), None)
        .await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("too_large"))
    );
}

#[tokio::test]
async fn image_download_supports_ranges_for_entitled_boxes_only() {
    let h = H::new().await;
    h.register(SERIAL, "2026-03-01").await;
    h.publish("5.3.0", json!({})).await;
    h.check_in("5.1.0").await;
    let n = IMAGE.len();
    let whole = h.blob_get(None).await;
    assert_eq!(
        (whole.status, whole.bytes.as_slice()),
        (StatusCode::OK, IMAGE)
    );
    // Resume from the middle.
    let a = h.blob_get(Some("bytes=20-")).await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.bytes, &IMAGE[20..]);
    assert_eq!(
        a.headers[header::CONTENT_RANGE],
        format!("bytes 20-{}/{n}", n - 1)
    );
    let a = h.blob_get(Some("bytes=5-9")).await;
    assert_eq!(
        (a.status, a.bytes.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &IMAGE[5..10])
    );
    // Suffix.
    let a = h.blob_get(Some("bytes=-6")).await;
    assert_eq!(a.bytes, &IMAGE[n - 6..]);
    assert_eq!(
        a.headers[header::CONTENT_RANGE],
        format!("bytes {}-{}/{n}", n - 6, n - 1)
    );
    // Bad ranges.
    for r in [
        format!("bytes={n}-"),
        "bytes=9-5".to_owned(),
        "bytes=0-1,4-5".to_owned(),
        "bytes=-0".to_owned(),
    ] {
        let a = h.blob_get(Some(&r)).await;
        assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE, "{r}");
        assert_eq!(a.headers[header::CONTENT_RANGE], format!("bytes */{n}"));
    }
    // The box loses its warranty: no more downloads.
    h.staff(
        "POST",
        &format!("/api/v1/devices/{SERIAL}/revoke"),
        Some(json!({"reason": "fraud"})),
    )
    .await;
    let a = h.blob_get(None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.json()["error"]["details"]["rule"],
        "entitlement_not_active"
    );
    // A digest no release uses.
    let other = np_common::Sha256Digest::of(b"other");
    let a = h
        .device(
            &h.key,
            SERIAL,
            "GET",
            &format!("/api/v1/device/blobs/{other}"),
            b"",
            now0(),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn release_creation_checks_its_inputs() {
    let h = H::new().await;
    let blob = h.put_blob(IMAGE).await;
    assert_eq!(blob["size"], IMAGE.len());
    let cases = [
        (
            json!({"version": "5.3"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_version",
        ),
        (
            json!({"models": ["NR-9000"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_model",
        ),
        (
            json!({"models": ["NR-1000", "NC-1000"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_model",
        ),
        (
            json!({"models": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_model",
        ),
        (
            json!({"image": {"name": "x.img", "sha256": np_common::Sha256Digest::of(b"missing")}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_blob",
        ),
        (
            json!({"released_at": "yesterday"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_date",
        ),
    ];
    for (extra, status, code) in cases {
        let a = h.release("5.3.0", extra.clone()).await;
        assert_eq!(
            (a.status, a.json()["error"]["code"].clone()),
            (status, json!(code)),
            "{extra}"
        );
    }
    h.publish("5.3.0", json!({})).await;
    let a = h.release("5.3.0", json!({})).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("exists"))
    );
    // N-Cloud models give the n-cloud product; released_at defaults to now.
    let a = h
        .release(
            "1.0.0",
            json!({"models": ["NC-1000"], "released_at": null, "min_from_version": "0.0.0"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.json());
    let v = a.json();
    assert_eq!(
        (v["product"].clone(), v["released_at"].clone()),
        (json!("n-cloud"), json!("2026-11-23T10:00:00Z"))
    );
    let m: Envelope = serde_json::from_value(v["manifest"].clone()).unwrap();
    let r: Release = docs::verify(&m, &h.state.keys().keyring).unwrap();
    assert_eq!(r.product, "n-cloud");
    let a = h
        .staff(
            "PATCH",
            "/api/v1/releases/9.9.9",
            Some(json!({"paused": true})),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn uploads_past_the_limit_are_413() {
    let h = H::with_blob_limit(Some(10)).await;
    let req = Request::builder()
        .method("PUT")
        .uri("/api/v1/blobs")
        .header(header::AUTHORIZATION, format!("Bearer {}", h.token))
        .body(Body::from(IMAGE))
        .unwrap();
    let a = h.send(req).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("too_large"))
    );
    let req = Request::builder()
        .method("PUT")
        .uri("/api/v1/blobs")
        .body(Body::from(IMAGE))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bundle_holds_keyring_manifest_entitlement_and_image_in_order() {
    let h = H::new().await;
    h.register(SERIAL, "2026-03-01").await;
    h.publish("5.3.0", json!({})).await;
    let a = h
        .staff(
            "GET",
            &format!("/api/v1/devices/{SERIAL}/bundle?version=5.3.0"),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
    assert_eq!(a.headers[header::CONTENT_LENGTH], a.bytes.len().to_string());
    let mut archive = tar::Archive::new(a.bytes.as_slice());
    let mut check = LayoutCheck::new();
    let mut image = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        check.next(&name, EntryType::File, e.size()).unwrap();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        if name == "entitlement.json" {
            let env = Envelope::parse(&body).unwrap();
            docs::Entitlement::verify_for(
                &env,
                &h.state.keys().keyring,
                &SERIAL.parse().unwrap(),
                None,
            )
            .unwrap();
        }
        if name == "image" {
            image = body;
        }
    }
    check.finish().unwrap();
    assert_eq!(image, IMAGE);
    // An expired box may not have it.
    h.set_now("2027-04-01T00:00:00Z");
    let a = h
        .staff(
            "GET",
            &format!("/api/v1/devices/{SERIAL}/bundle?version=5.3.0"),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.json()["error"]["details"]["rule"], "warranty_expired");
}

#[tokio::test]
async fn a_release_whose_image_left_the_blob_folder_is_a_server_fault_naming_it() {
    let h = H::new().await;
    h.register(SERIAL, "2026-03-01").await;
    h.publish("5.3.0", json!({})).await;
    let sha = np_common::Sha256Digest::of(IMAGE);
    std::fs::remove_file(h.state.blobs.path_of(&sha)).unwrap();
    let a = h
        .staff(
            "GET",
            &format!("/api/v1/devices/{SERIAL}/bundle?version=5.3.0"),
            None,
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{:?}",
        a.json()
    );
    let e = &a.json()["error"];
    assert_eq!(e["code"], "blob_missing");
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("release 5.3.0") && m.contains("upload the same image again"),
        "{m}"
    );
    assert_eq!(e["details"]["version"], "5.3.0");
    assert_eq!(e["details"]["sha256"], sha.to_hex());
    // The box's download of that image says the same.
    h.check_in("5.1.0").await;
    let a = h.blob_get(None).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.json()["error"]["code"], "blob_missing");
}

#[path = "rollout_api_tests.rs"]
mod rollout;
