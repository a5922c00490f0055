//! Starting a real `np-server` for a test: `init` in a temp folder, then `serve` on
//! 127.0.0.1:0; waits for the "listening" line and for /healthz to answer 200.

use crate::{bin, run, wait_until, Running};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long a server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running np-server with its own data folder, killed when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The first admin token.
    pub admin_token: String,
    /// The root public key (base64).
    pub root_public_key: String,
    /// The data folder.
    pub data_dir: PathBuf,
    /// The `serve` process.
    pub process: Running,
    _tmp: tempfile::TempDir,
}

/// The value after `prefix` on the line of `text` that starts with it.
fn line_value(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

/// Starts `np-server serve --data DIR --listen 127.0.0.1:0` and waits until it answers
/// /healthz; returns the process and its URL.
pub fn serve(data_dir: &Path) -> (Running, String) {
    serve_with(&["--data".as_ref(), data_dir.as_os_str()])
}

/// Starts `np-server serve --listen 127.0.0.1:0 ARGS` and waits until it answers
/// /healthz; returns the process and its URL.
pub fn serve_with(args: &[&std::ffi::OsStr]) -> (Running, String) {
    serve_with_env(args, &[])
}

/// As [`serve_with`], with these environment variables set for the server.
pub fn serve_with_env(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> (Running, String) {
    let mut process = Running::spawn(
        Command::new(bin("np-server"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied()),
    );
    let line = process.wait_for("np-server listening on ", START_TIMEOUT);
    let url = line
        .split("np-server listening on ")
        .nth(1)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let client = reqwest::blocking::Client::new();
    wait_until("np-server /healthz", START_TIMEOUT, || {
        client
            .get(format!("{url}/healthz"))
            .send()
            .ok()
            .filter(|r| r.status().as_u16() == 200)
    });
    (process, url)
}

impl TestServer {
    /// Initializes a data folder in a new temp folder and serves it.
    pub fn start() -> TestServer {
        let tmp = tempfile::tempdir().expect("temp folder");
        let data_dir = tmp.path().join("data");
        let out = run(
            Command::new(bin("np-server"))
                .arg("init")
                .arg("--data")
                .arg(&data_dir),
            START_TIMEOUT,
        );
        assert_eq!(out.code, 0, "np-server init failed: {}", out.stderr);
        let admin_token = line_value(&out.stdout, "admin token: ");
        let root_public_key = line_value(&out.stdout, "root public key: ");
        let (process, url) = serve(&data_dir);
        TestServer {
            url,
            admin_token,
            root_public_key,
            data_dir,
            process,
            _tmp: tmp,
        }
    }

    /// A server started with `serve ARGS` on a data folder made elsewhere (replicas on
    /// one database), with that folder's admin token and root key.
    pub fn with_args(
        args: &[&std::ffi::OsStr],
        admin_token: &str,
        root_public_key: &str,
        data_dir: &Path,
    ) -> TestServer {
        let (process, url) = serve_with(args);
        TestServer {
            url,
            admin_token: admin_token.to_owned(),
            root_public_key: root_public_key.to_owned(),
            data_dir: data_dir.to_path_buf(),
            process,
            _tmp: tempfile::tempdir().expect("temp folder"),
        }
    }

    /// As [`TestServer::with_args`], with these environment variables set for the server.
    pub fn with_args_env(
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
        admin_token: &str,
        root_public_key: &str,
        data_dir: &Path,
    ) -> TestServer {
        let (process, url) = serve_with_env(args, env);
        TestServer {
            url,
            admin_token: admin_token.to_owned(),
            root_public_key: root_public_key.to_owned(),
            data_dir: data_dir.to_path_buf(),
            process,
            _tmp: tempfile::tempdir().expect("temp folder"),
        }
    }

    /// Kills the server with SIGKILL (no chance to flush) and starts it again on the same
    /// data folder; `url` changes to the new port.
    pub fn kill9_and_restart(&mut self) {
        self.process.kill();
        let (process, url) = serve(&self.data_dir);
        self.process = process;
        self.url = url;
    }

    /// An HTTP client with a generous timeout.
    pub fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client")
    }

    fn answer(resp: reqwest::Result<reqwest::blocking::Response>) -> (u16, serde_json::Value) {
        let resp = resp.expect("the request reaches the server");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, v)
    }

    /// POSTs JSON with the admin token; returns the status and the JSON answer.
    pub fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        Self::answer(
            self.client()
                .post(format!("{}{path}", self.url))
                .bearer_auth(&self.admin_token)
                .json(&body)
                .send(),
        )
    }

    /// GETs with the admin token; returns the status and the JSON answer.
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        Self::answer(
            self.client()
                .get(format!("{}{path}", self.url))
                .bearer_auth(&self.admin_token)
                .send(),
        )
    }

    /// Uploads `image` and publishes the release `release` (the `POST /api/v1/releases`
    /// body, whose `image` is set here: `{name, sha256}`); answers its signed manifest.
    pub fn publish(&self, image: &[u8], mut release: serde_json::Value) -> np_common::Envelope {
        let dir = tempfile::tempdir().expect("temp folder");
        let p = dir.path().join("image");
        std::fs::write(&p, image).expect("image written");
        let (status, blob) = self.put_blob(&p);
        assert!(status == 201 || status == 200, "{blob}");
        let name = format!(
            "n-reporter-{}.img",
            release["version"].as_str().unwrap_or("x")
        );
        release["image"] = serde_json::json!({"name": name, "sha256": blob["sha256"]});
        let (status, rel) = self.post_json("/api/v1/releases", release);
        assert_eq!(status, 201, "{rel}");
        serde_json::from_value(rel["manifest"].clone()).expect("a signed manifest")
    }

    /// Gives `agent` a device key (`np-agent keygen`) and registers its box here with it,
    /// covered from today.
    pub fn register_agent(&self, agent: &crate::agent::TestAgent) {
        let key_path = agent.dir.path().join("device.key");
        let out = agent.run(&["keygen", "--out", &key_path.display().to_string()]);
        assert_eq!(out.code, 0, "{out:?}");
        let today = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .to_string();
        let (status, d) = self.post_json(
            "/api/v1/devices",
            serde_json::json!({"serial": agent.serial, "purchase_date": today,
                "customer": "ACME", "device_key": out.stdout.trim()}),
        );
        assert_eq!(status, 201, "{d}");
    }

    /// Provisions `agent` (the factory step) with `manifest` and `image`, and this
    /// server's keyring and the box's entitlement.
    pub fn provision_agent(
        &self,
        agent: &crate::agent::TestAgent,
        manifest: &np_common::Envelope,
        image: &[u8],
    ) {
        let (_, keyring) = self.get_json("/api/v1/keyring");
        let (status, ent) = self.get_json(&format!("/api/v1/devices/{}/entitlement", agent.serial));
        assert_eq!(status, 200, "{ent}");
        agent.provision(
            &serde_json::from_value(keyring).expect("a keyring"),
            manifest,
            image,
            Some(&serde_json::from_value(ent).expect("an entitlement")),
        );
    }

    /// Streams a file to `PUT /api/v1/blobs` with the admin token.
    pub fn put_blob(&self, path_to_file: &Path) -> (u16, serde_json::Value) {
        let file = std::fs::File::open(path_to_file)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path_to_file.display()));
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Self::answer(
            self.client()
                .put(format!("{}/api/v1/blobs", self.url))
                .bearer_auth(&self.admin_token)
                .header("content-type", "application/octet-stream")
                .body(reqwest::blocking::Body::sized(file, len))
                .send(),
        )
    }
}
