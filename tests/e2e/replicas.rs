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
               "channel": "stable", "min_from_version": if version == "1.0.0" { "0.1.0" } else { "1.0.0" },
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

/// Every file of `dir` (relative name, bytes), to show a folder was left untouched.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let name = p.strip_prefix(root).unwrap().display().to_string();
                out.push((name, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn migrate_store_moves_a_sled_folder_and_its_boxes_keep_working() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let mut srv = TestServer::start();
    let v1 = image_bytes(11, 200_000);
    let v2 = image_bytes(12, 300_000);
    let agent = TestAgent::new(
        SERIAL,
        &srv.root_public_key,
        &format!(
            "[server]\nurl = \"{}\"\ncheck_interval = \"1h\"\nstall_timeout = \"10s\"\n",
            srv.url
        ),
    );
    let key_path = agent.dir.path().join("device.key");
    let out = agent.run(&["keygen", "--out", key_path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let (status, d) = srv.post_json(
        "/api/v1/devices",
        json!({"serial": SERIAL, "purchase_date": today, "customer": "ACME",
               "device_key": out.stdout.trim()}),
    );
    assert_eq!(status, 201, "{d}");
    let (status, d) = srv.post_json(
        &format!("/api/v1/devices/{SERIAL}/extensions"),
        json!({"years": 1}),
    );
    assert_eq!(status, 200, "{d}");
    let manifest = publish(&srv, "1.0.0", 1, &v1);
    let (_, keyring) = srv.get_json("/api/v1/keyring");
    let (_, ent) = srv.get_json(&format!("/api/v1/devices/{SERIAL}/entitlement"));
    agent.provision(
        &serde_json::from_value(keyring).unwrap(),
        &manifest,
        &v1,
        Some(&serde_json::from_value(ent).unwrap()),
    );
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = run(
        Command::new(bin("np-server"))
            .args([
                "token", "create", "--role", "staff", "--name", "sam", "--data",
            ])
            .arg(&srv.data_dir),
        T,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sam = out.stdout.trim().to_owned();
    let (_, before) = srv.get_json(&format!("/api/v1/devices/{SERIAL}"));
    let (_, log_before) = srv.get_json("/api/v1/audit?limit=1000");
    srv.process.kill();

    let data = srv.data_dir.clone();
    let files_before = snapshot(&data);
    let migrate_store = |to: &str| {
        run(
            Command::new(bin("np-server"))
                .args(["migrate-store", "--data"])
                .arg(&data)
                .args(["--to", to]),
            T,
        )
    };
    let out = migrate_store(&db.url);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for kind in ["devices", "audit", "releases", "device_reports", "tokens"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} line in {}", out.stdout));
        let n: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(n[1], n[2], "{line}");
    }
    assert_eq!(db.query("SELECT count(*) FROM tokens"), "2");
    assert!(
        snapshot(&data) == files_before,
        "migrate-store changed the folder"
    );
    // A second run finds records and refuses.
    let out = migrate_store(&db.url);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("already holds records"),
        "{}",
        out.stderr
    );
    let out = run(
        Command::new(bin("np-server"))
            .arg("migrate")
            .env("NP_STORE_URL", &db.url),
        T,
    );
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "schema version 4"),
        "{}",
        out.stderr
    );

    let pg = TestServer::with_args(
        &[
            "--data".as_ref(),
            data.as_os_str(),
            "--store".as_ref(),
            db.url.as_ref(),
        ],
        &srv.admin_token,
        &srv.root_public_key,
        &data,
    );
    let (status, after) = pg.get_json(&format!("/api/v1/devices/{SERIAL}"));
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before);
    let (_, log_after) = pg.get_json("/api/v1/audit?limit=1000");
    assert_eq!(log_after["entries"], log_before["entries"]);
    let status = pg
        .client()
        .get(format!("{}/api/v1/devices/{SERIAL}", pg.url))
        .bearer_auth(&sam)
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 200, "a token made on sled works after the move");
    let (status, d) = pg.post_json(
        &format!("/api/v1/devices/{SERIAL}/extensions"),
        json!({"months": 1}),
    );
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        d["device"]["sequence"],
        before["sequence"].as_u64().unwrap() + 1
    );
    // The migrated box upgrades from the PostgreSQL server.
    publish(&pg, "2.0.0", 2, &v2);
    let config = agent.dir.path().join("agent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&srv.url, &pg.url)).unwrap();
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("2.0.0 installed and committed"),
        "{out:?}"
    );
}

