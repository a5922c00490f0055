//! The command line (docs/cli.md): one file per subcommand, each with its `Args` and `run()`.
//! `--config` is a global argument, accepted before or after the subcommand.

mod apply;
mod keygen;
mod local;
mod man;
mod online;
mod provision;
mod status;

pub use online::start_box;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DEFAULT_PATH};
use crate::error::AgentError;
use std::path::PathBuf;
use std::sync::Arc;

/// np-agent: keeps this appliance's firmware current under its warranty.
#[derive(Debug, clap::Parser)]
#[command(name = "np-agent", version, about)]
pub struct Cli {
    /// The agent's config file.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the daemon: check in, watch the inbox, install and trial updates.
    Run,
    /// Show the box's firmware, warranty and update state.
    Status(status::Args),
    /// Check in with the server and update now.
    Check,
    /// Apply an offline bundle.
    Apply(apply::Args),
    /// Install the staged update.
    Install,
    /// Roll back to the previous image.
    Rollback,
    /// Mark the trial slot good.
    Commit,
    /// Write a new device key and print its public key.
    Keygen(keygen::Args),
    /// Factory step: put the first image into slot a as the running, committed firmware.
    Provision(provision::Args),
    /// Write the man pages (for packagers).
    #[command(hide = true)]
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

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), AgentError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match &cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::GenerateMan(a) => man::run(a),
        Command::Provision(a) => provision::run(&load(&cli)?, clock, a),
        Command::Status(a) => status::run(&load(&cli)?, clock, a),
        Command::Apply(a) => apply::run(load(&cli)?, clock, a),
        Command::Install => local::install(load(&cli)?, clock),
        Command::Rollback => local::rollback(load(&cli)?, clock),
        Command::Commit => local::commit(load(&cli)?, clock),
        Command::Check => online::check(load(&cli)?, clock),
        Command::Run => online::daemon(load(&cli)?, clock),
    }
}

/// Prints how an install ended.
pub(crate) fn print_done(done: &crate::install::Done) {
    use crate::install::Done;
    match done {
        Done::Installed(v) => println!("{v} installed and committed"),
        Done::Staged(v) => println!("{v} staged; install it with `np-agent install`"),
        Done::Rebooting(v) => println!("{v} activated; the box is rebooting into it"),
    }
}
