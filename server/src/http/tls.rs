//! HTTPS: loads a PEM certificate chain and key into a rustls server config (ring
//! provider, no process-wide default needed); `run_tls` serves the app over it.

use crate::state::AppState;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCert(PathBuf),
    /// The key file holds no private key.
    #[error("{0} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(PathBuf),
    /// rustls refused the pair.
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Marks a request that came over TLS (the console's session cookie is then `Secure`).
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls;

/// Builds a rustls server config (HTTP/1.1 and HTTP/2 by ALPN) from PEM files.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: cert.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert.to_path_buf()));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: key.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(key.to_path_buf()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app(state)` over TLS on `listener` until `shutdown` resolves, then waits (at
/// most 30 s) for open connections to finish (`crate::http::conn`).
pub async fn run_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::http::conn::serve(listener, state, Some(tls), shutdown).await
}
