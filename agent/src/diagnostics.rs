//! Remote diagnostics for a support case (docs/formats.md, "Diagnostics"): on a verified,
//! new `diagnostics` action the box gathers a report (its status, the last events of its
//! journal, both slots' versions, the booted slot, the free space of the state folder's
//! file system, the health command's output), redacts it ([`crate::redact`]), bounds it to
//! [`MAX_DIAGNOSTICS_BYTES`], signs it with its device key and posts it to
//! `POST /api/v1/device/diagnostics`.
//!
//! The signed report first goes to a bounded outbox, `state_dir/diagnostics/` (at most
//! [`MAX_QUEUED`] files, the oldest dropped), and leaves it when the server took it (2xx) or
//! refused it (4xx, recorded as an event); a network failure or a 5xx keeps it for the next
//! check-in. The action counts as acted on once the report is gathered, so one request is
//! never gathered twice. Log lines name the case and the size, never the report's content.

use crate::agent::Agent;
use crate::client::{Client, ClientError};
use crate::journal::cut_at_char;
use crate::redact::Secrets;
use crate::state::Slot;
use jiff::Timestamp;
use np_common::device_docs::{
    is_case_id, sign_device, Diagnostics, DiagnosticsHealth, DiagnosticsSlots, SlotName,
    MAX_DIAGNOSTICS_BYTES,
};
use np_common::docs::Action;
use np_common::Envelope;
use np_fsutil as fsutil;
use serde_json::{json, Value};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most signed reports waiting in the outbox.
pub const MAX_QUEUED: usize = 4;
/// How long the output of a health command that exited is still read, for a child it
/// left running in the background.
const EXIT_GRACE: Duration = Duration::from_millis(500);
/// The largest outbox file read back (a 256 KiB payload in base64, and its signature).
const MAX_FILE: u64 = 512 * 1024;

/// How much a report gathers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The health command is stopped after this long.
    pub health_timeout: Duration,
    /// The most of the health command's output kept (cut at a character boundary).
    pub health_cap: usize,
    /// The most events of the journal in a report (the newest).
    pub max_events: usize,
    /// The most bytes of the report's JSON payload.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            health_timeout: Duration::from_secs(30),
            health_cap: 64 * 1024,
            max_events: 50,
            max_bytes: MAX_DIAGNOSTICS_BYTES,
        }
    }
}

fn slot_name(s: Slot) -> SlotName {
    match s {
        Slot::A => SlotName::A,
        Slot::B => SlotName::B,
    }
}

/// Free bytes for an unprivileged user in the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    st.f_bavail.checked_mul(st.f_frsize)
}

/// Gathers the report for `case`, asked for at `requested_at`: redacted and bounded.
pub fn gather(agent: &Agent, case: &str, requested_at: Timestamp, limits: &Limits) -> Diagnostics {
    let secrets = Secrets::of(&agent.cfg);
    let mut status = crate::cli::status_json(agent)
        .unwrap_or_else(|e| json!({ "error": format!("the status cannot be read: {e}") }));
    secrets.redact_value(&mut status);
    let journal = crate::journal::read(&agent.cfg.state_dir);
    let skip = journal.len().saturating_sub(limits.max_events);
    let events = journal[skip..]
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            if e.detail.len() >= crate::journal::MAX_DETAIL - 4 {
                // Cut when it was recorded: a secret may have lost its end.
                v["detail"] = Value::String(secrets.redact_cut(&e.detail));
            }
            secrets.redact_value(&mut v);
            v
        })
        .collect();
    let version = |s: Slot| agent.slots.release(s).ok().flatten().map(|r| r.version);
    let health = agent
        .cfg
        .install
        .health_command
        .as_deref()
        .map(|cmd| run_health(cmd, limits, &secrets));
    let mut doc = Diagnostics {
        serial: agent.cfg.serial.clone(),
        case: case.to_owned(),
        requested_at,
        at: crate::state::whole_second(agent.trust.now()),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        status,
        events,
        slots: DiagnosticsSlots {
            active: slot_name(agent.state.active),
            booted: crate::boot::booted_slot(&agent.cfg.boot.cmdline)
                .ok()
                .flatten()
                .map(slot_name),
            a: version(Slot::A),
            b: version(Slot::B),
        },
        state_free_bytes: free_bytes(&agent.cfg.state_dir),
        health: health.as_ref().map(|(h, _)| h.clone()),
        truncated: health.is_some_and(|(_, cut)| cut),
    };
    bound(&mut doc, limits.max_bytes);
    if serde_json::to_vec(&doc).map_or(true, |b| secrets.leaks(&b)) {
        // Never reached by the rules above; a last guard, should one of them miss.
        tracing::warn!(
            "a secret survived the redaction of the diagnostics; leaving out the free text"
        );
        doc.events.clear();
        doc.health = doc.health.map(|h| DiagnosticsHealth {
            exit_code: h.exit_code,
            output: crate::redact::REDACTED.into(),
        });
        doc.status = json!({ "error": "left out: it held a secret" });
        doc.truncated = true;
    }
    doc
}

