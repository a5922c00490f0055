//! The hidden `generate-man --out DIR` command of `np-server` and `np-vendor`: writes their
//! man pages (one per command and subcommand, rendered by `np_common::manpage`) for the
//! Debian packages (`deploy/build-debs.sh`).

use np_common::manpage::{self, ManFooter};
use std::path::{Path, PathBuf};

/// `generate-man`'s arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to write the pages into (created when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The exit codes, as the man pages list them.
pub const EXIT_STATUS: &[&str] = &[
    "0 done",
    "1 refused by a rule, a failed verification, or a request the server refused (4xx)",
    "2 bad usage: a missing or contradictory option, a bad configuration file",
    "3 I/O or network failure, or a server error (5xx)",
];

/// The footer of np-server's pages.
pub const SERVER_FOOTER: ManFooter<'static> = ManFooter {
    section: "8",
    exit_status: EXIT_STATUS,
    see_also: "np-vendor(1), np-agent(8); /usr/share/doc/np-server/cli.md, api.md \
               (the HTTP API, also GET /api/v1/openapi.json) and formats.md",
};

/// The footer of np-vendor's pages.
pub const VENDOR_FOOTER: ManFooter<'static> = ManFooter {
    section: "1",
    exit_status: EXIT_STATUS,
    see_also: "np-server(8), np-agent(8); /usr/share/doc/np-server/cli.md, api.md and \
               formats.md (signed documents, keys, offline bundles)",
};

/// Writes the pages of `cmd` into `out`; answers the files written.
pub fn write_pages(
    cmd: clap::Command,
    footer: &ManFooter<'_>,
    out: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for page in manpage::pages(cmd, footer) {
        let path = out.join(&page.file_name);
        std::fs::write(&path, &page.roff)?;
        written.push(path);
    }
    Ok(written)
}
