//! The agent's persistent state (`state_dir/state.json`) and its phase machine.
//!
//! Phases change only through [`transition`], whose last arm refuses every pair it does not
//! list. Changes happen in memory; one [`State::save`] persists them atomically.

use jiff::Timestamp;
use np_common::api::{LastResult, Outcome};
use np_common::Version;
use np_fsutil as fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One of the two firmware slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// `a` or `b`.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Running committed firmware; nothing in flight.
    Idle,
    /// Writing an image into the inactive slot.
    Downloading,
    /// A verified image waits in the inactive slot for `install`.
    Staged,
    /// The new slot is active and on trial; `attempts` starts counted so far.
    Trial { attempts: u32 },
}

impl Phase {
    /// The phase as the API and `status` name it.
    pub fn api(self) -> np_common::api::Phase {
        match self {
            Phase::Idle => np_common::api::Phase::Idle,
            Phase::Downloading => np_common::api::Phase::Downloading,
            Phase::Staged => np_common::api::Phase::Staged,
            Phase::Trial { .. } => np_common::api::Phase::Trial,
        }
    }
}

/// What moves the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    StartDownload,
    FinishDownload,
    Discard,
    Activate,
    BootAttempt,
    Commit,
    Rollback,
}

impl Cmd {
    /// What the command does, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Cmd::StartDownload => "start writing an update",
            Cmd::FinishDownload => "stage an update",
            Cmd::Discard => "discard an update",
            Cmd::Activate => "install a staged update",
            Cmd::BootAttempt => "start a trial",
            Cmd::Commit => "commit a trial",
            Cmd::Rollback => "roll back",
        }
    }
}

impl Phase {
    /// The phase in words, for messages.
    pub fn describe(self) -> String {
        match self {
            Phase::Idle => "idle (nothing staged or on trial)".into(),
            Phase::Downloading => "writing an update".into(),
            Phase::Staged => "holding a staged update".into(),
            Phase::Trial { attempts } => format!("trying an update (start {attempts})"),
        }
    }
}

/// Why a state change was refused or the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {} while the agent is {}", cmd.describe(), phase.describe())]
    Refused { cmd: Cmd, phase: Phase },
    #[error("the box is not provisioned ({path} is missing); run `np-agent provision` first")]
    NotProvisioned { path: PathBuf },
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is damaged: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// The phase machine: the next phase, or a refusal for any pair not listed.
pub fn transition(cmd: Cmd, phase: Phase) -> Result<Phase, StateError> {
    use Phase::*;
    match (cmd, phase) {
        (Cmd::StartDownload, Idle | Downloading | Staged) => Ok(Downloading),
        (Cmd::FinishDownload, Downloading) => Ok(Staged),
        (Cmd::Discard, Downloading | Staged) => Ok(Idle),
        (Cmd::Activate, Staged) => Ok(Trial { attempts: 0 }),
        (Cmd::BootAttempt, Trial { attempts }) => Ok(Trial {
            attempts: attempts.saturating_add(1),
        }),
        (Cmd::Commit, Trial { .. }) => Ok(Idle),
        (Cmd::Rollback, Trial { .. } | Idle) => Ok(Idle),
        (cmd, phase) => Err(StateError::Refused { cmd, phase }),
    }
}

/// The image being downloaded, staged or tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub version: Version,
    pub slot: Slot,
    /// The boot loader was found never to have tried the trial slot and was told again
    /// (once: a boot loader that still does not try it is not reading our block).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reactivated: bool,
    /// The boot loader's tries of the trial slot when the agent found it had fallen back,
    /// kept before the boot loader is told (marking the slot bad clears them), so that a
    /// power cut in between does not make a real failure read as "never tried".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tries_seen: Option<u32>,
}

/// A rollback the boot loader is being told about: saved before its first write, so that
/// a power cut before the rollback is recorded is finished at the next start, never undone
/// (the boot loader may already boot `back`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRollback {
    /// The slot given up on.
    pub failed: Slot,
    /// The slot rolled back to.
    pub back: Slot,
    /// The version given up on, if known.
    pub version: Option<Version>,
    /// Why, as the rollback's detail says it.
    pub reason: String,
    /// Whether the version goes on the do-not-retry list.
    pub blame: bool,
}

