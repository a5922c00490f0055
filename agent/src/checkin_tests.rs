//! What a check-in does with an answer whose news it cannot use: a newest release whose
//! manifest does not verify must not stop a staff action, and a newest release a rule keeps
//! away is news for the daemon, not an attempt (nothing is recorded as the box's last
//! result); `np-agent check` records and reports the refusal.

use crate::bundle;
use crate::checkin::{check_once, Checked};
use crate::client::Client;
use crate::error::AgentError;
use crate::install::{Done, When};
use crate::testkit::{self, tar_bundle, Body, FakeServer, Keys, Kind};
use np_common::api::{Available, CheckInRequest, CheckInResponse};
use np_common::docs::{Action, ActionKind, Release, TimeToken};
use std::sync::{Arc, Mutex};

const IMAGE_2: &[u8] = b"firmware 2.0.0";

/// What the fake server answers at the next check-in, and what it was sent.
#[derive(Default)]
pub(crate) struct Script {
    pub available: Option<Release>,
    pub action: Option<Action>,
    /// The status `POST /api/v1/device/diagnostics` answers (0: 202).
    pub diagnostics_status: u16,
    /// The bodies posted to `/api/v1/device/diagnostics`, in order.
    pub diagnostics: Vec<Vec<u8>>,
}

pub(crate) fn server(script: Arc<Mutex<Script>>) -> FakeServer {
    FakeServer::start(Arc::new(move |_method: &str, path: &str, body: &[u8]| {
        let k = Keys::load();
        match path {
            "/api/v1/device/diagnostics" => {
                let mut s = script.lock().unwrap();
                s.diagnostics.push(body.to_vec());
                match s.diagnostics_status {
                    0 => Body::Bytes(202, b"{}".to_vec()),
                    st => Body::Bytes(
                        st,
                        format!(
                            "{{\"error\":{{\"code\":\"scripted\",\"message\":\"answered {st}\"}}}}"
                        )
                        .into_bytes(),
                    ),
                }
            }
            "/api/v1/device/check-in" => {
                let req: CheckInRequest = serde_json::from_slice(body).unwrap();
                let ent = testkit::entitlement(4, "2099-01-01", &testkit::serial());
                let time = TimeToken {
                    now: testkit::now(),
                    nonce: req.nonce,
                };
                let s = script.lock().unwrap();
                let resp = CheckInResponse {
                    keyring: k.keyring_env(1),
                    entitlement: k.sign_online(&ent),
                    time: k.sign_online(&time),
                    available: s.available.as_ref().map(|r| Available {
                        manifest: k.sign_release(r),
                        refusal: None,
                    }),
                    offer: None,
                    action: s.action.as_ref().map(|a| k.sign_online(a)),
                    receipts_done: Vec::new(),
                };
                Body::Bytes(200, serde_json::to_vec(&resp).unwrap())
            }
            _ => Body::Bytes(200, b"{}".to_vec()),
        }
    }))
}

/// A box running 2.0.0 (1.0.0 in the other slot) that checks in with the fake server.
fn box_on_2(dir: &std::path::Path, srv: &FakeServer) -> crate::agent::Agent {
    box_on_2_with(dir, srv, "")
}

/// As [`box_on_2`], with more TOML after `[server]` (e.g. an `[install]` table).
pub(crate) fn box_on_2_with(
    dir: &std::path::Path,
    srv: &FakeServer,
    tail: &str,
) -> crate::agent::Agent {
    let k = Keys::load();
    let key = testkit::device_key(dir);
    let mut agent = testkit::provisioned_box_with(
        dir,
        "2099-01-01",
        &format!("device_key = \"{}\"", key.display()),
        &format!("[server]\nurl = \"{}\"\n{tail}", srv.url),
    );
    let r2 = testkit::release("2.0.0", 2, IMAGE_2);
    let b = tar_bundle(
        &[
            ("manifest.json", Kind::File, k.sign_release(&r2).to_json()),
            ("image", Kind::File, IMAGE_2.to_vec()),
        ],
        false,
    );
    assert_eq!(
        bundle::apply(&mut agent, &mut &b[..], When::Now).unwrap(),
        Done::Installed(r2.version)
    );
    agent
}

#[test]
fn a_newest_release_that_does_not_verify_does_not_stop_a_staff_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let script = Arc::new(Mutex::new(Script::default()));
    let srv = server(script.clone());
    let mut agent = box_on_2(dir.path(), &srv);
    let mut ahead = testkit::release("3.0.0", 2, IMAGE_2);
    ahead.released_at = "2199-01-01T00:00:00Z".parse().unwrap();
    {
        let mut s = script.lock().unwrap();
        s.available = Some(ahead);
        s.action = Some(Action {
            serial: testkit::serial(),
            action: ActionKind::Rollback,
            version: None,
            issued_at: testkit::now(),
            case: None,
        });
    }
    let client = Client::new(&agent.cfg, agent.clock.clone()).unwrap();
    assert_eq!(
        check_once(&mut agent, &client, When::Policy).unwrap(),
        Checked::RolledBack
    );
    assert_eq!(agent.running().unwrap().version.to_string(), "1.0.0");
    assert_eq!(agent.state.update_available, None);
}

#[test]
fn a_newest_release_a_rule_keeps_away_is_held_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let script = Arc::new(Mutex::new(Script::default()));
    let srv = server(script.clone());
    let mut agent = box_on_2(dir.path(), &srv);
    let before = agent.state.last_result.clone();
    let mut far = testkit::release("7.0.0", 2, IMAGE_2);
    far.min_from_version = "7.0.0".parse().unwrap();
    script.lock().unwrap().available = Some(far);
    let client = Client::new(&agent.cfg, agent.clock.clone()).unwrap();
    // The daemon: held back, by the rule that holds it.
    match check_once(&mut agent, &client, When::Policy).unwrap() {
        Checked::NotOffered {
            version,
            held: Some(h),
        } => {
            assert_eq!(version.to_string(), "7.0.0");
            assert_eq!(h.rule, "from_version_too_old", "{h:?}");
        }
        other => panic!("expected held back, got {other:?}"),
    }
    assert_eq!(agent.state.last_result, before, "not an attempt");
    // `np-agent check` (asked for now): the rule, as an error (exit 1), recorded.
    let e = check_once(&mut agent, &client, When::Now).unwrap_err();
    assert!(matches!(e, AgentError::Refused(_)), "{e}");
    assert_eq!(e.exit_code(), 1);
    let last = agent.state.last_result.clone().unwrap();
    assert_eq!(last.outcome, np_common::api::Outcome::Refused);
    assert_eq!(last.version.map(|v| v.to_string()), Some("7.0.0".into()));
}
