//! Key rotation and keyring renewal. The root key stays offline; the server makes the
//! next keyring as a draft ([`draft`]: version + 1, new private keys for the rotated roles,
//! kept in `keys/pending/` and unused), an operator signs it offline with the root keys, and
//! [`install`] takes the signed envelope: it is checked as an agent checks a keyring
//! (`np_common::keyring::accept_keyring` against the installed keyring's root), its version
//! must be higher, and every key it lists must be one the server holds. Then the store
//! records the new keyring with its `keyring_install` audit entry in one transaction (the
//! commit point: other replicas stop signing with the old keys,
//! `crate::domain::replica_keys`; an install refused there changes nothing in the data
//! folder), the new keys move into `keys/`, the rotated-out ones into `keys/retired/`,
//! `keyring.json` is replaced, the server signs with the new keys, and [`resign_audited`]
//! re-signs every release manifest, entitlement and pending action and writes a
//! `keyring_resign` audit entry. Meanwhile a route that hands out a stored entitlement
//! re-signs a stale one on the spot ([`refresh_device`], [`fresh_device`]). A start after
//! a crash between the record and the file moves finishes them
//! ([`finish_recorded_install`]) and re-signs what is stale.
//! A draft's new private keys exist only in the data folder of the replica that made it,
//! so the install goes through that replica.
//!
//! Architecture Invariant: a document the server hands out always verifies under the keyring
//! it hands out: after an install, and at every start (a crash between the keyring write and
//! the re-signing is repaired by `resign(.., Only::Stale)`).

use crate::datadir::{self, DataError};
use crate::domain::device::DeviceRecord;
use crate::state::{AppState, ServerKeys};
use crate::store::{Change, KeyringRecord, StoreError};
use jiff::{Timestamp, ToSpan as _};
use np_common::docs::{self, Action, Entitlement, Release, Role};
use np_common::keyring::{accept_keyring, KeyEntry, Keyring, KeyringError, RootSpec};
use np_common::{Envelope, KeyId, PublicKey, SecretKey, Serial};
use np_fsutil as fsutil;
use std::path::Path;

/// How many devices are re-signed per store transaction.
const RESIGN_BATCH: usize = 200;

/// Why a draft or an install was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// `expires` is not a date or time.
    #[error("expires {0:?} is not a date (2028-12-31) or an RFC 3339 time")]
    BadExpires(String),
    /// `expires` is not in the future.
    #[error("expires {0} is not in the future")]
    ExpiresPast(Timestamp),
    /// A root key is not base64 of 32 bytes.
    #[error("root key {0:?} is not standard base64 of a 32-byte Ed25519 public key")]
    BadRootKey(String),
    /// The root threshold cannot be met.
    #[error("a root threshold of {threshold} is impossible with {keys} root keys")]
    BadThreshold {
        /// The threshold asked for.
        threshold: u32,
        /// How many root keys were given.
        keys: usize,
    },
    /// The envelope is not a keyring an agent would accept.
    #[error("the keyring is refused as a box would refuse it: {0}")]
    Refused(#[from] KeyringError),
    /// The version is not above the installed one.
    #[error("keyring version {got} is not newer than the installed version {installed}; make a new draft")]
    NotNewer {
        /// The installed version.
        installed: u64,
        /// The version given.
        got: u64,
    },
    /// The keyring lists a key whose private half this server does not hold.
    #[error("the keyring lists key {0}, whose private key is not in this server's data folder (keys/ or keys/pending/): a draft's new private keys stay in the data folder of the replica that made the draft, so install the keyring through that same replica (or first copy that replica's keys/pending/ into this one's data folder)")]
    UnknownKey(KeyId),
    /// The store already records a keyring of this version or newer (installed through
    /// another replica).
    #[error("the database already records keyring version {stored}, installed through another replica, so version {got} cannot be installed here; copy keyring.json and keys/ from that replica's data folder into this one's")]
    InstalledElsewhere {
        /// The version the store records.
        stored: u64,
        /// The version given.
        got: u64,
    },
    /// No key of the keyring holds a role the server signs with.
    #[error("no key of the keyring holds the role {0}; every role needs a key")]
    MissingRole(Role),
    /// A data folder file failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a draft is made from.
#[derive(Debug, Clone, Default)]
pub struct DraftSpec {
    /// The roles that get new keys.
    pub rotate: Vec<Role>,
    /// When the next keyring expires (`None`: [`datadir::KEYRING_LIFETIME_DAYS`] from now).
    pub expires: Option<String>,
    /// New root keys (a root rotation), base64.
    pub root_keys: Option<Vec<String>>,
    /// The new root's threshold (default 1).
    pub root_threshold: Option<u32>,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.to_path_buf();
    move |source| DataError::Io { op, path, source }
}

fn parse_expires(s: &str) -> Result<Timestamp, RotationError> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let d: jiff::civil::Date = s
        .parse()
        .map_err(|_| RotationError::BadExpires(s.chars().take(40).collect()))?;
    d.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|_| RotationError::BadExpires(s.to_owned()))
}

