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
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let start: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let out = np_server::datadir::init(&data, start).unwrap();
        let now = Arc::new(Mutex::new(start));
        let n2 = now.clone();
        let clock: Clock = Arc::new(move || *n2.lock().unwrap());
        let state = np_server::datadir::open(default_config(&data), clock).unwrap();
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
        self.state.keys.keyring.clone()
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

    /// Asserts the server still answers /healthz.
    pub async fn assert_healthy(&self) {
        let req = Request::get("/healthz").body(Body::empty()).unwrap();
        assert_eq!(self.send(req).await.0, 200);
    }
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
