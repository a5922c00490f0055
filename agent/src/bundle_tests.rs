//! Hostile bundles (issue 6): each one is refused with its exact rule, the running slot's
//! bytes do not change, and nothing is written outside the state folder.

use crate::archive::ArchiveError;
use crate::bundle::{self, BundleReject};
use crate::error::AgentError;
use crate::install::{Done, When};
use crate::slots::SlotError;
use crate::state::{Phase, Slot};
use crate::testkit::{self, tar_bundle, Keys, Kind, RUNNING_IMAGE};
use np_common::bundle::BundleError;
use np_common::docs::{self, DocError};
use np_common::{ImageError, Refusal};

const NEW_IMAGE: &[u8] = b"firmware 2.0.0: the new image, a little longer than the old";

struct Case {
    _dir: tempfile::TempDir,
    agent: crate::agent::Agent,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let agent = testkit::provisioned_box(dir.path(), "2099-01-01");
    Case { _dir: dir, agent }
}

fn doc(name: &str, env: &np_common::Envelope) -> (String, Kind, Vec<u8>) {
    (name.into(), Kind::File, env.to_json())
}

/// The entries of a good bundle for `release` over `image`.
fn good_entries(r: &np_common::docs::Release, image: &[u8]) -> Vec<(String, Kind, Vec<u8>)> {
    let k = Keys::load();
    vec![
        doc("keyring.json", &k.keyring_env(1)),
        doc("manifest.json", &k.sign_release(r)),
        doc(
            "entitlement.json",
            &k.sign_online(&testkit::entitlement(4, "2099-01-01", &testkit::serial())),
        ),
        ("image".into(), Kind::File, image.to_vec()),
    ]
}

fn build(entries: &[(String, Kind, Vec<u8>)], gzip: bool) -> Vec<u8> {
    let refs: Vec<(&str, Kind, Vec<u8>)> = entries
        .iter()
        .map(|(n, k, d)| {
            let k = match k {
                Kind::File => Kind::File,
                Kind::Symlink => Kind::Symlink,
            };
            (n.as_str(), k, d.clone())
        })
        .collect();
    tar_bundle(&refs, gzip)
}

/// Applies `bytes`, checks that the running slot and the folder are untouched, returns
/// the error.
fn refused(c: &mut Case, bytes: &[u8]) -> AgentError {
    let before = std::fs::read(c.agent.slots.image(Slot::A)).unwrap();
    let err = bundle::apply(&mut c.agent, &mut &bytes[..], When::Now).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert_eq!(std::fs::read(c.agent.slots.image(Slot::A)).unwrap(), before);
    assert_eq!(before, RUNNING_IMAGE);
    assert_eq!(c.agent.state.active, Slot::A);
    assert_eq!(c.agent.state.phase, Phase::Idle);
    assert!(
        c.agent.slots.manifest(Slot::B).unwrap().is_none(),
        "slot b stays invalid"
    );
    let names: Vec<_> = std::fs::read_dir(c._dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("state")]);
    err
}

fn r2() -> np_common::docs::Release {
    testkit::release("2.0.0", 2, NEW_IMAGE)
}

#[test]
fn a_good_bundle_installs_plain_and_gzip() {
    for gzip in [false, true] {
        let mut c = case();
        let bytes = build(&good_entries(&r2(), NEW_IMAGE), gzip);
        let done = bundle::apply(&mut c.agent, &mut &bytes[..], When::Now).unwrap();
        assert_eq!(done, Done::Installed(r2().version));
        assert_eq!(c.agent.state.active, Slot::B);
        assert_eq!(c.agent.state.previous, Some(Slot::A));
        assert_eq!(
            std::fs::read(c.agent.slots.image(Slot::B)).unwrap(),
            NEW_IMAGE
        );
        assert_eq!(c.agent.running().unwrap().version, r2().version);
        assert_eq!(c.agent.trust.entitlement().unwrap().sequence, 4);
    }
}

#[test]
fn unknown_entry() {
    let mut c = case();
    let mut e = good_entries(&r2(), NEW_IMAGE);
    e.insert(2, ("notes.txt".into(), Kind::File, b"hi".to_vec()));
    let err = refused(&mut c, &build(&e, false));
    assert!(
        matches!(err, AgentError::Bundle(BundleReject::Layout(BundleError::Unknown(ref n))) if n == "notes.txt"),
        "{err}"
    );
}

#[test]
fn paths_with_slash_or_dotdot() {
    for name in ["x/image", "../image", ".."] {
        let mut c = case();
        let mut e = good_entries(&r2(), NEW_IMAGE);
        e[3].0 = name.into();
        let err = refused(&mut c, &build(&e, false));
        assert!(
            matches!(
                err,
                AgentError::Bundle(BundleReject::Layout(BundleError::Path(_)))
            ),
            "{name}: {err}"
        );
    }
}

