//! The staff console at `/console/`: server-rendered HTML (askama templates compiled into
//! the binary, one stylesheet, no script) over the same domain code as the JSON API.
//!
//! One module per page (`fleet`, `devices`, `device`, `cases`, `case`, `releases`, `audit`,
//! `signin`);
//! `session` (cookies, sign-in rate limit, the signed-in user), `csrf` (the token every
//! state-changing form carries) and `errors` (an error as a page) each in their own module;
//! `charts` draws the inline SVG.
//!
//! Architecture Invariant: a console handler changes nothing itself; it calls the same
//! registry, action and release functions as the JSON routes, with the session's caller,
//! so the rules, the role checks and the audit log are the API's.

mod audit;
mod case;
mod cases;
#[cfg(test)]
mod cases_tests;
mod charts;
mod csrf;
mod device;
mod devices;
mod errors;
pub mod fleet;
mod releases;
mod session;
mod signin;
#[cfg(test)]
mod tests;

use crate::http::auth::{Caller, ReleaseCaller, StaffCaller};
use crate::state::AppState;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub use errors::ConsoleError;
pub use session::{ConsoleUser, Sessions};

/// The console's state: the server's state and the sessions.
#[derive(Clone)]
pub struct ConsoleState {
    /// Everything the JSON API has.
    pub app: AppState,
    /// The signed-in sessions (in memory: a restart signs everyone out).
    pub sessions: Arc<Sessions>,
}

/// The console's routes, all under `/console`.
pub fn router(state: AppState) -> Router<AppState> {
    let cs = ConsoleState {
        app: state,
        sessions: Arc::new(Sessions::default()),
    };
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(fleet::page))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/sign-in", get(signin::form).post(signin::submit))
        .route(
            "/console/sign-out",
            post(signin::sign_out).get(|| async { Redirect::to("/console/") }),
        )
        .route("/console/devices", get(devices::page))
        .route("/console/devices/{serial}", get(device::page))
        .route(
            "/console/devices/{serial}/extend",
            post(device::extend).get(device_form_opened),
        )
        .route(
            "/console/devices/{serial}/swap",
            post(device::swap).get(device_form_opened),
        )
        .route(
            "/console/devices/{serial}/revoke",
            post(device::revoke).get(device_form_opened),
        )
        .route(
            "/console/devices/{serial}/action",
            post(device::action).get(device_form_opened),
        )
        .route(
            "/console/devices/{serial}/entitlement",
            get(device::entitlement),
        )
        .route("/console/devices/{serial}/bundle", get(device::bundle))
        .route(
            "/console/devices/{serial}/bundle-request",
            post(device::bundle_request).get(device_form_opened),
        )
        .route(
            "/console/devices/{serial}/receipts",
            post(device::receipts).get(device_form_opened),
        )
        .route(
            "/console/devices/{serial}/cases",
            post(device::open_case).get(device_form_opened),
        )
        .route("/console/cases", get(cases::list))
        .route("/console/cases/{id}", get(case::page))
        .route(
            "/console/cases/{id}/note",
            post(case::note).get(case::form_opened),
        )
        .route(
            "/console/cases/{id}/status",
            post(case::status).get(case::form_opened),
        )
        .route(
            "/console/cases/{id}/rma",
            post(case::open_rma).get(case::form_opened),
        )
        .route(
            "/console/cases/{id}/shortage",
            post(case::shortage).get(case::form_opened),
        )
        .route(
            "/console/cases/{id}/end",
            post(case::end_rma).get(case::form_opened),
        )
        .route(
            "/console/cases/{id}/diagnostics",
            post(case::diagnostics).get(case::form_opened),
        )
        .route("/console/releases", get(releases::page))
        .route(
            "/console/releases/{version}",
            post(releases::change).get(|| async { Redirect::to("/console/releases") }),
        )
        .route("/console/audit", get(audit::page))
        .route("/console/{*rest}", axum::routing::any(no_such_page))
        .method_not_allowed_fallback(|| async { ConsoleError::MethodNotAllowed })
        .with_state(cs)
}

