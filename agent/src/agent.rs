//! The agent as one value: config, trust store, state, slots and boot control, loaded
//! from the state folder. Commands and the daemon act through it.

use crate::boot::BootControl;
use crate::client::Client;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::AgentError;
use crate::report::Reporter;
use crate::slots::Slots;
use crate::state::State;
use crate::trust::Trust;
use np_common::api::EventKind;
use np_common::docs::Release;
use np_common::{check_update, UpdateInputs, Version};
use std::sync::Arc;

/// The config's `trust.root_keys` only pin the first keyring; once one is stored, it is the
/// trust (changed only by a keyring its root signed). Says so when the config was edited to
/// other keys, instead of silently ignoring the edit.
pub fn warn_if_root_keys_edited(cfg: &Config, trust: &Trust) {
    let Some(k) = trust.stored_keyring() else {
        return;
    };
    if cfg.root_keys.iter().all(|c| k.root.keys.contains(c)) {
        return;
    }
    let current: Vec<String> = k
        .root
        .keys
        .iter()
        .map(|p| format!("\"{}\"", p.to_base64()))
        .collect();
    tracing::warn!(
        "{}: trust.root_keys are not the root keys of the stored keyring (version {}); the \
         stored keyring wins: the configured keys only admit the first keyring, and after that \
         the trust changes only through a keyring signed by its current root. If the vendor \
         rotated its root key, set trust.root_keys = [{}] to match. To trust root keys the \
         keyring does not name, provision the box again: stop np-agent, move {} aside and \
         run `np-agent provision`",
        cfg.path.display(),
        k.version,
        current.join(", "),
        cfg.state_dir.display()
    );
}

/// A loaded agent.
pub struct Agent {
    pub cfg: Config,
    pub trust: Trust,
    pub state: State,
    pub slots: Slots,
    pub boot: Box<dyn BootControl>,
    pub clock: Arc<dyn Clock>,
    pub reporter: Box<dyn Reporter>,
    /// The server client, when the box has a server and a device key (reports).
    pub client: Option<Client>,
}

impl Agent {
    /// Loads a provisioned agent from its state folder.
    pub fn open(cfg: Config, clock: Arc<dyn Clock>) -> Result<Agent, AgentError> {
        let state = State::load(&cfg.state_dir)?;
        let trust = Trust::load(
            &cfg.state_dir.join("trust"),
            &cfg.root_keys,
            &cfg.serial,
            clock.clone(),
        )?;
        Ok(Agent {
            slots: Slots::from_config(&cfg),
            boot: crate::boot::open(&cfg),
            reporter: Box::new(crate::report::LogOnly),
            client: None,
            cfg,
            trust,
            state,
            clock,
        })
    }

    /// The release running in the active slot: a fact recorded when the slot was made
    /// valid (its manifest verified then), not verified again against today's keyring,
    /// so it stays true after the key that signed it was rotated out.
    pub fn running(&self) -> Result<Release, AgentError> {
        let slot = self.state.active;
        self.slots.release(slot)?.ok_or_else(|| AgentError::Io {
            what: format!("the active slot {slot} has no manifest"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }

    /// The update rule (docs/formats.md, "The update rule") for `release` against the running firmware.
    pub fn check_rule(&self, release: &Release) -> Result<(), AgentError> {
        let running = self.running()?;
        check_update(&UpdateInputs {
            serial: &self.cfg.serial,
            model: &self.cfg.model,
            release,
            entitlement: self.trust.entitlement(),
            now: self.trust.now(),
            running_version: &running.version,
            running_security_version: running.security_version,
        })
        .map_err(AgentError::from)
    }

    /// Was `version` rolled back from on this box (so not reinstalled automatically)?
    pub fn rolled_back_from(&self, version: &Version) -> bool {
        self.state.rolled_back_from.contains(version)
    }

    /// Reads the state and the trust again from the state folder: another process (an
    /// admin's `np-agent rollback` while `np-agent run` waits between its steps) may have
    /// changed them. Call it with the folder's [`crate::lock::StateLock`] held.
    pub fn reload(&mut self) -> Result<(), AgentError> {
        self.state = State::load(&self.cfg.state_dir)?;
        self.trust = Trust::load(
            &self.cfg.state_dir.join("trust"),
            &self.cfg.root_keys,
            &self.cfg.serial,
            self.clock.clone(),
        )?;
        Ok(())
    }

    /// Persists the state.
    pub fn save(&self) -> Result<(), AgentError> {
        Ok(self.state.save(&self.cfg.state_dir)?)
    }

    /// Logs and reports an event to the server (best effort).
    pub fn event(&self, version: Option<&Version>, kind: EventKind, detail: &str) {
        let event = crate::report::event_name(kind);
        match version {
            Some(v) => tracing::info!(event, version = %v, "{detail}"),
            None => tracing::info!(event, "{detail}"),
        }
        self.journal(event, version, detail);
        self.reporter.event(version, kind, detail);
    }

    /// Records an event of the box's own (such as `diagnostics`) in its journal and the
    /// log only: the server does not take it as an install event.
    pub fn note(&self, event: &str, detail: &str) {
        tracing::info!(event, "{detail}");
        self.journal(event, None, detail);
    }

    /// Appends to the event journal (best effort: a failure is logged).
    fn journal(&self, event: &str, version: Option<&Version>, detail: &str) {
        let entry = crate::journal::Entry {
            at: crate::state::whole_second(self.trust.now()),
            event: event.to_owned(),
            version: version.cloned(),
            detail: detail.to_owned(),
        };
        if let Err(e) = crate::journal::append(&self.cfg.state_dir, entry) {
            tracing::warn!("cannot record the {event} event in the journal: {e}");
        }
    }

    /// Records a refusal as the last result and reports it.
    pub fn record_refusal(&mut self, version: Option<&Version>, err: &AgentError) {
        let outcome = match err.exit_code() {
            1 => np_common::api::Outcome::Refused,
            _ => np_common::api::Outcome::Failed,
        };
        let at = self.trust.now();
        self.state
            .record(version.cloned(), outcome, err.to_string(), at);
        let kind = if outcome == np_common::api::Outcome::Refused {
            EventKind::Refusal
        } else {
            EventKind::Failure
        };
        self.event(version, kind, &err.to_string());
        if let Err(e) = self.save() {
            tracing::warn!("cannot record the refusal: {e}");
        }
    }
}
