//! A support case's page: its facts, the first response in service hours, the time line of
//! its entries (a box's diagnostics report pretty-printed), the RMA block (due, shortage,
//! overdue, outcome), and the forms of the staff and admin roles: a note, a status change,
//! opening, pausing and ending the RMA (repaired, swapped, not covered with an exclusion),
//! and a diagnostics request. Every change calls `domain::support` with the session's
//! caller, as the JSON routes do, so the rules, errors and audit entries are the API's.

use super::cases::{wire, word, words, EXCLUSIONS};
use super::csrf::CsrfForm;
use super::{render, ConsoleError, ConsoleState, ConsoleUser, Frame, Notice};
use crate::domain::case::{CaseId, CaseStatus, CaseView, EntryKind, RmaOutcome, SETTABLE};
use crate::domain::support::{self, EntryRequest, RmaChangeRequest, RmaOpenRequest};
use crate::http::auth::StaffCaller;
use crate::http::error::ApiError;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

/// One entry of a case's time line, ready to show.
pub struct EntryRow {
    at: String,
    by: String,
    kind: &'static str,
    /// The kind as a CSS class.
    class: &'static str,
    status: String,
    text: String,
    /// A box's report: its JSON, pretty-printed, shown in a `<pre>`.
    report: Option<String>,
}

impl EntryRow {
    fn of(e: &crate::domain::case::CaseEntry) -> EntryRow {
        let (kind, class) = match e.kind {
            EntryKind::Note => ("note", "note"),
            EntryKind::Status => ("status", "status"),
            EntryKind::Rma => ("RMA", "rma"),
            EntryKind::DiagnosticsRequested => ("diagnostics requested", "diagnostics-requested"),
            EntryKind::Diagnostics => ("diagnostics report", "diagnostics"),
        };
        let report = (e.kind == EntryKind::Diagnostics).then(|| {
            serde_json::from_str::<serde_json::Value>(&e.text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| e.text.clone())
        });
        EntryRow {
            at: super::when(&e.at),
            by: e.by.clone(),
            kind,
            class,
            status: e.status.map(|s| word(&s)).unwrap_or_default(),
            text: e.text.clone(),
            report,
        }
    }
}

/// Minutes as people read them: `2 h 05 min`, `40 min`.
pub fn minutes(m: i64) -> String {
    let m = m.max(0);
    if m >= 60 {
        format!("{} h {:02} min", m / 60, m % 60)
    } else {
        format!("{m} min")
    }
}

/// What the RMA block shows.
pub struct RmaBlock {
    opened: String,
    due: String,
    shortage: Option<String>,
    stopped: String,
    overdue: bool,
    outcome: Option<String>,
    /// The replacement box of a swap, linked to its page.
    replacement: Option<String>,
    ended: String,
    open: bool,
}

#[derive(Template)]
#[template(path = "console/case.html")]
struct CasePage {
    frame: Frame,
    c: CaseView,
    channel: String,
    severity: String,
    status: String,
    opened: String,
    first_response: String,
    entries: Vec<EntryRow>,
    rma: Option<RmaBlock>,
    diagnostics_pending: Option<String>,
    /// (wire name, words) of the statuses a staff entry may set.
    settable: Vec<(&'static str, String)>,
    exclusions: Vec<(&'static str, &'static str)>,
}

impl CasePage {
    fn closed(&self) -> bool {
        self.c.status == CaseStatus::Closed
    }

    fn may_open_rma(&self) -> bool {
        self.c.rma.is_none() && self.c.status.is_active()
    }

    fn may_ask_diagnostics(&self) -> bool {
        self.c.status.is_active()
    }
}

fn rma_block(v: &CaseView) -> Option<RmaBlock> {
    let r = v.rma.as_ref()?;
    let outcome = r.outcome.map(|o| match o {
        RmaOutcome::Repaired => "repaired".to_owned(),
        RmaOutcome::Swapped => format!(
            "swapped for {}",
            r.replacement_serial
                .as_ref()
                .map_or_else(|| "a replacement".to_owned(), ToString::to_string)
        ),
        RmaOutcome::NotCovered => format!(
            "not covered: {}",
            r.exclusion
                .and_then(|e| {
                    let name = wire(&e);
                    EXCLUSIONS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, t)| (*t).to_owned())
                })
                .unwrap_or_default()
        ),
    });
    Some(RmaBlock {
        opened: super::when(&r.opened_at),
        due: super::when(&r.due),
        shortage: r.shortage_since.map(|s| super::when(&s)),
        stopped: minutes(r.stopped_secs / 60),
        overdue: r.overdue,
        outcome,
        replacement: r.replacement_serial.as_ref().map(ToString::to_string),
        ended: r.ended_at.as_ref().map(super::when).unwrap_or_default(),
        open: r.outcome.is_none(),
    })
}

