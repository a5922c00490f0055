//! One check-in (the update cycle: docs/formats.md): send the box's state, verify the keyring, time token
//! and entitlement before anything is used, note the newest release, act on a staff
//! action (a rollback, an upgrade, or diagnostics for a support case: `diagnostics.rs`,
//! whose outbox is also sent again here), and install an offer through the shared
//! install path.
//!
//! When an action ends (a staff rollback or upgrade, `np-agent rollback`, an install), the
//! box tells the server at once with a report check-in (the same signed check-in, whose
//! request carries the running version, slot, phase and last result), so the server's
//! record follows without waiting for the next regular check-in.

use crate::agent::Agent;
use crate::client::Client;
use crate::error::AgentError;
use crate::install::{Done, When};
use crate::trust::TrustError;
use np_common::api::{CheckInRequest, EventKind, RefusalInfo};
use np_common::docs::{ActionKind, DocError};
use np_common::Version;

/// How a check-in ended (errors aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Nothing to install.
    UpToDate,
    /// A newer release exists but is not offered: `held` is the server's reason (rollout,
    /// pause, withdrawn, rolled back from) when it gave one.
    NotOffered {
        version: Version,
        held: Option<RefusalInfo>,
    },
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

/// How the server can be told to install a held release anyway, by the rule that holds
/// it (`None` when nothing overrides it, such as a withdrawn release).
pub fn override_hint(rule: &str) -> Option<&'static str> {
    match rule {
        "rolled_back" => Some(
            "to install it anyway, apply its bundle with `np-agent apply FILE`, or ask the \
             vendor for a staff upgrade action to it",
        ),
        "paused" | "outside_rollout" => Some(
            "it is offered once the rollout reaches this box; to install it now, apply its \
             bundle with `np-agent apply FILE` or ask the vendor for a staff upgrade action",
        ),
        _ => None,
    }
}

/// What a check-in does with the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A regular check-in: act on the staff action and install the offer.
    Full,
    /// A report after an action ended: trust documents, the newest release and a new
    /// staff action are taken; an offer waits for the next regular check-in.
    Report,
}

/// Checks in once and acts on the answer; when a staff action or an install ended, tells
/// the server at once (see [`report_after`]).
pub fn check_once(agent: &mut Agent, client: &Client, when: When) -> Result<Checked, AgentError> {
    let checked = exchange(agent, client, when, Mode::Full);
    let ended = matches!(
        &checked,
        Ok(Checked::RolledBack | Checked::Updated(Done::Installed(_)))
            | Err(AgentError::RolledBack { .. })
    );
    if ended {
        report_with(agent, client);
    }
    checked
}

/// After an install or rollback outside a check-in (`apply`, `install`): reports at once
/// when `r` is an outcome the server should know (installed, or rolled back).
pub fn report_outcome(agent: &mut Agent, r: &Result<Done, AgentError>) {
    if matches!(
        r,
        Ok(Done::Installed(_)) | Err(AgentError::RolledBack { .. })
    ) {
        report_after(agent);
    }
}

/// Tells the server at once how an action ended, when the box has a server (best effort:
/// a failure is logged and the next check-in reports it).
pub fn report_after(agent: &mut Agent) {
    if let Some(client) = agent.client.clone() {
        report_with(agent, &client);
    }
}

fn report_with(agent: &mut Agent, client: &Client) {
    // A staff action that arrives with the report is carried out and reported in turn;
    // bounded, in case the server keeps sending new ones.
    for _ in 0..3 {
        match exchange(agent, client, When::Now, Mode::Report) {
            Ok(Checked::RolledBack | Checked::Updated(Done::Installed(_)))
            | Err(AgentError::RolledBack { .. }) => continue,
            Ok(_) => {
                tracing::info!("reported the outcome to the server");
                return;
            }
            Err(e) => {
                tracing::warn!(
                    "cannot report the outcome to the server now ({e}); the next check-in does"
                );
                return;
            }
        }
    }
}

