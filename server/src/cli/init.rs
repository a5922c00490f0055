//! `np-server init --data DIR`: creates a data folder and prints the first admin token
//! and the root public key; warns (on stderr) to move the root key offline.

use super::CliError;
use crate::datadir::{self, InitOutput};
use std::path::{Path, PathBuf};

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data folder to create (must not exist, or be empty).
    #[arg(long)]
    pub data: PathBuf,
}

/// Runs `init`.
pub fn run(args: &Args) -> Result<(), CliError> {
    let out = datadir::init(&args.data, jiff::Timestamp::now())?;
    print_init(&args.data, &out);
    Ok(())
}

/// Prints what `init` (or `serve` on a new folder) must show once.
pub fn print_init(dir: &Path, out: &InitOutput) {
    crate::outln!("admin token: {}", out.admin_token);
    crate::outln!("root public key: {}", out.root_public_key);
    crate::errln!(
        "WARNING: the root key is at {}: move it offline (to an air-gapped machine or a safe) \
         and delete it here; it signs keyrings and is needed only to rotate keys",
        dir.join("offline/root.key").display()
    );
}