/// Draws the page of case `id` with a notice and the answer `status`.
async fn show(
    state: &ConsoleState,
    user: &ConsoleUser,
    id: CaseId,
    status: StatusCode,
    notice: Option<Notice>,
) -> Result<Response, ConsoleError> {
    let app = &state.app;
    let c = support::view(app, support::get(app, id).await?);
    let mut frame = Frame::new(user, format!("Case {id}"), "cases");
    if notice.is_some() {
        frame.notice = notice;
    }
    let first_response = match (&c.first_response_at, c.first_response_service_minutes) {
        (Some(at), Some(m)) => format!("{} ({} in service hours)", super::when(at), minutes(m)),
        _ => match c.waiting_service_minutes {
            Some(m) => format!("none yet (waiting {} in service hours)", minutes(m)),
            None => "none".to_owned(),
        },
    };
    let diagnostics_pending = c.diagnostics_pending.as_ref().map(|p| {
        format!(
            "Diagnostics requested by {} at {}: the box sends them after its next check-in.",
            p.requested_by,
            super::when(&p.issued_at)
        )
    });
    Ok(render(
        status,
        &CasePage {
            frame,
            channel: word(&c.channel),
            severity: word(&c.severity),
            status: word(&c.status),
            opened: format!("{} by {}", super::when(&c.opened_at), c.opened_by),
            first_response,
            entries: c.entries.iter().map(EntryRow::of).collect(),
            rma: rma_block(&c),
            diagnostics_pending,
            settable: SETTABLE.iter().map(|s| (s.as_str(), word(s))).collect(),
            exclusions: EXCLUSIONS.to_vec(),
            c,
        },
    ))
}

fn parse_id(s: &str) -> Result<CaseId, ConsoleError> {
    Ok(support::case_id(s.trim())?)
}

/// `GET /console/cases/{id}`.
pub async fn page(
    State(state): State<ConsoleState>,
    user: ConsoleUser,
    super::ConsolePath(id): super::ConsolePath<String>,
) -> Result<Response, ConsoleError> {
    StaffCaller::check(user.caller.clone())?;
    let id = parse_id(&id)?;
    show(&state, &user, id, StatusCode::OK, None).await
}

/// `GET` on a case form's address: changes nothing and goes to the case's page.
pub async fn form_opened(super::ConsolePath(id): super::ConsolePath<String>) -> Response {
    match CaseId::parse(id.trim()) {
        Some(id) => Redirect::to(&format!("/console/cases/{id}")).into_response(),
        None => Redirect::to("/console/cases").into_response(),
    }
}

/// After a change: the notice for the next page, and back to the case's page.
fn done(state: &ConsoleState, user: &ConsoleUser, id: CaseId, text: String) -> Response {
    state.sessions.leave_notice(user, Notice::ok(text));
    Redirect::to(&format!("/console/cases/{id}")).into_response()
}

/// A refused change: the case's page again, with the API's words and status.
async fn refused(
    state: &ConsoleState,
    user: &ConsoleUser,
    id: CaseId,
    e: ApiError,
) -> Result<Response, ConsoleError> {
    if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::INTERNAL_SERVER_ERROR {
        return Err(e.into());
    }
    let text = words(&e);
    show(state, user, id, e.status, Some(Notice::error(text))).await
}

/// The note form.
#[derive(Debug, Deserialize)]
pub struct NoteForm {
    #[serde(default)]
    text: String,
}

/// `POST /console/cases/{id}/note`.
pub async fn note(
    State(state): State<ConsoleState>,
    super::ConsolePath(id): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<NoteForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?.0;
    let id = parse_id(&id)?;
    let req = EntryRequest {
        kind: "note".into(),
        text: form.text,
        status: None,
    };
    match support::add_entry(&state.app, &caller.name, id, req).await {
        Ok(_) => Ok(done(&state, &user, id, format!("Note added to case {id}."))),
        Err(e) => refused(&state, &user, id, e).await,
    }
}

/// The status form.
#[derive(Debug, Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    text: String,
}

/// `POST /console/cases/{id}/status`.
pub async fn status(
    State(state): State<ConsoleState>,
    super::ConsolePath(id): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<StatusForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?.0;
    let id = parse_id(&id)?;
    let req = EntryRequest {
        kind: "status".into(),
        text: form.text,
        status: Some(form.status.trim().to_owned()),
    };
    match support::add_entry(&state.app, &caller.name, id, req).await {
        Ok(c) => {
            let text = format!("Case {id} is now {}.", word(&c.status));
            Ok(done(&state, &user, id, text))
        }
        Err(e) => refused(&state, &user, id, e).await,
    }
}

/// A note-only form (opening the RMA, a shortage change).
#[derive(Debug, Deserialize)]
pub struct RmaOpenForm {
    #[serde(default)]
    note: String,
}

fn note_of(s: String) -> Option<String> {
    Some(s).filter(|n| !n.trim().is_empty())
}

