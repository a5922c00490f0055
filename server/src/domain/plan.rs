//! Rollout plans: a release rolls out in stages (`1% for 24h, then 10% for 24h, then
//! 100%`) instead of at a fixed percent, and the guard pauses it by itself when too many of
//! the boxes that tried it failed.
//!
//! Pure arithmetic over an injected "now": [`PlanState::progress`] says which stage is in
//! force from the time the rollout has been running (paused time does not count), and
//! [`trips`] says whether the failure figures reach the plan's threshold. Nothing here
//! reads a clock or the store.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The most stages a plan may have.
pub const MAX_STAGES: usize = 20;
/// The longest hold of one stage (366 days), in seconds.
pub const MAX_HOLD_SECS: i64 = 366 * 86_400;
/// `min_attempts` when a plan does not say.
pub const DEFAULT_MIN_ATTEMPTS: u32 = 20;

/// Why a plan is not acceptable. The words are neutral: the API prefixes them with
/// `plan`, np-vendor with the flag they came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("a plan needs at least one stage, such as 1:24h,10:24h,100")]
    NoStages,
    #[error("a plan has at most {MAX_STAGES} stages, not {0}")]
    TooManyStages(usize),
    #[error("stage {stage}: the percent must be 1 to 100, not {percent}")]
    Percent { stage: usize, percent: i64 },
    #[error("stage {stage}: {percent}% is not above the {previous}% of stage {}; the percents must rise", stage - 1)]
    NotRising {
        stage: usize,
        percent: u8,
        previous: u8,
    },
    #[error("stage {stage}: {detail}")]
    BadHold { stage: usize, detail: String },
    #[error("stage {stage} ({percent}%) needs a hold, such as {percent}:24h: only the last stage may have none")]
    MissingHold { stage: usize, percent: u8 },
    #[error("the last stage ({percent}%) has a hold but nothing follows it; drop the hold or end at 100")]
    LastHold { percent: u8 },
    #[error("stage {stage}: {text:?} is not PERCENT or PERCENT:HOLD, such as 10:24h")]
    StageSyntax { stage: usize, text: String },
    #[error("the maximum failure percent must be 1 to 100, not {0}")]
    FailurePercent(i64),
    #[error("the minimum number of attempts must be 1 to 1000000, not {0}")]
    MinAttempts(i64),
}

/// How long a stage holds before the next one starts: whole seconds, written as
/// `24h`, `90m`, `7d`, `1d12h` or `45s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HoldTime(i64);

impl HoldTime {
    /// Parses `1d12h`-style text: one or more `<number><unit>` with units d, h, m, s;
    /// more than zero and at most 366 days.
    pub fn parse(s: &str) -> Result<HoldTime, String> {
        let text = s.trim();
        let bad =
            || format!("hold {s:?} is not a time such as 24h, 90m, 7d or 1d12h (units d, h, m, s)");
        if text.is_empty() || text.len() > 32 {
            return Err(bad());
        }
        let mut total: i64 = 0;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(bad()),
            };
            let n: i64 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            total = n
                .checked_mul(unit)
                .and_then(|x| total.checked_add(x))
                .ok_or_else(bad)?;
        }
        if !digits.is_empty() {
            return Err(bad());
        }
        if total <= 0 {
            return Err(format!("hold {s:?} must be longer than zero"));
        }
        if total > MAX_HOLD_SECS {
            return Err(format!(
                "hold {s:?} is longer than the longest allowed, 366d"
            ));
        }
        Ok(HoldTime(total))
    }

    /// The hold in seconds.
    pub fn secs(self) -> i64 {
        self.0
    }
}

impl fmt::Display for HoldTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        for (unit, name) in [(86_400, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')] {
            if rest >= unit {
                write!(f, "{}{name}", rest / unit)?;
                rest %= unit;
            }
        }
        Ok(())
    }
}

impl Serialize for HoldTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HoldTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HoldTime, D::Error> {
        let s = String::deserialize(d)?;
        HoldTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One stage: the share of boxes offered the release, and how long before the next stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stage {
    pub percent: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "24h")]
    pub hold: Option<HoldTime>,
}

/// A validated plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub stages: Vec<Stage>,
    /// The guard halts the release when this share of attempts failed; no guard without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_percent: Option<u8>,
    /// The guard waits for this many attempts before it judges.
    pub min_attempts: u32,
}

/// A plan as a client sends it, before validation.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub stages: Vec<StageRequest>,
    #[serde(default)]
    pub max_failure_percent: Option<i64>,
    #[serde(default)]
    pub min_attempts: Option<i64>,
}

/// A stage as a client sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    pub percent: i64,
    #[serde(default)]
    pub hold: Option<String>,
}

