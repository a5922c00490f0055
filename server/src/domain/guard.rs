//! The rollout guard's counts: per release, the boxes that tried it (an attempt: the box
//! started installing it, tried it, committed it, rolled it back or failed it; a download
//! or a staged image is no attempt) and those that failed it (`failed` or `rolled_back`, by
//! the agent or after the boot loader switched back; a rollback ordered by staff is no
//! failure).
//!
//! Each box has one [`Mark`] per release: when it was first seen trying it, when it first
//! failed it, and whether staff ordered it rolled back. A mark changes at most three times
//! (first attempt, first failure, staff rollback), and only a change is written to the store
//! (`store::tallies`), so a check-in that repeats what the box said before costs the guard a
//! lock and a map lookup, no write. At start the marks are loaded back, so the figures
//! survive a restart exactly.
//!
//! After staff resume a halt, the guard counts only the boxes whose first attempt came
//! after the resume: a release has a guard epoch, which a resume of a halt raises, and a
//! box's mark keeps the epoch of its first attempt ([`Tallies::figures`] with `epoch`).
//! Failures never exceed attempts, and no clock resolution blurs what came first.

use crate::domain::plan::Figures;
use jiff::Timestamp;
use np_common::api::{EventKind, Outcome};
use np_common::{Serial, Version};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// What a report says about a box and a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The box started installing it.
    Attempt,
    /// The box tried it and it failed or was rolled back.
    Failure,
    /// The box rolled back from it because staff ordered it: an attempt, no failure.
    StaffRollback,
}

impl Seen {
    /// What an event of a box says. A download (the image staged) is no attempt, nor a
    /// refusal (nothing was installed). `staff_rollback`: the server handed this box a
    /// staff rollback action that this event answers.
    pub fn of_event(kind: EventKind, staff_rollback: bool) -> Option<Seen> {
        match kind {
            EventKind::Install | EventKind::Trial | EventKind::Commit => Some(Seen::Attempt),
            EventKind::Rollback if staff_rollback => Some(Seen::StaffRollback),
            EventKind::Rollback | EventKind::Failure => Some(Seen::Failure),
            EventKind::Download | EventKind::Refusal => None,
        }
    }

    /// What a last result of a box says (`staff_rollback` as for [`Seen::of_event`]).
    pub fn of_outcome(outcome: Outcome, staff_rollback: bool) -> Option<Seen> {
        match outcome {
            Outcome::Installed => Some(Seen::Attempt),
            Outcome::RolledBack if staff_rollback => Some(Seen::StaffRollback),
            Outcome::RolledBack | Outcome::Failed => Some(Seen::Failure),
            Outcome::Refused => None,
        }
    }
}

/// What the guard knows of one box and one release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// When the box was first seen trying the release (server time).
    pub attempt_at: Timestamp,
    /// The release's guard epoch then (raised by every resume of a halt).
    #[serde(default)]
    pub epoch: u32,
    /// When it first failed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<Timestamp>,
    /// Staff ordered it rolled back: its rollbacks and failures of this release since do
    /// not count.
    #[serde(default)]
    pub staff_rollback: bool,
}

impl Mark {
    /// The mark after `seen` at `now` (in the release's guard `epoch`), when it changes.
    pub fn after(old: Option<Mark>, seen: Seen, now: Timestamp, epoch: u32) -> Option<Mark> {
        let fresh = Mark {
            attempt_at: now,
            epoch,
            failed_at: None,
            staff_rollback: false,
        };
        let mut m = old.unwrap_or(fresh);
        match seen {
            Seen::Attempt => {}
            Seen::Failure => {
                if !m.staff_rollback && m.failed_at.is_none() {
                    m.failed_at = Some(now);
                }
            }
            Seen::StaffRollback => m.staff_rollback = true,
        }
        (Some(m) != old).then_some(m)
    }
}

impl Mark {
    /// The mark that says what both say (two replicas that each saw part of what a box
    /// did): the earlier first attempt (with its epoch), the earlier failure, and a staff
    /// rollback if either saw one.
    pub fn join(&self, other: &Mark) -> Mark {
        let (first, _) = if other.attempt_at < self.attempt_at {
            (other, self)
        } else {
            (self, other)
        };
        let failed_at = match (self.failed_at, other.failed_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Mark {
            attempt_at: first.attempt_at,
            epoch: first.epoch,
            failed_at,
            staff_rollback: self.staff_rollback || other.staff_rollback,
        }
    }
}

/// What one mark adds to figures counted from the guard epoch `since`.
fn contribution(m: &Mark, since: u32) -> Figures {
    if m.epoch < since {
        return Figures::default();
    }
    Figures {
        attempts: 1,
        failures: u64::from(m.failed_at.is_some()),
    }
}

/// One release's marks, with its figures kept up to date as marks change: in all, and
/// from the guard epoch last asked for (a resume changes it rarely; then they are counted
/// again once).
#[derive(Debug, Default)]
struct Tally {
    marks: HashMap<Serial, Mark>,
    total: Figures,
    since: u32,
    counted: Figures,
}

impl Tally {
    fn put(&mut self, serial: &Serial, new: Mark) {
        let old = self.marks.insert(serial.clone(), new);
        let add = |f: &mut Figures, since| {
            let n = contribution(&new, since);
            let o = old.map(|o| contribution(&o, since)).unwrap_or_default();
            f.attempts = (f.attempts + n.attempts).saturating_sub(o.attempts);
            f.failures = (f.failures + n.failures).saturating_sub(o.failures);
        };
        add(&mut self.total, 0);
        let since = self.since;
        add(&mut self.counted, since);
    }

