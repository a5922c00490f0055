//! Trial boot: activate the staged slot, "reboot" (the `reboot_command`, or go straight
//! on), run `health_command`, then commit, or roll back to the previous slot on a failed
//! check or after `max_boot_attempts` starts without a commit. Also manual and remote
//! rollback, and what a start learns from the slot that booted (`np.slot=` on the kernel
//! command line): a boot loader that fell back from a trial is a rollback.

use crate::agent::Agent;
use crate::boot;
use crate::error::AgentError;
use crate::install::Done;
use crate::state::{Cmd, PendingRollback, Phase, Slot};
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
        let booted = boot::booted_slot(&self.cfg.boot.cmdline)?;
        if let Some(p) = self.state.pending_rollback.clone() {
            // A power cut while the boot loader was told about a rollback: finish it.
            self.finish_rollback(p, booted)?;
            return Ok(None);
        }
        let Phase::Trial { attempts } = self.state.phase else {
            match booted {
                Some(b) if b != self.state.active => self.booted_other(b)?,
                _ => self.boot.started(self.state.active)?,
            }
            return Ok(None);
        };
        if let Some(b) = booted.filter(|b| *b != self.state.active) {
            return self.trial_fell_back(b);
        }
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

    /// A trial is pending for the active slot but the box booted `booted`.
    fn trial_fell_back(&mut self, booted: Slot) -> Result<Option<Done>, AgentError> {
        let tried = self.state.active;
        let version = self.state.target.as_ref().map(|t| t.version.clone());
        let seen = self.state.target.as_ref().and_then(|t| t.tries_seen);
        let tries = match seen {
            Some(n) => Some(n),
            None => self.boot.tries(tried)?,
        };
        let reactivated = self.state.target.as_ref().is_some_and(|t| t.reactivated);
        if tries == Some(0) && !reactivated {
            // The boot loader never tried the slot: the power went before the activation
            // reached it. Activate again and restart into it, once: a boot loader that
            // still does not try it does not read (or cannot write) the block we keep,
            // and restarting again would loop forever.
            tracing::warn!("slot {tried} was never tried by the boot loader; activating it again");
            self.boot.activate(tried)?;
            if let Some(t) = self.state.target.as_mut() {
                t.reactivated = true;
            }
            self.save()?;
            if self.boot.reboot()? {
                return Ok(version.map(Done::Rebooting));
            }
        }
        let never_tried = tries == Some(0) && reactivated;
        let reason = match tries {
            Some(0) if reactivated => format!(
                "the boot loader fell back to slot {booted}: it never tried slot {tried}, \
                 even when told a second time; check that the boot loader reads the block \
                 `np-agent status` names and can write it"
            ),
            Some(n) => format!(
                "the boot loader fell back to slot {booted}: slot {tried} did not come up after {n} boot attempts"
            ),
            None => format!(
                "the boot loader fell back to slot {booted}: slot {tried} did not come up without a start of the agent"
            ),
        };
        // What the boot loader tried, kept before it is told: marking the slot bad clears
        // its tries, and a cut before the rollback is saved must not make this failure
        // read as "never tried" at the next start.
        if let (Some(n @ 1..), None, Some(t)) = (tries, seen, self.state.target.as_mut()) {
            t.tries_seen = Some(n);
            self.save()?;
        }
        // The boot loader first: a cut before the state is saved ends here again. The
        // slot that came up has its tries reset before anything else (were marking the
        // other bad to fail, GRUB must not run out of tries on the one that works).
        // Marking the slot bad clears its tries, so after a cut before the state is saved
        // the slot reads as never tried: the next start activates it again and GRUB gives
        // up on it once more before the rollback is recorded (a second round of boots,
        // never a lost firmware).
        self.boot.started(booted)?;
        self.boot.mark_bad(tried)?;
        self.state.apply(Cmd::Rollback)?;
        // A firmware the boot loader never tried is not shown to be at fault: it stays
        // installable, once (a boot loader that never tries it again is not followed
        // into a restart per check-in).
        let blame = !never_tried || self.fell_back_before(version.as_ref());
        self.record_rollback(booted, version.clone(), &reason, blame)?;
        match version {
            Some(version) => Err(AgentError::RolledBack { version, reason }),
            None => Ok(None),
        }
    }

    /// Idle, but the box booted the other slot than the state's active one.
    fn booted_other(&mut self, booted: Slot) -> Result<(), AgentError> {
        let active = self.state.active;
        let max = self.cfg.install.max_boot_attempts;
        let tries = self.boot.tries(active)?;
        let exhausted = tries.is_some_and(|n| n >= max);
        // The boot loader's record still makes the active slot its first choice, yet it
        // booted the other: it fell back on purpose (tries used up, or a kernel it could
        // not load), not a switch it missed.
        let chose_other = self.boot.chose_over(booted, active)?;
        if (exhausted || chose_other) && self.slots.manifest(booted)?.is_some() {
            // The committed slot stopped booting and the boot loader fell back to a valid
            // image: that is where the box runs now. Its version passed its health check
            // once (power cuts in early boot use up tries too), so the first time it is
            // not put on the do-not-retry list: offered again, it is installed and tried
            // again; the second time it is.
            let version = self.running().ok().map(|r| r.version);
            let how = match tries {
                Some(0) => "(the boot loader chose the other slot without trying it)".to_owned(),
                Some(n) if n < max => format!("after {n} boot attempts (its kernel did not start)"),
                Some(n) => format!("after {n} boot attempts"),
                None => "without a start of the agent".to_owned(),
            };
            let reason = format!(
                "the boot loader fell back to slot {booted}: slot {active} did not come up {how}"
            );
            self.state.apply(Cmd::Rollback)?;
            let blame = self.fell_back_before(version.as_ref());
            let p = PendingRollback {
                failed: active,
                back: booted,
                version,
                reason,
                blame,
            };
            self.state.pending_rollback = Some(p.clone());
            self.save()?;
            self.boot.started(booted)?;
            self.boot.mark_bad(active)?;
            self.state.pending_rollback = None;
            return self.record_rollback(booted, p.version, &p.reason, blame);
        }
        // Not the boot loader's own choice, and no rollback under way (the boot loader is
        // always told before the state is saved): the other slot was booted from outside
        // (by hand, or GRUB's last resort). Make the active slot the boot loader's choice
        // again and restart into it. The booted slot is marked bad only when it holds no
        // valid image: were the active slot's kernel not to load, GRUB must still be able to
        // fall back to a whole slot.
        tracing::warn!(
            "booted slot {booted} but slot {active} is active; switching the boot loader back"
        );
        if self.slots.manifest(booted)?.is_none() {
            self.boot.mark_bad(booted)?;
        }
        self.boot.activate(active)?;
        self.boot.commit(active)?;
        self.boot.reboot()?;
        Ok(())
    }

    /// Whether the boot loader fell back from `version` once before without its fault
    /// being shown; if not, remembers that it did now.
    fn fell_back_before(&mut self, version: Option<&np_common::Version>) -> bool {
        let Some(v) = version else {
            return false;
        };
        if self.state.fell_back_once.contains(v) {
            return true;
        }
        self.state.fell_back_once.push(v.clone());
        false
    }

    /// Marks the trial slot good.
    pub fn commit_trial(&mut self) -> Result<(), AgentError> {
        self.state.apply(Cmd::Commit)?;
        let release = self.running()?;
        // The boot loader first, then the state. A cut between the two the other way round
        // (state "committed", the boot loader still counting) on the boot loader's last try
        // would let it give up on the committed firmware and boot the old slot, which the
        // agent would then mark bad. In this order a cut leaves the trial pending with the
        // tries reset: the next start runs the health check again and commits (or, on the
        // last of `max_boot_attempts` starts, rolls back to the old slot, still whole).
        self.boot.commit(self.state.active)?;
        self.trust
            .raise_floor(release.released_at, crate::trust::FloorSource::Installed)?;
        self.state.target = None;
        self.record_installed(&release);
        self.save()?;
        let from_version = match self.state.previous {
            Some(slot) => self.slots.release(slot).ok().flatten().map(|r| r.version),
            None => None,
        };
        self.write_receipt(crate::receipts::ReceiptFacts {
            outcome: Outcome::Installed,
            from_version,
            to_version: Some(release.version.clone()),
            image_sha256: Some(release.image.sha256),
            detail: format!(
                "{} installed and committed in slot {}",
                release.version, self.state.active
            ),
        });
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
        if let Some(p) = self.state.pending_rollback.clone() {
            // The boot loader could not be told of an earlier rollback: finish that one.
            let booted = boot::booted_slot(&self.cfg.boot.cmdline).ok().flatten();
            return self.finish_rollback(p, booted);
        }
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
        failed: Slot,
        back: Slot,
        version: Option<np_common::Version>,
        reason: &str,
    ) -> Result<(), AgentError> {
        // The rollback saved as under way, then the boot loader, each step bootable: a
        // power cut before the rollback is recorded boots `back` (or `failed`, were the
        // boot loader not told yet), and the start that follows finishes the rollback.
        let p = PendingRollback {
            failed,
            back,
            version,
            reason: reason.to_owned(),
            blame: true,
        };
        self.state.pending_rollback = Some(p.clone());
        self.save()?;
        self.tell_rollback(&p)?;
        self.state.pending_rollback = None;
        self.record_rollback(back, p.version, reason, true)?;
        self.boot.reboot()?;
        Ok(())
    }

    /// Finishes a rollback saved as under way: the boot loader told (again), the rollback
    /// recorded, and a restart unless the box already runs `back`.
    fn finish_rollback(
        &mut self,
        p: PendingRollback,
        booted: Option<Slot>,
    ) -> Result<(), AgentError> {
        tracing::warn!(
            "finishing the rollback from slot {} to slot {} that was interrupted",
            p.failed,
            p.back
        );
        // Only ever back to a whole image (nothing is written while a rollback is under
        // way, but a boot loader is never told to boot a slot without one).
        if self.slots.manifest(p.back)?.is_none() {
            return Err(AgentError::NoPrevious);
        }
        self.tell_rollback(&p)?;
        self.state.pending_rollback = None;
        // The rollback wins over whatever the phase moved to meanwhile.
        self.state.phase = Phase::Idle;
        self.record_rollback(p.back, p.version, &p.reason, p.blame)?;
        if booted != Some(p.back) {
            self.boot.reboot()?;
        }
        Ok(())
    }

    /// Tells the boot loader about a rollback (each write can be repeated); an error says
    /// that the rollback stays under way and how to finish it.
    fn tell_rollback(&mut self, p: &PendingRollback) -> Result<(), AgentError> {
        let tell = |boot: &dyn boot::BootControl| -> Result<(), boot::BootError> {
            boot.mark_bad(p.failed)?;
            boot.activate(p.back)?;
            boot.commit(p.back)
        };
        tell(self.boot.as_ref()).map_err(|e| AgentError::RollbackInterrupted {
            back: p.back,
            source: Box::new(e.into()),
        })
    }

    /// The state after a rollback to `back` (phase already moved), saved and reported.
    /// With `blame`, `version` goes on the do-not-retry list (not installed again
    /// automatically).
    fn record_rollback(
        &mut self,
        back: Slot,
        version: Option<np_common::Version>,
        reason: &str,
        blame: bool,
    ) -> Result<(), AgentError> {
        self.state.active = back;
        self.state.previous = None;
        self.state.target = None;
        if let Some(v) = version.as_ref().filter(|_| blame) {
            if !self.state.rolled_back_from.contains(v) {
                self.state.rolled_back_from.push(v.clone());
            }
        }
        let at = self.trust.now();
        let detail = format!("rolled back to slot {back}: {reason}");
        self.state
            .record(version.clone(), Outcome::RolledBack, detail.clone(), at);
        self.save()?;
        self.event(version.as_ref(), EventKind::Rollback, &detail);
        let now_running = self.slots.release(back).ok().flatten();
        self.write_receipt(crate::receipts::ReceiptFacts {
            outcome: Outcome::RolledBack,
            from_version: version,
            to_version: now_running.as_ref().map(|r| r.version.clone()),
            image_sha256: now_running.map(|r| r.image.sha256),
            detail,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::{BootControl as _, GrubBoot};
    use crate::testkit::{provisioned_box, release, Keys};

    fn stage(agent: &mut Agent, version: &str, image: &[u8]) {
        let r = release(version, 2, image);
        let env = Keys::load().sign_release(&r);
        let slot = agent.write_image_unfinished(&r, &mut &image[..]).unwrap();
        agent.finish_write(slot, &env).unwrap();
    }

    fn booted(agent: &Agent, slot: &str) {
        std::fs::write(&agent.cfg.boot.cmdline, format!("ro np.slot={slot}\n")).unwrap();
    }

    /// A provisioned box on GRUB (three tries, a health command that passes), booted on
    /// slot a; the block's path is returned with it.
    fn grub_box(dir: &std::path::Path) -> (Agent, GrubBoot, std::path::PathBuf) {
        let mut agent = provisioned_box(dir, "2099-01-01");
        let envp = dir.join("grubenv");
        let grub = GrubBoot::new(&envp, 3, Some("true".into()));
        grub.provision(Slot::A).unwrap();
        agent.boot = Box::new(grub.clone());
        agent.cfg.boot.cmdline = dir.join("cmdline");
        booted(&agent, "a");
        (agent, grub, envp)
    }

    /// 2.0.0 staged into b and activated: the trial waits for GRUB's boot.
    fn trial_of_b(agent: &mut Agent) {
        stage(agent, "2.0.0", b"two");
        agent.activate_staged().unwrap();
    }

    /// 2.0.0 installed into b and committed: GRUB booted it, the start committed it.
    fn committed_b(agent: &mut Agent, grub: &GrubBoot, envp: &std::path::Path) {
        trial_of_b(agent);
        assert_eq!(grub_boot(grub, envp), Slot::B);
        booted(agent, "b");
        assert!(matches!(
            agent.boot_start().unwrap(),
            Some(Done::Installed(_))
        ));
    }

    /// GRUB gives up on b after its three tries and boots a.
    fn grub_gives_up_on_b(grub: &GrubBoot, envp: &std::path::Path) {
        for _ in 0..3 {
            assert_eq!(grub_boot(grub, envp), Slot::B);
        }
        assert_eq!(grub_boot(grub, envp), Slot::A);
    }

    /// GRUB's boot: what the script does to the block at `path`.
    fn grub_boot(env: &GrubBoot, path: &std::path::Path) -> Slot {
        let (mut vars, mut s) = env.read().unwrap();
        let slot = s.boot();
        s.to_env(&mut vars).unwrap();
        std::fs::write(path, vars.to_block().unwrap()).unwrap();
        slot
    }

    #[test]
    fn starts_follow_the_slot_grub_booted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, grub, envp) = grub_box(dir.path());
        assert_eq!(agent.boot_start().unwrap(), None);

        // A cut between the saved trial and the boot loader's activation: GRUB never
        // tried b and booted a again; the start activates b again and reboots.
        stage(&mut agent, "2.0.0", b"two");
        agent.state.apply(Cmd::Activate).unwrap();
        agent.state.previous = Some(Slot::A);
        agent.state.active = Slot::B;
        agent.save().unwrap();
        assert_eq!(grub_boot(&grub, &envp), Slot::A);
        let v2 = np_common::Version::parse("2.0.0").unwrap();
        assert_eq!(
            agent.boot_start().unwrap(),
            Some(Done::Rebooting(v2.clone()))
        );
        let s = grub.read().unwrap().1;
        assert_eq!((s.first, s.b_ok, s.b_try), (Slot::B, true, 0));
        // GRUB boots b; the start runs the trial and commits.
        assert_eq!(grub_boot(&grub, &envp), Slot::B);
        booted(&agent, "b");
        assert_eq!(agent.boot_start().unwrap(), Some(Done::Installed(v2)));
        assert_eq!(grub.read().unwrap().1.b_try, 0);

        // 3.0.0 into a never comes up: GRUB gives up after 3 boots and boots b.
        stage(&mut agent, "3.0.0", b"three");
        assert!(matches!(
            agent.activate_staged().unwrap(),
            Done::Rebooting(_)
        ));
        assert_eq!(
            [
                grub_boot(&grub, &envp),
                grub_boot(&grub, &envp),
                grub_boot(&grub, &envp)
            ],
            [Slot::A; 3]
        );
        assert_eq!(grub_boot(&grub, &envp), Slot::B);
        booted(&agent, "b");
        match agent.boot_start() {
            Err(AgentError::RolledBack { version, reason }) => {
                assert_eq!(version.to_string(), "3.0.0");
                assert_eq!(
                    reason,
                    "the boot loader fell back to slot b: slot a did not come up after 3 boot attempts"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (agent.state.active, agent.state.phase),
            (Slot::B, Phase::Idle)
        );
        let r = agent.state.last_result.clone().unwrap();
        assert_eq!(r.outcome, Outcome::RolledBack);
        assert!(r
            .detail
            .starts_with("rolled back to slot b: the boot loader fell back"));
        let s = grub.read().unwrap().1;
        assert_eq!((s.first, s.a_ok, s.b_try), (Slot::B, false, 0));

        // Idle on b, but a booted (the boot loader missed a switch): switch it back.
        booted(&agent, "a");
        assert_eq!(agent.boot_start().unwrap(), None);
        let s = grub.read().unwrap().1;
        assert_eq!(
            (s.first, s.a_ok, s.b_ok, s.b_try),
            (Slot::B, false, true, 0)
        );
    }

    /// A firmware written into a slot the boot loader once gave up on, and a power cut
    /// between the saved trial and the boot loader's activation: the slot's tries were
    /// cleared when it was marked bad, so the start activates it again instead of taking
    /// it for a firmware that never came up (which would put its version on the
    /// do-not-retry list).
    #[test]
    fn a_slot_given_up_on_before_and_never_tried_since_is_activated_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, grub, envp) = grub_box(dir.path());
        // 2.0.0 into b never comes up: GRUB gives up on it, the agent on a rolls back.
        trial_of_b(&mut agent);
        grub_gives_up_on_b(&grub, &envp);
        assert!(matches!(
            agent.boot_start(),
            Err(AgentError::RolledBack { .. })
        ));
        assert_eq!(grub.read().unwrap().1.b_try, 0, "cleared by mark_bad");
        // 3.0.0 into b; the power goes after the trial is saved, before the activation.
        stage(&mut agent, "3.0.0", b"three");
        agent.state.apply(Cmd::Activate).unwrap();
        agent.state.previous = Some(Slot::A);
        agent.state.active = Slot::B;
        agent.save().unwrap();
        assert_eq!(grub_boot(&grub, &envp), Slot::A);
        let v3 = np_common::Version::parse("3.0.0").unwrap();
        assert_eq!(
            agent.boot_start().unwrap(),
            Some(Done::Rebooting(v3.clone()))
        );
        assert!(!agent.state.rolled_back_from.contains(&v3));
        assert_eq!(grub_boot(&grub, &envp), Slot::B);
        booted(&agent, "b");
        assert_eq!(agent.boot_start().unwrap(), Some(Done::Installed(v3)));
    }

    /// A power cut as a trial commits, on GRUB's last try: the state must not say
    /// "committed" while GRUB still counts, or GRUB gives up on the committed firmware and
    /// the agent marks it bad. The boot loader commits first; a cut before it leaves the
    /// trial pending on disk, and the next start commits.
    #[test]
    fn a_cut_as_a_trial_commits_never_loses_the_committed_firmware() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, grub, envp) = grub_box(dir.path());
        trial_of_b(&mut agent);
        for _ in 0..3 {
            assert_eq!(grub_boot(&grub, &envp), Slot::B);
        }
        booted(&agent, "b");
        agent.boot = Box::new(Cut::before(&grub, "commit"));
        assert!(agent.boot_start().is_err());
        let saved = crate::state::State::load(&agent.cfg.state_dir).unwrap();
        assert!(
            matches!(saved.phase, Phase::Trial { .. }),
            "{:?}: saved as committed while GRUB still counts",
            saved.phase
        );
        // The box restarts (the trial's state as saved): GRUB has given up on b after its
        // three tries and boots a; the agent rolls back to the old firmware, still whole,
        // never marking a bad.
        agent.state = saved;
        agent.boot = Box::new(grub.clone());
        assert_eq!(grub_boot(&grub, &envp), Slot::A);
        booted(&agent, "a");
        assert!(matches!(
            agent.boot_start(),
            Err(AgentError::RolledBack { .. })
        ));
        let s = grub.read().unwrap().1;
        assert_eq!((s.a_ok, s.b_ok, s.first), (true, false, Slot::A));
        assert_eq!(agent.state.active, Slot::A);
    }

    /// A block GRUB never reads (a wrong `[boot] grubenv`, a partition mounted elsewhere):
    /// GRUB boots slot a whatever the agent writes. The trial slot reads as never tried;
    /// the agent activates it again and restarts once, then gives the trial up, naming the
    /// boot loader, without putting the version on the do-not-retry list: never a box that
    /// restarts forever.
    #[test]
    fn a_boot_loader_that_never_tries_the_slot_is_told_once_then_the_trial_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, _grub, _) = grub_box(dir.path());
        assert_eq!(agent.boot_start().unwrap(), None);
        stage(&mut agent, "2.0.0", b"two");
        let v2 = np_common::Version::parse("2.0.0").unwrap();
        assert_eq!(
            agent.activate_staged().unwrap(),
            Done::Rebooting(v2.clone())
        );
        // GRUB read nothing of it: a again.
        assert_eq!(
            agent.boot_start().unwrap(),
            Some(Done::Rebooting(v2.clone()))
        );
        assert!(agent.state.target.as_ref().unwrap().reactivated);
        let saved = crate::state::State::load(&agent.cfg.state_dir).unwrap();
        assert!(
            saved.target.unwrap().reactivated,
            "saved before the restart"
        );
        match agent.boot_start() {
            Err(AgentError::RolledBack { reason, .. }) => {
                assert!(reason.contains("never tried slot b"), "{reason}");
                assert!(reason.contains("np-agent status"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!agent.state.rolled_back_from.contains(&v2));
        assert_eq!(
            (agent.state.active, agent.state.phase),
            (Slot::A, Phase::Idle)
        );
        assert_eq!(agent.boot_start().unwrap(), None);
        // Offered again and installed again, never tried again: now it is put on the
        // do-not-retry list (no restart per check-in for ever).
        trial_of_b(&mut agent);
        agent.boot_start().unwrap();
        assert!(agent.boot_start().is_err());
        assert!(agent.state.rolled_back_from.contains(&v2));
    }

    /// The agent on the fallback slot resets that slot's tries before it marks the trial
    /// slot bad: were the second write to fail (a backup that cannot be written), GRUB must
    /// not run out of tries on the slot that works.
    #[test]
    fn the_fallback_slot_has_its_tries_reset_before_the_trial_slot_is_marked_bad() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, grub, envp) = grub_box(dir.path());
        trial_of_b(&mut agent);
        grub_gives_up_on_b(&grub, &envp);
        assert_eq!(grub.read().unwrap().1.a_try, 1);
        let bak = std::path::PathBuf::from(format!("{}.bak", envp.display()));
        std::fs::remove_file(&bak).unwrap();
        std::fs::create_dir(&bak).unwrap();
        booted(&agent, "a");
        assert!(agent.boot_start().is_err(), "the backup cannot be written");
        let s = grub.read().unwrap().1;
        assert_eq!((s.a_try, s.b_ok), (0, true), "a's tries reset first");
    }

    /// A committed firmware whose boots were all cut (power cuts in early boot use up
    /// tries too): GRUB falls back to the old slot and the agent records it, but the
    /// version passed its health check once and is not put on the do-not-retry list.
    #[test]
    fn a_committed_firmware_given_up_on_stays_installable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, grub, envp) = grub_box(dir.path());
        trial_of_b(&mut agent);
        assert_eq!(grub_boot(&grub, &envp), Slot::B);
        booted(&agent, "b");
        let v2 = np_common::Version::parse("2.0.0").unwrap();
        assert_eq!(
            agent.boot_start().unwrap(),
            Some(Done::Installed(v2.clone()))
        );
        grub_gives_up_on_b(&grub, &envp);
        booted(&agent, "a");
        assert_eq!(agent.boot_start().unwrap(), None);
        assert_eq!(agent.state.active, Slot::A);
        let r = agent.state.last_result.clone().unwrap();
        assert_eq!(r.outcome, Outcome::RolledBack);
        assert!(!agent.state.rolled_back_from.contains(&v2));
        let s = grub.read().unwrap().1;
        assert_eq!((s.first, s.b_ok, s.a_try), (Slot::A, false, 0));
        // Installed again, committed, and given up on again: the second time it goes on
        // the do-not-retry list.
        committed_b(&mut agent, &grub, &envp);
        grub_gives_up_on_b(&grub, &envp);
        booted(&agent, "a");
        assert_eq!(agent.boot_start().unwrap(), None);
        assert!(agent.state.rolled_back_from.contains(&v2));
    }

    /// A committed firmware whose kernel GRUB cannot load: GRUB counted it, then booted
    /// the other slot (whole, OK). The agent there must take it for the boot loader's
    /// own fallback, not for a switch it missed: marking the running slot bad and putting
    /// the committed one first again would leave nothing GRUB can boot.
    #[test]
    fn a_committed_kernel_grub_cannot_load_is_a_fallback_not_a_missed_switch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, grub, envp) = grub_box(dir.path());
        committed_b(&mut agent, &grub, &envp);
        // GRUB counts b, its kernel does not load, GRUB boots a (OK 1).
        assert_eq!(grub_boot(&grub, &envp), Slot::B);
        booted(&agent, "a");
        assert_eq!(agent.boot_start().unwrap(), None);
        let s = grub.read().unwrap().1;
        assert_eq!(
            (s.first, s.a_ok, s.b_ok, s.a_try),
            (Slot::A, true, false, 0)
        );
        assert_eq!(
            (agent.state.active, agent.state.phase),
            (Slot::A, Phase::Idle)
        );
        let r = agent.state.last_result.clone().unwrap();
        assert_eq!(r.outcome, Outcome::RolledBack);
        assert!(
            r.detail.contains("its kernel did not start"),
            "{}",
            r.detail
        );
    }

    /// The boot loader really tried the trial slot and gave up, but the power went after
    /// it was told (the slot marked bad, its tries cleared) and before the rollback was
    /// saved: the next start still knows the tries it saw, and says so.
    #[test]
    fn a_cut_after_the_fallback_is_told_keeps_the_tries_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, grub, envp) = grub_box(dir.path());
        trial_of_b(&mut agent);
        // The activation never reached GRUB: told again once.
        grub.mark_bad(Slot::B).unwrap();
        assert_eq!(grub_boot(&grub, &envp), Slot::A);
        assert!(matches!(
            agent.boot_start().unwrap(),
            Some(Done::Rebooting(_))
        ));
        grub_gives_up_on_b(&grub, &envp);
        // The start on a: the tries seen are saved, then the power goes as the boot
        // loader is told (here: before its mark_bad is written; then it is written).
        agent.boot = Box::new(Cut::after(&grub, "mark_bad"));
        assert!(agent.boot_start().is_err());
        agent.state = crate::state::State::load(&agent.cfg.state_dir).unwrap();
        agent.boot = Box::new(grub.clone());
        assert_eq!(grub_boot(&grub, &envp), Slot::A);
        let v2 = np_common::Version::parse("2.0.0").unwrap();
        match agent.boot_start() {
            Err(AgentError::RolledBack { reason, .. }) => {
                assert!(
                    reason.contains("did not come up after 3 boot attempts"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(agent.state.rolled_back_from.contains(&v2));
    }

    /// Running from the slot the state calls inactive (a switch the boot loader missed,
    /// and no reboot_command to restart into the active one): no update is written into
    /// the slot the box runs from.
    #[test]
    fn no_update_is_written_into_the_slot_the_box_runs_from() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, _grub, _) = grub_box(dir.path());
        booted(&agent, "b");
        let r = release("2.0.0", 2, b"two");
        match agent.write_image_unfinished(&r, &mut &b"two"[..]) {
            Err(e @ AgentError::WritingBootedSlot { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("slot b is the slot the box runs from"),
                    "{text}"
                );
                assert_eq!(e.exit_code(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(agent.state.phase, Phase::Idle);
    }

    /// The boot loader with a power cut at one step: before its write (nothing written)
    /// or after it (written); either way the step fails, so nothing after it runs.
    struct Cut {
        grub: GrubBoot,
        step: &'static str,
        written: bool,
    }

    impl Cut {
        fn before(grub: &GrubBoot, step: &'static str) -> Cut {
            Cut {
                grub: grub.clone(),
                step,
                written: false,
            }
        }

        fn after(grub: &GrubBoot, step: &'static str) -> Cut {
            Cut {
                written: true,
                ..Cut::before(grub, step)
            }
        }

        fn at(
            &self,
            step: &str,
            write: impl FnOnce() -> Result<(), boot::BootError>,
        ) -> Result<(), boot::BootError> {
            if step != self.step {
                return write();
            }
            if self.written {
                write()?;
            }
            Err(boot::BootError::Io {
                path: "grubenv".into(),
                source: std::io::Error::other("power cut"),
            })
        }
    }

    impl crate::boot::BootControl for Cut {
        fn name(&self) -> &'static str {
            self.grub.name()
        }
        fn provision(&self, slot: Slot) -> Result<(), boot::BootError> {
            self.grub.provision(slot)
        }
        fn activate(&self, slot: Slot) -> Result<(), boot::BootError> {
            self.at("activate", || self.grub.activate(slot))
        }
        fn commit(&self, slot: Slot) -> Result<(), boot::BootError> {
            self.at("commit", || self.grub.commit(slot))
        }
        fn mark_bad(&self, slot: Slot) -> Result<(), boot::BootError> {
            self.at("mark_bad", || self.grub.mark_bad(slot))
        }
        fn reboot(&self) -> Result<bool, boot::BootError> {
            self.grub.reboot()
        }
        fn started(&self, slot: Slot) -> Result<(), boot::BootError> {
            self.at("started", || self.grub.started(slot))
        }
        fn tries(&self, slot: Slot) -> Result<Option<u32>, boot::BootError> {
            self.grub.tries(slot)
        }
        fn chose_over(&self, booted: Slot, first: Slot) -> Result<bool, boot::BootError> {
            self.grub.chose_over(booted, first)
        }
        fn record(&self) -> Result<serde_json::Value, boot::BootError> {
            self.grub.record()
        }
    }

    /// GRUB's boot when `dead`'s kernel cannot be loaded: the script counts the slot it
    /// picks, saves, and if that is `dead`, boots the other slot only if its OK is 1.
    /// `None`: nothing could be booted.
    fn grub_boot_dead_kernel(env: &GrubBoot, path: &std::path::Path, dead: Slot) -> Option<Slot> {
        let slot = grub_boot(env, path);
        let s = env.read().unwrap().1;
        if slot != dead {
            Some(slot)
        } else if s.ok(slot.other()) {
            Some(slot.other())
        } else {
            None
        }
    }

    /// A committed b whose kernel no longer loads: GRUB falls back to a; the agent on a
    /// tells the boot loader, then the power goes before the rollback is saved. The next
    /// start finishes the rollback (it was saved as under way), never takes it for a
    /// switch the boot loader missed (which would mark a bad: nothing left to boot).
    #[test]
    fn a_cut_while_a_fallback_is_told_is_finished_never_undone() {
        for cut in ["started", "mark_bad"] {
            let dir = tempfile::tempdir().unwrap();
            let (mut agent, grub, envp) = grub_box(dir.path());
            committed_b(&mut agent, &grub, &envp);
            assert_eq!(
                grub_boot_dead_kernel(&grub, &envp, Slot::B),
                Some(Slot::A),
                "{cut}"
            );
            booted(&agent, "a");
            agent.boot = Box::new(Cut::after(&grub, cut));
            assert!(agent.boot_start().is_err(), "{cut}");
            agent.state = crate::state::State::load(&agent.cfg.state_dir).unwrap();
            assert!(agent.state.pending_rollback.is_some(), "{cut}");
            agent.boot = Box::new(grub.clone());
            let booted_now = grub_boot_dead_kernel(&grub, &envp, Slot::B);
            assert_eq!(booted_now, Some(Slot::A), "{cut}: nothing bootable");
            booted(&agent, "a");
            assert_eq!(agent.boot_start().unwrap(), None, "{cut}");
            assert_eq!(agent.state.active, Slot::A, "{cut}");
            assert!(agent.state.pending_rollback.is_none());
            let s = grub.read().unwrap().1;
            assert_eq!((s.first, s.a_ok, s.b_ok), (Slot::A, true, false), "{cut}");
            assert_eq!(grub_boot_dead_kernel(&grub, &envp, Slot::B), Some(Slot::A));
        }
    }

    /// `np-agent rollback` (or a staff rollback), idle or during a trial, the power gone
    /// after the boot loader was told and before the state was saved: the next start
    /// finishes the rollback, never undoes it nor resumes the trial.
    #[test]
    fn a_cut_during_a_rollback_is_finished_at_the_next_start() {
        for committed in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (mut agent, grub, envp) = grub_box(dir.path());
            trial_of_b(&mut agent);
            assert_eq!(grub_boot(&grub, &envp), Slot::B);
            booted(&agent, "b");
            if committed {
                assert!(matches!(
                    agent.boot_start().unwrap(),
                    Some(Done::Installed(_))
                ));
            }
            for cut in ["mark_bad", "activate", "commit"] {
                let saved = agent.state.clone();
                agent.boot = Box::new(Cut::after(&grub, cut));
                assert!(agent.rollback("staff rollback").is_err(), "{cut}");
                agent.state = crate::state::State::load(&agent.cfg.state_dir).unwrap();
                agent.boot = Box::new(grub.clone());
                let slot = grub_boot(&grub, &envp);
                booted(&agent, &slot.to_string());
                let r = agent.boot_start();
                assert!(matches!(r, Ok(None)), "{committed} {cut}: {r:?}");
                assert_eq!(agent.state.active, Slot::A, "{committed} {cut}");
                assert_eq!(agent.state.phase, Phase::Idle, "{committed} {cut}");
                let s = grub.read().unwrap().1;
                assert_eq!(
                    (s.first, s.a_ok, s.b_ok),
                    (Slot::A, true, false),
                    "{committed} {cut}"
                );
                let r = agent.state.last_result.clone().unwrap();
                assert_eq!(r.outcome, Outcome::RolledBack);
                assert!(r.detail.contains("staff rollback"), "{}", r.detail);
                // Again from the same start, for the next cut.
                agent.state = saved;
                agent.save().unwrap();
                grub.activate(Slot::B).unwrap();
                if committed {
                    grub.commit(Slot::B).unwrap();
                }
                assert_eq!(grub_boot(&grub, &envp), Slot::B);
            }
        }
    }

    /// The refusal to write the slot the box runs from is recorded (status, the server).
    #[test]
    fn the_refusal_to_write_the_running_slot_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, _grub, _) = grub_box(dir.path());
        booted(&agent, "b");
        let r = release("2.0.0", 2, b"two");
        assert!(agent.write_image_unfinished(&r, &mut &b"two"[..]).is_err());
        let saved = crate::state::State::load(&agent.cfg.state_dir).unwrap();
        assert_eq!(saved.last_result.unwrap().outcome, Outcome::Refused);
    }

    /// A rollback whose boot-loader write fails while the agent runs on: nothing is
    /// written into the slot rolled back to until the rollback is finished, and
    /// `np-agent rollback` again finishes it.
    #[test]
    fn nothing_is_installed_while_a_rollback_is_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, grub, envp) = grub_box(dir.path());
        committed_b(&mut agent, &grub, &envp);
        agent.boot = Box::new(Cut::before(&grub, "activate"));
        assert!(agent.rollback("staff rollback").is_err());
        assert!(agent.state.pending_rollback.is_some());
        agent.boot = Box::new(grub.clone());
        let r = release("3.0.0", 2, b"three");
        match agent.write_image_unfinished(&r, &mut &b"three"[..]) {
            Err(e @ AgentError::RollbackPending { .. }) => {
                assert!(
                    e.to_string().contains("run `np-agent rollback` again"),
                    "{e}"
                );
                assert_eq!(e.exit_code(), 1);
            }
            other => panic!("{other:?}"),
        }
        let st = crate::cli::status_json(&agent).unwrap();
        assert_eq!(st["rollback_pending"]["to_slot"], "a");
        agent.rollback("staff rollback").unwrap();
        assert!(agent.state.pending_rollback.is_none());
        let st = crate::cli::status_json(&agent).unwrap();
        assert!(st["rollback_pending"].is_null());
        assert_eq!(
            (agent.state.active, agent.state.phase),
            (Slot::A, Phase::Idle)
        );
        let s = grub.read().unwrap().1;
        assert_eq!((s.first, s.a_ok, s.b_ok), (Slot::A, true, false));
        assert_eq!(grub_boot(&grub, &envp), Slot::A);
    }

    /// A rollback cut before the boot loader was told, on a box whose kernel command line
    /// names no slot (the command loader may run without `np.slot=`): finishing it at the
    /// next start restarts the box, which may still run the slot given up on.
    #[test]
    fn a_rollback_finished_without_np_slot_restarts_the_box() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, grub, envp) = grub_box(dir.path());
        committed_b(&mut agent, &grub, &envp);
        agent.boot = Box::new(Cut::before(&grub, "mark_bad"));
        let e = agent.rollback("staff rollback").unwrap_err().to_string();
        assert!(
            e.contains("saved as under way: run `np-agent rollback` again"),
            "{e}"
        );
        agent.state = crate::state::State::load(&agent.cfg.state_dir).unwrap();
        let restarts = dir.path().join("restarts");
        let command = format!("echo restart >> {}", restarts.display());
        agent.boot = Box::new(GrubBoot::new(&envp, 3, Some(command)));
        std::fs::write(&agent.cfg.boot.cmdline, "ro quiet\n").unwrap();
        assert_eq!(agent.boot_start().unwrap(), None);
        assert_eq!(agent.state.active, Slot::A);
        assert_eq!(std::fs::read_to_string(&restarts).unwrap(), "restart\n");
        // Running the slot rolled back to: no restart.
        std::fs::remove_file(&restarts).unwrap();
        let mut st = agent.state.clone();
        st.pending_rollback = Some(PendingRollback {
            failed: Slot::B,
            back: Slot::A,
            version: None,
            reason: "again".into(),
            blame: false,
        });
        agent.state = st;
        booted(&agent, "a");
        assert_eq!(agent.boot_start().unwrap(), None);
        assert!(!restarts.exists());
    }
}
