//! The hidden `np-agent generate-man --out DIR`: writes the agent's man pages (one per
//! command, rendered by `np_common::manpage`) for the Debian package
//! (`deploy/build-debs.sh`).

use crate::error::AgentError;
use np_common::manpage::{self, ManFooter};
use std::path::PathBuf;

/// `generate-man`'s arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to write the pages into (created when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

const FOOTER: ManFooter<'static> = ManFooter {
    section: "8",
    exit_status: &[
        "0 done",
        "1 refused by a rule or rolled back (the message names the rule or the failed check)",
        "2 bad usage: a missing option or a bad configuration file",
        "3 I/O or network failure",
    ],
    see_also: "np-vendor(1), np-server(8); /etc/np-agent/agent.toml; \
               /usr/share/doc/np-agent/formats.md (configuration, state folder, offline \
               bundles) and cli.md",
};

/// Writes the pages.
pub fn run(a: &Args) -> Result<(), AgentError> {
    use clap::CommandFactory as _;
    let io = |source| AgentError::Io {
        what: format!("cannot write man pages into {}", a.out.display()),
        source,
    };
    std::fs::create_dir_all(&a.out).map_err(io)?;
    for page in manpage::pages(super::Cli::command(), &FOOTER) {
        std::fs::write(a.out.join(&page.file_name), &page.roff).map_err(io)?;
    }
    Ok(())
}
