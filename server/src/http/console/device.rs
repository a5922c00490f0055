//! A device's page: the serial as heading, its facts, the terms on a time line, its
//! install and audit history, and the actions of the staff and admin roles: extend
//! ("Months"/"Years", "Extend"; a lapsed box shows the gap and asks to confirm the
//! reinstatement), swap, revoke, remote upgrade and rollback, and the downloads of the
//! entitlement and an offline bundle. Every action calls the registry or the API's own
//! handler with the session's caller, so the rules, errors and audit entries are the API's.

use super::audit::AuditRow;
use super::csrf::CsrfForm;
use super::{charts, render, ConsoleError, ConsoleState, ConsoleUser, Frame, Notice};
use crate::domain::device::DeviceRecord;
use crate::domain::registry::{self, ExtendRequest, RevokeRequest, SwapRequest};
use crate::domain::validate;
use crate::http::actions::{self, ActionRequest};
use crate::http::auth::StaffCaller;
use crate::http::bundle::{self, BundleQuery};
use crate::http::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::store::EventRecord;
use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use np_common::docs::Status;
use np_common::warranty::days_between;
use np_common::Serial;
use serde::Deserialize;

/// Install events shown.
const EVENTS_SHOWN: usize = 50;
/// Receipts shown.
const RECEIPTS_SHOWN: usize = 50;
/// Audit entries read for the page (the newest are shown).
const AUDIT_READ: usize = 1000;
/// Audit entries shown.
const AUDIT_SHOWN: usize = 50;

/// What a lapsed extension needs confirmed.
#[derive(Debug, Clone)]
pub struct Reinstatement {
    months: String,
    years: String,
    ended: String,
    gap_days: i64,
    billable_months: i64,
}

#[derive(Template)]
#[template(path = "console/device.html")]
struct DevicePage {
    frame: Frame,
    d: DeviceRecord,
    lapsed_days: Option<i64>,
    timeline: String,
    events: Vec<EventRecord>,
    receipts: Vec<crate::store::StoredReceipt>,
    audit: Vec<AuditRow>,
    versions: Vec<String>,
    reinstate: Option<Reinstatement>,
    months: String,
    years: String,
    cases: Vec<super::cases::BoxCase>,
    /// Why no case can be opened for the box today, in words (none: it may get one).
    no_support: Option<String>,
}