    fn figures(&mut self, since: u32) -> Figures {
        if since == 0 {
            return self.total;
        }
        if since != self.since {
            self.since = since;
            self.counted = self.marks.values().map(|m| contribution(m, since)).fold(
                Figures::default(),
                |a, c| Figures {
                    attempts: a.attempts + c.attempts,
                    failures: a.failures + c.failures,
                },
            );
        }
        self.counted
    }
}

/// The marks of every box, per release.
#[derive(Debug, Default)]
pub struct Tallies(Mutex<HashMap<Version, Tally>>);

impl Tallies {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Version, Tally>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Would `seen` change the box's mark (nothing is kept)?
    pub fn would_change(&self, serial: &Serial, version: &Version, seen: Seen) -> bool {
        let map = self.lock();
        let old = map.get(version).and_then(|t| t.marks.get(serial)).copied();
        Mark::after(old, seen, Timestamp::UNIX_EPOCH, 0).is_some()
    }

    /// Counts what a report says: the box's new mark when it changed (only then is there
    /// something to store, and can the guard's answer change).
    pub fn observe(
        &self,
        serial: &Serial,
        version: &Version,
        seen: Seen,
        now: Timestamp,
        epoch: u32,
    ) -> Option<Mark> {
        let mut map = self.lock();
        let tally = match map.get_mut(version) {
            Some(t) => t,
            None => map.entry(version.clone()).or_default(),
        };
        let new = Mark::after(tally.marks.get(serial).copied(), seen, now, epoch)?;
        tally.put(serial, new);
        Some(new)
    }

    /// Puts back a stored mark (at start).
    pub fn load(&self, version: Version, serial: Serial, mark: Mark) {
        self.lock().entry(version).or_default().put(&serial, mark);
    }

    /// Puts the box's mark as stored by another replica (joined with the one here);
    /// answers whether the figures may have changed.
    pub fn join(&self, version: &Version, serial: &Serial, stored: Mark) -> bool {
        let mut map = self.lock();
        let tally = match map.get_mut(version) {
            Some(t) => t,
            None => map.entry(version.clone()).or_default(),
        };
        let old = tally.marks.get(serial).copied();
        let new = old.map_or(stored, |o| o.join(&stored));
        if old == Some(new) {
            return false;
        }
        tally.put(serial, new);
        true
    }

