//! The fleet page (`/console/`): boxes by status and by model, the versions running across
//! the fleet (an SVG bar chart drawn here), the boxes whose coverage ends within 30, 60 and
//! 90 days, the recent failed and rolled-back updates, and the open support cases and
//! overdue RMAs. [`summarize`] computes the
//! figures from device records, so they are tested against a store with known content.

use super::{charts, render, ConsoleError, ConsoleState, ConsoleUser, Frame};
use crate::domain::device::DeviceRecord;
use crate::store::{Store, StoreError};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::civil::Date;
use jiff::ToSpan as _;
use np_common::api::Outcome;
use np_common::docs::Status;
use np_common::Version;
use std::collections::BTreeMap;

/// The windows of "coverage ends within N days".
pub const EXPIRY_WINDOWS: [i32; 3] = [30, 60, 90];
/// How many recent failures the page lists.
pub const RECENT_FAILURES: usize = 10;
/// The label of boxes that never reported a version.
pub const NOT_REPORTED: &str = "not reported";

/// A failed or rolled-back update of one box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRow {
    /// The box.
    pub serial: String,
    /// The release it tried, if it said.
    pub version: String,
    /// `failed` or `rolled back`.
    pub outcome: &'static str,
    /// The box's words.
    pub detail: String,
    /// When the box reported it.
    pub at: jiff::Timestamp,
}

/// The fleet's figures.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetSummary {
    /// Every registered box.
    pub total: u64,
    /// (status, boxes), in the order active, revoked, replaced.
    pub by_status: Vec<(String, u64)>,
    /// (model, boxes), by model name.
    pub by_model: Vec<(String, u64)>,
    /// (version, boxes reporting it), newest version first, boxes that never reported last.
    pub versions: Vec<(String, u64)>,
    /// (days, active boxes whose coverage ends after today and within that many days).
    pub expiring: Vec<(i32, u64)>,
    /// Active boxes whose coverage has ended.
    pub lapsed: u64,
    /// The newest failed or rolled-back updates, newest first.
    pub failures: Vec<FailureRow>,
}

/// Computes the fleet's figures on `today`.
pub fn summarize<'a>(
    devices: impl IntoIterator<Item = &'a DeviceRecord>,
    today: Date,
) -> FleetSummary {
    let mut s = FleetSummary::default();
    let mut status = [
        (Status::Active, 0u64),
        (Status::Revoked, 0),
        (Status::Replaced, 0),
    ];
    let mut models: BTreeMap<String, u64> = BTreeMap::new();
    let mut versions: BTreeMap<Version, u64> = BTreeMap::new();
    let mut unreported = 0u64;
    let limits: Vec<Option<Date>> = EXPIRY_WINDOWS
        .iter()
        .map(|d| today.checked_add(d.days()).ok())
        .collect();
    let mut expiring = vec![0u64; EXPIRY_WINDOWS.len()];
    for d in devices {
        s.total += 1;
        for c in status.iter_mut().filter(|c| c.0 == d.status) {
            c.1 += 1;
        }
        *models.entry(d.model.to_string()).or_default() += 1;
        match &d.version {
            Some(v) => *versions.entry(v.clone()).or_default() += 1,
            None => unreported += 1,
        }
        if d.status == Status::Active {
            if d.coverage_end <= today {
                s.lapsed += 1;
            }
            for (n, limit) in expiring.iter_mut().zip(&limits) {
                if d.coverage_end > today && limit.is_some_and(|l| d.coverage_end <= l) {
                    *n += 1;
                }
            }
        }
        if let Some(r) = &d.last_result {
            let outcome = match r.outcome {
                Outcome::Failed => Some("failed"),
                Outcome::RolledBack => Some("rolled back"),
                Outcome::Installed | Outcome::Refused => None,
            };
            if let Some(outcome) = outcome {
                s.failures.push(FailureRow {
                    serial: d.serial.to_string(),
                    version: r
                        .version
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    outcome,
                    detail: r.detail.clone(),
                    at: r.at,
                });
            }
        }
    }
    s.by_status = status.iter().map(|(st, n)| (st.to_string(), *n)).collect();
    s.by_model = models.into_iter().collect();
    s.versions = versions
        .into_iter()
        .rev()
        .map(|(v, n)| (v.to_string(), n))
        .collect();
    if unreported > 0 {
        s.versions.push((NOT_REPORTED.to_owned(), unreported));
    }
    s.expiring = EXPIRY_WINDOWS.iter().copied().zip(expiring).collect();
    s.failures.sort_by_key(|f| std::cmp::Reverse(f.at));
    s.failures.truncate(RECENT_FAILURES);
    s
}

/// Every registered device.
pub async fn all_devices(store: &Store) -> Result<Vec<DeviceRecord>, StoreError> {
    Ok(store
        .list_devices(None, usize::MAX, |_| true)
        .await?
        .devices)
}

/// The fleet's figures from the store.
pub async fn load(store: &Store, today: Date) -> Result<FleetSummary, StoreError> {
    Ok(summarize(&all_devices(store).await?, today))
}

#[derive(Template)]
#[template(path = "console/fleet.html")]
struct FleetPage {
    frame: Frame,
    s: FleetSummary,
    today: Date,
    chart: String,
    cases: crate::domain::support::CaseCounts,
}

impl FleetPage {
    fn when(t: &jiff::Timestamp) -> String {
        super::when(t)
    }
}

