//! `np-server serve`: loads the config (or `--data`/`--listen`), binds, initializes a missing
//! data folder (the first admin token goes to a terminal or to a 0600 file, never to a
//! journal), compares the data folder's keyring with the one the store records (refusing
//! another folder's or an older one), re-signs what does not verify under the installed
//! keyring, prints `np-server listening on URL` on stderr, and serves until SIGTERM or
//! SIGINT, finishing requests in flight. On PostgreSQL it refuses an empty database beside
//! a populated embedded store (a forgotten `migrate-store`) unless told otherwise.

use super::CliError;
use crate::config::{default_config, ServerToml, DEFAULT_LISTEN};
use crate::datadir;
use crate::state::system_clock;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A `server.toml`; `--data` and `--listen` override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The data folder (created as by `init` when it does not exist; the first admin token
    /// is then printed on a terminal, or else written to DATA/admin-token, mode 0600).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Keep records and tokens in this PostgreSQL database (several replicas may share
    /// it); overrides `[store] url`.
    #[command(flatten)]
    pub store: super::StoreArg,
    /// Start on a PostgreSQL database that holds no devices even though the data folder
    /// holds an embedded store with records (without it, serve refuses: copy them first
    /// with `np-server migrate-store`).
    #[arg(long)]
    pub ignore_embedded_store: bool,
}

/// How many devices the embedded store in `dir` holds (`None`: no store there, or it
/// cannot be read, for example because a server runs on it).
fn embedded_devices(dir: &std::path::Path) -> Option<usize> {
    let path = dir.join("store");
    if !path.is_dir() {
        return None;
    }
    crate::store::SledStore::open(&path)
        .ok()
        .map(|s| s.device_count())
}

