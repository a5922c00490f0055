//! The trust store in `state_dir/trust/`: the newest accepted keyring (never an older
//! one), the entitlement with the highest sequence for this serial, and the time floor.
//!
//! Architecture Invariant: trusted now = max(clock, floor), and the floor only grows, so
//! setting the clock back never extends a warranty.

use crate::clock::Clock;
use jiff::Timestamp;
use np_common::docs::{self, DocError, Entitlement, Release, TimeToken};
use np_common::keyring::{accept_keyring, AcceptedKeyring, Keyring, KeyringError, RootSpec};
use np_common::{Envelope, PublicKey, Serial};
use np_fsutil as fsutil;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a trust document was refused or the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("the keyring was refused: {0}")]
    Keyring(#[from] KeyringError),
    #[error("{0}")]
    Doc(#[from] DocError),
    #[error("no keyring is stored yet; provision the box with --keyring or let it check in with the server")]
    NoKeyring,
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stored trust file {path} is damaged: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// The agent's trust state.
pub struct Trust {
    dir: PathBuf,
    pinned: RootSpec,
    serial: Serial,
    keyring: Option<AcceptedKeyring>,
    entitlement: Option<Entitlement>,
    floor: Timestamp,
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
        let kpath = dir.join("keyring.json");
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
        let fpath = dir.join("time_floor");
        let floor = match read_opt(&fpath)? {
            None => Timestamp::UNIX_EPOCH,
            Some(b) => String::from_utf8_lossy(&b)
                .trim()
                .parse()
                .map_err(|e: jiff::Error| corrupt(&fpath, e.to_string()))?,
        };
        let mut t = Trust {
            dir: dir.to_owned(),
            pinned: RootSpec::pinned(root_keys.to_vec()),
            serial: serial.clone(),
            keyring,
            entitlement: None,
            floor,
            clock,
        };
        let epath = dir.join("entitlement.json");
        if let (Some(b), Some(k)) = (read_opt(&epath)?, t.keyring.as_ref()) {
            let env = Envelope::parse(&b).map_err(|e| corrupt(&epath, e.to_string()))?;
            // A keyring rotated since may no longer hold the signer: then the box has no
            // usable entitlement until it gets a new one, but it still runs.
            match Entitlement::verify_for(&env, &k.keyring, serial, None) {
                Ok(e) => t.entitlement = Some(e),
                Err(e) => tracing::warn!(
                    "the stored entitlement no longer verifies ({e}); a new one is needed"
                ),
            }
        }
        Ok(t)
    }

    /// Trusted now: max(clock, floor).
    pub fn now(&self) -> Timestamp {
        self.clock.now().max(self.floor)
    }

    /// The time floor.
    pub fn floor(&self) -> Timestamp {
        self.floor
    }

    /// The stored keyring.
    pub fn keyring(&self) -> Result<&Keyring, TrustError> {
        self.keyring
            .as_ref()
            .map(|k| &k.keyring)
            .ok_or(TrustError::NoKeyring)
    }

    /// The stored entitlement.
    pub fn entitlement(&self) -> Option<&Entitlement> {
        self.entitlement.as_ref()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), TrustError> {
        let path = self.dir.join(name);
        fsutil::write_atomic(&path, bytes, fsutil::PRIVATE)
            .map_err(|source| TrustError::Io { path, source })
    }

    /// Raises the floor to `t` if `t` is later; it never goes down.
    pub fn raise_floor(&mut self, t: Timestamp) -> Result<(), TrustError> {
        if t > self.floor {
            self.write("time_floor", format!("{t}\n").as_bytes())?;
            self.floor = t;
        }
        Ok(())
    }

    /// Verifies a keyring under the stored keyring's root (or the pinned root keys when
    /// none is stored) and stores it when newer. Returns whether it was new.
    pub fn accept_keyring(&mut self, env: &Envelope) -> Result<bool, TrustError> {
        let trusted = match &self.keyring {
            Some(k) => k.keyring.root.clone(),
            None => self.pinned.clone(),
        };
        let accepted = accept_keyring(env, &trusted, self.keyring.as_ref(), self.now())?;
        if self.keyring.as_ref().map(|k| k.keyring.version) == Some(accepted.keyring.version) {
            return Ok(false);
        }
        self.write("keyring.json", env.to_json_pretty().as_bytes())?;
        self.keyring = Some(accepted);
        Ok(true)
    }

    /// Verifies an entitlement for this box (never a lower sequence than the stored one)
    /// and stores it when its sequence is higher.
    pub fn accept_entitlement(&mut self, env: &Envelope) -> Result<Entitlement, TrustError> {
        let stored = self.entitlement.as_ref().map(|e| e.sequence);
        let e = Entitlement::verify_for(env, self.keyring()?, &self.serial, stored)?;
        if stored.is_none_or(|s| e.sequence > s) {
            self.write("entitlement.json", env.to_json_pretty().as_bytes())?;
            self.entitlement = Some(e.clone());
        }
        self.raise_floor(e.issued_at)?;
        Ok(e)
    }

    /// Verifies a time token answering `nonce` and raises the floor to it.
    pub fn accept_time(&mut self, env: &Envelope, nonce: &str) -> Result<TimeToken, TrustError> {
        let t = TimeToken::verify_nonce(env, self.keyring()?, nonce)?;
        self.raise_floor(t.now)?;
        Ok(t)
    }

    /// Verifies a release manifest under the keyring.
    pub fn verify_release(&self, env: &Envelope) -> Result<Release, TrustError> {
        Ok(docs::verify::<Release>(env, self.keyring()?)?)
    }
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
        t.raise_floor(late).unwrap();
        t.raise_floor(early).unwrap();
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
            now: "2030-01-01T00:00:00Z".parse().unwrap(),
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
}