fn payload_len(doc: &Diagnostics) -> usize {
    serde_json::to_vec(doc).map_or(usize::MAX, |v| v.len())
}

/// Keeps the report's JSON within `max` bytes: drops the oldest events, then cuts the
/// health output, then the status; sets `truncated` when it cut anything. Never fails.
pub fn bound(doc: &mut Diagnostics, max: usize) {
    for _ in 0..4 {
        let len = payload_len(doc);
        if len <= max {
            return;
        }
        doc.truncated = true;
        let mut excess = len - max;
        if !doc.events.is_empty() {
            let mut drop = 0;
            while drop < doc.events.len() && excess > 0 {
                let size = serde_json::to_vec(&doc.events[drop]).map_or(0, |v| v.len()) + 1;
                excess = excess.saturating_sub(size);
                drop += 1;
            }
            doc.events.drain(..drop);
            continue;
        }
        if let Some(h) = doc.health.as_mut().filter(|h| !h.output.is_empty()) {
            // Every byte of text is at least a byte of JSON: cutting `excess` bytes is enough.
            let keep = h.output.len().saturating_sub(excess);
            h.output = cut_at_char(&h.output, keep).to_owned();
            continue;
        }
        doc.status = json!({ "error": "the status was too large for the report" });
    }
}

/// Runs the health command as the trial does (`/bin/sh -c`), its standard error merged into
/// its output, stopped after the timeout; the output redacted and cut to the cap. Also
/// says whether the output was cut.
fn run_health(command: &str, limits: &Limits, secrets: &Secrets) -> (DiagnosticsHealth, bool) {
    // A secret that straddles the cap is read whole, redacted, and only then cut.
    let slack = 16 * 1024;
    let run = run_capped(command, limits.health_timeout, limits.health_cap + slack);
    let text = String::from_utf8_lossy(&run.output);
    let redacted = if run.cut {
        secrets.redact_cut(&text)
    } else {
        secrets.redact(&text)
    };
    let mut output = cut_at_char(&redacted, limits.health_cap).to_owned();
    let cut = run.cut || output.len() < redacted.len();
    if let Some(note) = run.note {
        output.push_str(&format!("\n[{note}]"));
    }
    (
        DiagnosticsHealth {
            exit_code: run.exit_code,
            output,
        },
        cut,
    )
}

/// What a command printed, and how it ended.
struct Captured {
    exit_code: Option<i32>,
    output: Vec<u8>,
    cut: bool,
    /// Why it has no exit code (not started, timed out).
    note: Option<String>,
}

fn run_capped(command: &str, timeout: Duration, keep: usize) -> Captured {
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(format!("exec 2>&1; {command} \"$@\""))
        .arg("sh")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            return Captured {
                exit_code: None,
                output: Vec::new(),
                cut: false,
                note: Some(format!("the health command could not be started: {e}")),
            }
        }
    };
    drop(c);
    let pid = rustix::process::Pid::from_raw(child.id() as i32);
    let (out_tx, out_rx) = mpsc::channel();
    if let Some(mut out) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut cut = false;
            let mut chunk = [0u8; 8192];
            loop {
                match out.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = keep.saturating_sub(buf.len());
                        cut |= n > room;
                        buf.extend_from_slice(&chunk[..n.min(room)]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = out_tx.send((buf, cut));
        });
    }
    let (wait_tx, wait_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = wait_tx.send(child.wait());
    });
    let deadline = std::time::Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let mut note = None;
    let status = match wait_rx.recv_timeout(timeout) {
        Ok(s) => s.ok(),
        Err(_) => {
            note = Some(format!(
                "the health command did not finish within {}s; it was stopped",
                timeout.as_secs_f32()
            ));
            None
        }
    };
    // The output ends when every process of the command's group closed it. Once the
    // command itself ended, a background child it left holding the output is not waited
    // for: what it printed in a short grace is kept, then its group is stopped.
    let grace = if note.is_none() {
        left().min(EXIT_GRACE)
    } else {
        left()
    };
    let mut got = out_rx.recv_timeout(grace).ok();
    // The group is stopped only while it surely exists: its leader not reaped (timed out)
    // or a member still holding the output open (a group id is not reused while it does).
    if note.is_some() || got.is_none() {
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
    if got.is_none() {
        got = out_rx.recv_timeout(Duration::from_secs(2)).ok();
    }
    let _ = wait_rx.recv_timeout(Duration::from_secs(2));
    let (output, cut) = got.unwrap_or_default();
    Captured {
        exit_code: status.and_then(|s| s.code()),
        output,
        cut,
        note,
    }
}

/// The outbox of signed reports waiting to be sent.
pub fn outbox_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("diagnostics")
}

