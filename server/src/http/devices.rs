//! The staff API for devices and warranties (docs/api.md): register, import in bulk, show,
//! list, correct (`PATCH`), extend, swap, revoke, and the signed entitlement of a box.
//! Every device in an answer is a [`DeviceView`]: the record and its `coverage` today.

use crate::domain::device::{parse_coverage, Coverage, DeviceView};
use crate::domain::import::{self, ImportRequest};
use crate::domain::registry::{
    self, EditRequest, ExtendRequest, RegisterRequest, RevokeRequest, SwapRequest,
};
use crate::domain::validate;
use crate::http::auth::StaffCaller;
use crate::http::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use np_common::docs::Status;
use np_common::{Envelope, Serial, Version};
use serde::{Deserialize, Serialize};

/// The device routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/devices", post(register).get(list))
        .route(
            "/api/v1/devices/import",
            post(import_devices).layer(DefaultBodyLimit::max(IMPORT_BODY_BYTES)),
        )
        .route("/api/v1/devices/{serial}", get(show).patch(edit))
        .route("/api/v1/devices/{serial}/extensions", post(extend))
        .route("/api/v1/devices/{serial}/swap", post(swap))
        .route("/api/v1/devices/{serial}/revoke", post(revoke))
        .route("/api/v1/devices/{serial}/entitlement", get(entitlement))
}

/// The largest body of a bulk import (a batch of up to `import::MAX_ROWS` boxes).
const IMPORT_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The API's view of a device today.
pub fn view(state: &AppState, d: crate::domain::device::DeviceRecord) -> DeviceView {
    DeviceView::of(d, state.today())
}

/// Parses the `{serial}` of a path (`bad_serial`).
pub fn path_serial(s: &str) -> Result<Serial, ApiError> {
    validate::serial(s)
}

#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", security(("staff" = [])),
    request_body = RegisterRequest, responses((status = 201, description = "The new device", body = DeviceView)))]
async fn register(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<DeviceView>), ApiError> {
    let d = registry::register(&state, &caller.name, req).await?;
    tracing::info!(serial = %d.serial, actor = %caller.name, "device registered");
    Ok((StatusCode::CREATED, Json(view(&state, d))))
}

/// The answer of a bulk import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportAnswer {
    /// How many boxes were registered.
    pub imported: usize,
    /// Their serials, in the order given.
    pub serials: Vec<Serial>,
    /// How many boxes were skipped as registered already with the same facts
    /// (`skip_existing`).
    pub skipped: usize,
    /// Their serials.
    pub skipped_serials: Vec<Serial>,
}

#[utoipa::path(post, path = "/api/v1/devices/import", tag = "devices", security(("staff" = [])),
    request_body = ImportRequest, responses((status = 201, description = "All boxes registered in one transaction", body = ImportAnswer)))]
async fn import_devices(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiJson(req): ApiJson<ImportRequest>,
) -> Result<(StatusCode, Json<ImportAnswer>), ApiError> {
    let done = import::import(&state, &caller.name, req).await?;
    tracing::info!(count = done.registered.len(), skipped = done.skipped.len(), actor = %caller.name, "devices imported");
    Ok((
        StatusCode::CREATED,
        Json(ImportAnswer {
            imported: done.registered.len(),
            serials: done.registered.into_iter().map(|d| d.serial).collect(),
            skipped: done.skipped.len(),
            skipped_serials: done.skipped,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/devices/{serial}", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), responses((status = 200, description = "The device", body = DeviceView)))]
async fn show(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let d = registry::get(&state, &path_serial(&serial)?).await?;
    Ok(Json(view(&state, d)))
}

#[utoipa::path(patch, path = "/api/v1/devices/{serial}", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), request_body = EditRequest,
    responses((status = 200, description = "The corrected device", body = DeviceView)))]
async fn edit(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(req): ApiJson<EditRequest>,
) -> Result<Json<DeviceView>, ApiError> {
    let serial = path_serial(&serial)?;
    let d = registry::edit(&state, &caller.name, &serial, req).await?;
    tracing::info!(%serial, actor = %caller.name, "device corrected");
    Ok(Json(view(&state, d)))
}

#[utoipa::path(get, path = "/api/v1/devices/{serial}/entitlement", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), responses((status = 200, description = "The signed entitlement, for an offline box", body = np_common::Envelope)))]
async fn entitlement(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<Envelope>, ApiError> {
    let device = registry::get(&state, &path_serial(&serial)?).await?;
    Ok(Json(
        crate::domain::rotation::fresh_device(&state, device)
            .await?
            .entitlement,
    ))
}

/// The answer of an extension: the new entitlement envelope (its fields at the top
/// level, so the answer verifies as a DSSE envelope) and the updated device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExtensionAnswer {
    /// The new signed entitlement.
    #[serde(flatten)]
    pub entitlement: Envelope,
    /// The device after the change.
    pub device: DeviceView,
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
        device: view(&state, d),
    }))
}

