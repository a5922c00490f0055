//! Remote diagnostics end to end within the agent: a `diagnostics` action at check-in leads
//! to one signed, redacted, bounded report posted to the (fake) server; a failed post is
//! sent again from the outbox at the next check-in; a refusal is recorded and dropped; a
//! stale or repeated action is not gathered again.

use crate::checkin::{check_once, Checked};
use crate::checkin_tests::{box_on_2_with, server, Script};
use crate::client::Client;
use crate::diagnostics::{self, gather, Limits};
use crate::install::When;
use crate::testkit;
use base64::Engine as _;
use np_common::api::EventKind;
use np_common::device_docs::{verify_device, Diagnostics, SlotName, MAX_DIAGNOSTICS_BYTES};
use np_common::docs::{Action, ActionKind};
use np_common::{Envelope, Version};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn action(case: &str, issued_at: jiff::Timestamp) -> Action {
    Action {
        serial: testkit::serial(),
        action: ActionKind::Diagnostics,
        version: None,
        issued_at,
        case: Some(case.into()),
    }
}

/// Writes `script` as `dir/health.sh` and returns the `[install]` table running it.
fn health(dir: &Path, script: &str) -> String {
    let p = dir.join("health.sh");
    std::fs::write(&p, script).unwrap();
    format!("[install]\nhealth_command = \"/bin/sh {}\"", p.display())
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Verifies a posted body as this box's diagnostics, and returns it with its payload.
fn verified(agent: &crate::agent::Agent, body: &[u8]) -> (Diagnostics, Vec<u8>) {
    let env = Envelope::parse(body).unwrap();
    let key = crate::receipts::load_device_key(&agent.cfg.device_key)
        .unwrap()
        .public_key();
    let doc = verify_device::<Diagnostics>(&env, &key, &agent.cfg.serial).unwrap();
    (doc, env.payload_bytes().unwrap())
}

fn journal_details(agent: &crate::agent::Agent) -> Vec<String> {
    crate::journal::read(&agent.cfg.state_dir)
        .into_iter()
        .map(|e| e.detail)
        .collect()
}

#[test]
fn a_diagnostics_action_posts_one_signed_report_and_a_repeat_gathers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let script = Arc::new(Mutex::new(Script::default()));
    let srv = server(script.clone());
    let tail = health(
        dir.path(),
        &format!(
            "echo healthy\necho a warning >&2\necho run >> {}\n",
            dir.path().join("runs").display()
        ),
    );
    let mut agent = box_on_2_with(dir.path(), &srv, &tail);
    let trial_runs = runs(dir.path());
    script.lock().unwrap().action = Some(action("C-17", testkit::now()));
    let client = Client::new(&agent.cfg, agent.clock.clone()).unwrap();
    assert_eq!(
        check_once(&mut agent, &client, When::Policy).unwrap(),
        Checked::UpToDate
    );
    let posted = script.lock().unwrap().diagnostics.clone();
    assert_eq!(posted.len(), 1);
    let (doc, payload) = verified(&agent, &posted[0]);
    assert_eq!(doc.case, "C-17");
    assert_eq!(doc.requested_at, testkit::now());
    assert_eq!(doc.serial, testkit::serial());
    assert_eq!(doc.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(doc.slots.active, SlotName::B);
    assert_eq!(doc.slots.a, Some(Version::parse("1.0.0").unwrap()));
    assert_eq!(doc.slots.b, Some(Version::parse("2.0.0").unwrap()));
    assert_eq!(doc.status["version"], "2.0.0");
    assert_eq!(doc.status["serial"], testkit::serial().as_str());
    assert!(doc.state_free_bytes.is_some_and(|n| n > 0));
    let h = doc.health.clone().unwrap();
    assert_eq!(h.exit_code, Some(0));
    assert!(
        h.output.contains("healthy") && h.output.contains("a warning"),
        "{}",
        h.output
    );
    assert!(!doc.truncated);
    // The events of the install, newest last.
    let kinds: Vec<&str> = doc
        .events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        kinds.contains(&"install") && kinds.contains(&"commit"),
        "{kinds:?}"
    );
    // The key is not in what left the box.
    let key_text = std::fs::read_to_string(&agent.cfg.device_key).unwrap();
    let key_text = key_text.trim();
    assert!(!String::from_utf8_lossy(&payload).contains(key_text));

    assert_eq!(agent.state.last_action_at, Some(testkit::now()));
    let saved = crate::state::State::load(&agent.cfg.state_dir).unwrap();
    assert_eq!(saved.last_action_at, Some(testkit::now()));
    assert!(diagnostics::queued(&agent.cfg.state_dir).is_empty());
    assert!(journal_details(&agent)
        .last()
        .is_some_and(|d| d == "diagnostics sent for case C-17"));
    assert_eq!(runs(dir.path()), trial_runs + 1);

    // The same action at the next check-in is not gathered again.
    check_once(&mut agent, &client, When::Policy).unwrap();
    assert_eq!(script.lock().unwrap().diagnostics.len(), 1);
    assert_eq!(runs(dir.path()), trial_runs + 1);
    // Nor is an older one.
    script.lock().unwrap().action = Some(action("C-18", "2026-11-23T11:00:00Z".parse().unwrap()));
    check_once(&mut agent, &client, When::Policy).unwrap();
    assert_eq!(script.lock().unwrap().diagnostics.len(), 1);
    assert_eq!(runs(dir.path()), trial_runs + 1);
}

