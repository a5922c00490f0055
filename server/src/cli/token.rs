//! `np-server token create|list|revoke (--data DIR [--store URL] | --config server.toml)`:
//! manages staff tokens in
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

/// Where the tokens live: the data folder and the store, from `--config` (as `serve`
/// takes it) or the flags, which override it.
#[derive(Debug, clap::Args)]
struct Where {
    /// A `server.toml` (the one `serve` runs with): its data folder and `[store] url`;
    /// `--data` and `--store` override them.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The data folder.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The PostgreSQL store, when the server runs on one.
    #[command(flatten)]
    store: super::StoreArg,
}

impl Where {
    /// The data folder and the PostgreSQL URL, if any.
    fn resolve(&self) -> Result<(PathBuf, Option<String>), CliError> {
        let toml = match &self.config {
            Some(p) => Some(
                crate::config::ServerToml::load(p).map_err(|e| CliError::Usage(e.to_string()))?,
            ),
            None => None,
        };
        let from_toml = toml.as_ref().map(crate::config::ServerToml::config);
        let data = match (&self.data, &from_toml) {
            (Some(d), _) => d.clone(),
            (None, Some(c)) => c.data_dir.clone(),
            (None, None) => {
                return Err(CliError::Usage(
                    "token needs --data DIR or --config server.toml".into(),
                ))
            }
        };
        let url = match self.store.resolve()? {
            Some(u) => Some(u),
            None => from_toml.and_then(|c| c.store_url),
        };
        require_data(&data)?;
        crate::datadir::require_store_url(&data, url.as_deref(), "token")
            .map_err(CliError::Refused)?;
        Ok((data, url))
    }
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Creates a token and prints it alone on stdout (it is shown only once).
    Create {
        #[command(flatten)]
        at: Where,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// Its name, shown as the actor in the audit log.
        #[arg(long)]
        name: String,
    },
    /// Lists token names, roles and creation times.
    List {
        #[command(flatten)]
        at: Where,
        /// Prints JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revokes the token with this name.
    Revoke {
        #[command(flatten)]
        at: Where,
        /// The token's name.
        #[arg(long)]
        name: String,
    },
}

/// `url` with its password (if any) replaced by `PASSWORD`, and whether it had one.
pub fn without_password(url: &str) -> (String, bool) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), false);
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_owned(), false);
    };
    match rest[..at].find(':') {
        Some(colon) => (
            format!(
                "{}{}:PASSWORD{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            true,
        ),
        None => (url.to_owned(), false),
    }
}

/// The command that makes an admin token for a server started with `config` and/or data
/// folder `dir` (both printed absolute, so that the command works from any folder), and
/// the store given by `store` (`--store`, `--store-file` or `NP_STORE_URL`; not by the
/// config), as `serve` and `init` print it: it works as printed, and never prints nor
/// asks for a database password on the command line.
pub fn admin_token_hint(
    dir: &std::path::Path,
    config: Option<&std::path::Path>,
    store: Option<&super::StoreSource>,
) -> String {
    let mut cmd = String::from("np-server token create");
    if let Some(c) = config {
        cmd.push_str(&format!(" --config {}", super::absolute(c).display()));
    }
    cmd.push_str(&format!(" --data {}", super::absolute(dir).display()));
    let (arg, note) = store_hint("--store", store);
    format!("{cmd}{arg} --role admin --name NAME{note}")
}

