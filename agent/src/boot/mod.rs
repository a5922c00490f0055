//! How the agent talks to the boot loader: the [`BootControl`] trait, one file per boot
//! loader (`file.rs`: a record in the state folder, the default and what tests use;
//! `command.rs`: the configured `activate_command` / `reboot_command`; `grub.rs`: the GRUB
//! environment block of `deploy/grub/`), the booted slot read from the kernel command
//! line, and the `health_command` of a trial.

mod command;
mod file;
mod grub;
pub mod grubenv;

pub use command::CommandBoot;
pub use file::{BootRecord, FileBoot};
pub use grub::{GrubBoot, GrubSlots};

use crate::config::{Config, LoaderKind};
use crate::state::Slot;
use std::io::Read as _;
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
    #[error("the boot record {path} is missing: if the partition that holds it is not mounted, mount it; a box not provisioned yet is provisioned with `np-agent provision`; a provisioned box needs its boot record written again by hand (docs/formats.md)")]
    Missing { path: PathBuf },
    #[error("the boot record {path} is damaged: {message}; check it against the boot loader protocol (docs/formats.md; for GRUB `grub-editenv FILE list` on both copies) and rewrite the damaged values; do not provision again a box that runs a committed firmware (that makes the provisioned slot the committed one)")]
    Corrupt { path: PathBuf, message: String },
    #[error("the boot record {path} is a symbolic link, which GRUB follows and writes through and the agent does not: replace the link with the file it points to (`mv -f TARGET {path}`), keeping the backup `{path}.bak` beside it, so that GRUB's np_env_file and `[boot] grubenv` name the same file")]
    Link { path: PathBuf },
    #[error("cannot read the booted slot from {path} (`[boot] cmdline`): {message}")]
    Cmdline { path: PathBuf, message: String },
}

/// Switches slots and restarts the box. Every method writes the boot loader's record so
/// that a power cut leaves the old or the new record, never half of one (one atomic step,
/// or for GRUB two copies written one after the other).
pub trait BootControl {
    /// `file`, `command` or `grub`.
    fn name(&self) -> &'static str;
    /// Writes the whole record for `slot`, running and committed (the factory step).
    fn provision(&self, slot: Slot) -> Result<(), BootError>;
    /// Makes `slot` the one the box boots.
    fn activate(&self, slot: Slot) -> Result<(), BootError>;
    /// Marks `slot` good (the trial passed).
    fn commit(&self, slot: Slot) -> Result<(), BootError>;
    /// Marks `slot` bad (the trial failed or it was rolled back from).
    fn mark_bad(&self, slot: Slot) -> Result<(), BootError>;
    /// Restarts into the active slot. `true`: the box is rebooting and the caller stops;
    /// `false`: no reboot command, the caller goes straight on as if the box had started.
    fn reboot(&self) -> Result<bool, BootError>;
    /// The agent came up on the committed `slot`: the boot loader may stop counting tries.
    fn started(&self, _slot: Slot) -> Result<(), BootError> {
        Ok(())
    }
    /// Boots the boot loader tried `slot` since it was activated or committed, when it
    /// counts them (`None`: it does not).
    fn tries(&self, _slot: Slot) -> Result<Option<u32>, BootError> {
        Ok(None)
    }
    /// Whether the boot loader's record shows that booting `booted` rather than `first`
    /// was its own choice: `first` is first in its order and both are bootable, so it
    /// gave up on `first` (tries used up, a kernel it could not load). `false` when the
    /// record does not say (it is then a switch the boot loader missed).
    fn chose_over(&self, _booted: Slot, _first: Slot) -> Result<bool, BootError> {
        Ok(false)
    }
    /// The record as JSON, for `status`.
    fn record(&self) -> Result<serde_json::Value, BootError>;
}

/// The boot control a config asks for.
pub fn open(cfg: &Config) -> Box<dyn BootControl> {
    match &cfg.boot.loader {
        LoaderKind::File => Box::new(FileBoot::new(&cfg.state_dir)),
        LoaderKind::Command => Box::new(CommandBoot::new(&cfg.state_dir, &cfg.install)),
        LoaderKind::Grub { grubenv } => Box::new(GrubBoot::new(
            grubenv,
            cfg.install.max_boot_attempts,
            cfg.install.reboot_command.clone(),
        )),
    }
}

/// The most of a kernel command line read (Linux allows a few KiB).
const MAX_CMDLINE: u64 = 64 * 1024;

/// The slot named by `np.slot=a|b` on the kernel command line in `path`; `None` when
/// the line does not name one (a box whose boot loader does not tell).
pub fn booted_slot(path: &Path) -> Result<Option<Slot>, BootError> {
    let bad = |message: String| BootError::Cmdline {
        path: path.to_owned(),
        message,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CMDLINE).read_to_string(&mut text))
        .map_err(|e| bad(e.to_string()))?;
    let mut found = None;
    for word in text.split_ascii_whitespace() {
        if let Some(v) = word.strip_prefix("np.slot=") {
            found = Some(match v {
                "a" => Slot::A,
                "b" => Slot::B,
                other => return Err(bad(format!("np.slot={other} names no slot (a or b)"))),
            });
        }
    }
    Ok(found)
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
    fn booted_slot_from_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cmdline");
        let read = |text: &str| {
            std::fs::write(&p, text).unwrap();
            booted_slot(&p)
        };
        assert_eq!(
            read("root=/dev/nvme0n1p3 np.slot=b ro\n").unwrap(),
            Some(Slot::B)
        );
        assert_eq!(read("np.slot=a").unwrap(), Some(Slot::A));
        assert_eq!(read("quiet xnp.slot=b").unwrap(), None);
        assert!(
            matches!(read("np.slot=c"), Err(BootError::Cmdline { ref message, .. }) if message.contains("np.slot=c"))
        );
        assert!(matches!(
            booted_slot(&dir.path().join("none")),
            Err(BootError::Cmdline { .. })
        ));
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
