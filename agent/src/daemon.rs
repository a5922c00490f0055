//! `np-agent run`: on start, resolve a pending trial; then check in on a jittered
//! interval (capped exponential backoff after network failures), install a staged update
//! inside the maintenance window, and take bundles from the inbox. SIGTERM or SIGINT stop
//! it cleanly between steps.

use crate::agent::Agent;
use crate::checkin::{self, Checked};
use crate::client::{Client, ServerReporter};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::AgentError;
use crate::inbox::{escape_controls, shown_path, Inbox, Settled, Taken, Timing};
use crate::install::When;
use crate::lock::{StateLock, Wait};
use crate::state::Phase;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Opens the agent; when the box has a server and a device key, events go to the server.
pub fn open_agent(cfg: Config, clock: Arc<dyn Clock>) -> Result<Agent, AgentError> {
    let client = match &cfg.server {
        Some(_) => Client::new(&cfg, clock.clone()).ok(),
        None => None,
    };
    let mut agent = Agent::open(cfg, clock)?;
    if let Some(c) = client {
        agent.reporter = Box::new(ServerReporter(c.clone()));
        agent.client = Some(c);
    }
    Ok(agent)
}

/// A flag set by SIGTERM or SIGINT (handlers are in place when this returns).
pub fn shutdown_on_signals() -> Result<Arc<AtomicBool>, AgentError> {
    use tokio::signal::unix::{signal, SignalKind};
    let io = |source| AgentError::Io {
        what: "cannot install the signal handlers".into(),
        source,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    let (mut term, mut int) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })
        .map_err(io)?;
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        f.store(true, Ordering::SeqCst);
    });
    Ok(flag)
}

fn random_fraction() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::getrandom(&mut b);
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

/// The wait before the next check-in: the interval ±20 %, or after `failures` network
/// failures in a row, 5 s doubling each time, capped at the interval and at one hour.
pub fn next_wait(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval.mul_f64(0.8 + 0.4 * random_fraction());
    }
    let base = Duration::from_secs(5).min(interval);
    let cap = interval.min(Duration::from_secs(3600));
    base.saturating_mul(1u32 << failures.min(16).saturating_sub(1))
        .min(cap)
}

/// Runs the daemon until `shutdown` is set.
pub fn run(
    cfg: Config,
    clock: Arc<dyn Clock>,
    shutdown: Arc<AtomicBool>,
) -> Result<(), AgentError> {
    let client = match &cfg.server {
        Some(_) => Some(Client::new(&cfg, clock.clone())?),
        None => None,
    };
    let interval = cfg.server.as_ref().map(|s| s.check_interval);
    let poll = cfg.inbox_poll;
    let state_dir = cfg.state_dir.clone();
    let lock = || StateLock::acquire(&state_dir, Wait::Quiet);
    let first = lock()?;
    let mut agent = open_agent(cfg, clock)?;
    crate::agent::warn_if_root_keys_edited(&agent.cfg, &agent.trust);
    crate::cli::start_box(&mut agent)?;
    drop(first);
    tracing::info!(
        "np-agent running for {} ({} in slot {})",
        agent.cfg.serial,
        agent.running()?.version,
        agent.state.active
    );
    let mut inbox =
        Inbox::open(&agent.cfg.state_dir, Timing::default()).map_err(|source| AgentError::Io {
            what: "cannot open the inbox".into(),
            source,
        })?;
    let mut next_check = Instant::now();
    let mut failures = 0u32;
    while !shutdown.load(Ordering::SeqCst) {
        // One step at a time under the state folder's lock, from the state on disk: an
        // admin's command between two steps (`np-agent rollback`) is never undone.
        let held = lock()?;
        agent.reload()?;
        if let (Some(c), Some(iv)) = (&client, interval) {
            if Instant::now() >= next_check {
                if agent.state.pending_rollback.is_some() {
                    // A rollback the boot loader could not be told of: try again, at the
                    // pace of the check-ins (no update is taken meanwhile).
                    if let Err(e) = agent.rollback("") {
                        tracing::warn!("{e}");
                    }
                }
                match checkin::check_once(&mut agent, c, When::Policy) {
                    Ok(r) => {
                        failures = 0;
                        log_checked(&r);
                    }
                    Err(e) if e.exit_code() == 3 => {
                        failures += 1;
                        tracing::warn!("check-in failed ({failures} in a row): {e}");
                    }
                    Err(e) => {
                        failures = 0;
                        tracing::warn!("{e}");
                    }
                }
                next_check = Instant::now() + next_wait(iv, failures);
            }
        }
        if shutdown.load(Ordering::SeqCst) {
            break;
        }
        install_staged(&mut agent);
        for name in inbox.ready() {
            if shutdown.load(Ordering::SeqCst) {
                break;
            }
            take_from_inbox(&mut agent, &mut inbox, &name);
            install_staged(&mut agent);
        }
        drop(held);
        let until = match &client {
            Some(_) => next_check.min(Instant::now() + poll),
            None => Instant::now() + poll,
        };
        while !shutdown.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(
                Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())),
            );
        }
    }
    tracing::info!("np-agent stopped");
    Ok(())
}

