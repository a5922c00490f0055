//! What the server tells a box at check-in (docs/api.md), as pure logic over the releases it has:
//! `available`, the newest release for the box's model and channel with the rule that
//! stops it (even when nothing is due), and `offer`, the newest release that is due.
//!
//! A release is due when np-common's update rule (`check_update`) holds, it is not
//! yanked or paused, the box has not rolled back from it, and the box falls inside the
//! rollout (`crate::domain::rollout`). A pending staff `upgrade` action to a version overrides the
//! channel, the pause, the rolled-back mark and the rollout for that version, never the
//! update rule nor a yank.

use np_common::api::RefusalInfo;
use np_common::docs::{Entitlement, Release};
use np_common::{check_update, Envelope, Model, Refusal, Serial, Timestamp, UpdateInputs, Version};

/// A release as the server keeps it: the manifest, its signed envelope and its rollout state.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseEntry {
    pub release: Release,
    pub manifest: Envelope,
    /// 0..=100.
    pub rollout_percent: u8,
    pub paused: bool,
    pub yanked: bool,
}

/// What the server knows about the box that checks in.
#[derive(Debug, Clone, Copy)]
pub struct BoxView<'a> {
    pub serial: &'a Serial,
    pub model: &'a Model,
    pub channel: &'a str,
    pub running_version: &'a Version,
    pub running_security_version: u64,
    pub entitlement: Option<&'a Entitlement>,
    /// Versions the box rolled back from: not offered again automatically.
    pub rolled_back_from: &'a [Version],
    /// The target of a pending staff `upgrade` action.
    pub forced_upgrade: Option<&'a Version>,
    pub now: Timestamp,
}

/// Why a release is not offered to a box.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hold {
    #[error(transparent)]
    Rule(Box<Refusal>),
    #[error("release {0} was withdrawn (yanked)")]
    Yanked(Version),
    #[error("the rollout of release {0} is paused")]
    Paused(Version),
    #[error("this box rolled back from release {0}; it is not installed again automatically")]
    RolledBack(Version),
    #[error("release {version} is rolling out to {percent}% of boxes and this box is not among them yet")]
    OutsideRollout { version: Version, percent: u8 },
}

impl From<Refusal> for Hold {
    fn from(r: Refusal) -> Hold {
        Hold::Rule(Box::new(r))
    }
}

impl Hold {
    /// A stable snake_case name of the rule.
    pub fn rule(&self) -> &'static str {
        match self {
            Hold::Rule(r) => r.rule(),
            Hold::Yanked(_) => "yanked",
            Hold::Paused(_) => "paused",
            Hold::RolledBack(_) => "rolled_back",
            Hold::OutsideRollout { .. } => "outside_rollout",
        }
    }
}

impl From<&Hold> for RefusalInfo {
    fn from(h: &Hold) -> RefusalInfo {
        RefusalInfo {
            rule: h.rule().to_owned(),
            message: h.to_string(),
        }
    }
}

/// The update rule and the yank: may this box install this release at all (as for a
/// bundle, a staff action or a blob download)?
pub fn may_install(b: &BoxView<'_>, r: &ReleaseEntry) -> Result<(), Hold> {
    check_update(&UpdateInputs {
        serial: b.serial,
        model: b.model,
        release: &r.release,
        entitlement: b.entitlement,
        now: b.now,
        running_version: b.running_version,
        running_security_version: b.running_security_version,
    })?;
    if r.yanked {
        return Err(Hold::Yanked(r.release.version.clone()));
    }
    Ok(())
}

/// [`may_install`] for a box whose running version the server does not know (it never
/// checked in, as an offline box): the rules about the running version (security floor,
/// newer, `min_from_version`) are left to the agent, which enforces them again.
pub fn may_install_for(b: &BoxView<'_>, r: &ReleaseEntry, running_known: bool) -> Result<(), Hold> {
    match may_install(b, r) {
        Err(Hold::Rule(x))
            if !running_known
                && matches!(
                    *x,
                    Refusal::SecurityDowngrade { .. }
                        | Refusal::NotNewer { .. }
                        | Refusal::FromVersionTooOld { .. }
                ) =>
        {
            if r.yanked {
                Err(Hold::Yanked(r.release.version.clone()))
            } else {
                Ok(())
            }
        }
        other => other,
    }
}

/// Is this release due for the box now?
pub fn judge(b: &BoxView<'_>, r: &ReleaseEntry) -> Result<(), Hold> {
    may_install(b, r)?;
    let v = &r.release.version;
    if b.forced_upgrade == Some(v) {
        return Ok(());
    }
    if r.paused {
        return Err(Hold::Paused(v.clone()));
    }
    if b.rolled_back_from.contains(v) {
        return Err(Hold::RolledBack(v.clone()));
    }
    if !crate::domain::rollout::in_rollout(b.serial, v, r.rollout_percent) {
        return Err(Hold::OutsideRollout {
            version: v.clone(),
            percent: r.rollout_percent,
        });
    }
    Ok(())
}