/// How a printed command names the store given by `source` through `flag` (`--store`,
/// or `--to` of `migrate-store`; each has a `-file` twin): the argument and a note. A
/// URL with a password becomes `FLAG-file FILE`, the note showing the URL with
/// `PASSWORD` in its place: a password on a command line shows in the process list.
pub fn store_hint(flag: &str, source: Option<&super::StoreSource>) -> (String, String) {
    use super::StoreSource;
    match source {
        None => (String::new(), String::new()),
        Some(StoreSource::Env) => (
            String::new(),
            " (with NP_STORE_URL set as for this server)".to_owned(),
        ),
        Some(StoreSource::File(path)) => (format!(" {flag}-file {}", path.display()), String::new()),
        Some(StoreSource::Flag(url)) => match without_password(url) {
            (shown, true) => (
                format!(" {flag}-file FILE"),
                format!(" (FILE holding the database URL {shown}, with the password in place of PASSWORD, mode 0600; or NP_STORE_URL set to it)"),
            ),
            (shown, false) => (format!(" {flag} '{shown}'"), String::new()),
        },
    }
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
        Cmd::Create { at, role, name } => {
            let (data, url) = at.resolve()?;
            let now = jiff::Timestamp::now();
            let t = match &url {
                None => tokens::create(&data, *role, name, now)?,
                Some(url) => super::block_on(async {
                    let s = super::connect_store(url).await?;
                    Ok(tokens::create_in(&s, *role, name, now).await?)
                })?,
            };
            crate::outln!("{t}");
        }
        Cmd::List { at, json } => {
            let (data, url) = at.resolve()?;
            let list = match &url {
                None => tokens::list(&data)?,
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
        Cmd::Revoke { at, name } => {
            let (data, url) = at.resolve()?;
            match &url {
                None => tokens::revoke(&data, name)?,
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
    fn the_hint_names_the_store_but_never_its_password() {
        use crate::cli::StoreSource;
        let dir = std::path::Path::new("/srv/np");
        assert_eq!(
            admin_token_hint(dir, None, None),
            "np-server token create --data /srv/np --role admin --name NAME"
        );
        let flag = StoreSource::Flag("postgres://np:s3cret@db:5432/np".into());
        let hint = admin_token_hint(dir, None, Some(&flag));
        assert_eq!(
            hint,
            "np-server token create --data /srv/np --store-file FILE --role admin --name NAME (FILE holding the database URL postgres://np:PASSWORD@db:5432/np, with the password in place of PASSWORD, mode 0600; or NP_STORE_URL set to it)"
        );
        assert!(!hint.contains("s3cret"), "{hint}");
        assert_eq!(
            admin_token_hint(dir, None, Some(&StoreSource::Flag("postgres://np@db/np".into()))),
            "np-server token create --data /srv/np --store 'postgres://np@db/np' --role admin --name NAME"
        );
        let file = StoreSource::File("/etc/np/store-url".into());
        assert_eq!(
            admin_token_hint(dir, None, Some(&file)),
            "np-server token create --data /srv/np --store-file /etc/np/store-url --role admin --name NAME"
        );
        assert!(admin_token_hint(dir, None, Some(&StoreSource::Env))
            .ends_with("--name NAME (with NP_STORE_URL set as for this server)"));
        let with_config =
            admin_token_hint(dir, Some(std::path::Path::new("/etc/np/server.toml")), None);
        assert!(
            with_config
                .starts_with("np-server token create --config /etc/np/server.toml --data /srv/np"),
            "{with_config}"
        );
    }

    #[test]
    fn the_hint_works_from_any_folder() {
        let here = std::env::current_dir().unwrap();
        let hint = admin_token_hint(
            std::path::Path::new("np-data"),
            Some(std::path::Path::new("a.toml")),
            None,
        );
        assert_eq!(
            hint,
            format!(
                "np-server token create --config {} --data {} --role admin --name NAME",
                here.join("a.toml").display(),
                here.join("np-data").display()
            )
        );
    }

    #[test]
    fn token_takes_config_as_serve_does() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        crate::datadir::init(&data, jiff::Timestamp::now()).unwrap();
        let toml = tmp.path().join("server.toml");
        std::fs::write(&toml, format!("data = {:?}\n", data.display().to_string())).unwrap();
        let cli =
            Cli::try_parse_from(["token", "list", "--config", toml.to_str().unwrap()]).unwrap();
        let Cmd::List { at, .. } = &cli.args.cmd else {
            panic!("not a list")
        };
        assert_eq!(at.resolve().unwrap(), (data.clone(), None));
        let cli = Cli::try_parse_from(["token", "list"]).unwrap();
        let Cmd::List { at, .. } = &cli.args.cmd else {
            panic!("not a list")
        };
        assert!(matches!(at.resolve(), Err(CliError::Usage(m)) if m.contains("--config")));
    }

    #[test]
    fn the_list_is_aligned_with_whole_seconds() {
        let at: jiff::Timestamp = "2026-11-29T17:16:30.123456789Z".parse().unwrap();
        let rec = |name: &str, role| tokens::TokenRecord {
            name: name.to_owned(),
            role,
            sha256: String::new(),
            created_at: at,
            used: false,
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
