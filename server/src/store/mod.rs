//! The server's storage: the only code that knows sled's trees and key layout. Routes talk
//! to `Store` methods in domain terms (devices, audit entries, ...), so that another
//! backend (PostgreSQL) can replace sled later without touching them.
//!
//! Architecture Invariant: every write is flushed (a blocking `flush` off the async threads) before its method
//! returns, so an answer sent after a write survives `kill -9`. Read-modify-write of a
//! record goes through a sled transaction, so parallel changes never lose an update.

mod audit;
mod devices;
mod releases;
mod reports;

pub use audit::{AuditEntry, AuditPage};
pub use devices::{Change, DevicePage, MutateError};
pub use releases::{ReleaseChangeError, ReleaseRecord};
pub use reports::{DeviceReport, EventRecord};

use std::path::Path;

/// A failure of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption detected by sled).
    #[error("the store failed: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record does not parse.
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// The parse error.
        reason: String,
    },
    /// The store folder cannot be opened.
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// The folder.
        path: String,
        /// sled's error (often: another process holds its lock).
        source: sled::Error,
    },
}

impl From<StoreError> for crate::error::ApiError {
    fn from(e: StoreError) -> Self {
        crate::error::ApiError::internal(e)
    }
}

/// The sled-backed store.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: sled::Db,
    devices: sled::Tree,
    audit: sled::Tree,
    audit_by_serial: sled::Tree,
}

impl Store {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Store {
            devices: db.open_tree("devices")?,
            audit: db.open_tree("audit")?,
            audit_by_serial: db.open_tree("audit_by_serial")?,
            db,
        })
    }

    /// Flushes every buffered write to disk; call before answering a write.
    ///
    /// A blocking `flush` on tokio's blocking pool, not `flush_async`: sled 0.34's
    /// `flush_async` deadlocks under concurrent callers (sled issue 1308, fixed only on its
    /// unreleased main branch); the fleet load test hung the whole server with it.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| {
                StoreError::Sled(sled::Error::Io(std::io::Error::other(format!(
                    "the flush task failed: {e}"
                ))))
            })??;
        Ok(())
    }
}

/// Parses a stored JSON record, naming it on failure.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// Encodes a record as JSON for storage.
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}
