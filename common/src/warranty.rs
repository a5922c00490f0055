//! Warranty arithmetic: terms, coverage end, extensions that stack on the current end,
//! the lapse gap and reinstatement. Month arithmetic clamps to the month's last day.

use jiff::civil::Date;
use jiff::{Span, ToSpan as _};
use serde::{Deserialize, Serialize};

/// What a term is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TermKind {
    /// The first year from purchase.
    Warranty,
    /// Bought coverage.
    Extension,
    /// A lapse the customer paid for before a new term started.
    Reinstatement,
}

/// A term covers `start` up to, not including, `end` (UTC calendar dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Term {
    pub kind: TermKind,
    pub start: Date,
    pub end: Date,
}

/// The longest extension sold in one purchase.
pub const MAX_EXTENSION_MONTHS: u32 = 120;

/// A length of coverage: months or years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duration {
    Months(u32),
    Years(u32),
}

/// Why a warranty change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WarrantyError {
    #[error(
        "an extension is 1 to {MAX_EXTENSION_MONTHS} months (or 1 to 10 years); {0} was asked"
    )]
    BadDuration(String),
    #[error("coverage ended on {ended}, {gap_days} days ago ({billable_months} billable months); pay for the gap with reinstate to start a new term")]
    Lapsed {
        ended: Date,
        gap_days: i64,
        billable_months: u32,
    },
    #[error("the date is out of range")]
    DateRange,
}

impl Duration {
    /// Builds a duration from a request's `months` or `years` (exactly one, 1 to 120
    /// months in all).
    pub fn from_request(months: Option<i64>, years: Option<i64>) -> Result<Self, WarrantyError> {
        let (n, unit, make): (i64, &str, fn(u32) -> Duration) = match (months, years) {
            (Some(m), None) => (m, "months", Duration::Months),
            (None, Some(y)) => (y, "years", Duration::Years),
            (Some(m), Some(y)) => {
                return Err(WarrantyError::BadDuration(format!(
                    "both {m} months and {y} years"
                )))
            }
            (None, None) => {
                return Err(WarrantyError::BadDuration(
                    "neither months nor years".into(),
                ))
            }
        };
        match u32::try_from(n).map(make) {
            Ok(d) if (1..=MAX_EXTENSION_MONTHS).contains(&d.months()) => Ok(d),
            _ => Err(WarrantyError::BadDuration(format!("{n} {unit}"))),
        }
    }

    /// The length in months.
    pub fn months(self) -> u32 {
        match self {
            Duration::Months(m) => m,
            Duration::Years(y) => y.saturating_mul(12),
        }
    }
}

/// `date` plus `months` calendar months, clamped to the last day of the month.
pub fn add_months(date: Date, months: u32) -> Result<Date, WarrantyError> {
    let span: Span = i64::from(months).months();
    date.checked_add(span).map_err(|_| WarrantyError::DateRange)
}

/// The first term: one year from the purchase date.
pub fn initial_term(purchase: Date) -> Result<Term, WarrantyError> {
    Ok(Term {
        kind: TermKind::Warranty,
        start: purchase,
        end: add_months(purchase, 12)?,
    })
}

/// The end of coverage: the latest end of any term.
pub fn coverage_end(terms: &[Term]) -> Option<Date> {
    terms.iter().map(|t| t.end).max()
}

/// Whole days from `from` to `to` (negative if `to` is earlier).
pub fn days_between(from: Date, to: Date) -> i64 {
    from.until((jiff::Unit::Day, to))
        .map(|s| i64::from(s.get_days()))
        .unwrap_or(0)
}

/// The number of months to bill for a gap from `end` to `today`, rounded up.
pub fn billable_months(end: Date, today: Date) -> u32 {
    let mut m = 0u32;
    while m < 100_000 {
        match add_months(end, m) {
            Ok(d) if d >= today => return m,
            Ok(_) => m += 1,
            Err(_) => return m,
        }
    }
    m
}

