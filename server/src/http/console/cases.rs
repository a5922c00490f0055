//! The support cases: the case list (filters for status, serial and overdue; open RMAs
//! past due first, then the cases still open, then the resolved and closed, newest first
//! in each, paged), the cases on a box's page and its "Open case" form, and the console's
//! words for a refused case change. A case's own page is in `case`.

use super::{render, ConsoleError, ConsoleState, ConsoleUser, Frame};
use crate::domain::case::{CaseId, CaseRecord, CaseStatus};
use crate::domain::support::{self, CaseFilter, OpenCaseRequest};
use crate::domain::validate;
use crate::http::auth::StaffCaller;
use crate::http::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use serde::Deserialize;

/// Cases per page of the list.
pub const PAGE: usize = 25;

/// The exclusions of the warranty page, with their words for people.
pub const EXCLUSIONS: [(&str, &str); 5] = [
    ("shipping_damage", "Damage in shipping (negligent packing)"),
    (
        "force_majeure",
        "Natural disaster, fire, flood (force majeure)",
    ),
    ("misuse_or_wear", "Misuse, or wear and tear"),
    (
        "unauthorized_repair",
        "Repaired or opened by someone not authorized",
    ),
    (
        "non_official_product",
        "Not an official product (no standard serial)",
    ),
];

/// Where a case stands in the list's order: 0 an open RMA past due, 1 still open, 2 done.
fn tier(c: &CaseRecord, now: Timestamp) -> u8 {
    if c.overdue_at(now) {
        0
    } else if c.status.is_active() {
        1
    } else {
        2
    }
}

/// Where a page of the list starts: in `tier`, the cases older than `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    tier: u8,
    before: Option<CaseId>,
}

impl Cursor {
    /// `1-1042` (or `2` at the start of a tier).
    fn encode(self) -> String {
        match self.before {
            Some(id) => format!("{}-{}", self.tier, id.number()),
            None => self.tier.to_string(),
        }
    }

    fn parse(s: &str) -> Option<Cursor> {
        let (t, n) = match s.split_once('-') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        let tier: u8 = t.parse().ok().filter(|t| *t <= 2)?;
        let before = match n {
            Some(n) => Some(CaseId::from_number(n.parse().ok()?)),
            None => None,
        };
        Some(Cursor { tier, before })
    }
}

/// A page of cases in the list's order: open RMAs past due first, then the cases still
/// open, then the resolved and closed ones, newest first in each; and where the next page
/// starts, if there is one.
pub async fn ordered_page(
    app: &AppState,
    filter: &CaseFilter,
    from: Cursor,
    limit: usize,
) -> Result<(Vec<CaseRecord>, Option<Cursor>), ApiError> {
    let now = app.now();
    let mut out: Vec<CaseRecord> = Vec::new();
    let mut at = from;
    while at.tier <= 2 {
        let want = limit.saturating_sub(out.len());
        let tier_now = at.tier;
        let page = app
            .store
            .list_cases(filter.serial.as_ref(), at.before, want + 1, |c| {
                tier(c, now) == tier_now && filter.keeps(c, now)
            })
            .await?;
        let mut cases = page.cases;
        if cases.len() > want {
            cases.truncate(want);
            let before = cases.last().map(|c| c.id).or(at.before);
            out.extend(cases);
            return Ok((
                out,
                Some(Cursor {
                    tier: tier_now,
                    before,
                }),
            ));
        }
        out.extend(cases);
        at = Cursor {
            tier: tier_now + 1,
            before: None,
        };
        if out.len() == limit {
            // Full: is there anything in the tiers left?
            while at.tier <= 2 {
                let t = at.tier;
                let more = app
                    .store
                    .list_cases(filter.serial.as_ref(), None, 1, |c| {
                        tier(c, now) == t && filter.keeps(c, now)
                    })
                    .await?;
                if !more.cases.is_empty() {
                    return Ok((out, Some(at)));
                }
                at.tier += 1;
            }
        }
    }
    Ok((out, None))
}

/// The query of the case list.
#[derive(Debug, Default, Deserialize)]
pub struct CasesQuery {
    /// A status, or empty.
    #[serde(default)]
    pub status: String,
    /// A box's serial, or empty.
    #[serde(default)]
    pub serial: String,
    /// `true` (only overdue RMAs), `false` (none of them), or empty.
    #[serde(default)]
    pub overdue: String,
    /// Where the page starts (the previous page's link).
    #[serde(default)]
    pub after: String,
}

fn filter_of(q: &CasesQuery) -> Result<CaseFilter, ApiError> {
    let serial = match q.serial.trim() {
        "" => None,
        s => Some(validate::serial(s)?),
    };
    let status = match q.status.trim() {
        "" => None,
        s => Some(support::parse_status(s)?),
    };
    let overdue = match q.overdue.trim() {
        "" => None,
        "true" => Some(true),
        "false" => Some(false),
        other => {
            return Err(ApiError::unprocessable(
                "bad_filter",
                format!(
                    "the overdue filter {:?} is not \"true\" or \"false\"",
                    other.chars().take(40).collect::<String>()
                ),
            ))
        }
    };
    Ok(CaseFilter {
        serial,
        status,
        overdue,
    })
}

/// One row of the case list.
pub struct CaseRow {
    id: String,
    serial: String,
    summary: String,
    severity: String,
    status: String,
    opened: String,
    overdue: bool,
    rma_due: String,
}

/// The wire name of an enum value (`waiting_customer`).
pub(super) fn wire<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The wire name in words (`waiting customer`).
pub(super) fn word<T: serde::Serialize>(v: &T) -> String {
    wire(v).replace('_', " ")
}

