//! Support-case operations (docs/api.md, "Support cases"), shared by the JSON routes and
//! the staff console: open a case (only for a box covered today), add notes and status
//! changes, open, pause and end an RMA (a swap goes through the registry's swap rule in
//! the same transaction as the case), request diagnostics from the box, and file the
//! box's signed report. Each validates its request, changes the case (and the devices it
//! touches) in one store transaction that also writes the audit entries, and is durable
//! before it returns.

use crate::domain::case::{
    CaseEntry, CaseId, CaseRecord, CaseRuleError, CaseStatus, CaseView, Channel,
    DiagnosticsPending, EntryKind, Exclusion, RmaOutcome, Severity, MAX_CASE_TEXT, SETTABLE,
};
use crate::domain::device::{Coverage, DeviceRecord, PendingAction};
use crate::domain::registry::{self, SwapPlan, SwapRequest};
use crate::domain::validate;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{CaseChange, CaseChanged, CasePage, MutateError};
use axum::http::StatusCode;
use np_common::device_docs::Diagnostics;
use np_common::docs::{self, ActionKind, Status};
use np_common::Serial;
use serde::Deserialize;

/// `POST /api/v1/cases`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenCaseRequest {
    /// The box's serial.
    pub serial: String,
    /// The problem in a sentence.
    pub summary: String,
    /// `phone` (default), `email`, `message` or `remote`.
    pub channel: Option<String>,
    /// `low`, `normal` (default), `high` or `critical`.
    pub severity: Option<String>,
}

/// `POST /api/v1/cases/{id}/entries`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryRequest {
    /// `note` or `status`.
    pub kind: String,
    /// The note, or why the status changes (may be empty for a status change).
    #[serde(default)]
    pub text: String,
    /// The new status of a `status` entry.
    pub status: Option<String>,
}

/// `POST /api/v1/cases/{id}/rma`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RmaOpenRequest {
    /// A note for the case's history.
    pub note: Option<String>,
}

/// `PATCH /api/v1/cases/{id}/rma`: either `shortage`, or `outcome` with what it needs.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RmaChangeRequest {
    /// Parts are short (true: the clock stops) or arrived (false: it runs again).
    pub shortage: Option<bool>,
    /// `repaired`, `swapped` or `not_covered`: ends the RMA and resolves the case.
    pub outcome: Option<String>,
    /// The replacement box of `swapped`.
    pub replacement_serial: Option<String>,
    /// Its model, when not the one its serial names.
    pub replacement_model: Option<String>,
    /// Its public key (base64), so it can check in at once.
    pub replacement_device_key: Option<String>,
    /// Why `not_covered`: `shipping_damage`, `force_majeure`, `misuse_or_wear`,
    /// `unauthorized_repair` or `non_official_product`.
    pub exclusion: Option<String>,
    /// A note for the case's history.
    pub note: Option<String>,
}

/// Which cases a list shows.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Only this box's.
    pub serial: Option<Serial>,
    /// Only with this status.
    pub status: Option<CaseStatus>,
    /// Only those whose RMA is (or is not) overdue now.
    pub overdue: Option<bool>,
}

impl CaseFilter {
    /// Whether case `c` passes the filter's status and overdue conditions at `now` (the
    /// serial is chosen by the store's index).
    pub fn keeps(&self, c: &CaseRecord, now: jiff::Timestamp) -> bool {
        self.serial.as_ref().is_none_or(|s| &c.serial == s)
            && self.status.is_none_or(|s| c.status == s)
            && self.overdue.is_none_or(|o| c.overdue_at(now) == o)
    }
}

/// How many cases still need work, and how many of those have an RMA past due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaseCounts {
    /// Cases not resolved or closed.
    pub open: u64,
    /// Open RMAs past their due time.
    pub overdue: u64,
}

/// The fleet's case counts now.
pub async fn counts(state: &AppState) -> Result<CaseCounts, ApiError> {
    let now = state.now();
    let page = state
        .store
        .list_cases(None, None, usize::MAX, |c| c.status.is_active())
        .await?;
    Ok(CaseCounts {
        open: page.cases.len() as u64,
        overdue: page.cases.iter().filter(|c| c.overdue_at(now)).count() as u64,
    })
}

/// The actor of a box's own report in the audit log and in case entries.
pub fn device_actor(serial: &Serial) -> String {
    format!("device:{serial}")
}

