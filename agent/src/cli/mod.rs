//! The command line (docs/cli.md): one file per subcommand, each with its `Args` and `run()`.
//! `--config` is a global argument, accepted before or after the subcommand.

mod apply;
mod keygen;
mod local;
mod man;
mod online;
pub mod out;
mod provision;
mod receipts;
mod request;
mod status;

pub use online::start_box;
pub use status::status_json;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DEFAULT_PATH};
use crate::error::AgentError;
use crate::lock::{StateLock, Wait};
use out::say;
use std::path::PathBuf;
use std::sync::Arc;

const AFTER_HELP: &str = "\
Exit codes:
  0  done
  1  refused by a rule (the message names it) or rolled back
  2  bad usage: a wrong flag, config or file
  3  I/O or network failure (try again later)

Environment:
  NP_AGENT_LOG  log filter for the lines on stderr (default: info), e.g. debug or warn;
                RUST_LOG is read when it is not set

The config file sets the serial, the state folder, the device key, the server (absent:
an offline-only box), the trusted root keys and how installs happen; see
agent.toml.example in the package's documentation folder.";

/// np-agent: keeps this appliance's firmware current under its warranty.
#[derive(Debug, clap::Parser)]
#[command(
    name = "np-agent",
    version,
    about = "Keeps this appliance's firmware current under its warranty: checks in with the \
             update server or takes offline bundles, installs into the inactive of two slots, \
             trial-boots the new firmware and rolls back when it is not healthy.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// The agent's config file (TOML). Accepted before or after the command.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the daemon: check in, watch the inbox, install and trial updates.
    #[command(
        long_about = "Run the daemon until SIGTERM or SIGINT. On start it resolves a \
        trial left pending by a reboot; then it checks in with the server every \
        server.check_interval (jittered; backing off after network failures), installs a staged \
        update inside install.window when install.auto is on, and applies the bundles an admin \
        drops into the inbox folder of the state folder. Logs go to stderr."
    )]
    Run,
    /// Show the box's firmware, warranty and update state.
    #[command(
        long_about = "Show the box's firmware, warranty and update state: serial and \
        model, the running version and slot, the previous version, the phase (idle, \
        downloading, staged, trial), the entitlement status and the coverage (covered, expired \
        or not yet started) with its end, the update available at the last check-in, and the \
        last result. Reads the state folder only; it never contacts the server."
    )]
    Status(status::Args),
    /// Check in with the server and update now.
    #[command(
        long_about = "Check in with the server now and act on its answer: carry out a \
        staff action (rollback or upgrade), then download, verify and install an offered \
        update (or stage it when install.auto is off). Without a reboot_command the new \
        firmware is trialled at once, so this returns once it is committed or rolled back. \
        When a newer release is held back, prints the server's reason and how to override it. \
        Needs [server] in the config and the device key."
    )]
    Check,
    /// Apply an offline bundle.
    #[command(
        long_about = "Apply an offline bundle (a tar or tar.gz made by the vendor with \
        `np-vendor bundle`): verify its keyring, entitlement and manifest, check the update \
        rule, stream the image into the inactive slot while hashing it, then install and trial \
        it (or stage it when install.auto is off). Shows a progress bar on a terminal. Also \
        installs a version this box rolled back from."
    )]
    Apply(apply::Args),
    /// Install the staged update.
    #[command(
        long_about = "Install the update that `check` or `apply` staged (with \
        install.auto off, or outside install.window): activate its slot and trial it."
    )]
    Install,
    /// Roll back to the previous image.
    #[command(
        long_about = "Roll back to the previous image (the slot that ran before the last \
        update), or end a trial in progress the same way. The version left is not installed \
        again automatically; `np-agent apply`, a staff upgrade action or a newer release \
        installs it. An online box tells the server at once."
    )]
    Rollback,
    /// Mark the trial slot good.
    #[command(
        long_about = "Mark the firmware on trial as good (what a healthy health_command \
        does by itself): the box keeps it at its next starts."
    )]
    Commit,
    /// Write a new device key and print its public key.
    #[command(
        long_about = "Write a new device key (Ed25519, mode 0600) to --out and print its \
        public key (base64), which the vendor registers for this box. The box signs its \
        requests to the server with it; config key device_key names where it is read."
    )]
    Keygen(keygen::Args),
    /// Factory step: put the first image into slot a as the running, committed firmware.
    #[command(
        long_about = "The factory step: verify the first image against its signed \
        manifest under the keyring (stored, or given with --keyring and checked against \
        trust.root_keys), write it into slot a as the running, committed firmware, and store \
        the keyring and entitlement. Refused on a box already provisioned."
    )]
    Provision(provision::Args),
    /// Write a signed request for this box's bundle (offline boxes).
    #[command(
        long_about = "Write a signed request (signed with the device key) naming this box's \
        serial, model, running version and slot, the entitlement it holds and its time \
        floor. The vendor turns it into the one bundle this box may install \
        (`np-vendor bundle get --request FILE`); apply that with `np-agent apply` or the \
        inbox. The receipts of what the box then does name the request."
    )]
    Request(request::Args),
    /// Copy the signed receipts of installs, rollbacks and refused bundles out.
    #[command(
        long_about = "Copy the signed receipts in the outbox of the state folder (one per \
        install, rollback and refused bundle, numbered by a seq that only grows) into a \
        folder, and say how many and from which seq. The vendor uploads them with \
        `np-vendor receipt upload`, so that its records follow an offline box. An online box \
        sends them with its check-ins by itself."
    )]
    Receipts(receipts::Args),
    /// Write the man pages (for packagers).
    #[command(
        hide = true,
        long_about = "Write np-agent's man pages, one per command, into a folder: what the \
        Debian package installs (deploy/build-debs.sh runs it). Not needed on a box."
    )]
    GenerateMan(man::Args),
}

