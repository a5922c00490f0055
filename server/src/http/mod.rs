//! The HTTP room: `app(state)` merges every area's router and adds the shared layers (body
//! limit, metrics, tracing, panic catching, JSON 404/405); `run` serves it on a listener until
//! `shutdown` resolves, finishing requests in flight. Beside the handlers live what only HTTP
//! needs: the staff web console (`console`), staff tokens (`auth`), signed device requests
//! (`device_auth`), the one JSON error (`error`), `Range` (`range`), Prometheus `metrics`,
//! HTTPS (`tls`) and the rollout guard that halts a failing release (`guard`).

pub mod actions;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod bundle;
pub mod cases;
pub mod conn;
pub mod console;
pub mod device_api;
pub mod device_auth;
pub mod devices;
pub mod error;
pub mod guard;
pub mod keyring;
pub mod metrics;
pub mod offline;
pub mod openapi;
pub mod range;
pub mod releases;
pub mod tls;

use crate::http::error::ApiError;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::future::Future;

pub use crate::http::tls::run_tls;

#[cfg(test)]
#[path = "ux_api_tests.rs"]
mod ux_api_tests;

/// The whole application.
pub fn app(state: AppState) -> Router {
    let limit = state.config.limits.json_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .merge(devices::router())
        .merge(audit::router())
        .merge(releases::router())
        .merge(blobs::router())
        .merge(device_api::router(&state.config.limits))
        .merge(actions::router())
        .merge(cases::router())
        .merge(bundle::router())
        .merge(offline::router())
        .merge(keyring::router())
        .merge(console::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            keyring_gate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.config.conn.request_timeout,
            request_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::metrics::track,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    // Method and path only: headers (tokens) are never logged.
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                )
                // No ERROR line per 5xx: a real 500 is logged once where it happens
                // (`ApiError::internal`), and expected 503s (store_unavailable,
                // keyring_stale, blobs_unavailable) once per change of state, at warn.
                .on_failure(()),
        )
        .with_state(state)
}

/// Bounds the time from a request's head to its answer's head (`request_timeout`), so a
/// client that trickles its body cannot hold a connection, and a connection slot, for
/// long: 408 `request_timeout` past it. The image upload (`PUT /api/v1/blobs`), which may
/// rightly take long and is refused before its body is read unless it carries a release
/// token, and the keyring install (`POST /api/v1/keyring`, admin), which re-signs every
/// device before it answers, are the routes without it.
async fn request_deadline(
    State(limit): State<std::time::Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let long = (req.method() == axum::http::Method::PUT && req.uri().path() == "/api/v1/blobs")
        || (req.method() == axum::http::Method::POST && req.uri().path() == "/api/v1/keyring");
    if long {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(answer) => answer,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request did not arrive whole within {} s; send it again",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Serves `app(state)` on `listener` (plain HTTP/1.1) until `shutdown` resolves, with the
/// connection limits of the config (`conn`); requests in flight are finished first.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    conn::serve(listener, state, None, shutdown).await
}

/// Whether a request may sign, or serve the keyring: every change (any method but GET
/// and HEAD), the keyring and offline bundles.
fn may_sign(req: &axum::extract::Request) -> bool {
    let path = req.uri().path();
    !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) || path == "/api/v1/keyring"
        || path.ends_with("/bundle")
}

/// Answers 503 `keyring_stale` to a request that may sign while the store's keyring is
/// newer than the one this replica holds (`crate::domain::replica_keys`). A store that
/// cannot be asked lets the request through: it fails on its own with `store_unavailable`.
async fn keyring_gate(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if may_sign(&req) {
        use crate::domain::replica_keys::{check, ReplicaKeysError, RECHECK};
        if let Err(ReplicaKeysError::Stale(_)) = check(&state, RECHECK).await {
            // The sentence for the operator (paths, what to copy) is in the server's log.
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "keyring_stale",
                crate::domain::replica_keys::STALE_SHORT,
            )
            .into_response();
        }
    }
    next.run(req).await
}

#[utoipa::path(get, path = "/healthz", tag = "server",
    responses(
        (status = 200, description = "Ready", content_type = "text/plain", body = String),
        (status = 503, description = "Not ready, and why: the store (PostgreSQL) cannot be reached, the keyring is stale (`keyring_stale`: another replica installed a newer one), or the blob folder is missing or not writable", content_type = "text/plain", body = String)))]
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    use crate::domain::replica_keys::{check, ReplicaKeysError, RECHECK};
    let unavailable = |body: String| (StatusCode::SERVICE_UNAVAILABLE, body);
    let (status, body) = match state.store.ping().await {
        Err(e) => {
            tracing::warn!(error = %e, "health check: the store cannot be reached");
            unavailable("store unavailable\n".to_owned())
        }
        Ok(()) => match check(&state, RECHECK).await {
            Err(ReplicaKeysError::Stale(_)) => unavailable(format!(
                "keyring_stale: {}\n",
                crate::domain::replica_keys::STALE_SHORT
            )),
            _ => match state.blobs.check_writable().await {
                Err(m) => {
                    tracing::warn!("health check: {m}");
                    unavailable(format!("blobs_unavailable: {m}\n"))
                }
                Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
            },
        },
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
}

#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let counts = state.store.device_counts().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&counts),
    ))
}

async fn not_found() -> ApiError {
    ApiError::not_found("there is no such API route; the routes are listed by GET /api/v1/openapi.json and in docs/api.md")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that HTTP method",
    )
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    ApiError::internal("a request handler panicked").into_response()
}