/// The API error of a case rule.
pub fn rule_error(e: CaseRuleError) -> ApiError {
    let code = match &e {
        CaseRuleError::Closed { .. } => "case_closed",
        CaseRuleError::BadTransition { .. }
        | CaseRuleError::NoRma { .. }
        | CaseRuleError::RmaEnded { .. }
        | CaseRuleError::RmaExists { .. }
        | CaseRuleError::ShortageAlready { .. } => "bad_transition",
    };
    ApiError::conflict(code, e.to_string())
}

/// Parses a case id of a path or a document (422 `bad_case_id`).
pub fn case_id(s: &str) -> Result<CaseId, ApiError> {
    CaseId::parse(s).ok_or_else(|| {
        ApiError::unprocessable(
            "bad_case_id",
            format!(
                "{:?} is not a case id; case ids look like C-1042",
                s.chars().take(40).collect::<String>()
            ),
        )
    })
}

/// 404 for a case that does not exist.
pub fn no_case(id: CaseId) -> ApiError {
    ApiError::not_found(format!("there is no case {id}"))
        .with_details(serde_json::json!({"case": id}))
}

fn word<T: serde::de::DeserializeOwned>(
    code: &str,
    field: &str,
    value: &str,
    allowed: &[&str],
) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|_| {
        ApiError::unprocessable(
            code,
            format!(
                "{field} {:?} is not one of {}",
                value.chars().take(40).collect::<String>(),
                allowed.join(", ")
            ),
        )
    })
}

/// A status of a query or an entry (422 `bad_status`).
pub fn parse_status(s: &str) -> Result<CaseStatus, ApiError> {
    CaseStatus::parse(s).ok_or_else(|| {
        let all: Vec<&str> = CaseStatus::ALL.iter().map(|c| c.as_str()).collect();
        ApiError::unprocessable(
            "bad_status",
            format!(
                "status {:?} is not one of {}",
                s.chars().take(40).collect::<String>(),
                all.join(", ")
            ),
        )
    })
}

fn note_text(note: Option<&str>) -> Result<String, ApiError> {
    match note {
        Some(n) if !n.trim().is_empty() => validate::text("note", n, MAX_CASE_TEXT),
        _ => Ok(String::new()),
    }
}

/// Drops the box's diagnostics request when it is case `id`'s (the first record of
/// `recs`); answers whether there was one.
fn clear_box_request(recs: &mut [Option<DeviceRecord>], id: CaseId, now: jiff::Timestamp) -> bool {
    let Some(d) = recs.first_mut().and_then(Option::as_mut) else {
        return false;
    };
    if d.pending_diagnostics
        .as_ref()
        .and_then(|p| p.case.as_deref())
        != Some(id.to_string().as_str())
    {
        return false;
    }
    d.pending_diagnostics = None;
    d.updated_at = now;
    true
}

/// Withdraws case `c`'s pending diagnostics request, on the case and on its box (the
/// first record of `recs`), with a note saying why (none on a closed case, which nothing
/// else changes, unless it was closed by this very change). Answers whether anything was
/// pending.
fn withdraw_diagnostics(
    c: &mut CaseRecord,
    recs: &mut [Option<DeviceRecord>],
    by: &str,
    why: &str,
    now: jiff::Timestamp,
) -> bool {
    let note = c.status != CaseStatus::Closed
        || c.entries
            .last()
            .is_some_and(|e| e.at == now && e.status == Some(CaseStatus::Closed));
    let on_box = clear_box_request(recs, c.id, now);
    let Some(p) = c.diagnostics_pending.take() else {
        return on_box;
    };
    if note {
        c.push(CaseEntry {
            at: now,
            by: by.to_owned(),
            kind: EntryKind::Note,
            text: format!(
                "the diagnostics request of {} was withdrawn: {why}; a report the box sends for it is refused",
                p.issued_at
            ),
            status: None,
        });
    }
    true
}

/// Whether `d` may get support today: registered, active, covered (403 `revoked`,
/// `replaced` or `not_covered` naming the coverage end and that reinstatement comes
/// first).
pub fn require_supported(d: &DeviceRecord, today: jiff::civil::Date) -> Result<(), ApiError> {
    supported_for(d, today, "case")
}