/// Refuses to start on an empty database when the data folder's embedded store holds
/// records: the operator most likely forgot `migrate-store`, and boxes would be told they
/// are unknown.
async fn refuse_forgotten_migration(
    dir: &std::path::Path,
    pg: &crate::store::PgStore,
    source: &super::StoreSource,
    ignore: bool,
) -> Result<(), CliError> {
    let Some(n) = embedded_devices(dir).filter(|n| *n > 0) else {
        return Ok(());
    };
    let devices = pg
        .counts()
        .await?
        .into_iter()
        .find(|(kind, _)| *kind == "devices")
        .map_or(0, |(_, n)| n);
    if devices > 0 {
        return Ok(());
    }
    // As the token hints: the password never printed, nor asked for on a command line.
    let (to, note) = super::token::store_hint("--to", Some(source));
    let dir = super::absolute(dir);
    let message = format!(
        "the PostgreSQL database holds no devices, but {}/store (the embedded store) holds {n}: copy them first with `np-server migrate-store --data {}{to}`{note} (stop any server on that folder), or pass --ignore-embedded-store to start on the empty database anyway",
        dir.display(),
        dir.display()
    );
    if ignore {
        tracing::warn!("{message}");
        Ok(())
    } else {
        Err(CliError::Refused(message))
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Warns when the signed keyring expires within 60 days: boxes refuse an expired one.
fn warn_if_keyring_expires(state: &crate::state::AppState) {
    let expires = state.keys().keyring.expires;
    let left = expires.duration_since(state.now()).as_secs() / 86_400;
    if left < 60 {
        tracing::warn!(%expires, days_left = left, "the keyring expires soon: renew it with np-vendor keyring draft, keyring sign (offline, root key) and keyring install");
    }
}

/// Runs `serve`.
pub async fn run(args: &Args) -> Result<(), CliError> {
    let toml = match &args.config {
        Some(p) => Some(ServerToml::load(p).map_err(|e| CliError::Usage(e.to_string()))?),
        None => None,
    };
    let config = match (&toml, &args.data) {
        (_, Some(d)) => {
            let mut c = toml
                .as_ref()
                .map_or_else(|| default_config(d), ServerToml::config);
            c.data_dir = d.clone();
            c
        }
        (Some(t), None) => t.config(),
        (None, None) => {
            return Err(CliError::Usage(
                "serve needs --data DIR or --config server.toml".into(),
            ))
        }
    };
    let listen = args
        .listen
        .or(toml.as_ref().and_then(|t| t.listen))
        .unwrap_or_else(|| {
            DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
        });
    let tls = match toml.as_ref().and_then(|t| t.tls.as_ref()) {
        Some(files) => Some(
            crate::http::tls::load_server_config(&files.cert, &files.key)
                .map_err(|e| CliError::Usage(e.to_string()))?,
        ),
        None => None,
    };
    // Bind first: a server that cannot listen must not create (and print the only admin
    // token of) a data folder.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::Io(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Io(format!("cannot read the bound address: {e}")))?;
    let mut config = config;
    if let Some(url) = args.store.resolve()? {
        config.store_url = Some(url);
    }
    // Where the URL came from, for the printed commands: a URL from the config file is
    // named as a file the operator writes it into, never with its password.
    let source = args
        .store
        .source()
        .or_else(|| config.store_url.clone().map(super::StoreSource::Flag));
    let dir = config.data_dir.clone();
    datadir::require_store_url(&dir, config.store_url.as_deref(), "serve")
        .map_err(CliError::Refused)?;
    let pg = match &config.store_url {
        Some(url) => Some(super::connect_store(url).await?),
        None => None,
    };
    if let (Some(pg), Some(source)) = (&pg, &source) {
        refuse_forgotten_migration(&dir, pg, source, args.ignore_embedded_store).await?;
    }
    let hint =
        super::token::admin_token_hint(&dir, args.config.as_deref(), args.store.source().as_ref());
    let created = datadir::is_fresh(&dir);
    if created {
        let out = match &pg {
            Some(pg) => datadir::init_with_store(&dir, pg, jiff::Timestamp::now()).await?,
            None => datadir::init(&dir, jiff::Timestamp::now())?,
        };
        super::init::print_first_start(&dir, &out, &hint)?;
    }
    if let Some(pg) = &pg {
        // A folder made before the marker existed learns where its records live.
        if datadir::store_marker(&dir).is_none() {
            datadir::write_store_marker(&dir, &pg.shown_url())?;
        }
    }
    let state = match pg {
        Some(pg) => {
            // Marks stored from here on by other replicas feed this one's rollout guard;
            // those before are loaded at open.
            let mark = pg.last_tally_change().await?;
            let state =
                datadir::open_with_store(config, crate::store::Store::Postgres(pg), system_clock())
                    .await?;
            tokio::spawn(crate::http::guard::follow_other_replicas(
                state.clone(),
                mark,
            ));
            state
        }
        None => datadir::open(config, system_clock())?,
    };
    crate::domain::replica_keys::at_start(&state)
        .await
        .map_err(|e| match e {
            crate::domain::replica_keys::ReplicaKeysError::Store(s) => CliError::from(s),
            other => CliError::Refused(other.to_string()),
        })?;
    let (releases, devices) = crate::domain::rotation::resign_audited(
        &state,
        crate::domain::rotation::Only::Stale,
        "np-server",
        state.now(),
    )
    .await
    .map_err(|e| {
        CliError::Io(format!(
            "cannot re-sign documents with the installed keys: {e}"
        ))
    })?;
    if releases + devices > 0 {
        tracing::warn!(
            releases,
            devices,
            "re-signed documents that did not verify under the installed keyring"
        );
    }
    warn_if_keyring_expires(&state);
    // Leftovers of uploads cut by a kill (of this server or another replica sharing the
    // folder) go while serving, not only at the next start.
    tokio::spawn(
        state
            .blobs
            .clone()
            .sweep_while_serving(crate::blobs::SWEEP_EVERY),
    );
    // A folder made just now printed its token (or its file) and the hint already.
    if !created && !crate::tokens::any_used(&dir, state.store.postgres()).await {
        eprintln!(
            "np-server: no staff token has been used on this server yet. If you do not have the \
             admin token, make one: {hint}"
        );
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    crate::errln!("np-server listening on {scheme}://{addr}");
    tracing::info!(%addr, scheme, "serving");
    let served = match tls {
        Some(tls) => crate::http::run_tls(listener, state, tls, shutdown_signal()).await,
        None => crate::http::run(listener, state, shutdown_signal()).await,
    };
    served.map_err(|e| CliError::Io(format!("the server failed: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}
