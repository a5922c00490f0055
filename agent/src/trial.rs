//! Trial boot: activate the staged slot, "reboot" (the `reboot_command`, or go straight
//! on), run `health_command`, then commit, or roll back to the previous slot on a failed
//! check or after `max_boot_attempts` starts without a commit. Also manual and remote
//! rollback.

use crate::agent::Agent;
use crate::boot;
use crate::error::AgentError;
use crate::install::Done;
use crate::state::{Cmd, Phase};
use np_common::api::{EventKind, Outcome};

impl Agent {
    /// Activates the staged image: phase Trial, then reboot or run the trial at once.
    pub fn activate_staged(&mut self) -> Result<Done, AgentError> {
        let target = self.state.target.clone().ok_or(AgentError::State(
            crate::state::StateError::Refused {
                cmd: Cmd::Activate,
                phase: self.state.phase,
            },
        ))?;
        self.state.apply(Cmd::Activate)?;
        self.state.previous = Some(self.state.active);
        self.state.active = target.slot;
        self.save()?;
        self.boot.activate(target.slot)?;
        self.event(
            Some(&target.version),
            EventKind::Install,
            &format!("slot {} activated for a trial", target.slot),
        );
        if self.boot.reboot()? {
            return Ok(Done::Rebooting(target.version));
        }
        match self.boot_start()? {
            Some(done) => Ok(done),
            None => Ok(Done::Installed(target.version)),
        }
    }

    /// What the box does when it starts: a pending trial counts a start, runs the health
    /// check, and commits or rolls back. `None` when no trial is pending.
    pub fn boot_start(&mut self) -> Result<Option<Done>, AgentError> {
        let Phase::Trial { attempts } = self.state.phase else {
            return Ok(None);
        };
        let version = self
            .state
            .target
            .as_ref()
            .map(|t| t.version.clone())
            .ok_or(AgentError::NoPrevious)?;
        if attempts >= self.cfg.install.max_boot_attempts {
            let reason = format!("{attempts} starts without a commit");
            self.rollback_trial(&reason)?;
            return Err(AgentError::RolledBack { version, reason });
        }
        self.state.apply(Cmd::BootAttempt)?;
        self.save()?;
        self.event(
            Some(&version),
            EventKind::Trial,
            &format!(
                "trial start {} of {}",
                attempts + 1,
                self.cfg.install.max_boot_attempts
            ),
        );
        let health = match &self.cfg.install.health_command {
            None => Ok(()),
            Some(cmd) => boot::run_command(cmd, None),
        };
        match health {
            Ok(()) => {
                self.commit_trial()?;
                Ok(Some(Done::Installed(version)))
            }
            Err(e) => {
                let reason = format!("the health check failed ({e})");
                self.rollback_trial(&reason)?;
                Err(AgentError::RolledBack { version, reason })
            }
        }
    }

    /// Marks the trial slot good.
    pub fn commit_trial(&mut self) -> Result<(), AgentError> {
        self.state.apply(Cmd::Commit)?;
        let release = self.running()?;
        self.trust
            .raise_floor(release.released_at, crate::trust::FloorSource::Installed)?;
        self.state.target = None;
        self.record_installed(&release);
        self.save()?;
        self.boot.commit(self.state.active)?;
        self.event(
            Some(&release.version),
            EventKind::Commit,
            &format!(
                "{} committed in slot {}",
                release.version, self.state.active
            ),
        );
        Ok(())
    }

    fn rollback_trial(&mut self, reason: &str) -> Result<(), AgentError> {
        let failed = self.state.active;
        let back = self.state.previous.ok_or(AgentError::NoPrevious)?;
        let version = self.state.target.as_ref().map(|t| t.version.clone());
        self.state.apply(Cmd::Rollback)?;
        self.switch_back(failed, back, version, reason)
    }

    /// `np-agent rollback` or a staff rollback: back to the previous image.
    pub fn rollback(&mut self, why: &str) -> Result<(), AgentError> {
        if let Phase::Trial { .. } = self.state.phase {
            return self.rollback_trial(why);
        }
        let back = self.state.previous.ok_or(AgentError::NoPrevious)?;
        if self.slots.manifest(back)?.is_none() {
            return Err(AgentError::NoPrevious);
        }
        let failed = self.state.active;
        let version = Some(self.running()?.version);
        self.state.apply(Cmd::Rollback)?;
        self.switch_back(failed, back, version, why)
    }

    fn switch_back(
        &mut self,
        failed: crate::state::Slot,
        back: crate::state::Slot,
        version: Option<np_common::Version>,
        reason: &str,
    ) -> Result<(), AgentError> {
        self.state.active = back;
        self.state.previous = None;
        self.state.target = None;
        if let Some(v) = &version {
            if !self.state.rolled_back_from.contains(v) {
                self.state.rolled_back_from.push(v.clone());
            }
        }
        let at = self.trust.now();
        let detail = format!("rolled back to slot {back}: {reason}");
        self.state
            .record(version.clone(), Outcome::RolledBack, detail.clone(), at);
        self.save()?;
        self.boot.mark_bad(failed)?;
        self.boot.activate(back)?;
        self.boot.commit(back)?;
        self.event(version.as_ref(), EventKind::Rollback, &detail);
        self.boot.reboot()?;
        Ok(())
    }
}
