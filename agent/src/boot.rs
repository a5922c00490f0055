//! How the agent talks to the boot loader: a [`BootControl`] trait with a file-backed
//! implementation (the default, and what tests use) and one that runs the configured
//! `activate_command` / `reboot_command`. Also the `health_command` of a trial.

use crate::config::InstallConfig;
use crate::state::Slot;
use np_fsutil as fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the boot loader or a configured command failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("command `{command}` failed: {detail}")]
    Command { command: String, detail: String },
}

/// Switches slots and restarts the box.
pub trait BootControl {
    /// Makes `slot` the one the box boots.
    fn activate(&self, slot: Slot) -> Result<(), BootError>;
    /// Marks `slot` good (the trial passed).
    fn commit(&self, slot: Slot) -> Result<(), BootError>;
    /// Marks `slot` bad (the trial failed or it was rolled back from).
    fn mark_bad(&self, slot: Slot) -> Result<(), BootError>;
    /// Restarts into the active slot. `true`: the box is rebooting and the caller stops;
    /// `false`: no reboot command, the caller goes straight on as if the box had started.
    fn reboot(&self) -> Result<bool, BootError>;
}

/// What the file-backed boot loader records in `state_dir/boot.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRecord {
    pub active: Slot,
    pub committed: bool,
    pub bad: Vec<Slot>,
}

/// A boot loader that is a file: the default when no `activate_command` is configured.
#[derive(Debug, Clone)]
pub struct FileBoot {
    path: PathBuf,
}

impl FileBoot {
    /// The boot record of `state_dir`.
    pub fn new(state_dir: &Path) -> FileBoot {
        FileBoot {
            path: state_dir.join("boot.json"),
        }
    }

    /// The current record (slot a, committed, when none was written yet).
    pub fn read(&self) -> BootRecord {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(BootRecord {
                active: Slot::A,
                committed: true,
                bad: Vec::new(),
            })
    }

    fn write(&self, r: &BootRecord) -> Result<(), BootError> {
        let bytes = serde_json::to_vec_pretty(r).unwrap_or_default();
        fsutil::write_atomic(&self.path, &bytes, fsutil::PRIVATE).map_err(|source| BootError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

impl BootControl for FileBoot {
    fn activate(&self, slot: Slot) -> Result<(), BootError> {
        let mut r = self.read();
        r.active = slot;
        r.committed = false;
        r.bad.retain(|s| *s != slot);
        self.write(&r)
    }

    fn commit(&self, slot: Slot) -> Result<(), BootError> {
        let mut r = self.read();
        r.active = slot;
        r.committed = true;
        self.write(&r)
    }

    fn mark_bad(&self, slot: Slot) -> Result<(), BootError> {
        let mut r = self.read();
        if !r.bad.contains(&slot) {
            r.bad.push(slot);
        }
        self.write(&r)
    }

    fn reboot(&self) -> Result<bool, BootError> {
        Ok(false)
    }
}

/// Runs the configured commands, and keeps the file record too.
#[derive(Debug, Clone)]
pub struct CommandBoot {
    file: FileBoot,
    activate_command: Option<String>,
    reboot_command: Option<String>,
}

impl CommandBoot {
    /// The boot control a config asks for.
    pub fn new(state_dir: &Path, install: &InstallConfig) -> CommandBoot {
        CommandBoot {
            file: FileBoot::new(state_dir),
            activate_command: install.activate_command.clone(),
            reboot_command: install.reboot_command.clone(),
        }
    }
}

impl BootControl for CommandBoot {
    fn activate(&self, slot: Slot) -> Result<(), BootError> {
        if let Some(cmd) = &self.activate_command {
            run_command(cmd, Some(slot.as_str()))?;
        }
        self.file.activate(slot)
    }

    fn commit(&self, slot: Slot) -> Result<(), BootError> {
        self.file.commit(slot)
    }

    fn mark_bad(&self, slot: Slot) -> Result<(), BootError> {
        self.file.mark_bad(slot)
    }

    fn reboot(&self) -> Result<bool, BootError> {
        match &self.reboot_command {
            None => Ok(false),
            Some(cmd) => {
                run_command(cmd, None)?;
                Ok(true)
            }
        }
    }
}

/// Runs `command` through `sh -c`, with `arg` appended as its first argument.
pub fn run_command(command: &str, arg: Option<&str>) -> Result<(), BootError> {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(format!("{command} \"$@\"")).arg("sh");
    if let Some(a) = arg {
        c.arg(a);
    }
    let out = c.output().map_err(|e| BootError::Command {
        command: command.to_owned(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or("").trim();
    Err(BootError::Command {
        command: command.to_owned(),
        detail: match out.status.code() {
            Some(c) if last.is_empty() => format!("exit status {c}"),
            Some(c) => format!("exit status {c}: {last}"),
            None => "killed by a signal".into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_boot_records_activate_commit_and_bad() {
        let dir = tempfile::tempdir().unwrap();
        let b = FileBoot::new(dir.path());
        assert_eq!(b.read().active, Slot::A);
        b.activate(Slot::B).unwrap();
        assert_eq!(
            b.read(),
            BootRecord {
                active: Slot::B,
                committed: false,
                bad: vec![]
            }
        );
        b.mark_bad(Slot::B).unwrap();
        b.commit(Slot::A).unwrap();
        assert_eq!(
            b.read(),
            BootRecord {
                active: Slot::A,
                committed: true,
                bad: vec![Slot::B]
            }
        );
        assert!(!b.reboot().unwrap());
    }

    #[test]
    fn commands_get_the_slot_and_report_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        run_command(&format!("echo > {}", out.display()), Some("b")).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "b");
        let e = run_command("echo nope >&2; exit 4", None).unwrap_err();
        assert!(
            matches!(e, BootError::Command { ref detail, .. } if detail == "exit status 4: nope")
        );
    }
}