/// A page's query, parsed; a malformed one is a console page in words (400), not the
/// framework's plain text.
#[derive(Debug)]
pub struct ConsoleQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ConsoleQuery<T>
{
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ConsoleError> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(ConsoleQuery)
            .map_err(|e| ConsoleError::BadQuery(e.to_string()))
    }
}

/// A part of the page's path (a serial, a version); one that is not even text (bad
/// percent-encoding) is a console page in words (400), not the framework's plain text.
#[derive(Debug)]
pub struct ConsolePath<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ConsolePath<T>
{
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ConsoleError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ConsolePath(t))
            .map_err(|e| ConsoleError::BadQuery(e.body_text()))
    }
}

/// `GET` on a form's address (a bookmark, a typed link): changes nothing and goes to the
/// page of the box the form belongs to.
async fn device_form_opened(ConsolePath(serial): ConsolePath<String>) -> Response {
    match np_common::Serial::parse(serial.trim()) {
        Ok(s) => Redirect::to(&format!("/console/devices/{s}")).into_response(),
        Err(_) => Redirect::to("/console/devices").into_response(),
    }
}

async fn no_such_page() -> ConsoleError {
    ConsoleError::Api(crate::http::error::ApiError::not_found(
        "there is no such console page; start again from the fleet page",
    ))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../../templates/console/console.css"),
    )
        .into_response()
}

/// A notice shown at the top of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `ok` or `error` (the CSS class).
    pub kind: &'static str,
    /// The words.
    pub text: String,
}

impl Notice {
    /// A success notice.
    pub fn ok(text: impl Into<String>) -> Notice {
        Notice {
            kind: "ok",
            text: text.into(),
        }
    }

    /// An error notice.
    pub fn error(text: impl Into<String>) -> Notice {
        Notice {
            kind: "error",
            text: text.into(),
        }
    }
}

/// What every page's frame needs: who is signed in, what their role may do, the CSRF
/// token for the forms, the current section and a notice.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The page's title.
    pub title: String,
    /// The nav section that is current.
    pub section: &'static str,
    /// The token's name.
    pub user: String,
    /// The token's role.
    pub role: String,
    /// May manage devices and warranties (staff or admin).
    pub staff: bool,
    /// May change releases (release or admin).
    pub release: bool,
    /// The session's CSRF token, for every form that changes something.
    pub csrf: String,
    /// A notice for the top of the page.
    pub notice: Option<Notice>,
}

impl Frame {
    /// The frame of a page for `user`, taking the notice it left for itself.
    pub fn new(user: &ConsoleUser, title: impl Into<String>, section: &'static str) -> Frame {
        Frame {
            title: title.into(),
            section,
            user: user.caller.name.clone(),
            role: user.caller.role.to_string(),
            staff: may_manage_devices(&user.caller),
            release: may_change_releases(&user.caller),
            csrf: user.csrf.clone(),
            notice: user.notice.clone(),
        }
    }
}

/// Whether the caller's role may use the device controls (the API's own rule).
pub fn may_manage_devices(caller: &Caller) -> bool {
    StaffCaller::check(caller.clone()).is_ok()
}

/// Whether the caller's role may use the release controls (the API's own rule).
pub fn may_change_releases(caller: &Caller) -> bool {
    ReleaseCaller::check(caller.clone()).is_ok()
}

/// The headers of every console page: HTML, never cached, no framing, no script, forms
/// and requests only to this server.
pub const PAGE_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "same-origin"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
];

/// Renders a template as an HTML answer with `status`.
pub fn render(status: StatusCode, t: &impl askama::Template) -> Response {
    match t.render() {
        Ok(body) => (status, PAGE_HEADERS, body).into_response(),
        Err(e) => ConsoleError::Render(e.to_string()).into_response(),
    }
}

/// A date or time for people: `2026-11-29 14:03 UTC`.
pub fn when(t: &jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// Percent-encodes a query value.
pub fn q(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)])
        .map(|e| e.trim_start_matches("v=").to_owned())
        .unwrap_or_default()
}