impl Plan {
    /// Validates a plan: 1 to [`MAX_STAGES`] stages, percents 1..=100 and rising, a hold on
    /// every stage but the last, the last with no hold unless it is 100 (which holds for
    /// ever anyway), holds that parse, a failure percent 1..=100 and attempts ≥ 1.
    pub fn build(req: &PlanRequest) -> Result<Plan, PlanError> {
        if req.stages.is_empty() {
            return Err(PlanError::NoStages);
        }
        if req.stages.len() > MAX_STAGES {
            return Err(PlanError::TooManyStages(req.stages.len()));
        }
        let mut stages: Vec<Stage> = Vec::with_capacity(req.stages.len());
        for (i, s) in req.stages.iter().enumerate() {
            let stage = i + 1;
            let percent = u8::try_from(s.percent)
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or(PlanError::Percent {
                    stage,
                    percent: s.percent,
                })?;
            if let Some(prev) = stages.last() {
                if percent <= prev.percent {
                    return Err(PlanError::NotRising {
                        stage,
                        percent,
                        previous: prev.percent,
                    });
                }
            }
            let hold = s
                .hold
                .as_deref()
                .map(HoldTime::parse)
                .transpose()
                .map_err(|detail| PlanError::BadHold { stage, detail })?;
            let last = stage == req.stages.len();
            match (last, hold) {
                (false, None) => return Err(PlanError::MissingHold { stage, percent }),
                (true, Some(_)) if percent != 100 => return Err(PlanError::LastHold { percent }),
                _ => {}
            }
            stages.push(Stage { percent, hold });
        }
        let max_failure_percent = req
            .max_failure_percent
            .map(|p| {
                u8::try_from(p)
                    .ok()
                    .filter(|p| (1..=100).contains(p))
                    .ok_or(PlanError::FailurePercent(p))
            })
            .transpose()?;
        let min_attempts = match req.min_attempts {
            None => DEFAULT_MIN_ATTEMPTS,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or(PlanError::MinAttempts(n))?,
        };
        Ok(Plan {
            stages,
            max_failure_percent,
            min_attempts,
        })
    }

    /// The stages written as np-vendor takes them: `1:24h,10:24h,100`.
    pub fn stages_text(&self) -> String {
        self.stages
            .iter()
            .map(|s| match s.hold {
                Some(h) => format!("{}:{h}", s.percent),
                None => s.percent.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The stage (0-based) in force after `active` seconds of running rollout, and the
    /// seconds of running rollout at which the next one starts (none for the last).
    pub fn stage_after(&self, active: i64) -> (usize, Option<i64>) {
        let mut ends = 0i64;
        for (i, s) in self.stages.iter().enumerate() {
            let last = i + 1 == self.stages.len();
            match s.hold {
                Some(h) if !last => {
                    ends = ends.saturating_add(h.secs());
                    if active < ends {
                        return (i, Some(ends));
                    }
                }
                _ => return (i, None),
            }
        }
        // Unreachable for a built plan (its last stage ends the loop); the last stage.
        (self.stages.len().saturating_sub(1), None)
    }
}

/// Parses np-vendor's `--stages` text, `1:24h,10:24h,100`, into a request.
pub fn parse_stages(text: &str) -> Result<Vec<StageRequest>, PlanError> {
    let mut out = Vec::new();
    for (i, part) in text.split(',').enumerate() {
        let stage = i + 1;
        let part = part.trim();
        let syntax = || PlanError::StageSyntax {
            stage,
            text: part.to_owned(),
        };
        let (p, hold) = match part.split_once(':') {
            Some((p, h)) => (p, Some(h.trim().to_owned())),
            None => (part, None),
        };
        let percent: i64 = p
            .trim()
            .trim_end_matches('%')
            .parse()
            .map_err(|_| syntax())?;
        out.push(StageRequest { percent, hold });
    }
    Ok(out)
}

/// A staff percent set while the plan is in `stage`: it holds until the next stage starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageOverride {
    pub stage: usize,
    pub percent: u8,
}

/// A plan on a release and how far it has run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanState {
    pub plan: Plan,
    /// When the plan was set (its first stage started).
    pub started_at: Timestamp,
    /// Seconds the release was paused since then, over finished pauses.
    #[serde(default)]
    pub paused_secs: i64,
    /// When the pause in progress began.
    #[serde(default)]
    pub paused_since: Option<Timestamp>,
    /// A staff percent that replaces the stage's.
    #[serde(default)]
    pub percent_override: Option<StageOverride>,
}

/// Where a plan stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// 1-based stage number.
    pub stage: usize,
    /// How many stages the plan has.
    pub stages: usize,
    /// The percent in force (the stage's, or a staff percent set in this stage).
    pub percent: u8,
    /// When the next stage starts if the release is not paused before then.
    pub next_at: Option<Timestamp>,
}

