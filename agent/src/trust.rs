//! The trust store in `state_dir/trust/`: the newest accepted keyring (never an older
//! one), the entitlement with the highest sequence for this serial, and the time floor.
//!
//! What was verified when it was accepted stays a fact: the stored entitlement and each
//! part of the time floor remember which key vouched for them, and only when an accepted
//! keyring drops that key are they forgotten (then any valid entitlement is accepted,
//! whatever its sequence). New documents are checked against the current keyring, which
//! must not have expired, and a document dated more than [`MAX_AHEAD`] ahead of a clock
//! that looks right (at or past the floor) is refused; with a clock behind the floor (a
//! dead clock battery) the floor is the reference, and a document more than
//! [`MAX_AHEAD_OF_FLOOR`] ahead of it is refused.
//!
//! The floor moves only for a document that was accepted and used: a bundle's
//! entitlement is staged ([`Trust::stage_entitlement`]) while the bundle is checked, and
//! committed only when the whole bundle was accepted; a refused one leaves no trace.
//!
//! Architecture Invariant: trusted now = max(clock, floor), and the floor only grows
//! (except for the part a dropped key raised), so setting the clock back never extends
//! a warranty.

use crate::clock::Clock;
use jiff::{SignedDuration, Timestamp};
use np_common::docs::{self, Action, DocError, Entitlement, Release, TimeToken};
use np_common::keyring::{accept_keyring, AcceptedKeyring, Keyring, KeyringError, RootSpec};
use np_common::{Envelope, KeyId, PublicKey, Serial};
use np_fsutil as fsutil;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How far ahead of a right-looking system clock a document's time may be.
pub const MAX_AHEAD: SignedDuration = SignedDuration::from_hours(24);

/// How far ahead of the time floor a document's time may be when the system clock is
/// behind the floor (a dead clock battery): an offline box may get a bundle made long
/// after the last one, but not one from 2199. Past it, setting the clock right helps.
pub const MAX_AHEAD_OF_FLOOR: SignedDuration = SignedDuration::from_hours(366 * 24);

