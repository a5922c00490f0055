//! Remote actions (docs/api.md): `POST /api/v1/devices/{serial}/actions` with
//! `{"action": "upgrade", "version"}` or `{"action": "rollback"}`. The action is signed with
//! the online key (role `entitlement`), kept on the device as `pending_action`, handed to the
//! box at its next check-in, and cleared when the box reports the outcome. An upgrade to a
//! release the box may not install is refused at once (403 with the rule).

use crate::domain::device::{DeviceRecord, PendingAction};
use crate::domain::offers;
use crate::http::auth::StaffCaller;
use crate::http::blobs::not_entitled;
use crate::http::device_api::box_view_parts;
use crate::http::devices::path_serial;
use crate::http::error::{ApiError, ApiJson, ApiPath};
use crate::http::releases::parse_version;
use crate::state::AppState;
use crate::store::Change;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use np_common::docs::{self, Action, ActionKind};
use serde::Deserialize;

/// The action routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/devices/{serial}/actions", post(create))
}

/// `POST /api/v1/devices/{serial}/actions` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// `upgrade` or `rollback`.
    pub action: String,
    /// The version of an upgrade.
    #[serde(default)]
    pub version: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/devices/{serial}/actions", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), request_body = ActionRequest,
    responses((status = 201, description = "The device with its pending action", body = DeviceRecord)))]
async fn create(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(req): ApiJson<ActionRequest>,
) -> Result<(StatusCode, Json<DeviceRecord>), ApiError> {
    let serial = path_serial(&serial)?;
    let kind = match req.action.as_str() {
        "upgrade" => ActionKind::Upgrade,
        "rollback" => ActionKind::Rollback,
        other => {
            return Err(ApiError::unprocessable(
                "bad_action",
                format!("action {other:?} is not \"upgrade\" or \"rollback\""),
            ))
        }
    };
    let device = state
        .store
        .device(&serial)?
        .ok_or_else(|| ApiError::not_found(format!("box {serial} is not registered")))?;
    let now = state.now();
    let version = match (kind, &req.version) {
        (ActionKind::Upgrade, None) => {
            return Err(ApiError::unprocessable(
                "bad_action",
                "an upgrade names the version to install: {\"action\": \"upgrade\", \"version\": \"5.3.0\"}",
            ))
        }
        (ActionKind::Rollback, Some(_)) => {
            return Err(ApiError::unprocessable(
                "bad_action",
                "a rollback goes back to the image the box kept; it takes no version",
            ))
        }
        (ActionKind::Rollback, None) => None,
        (ActionKind::Upgrade, Some(v)) => {
            let v = parse_version("version", v)?;
            let releases = state.store.releases()?;
            let Some(r) = releases.iter().find(|r| r.release.version == v) else {
                return Err(ApiError::unprocessable(
                    "unknown_version",
                    format!("there is no release {v} to upgrade to"),
                ));
            };
            let parts = box_view_parts(&state, &device, &releases)?;
            let view = parts.view(&device, Some(&v), now);
            offers::may_install_for(&view, &r.entry(), parts.running_known)
                .map_err(|h| not_entitled(&h))?;
            Some(v)
        }
    };
    // An action must be newer than the one before, or the box would ignore it.
    let previous = device.pending_action.as_ref().map(|p| p.issued_at);
    let delivered = state.store.device_report(&serial)?.delivered_action;
    let floor = previous.max(delivered);
    let issued_at = match floor {
        Some(f) if f >= now => f
            .checked_add(jiff::SignedDuration::from_millis(1))
            .map_err(ApiError::internal)?,
        _ => now,
    };
    let action = Action {
        serial: serial.clone(),
        action: kind,
        version: version.clone(),
        issued_at,
    };
    let pending = PendingAction {
        action: kind,
        version,
        issued_at,
        envelope: docs::sign(&action, &state.keys.online),
    };
    let change = Change {
        actor: Some(&caller.name),
        action: "action",
        at: now,
    };
    let written = state
        .store
        .mutate_devices(std::slice::from_ref(&serial), &change, |recs| {
            match recs.first_mut() {
                Some(Some(d)) => {
                    d.pending_action = Some(pending.clone());
                    d.updated_at = now;
                    Ok(())
                }
                _ => Err(ApiError::not_found(format!(
                    "box {serial} is not registered"
                ))),
            }
        })
        .await
        .map_err(|e| e.into_inner())?;
    let device = written
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| ApiError::not_found(format!("box {serial} is not registered")))?;
    tracing::info!(serial = %serial, action = ?kind, actor = %caller.name, "action queued");
    Ok((StatusCode::CREATED, Json(device)))
}
