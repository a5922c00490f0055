//! Support cases (docs/api.md, "Support cases"): open, list, show, add entries, open and
//! change an RMA, and request diagnostics (staff role; the release role is refused as for
//! devices), plus the device route a box posts its signed diagnostics report to. The rules
//! live in `domain::support` and `domain::case`; this maps requests and answers.

use crate::domain::case::CaseView;
use crate::domain::device::DeviceView;
use crate::domain::support::{
    self, case_id, parse_status, CaseFilter, EntryRequest, OpenCaseRequest, RmaChangeRequest,
    RmaOpenRequest,
};
use crate::domain::validate;
use crate::http::auth::StaffCaller;
use crate::http::device_auth::SignedDevice;
use crate::http::devices::{decode_cursor, encode_cursor, page_size, view as device_view};
use crate::http::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use np_common::device_docs::{verify_device, DeviceDocError, Diagnostics, MAX_DIAGNOSTICS_BYTES};
use np_common::Envelope;
use serde::{Deserialize, Serialize};

/// The largest diagnostics body a box may post: the 256 KiB payload in base64 and its
/// envelope.
pub const DIAGNOSTICS_BODY_BYTES: usize = MAX_DIAGNOSTICS_BYTES / 3 * 4 + 16 * 1024;

/// The case routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/cases", post(open).get(list))
        .route("/api/v1/cases/{id}", get(show))
        .route("/api/v1/cases/{id}/entries", post(add_entry))
        .route("/api/v1/cases/{id}/rma", post(open_rma).patch(change_rma))
        .route(
            "/api/v1/cases/{id}/diagnostics",
            post(request_diagnostics).delete(cancel_diagnostics),
        )
        .route(
            "/api/v1/device/diagnostics",
            post(device_diagnostics).layer(DefaultBodyLimit::max(DIAGNOSTICS_BODY_BYTES)),
        )
}

#[utoipa::path(post, path = "/api/v1/cases", tag = "cases", security(("staff" = [])),
    request_body = OpenCaseRequest,
    responses(
        (status = 201, description = "The new case", body = CaseView),
        (status = 403, description = "not_covered (details: coverage_end, coverage), revoked or replaced: the box gets no case", body = np_common::api::ErrorBody),
        (status = 404, description = "The serial is not registered", body = np_common::api::ErrorBody),
        (status = 422, description = "bad_serial, bad_channel, bad_severity, bad_summary", body = np_common::api::ErrorBody)))]
/// Also called by the staff console with a session's caller.
pub async fn open(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiJson(req): ApiJson<OpenCaseRequest>,
) -> Result<(StatusCode, Json<CaseView>), ApiError> {
    let c = support::open(&state, &caller.name, req).await?;
    tracing::info!(case = %c.id, serial = %c.serial, actor = %caller.name, "case opened");
    Ok((StatusCode::CREATED, Json(support::view(&state, c))))
}

/// `GET /api/v1/cases` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CaseQuery {
    /// Only this box's cases.
    serial: Option<String>,
    /// Only cases with this status.
    status: Option<String>,
    /// `true`: only cases whose RMA is overdue now; `false`: only the others.
    overdue: Option<bool>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size.
    limit: Option<usize>,
}

/// A page of cases, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CasePageBody {
    /// The cases.
    pub cases: Vec<CaseView>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/cases", tag = "cases", security(("staff" = [])),
    params(CaseQuery), responses((status = 200, description = "A page of cases, newest first; each entry's text is cut to its first 200 characters (and …): GET /api/v1/cases/{id} has them whole", body = CasePageBody)))]