/// `GET /console/`.
pub async fn page(
    State(state): State<ConsoleState>,
    user: ConsoleUser,
) -> Result<Response, ConsoleError> {
    let today = state.app.today();
    let s = load(&state.app.store, today).await?;
    let chart = charts::version_bars(&s.versions);
    let cases = crate::domain::support::counts(&state.app).await?;
    Ok(render(
        StatusCode::OK,
        &FleetPage {
            frame: Frame::new(&user, "Fleet", "fleet"),
            s,
            today,
            chart,
            cases,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Change;
    use jiff::civil::date;
    use np_common::api::LastResult;
    use np_common::warranty::{Term, TermKind};
    use np_common::{SecretKey, Serial};

    fn serial(model: &str, n: u32) -> Serial {
        let digits = format!("{}{n:06}", &model[3..]);
        let c = np_common::serial::luhn_check_digit(&digits);
        Serial::parse(&format!("{model}-{n:06}-{c}")).unwrap()
    }

    /// Puts a box in the store with this coverage end, version and last result.
    async fn put(
        store: &Store,
        s: &Serial,
        end: Date,
        status: Status,
        version: Option<&str>,
        result: Option<(Outcome, &str)>,
    ) {
        let key = SecretKey::from_seed(&[7; 32]);
        let at: jiff::Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        let change = Change {
            actor: None,
            action: "test",
            at,
        };
        store
            .mutate_devices(std::slice::from_ref(s), &change, |recs| {
                let term = Term {
                    kind: TermKind::Warranty,
                    start: date(2025, 1, 1),
                    end,
                };
                let mut d = DeviceRecord::new(
                    s.clone(),
                    s.model(),
                    "ACME".into(),
                    date(2025, 1, 1),
                    vec![term],
                    None,
                    &key,
                    at,
                );
                d.status = status;
                d.version = version.map(|v| Version::parse(v).unwrap());
                d.last_result = result.map(|(outcome, v)| LastResult {
                    version: Some(Version::parse(v).unwrap()),
                    outcome,
                    detail: "health check failed".into(),
                    at,
                });
                recs[0] = Some(d);
                Ok::<(), ()>(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn fleet_counts_versions_and_expiring_boxes_from_a_known_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let today = date(2026, 12, 1);
        let a = Status::Active;
        put(
            &store,
            &serial("NR-2000", 1),
            date(2026, 12, 20),
            a,
            Some("5.3.0"),
            None,
        )
        .await;
        put(
            &store,
            &serial("NR-2000", 2),
            date(2027, 1, 20),
            a,
            Some("5.3.0"),
            None,
        )
        .await;
        put(
            &store,
            &serial("NR-2000", 3),
            date(2027, 2, 20),
            a,
            Some("5.2.1"),
            Some((Outcome::RolledBack, "5.3.0")),
        )
        .await;
        put(
            &store,
            &serial("NR-3000", 4),
            date(2028, 1, 1),
            a,
            Some("5.10.0"),
            Some((Outcome::Failed, "5.10.0")),
        )
        .await;
        put(
            &store,
            &serial("NC-1000", 5),
            date(2026, 11, 1),
            a,
            None,
            None,
        )
        .await;
        put(
            &store,
            &serial("NC-1000", 6),
            date(2026, 12, 31),
            Status::Revoked,
            None,
            Some((Outcome::Installed, "5.3.0")),
        )
        .await;
        put(
            &store,
            &serial("NR-1000", 7),
            date(2026, 12, 1),
            a,
            Some("5.3.0"),
            None,
        )
        .await;

        let s = load(&store, today).await.unwrap();
        assert_eq!(s.total, 7);
        let named = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), *b))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            s.by_status,
            named(&[("active", 6), ("revoked", 1), ("replaced", 0)])
        );
        assert_eq!(
            s.by_model,
            named(&[
                ("NC-1000", 2),
                ("NR-1000", 1),
                ("NR-2000", 3),
                ("NR-3000", 1)
            ])
        );
        // Newest first by semver (5.10.0 above 5.3.0), boxes without a report last.
        assert_eq!(
            s.versions,
            named(&[("5.10.0", 1), ("5.3.0", 3), ("5.2.1", 1), (NOT_REPORTED, 2)])
        );
        // Ends after today: within 30 days Dec 20; 60 adds Jan 20; 90 adds Feb 20. The revoked
        // box (Dec 31) does not count; one ending today has lapsed, as has the one of Nov 1.
        assert_eq!(s.expiring, vec![(30, 1), (60, 2), (90, 3)]);
        assert_eq!(s.lapsed, 2);
        let failures: Vec<_> = s
            .failures
            .iter()
            .map(|f| (f.serial.clone(), f.outcome, f.version.clone()))
            .collect();
        assert_eq!(failures.len(), 2);
        assert!(failures.contains(&(
            serial("NR-2000", 3).to_string(),
            "rolled back",
            "5.3.0".into()
        )));
        assert!(failures.contains(&(serial("NR-3000", 4).to_string(), "failed", "5.10.0".into())));
    }

    #[test]
    fn an_empty_fleet_has_zero_everywhere() {
        let s = summarize(&[], date(2026, 1, 1));
        assert_eq!(s.total, 0);
        assert!(s.versions.is_empty());
        assert_eq!(s.expiring, vec![(30, 0), (60, 0), (90, 0)]);
    }
}
