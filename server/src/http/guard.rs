//! The rollout guard at work: every report a box sends about a release goes through
//! [`observe`]. When it changes the box's mark for the release (its first attempt, its
//! first failure, a staff rollback), the mark is stored, and [`judge`] looks at the
//! release: when it has a plan whose threshold the figures reach, the server pauses it
//! itself. The pause, its figures (`halt`) and the audit entry by `rollout-guard` are one
//! store transaction; `/metrics` counts it. Reports that change nothing cost a lock and a
//! map lookup, no store access; reports about a version that is no release are ignored.

use crate::domain::guard::Seen;
use crate::domain::plan::trips;
use crate::state::AppState;
use crate::store::{Change, Halt, ReleaseChangeError, StoreError};
use np_common::{Serial, Version};

/// The audit actor of the guard's halts.
pub const ACTOR: &str = "rollout-guard";

/// Counts what a box reported about `version`, and halts the release when its plan says
/// so. A failure to store or halt is logged, not returned: the box's report was stored
/// already.
pub async fn observe(state: &AppState, serial: &Serial, version: &Version, seen: Seen) {
    observe_at(state, serial, version, seen, None).await
}

/// [`observe`] for a report of what the box did at `done_at` (a signed receipt, which an
/// offline box may bring long after): something done before the last resume of a halt
/// counts in the guard epoch before it, so a late receipt cannot halt the release again.
pub async fn observe_at(
    state: &AppState,
    serial: &Serial,
    version: &Version,
    seen: Seen,
    done_at: Option<jiff::Timestamp>,
) {
    if !state.tallies.would_change(serial, version, seen) {
        return;
    }
    let now = state.now();
    let result = async {
        // Only releases are counted: a made-up version string must not grow memory.
        let Some(record) = state.store.release(version).await? else {
            return Ok(());
        };
        let epoch = match (done_at, record.guard_since) {
            (Some(done), Some(since)) if done < since => record.guard_epoch.saturating_sub(1),
            _ => record.guard_epoch,
        };
        let Some(mark) = state.tallies.observe(serial, version, seen, now, epoch) else {
            return Ok(());
        };
        let stored = state.store.put_tally_mark(version, serial, &mark).await?;
        if stored != mark {
            // Another replica had stored more of what this box did.
            state.tallies.join(version, serial, stored);
        }
        judge(state, version).await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(version = %version, "the rollout guard failed: {e}");
    }
}

/// How long a write of a mark may take at most: a poll reads again the marks changed in
/// that span before its last, since a change number taken by a transaction still running
/// may commit after a higher one.
const FOLLOW_OVERLAP: std::time::Duration = crate::store::postgres::OP_TIMEOUT;

/// With several replicas on PostgreSQL, each counts the reports it receives and stores the
/// marks they change; this task (one per replica) joins, every two seconds, the marks other
/// replicas stored since change number `after`, and judges the releases whose figures
/// changed, so that every replica's figures, and so its halts, cover the whole fleet (a
/// halt is one transaction on the release's row: two replicas never halt it twice).
pub async fn follow_other_replicas(state: AppState, after: i64) {
    let Some(pg) = state.store.postgres().cloned() else {
        return;
    };
    // (when a poll ran, the highest change number it saw): the next poll reads from the
    // newest one older than the overlap.
    let mut polls: std::collections::VecDeque<(std::time::Instant, i64)> =
        std::collections::VecDeque::from([(std::time::Instant::now(), after)]);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let now = std::time::Instant::now();
        while polls.len() > 1
            && polls
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) > FOLLOW_OVERLAP)
        {
            polls.pop_front();
        }
        let from = polls.front().map_or(after, |(_, n)| *n);
        let changed = match pg.tally_marks_changed_after(from).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("the rollout guard cannot read other replicas' marks: {e}");
                continue;
            }
        };
        let newest = changed.iter().map(|(n, ..)| *n).max().unwrap_or(from);
        let newest = newest.max(polls.back().map_or(from, |(_, n)| *n));
        polls.push_back((now, newest));
        let mut versions: Vec<Version> = Vec::new();
        for (_, version, serial, mark) in changed {
            if state.tallies.join(&version, &serial, mark) && !versions.contains(&version) {
                versions.push(version);
            }
        }
        for version in versions {
            if let Err(e) = judge(&state, &version).await {
                tracing::error!(version = %version, "the rollout guard failed: {e}");
            }
        }
    }
}

/// Why the guard leaves a release alone.
struct NoHalt;

/// Halts the release when its plan's threshold is reached by the figures counted since
/// the last resume of a halt (also called when staff set a plan: a threshold already
/// exceeded halts at once).
pub async fn judge(state: &AppState, version: &Version) -> Result<(), StoreError> {
    // A read first: most new figures stay below the threshold, and need no transaction.
    let Some(record) = state.store.release(version).await? else {
        return Ok(());
    };
    let Some(plan) = &record.plan else {
        return Ok(());
    };
    if record.paused
        || record.yanked
        || !trips(
            &plan.plan,
            state.tallies.figures(version, record.guard_epoch),
        )
    {
        return Ok(());
    }
    let now = state.now();
    let change = Change {
        actor: Some(ACTOR),
        action: "release_halt",
        at: now,
    };
    let changed = state
        .store
        .update_release_audited(
            version,
            &change,
            |r| {
                let Some(p) = &r.plan else {
                    return Err(NoHalt);
                };
                let counted = state.tallies.figures(version, r.guard_epoch);
                if r.paused || r.yanked || !trips(&p.plan, counted) {
                    return Err(NoHalt);
                }
                let max_failure_percent = p.plan.max_failure_percent.unwrap_or(0);
                r.set_paused(true, now);
                r.halt = Some(Halt {
                    at: now,
                    figures: counted,
                    max_failure_percent,
                });
                r.updated_at = now;
                Ok(())
            },
            |_, after| {
                let halt = after.halt.unwrap_or(Halt {
                    at: now,
                    figures: Default::default(),
                    max_failure_percent: 0,
                });
                let min_attempts = after.plan.as_ref().map_or(0, |p| p.plan.min_attempts);
                (
                    serde_json::json!({"version": version, "paused": false}),
                    serde_json::json!({
                        "version": version,
                        "paused": true,
                        "attempts": halt.figures.attempts,
                        "failures": halt.figures.failures,
                        "max_failure_percent": halt.max_failure_percent,
                        "min_attempts": min_attempts,
                        "reason": format!(
                            "{} of {} boxes that tried {version} failed or rolled back, at or above {}%",
                            halt.figures.failures, halt.figures.attempts, halt.max_failure_percent
                        ),
                    }),
                )
            },
        )
        .await;
    let (_, after) = match changed {
        Ok(pair) => pair,
        Err(ReleaseChangeError::Rejected(NoHalt) | ReleaseChangeError::NotFound) => return Ok(()),
        Err(ReleaseChangeError::Store(e)) => return Err(e),
    };
    let Some(halt) = after.halt else {
        return Ok(());
    };
    state.metrics.record_halt(&version.to_string());
    tracing::warn!(
        version = %version,
        attempts = halt.figures.attempts,
        failures = halt.figures.failures,
        "rollout halted by the guard"
    );
    Ok(())
}
