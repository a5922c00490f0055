//! `np-server serve`: loads the config (or `--data`/`--listen`), initializes a missing
//! data folder, binds, prints `np-server listening on URL` on stderr, and serves until
//! SIGTERM or SIGINT, finishing requests in flight.

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
    /// The data folder (created as by `init` when it does not exist).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
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
    let expires = state.keys.keyring.expires;
    let left = expires.duration_since(state.now()).as_secs() / 86_400;
    if left < 60 {
        tracing::warn!(%expires, days_left = left, "the keyring expires soon: sign a new version with the offline root key");
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
    if datadir::is_fresh(&config.data_dir) {
        let out = datadir::init(&config.data_dir, jiff::Timestamp::now())?;
        super::init::print_init(&config.data_dir, &out);
    }
    let state = datadir::open(config, system_clock())?;
    warn_if_keyring_expires(&state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::Io(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Io(format!("cannot read the bound address: {e}")))?;
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