/// One check-in and what the answer asks for, per `mode`.
fn exchange(
    agent: &mut Agent,
    client: &Client,
    when: When,
    mode: Mode,
) -> Result<Checked, AgentError> {
    let running = agent.running()?;
    let nonce = nonce();
    let req = CheckInRequest {
        version: running.version.clone(),
        slot: agent.state.active.as_str().to_owned(),
        state: agent.state.phase.api(),
        last_result: agent.state.last_result.clone(),
        nonce: nonce.clone(),
        receipts: Vec::new(),
    };
    let unsent = crate::receipts::unsent(
        &agent.cfg.state_dir,
        np_common::api::MAX_RECEIPTS_PER_CHECK_IN,
        np_common::api::MAX_RECEIPT_BYTES_PER_CHECK_IN,
    );
    let req = CheckInRequest {
        receipts: unsent.iter().map(|(_, env)| env.clone()).collect(),
        ..req
    };
    let resp = client.check_in(&req)?;
    agent.trust.accept_keyring(&resp.keyring)?;
    agent.trust.accept_time(&resp.time, &nonce)?;
    agent.trust.accept_entitlement(&resp.entitlement)?;
    // The answer is the server's (its time token signs this check-in's nonce): what this
    // check-in sent and the server now holds leaves the outbox.
    let held: Vec<u64> = resp
        .receipts_done
        .iter()
        .copied()
        .filter(|seq| unsent.iter().any(|(s, _)| s == seq))
        .collect();
    crate::receipts::drop_sent(&agent.cfg.state_dir, &held);
    agent.state.last_check = Some(crate::state::whole_second(agent.trust.now()));
    let mut available = None;
    agent.state.update_available = None;
    if let Some(a) = &resp.available {
        // Only news: a manifest that does not verify (a release dated ahead of this box's
        // time, a key rotated out) must not stop the staff action or the offer below.
        match agent.trust.verify_release(&a.manifest) {
            Ok(r) => {
                agent.state.update_available =
                    (r.version > running.version).then(|| r.version.clone());
                available = Some((r, a.refusal.clone()));
            }
            Err(e) => tracing::warn!("the newest release the server names was refused: {e}"),
        }
    }
    agent.save()?;
    // Diagnostics a failed post left in the outbox go again now that the server answers.
    crate::diagnostics::send_queued(agent, client);

    let mut forced: Option<Version> = None;
    if let Some(env) = &resp.action {
        match agent.trust.verify_action(env, agent.state.last_action_at) {
            Ok(action) => {
                agent.state.last_action_at = Some(action.issued_at);
                agent.save()?;
                match action.action {
                    ActionKind::Rollback => {
                        agent.rollback("a staff rollback action")?;
                        return Ok(Checked::RolledBack);
                    }
                    ActionKind::Upgrade => forced = action.version,
                    ActionKind::Diagnostics => crate::diagnostics::act(agent, client, &action),
                }
            }
            Err(TrustError::Doc(DocError::StaleAction { .. })) => {}
            Err(e) => agent.event(
                None,
                EventKind::Refusal,
                &format!("staff action refused: {e}"),
            ),
        }
    }

    let offer = match mode {
        Mode::Full => resp.offer.as_ref(),
        // Only a staff upgrade is carried out with a report; other offers wait.
        Mode::Report => resp.offer.as_ref().filter(|_| forced.is_some()),
    };
    if let Some(offer) = offer {
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
        Some((r, held)) if r.version > running.version => {
            // `np-agent check` (someone asked for the update now): refused, recorded as the
            // box's last result, exit 1 naming the rule. The daemon only logs it as held
            // back: a release no check-in can install is news, not an attempt, and must not
            // overwrite the last result (or send an event) at every check-in.
            match agent.check_rule(&r) {
                Err(e) if mode == Mode::Full && when == When::Now => {
                    agent.record_refusal(Some(&r.version), &e);
                    Err(e)
                }
                Err(AgentError::Refused(refusal)) => Ok(Checked::NotOffered {
                    version: r.version,
                    held: Some(RefusalInfo {
                        rule: refusal.rule().to_owned(),
                        message: crate::error::refusal_text(&refusal),
                    }),
                }),
                _ => Ok(Checked::NotOffered {
                    version: r.version,
                    held,
                }),
            }
        }
        _ => Ok(Checked::UpToDate),
    }
}
