//! `GET /api/v1/audit?serial=&since=&action=&actor=&cursor=&limit=`: the audit log,
//! newest first, a page at a time with an opaque `next_cursor`. Each entry carries the
//! record before and after the change.

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
    /// Only entries at or after this date (`YYYY-MM-DD`) or time (RFC 3339).
    since: Option<String>,
    /// Only entries of this action (`register`, `extend`, `edit`, ...).
    action: Option<String>,
    /// Only entries by this token name.
    actor: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// A page of audit entries.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPageBody {
    /// Entries, newest first.
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
    let serial = q
        .serial
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(crate::domain::validate::normalize_serial);
    let since = q
        .since
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(parse_since)
        .transpose()?;
    let action = q.action.filter(|s| !s.trim().is_empty());
    let actor = q.actor.filter(|s| !s.trim().is_empty());
    let page = state
        .store
        .audit_entries_newest(
            serial.as_deref(),
            after,
            limit,
            |e| {
                action.as_ref().is_none_or(|a| &e.action == a)
                    && actor.as_ref().is_none_or(|a| &e.actor == a)
            },
            |e| since.is_some_and(|s| e.at < s),
        )
        .await?;
    Ok(Json(AuditPageBody {
        entries: page.entries,
        next_cursor: page
            .next_after
            .map(|id| encode_cursor("a", &id.to_string())),
    }))
}

/// `since` as a date (its start, UTC) or an RFC 3339 time (`bad_date`).
fn parse_since(s: &str) -> Result<jiff::Timestamp, ApiError> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    crate::domain::validate::date("since", s).map(np_common::rule::date_start)
}

fn bad_cursor() -> ApiError {
    ApiError::bad_request(
        "bad_cursor",
        "the cursor is not one this server gave out; start again without it",
    )
}