#[test]
fn a_replica_killed_during_load_loses_no_acknowledged_change() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, b) = two_replicas(&db, tmp.path());
    let (status, d) = a.post_json(
        "/api/v1/devices",
        json!({"serial": SERIAL, "purchase_date": "2030-01-15", "customer": "ACME",
               "allow_future": true}),
    );
    assert_eq!(status, 201, "{d}");
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let url = if i % 2 == 0 {
                a.url.clone()
            } else {
                b.url.clone()
            };
            let (token, acked) = (a.admin_token.clone(), acked.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(T)
                    .build()
                    .unwrap();
                let mut sent = 0u64;
                for _ in 0..15 {
                    sent += 1;
                    let resp = client
                        .post(format!("{url}/api/v1/devices/{SERIAL}/extensions"))
                        .bearer_auth(&token)
                        .json(&json!({"months": 1}))
                        .send();
                    match resp {
                        Ok(r) if r.status().as_u16() == 200 => {
                            acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        // The killed replica: nothing more to send there.
                        _ => break,
                    }
                }
                sent
            })
        })
        .collect();
    np_tests::wait_until("some changes acknowledged", T, || {
        (acked.load(std::sync::atomic::Ordering::SeqCst) >= 20).then_some(())
    });
    a.process.kill();
    let sent: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let acked = acked.load(std::sync::atomic::Ordering::SeqCst);
    let (status, d) = b.get_json(&format!("/api/v1/devices/{SERIAL}"));
    assert_eq!(status, 200, "{d}");
    let sequence = d["sequence"].as_u64().unwrap();
    // Every acknowledged change is there; one in flight at the kill may be too.
    assert!(
        (1 + acked..=1 + sent).contains(&sequence),
        "sequence {sequence}, acknowledged {acked}, sent {sent}"
    );
    assert_eq!(d["terms"].as_array().map(Vec::len), Some(sequence as usize));
    assert_eq!(
        db.query(&format!(
            "SELECT count(*) FROM audit WHERE serial = '{SERIAL}'"
        )),
        sequence.to_string(),
        "every change has its audit entry"
    );
}

#[test]
fn the_rollout_guard_counts_reports_received_by_every_replica() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(&db, tmp.path());
    // A new data folder on a database in use is refused: its keys would not verify it.
    let out = run(
        Command::new(bin("np-server"))
            .args(["init", "--data"])
            .arg(tmp.path().join("other"))
            .args(["--store", &db.url]),
        T,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("already holds records"),
        "{}",
        out.stderr
    );

    publish(&a, "2.0.0", 2, &image_bytes(12, 1000));
    let out = run(
        Command::new(bin("np-vendor"))
            .args(["release", "set", "2.0.0", "--stages", "100"])
            .args(["--max-failure-percent", "50", "--min-attempts", "2"])
            .env("NP_SERVER", &a.url)
            .env("NP_TOKEN", &a.admin_token),
        T,
    );
    assert_eq!(out.code, 0, "{out:?}");
    // Two boxes fail 2.0.0, one reporting to each replica: neither replica alone has
    // the two attempts the plan asks for.
    for (n, srv) in [(1u32, &a), (2, &b)] {
        let digits = format!("2000{n:06}");
        let serial = format!(
            "NR-2000-{n:06}-{}",
            np_common::serial::luhn_check_digit(&digits)
        );
        let key = np_common::SecretKey::from_seed(&[n as u8; 32]);
        let (status, d) = a.post_json(
            "/api/v1/devices",
            json!({"serial": serial, "purchase_date": "2030-01-15", "customer": "ACME",
                   "allow_future": true, "device_key": key.public_key().to_base64()}),
        );
        assert_eq!(status, 201, "{d}");
        let body =
            serde_json::to_vec(&json!({"version": "2.0.0", "event": "failure", "detail": "x"}))
                .unwrap();
        let mut req = srv
            .client()
            .post(format!("{}/api/v1/device/events", srv.url));
        for (name, value) in
            np_tests::device_headers(&key, &serial, "POST", "/api/v1/device/events", &body)
        {
            req = req.header(name, value);
        }
        let resp = req.body(body).send().unwrap();
        assert!(resp.status().is_success(), "{:?}", resp.text());
    }
    let r = np_tests::wait_until("a halt from both replicas' reports", T, || {
        let (_, r) = b.get_json("/api/v1/releases/2.0.0");
        (r["paused"] == true).then_some(r)
    });
    assert!(r.to_string().contains("halt"), "{r}");
    let (_, log) = a.get_json("/api/v1/audit?action=release_halt");
    assert_eq!(log["entries"].as_array().map(Vec::len), Some(1), "{log}");
}