#[test]
fn links() {
    let mut c = case();
    let mut e = good_entries(&r2(), NEW_IMAGE);
    e[3] = ("image".into(), Kind::Symlink, Vec::new());
    let err = refused(&mut c, &build(&e, false));
    assert!(
        matches!(
            err,
            AgentError::Bundle(BundleReject::Layout(BundleError::Link(_)))
        ),
        "{err}"
    );
}

#[test]
fn wrong_order() {
    let mut c = case();
    let mut e = good_entries(&r2(), NEW_IMAGE);
    e.swap(1, 3);
    let err = refused(&mut c, &build(&e, false));
    assert!(
        matches!(
            err,
            AgentError::Bundle(BundleReject::Layout(BundleError::Order { .. }))
        ),
        "{err}"
    );
    let mut c = case();
    let mut e = good_entries(&r2(), NEW_IMAGE);
    e.push((
        "keyring.json".into(),
        Kind::File,
        Keys::load().keyring_env(1).to_json(),
    ));
    let err = refused(&mut c, &build(&e, false));
    assert!(
        matches!(
            err,
            AgentError::Bundle(BundleReject::Layout(BundleError::Order { .. }))
        ),
        "{err}"
    );
}

#[test]
fn image_longer_or_shorter_than_the_manifest() {
    let mut c = case();
    let mut long = NEW_IMAGE.to_vec();
    long.push(b'!');
    let err = refused(&mut c, &build(&good_entries(&r2(), &long), false));
    assert!(
        matches!(err, AgentError::Image(ImageError::TooLong { .. })),
        "{err}"
    );
    let mut c = case();
    let short = &NEW_IMAGE[..NEW_IMAGE.len() - 1];
    let err = refused(&mut c, &build(&good_entries(&r2(), short), false));
    assert!(
        matches!(err, AgentError::Image(ImageError::SizeMismatch { .. })),
        "{err}"
    );
}

#[test]
fn wrong_hash() {
    let mut c = case();
    let mut bad = NEW_IMAGE.to_vec();
    bad[3] ^= 1;
    let err = refused(&mut c, &build(&good_entries(&r2(), &bad), true));
    assert!(
        matches!(
            err,
            AgentError::Slot(SlotError::Image(ImageError::HashMismatch { .. }))
        ),
        "{err}"
    );
    assert!(
        !c.agent.slots.image(Slot::B).exists(),
        "partial bytes are discarded"
    );
}

#[test]
fn bad_signature() {
    let mut c = case();
    let k = Keys::load();
    let mut e = good_entries(&r2(), NEW_IMAGE);
    e[1] = doc("manifest.json", &docs::sign(&r2(), &k.online));
    let err = refused(&mut c, &build(&e, false));
    assert!(
        matches!(
            err,
            AgentError::Trust(crate::trust::TrustError::Doc(DocError::WrongRole { .. }))
        ),
        "{err}"
    );
    let mut c = case();
    let mut env = k.sign_release(&r2());
    env.payload = {
        let mut other = r2();
        other.version = np_common::Version::parse("9.0.0").unwrap();
        k.sign_release(&other).payload
    };
    let mut e = good_entries(&r2(), NEW_IMAGE);
    e[1] = doc("manifest.json", &env);
    let err = refused(&mut c, &build(&e, false));
    assert!(
        matches!(
            err,
            AgentError::Trust(crate::trust::TrustError::Doc(DocError::BadSignature { .. }))
        ),
        "{err}"
    );
}

fn refused_by_rule(r: np_common::docs::Release, image: &[u8]) -> Refusal {
    let mut c = case();
    match refused(&mut c, &build(&good_entries(&r, image), false)) {
        AgentError::Refused(r) => {
            assert_eq!(
                c.agent.state.last_result.as_ref().unwrap().outcome,
                np_common::api::Outcome::Refused
            );
            *r
        }
        e => panic!("not a rule refusal: {e}"),
    }
}

#[test]
fn wrong_model() {
    let mut r = r2();
    r.models = vec![np_common::Model::parse("NR-1000").unwrap()];
    assert!(matches!(
        refused_by_rule(r, NEW_IMAGE),
        Refusal::ModelNotListed { .. }
    ));
}

#[test]
fn older_version() {
    let r = testkit::release("0.9.0", 2, NEW_IMAGE);
    assert!(matches!(
        refused_by_rule(r, NEW_IMAGE),
        Refusal::NotNewer { .. }
    ));
}