    /// The release's figures counted from guard epoch `epoch`: the boxes whose first
    /// attempt came in it or later, and their failures (epoch 0: every box).
    pub fn figures(&self, version: &Version, epoch: u32) -> Figures {
        let mut map = self.lock();
        map.get_mut(version)
            .map(|t| t.figures(epoch))
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn each_box_counts_once_per_release() {
        let t0 = t("2026-11-01T00:00:00Z");
        let t1 = t("2026-11-01T01:00:00Z");
        let tl = Tallies::default();
        let a = Serial::parse("NR-2000-123456-4").unwrap();
        let v = Version::parse("5.3.0").unwrap();
        let w = Version::parse("5.4.0").unwrap();
        assert!(tl.observe(&a, &v, Seen::Attempt, t0, 0).is_some());
        assert_eq!(tl.observe(&a, &v, Seen::Attempt, t1, 0), None);
        let m = tl.observe(&a, &v, Seen::Failure, t1, 0).unwrap();
        assert_eq!((m.attempt_at, m.failed_at), (t0, Some(t1)));
        assert_eq!(tl.observe(&a, &v, Seen::Failure, t1, 0), None);
        assert!(tl.observe(&a, &w, Seen::Failure, t1, 0).is_some());
        let f = |attempts, failures| Figures { attempts, failures };
        assert_eq!(tl.figures(&v, 0), f(1, 1));
        assert_eq!(tl.figures(&w, 0), f(1, 1));
    }

    #[test]
    fn two_marks_of_one_box_join_into_what_both_saw() {
        let (t0, t1) = (t("2026-11-01T00:00:00Z"), t("2026-11-01T01:00:00Z"));
        let early = Mark {
            attempt_at: t0,
            epoch: 0,
            failed_at: None,
            staff_rollback: false,
        };
        let late = Mark {
            attempt_at: t1,
            epoch: 1,
            failed_at: Some(t1),
            staff_rollback: true,
        };
        let want = Mark {
            attempt_at: t0,
            epoch: 0,
            failed_at: Some(t1),
            staff_rollback: true,
        };
        assert_eq!(early.join(&late), want);
        assert_eq!(late.join(&early), want);
        let tl = Tallies::default();
        let a = Serial::parse("NR-2000-123456-4").unwrap();
        let v = Version::parse("5.3.0").unwrap();
        assert!(tl.join(&v, &a, late));
        assert!(tl.join(&v, &a, early));
        assert!(!tl.join(&v, &a, early), "nothing new");
        assert_eq!(
            tl.figures(&v, 0),
            Figures {
                attempts: 1,
                failures: 1
            }
        );
    }

    #[test]
    fn a_download_or_a_refusal_is_no_attempt() {
        assert_eq!(Seen::of_event(EventKind::Download, false), None);
        assert_eq!(Seen::of_event(EventKind::Refusal, false), None);
        assert_eq!(
            Seen::of_event(EventKind::Install, false),
            Some(Seen::Attempt)
        );
        assert_eq!(Seen::of_event(EventKind::Trial, false), Some(Seen::Attempt));
        assert_eq!(Seen::of_outcome(Outcome::Refused, false), None);
        assert_eq!(
            Seen::of_outcome(Outcome::Installed, false),
            Some(Seen::Attempt)
        );
    }

    #[test]
    fn a_staff_rollback_is_an_attempt_but_no_failure() {
        let t0 = t("2026-11-01T00:00:00Z");
        assert_eq!(
            Seen::of_event(EventKind::Rollback, true),
            Some(Seen::StaffRollback)
        );
        assert_eq!(
            Seen::of_event(EventKind::Rollback, false),
            Some(Seen::Failure)
        );
        assert_eq!(
            Seen::of_outcome(Outcome::RolledBack, true),
            Some(Seen::StaffRollback)
        );
        // A failure (not a rollback) stays one even with a staff action pending.
        assert_eq!(
            Seen::of_event(EventKind::Failure, true),
            Some(Seen::Failure)
        );
        let tl = Tallies::default();
        let a = Serial::parse("NR-2000-123456-4").unwrap();
        let v = Version::parse("5.3.0").unwrap();
        tl.observe(&a, &v, Seen::Attempt, t0, 0);
        tl.observe(&a, &v, Seen::StaffRollback, t0, 0);
        // The box keeps reporting `rolled_back` at every check-in: still no failure.
        assert_eq!(tl.observe(&a, &v, Seen::Failure, t0, 0), None);
        assert_eq!(
            tl.figures(&v, 0),
            Figures {
                attempts: 1,
                failures: 0
            }
        );
    }

    #[test]
    fn after_a_resume_only_boxes_that_started_later_count() {
        let now = t("2026-11-01T00:00:00Z");
        let tl = Tallies::default();
        let v = Version::parse("5.3.0").unwrap();
        let s = |n: u32| {
            let digits = format!("2000{n:06}");
            Serial::parse(&format!(
                "NR-2000-{n:06}-{}",
                np_common::serial::luhn_check_digit(&digits)
            ))
            .unwrap()
        };
        // Four boxes tried it before the resume (epoch 0); they fail after it (epoch 1):
        // their failures do not count again, so failures never exceed attempts.
        for n in 1..=4 {
            tl.observe(&s(n), &v, Seen::Attempt, now, 0);
        }
        for n in 1..=4 {
            tl.observe(&s(n), &v, Seen::Failure, now, 1);
        }
        // Two new boxes after the resume, one fails.
        tl.observe(&s(5), &v, Seen::Attempt, now, 1);
        tl.observe(&s(6), &v, Seen::Failure, now, 1);
        let f = |attempts, failures| Figures { attempts, failures };
        assert_eq!(tl.figures(&v, 1), f(2, 1));
        assert_eq!(tl.figures(&v, 0), f(6, 5));
        // Kept up to date as marks change after the epoch was asked for.
        tl.observe(&s(5), &v, Seen::Failure, now, 1);
        tl.observe(&s(7), &v, Seen::Attempt, now, 2);
        assert_eq!(tl.figures(&v, 1), f(3, 2));
        assert_eq!(tl.figures(&v, 0), f(7, 6));
        assert_eq!(tl.figures(&v, 2), f(1, 0));
        assert!(!tl.would_change(&s(7), &v, Seen::Attempt));
        assert!(tl.would_change(&s(7), &v, Seen::Failure));
    }
}