/// The outbox's reports, oldest first (the file name starts with when they were asked for).
pub fn queued(state_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(outbox_dir(state_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("diag-") && n.ends_with(".json"))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Signs `doc` with the device key and puts it in the outbox (dropping the oldest beyond
/// [`MAX_QUEUED`]).
pub fn queue(agent: &Agent, doc: &Diagnostics) -> Result<PathBuf, String> {
    let key = crate::receipts::load_device_key(&agent.cfg.device_key)?;
    let env = sign_device(doc, &key);
    let dir = outbox_dir(&agent.cfg.state_dir);
    fsutil::ensure_dir(&dir, fsutil::PRIVATE_DIR, None, None)
        .map_err(|e| format!("cannot prepare {}: {e}", dir.display()))?;
    let at = doc.requested_at;
    let name = format!(
        "diag-{:012}-{:09}-{}.json",
        at.as_second().max(0),
        at.subsec_nanosecond().max(0),
        doc.case
    );
    let path = dir.join(name);
    match fsutil::write_new(&path, &env.to_json(), fsutil::PRIVATE) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot write {}: {e}", path.display())),
    }
    let all = queued(&agent.cfg.state_dir);
    for old in &all[..all.len().saturating_sub(MAX_QUEUED)] {
        tracing::warn!("the diagnostics outbox is full; dropping {}", old.display());
        let _ = fsutil::remove_durable(old);
    }
    Ok(path)
}

/// The case a queued report is for and when it was asked for, as its payload says.
fn request_of(env: &Envelope) -> Option<(String, Timestamp)> {
    let v = env
        .payload_bytes()
        .ok()
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())?;
    let case = v["case"].as_str().filter(|c| is_case_id(c))?.to_owned();
    let at = v["requested_at"].as_str()?.parse::<Timestamp>().ok()?;
    Some((case, at))
}

/// Drops the outbox's reports for `case` asked for before `issued_at`: a newer request
/// for the case replaces them, and the server takes only the answer to its newest one.
/// Reports for other cases, and the ones that cannot be read, are left to
/// [`send_queued`].
pub fn drop_replaced(agent: &Agent, case: &str, issued_at: Timestamp) {
    for path in queued(&agent.cfg.state_dir) {
        let Some((c, at)) = read_queued(&path).ok().as_ref().and_then(request_of) else {
            continue;
        };
        if c == case && at < issued_at {
            let _ = fsutil::remove_durable(&path);
            agent.note(
                "diagnostics",
                &format!(
                    "the unsent diagnostics for case {case} asked for at {at} were dropped: \
                     a newer request ({issued_at}) replaces them"
                ),
            );
        }
    }
}

/// The case a queued report is for (only for messages).
fn case_of(env: &Envelope) -> String {
    env.payload_bytes()
        .ok()
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|v| {
            v["case"]
                .as_str()
                .filter(|c| is_case_id(c))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into())
}

/// Sends the outbox's reports, oldest first, until one cannot be sent now.
pub fn send_queued(agent: &Agent, client: &Client) {
    for path in queued(&agent.cfg.state_dir) {
        let env = match read_queued(&path) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!("dropping {}: {e}", path.display());
                let _ = fsutil::remove_durable(&path);
                continue;
            }
        };
        let case = case_of(&env);
        match client.diagnostics(&env) {
            Ok(()) => {
                let _ = fsutil::remove_durable(&path);
                agent.note("diagnostics", &format!("diagnostics sent for case {case}"));
            }
            Err(ClientError::Rejected {
                status,
                code,
                message,
            }) if (400..500).contains(&status) && status != 408 && status != 429 => {
                // Only this report: a refusal (409 `stale_diagnostics` for an answer to
                // an older request, say) says nothing of the others, nor of a fresh one.
                let _ = fsutil::remove_durable(&path);
                let detail = format!(
                    "diagnostics for case {case} refused by the server ({status} {code}): {message}"
                );
                tracing::warn!("{detail}");
                agent.note("diagnostics", &detail);
            }
            Err(e) => {
                tracing::warn!(
                    "cannot send the diagnostics for case {case} now ({e}); the next check-in does"
                );
                return;
            }
        }
    }
}

fn read_queued(path: &Path) -> Result<Envelope, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() || meta.len() > MAX_FILE {
        return Err(format!("not a regular file of at most {MAX_FILE} bytes"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    Envelope::parse(&bytes).map_err(|e| e.to_string())
}

/// A verified, new `diagnostics` action: gathers, signs and queues the report, then sends
/// the outbox. Never fails the check-in: what goes wrong is logged and recorded.
pub fn act(agent: &Agent, client: &Client, action: &Action) {
    let case = match action.case.as_deref().filter(|c| is_case_id(c)) {
        Some(c) => c.to_owned(),
        None => {
            agent.note(
                "diagnostics",
                "a diagnostics action without a valid case was ignored",
            );
            return;
        }
    };
    drop_replaced(agent, &case, action.issued_at);
    let doc = gather(agent, &case, action.issued_at, &Limits::default());
    let size = payload_len(&doc);
    match queue(agent, &doc) {
        Ok(_) => {
            let cut = if doc.truncated { ", cut to fit" } else { "" };
            agent.note(
                "diagnostics",
                &format!("diagnostics gathered for case {case} ({size} bytes{cut})"),
            );
            send_queued(agent, client);
        }
        Err(e) => agent.note(
            "diagnostics",
            &format!("diagnostics for case {case} not sent: {e}"),
        ),
    }
}
