//! The rollout guard at work: every report a box sends about a release goes through
//! [`observe`]. When it changes the release's figures (a new attempt or a new failure) and
//! the release has a plan whose threshold they reach, the release is paused by the server
//! itself: the record keeps the figures (`halt`), the audit log gets an entry by
//! `rollout-guard`, and `/metrics` counts it. Reports that change nothing cost a lock and
//! a set lookup, no store access.

use crate::domain::guard::Seen;
use crate::domain::plan::{trips, Figures};
use crate::state::AppState;
use crate::store::{Halt, ReleaseChangeError, StoreError};
use np_common::{Serial, Version};

/// The audit actor of the guard's halts.
pub const ACTOR: &str = "rollout-guard";

/// Counts what a box reported about `version`, and halts the release when its plan says
/// so. A failure to halt is logged, not returned: the box's report was stored already.
pub async fn observe(state: &AppState, serial: &Serial, version: &Version, seen: Seen) {
    let Some(figures) = state.tallies.observe(serial, version, seen) else {
        return;
    };
    if let Err(e) = judge(state, version, figures).await {
        tracing::error!(version = %version, "the rollout guard cannot halt the release: {e}");
    }
}

/// With several replicas on PostgreSQL, each counts the reports it receives; this task
/// (one per replica) also counts, every few seconds, the events other replicas stored after
/// id `after`, so that every replica's figures, and so its halts, cover the whole fleet.
pub async fn follow_other_replicas(state: AppState, mut after: i64) {
    let Some(pg) = state.store.postgres().cloned() else {
        return;
    };
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        loop {
            let batch = match pg.events_after(after, 1_000).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("the rollout guard cannot read other replicas' events: {e}");
                    break;
                }
            };
            let full = batch.len() == 1_000;
            for (id, serial, e) in batch {
                after = id;
                let Ok(serial) = Serial::parse(&serial) else {
                    continue;
                };
                if let (Some(version), Some(seen)) = (&e.version, Seen::of_event(e.event)) {
                    observe(&state, &serial, version, seen).await;
                }
            }
            if !full {
                break;
            }
        }
    }
}

/// Why the guard leaves a release alone.
struct NoHalt;

async fn judge(state: &AppState, version: &Version, figures: Figures) -> Result<(), StoreError> {
    // A read first: most new figures stay below the threshold, and need no transaction.
    let Some(record) = state.store.release(version).await? else {
        return Ok(());
    };
    let Some(plan) = &record.plan else {
        return Ok(());
    };
    if record.paused || record.yanked || trips(&plan.plan, figures, record.guard_baseline).is_none()
    {
        return Ok(());
    }
    let now = state.now();
    let changed = state
        .store
        .update_release(version, |r| {
            let current = state.tallies.figures(version);
            let Some(p) = &r.plan else {
                return Err(NoHalt);
            };
            if r.paused || r.yanked {
                return Err(NoHalt);
            }
            let counted = trips(&p.plan, current, r.guard_baseline).ok_or(NoHalt)?;
            let max_failure_percent = p.plan.max_failure_percent.unwrap_or(0);
            r.set_paused(true, now, current);
            r.halt = Some(Halt {
                at: now,
                figures: counted,
                max_failure_percent,
            });
            r.updated_at = now;
            Ok(())
        })
        .await;
    let (_, after) = match changed {
        Ok(pair) => pair,
        Err(ReleaseChangeError::Rejected(NoHalt) | ReleaseChangeError::NotFound) => return Ok(()),
        Err(ReleaseChangeError::Store(e)) => return Err(e),
    };
    let Some(halt) = after.halt else {
        return Ok(());
    };
    let min_attempts = after.plan.as_ref().map_or(0, |p| p.plan.min_attempts);
    state
        .store
        .append_audit(
            now,
            ACTOR,
            "release_halt",
            None,
            Some(serde_json::json!({"version": version, "paused": false})),
            Some(serde_json::json!({
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
            })),
        )
        .await?;
    state.metrics.record_halt(&version.to_string());
    tracing::warn!(
        version = %version,
        attempts = halt.figures.attempts,
        failures = halt.figures.failures,
        "rollout halted by the guard"
    );
    Ok(())
}
