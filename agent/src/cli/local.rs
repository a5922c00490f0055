//! `install`, `rollback` and `commit`: local actions on the slots.

use super::out::say;
use super::print_done;
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
    let r = agent.activate_staged();
    crate::checkin::report_outcome(&mut agent, &r);
    print_done(&r?)
}

/// `np-agent rollback`: back to the previous image.
pub fn rollback(cfg: Config, clock: Arc<dyn Clock>) -> Result<(), AgentError> {
    let mut agent = super::online::open_agent(cfg, clock)?;
    agent.rollback("requested with `np-agent rollback`")?;
    crate::checkin::report_after(&mut agent);
    say!(
        "rolled back; slot {} runs {}",
        agent.state.active,
        agent.running()?.version
    );
    Ok(())
}

/// `np-agent commit`: marks the trial slot good.
pub fn commit(cfg: Config, clock: Arc<dyn Clock>) -> Result<(), AgentError> {
    let mut agent = super::online::open_agent(cfg, clock)?;
    agent.commit_trial()?;
    crate::checkin::report_after(&mut agent);
    say!(
        "{} committed in slot {}",
        agent.running()?.version,
        agent.state.active
    );
    Ok(())
}