/// Takes one inbox entry: applies it when it is a regular file, then moves it on.
pub fn take_from_inbox(agent: &mut Agent, inbox: &mut Inbox, name: &std::ffi::OsStr) {
    let shown = crate::inbox::shown(name);
    let mut opened = match inbox.take(name) {
        Ok(Taken::Bundle(o)) => o,
        Ok(Taken::Aside(dest)) => {
            tracing::warn!(
                "{shown} in the inbox is not a regular file; moved aside unread to {}",
                shown_path(&dest)
            );
            return;
        }
        Err(e) => {
            tracing::warn!(
                "cannot take {shown} from the inbox: {}",
                escape_controls(&e.to_string())
            );
            return;
        }
    };
    tracing::info!("applying bundle {shown} from the inbox");
    // Staged only: the bundle leaves the inbox before the box reboots into it (the
    // caller installs the staged update once it is settled).
    let r = crate::bundle::apply(agent, &mut opened.file, When::Stage);
    match &r {
        Ok(crate::install::Done::Staged(v)) if agent.cfg.install.auto && agent.in_window() => {
            tracing::info!("bundle {shown} verified: {v} staged; installing it now")
        }
        Ok(d) => tracing::info!(
            "bundle {shown} applied: {}",
            escape_controls(&d.to_string())
        ),
        Err(_) => {}
    }
    checkin::report_outcome(agent, &r);
    let r = r.map(|_| ());
    match inbox.settle(opened, &r) {
        Ok(Settled::Deferred) => {
            tracing::info!("bundle {shown} is incomplete and was modified recently; waiting for the rest of the copy")
        }
        Ok(Settled::Applied(dest)) => tracing::info!("moved {shown} to {}", shown_path(&dest)),
        Ok(Settled::Rejected(dest)) => {
            if let Err(e) = &r {
                tracing::warn!(
                    "bundle {shown} rejected: {}",
                    escape_controls(&e.to_string())
                );
            }
            tracing::info!("moved {shown} to {}", shown_path(&dest))
        }
        Err(e) => tracing::warn!(
            "cannot move {shown} out of the inbox: {}",
            escape_controls(&e.to_string())
        ),
    }
}

/// Installs a staged update when `install.auto` and the maintenance window allow.
fn install_staged(agent: &mut Agent) {
    if agent.state.phase == Phase::Staged && agent.cfg.install.auto && agent.in_window() {
        let r = agent.activate_staged();
        match &r {
            Ok(d) => tracing::info!("staged update: {d}"),
            Err(e) => tracing::warn!("{e}"),
        }
        checkin::report_outcome(agent, &r);
    }
}

fn log_checked(r: &Checked) {
    match r {
        Checked::UpToDate => tracing::info!("check-in: up to date"),
        Checked::NotOffered {
            version,
            held: Some(h),
        } => tracing::info!("check-in: {version} available but held back: {}", h.message),
        Checked::NotOffered { version, .. } => {
            tracing::info!("check-in: {version} available but not offered yet")
        }
        Checked::SkippedRolledBack(v) => {
            tracing::info!("check-in: {v} was rolled back here; skipped")
        }
        Checked::RolledBack => tracing::info!("check-in: rolled back by a staff action"),
        Checked::Updated(d) => tracing::info!("check-in: {d}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let iv = Duration::from_secs(600);
        assert_eq!(next_wait(iv, 1), Duration::from_secs(5));
        assert_eq!(next_wait(iv, 2), Duration::from_secs(10));
        assert_eq!(next_wait(iv, 30), iv);
        let w = next_wait(iv, 0);
        assert!(w >= iv.mul_f64(0.79) && w <= iv.mul_f64(1.21));
    }
}