/// [`require_supported`] for opening a `case` or an `rma` (what comes after the
/// reinstatement; details `for`).
fn supported_for(d: &DeviceRecord, today: jiff::civil::Date, what: &str) -> Result<(), ApiError> {
    let serial = &d.serial;
    let then = if what == "rma" {
        "then open the RMA"
    } else {
        "then open the case"
    };
    match d.status {
        Status::Revoked => {
            let why = d
                .status_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            return Err(ApiError::forbidden(
                "revoked",
                format!("device {serial} is revoked{why}; a revoked box gets no support"),
            )
            .with_details(serde_json::json!({"serial": serial, "status": d.status})));
        }
        Status::Replaced => {
            let by = d
                .replaced_by
                .as_ref()
                .map_or_else(|| "another box".to_owned(), Serial::to_string);
            return Err(ApiError::forbidden(
                "replaced",
                format!("device {serial} was replaced by {by}; support goes to {by}"),
            )
            .with_details(
                serde_json::json!({"serial": serial, "status": d.status, "replaced_by": d.replaced_by}),
            ));
        }
        Status::Active => {}
    }
    let coverage = d.coverage_on(today);
    let message = match coverage {
        Coverage::Covered => return Ok(()),
        Coverage::Expired => format!(
            "device {serial} is not covered: its coverage ended on {}, and there is no support after expiry; the gap must be paid first: extend it with reinstatement (\"reinstate\": true), {then}",
            d.coverage_end
        ),
        Coverage::NotYetStarted => format!(
            "device {serial} is not covered yet: its warranty starts on {}",
            d.purchase_date
        ),
    };
    Err(
        ApiError::forbidden("not_covered", message).with_details(serde_json::json!({
            "serial": serial,
            "coverage_end": d.coverage_end.to_string(),
            "coverage": coverage,
            "today": today.to_string(),
            "for": what,
        })),
    )
}

/// The view of a case now.
pub fn view(state: &AppState, c: CaseRecord) -> CaseView {
    CaseView::of(c, state.now(), &state.config.support)
}

/// Opens a case for a box covered today.
pub async fn open(
    state: &AppState,
    actor: &str,
    req: OpenCaseRequest,
) -> Result<CaseRecord, ApiError> {
    let serial = validate::serial(&req.serial)?;
    let summary = validate::text("summary", &req.summary, MAX_CASE_TEXT)?;
    let channel: Channel = word(
        "bad_channel",
        "channel",
        req.channel.as_deref().unwrap_or("phone"),
        &["phone", "email", "message", "remote"],
    )?;
    let severity: Severity = word(
        "bad_severity",
        "severity",
        req.severity.as_deref().unwrap_or("normal"),
        &["low", "normal", "high", "critical"],
    )?;
    let now = state.now();
    let today = state.today();
    let change = CaseChange::one(actor, "case_open", now);
    state
        .store
        .open_case(&serial, &change, |id, device| {
            let d = device.ok_or_else(|| registry::unknown(&serial))?;
            require_supported(d, today)?;
            Ok(CaseRecord::new(
                id,
                serial.clone(),
                actor,
                channel,
                summary.clone(),
                severity,
                now,
            ))
        })
        .await
        .map_err(MutateError::<ApiError>::into_inner)
}

/// The case `id`, or 404.
pub async fn get(state: &AppState, id: CaseId) -> Result<CaseRecord, ApiError> {
    state.store.case(id).await?.ok_or_else(|| no_case(id))
}

/// A page of cases, newest first.
pub async fn list(
    state: &AppState,
    filter: &CaseFilter,
    before: Option<CaseId>,
    limit: usize,
) -> Result<CasePage, ApiError> {
    let now = state.now();
    Ok(state
        .store
        .list_cases(filter.serial.as_ref(), before, limit, |c| {
            filter.keeps(c, now)
        })
        .await?)
}

/// Changes case `id` (and the devices `serials`) with `f`, audited as `action`.
async fn change_case<F>(
    state: &AppState,
    id: CaseId,
    serials: &[Serial],
    change: &CaseChange<'_>,
    f: F,
) -> Result<CaseChanged, ApiError>
where
    F: Fn(&mut CaseRecord, &mut [Option<DeviceRecord>]) -> Result<(), ApiError>,
{
    state
        .store
        .mutate_case(id, serials, change, f)
        .await
        .map_err(MutateError::<ApiError>::into_inner)?
        .ok_or_else(|| no_case(id))
}

