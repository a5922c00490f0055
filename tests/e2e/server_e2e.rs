//! np-server end to end: the real binary on 127.0.0.1:0. Acknowledged writes survive
//! SIGKILL; 50 parallel extensions lose nothing; tokens made while serving work at once;
//! SIGTERM stops it cleanly; init refuses an existing folder.

use np_tests::server::TestServer;
use np_tests::{bin, run, wait_until};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn serial(model: &str, n: u32) -> String {
    let digits = format!("{}{n:06}", &model[3..]);
    format!(
        "{model}-{n:06}-{}",
        np_common::serial::luhn_check_digit(&digits)
    )
}

fn register(s: &TestServer, serial: &str) {
    let (code, v) = s.post_json(
        "/api/v1/devices",
        json!({"serial": serial, "purchase_date": "2030-01-15", "customer": "ACME",
               "allow_future": true}),
    );
    assert_eq!(code, 201, "{v}");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut s = TestServer::start();
    let serials: Vec<String> = (0..20).map(|n| serial("NR-2000", n)).collect();
    for (i, sr) in serials.iter().enumerate() {
        register(&s, sr);
        for _ in 0..(i % 3) {
            let (code, v) = s.post_json(
                &format!("/api/v1/devices/{sr}/extensions"),
                json!({"months": 6}),
            );
            assert_eq!(code, 200, "{v}");
        }
    }
    // The last acknowledged write is the one right before the kill.
    let (code, _) = s.post_json(
        &format!("/api/v1/devices/{}/extensions", serials[0]),
        json!({"years": 1}),
    );
    assert_eq!(code, 200);
    s.kill9_and_restart();
    for (i, sr) in serials.iter().enumerate() {
        let (code, d) = s.get_json(&format!("/api/v1/devices/{sr}"));
        assert_eq!(code, 200, "{sr} lost after kill -9: {d}");
        let extra = if i == 0 { 1 } else { 0 };
        let terms = d["terms"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(terms, 1 + i % 3 + extra, "{sr}: {d}");
        assert_eq!(d["sequence"].as_u64(), Some((1 + i % 3 + extra) as u64));
    }
    let (_, audit) = s.get_json(&format!("/api/v1/audit?serial={}", serials[0]));
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(2));
}

#[test]
fn fifty_parallel_extensions_give_fifty_terms() {
    let s = TestServer::start();
    let sr = serial("NC-1000", 1);
    register(&s, &sr);
    let url = format!("{}/api/v1/devices/{sr}/extensions", s.url);
    let client = s.client();
    let token = s.admin_token.clone();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"months": 1}))
                        .send()
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().ok(), Some(200));
        }
    });
    let (_, d) = s.get_json(&format!("/api/v1/devices/{sr}"));
    assert_eq!(d["terms"].as_array().map(Vec::len), Some(51), "{d}");
    assert_eq!(d["sequence"], 51);
    assert_eq!(d["coverage_end"], "2035-03-15");
}