impl CaseRow {
    fn of(c: &CaseRecord, now: Timestamp) -> CaseRow {
        CaseRow {
            id: c.id.to_string(),
            serial: c.serial.to_string(),
            summary: c.summary.clone(),
            severity: word(&c.severity),
            status: word(&c.status),
            opened: super::when(&c.opened_at),
            overdue: c.overdue_at(now),
            rma_due: c
                .rma
                .as_ref()
                .filter(|r| r.outcome.is_none())
                .map(|r| super::when(&r.due_at(now)))
                .unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/cases.html")]
struct CasesPage {
    frame: Frame,
    q: CasesQuery,
    /// (wire name, words) of every status.
    statuses: Vec<(&'static str, String)>,
    rows: Vec<CaseRow>,
    next: Option<String>,
}

impl CasesPage {
    fn next_link(&self, after: &str) -> String {
        use super::q;
        format!(
            "/console/cases?status={}&serial={}&overdue={}&after={}",
            q(&self.q.status),
            q(&self.q.serial),
            q(&self.q.overdue),
            q(after)
        )
    }
}

/// `GET /console/cases`.
pub async fn list(
    State(state): State<ConsoleState>,
    user: ConsoleUser,
    super::ConsoleQuery(q): super::ConsoleQuery<CasesQuery>,
) -> Result<Response, ConsoleError> {
    StaffCaller::check(user.caller.clone())?;
    let filter = filter_of(&q)?;
    let from = match q.after.trim() {
        "" => Cursor::default(),
        a => Cursor::parse(a).ok_or_else(|| {
            ConsoleError::BadQuery("the page link is not one this console gave out".into())
        })?,
    };
    let (cases, next) = ordered_page(&state.app, &filter, from, PAGE).await?;
    let now = state.app.now();
    Ok(render(
        StatusCode::OK,
        &CasesPage {
            frame: Frame::new(&user, "Support cases", "cases"),
            q,
            statuses: CaseStatus::ALL
                .iter()
                .map(|s| (s.as_str(), word(s)))
                .collect(),
            rows: cases.iter().map(|c| CaseRow::of(c, now)).collect(),
            next: next.map(Cursor::encode),
        },
    ))
}

/// The console's words for a refusal: the API's, except where those name the JSON body.
pub fn words(e: &ApiError) -> String {
    if e.code == "not_covered" {
        let detail = |k: &str| {
            e.details
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        if detail("coverage").as_deref() == Some("expired") {
            let serial = detail("serial").unwrap_or_default();
            let end = detail("coverage_end").unwrap_or_default();
            return format!(
                "{serial} is not covered: its coverage ended on {end}, and there is no support after expiry. \
                 The gap must be paid first: extend it with a confirmed reinstatement on the box's page, then open the case."
            );
        }
    }
    if e.code == "bad_exclusion" {
        let names: Vec<&str> = EXCLUSIONS.iter().map(|(_, t)| *t).collect();
        return format!(
            "an RMA ended as not covered names one of the warranty's exclusions; choose one under \"Exclusion\": {}",
            names.join("; ")
        );
    }
    e.message.clone()
}

/// The "Open case" form of a device's page.
#[derive(Debug, Deserialize)]
pub struct OpenForm {
    #[serde(default)]
    summary: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    severity: String,
}

/// Opens a case for `serial` from its page's form: the new case's page, or the refusal.
pub async fn open_for(
    app: &AppState,
    actor: &str,
    serial: &np_common::Serial,
    form: OpenForm,
) -> Result<CaseRecord, ApiError> {
    let req = OpenCaseRequest {
        serial: serial.to_string(),
        summary: form.summary,
        channel: Some(form.channel.trim().to_owned()).filter(|c| !c.is_empty()),
        severity: Some(form.severity.trim().to_owned()).filter(|s| !s.is_empty()),
    };
    support::open(app, actor, req).await
}

/// The cases of a box, for its page (newest first).
pub struct BoxCase {
    /// `C-1042`.
    pub id: String,
    /// The problem.
    pub summary: String,
    /// Its status in words.
    pub status: String,
    /// When it was opened.
    pub opened: String,
    /// Its RMA is past due.
    pub overdue: bool,
}

/// The newest cases of a box.
pub async fn of_box(app: &AppState, serial: &np_common::Serial) -> Result<Vec<BoxCase>, ApiError> {
    let now = app.now();
    let page = app
        .store
        .list_cases(Some(serial), None, 50, |_| true)
        .await?;
    Ok(page
        .cases
        .iter()
        .map(|c| BoxCase {
            id: c.id.to_string(),
            summary: c.summary.clone(),
            status: word(&c.status),
            opened: super::when(&c.opened_at),
            overdue: c.overdue_at(now),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::case::Exclusion;

    fn known_exclusion(name: &str) -> bool {
        Exclusion::parse(name).is_some() && EXCLUSIONS.iter().any(|(n, _)| *n == name)
    }

    #[test]
    fn cursors_read_back_and_refuse_what_is_not_theirs() {
        for c in [
            Cursor::default(),
            Cursor {
                tier: 1,
                before: Some(CaseId::from_number(1042)),
            },
            Cursor {
                tier: 2,
                before: None,
            },
        ] {
            assert_eq!(Cursor::parse(&c.encode()), Some(c));
        }
        for bad in ["", "3", "x", "1-", "1-x", "-1", "9-1001"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_exclusion_of_the_domain_is_on_the_form() {
        for name in Exclusion::NAMES {
            assert!(known_exclusion(name), "{name}");
        }
        assert!(!known_exclusion("acts_of_cats"));
    }
}
