//! Replicas agree on the keyring. The store records the installed keyring
//! ([`KeyringRecord`]); a replica compares its data folder's keyring with it:
//!
//! - at start ([`at_start`]): none recorded, it records its own (atomically, so two
//!   replicas starting together agree); the store's is newer, or of the same version with
//!   other keys, it refuses to start, naming both; its own is newer (installed while it
//!   was the only one) and chains from the store's root, it records its own. Only a replica
//!   whose keyring is the store's goes on to re-sign stale documents.
//! - while it runs ([`check`], cached for [`RECHECK`]): when the store's keyring is newer
//!   (installed through another replica), it re-reads its data folder; if the folder now
//!   holds that keyring and its keys, it switches to them, else it is *stale*: requests
//!   that would sign or serve the keyring get 503 `keyring_stale` and `/healthz` 503.
//!
//! Architecture Invariant: no replica signs with keys the store's keyring does not list:
//! the PostgreSQL store refuses a signing write from a replica whose keyring is older
//! than the recorded one, in the write's own transaction (`PgStore::guard_keyring`).

use crate::datadir;
use crate::state::AppState;
use crate::store::{KeyringRecord, StoreError};
use np_common::keyring::{accept_keyring, KeyringError};
use std::time::{Duration, Instant};

/// How long a check of the store's keyring is trusted before the next one.
pub const RECHECK: Duration = Duration::from_secs(2);

/// What boxes, clients and the unauthenticated `/healthz` are told while this replica is
/// stale: no path, no instruction (those go to the server's log).
pub const STALE_SHORT: &str =
    "this server is waiting for a newer keyring installed through another server; try again shortly";

/// Why this replica may not sign.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaKeysError {
    /// The store's keyring is not the data folder's (at start).
    #[error("{0}")]
    Refused(String),
    /// The store's keyring is newer and the data folder does not hold it (while running):
    /// the sentence names both keyrings and what to do.
    #[error("{0}")]
    Stale(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the last check found, and when.
#[derive(Debug, Default)]
pub struct KeyringWatch {
    last: std::sync::Mutex<Option<(Instant, Option<String>)>>,
    one_at_a_time: tokio::sync::Mutex<()>,
    /// The version this replica is installing (0: none), from the moment the store may
    /// record it until this replica signs under it: not stale meanwhile.
    installing: std::sync::atomic::AtomicU64,
}

impl KeyringWatch {
    /// Marks the install of `version` on this replica as begun (0: ended).
    pub fn installing(&self, version: u64) {
        self.installing
            .store(version, std::sync::atomic::Ordering::SeqCst);
        if version == 0 {
            // The next check looks again at what the install left.
            let mut last = match self.last.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            *last = None;
        }
    }

    fn is_installing(&self, version: u64) -> bool {
        version != 0 && self.installing.load(std::sync::atomic::Ordering::SeqCst) == version
    }

    fn cached(&self, max_age: Duration) -> Option<Option<String>> {
        let last = match self.last.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, stale)| stale.clone())
    }

    /// Remembers the outcome; answers whether it changed (to log a change once).
    fn remember(&self, stale: Option<String>) -> bool {
        let mut last = match self.last.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let changed = last.as_ref().map(|(_, s)| s) != Some(&stale);
        *last = Some((Instant::now(), stale));
        changed
    }
}

