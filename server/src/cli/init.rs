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
    /// Keep records and tokens in PostgreSQL (the schema is made there, the first admin
    /// token stored there; the folder then holds the keys and keyring).
    #[command(flatten)]
    pub store: super::StoreArg,
}

/// Runs `init`.
pub fn run(args: &Args) -> Result<(), CliError> {
    let now = jiff::Timestamp::now();
    let out = match args.store.resolve()? {
        None => datadir::init(&args.data, now)?,
        Some(url) => super::block_on(async {
            let store = super::connect_store(&url).await?;
            Ok(datadir::init_with_store(&args.data, &store, now).await?)
        })?,
    };
    print_init(&args.data, &out);
    Ok(())
}

/// Prints what `init` must show once.
pub fn print_init(dir: &Path, out: &InitOutput) {
    crate::outln!("admin token: {}", out.admin_token);
    print_root(dir, out);
}

/// The name of the file that holds the first admin token when `serve` created the data
/// folder with its output going to a file or a journal rather than a terminal.
pub const FIRST_TOKEN_FILE: &str = "admin-token";

/// What `serve` shows when it created the data folder. The admin token is printed only
/// on a terminal; otherwise (a service whose output lands in a journal) it is written to a
/// new 0600 file in the data folder and only the file's path is printed.
pub fn print_first_start(dir: &Path, out: &InitOutput, hint: &str) -> Result<(), CliError> {
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() {
        crate::outln!("admin token: {}", out.admin_token);
    } else {
        let path = super::absolute(&dir.join(FIRST_TOKEN_FILE));
        np_fsutil::write_new(
            &path,
            format!("{}\n", out.admin_token).as_bytes(),
            np_fsutil::PRIVATE,
        )
        .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))?;
        crate::outln!("admin token written to {} (mode 0600)", path.display());
        crate::errln!(
            "np-server: the first admin token is in {}; read it, then delete the file. Make \
             another at any time with: {hint}",
            path.display()
        );
    }
    print_root(dir, out);
    Ok(())
}

fn print_root(dir: &Path, out: &InitOutput) {
    crate::outln!("root public key: {}", out.root_public_key);
    crate::errln!(
        "WARNING: the root key is at {}: move it offline (to an air-gapped machine or a safe) \
         and delete it here; it signs keyrings and is needed only to rotate keys",
        dir.join("offline/root.key").display()
    );
}
