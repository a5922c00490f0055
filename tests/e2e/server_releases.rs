//! Releases and the device API against the real `np-server` binary: publish an image, a box
//! checks in with signed requests, downloads with a resumed `Range`, reports, and staff
//! fetch an offline bundle; and a 1 GiB upload and download that must not grow the
//! server's memory.

#![allow(clippy::unwrap_used)]

use np_common::bundle::{EntryType, LayoutCheck};
use np_common::SecretKey;
use np_tests::server::TestServer;
use np_tests::test_key;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::io::{BufRead as _, Read, Seek as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

const SERIAL: &str = "NR-2000-123456-4";

/// The harness's server, with the calls this module needs on top.
struct Srv {
    url: String,
    token: String,
    inner: TestServer,
}

impl Srv {
    fn start() -> Srv {
        let inner = TestServer::start();
        Srv {
            url: inner.url.clone(),
            token: inner.admin_token.clone(),
            inner,
        }
    }

    fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
    }

    fn staff(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = Self::client()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// A signed device request.
    fn device(
        &self,
        key: &SecretKey,
        method: reqwest::Method,
        path: &str,
        body: &[u8],
        range: Option<&str>,
    ) -> reqwest::blocking::Response {
        let signed = np_tests::device_headers(key, SERIAL, method.as_str(), path, body);
        let mut req = Self::client().request(method, format!("{}{path}", self.url));
        for (name, value) in signed {
            req = req.header(name, value);
        }
        let mut req = req
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send().unwrap()
    }

    /// (VmRSS, VmHWM) of the server in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.inner.process.child.id()))
                .unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// `host:port` of an `http://` URL.
fn authority(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

/// Sends a request head over a fresh connection and returns the stream positioned after
/// the answer's head, the status and the head's text. The test's own client stays out of
/// the way of the figure being measured: no per-chunk overhead, `sendfile` for uploads.
fn raw_request(
    url: &str,
    head: &str,
    body: Option<&mut std::fs::File>,
) -> (std::io::BufReader<TcpStream>, u16, String) {
    let mut stream = TcpStream::connect(authority(url)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(f) = body {
        std::io::copy(f, &mut stream).unwrap();
    }
    let mut reader = std::io::BufReader::with_capacity(1 << 20, stream);
    let mut text = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        text.push_str(&line);
    }
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (reader, status, text)
}

fn device_key() -> SecretKey {
    SecretKey::from_base64(&std::fs::read_to_string(test_key("TEST-ONLY-device.key")).unwrap())
        .unwrap()
}

/// The entries of an uncompressed tar: (name, bytes).
fn tar_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() && bytes[at..at + 512].iter().any(|b| *b != 0) {
        let h = &bytes[at..at + 512];
        let name_end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8(h[..name_end].to_vec()).unwrap();
        let size_text = String::from_utf8(h[124..136].to_vec()).unwrap();
        let size = u64::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .unwrap() as usize;
        at += 512;
        out.push((name, bytes[at..at + size].to_vec()));
        at += size.div_ceil(512) * 512;
    }
    out
}

#[test]
fn publish_check_in_resume_download_report_and_bundle() {
    let srv = Srv::start();
    let key = device_key();
    let dir = tempfile::tempdir().unwrap();
    let image: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let image_path = dir.path().join("n-reporter-5.3.0.img");
    std::fs::write(&image_path, &image).unwrap();

    let (status, d) = srv.staff(
        reqwest::Method::POST,
        "/api/v1/devices",
        Some(json!({"serial": SERIAL, "purchase_date": jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date().to_string(),
            "customer": "ACME", "device_key": key.public_key().to_base64()})),
    );
    assert_eq!(status, 201, "{d}");
    let (status, blob) = srv.inner.put_blob(&image_path);
    assert_eq!(status, 201, "{blob}");
    let sha = hex::encode(Sha256::digest(&image));
    assert_eq!(
        (blob["sha256"].as_str(), blob["size"].as_u64()),
        (Some(sha.as_str()), Some(image.len() as u64))
    );
    let (status, rel) = srv.staff(
        reqwest::Method::POST,
        "/api/v1/releases",
        Some(
            json!({"version": "5.3.0", "security_version": 3, "models": ["NR-2000"],
            "channel": "stable", "min_from_version": "5.0.0",
            "image": {"name": "n-reporter-5.3.0.img", "sha256": sha}, "notes": "e2e"}),
        ),
    );
    assert_eq!(status, 201, "{rel}");
    assert_eq!(rel["product"], "n-reporter");

    // Check in: the offer points at the blob.
    let body = serde_json::to_vec(
        &json!({"version": "5.1.0", "slot": "a", "state": "idle", "nonce": "abcd01"}),
    )
    .unwrap();
    let resp = srv.device(
        &key,
        reqwest::Method::POST,
        "/api/v1/device/check-in",
        &body,
        None,
    );
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().unwrap();
    let url = v["offer"]["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("/api/v1/device/blobs/{sha}"));
    assert!(v["available"].get("refusal").is_none(), "{v}");

    // Download half, then resume from where it stopped.
    let resp = srv.device(
        &key,
        reqwest::Method::GET,
        &url,
        b"",
        Some("bytes=0-149999"),
    );
    assert_eq!(resp.status().as_u16(), 206);
    let mut got = resp.bytes().unwrap().to_vec();
    let resp = srv.device(
        &key,
        reqwest::Method::GET,
        &url,
        b"",
        Some(&format!("bytes={}-", got.len())),
    );
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(
        resp.headers()["content-range"].to_str().unwrap(),
        format!("bytes 150000-{}/{}", image.len() - 1, image.len())
    );
    got.extend_from_slice(&resp.bytes().unwrap());
    assert_eq!(got, image);
    let resp = srv.device(&key, reqwest::Method::GET, &url, b"", Some("bytes=300000-"));
    assert_eq!(resp.status().as_u16(), 416);
    assert_eq!(
        resp.headers()["content-range"].to_str().unwrap(),
        "bytes */300000"
    );
    // The signature covers the path: replaying it elsewhere is refused.
    let mut req = Srv::client().post(format!("{}/api/v1/device/events", srv.url));
    for (name, value) in
        np_tests::device_headers(&key, SERIAL, "POST", "/api/v1/device/check-in", &body)
    {
        req = req.header(name, value);
    }
    let resp = req.body(body.clone()).send().unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // The offline bundle: keyring, manifest, entitlement, image, in that order.
    let resp = Srv::client()
        .get(format!(
            "{}/api/v1/devices/{SERIAL}/bundle?version=5.3.0",
            srv.url
        ))
        .bearer_auth(&srv.token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let tar = resp.bytes().unwrap().to_vec();
    let entries = tar_entries(&tar);
    let mut check = LayoutCheck::new();
    for (name, bytes) in &entries {
        check
            .next(name, EntryType::File, bytes.len() as u64)
            .unwrap();
    }
    check.finish().unwrap();
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["keyring.json", "manifest.json", "entitlement.json", "image"]
    );
    assert_eq!(entries[3].1, image);
    // The box reports its install; the device shows it.
    let ev =
        serde_json::to_vec(&json!({"version": "5.3.0", "event": "commit", "detail": "healthy"}))
            .unwrap();
    assert_eq!(
        srv.device(
            &key,
            reqwest::Method::POST,
            "/api/v1/device/events",
            &ev,
            None
        )
        .status()
        .as_u16(),
        200
    );
    let (_, d) = srv.staff(
        reqwest::Method::GET,
        &format!("/api/v1/devices/{SERIAL}"),
        None,
    );
    assert_eq!(d["version"], "5.3.0");
    assert!(d["last_check_in"].is_string());
    let (_, list) = srv.staff(reqwest::Method::GET, "/api/v1/releases", None);
    assert_eq!(list["releases"][0]["installs"], 1);

    // Now that it runs 5.3.0, a bundle of 5.3.0 is refused with the rule.
    let (status, e) = srv.staff(
        reqwest::Method::GET,
        &format!("/api/v1/devices/{SERIAL}/bundle?version=5.3.0"),
        None,
    );
    assert_eq!(
        (status, e["error"]["details"]["rule"].as_str()),
        (403, Some("not_newer"))
    );
    // A staged rollout at 0 % and a pause show in the list.
    let (status, r) = srv.staff(
        reqwest::Method::PATCH,
        "/api/v1/releases/5.3.0",
        Some(json!({"rollout_percent": 0, "paused": true})),
    );
    assert_eq!(
        (status, r["rollout_percent"].as_u64(), r["paused"].as_bool()),
        (200, Some(0), Some(true))
    );
}

/// A sparse file of `size` bytes: a pattern in its first and last MiB, a hole between.
fn write_sparse(path: &Path, size: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let block: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    f.write_all(&block).unwrap();
    f.set_len(size).unwrap();
    f.seek(std::io::SeekFrom::Start(size - block.len() as u64))
        .unwrap();
    f.write_all(&block).unwrap();
}

#[test]
fn a_one_gib_image_goes_up_and_down_without_growing_the_server() {
    const SIZE: u64 = 1 << 30;
    let srv = Srv::start();
    let key = device_key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.img");
    write_sparse(&path, SIZE);
    // The digest the server must find, computed while streaming the file here.
    let mut hasher = Sha256::new();
    let mut f = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sha = hex::encode(hasher.finalize());

    let (status, _) = srv.staff(
        reqwest::Method::POST,
        "/api/v1/devices",
        Some(json!({"serial": SERIAL, "purchase_date": jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date().to_string(),
            "customer": "ACME", "device_key": key.public_key().to_base64()})),
    );
    assert_eq!(status, 201);
    let (rss_before, hwm_before) = srv.memory_kib();
    let started = Instant::now();
    let mut file = std::fs::File::open(&path).unwrap();
    let head = format!(
        "PUT /api/v1/blobs HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {SIZE}\r\nConnection: close\r\n\r\n",
        authority(&srv.url),
        srv.token
    );
    let (mut reader, status, _) = raw_request(&srv.url, &head, Some(&mut file));
    let mut answer = String::new();
    reader.read_to_string(&mut answer).unwrap();
    assert_eq!(status, 201, "{answer}");
    let blob: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (blob["sha256"].as_str(), blob["size"].as_u64()),
        (Some(sha.as_str()), Some(SIZE))
    );
    let upload = started.elapsed();
    let (status, rel) = srv.staff(
        reqwest::Method::POST,
        "/api/v1/releases",
        Some(
            json!({"version": "5.3.0", "security_version": 3, "models": ["NR-2000"],
            "min_from_version": "5.0.0", "image": {"sha256": sha}}),
        ),
    );
    assert_eq!(status, 201, "{rel}");
    let body = serde_json::to_vec(
        &json!({"version": "5.1.0", "slot": "a", "state": "idle", "nonce": "01"}),
    )
    .unwrap();
    assert_eq!(
        srv.device(
            &key,
            reqwest::Method::POST,
            "/api/v1/device/check-in",
            &body,
            None
        )
        .status()
        .as_u16(),
        200
    );

    let started = Instant::now();
    let path = format!("/api/v1/device/blobs/{sha}");
    let signed: String = np_tests::device_headers(&key, SERIAL, "GET", &path, b"")
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{signed}Connection: close\r\n\r\n",
        authority(&srv.url)
    );
    let (mut reader, status, head) = raw_request(&srv.url, &head, None);
    assert_eq!(status, 200, "{head}");
    let mut down = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        down.update(&buf[..n]);
    }
    let download = started.elapsed();
    assert_eq!((total, hex::encode(down.finalize())), (SIZE, sha));
    let (rss_after, hwm_after) = srv.memory_kib();
    let growth_kib = hwm_after.saturating_sub(rss_before);
    println!(
        "1 GiB blob: upload {upload:?}, download {download:?}; server VmRSS {rss_before} KiB -> {rss_after} KiB, \
         VmHWM {hwm_before} KiB -> {hwm_after} KiB, peak growth {} MiB",
        growth_kib / 1024
    );
    assert!(
        growth_kib < 64 * 1024,
        "the server grew by {growth_kib} KiB while moving 1 GiB"
    );
}