/// Why a trust document was refused or the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("the keyring was refused: {0}")]
    Keyring(#[from] KeyringError),
    #[error("{0}")]
    Doc(#[from] DocError),
    #[error("no keyring is stored yet; provision the box with --keyring or let it check in with the server")]
    NoKeyring,
    #[error("the stored keyring expired at {expires}; the box accepts nothing but a newer keyring (check in with the server, or apply a bundle that carries one)")]
    KeyringExpired { expires: Timestamp },
    #[error("the {what} is dated {at}, more than 24 hours ahead of this box's clock ({clock}); it is refused (a wrong server clock or a forged document)")]
    FromTheFuture {
        what: &'static str,
        at: Timestamp,
        clock: Timestamp,
    },
    #[error("the {what} is dated {at}, more than 366 days ahead of the latest time this box trusts ({floor}), and the box's clock ({clock}) is behind that time (a dead clock battery?); it is refused. If the document is genuine, set the box's clock right and try again")]
    AheadOfFloor {
        what: &'static str,
        at: Timestamp,
        floor: Timestamp,
        clock: Timestamp,
    },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stored trust file {path} is damaged: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// The time floor, by what raised it: each key's documents, the installed firmware's
/// release time, and a floor stored before keys were recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    /// The highest time each key vouched for (time tokens, `issued_at`).
    #[serde(default)]
    pub keys: BTreeMap<KeyId, Timestamp>,
    /// The release time of firmware installed on this box.
    #[serde(default)]
    pub installed: Option<Timestamp>,
    /// A floor from an older agent that did not record its keys.
    #[serde(default)]
    pub legacy: Option<Timestamp>,
}

impl Floor {
    /// The floor: the highest of its parts (the epoch when there are none).
    pub fn value(&self) -> Timestamp {
        self.keys
            .values()
            .copied()
            .chain(self.installed)
            .chain(self.legacy)
            .max()
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// What raised the floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorSource {
    /// A document signed by this key.
    Key(KeyId),
    /// The release time of firmware installed on this box.
    Installed,
}

/// The accepted entitlement and the key that signed it.
#[derive(Debug, Clone)]
struct StoredEntitlement {
    entitlement: Entitlement,
    signer: KeyId,
}

/// An entitlement verified and checked, not yet stored: it takes effect (and raises the
/// floor) only when committed.
#[derive(Debug, Clone)]
struct Staged {
    stored: StoredEntitlement,
    envelope: Envelope,
}

/// The agent's trust state.
pub struct Trust {
    dir: PathBuf,
    pinned: RootSpec,
    serial: Serial,
    keyring: Option<AcceptedKeyring>,
    entitlement: Option<StoredEntitlement>,
    floor: Floor,
    staged: Option<Staged>,
    clock: Arc<dyn Clock>,
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, TrustError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TrustError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

const FLOOR_FILE: &str = "time_floor.json";
const LEGACY_FLOOR_FILE: &str = "time_floor";
const ENTITLEMENT_FILE: &str = "entitlement.json";
const KEYRING_FILE: &str = "keyring.json";

impl Trust {
    /// Loads the store from `dir` (missing files: nothing trusted yet).
    pub fn load(
        dir: &Path,
        root_keys: &[PublicKey],
        serial: &Serial,
        clock: Arc<dyn Clock>,
    ) -> Result<Trust, TrustError> {
        let corrupt = |path: &Path, message: String| TrustError::Corrupt {
            path: path.to_owned(),
            message,
        };
        let kpath = dir.join(KEYRING_FILE);
        let keyring = match read_opt(&kpath)? {
            None => None,
            Some(b) => {
                let env = Envelope::parse(&b).map_err(|e| corrupt(&kpath, e.to_string()))?;
                let payload = env
                    .payload_bytes()
                    .map_err(|e| corrupt(&kpath, e.to_string()))?;
                let keyring: Keyring =
                    serde_json::from_slice(&payload).map_err(|e| corrupt(&kpath, e.to_string()))?;
                Some(AcceptedKeyring { keyring, payload })
            }
        };
        let fpath = dir.join(FLOOR_FILE);
        let floor = match read_opt(&fpath)? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| corrupt(&fpath, e.to_string()))?,
            None => {
                let lpath = dir.join(LEGACY_FLOOR_FILE);
                let legacy = match read_opt(&lpath)? {
                    None => None,
                    Some(b) => Some(
                        String::from_utf8_lossy(&b)
                            .trim()
                            .parse()
                            .map_err(|e: jiff::Error| corrupt(&lpath, e.to_string()))?,
                    ),
                };
                Floor {
                    legacy,
                    ..Floor::default()
                }
            }
        };
        let mut t = Trust {
            dir: dir.to_owned(),
            pinned: RootSpec::pinned(root_keys.to_vec()),
            serial: serial.clone(),
            keyring,
            entitlement: None,
            floor,
            staged: None,
            clock,
        };
        let epath = dir.join(ENTITLEMENT_FILE);
        if let (Some(b), Some(k)) = (read_opt(&epath)?, t.keyring.as_ref()) {
            let env = Envelope::parse(&b).map_err(|e| corrupt(&epath, e.to_string()))?;
            // It was verified when it was accepted; this finds the key that signed it.
            // Its key gone from the keyring (a crash before it was forgotten): forget it.
            match docs::verify_signed::<Entitlement>(&env, &k.keyring) {
                Ok((entitlement, signer)) => {
                    t.entitlement = Some(StoredEntitlement {
                        entitlement,
                        signer,
                    })
                }
                Err(e) => tracing::warn!(
                    "the stored entitlement is not vouched for by the keyring any more ({e}); a new one is needed"
                ),
            }
        }
        if let Some(k) = t.keyring.as_ref().map(|k| k.keyring.clone()) {
            t.floor.keys.retain(|id, _| listed(&k, id));
        }
        Ok(t)
    }

    /// Trusted now: max(clock, floor), and the `issued_at` of a staged entitlement.
    pub fn now(&self) -> Timestamp {
        let staged = self
            .staged
            .as_ref()
            .map(|s| s.stored.entitlement.issued_at)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        self.clock.now().max(self.floor.value()).max(staged)
    }

    /// The time floor.
    pub fn floor(&self) -> Timestamp {
        self.floor.value()
    }

    /// The floor by what raised it.
    pub fn floor_parts(&self) -> &Floor {
        &self.floor
    }

    /// The stored keyring, whether or not it expired (for status and root rotation).
    pub fn stored_keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref().map(|k| &k.keyring)
    }

    /// The keyring new documents are checked against: stored, and not expired.
    pub fn keyring(&self) -> Result<&Keyring, TrustError> {
        let k = self
            .keyring
            .as_ref()
            .map(|k| &k.keyring)
            .ok_or(TrustError::NoKeyring)?;
        if k.expires <= self.now() {
            return Err(TrustError::KeyringExpired { expires: k.expires });
        }
        Ok(k)
    }

    /// The entitlement in force: a staged one (being checked with its bundle), else the
    /// stored one.
    pub fn entitlement(&self) -> Option<&Entitlement> {
        self.staged
            .as_ref()
            .map(|s| &s.stored)
            .or(self.entitlement.as_ref())
            .map(|e| &e.entitlement)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), TrustError> {
        let path = self.dir.join(name);
        fsutil::write_atomic(&path, bytes, fsutil::PRIVATE)
            .map_err(|source| TrustError::Io { path, source })
    }

    fn save_floor(&self, floor: &Floor) -> Result<(), TrustError> {
        let mut bytes = serde_json::to_vec_pretty(floor).unwrap_or_default();
        bytes.push(b'\n');
        self.write(FLOOR_FILE, &bytes)
    }

    /// Refuses a document time more than [`MAX_AHEAD`] ahead of the system clock while
    /// that clock looks right; a clock further behind the floor than that (a dead clock
    /// battery) takes the document as the better clock. The floor itself may run up to
    /// [`MAX_AHEAD`] ahead of a right clock (skew), so "looks right" allows that much:
    /// otherwise a document 23 hours ahead would make the next one from 2199 acceptable.
    ///
    /// A dead clock does not switch the rule off: with the clock behind the floor, a
    /// document more than [`MAX_AHEAD_OF_FLOOR`] ahead of the floor is refused.
    pub fn check_not_ahead(&self, what: &'static str, at: Timestamp) -> Result<(), TrustError> {
        let clock = self.clock.now();
        let floor = self.floor.value();
        let ahead = clock.checked_add(MAX_AHEAD).unwrap_or(Timestamp::MAX);
        if ahead >= floor {
            if at > ahead {
                return Err(TrustError::FromTheFuture { what, at, clock });
            }
        } else if at
            > floor
                .checked_add(MAX_AHEAD_OF_FLOOR)
                .unwrap_or(Timestamp::MAX)
        {
            return Err(TrustError::AheadOfFloor {
                what,
                at,
                floor,
                clock,
            });
        }
        Ok(())
    }

    /// Raises the part of the floor `source` holds to `t` if `t` is later.
    pub fn raise_floor(&mut self, t: Timestamp, source: FloorSource) -> Result<(), TrustError> {
        let mut floor = self.floor.clone();
        let slot = match source {
            FloorSource::Key(id) => floor.keys.entry(id).or_insert(Timestamp::UNIX_EPOCH),
            FloorSource::Installed => floor.installed.get_or_insert(Timestamp::UNIX_EPOCH),
        };
        if t <= *slot {
            return Ok(());
        }
        *slot = t;
        self.save_floor(&floor)?;
        self.floor = floor;
        Ok(())
    }

    /// Verifies a keyring under the stored keyring's root (or the pinned root keys when
    /// none is stored) and stores it when newer; then forgets the entitlement and the
    /// part of the floor only keys it no longer lists vouched for. Returns whether it
    /// was new. An expired stored keyring still lets a newer keyring in.
    ///
    /// Its expiry is checked against the clock and the floor *without* the parts of the
    /// keys it drops: rotating out a key that vouched for a time far ahead (a wrong
    /// server clock, a compromised key) is how a box recovers from it.
    pub fn accept_keyring(&mut self, env: &Envelope) -> Result<bool, TrustError> {
        let trusted = match &self.keyring {
            Some(k) => k.keyring.root.clone(),
            None => self.pinned.clone(),
        };
        // Signatures, root threshold and version first; the expiry below.
        let accepted = accept_keyring(env, &trusted, self.keyring.as_ref(), Timestamp::MIN)?;
        let mut kept = self.floor.clone();
        kept.keys.retain(|id, _| listed(&accepted.keyring, id));
        if accepted.keyring.expires <= self.clock.now().max(kept.value()) {
            return Err(TrustError::Keyring(KeyringError::Expired {
                expires: accepted.keyring.expires,
            }));
        }
        if self.keyring.as_ref().map(|k| k.keyring.version) == Some(accepted.keyring.version) {
            return Ok(false);
        }
        self.write(KEYRING_FILE, env.to_json_pretty().as_bytes())?;
        let k = accepted.keyring.clone();
        self.keyring = Some(accepted);
        if let Some(e) = &self.entitlement {
            if !listed(&k, &e.signer) {
                tracing::info!(
                    "the new keyring no longer lists key {}, which signed the stored entitlement; it is forgotten",
                    e.signer
                );
                let path = self.dir.join(ENTITLEMENT_FILE);
                fsutil::remove_durable(&path).map_err(|source| TrustError::Io { path, source })?;
                self.entitlement = None;
            }
        }
        let mut floor = self.floor.clone();
        floor.keys.retain(|id, _| listed(&k, id));
        if floor != self.floor {
            self.save_floor(&floor)?;
            self.floor = floor;
        }
        Ok(true)
    }

    /// Verifies an entitlement for this box (never a lower sequence than the stored one)
    /// and stores it when its sequence is higher.
    pub fn accept_entitlement(&mut self, env: &Envelope) -> Result<Entitlement, TrustError> {
        let staged = self.verify_entitlement(env)?;
        let e = staged.stored.entitlement.clone();
        self.store_entitlement(staged)?;
        Ok(e)
    }

    /// Verifies an entitlement and holds it as the one in force until
    /// [`Trust::commit_staged`] stores it (and raises the floor) or
    /// [`Trust::discard_staged`] forgets it: for a bundle, whose entitlement counts only
    /// when the whole bundle is accepted.
    pub fn stage_entitlement(&mut self, env: &Envelope) -> Result<Entitlement, TrustError> {
        let staged = self.verify_entitlement(env)?;
        let e = staged.stored.entitlement.clone();
        self.staged = Some(staged);
        Ok(e)
    }

    /// Stores the staged entitlement, if any, and raises the floor to its `issued_at`.
    pub fn commit_staged(&mut self) -> Result<(), TrustError> {
        match self.staged.take() {
            Some(s) => self.store_entitlement(s),
            None => Ok(()),
        }
    }

    /// Forgets the staged entitlement, if any: nothing of it was stored.
    pub fn discard_staged(&mut self) {
        self.staged = None;
    }

    fn verify_entitlement(&self, env: &Envelope) -> Result<Staged, TrustError> {
        let stored = self.entitlement.as_ref().map(|e| e.entitlement.sequence);
        let (e, signer) = docs::verify_signed::<Entitlement>(env, self.keyring()?)?;
        e.check_for(&self.serial, stored)?;
        self.check_not_ahead("entitlement", e.issued_at)?;
        Ok(Staged {
            stored: StoredEntitlement {
                entitlement: e,
                signer,
            },
            envelope: env.clone(),
        })
    }

    fn store_entitlement(&mut self, s: Staged) -> Result<(), TrustError> {
        let (e, signer) = (s.stored.entitlement.clone(), s.stored.signer.clone());
        let stored = self.entitlement.as_ref().map(|e| e.entitlement.sequence);
        if stored.is_none_or(|seq| e.sequence > seq) {
            self.write(ENTITLEMENT_FILE, s.envelope.to_json_pretty().as_bytes())?;
            self.entitlement = Some(s.stored);
        }
        self.raise_floor(e.issued_at, FloorSource::Key(signer))
    }

    /// Verifies a time token answering `nonce` and raises the floor to it.
    pub fn accept_time(&mut self, env: &Envelope, nonce: &str) -> Result<TimeToken, TrustError> {
        let (t, signer) = docs::verify_signed::<TimeToken>(env, self.keyring()?)?;
        t.check_nonce(nonce)?;
        self.check_not_ahead("time token", t.now)?;
        self.raise_floor(t.now, FloorSource::Key(signer))?;
        Ok(t)
    }

    /// Verifies a new release manifest under the keyring. (The manifest of firmware
    /// already installed is a fact of its slot and is not verified again.)
    pub fn verify_release(&self, env: &Envelope) -> Result<Release, TrustError> {
        let r = docs::verify::<Release>(env, self.keyring()?)?;
        self.check_not_ahead("release manifest", r.released_at)?;
        Ok(r)
    }

    /// Verifies a staff action for this box, newer than the last one acted on.
    pub fn verify_action(
        &self,
        env: &Envelope,
        last_acted: Option<Timestamp>,
    ) -> Result<Action, TrustError> {
        let a = Action::verify_for(env, self.keyring()?, &self.serial, last_acted)?;
        self.check_not_ahead("staff action", a.issued_at)?;
        Ok(a)
    }
}