/// `POST /console/cases/{id}/rma`.
pub async fn open_rma(
    State(state): State<ConsoleState>,
    super::ConsolePath(id): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<RmaOpenForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?.0;
    let id = parse_id(&id)?;
    let req = RmaOpenRequest {
        note: note_of(form.note),
    };
    match support::open_rma(&state.app, &caller.name, id, req).await {
        Ok(c) => {
            let due = c
                .rma
                .as_ref()
                .map(|r| super::when(&r.due))
                .unwrap_or_default();
            let text = format!("RMA opened on case {id}; the repair is due by {due}.");
            Ok(done(&state, &user, id, text))
        }
        Err(e) => refused(&state, &user, id, e).await,
    }
}

/// The shortage form.
#[derive(Debug, Deserialize)]
pub struct ShortageForm {
    #[serde(default)]
    shortage: String,
    #[serde(default)]
    note: String,
}

/// `POST /console/cases/{id}/shortage`.
pub async fn shortage(
    State(state): State<ConsoleState>,
    super::ConsolePath(id): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<ShortageForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?.0;
    let id = parse_id(&id)?;
    let on = match form.shortage.trim() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(ConsoleError::BadForm(
                "the shortage is neither on nor off".into(),
            ))
        }
    };
    let req = RmaChangeRequest {
        shortage: Some(on),
        note: note_of(form.note),
        ..RmaChangeRequest::default()
    };
    match support::change_rma(&state.app, &caller.name, id, req).await {
        Ok(_) => {
            let text = if on {
                format!("Parts are short on case {id}: the RMA clock is stopped.")
            } else {
                format!("Parts arrived on case {id}: the RMA clock runs again.")
            };
            Ok(done(&state, &user, id, text))
        }
        Err(e) => refused(&state, &user, id, e).await,
    }
}

/// The form that ends the RMA.
#[derive(Debug, Deserialize)]
pub struct EndForm {
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    replacement_serial: String,
    #[serde(default)]
    replacement_model: String,
    #[serde(default)]
    replacement_device_key: String,
    #[serde(default)]
    exclusion: String,
    #[serde(default)]
    note: String,
}

/// `POST /console/cases/{id}/end`.
pub async fn end_rma(
    State(state): State<ConsoleState>,
    super::ConsolePath(id): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<EndForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?.0;
    let id = parse_id(&id)?;
    let outcome = form.outcome.trim().to_owned();
    let given = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    // The form's words for what the outcome needs, before the API's.
    let missing = match outcome.as_str() {
        "swapped" if given(&form.replacement_serial).is_none() => Some(
            "an RMA ended as swapped names the replacement: fill in \"Replacement serial\"",
        ),
        "not_covered" if given(&form.exclusion).is_none() => Some(
            "an RMA ended as not covered names the warranty's exclusion: choose one under \"Exclusion\"",
        ),
        _ => None,
    };
    if let Some(m) = missing {
        let e = ApiError::unprocessable("bad_rma_change", m);
        return refused(&state, &user, id, e).await;
    }
    let req = RmaChangeRequest {
        outcome: Some(outcome),
        replacement_serial: given(&form.replacement_serial),
        replacement_model: given(&form.replacement_model),
        replacement_device_key: given(&form.replacement_device_key),
        exclusion: given(&form.exclusion),
        note: note_of(form.note),
        ..RmaChangeRequest::default()
    };
    match support::change_rma(&state.app, &caller.name, id, req).await {
        Ok(changed) => {
            let c = changed.case;
            let how = c
                .rma
                .as_ref()
                .and_then(|r| r.outcome)
                .map(|o| match o {
                    RmaOutcome::Swapped => format!(
                        "swapped for {}, which takes over the coverage",
                        c.rma
                            .as_ref()
                            .and_then(|r| r.replacement_serial.as_ref())
                            .map_or_else(String::new, ToString::to_string)
                    ),
                    other => word(&other),
                })
                .unwrap_or_default();
            tracing::info!(case = %id, actor = %caller.name, "RMA ended (console)");
            let text = format!("The RMA of case {id} ended: {how}. The case is resolved.");
            Ok(done(&state, &user, id, text))
        }
        Err(e) => refused(&state, &user, id, e).await,
    }
}

/// A form with only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct EmptyForm {}

/// `POST /console/cases/{id}/diagnostics`.
pub async fn diagnostics(
    State(state): State<ConsoleState>,
    super::ConsolePath(id): super::ConsolePath<String>,
    CsrfForm { user, form: _ }: CsrfForm<EmptyForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?.0;
    let id = parse_id(&id)?;
    match support::request_diagnostics(&state.app, &caller.name, id).await {
        Ok(changed) => {
            let text = format!(
                "Diagnostics requested: {} sends them after its next check-in.",
                changed.case.serial
            );
            Ok(done(&state, &user, id, text))
        }
        Err(e) => refused(&state, &user, id, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_read_as_hours_and_minutes() {
        assert_eq!(minutes(0), "0 min");
        assert_eq!(minutes(59), "59 min");
        assert_eq!(minutes(125), "2 h 05 min");
        assert_eq!(minutes(-3), "0 min");
    }
}