/// Adds a note or a status change.
pub async fn add_entry(
    state: &AppState,
    actor: &str,
    id: CaseId,
    req: EntryRequest,
) -> Result<CaseRecord, ApiError> {
    let now = state.now();
    let (action, to) = match req.kind.as_str() {
        "note" => {
            if req.status.is_some() {
                return Err(ApiError::unprocessable(
                    "bad_entry",
                    "a note takes no status; send {\"kind\": \"status\", \"status\": ...} to change it",
                ));
            }
            ("case_note", None)
        }
        "status" => {
            let Some(s) = req.status.as_deref() else {
                return Err(ApiError::unprocessable(
                    "bad_entry",
                    "a status entry names the new status: {\"kind\": \"status\", \"status\": \"resolved\"}",
                ));
            };
            let to = parse_status(s)?;
            if !SETTABLE.contains(&to) {
                return Err(ApiError::conflict(
                    "bad_transition",
                    "a case enters rma only by opening an RMA (POST /api/v1/cases/{id}/rma)",
                ));
            }
            ("case_status", Some(to))
        }
        other => {
            return Err(ApiError::unprocessable(
                "bad_entry",
                format!(
                    "kind {:?} is not \"note\" or \"status\"",
                    other.chars().take(40).collect::<String>()
                ),
            ))
        }
    };
    let text = match to {
        None => validate::text("text", &req.text, MAX_CASE_TEXT)?,
        Some(_) => note_text(Some(&req.text))?,
    };
    let change = CaseChange {
        actor,
        action,
        device_action: action,
        at: now,
    };
    // A status that ends the case also withdraws its diagnostics request on the box.
    let ends = matches!(to, Some(CaseStatus::Resolved | CaseStatus::Closed));
    let serials = if ends {
        vec![get(state, id).await?.serial]
    } else {
        Vec::new()
    };
    let done = change_case(state, id, &serials, &change, |c, recs| {
        match to {
            None => c.note(actor, text.clone(), now),
            Some(to) => c.set_status(actor, to, text.clone(), now),
        }
        .map_err(rule_error)?;
        if let Some(to) = to.filter(|_| ends) {
            withdraw_diagnostics(c, recs, actor, &format!("the case is {to}"), now);
        }
        Ok(())
    })
    .await?;
    Ok(done.case)
}

/// Opens the case's RMA (the box must still be active and covered).
pub async fn open_rma(
    state: &AppState,
    actor: &str,
    id: CaseId,
    req: RmaOpenRequest,
) -> Result<CaseRecord, ApiError> {
    let note = note_text(req.note.as_deref())?;
    let case = get(state, id).await?;
    let now = state.now();
    let today = state.today();
    let change = CaseChange::one(actor, "rma_open", now);
    let done = change_case(
        state,
        id,
        std::slice::from_ref(&case.serial),
        &change,
        |c, recs| {
            c.require_not_closed().map_err(rule_error)?;
            let d = recs
                .first()
                .and_then(Option::as_ref)
                .ok_or_else(|| registry::unknown(&c.serial))?;
            supported_for(d, today, "rma")?;
            c.open_rma(actor, note.clone(), now).map_err(rule_error)
        },
    )
    .await?;
    Ok(done.case)
}

/// What a `PATCH .../rma` asks for, checked.
enum RmaChange {
    Shortage(bool),
    End {
        outcome: RmaOutcome,
        swap: Option<Box<SwapPlan>>,
        exclusion: Option<Exclusion>,
    },
}