/// Does `keyring` still list key `id`?
fn listed(keyring: &Keyring, id: &KeyId) -> bool {
    keyring.keys.iter().any(|k| &k.keyid == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::testkit::{self, Keys};

    fn store(dir: &Path, now: Timestamp) -> Trust {
        let k = Keys::load();
        Trust::load(
            dir,
            &[k.root.public_key()],
            &testkit::serial(),
            Arc::new(FixedClock(now)),
        )
        .unwrap()
    }

    #[test]
    fn floor_only_grows_and_beats_a_clock_set_back() {
        let dir = tempfile::tempdir().unwrap();
        let late: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let early: Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
        let mut t = store(dir.path(), early);
        assert_eq!(t.now(), early);
        t.raise_floor(late, FloorSource::Installed).unwrap();
        t.raise_floor(early, FloorSource::Installed).unwrap();
        assert_eq!(t.floor(), late);
        let t = store(dir.path(), early);
        assert_eq!(t.now(), late, "the floor survives a restart");
    }

    #[test]
    fn keyring_never_goes_back_and_needs_the_pinned_root() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load();
        let mut t = store(dir.path(), testkit::now());
        assert!(matches!(t.keyring(), Err(TrustError::NoKeyring)));
        assert!(t.accept_keyring(&k.keyring_env(5)).unwrap());
        assert!(!t.accept_keyring(&k.keyring_env(5)).unwrap());
        let e = t.accept_keyring(&k.keyring_env(4)).unwrap_err();
        assert!(matches!(
            e,
            TrustError::Keyring(KeyringError::VersionRollback { stored: 5, got: 4 })
        ));
        let forged = testkit::keyring_signed_by(&k, 9, &k.release);
        assert!(matches!(
            t.accept_keyring(&forged).unwrap_err(),
            TrustError::Keyring(KeyringError::RootThreshold { .. })
        ));
    }

    #[test]
    fn entitlement_replay_other_serial_and_wrong_role_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load();
        let mut t = store(dir.path(), testkit::now());
        t.accept_keyring(&k.keyring_env(1)).unwrap();
        let e7 = testkit::entitlement(7, "2099-01-01", &testkit::serial());
        t.accept_entitlement(&k.sign_online(&e7)).unwrap();
        let e6 = testkit::entitlement(6, "2099-01-01", &testkit::serial());
        assert!(matches!(
            t.accept_entitlement(&k.sign_online(&e6)).unwrap_err(),
            TrustError::Doc(DocError::Replay { stored: 7, got: 6 })
        ));
        let other = testkit::entitlement(9, "2099-01-01", &"NR-2000-123457-2".parse().unwrap());
        assert!(matches!(
            t.accept_entitlement(&k.sign_online(&other)).unwrap_err(),
            TrustError::Doc(DocError::OtherSerial { .. })
        ));
        let by_release = docs::sign(&e7, &k.release);
        assert!(matches!(
            t.accept_entitlement(&by_release).unwrap_err(),
            TrustError::Doc(DocError::WrongRole { .. })
        ));
        assert_eq!(t.entitlement().unwrap().sequence, 7);
        assert!(t.floor() >= e7.issued_at, "issued_at raises the floor");
    }

    #[test]
    fn time_token_must_answer_our_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load();
        let mut t = store(dir.path(), testkit::now());
        t.accept_keyring(&k.keyring_env(1)).unwrap();
        let tok = TimeToken {
            now: "2026-11-24T00:00:00Z".parse().unwrap(),
            nonce: "ab".into(),
        };
        let env = k.sign_online(&tok);
        assert!(matches!(
            t.accept_time(&env, "cd").unwrap_err(),
            TrustError::Doc(DocError::NonceMismatch { .. })
        ));
        t.accept_time(&env, "ab").unwrap();
        assert_eq!(t.now(), tok.now);
    }

    fn token(now: &str, nonce: &str) -> TimeToken {
        TimeToken {
            now: now.parse().unwrap(),
            nonce: nonce.into(),
        }
    }

    #[test]
    fn a_document_from_the_far_future_is_refused_while_the_clock_looks_right() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load();
        // The clock (2026-11-23T12:00) is past the floor: it looks right.
        let mut t = store(dir.path(), testkit::now());
        t.accept_keyring(&k.keyring_env(1)).unwrap();
        let far = k.sign_online(&token("2199-01-01T00:00:00Z", "ab"));
        match t.accept_time(&far, "ab").unwrap_err() {
            TrustError::FromTheFuture { what, at, clock } => {
                assert_eq!(what, "time token");
                assert_eq!(at, "2199-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
                assert_eq!(clock, testkit::now());
            }
            e => panic!("{e}"),
        }
        assert!(
            t.floor() < "2027-01-01T00:00:00Z".parse().unwrap(),
            "the floor did not move"
        );
        // 23 hours ahead is a clock skew, taken; it does not open the door to 2199.
        t.accept_time(&k.sign_online(&token("2026-11-24T11:00:00Z", "cd")), "cd")
            .unwrap();
        assert!(matches!(
            t.accept_time(&far, "ab").unwrap_err(),
            TrustError::FromTheFuture { .. }
        ));
        let mut e = testkit::entitlement(9, "2099-01-01", &testkit::serial());
        e.issued_at = "2199-01-01T00:00:00Z".parse().unwrap();
        assert!(matches!(
            t.accept_entitlement(&k.sign_online(&e)).unwrap_err(),
            TrustError::FromTheFuture {
                what: "entitlement",
                ..
            }
        ));
        let mut r = testkit::release("2.0.0", 2, b"img");
        r.released_at = "2199-01-01T00:00:00Z".parse().unwrap();
        assert!(matches!(
            t.verify_release(&k.sign_release(&r)).unwrap_err(),
            TrustError::FromTheFuture {
                what: "release manifest",
                ..
            }
        ));
    }

    #[test]
    fn a_box_whose_clock_is_behind_its_floor_takes_a_later_time() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load();
        // A dead clock battery: the clock says 1970, the floor says 2026.
        let mut t = store(dir.path(), Timestamp::UNIX_EPOCH);
        t.accept_keyring(&k.keyring_env(1)).unwrap();
        t.raise_floor(testkit::now(), FloorSource::Installed)
            .unwrap();
        let tok = token("2026-12-01T00:00:00Z", "ab");
        t.accept_time(&k.sign_online(&tok), "ab").unwrap();
        assert_eq!(t.now(), tok.now);
        // A dead clock does not switch the future check off: the floor is the reference.
        let far = k.sign_online(&token("2199-01-01T00:00:00Z", "cd"));
        match t.accept_time(&far, "cd").unwrap_err() {
            TrustError::AheadOfFloor {
                what, at, floor, ..
            } => {
                assert_eq!(what, "time token");
                assert_eq!(at, "2199-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
                assert_eq!(floor, tok.now);
            }
            e => panic!("{e}"),
        }
        let mut e = testkit::entitlement(9, "2099-01-01", &testkit::serial());
        e.issued_at = "2199-01-01T00:00:00Z".parse().unwrap();
        assert!(matches!(
            t.accept_entitlement(&k.sign_online(&e)).unwrap_err(),
            TrustError::AheadOfFloor {
                what: "entitlement",
                ..
            }
        ));
        assert_eq!(t.floor(), tok.now, "the floor did not move");
    }

    #[test]
    fn rotating_out_a_key_that_vouched_for_a_far_future_time_recovers_the_box() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load();
        let mut t = store(dir.path(), testkit::now());
        t.accept_keyring(&k.keyring_env(1)).unwrap();
        t.raise_floor(testkit::now(), FloorSource::Installed)
            .unwrap();
        // A floor poisoned by the online key (stored by an older agent, say).
        let online = k.online.public_key().key_id();
        let poisoned: Timestamp = "2199-01-01T00:00:00Z".parse().unwrap();
        t.raise_floor(poisoned, FloorSource::Key(online.clone()))
            .unwrap();
        // A keyring that keeps the key is checked against the poisoned floor...
        let keeps = k.keyring_with(2, &k.online, &k.release, "2099-01-01T00:00:00Z");
        assert!(matches!(
            t.accept_keyring(&keeps).unwrap_err(),
            TrustError::Keyring(KeyringError::Expired { .. })
        ));
        // ...one that drops it against what remains once its part is forgotten.
        let drops = k.keyring_with(2, &k.online2, &k.release, "2099-01-01T00:00:00Z");
        assert!(t.accept_keyring(&drops).unwrap());
        assert_eq!(t.floor(), testkit::now());
        assert!(!t.floor_parts().keys.contains_key(&online));
        t.keyring().unwrap();
    }

    #[test]
    fn a_staged_entitlement_counts_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load();
        let mut t = store(dir.path(), testkit::now());
        t.accept_keyring(&k.keyring_env(1)).unwrap();
        t.accept_entitlement(&k.sign_online(&testkit::entitlement(
            3,
            "2099-01-01",
            &testkit::serial(),
        )))
        .unwrap();
        let before = t.floor_parts().clone();
        let mut e = testkit::entitlement(4, "2099-01-01", &testkit::serial());
        e.issued_at = "2026-11-23T20:00:00Z".parse().unwrap();
        t.stage_entitlement(&k.sign_online(&e)).unwrap();
        assert_eq!(
            t.entitlement().unwrap().sequence,
            4,
            "in force while staged"
        );
        assert_eq!(t.now(), e.issued_at);
        t.discard_staged();
        assert_eq!(t.entitlement().unwrap().sequence, 3);
        assert_eq!(t.floor_parts(), &before);
        assert_eq!(store(dir.path(), testkit::now()).floor_parts(), &before);
        t.stage_entitlement(&k.sign_online(&e)).unwrap();
        t.commit_staged().unwrap();
        let t = store(dir.path(), testkit::now());
        assert_eq!(t.entitlement().unwrap().sequence, 4);
        assert_eq!(t.floor(), e.issued_at);
    }

    #[test]
    fn a_dropped_key_takes_its_entitlement_and_its_part_of_the_floor_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load();
        let mut t = store(dir.path(), testkit::now());
        t.accept_keyring(&k.keyring_env(1)).unwrap();
        t.raise_floor(
            "2026-06-01T00:00:00Z".parse().unwrap(),
            FloorSource::Installed,
        )
        .unwrap();
        // A compromised online key: a revoked entitlement with a huge sequence, and a
        // time token a few hours ahead.
        let mut revoked = testkit::entitlement(u64::MAX - 1, "2099-01-01", &testkit::serial());
        revoked.status = np_common::docs::Status::Revoked;
        t.accept_entitlement(&k.sign_online(&revoked)).unwrap();
        let ahead = token("2026-11-24T06:00:00Z", "ab");
        t.accept_time(&k.sign_online(&ahead), "ab").unwrap();
        assert_eq!(t.floor(), ahead.now);
        // The keyring rotates the online key out.
        let v2 = k.keyring_with(2, &k.online2, &k.release, "2099-01-01T00:00:00Z");
        assert!(t.accept_keyring(&v2).unwrap());
        assert!(
            t.entitlement().is_none(),
            "the entitlement it signed is forgotten"
        );
        assert_eq!(
            t.floor(),
            "2026-06-01T00:00:00Z".parse::<Timestamp>().unwrap(),
            "only the installed firmware's part of the floor is left"
        );
        // Any valid entitlement is accepted again, whatever its sequence.
        let fresh = testkit::entitlement(1, "2099-01-01", &testkit::serial());
        t.accept_entitlement(&docs::sign(&fresh, &k.online2))
            .unwrap();
        assert_eq!(t.entitlement().unwrap().sequence, 1);
        // The old key's documents are refused now.
        assert!(matches!(
            t.accept_entitlement(&k.sign_online(&fresh)).unwrap_err(),
            TrustError::Doc(DocError::UnknownSigner { .. })
        ));
        // And all of it survives a restart.
        let t = store(dir.path(), testkit::now());
        assert_eq!(t.entitlement().unwrap().sequence, 1);
        assert_eq!(
            t.floor(),
            "2026-06-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn an_expired_keyring_accepts_nothing_but_a_newer_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load();
        let mut t = store(dir.path(), testkit::now());
        let short = k.keyring_with(1, &k.online, &k.release, "2026-12-01T00:00:00Z");
        t.accept_keyring(&short).unwrap();
        let r = testkit::release("2.0.0", 2, b"img");
        t.verify_release(&k.sign_release(&r)).unwrap();
        // Later: the clock passes the keyring's expiry.
        let mut t = store(dir.path(), "2026-12-02T00:00:00Z".parse().unwrap());
        let expires = "2026-12-01T00:00:00Z".parse::<Timestamp>().unwrap();
        assert!(matches!(
            t.verify_release(&k.sign_release(&r)).unwrap_err(),
            TrustError::KeyringExpired { expires: e } if e == expires
        ));
        let tok = k.sign_online(&token("2026-12-02T00:00:00Z", "ab"));
        assert!(matches!(
            t.accept_time(&tok, "ab").unwrap_err(),
            TrustError::KeyringExpired { .. }
        ));
        let ent = k.sign_online(&testkit::entitlement(5, "2099-01-01", &testkit::serial()));
        assert!(matches!(
            t.accept_entitlement(&ent).unwrap_err(),
            TrustError::KeyringExpired { .. }
        ));
        // A renewed keyring is let in, and then documents again.
        let renewed = k.keyring_with(2, &k.online, &k.release, "2099-01-01T00:00:00Z");
        assert!(t.accept_keyring(&renewed).unwrap());
        t.verify_release(&k.sign_release(&r)).unwrap();
        t.accept_time(&tok, "ab").unwrap();
    }
}