fn new_secret() -> Result<SecretKey, DataError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| DataError::Io {
        op: "get random bytes for",
        path: "a new key".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(SecretKey::from_seed(&seed))
}

fn key_file(dir: &Path, id: &KeyId) -> std::path::PathBuf {
    dir.join(format!("{id}.key"))
}

/// Makes the next keyring: version + 1, a new key for the rotated roles of each key (the
/// private keys go to `keys/pending/`), the given or a new expiry, and the given root.
/// Nothing the server signs with changes.
pub async fn draft(
    state: &AppState,
    spec: &DraftSpec,
    now: Timestamp,
) -> Result<Keyring, RotationError> {
    let _one = state.rotation.lock().await;
    let current = state.keys().keyring.clone();
    let expires = match &spec.expires {
        Some(s) => parse_expires(s)?,
        None => now
            .checked_add((datadir::KEYRING_LIFETIME_DAYS * 24).hours())
            .unwrap_or(now),
    };
    if expires <= now {
        return Err(RotationError::ExpiresPast(expires));
    }
    let root = match &spec.root_keys {
        None => current.root.clone(),
        Some(keys) => {
            let keys = keys
                .iter()
                .map(|k| {
                    PublicKey::from_base64(k.trim())
                        .map_err(|_| RotationError::BadRootKey(k.chars().take(60).collect()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let threshold = spec.root_threshold.unwrap_or(1);
            if threshold == 0 || threshold as usize > keys.len() {
                return Err(RotationError::BadThreshold {
                    threshold,
                    keys: keys.len(),
                });
            }
            RootSpec { threshold, keys }
        }
    };
    let pending = state.config.data_dir.join("keys/pending");
    fsutil::create_dir_all(&pending, fsutil::PRIVATE_DIR).map_err(io("create", &pending))?;
    let mut entries = Vec::new();
    for old in &current.keys {
        let (rotated, kept): (Vec<Role>, Vec<Role>) =
            old.roles.iter().partition(|r| spec.rotate.contains(r));
        if !kept.is_empty() {
            entries.push(KeyEntry {
                roles: kept,
                ..old.clone()
            });
        }
        if !rotated.is_empty() {
            let key = new_secret()?;
            let public_key = key.public_key();
            let path = key_file(&pending, &public_key.key_id());
            fsutil::write_atomic(&path, key.to_base64().as_bytes(), fsutil::PRIVATE)
                .map_err(io("write", &path))?;
            entries.push(KeyEntry {
                keyid: public_key.key_id(),
                public_key,
                roles: rotated,
            });
        }
    }
    Ok(Keyring {
        version: current.version + 1,
        expires,
        root,
        keys: entries,
    })
}

/// What an install changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Installed {
    /// The installed keyring version.
    pub version: u64,
    /// The version it replaced.
    pub previous: u64,
    /// Key ids that left the keyring.
    pub retired: Vec<KeyId>,
    /// Key ids that joined it.
    pub added: Vec<KeyId>,
    /// Release manifests re-signed.
    pub releases_resigned: usize,
    /// Devices whose entitlement (and pending action) were re-signed.
    pub devices_resigned: usize,
}

/// Installs a root-signed keyring made from a draft of this server (see the module docs).
pub async fn install(
    state: &AppState,
    envelope: &Envelope,
    actor: &str,
    now: Timestamp,
) -> Result<Installed, RotationError> {
    let _one = state.rotation.lock().await;
    let current = state.keys();
    let accepted = accept_keyring(envelope, &current.keyring.root, None, now)?;
    let next = accepted.keyring;
    if next.version <= current.keyring.version {
        return Err(RotationError::NotNewer {
            installed: current.keyring.version,
            got: next.version,
        });
    }
    let dir = &state.config.data_dir;
    let keys_dir = dir.join("keys");
    let pending_dir = keys_dir.join("pending");
    let held = datadir::read_private_keys(&keys_dir)?;
    let pending = datadir::read_private_keys(&pending_dir)?;
    let holds = |p: &PublicKey| held.iter().chain(&pending).any(|k| k.public_key() == *p);
    if let Some(k) = next.keys.iter().find(|k| !holds(&k.public_key)) {
        return Err(RotationError::UnknownKey(k.keyid.clone()));
    }
    let all: Vec<SecretKey> = held.iter().chain(&pending).cloned().collect();
    let keys = datadir::server_keys(envelope.clone(), next.clone(), &all)
        .map_err(RotationError::MissingRole)?;
    let record = KeyringRecord::of(&keys);
    if let Some(stored) = state.store.keyring_record().await? {
        if stored.version >= next.version && !stored.same_keyring(&record) {
            return Err(RotationError::InstalledElsewhere {
                stored: stored.version,
                got: next.version,
            });
        }
    }
    let in_next = |p: &PublicKey| next.keys.iter().any(|k| k.public_key == *p);
    let retired: Vec<KeyId> = held
        .iter()
        .map(SecretKey::public_key)
        .filter(|p| !in_next(p))
        .map(|p| p.key_id())
        .collect();
    let added: Vec<KeyId> = next
        .keys
        .iter()
        .filter(|k| {
            !current
                .keyring
                .keys
                .iter()
                .any(|c| c.public_key == k.public_key)
        })
        .map(|k| k.keyid.clone())
        .collect();

    // Commit point: the store records the new keyring with its audit entry, in one
    // transaction, before any file of the data folder moves, so that an install refused
    // there (another replica won) changes nothing here. From then on every replica's
    // signing writes see it; writes signed with the old keys are re-signed below (and a
    // stale entitlement on the way to a box is re-signed on the spot: [`fresh_device`]).
    // This replica's own writes pass from here on (it is installing this version).
    state.keyring_watch.installing(next.version);
    state.store.expect_keyring(next.version);
    let audit = crate::store::AuditEntry {
        id: 0,
        at: now,
        actor: actor.to_owned(),
        action: "keyring_install".to_owned(),
        serial: None,
        before: Some(
            serde_json::json!({"version": current.keyring.version, "keyring": current.keyring}),
        ),
        after: Some(serde_json::json!({
            "version": next.version, "keyring": next, "added": added, "retired": retired
        })),
    };
    let stored = match state.store.advance_keyring_audited(&record, &audit).await {
        Ok(s) => s,
        Err(e) => {
            state.store.expect_keyring(current.keyring.version);
            state.keyring_watch.installing(0);
            return Err(e.into());
        }
    };
    if !stored.same_keyring(&record) {
        state.store.expect_keyring(current.keyring.version);
        state.keyring_watch.installing(0);
        return Err(RotationError::InstalledElsewhere {
            stored: stored.version,
            got: next.version,
        });
    }
    tracing::info!(
        version = next.version,
        actor,
        "keyring recorded in the store; moving the keys in the data folder"
    );
    let moved = commit_files(dir, envelope, &next, &held, &pending);
    if let Err(e) = moved {
        // Recorded, but this folder does not hold it whole: sign nothing until it does
        // (a retry of the install, or the next start, finishes it).
        state.store.expect_keyring(current.keyring.version);
        state.keyring_watch.installing(0);
        return Err(e.into());
    }
    state.set_keys(keys);
    state.keyring_watch.installing(0);
    let (releases_resigned, devices_resigned) =
        resign_audited(state, Only::All, actor, now).await?;
    let done = Installed {
        version: next.version,
        previous: current.keyring.version,
        retired,
        added,
        releases_resigned,
        devices_resigned,
    };
    tracing::info!(version = done.version, actor, "keyring installed");
    Ok(done)
}

/// Moves the keys of an install in the data folder: the new keys into `keys/`, the
/// rotated-out ones into `keys/retired/`, then `keyring.json`; then the old files of
/// retired keys and every pending key go.
fn commit_files(
    dir: &Path,
    envelope: &Envelope,
    next: &Keyring,
    held: &[SecretKey],
    pending: &[SecretKey],
) -> Result<(), DataError> {
    let keys_dir = dir.join("keys");
    let pending_dir = keys_dir.join("pending");
    let in_next = |p: &PublicKey| next.keys.iter().any(|k| k.public_key == *p);
    for k in pending.iter().filter(|k| in_next(&k.public_key())) {
        let path = key_file(&keys_dir, &k.public_key().key_id());
        fsutil::write_atomic(&path, k.to_base64().as_bytes(), fsutil::PRIVATE)
            .map_err(io("write", &path))?;
    }
    let retired_dir = keys_dir.join("retired");
    for k in held.iter().filter(|k| !in_next(&k.public_key())) {
        let id = k.public_key().key_id();
        fsutil::create_dir_all(&retired_dir, fsutil::PRIVATE_DIR)
            .map_err(io("create", &retired_dir))?;
        let path = key_file(&retired_dir, &id);
        fsutil::write_atomic(&path, k.to_base64().as_bytes(), fsutil::PRIVATE)
            .map_err(io("write", &path))?;
    }
    let kr_path = dir.join("keyring.json");
    fsutil::write_atomic(
        &kr_path,
        envelope.to_json_pretty().as_bytes(),
        fsutil::PRIVATE,
    )
    .map_err(io("write", &kr_path))?;
    remove_key_files(&keys_dir, |p| !in_next(p))?;
    remove_key_files(&pending_dir, |_| true)
}

/// Finishes, in the data folder, an install the store records but the folder does not
/// hold yet (the process stopped between the two): when every key of the recorded
/// keyring is in `keys/` or `keys/pending/` and the keyring chains from the folder's
/// root, the files are moved as the install would have. Answers whether it did.
pub fn finish_recorded_install(
    dir: &Path,
    stored: &KeyringRecord,
    now: Timestamp,
) -> Result<bool, RotationError> {
    let Ok((envelope, _)) =
        datadir::parse_keyring(stored.envelope.as_bytes(), Path::new("the keyring record"))
    else {
        return Ok(false);
    };
    let current = datadir::load_keys(dir)?;
    let next = match accept_keyring(&envelope, &current.keyring.root, None, now) {
        Ok(a) => a.keyring,
        Err(_) => return Ok(false),
    };
    if next.version <= current.keyring.version {
        return Ok(false);
    }
    let keys_dir = dir.join("keys");
    let held = datadir::read_private_keys(&keys_dir)?;
    let pending = datadir::read_private_keys(&keys_dir.join("pending"))?;
    let holds = |p: &PublicKey| held.iter().chain(&pending).any(|k| k.public_key() == *p);
    if !next.keys.iter().all(|k| holds(&k.public_key)) {
        return Ok(false);
    }
    commit_files(dir, &envelope, &next, &held, &pending)?;
    tracing::warn!(
        version = next.version,
        "finished moving the keys of the keyring install the store records (the server stopped during it)"
    );
    Ok(true)
}

/// Removes the `*.key` files in `dir` whose public key `gone` selects (by reading them).
fn remove_key_files(dir: &Path, gone: impl Fn(&PublicKey) -> bool) -> Result<(), DataError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("read", dir)(e)),
    };
    for entry in entries {
        let p = entry.map_err(io("read", dir))?.path();
        if !(p.extension().is_some_and(|e| e == "key") && p.is_file()) {
            continue;
        }
        let text = std::fs::read_to_string(&p).map_err(io("read", &p))?;
        if SecretKey::from_base64(text.trim()).is_ok_and(|k| gone(&k.public_key())) {
            std::fs::remove_file(&p).map_err(io("remove", &p))?;
        }
    }
    fsutil::sync_dir(dir).map_err(io("sync", dir))
}

