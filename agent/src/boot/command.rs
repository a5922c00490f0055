//! The `command` boot loader: runs `install.activate_command` with the slot (`a` or `b`)
//! and `install.reboot_command`, and keeps the file record beside them.

use super::{run_command, BootControl, BootError, FileBoot};
use crate::config::InstallConfig;
use crate::state::Slot;
use std::path::Path;

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
    fn name(&self) -> &'static str {
        "command"
    }

    fn provision(&self, slot: Slot) -> Result<(), BootError> {
        self.file.provision(slot)
    }

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
        reboot_with(self.reboot_command.as_deref())
    }

    fn record(&self) -> Result<serde_json::Value, BootError> {
        self.file.record()
    }
}

/// Runs the reboot command if there is one: `true` when the box is rebooting.
pub(super) fn reboot_with(command: Option<&str>) -> Result<bool, BootError> {
    match command {
        None => Ok(false),
        Some(cmd) => {
            run_command(cmd, None)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::BootRecord;

    #[test]
    fn activate_runs_the_command_with_the_slot() {
        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("got");
        let install = InstallConfig {
            auto: true,
            window: None,
            health_command: None,
            activate_command: Some(format!("echo >> {}", got.display())),
            reboot_command: None,
            max_boot_attempts: 3,
        };
        let b = CommandBoot::new(dir.path(), &install);
        b.provision(Slot::A).unwrap();
        b.activate(Slot::B).unwrap();
        assert_eq!(std::fs::read_to_string(&got).unwrap(), "b\n");
        assert!(!b.reboot().unwrap());
        let failing = CommandBoot::new(
            dir.path(),
            &InstallConfig {
                activate_command: Some("exit 7".into()),
                ..install
            },
        );
        assert!(matches!(
            failing.activate(Slot::A),
            Err(BootError::Command { ref detail, .. }) if detail == "exit status 7"
        ));
        // The record did not move to a when the command failed.
        assert_eq!(
            FileBoot::new(dir.path()).read().unwrap(),
            BootRecord {
                active: Slot::B,
                committed: false,
                bad: vec![]
            }
        );
    }
}
