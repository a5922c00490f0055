//! The data folder: `init` creates it, `open` loads it into an [`AppState`].
//!
//! Layout: `store/` (sled), `keys/online.key` and `keys/release.key` (0600),
//! `offline/root.key` (0600, to be moved offline), `root.pub`, `keyring.json` (the
//! root-signed keyring envelope) and `tokens.json` (token hashes).

use crate::state::{AppState, Clock, Config, ServerKeys};
use crate::store::{PgStore, SledStore, Store, StoreError};
use crate::tokens::{self, TokenCache, TokenError, TokenRole};
use jiff::{Timestamp, ToSpan as _};
use np_common::docs::Role;
use np_common::keyring::{KeyEntry, Keyring, RootSpec};
use np_common::{Envelope, SecretKey};
use np_fsutil as fsutil;
use std::path::{Path, PathBuf};

/// How long the first keyring is valid.
pub const KEYRING_LIFETIME_DAYS: i64 = 730;

/// Why the data folder cannot be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The folder exists and is not empty.
    #[error(
        "{0} exists and is not empty; init never overwrites a data folder: choose a new folder"
    )]
    Exists(PathBuf),
    /// The folder is not an initialized data folder.
    #[error(
        "{0} is not an np-server data folder (no keyring.json); run `np-server init --data {0}`"
    )]
    NotInitialized(PathBuf),
    /// A file could not be read or written.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A stored file is invalid.
    #[error("{path} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A new data folder was asked for on a database that already holds records.
    #[error("the database already holds records ({0}), made with another data folder's keys: give this server a copy of that folder (without offline/root.key) instead of a new one, or use an empty database")]
    StoreInUse(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The token file failed.
    #[error(transparent)]
    Token(#[from] TokenError),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.to_path_buf();
    move |source| DataError::Io { op, path, source }
}

/// What `init` prints.
#[derive(Debug, Clone)]
pub struct InitOutput {
    /// The first admin token (shown once).
    pub admin_token: String,
    /// The root public key, base64.
    pub root_public_key: String,
}

fn new_key(path: &Path) -> Result<SecretKey, DataError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| DataError::Io {
        op: "get random bytes for",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let key = SecretKey::from_seed(&seed);
    fsutil::write_atomic(path, key.to_base64().as_bytes(), fsutil::PRIVATE)
        .map_err(io("write", path))?;
    Ok(key)
}

/// True when `dir` is missing or an empty folder.
pub fn is_fresh(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The file that says a data folder's records live in PostgreSQL (copied with the folder
/// to every replica): `postgres` on its first line, the database's URL without its
/// password on the second.
pub const STORE_MARKER: &str = "store-kind";

/// The URL (without password) named by the data folder's [`STORE_MARKER`], when its
/// records live in PostgreSQL.
pub fn store_marker(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(STORE_MARKER)).ok()?;
    let mut lines = text.lines();
    (lines.next()?.trim() == "postgres").then(|| lines.next().unwrap_or("").trim().to_owned())
}

/// Writes the data folder's [`STORE_MARKER`] for the PostgreSQL store at `shown_url`
/// (a URL without its password).
pub fn write_store_marker(dir: &Path, shown_url: &str) -> Result<(), DataError> {
    let path = dir.join(STORE_MARKER);
    fsutil::write_atomic(
        &path,
        format!("postgres\n{shown_url}\n").as_bytes(),
        fsutil::PUBLIC_READ,
    )
    .map_err(|source| DataError::Io {
        op: "write",
        path: path.clone(),
        source,
    })
}

/// Refuses a data folder whose records live in PostgreSQL ([`STORE_MARKER`]) when no store
/// URL was given: `what` would otherwise work on an empty embedded store beside it.
pub fn require_store_url(dir: &Path, url: Option<&str>, what: &str) -> Result<(), String> {
    match (store_marker(dir), url) {
        (Some(shown), None) => Err(format!(
            "the data folder {} keeps its records in PostgreSQL ({shown}; see {}/{STORE_MARKER}), but no store URL was given: pass --store-file FILE (or --store URL), set NP_STORE_URL, or set [store] url in the config file; {what} refuses to use an empty embedded store instead",
            dir.display(),
            dir.display()
        )),
        _ => Ok(()),
    }
}

/// Creates a data folder: keys, the signed keyring, the store and a first admin token.
pub fn init(dir: &Path, now: Timestamp) -> Result<InitOutput, DataError> {
    let root_public_key = init_keys(dir, now)?;
    let store = SledStore::open(&dir.join("store"))?;
    store.db.flush().map_err(StoreError::from)?;
    drop(store);
    let admin_token = tokens::create(dir, TokenRole::Admin, "admin", now)?;
    Ok(InitOutput {
        admin_token,
        root_public_key,
    })
}

/// Creates the data folder `dir` for a server on the PostgreSQL store `store`: the keys
/// and keyring in the folder, the first admin token in the database (where every replica
/// finds it). The database must hold no token yet.
pub async fn init_with_store(
    dir: &Path,
    store: &PgStore,
    now: Timestamp,
) -> Result<InitOutput, DataError> {
    if !is_fresh(dir) {
        return Err(DataError::Exists(dir.to_path_buf()));
    }
    let held: Vec<String> = store
        .counts()
        .await?
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    if !held.is_empty() {
        return Err(DataError::StoreInUse(held.join(", ")));
    }
    let root_public_key = init_keys(dir, now)?;
    write_store_marker(dir, &store.shown_url())?;
    let admin_token = tokens::create_in(store, TokenRole::Admin, "admin", now).await?;
    Ok(InitOutput {
        admin_token,
        root_public_key,
    })
}

/// Creates the folder, its keys and the root-signed keyring; answers the root public key
/// (base64).
fn init_keys(dir: &Path, now: Timestamp) -> Result<String, DataError> {
    if !is_fresh(dir) {
        return Err(DataError::Exists(dir.to_path_buf()));
    }
    for sub in [dir.to_path_buf(), dir.join("keys"), dir.join("offline")] {
        fsutil::create_dir_all(&sub, fsutil::PRIVATE_DIR).map_err(io("create", &sub))?;
    }
    let root = new_key(&dir.join("offline/root.key"))?;
    let online = new_key(&dir.join("keys/online.key"))?;
    let release = new_key(&dir.join("keys/release.key"))?;
    let entry = |k: &SecretKey, roles: Vec<Role>| KeyEntry {
        keyid: k.public_key().key_id(),
        public_key: k.public_key(),
        roles,
    };
    let keyring = Keyring {
        version: 1,
        expires: now
            .checked_add((KEYRING_LIFETIME_DAYS * 24).hours())
            .unwrap_or(now),
        root: RootSpec::pinned(vec![root.public_key()]),
        keys: vec![
            entry(&online, vec![Role::Entitlement, Role::Time]),
            entry(&release, vec![Role::Release]),
        ],
    };
    let envelope = keyring.sign(&[&root]);
    let kr_path = dir.join("keyring.json");
    fsutil::write_atomic(
        &kr_path,
        envelope.to_json_pretty().as_bytes(),
        fsutil::PRIVATE,
    )
    .map_err(io("write", &kr_path))?;
    let root_b64 = root.public_key().to_base64();
    let pub_path = dir.join("root.pub");
    fsutil::write_atomic(
        &pub_path,
        format!("{root_b64}\n").as_bytes(),
        fsutil::PUBLIC_READ,
    )
    .map_err(io("write", &pub_path))?;
    Ok(root_b64)
}

fn read_key(path: &Path) -> Result<SecretKey, DataError> {
    let text = std::fs::read_to_string(path).map_err(io("read", path))?;
    SecretKey::from_base64(&text).map_err(|e| DataError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The private keys in `dir` (files `*.key`), by public key.
pub fn read_private_keys(dir: &Path) -> Result<Vec<SecretKey>, DataError> {
    let mut keys = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(io("read", dir)(e)),
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let p = entry.map_err(io("read", dir))?.path();
        if p.extension().is_some_and(|e| e == "key") && p.is_file() {
            paths.push(p);
        }
    }
    paths.sort();
    for p in paths {
        keys.push(read_key(&p)?);
    }
    Ok(keys)
}

/// Parses a stored keyring envelope.
pub fn parse_keyring(bytes: &[u8], path: &Path) -> Result<(Envelope, Keyring), DataError> {
    let invalid = |reason: String| DataError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let envelope = Envelope::parse(bytes).map_err(|e| invalid(e.to_string()))?;
    let payload = envelope
        .payload_bytes()
        .map_err(|e| invalid(e.to_string()))?;
    let keyring: Keyring = serde_json::from_slice(&payload).map_err(|e| invalid(e.to_string()))?;
    Ok((envelope, keyring))
}

/// Picks, for each role, a held private key that the keyring gives that role.
pub fn server_keys(
    keyring_envelope: Envelope,
    keyring: Keyring,
    held: &[SecretKey],
) -> Result<ServerKeys, Role> {
    let pick = |role: Role| {
        held.iter()
            .find(|k| keyring.keys_with_role(role).any(|p| *p == k.public_key()))
            .cloned()
            .ok_or(role)
    };
    Ok(ServerKeys {
        entitlement: pick(Role::Entitlement)?,
        time: pick(Role::Time)?,
        release: pick(Role::Release)?,
        keyring_envelope,
        keyring,
    })
}

/// Loads the keyring of an initialized data folder and, for each role, the private key in
/// `keys/` that the keyring gives that role.
pub fn load_keys(dir: &Path) -> Result<ServerKeys, DataError> {
    let kr_path = dir.join("keyring.json");
    if !kr_path.exists() {
        return Err(DataError::NotInitialized(dir.to_path_buf()));
    }
    let bytes = std::fs::read(&kr_path).map_err(io("read", &kr_path))?;
    let (keyring_envelope, keyring) = parse_keyring(&bytes, &kr_path)?;
    let keys_dir = dir.join("keys");
    let held = read_private_keys(&keys_dir)?;
    let missing = missing_key_files(&keyring, &held).join(", ");
    server_keys(keyring_envelope, keyring, &held).map_err(|role| DataError::Invalid {
        path: keys_dir,
        reason: format!(
            "no private key there holds the role {role} in keyring.json (missing: {missing}); restore the key files of the installed keyring"
        ),
    })
}

/// The key files the data folder lacks for `keyring`, given the private keys it `held`:
/// for each key of an online role that none of them matches, `keys/<key id>.key` (the
/// name a keyring install gives it) and its roles. Names only, never a key's content.
pub fn missing_key_files(keyring: &Keyring, held: &[SecretKey]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for role in [Role::Entitlement, Role::Time, Role::Release] {
        if held
            .iter()
            .any(|k| keyring.keys_with_role(role).any(|p| *p == k.public_key()))
        {
            continue;
        }
        for entry in keyring.keys.iter().filter(|e| e.roles.contains(&role)) {
            let roles: Vec<String> = entry.roles.iter().map(ToString::to_string).collect();
            let line = format!("keys/{}.key ({} key)", entry.keyid, roles.join(" and "));
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

/// The key files the data folder `dir` lacks for the keyring in its `keyring.json`, with
/// that keyring's version (see [`missing_key_files`]); empty when it holds them all.
pub fn folder_missing_keys(dir: &Path) -> Result<(u64, Vec<String>), DataError> {
    let kr_path = dir.join("keyring.json");
    let bytes = std::fs::read(&kr_path).map_err(io("read", &kr_path))?;
    let (_, keyring) = parse_keyring(&bytes, &kr_path)?;
    let held = read_private_keys(&dir.join("keys"))?;
    Ok((keyring.version, missing_key_files(&keyring, &held)))
}

/// Opens an initialized data folder (holding sled's lock until the state is dropped).
pub fn open(config: Config, clock: Clock) -> Result<AppState, DataError> {
    let dir = config.data_dir.clone();
    let keys = load_keys(&dir)?;
    let sled = SledStore::open(&dir.join("store"))?;
    let tokens = TokenCache::new(&dir);
    let state = AppState::new(Store::Sled(sled.clone()), keys, config, tokens, clock);
    for (version, serial, mark) in sled.tally_marks()? {
        state.tallies.load(version, serial, mark);
    }
    Ok(state)
}

/// Opens an initialized data folder whose records live in `store` (tokens too, when it
/// is PostgreSQL).
pub async fn open_with_store(
    config: Config,
    store: Store,
    clock: Clock,
) -> Result<AppState, DataError> {
    let dir = config.data_dir.clone();
    let keys = load_keys(&dir)?;
    let tokens = match store.postgres() {
        Some(pg) => TokenCache::in_store(&dir, pg.clone()),
        None => TokenCache::new(&dir),
    };
    let state = AppState::new(store, keys, config, tokens, clock);
    for (version, serial, mark) in state.store.tally_marks().await? {
        state.tallies.load(version, serial, mark);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use np_common::keyring::accept_keyring;

    #[test]
    fn a_folder_marked_postgres_needs_a_store_url() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert_eq!(store_marker(dir), None);
        require_store_url(dir, None, "serve").unwrap();
        write_store_marker(dir, "postgres://np@db:5432/fleet").unwrap();
        assert_eq!(
            store_marker(dir).as_deref(),
            Some("postgres://np@db:5432/fleet")
        );
        let err = require_store_url(dir, None, "token").unwrap_err();
        for needed in [
            "postgres://np@db:5432/fleet",
            "--store",
            "NP_STORE_URL",
            "[store] url",
            "token refuses",
        ] {
            assert!(err.contains(needed), "{needed}: {err}");
        }
        require_store_url(dir, Some("postgres://np@db/fleet"), "serve").unwrap();
    }

    #[test]
    fn init_creates_a_verifiable_keyring_and_refuses_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let now: Timestamp = "2026-11-23T00:00:00Z".parse().unwrap();
        let out = init(&dir, now).unwrap();
        let keys = load_keys(&dir).unwrap();
        let root = np_common::PublicKey::from_base64(&out.root_public_key).unwrap();
        let accepted = accept_keyring(
            &keys.keyring_envelope,
            &RootSpec::pinned(vec![root]),
            None,
            now,
        )
        .unwrap();
        assert_eq!(accepted.keyring.version, 1);
        assert!(accepted.keyring.expires > now.checked_add(700 * 24.hours()).unwrap());
        assert!(matches!(init(&dir, now), Err(DataError::Exists(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for k in [
                "offline/root.key",
                "keys/online.key",
                "keys/release.key",
                "keyring.json",
                "tokens.json",
            ] {
                let mode = std::fs::metadata(dir.join(k)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{k}");
            }
        }
        assert!(matches!(
            load_keys(tmp.path()),
            Err(DataError::NotInitialized(_))
        ));
    }
}