/// Which documents [`resign`] re-signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// Every one (after an install).
    All,
    /// Those that do not verify under the current keyring (at start).
    Stale,
}

fn device_is_stale(d: &DeviceRecord, keyring: &Keyring) -> bool {
    docs::verify::<Entitlement>(&d.entitlement, keyring).is_err()
        || [&d.pending_action, &d.pending_diagnostics]
            .into_iter()
            .flatten()
            .any(|p| docs::verify::<Action>(&p.envelope, keyring).is_err())
}

/// Re-signs a device's entitlement (reissued with the current keys, `sequence` bumped)
/// and its pending actions (every field kept, the case of a diagnostics action too).
fn resign_device(d: &mut DeviceRecord, keys: &ServerKeys, now: Timestamp) {
    d.reissue(&keys.entitlement, now);
    let serial = d.serial.clone();
    for p in [&mut d.pending_action, &mut d.pending_diagnostics]
        .into_iter()
        .flatten()
    {
        p.resign(&serial, &keys.entitlement);
    }
}

/// Re-signs `d` as [`resign`] does when it does not verify under `keys` (a keyring
/// install is re-signing the fleet and has not reached it yet); answers whether it did.
/// Called under the device's row lock by the routes that hand a stored entitlement out.
pub fn refresh_device(d: &mut DeviceRecord, keys: &ServerKeys, now: Timestamp) -> bool {
    if !device_is_stale(d, &keys.keyring) {
        return false;
    }
    resign_device(d, keys, now);
    true
}