fn rma_change(
    state: &AppState,
    case: &CaseRecord,
    req: &RmaChangeRequest,
) -> Result<RmaChange, ApiError> {
    let replacement_given = req.replacement_serial.is_some()
        || req.replacement_model.is_some()
        || req.replacement_device_key.is_some();
    match (req.shortage, req.outcome.as_deref()) {
        (Some(_), Some(_)) | (None, None) => Err(ApiError::unprocessable(
            "bad_rma_change",
            "send either {\"shortage\": true|false} or {\"outcome\": \"repaired\"|\"swapped\"|\"not_covered\"}",
        )),
        (Some(on), None) => {
            if replacement_given || req.exclusion.is_some() {
                return Err(ApiError::unprocessable(
                    "bad_rma_change",
                    "a shortage change takes only a note; the replacement and exclusion go with the outcome",
                ));
            }
            Ok(RmaChange::Shortage(on))
        }
        (None, Some(o)) => {
            let outcome = RmaOutcome::parse(o).ok_or_else(|| {
                ApiError::unprocessable(
                    "bad_outcome",
                    format!(
                        "outcome {:?} is not one of repaired, swapped, not_covered",
                        o.chars().take(40).collect::<String>()
                    ),
                )
            })?;
            match outcome {
                RmaOutcome::Swapped => {
                    let Some(new_serial) = req.replacement_serial.clone() else {
                        return Err(ApiError::unprocessable(
                            "bad_rma_change",
                            "a swap names the replacement box: replacement_serial",
                        ));
                    };
                    if req.exclusion.is_some() {
                        return Err(ApiError::unprocessable(
                            "bad_rma_change",
                            "an exclusion goes only with the outcome not_covered",
                        ));
                    }
                    let swap = SwapPlan::new(
                        state,
                        &case.serial,
                        &SwapRequest {
                            new_serial,
                            new_model: req.replacement_model.clone(),
                            new_device_key: req.replacement_device_key.clone(),
                            reason: format!("RMA of case {}", case.id),
                        },
                    )?;
                    Ok(RmaChange::End {
                        outcome,
                        swap: Some(Box::new(swap)),
                        exclusion: None,
                    })
                }
                RmaOutcome::NotCovered => {
                    if replacement_given {
                        return Err(ApiError::unprocessable(
                            "bad_rma_change",
                            "a replacement goes only with the outcome swapped",
                        ));
                    }
                    let e = req.exclusion.as_deref().unwrap_or_default();
                    let exclusion = Exclusion::parse(e).ok_or_else(|| {
                        ApiError::unprocessable(
                            "bad_exclusion",
                            format!(
                                "not_covered names one of the warranty's exclusions as exclusion: {} (got {:?})",
                                Exclusion::NAMES.join(", "),
                                e.chars().take(40).collect::<String>()
                            ),
                        )
                    })?;
                    Ok(RmaChange::End {
                        outcome,
                        swap: None,
                        exclusion: Some(exclusion),
                    })
                }
                RmaOutcome::Repaired => {
                    if replacement_given || req.exclusion.is_some() {
                        return Err(ApiError::unprocessable(
                            "bad_rma_change",
                            "a repair takes no replacement and no exclusion",
                        ));
                    }
                    Ok(RmaChange::End {
                        outcome,
                        swap: None,
                        exclusion: None,
                    })
                }
            }
        }
    }
}

/// Stops or restarts the RMA clock, or ends the RMA (resolving the case). A swap is
/// applied by the registry's swap rule to both boxes in the case's transaction.
pub async fn change_rma(
    state: &AppState,
    actor: &str,
    id: CaseId,
    req: RmaChangeRequest,
) -> Result<CaseChanged, ApiError> {
    let note = note_text(req.note.as_deref())?;
    let case = get(state, id).await?;
    let plan = rma_change(state, &case, &req)?;
    let now = state.now();
    let (action, device_action, serials) = match &plan {
        RmaChange::Shortage(_) => ("rma_shortage", "rma_shortage", Vec::new()),
        RmaChange::End { swap: Some(s), .. } => ("rma_end", "swap", s.serials().to_vec()),
        RmaChange::End { .. } => ("rma_end", "rma_end", vec![case.serial.clone()]),
    };
    let change = CaseChange {
        actor,
        action,
        device_action,
        at: now,
    };
    change_case(state, id, &serials, &change, |c, recs| match &plan {
        RmaChange::Shortage(on) => c
            .rma_shortage(actor, *on, note.clone(), now)
            .map_err(rule_error),
        RmaChange::End {
            outcome,
            swap,
            exclusion,
        } => {
            // The case's rules first: a swap must not happen for an RMA that ended.
            c.require_not_closed().map_err(rule_error)?;
            c.open_rma_mut().map_err(rule_error)?;
            if let Some(plan) = swap {
                plan.apply(state, recs, now)?;
            }
            c.end_rma(
                actor,
                *outcome,
                swap.as_ref().map(|p| p.new_serial().clone()),
                *exclusion,
                note.clone(),
                now,
            )
            .map_err(rule_error)?;
            // The case is resolved (a swapped box is gone, and the swap rule dropped its
            // requests already): its diagnostics request is withdrawn.
            let why = if swap.is_some() {
                "the box was swapped"
            } else {
                "the RMA ended and the case is resolved"
            };
            withdraw_diagnostics(c, recs, actor, why, now);
            Ok(())
        }
    })
    .await
}

