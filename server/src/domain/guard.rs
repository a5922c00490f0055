//! The rollout guard's counters: per release, the boxes that tried it (an attempt: the box
//! downloaded, installed, tried, committed, rolled back or failed it) and those that
//! failed it (`failed` or `rolled_back`, by the agent or after the boot loader switched
//! back). They live in memory, derived from the reports and events the store already
//! keeps ([`Tallies::observe`] on every report, rebuilt from the store at start), so a
//! check-in costs the guard no write; only a halt writes.
//!
//! Boxes are counted once per release (sets of serials), so a box that reports its
//! rollback at every check-in is still one failure.

use crate::domain::plan::Figures;
use np_common::api::{EventKind, Outcome};
use np_common::{Serial, Version};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// What a report says about a box and a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The box started installing it.
    Attempt,
    /// The box tried it and it failed or was rolled back.
    Failure,
}

impl Seen {
    /// What an event of a box says (a refusal is no attempt: nothing was installed).
    pub fn of_event(kind: EventKind) -> Option<Seen> {
        match kind {
            EventKind::Download | EventKind::Install | EventKind::Trial | EventKind::Commit => {
                Some(Seen::Attempt)
            }
            EventKind::Rollback | EventKind::Failure => Some(Seen::Failure),
            EventKind::Refusal => None,
        }
    }

    /// What a last result of a box says.
    pub fn of_outcome(outcome: Outcome) -> Option<Seen> {
        match outcome {
            Outcome::Installed => Some(Seen::Attempt),
            Outcome::RolledBack | Outcome::Failed => Some(Seen::Failure),
            Outcome::Refused => None,
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    attempts: HashSet<Serial>,
    failures: HashSet<Serial>,
}

impl Tally {
    fn figures(&self) -> Figures {
        Figures {
            attempts: self.attempts.len() as u64,
            failures: self.failures.len() as u64,
        }
    }
}

/// Attempts and failures per release.
#[derive(Debug, Default)]
pub struct Tallies(Mutex<HashMap<Version, Tally>>);

impl Tallies {
    /// Counts what a report says; the release's new figures when they changed (only then
    /// can the guard's answer change).
    pub fn observe(&self, serial: &Serial, version: &Version, seen: Seen) -> Option<Figures> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let tally = match map.get_mut(version) {
            Some(t) => t,
            None => map.entry(version.clone()).or_default(),
        };
        let mut changed = false;
        if !tally.attempts.contains(serial) {
            tally.attempts.insert(serial.clone());
            changed = true;
        }
        if seen == Seen::Failure && !tally.failures.contains(serial) {
            tally.failures.insert(serial.clone());
            changed = true;
        }
        changed.then(|| tally.figures())
    }

    /// The release's figures now.
    pub fn figures(&self, version: &Version) -> Figures {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(version).map(Tally::figures).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_box_counts_once_per_release() {
        let t = Tallies::default();
        let a = Serial::parse("NR-2000-123456-4").unwrap();
        let v = Version::parse("5.3.0").unwrap();
        let w = Version::parse("5.4.0").unwrap();
        let f = |attempts, failures| Some(Figures { attempts, failures });
        assert_eq!(t.observe(&a, &v, Seen::Attempt), f(1, 0));
        assert_eq!(t.observe(&a, &v, Seen::Attempt), None);
        assert_eq!(t.observe(&a, &v, Seen::Failure), f(1, 1));
        assert_eq!(t.observe(&a, &v, Seen::Failure), None);
        assert_eq!(t.observe(&a, &w, Seen::Failure), f(1, 1));
        assert_eq!(
            t.figures(&v),
            Figures {
                attempts: 1,
                failures: 1
            }
        );
        assert_eq!(Seen::of_event(EventKind::Refusal), None);
        assert_eq!(Seen::of_outcome(Outcome::RolledBack), Some(Seen::Failure));
    }
}