/// Everything `state.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub active: Slot,
    pub previous: Option<Slot>,
    #[serde(flatten)]
    pub phase: Phase,
    pub target: Option<Target>,
    pub last_check: Option<Timestamp>,
    pub last_result: Option<LastResult>,
    pub update_available: Option<Version>,
    /// Versions the box rolled back from: not installed again automatically.
    #[serde(default)]
    pub rolled_back_from: Vec<Version>,
    /// Versions the boot loader fell back from once without their own fault being shown
    /// (a committed firmware whose boots were cut, a boot loader that never tried one):
    /// the second time they go on `rolled_back_from`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fell_back_once: Vec<Version>,
    /// A rollback told to the boot loader but not recorded yet (a power cut in between).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_rollback: Option<PendingRollback>,
    /// `issued_at` of the last remote action acted on.
    pub last_action_at: Option<Timestamp>,
    /// The `seq` of the last receipt written (receipts count up from 1, never reused).
    #[serde(default)]
    pub receipt_seq: u64,
    /// The nonce of the last offline request (`np-agent request`), until an install ends:
    /// its receipts name it.
    #[serde(default)]
    pub request_nonce: Option<String>,
}

impl State {
    /// A freshly provisioned box running slot a.
    pub fn provisioned() -> State {
        State {
            active: Slot::A,
            previous: None,
            phase: Phase::Idle,
            target: None,
            last_check: None,
            last_result: None,
            update_available: None,
            rolled_back_from: Vec::new(),
            fell_back_once: Vec::new(),
            pending_rollback: None,
            last_action_at: None,
            receipt_seq: 0,
            request_nonce: None,
        }
    }

    /// The path of `state.json` in `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("state.json")
    }

    /// Loads the state; a missing file means the box is not provisioned.
    pub fn load(state_dir: &Path) -> Result<State, StateError> {
        let path = Self::path(state_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotProvisioned { path })
            }
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// Persists the state: temp file, fsync, rename, fsync the folder.
    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        let path = Self::path(state_dir);
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        fsutil::write_atomic(&path, &bytes, fsutil::PRIVATE)
            .map_err(|source| StateError::Io { path, source })
    }

    /// Moves the phase with `cmd` (in memory).
    pub fn apply(&mut self, cmd: Cmd) -> Result<(), StateError> {
        self.phase = transition(cmd, self.phase)?;
        Ok(())
    }

    /// Records how an attempt ended.
    pub fn record(
        &mut self,
        version: Option<Version>,
        outcome: Outcome,
        detail: String,
        at: Timestamp,
    ) {
        self.last_result = Some(LastResult {
            version,
            outcome,
            detail,
            at: whole_second(at),
        });
    }
}

/// `at` in whole seconds: every time the agent records or reports is a whole second.
pub fn whole_second(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_CMDS: [Cmd; 7] = [
        Cmd::StartDownload,
        Cmd::FinishDownload,
        Cmd::Discard,
        Cmd::Activate,
        Cmd::BootAttempt,
        Cmd::Commit,
        Cmd::Rollback,
    ];
    const ALL_PHASES: [Phase; 4] = [
        Phase::Idle,
        Phase::Downloading,
        Phase::Staged,
        Phase::Trial { attempts: 2 },
    ];

    #[test]
    fn every_pair_is_either_listed_or_refused() {
        use Phase::*;
        let allowed = [
            (Cmd::StartDownload, Idle, Downloading),
            (Cmd::StartDownload, Downloading, Downloading),
            (Cmd::StartDownload, Staged, Downloading),
            (Cmd::FinishDownload, Downloading, Staged),
            (Cmd::Discard, Downloading, Idle),
            (Cmd::Discard, Staged, Idle),
            (Cmd::Activate, Staged, Trial { attempts: 0 }),
            (
                Cmd::BootAttempt,
                Trial { attempts: 2 },
                Trial { attempts: 3 },
            ),
            (Cmd::Commit, Trial { attempts: 2 }, Idle),
            (Cmd::Rollback, Trial { attempts: 2 }, Idle),
            (Cmd::Rollback, Idle, Idle),
        ];
        for cmd in ALL_CMDS {
            for phase in ALL_PHASES {
                let want = allowed
                    .iter()
                    .find(|(c, p, _)| *c == cmd && *p == phase)
                    .map(|(_, _, n)| *n);
                match (transition(cmd, phase), want) {
                    (Ok(got), Some(n)) => assert_eq!(got, n, "{cmd:?} from {phase:?}"),
                    (Err(StateError::Refused { cmd: c, phase: p }), None) => {
                        assert_eq!((c, p), (cmd, phase))
                    }
                    (got, want) => panic!("{cmd:?} from {phase:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn state_round_trips_and_missing_means_not_provisioned() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            State::load(dir.path()),
            Err(StateError::NotProvisioned { .. })
        ));
        let mut s = State::provisioned();
        s.apply(Cmd::StartDownload).unwrap();
        s.apply(Cmd::FinishDownload).unwrap();
        s.apply(Cmd::Activate).unwrap();
        s.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), s);
        std::fs::write(State::path(dir.path()), b"{").unwrap();
        assert!(matches!(
            State::load(dir.path()),
            Err(StateError::Corrupt { .. })
        ));
    }
}
