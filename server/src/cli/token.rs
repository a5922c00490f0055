//! `np-server token create|list|revoke --data DIR`: manages staff tokens in the data
//! folder; works while `serve` runs on it (tokens live outside the sled store).

use super::CliError;
use crate::tokens::{self, TokenRole};
use std::path::PathBuf;

/// Arguments of `token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Creates a token and prints it alone on stdout (it is shown only once).
    Create {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// Its name, shown as the actor in the audit log.
        #[arg(long)]
        name: String,
    },
    /// Lists token names, roles and creation times.
    List {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// Prints JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revokes the token with this name.
    Revoke {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// The token's name.
        #[arg(long)]
        name: String,
    },
}

fn require_data(dir: &std::path::Path) -> Result<(), CliError> {
    if dir.join("keyring.json").exists() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{} is not an np-server data folder; run `np-server init --data {}` first",
            dir.display(),
            dir.display()
        )))
    }
}

/// Runs `token`.
pub fn run(args: &Args) -> Result<(), CliError> {
    match &args.cmd {
        Cmd::Create { data, role, name } => {
            require_data(data)?;
            let t = tokens::create(data, *role, name, jiff::Timestamp::now())?;
            crate::outln!("{t}");
        }
        Cmd::List { data, json } => {
            require_data(data)?;
            let list = tokens::list(data)?;
            if *json {
                let v: Vec<_> = list
                    .iter()
                    .map(|t| serde_json::json!({"name": t.name, "role": t.role, "created_at": t.created_at}))
                    .collect();
                crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                crate::outln!("{:<24} {:<8} CREATED", "NAME", "ROLE");
                for t in list {
                    crate::outln!("{:<24} {:<8} {}", t.name, t.role, t.created_at);
                }
            }
        }
        Cmd::Revoke { data, name } => {
            require_data(data)?;
            tokens::revoke(data, name)?;
            crate::errln!("token {name:?} revoked");
        }
    }
    Ok(())
}
