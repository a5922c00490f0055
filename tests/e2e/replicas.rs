//! Several `np-server serve` replicas on one PostgreSQL database and one blob folder:
//! parallel changes of one box split across them lose nothing, a token made for the
//! database works on every replica, a box checks in on either and upgrades, and a
//! device request replayed to the other replica is still a replay.

#![allow(clippy::unwrap_used)]

use np_common::Envelope;
use np_tests::agent::{image_bytes, TestAgent, SERIAL};
use np_tests::pg::PgDb;
use np_tests::server::TestServer;
use np_tests::{bin, run};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Copies a data folder for another replica, leaving out the offline root key.
fn copy_data(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "offline" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_data(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Two replicas on `db`: A with `--store`, B with `[store] url` in its server.toml
/// (and a copy of the data folder); both with the same `[blobs] dir`.
fn two_replicas(db: &PgDb, tmp: &Path) -> (TestServer, TestServer) {
    let data_a = tmp.join("data-a");
    let out = run(
        Command::new(bin("np-server"))
            .args(["init", "--data"])
            .arg(&data_a)
            .args(["--store", &db.url]),
        T,
    );
    assert_eq!(out.code, 0, "init: {}", out.stderr);
    let token = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("admin token: "))
        .unwrap()
        .trim()
        .to_owned();
    let root = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("root public key: "))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        !data_a.join("tokens.json").exists() && !data_a.join("store").exists(),
        "with a PostgreSQL store the folder holds only keys"
    );
    let data_b = tmp.join("data-b");
    copy_data(&data_a, &data_b);
    let blobs = tmp.join("blobs");
    let toml_a = tmp.join("a.toml");
    std::fs::write(
        &toml_a,
        format!(
            "data = {:?}\n[blobs]\ndir = {:?}\n",
            data_a.display().to_string(),
            blobs.display().to_string()
        ),
    )
    .unwrap();
    let toml_b = tmp.join("b.toml");
    std::fs::write(
        &toml_b,
        format!(
            "data = {:?}\n[store]\nurl = {:?}\n[blobs]\ndir = {:?}\n",
            data_b.display().to_string(),
            db.url,
            blobs.display().to_string()
        ),
    )
    .unwrap();
    let a = TestServer::with_args(
        &[
            "--config".as_ref(),
            toml_a.as_os_str(),
            "--store".as_ref(),
            db.url.as_ref(),
        ],
        &token,
        &root,
        &data_a,
    );
    let b = TestServer::with_args(
        &["--config".as_ref(), toml_b.as_os_str()],
        &token,
        &root,
        &data_b,
    );
    (a, b)
}

fn publish(srv: &TestServer, version: &str, sv: u64, image: &[u8]) -> Envelope {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("image");
    std::fs::write(&p, image).unwrap();
    let (status, blob) = srv.put_blob(&p);
    assert!(status == 201 || status == 200, "{blob}");
    let (status, rel) = srv.post_json(
        "/api/v1/releases",
        json!({"version": version, "security_version": sv, "models": ["NR-2000"],
               "channel": "stable", "min_from_version": "1.0.0",
               "image": {"name": format!("n-reporter-{version}.img"), "sha256": blob["sha256"]}}),
    );
    assert_eq!(status, 201, "{rel}");
    serde_json::from_value(rel["manifest"].clone()).unwrap()
}

