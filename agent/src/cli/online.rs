//! `check` and `run`, and opening an agent with its server reporter.

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
        Ok(Some(done)) => print_done(&done),
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
        Checked::UpToDate => println!("up to date: {}", agent.running()?.version),
        Checked::NotOffered(v) => println!("{v} is available but not offered to this box yet"),
        Checked::SkippedRolledBack(v) => {
            println!("{v} was rolled back on this box; it is not installed again automatically")
        }
        Checked::RolledBack => println!(
            "rolled back by a staff action; slot {} runs {}",
            agent.state.active,
            agent.running()?.version
        ),
        Checked::Updated(done) => print_done(&done),
    }
    Ok(())
}

/// `np-agent run`: the daemon, until SIGTERM or SIGINT.
pub fn daemon(cfg: Config, clock: Arc<dyn Clock>) -> Result<(), AgentError> {
    let shutdown = crate::daemon::shutdown_on_signals()?;
    crate::daemon::run(cfg, clock, shutdown)
}
