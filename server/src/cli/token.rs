//! `np-server token create|list|revoke --data DIR [--store URL]`: manages staff tokens in
//! the data folder (they live outside the sled store, so this works while `serve` runs),
//! or, with a PostgreSQL store, in the database that every replica reads.

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
        /// The PostgreSQL store, when the server runs on one.
        #[command(flatten)]
        store: super::StoreArg,
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
        /// The PostgreSQL store, when the server runs on one.
        #[command(flatten)]
        store: super::StoreArg,
        /// Prints JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revokes the token with this name.
    Revoke {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// The PostgreSQL store, when the server runs on one.
        #[command(flatten)]
        store: super::StoreArg,
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

/// A time to the second, as people read it (`2026-11-29T17:16:30Z`).
fn whole_seconds(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

/// The token list as aligned columns: NAME, ROLE, CREATED.
fn table(list: &[tokens::TokenRecord]) -> Vec<String> {
    let name_w = list
        .iter()
        .map(|t| t.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let role_w = list
        .iter()
        .map(|t| t.role.to_string().len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = vec![format!("{:<name_w$}  {:<role_w$}  CREATED", "NAME", "ROLE")];
    for t in list {
        out.push(format!(
            "{:<name_w$}  {:<role_w$}  {}",
            t.name,
            t.role.to_string(),
            whole_seconds(t.created_at)
        ));
    }
    out
}

/// Runs `token`.
pub fn run(args: &Args) -> Result<(), CliError> {
    match &args.cmd {
        Cmd::Create {
            data,
            store,
            role,
            name,
        } => {
            require_data(data)?;
            let now = jiff::Timestamp::now();
            let t = match &store.url {
                None => tokens::create(data, *role, name, now)?,
                Some(url) => super::block_on(async {
                    let s = super::connect_store(url).await?;
                    Ok(tokens::create_in(&s, *role, name, now).await?)
                })?,
            };
            crate::outln!("{t}");
        }
        Cmd::List { data, store, json } => {
            require_data(data)?;
            let list = match &store.url {
                None => tokens::list(data)?,
                Some(url) => super::block_on(async {
                    let s = super::connect_store(url).await?;
                    Ok(tokens::list_in(&s).await?)
                })?,
            };
            if *json {
                let v: Vec<_> = list
                    .iter()
                    .map(|t| serde_json::json!({"name": t.name, "role": t.role, "created_at": whole_seconds(t.created_at)}))
                    .collect();
                crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                for line in table(&list) {
                    crate::outln!("{line}");
                }
            }
        }
        Cmd::Revoke { data, store, name } => {
            require_data(data)?;
            match &store.url {
                None => tokens::revoke(data, name)?,
                Some(url) => super::block_on(async {
                    let s = super::connect_store(url).await?;
                    Ok(tokens::revoke_in(&s, name).await?)
                })?,
            }
            crate::errln!("token {name:?} revoked");
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_aligned_with_whole_seconds() {
        let at: jiff::Timestamp = "2026-11-29T17:16:30.123456789Z".parse().unwrap();
        let rec = |name: &str, role| tokens::TokenRecord {
            name: name.to_owned(),
            role,
            sha256: String::new(),
            created_at: at,
        };
        let lines = table(&[
            rec("admin", TokenRole::Admin),
            rec("a-much-longer-name-than-24-chars", TokenRole::Release),
        ]);
        assert_eq!(
            lines,
            [
                "NAME                              ROLE     CREATED",
                "admin                             admin    2026-11-29T17:16:30Z",
                "a-much-longer-name-than-24-chars  release  2026-11-29T17:16:30Z",
            ]
        );
    }
}