/// The answer for one box.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'r> {
    /// The newest release for the box's model and channel, and why it is not due.
    pub available: Option<(&'r ReleaseEntry, Option<Hold>)>,
    /// The newest release that is due.
    pub offer: Option<&'r ReleaseEntry>,
}

/// Chooses `available` and `offer` among `releases` (in any order).
pub fn decide<'r>(b: &BoxView<'_>, releases: &'r [ReleaseEntry]) -> Decision<'r> {
    let mut mine: Vec<&ReleaseEntry> = releases
        .iter()
        .filter(|r| r.release.channel == b.channel && r.release.models.contains(b.model))
        .collect();
    mine.sort_by(|x, y| y.release.version.cmp(&x.release.version));
    // The newest one not withdrawn; if every one is, the newest withdrawn one.
    let newest = mine.iter().find(|r| !r.yanked).or(mine.first()).copied();
    let available = newest.map(|r| (r, judge(b, r).err()));
    // A staff upgrade targets one version whatever its channel or rollout.
    let forced = b.forced_upgrade.and_then(|v| {
        releases
            .iter()
            .find(|r| &r.release.version == v)
            .filter(|r| may_install(b, r).is_ok())
    });
    let offer = forced.or_else(|| mine.iter().find(|r| judge(b, r).is_ok()).copied());
    Decision { available, offer }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use np_common::docs::{ImageRef, Status};
    use np_common::{SecretKey, Sha256Digest};

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn entry(version: &str, models: &[&str], channel: &str) -> ReleaseEntry {
        let release = Release {
            product: "n-reporter".into(),
            version: v(version),
            security_version: 2,
            models: models.iter().map(|m| Model::parse(m).unwrap()).collect(),
            channel: channel.into(),
            released_at: "2026-10-01T00:00:00Z".parse().unwrap(),
            min_from_version: v("5.0.0"),
            image: ImageRef {
                name: format!("n-reporter-{version}.img"),
                size: 3,
                sha256: Sha256Digest::of(version.as_bytes()),
            },
            notes: String::new(),
        };
        let manifest = np_common::docs::sign(&release, &SecretKey::from_seed(&[7; 32]));
        ReleaseEntry {
            release,
            manifest,
            rollout_percent: 100,
            paused: false,
            yanked: false,
        }
    }

    struct Fixture {
        serial: Serial,
        model: Model,
        running: Version,
        ent: Entitlement,
        rolled: Vec<Version>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let serial = Serial::parse("NR-2000-123456-4").unwrap();
            let model = serial.model();
            Fixture {
                ent: Entitlement {
                    serial: serial.clone(),
                    model: model.clone(),
                    device_key: None,
                    sequence: 1,
                    issued_at: "2026-01-01T00:00:00Z".parse().unwrap(),
                    coverage_end: "2027-03-01".parse().unwrap(),
                    status: Status::Active,
                    terms: vec![],
                },
                serial,
                model,
                running: v("5.1.0"),
                rolled: vec![],
            }
        }

        fn view<'a>(&'a self, forced: Option<&'a Version>) -> BoxView<'a> {
            BoxView {
                serial: &self.serial,
                model: &self.model,
                channel: "stable",
                running_version: &self.running,
                running_security_version: 2,
                entitlement: Some(&self.ent),
                rolled_back_from: &self.rolled,
                forced_upgrade: forced,
                now: "2026-11-23T10:00:00Z".parse().unwrap(),
            }
        }
    }

    fn versions(d: &Decision<'_>) -> (Option<String>, Option<&'static str>, Option<String>) {
        (
            d.available
                .as_ref()
                .map(|(r, _)| r.release.version.to_string()),
            d.available
                .as_ref()
                .and_then(|(_, h)| h.as_ref().map(Hold::rule)),
            d.offer.map(|r| r.release.version.to_string()),
        )
    }

    #[test]
    fn an_offline_request_is_not_answered_with_a_paused_or_halted_release() {
        use crate::domain::offline::release_for_request;
        let f = Fixture::new();
        let mut newer = entry("5.3.0", &["NR-2000"], "stable");
        newer.paused = true;
        let older = entry("5.2.0", &["NR-2000"], "stable");
        let releases = vec![newer.clone(), older];
        let r = release_for_request(&f.view(None), &releases).unwrap();
        assert_eq!(r.release.version.to_string(), "5.2.0");
        // Only a paused one: refused, naming the hold.
        let only = vec![newer];
        let hold = release_for_request(&f.view(None), &only).unwrap_err();
        assert_eq!(hold.as_ref().map(Hold::rule), Some("paused"));
    }

    #[test]
    fn newest_due_release_is_offered() {
        let f = Fixture::new();
        let rs = vec![
            entry("5.2.0", &["NR-2000"], "stable"),
            entry("5.3.0", &["NR-1000", "NR-2000"], "stable"),
            entry("6.0.0", &["NR-2000"], "beta"),
            entry("7.0.0", &["NR-3000"], "stable"),
        ];
        let d = decide(&f.view(None), &rs);
        assert_eq!(
            versions(&d),
            (Some("5.3.0".into()), None, Some("5.3.0".into()))
        );
    }

    #[test]
    fn expired_box_learns_what_it_misses() {
        let mut f = Fixture::new();
        f.ent.coverage_end = "2026-06-01".parse().unwrap();
        let rs = vec![entry("5.3.0", &["NR-2000"], "stable")];
        let d = decide(&f.view(None), &rs);
        assert_eq!(
            versions(&d),
            (Some("5.3.0".into()), Some("warranty_expired"), None)
        );
    }

    #[test]
    fn paused_release_holds_but_an_older_due_one_is_offered() {
        let f = Fixture::new();
        let mut newest = entry("5.3.0", &["NR-2000"], "stable");
        newest.paused = true;
        let rs = vec![entry("5.2.0", &["NR-2000"], "stable"), newest];
        let d = decide(&f.view(None), &rs);
        assert_eq!(
            versions(&d),
            (Some("5.3.0".into()), Some("paused"), Some("5.2.0".into()))
        );
    }

    #[test]
    fn yanked_is_skipped_for_available_unless_all_are() {
        let f = Fixture::new();
        let mut y = entry("5.3.0", &["NR-2000"], "stable");
        y.yanked = true;
        let d = decide(&f.view(None), std::slice::from_ref(&y));
        assert_eq!(versions(&d), (Some("5.3.0".into()), Some("yanked"), None));
        let rs = vec![y, entry("5.2.0", &["NR-2000"], "stable")];
        let d = decide(&f.view(None), &rs);
        assert_eq!(
            versions(&d),
            (Some("5.2.0".into()), None, Some("5.2.0".into()))
        );
    }

    #[test]
    fn rollout_and_a_staff_action_overriding_it() {
        let f = Fixture::new();
        let mut r = entry("5.3.0", &["NR-2000"], "stable");
        r.rollout_percent = 0;
        let rs = vec![r];
        let d = decide(&f.view(None), &rs);
        assert_eq!(
            versions(&d),
            (Some("5.3.0".into()), Some("outside_rollout"), None)
        );
        let target = v("5.3.0");
        let d = decide(&f.view(Some(&target)), &rs);
        assert_eq!(
            versions(&d),
            (Some("5.3.0".into()), None, Some("5.3.0".into()))
        );
    }

    #[test]
    fn a_staff_action_does_not_override_the_update_rule_or_a_yank() {
        let mut f = Fixture::new();
        f.ent.status = Status::Revoked;
        let rs = vec![entry("5.3.0", &["NR-2000"], "stable")];
        let target = v("5.3.0");
        let d = decide(&f.view(Some(&target)), &rs);
        assert_eq!(
            versions(&d),
            (Some("5.3.0".into()), Some("entitlement_not_active"), None)
        );
        let f = Fixture::new();
        let mut y = entry("5.3.0", &["NR-2000"], "stable");
        y.yanked = true;
        let d = decide(&f.view(Some(&target)), std::slice::from_ref(&y));
        assert_eq!(versions(&d), (Some("5.3.0".into()), Some("yanked"), None));
    }

    #[test]
    fn each_rule_names_itself() {
        let base = Fixture::new();
        let mut rolled = Fixture::new();
        rolled.rolled = vec![v("5.3.0")];
        let mut current = Fixture::new();
        current.running = v("5.3.0");
        let mut old = Fixture::new();
        old.running = v("4.9.0");
        let mut sec = entry("5.3.0", &["NR-2000"], "stable");
        sec.release.security_version = 1;
        let plain = entry("5.3.0", &["NR-2000"], "stable");
        let cases: Vec<(&Fixture, &ReleaseEntry, &str)> = vec![
            (&rolled, &plain, "rolled_back"),
            (&current, &plain, "not_newer"),
            (&old, &plain, "from_version_too_old"),
            (&base, &sec, "security_downgrade"),
        ];
        for (f, r, rule) in cases {
            assert_eq!(judge(&f.view(None), r).unwrap_err().rule(), rule);
        }
        let wrong = entry("5.3.0", &["NR-1000"], "stable");
        assert_eq!(
            may_install(&base.view(None), &wrong).unwrap_err().rule(),
            "model_not_listed"
        );
        // An unknown running version leaves its rules to the agent, not the others.
        assert_eq!(may_install_for(&old.view(None), &plain, false), Ok(()));
        assert_eq!(
            may_install_for(&old.view(None), &plain, true)
                .unwrap_err()
                .rule(),
            "from_version_too_old"
        );
        let mut expired = Fixture::new();
        expired.ent.coverage_end = "2026-01-01".parse().unwrap();
        assert_eq!(
            may_install_for(&expired.view(None), &plain, false)
                .unwrap_err()
                .rule(),
            "warranty_expired"
        );
        // No release for this model at all: nothing available.
        let d = decide(&base.view(None), std::slice::from_ref(&wrong));
        assert_eq!(versions(&d), (None, None, None));
    }
}
