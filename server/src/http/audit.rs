//! `GET /api/v1/audit?serial=&cursor=&limit=`: the audit log, oldest first, a page at a
//! time with an opaque `next_cursor`.

use crate::http::auth::StaffCaller;
use crate::http::devices::{decode_cursor, encode_cursor, page_size};
use crate::http::error::{ApiError, ApiQuery};
use crate::state::AppState;
use crate::store::AuditEntry;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// The audit routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(list))
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    serial: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// A page of audit entries.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPageBody {
    /// Entries, oldest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("staff" = [])), params(AuditQuery),
    responses((status = 200, description = "A page of audit entries", body = AuditPageBody)))]
async fn list(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPageBody>, ApiError> {
    let limit = page_size(&state, q.limit)?;
    let after = match q.cursor.as_deref() {
        Some(c) => Some(
            decode_cursor(c, "a")?
                .parse::<u64>()
                .map_err(|_| bad_cursor())?,
        ),
        None => None,
    };
    let serial = q.serial.as_deref().filter(|s| !s.is_empty());
    let page = state.store.audit_entries(serial, after, limit)?;
    Ok(Json(AuditPageBody {
        entries: page.entries,
        next_cursor: page
            .next_after
            .map(|id| encode_cursor("a", &id.to_string())),
    }))
}

fn bad_cursor() -> ApiError {
    ApiError::bad_request(
        "bad_cursor",
        "the cursor is not one this server gave out; start again without it",
    )
}
