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

/// `--store URL`: the PostgreSQL store, shared by the commands that touch records.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArg {
    /// A PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE) to keep the records
    /// and tokens in, instead of the embedded store in the data folder; overrides
    /// `[store] url` of server.toml.
    #[arg(
        long = "store",
        value_name = "URL",
        env = "NP_STORE_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,
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