/// Logs to stderr; `NP_AGENT_LOG` (or `RUST_LOG`) sets the filter, `info` by default.
pub fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = std::env::var("NP_AGENT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn load(cli: &Cli) -> Result<Config, AgentError> {
    Ok(Config::load(&cli.config)?)
}

/// The configuration and the state folder's lock, for a command that changes the state
/// (it waits, saying so, while `np-agent run` finishes a step). A box not provisioned yet
/// has no state folder to lock: the command then says so itself.
fn locked(cli: &Cli) -> Result<(Config, Option<StateLock>), AgentError> {
    let cfg = load(cli)?;
    let lock = if cfg.state_dir.is_dir() {
        Some(StateLock::acquire(&cfg.state_dir, Wait::Say)?)
    } else {
        None
    };
    Ok((cfg, lock))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), AgentError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match &cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::GenerateMan(a) => man::run(a),
        Command::Provision(a) => provision::run(&load(&cli)?, clock, a),
        Command::Status(a) => status::run(&load(&cli)?, clock, a),
        Command::Apply(a) => {
            let (cfg, _lock) = locked(&cli)?;
            apply::run(cfg, clock, a)
        }
        Command::Install => {
            let (cfg, _lock) = locked(&cli)?;
            local::install(cfg, clock)
        }
        Command::Rollback => {
            let (cfg, _lock) = locked(&cli)?;
            local::rollback(cfg, clock)
        }
        Command::Commit => {
            let (cfg, _lock) = locked(&cli)?;
            local::commit(cfg, clock)
        }
        Command::Check => {
            let (cfg, _lock) = locked(&cli)?;
            online::check(cfg, clock)
        }
        Command::Request(a) => {
            let (cfg, _lock) = locked(&cli)?;
            request::run(cfg, clock, a)
        }
        Command::Receipts(a) => receipts::run(&load(&cli)?, a),
        Command::Run => online::daemon(load(&cli)?, clock),
    }
}

/// Prints how an install ended.
pub(crate) fn print_done(done: &crate::install::Done) -> Result<(), AgentError> {
    say!("{done}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn every_command_and_option_has_complete_help() {
        let cli = Cli::command();
        let after = cli
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(after.contains("Exit codes"), "{after}");
        assert!(after.contains("NP_AGENT_LOG"), "{after}");
        let mut missing = Vec::new();
        for arg in cli.get_arguments() {
            if arg.get_help().is_none() {
                missing.push(format!("np-agent --{}", arg.get_id()));
            }
        }
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            if sub.get_about().is_none() || sub.get_long_about().is_none() {
                missing.push(format!("np-agent {name} (about and long about)"));
            }
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() {
                    missing.push(format!("np-agent {name} {id}"));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
