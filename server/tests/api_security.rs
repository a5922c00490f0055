//! What an attacker on the network tried against the device API and the listener: replayed
//! signed requests, stale times, event floods, oversized bodies, slow clients that hold
//! connections, and release versions with build metadata.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_error, check_in_body, Api, NR2000};
use np_common::SecretKey;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn key() -> SecretKey {
    SecretKey::from_seed(&[42; 32])
}

/// Publishes release `version` of an image for NR-2000; answers the image's SHA-256.
async fn publish(api: &Api, version: &str) -> String {
    let image = format!("image of {version}").into_bytes();
    let admin = api.admin.clone();
    let (s, blob) = api.raw("PUT", "/api/v1/blobs", Some(&admin), &image).await;
    assert_eq!(s, 201, "{blob}");
    let sha = blob["sha256"].as_str().unwrap().to_owned();
    let (s, v) = api
        .call(
            "POST",
            "/api/v1/releases",
            Some(
                json!({"version": version, "security_version": 1, "models": ["NR-2000"],
                "min_from_version": "0.0.0", "released_at": "2026-10-01T00:00:00Z",
                "image": {"sha256": sha}, "notes": ""}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    sha
}

#[tokio::test]
async fn replayed_check_in_blob_get_and_events_are_refused() {
    let api = Api::new();
    api.register_box(NR2000, "2026-06-01", &key()).await;
    let sha = publish(&api, "5.3.0").await;

    let check_in = api.device_request(
        &key(),
        NR2000,
        "POST",
        "/api/v1/device/check-in",
        &check_in_body("5.2.0"),
    );
    assert_eq!(api.send_device(&check_in).await.0, 200);
    assert_error(&api.send_device(&check_in).await, 401, "replayed");

    let get = api.device_request(
        &key(),
        NR2000,
        "GET",
        &format!("/api/v1/device/blobs/{sha}"),
        b"",
    );
    let (s, body) = api.send_device(&get).await;
    assert_eq!(s, 200, "{body}");
    assert_error(&api.send_device(&get).await, 401, "replayed");

    let ev = serde_json::to_vec(&json!({"version": "5.3.0", "event": "download", "detail": "x"}))
        .unwrap();
    let event = api.device_request(&key(), NR2000, "POST", "/api/v1/device/events", &ev);
    assert_eq!(api.send_device(&event).await.0, 200);
    let replayed = api.send_device(&event).await;
    assert_error(&replayed, 401, "replayed");
    assert_eq!(replayed.1["error"]["details"]["reason"], "replayed");
    let (_, events) = api
        .call("GET", &format!("/api/v1/devices/{NR2000}/events"), None)
        .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");

    // A replay after the window is refused for its stale time.
    api.set_now("2026-11-23T10:06:00Z");
    let late = api.send_device(&check_in).await;
    assert_error(&late, 401, "unauthorized");
    assert_eq!(late.1["error"]["details"]["reason"], "clock_skew");
}

#[tokio::test]
async fn a_stale_or_nonceless_request_is_refused() {
    let api = Api::new();
    api.register_box(NR2000, "2026-06-01", &key()).await;
    let stale = api.device_request(
        &key(),
        NR2000,
        "POST",
        "/api/v1/device/check-in",
        &check_in_body("5.2.0"),
    );
    api.set_now("2026-11-23T10:05:01Z");
    let got = api.send_device(&stale).await;
    assert_error(&got, 401, "unauthorized");
    assert_eq!(got.1["error"]["details"]["reason"], "clock_skew");

    // The old three-header signature (no nonce) is refused.
    let mut old = api.device_request(
        &key(),
        NR2000,
        "POST",
        "/api/v1/device/check-in",
        &check_in_body("5.2.0"),
    );
    old.headers.retain(|(k, _)| *k != "x-np-nonce");
    let got = api.send_device(&old).await;
    assert_error(&got, 401, "unauthorized");
    assert_eq!(got.1["error"]["details"]["reason"], "missing_header");
}

#[tokio::test]
async fn events_are_capped_per_box_and_per_body() {
    let api = Api::with_config(|c| c.limits.events_per_box = 5);
    api.register_box(NR2000, "2026-06-01", &key()).await;
    for i in 0..8 {
        let ev = serde_json::to_vec(
            &json!({"version": "5.3.0", "event": "download", "detail": format!("n{i}")}),
        )
        .unwrap();
        let (s, v) = api
            .device(&key(), NR2000, "POST", "/api/v1/device/events", &ev)
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, events) = api
        .call("GET", &format!("/api/v1/devices/{NR2000}/events"), None)
        .await;
    let details: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        details,
        ["n7", "n6", "n5", "n4", "n3"],
        "the oldest are dropped"
    );

    // A body past the event cap (8 KiB by default) is 413, before it is parsed.
    let big = serde_json::to_vec(
        &json!({"version": "5.3.0", "event": "download", "detail": "x".repeat(9000)}),
    )
    .unwrap();
    assert_error(
        &api.device(&key(), NR2000, "POST", "/api/v1/device/events", &big)
            .await,
        413,
        "too_large",
    );
}

#[tokio::test]
async fn a_release_version_with_build_metadata_is_refused() {
    let api = Api::new();
    let admin = api.admin.clone();
    let (_, blob) = api.raw("PUT", "/api/v1/blobs", Some(&admin), b"img").await;
    let got = api
        .call(
            "POST",
            "/api/v1/releases",
            Some(
                json!({"version": "5.2.0+x", "security_version": 1, "models": ["NR-2000"],
                "min_from_version": "0.0.0", "image": {"sha256": blob["sha256"]}, "notes": ""}),
            ),
        )
        .await;
    assert_error(&got, 422, "build_metadata");
    // The refused release left nothing behind; a published one is audited with it.
    publish(&api, "5.2.0").await;
    let (_, audit) = api.call("GET", "/api/v1/audit", None).await;
    let actions: Vec<_> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["release_create"]);
}

/// Serves `api` on 127.0.0.1:0 with a 1 s header timeout and `max` connections.
async fn listen(max: usize) -> (String, tokio::sync::oneshot::Sender<()>, Api) {
    let api = Api::with_config(|c| {
        c.conn.header_read_timeout = Duration::from_secs(1);
        c.conn.max_connections = max;
        c.conn.request_timeout = Duration::from_secs(2);
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(np_server::http::run(listener, api.state.clone(), async {
        let _ = stopped.await;
    }));
    (addr, stop, api)
}

async fn healthz(addr: &str, timeout: Duration) -> Option<u16> {
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
    client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn a_client_that_sends_half_a_header_is_dropped_and_others_are_served() {
    let (addr, _stop, _api) = listen(100).await;
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(healthz(&addr, Duration::from_secs(5)).await, Some(200));
    // The server closes the slow connection (after at most a 408) within the timeout.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the slow client was still connected after 10 s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "dropped after {:?}",
        started.elapsed()
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert_eq!(healthz(&addr, Duration::from_secs(5)).await, Some(200));
}

#[tokio::test]
async fn connections_are_capped_and_idle_ones_make_room() {
    let (addr, _stop, _api) = listen(2).await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // Both places are taken: a third client is not served at once...
    assert_eq!(healthz(&addr, Duration::from_millis(400)).await, None);
    // ...but once the idle ones time out (1 s), it is.
    let started = Instant::now();
    let mut served = None;
    while started.elapsed() < Duration::from_secs(10) && served.is_none() {
        served = healthz(&addr, Duration::from_secs(3)).await;
    }
    assert_eq!(served, Some(200));
}

#[tokio::test]
async fn a_client_that_trickles_its_body_is_answered_408_and_frees_its_place() {
    let (addr, _stop, _api) = listen(2).await;
    // Two clients take both places, each sending a whole head and then a body one byte
    // at a time (no signature is checked before the body is read).
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(
            b"POST /api/v1/device/check-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
        slow.push(c);
    }
    let trickle = tokio::spawn(async move {
        let mut answers = Vec::new();
        for mut c in slow {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                if c.write_all(b" ").await.is_err() {
                    break;
                }
            }
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
            answers.push(String::from_utf8_lossy(&buf).into_owned());
        }
        answers
    });
    // Within the request timeout (2 s) plus margin, the server serves others again.
    let started = Instant::now();
    let mut served = None;
    while started.elapsed() < Duration::from_secs(10) && served.is_none() {
        served = healthz(&addr, Duration::from_secs(3)).await;
    }
    assert_eq!(
        served,
        Some(200),
        "still blocked after {:?}",
        started.elapsed()
    );
    for answer in trickle.await.unwrap() {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
    }
}