async fn list(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiQuery(q): ApiQuery<CaseQuery>,
) -> Result<Json<CasePageBody>, ApiError> {
    let limit = page_size(&state, q.limit)?;
    let filter = CaseFilter {
        serial: q.serial.as_deref().map(validate::serial).transpose()?,
        status: q.status.as_deref().map(parse_status).transpose()?,
        overdue: q.overdue,
    };
    let before = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, "c"))
        .transpose()?
        .map(|c| {
            crate::domain::case::CaseId::parse(&c).ok_or_else(|| {
                ApiError::bad_request(
                    "bad_cursor",
                    "the cursor is not one this server gave out; start the list again without it",
                )
            })
        })
        .transpose()?;
    let page = support::list(&state, &filter, before, limit).await?;
    Ok(Json(CasePageBody {
        next_cursor: page
            .next_before
            .map(|id| encode_cursor("c", &id.to_string())),
        cases: page
            .cases
            .into_iter()
            .map(|c| support::view(&state, c).summarized())
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases", security(("staff" = [])),
    params(("id" = String, Path, description = "The case id, C-1042")),
    responses((status = 200, description = "The case", body = CaseView)))]
async fn show(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CaseView>, ApiError> {
    let c = support::get(&state, case_id(&id)?).await?;
    Ok(Json(support::view(&state, c)))
}

#[utoipa::path(post, path = "/api/v1/cases/{id}/entries", tag = "cases", security(("staff" = [])),
    params(("id" = String, Path, description = "The case id, C-1042")), request_body = EntryRequest,
    responses(
        (status = 201, description = "The case with the new entry", body = CaseView),
        (status = 409, description = "case_closed, bad_transition (the status machine refuses it)", body = np_common::api::ErrorBody),
        (status = 422, description = "bad_entry, bad_status, bad_text", body = np_common::api::ErrorBody)))]
/// Also called by the staff console with a session's caller.
pub async fn add_entry(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<EntryRequest>,
) -> Result<(StatusCode, Json<CaseView>), ApiError> {
    let c = support::add_entry(&state, &caller.name, case_id(&id)?, req).await?;
    tracing::info!(case = %c.id, status = %c.status, actor = %caller.name, "case entry");
    Ok((StatusCode::CREATED, Json(support::view(&state, c))))
}

#[utoipa::path(post, path = "/api/v1/cases/{id}/rma", tag = "cases", security(("staff" = [])),
    params(("id" = String, Path, description = "The case id, C-1042")), request_body = RmaOpenRequest,
    responses(
        (status = 201, description = "The case in status rma, with its RMA due in five days", body = CaseView),
        (status = 403, description = "not_covered, revoked, replaced", body = np_common::api::ErrorBody),
        (status = 409, description = "case_closed, bad_transition (an RMA exists, or the case is resolved)", body = np_common::api::ErrorBody)))]
/// Also called by the staff console with a session's caller.
pub async fn open_rma(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CaseView>), ApiError> {
    // The body is optional: none, or `{"note": ...}`.
    let req: RmaOpenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RmaOpenRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "bad_request",
                format!("the request's JSON body is malformed: {e}"),
            )
        })?
    };
    let c = support::open_rma(&state, &caller.name, case_id(&id)?, req).await?;
    tracing::info!(case = %c.id, actor = %caller.name, "RMA opened");
    Ok((StatusCode::CREATED, Json(support::view(&state, c))))
}

/// The answer of an RMA change: the case, and with a swap, both boxes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RmaChangeAnswer {
    /// The case.
    #[serde(flatten)]
    pub case: CaseView,
    /// After a swap: the old box (now `replaced`) and the replacement, with their
    /// re-signed entitlements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swapped: Option<SwappedBoxes>,
}

/// The two boxes of a swap.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SwappedBoxes {
    /// The failed box, now `replaced`.
    pub old: DeviceView,
    /// The replacement, holding every term.
    pub new: DeviceView,
}

#[utoipa::path(patch, path = "/api/v1/cases/{id}/rma", tag = "cases", security(("staff" = [])),
    params(("id" = String, Path, description = "The case id, C-1042")), request_body = RmaChangeRequest,
    responses(
        (status = 200, description = "The case (and after a swap, both boxes)", body = RmaChangeAnswer),
        (status = 409, description = "case_closed, bad_transition (no RMA, ended, shortage already so), not_active, exists", body = np_common::api::ErrorBody),
        (status = 422, description = "bad_rma_change, bad_outcome, bad_exclusion, swap_not_allowed, bad_serial, bad_model", body = np_common::api::ErrorBody)))]
/// Also called by the staff console with a session's caller.
pub async fn change_rma(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RmaChangeRequest>,
) -> Result<Json<RmaChangeAnswer>, ApiError> {
    let done = support::change_rma(&state, &caller.name, case_id(&id)?, req).await?;
    let swapped = match done.devices.as_slice() {
        [Some(old), Some(new)] => Some(SwappedBoxes {
            old: device_view(&state, old.clone()),
            new: device_view(&state, new.clone()),
        }),
        _ => None,
    };
    tracing::info!(case = %done.case.id, actor = %caller.name, "RMA changed");
    Ok(Json(RmaChangeAnswer {
        case: support::view(&state, done.case),
        swapped,
    }))
}

