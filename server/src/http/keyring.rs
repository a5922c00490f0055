//! The keyring over HTTP: `GET /api/v1/keyring` (no credentials) answers the installed
//! root-signed keyring; `POST /api/v1/keyring/drafts` (admin) makes the next keyring for
//! offline signing; `POST /api/v1/keyring` (admin) installs a signed one
//! (`crate::domain::rotation`).

use crate::domain::rotation::{self, DraftSpec, Installed, RotationError};
use crate::http::auth::AdminCaller;
use crate::http::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use np_common::docs::Role;
use np_common::keyring::{Keyring, KeyringError};
use np_common::Envelope;
use serde::{Deserialize, Serialize};

/// The keyring routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/keyring", get(current).post(install))
        .route("/api/v1/keyring/drafts", post(draft))
}

impl From<RotationError> for ApiError {
    fn from(e: RotationError) -> Self {
        let code = match &e {
            RotationError::BadExpires(_) | RotationError::ExpiresPast(_) => "bad_date",
            RotationError::BadRootKey(_) => "bad_key",
            RotationError::BadThreshold { .. } => "bad_threshold",
            RotationError::Refused(k) => match k {
                KeyringError::Envelope(_)
                | KeyringError::RootThreshold { .. }
                | KeyringError::NewRootThreshold { .. } => "bad_root_signature",
                KeyringError::Expired { .. } => "keyring_expired",
                KeyringError::VersionRollback { .. } | KeyringError::SameVersionDiffers { .. } => {
                    "keyring_not_newer"
                }
                KeyringError::Payload(_)
                | KeyringError::BadThreshold { .. }
                | KeyringError::KeyIdMismatch { .. } => "bad_keyring",
            },
            RotationError::NotNewer { .. } => "keyring_not_newer",
            RotationError::UnknownKey(_) => "unknown_key",
            RotationError::InstalledElsewhere { .. } => "keyring_not_newer",
            RotationError::MissingRole(_) => "missing_role",
            RotationError::Data(_) | RotationError::Store(_) => return ApiError::internal(e),
        };
        let status = if code == "keyring_not_newer" {
            StatusCode::CONFLICT
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// `GET /api/v1/keyring`: the root-signed keyring envelope; no credentials needed.
#[utoipa::path(get, path = "/api/v1/keyring", tag = "server",
    responses((status = 200, description = "The root-signed keyring", body = Envelope)))]
pub async fn current(State(state): State<AppState>) -> Json<Envelope> {
    Json(state.keys().keyring_envelope.clone())
}

/// Body of `POST /api/v1/keyring/drafts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftRequest {
    #[serde(default)]
    rotate: Vec<Role>,
    expires: Option<String>,
    root_keys: Option<Vec<String>>,
    root_threshold: Option<u32>,
}

/// Answer of `POST /api/v1/keyring/drafts`: the payload to sign offline.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DraftBody {
    /// The next keyring's payload, to be signed offline by the root keys.
    #[schema(value_type = Object)]
    payload: Keyring,
}

#[utoipa::path(post, path = "/api/v1/keyring/drafts", tag = "keys", security(("staff" = [])),
    request_body = DraftRequest,
    responses((status = 201, description = "The next keyring, to be signed offline", body = DraftBody)))]
pub async fn draft(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiJson(req): ApiJson<DraftRequest>,
) -> Result<(StatusCode, Json<DraftBody>), ApiError> {
    let spec = DraftSpec {
        rotate: req.rotate,
        expires: req.expires,
        root_keys: req.root_keys,
        root_threshold: req.root_threshold,
    };
    let now = state.now();
    let payload = rotation::draft(&state, &spec, now).await?;
    state
        .store
        .append_audit(
            now,
            &caller.name,
            "keyring_draft",
            None,
            None,
            Some(serde_json::json!({"rotate": spec.rotate, "keyring": payload})),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(DraftBody { payload })))
}

#[utoipa::path(post, path = "/api/v1/keyring", tag = "keys", security(("staff" = [])),
    request_body = Envelope,
    responses((status = 200, description = "What the install changed", body = Installed)))]
pub async fn install(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiJson(envelope): ApiJson<Envelope>,
) -> Result<Json<Installed>, ApiError> {
    let now = state.now();
    // Its own task: an install re-signs the whole fleet and must finish (and be audited)
    // even when the client gives up waiting or its connection drops.
    let task =
        tokio::spawn(async move { rotation::install(&state, &envelope, &caller.name, now).await });
    match task.await {
        Ok(done) => Ok(Json(done?)),
        Err(e) => Err(ApiError::internal(format!(
            "the keyring install task failed: {e}"
        ))),
    }
}
