//! A box through a key rotation (agent level, signed fixtures): after a keyring drops the
//! release key that signed the running firmware, and the online key that signed its
//! entitlement, `status`, `rollback`, check-in and the install of a release signed by
//! the new release key all work, and a manifest signed by the rotated-out key is refused.

use crate::bundle;
use crate::checkin::{check_once, Checked};
use crate::client::{Client, ClientError, MAX_ANSWER};
use crate::error::AgentError;
use crate::install::{Done, When};
use crate::state::Slot;
use crate::testkit::{self, tar_bundle, Body, FakeServer, Keys, Kind};
use crate::trust::TrustError;
use np_common::api::{CheckInRequest, CheckInResponse, Offer};
use np_common::docs::{self, DocError, TimeToken};
use std::sync::{Arc, Mutex};

const IMAGE_2: &[u8] = b"firmware 2.0.0 signed by the release key that will be rotated out";
const IMAGE_3: &[u8] = b"firmware 3.0.0 signed by the new release key";

fn bundle_for(
    r: &np_common::docs::Release,
    signer: &np_common::SecretKey,
    image: &[u8],
) -> Vec<u8> {
    tar_bundle(
        &[
            ("manifest.json", Kind::File, docs::sign(r, signer).to_json()),
            ("image", Kind::File, image.to_vec()),
        ],
        false,
    )
}

/// What the fake server offers at the next check-in.
#[derive(Default)]
struct Script {
    offer: Option<np_common::docs::Release>,
}

fn server(script: Arc<Mutex<Script>>) -> FakeServer {
    FakeServer::start(Arc::new(move |_method: &str, path: &str, body: &[u8]| {
        let k = Keys::load();
        match path {
            "/api/v1/device/check-in" => {
                let req: CheckInRequest = serde_json::from_slice(body).unwrap();
                let ent = testkit::entitlement(1, "2099-01-01", &testkit::serial());
                let time = TimeToken {
                    now: testkit::now(),
                    nonce: req.nonce,
                };
                let offer = script.lock().unwrap().offer.clone().map(|r| Offer {
                    manifest: docs::sign(&r, &k.release2),
                    url: "/blob".into(),
                });
                let resp = CheckInResponse {
                    keyring: k.keyring_with(2, &k.online2, &k.release2, "2099-01-01T00:00:00Z"),
                    entitlement: docs::sign(&ent, &k.online2),
                    time: docs::sign(&time, &k.online2),
                    available: None,
                    offer,
                    action: None,
                    receipts_done: Vec::new(),
                };
                Body::Bytes(200, serde_json::to_vec(&resp).unwrap())
            }
            "/blob" => Body::Bytes(200, IMAGE_3.to_vec()),
            "/api/v1/device/events" => Body::Bytes(200, b"{}".to_vec()),
            _ => Body::Bytes(404, b"{}".to_vec()),
        }
    }))
}

#[test]
fn a_box_keeps_working_after_the_keys_that_signed_its_firmware_are_rotated_out() {
    let dir = tempfile::tempdir().unwrap();
    let k = Keys::load();
    let script = Arc::new(Mutex::new(Script::default()));
    let srv = server(script.clone());
    let key = testkit::device_key(dir.path());
    let mut agent = testkit::provisioned_box_with(
        dir.path(),
        "2099-01-01",
        &format!("device_key = \"{}\"", key.display()),
        &format!("[server]\nurl = \"{}\"", srv.url),
    );
    // 2.0.0, signed by the release key about to be rotated out, installed offline.
    let r2 = testkit::release("2.0.0", 2, IMAGE_2);
    let b = bundle_for(&r2, &k.release, IMAGE_2);
    assert_eq!(
        bundle::apply(&mut agent, &mut &b[..], When::Now).unwrap(),
        Done::Installed(r2.version.clone())
    );
    // A check-in brings keyring 2: new online and release keys, the old ones gone.
    let client = Client::new(&agent.cfg, agent.clock.clone()).unwrap();
    assert_eq!(
        check_once(&mut agent, &client, When::Now).unwrap(),
        Checked::UpToDate
    );
    assert_eq!(agent.trust.keyring().unwrap().version, 2);
    assert_eq!(
        agent.trust.entitlement().unwrap().sequence,
        1,
        "a new entitlement with a lower sequence is taken: the old one's key is gone"
    );
    // status still reads the running firmware and the one before it.
    let st = crate::cli::status_json(&agent).unwrap();
    assert_eq!(st["version"], "2.0.0");
    assert_eq!(st["previous_version"], "1.0.0");
    // Roll back to 1.0.0, whose manifest the rotated-out key signed.
    agent.rollback("test").unwrap();
    assert_eq!(agent.state.active, Slot::A);
    assert_eq!(agent.running().unwrap().version.to_string(), "1.0.0");
    assert_eq!(crate::cli::status_json(&agent).unwrap()["version"], "1.0.0");
    // A check-in offering 3.0.0 signed by the new release key installs it.
    script.lock().unwrap().offer = Some(testkit::release("3.0.0", 2, IMAGE_3));
    assert_eq!(
        check_once(&mut agent, &client, When::Now).unwrap(),
        Checked::Updated(Done::Installed("3.0.0".parse().unwrap()))
    );
    assert_eq!(
        std::fs::read(agent.slots.image(agent.state.active)).unwrap(),
        IMAGE_3
    );
    // A manifest signed by the rotated-out release key is refused.
    let r4 = testkit::release("4.0.0", 2, IMAGE_2);
    let b = bundle_for(&r4, &k.release, IMAGE_2);
    let err = bundle::apply(&mut agent, &mut &b[..], When::Now).unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::Trust(TrustError::Doc(DocError::UnknownSigner { .. }))
        ),
        "{err}"
    );
    assert_eq!(agent.running().unwrap().version.to_string(), "3.0.0");
}

#[test]
fn a_huge_check_in_answer_is_refused_at_its_cap() {
    for with_length in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let srv = FakeServer::start(Arc::new(move |_: &str, _: &str, _: &[u8]| Body::Endless {
            len: 300 << 20,
            with_length,
        }));
        let key = testkit::device_key(dir.path());
        let mut agent = testkit::provisioned_box_with(
            dir.path(),
            "2099-01-01",
            &format!("device_key = \"{}\"", key.display()),
            &format!("[server]\nurl = \"{}\"", srv.url),
        );
        let client = Client::new(&agent.cfg, agent.clock.clone()).unwrap();
        let err = check_once(&mut agent, &client, When::Now).unwrap_err();
        match &err {
            AgentError::Client(ClientError::TooLarge { cap, .. }) => assert_eq!(*cap, MAX_ANSWER),
            e => panic!("with_length {with_length}: {e}"),
        }
        assert!(
            err.to_string().contains("larger than 1048576 bytes"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 3);
    }
}
