//! `install`, `rollback` and `commit`: local actions on the slots.

use super::print_done;
use crate::agent::Agent;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::AgentError;
use crate::state::{Cmd, Phase, StateError};
use std::sync::Arc;

/// `np-agent install`: activates and trials the staged update.
pub fn install(cfg: Config, clock: Arc<dyn Clock>) -> Result<(), AgentError> {
    let mut agent = super::online::open_agent(cfg, clock)?;
    if agent.state.phase != Phase::Staged {
        return Err(StateError::Refused {
            cmd: Cmd::Activate,
            phase: agent.state.phase,
        }
        .into());
    }
    let done = agent.activate_staged()?;
    print_done(&done);
    Ok(())
}

/// `np-agent rollback`: back to the previous image.
pub fn rollback(cfg: Config, clock: Arc<dyn Clock>) -> Result<(), AgentError> {
    let mut agent = super::online::open_agent(cfg, clock)?;
    agent.rollback("requested with `np-agent rollback`")?;
    println!(
        "rolled back; slot {} runs {}",
        agent.state.active,
        agent.running()?.version
    );
    Ok(())
}

/// `np-agent commit`: marks the trial slot good.
pub fn commit(cfg: Config, clock: Arc<dyn Clock>) -> Result<(), AgentError> {
    let mut agent = Agent::open(cfg, clock)?;
    agent.commit_trial()?;
    println!(
        "{} committed in slot {}",
        agent.running()?.version,
        agent.state.active
    );
    Ok(())
}