/// `device` as it may be handed out: when its entitlement or pending actions do not
/// verify under the installed keyring (an install is re-signing the fleet), they are
/// re-signed on the spot under the device's row lock, and the stored record answered.
pub async fn fresh_device(
    state: &AppState,
    device: DeviceRecord,
) -> Result<DeviceRecord, StoreError> {
    let keys = state.keys();
    if !device_is_stale(&device, &keys.keyring) {
        return Ok(device);
    }
    let now = state.now();
    let change = Change {
        actor: None,
        action: "keyring_resign",
        at: now,
    };
    let serial = device.serial.clone();
    let written = state
        .store
        .mutate_devices(std::slice::from_ref(&serial), &change, |recs| {
            for d in recs.iter_mut().flatten() {
                refresh_device(d, &keys, now);
            }
            Ok::<(), StoreError>(())
        })
        .await
        .map_err(|e| e.into_inner())?;
    Ok(written.into_iter().next().flatten().unwrap_or(device))
}

/// [`resign`], then (after an install) a second pass for anything signed with the old
/// keys while the first ran, and a `keyring_resign` audit entry naming the counts (at a
/// start, only when something was re-signed: the repair of an interrupted install).
pub async fn resign_audited(
    state: &AppState,
    only: Only,
    actor: &str,
    now: Timestamp,
) -> Result<(usize, usize), RotationError> {
    let version = state.keys().keyring.version;
    tracing::info!(
        version,
        ?only,
        "re-signing documents under the installed keyring"
    );
    let (mut releases, mut devices) = resign(state, only, now).await?;
    if only == Only::All {
        let (r, d) = resign(state, Only::Stale, now).await?;
        releases += r;
        devices += d;
    }
    if only == Only::All || releases + devices > 0 {
        state
            .store
            .append_audit(
                now,
                actor,
                "keyring_resign",
                None,
                None,
                Some(serde_json::json!({
                    "version": version,
                    "releases_resigned": releases,
                    "devices_resigned": devices,
                    "after": if only == Only::All { "install" } else { "start" },
                })),
            )
            .await?;
    }
    tracing::info!(
        version,
        releases,
        devices,
        "re-signed documents under the installed keyring"
    );
    Ok((releases, devices))
}