#[test]
fn a_failed_post_is_sent_again_at_the_next_check_in_and_a_refusal_is_dropped() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let script = Arc::new(Mutex::new(Script::default()));
    let srv = server(script.clone());
    let tail = health(dir.path(), "echo ok\n");
    let mut agent = box_on_2_with(dir.path(), &srv, &tail);
    {
        let mut s = script.lock().unwrap();
        s.action = Some(action("C-20", testkit::now()));
        s.diagnostics_status = 503;
    }
    let client = Client::new(&agent.cfg, agent.clock.clone()).unwrap();
    check_once(&mut agent, &client, When::Policy).unwrap();
    assert_eq!(script.lock().unwrap().diagnostics.len(), 1);
    let queued = diagnostics::queued(&agent.cfg.state_dir);
    assert_eq!(queued.len(), 1);
    let mode = std::fs::metadata(&queued[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        crate::cli::status_json(&agent).unwrap()["diagnostics_unsent"],
        1
    );
    assert!(!journal_details(&agent).iter().any(|d| d.contains("sent")));

    // The server is back: the same signed report goes again, and leaves the outbox.
    script.lock().unwrap().diagnostics_status = 0;
    check_once(&mut agent, &client, When::Policy).unwrap();
    let posted = script.lock().unwrap().diagnostics.clone();
    assert_eq!(posted.len(), 2);
    assert_eq!(posted[0], posted[1]);
    assert_eq!(verified(&agent, &posted[1]).0.case, "C-20");
    assert!(diagnostics::queued(&agent.cfg.state_dir).is_empty());
    assert_eq!(
        crate::cli::status_json(&agent).unwrap()["diagnostics_unsent"],
        0
    );
    assert!(journal_details(&agent)
        .iter()
        .any(|d| d == "diagnostics sent for case C-20"));

    // A refusal (4xx) is recorded and dropped, not sent again.
    {
        let mut s = script.lock().unwrap();
        s.action = Some(action("C-21", "2026-11-23T12:00:01Z".parse().unwrap()));
        s.diagnostics_status = 422;
    }
    check_once(&mut agent, &client, When::Policy).unwrap();
    check_once(&mut agent, &client, When::Policy).unwrap();
    assert_eq!(script.lock().unwrap().diagnostics.len(), 3);
    assert!(diagnostics::queued(&agent.cfg.state_dir).is_empty());
    let refused = journal_details(&agent);
    assert!(
        refused
            .iter()
            .any(|d| d
                == "diagnostics for case C-21 refused by the server (422 scripted): answered 422"),
        "{refused:?}"
    );
}

#[test]
fn the_outbox_keeps_the_newest_few_reports() {
    let dir = tempfile::tempdir().unwrap();
    let key = testkit::device_key(dir.path());
    let agent = testkit::provisioned_box_with(
        dir.path(),
        "2099-01-01",
        &format!("device_key = \"{}\"", key.display()),
        "",
    );
    for i in 0..diagnostics::MAX_QUEUED + 2 {
        let at = testkit::now() + jiff::SignedDuration::from_secs(i as i64);
        let doc = gather(&agent, &format!("C-{i}"), at, &Limits::default());
        diagnostics::queue(&agent, &doc).unwrap();
    }
    let names: Vec<String> = diagnostics::queued(&agent.cfg.state_dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), diagnostics::MAX_QUEUED);
    assert!(names[0].ends_with("-C-2.json"), "{names:?}");
    assert!(names[3].ends_with("-C-5.json"), "{names:?}");
}