/// Compares the data folder's keyring with the store's at start (see the module docs),
/// and tells the store which keyring this process signs under.
pub async fn at_start(state: &AppState) -> Result<(), ReplicaKeysError> {
    let mut ours = KeyringRecord::of(&state.keys());
    let dir = state.config.data_dir.display().to_string();
    let before = state.store.keyring_record().await?;
    if let Some(stored) = before.as_ref().filter(|s| s.version > ours.version) {
        // This replica stopped during its own install, after the store recorded it:
        // its keys/pending/ still hold the new keys; finish moving them.
        let finished = crate::domain::rotation::finish_recorded_install(
            &state.config.data_dir,
            stored,
            state.now(),
        )
        .map_err(|e| ReplicaKeysError::Refused(e.to_string()))?;
        if finished {
            let keys = datadir::load_keys(&state.config.data_dir)
                .map_err(|e| ReplicaKeysError::Refused(e.to_string()))?;
            state.set_keys(keys);
            ours = KeyringRecord::of(&state.keys());
        }
    }
    if let Some(stored) = &before {
        if ours.version > stored.version && !chains_from(&ours, stored, state) {
            return Err(ReplicaKeysError::Refused(format!(
                "this replica's keyring ({}, in {dir}/keyring.json) is not signed by the root of the database's keyring ({}): {dir} is another data folder. Give this replica a copy of the data folder (keyring.json and keys/, without offline/root.key) of the replicas already serving this database, or use another database",
                ours.describe(),
                stored.describe()
            )));
        }
    }
    let stored = state.store.advance_keyring(&ours).await?;
    if !stored.same_keyring(&ours) {
        let why = if stored.version > ours.version {
            "is newer: it was installed through another replica. Copy keyring.json and keys/ from the data folder of the replica that installed it"
        } else {
            "has the same version but other keys: this data folder belongs to another server. Copy keyring.json and keys/ from the data folder of the replicas already serving this database"
        };
        return Err(ReplicaKeysError::Refused(format!(
            "the database's keyring ({}) is not this replica's ({}, in {dir}/keyring.json) and {why} into {dir} (without offline/root.key), then start again; nothing was changed",
            stored.describe(),
            ours.describe(),
        )));
    }
    if before.as_ref().is_none_or(|b| b.version < ours.version) {
        tracing::info!(
            version = ours.version,
            "recorded this data folder's keyring in the store"
        );
    }
    state.store.expect_keyring(ours.version);
    state.keyring_watch.remember(None);
    Ok(())
}

/// Whether `ours` is signed by the root of `stored`, as a box holding `stored` would
/// check it (an expired keyring still chains; serving warns about expiry).
fn chains_from(ours: &KeyringRecord, stored: &KeyringRecord, state: &AppState) -> bool {
    let parse = |r: &KeyringRecord| {
        let path = std::path::Path::new("the keyring record");
        datadir::parse_keyring(r.envelope.as_bytes(), path).ok()
    };
    let (Some((envelope, _)), Some((_, old))) = (parse(ours), parse(stored)) else {
        return false;
    };
    match accept_keyring(&envelope, &old.root, None, state.now()) {
        Ok(_) | Err(KeyringError::Expired { .. }) => true,
        Err(_) => false,
    }
}

