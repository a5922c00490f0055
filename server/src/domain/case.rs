//! Support cases and RMA (docs/api.md, "Support cases"): the case record as stored, its
//! status machine, the RMA's five-day clock with component-shortage pauses, and the view
//! of a case the API answers (with `overdue` and first-response time computed for "now").
//! Pure: no store, no HTTP, time comes in as a value.
//!
//! Architecture Invariant: a case's status changes only through [`status_change`] and the
//! RMA functions here; `rma` is entered only by [`CaseRecord::open_rma`] and left only by
//! [`CaseRecord::end_rma`] (which resolves the case); nothing changes a `closed` case.

use crate::domain::service_hours::ServiceHours;
use jiff::{SignedDuration, Timestamp};
use np_common::Serial;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How long a repair may take, the clock stopped while parts are short.
pub const RMA_DAYS: i64 = 5;

/// The case numbers start above this (ids read `C-1001`, `C-1002`, ...).
pub const FIRST_CASE_NUMBER: u64 = 1001;

/// The longest summary, note or status text of a case.
pub const MAX_CASE_TEXT: usize = 4000;

/// How many diagnostics reports a case keeps whole: when a newer one is filed, the text of
/// the oldest is replaced by [`DROPPED_REPORT`] (the entry stays, with its time).
pub const MAX_KEPT_REPORTS: usize = 10;

/// The text of a diagnostics entry whose report was dropped to bound the case.
pub const DROPPED_REPORT: &str =
    "(report dropped: a case keeps only its 10 newest diagnostics reports)";

/// How many characters of an entry's text a list of cases carries (the case itself has
/// them all).
pub const LIST_PREVIEW_CHARS: usize = 200;

/// A case id: `C-` and a number unique across replicas (a PostgreSQL sequence, or sled's
/// id generator). Serialized as its text, `C-1042`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaseId(u64);

impl CaseId {
    /// The id of case number `n`.
    pub fn from_number(n: u64) -> CaseId {
        CaseId(n)
    }

    /// Its number (the store's key).
    pub fn number(self) -> u64 {
        self.0
    }

    /// Parses `C-1042` (a lower-case `c` and spaces around are accepted).
    pub fn parse(s: &str) -> Option<CaseId> {
        let s = s.trim();
        let digits = s.strip_prefix("C-").or_else(|| s.strip_prefix("c-"))?;
        if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(CaseId)
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C-{}", self.0)
    }
}

impl Serialize for CaseId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CaseId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CaseId::parse(&s).ok_or_else(|| serde::de::Error::custom("a case id looks like C-1042"))
    }
}

impl utoipa::PartialSchema for CaseId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .examples([serde_json::json!("C-1042")])
            .description(Some("A support case id: C- and a number"))
            .into()
    }
}

impl utoipa::ToSchema for CaseId {}

/// How the customer reached the vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// By telephone.
    Phone,
    /// By e-mail.
    Email,
    /// By instant message.
    Message,
    /// Seen remotely (for example in a box's report).
    Remote,
}

/// How bad the problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Low.
    Low,
    /// Normal (the default).
    Normal,
    /// High.
    High,
    /// The box is down.
    Critical,
}

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Opened, being worked on.
    Open,
    /// Staff are connected to the box.
    RemoteSession,
    /// The vendor waits for the customer.
    WaitingCustomer,
    /// The box is being repaired or swapped (only through the RMA route).
    Rma,
    /// Solved; may be reopened or closed.
    Resolved,
    /// Done for good: nothing changes it any more.
    Closed,
}

impl CaseStatus {
    /// Every status, in the order of the docs.
    pub const ALL: [CaseStatus; 6] = [
        CaseStatus::Open,
        CaseStatus::RemoteSession,
        CaseStatus::WaitingCustomer,
        CaseStatus::Rma,
        CaseStatus::Resolved,
        CaseStatus::Closed,
    ];

    /// The wire name (`remote_session`).
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::RemoteSession => "remote_session",
            CaseStatus::WaitingCustomer => "waiting_customer",
            CaseStatus::Rma => "rma",
            CaseStatus::Resolved => "resolved",
            CaseStatus::Closed => "closed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<CaseStatus> {
        CaseStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the case still needs work (not resolved or closed).
    pub fn is_active(self) -> bool {
        !matches!(self, CaseStatus::Resolved | CaseStatus::Closed)
    }
}