#[test]
fn a_huge_health_output_and_many_events_are_cut_to_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let key = testkit::device_key(dir.path());
    let tail = health(dir.path(), "yes 'é ok' | head -c 3000000\n");
    let agent = testkit::provisioned_box_with(
        dir.path(),
        "2099-01-01",
        &format!("device_key = \"{}\"", key.display()),
        &tail,
    );
    for i in 0..crate::journal::MAX_ENTRIES {
        agent.event(
            None,
            EventKind::Failure,
            &format!("{i} {}", "x".repeat(8000)),
        );
    }
    let limits = Limits {
        max_events: 1000,
        ..Limits::default()
    };
    let doc = gather(&agent, "C-30", testkit::now(), &limits);
    let payload = serde_json::to_vec(&doc).unwrap();
    assert!(payload.len() <= MAX_DIAGNOSTICS_BYTES, "{}", payload.len());
    assert!(doc.truncated);
    // The oldest events went first: what is left is the newest, in order.
    assert!(!doc.events.is_empty() && doc.events.len() < crate::journal::MAX_ENTRIES);
    let last = doc.events.last().unwrap()["detail"].as_str().unwrap();
    assert!(last.starts_with(&format!("{} ", crate::journal::MAX_ENTRIES - 1)));
    let h = doc.health.clone().unwrap();
    assert!(h.output.len() <= limits.health_cap && h.output.starts_with("é ok\n"));
    // It is signed and verifies as a report within its bound.
    let k = crate::receipts::load_device_key(&agent.cfg.device_key).unwrap();
    let env = np_common::device_docs::sign_device(&doc, &k);
    verify_device::<Diagnostics>(&env, &k.public_key(), &agent.cfg.serial).unwrap();

    // A tighter bound drops every event, then cuts the health output (at a character).
    let tight = Limits {
        max_bytes: 30_000,
        ..limits
    };
    let doc = gather(&agent, "C-31", testkit::now(), &tight);
    assert!(serde_json::to_vec(&doc).unwrap().len() <= 30_000);
    assert!(doc.truncated && doc.events.is_empty());
    let out = doc.health.unwrap().output;
    assert!(!out.is_empty() && out.len() < 30_000);
}

#[test]
fn a_health_command_that_hangs_is_stopped_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let tail = health(dir.path(), "echo started\nsleep 60\necho never\n");
    let agent = testkit::provisioned_box_with(dir.path(), "2099-01-01", "", &tail);
    let limits = Limits {
        health_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let doc = gather(&agent, "C-40", testkit::now(), &limits);
    assert!(started.elapsed() < Duration::from_secs(10));
    let h = doc.health.unwrap();
    assert_eq!(h.exit_code, None);
    assert!(h.output.starts_with("started\n"), "{}", h.output);
    assert!(
        h.output.contains("did not finish within 0.3s"),
        "{}",
        h.output
    );
    assert!(!h.output.contains("never"));
}