/// The answer of a swap: both boxes after it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SwapAnswer {
    /// The failed box, now `replaced`.
    pub old: DeviceView,
    /// The replacement, holding every term.
    pub new: DeviceView,
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
    Ok(Json(SwapAnswer {
        old: view(&state, old),
        new: view(&state, new),
    }))
}

#[utoipa::path(post, path = "/api/v1/devices/{serial}/revoke", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), request_body = RevokeRequest,
    responses((status = 200, description = "The revoked device", body = DeviceView)))]
async fn revoke(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(req): ApiJson<RevokeRequest>,
) -> Result<Json<DeviceView>, ApiError> {
    let serial = path_serial(&serial)?;
    let d = registry::revoke(&state, &caller.name, &serial, req).await?;
    tracing::info!(%serial, actor = %caller.name, "entitlement revoked");
    Ok(Json(view(&state, d)))
}

/// Query of `GET /api/v1/devices`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `active`, `revoked`, `replaced`, or a coverage word (`covered`, `expired`,
    /// `not_yet_started`).
    status: Option<String>,
    /// `covered`, `expired` or `not_yet_started`.
    coverage: Option<String>,
    model: Option<String>,
    customer: Option<String>,
    expiring_before: Option<String>,
    /// Boxes whose last report names this running version.
    version: Option<String>,
    /// Boxes whose last check-in is before this date (or that never checked in).
    checked_in_before: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// A page of devices.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DevicePageBody {
    /// Devices ordered by serial.
    pub devices: Vec<DeviceView>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

fn coverage_word(field: &str, s: &str) -> Result<Coverage, ApiError> {
    parse_coverage(s).ok_or_else(|| {
        ApiError::unprocessable(
            "bad_status",
            format!(
                "{field} \"{}\" is not one of active, revoked, replaced (the entitlement) or covered, expired, not_yet_started (the coverage)",
                s.chars().take(40).collect::<String>()
            ),
        )
    })
}

#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("staff" = [])), params(ListQuery),
    responses((status = 200, description = "A page of devices", body = DevicePageBody)))]
async fn list(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<DevicePageBody>, ApiError> {
    let limit = page_size(&state, q.limit)?;
    let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.trim().is_empty());
    let mut coverage = None;
    let status = match nonempty(&q.status).as_deref() {
        Some("active") => Some(Status::Active),
        Some("revoked") => Some(Status::Revoked),
        Some("replaced") => Some(Status::Replaced),
        Some(other) => {
            coverage = Some(coverage_word("status", other)?);
            None
        }
        None => None,
    };
    if let Some(c) = nonempty(&q.coverage) {
        let c = coverage_word("coverage", &c)?;
        if coverage.is_some_and(|x| x != c) {
            return Err(ApiError::unprocessable(
                "bad_status",
                "status and coverage name two different coverages; give one",
            ));
        }
        coverage = Some(c);
    }
    let model = nonempty(&q.model)
        .as_deref()
        .map(validate::model)
        .transpose()?;
    let customer = nonempty(&q.customer).map(|c| c.to_lowercase());
    let before = nonempty(&q.expiring_before)
        .as_deref()
        .map(|s| validate::date("expiring_before", s))
        .transpose()?;
    let version: Option<Version> = nonempty(&q.version)
        .as_deref()
        .map(|v| crate::http::releases::parse_version("version", v))
        .transpose()?;
    let silent_since = nonempty(&q.checked_in_before)
        .as_deref()
        .map(|s| validate::date("checked_in_before", s))
        .transpose()?
        .map(np_common::rule::date_start);
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, "d"))
        .transpose()?;
    let today = state.today();
    let page = state
        .store
        .list_devices(after.as_deref(), limit, |d| {
            status.is_none_or(|s| d.status == s)
                && coverage.is_none_or(|c| d.coverage_on(today) == c)
                && model.as_ref().is_none_or(|m| &d.model == m)
                && customer
                    .as_ref()
                    .is_none_or(|c| d.customer.to_lowercase().contains(c))
                && before.is_none_or(|b| d.coverage_end < b)
                && version
                    .as_ref()
                    .is_none_or(|v| d.version.as_ref() == Some(v))
                && silent_since.is_none_or(|t| d.last_check_in.is_none_or(|at| at < t))
        })
        .await?;
    Ok(Json(DevicePageBody {
        devices: page
            .devices
            .into_iter()
            .map(|d| DeviceView::of(d, today))
            .collect(),
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