impl fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an entry of a case records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A note by staff.
    Note,
    /// A status change by staff (`status` names the new status).
    Status,
    /// An RMA step: opened, shortage on or off, ended.
    Rma,
    /// Staff asked the box for diagnostics.
    DiagnosticsRequested,
    /// The box's diagnostics report (`text` is the report as JSON).
    Diagnostics,
}

/// One line of a case's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseEntry {
    /// When.
    pub at: Timestamp,
    /// The token name of the staff member, or `device` for the box's own report.
    pub by: String,
    /// What it records.
    pub kind: EntryKind,
    /// The note, or what happened in words (a report: its JSON).
    pub text: String,
    /// The status the case moved to, if it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CaseStatus>,
}

/// How an RMA ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RmaOutcome {
    /// The box was repaired and returned.
    Repaired,
    /// The box was swapped for a replacement (`replacement_serial`).
    Swapped,
    /// The damage is not covered (`exclusion` says why).
    NotCovered,
}

impl RmaOutcome {
    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<RmaOutcome> {
        match s {
            "repaired" => Some(RmaOutcome::Repaired),
            "swapped" => Some(RmaOutcome::Swapped),
            "not_covered" => Some(RmaOutcome::NotCovered),
            _ => None,
        }
    }
}

/// The warranty page's exclusions: what the warranty does not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Damage in shipping from negligent packing.
    ShippingDamage,
    /// Natural disaster, fire, flood or other force majeure.
    ForceMajeure,
    /// Misuse, or wear and tear.
    MisuseOrWear,
    /// Repaired or opened by someone not authorized, or uncertified parts.
    UnauthorizedRepair,
    /// Not an official product (no standard serial).
    NonOfficialProduct,
}

impl Exclusion {
    /// Every exclusion's wire name.
    pub const NAMES: [&'static str; 5] = [
        "shipping_damage",
        "force_majeure",
        "misuse_or_wear",
        "unauthorized_repair",
        "non_official_product",
    ];

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Exclusion> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// A return for repair, as stored. `due` already includes every finished shortage pause;
/// a pause in progress moves it further in the view ([`Rma::view`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rma {
    /// When the RMA was opened.
    pub opened_at: Timestamp,
    /// `opened_at` + 5 days + the time stopped by finished shortages.
    pub due: Timestamp,
    /// Since when parts are short (the clock is stopped), if they are.
    pub shortage_since: Option<Timestamp>,
    /// Seconds the clock was stopped by finished shortages.
    pub stopped_secs: i64,
    /// How it ended (none while open).
    pub outcome: Option<RmaOutcome>,
    /// The replacement box of a swap.
    pub replacement_serial: Option<Serial>,
    /// Why it was not covered.
    pub exclusion: Option<Exclusion>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
}

/// The RMA of a case as the API answers it, as of "now".
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RmaView {
    /// When the RMA was opened.
    pub opened_at: Timestamp,
    /// When the repair is due: `opened_at` + 5 days, moved by the time parts were short
    /// (also by a shortage still going on, up to now).
    pub due: Timestamp,
    /// Whether parts are short now (the clock is stopped).
    pub shortage: bool,
    /// Since when, if they are.
    pub shortage_since: Option<Timestamp>,
    /// Seconds the clock has been stopped in all, up to now.
    pub stopped_secs: i64,
    /// Open and past `due`.
    pub overdue: bool,
    /// How it ended (null while open).
    pub outcome: Option<RmaOutcome>,
    /// The replacement box of a swap.
    pub replacement_serial: Option<Serial>,
    /// Why it was not covered.
    pub exclusion: Option<Exclusion>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
}

fn secs(d: SignedDuration) -> i64 {
    d.as_secs().max(0)
}

fn plus_secs(t: Timestamp, s: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(s)).unwrap_or(t)
}

impl Rma {
    /// A new RMA opened at `now`, due five days later.
    pub fn open(now: Timestamp) -> Rma {
        Rma {
            opened_at: now,
            due: plus_secs(now, RMA_DAYS * 86_400),
            shortage_since: None,
            stopped_secs: 0,
            outcome: None,
            replacement_serial: None,
            exclusion: None,
            ended_at: None,
        }
    }

    /// The due time as of `now` (a shortage in progress moves it).
    pub fn due_at(&self, now: Timestamp) -> Timestamp {
        match self.shortage_since {
            Some(since) => plus_secs(self.due, secs(now.duration_since(since))),
            None => self.due,
        }
    }

