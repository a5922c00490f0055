//! `np-agent status [--json]`: the box's firmware, warranty and update state (docs/cli.md).

use super::out::say;
use crate::agent::Agent;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::AgentError;
use crate::state::Phase;
use np_common::api::Outcome;
use np_common::coverage::Coverage;
use serde_json::{json, Value};
use std::sync::Arc;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// The status object (docs/cli.md) (plus a few details).
pub fn status_json(agent: &Agent) -> Result<Value, AgentError> {
    let running = agent.running()?;
    let previous_version = match agent.state.previous {
        Some(slot) => agent.slots.release(slot)?.map(|r| r.version.to_string()),
        None => None,
    };
    let ent = agent.trust.entitlement();
    let attempts = match agent.state.phase {
        Phase::Trial { attempts } => Some(attempts),
        _ => None,
    };
    // Status never fails on the boot loader: a damaged record is shown as the error.
    let booted_slot = crate::boot::booted_slot(&agent.cfg.boot.cmdline)
        .map_err(|e| e.to_string())
        .map(|s| s.map(|s| s.as_str()));
    let boot_record = agent.boot.record().map_err(|e| e.to_string());
    Ok(json!({
        "serial": agent.cfg.serial,
        "model": agent.cfg.model,
        "version": running.version,
        "security_version": running.security_version,
        "active_slot": agent.state.active,
        "booted_slot": booted_slot.clone().unwrap_or(None),
        "boot_loader": {
            "kind": agent.boot.name(),
            "record": boot_record.as_ref().ok(),
            "error": boot_record.as_ref().err().or(booted_slot.as_ref().err()),
        },
        "slot_targets": {
            "a": agent.slots.image(crate::state::Slot::A),
            "b": agent.slots.image(crate::state::Slot::B),
        },
        "previous_version": previous_version,
        "phase": agent.state.phase.api(),
        "trial_attempts": attempts,
        "target_version": agent.state.target.as_ref().map(|t| t.version.to_string()),
        "coverage_end": ent.map(|e| e.coverage_end.to_string()),
        // Beside the entitlement's status: an active entitlement may have ended coverage.
        "coverage": ent.map(|e| Coverage::at(&e.terms, e.coverage_end, agent.trust.now())),
        "coverage_start": ent.and_then(|e| Coverage::start(&e.terms)).map(|d| d.to_string()),
        "entitlement_status": ent.map(|e| e.status),
        "entitlement_sequence": ent.map(|e| e.sequence),
        "time_floor": agent.trust.floor(),
        "last_check": agent.state.last_check,
        "last_result": agent.state.last_result,
        // Learned at the last check-in; once that version runs, nothing is available.
        "update_available": agent
            .state
            .update_available
            .as_ref()
            .filter(|v| **v > running.version),
        "rolled_back_from": agent.state.rolled_back_from,
        // A rollback the boot loader could not be told of yet (finished by `rollback` or
        // the next start); null when none.
        "rollback_pending": agent.state.pending_rollback.as_ref().map(|p| json!({
            "from_slot": p.failed,
            "to_slot": p.back,
            "reason": p.reason,
        })),
        // Receipts: the last seq written and how many the outbox still holds.
        "receipt_seq": agent.state.receipt_seq,
        "receipts_unsent": crate::receipts::list(&agent.cfg.state_dir).map(|l| l.len()).unwrap_or(0),
        // Diagnostics reports for support cases waiting to be sent (a failed post).
        "diagnostics_unsent": crate::diagnostics::queued(&agent.cfg.state_dir).len(),
    }))
}

/// The coverage in words: its state and the date that matters for it.
fn coverage_line(v: &Value) -> String {
    let end = v["coverage_end"].as_str().unwrap_or("?");
    match v["coverage"].as_str() {
        Some("covered") => format!("covered; coverage ends on {end}"),
        Some("expired") => format!("expired: ended on {end}; contact the vendor to extend it"),
        Some("not_yet_started") => format!(
            "not yet started: starts on {}, covered until {end}",
            v["coverage_start"].as_str().unwrap_or("?")
        ),
        _ => "none: no entitlement stored; the box needs one from the vendor".into(),
    }
}

/// Prints the status.
pub fn run(cfg: &Config, clock: Arc<dyn Clock>, a: &Args) -> Result<(), AgentError> {
    let agent = Agent::open(cfg.clone(), clock)?;
    // Said by `status` and when the daemon starts, not by every command.
    crate::agent::warn_if_root_keys_edited(&agent.cfg, &agent.trust);
    let v = status_json(&agent)?;
    if a.json {
        say!("{v}");
        return Ok(());
    }
    let s = |k: &str| match &v[k] {
        Value::Null => "none".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    say!("box            {} ({})", s("serial"), s("model"));
    say!(
        "firmware       {} (security version {}) in slot {}",
        s("version"),
        s("security_version"),
        s("active_slot")
    );
    say!("previous       {}", s("previous_version"));
    say!(
        "boot loader    {} (booted slot {})",
        v["boot_loader"]["kind"].as_str().unwrap_or("?"),
        s("booted_slot")
    );
    if let Some(e) = v["boot_loader"]["error"].as_str() {
        say!("boot problem   {e}");
    }
    say!("phase          {}", s("phase"));
    if let Some(p) = &agent.state.pending_rollback {
        say!(
            "rollback       to slot {} under way, not finished: run `np-agent rollback` again or restart the box",
            p.back
        );
    }
    say!("entitlement    {}", s("entitlement_status"));
    say!("coverage       {}", coverage_line(&v));
    say!("update         {}", s("update_available"));
    say!("last check-in  {}", s("last_check"));
    if let Some(r) = &agent.state.last_result {
        let v = r
            .version
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default();
        let outcome = match r.outcome {
            Outcome::Installed => "installed",
            Outcome::Refused => "refused",
            Outcome::RolledBack => "rolled back",
            Outcome::Failed => "failed",
        };
        say!("last result    {outcome} {v}: {}", r.detail);
    }
    let waiting = v["diagnostics_unsent"].as_u64().unwrap_or(0);
    if waiting > 0 {
        say!("diagnostics    {waiting} report(s) for support cases wait for the next check-in");
    }
    let unsent = v["receipts_unsent"].as_u64().unwrap_or(0);
    if unsent > 0 {
        say!(
            "receipts       {unsent} in the outbox (last seq {}); `np-agent receipts --out DIR` copies them out",
            agent.state.receipt_seq
        );
    }
    say!("time floor     {}", s("time_floor"));
    Ok(())
}