fn secs_between(from: Timestamp, to: Timestamp) -> i64 {
    to.duration_since(from).as_secs().max(0)
}

impl PlanState {
    /// A plan that starts now; `paused` when the release is paused at the moment.
    pub fn new(plan: Plan, now: Timestamp, paused: bool) -> PlanState {
        PlanState {
            plan,
            started_at: now,
            paused_secs: 0,
            paused_since: paused.then_some(now),
            percent_override: None,
        }
    }

    /// Seconds the rollout has been running (not paused) at `now`.
    pub fn active_secs(&self, now: Timestamp) -> i64 {
        let current = self.paused_since.map_or(0, |p| secs_between(p, now));
        (secs_between(self.started_at, now) - self.paused_secs - current).max(0)
    }

    /// The stage in force at `now` and its percent.
    pub fn progress(&self, now: Timestamp) -> Progress {
        let active = self.active_secs(now);
        let (index, next) = self.plan.stage_after(active);
        let stage_percent = self.plan.stages.get(index).map_or(0, |s| s.percent);
        let percent = match self.percent_override {
            Some(o) if o.stage == index => o.percent,
            _ => stage_percent,
        };
        let next_at = next
            .filter(|_| self.paused_since.is_none())
            .map(|n| now.saturating_add(SignedDuration::from_secs(n - active)));
        Progress {
            stage: index + 1,
            stages: self.plan.stages.len(),
            percent,
            next_at: next_at.and_then(|t| t.ok()),
        }
    }

    /// The release was paused at `now` (the stage's hold stops running).
    pub fn pause(&mut self, now: Timestamp) {
        if self.paused_since.is_none() {
            self.paused_since = Some(now);
        }
    }

    /// The release was resumed at `now` (the hold runs again).
    pub fn resume(&mut self, now: Timestamp) {
        if let Some(p) = self.paused_since.take() {
            self.paused_secs = self.paused_secs.saturating_add(secs_between(p, now));
        }
    }

    /// Staff set `percent` at `now`: it replaces the stage's until the next stage.
    pub fn set_percent(&mut self, now: Timestamp, percent: u8) {
        let (index, _) = self.plan.stage_after(self.active_secs(now));
        self.percent_override = Some(StageOverride {
            stage: index,
            percent,
        });
    }
}

/// How many boxes tried a release and how many of them failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Figures {
    pub attempts: u64,
    pub failures: u64,
}