    /// Open and past its due time at `now`.
    pub fn overdue_at(&self, now: Timestamp) -> bool {
        self.outcome.is_none() && now > self.due_at(now)
    }

    /// The view as of `now`.
    pub fn view(&self, now: Timestamp) -> RmaView {
        let running = self
            .shortage_since
            .map_or(0, |since| secs(now.duration_since(since)));
        RmaView {
            opened_at: self.opened_at,
            due: self.due_at(now),
            shortage: self.shortage_since.is_some(),
            shortage_since: self.shortage_since,
            stopped_secs: self.stopped_secs + running,
            overdue: self.overdue_at(now),
            outcome: self.outcome,
            replacement_serial: self.replacement_serial.clone(),
            exclusion: self.exclusion,
            ended_at: self.ended_at,
        }
    }

    /// Stops (`on`) or restarts the clock at `now`.
    pub fn set_shortage(&mut self, on: bool, now: Timestamp) -> Result<(), CaseRuleError> {
        match (on, self.shortage_since) {
            (true, Some(since)) => Err(CaseRuleError::ShortageAlready { on, since }),
            (false, None) => Err(CaseRuleError::ShortageAlready {
                on,
                since: self.opened_at,
            }),
            (true, None) => {
                self.shortage_since = Some(now);
                Ok(())
            }
            (false, Some(since)) => {
                let stopped = secs(now.duration_since(since));
                self.stopped_secs += stopped;
                self.due = plus_secs(self.due, stopped);
                self.shortage_since = None;
                Ok(())
            }
        }
    }
}

/// What the server asked a box to gather for this case and has not received yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DiagnosticsPending {
    /// The `issued_at` of the signed `diagnostics` action.
    pub issued_at: Timestamp,
    /// Who asked.
    pub requested_by: String,
}

/// One support case, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// `C-1042`.
    pub id: CaseId,
    /// The box it is about.
    pub serial: Serial,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// Who opened it (token name).
    pub opened_by: String,
    /// How the customer reached the vendor.
    pub channel: Channel,
    /// The problem in a sentence.
    pub summary: String,
    /// How bad it is.
    pub severity: Severity,
    /// Where it stands.
    pub status: CaseStatus,
    /// Its history, oldest first.
    pub entries: Vec<CaseEntry>,
    /// The first answer by staff (docs/api.md: the first entry staff add after opening,
    /// whatever its kind, or none yet).
    pub first_response_at: Option<Timestamp>,
    /// The return for repair, once opened.
    pub rma: Option<Rma>,
    /// A diagnostics request the box has not answered yet.
    #[serde(default)]
    pub diagnostics_pending: Option<DiagnosticsPending>,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A case rule that refused a change (each maps to one API error in `http::cases`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseRuleError {
    /// Nothing changes a closed case.
    #[error("case {id} is closed; nothing can be added to it. Open a new case")]
    Closed {
        /// The case.
        id: CaseId,
    },
    /// A status change the status machine does not allow.
    #[error("case {id} cannot go from {from} to {to}: {why}")]
    BadTransition {
        /// The case.
        id: CaseId,
        /// Its status.
        from: CaseStatus,
        /// The status asked for.
        to: CaseStatus,
        /// The rule.
        why: &'static str,
    },
    /// The case has no RMA to change.
    #[error("case {id} has no RMA; open one first")]
    NoRma {
        /// The case.
        id: CaseId,
    },
    /// The RMA ended already.
    #[error("the RMA of case {id} ended already; it cannot change any more")]
    RmaEnded {
        /// The case.
        id: CaseId,
    },
    /// The case had an RMA already.
    #[error(
        "case {id} has had an RMA already; a case has one, so open a new case for another return"
    )]
    RmaExists {
        /// The case.
        id: CaseId,
    },
    /// The shortage is already as asked.
    #[error("{}", if *on { format!("parts are already short (from {since} on); the clock is stopped") } else { "parts are not short; the clock is running".to_owned() })]
    ShortageAlready {
        /// What was asked.
        on: bool,
        /// Since when parts are short.
        since: Timestamp,
    },
}

/// The statuses a staff status entry may set (`rma` comes only through the RMA route).
pub const SETTABLE: [CaseStatus; 5] = [
    CaseStatus::Open,
    CaseStatus::RemoteSession,
    CaseStatus::WaitingCustomer,
    CaseStatus::Resolved,
    CaseStatus::Closed,
];