#[test]
fn no_key_token_or_config_secret_is_in_the_signed_payload() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = testkit::device_key(dir.path());
    let key_text = std::fs::read_to_string(&key_path).unwrap();
    let seed = base64::engine::general_purpose::STANDARD
        .decode(key_text.trim())
        .unwrap();
    let seed_url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&seed);
    let seed_hex = hex::encode(&seed);
    let pem_body = "MC4CAQAwBQYDK2VwBCIEIDoLNvoQRZ7rb5xGfeJ1Ui1tUb4f5hXyd6KGWx0v0x0x";
    let script = format!(
        "echo healthy\n\
         echo \"server.url = http://diaguser:s3cretPass@updates.example.com/np\"\n\
         echo 'the password alone: s3cretPass'\n\
         printf -- '-----BEGIN PRIVATE KEY-----\\n{pem_body}\\n-----END PRIVATE KEY-----\\n'\n\
         echo password=hunter22\n\
         echo 'Authorization: Bearer abc.def.ghi'\n"
    );
    let tail = format!(
        "[server]\nurl = \"http://diaguser:s3cretPass@127.0.0.1:9\"\n{}",
        health(dir.path(), &script)
    );
    let agent = testkit::provisioned_box_with(
        dir.path(),
        "2099-01-01",
        &format!("device_key = \"{}\"", key_path.display()),
        &tail,
    );
    agent.event(
        None,
        EventKind::Failure,
        "cannot reach http://diaguser:s3cretPass@127.0.0.1:9/api/v1/device/check-in; token=tok-123456",
    );
    for detail in [
        format!("key file: {}", key_text.trim()),
        format!("seed as url-safe base64: {seed_url}"),
        format!("seed as hex: {seed_hex}"),
    ] {
        agent.event(None, EventKind::Failure, &detail);
    }
    let doc = gather(&agent, "C-50", testkit::now(), &Limits::default());
    let details: Vec<&str> = doc
        .events
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert_eq!(
        details[details.len() - 3..],
        [crate::redact::KEY_REDACTED; 3],
        "{details:?}"
    );
    let k = crate::receipts::load_device_key(&agent.cfg.device_key).unwrap();
    let env = np_common::device_docs::sign_device(&doc, &k);
    let payload = String::from_utf8(env.payload_bytes().unwrap()).unwrap();
    for secret in [
        key_text.trim(),
        &seed_url,
        &seed_hex,
        "s3cretPass",
        "diaguser",
        pem_body,
        "hunter22",
        "abc.def.ghi",
        "tok-123456",
    ] {
        assert!(!payload.contains(secret), "{secret} leaked");
    }
    let out = doc.health.unwrap().output;
    assert!(out.starts_with("healthy\n"), "{out}");
    assert!(
        out.contains("http://[redacted]@updates.example.com/np"),
        "{out}"
    );
    assert!(out.contains("the password alone: [redacted]"), "{out}");
    assert!(payload.contains("cannot reach http://[redacted]@127.0.0.1:9"));

    // Health output that holds the key is replaced whole.
    std::fs::write(
        dir.path().join("health.sh"),
        format!("echo healthy\ncat {}\n", key_path.display()),
    )
    .unwrap();
    let doc = gather(&agent, "C-51", testkit::now(), &Limits::default());
    let h = doc.health.unwrap();
    assert_eq!(h.output, crate::redact::KEY_REDACTED);
    assert_eq!(h.exit_code, Some(0));
}

/// A fake server that keeps one pending diagnostics request, as the real one does: a
/// report for another case gets 404, none pending 409 `no_diagnostics_pending`, and (when
/// `strict`) an answer to an older request 409 `stale_diagnostics`.
#[derive(Default)]
struct Desk {
    action: Option<Action>,
    strict: bool,
    /// How many posts of reports are answered 503 first.
    fail: usize,
    /// Each post: its case, when it was asked for, and the status it got.
    posts: Vec<(String, jiff::Timestamp, u16)>,
    /// The reports filed on the case, in order.
    filed: Vec<(String, jiff::Timestamp)>,
}

fn desk_server(desk: Arc<Mutex<Desk>>) -> crate::testkit::FakeServer {
    use crate::testkit::{Body, FakeServer, Keys};
    use np_common::api::{CheckInRequest, CheckInResponse};
    use np_common::docs::TimeToken;
    FakeServer::start(Arc::new(move |_method: &str, path: &str, body: &[u8]| {
        let k = Keys::load();
        let mut d = desk.lock().unwrap();
        match path {
            "/api/v1/device/diagnostics" => {
                let env = Envelope::parse(body).unwrap();
                let doc: Diagnostics =
                    serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap();
                let pending = d
                    .action
                    .as_ref()
                    .map(|a| (a.case.clone().unwrap(), a.issued_at));
                let (status, code) = if d.fail > 0 {
                    d.fail -= 1;
                    (503, "unavailable")
                } else {
                    match pending {
                        None => (409, "no_diagnostics_pending"),
                        Some((case, _)) if case != doc.case => (404, "no_such_case"),
                        Some((_, at)) if d.strict && at != doc.requested_at => {
                            (409, "stale_diagnostics")
                        }
                        Some(_) => (202, ""),
                    }
                };
                d.posts.push((doc.case.clone(), doc.requested_at, status));
                if status == 202 {
                    d.filed.push((doc.case, doc.requested_at));
                    d.action = None;
                    return Body::Bytes(202, b"{}".to_vec());
                }
                Body::Bytes(
                    status,
                    format!(
                        "{{\"error\":{{\"code\":\"{code}\",\"message\":\"answered {status}\"}}}}"
                    )
                    .into_bytes(),
                )
            }
            "/api/v1/device/check-in" => {
                let req: CheckInRequest = serde_json::from_slice(body).unwrap();
                let ent = testkit::entitlement(4, "2099-01-01", &testkit::serial());
                let time = TimeToken {
                    now: testkit::now(),
                    nonce: req.nonce,
                };
                let resp = CheckInResponse {
                    keyring: k.keyring_env(1),
                    entitlement: k.sign_online(&ent),
                    time: k.sign_online(&time),
                    available: None,
                    offer: None,
                    action: d.action.as_ref().map(|a| k.sign_online(a)),
                    receipts_done: Vec::new(),
                };
                Body::Bytes(200, serde_json::to_vec(&resp).unwrap())
            }
            _ => Body::Bytes(200, b"{}".to_vec()),
        }
    }))
}