#[test]
fn two_replicas_on_one_database_lose_no_change() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(&db, tmp.path());
    let (status, d) = a.post_json(
        "/api/v1/devices",
        json!({"serial": SERIAL, "purchase_date": "2030-01-15", "customer": "ACME",
               "allow_future": true}),
    );
    assert_eq!(status, 201, "{d}");
    // 100 extensions at once, every other one through each replica.
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let url = if i % 2 == 0 {
                a.url.clone()
            } else {
                b.url.clone()
            };
            let token = a.admin_token.clone();
            std::thread::spawn(move || {
                let resp = reqwest::blocking::Client::builder()
                    .timeout(T)
                    .build()
                    .unwrap()
                    .post(format!("{url}/api/v1/devices/{SERIAL}/extensions"))
                    .bearer_auth(token)
                    .json(&json!({"months": 1}))
                    .send()
                    .unwrap();
                let status = resp.status().as_u16();
                (status, resp.text().unwrap_or_default())
            })
        })
        .collect();
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 200, "{body}");
    }
    for srv in [&a, &b] {
        let (status, d) = srv.get_json(&format!("/api/v1/devices/{SERIAL}"));
        assert_eq!(status, 200, "{d}");
        assert_eq!(d["terms"].as_array().map(Vec::len), Some(101), "{d}");
        assert_eq!(d["sequence"], 101, "{d}");
    }
    let (status, log) = b.get_json(&format!("/api/v1/audit?serial={SERIAL}&limit=1000"));
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["entries"].as_array().map(Vec::len), Some(101));
    assert_eq!(
        db.query(&format!(
            "SELECT count(*) FROM audit WHERE serial = '{SERIAL}'"
        )),
        "101"
    );

    // A token made for the database works on both replicas, and its revocation too.
    let out = run(
        Command::new(bin("np-server"))
            .args([
                "token", "create", "--role", "staff", "--name", "sam", "--data",
            ])
            .arg(&a.data_dir)
            .env("NP_STORE_URL", &db.url),
        T,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sam = out.stdout.trim().to_owned();
    let get = |srv: &TestServer, token: &str| {
        srv.client()
            .get(format!("{}/api/v1/devices/{SERIAL}", srv.url))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!((get(&a, &sam), get(&b, &sam)), (200, 200));
    let out = run(
        Command::new(bin("np-server"))
            .args(["token", "revoke", "--name", "sam", "--data"])
            .arg(&b.data_dir)
            .args(["--store", &db.url]),
        T,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!((get(&a, &sam), get(&b, &sam)), (401, 401));
}

#[test]
fn a_box_checks_in_on_either_replica_and_upgrades() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(&db, tmp.path());
    let v1 = image_bytes(11, 200_000);
    let v2 = image_bytes(12, 300_000);
    let extra = |url: &str| {
        format!("[server]\nurl = \"{url}\"\ncheck_interval = \"1h\"\nstall_timeout = \"10s\"\n")
    };
    let agent = TestAgent::new(SERIAL, &a.root_public_key, &extra(&a.url));
    let key_path = agent.dir.path().join("device.key");
    let out = agent.run(&["keygen", "--out", key_path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let (status, d) = a.post_json(
        "/api/v1/devices",
        json!({"serial": SERIAL, "purchase_date": today, "customer": "ACME",
               "device_key": out.stdout.trim()}),
    );
    assert_eq!(status, 201, "{d}");
    // 1.0.0 published through A (its image lands in the shared blob folder).
    let manifest = publish(&a, "1.0.0", 1, &v1);
    let (_, keyring) = b.get_json("/api/v1/keyring");
    let (_, ent) = b.get_json(&format!("/api/v1/devices/{SERIAL}/entitlement"));
    let keyring: Envelope = serde_json::from_value(keyring).unwrap();
    let ent: Envelope = serde_json::from_value(ent).unwrap();
    agent.provision(&keyring, &manifest, &v1, Some(&ent));
    let config = agent.dir.path().join("agent.toml");
    let point_at = |url: &str| {
        let text = std::fs::read_to_string(&config).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("url = "))
            .unwrap()
            .to_owned();
        std::fs::write(&config, text.replace(&line, &format!("url = \"{url}\""))).unwrap();
    };
    // On A: nothing newer yet.
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("up to date"), "{out:?}");
    // 2.0.0 published through B; the box asks B, downloads from B and upgrades.
    publish(&b, "2.0.0", 2, &v2);
    point_at(&b.url);
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("2.0.0 installed and committed"),
        "{out:?}"
    );
    // Back on A: A knows what B saw.
    point_at(&a.url);
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("up to date"), "{out:?}");
    let (_, d) = a.get_json(&format!("/api/v1/devices/{SERIAL}"));
    assert_eq!(d["version"], "2.0.0", "{d}");
    let (_, events) = a.get_json(&format!("/api/v1/devices/{SERIAL}/events"));
    assert!(events.to_string().contains("commit"), "{events}");

    // A signed request replayed to the other replica is still a replay.
    let key = np_common::SecretKey::from_base64(std::fs::read_to_string(&key_path).unwrap().trim())
        .unwrap();
    let body =
        serde_json::to_vec(&json!({"version": "2.0.0", "event": "commit", "detail": "again"}))
            .unwrap();
    let headers = np_tests::device_headers(&key, SERIAL, "POST", "/api/v1/device/events", &body);
    let send = |srv: &TestServer| {
        let mut req = srv
            .client()
            .post(format!("{}/api/v1/device/events", srv.url));
        for (name, value) in &headers {
            req = req.header(*name, value);
        }
        let resp = req.body(body.clone()).send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().unwrap_or_default())
    };
    let (status, text) = send(&a);
    assert!((200..300).contains(&status), "{status} {text}");
    let (status, text) = send(&b);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("replay"), "{text}");
}

#[test]
fn an_unreachable_database_answers_503_and_service_resumes_by_itself() {
    let Some(db) = PgDb::create() else {
        return;
    };
    // The server reaches the database through a forwarder the test can cut.
    let at = db.url.rfind('@').unwrap() + 1;
    let slash = at + db.url[at..].find('/').unwrap();
    let cut = np_tests::tcpcut::TcpCut::start(&db.url[at..slash]);
    let url = format!("{}{}{}", &db.url[..at], cut.addr, &db.url[slash..]);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = run(
        Command::new(bin("np-server"))
            .args(["init", "--data"])
            .arg(&data)
            .args(["--store", &url]),
        T,
    );
    assert_eq!(out.code, 0, "init: {}", out.stderr);
    let token = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("admin token: "))
        .unwrap()
        .trim()
        .to_owned();
    let srv = TestServer::with_args(
        &[
            "--data".as_ref(),
            data.as_os_str(),
            "--store".as_ref(),
            url.as_ref(),
        ],
        &token,
        "",
        &data,
    );
    let (status, d) = srv.post_json(
        "/api/v1/devices",
        json!({"serial": SERIAL, "purchase_date": "2030-01-15", "customer": "ACME",
               "allow_future": true}),
    );
    assert_eq!(status, 201, "{d}");

    cut.cut();
    let started = std::time::Instant::now();
    let (status, body) = srv.post_json(
        &format!("/api/v1/devices/{SERIAL}/extensions"),
        json!({"months": 1}),
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    let (status, body) = srv.get_json(&format!("/api/v1/devices/{SERIAL}"));
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("store_unavailable"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "503s came after {:?}",
        started.elapsed()
    );
    let health = srv
        .client()
        .get(format!("{}/healthz", srv.url))
        .send()
        .unwrap();
    assert_eq!(health.status().as_u16(), 503);

    cut.restore();
    np_tests::wait_until("service to resume", T, || {
        let (status, d) = srv.get_json(&format!("/api/v1/devices/{SERIAL}"));
        (status == 200).then_some(d)
    });
    let (status, d) = srv.post_json(
        &format!("/api/v1/devices/{SERIAL}/extensions"),
        json!({"months": 1}),
    );
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        d["device"]["sequence"], 2,
        "the refused extension was not applied: {d}"
    );
    let health = srv
        .client()
        .get(format!("{}/healthz", srv.url))
        .send()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
