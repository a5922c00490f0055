//! `np-server migrate-store --data DIR --to URL|--to-file FILE`: copies the embedded store of a data
//! folder (and its tokens) into an empty PostgreSQL database, then checks the count of
//! every kind of record. The folder is left untouched: sled reads a copy of `DIR/store`
//! in a temporary folder. A server running on the folder is refused (the copy holds the
//! store's lock, the one a server takes).

use super::CliError;
use crate::store::{PgStore, SledStore};
use std::path::{Path, PathBuf};

/// Arguments of `migrate-store`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data folder whose embedded store is copied (stop its server first).
    #[arg(long)]
    pub data: PathBuf,
    /// The PostgreSQL database to fill (postgres://USER:PASSWORD@HOST:PORT/DATABASE); it
    /// must hold no records. A password given here shows in the process list: prefer
    /// --to-file or NP_STORE_URL.
    #[arg(long, value_name = "URL", env = "NP_STORE_URL", hide_env_values = true)]
    pub to: Option<String>,
    /// A file (best mode 0600) whose first line is the URL, as for --to.
    #[arg(long = "to-file", value_name = "FILE")]
    pub to_file: Option<PathBuf>,
}

impl Args {
    /// The URL of the database to fill: `--to`, `--to-file` or `NP_STORE_URL`.
    fn target(&self) -> Result<String, CliError> {
        let store = super::StoreArg {
            url: self.to.clone(),
            store_file: self.to_file.clone(),
        };
        store
            .resolve()
            .map_err(|e| match e {
                CliError::Usage(m) => CliError::Usage(
                    m.replace("--store-file", "--to-file").replace("--store", "--to"),
                ),
                other => other,
            })?
            .ok_or_else(|| {
                CliError::Usage(
                    "migrate-store needs --to URL, --to-file FILE or NP_STORE_URL: the PostgreSQL database to fill".into(),
                )
            })
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Takes the lock an np-server holds on the embedded store while it serves (sled's
/// exclusive lock on `store/db`), or refuses, naming the server that holds it.
fn lock_store(data: &Path, store_dir: &Path) -> Result<std::fs::File, CliError> {
    let path = store_dir.join("db");
    let file = std::fs::File::open(&path)
        .map_err(|e| CliError::Io(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::Refused(format!(
            "--data {}: an np-server is running on this data folder (it holds the lock of {}); stop it first, so that the copy is consistent and no change made meanwhile is lost",
            data.display(),
            store_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(CliError::Io(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// Runs `migrate-store`.
pub fn run(args: &Args) -> Result<(), CliError> {
    let to = args.target()?;
    let store_dir = args.data.join("store");
    if !args.data.join("keyring.json").exists() || !store_dir.is_dir() {
        return Err(CliError::Usage(format!(
            "--data {}: not an np-server data folder with an embedded store (no keyring.json or store/)",
            args.data.display()
        )));
    }
    // The lock a server running on this folder holds (sled's, on store/db): held for the
    // whole copy, so no server writes meanwhile and the copy is of one moment.
    let _lock = lock_store(&args.data, &store_dir)?;
    let tokens = crate::tokens::list(&args.data)?;
    let tmp = tempfile::tempdir()
        .map_err(|e| CliError::Io(format!("cannot make a temporary folder: {e}")))?;
    let copy = tmp.path().join("store");
    copy_dir(&store_dir, &copy)
        .map_err(|e| CliError::Io(format!("cannot copy {}: {e}", store_dir.display())))?;
    let sled = SledStore::open(&copy)?;
    let copied = super::block_on(async {
        let pg: PgStore = super::connect_store(&to).await.map_err(|e| match e {
            CliError::Usage(m) => CliError::Usage(m.replace("--store", "--to")),
            other => other,
        })?;
        let held: Vec<String> = pg
            .counts()
            .await?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        if !held.is_empty() {
            return Err(CliError::Refused(format!(
                "--to: the database already holds records ({}); migrate-store only fills an empty database",
                held.join(", ")
            )));
        }
        Ok(pg.import_sled(&sled, &tokens).await?)
    })?;
    crate::outln!("{:<16} {:>10} {:>10}", "KIND", "SLED", "POSTGRES");
    for c in &copied {
        crate::outln!("{:<16} {:>10} {:>10}", c.kind, c.source, c.target);
    }
    crate::errln!(
        "copied; {} is unchanged. Serve with --store-file, NP_STORE_URL or [store] url from now on.",
        args.data.display()
    );
    Ok(())
}
