//! HTTPS really starts: `run_tls` on 127.0.0.1:0 with a test-only certificate answers
//! /healthz to a client that trusts the test-only CA, and stops on shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

fn tls_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tls")
        .join(name)
}

#[tokio::test]
async fn https_server_answers_and_shuts_down() {
    let api = common::Api::new();
    let config = np_server::http::tls::load_server_config(
        &tls_file("TEST-ONLY-server.pem"),
        &tls_file("TEST-ONLY-server.key"),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(np_server::http::run_tls(
        listener,
        api.state.clone(),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls_file("TEST-ONLY-ca.pem")).unwrap())
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let kr = client
        .get(format!("https://127.0.0.1:{port}/api/v1/keyring"))
        .send()
        .await
        .unwrap();
    assert_eq!(kr.status().as_u16(), 200);
    // Plain HTTP to the TLS port is refused, not answered.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.map(|r| r.status().as_u16() != 200).unwrap_or(true));
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn bad_tls_files_are_named() {
    let err = np_server::http::tls::load_server_config(
        &tls_file("TEST-ONLY-server.key"),
        &tls_file("TEST-ONLY-server.key"),
    )
    .unwrap_err();
    assert!(
        matches!(err, np_server::http::tls::TlsError::NoCert(_)),
        "{err}"
    );
    let err = np_server::http::tls::load_server_config(
        &tls_file("TEST-ONLY-server.pem"),
        &tls_file("TEST-ONLY-server.pem"),
    )
    .unwrap_err();
    assert!(
        matches!(err, np_server::http::tls::TlsError::NoKey(_)),
        "{err}"
    );
}

#[tokio::test]
async fn an_https_client_that_sends_half_a_header_is_dropped() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let api = common::Api::with_config(|c| {
        c.conn.header_read_timeout = std::time::Duration::from_secs(1);
    });
    let config = np_server::http::tls::load_server_config(
        &tls_file("TEST-ONLY-server.pem"),
        &tls_file("TEST-ONLY-server.key"),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(np_server::http::run_tls(
        listener,
        api.state.clone(),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(tls_file("TEST-ONLY-ca.pem")).unwrap();
    for c in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut buf),
    )
    .await;
    assert!(
        read.is_ok(),
        "the slow HTTPS client was still connected after 10 s"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}