#[test]
fn security_downgrade() {
    let r = testkit::release("2.0.0", 1, NEW_IMAGE);
    assert!(matches!(
        refused_by_rule(r, NEW_IMAGE),
        Refusal::SecurityDowngrade {
            running: 2,
            offered: 1,
            ..
        }
    ));
}

#[test]
fn expired_warranty_names_its_end_date() {
    let dir = tempfile::tempdir().unwrap();
    let agent = testkit::provisioned_box(dir.path(), "2026-03-01");
    let mut c = Case { _dir: dir, agent };
    let k = Keys::load();
    let mut e = good_entries(&r2(), NEW_IMAGE);
    e[2] = doc(
        "entitlement.json",
        &k.sign_online(&testkit::entitlement(4, "2026-03-01", &testkit::serial())),
    );
    let err = refused(&mut c, &build(&e, false));
    assert!(
        matches!(&err, AgentError::Refused(r) if matches!(**r, Refusal::WarrantyExpired { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("ended on 2026-03-01"), "{err}");
}

#[test]
fn entitlement_for_another_serial() {
    let mut c = case();
    let k = Keys::load();
    let other = np_common::Serial::parse("NR-2000-123457-2").unwrap();
    let mut e = good_entries(&r2(), NEW_IMAGE);
    e[2] = doc(
        "entitlement.json",
        &k.sign_online(&testkit::entitlement(9, "2099-01-01", &other)),
    );
    let err = refused(&mut c, &build(&e, false));
    assert!(
        matches!(
            err,
            AgentError::Trust(crate::trust::TrustError::Doc(DocError::OtherSerial { .. }))
        ),
        "{err}"
    );
}

#[test]
fn truncated_archive() {
    for gzip in [false, true] {
        let mut c = case();
        let full = build(&good_entries(&r2(), NEW_IMAGE), gzip);
        let cut = if gzip {
            full.len() / 2
        } else {
            full.len() - 1024 - 512 + 30
        };
        let err = refused(&mut c, &full[..cut]);
        assert!(
            matches!(err, AgentError::Bundle(BundleReject::Truncated(_))),
            "gzip {gzip}: {err}"
        );
        let mut c = case();
        let err = refused(&mut c, &full[..700]);
        assert!(
            matches!(
                err,
                AgentError::Bundle(
                    BundleReject::Truncated(_) | BundleReject::Layout(BundleError::Missing(_))
                )
            ),
            "gzip {gzip}: {err}"
        );
    }
}

#[test]
fn an_archive_without_its_end_blocks_is_truncated() {
    let mut c = case();
    let full = build(&good_entries(&r2(), NEW_IMAGE), false);
    // Exactly the entries, without tar's two zero blocks.
    let err = refused(&mut c, &full[..full.len() - 1024]);
    assert!(
        matches!(
            err,
            AgentError::Bundle(BundleReject::Archive(ArchiveError::NoEndBlocks))
        ),
        "{err}"
    );
    assert_eq!(err.rule(), "truncated");
    let mut c = case();
    let err = refused(&mut c, &full[..full.len() - 512]);
    assert!(
        matches!(
            err,
            AgentError::Bundle(BundleReject::Archive(ArchiveError::NoEndBlocks))
        ),
        "one end block is not enough: {err}"
    );
}

#[test]
fn anything_but_zeros_after_the_end_blocks_is_refused_and_leaves_the_agent_idle() {
    for tail in [&b"garbage"[..], &[0xffu8; 512][..]] {
        let mut c = case();
        let mut bytes = build(&good_entries(&r2(), NEW_IMAGE), false);
        bytes.extend_from_slice(tail);
        // `refused` also checks the phase is idle again and slot b invalid: the image
        // was written before the garbage was found.
        let err = refused(&mut c, &bytes);
        assert!(
            matches!(
                err,
                AgentError::Bundle(BundleReject::Archive(ArchiveError::TrailingData))
            ),
            "{err}"
        );
        assert_eq!(err.rule(), "trailing_data");
        assert_eq!(
            c.agent.state.last_result.as_ref().map(|r| r.outcome),
            Some(np_common::api::Outcome::Refused)
        );
    }
    // Zero padding (as GNU tar writes to fill a record) is fine.
    let mut c = case();
    let mut bytes = build(&good_entries(&r2(), NEW_IMAGE), false);
    bytes.resize(bytes.len() + 10240, 0);
    bundle::apply(&mut c.agent, &mut &bytes[..], When::Now).unwrap();
}

#[test]
fn a_damaged_header_after_the_image_leaves_the_agent_idle() {
    // Before: a tar error after the image left the phase at `downloading`.
    let mut c = case();
    let mut bytes = build(&good_entries(&r2(), NEW_IMAGE), false);
    let end = bytes.len() - 1024;
    bytes[end..end + 512].copy_from_slice(&[b'7'; 512]);
    let err = refused(&mut c, &bytes);
    assert!(
        matches!(
            err,
            AgentError::Bundle(BundleReject::Archive(ArchiveError::BadHeader { .. }))
        ),
        "{err}"
    );
}

#[test]
fn a_huge_pax_header_is_refused_before_it_is_read() {
    let mut c = case();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(300 << 20);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    // A few bytes of the "header" follow; the 300 MiB never do, and none are awaited.
    bytes.extend_from_slice(&[b'x'; 4096]);
    let err = refused(&mut c, &bytes);
    assert!(
        matches!(
            err,
            AgentError::Bundle(BundleReject::Archive(ArchiveError::ExtensionTooLarge {
                kind: "PAX",
                size
            })) if size == 300 << 20
        ),
        "{err}"
    );
    assert_eq!(err.rule(), "header_too_large");
}

#[test]
fn a_folder_is_named_as_a_folder_not_a_damaged_bundle() {
    let mut c = case();
    let dir = tempfile::tempdir().unwrap();
    let err = bundle::apply_file(&mut c.agent, dir.path(), When::Now, &mut |_| {}).unwrap_err();
    match &err {
        AgentError::Bundle(BundleReject::NotAFile { what, .. }) => assert_eq!(*what, "a directory"),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert_eq!(c.agent.state.phase, Phase::Idle);
}

#[test]
fn a_refused_bundle_leaves_the_floor_and_the_entitlement_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let agent = testkit::provisioned_box(dir.path(), "2026-03-01");
    let mut c = Case { _dir: dir, agent };
    let floor = c.agent.trust.floor_parts().clone();
    let k = Keys::load();
    // A valid entitlement a few hours ahead (within the skew allowed), but lapsed: the
    // bundle is refused by the warranty rule.
    let mut lapsed = testkit::entitlement(4, "2026-03-01", &testkit::serial());
    lapsed.issued_at = "2026-11-23T20:00:00Z".parse().unwrap();
    let mut e = good_entries(&r2(), NEW_IMAGE);
    e[2] = doc("entitlement.json", &k.sign_online(&lapsed));
    let err = refused(&mut c, &build(&e, false));
    assert!(
        matches!(&err, AgentError::Refused(r) if matches!(**r, Refusal::WarrantyExpired { .. })),
        "{err}"
    );
    assert_eq!(
        c.agent.trust.floor_parts(),
        &floor,
        "the floor did not move"
    );
    assert_eq!(c.agent.trust.entitlement().unwrap().sequence, 3);
    c.agent.reload().unwrap();
    assert_eq!(c.agent.trust.floor_parts(), &floor, "nor on disk");
    assert_eq!(c.agent.trust.entitlement().unwrap().sequence, 3);
}

#[test]
fn an_accepted_bundle_stores_its_entitlement_and_raises_the_floor() {
    let mut c = case();
    let k = Keys::load();
    let mut fresh = testkit::entitlement(4, "2099-01-01", &testkit::serial());
    fresh.issued_at = "2026-11-23T20:00:00Z".parse().unwrap();
    let mut e = good_entries(&r2(), NEW_IMAGE);
    e[2] = doc("entitlement.json", &k.sign_online(&fresh));
    bundle::apply(&mut c.agent, &mut &build(&e, false)[..], When::Now).unwrap();
    c.agent.reload().unwrap();
    assert_eq!(c.agent.trust.entitlement().unwrap().sequence, 4);
    assert!(c.agent.trust.floor() >= fresh.issued_at);
}

#[test]
fn a_gzip_zero_bomb_is_refused_after_a_mebibyte_of_padding() {
    use std::io::Write as _;
    let mut c = case();
    let mut tar = build(&good_entries(&r2(), NEW_IMAGE), false);
    tar.resize(tar.len() + (16 << 20), 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let started = std::time::Instant::now();
    let err = refused(&mut c, &bomb);
    assert!(
        matches!(
            err,
            AgentError::Bundle(BundleReject::Archive(ArchiveError::TrailingData))
        ),
        "{err}"
    );
    assert!(!err.is_truncation(), "known bad: not left to wait for more");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_damaged_gzip_stream_is_damaged_not_truncated() {
    let mut c = case();
    let mut gz = build(&good_entries(&r2(), NEW_IMAGE), true);
    let mid = gz.len() / 2;
    for b in &mut gz[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let err = refused(&mut c, &gz);
    assert!(!err.is_truncation(), "{err}");
}
