//! The staff API for devices and warranties (docs/api.md): register, show, list, extend,
//! swap, revoke, and the signed entitlement of a box.

use crate::domain::device::DeviceRecord;
use crate::domain::registry::{self, ExtendRequest, RegisterRequest, RevokeRequest, SwapRequest};
use crate::domain::validate;
use crate::http::auth::StaffCaller;
use crate::http::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use np_common::docs::Status;
use np_common::{Envelope, Serial};
use serde::{Deserialize, Serialize};

/// The device routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/devices", post(register).get(list))
        .route("/api/v1/devices/{serial}", get(show))
        .route("/api/v1/devices/{serial}/extensions", post(extend))
        .route("/api/v1/devices/{serial}/swap", post(swap))
        .route("/api/v1/devices/{serial}/revoke", post(revoke))
        .route("/api/v1/devices/{serial}/entitlement", get(entitlement))
}

/// Parses the `{serial}` of a path (`bad_serial`).
pub fn path_serial(s: &str) -> Result<Serial, ApiError> {
    validate::serial(s)
}

#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", security(("staff" = [])),
    request_body = RegisterRequest, responses((status = 201, description = "The new device", body = DeviceRecord)))]
async fn register(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<DeviceRecord>), ApiError> {
    let d = registry::register(&state, &caller.name, req).await?;
    tracing::info!(serial = %d.serial, actor = %caller.name, "device registered");
    Ok((StatusCode::CREATED, Json(d)))
}

#[utoipa::path(get, path = "/api/v1/devices/{serial}", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), responses((status = 200, description = "The device", body = DeviceRecord)))]
async fn show(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<DeviceRecord>, ApiError> {
    Ok(Json(registry::get(&state, &path_serial(&serial)?)?))
}

#[utoipa::path(get, path = "/api/v1/devices/{serial}/entitlement", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), responses((status = 200, description = "The signed entitlement, for an offline box", body = np_common::Envelope)))]
async fn entitlement(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<Envelope>, ApiError> {
    Ok(Json(
        registry::get(&state, &path_serial(&serial)?)?.entitlement,
    ))
}

/// The answer of an extension: the new entitlement envelope (its fields at the top
/// level, so the answer verifies as a DSSE envelope) and the updated device.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExtensionAnswer {
    /// The new signed entitlement.
    #[serde(flatten)]
    pub entitlement: Envelope,
    /// The device after the change.
    pub device: DeviceRecord,
}

#[utoipa::path(post, path = "/api/v1/devices/{serial}/extensions", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), request_body = ExtendRequest,
    responses((status = 200, description = "The new entitlement and the device", body = ExtensionAnswer)))]
async fn extend(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(req): ApiJson<ExtendRequest>,
) -> Result<Json<ExtensionAnswer>, ApiError> {
    let serial = path_serial(&serial)?;
    let d = registry::extend(&state, &caller.name, &serial, req).await?;
    tracing::info!(%serial, actor = %caller.name, coverage_end = %d.coverage_end, "warranty extended");
    Ok(Json(ExtensionAnswer {
        entitlement: d.entitlement.clone(),
        device: d,
    }))
}

/// The answer of a swap: both boxes after it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SwapAnswer {
    /// The failed box, now `replaced`.
    pub old: DeviceRecord,
    /// The replacement, holding every term.
    pub new: DeviceRecord,
}

#[utoipa::path(post, path = "/api/v1/devices/{serial}/swap", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), request_body = SwapRequest,
    responses((status = 200, description = "Both boxes after the swap", body = SwapAnswer)))]
async fn swap(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(req): ApiJson<SwapRequest>,
) -> Result<Json<SwapAnswer>, ApiError> {
    let serial = path_serial(&serial)?;
    let (old, new) = registry::swap(&state, &caller.name, &serial, req).await?;
    tracing::info!(old = %old.serial, new = %new.serial, actor = %caller.name, "device swapped");
    Ok(Json(SwapAnswer { old, new }))
}

#[utoipa::path(post, path = "/api/v1/devices/{serial}/revoke", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), request_body = RevokeRequest,
    responses((status = 200, description = "The revoked device", body = DeviceRecord)))]
async fn revoke(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(req): ApiJson<RevokeRequest>,
) -> Result<Json<DeviceRecord>, ApiError> {
    let serial = path_serial(&serial)?;
    let d = registry::revoke(&state, &caller.name, &serial, req).await?;
    tracing::info!(%serial, actor = %caller.name, "entitlement revoked");
    Ok(Json(d))
}

/// Query of `GET /api/v1/devices`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    model: Option<String>,
    customer: Option<String>,
    expiring_before: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// A page of devices.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DevicePageBody {
    /// Devices ordered by serial.
    pub devices: Vec<DeviceRecord>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("staff" = [])), params(ListQuery),
    responses((status = 200, description = "A page of devices", body = DevicePageBody)))]
async fn list(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<DevicePageBody>, ApiError> {
    let limit = page_size(&state, q.limit)?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some("active") => Some(Status::Active),
        Some("revoked") => Some(Status::Revoked),
        Some("replaced") => Some(Status::Replaced),
        Some(other) => {
            return Err(ApiError::unprocessable(
                "bad_status",
                format!("status {other:?} is not one of active, revoked, replaced"),
            ))
        }
        None => None,
    };
    let model = q
        .model
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(validate::model)
        .transpose()?;
    let customer = q
        .customer
        .filter(|s| !s.is_empty())
        .map(|c| c.to_lowercase());
    let before = q
        .expiring_before
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| validate::date("expiring_before", s))
        .transpose()?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, "d"))
        .transpose()?;
    let page = state.store.list_devices(after.as_deref(), limit, |d| {
        status.is_none_or(|s| d.status == s)
            && model.as_ref().is_none_or(|m| &d.model == m)
            && customer
                .as_ref()
                .is_none_or(|c| d.customer.to_lowercase().contains(c))
            && before.is_none_or(|b| d.coverage_end < b)
    })?;
    Ok(Json(DevicePageBody {
        devices: page.devices,
        next_cursor: page.next_after.map(|s| encode_cursor("d", &s)),
    }))
}

/// The page size a client asked for, or the default (`bad_limit` when out of range).
pub fn page_size(state: &AppState, asked: Option<usize>) -> Result<usize, ApiError> {
    let max = state.config.limits.max_page;
    match asked {
        None => Ok(state.config.limits.default_page.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::unprocessable(
            "bad_limit",
            format!("limit {n} is out of range: ask for 1 to {max} entries"),
        )),
    }
}

/// An opaque cursor for continuing a list of `kind` after `value`.
pub fn encode_cursor(kind: &str, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{value}"))
}

/// The value of a cursor of `kind` (`bad_cursor` when it is not one of ours).
pub fn decode_cursor(cursor: &str, kind: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(&format!("{kind}:")).map(str::to_owned))
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_cursor",
                "the cursor is not one this server gave out; start the list again without it",
            )
        })
}
