//! The `np-server` command line: one module per subcommand, each with its `Args` and
//! `run()`. Exit codes are decided in one place, [`CliError::exit_code`].

pub mod init;
pub mod man;
pub mod migrate;
pub mod migrate_store;
pub mod serve;
pub mod token;

use crate::datadir::DataError;
use crate::tokens::TokenError;
use std::path::{Path, PathBuf};

/// Why a command failed, and so its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Refused (exit 1): the data folder exists, a token name is taken, ...
    #[error("{0}")]
    Refused(String),
    /// Bad usage or configuration (exit 2).
    #[error("{0}")]
    Usage(String),
    /// I/O or network failure (exit 3).
    #[error("{0}")]
    Io(String),
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Refused(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Io(_) => 3,
        }
    }
}

impl From<DataError> for CliError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Exists(_) | DataError::StoreInUse(_) => CliError::Refused(e.to_string()),
            DataError::NotInitialized(_) => CliError::Usage(e.to_string()),
            DataError::Token(t) => t.into(),
            DataError::Store(s) => s.into(),
            other => CliError::Io(other.to_string()),
        }
    }
}

impl From<TokenError> for CliError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::BadName(_) => CliError::Usage(e.to_string()),
            TokenError::NameTaken(_) | TokenError::NoSuchName(_) => {
                CliError::Refused(e.to_string())
            }
            other => CliError::Io(other.to_string()),
        }
    }
}

/// `--store URL` or `--store-file FILE`: the PostgreSQL store, shared by the commands that
/// touch records.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArg {
    /// A PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE) to keep the records
    /// and tokens in, instead of the embedded store in the data folder; overrides
    /// `[store] url` of server.toml. A password given here shows in the process list:
    /// prefer --store-file, NP_STORE_URL or `[store] url` in a 0600 server.toml.
    #[arg(
        long = "store",
        value_name = "URL",
        env = "NP_STORE_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,
    /// A file (best mode 0600) whose first line is the PostgreSQL URL, as for --store:
    /// keeps the database password off the command line.
    #[arg(long = "store-file", value_name = "FILE")]
    pub store_file: Option<PathBuf>,
}

/// The largest `--store-file` read (a URL is far shorter).
const STORE_FILE_MAX: u64 = 4096;

/// Where a store URL came from, for the hints that repeat it without its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSource {
    /// `--store URL` on the command line.
    Flag(String),
    /// `NP_STORE_URL`.
    Env,
    /// `--store-file FILE` (absolute).
    File(PathBuf),
}

impl StoreArg {
    /// The URL given by `--store`, `--store-file` or `NP_STORE_URL` (in that order), if
    /// any; `--store` and `--store-file` together are refused.
    pub fn resolve(&self) -> Result<Option<String>, CliError> {
        match (self.source(), &self.store_file) {
            (None, _) => Ok(None),
            (Some(StoreSource::Flag(url)), None) => Ok(Some(url)),
            (Some(StoreSource::Flag(_)), Some(_)) => Err(CliError::Usage(
                "give the database as --store URL or as --store-file FILE, not both".into(),
            )),
            (Some(StoreSource::File(path)), _) => read_url_file(&path, "--store-file").map(Some),
            (Some(StoreSource::Env), _) => Ok(self.url.clone()),
        }
    }

    /// Where the URL comes from (`None`: not from these flags); `--store-file` wins over
    /// `NP_STORE_URL`.
    pub fn source(&self) -> Option<StoreSource> {
        let from_env = |url: &String| std::env::var("NP_STORE_URL").is_ok_and(|v| v == *url);
        match (&self.url, &self.store_file) {
            (Some(url), _) if !from_env(url) => Some(StoreSource::Flag(url.clone())),
            (_, Some(path)) => Some(StoreSource::File(absolute(path))),
            (Some(_), None) => Some(StoreSource::Env),
            (None, None) => None,
        }
    }
}

/// Reads the URL in the file `path` given by `flag`: its first line, trimmed.
pub fn read_url_file(path: &Path, flag: &str) -> Result<String, CliError> {
    use std::io::Read as _;
    let shown = path.display();
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(STORE_FILE_MAX).read_to_string(&mut text))
        .map_err(|e| CliError::Usage(format!("{flag} {shown}: cannot read it: {e}")))?;
    let url = text.lines().next().unwrap_or("").trim();
    if url.is_empty() {
        return Err(CliError::Usage(format!(
            "{flag} {shown}: the file is empty; write the PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE) on its first line"
        )));
    }
    Ok(url.to_owned())
}

/// `path` made absolute against the current folder (as printed in hints that must work
/// from any folder); unchanged when that fails.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::SchemaTooNew { .. } => CliError::Refused(e.to_string()),
            other => CliError::Io(other.to_string()),
        }
    }
}

/// Connects to the PostgreSQL store at `url` (applying missing migrations), naming the
/// flag in the error.
pub async fn connect_store(url: &str) -> Result<crate::store::PgStore, CliError> {
    crate::store::PgStore::connect(url)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Postgres(m)
                if m.contains("not a valid PostgreSQL URL") || m.contains("TLS to PostgreSQL") =>
            {
                CliError::Usage(format!("--store: {m}"))
            }
            other => other.into(),
        })
}

/// Runs `fut` on a small runtime (for the commands that talk to PostgreSQL).
pub fn block_on<T>(
    fut: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the async runtime: {e}")))?
        .block_on(fut)
}

/// Every argument of `cmd` and its subcommands that has no help text, as
/// `command path: --flag` (for the tests that keep `--help` complete).
pub fn undocumented_options(cmd: &clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let path = if path.is_empty() {
            cmd.get_name().to_owned()
        } else {
            format!("{path} {}", cmd.get_name())
        };
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if matches!(
                a.get_action(),
                clap::ArgAction::Help
                    | clap::ArgAction::HelpShort
                    | clap::ArgAction::HelpLong
                    | clap::ArgAction::Version
            ) {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{path}: {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                walk(sub, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(cmd, "", &mut out);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_store_file_gives_the_url_and_a_bad_one_names_the_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("store-url");
        std::fs::write(&file, "  postgres://np:s3cret@db/np  \n# a comment\n").unwrap();
        let arg = |url: Option<&str>, file: Option<&Path>| StoreArg {
            url: url.map(str::to_owned),
            store_file: file.map(Path::to_path_buf),
        };
        assert_eq!(
            arg(None, Some(&file)).resolve().unwrap().as_deref(),
            Some("postgres://np:s3cret@db/np")
        );
        assert_eq!(
            arg(None, Some(&file)).source(),
            Some(StoreSource::File(file.clone()))
        );
        assert_eq!(arg(None, None).resolve().unwrap(), None);
        let both = arg(Some("postgres://np@x/np"), Some(&file)).resolve();
        assert!(matches!(both, Err(CliError::Usage(m)) if m.contains("not both")));
        std::fs::write(&file, "\n").unwrap();
        let empty = arg(None, Some(&file)).resolve();
        assert!(
            matches!(&empty, Err(CliError::Usage(m)) if m.starts_with("--store-file ") && m.contains("empty")),
            "{empty:?}"
        );
        let missing = arg(None, Some(&tmp.path().join("nope"))).resolve();
        assert!(matches!(missing, Err(CliError::Usage(m)) if m.contains("cannot read")));
    }
}
