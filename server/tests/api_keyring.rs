//! Key rotation and keyring renewal through the API: drafts, offline root signing,
//! installs, the refusals of a bad keyring, and what changes after an install (check-ins
//! carry the new keyring, entitlements and manifests are signed by the new keys).
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_error, check_in_body, Api, NR2000};
use np_common::docs::{self, Entitlement, Release, TimeToken};
use np_common::keyring::Keyring;
use np_common::{Envelope, SecretKey};
use serde_json::{json, Value};

fn device_key() -> SecretKey {
    SecretKey::from_seed(&[42; 32])
}

fn root(api: &Api) -> SecretKey {
    let text = std::fs::read_to_string(api.state.config.data_dir.join("offline/root.key")).unwrap();
    SecretKey::from_base64(text.trim()).unwrap()
}

async fn draft(api: &Api, body: Value) -> Keyring {
    let (s, v) = api.call("POST", "/api/v1/keyring/drafts", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    serde_json::from_value(v["payload"].clone()).unwrap()
}

async fn install(api: &Api, env: &Envelope) -> (u16, Value) {
    api.call(
        "POST",
        "/api/v1/keyring",
        Some(serde_json::to_value(env).unwrap()),
    )
    .await
}

async fn setup() -> Api {
    let api = Api::new();
    api.register_box(NR2000, "2026-06-01", &device_key()).await;
    let admin = api.admin.clone();
    let (_, blob) = api
        .raw("PUT", "/api/v1/blobs", Some(&admin), b"image 5.3.0")
        .await;
    let (s, v) = api
        .call(
            "POST",
            "/api/v1/releases",
            Some(
                json!({"version": "5.3.0", "security_version": 1, "models": ["NR-2000"],
                "min_from_version": "0.0.0", "released_at": "2026-10-01T00:00:00Z",
                "image": {"sha256": blob["sha256"]}, "notes": ""}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    api
}

async fn check_in(api: &Api) -> Value {
    let (s, v) = api
        .device(
            &device_key(),
            NR2000,
            "POST",
            "/api/v1/device/check-in",
            &check_in_body("5.2.0"),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

fn env(v: &Value) -> Envelope {
    serde_json::from_value(v.clone()).unwrap()
}

fn signer(e: &Envelope) -> String {
    serde_json::to_value(e).unwrap()["signatures"][0]["keyid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn rotating_keys_resigns_everything_and_check_ins_carry_the_new_keyring() {
    let api = setup().await;
    let before = check_in(&api).await;
    let old_seq = docs::verify::<Entitlement>(&env(&before["entitlement"]), &api.keyring())
        .unwrap()
        .sequence;

    // 1. The release key.
    let next = draft(&api, json!({"rotate": ["release"]})).await;
    assert_eq!(next.version, 2);
    // Nothing changes until the install.
    assert_eq!(api.keyring().version, 1);
    let (s, v) = install(&api, &next.sign(&[&root(&api)])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["releases_resigned"], 1);
    assert_eq!(v["devices_resigned"], 1);
    let kr = api.keyring();
    assert_eq!(kr, next);
    let (_, releases) = api.call("GET", "/api/v1/releases", None).await;
    let manifest = env(&releases["releases"][0]["manifest"]);
    docs::verify::<Release>(&manifest, &kr).unwrap();
    let new_release = kr
        .keys_with_role(docs::Role::Release)
        .next()
        .unwrap()
        .key_id();
    assert_eq!(signer(&manifest), new_release.to_string());

    // 2. The online keys.
    let next = draft(&api, json!({"rotate": ["entitlement", "time"]})).await;
    let (s, v) = install(&api, &next.sign(&[&root(&api)])).await;
    assert_eq!(s, 200, "{v}");
    let after = check_in(&api).await;
    let kr = api.keyring();
    assert_eq!(env(&after["keyring"]), api.state.keys().keyring_envelope);
    let ent: Entitlement = docs::verify(&env(&after["entitlement"]), &kr).unwrap();
    assert!(ent.sequence > old_seq + 1, "{} vs {old_seq}", ent.sequence);
    let online = kr
        .keys_with_role(docs::Role::Entitlement)
        .next()
        .unwrap()
        .key_id();
    assert_eq!(signer(&env(&after["entitlement"])), online.to_string());
    docs::verify::<TimeToken>(&env(&after["time"]), &kr).unwrap();
    docs::verify::<Release>(&env(&after["available"]["manifest"]), &kr).unwrap();
    // The old online key no longer verifies anything the server hands out.
    assert!(docs::verify::<Entitlement>(&env(&before["entitlement"]), &kr).is_err());

    // 3. A renewal: same keys, a later expiry.
    let next = draft(&api, json!({"expires": "2029-01-01"})).await;
    assert_eq!(next.keys, kr.keys);
    assert_eq!(next.expires, "2029-01-01T00:00:00Z".parse().unwrap());
    assert_eq!(install(&api, &next.sign(&[&root(&api)])).await.0, 200);
    assert_eq!(
        env(&check_in(&api).await["keyring"]),
        api.state.keys().keyring_envelope
    );

    // Keys on disk are private; retired keys are kept aside, not used.
    let keys = api.state.config.data_dir.join("keys");
    use std::os::unix::fs::PermissionsExt as _;
    for dir in [keys.clone(), keys.join("retired")] {
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            if p.is_file() {
                assert_eq!(
                    std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                    0o600,
                    "{}",
                    p.display()
                );
            }
        }
    }
    assert_eq!(std::fs::read_dir(keys.join("retired")).unwrap().count(), 2);
    let kr_file = api.state.config.data_dir.join("keyring.json");
    assert_eq!(
        std::fs::metadata(&kr_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The installs are audited.
    let (_, audit) = api.call("GET", "/api/v1/audit?limit=1000", None).await;
    let installs = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "keyring_install")
        .count();
    assert_eq!(installs, 3);
    // A restarted server loads the installed keys.
    let reloaded = np_server::datadir::load_keys(&api.state.config.data_dir).unwrap();
    assert_eq!(reloaded.keyring, api.keyring());
}

#[tokio::test]
async fn a_bad_keyring_is_refused_and_changes_nothing() {
    let api = setup().await;
    let root = root(&api);
    let next = draft(&api, json!({"rotate": ["release"]})).await;

    // Signed by a key that is not the root.
    let stranger = SecretKey::from_seed(&[9; 32]);
    assert_error(
        &install(&api, &next.sign(&[&stranger])).await,
        422,
        "bad_root_signature",
    );

    // A key the server does not hold.
    let mut foreign = next.clone();
    let k = SecretKey::from_seed(&[8; 32]).public_key();
    let entry = foreign
        .keys
        .iter_mut()
        .find(|e| e.roles.contains(&docs::Role::Release))
        .unwrap();
    entry.keyid = k.key_id();
    entry.public_key = k;
    assert_error(
        &install(&api, &foreign.sign(&[&root])).await,
        422,
        "unknown_key",
    );

    // Not newer than the installed one.
    let mut same = next.clone();
    same.version = 1;
    assert_error(
        &install(&api, &same.sign(&[&root])).await,
        409,
        "keyring_not_newer",
    );

    // Expired.
    let mut expired = next.clone();
    expired.expires = "2026-11-01T00:00:00Z".parse().unwrap();
    assert_error(
        &install(&api, &expired.sign(&[&root])).await,
        422,
        "keyring_expired",
    );

    // A draft's expiry in the past, and an unknown role, are refused up front.
    let (s, v) = api
        .call(
            "POST",
            "/api/v1/keyring/drafts",
            Some(json!({"expires": "2020-01-01"})),
        )
        .await;
    assert_error(&(s, v), 422, "bad_date");
    let (s, _) = api
        .call(
            "POST",
            "/api/v1/keyring/drafts",
            Some(json!({"rotate": ["root"]})),
        )
        .await;
    assert_eq!(s, 400);

    // Only admins.
    let staff = api.token(np_server::tokens::TokenRole::Staff, "sam");
    let (s, _) = api
        .raw("POST", "/api/v1/keyring/drafts", Some(&staff), b"{}")
        .await;
    assert_eq!(s, 403);

    // Nothing changed: version 1, the check-in still verifies under it.
    assert_eq!(api.keyring().version, 1);
    let v = check_in(&api).await;
    docs::verify::<Entitlement>(&env(&v["entitlement"]), &api.keyring()).unwrap();
    // And the good one still installs.
    assert_eq!(install(&api, &next.sign(&[&root])).await.0, 200);
}