/// The first request for C-60 at `testkit::now()`: its report's post fails (503), so it
/// waits in the outbox. Then staff ask again, one second later.
/// Returns the server's record, when the second request was issued, and the journal.
fn asked_twice(
    dir: &Path,
    strict: bool,
    fail_again: usize,
) -> (Arc<Mutex<Desk>>, jiff::Timestamp, String) {
    let desk = Arc::new(Mutex::new(Desk {
        strict,
        fail: 1,
        action: Some(action("C-60", testkit::now())),
        ..Desk::default()
    }));
    let srv = desk_server(desk.clone());
    let tail = health(dir, "echo ok\n");
    let mut agent = box_on_2_with(dir, &srv, &tail);
    let client = Client::new(&agent.cfg, agent.clock.clone()).unwrap();
    check_once(&mut agent, &client, When::Policy).unwrap();
    assert_eq!(diagnostics::queued(&agent.cfg.state_dir).len(), 1);
    assert!(desk.lock().unwrap().filed.is_empty());

    let again = testkit::now() + jiff::SignedDuration::from_secs(1);
    {
        let mut d = desk.lock().unwrap();
        d.action = Some(action("C-60", again));
        d.fail = fail_again;
    }
    check_once(&mut agent, &client, When::Policy).unwrap();
    assert!(diagnostics::queued(&agent.cfg.state_dir).is_empty());
    (desk, again, journal_details(&agent).join("\n"))
}

#[test]
fn a_new_request_drops_the_unsent_report_of_an_older_one_for_the_same_case() {
    // The server files whatever report comes while a request is pending (as before the
    // `stale_diagnostics` check), and the outbox could not be sent before the new action:
    // the old report must not go, or it would answer the new request.
    let dir = tempfile::tempdir().unwrap();
    let (desk, again, journal) = asked_twice(dir.path(), false, 1);
    let d = desk.lock().unwrap();
    assert_eq!(d.filed, vec![("C-60".to_owned(), again)], "{:?}", d.posts);
    assert!(
        journal.contains(
            "the unsent diagnostics for case C-60 asked for at 2026-11-23T12:00:00Z were dropped"
        ),
        "{journal}"
    );
    assert!(!journal.contains("refused"), "{journal}");
}

#[test]
fn a_stale_report_refused_with_409_is_dropped_alone_and_the_fresh_one_is_filed() {
    // The server answers a report for an older request 409 `stale_diagnostics`; the
    // outbox is sent first at the check-in, so the old report meets that refusal.
    let dir = tempfile::tempdir().unwrap();
    let (desk, again, journal) = asked_twice(dir.path(), true, 0);
    let d = desk.lock().unwrap();
    let statuses: Vec<u16> = d.posts.iter().map(|p| p.2).collect();
    assert_eq!(statuses, vec![503, 409, 202], "{:?}", d.posts);
    assert_eq!(d.posts[1].1, testkit::now());
    assert_eq!(d.filed, vec![("C-60".to_owned(), again)]);
    assert!(
        journal.contains("diagnostics for case C-60 refused by the server (409 stale_diagnostics)"),
        "{journal}"
    );
    assert!(
        journal.contains("diagnostics sent for case C-60"),
        "{journal}"
    );
}