impl DevicePage {
    fn term_kind(k: &np_common::warranty::TermKind) -> String {
        serde_json::to_value(k)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn event_kind(e: &EventRecord) -> String {
        serde_json::to_value(e.event)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn outcome(r: &crate::store::StoredReceipt) -> String {
        serde_json::to_value(r.receipt.outcome)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default()
    }

    fn version(v: &Option<np_common::Version>) -> String {
        v.as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string)
    }

    fn pending(&self) -> String {
        match &self.d.pending_action {
            None => "none".to_owned(),
            Some(p) => {
                let kind = serde_json::to_value(p.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                match &p.version {
                    Some(v) => format!("{kind} to {v} (asked {})", super::when(&p.issued_at)),
                    None => format!("{kind} (asked {})", super::when(&p.issued_at)),
                }
            }
        }
    }

    fn pending_diagnostics(&self) -> Option<String> {
        self.d.pending_diagnostics.as_ref().map(|p| {
            let case = p.case.as_deref().unwrap_or("a case");
            format!(
                "for case {case} (asked {}): sent at the next check-in",
                super::when(&p.issued_at)
            )
        })
    }

    fn last_seen(&self) -> String {
        self.d
            .last_check_in
            .as_ref()
            .map_or_else(|| "never".to_owned(), super::when)
    }

    fn when(t: &jiff::Timestamp) -> String {
        super::when(t)
    }

    fn active(&self) -> bool {
        self.d.status == Status::Active
    }
}

fn parse_serial(s: &str) -> Result<Serial, ConsoleError> {
    Ok(validate::serial(s.trim())?)
}

/// Draws the page of `serial` with a notice and the answer `status`.
async fn show(
    state: &ConsoleState,
    user: &ConsoleUser,
    serial: &Serial,
    status: StatusCode,
    notice: Option<Notice>,
    reinstate: Option<Reinstatement>,
) -> Result<Response, ConsoleError> {
    let app = &state.app;
    let d = registry::get(app, serial).await?;
    let today = app.today();
    let events = app.store.device_events(serial, EVENTS_SHOWN).await?;
    let receipts = app.store.device_receipts(serial, RECEIPTS_SHOWN).await?;
    let entries = app
        .store
        .audit_entries(Some(serial.as_str()), None, AUDIT_READ)
        .await?
        .entries;
    let audit = entries
        .iter()
        .rev()
        .take(AUDIT_SHOWN)
        .map(AuditRow::from)
        .collect();
    let mut versions: Vec<_> = app
        .store
        .releases()
        .await?
        .into_iter()
        .filter(|r| !r.yanked && r.release.models.contains(&d.model))
        .map(|r| r.release.version)
        .collect();
    versions.sort();
    versions.reverse();
    let lapsed_days = (d.status == Status::Active && d.coverage_end <= today)
        .then(|| days_between(d.coverage_end, today));
    let mut frame = Frame::new(user, d.serial.to_string(), "devices");
    if notice.is_some() {
        frame.notice = notice;
    }
    let cases = super::cases::of_box(app, serial).await?;
    let no_support = crate::domain::support::require_supported(&d, today)
        .err()
        .map(|e| super::cases::words(&e));
    let (months, years) = reinstate
        .as_ref()
        .map(|r| (r.months.clone(), r.years.clone()))
        .unwrap_or_default();
    Ok(render(
        status,
        &DevicePage {
            frame,
            timeline: charts::timeline(&d.terms, today),
            d,
            lapsed_days,
            events,
            receipts,
            audit,
            versions: versions.iter().map(ToString::to_string).collect(),
            reinstate,
            months,
            years,
            cases,
            no_support,
        },
    ))
}

/// `GET /console/devices/{serial}`.
pub async fn page(
    State(state): State<ConsoleState>,
    user: ConsoleUser,
    super::ConsolePath(serial): super::ConsolePath<String>,
) -> Result<Response, ConsoleError> {
    StaffCaller::check(user.caller.clone())?;
    let serial = parse_serial(&serial)?;
    show(&state, &user, &serial, StatusCode::OK, None, None).await
}

/// After a change: the notice for the next page, and back to the box's page.
fn done(state: &ConsoleState, user: &ConsoleUser, serial: &Serial, text: String) -> Response {
    state.sessions.leave_notice(user, Notice::ok(text));
    Redirect::to(&format!("/console/devices/{serial}")).into_response()
}

/// A refused change: the box's page again, with the API's words and status.
async fn refused(
    state: &ConsoleState,
    user: &ConsoleUser,
    serial: &Serial,
    e: ApiError,
) -> Result<Response, ConsoleError> {
    if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::INTERNAL_SERVER_ERROR {
        return Err(e.into());
    }
    show(
        state,
        user,
        serial,
        e.status,
        Some(Notice::error(e.message)),
        None,
    )
    .await
}

/// A whole number from a form field (`None` when empty).
fn number(field: &str, s: &str) -> Result<Option<i64>, ApiError> {
    match s.trim() {
        "" => Ok(None),
        t => t.parse().map(Some).map_err(|_| {
            ApiError::unprocessable(
                "bad_duration",
                format!("{field} must be a whole number such as 6, not {t:?}"),
            )
        }),
    }
}

/// The extension form.
#[derive(Debug, Deserialize)]
pub struct ExtendForm {
    #[serde(default)]
    months: String,
    #[serde(default)]
    years: String,
    #[serde(default)]
    reinstate: Option<String>,
    /// The gap in days the person confirmed (the confirmation form carries it).
    #[serde(default)]
    gap_days: Option<String>,
}

/// `POST /console/devices/{serial}/extend`.
pub async fn extend(
    State(state): State<ConsoleState>,
    super::ConsolePath(serial): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<ExtendForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?.0;
    let serial = parse_serial(&serial)?;
    // A reinstatement is what was confirmed only while the gap is still the one shown:
    // a confirmation left open past midnight shows the new gap and asks again.
    let confirmed = form.reinstate.as_deref() == Some("true") && {
        let d = registry::get(&state.app, &serial).await?;
        let today = state.app.today();
        let gap = (d.status == Status::Active && d.coverage_end <= today)
            .then(|| days_between(d.coverage_end, today));
        gap.is_none()
            || gap.map(|g| g.to_string()) == form.gap_days.as_deref().map(|g| g.trim().to_owned())
    };
    let req = match (number("Months", &form.months), number("Years", &form.years)) {
        (Ok(months), Ok(years)) => ExtendRequest {
            months,
            years,
            reinstate: confirmed,
        },
        (Err(e), _) | (_, Err(e)) => return refused(&state, &user, &serial, e).await,
    };
    match registry::extend(&state.app, &caller.name, &serial, req).await {
        Ok(d) => {
            tracing::info!(%serial, actor = %caller.name, coverage_end = %d.coverage_end, "warranty extended (console)");
            let text = format!("Coverage of {serial} now ends on {}.", d.coverage_end);
            Ok(done(&state, &user, &serial, text))
        }
        Err(e) if e.code == "lapsed" => {
            let detail = |k: &str| {
                e.details
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0)
            };
            let ended = registry::get(&state.app, &serial)
                .await?
                .coverage_end
                .to_string();
            let r = Reinstatement {
                months: form.months.trim().to_owned(),
                years: form.years.trim().to_owned(),
                ended,
                gap_days: detail("gap_days"),
                billable_months: detail("billable_months"),
            };
            show(
                &state,
                &user,
                &serial,
                e.status,
                Some(Notice::error(e.message)),
                Some(r),
            )
            .await
        }
        Err(e) => refused(&state, &user, &serial, e).await,
    }
}

/// `POST /console/devices/{serial}/cases`: opens a support case for the box (only while
/// it is covered), through the same domain code as the API; on to the new case's page.
pub async fn open_case(
    State(state): State<ConsoleState>,
    super::ConsolePath(serial): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<super::cases::OpenForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?.0;
    let serial = parse_serial(&serial)?;
    match super::cases::open_for(&state.app, &caller.name, &serial, form).await {
        Ok(c) => {
            tracing::info!(case = %c.id, %serial, actor = %caller.name, "case opened (console)");
            state.sessions.leave_notice(
                &user,
                Notice::ok(format!("Case {} opened for {serial}.", c.id)),
            );
            Ok(Redirect::to(&format!("/console/cases/{}", c.id)).into_response())
        }
        Err(e) => {
            if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::INTERNAL_SERVER_ERROR {
                return Err(e.into());
            }
            let text = super::cases::words(&e);
            show(
                &state,
                &user,
                &serial,
                e.status,
                Some(Notice::error(text)),
                None,
            )
            .await
        }
    }
}

/// The swap form.
#[derive(Debug, Deserialize)]
pub struct SwapForm {
    #[serde(default)]
    new_serial: String,
    #[serde(default)]
    new_model: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/devices/{serial}/swap`.
pub async fn swap(
    State(state): State<ConsoleState>,
    super::ConsolePath(serial): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<SwapForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?.0;
    let serial = parse_serial(&serial)?;
    let req = SwapRequest {
        new_serial: form.new_serial.trim().to_owned(),
        new_model: Some(form.new_model.trim().to_owned()).filter(|m| !m.is_empty()),
        new_device_key: None,
        reason: form.reason,
    };
    match registry::swap(&state.app, &caller.name, &serial, req).await {
        Ok((old, new)) => {
            tracing::info!(old = %old.serial, new = %new.serial, actor = %caller.name, "device swapped (console)");
            let text = format!(
                "{} replaced {}; it keeps the coverage to {}.",
                new.serial, old.serial, new.coverage_end
            );
            Ok(done(&state, &user, &new.serial, text))
        }
        Err(e) => refused(&state, &user, &serial, e).await,
    }
}

/// The revoke form.
#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    reason: String,
}

/// `POST /console/devices/{serial}/revoke`.
pub async fn revoke(
    State(state): State<ConsoleState>,
    super::ConsolePath(serial): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<RevokeForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?.0;
    let serial = parse_serial(&serial)?;
    let req = RevokeRequest {
        reason: form.reason,
    };
    match registry::revoke(&state.app, &caller.name, &serial, req).await {
        Ok(_) => {
            tracing::info!(%serial, actor = %caller.name, "entitlement revoked (console)");
            Ok(done(
                &state,
                &user,
                &serial,
                format!("{serial} is revoked."),
            ))
        }
        Err(e) => refused(&state, &user, &serial, e).await,
    }
}

/// The remote action form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    version: String,
    /// `true` (the "Replace the pending action" box) to replace an action still pending.
    #[serde(default)]
    replace: Option<String>,
}

/// `POST /console/devices/{serial}/action`: a remote upgrade or rollback, through the
/// API's own action handler.
pub async fn action(
    State(state): State<ConsoleState>,
    super::ConsolePath(serial): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<ActionForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?;
    let parsed = parse_serial(&serial)?;
    let req = ActionRequest {
        action: form.action.trim().to_owned(),
        version: Some(form.version.trim().to_owned()).filter(|v| !v.is_empty()),
        replace: form.replace.as_deref() == Some("true"),
    };
    let what = match &req.version {
        Some(v) => format!("an upgrade to {v}"),
        None => "a rollback".to_owned(),
    };
    match actions::create(
        State(state.app.clone()),
        caller,
        ApiPath(serial),
        ApiJson(req),
    )
    .await
    {
        Ok(_) => {
            let text = format!("{parsed} will get {what} at its next check-in.");
            Ok(done(&state, &user, &parsed, text))
        }
        Err(e) => refused(&state, &user, &parsed, e).await,
    }
}

/// `GET /console/devices/{serial}/entitlement`: the signed envelope as a file.
pub async fn entitlement(
    State(state): State<ConsoleState>,
    user: ConsoleUser,
    super::ConsolePath(serial): super::ConsolePath<String>,
) -> Result<Response, ConsoleError> {
    StaffCaller::check(user.caller.clone())?;
    let serial = parse_serial(&serial)?;
    let d = registry::get(&state.app, &serial).await?;
    let disposition = format!("attachment; filename=\"{serial}-entitlement.json\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        d.entitlement.to_json(),
    )
        .into_response())
}

/// The bundle form's query.
#[derive(Debug, Deserialize)]
pub struct BundleForm {
    #[serde(default)]
    version: String,
}

/// `GET /console/devices/{serial}/bundle?version=V`: the offline bundle, through the
/// API's own bundle handler (403 with the rule when the box may not install V).
pub async fn bundle(
    State(state): State<ConsoleState>,
    user: ConsoleUser,
    headers: axum::http::HeaderMap,
    super::ConsolePath(serial): super::ConsolePath<String>,
    super::ConsoleQuery(form): super::ConsoleQuery<BundleForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?;
    let parsed = parse_serial(&serial)?;
    let q = BundleQuery {
        version: form.version.trim().to_owned(),
    };
    match bundle::bundle(
        State(state.app.clone()),
        caller,
        headers,
        ApiPath(serial),
        ApiQuery(q),
    )
    .await
    {
        Ok(r) => Ok(r),
        Err(e) => refused(&state, &user, &parsed, e).await,
    }
}

/// A pasted signed document (a box's request, or its receipts).
#[derive(Debug, Deserialize)]
pub struct PastedForm {
    #[serde(default)]
    document: String,
}

/// Parses pasted JSON as `T`, in the console's words.
fn pasted<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, ApiError> {
    serde_json::from_str(text.trim()).map_err(|e| {
        ApiError::bad_request(
            "bad_document",
            format!("the pasted text is not {what}: {e}; paste the whole file"),
        )
    })
}

/// `POST /console/devices/{serial}/bundle-request`: the bundle for this box's signed request
/// (pasted from the file `np-agent request` wrote), through the API's own handler.
pub async fn bundle_request(
    State(state): State<ConsoleState>,
    headers: axum::http::HeaderMap,
    super::ConsolePath(serial): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<PastedForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?;
    let serial = parse_serial(&serial)?;
    let env: np_common::Envelope = match pasted(&form.document, "a signed request") {
        Ok(e) => e,
        Err(e) => return refused(&state, &user, &serial, e).await,
    };
    match np_common::device_docs::claimed_serial::<np_common::device_docs::DeviceRequest>(&env) {
        Ok(s) if s != serial => {
            let e = ApiError::bad_request(
                "other_box",
                format!("this request is from {s}, not {serial}; open that box's page"),
            );
            return refused(&state, &user, &serial, e).await;
        }
        _ => {}
    }
    match crate::http::offline::bundle_for_request(
        State(state.app.clone()),
        caller,
        headers,
        crate::http::error::ApiJson(env),
    )
    .await
    {
        Ok(r) => Ok(r),
        Err(e) => refused(&state, &user, &serial, e).await,
    }
}

/// `POST /console/devices/{serial}/receipts`: this box's signed receipts (one pasted file,
/// or a JSON list of them), through the API's own upload handler.
pub async fn receipts(
    State(state): State<ConsoleState>,
    super::ConsolePath(serial): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<PastedForm>,
) -> Result<Response, ConsoleError> {
    let caller = StaffCaller::check(user.caller.clone())?;
    let serial = parse_serial(&serial)?;
    let upload: np_common::api::ReceiptUpload = match pasted(&form.document, "a signed receipt") {
        Ok(u) => u,
        Err(e) => return refused(&state, &user, &serial, e).await,
    };
    let others: Vec<String> = upload
        .clone()
        .into_vec()
        .iter()
        .filter_map(|e| {
            np_common::device_docs::claimed_serial::<np_common::device_docs::Receipt>(e).ok()
        })
        .filter(|s| *s != serial)
        .map(|s| s.to_string())
        .collect();
    if let Some(s) = others.first() {
        let e = ApiError::bad_request(
            "other_box",
            format!("a pasted receipt is from {s}, not {serial}; upload it on that box's page"),
        );
        return refused(&state, &user, &serial, e).await;
    }
    match crate::http::offline::upload_receipts(
        State(state.app.clone()),
        caller,
        crate::http::error::ApiJson(upload),
    )
    .await
    {
        Ok(axum::Json(a)) => {
            let new = a.receipts.iter().filter(|r| r.new).count();
            let latest = a.receipts.iter().any(|r| r.latest);
            let mut text = format!(
                "{} receipt{} uploaded, {new} new.",
                a.receipts.len(),
                if a.receipts.len() == 1 { "" } else { "s" }
            );
            if latest {
                text.push_str(" The box's record follows the newest.");
            }
            Ok(done(&state, &user, &serial, text))
        }
        Err(e) => refused(&state, &user, &serial, e).await,
    }
}
