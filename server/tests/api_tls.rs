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
