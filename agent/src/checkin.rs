//! One check-in (the update cycle: docs/formats.md): send the box's state, verify the keyring, time token
//! and entitlement before anything is used, note the newest release, act on a staff
//! action, and install an offer through the shared install path.

use crate::agent::Agent;
use crate::client::Client;
use crate::error::AgentError;
use crate::install::{Done, When};
use np_common::api::{CheckInRequest, EventKind};
use np_common::docs::{Action, ActionKind, DocError};
use np_common::Version;

/// How a check-in ended (errors aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Nothing to install.
    UpToDate,
    /// A newer release exists but is not offered yet (rollout, pause).
    NotOffered(Version),
    /// The offer is a version this box rolled back from; not reinstalled automatically.
    SkippedRolledBack(Version),
    /// A staff rollback action was carried out.
    RolledBack,
    /// An update was installed, staged, or is rebooting.
    Updated(Done),
}

fn nonce() -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // Still unique enough to bind the answer to this request.
        let t = jiff::Timestamp::now().as_nanosecond();
        b.copy_from_slice(&t.to_le_bytes());
    }
    hex::encode(b)
}

/// Checks in once and acts on the answer.
pub fn check_once(agent: &mut Agent, client: &Client, when: When) -> Result<Checked, AgentError> {
    let running = agent.running()?;
    let nonce = nonce();
    let req = CheckInRequest {
        version: running.version.clone(),
        slot: agent.state.active.as_str().to_owned(),
        state: agent.state.phase.api(),
        last_result: agent.state.last_result.clone(),
        nonce: nonce.clone(),
    };
    let resp = client.check_in(&req)?;
    agent.trust.accept_keyring(&resp.keyring)?;
    agent.trust.accept_time(&resp.time, &nonce)?;
    agent.trust.accept_entitlement(&resp.entitlement)?;
    agent.state.last_check = Some(agent.trust.now());
    let mut available = None;
    if let Some(a) = &resp.available {
        let r = agent.trust.verify_release(&a.manifest)?;
        agent.state.update_available = (r.version > running.version).then(|| r.version.clone());
        available = Some(r);
    } else {
        agent.state.update_available = None;
    }
    agent.save()?;

    let mut forced: Option<Version> = None;
    if let Some(env) = &resp.action {
        let keyring = agent.trust.keyring()?.clone();
        match Action::verify_for(env, &keyring, &agent.cfg.serial, agent.state.last_action_at) {
            Ok(action) => {
                agent.state.last_action_at = Some(action.issued_at);
                agent.save()?;
                match action.action {
                    ActionKind::Rollback => {
                        agent.rollback("a staff rollback action")?;
                        return Ok(Checked::RolledBack);
                    }
                    ActionKind::Upgrade => forced = action.version,
                }
            }
            Err(DocError::StaleAction { .. }) => {}
            Err(e) => agent.event(
                None,
                EventKind::Refusal,
                &format!("staff action refused: {e}"),
            ),
        }
    }

    if let Some(offer) = &resp.offer {
        let release = agent.trust.verify_release(&offer.manifest)?;
        if let Err(e) = agent.check_rule(&release) {
            agent.record_refusal(Some(&release.version), &e);
            return Err(e);
        }
        if agent.rolled_back_from(&release.version) && forced.as_ref() != Some(&release.version) {
            tracing::info!(
                "{} was rolled back on this box; not installing it again automatically",
                release.version
            );
            return Ok(Checked::SkippedRolledBack(release.version));
        }
        let staged = agent.state.phase == crate::state::Phase::Staged
            && agent.state.target.as_ref().map(|t| &t.version) == Some(&release.version);
        if staged {
            return Ok(Checked::Updated(agent.after_staged(&release, when)?));
        }
        let slot = crate::download::fetch(agent, client, &offer.url, &release)?;
        agent.finish_write(slot, &offer.manifest)?;
        agent.event(
            Some(&release.version),
            EventKind::Download,
            &format!(
                "{} downloaded and verified into slot {slot}",
                release.version
            ),
        );
        return Ok(Checked::Updated(agent.after_staged(&release, when)?));
    }

    match available {
        Some(r) if r.version > running.version => {
            if let Err(e) = agent.check_rule(&r) {
                agent.record_refusal(Some(&r.version), &e);
                return Err(e);
            }
            Ok(Checked::NotOffered(r.version))
        }
        _ => Ok(Checked::UpToDate),
    }
}