/// The status machine of staff status entries: whether `from` may go to `to`.
///
/// - `open`, `remote_session`, `waiting_customer` go to each other, `resolved` or `closed`;
/// - `rma` is entered and left only through the RMA route (ending it resolves the case);
/// - `resolved` goes back to `open` (reopened) or to `closed`;
/// - `closed` is final.
pub fn status_change(id: CaseId, from: CaseStatus, to: CaseStatus) -> Result<(), CaseRuleError> {
    use CaseStatus::*;
    let bad = |why| Err(CaseRuleError::BadTransition { id, from, to, why });
    match (from, to) {
        (Closed, _) => Err(CaseRuleError::Closed { id }),
        (_, Rma) => bad("a case enters rma only by opening an RMA"),
        (Rma, _) => bad("an open RMA ends only with its outcome, which resolves the case"),
        (f, t) if f == t => bad("it is there already"),
        (Open | RemoteSession | WaitingCustomer, Open | RemoteSession | WaitingCustomer) => Ok(()),
        (Open | RemoteSession | WaitingCustomer, Resolved | Closed) => Ok(()),
        (Resolved, Open | Closed) => Ok(()),
        (Resolved, _) => bad("a resolved case is reopened (open) or closed"),
    }
}

impl CaseRecord {
    /// A new open case with no entries.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: CaseId,
        serial: Serial,
        opened_by: &str,
        channel: Channel,
        summary: String,
        severity: Severity,
        now: Timestamp,
    ) -> CaseRecord {
        CaseRecord {
            id,
            serial,
            opened_at: now,
            opened_by: opened_by.to_owned(),
            channel,
            summary,
            severity,
            status: CaseStatus::Open,
            entries: Vec::new(),
            first_response_at: None,
            rma: None,
            diagnostics_pending: None,
            updated_at: now,
        }
    }

    /// Refuses any change of a closed case.
    pub fn require_not_closed(&self) -> Result<(), CaseRuleError> {
        if self.status == CaseStatus::Closed {
            return Err(CaseRuleError::Closed { id: self.id });
        }
        Ok(())
    }

    /// Appends an entry; the first one by staff is the first response.
    pub fn push(&mut self, entry: CaseEntry) {
        if entry.kind != EntryKind::Diagnostics && self.first_response_at.is_none() {
            self.first_response_at = Some(entry.at);
        }
        self.updated_at = entry.at;
        self.entries.push(entry);
    }

    /// Keeps the newest [`MAX_KEPT_REPORTS`] diagnostics reports whole; the older ones'
    /// texts become [`DROPPED_REPORT`]. Answers how many were dropped now.
    pub fn bound_reports(&mut self) -> usize {
        let mut kept = 0;
        let mut dropped = 0;
        for e in self.entries.iter_mut().rev() {
            if e.kind != EntryKind::Diagnostics || e.text == DROPPED_REPORT {
                continue;
            }
            kept += 1;
            if kept > MAX_KEPT_REPORTS {
                e.text = DROPPED_REPORT.to_owned();
                dropped += 1;
            }
        }
        dropped
    }

    /// A note by staff.
    pub fn note(&mut self, by: &str, text: String, now: Timestamp) -> Result<(), CaseRuleError> {
        self.require_not_closed()?;
        self.push(CaseEntry {
            at: now,
            by: by.to_owned(),
            kind: EntryKind::Note,
            text,
            status: None,
        });
        Ok(())
    }

    /// A status change by staff, with its text.
    pub fn set_status(
        &mut self,
        by: &str,
        to: CaseStatus,
        text: String,
        now: Timestamp,
    ) -> Result<(), CaseRuleError> {
        status_change(self.id, self.status, to)?;
        self.status = to;
        self.push(CaseEntry {
            at: now,
            by: by.to_owned(),
            kind: EntryKind::Status,
            text,
            status: Some(to),
        });
        Ok(())
    }

    /// Opens the case's RMA: the case moves to `rma`, the clock starts.
    pub fn open_rma(
        &mut self,
        by: &str,
        note: String,
        now: Timestamp,
    ) -> Result<(), CaseRuleError> {
        self.require_not_closed()?;
        if self.rma.is_some() {
            return Err(CaseRuleError::RmaExists { id: self.id });
        }
        if !matches!(
            self.status,
            CaseStatus::Open | CaseStatus::RemoteSession | CaseStatus::WaitingCustomer
        ) {
            return Err(CaseRuleError::BadTransition {
                id: self.id,
                from: self.status,
                to: CaseStatus::Rma,
                why: "reopen the case first",
            });
        }
        let rma = Rma::open(now);
        let text = join(&format!("RMA opened; repair due by {}", rma.due), &note);
        self.rma = Some(rma);
        self.status = CaseStatus::Rma;
        self.push(CaseEntry {
            at: now,
            by: by.to_owned(),
            kind: EntryKind::Rma,
            text,
            status: Some(CaseStatus::Rma),
        });
        Ok(())
    }

    /// The open RMA (refusing a case without one, or one that ended).
    pub fn open_rma_mut(&mut self) -> Result<&mut Rma, CaseRuleError> {
        let id = self.id;
        match self.rma.as_mut() {
            None => Err(CaseRuleError::NoRma { id }),
            Some(r) if r.outcome.is_some() => Err(CaseRuleError::RmaEnded { id }),
            Some(r) => Ok(r),
        }
    }

    /// Parts short (`on`) or arrived: stops or restarts the RMA clock.
    pub fn rma_shortage(
        &mut self,
        by: &str,
        on: bool,
        note: String,
        now: Timestamp,
    ) -> Result<(), CaseRuleError> {
        self.require_not_closed()?;
        let rma = self.open_rma_mut()?;
        rma.set_shortage(on, now)?;
        let what = if on {
            "parts are short: the repair clock is stopped".to_owned()
        } else {
            format!(
                "parts arrived: the repair clock runs again, due by {}",
                rma.due
            )
        };
        let text = join(&what, &note);
        self.push(CaseEntry {
            at: now,
            by: by.to_owned(),
            kind: EntryKind::Rma,
            text,
            status: None,
        });
        Ok(())
    }

    /// Ends the RMA with its outcome (a shortage in progress ends with it) and resolves
    /// the case. The caller checked the outcome's own rules (replacement, exclusion).
    pub fn end_rma(
        &mut self,
        by: &str,
        outcome: RmaOutcome,
        replacement: Option<Serial>,
        exclusion: Option<Exclusion>,
        note: String,
        now: Timestamp,
    ) -> Result<(), CaseRuleError> {
        self.require_not_closed()?;
        let rma = self.open_rma_mut()?;
        if rma.shortage_since.is_some() {
            rma.set_shortage(false, now)?;
        }
        rma.outcome = Some(outcome);
        rma.replacement_serial = replacement.clone();
        rma.exclusion = exclusion;
        rma.ended_at = Some(now);
        let what = match (outcome, &replacement, exclusion) {
            (RmaOutcome::Swapped, Some(r), _) => format!("RMA ended: swapped for {r}"),
            (RmaOutcome::NotCovered, _, Some(e)) => format!(
                "RMA ended: not covered ({})",
                crate::domain::words::wire_name(&e)
            ),
            (RmaOutcome::Repaired, _, _) => "RMA ended: repaired".to_owned(),
            (o, _, _) => format!("RMA ended: {}", crate::domain::words::wire_name(&o)),
        };
        self.status = CaseStatus::Resolved;
        self.push(CaseEntry {
            at: now,
            by: by.to_owned(),
            kind: EntryKind::Rma,
            text: join(&what, &note),
            status: Some(CaseStatus::Resolved),
        });
        Ok(())
    }

    /// Open and its RMA past due at `now`.
    pub fn overdue_at(&self, now: Timestamp) -> bool {
        self.rma.as_ref().is_some_and(|r| r.overdue_at(now))
    }

    /// The record as an audit snapshot: the case without its entries' texts (a report can
    /// be 256 KiB), with their count and the newest entry cut to 1 KiB.
    pub fn snapshot(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.insert("entries".into(), self.entries.len().into());
            if let Some(last) = self.entries.last() {
                let mut e = last.clone();
                if e.text.len() > 1024 {
                    let mut cut = 1024;
                    while !e.text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    e.text.truncate(cut);
                    e.text.push('…');
                }
                o.insert(
                    "last_entry".into(),
                    serde_json::to_value(e).unwrap_or_default(),
                );
            }
        }
        v
    }
}