#[test]
fn tokens_made_while_serving_work_at_once() {
    let s = TestServer::start();
    let out = run(
        Command::new(bin("np-server"))
            .args([
                "token", "create", "--role", "staff", "--name", "bob", "--data",
            ])
            .arg(&s.data_dir),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let token = out.stdout.trim().to_owned();
    assert_eq!(out.stdout.lines().count(), 1, "the token alone on stdout");
    let get = |t: &str| {
        s.client()
            .get(format!("{}/api/v1/devices", s.url))
            .bearer_auth(t)
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(get(&token), 200);
    let list = run(
        Command::new(bin("np-server"))
            .args(["token", "list", "--data"])
            .arg(&s.data_dir),
        Duration::from_secs(30),
    );
    assert!(list.stdout.contains("bob") && !list.stdout.contains(&token));
    let out = run(
        Command::new(bin("np-server"))
            .args(["token", "revoke", "--name", "bob", "--data"])
            .arg(&s.data_dir),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(get(&token), 401);
    let dup = run(
        Command::new(bin("np-server"))
            .args([
                "token", "create", "--role", "admin", "--name", "admin", "--data",
            ])
            .arg(&s.data_dir),
        Duration::from_secs(30),
    );
    assert_eq!(dup.code, 1, "a taken name is refused: {}", dup.stderr);
}

#[test]
fn sigterm_stops_cleanly_and_logs_no_token() {
    let mut s = TestServer::start();
    register(&s, &serial("NR-1000", 3));
    let pid = s.process.child.id().to_string();
    let out = run(
        Command::new("kill").args(["-TERM", &pid]),
        Duration::from_secs(10),
    );
    assert_eq!(out.code, 0);
    let status = wait_until("np-server exits", Duration::from_secs(30), || {
        s.process.child.try_wait().ok().flatten()
    });
    assert!(status.success(), "{status:?}");
    s.process.wait_for("stopped", Duration::from_secs(5));
    assert!(!s.process.seen.join("\n").contains(&s.admin_token));
}

#[test]
fn init_refuses_an_existing_folder_and_writes_private_keys() {
    let tmp = tempfile::tempdir().expect("temp");
    let dir = tmp.path().join("d");
    let init = || {
        run(
            Command::new(bin("np-server"))
                .arg("init")
                .arg("--data")
                .arg(&dir),
            Duration::from_secs(30),
        )
    };
    let first = init();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stderr.contains("offline/root.key"),
        "{}",
        first.stderr
    );
    let root = std::fs::read_to_string(dir.join("root.pub")).expect("root.pub");
    assert!(first
        .stdout
        .contains(&format!("root public key: {}", root.trim())));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for k in ["offline/root.key", "keys/online.key", "keys/release.key"] {
            let mode = std::fs::metadata(dir.join(k))
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            assert_eq!(mode, 0o600, "{k}");
        }
    }
    let second = init();
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(second.stderr.contains("not empty"), "{}", second.stderr);
}

#[test]
fn oversized_and_malformed_bodies_over_real_http() {
    let s = TestServer::start();
    let big = "x".repeat(1 << 20);
    let (code, v) = s.post_json(
        "/api/v1/devices",
        json!({"serial": big, "purchase_date": "x", "customer": "x"}),
    );
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    let resp = s
        .client()
        .post(format!("{}/api/v1/devices", s.url))
        .bearer_auth(&s.admin_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 400);
    let (code, _) = s.get_json("/healthz");
    assert_eq!(code, 200);
}

#[test]
fn serve_with_a_config_file_speaks_https() {
    let tmp = tempfile::tempdir().expect("temp");
    let tls = np_tests::repo_root().join("server/tests/data/tls");
    let config = tmp.path().join("server.toml");
    let text = format!(
        "data = {:?}\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n",
        tmp.path().join("data"),
        tls.join("TEST-ONLY-server.pem"),
        tls.join("TEST-ONLY-server.key"),
    );
    std::fs::write(&config, text).expect("write config");
    let mut p = np_tests::Running::spawn(
        Command::new(bin("np-server"))
            .arg("serve")
            .arg("--config")
            .arg(&config),
    );
    let line = p.wait_for("np-server listening on https://", Duration::from_secs(30));
    let port = line
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let ca = std::fs::read(tls.join("TEST-ONLY-ca.pem")).expect("CA");
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("PEM"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let status = wait_until("HTTPS /healthz", Duration::from_secs(30), || {
        client
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .ok()
            .map(|r| r.status().as_u16())
    });
    assert_eq!(status, 200);
    // The first start initialized the folder. Its output is a pipe, not a terminal: the
    // token is not printed but written to a new 0600 file whose path is printed (stdout
    // and stderr arrive through separate pipes, so it may come after the listening line).
    if !p
        .seen
        .iter()
        .any(|l| l.starts_with("admin token written to "))
    {
        p.wait_for("admin token written to ", Duration::from_secs(10));
    }
    assert!(!p.seen.iter().any(|l| l.contains("npt_")), "{:?}", p.seen);
    let token_file = tmp.path().join("data/admin-token");
    let token = std::fs::read_to_string(&token_file).expect("token file");
    assert!(token.starts_with("npt_"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&token_file)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let resp = client
        .get(format!("https://localhost:{port}/api/v1/devices"))
        .bearer_auth(token.trim())
        .send()
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 200);
}

#[test]
fn a_first_serve_on_a_taken_port_creates_nothing_and_later_starts_say_how_to_get_a_token() {
    let tmp = tempfile::tempdir().expect("temp");
    let data = tmp.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = np_tests::run(
        Command::new(bin("np-server"))
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .args(["--listen", &addr]),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("cannot listen on"), "{out:?}");
    assert!(
        !data.exists(),
        "the data folder was created although the port was taken"
    );
    drop(taken);
    // The first start (relative paths, from the temp folder) creates the folder and says
    // once how to make another token, with absolute paths.
    let toml = tmp.path().join("a.toml");
    std::fs::write(&toml, "data = \"data\"\nlisten = \"127.0.0.1:0\"\n").expect("toml");
    let serve = || {
        np_tests::Running::spawn(
            Command::new(bin("np-server"))
                .current_dir(tmp.path())
                .args(["serve", "--config", "a.toml", "--data", "data"]),
        )
    };
    let mut p = serve();
    p.wait_for("np-server listening on ", Duration::from_secs(30));
    let hints = |p: &np_tests::Running| -> Vec<String> {
        p.seen
            .iter()
            .filter(|l| l.contains("np-server token create"))
            .cloned()
            .collect()
    };
    let first = hints(&p);
    assert_eq!(first.len(), 1, "one hint on the first start: {:?}", p.seen);
    let absolute = format!(
        "np-server token create --config {} --data {} --role admin --name NAME",
        toml.display(),
        data.display()
    );
    assert!(first[0].contains(&absolute), "{first:?}");
    p.kill();
    // A later start on a folder where no token was used yet says how to make one.
    let mut p = serve();
    p.wait_for("no staff token has been used", Duration::from_secs(30));
    p.wait_for("np-server listening on ", Duration::from_secs(30));
    assert!(hints(&p)[0].contains(&absolute), "{:?}", p.seen);
    p.kill();
    // The command works as printed, from another folder.
    let out = run(
        Command::new(bin("np-server"))
            .current_dir("/")
            .args(["token", "create", "--config"])
            .arg(&toml)
            .arg("--data")
            .arg(&data)
            .args(["--role", "admin", "--name", "second"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("npt_"), "{out:?}");
}

#[test]
fn an_upload_cut_by_its_client_leaves_no_partial_file() {
    use std::io::Write as _;
    let srv = TestServer::start();
    let tmp_dir = srv.data_dir.join("blobs/tmp");
    let parts = || -> Vec<std::fs::DirEntry> {
        std::fs::read_dir(&tmp_dir)
            .map(|d| d.flatten().collect())
            .unwrap_or_default()
    };
    let addr = srv.url.trim_start_matches("http://").to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        conn,
        "PUT /api/v1/blobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 400000000\r\n\r\n",
        srv.admin_token
    )
    .expect("head sent");
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..4 {
        conn.write_all(&chunk).expect("body sent");
    }
    wait_until("the upload's file in tmp/", Duration::from_secs(30), || {
        parts()
            .iter()
            .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
            .then_some(())
    });
    // The client dies (its socket closes mid-body): the request ends, and its file goes.
    drop(conn);
    wait_until("tmp/ empty again", Duration::from_secs(30), || {
        parts().is_empty().then_some(())
    });
    // The server still takes uploads.
    let image = srv.data_dir.join("../image");
    std::fs::write(&image, b"a whole image").expect("image");
    let (status, body) = srv.put_blob(&image);
    assert_eq!(status, 201, "{body}");
}
