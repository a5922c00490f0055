//! The end-to-end harness: finds the real `np-server`, `np-vendor` and `np-agent`
//! binaries, runs them in temp folders on 127.0.0.1, and waits on what they print
//! (events), never on fixed sleeps. Every child is killed, by its own pid, when its
//! guard drops.

pub mod agent;
pub mod browser;
pub mod pg;
pub mod proxy;
pub mod replicas;
pub mod server;
pub mod tcpcut;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The folder holding the workspace's built binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap_or_default();
    let deps = exe.parent().map(PathBuf::from).unwrap_or_default();
    deps.parent().map(PathBuf::from).unwrap_or(deps)
}

/// Path of a workspace binary; panics with what to do if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace` (it builds every binary) first",
        p.display()
    );
    p
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A test-only key file of `firmware-samples/keys/`, e.g. `TEST-ONLY-root.key`.
pub fn test_key(name: &str) -> PathBuf {
    repo_root().join("firmware-samples/keys").join(name)
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to its end (bounded by `timeout`), capturing its output.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || read_all(out_pipe));
    let err_t = std::thread::spawn(move || read_all(err_pipe));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

fn read_all<R: std::io::Read>(r: Option<R>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        let _ = r.read_to_string(&mut s);
    }
    s
}

/// A running child process, killed (by its own pid) when dropped. Its output lines
/// (stdout and stderr) arrive on a channel so that a test can wait for an event.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    taken: Vec<bool>,
}

impl Running {
    /// Starts `cmd` with piped output.
    pub fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                for l in BufReader::new(err).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            });
        }
        Running {
            child,
            lines: rx,
            seen: Vec::new(),
            taken: Vec::new(),
        }
    }

    /// Waits until a line containing `needle` is printed; returns that line.
    ///
    /// Lines already received count too, as long as no earlier `wait_for` returned them:
    /// stdout and stderr arrive on two pipes, so the order between them means nothing.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.try_wait_for(needle, timeout).unwrap_or_else(|| {
            panic!(
                "no line containing {needle:?} within {timeout:?}; output so far:\n{}",
                self.seen.join("\n")
            )
        })
    }

    /// As [`Running::wait_for`], answering `None` when no such line came within
    /// `timeout` (for a caller that pokes the process between tries).
    pub fn try_wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(i) =
            (0..self.seen.len()).find(|&i| !self.taken[i] && self.seen[i].contains(needle))
        {
            self.taken[i] = true;
            return Some(self.seen[i].clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push(l.clone());
                    self.taken.push(hit);
                    if hit {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The four signing headers of a device request from box `serial`, signed now with a new
/// nonce (the server refuses a replayed one): `(name, value)` pairs.
pub fn device_headers(
    key: &np_common::SecretKey,
    serial: &str,
    method: &str,
    target: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    use sha2::{Digest as _, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{}-{}-{:?}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
    );
    let nonce = hex::encode(&Sha256::digest(seed)[..16]);
    let sig = np_common::api::RequestSignature::sign(
        key,
        method,
        target,
        jiff::Timestamp::now(),
        &nonce,
        body,
    );
    sig.headers(serial)
        .iter()
        .map(|(n, v)| (*n, (*v).to_owned()))
        .collect()
}
