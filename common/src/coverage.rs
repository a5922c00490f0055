//! Coverage as its own state, beside the entitlement's status: a box whose entitlement is
//! `active` may still have a coverage that ended, or one that starts later (a purchase
//! date ahead). Both the agent's `status` and the server's device views name it the same.

use crate::rule::date_start;
use crate::warranty::Term;
use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a box's coverage stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// `now` is inside the coverage (first term start up to, not including, the end).
    Covered,
    /// The coverage ended: `now` is on or after `coverage_end`.
    Expired,
    /// The first term starts after `now`.
    NotYetStarted,
}

impl Coverage {
    /// The state at `now` of a coverage made of `terms` and ending on `coverage_end`
    /// (exclusive, UTC), the same boundary as the update rule's.
    pub fn at(terms: &[Term], coverage_end: Date, now: Timestamp) -> Coverage {
        if now >= date_start(coverage_end) {
            return Coverage::Expired;
        }
        match terms.iter().map(|t| t.start).min() {
            Some(start) if now < date_start(start) => Coverage::NotYetStarted,
            _ => Coverage::Covered,
        }
    }

    /// The snake_case name, as JSON carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            Coverage::Covered => "covered",
            Coverage::Expired => "expired",
            Coverage::NotYetStarted => "not_yet_started",
        }
    }

    /// The first day covered: the earliest term start.
    pub fn start(terms: &[Term]) -> Option<Date> {
        terms.iter().map(|t| t.start).min()
    }
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::warranty::TermKind;

    fn term(start: &str, end: &str) -> Term {
        Term {
            kind: TermKind::Warranty,
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
        }
    }

    #[test]
    fn covered_expired_and_not_yet_started_at_their_boundaries() {
        let terms = [term("2026-01-10", "2027-01-10")];
        let end: Date = "2027-01-10".parse().unwrap();
        let at = |s: &str| Coverage::at(&terms, end, s.parse().unwrap());
        assert_eq!(at("2026-01-09T23:59:59Z"), Coverage::NotYetStarted);
        assert_eq!(at("2026-01-10T00:00:00Z"), Coverage::Covered);
        assert_eq!(at("2027-01-09T23:59:59Z"), Coverage::Covered);
        assert_eq!(at("2027-01-10T00:00:00Z"), Coverage::Expired);
        assert_eq!(
            serde_json::to_value(Coverage::NotYetStarted).unwrap(),
            "not_yet_started"
        );
        // No terms: only the end counts.
        let t: Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(Coverage::at(&[], end, t), Coverage::Covered);
    }
}
