//! Staff tokens. They live outside sled, in `DATA/tokens.json` (SHA-256 hashes only, never
//! the tokens), so that `np-server token create|list|revoke` works while `serve` holds the
//! store's lock. Writers take `DATA/tokens.lock` (created exclusively) and replace the file
//! atomically; the server re-reads it whenever its identity (inode, size, mtime) changes.

use crate::store::PgStore;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jiff::Timestamp;
use np_fsutil as fsutil;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

/// File name of the token list inside the data folder.
pub const TOKENS_FILE: &str = "tokens.json";
const LOCK_FILE: &str = "tokens.lock";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Everything, including tokens.
    Admin,
    /// Devices and warranties.
    Staff,
    /// Firmware releases.
    Release,
}

impl std::fmt::Display for TokenRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenRole::Admin => "admin",
            TokenRole::Staff => "staff",
            TokenRole::Release => "release",
        })
    }
}

/// One stored token: its name (the audit actor), role and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's name, shown in the audit log.
    pub name: String,
    /// What it may do.
    pub role: TokenRole,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Whether it was ever used (kept in the PostgreSQL store, where every replica
    /// reads it; the embedded store's folder has [`USED_MARKER`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub used: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenList {
    tokens: Vec<TokenRecord>,
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing the token file failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file does not parse.
    #[error("{path} is not a valid token list: {reason}; restore it from a backup")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// The name is not acceptable.
    #[error("token name {0:?} is not valid: use 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadName(String),
    /// The name is taken.
    #[error("a token named {0:?} exists already; revoke it first or choose another name")]
    NameTaken(String),
    /// No token has the name.
    #[error("no token is named {0:?}; `np-server token list` shows the names")]
    NoSuchName(String),
    /// The store (PostgreSQL) that keeps the tokens failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Another writer holds the lock for too long.
    #[error("{0} is held by another process; if none is running, delete it")]
    Locked(PathBuf),
}

/// SHA-256 (hex) of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TokenError {
    let path = path.to_path_buf();
    move |source| TokenError::Io { op, path, source }
}

fn read_list(path: &Path) -> Result<TokenList, TokenError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| TokenError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenList::default()),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Holds `tokens.lock` while alive.
struct LockGuard(PathBuf);