/// The terms an extension adds to `terms`, given today's date.
///
/// Covered (or not yet started): one `extension` term stacked on the current end.
/// Lapsed (`today >= end`): refused with the gap, unless `reinstate`; then a
/// `reinstatement` term `[end, today)` and an extension `[today, today + N)`.
pub fn plan_extension(
    terms: &[Term],
    today: Date,
    duration: Duration,
    reinstate: bool,
) -> Result<Vec<Term>, WarrantyError> {
    let months = duration.months();
    let Some(end) = coverage_end(terms) else {
        return Ok(vec![Term {
            kind: TermKind::Extension,
            start: today,
            end: add_months(today, months)?,
        }]);
    };
    if today < end {
        return Ok(vec![Term {
            kind: TermKind::Extension,
            start: end,
            end: add_months(end, months)?,
        }]);
    }
    if !reinstate {
        return Err(WarrantyError::Lapsed {
            ended: end,
            gap_days: days_between(end, today),
            billable_months: billable_months(end, today),
        });
    }
    let mut out = Vec::with_capacity(2);
    if today > end {
        out.push(Term {
            kind: TermKind::Reinstatement,
            start: end,
            end: today,
        });
    }
    out.push(Term {
        kind: TermKind::Extension,
        start: today,
        end: add_months(today, months)?,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    #[test]
    fn one_year_from_purchase() {
        let t = initial_term(date(2025, 3, 1)).expect("in range");
        assert_eq!((t.start, t.end), (date(2025, 3, 1), date(2026, 3, 1)));
        assert_eq!(
            initial_term(date(2024, 2, 29)).expect("in range").end,
            date(2025, 2, 28)
        );
    }

    #[test]
    fn month_end_clamps() {
        assert_eq!(add_months(date(2025, 1, 31), 1), Ok(date(2025, 2, 28)));
        assert_eq!(add_months(date(2024, 1, 31), 1), Ok(date(2024, 2, 29)));
        assert_eq!(add_months(date(2025, 8, 31), 1), Ok(date(2025, 9, 30)));
    }

    #[test]
    fn extensions_stack_on_the_end_not_today() {
        let terms = vec![initial_term(date(2025, 3, 1)).expect("ok")];
        let added =
            plan_extension(&terms, date(2025, 6, 1), Duration::Years(1), false).expect("covered");
        assert_eq!(
            added,
            vec![Term {
                kind: TermKind::Extension,
                start: date(2026, 3, 1),
                end: date(2027, 3, 1)
            }]
        );
        // Bought before coverage starts: still stacks.
        let added =
            plan_extension(&terms, date(2025, 1, 1), Duration::Months(6), false).expect("ok");
        assert_eq!(added[0].start, date(2026, 3, 1));
    }

    #[test]
    fn lapsed_box_pays_for_the_gap() {
        let terms = vec![initial_term(date(2025, 3, 1)).expect("ok")];
        let today = date(2026, 5, 2);
        assert_eq!(
            plan_extension(&terms, today, Duration::Months(12), false),
            Err(WarrantyError::Lapsed {
                ended: date(2026, 3, 1),
                gap_days: 62,
                billable_months: 3
            })
        );
        let added = plan_extension(&terms, today, Duration::Months(12), true).expect("reinstated");
        assert_eq!(
            added,
            vec![
                Term {
                    kind: TermKind::Reinstatement,
                    start: date(2026, 3, 1),
                    end: today
                },
                Term {
                    kind: TermKind::Extension,
                    start: today,
                    end: date(2027, 5, 2)
                },
            ]
        );
        // Lapsed on the very day coverage ends: a zero-day gap, still a lapse.
        assert_eq!(
            plan_extension(&terms, date(2026, 3, 1), Duration::Months(1), false),
            Err(WarrantyError::Lapsed {
                ended: date(2026, 3, 1),
                gap_days: 0,
                billable_months: 0
            })
        );
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(
            Duration::from_request(Some(3), None),
            Ok(Duration::Months(3))
        );
        assert_eq!(
            Duration::from_request(None, Some(2)).map(Duration::months),
            Ok(24)
        );
        for (m, y) in [
            (Some(0), None),
            (Some(-1), None),
            (None, Some(11)),
            (Some(121), None),
            (None, None),
            (Some(1), Some(1)),
        ] {
            assert!(
                matches!(
                    Duration::from_request(m, y),
                    Err(WarrantyError::BadDuration(_))
                ),
                "{m:?} {y:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn month_arithmetic_never_shortens_coverage(y in 2000i16..2100, mo in 1i8..=12, d in 1i8..=31, n in 1u32..=120) {
            let Ok(start) = Date::new(y, mo, d) else { return Ok(()); };
            let end = add_months(start, n).expect("in range");
            prop_assert!(end > start);
            prop_assert!(days_between(start, end) >= i64::from(n) * 28);
            let terms = vec![initial_term(start).expect("ok")];
            let added = plan_extension(&terms, start, Duration::Months(n), false).expect("covered");
            prop_assert!(coverage_end(&added).expect("one term") > coverage_end(&terms).expect("one term"));
        }
    }
}