fn join(what: &str, note: &str) -> String {
    if note.is_empty() {
        what.to_owned()
    } else {
        format!("{what}. {note}")
    }
}

/// A case as the API answers it, as of "now".
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CaseView {
    /// `C-1042`.
    pub id: CaseId,
    /// The box it is about.
    pub serial: Serial,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// Who opened it.
    pub opened_by: String,
    /// How the customer reached the vendor.
    pub channel: Channel,
    /// The problem.
    pub summary: String,
    /// How bad.
    pub severity: Severity,
    /// Where it stands.
    pub status: CaseStatus,
    /// Its history, oldest first.
    pub entries: Vec<CaseEntry>,
    /// The first entry staff added after opening (a note, a status change, an RMA step or
    /// a diagnostics request), or null.
    pub first_response_at: Option<Timestamp>,
    /// Minutes of service hours from opening to the first response (null until then).
    pub first_response_service_minutes: Option<i64>,
    /// While nobody has answered an active case: minutes of service hours it has waited
    /// so far (null once answered, resolved or closed).
    pub waiting_service_minutes: Option<i64>,
    /// The return for repair, if any.
    pub rma: Option<RmaView>,
    /// A diagnostics request the box has not answered yet.
    pub diagnostics_pending: Option<DiagnosticsPending>,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl CaseView {
    /// The view as a list carries it: each entry's text cut to [`LIST_PREVIEW_CHARS`]
    /// characters (and `…`), so a list does not carry every report whole.
    pub fn summarized(mut self) -> CaseView {
        for e in &mut self.entries {
            if e.text.chars().count() > LIST_PREVIEW_CHARS {
                let mut cut: String = e.text.chars().take(LIST_PREVIEW_CHARS).collect();
                cut.push('…');
                e.text = cut;
            }
        }
        self
    }

    /// The view of `c` at `now`, first response counted in `hours`.
    pub fn of(c: CaseRecord, now: Timestamp, hours: &ServiceHours) -> CaseView {
        let first_response_service_minutes = c
            .first_response_at
            .map(|at| hours.service_seconds(c.opened_at, at) / 60);
        let waiting_service_minutes = (c.first_response_at.is_none() && c.status.is_active())
            .then(|| hours.service_seconds(c.opened_at, now) / 60);
        CaseView {
            rma: c.rma.as_ref().map(|r| r.view(now)),
            id: c.id,
            serial: c.serial,
            opened_at: c.opened_at,
            opened_by: c.opened_by,
            channel: c.channel,
            summary: c.summary,
            severity: c.severity,
            status: c.status,
            entries: c.entries,
            first_response_at: c.first_response_at,
            first_response_service_minutes,
            waiting_service_minutes,
            diagnostics_pending: c.diagnostics_pending,
            updated_at: c.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn case() -> CaseRecord {
        CaseRecord::new(
            CaseId::from_number(1042),
            Serial::parse("NR-2000-123456-4").unwrap(),
            "alice",
            Channel::Phone,
            "disk full".into(),
            Severity::Normal,
            t("2026-12-01T02:00:00Z"),
        )
    }

    #[test]
    fn ids_read_and_write_as_c_and_a_number() {
        let id = CaseId::parse("C-1042").unwrap();
        assert_eq!(id.number(), 1042);
        assert_eq!(id.to_string(), "C-1042");
        assert_eq!(CaseId::parse(" c-7 "), Some(CaseId::from_number(7)));
        for bad in [
            "1042",
            "C-",
            "C-12a",
            "D-1",
            "C--1",
            "C-99999999999999999999",
        ] {
            assert_eq!(CaseId::parse(bad), None, "{bad}");
        }
        assert_eq!(serde_json::to_value(id).unwrap(), "C-1042");
        let back: CaseId = serde_json::from_value(serde_json::json!("C-1042")).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn the_status_machine_allows_what_the_docs_say_and_refuses_the_rest() {
        use CaseStatus::*;
        let id = CaseId::from_number(1);
        let mut allowed = Vec::new();
        for from in CaseStatus::ALL {
            for to in CaseStatus::ALL {
                if status_change(id, from, to).is_ok() {
                    allowed.push((from, to));
                }
            }
        }
        let expect = vec![
            (Open, RemoteSession),
            (Open, WaitingCustomer),
            (Open, Resolved),
            (Open, Closed),
            (RemoteSession, Open),
            (RemoteSession, WaitingCustomer),
            (RemoteSession, Resolved),
            (RemoteSession, Closed),
            (WaitingCustomer, Open),
            (WaitingCustomer, RemoteSession),
            (WaitingCustomer, Resolved),
            (WaitingCustomer, Closed),
            (Resolved, Open),
            (Resolved, Closed),
        ];
        assert_eq!(allowed, expect);
        assert_eq!(
            status_change(id, Closed, Open),
            Err(CaseRuleError::Closed { id })
        );
        assert!(matches!(
            status_change(id, Rma, Resolved),
            Err(CaseRuleError::BadTransition { .. })
        ));
    }

    #[test]
    fn the_first_staff_entry_is_the_first_response_and_a_box_report_is_not() {
        let mut c = case();
        c.push(CaseEntry {
            at: t("2026-12-01T03:00:00Z"),
            by: "device".into(),
            kind: EntryKind::Diagnostics,
            text: "{}".into(),
            status: None,
        });
        assert_eq!(c.first_response_at, None);
        c.note("bob", "called back".into(), t("2026-12-01T04:00:00Z"))
            .unwrap();
        c.note("bob", "again".into(), t("2026-12-01T05:00:00Z"))
            .unwrap();
        assert_eq!(c.first_response_at, Some(t("2026-12-01T04:00:00Z")));
        c.set_status(
            "bob",
            CaseStatus::Closed,
            String::new(),
            t("2026-12-01T06:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            c.note("bob", "late".into(), t("2026-12-01T07:00:00Z")),
            Err(CaseRuleError::Closed { id: c.id })
        );
    }

    #[test]
    fn a_shortage_stops_the_clock_and_moves_due_by_the_time_stopped() {
        let mut c = case();
        let open = t("2026-12-01T00:00:00Z");
        c.open_rma("alice", String::new(), open).unwrap();
        assert_eq!(c.status, CaseStatus::Rma);
        let r = c.rma.clone().unwrap();
        assert_eq!(r.due, t("2026-12-06T00:00:00Z"));
        assert!(!r.overdue_at(t("2026-12-06T00:00:00Z")));
        assert!(r.overdue_at(t("2026-12-06T00:00:01Z")));
        // Short for 2 days from day 1.
        c.rma_shortage("alice", true, String::new(), t("2026-12-02T00:00:00Z"))
            .unwrap();
        let during = c.rma.as_ref().unwrap().view(t("2026-12-07T00:00:00Z"));
        assert!(during.shortage && !during.overdue, "{during:?}");
        assert_eq!(during.due, t("2026-12-11T00:00:00Z"));
        assert_eq!(
            c.rma_shortage("alice", true, String::new(), t("2026-12-03T00:00:00Z")),
            Err(CaseRuleError::ShortageAlready {
                on: true,
                since: t("2026-12-02T00:00:00Z")
            })
        );
        c.rma_shortage("alice", false, String::new(), t("2026-12-04T00:00:00Z"))
            .unwrap();
        let r = c.rma.clone().unwrap();
        assert_eq!(r.due, t("2026-12-08T00:00:00Z"));
        assert_eq!(r.stopped_secs, 2 * 86_400);
        assert!(!r.overdue_at(t("2026-12-08T00:00:00Z")));
        assert!(r.overdue_at(t("2026-12-08T00:00:01Z")));
        assert!(matches!(
            c.rma_shortage("alice", false, String::new(), t("2026-12-05T00:00:00Z")),
            Err(CaseRuleError::ShortageAlready { on: false, .. })
        ));
        // Ending resolves the case, and an ended RMA is never overdue.
        c.end_rma(
            "alice",
            RmaOutcome::Repaired,
            None,
            None,
            "fan replaced".into(),
            t("2026-12-09T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(c.status, CaseStatus::Resolved);
        assert!(!c.overdue_at(t("2026-12-30T00:00:00Z")));
        assert_eq!(
            c.open_rma("alice", String::new(), t("2026-12-10T00:00:00Z")),
            Err(CaseRuleError::RmaExists { id: c.id })
        );
        let last = c.entries.last().unwrap();
        assert_eq!(last.text, "RMA ended: repaired. fan replaced");
    }

    #[test]
    fn the_audit_snapshot_leaves_out_entry_texts() {
        let mut c = case();
        c.note("bob", "x".repeat(5000), t("2026-12-01T04:00:00Z"))
            .unwrap();
        let s = c.snapshot();
        assert_eq!(s["entries"], 1);
        assert!(s["last_entry"]["text"].as_str().unwrap().len() < 1100);
        assert_eq!(s["id"], "C-1042");
    }
}