impl LockGuard {
    fn take(dir: &Path) -> Result<LockGuard, TokenError> {
        let path = dir.join(LOCK_FILE);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(LockGuard(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| SystemTime::now().duration_since(m).ok())
                        .is_some_and(|age| age > Duration::from_secs(60));
                    if stale {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() > deadline {
                        return Err(TokenError::Locked(path));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(io("create", &path)(e)),
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

/// Changes the token list under the lock and writes it back atomically.
fn update(
    dir: &Path,
    f: impl FnOnce(&mut TokenList) -> Result<(), TokenError>,
) -> Result<(), TokenError> {
    let _lock = LockGuard::take(dir)?;
    let path = dir.join(TOKENS_FILE);
    let mut list = read_list(&path)?;
    f(&mut list)?;
    let bytes = serde_json::to_vec_pretty(&list).unwrap_or_default();
    fsutil::write_atomic(&path, &bytes, fsutil::PRIVATE).map_err(io("write", &path))
}

/// Checks `name` and makes a new random token.
fn new_token(dir: &Path, name: &str) -> Result<String, TokenError> {
    if !valid_name(name) {
        return Err(TokenError::BadName(name.chars().take(80).collect()));
    }
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| TokenError::Io {
        op: "get random bytes for",
        path: dir.join(TOKENS_FILE),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(format!("npt_{}", URL_SAFE_NO_PAD.encode(raw)))
}

/// Creates a token in a PostgreSQL store (where tokens live when the server runs on one,
/// so that every replica knows it) and returns it (the only time it is shown).
pub async fn create_in(
    store: &PgStore,
    role: TokenRole,
    name: &str,
    now: Timestamp,
) -> Result<String, TokenError> {
    let token = new_token(Path::new(""), name)?;
    let record = TokenRecord {
        name: name.to_owned(),
        role,
        sha256: hash_token(&token),
        created_at: now,
        used: false,
    };
    if !store.insert_token(&record).await? {
        return Err(TokenError::NameTaken(name.to_owned()));
    }
    Ok(token)
}

/// Lists the tokens of a PostgreSQL store.
pub async fn list_in(store: &PgStore) -> Result<Vec<TokenRecord>, TokenError> {
    Ok(store.tokens().await?)
}

/// Revokes the token named `name` in a PostgreSQL store.
pub async fn revoke_in(store: &PgStore, name: &str) -> Result<(), TokenError> {
    if store.delete_token(name).await? {
        Ok(())
    } else {
        Err(TokenError::NoSuchName(name.to_owned()))
    }
}

/// Creates a token in the data folder `dir` and returns it (the only time it is shown).
pub fn create(
    dir: &Path,
    role: TokenRole,
    name: &str,
    now: Timestamp,
) -> Result<String, TokenError> {
    let token = new_token(dir, name)?;
    update(dir, |list| {
        if list.tokens.iter().any(|t| t.name == name) {
            return Err(TokenError::NameTaken(name.to_owned()));
        }
        list.tokens.push(TokenRecord {
            name: name.to_owned(),
            role,
            sha256: hash_token(&token),
            created_at: now,
            used: false,
        });
        Ok(())
    })?;
    Ok(token)
}

/// Lists the tokens (names, roles, creation times; hashes only).
pub fn list(dir: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    Ok(read_list(&dir.join(TOKENS_FILE))?.tokens)
}

/// Revokes the token named `name`.
pub fn revoke(dir: &Path, name: &str) -> Result<(), TokenError> {
    update(dir, |list| {
        let before = list.tokens.len();
        list.tokens.retain(|t| t.name != name);
        if list.tokens.len() == before {
            return Err(TokenError::NoSuchName(name.to_owned()));
        }
        Ok(())
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        inode,
        len: m.len(),
        modified: m.modified().ok(),
    })
}

/// A file created in the data folder the first time a staff token is used, so that a
/// server can tell at start whether anyone has a working token yet. With a PostgreSQL
/// store the token's record in the database says so instead (`used`), so that every
/// replica knows it.
pub const USED_MARKER: &str = "tokens-used";

/// Whether a staff token was ever used: on the data folder `dir`, or, with a PostgreSQL
/// store, on any replica of its database (a database that cannot answer counts as yes:
/// the hint is not worth a doubt).
pub async fn any_used(dir: &Path, store: Option<&PgStore>) -> bool {
    match store {
        Some(pg) => pg.any_token_used().await.unwrap_or(true),
        None => dir.join(USED_MARKER).exists(),
    }
}

/// The server's view of the tokens: `tokens.json`, re-read when the file changes, or the
/// PostgreSQL store's table, asked on every lookup (so a token made or revoked through
/// any replica counts at once on all).
#[derive(Debug)]
pub struct TokenCache {
    path: PathBuf,
    cached: RwLock<(Option<Stamp>, Vec<TokenRecord>)>,
    used: std::sync::atomic::AtomicBool,
    store: Option<PgStore>,
}

impl TokenCache {
    /// A cache of the token file of data folder `dir`.
    pub fn new(dir: &Path) -> TokenCache {
        TokenCache {
            path: dir.join(TOKENS_FILE),
            cached: RwLock::new((None, Vec::new())),
            used: std::sync::atomic::AtomicBool::new(false),
            store: None,
        }
    }

    /// The tokens of a PostgreSQL store (`dir` is the data folder, for the "used" mark).
    pub fn in_store(dir: &Path, store: PgStore) -> TokenCache {
        TokenCache {
            store: Some(store),
            ..TokenCache::new(dir)
        }
    }

    /// The token matching `token`, if any.
    pub async fn lookup(&self, token: &str) -> Result<Option<TokenRecord>, TokenError> {
        self.lookup_hash(&hash_token(token)).await
    }

    /// The token whose SHA-256 (hex) is `h`, if it is still listed (a console session
    /// keeps only the hash and re-checks it on every request).
    pub async fn lookup_hash(&self, h: &str) -> Result<Option<TokenRecord>, TokenError> {
        let found = match &self.store {
            Some(store) => store.token_by_hash(h).await?,
            None => self.lookup_file(h)?,
        };
        if found.is_some() && !self.used.swap(true, std::sync::atomic::Ordering::Relaxed) {
            if let Some(store) = &self.store {
                if let Err(e) = store.mark_token_used(h).await {
                    tracing::warn!(error = %e, "cannot record that a token was used");
                }
            } else if let Some(dir) = self.path.parent() {
                let marker = dir.join(USED_MARKER);
                if !marker.exists() {
                    if let Err(e) = fsutil::write_atomic(&marker, b"", fsutil::PRIVATE) {
                        tracing::warn!(error = %e, "cannot record that a token was used");
                    }
                }
            }
        }
        Ok(found)
    }

    fn lookup_file(&self, h: &str) -> Result<Option<TokenRecord>, TokenError> {
        let now = stamp(&self.path);
        let fresh = self
            .cached
            .read()
            .map(|c| c.0.is_some() && c.0 == now)
            .unwrap_or(false);
        if !fresh {
            let list = read_list(&self.path)?;
            if let Ok(mut c) = self.cached.write() {
                *c = (now, list.tokens);
            }
        }
        let found = self
            .cached
            .read()
            .ok()
            .and_then(|c| c.1.iter().find(|t| t.sha256 == h).cloned());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_lookup_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let cache = TokenCache::new(dir.path());
        assert_eq!(cache.lookup("nope").await.unwrap(), None);
        let t = create(dir.path(), TokenRole::Staff, "alice", now).unwrap();
        assert!(!std::fs::read_to_string(dir.path().join(TOKENS_FILE))
            .unwrap()
            .contains(&t));
        assert_eq!(
            cache.lookup(&t).await.unwrap().unwrap().role,
            TokenRole::Staff
        );
        assert!(matches!(
            create(dir.path(), TokenRole::Admin, "alice", now),
            Err(TokenError::NameTaken(_))
        ));
        assert!(matches!(
            create(dir.path(), TokenRole::Admin, "a b", now),
            Err(TokenError::BadName(_))
        ));
        revoke(dir.path(), "alice").unwrap();
        assert_eq!(cache.lookup(&t).await.unwrap(), None);
        assert!(matches!(
            revoke(dir.path(), "alice"),
            Err(TokenError::NoSuchName(_))
        ));
        assert!(!dir.path().join(LOCK_FILE).exists());
    }
}