/// Whether this replica may sign: compares its keyring with the store's (at most once per
/// `max_age`), switching to the data folder's keyring when it now matches a newer one in
/// the store. Answers [`ReplicaKeysError::Stale`] while the folder lags. The sled store
/// has one process: always fine.
pub async fn check(state: &AppState, max_age: Duration) -> Result<(), ReplicaKeysError> {
    if state.store.postgres().is_none() {
        return Ok(());
    }
    let stale = |s: Option<String>| match s {
        None => Ok(()),
        Some(message) => Err(ReplicaKeysError::Stale(message)),
    };
    if let Some(s) = state.keyring_watch.cached(max_age) {
        return stale(s);
    }
    let _one = state.keyring_watch.one_at_a_time.lock().await;
    if let Some(s) = state.keyring_watch.cached(max_age) {
        return stale(s);
    }
    let Some(stored) = state.store.keyring_record().await? else {
        // Nothing recorded (a start on an older binary's database): record ours.
        state
            .store
            .advance_keyring(&KeyringRecord::of(&state.keys()))
            .await?;
        state.keyring_watch.remember(None);
        return Ok(());
    };
    if state.keyring_watch.is_installing(stored.version) {
        // This replica is installing it: it signs under it as soon as its files moved.
        return Ok(());
    }
    let ours = KeyringRecord::of(&state.keys());
    if stored.same_keyring(&ours) || ours.version > stored.version {
        // Ours newer: this replica is installing it (the record follows at once).
        state.keyring_watch.remember(None);
        return Ok(());
    }
    // The store's is newer: perhaps the folder has it now.
    let dir = &state.config.data_dir;
    // The key files the folder lacks when its keyring.json is the store's already (it
    // was copied, keys/ not yet): named in the log, so the operator knows what to copy.
    let mut missing = Vec::new();
    let switched = match datadir::load_keys(dir) {
        Ok(keys) if KeyringRecord::of(&keys).same_keyring(&stored) => {
            state.store.expect_keyring(stored.version);
            state.set_keys(keys);
            true
        }
        Ok(_) => false,
        Err(_) => {
            if let Ok((version, files)) = datadir::folder_missing_keys(dir) {
                if version == stored.version {
                    missing = files;
                }
            }
            false
        }
    };
    if switched {
        state.keyring_watch.remember(None);
        tracing::info!(
            version = stored.version,
            "switched to the keyring installed through another replica (found in the data folder)"
        );
        return Ok(());
    }
    let message = if missing.is_empty() {
        format!(
            "this replica signs under keyring {}, but the database's keyring is {}, installed through another replica: copy keyring.json and keys/ from that replica's data folder into {} (or share the folder); this replica switches to them by itself within seconds",
            ours.describe(),
            stored.describe(),
            dir.display()
        )
    } else {
        format!(
            "this replica signs under keyring {}, but the database's keyring is {}, installed through another replica: {}/keyring.json is that keyring already, but the data folder lacks {}: copy keys/ from that replica's data folder into {} too; this replica switches to them by itself within seconds",
            ours.describe(),
            stored.describe(),
            dir.display(),
            missing.join(", "),
            dir.display()
        )
    };
    if state.keyring_watch.remember(Some(message.clone())) {
        tracing::warn!(
            ours = ours.version,
            stored = stored.version,
            missing = %missing.join(", "),
            "{message}"
        );
    }
    stale(Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract_tests::keyring_record;
    use jiff::Timestamp;

    fn now() -> Timestamp {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    /// A data folder (sled) opened as a server would.
    fn server(dir: &std::path::Path) -> AppState {
        if !dir.join("keyring.json").exists() {
            datadir::init(dir, now()).unwrap();
        }
        datadir::open(
            crate::config::default_config(dir),
            crate::state::fixed_clock(now()),
        )
        .unwrap()
    }

    /// Writes a keyring of `version` (same keys) into `dir`, signed by its root key.
    fn bump_keyring(dir: &std::path::Path, version: u64) {
        let keys = datadir::load_keys(dir).unwrap();
        let root_text = std::fs::read_to_string(dir.join("offline/root.key")).unwrap();
        let root = np_common::SecretKey::from_base64(root_text.trim()).unwrap();
        let next = np_common::keyring::Keyring {
            version,
            ..keys.keyring.clone()
        };
        let envelope = next.sign(&[&root]);
        std::fs::write(dir.join("keyring.json"), envelope.to_json_pretty()).unwrap();
    }

    #[tokio::test]
    async fn a_start_records_its_keyring_and_refuses_another_or_an_older_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        // Nothing recorded: ours is.
        let state = server(&dir);
        at_start(&state).await.unwrap();
        let ours = KeyringRecord::of(&state.keys());
        assert_eq!(
            state.store.keyring_record().await.unwrap(),
            Some(ours.clone())
        );
        // Again: the same keyring passes and changes nothing.
        at_start(&state).await.unwrap();
        // Installed while alone (or before the record existed): ours, newer, is recorded.
        drop(state);
        bump_keyring(&dir, 2);
        let state = server(&dir);
        at_start(&state).await.unwrap();
        assert_eq!(
            state.store.keyring_record().await.unwrap().unwrap().version,
            2
        );
        // The store moved on (an install elsewhere): refused, naming both, nothing written.
        let newer = keyring_record(3, 4);
        state.store.advance_keyring(&newer).await.unwrap();
        let err = at_start(&state).await.unwrap_err().to_string();
        assert!(
            err.contains("version 3 (keys") && err.contains("version 2 (keys"),
            "{err}"
        );
        assert!(err.contains("installed through another replica"), "{err}");
        assert_eq!(state.store.keyring_record().await.unwrap(), Some(newer));
    }

    #[tokio::test]
    async fn another_folders_keyring_is_refused_whatever_its_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let state = server(&dir);
        // The store holds another server's version 1 (another root, other keys).
        let theirs = keyring_record(1, 2);
        state.store.advance_keyring(&theirs).await.unwrap();
        let err = at_start(&state).await.unwrap_err().to_string();
        assert!(err.contains("same version but other keys"), "{err}");
        // A higher version does not help: it is not signed by the store's root.
        drop(state);
        bump_keyring(&dir, 5);
        let state = server(&dir);
        let err = at_start(&state).await.unwrap_err().to_string();
        assert!(err.contains("is not signed by the root"), "{err}");
        assert_eq!(state.store.keyring_record().await.unwrap(), Some(theirs));
    }

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_replica_given_the_keyring_but_not_its_keys_names_the_missing_key_file() {
        let Some(db) = crate::store::contract_tests::TestDb::create().await else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let pg = crate::store::PgStore::connect(&db.url).await.unwrap();
        datadir::init_with_store(&a, &pg, now()).await.unwrap();
        copy_dir(&a, &b);
        let replica_b = datadir::open_with_store(
            crate::config::default_config(&b),
            crate::store::Store::Postgres(pg.clone()),
            crate::state::fixed_clock(now()),
        )
        .await
        .unwrap();
        at_start(&replica_b).await.unwrap();
        // Replica a installs version 2 with a new online key (as an install leaves it).
        let online = np_common::SecretKey::from_seed(&[7; 32]);
        let id = online.public_key().key_id();
        std::fs::write(a.join(format!("keys/{id}.key")), online.to_base64()).unwrap();
        let old = datadir::load_keys(&a).unwrap().keyring;
        let mut keys = old.keys.clone();
        keys.retain(|e| !e.roles.contains(&np_common::docs::Role::Entitlement));
        keys.push(np_common::keyring::KeyEntry {
            keyid: id.clone(),
            public_key: online.public_key(),
            roles: vec![
                np_common::docs::Role::Entitlement,
                np_common::docs::Role::Time,
            ],
        });
        let root_text = std::fs::read_to_string(a.join("offline/root.key")).unwrap();
        let root = np_common::SecretKey::from_base64(root_text.trim()).unwrap();
        let next = np_common::keyring::Keyring {
            version: 2,
            keys,
            ..old
        };
        std::fs::write(a.join("keyring.json"), next.sign(&[&root]).to_json_pretty()).unwrap();
        replica_b
            .store
            .advance_keyring(&KeyringRecord::of(&datadir::load_keys(&a).unwrap()))
            .await
            .unwrap();
        // b gets keyring.json alone: stale, and the sentence names the key file to copy.
        std::fs::copy(a.join("keyring.json"), b.join("keyring.json")).unwrap();
        let err = check(&replica_b, Duration::ZERO).await.unwrap_err();
        let m = err.to_string();
        assert!(matches!(err, ReplicaKeysError::Stale(_)), "{m}");
        assert!(
            m.contains(&format!("lacks keys/{id}.key (entitlement and time key)")),
            "{m}"
        );
        assert!(!m.contains(&online.to_base64()), "{m}");
        // Once keys/ follows, b switches by itself.
        copy_dir(&a.join("keys"), &b.join("keys"));
        check(&replica_b, Duration::ZERO).await.unwrap();
        assert_eq!(replica_b.keys().keyring.version, 2);
    }

    #[test]
    fn the_watch_remembers_for_its_interval_and_says_when_the_outcome_changes() {
        let w = KeyringWatch::default();
        assert_eq!(w.cached(RECHECK), None);
        assert!(w.remember(None));
        assert_eq!(w.cached(RECHECK), Some(None));
        assert!(!w.remember(None));
        assert!(w.remember(Some("stale".into())));
        assert_eq!(w.cached(RECHECK), Some(Some("stale".into())));
        assert_eq!(w.cached(Duration::ZERO), None);
    }
}