/// Asks the case's box for diagnostics: a signed `diagnostics` action (with the case)
/// in the box's own diagnostics slot, delivered at a check-in after any older pending
/// action. Asking again on the same case replaces the request; a request pending for
/// another case of the box is refused (409 `diagnostics_pending`).
pub async fn request_diagnostics(
    state: &AppState,
    actor: &str,
    id: CaseId,
) -> Result<CaseChanged, ApiError> {
    let case = get(state, id).await?;
    let serial = case.serial.clone();
    let delivered = state.store.device_report(&serial).await?.delivered_action;
    let now = state.now();
    let change = CaseChange::one(actor, "diagnostics_request", now);
    let key = state.keys().entitlement.clone();
    change_case(state, id, std::slice::from_ref(&serial), &change, |c, recs| {
        c.require_not_closed().map_err(rule_error)?;
        if c.status == CaseStatus::Resolved {
            return Err(ApiError::conflict(
                "bad_transition",
                format!("case {id} is resolved; reopen it before asking its box for diagnostics"),
            ));
        }
        let d = recs
            .first_mut()
            .and_then(Option::as_mut)
            .ok_or_else(|| registry::unknown(&serial))?;
        registry::require_active(d, "ask")?;
        if d.device_key.is_none() {
            return Err(ApiError::conflict(
                "no_device_key",
                format!("device {serial} has no device key registered, so it can neither check in nor sign a diagnostics report; register its public key first"),
            )
            .with_details(serde_json::json!({"serial": serial, "for": "diagnostics"})));
        }
        if let Some(other) = d
            .pending_diagnostics
            .as_ref()
            .filter(|p| p.case.as_deref() != Some(&id.to_string()))
        {
            return Err(ApiError::conflict(
                "diagnostics_pending",
                format!(
                    "{serial} has not answered the diagnostics request of case {} yet (asked at {}); wait for it",
                    other.case.as_deref().unwrap_or("?"),
                    other.issued_at
                ),
            )
            .with_details(serde_json::json!({"case": other.case, "issued_at": other.issued_at})));
        }
        // Newer than anything the box was handed or will be, or it would ignore it.
        let floor = [&d.pending_action, &d.pending_diagnostics]
            .into_iter()
            .flatten()
            .map(|p| p.issued_at)
            .chain(delivered)
            .max();
        let issued_at = floor
            .filter(|f| *f >= now)
            .unwrap_or(now)
            .checked_add(jiff::SignedDuration::from_secs(1))
            .map_err(ApiError::internal)?;
        let action = docs::Action {
            serial: serial.clone(),
            action: ActionKind::Diagnostics,
            version: None,
            issued_at,
            case: Some(id.to_string()),
        };
        d.pending_diagnostics = Some(PendingAction {
            action: ActionKind::Diagnostics,
            version: None,
            issued_at,
            envelope: docs::sign(&action, &key),
            case: Some(id.to_string()),
        });
        d.updated_at = now;
        c.diagnostics_pending = Some(DiagnosticsPending {
            issued_at,
            requested_by: actor.to_owned(),
        });
        c.push(CaseEntry {
            at: now,
            by: actor.to_owned(),
            kind: EntryKind::DiagnosticsRequested,
            text: format!("diagnostics asked of {serial}; the box sends them after its next check-in"),
            status: None,
        });
        Ok(())
    })
    .await
}

