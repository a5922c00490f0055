//! The `np-server` command line: one module per subcommand, each with its `Args` and
//! `run()`. Exit codes are decided in one place, [`CliError::exit_code`].

pub mod init;
pub mod man;
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
            DataError::Exists(_) => CliError::Refused(e.to_string()),
            DataError::NotInitialized(_) => CliError::Usage(e.to_string()),
            DataError::Token(t) => t.into(),
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
