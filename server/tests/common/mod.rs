//! Shared harness of the in-process API tests: a fresh data folder, an `AppState` with a
//! clock the test sets, and `call()` which runs one request through `app(state)` with
//! tower's `oneshot` and returns the status and JSON body.
#![allow(dead_code, clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use http_body_util::BodyExt as _;
use jiff::Timestamp;
use np_common::keyring::Keyring;
use np_server::config::default_config;
use np_server::http::app;
use np_server::state::{AppState, Clock};
use np_server::tokens::{self, TokenRole};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tower::ServiceExt as _;

/// A valid serial of each catalog model (Luhn digit included).
pub const NR2000: &str = "NR-2000-123456-4";

/// A valid serial for `model` (e.g. "NR-3000") and six digits.
pub fn serial(model: &str, n: u32) -> String {
    let digits = format!("{}{n:06}", &model[3..]);
    format!(
        "{model}-{n:06}-{}",
        np_common::serial::luhn_check_digit(&digits)
    )
}

/// One in-process server.
pub struct Api {
    pub state: AppState,
    pub app: Router,
    pub admin: String,
    pub dir: tempfile::TempDir,
    now: Arc<Mutex<Timestamp>>,
}

impl Api {
    /// A new data folder, with the clock at 2026-11-23T10:00:00Z.
    pub fn new() -> Api {
        Self::with_config(|_| {})
    }

    /// Like [`Api::new`], with the config changed by `tweak` first.
    pub fn with_config(tweak: impl FnOnce(&mut np_server::state::Config)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let start: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let out = np_server::datadir::init(&data, start).unwrap();
        let now = Arc::new(Mutex::new(start));
        let n2 = now.clone();
        let clock: Clock = Arc::new(move || *n2.lock().unwrap());
        let mut config = default_config(&data);
        tweak(&mut config);
        let state = np_server::datadir::open(config, clock).unwrap();
        Api {
            app: app(state.clone()),
            state,
            admin: out.admin_token,
            dir,
            now,
        }
    }

    /// Sets the clock.
    pub fn set_now(&self, t: &str) {
        *self.now.lock().unwrap() = t.parse().unwrap();
    }

    /// Creates a token with `role`.
    pub fn token(&self, role: TokenRole, name: &str) -> String {
        tokens::create(&self.state.config.data_dir, role, name, Timestamp::now()).unwrap()
    }

    /// The server's keyring.
    pub fn keyring(&self) -> Keyring {
        self.state.keys().keyring.clone()
    }

    /// Sends a request; returns the status and the body as JSON (or as a JSON string
    /// when it is not JSON).
    pub async fn send(&self, req: Request<Body>) -> (u16, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    }

    /// A request with an optional bearer token and raw body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("content-type", "application/json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(b.body(Body::from(body.to_vec())).unwrap()).await
    }

    /// A JSON request with the admin token.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        let admin = self.admin.clone();
        self.raw(method, path, Some(&admin), &bytes).await
    }

    /// Registers a box purchased on `date` for ACME; asserts 201.
    pub async fn register(&self, serial: &str, date: &str) -> Value {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/devices",
                Some(serde_json::json!({"serial": serial, "purchase_date": date, "customer": "ACME"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v
    }

    /// A signed device request of box `serial` with `key`, at the API's clock, with a new
    /// nonce; returns the request (to send, or to send again as a replay).
    pub fn device_request(
        &self,
        key: &np_common::SecretKey,
        serial: &str,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> DeviceRequest {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nonce = format!("{:016x}{:016x}", std::process::id(), n);
        let sig = np_common::api::RequestSignature::sign(
            key,
            method,
            target,
            self.state.now(),
            &nonce,
            body,
        );
        DeviceRequest {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: sig
                .headers(serial)
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
        }
    }

    /// Sends a signed device request (again, if it was sent before).
    pub async fn send_device(&self, r: &DeviceRequest) -> (u16, Value) {
        let mut b = Request::builder()
            .method(Method::from_bytes(r.method.as_bytes()).unwrap())
            .uri(&r.target)
            .header("content-type", "application/json");
        for (k, v) in &r.headers {
            b = b.header(*k, v);
        }
        self.send(b.body(Body::from(r.body.clone())).unwrap()).await
    }

    /// Signs and sends a device request.
    pub async fn device(
        &self,
        key: &np_common::SecretKey,
        serial: &str,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let r = self.device_request(key, serial, method, target, body);
        self.send_device(&r).await
    }

    /// Registers a box with a device key; asserts 201.
    pub async fn register_box(&self, serial: &str, date: &str, key: &np_common::SecretKey) {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/devices",
                Some(serde_json::json!({"serial": serial, "purchase_date": date,
                    "customer": "ACME", "device_key": key.public_key().to_base64()})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }

    /// Asserts the server still answers /healthz.
    pub async fn assert_healthy(&self) {
        let req = Request::get("/healthz").body(Body::empty()).unwrap();
        assert_eq!(self.send(req).await.0, 200);
    }
}

/// A signed device request, kept to be sent (again).
pub struct DeviceRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// A check-in body.
pub fn check_in_body(version: &str) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"version": version, "slot": "a", "state": "idle", "nonce": "00ff"}),
    )
    .unwrap()
}

/// Asserts an error answer: status, code and a non-empty message.
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.len() > 10),
        "{}",
        got.1
    );
}