/// Files a box's verified diagnostics report on its case: an entry of kind `diagnostics`
/// whose text is the report as JSON; the pending request (case and box) is cleared, and
/// the case keeps its [`crate::domain::case::MAX_KEPT_REPORTS`] newest reports whole. 404 `no_such_case` for a
/// case that is not this box's; 409 `no_diagnostics_pending` when the case asked for
/// none; 409 `stale_diagnostics` when the report answers another (older) request than the
/// pending one; 409 `case_closed` for a closed case (its request on the box is dropped all
/// the same, so it cannot block the box).
pub async fn file_diagnostics(
    state: &AppState,
    device: &DeviceRecord,
    report: &Diagnostics,
) -> Result<CaseRecord, ApiError> {
    let serial = &device.serial;
    let no_such = |case: &str| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_case",
            format!("the report names case {case:?}, which is not a case of {serial}"),
        )
    };
    let id = CaseId::parse(&report.case).ok_or_else(|| no_such(&report.case))?;
    match state.store.case(id).await? {
        Some(c) if &c.serial == serial => {}
        _ => return Err(no_such(&report.case)),
    }
    let text = serde_json::to_string(report).map_err(ApiError::internal)?;
    let now = state.now();
    let actor = device_actor(serial);
    let change = CaseChange::one(&actor, "diagnostics_report", now);
    let closed = std::sync::atomic::AtomicBool::new(false);
    let done = change_case(state, id, std::slice::from_ref(serial), &change, |c, recs| {
        closed.store(false, std::sync::atomic::Ordering::Relaxed);
        if c.status == CaseStatus::Closed {
            // Refused, but the request must not outlive the case on the box.
            clear_box_request(recs, id, now);
            closed.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        let Some(pending) = c.diagnostics_pending.as_ref() else {
            return Err(ApiError::conflict(
                "no_diagnostics_pending",
                format!("case {id} is not waiting for diagnostics from {serial}; staff ask for them first"),
            ));
        };
        if pending.issued_at != report.requested_at {
            return Err(ApiError::conflict(
                "stale_diagnostics",
                format!(
                    "the report answers the request of {}, but case {id} waits for the one of {}; the box sends a new report for that one",
                    report.requested_at, pending.issued_at
                ),
            )
            .with_details(serde_json::json!({
                "case": id,
                "requested_at": report.requested_at,
                "pending_issued_at": pending.issued_at,
            })));
        }
        c.diagnostics_pending = None;
        clear_box_request(recs, id, now);
        c.push(CaseEntry {
            at: now,
            by: actor.clone(),
            kind: EntryKind::Diagnostics,
            text: text.clone(),
            status: None,
        });
        c.bound_reports();
        Ok(())
    })
    .await?;
    if closed.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(rule_error(CaseRuleError::Closed { id }));
    }
    Ok(done.case)
}

/// Cancels case `id`'s pending diagnostics request, on the case and on its box, with a
/// note (`DELETE /api/v1/cases/{id}/diagnostics`, also reached by `DELETE
/// /api/v1/devices/{serial}/actions` when the box has no other pending action). 409
/// `no_diagnostics_pending` when nothing is pending.
pub async fn cancel_diagnostics(
    state: &AppState,
    actor: &str,
    id: CaseId,
) -> Result<CaseChanged, ApiError> {
    let case = get(state, id).await?;
    let now = state.now();
    let change = CaseChange::one(actor, "diagnostics_cancel", now);
    change_case(
        state,
        id,
        std::slice::from_ref(&case.serial),
        &change,
        |c, recs| {
            if !withdraw_diagnostics(c, recs, actor, &format!("cancelled by {actor}"), now) {
                return Err(ApiError::conflict(
                    "no_diagnostics_pending",
                    format!("case {id} is not waiting for diagnostics; there is nothing to cancel"),
                ));
            }
            Ok(())
        },
    )
    .await
}

/// After a box was revoked or replaced (which drops its requests): withdraws the
/// diagnostics requests its cases still wait for, each audited as `diagnostics_cancel`
/// with a note. A failure is logged: the revocation or swap stands.
pub async fn box_gone(state: &AppState, actor: &str, serial: &Serial, why: &str) {
    let waiting = match state
        .store
        .list_cases(Some(serial), None, usize::MAX, |c| {
            c.diagnostics_pending.is_some()
        })
        .await
    {
        Ok(page) => page.cases,
        Err(e) => {
            tracing::warn!(serial = %serial, error = %e, "could not list the box's cases to withdraw their diagnostics requests");
            return;
        }
    };
    for case in waiting {
        let now = state.now();
        let change = CaseChange::one(actor, "diagnostics_cancel", now);
        let r = change_case(
            state,
            case.id,
            std::slice::from_ref(serial),
            &change,
            |c, recs| {
                withdraw_diagnostics(c, recs, actor, why, now);
                Ok(())
            },
        )
        .await;
        if let Err(e) = r {
            tracing::warn!(case = %case.id, serial = %serial, error = %e, "could not withdraw the case's diagnostics request");
        }
    }
}

/// Whether the box is covered today (for pages that show it beside a case).
pub fn covered_today(state: &AppState, d: &DeviceRecord) -> bool {
    d.coverage_on(state.today()) == Coverage::Covered && d.status == Status::Active
}