#[utoipa::path(post, path = "/api/v1/cases/{id}/diagnostics", tag = "cases", security(("staff" = [])),
    params(("id" = String, Path, description = "The case id, C-1042")),
    responses(
        (status = 202, description = "Asked: the box gets a diagnostics action at a next check-in; its report becomes an entry of kind diagnostics", body = CaseView),
        (status = 409, description = "case_closed, bad_transition (resolved), not_active, no_device_key, diagnostics_pending (for another case)", body = np_common::api::ErrorBody)))]
/// Also called by the staff console with a session's caller.
pub async fn request_diagnostics(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<CaseView>), ApiError> {
    let done = support::request_diagnostics(&state, &caller.name, case_id(&id)?).await?;
    tracing::info!(case = %done.case.id, serial = %done.case.serial, actor = %caller.name, "diagnostics requested");
    Ok((StatusCode::ACCEPTED, Json(support::view(&state, done.case))))
}

#[utoipa::path(delete, path = "/api/v1/cases/{id}/diagnostics", tag = "cases", security(("staff" = [])),
    params(("id" = String, Path, description = "The case id, C-1042")),
    responses(
        (status = 200, description = "Cancelled: the request is gone from the case and the box (a report the box still sends for it is refused); the case gets a note", body = CaseView),
        (status = 409, description = "no_diagnostics_pending: the case waits for none", body = np_common::api::ErrorBody)))]
async fn cancel_diagnostics(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CaseView>, ApiError> {
    let done = support::cancel_diagnostics(&state, &caller.name, case_id(&id)?).await?;
    tracing::info!(case = %done.case.id, serial = %done.case.serial, actor = %caller.name, "diagnostics request cancelled");
    Ok(Json(support::view(&state, done.case)))
}

/// The answer to a box's report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiagnosticsFiled {
    /// The case it was filed on.
    pub case: crate::domain::case::CaseId,
    /// How many entries the case has now.
    pub entries: usize,
}

#[utoipa::path(post, path = "/api/v1/device/diagnostics", tag = "device", security(("device" = [])),
    request_body(content = Envelope, description = "The signed diagnostics document (DSSE, device key)"),
    responses(
        (status = 200, description = "Filed on the case", body = DiagnosticsFiled),
        (status = 400, description = "bad_document: not a diagnostics document", body = np_common::api::ErrorBody),
        (status = 401, description = "bad_diagnostics_signature: not signed by this box's device key", body = np_common::api::ErrorBody),
        (status = 404, description = "no_such_case: the case is not this box's", body = np_common::api::ErrorBody),
        (status = 409, description = "no_diagnostics_pending; stale_diagnostics (requested_at is not the pending request's issued_at); case_closed (the box's request for it is dropped)", body = np_common::api::ErrorBody),
        (status = 413, description = "Larger than the bound", body = np_common::api::ErrorBody)))]
async fn device_diagnostics(
    State(state): State<AppState>,
    SignedDevice { device, body }: SignedDevice,
) -> Result<Json<DiagnosticsFiled>, ApiError> {
    let env: Envelope = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "bad_document",
            format!("the body is not a DSSE envelope: {e}"),
        )
    })?;
    // A payload over the bound inside a body under the cap: 413 as for a larger body.
    if let Ok(payload) = env.payload_bytes() {
        if payload.len() > MAX_DIAGNOSTICS_BYTES {
            return Err(ApiError::too_large(format!(
                "the diagnostics report is {} bytes; at most {MAX_DIAGNOSTICS_BYTES} are accepted",
                payload.len()
            )));
        }
    }
    let Some(key) = device.device_key.as_ref() else {
        return Err(ApiError::unauthorized(format!(
            "box {} has no device key registered",
            device.serial
        )));
    };
    let report: Diagnostics = verify_device(&env, key, &device.serial).map_err(|e| match e {
        DeviceDocError::NotSignedByDevice { .. }
        | DeviceDocError::Envelope(np_common::dsse::EnvelopeError::NoSignatures) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_diagnostics_signature",
            format!("the diagnostics report does not verify: {e}; it was not made by this box"),
        ),
        other => ApiError::bad_request(
            "bad_document",
            format!("the diagnostics report is not valid: {other}"),
        ),
    })?;
    let c = support::file_diagnostics(&state, &device, &report).await?;
    tracing::info!(case = %c.id, serial = %device.serial, "diagnostics filed");
    Ok(Json(DiagnosticsFiled {
        case: c.id,
        entries: c.entries.len(),
    }))
}

#[cfg(test)]
#[path = "case_api_tests.rs"]
mod api_tests;
