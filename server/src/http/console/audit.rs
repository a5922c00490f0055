//! The audit page: every staff change, oldest first, [`PAGE`] entries at a time, filtered
//! by serial ("Serial"). Like `GET /api/v1/audit`, for the staff and admin roles.

use super::{render, ConsoleError, ConsoleState, ConsoleUser, Frame};
use crate::http::auth::StaffCaller;
use crate::store::AuditEntry;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

/// Entries per page.
pub const PAGE: usize = 50;

/// The fields of a record whose change the audit page spells out.
const SHOWN: [&str; 11] = [
    "coverage_end",
    "status",
    "status_reason",
    "replaced_by",
    "replaces",
    "customer",
    "pending_action",
    "rollout_percent",
    "paused",
    "yanked",
    "version",
];

/// One entry as a row.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// When.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Which box.
    pub serial: String,
    /// What changed, in words.
    pub change: String,
}

fn short(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "none".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => match (o.get("action"), o.get("version")) {
            (Some(Value::String(a)), Some(Value::String(v))) => format!("{a} {v}"),
            (Some(Value::String(a)), _) => a.clone(),
            _ => "set".to_owned(),
        },
        Some(other) => other.to_string(),
    }
}

/// What changed between the snapshots, as `field: old → new` (a creation lists the new
/// values of the shown fields).
pub fn describe(before: Option<&Value>, after: Option<&Value>) -> String {
    let mut parts = Vec::new();
    for k in SHOWN {
        let (b, a) = (before.and_then(|v| v.get(k)), after.and_then(|v| v.get(k)));
        if b == a {
            continue;
        }
        match before {
            None if a.is_none_or(Value::is_null) => {}
            None => parts.push(format!("{k}: {}", short(a))),
            Some(_) => parts.push(format!("{k}: {} → {}", short(b), short(a))),
        }
    }
    parts.join("; ")
}

impl From<&AuditEntry> for AuditRow {
    fn from(e: &AuditEntry) -> Self {
        let subject = e
            .serial
            .clone()
            .or_else(|| {
                e.after
                    .as_ref()
                    .or(e.before.as_ref())
                    .and_then(|v| v.get("version"))
                    .and_then(Value::as_str)
                    .map(|v| format!("release {v}"))
            })
            .unwrap_or_default();
        AuditRow {
            at: super::when(&e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            serial: subject,
            change: describe(e.before.as_ref(), e.after.as_ref()),
        }
    }
}

/// The query of the audit page.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Only this box.
    #[serde(default)]
    pub serial: String,
    /// Continue after this entry id.
    #[serde(default)]
    pub after: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    frame: Frame,
    serial: String,
    rows: Vec<AuditRow>,
    next: Option<String>,
}

/// `GET /console/audit`.
pub async fn page(
    State(state): State<ConsoleState>,
    user: ConsoleUser,
    super::ConsoleQuery(q): super::ConsoleQuery<AuditQuery>,
) -> Result<Response, ConsoleError> {
    StaffCaller::check(user.caller.clone())?;
    let serial = q.serial.trim().to_uppercase();
    let after = match q.after.trim() {
        "" => None,
        a => Some(a.parse::<u64>().map_err(|_| {
            crate::http::error::ApiError::bad_request(
                "bad_cursor",
                "the page link is not one this server gave out; start again from the first page",
            )
        })?),
    };
    let filter = Some(serial.as_str()).filter(|s| !s.is_empty());
    let page = state.app.store.audit_entries(filter, after, PAGE).await?;
    let next = page
        .next_after
        .map(|id| format!("/console/audit?serial={}&after={id}", super::q(&serial)));
    Ok(render(
        StatusCode::OK,
        &AuditPage {
            frame: Frame::new(&user, "Audit log", "audit"),
            serial,
            rows: page.entries.iter().map(AuditRow::from).collect(),
            next,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describes_what_changed() {
        let b = json!({"coverage_end": "2027-01-01", "status": "active", "sequence": 1});
        let a = json!({"coverage_end": "2027-07-01", "status": "active", "sequence": 2});
        assert_eq!(
            describe(Some(&b), Some(&a)),
            "coverage_end: 2027-01-01 → 2027-07-01"
        );
        assert_eq!(
            describe(None, Some(&a)),
            "coverage_end: 2027-07-01; status: active"
        );
    }
}