/// For the end-to-end tests only: `NP_TEST_RESIGN_PAUSE_MS` makes the re-signing after an
/// install pause that long before each batch of devices (a fleet large enough to take a
/// while, without registering one).
fn test_pause(only: Only) -> Option<std::time::Duration> {
    if only != Only::All {
        return None;
    }
    let ms: u64 = std::env::var("NP_TEST_RESIGN_PAUSE_MS")
        .ok()?
        .parse()
        .ok()?;
    Some(std::time::Duration::from_millis(ms.min(60_000)))
}

/// Re-signs release manifests and device entitlements (bumping `sequence`) and pending
/// actions with the current keys; answers how many releases and devices changed.
pub async fn resign(
    state: &AppState,
    only: Only,
    now: Timestamp,
) -> Result<(usize, usize), RotationError> {
    let keys = state.keys();
    let mut releases = 0;
    for r in state.store.releases().await? {
        if only == Only::Stale && docs::verify::<Release>(&r.manifest, &keys.keyring).is_ok() {
            continue;
        }
        let changed = state
            .store
            .update_release(&r.release.version, |rec| {
                rec.manifest = docs::sign(&rec.release, &keys.release);
                Ok::<(), ()>(())
            })
            .await;
        match changed {
            Ok(_) => releases += 1,
            Err(crate::store::ReleaseChangeError::Store(e)) => return Err(e.into()),
            Err(_) => {}
        }
    }
    let change = Change {
        actor: None,
        action: "keyring_resign",
        at: now,
    };
    let mut devices = 0;
    let mut after: Option<String> = None;
    let pause = test_pause(only);
    loop {
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
        let page = state
            .store
            .list_devices(after.as_deref(), RESIGN_BATCH, |d| {
                only == Only::All || device_is_stale(d, &keys.keyring)
            })
            .await?;
        let serials: Vec<Serial> = page.devices.iter().map(|d| d.serial.clone()).collect();
        if !serials.is_empty() {
            state
                .store
                .mutate_devices(&serials, &change, |recs| {
                    for d in recs.iter_mut().flatten() {
                        resign_device(d, &keys, now);
                    }
                    Ok::<(), StoreError>(())
                })
                .await
                .map_err(|e| RotationError::Store(e.into_inner()))?;
            devices += serials.len();
        }
        match page.next_after {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    Ok((releases, devices))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn a_start_finishes_an_install_the_store_recorded_but_the_folder_did_not_hold() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        datadir::init(&dir, now()).unwrap();
        let state = datadir::open(
            crate::config::default_config(&dir),
            crate::state::fixed_clock(now()),
        )
        .unwrap();
        let spec = DraftSpec {
            rotate: vec![Role::Entitlement, Role::Time],
            ..DraftSpec::default()
        };
        let next = draft(&state, &spec, now()).await.unwrap();
        let root_text = std::fs::read_to_string(dir.join("offline/root.key")).unwrap();
        let root = SecretKey::from_base64(root_text.trim()).unwrap();
        let envelope = next.sign(&[&root]);
        let record = KeyringRecord {
            version: next.version,
            key_ids: next.keys.iter().map(|k| k.keyid.to_string()).collect(),
            envelope: String::from_utf8(envelope.to_json()).unwrap(),
        };
        drop(state);
        // A record whose keys this folder does not hold is left alone.
        let other = crate::store::contract_tests::keyring_record(2, 9);
        assert!(!finish_recorded_install(&dir, &other, now()).unwrap());
        assert_eq!(datadir::load_keys(&dir).unwrap().keyring.version, 1);
        // The store recorded this folder's draft: the start moves its keys.
        assert!(finish_recorded_install(&dir, &record, now()).unwrap());
        let keys = datadir::load_keys(&dir).unwrap();
        assert_eq!(keys.keyring.version, 2);
        assert_eq!(
            datadir::read_private_keys(&dir.join("keys/pending"))
                .unwrap()
                .len(),
            0
        );
        assert_eq!(
            datadir::read_private_keys(&dir.join("keys/retired"))
                .unwrap()
                .len(),
            1
        );
        // Done: a second call changes nothing.
        assert!(!finish_recorded_install(&dir, &record, now()).unwrap());
    }
}
