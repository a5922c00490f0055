//! The accept loop of HTTP and HTTPS: at most `max_connections` connections at once (a
//! semaphore taken before `accept`, so further clients wait in the kernel's backlog), a TLS
//! handshake bounded in time, and HTTP/1.1 connections whose request head must arrive
//! within `header_read_timeout` (hyper's timer also runs while a kept-alive connection
//! waits for its next request, so an idle or slow client is dropped). HTTPS offers HTTP/2
//! by ALPN, with keep-alive pings that drop a dead peer. On shutdown, connections in flight
//! are finished (at most 30 s).

use crate::http::app;
use crate::state::AppState;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

/// Limits on connections, from `[limits]` of `server.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// How long a client may take to send a request head (and how long a kept-alive
    /// connection may sit idle).
    pub header_read_timeout: Duration,
    /// The most connections served at once.
    pub max_connections: usize,
    /// How long a request (but an image upload) may take from its head to its answer's
    /// head; a body trickled slower than that is answered 408.
    pub request_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app(state)` on `listener`, over TLS when `tls` is given, until `shutdown`
/// resolves; then waits (at most 30 s) for open connections to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.conn;
    let app = app(state);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(limits.header_read_timeout.max(Duration::from_secs(10)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let over_tls = acceptor.is_some();
        let svc = hyper_util::service::TowerToHyperService::new(app.clone().map_request(
            move |req: axum::http::Request<Incoming>| {
                let mut req = req.map(Body::new);
                if over_tls {
                    req.extensions_mut().insert(crate::http::tls::ServedOverTls);
                }
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let (h1, h2, watcher, acceptor) =
            (h1.clone(), h2.clone(), graceful.watcher(), acceptor.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let ended = match acceptor {
                None => {
                    watcher
                        .watch(h1.serve_connection(TokioIo::new(tcp), svc))
                        .await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    if is_h2 {
                        watcher
                            .watch(h2.serve_connection(TokioIo::new(stream), svc))
                            .await
                    } else {
                        watcher
                            .watch(h1.serve_connection(TokioIo::new(stream), svc))
                            .await
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s; closing them");
    }
    Ok(())
}
