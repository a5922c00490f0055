//! Several `np-server serve` replicas on one PostgreSQL database and one blob folder:
//! parallel changes of one box split across them lose nothing, a token made for the
//! database works on every replica, a box checks in on either and upgrades, and a
//! device request replayed to the other replica is still a replay. Replicas agree on the
//! keyring: one with another data folder's keys is refused at start, one whose folder
//! lags behind an install answers 503 `keyring_stale` until its folder catches up.

#![allow(clippy::unwrap_used)]

use np_common::Envelope;
use np_tests::agent::{image_bytes, TestAgent, SERIAL};
use np_tests::pg::PgDb;
use np_tests::replicas::{copy_data, init_on_postgres, two_replicas};
use np_tests::server::TestServer;
use np_tests::{bin, run};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn publish(srv: &TestServer, version: &str, sv: u64, image: &[u8]) -> Envelope {
    srv.publish(
        image,
        json!({"version": version, "security_version": sv, "models": ["NR-2000"],
               "channel": "stable", "min_from_version": if version == "1.0.0" { "0.1.0" } else { "1.0.0" }}),
    )
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
    a.register_agent(&agent);
    // 1.0.0 published through A (its image lands in the shared blob folder).
    let manifest = publish(&a, "1.0.0", 1, &v1);
    b.provision_agent(&agent, &manifest, &v1);
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
    let token = init_on_postgres(&data, &url).token;
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
    srv.register_agent(&agent);
    let (status, d) = srv.post_json(
        &format!("/api/v1/devices/{SERIAL}/extensions"),
        json!({"years": 1}),
    );
    assert_eq!(status, 200, "{d}");
    let manifest = publish(&srv, "1.0.0", 1, &v1);
    srv.provision_agent(&agent, &manifest, &v1);
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
    // While the sled server runs, migrate-store refuses: the copy would not be consistent.
    let out = run(
        Command::new(bin("np-server"))
            .args(["migrate-store", "--data"])
            .arg(&srv.data_dir)
            .args(["--to", &db.url]),
        T,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("an np-server is running on this data folder"),
        "{}",
        out.stderr
    );
    assert_eq!(
        db.query("SELECT count(*) FROM pg_tables WHERE tablename = 'devices'"),
        "0",
        "refused before touching the database"
    );
    srv.process.kill();
    // Serving the folder on the empty database before migrating is refused, naming the fix.
    let out = run(
        Command::new(bin("np-server"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&srv.data_dir)
            .args(["--store", &db.url]),
        T,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "np-server migrate-store --data {}",
            srv.data_dir.display()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--ignore-embedded-store"),
        "{}",
        out.stderr
    );

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

/// Every device row (serial and record), to show the database was left untouched.
fn devices_snapshot(db: &PgDb) -> String {
    db.query("SELECT coalesce(string_agg(serial || '=' || record, '|' ORDER BY serial), '') FROM devices")
}

/// Registers a box with `key` through `srv`, covered from today.
fn register_box(srv: &TestServer, serial: &str, device_key: &str) {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let (status, d) = srv.post_json(
        "/api/v1/devices",
        json!({"serial": serial, "purchase_date": today, "customer": "ACME",
               "device_key": device_key}),
    );
    assert_eq!(status, 201, "{d}");
}

fn vendor(srv: &TestServer, args: &[&str]) -> np_tests::Output {
    run(
        Command::new(bin("np-vendor"))
            .args(args)
            .env("NP_SERVER", &srv.url)
            .env("NP_TOKEN", &srv.admin_token)
            .env_remove("NP_TOKEN_FILE"),
        T,
    )
}

fn health(srv: &TestServer) -> (u16, String) {
    let resp = srv
        .client()
        .get(format!("{}/healthz", srv.url))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

#[test]
fn a_replica_with_another_data_folders_keys_is_refused_and_changes_nothing() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, _b) = two_replicas(&db, tmp.path());
    let key = np_common::SecretKey::from_seed(&[7; 32]);
    register_box(&a, SERIAL, &key.public_key().to_base64());
    let (status, d) = a.post_json(
        &format!("/api/v1/devices/{SERIAL}/extensions"),
        json!({"months": 1}),
    );
    assert_eq!(status, 200, "{d}");
    let devices = devices_snapshot(&db);
    assert!(devices.contains("\"sequence\":2"), "{devices}");
    let recorded = db.query("SELECT record FROM installed_keyring");
    assert!(recorded.contains("\"version\":1"), "{recorded}");

    // Another server's data folder (its own keys, keyring version 1 too).
    let other = tmp.path().join("other");
    let out = run(
        Command::new(bin("np-server"))
            .args(["init", "--data"])
            .arg(&other),
        T,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for _ in 0..2 {
        let out = run(
            Command::new(bin("np-server"))
                .args(["serve", "--listen", "127.0.0.1:0", "--data"])
                .arg(&other)
                .args(["--store", &db.url])
                .env("RUST_LOG", "info"),
            T,
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        let err = &out.stderr;
        assert!(err.contains("same version but other keys"), "{err}");
        assert!(
            err.matches("version 1 (keys ").count() == 2,
            "both keyrings named: {err}"
        );
        assert!(err.contains("Copy keyring.json and keys/"), "{err}");
        assert!(!err.contains("np_test:np_test"), "no password: {err}");
        assert!(
            !err.contains("NOTICE") && !err.contains("skipping"),
            "quiet: {err}"
        );
        assert_eq!(devices_snapshot(&db), devices, "nothing re-signed");
        assert_eq!(db.query("SELECT record FROM installed_keyring"), recorded);
    }
    // A wrong password is one sentence naming the URL without it.
    let wrong = db
        .url
        .replace("np_test:np_test@", "np_test:not-the-password@");
    let out = run(
        Command::new(bin("np-server"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&a.data_dir)
            .args(["--store", &wrong]),
        T,
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("authentication failed for user np_test"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not-the-password"), "{}", out.stderr);
    // The replicas that belong still serve what they signed.
    let (status, ent) = a.get_json(&format!("/api/v1/devices/{SERIAL}/entitlement"));
    assert_eq!(status, 200, "{ent}");
}

#[test]
fn a_replica_behind_a_keyring_install_refuses_to_sign_until_its_folder_catches_up() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b) = two_replicas(&db, tmp.path());
    let v1 = image_bytes(11, 100_000);
    let agent = TestAgent::new(
        SERIAL,
        &a.root_public_key,
        &format!(
            "[server]\nurl = \"{}\"\ncheck_interval = \"1h\"\nstall_timeout = \"10s\"\n",
            b.url
        ),
    );
    a.register_agent(&agent);
    let manifest = publish(&a, "1.0.0", 1, &v1);
    b.provision_agent(&agent, &manifest, &v1);
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");

    // The entitlement key rotated: drafted on A, signed offline with the root key.
    let draft = tmp.path().join("draft.json");
    let signed = tmp.path().join("signed.json");
    let out = vendor(
        &a,
        &[
            "keyring",
            "draft",
            "--rotate",
            "entitlement",
            "--out",
            draft.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let root = a.data_dir.join("offline/root.key");
    let out = vendor(
        &a,
        &[
            "keyring",
            "sign",
            "--root-key",
            root.to_str().unwrap(),
            "--in",
            draft.to_str().unwrap(),
            "--out",
            signed.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    // B does not hold the draft's new key: it says to install through A.
    let out = vendor(&b, &["keyring", "install", signed.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("install the keyring through that same replica"),
        "{out:?}"
    );
    assert!(db.query("SELECT version FROM installed_keyring") == "1");
    let out = vendor(
        &a,
        &["keyring", "install", signed.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(db.query("SELECT version FROM installed_keyring"), "2");

    // B's folder still holds version 1: it refuses what would sign, and says so.
    let (status, text) =
        np_tests::wait_until("B's /healthz to say its keyring is stale", T, || {
            let h = health(&b);
            (h.0 == 503).then_some(h)
        });
    assert_eq!(status, 503);
    assert!(text.contains("keyring_stale"), "{text}");
    // A short text: paths and instructions stay in the server's log.
    assert!(text.contains("try again shortly"), "{text}");
    assert!(!text.contains(&b.data_dir.display().to_string()), "{text}");
    let (status, body) = b.post_json(
        &format!("/api/v1/devices/{SERIAL}/extensions"),
        json!({"months": 1}),
    );
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("keyring_stale")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains(&b.data_dir.display().to_string()) && message.contains("try again"),
        "{body}"
    );
    let (status, body) = b.get_json("/api/v1/keyring");
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("keyring_stale")),
        "{body}"
    );
    let out = agent.run(&["check"]);
    assert_ne!(
        out.code, 0,
        "a stale replica does not answer a check-in: {out:?}"
    );
    // Reads that do not sign still work on B.
    let (status, d) = b.get_json(&format!("/api/v1/devices/{SERIAL}"));
    assert_eq!(status, 200, "{d}");
    assert_eq!(health(&a).0, 200);

    // A replica started from B's lagging folder is refused, naming both keyrings.
    let lagging = tmp.path().join("data-c");
    copy_data(&b.data_dir, &lagging);
    let out = run(
        Command::new(bin("np-server"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&lagging)
            .args(["--store", &db.url]),
        T,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("version 2 (keys") && out.stderr.contains("version 1 (keys"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("installed through another replica"),
        "{}",
        out.stderr
    );
    // The operator copies A's keyring into B's folder, then its keys: until the keys
    // arrive, B's log names the key file it lacks (never the key).
    std::fs::copy(
        a.data_dir.join("keyring.json"),
        b.data_dir.join("keyring.json"),
    )
    .unwrap();
    let new_key = std::fs::read_dir(a.data_dir.join("keys"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".key") && !b.data_dir.join("keys").join(n).exists())
        .expect("the installed key is a new file in A's keys/");
    // B looks again at its folder when asked to sign (at most every 2 s): keep asking.
    let needle = format!("lacks keys/{new_key}");
    let started = std::time::Instant::now();
    let logged = loop {
        assert_eq!(health(&b).0, 503);
        if let Some(l) = b.process.try_wait_for(&needle, Duration::from_millis(500)) {
            break l;
        }
        assert!(
            started.elapsed() < T,
            "no log line naming {new_key}: {:?}",
            b.process.seen
        );
    };
    assert!(logged.contains("(entitlement"), "{logged}");
    let secret = std::fs::read_to_string(a.data_dir.join("keys").join(&new_key)).unwrap();
    assert!(!b.process.seen.iter().any(|l| l.contains(secret.trim())));
    copy_data(&a.data_dir.join("keys"), &b.data_dir.join("keys"));
    np_tests::wait_until("B to switch to the new keyring", T, || {
        (health(&b).0 == 200).then_some(())
    });
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let kr: Envelope =
        serde_json::from_slice(&std::fs::read(agent.state("trust/keyring.json")).unwrap()).unwrap();
    let kr: np_common::keyring::Keyring =
        serde_json::from_slice(&kr.payload_bytes().unwrap()).unwrap();
    assert_eq!(kr.version, 2, "the box holds the new keyring");
    let ent: Envelope =
        serde_json::from_slice(&std::fs::read(agent.state("trust/entitlement.json")).unwrap())
            .unwrap();
    np_common::docs::verify::<np_common::docs::Entitlement>(&ent, &kr)
        .expect("the box's entitlement verifies under the new keyring");
    let (status, d) = b.post_json(
        &format!("/api/v1/devices/{SERIAL}/extensions"),
        json!({"months": 1}),
    );
    assert_eq!(status, 200, "{d}");
}

#[test]
fn healthz_answers_503_naming_a_missing_blob_folder() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(&db, tmp.path());
    let blobs = tmp.path().join("blobs");
    std::fs::remove_dir_all(&blobs).unwrap();
    for srv in [&a, &b] {
        let (status, text) = health(srv);
        assert_eq!(status, 503, "{text}");
        assert!(text.contains(&blobs.display().to_string()), "{text}");
    }
    std::fs::create_dir_all(&blobs).unwrap();
    assert_eq!(health(&a).0, 200);
}

/// Restarts replica A of [`two_replicas`] (its config `a.toml`, `--store`) with `env`
/// set and, when `request_timeout` is given, that request timeout.
fn restart_a(
    a: TestServer,
    db: &PgDb,
    tmp: &Path,
    env: &[(&str, &str)],
    request_timeout: Option<u64>,
) -> TestServer {
    let mut a = a;
    a.process.kill();
    let toml = tmp.join("a.toml");
    if let Some(secs) = request_timeout {
        let mut text = std::fs::read_to_string(&toml).unwrap();
        if !text.contains("[limits]") {
            text.push_str(&format!("[limits]\nrequest_timeout_secs = {secs}\n"));
            std::fs::write(&toml, text).unwrap();
        }
    }
    TestServer::with_args_env(
        &[
            "--config".as_ref(),
            toml.as_os_str(),
            "--store".as_ref(),
            db.url.as_ref(),
        ],
        env,
        &a.admin_token,
        &a.root_public_key,
        &a.data_dir,
    )
}

/// Drafts (rotating the entitlement key) through `srv` and signs offline with the root
/// key of `root_dir`; answers the signed keyring's path.
fn draft_and_sign(srv: &TestServer, root_dir: &Path, tmp: &Path, name: &str) -> std::path::PathBuf {
    let draft = tmp.join(format!("{name}-draft.json"));
    let signed = tmp.join(format!("{name}-signed.json"));
    let out = vendor(
        srv,
        &[
            "keyring",
            "draft",
            "--rotate",
            "entitlement",
            "--out",
            draft.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let root = root_dir.join("offline/root.key");
    let out = vendor(
        srv,
        &[
            "keyring",
            "sign",
            "--root-key",
            root.to_str().unwrap(),
            "--in",
            draft.to_str().unwrap(),
            "--out",
            signed.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    signed
}

/// How many audit entries of `action` the database holds.
fn audit_count(db: &PgDb, action: &str) -> String {
    db.query(&format!(
        "SELECT count(*) FROM audit WHERE (entry::jsonb)->>'action' = '{action}'"
    ))
}

#[test]
fn a_box_checks_in_during_a_long_keyring_install_which_is_audited_and_answered() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, _b) = two_replicas(&db, tmp.path());
    // The re-signing pauses 4 s (a large fleet), longer than A's request timeout of 2 s.
    let a = restart_a(
        a,
        &db,
        tmp.path(),
        &[("NP_TEST_RESIGN_PAUSE_MS", "4000")],
        Some(2),
    );
    let v1 = image_bytes(12, 100_000);
    let agent = TestAgent::new(
        SERIAL,
        &a.root_public_key,
        &format!(
            "[server]\nurl = \"{}\"\ncheck_interval = \"1h\"\nstall_timeout = \"10s\"\n",
            a.url
        ),
    );
    a.register_agent(&agent);
    let manifest = publish(&a, "1.0.0", 1, &v1);
    a.provision_agent(&agent, &manifest, &v1);
    let out = agent.run(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");

    let signed = draft_and_sign(&a, &a.data_dir, tmp.path(), "a");
    let install = {
        let (url, token, signed) = (a.url.clone(), a.admin_token.clone(), signed.clone());
        std::thread::spawn(move || {
            run(
                Command::new(bin("np-vendor"))
                    .args(["keyring", "install", signed.to_str().unwrap(), "--json"])
                    .env("NP_SERVER", url)
                    .env("NP_TOKEN", token)
                    .env_remove("NP_TOKEN_FILE"),
                T,
            )
        })
    };
    // The install is recorded, with its audit entry, before the fleet is re-signed.
    np_tests::wait_until("the database to record keyring 2", T, || {
        (db.query("SELECT version FROM installed_keyring") == "2").then_some(())
    });
    assert_eq!(audit_count(&db, "keyring_install"), "1");
    assert_eq!(audit_count(&db, "keyring_resign"), "0", "still re-signing");
    // The box checks in meanwhile: its entitlement is re-signed on the spot.
    let out = agent.run(&["check"]);
    assert_eq!(
        out.code, 0,
        "a check-in during the install is served: {out:?}"
    );
    let kr: Envelope =
        serde_json::from_slice(&std::fs::read(agent.state("trust/keyring.json")).unwrap()).unwrap();
    let kr: np_common::keyring::Keyring =
        serde_json::from_slice(&kr.payload_bytes().unwrap()).unwrap();
    assert_eq!(kr.version, 2, "the box holds the new keyring");
    let ent: Envelope =
        serde_json::from_slice(&std::fs::read(agent.state("trust/entitlement.json")).unwrap())
            .unwrap();
    np_common::docs::verify::<np_common::docs::Entitlement>(&ent, &kr)
        .expect("the box's entitlement verifies under the new keyring");
    // The install outlasts the request timeout and is answered all the same.
    let out = install.join().unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let done: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(done["version"], 2, "{done}");
    assert_eq!(done["devices_resigned"], 1, "{done}");
    assert_eq!(audit_count(&db, "keyring_install"), "1");
    assert_eq!(audit_count(&db, "keyring_resign"), "1");
    let order = db.query(
        "SELECT string_agg((entry::jsonb)->>'action', ',' ORDER BY id) FROM audit WHERE (entry::jsonb)->>'action' LIKE 'keyring_%'",
    );
    assert!(order.ends_with("keyring_install,keyring_resign"), "{order}");
    let mut a = a;
    a.process
        .wait_for("re-signed documents under the installed keyring", T);
}

#[test]
fn a_kill_during_an_install_leaves_its_audit_entry_and_the_restart_audits_the_re_signing() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, _b) = two_replicas(&db, tmp.path());
    let a = restart_a(
        a,
        &db,
        tmp.path(),
        &[("NP_TEST_RESIGN_PAUSE_MS", "30000")],
        None,
    );
    let key = np_common::SecretKey::from_seed(&[9; 32]);
    register_box(&a, SERIAL, &key.public_key().to_base64());
    let signed = draft_and_sign(&a, &a.data_dir, tmp.path(), "a");
    let install = {
        let (url, token, signed) = (a.url.clone(), a.admin_token.clone(), signed.clone());
        std::thread::spawn(move || {
            run(
                Command::new(bin("np-vendor"))
                    .args(["keyring", "install", signed.to_str().unwrap()])
                    .env("NP_SERVER", url)
                    .env("NP_TOKEN", token)
                    .env_remove("NP_TOKEN_FILE"),
                T,
            )
        })
    };
    np_tests::wait_until("the database to record keyring 2", T, || {
        (db.query("SELECT version FROM installed_keyring") == "2").then_some(())
    });
    let mut a = a;
    a.process.kill();
    let out = install.join().unwrap();
    assert_ne!(out.code, 0, "{out:?}");
    assert_eq!(audit_count(&db, "keyring_install"), "1");
    assert_eq!(audit_count(&db, "keyring_resign"), "0");
    // The restart re-signs the box and says so in the audit log.
    let a = restart_a(a, &db, tmp.path(), &[], None);
    assert_eq!(audit_count(&db, "keyring_resign"), "1");
    let resign =
        db.query("SELECT entry FROM audit WHERE (entry::jsonb)->>'action' = 'keyring_resign'");
    assert!(resign.contains("\"devices_resigned\":1"), "{resign}");
    let (_, kr) = a.get_json("/api/v1/keyring");
    let kr: Envelope = serde_json::from_value(kr).unwrap();
    let kr: np_common::keyring::Keyring =
        serde_json::from_slice(&kr.payload_bytes().unwrap()).unwrap();
    assert_eq!(kr.version, 2);
    let (status, ent) = a.get_json(&format!("/api/v1/devices/{SERIAL}/entitlement"));
    assert_eq!(status, 200, "{ent}");
    let ent: Envelope = serde_json::from_value(ent).unwrap();
    np_common::docs::verify::<np_common::docs::Entitlement>(&ent, &kr)
        .expect("re-signed under keyring 2");
}

#[test]
fn a_refused_install_changes_nothing_in_the_data_folder() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(&db, tmp.path());
    // Two version-2 drafts, one on each replica (each keeps its own new key).
    let signed_a = draft_and_sign(&a, &a.data_dir, tmp.path(), "a");
    let signed_b = draft_and_sign(&b, &a.data_dir, tmp.path(), "b");
    let before_a = snapshot(&a.data_dir);
    let before_b = snapshot(&b.data_dir);
    // Both at once: one wins, the other is refused.
    let installs: Vec<_> = [(&a, signed_a), (&b, signed_b)]
        .into_iter()
        .map(|(srv, signed)| {
            let (url, token) = (srv.url.clone(), srv.admin_token.clone());
            std::thread::spawn(move || {
                run(
                    Command::new(bin("np-vendor"))
                        .args(["keyring", "install", signed.to_str().unwrap()])
                        .env("NP_SERVER", url)
                        .env("NP_TOKEN", token)
                        .env_remove("NP_TOKEN_FILE"),
                    T,
                )
            })
        })
        .collect();
    let outs: Vec<_> = installs.into_iter().map(|t| t.join().unwrap()).collect();
    let won: Vec<bool> = outs.iter().map(|o| o.code == 0).collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{outs:?}");
    let (loser, before) = if won[0] {
        (&b, before_b)
    } else {
        (&a, before_a)
    };
    let lost = &outs[usize::from(won[0])];
    assert!(lost.stderr.contains("keyring_not_newer"), "{lost:?}");
    assert!(
        snapshot(&loser.data_dir) == before,
        "the refused replica's data folder is unchanged"
    );
    assert_eq!(db.query("SELECT version FROM installed_keyring"), "2");
    assert_eq!(audit_count(&db, "keyring_install"), "1");
}

#[test]
fn uploads_honour_the_blob_folder_and_a_postgres_folder_needs_its_store_url() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, _b) = two_replicas(&db, tmp.path());
    // The shared blob folder is gone (an unmounted share): 503, and it is not made again.
    let blobs = tmp.path().join("blobs");
    std::fs::remove_dir_all(&blobs).unwrap();
    let image = tmp.path().join("image");
    std::fs::write(&image, image_bytes(3, 10_000)).unwrap();
    let (status, body) = a.put_blob(&image);
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("blobs_unavailable")),
        "{body}"
    );
    assert!(
        !blobs.exists(),
        "a configured blob folder is never recreated"
    );
    std::fs::create_dir_all(&blobs).unwrap();
    let (status, body) = a.put_blob(&image);
    assert_eq!(status, 201, "{body}");

    // The folder says its records live in PostgreSQL, without the password.
    let marker = std::fs::read_to_string(a.data_dir.join("store-kind")).unwrap();
    assert!(marker.starts_with("postgres\n"), "{marker}");
    assert!(!marker.contains("np_test:np_test"), "{marker}");
    // A copy served or used without a store URL is refused, naming where to give it.
    let copy = tmp.path().join("data-e");
    copy_data(&a.data_dir, &copy);
    let out = run(
        Command::new(bin("np-server"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&copy)
            .env_remove("NP_STORE_URL"),
        T,
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
    for needed in ["PostgreSQL", "--store", "NP_STORE_URL", "[store] url"] {
        assert!(out.stderr.contains(needed), "{needed}: {}", out.stderr);
    }
    assert!(!copy.join("store").exists(), "no embedded store made");
    for args in [
        &[
            "token", "create", "--role", "admin", "--name", "x", "--data",
        ][..],
        &["token", "list", "--data"][..],
    ] {
        let out = run(
            Command::new(bin("np-server"))
                .args(args)
                .arg(&copy)
                .env_remove("NP_STORE_URL"),
            T,
        );
        assert_ne!(out.code, 0, "{args:?}: {}", out.stdout);
        assert!(out.stderr.contains("NP_STORE_URL"), "{}", out.stderr);
    }
    assert!(!copy.join("tokens.json").exists());
    // With the URL it works.
    let out = run(
        Command::new(bin("np-server"))
            .args(["token", "list", "--data"])
            .arg(&copy)
            .args(["--store", &db.url]),
        T,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("admin"), "{}", out.stdout);
}

#[test]
fn a_new_replica_knows_a_token_was_used_and_no_hint_shows_the_password() {
    let Some(db) = PgDb::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(&db, tmp.path());
    // No token used yet: each says how to make one; A (given --store URL) names a file
    // for the URL, never the password; B names its config, absolute.
    let hint = |srv: &TestServer| {
        srv.process
            .seen
            .iter()
            .find(|l| l.contains("no staff token has been used"))
            .cloned()
            .unwrap_or_else(|| panic!("no hint: {:?}", srv.process.seen))
    };
    let from_a = hint(&a);
    assert!(
        from_a.contains("--store-file FILE") && from_a.contains("np_test:PASSWORD@"),
        "{from_a}"
    );
    let password = "np_test:np_test@";
    for srv in [&a, &b] {
        assert!(
            !srv.process.seen.iter().any(|l| l.contains(password)),
            "{:?}",
            srv.process.seen
        );
    }
    let from_b = hint(&b);
    assert!(
        from_b.contains(&format!("--config {}", tmp.path().join("b.toml").display())),
        "{from_b}"
    );
    // A token used on A is known to the database: a new replica (a copy of B's folder,
    // where no token was ever used) starts without the hint.
    let (status, _) = a.get_json("/api/v1/devices");
    assert_eq!(status, 200);
    let data_c = tmp.path().join("data-c");
    copy_data(&b.data_dir, &data_c);
    let url_file = tmp.path().join("c.store-url");
    np_tests::replicas::write_url_file(&url_file, &db.url);
    let c = TestServer::with_args(
        &[
            "--data".as_ref(),
            data_c.as_os_str(),
            "--store-file".as_ref(),
            url_file.as_os_str(),
        ],
        &a.admin_token,
        &a.root_public_key,
        &data_c,
    );
    assert!(
        !c.process
            .seen
            .iter()
            .any(|l| l.contains("no staff token has been used")),
        "{:?}",
        c.process.seen
    );
    let (status, _) = c.get_json("/api/v1/devices");
    assert_eq!(status, 200);
    // --store and --store-file together are refused, naming both.
    let out = run(
        Command::new(bin("np-server"))
            .args(["token", "list", "--data"])
            .arg(&data_c)
            .args(["--store", &db.url, "--store-file"])
            .arg(&url_file)
            .env_remove("NP_STORE_URL"),
        T,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("not both"), "{}", out.stderr);
}
