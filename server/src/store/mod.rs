//! The server's storage: the only code that knows sled's trees and key layout. Routes talk
//! to `Store` methods in domain terms (devices, audit entries, ...), so that another
//! backend (PostgreSQL) can replace sled later without touching them.
//!
//! Architecture Invariant: every write is flushed (`flush_async`) before its method
//! returns, so an answer sent after a write survives `kill -9`. Read-modify-write of a
//! record goes through a sled transaction, so parallel changes never lose an update.

mod audit;
mod devices;
mod nonces;
mod receipts;
mod releases;
mod reports;
mod tallies;

pub use audit::{AuditEntry, AuditPage, AUDIT_ACTIONS};
pub use devices::{Change, DevicePage, MutateError};
pub use nonces::NonceCheck;
pub use receipts::{last_result_of, ReceiptFiled, StoredReceipt};
pub use releases::{Halt, ReleaseChangeError, ReleaseRecord};
pub use reports::{DeviceReport, EventRecord};

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// The task running a flush died.
    #[error("the store's flush task failed: {0}")]
    FlushTask(String),
    /// Another process (another np-server on the same data folder) holds the store.
    #[error("the store at {path} is in use by another process, most likely another np-server started with the same data folder; stop that server, or give this one its own data folder")]
    Locked {
        /// The folder.
        path: String,
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

impl From<StoreError> for crate::http::error::ApiError {
    fn from(e: StoreError) -> Self {
        crate::http::error::ApiError::internal(e)
    }
}

/// Names the usual cause of a failed open: sled's lock, held by another process.
fn open_error(path: &Path, source: sled::Error) -> StoreError {
    let locked = matches!(&source, sled::Error::Io(e)
        if e.kind() == std::io::ErrorKind::WouldBlock
            || e.to_string().starts_with("could not acquire lock"));
    if locked {
        StoreError::Locked {
            path: path.display().to_string(),
        }
    } else {
        StoreError::Open {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Group commit: one flush at a time, and a flush covers every write acknowledged to
/// the store before it started, so waiting writers share it.
#[derive(Debug, Default)]
struct FlushState {
    lock: tokio::sync::Mutex<()>,
    requested: AtomicU64,
    done: AtomicU64,
}

/// The sled-backed store.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: sled::Db,
    devices: sled::Tree,
    audit: sled::Tree,
    audit_by_serial: sled::Tree,
    flushes: Arc<FlushState>,
    nonce_count: Arc<AtomicU64>,
}

impl Store {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|source| open_error(path, source))?;
        Ok(Store {
            devices: db.open_tree("devices")?,
            audit: db.open_tree("audit")?,
            audit_by_serial: db.open_tree("audit_by_serial")?,
            flushes: Arc::default(),
            nonce_count: Arc::default(),
            db,
        })
    }

    /// Makes every write done so far durable; call before answering a write.
    ///
    /// sled 0.34's `flush_async` deadlocks when polled concurrently (sled issue #1308),
    /// so this runs the blocking `flush` on the blocking pool, one at a time, and lets a
    /// writer whose write an earlier flush already covered return at once.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let f = &self.flushes;
        let ticket = f.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _one_at_a_time = f.lock.lock().await;
        if f.done.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let upto = f.requested.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::FlushTask(e.to_string()))??;
        f.done.store(upto, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::device::DeviceRecord;
    use jiff::civil::date;
    use np_common::warranty::initial_term;
    use np_common::{SecretKey, Serial};

    fn record(serial: &Serial, key: &SecretKey) -> DeviceRecord {
        let p = date(2026, 1, 1);
        let now = "2026-01-02T00:00:00Z".parse().unwrap();
        DeviceRecord::new(
            serial.clone(),
            serial.model(),
            "ACME".into(),
            p,
            vec![initial_term(p).unwrap()],
            None,
            key,
            now,
        )
    }

    #[tokio::test]
    async fn a_refused_change_writes_nothing_and_changes_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SecretKey::from_seed(&[1; 32]);
        let s = Serial::parse("NR-2000-123456-4").unwrap();
        let change = Change {
            actor: Some("alice"),
            action: "register",
            at: "2026-01-02T00:00:00Z".parse().unwrap(),
        };
        let refused = store
            .mutate_devices(std::slice::from_ref(&s), &change, |recs| {
                recs[0] = Some(record(&s, &key));
                Err("no")
            })
            .await;
        assert!(matches!(refused, Err(MutateError::Rejected("no"))));
        assert_eq!(store.device(&s).unwrap(), None);
        assert!(store
            .audit_entries(None, None, 10)
            .unwrap()
            .entries
            .is_empty());

        for _ in 0..3 {
            store
                .mutate_devices(std::slice::from_ref(&s), &change, |recs| {
                    let r = recs[0].get_or_insert_with(|| record(&s, &key));
                    r.reissue(&key, change.at);
                    Ok::<(), ()>(())
                })
                .await
                .unwrap();
        }
        // A change by the device API (no actor) is stored but not audited.
        let quiet = Change {
            actor: None,
            ..change.clone()
        };
        store
            .mutate_devices(std::slice::from_ref(&s), &quiet, |recs| {
                if let Some(r) = recs[0].as_mut() {
                    r.last_check_in = Some(quiet.at);
                }
                Ok::<(), ()>(())
            })
            .await
            .unwrap();
        assert_eq!(store.device(&s).unwrap().unwrap().sequence, 4);
        let p1 = store.audit_entries(Some(s.as_str()), None, 2).unwrap();
        assert_eq!(p1.entries.len(), 2);
        assert_eq!(p1.entries[0].before, None);
        let p2 = store
            .audit_entries(Some(s.as_str()), p1.next_after, 2)
            .unwrap();
        assert_eq!((p2.entries.len(), p2.next_after), (1, None));
        assert!(store
            .audit_entries(Some("NR-1000-000000-0"), None, 2)
            .unwrap()
            .entries
            .is_empty());
        assert_eq!(
            store.device_counts().unwrap()[0],
            (np_common::docs::Status::Active, 1)
        );
    }

    #[test]
    fn a_store_held_by_another_opener_is_explained_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("another np-server"), "{text}");
        assert!(!text.contains("Os {"), "{text}");
    }
}
