//! `check` and `run`, and opening an agent with its server reporter.

use super::out::say;
use super::print_done;
use crate::agent::Agent;
use crate::checkin::{self, Checked};
use crate::client::Client;
use crate::clock::Clock;
use crate::config::Config;
pub use crate::daemon::open_agent;
use crate::error::AgentError;
use crate::install::When;
use std::sync::Arc;

/// Resolves a trial left pending by a restart (a start of the box).
pub fn start_box(agent: &mut Agent) -> Result<(), AgentError> {
    match agent.boot_start() {
        // The daemon calls this too: a closed stdout must not stop it (a command's own
        // output that follows still notices a closed pipe).
        Ok(Some(done)) => {
            let _ = print_done(&done);
        }
        Ok(None) => {}
        Err(e @ AgentError::RolledBack { .. }) => tracing::warn!("{e}"),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// `np-agent check`: check in and update now.
pub fn check(cfg: Config, clock: Arc<dyn Clock>) -> Result<(), AgentError> {
    let client = Client::new(&cfg, clock.clone())?;
    let mut agent = open_agent(cfg, clock)?;
    start_box(&mut agent)?;
    match checkin::check_once(&mut agent, &client, When::Now)? {
        Checked::UpToDate => say!("up to date: {}", agent.running()?.version),
        Checked::NotOffered { version, held } => match held {
            Some(h) => {
                say!(
                    "{version} is available but the server holds it back: {}",
                    h.message
                );
                if let Some(how) = checkin::override_hint(&h.rule) {
                    say!("{how}");
                }
            }
            None => say!("{version} is available but not offered to this box yet"),
        },
        Checked::SkippedRolledBack(v) => {
            say!("{v} was rolled back on this box; it is not installed again automatically");
            if let Some(how) = checkin::override_hint("rolled_back") {
                say!("{how}");
            }
        }
        Checked::RolledBack => say!(
            "rolled back by a staff action; slot {} runs {}",
            agent.state.active,
            agent.running()?.version
        ),
        Checked::Updated(done) => print_done(&done)?,
    }
    Ok(())
}

/// `np-agent run`: the daemon, until SIGTERM or SIGINT.
pub fn daemon(cfg: Config, clock: Arc<dyn Clock>) -> Result<(), AgentError> {
    let shutdown = crate::daemon::shutdown_on_signals()?;
    crate::daemon::run(cfg, clock, shutdown)
}
