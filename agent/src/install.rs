//! The one install path shared by bundles and downloads: prepare the inactive slot
//! (marked invalid first), stream the image in through `SlotWriter`, make the slot valid,
//! then activate and trial it (`trial.rs`).
//!
//! Architecture Invariant: the agent never installs bytes it has not hashed, and never
//! writes into the running slot.

use crate::agent::Agent;
use crate::error::AgentError;
use crate::state::{Cmd, Slot, Target};
use np_common::api::{EventKind, Outcome};
use np_common::docs::Release;
use np_common::Envelope;

/// What to do once an image is staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Install now (unless `install.auto = false`: then stage).
    Now,
    /// The daemon: obey `auto` and the maintenance window.
    Policy,
    /// Stage only; the caller installs it by policy afterwards (the inbox: the bundle is
    /// moved out of the inbox before the box reboots into the update).
    Stage,
}

/// How an update attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The new firmware runs and is committed.
    Installed(np_common::Version),
    /// Verified and staged; waiting for `install` or the window.
    Staged(np_common::Version),
    /// The box is rebooting into the new slot (reboot_command).
    Rebooting(np_common::Version),
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Done::Installed(v) => write!(f, "{v} installed and committed"),
            Done::Staged(v) => write!(f, "{v} staged; install it with `np-agent install`"),
            Done::Rebooting(v) => write!(f, "{v} activated; the box is rebooting into it"),
        }
    }
}

impl Agent {
    /// Takes the inactive slot for `release`: an image the slot cannot hold is refused
    /// first (`slot_too_small`); then the boot loader marks the slot bad and the slot is
    /// marked invalid, phase Downloading. The second value says whether a download of the
    /// same version into the same slot was under way (its bytes may be kept).
    pub fn begin_write(&mut self, release: &Release) -> Result<(Slot, bool), AgentError> {
        // Never while a rollback is under way: the inactive slot is the one rolled back to.
        if let Some(p) = &self.state.pending_rollback {
            return Err(AgentError::RollbackPending { back: p.back });
        }
        let slot = self.state.active.other();
        // Never the slot the box runs from: after a switch the boot loader missed, with no
        // reboot_command to restart into the active slot, the box still runs the other one.
        if let Ok(Some(booted)) = crate::boot::booted_slot(&self.cfg.boot.cmdline) {
            if booted == slot {
                let e = AgentError::WritingBootedSlot {
                    slot,
                    active: self.state.active,
                };
                self.record_refusal(Some(&release.version), &e);
                return Err(e);
            }
        }
        if let Err(e) = self.slots.check_fits(slot, release.image.size) {
            let e = AgentError::from(e);
            self.record_refusal(Some(&release.version), &e);
            return Err(e);
        }
        let same = self.state.phase == crate::state::Phase::Downloading
            && self.state.target.as_ref().map(|t| (&t.version, t.slot))
                == Some((&release.version, slot));
        self.state.apply(Cmd::StartDownload)?;
        self.state.target = Some(Target {
            version: release.version.clone(),
            slot,
            reactivated: false,
            tries_seen: None,
        });
        self.state.previous = None;
        // The boot loader never boots a slot that is being written.
        self.boot.mark_bad(slot)?;
        self.slots.mark_invalid(slot)?;
        self.save()?;
        Ok((slot, same))
    }

    /// The image is complete and verified: write its manifest, phase Staged.
    pub fn finish_write(&mut self, slot: Slot, manifest: &Envelope) -> Result<(), AgentError> {
        self.slots.mark_valid(slot, manifest)?;
        self.state.apply(Cmd::FinishDownload)?;
        self.save()
    }

    /// An image failed: drop its bytes, phase Idle, record and report why.
    pub fn abort_write(&mut self, slot: Slot, release: &Release, err: &AgentError) {
        self.slots.discard_image(slot);
        if self.state.apply(Cmd::Discard).is_ok() {
            self.state.target = None;
        }
        self.record_refusal(Some(&release.version), err);
    }

    /// Streams `reader` into the inactive slot for a verified `release` whose rule
    /// passed. The slot stays Downloading until [`Agent::finish_write`]; on any error the
    /// bytes are discarded and the phase goes back to Idle.
    pub fn write_image_unfinished(
        &mut self,
        release: &Release,
        reader: &mut dyn std::io::Read,
    ) -> Result<Slot, AgentError> {
        let (slot, _) = self.begin_write(release)?;
        match stream_into(self, slot, release, reader) {
            Ok(()) => Ok(slot),
            Err(e) => {
                self.abort_write(slot, release, &e);
                Err(e)
            }
        }
    }

    /// After staging: install now, or leave it staged per `install.auto` and the window.
    pub fn after_staged(&mut self, release: &Release, when: When) -> Result<Done, AgentError> {
        let v = release.version.clone();
        if when == When::Stage {
            self.event(Some(&v), EventKind::Download, "verified and staged");
            return Ok(Done::Staged(v));
        }
        if !self.cfg.install.auto {
            self.event(
                Some(&v),
                EventKind::Download,
                "verified and staged; run `np-agent install`",
            );
            return Ok(Done::Staged(v));
        }
        if when == When::Policy && !self.in_window() {
            self.event(
                Some(&v),
                EventKind::Download,
                "verified and staged until the maintenance window",
            );
            return Ok(Done::Staged(v));
        }
        self.activate_staged()
    }

    /// Is the local time inside the maintenance window (or is there none)?
    pub fn in_window(&self) -> bool {
        let Some(w) = self.cfg.install.window else {
            return true;
        };
        let local = self.clock.now().to_zoned(jiff::tz::TimeZone::system());
        w.contains(local.time())
    }

    /// Records an installed outcome.
    pub fn record_installed(&mut self, release: &Release) {
        let at = self.trust.now();
        self.state.record(
            Some(release.version.clone()),
            Outcome::Installed,
            format!("{} installed and committed", release.version),
            at,
        );
    }
}

fn stream_into(
    agent: &mut Agent,
    slot: Slot,
    release: &Release,
    reader: &mut dyn std::io::Read,
) -> Result<(), AgentError> {
    let mut w = agent
        .slots
        .writer(slot, release.image.size, release.image.sha256, 0)?;
    loop {
        let mut buf = w.buffer();
        let n = read_some(reader, &mut buf)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        w.write_owned(buf)?;
    }
    if w.written() < release.image.size {
        return Err(crate::bundle::BundleReject::Truncated(format!(
            "the image entry ends after {} of its {} bytes",
            w.written(),
            release.image.size
        ))
        .into());
    }
    w.finish()?;
    Ok(())
}

fn read_some(reader: &mut dyn std::io::Read, buf: &mut [u8]) -> Result<usize, AgentError> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(crate::bundle::BundleReject::from_read(e).into()),
        }
    }
}