#[test]
fn only_older_reports_for_the_same_case_are_dropped_from_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let key = testkit::device_key(dir.path());
    let agent = testkit::provisioned_box_with(
        dir.path(),
        "2099-01-01",
        &format!("device_key = \"{}\"", key.display()),
        "",
    );
    let at = |s: i64| testkit::now() + jiff::SignedDuration::from_secs(s);
    for (case, s) in [("C-70", 0), ("C-71", 0), ("C-70", 5)] {
        let doc = gather(&agent, case, at(s), &Limits::default());
        diagnostics::queue(&agent, &doc).unwrap();
    }
    diagnostics::drop_replaced(&agent, "C-70", at(3));
    let names: Vec<String> = diagnostics::queued(&agent.cfg.state_dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].ends_with("-C-71.json") && names[1].ends_with("-C-70.json"),
        "{names:?}"
    );
    assert!(
        names[1].contains(&format!("{:012}", at(5).as_second())),
        "{names:?}"
    );
}

#[test]
fn a_health_command_that_leaves_a_background_child_does_not_stall_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let tail = health(
        dir.path(),
        &format!(
            "echo before\nsleep 120 &\necho $! > {}\necho after\n",
            pid_file.display()
        ),
    );
    let agent = testkit::provisioned_box_with(dir.path(), "2099-01-01", "", &tail);
    let started = std::time::Instant::now();
    let doc = gather(&agent, "C-41", testkit::now(), &Limits::default());
    // The default timeout is 30 s: the report does not wait for the child.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let h = doc.health.unwrap();
    assert_eq!(h.exit_code, Some(0));
    assert_eq!(h.output, "before\nafter\n");
    // The child was stopped with the command's process group.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = (0..100).any(|_| {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        });
        if alive {
            std::thread::sleep(Duration::from_millis(50));
        }
        !alive
    });
    assert!(gone, "the background child {pid} still runs");
}

#[test]
fn the_review_s_health_commands_that_print_the_key_are_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    // A seed with no repeats, so that a piece found is the piece meant.
    let seed: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let key = dir.path().join("device.key");
    std::fs::write(
        &key,
        base64::engine::general_purpose::STANDARD.encode(&seed),
    )
    .unwrap();
    let k = key.display();
    let have = |tool: &str| {
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut commands = vec![
        format!("cut -c1-20 {k}; echo; cut -c21- {k}"),
        format!("base64 < {k}"),
        format!("base64 -d < {k} | base64 -w 16"),
        format!("base64 -d < {k} | od -An -tx1"),
        format!("base64 -d < {k} | od -tx1"),
        format!("base64 -d < {k} | od -An -tx4"),
        format!(
            "printf '{{\"a\":\"%s\",\"b\":\"%s\"}}' \"$(cut -c1-22 {k})\" \"$(cut -c23- {k})\""
        ),
    ];
    if have("xxd") {
        commands.push(format!("base64 -d < {k} | xxd | head -2"));
        commands.push(format!("base64 -d < {k} | xxd -c 4"));
        commands.push(format!("xxd {k}"));
    }
    if have("hexdump") {
        commands.push(format!("base64 -d < {k} | hexdump"));
        commands.push(format!("base64 -d < {k} | hexdump -C"));
    }
    let tail = health(dir.path(), "echo ok\n");
    let agent = testkit::provisioned_box_with(
        dir.path(),
        "2099-01-01",
        &format!("device_key = \"{k}\""),
        &tail,
    );
    for cmd in commands {
        std::fs::write(
            dir.path().join("health.sh"),
            format!("echo healthy\n{cmd}\n"),
        )
        .unwrap();
        let doc = gather(&agent, "C-52", testkit::now(), &Limits::default());
        let h = doc.health.unwrap();
        assert_eq!(h.output, crate::redact::KEY_REDACTED, "{cmd}");
        assert_eq!(h.exit_code, Some(0), "{cmd}");
    }
    // A command that prints no key keeps its output.
    std::fs::write(dir.path().join("health.sh"), "echo healthy | od -An -tx1\n").unwrap();
    let doc = gather(&agent, "C-53", testkit::now(), &Limits::default());
    assert_eq!(doc.health.unwrap().output, " 68 65 61 6c 74 68 79 0a\n");
}
