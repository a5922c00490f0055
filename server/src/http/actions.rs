//! Remote actions (docs/api.md): `POST /api/v1/devices/{serial}/actions` with
//! `{"action": "upgrade", "version"}` or `{"action": "rollback"}`. The action is signed with
//! the online key (role `entitlement`), kept on the device as `pending_action`, handed to the
//! box at its next check-in, and cleared when the box reports the outcome. An upgrade to a
//! release the box may not install is refused at once (403 with the rule). A second action
//! while one is pending is refused (409 `action_pending`) unless the request says
//! `"replace": true`; `DELETE /api/v1/devices/{serial}/actions` cancels the pending one.
//! Both are audited (`action`, `action_cancel`).

use crate::domain::device::{DeviceView, PendingAction};
use crate::domain::offers;
use crate::domain::registry;
use crate::domain::words::wire_name;
use crate::http::auth::StaffCaller;
use crate::http::blobs::not_entitled;
use crate::http::device_api::box_view_parts;
use crate::http::devices::{path_serial, view};
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
    Router::new().route(
        "/api/v1/devices/{serial}/actions",
        post(create).delete(cancel),
    )
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
    /// Replace an action that is still pending.
    #[serde(default)]
    pub replace: bool,
}

/// The pending action in words, for errors and logs.
pub fn describe(p: &PendingAction) -> String {
    match &p.version {
        Some(v) => format!("{} to {v}", wire_name(&p.action)),
        None => wire_name(&p.action),
    }
}

/// Also called by the staff console with a session's caller.
#[utoipa::path(post, path = "/api/v1/devices/{serial}/actions", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), request_body = ActionRequest,
    responses((status = 201, description = "The device with its pending action", body = DeviceView)))]
pub async fn create(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(req): ApiJson<ActionRequest>,
) -> Result<(StatusCode, Json<DeviceView>), ApiError> {
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
    let device = registry::get(&state, &serial).await?;
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
        // Not from here: staff ask for diagnostics on a support case.
        (ActionKind::Diagnostics, _) => {
            return Err(ApiError::unprocessable(
                "bad_action",
                "diagnostics are requested on a support case, not as a device action",
            ))
        }
        (ActionKind::Upgrade, Some(v)) => {
            let v = parse_version("version", v)?;
            let releases = state.store.releases().await?;
            let Some(r) = releases.iter().find(|r| r.release.version == v) else {
                return Err(ApiError::unprocessable(
                    "unknown_version",
                    format!("there is no release {v} to upgrade to"),
                ));
            };
            let parts = box_view_parts(&state, &device, &releases).await?;
            let view = parts.view(&device, Some(&v), now);
            offers::may_install_for(&view, &r.entry(now), parts.running_known)
                .map_err(|h| not_entitled(&h))?;
            Some(v)
        }
    };
    if let Some(p) = device.pending_action.as_ref().filter(|_| !req.replace) {
        return Err(pending_error(&serial, p));
    }
    // An action must be newer than the one before (also a pending diagnostics request),
    // or the box would ignore it.
    let previous = [&device.pending_action, &device.pending_diagnostics]
        .into_iter()
        .flatten()
        .map(|p| p.issued_at)
        .max();
    let delivered = state.store.device_report(&serial).await?.delivered_action;
    let floor = previous.max(delivered);
    // Times are whole seconds: the action is issued at the next one, strictly after
    // anything the box reported within this second (its report would otherwise look like
    // the action's outcome).
    let issued_at = floor
        .filter(|f| *f >= now)
        .unwrap_or(now)
        .checked_add(jiff::SignedDuration::from_secs(1))
        .map_err(ApiError::internal)?;
    let action = Action {
        serial: serial.clone(),
        action: kind,
        version: version.clone(),
        issued_at,
        case: None,
    };
    let pending = PendingAction {
        action: kind,
        version,
        issued_at,
        envelope: docs::sign(&action, &state.keys().entitlement),
        case: None,
    };
    let change = Change {
        actor: Some(&caller.name),
        action: "action",
        at: now,
    };
    let replace = req.replace;
    let written = state
        .store
        .mutate_devices(std::slice::from_ref(&serial), &change, |recs| {
            let d = recs[0].as_mut().ok_or_else(|| registry::unknown(&serial))?;
            if let Some(p) = d.pending_action.as_ref().filter(|_| !replace) {
                return Err(pending_error(&serial, p));
            }
            d.pending_action = Some(pending.clone());
            d.updated_at = now;
            Ok(())
        })
        .await
        .map_err(|e| e.into_inner())?;
    let device = written
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| registry::unknown(&serial))?;
    tracing::info!(serial = %serial, action = %describe(&pending), actor = %caller.name, "action queued");
    Ok((StatusCode::CREATED, Json(view(&state, device))))
}

/// 409 `action_pending`: what is pending and since when, in `details.pending`.
fn pending_error(serial: &np_common::Serial, p: &PendingAction) -> ApiError {
    ApiError::conflict(
        "action_pending",
        format!(
            "{serial} already has a pending {} (asked at {}); replace it or cancel it first",
            describe(p),
            p.issued_at
        ),
    )
    .with_details(serde_json::json!({
        "serial": serial,
        "pending": {"action": p.action, "version": p.version, "issued_at": p.issued_at},
    }))
}

/// `DELETE /api/v1/devices/{serial}/actions`: cancels the pending action; with none but
/// a case's diagnostics request pending, cancels that (as `DELETE
/// /api/v1/cases/{id}/diagnostics`). 404 `no_pending_action` when there is neither. A box that already received it may still act
/// on it; the server then records its report as for any action.
#[utoipa::path(delete, path = "/api/v1/devices/{serial}/actions", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), responses((status = 200, description = "The device without its pending action (or, with none, without its pending diagnostics request, which its case then no longer waits for)", body = DeviceView)))]
async fn cancel(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let serial = path_serial(&serial)?;
    // No update action pending but a diagnostics request of a case: cancel that, on the
    // case and the box together.
    if let Some(d) = state.store.device(&serial).await? {
        let diagnostics_case = d
            .pending_diagnostics
            .as_ref()
            .and_then(|p| p.case.as_deref())
            .and_then(crate::domain::case::CaseId::parse);
        if let (None, Some(id)) = (&d.pending_action, diagnostics_case) {
            let done = crate::domain::support::cancel_diagnostics(&state, &caller.name, id).await?;
            let device = done
                .devices
                .into_iter()
                .next()
                .flatten()
                .ok_or_else(|| registry::unknown(&serial))?;
            tracing::info!(serial = %serial, case = %id, actor = %caller.name, "diagnostics request cancelled");
            return Ok(Json(view(&state, device)));
        }
    }
    let now = state.now();
    let change = Change {
        actor: Some(&caller.name),
        action: "action_cancel",
        at: now,
    };
    let written = state
        .store
        .mutate_devices(std::slice::from_ref(&serial), &change, |recs| {
            let d = recs[0].as_mut().ok_or_else(|| registry::unknown(&serial))?;
            if d.pending_action.take().is_none() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_pending_action",
                    format!("{serial} has no pending action to cancel"),
                ));
            }
            d.updated_at = now;
            Ok(())
        })
        .await
        .map_err(|e| e.into_inner())?;
    let device = written
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| registry::unknown(&serial))?;
    tracing::info!(serial = %serial, actor = %caller.name, "action cancelled");
    Ok(Json(view(&state, device)))
}
