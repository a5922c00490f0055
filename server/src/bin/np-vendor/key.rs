//! `np-vendor key new --out FILE`: a new Ed25519 key from the OS random source, written
//! 0600 (never over an existing file); the public key is printed on stdout.

use crate::failure::{CmdResult, Failure};
use crate::files;
use np_common::SecretKey;
use std::path::PathBuf;

/// Key commands.
#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Create a new private key file and print its public key (base64).
    New(NewArgs),
}

/// Arguments of `key new`.
#[derive(clap::Args)]
pub struct NewArgs {
    /// Where to write the private key (must not exist yet).
    #[arg(long)]
    out: PathBuf,
}

/// Runs a key command.
pub fn run(cmd: KeyCommand) -> CmdResult {
    let KeyCommand::New(args) = cmd;
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| Failure::io(format!("cannot read the OS random source: {e}")))?;
    let key = SecretKey::from_seed(&seed);
    seed = [0u8; 32];
    let _ = seed;
    files::write_new_private(&args.out, &key.to_base64())?;
    let public = key.public_key();
    np_server::outln!("{}", public.to_base64());
    np_server::errln!(
        "wrote private key {} (key id {})",
        args.out.display(),
        public.key_id()
    );
    Ok(())
}