/// Does the guard halt the release? With `max_failure_percent` set, when the figures it
/// counts (those since the last resume of a halt) have at least `min_attempts` attempts and
/// failures reach the percent of them.
pub fn trips(plan: &Plan, counted: Figures) -> bool {
    let Some(max) = plan.max_failure_percent else {
        return false;
    };
    let max = u64::from(max);
    let enough = counted.attempts >= u64::from(plan.min_attempts) && counted.attempts > 0;
    enough && counted.failures.saturating_mul(100) >= max.saturating_mul(counted.attempts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan(text: &str, max: Option<i64>, min: Option<i64>) -> Result<Plan, PlanError> {
        Plan::build(&PlanRequest {
            stages: parse_stages(text)?,
            max_failure_percent: max,
            min_attempts: min,
        })
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn holds_parse_and_print() {
        assert_eq!(HoldTime::parse("24h").unwrap().secs(), 86_400);
        assert_eq!(HoldTime::parse("1d12h").unwrap().secs(), 129_600);
        assert_eq!(HoldTime::parse("90m").unwrap().to_string(), "1h30m");
        assert_eq!(HoldTime::parse("45s").unwrap().to_string(), "45s");
        for bad in [
            "",
            "24",
            "h",
            "24x",
            "1.5h",
            "0h",
            "400d",
            "-1h",
            "99999999999999999999d",
        ] {
            assert!(HoldTime::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn plans_are_validated() {
        let p = plan("1:24h,10:24h,100", Some(5), None).unwrap();
        assert_eq!(p.stages_text(), "1:1d,10:1d,100");
        assert_eq!(p.min_attempts, DEFAULT_MIN_ATTEMPTS);
        assert!(plan("1:1h,100:1h", None, Some(3)).is_ok());
        assert_eq!(
            plan("", None, None),
            Err(PlanError::StageSyntax {
                stage: 1,
                text: String::new()
            })
        );
        assert_eq!(
            plan("10:1h,5", None, None),
            Err(PlanError::NotRising {
                stage: 2,
                percent: 5,
                previous: 10
            })
        );
        assert_eq!(
            plan("10:1h,10", None, None),
            Err(PlanError::NotRising {
                stage: 2,
                percent: 10,
                previous: 10
            })
        );
        assert_eq!(
            plan("0:1h,100", None, None),
            Err(PlanError::Percent {
                stage: 1,
                percent: 0
            })
        );
        assert_eq!(
            plan("1:1h,101", None, None),
            Err(PlanError::Percent {
                stage: 2,
                percent: 101
            })
        );
        assert_eq!(
            plan("1,100", None, None),
            Err(PlanError::MissingHold {
                stage: 1,
                percent: 1
            })
        );
        assert_eq!(
            plan("1:1h,50:1h", None, None),
            Err(PlanError::LastHold { percent: 50 })
        );
        assert!(matches!(
            plan("1:soon,100", None, None),
            Err(PlanError::BadHold { stage: 1, .. })
        ));
        assert_eq!(
            plan("1:1h,100", Some(0), None),
            Err(PlanError::FailurePercent(0))
        );
        assert_eq!(
            plan("1:1h,100", Some(101), None),
            Err(PlanError::FailurePercent(101))
        );
        assert_eq!(
            plan("1:1h,100", None, Some(0)),
            Err(PlanError::MinAttempts(0))
        );
        assert_eq!(
            Plan::build(&PlanRequest {
                stages: vec![],
                max_failure_percent: None,
                min_attempts: None
            }),
            Err(PlanError::NoStages)
        );
        let many = (1..=21)
            .map(|p| format!("{p}:1h"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(plan(&many, None, None), Err(PlanError::TooManyStages(21)));
    }

    #[test]
    fn the_stage_follows_the_clock() {
        let p = plan("1:24h,10:24h,100", Some(5), None).unwrap();
        let start = t("2026-11-01T00:00:00Z");
        let s = PlanState::new(p, start, false);
        let at = |h: i64| start.saturating_add(SignedDuration::from_hours(h)).unwrap();
        let pr = s.progress(start);
        assert_eq!((pr.stage, pr.percent, pr.next_at), (1, 1, Some(at(24))));
        // One second before the hold ends: still stage 1; at the end: stage 2.
        let before = at(24).saturating_sub(SignedDuration::from_secs(1)).unwrap();
        assert_eq!(s.progress(before).percent, 1);
        let pr = s.progress(at(24));
        assert_eq!((pr.stage, pr.percent, pr.next_at), (2, 10, Some(at(48))));
        let pr = s.progress(at(48));
        assert_eq!(
            (pr.stage, pr.stages, pr.percent, pr.next_at),
            (3, 3, 100, None)
        );
        assert_eq!(s.progress(at(10_000)).percent, 100);
    }

    #[test]
    fn a_pause_stops_the_hold_and_staff_percent_lasts_one_stage() {
        let p = plan("1:24h,10:24h,100", None, None).unwrap();
        let start = t("2026-11-01T00:00:00Z");
        let at = |h: i64| start.saturating_add(SignedDuration::from_hours(h)).unwrap();
        let mut s = PlanState::new(p, start, false);
        s.pause(at(10));
        // Paused for 30 hours: still stage 1, no next stage announced.
        let pr = s.progress(at(40));
        assert_eq!((pr.stage, pr.next_at), (1, None));
        s.resume(at(40));
        // 10 h ran before the pause; 14 h more to go.
        assert_eq!(s.progress(at(40)).next_at, Some(at(54)));
        assert_eq!(s.progress(at(54)).stage, 2);
        // Staff raise stage 2 to 50 %: it holds in stage 2, stage 3's 100 % takes over.
        s.set_percent(at(60), 50);
        assert_eq!(s.progress(at(60)).percent, 50);
        assert_eq!(s.progress(at(77)).percent, 50);
        assert_eq!(s.progress(at(78)).percent, 100);
        // A plan set on a paused release does not run until it is resumed.
        let p = plan("1:1h,100", None, None).unwrap();
        let mut s = PlanState::new(p, start, true);
        assert_eq!(s.progress(at(5)).stage, 1);
        s.resume(at(5));
        assert_eq!(s.progress(at(5)).stage, 1);
        assert_eq!(s.progress(at(6)).stage, 2);
    }

    #[test]
    fn the_guard_halts_exactly_at_the_threshold() {
        let p = plan("1:1h,100", Some(5), Some(20)).unwrap();
        let f = |attempts, failures| Figures { attempts, failures };
        // 1 of 20 is exactly 5 %: halts. 1 of 21 is below.
        assert!(trips(&p, f(20, 1)));
        assert!(!trips(&p, f(21, 1)));
        assert!(trips(&p, f(40, 2)));
        assert!(trips(&p, f(40, 7)));
        // Below min_attempts nothing halts, even with every attempt failed.
        assert!(!trips(&p, f(19, 19)));
        // No max_failure_percent: no guard.
        let off = plan("1:1h,100", None, Some(1)).unwrap();
        assert!(!trips(&off, f(10, 10)));
    }
}
