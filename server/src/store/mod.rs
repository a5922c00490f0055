//! The server's storage: the only code that knows how records are kept. Routes and the
//! registry talk to [`Store`] methods in domain terms (devices, audit entries, ...); a
//! `Store` is either the embedded sled store ([`SledStore`], one process, the default) or
//! PostgreSQL ([`PgStore`], several replicas on one database). Both keep the same
//! promises, checked by one contract suite (`contract_tests.rs`) run against each.
//!
//! Architecture Invariant: a write is durable before its method returns (sled: flushed;
//! PostgreSQL: committed), so an answer sent after a write survives `kill -9`. A
//! read-modify-write of a record and its audit entries is one transaction (sled: a
//! transaction retried on conflict; PostgreSQL: the rows locked with `FOR UPDATE`), so
//! parallel changes, from one process or several replicas, never lose an update.

mod audit;
mod cases;
#[cfg(test)]
pub(crate) mod contract_tests;
mod devices;
mod keyring;
mod nonces;
mod pg_connect;
pub mod postgres;
mod receipts;
mod releases;
mod reports;
mod tallies;

pub use audit::{AuditEntry, AuditPage, AUDIT_ACTIONS};
pub use cases::{CaseChange, CaseChanged, CasePage};
pub use devices::{Change, DevicePage, MutateError};
pub use keyring::KeyringRecord;
pub use nonces::NonceCheck;
pub use pg_connect::shown_url;
pub use postgres::PgStore;
pub use receipts::{last_result_of, ReceiptFiled, StoredReceipt};
pub use releases::{AuditSnapshots, Halt, ReleaseChangeError, ReleaseRecord};
pub use reports::{DeviceReport, EventRecord};

use crate::domain::case::{CaseId, CaseRecord};
use crate::domain::device::DeviceRecord;
use crate::domain::guard::Mark;
use jiff::Timestamp;
use np_common::docs::Status;
use np_common::{Serial, Version};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A failure of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption detected by sled).
    #[error("the store failed: {0}")]
    Sled(#[from] sled::Error),
    /// PostgreSQL cannot be reached (or did not answer in time): the request may be
    /// retried once it is back.
    #[error("the database cannot be reached: {0}")]
    Unavailable(String),
    /// PostgreSQL refused a statement.
    #[error("the database failed: {0}")]
    Postgres(String),
    /// PostgreSQL cannot be reached or refuses us at start (`url` has no password).
    #[error("cannot connect to the PostgreSQL store at {url}: {reason}; check {check}")]
    Connect {
        /// The URL without its password.
        url: String,
        /// What went wrong, in a few words.
        reason: String,
        /// What to check.
        check: String,
    },
    /// The database's keyring is newer than the one this replica signs under.
    #[error("this replica signs under keyring version {ours}, but the database's keyring is version {stored}, installed through another replica: copy keyring.json and keys/ from that replica's data folder into this one's (or share the folder); this replica switches to them by itself within seconds")]
    KeyringStale {
        /// The version this replica signs under.
        ours: u64,
        /// The version the database records.
        stored: u64,
    },
    /// The database has a newer schema than this binary knows.
    #[error("the database's schema is version {found}, newer than version {known} that this np-server knows; run a newer np-server (replicas of different versions must not share a database)")]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// The newest version this binary knows.
        known: i64,
    },
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
        match e {
            StoreError::Unavailable(_) => crate::http::error::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the server's database cannot be reached; try again shortly",
            ),
            StoreError::KeyringStale { .. } => crate::http::error::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "keyring_stale",
                crate::domain::replica_keys::STALE_SHORT,
            ),
            other => crate::http::error::ApiError::internal(other),
        }
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

/// The store the server runs on: embedded sled or PostgreSQL. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Store {
    /// The embedded sled store in the data folder.
    Sled(SledStore),
    /// A PostgreSQL database, possibly shared by several replicas.
    Postgres(PgStore),
}

impl Store {
    /// Opens (or creates) the sled store in `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store::Sled(SledStore::open(path)?))
    }

    /// Connects to PostgreSQL at `url`, applying missing migrations (under an advisory
    /// lock) and refusing a database of a newer schema.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Ok(Store::Postgres(PgStore::connect(url).await?))
    }

    /// The PostgreSQL store, when that is what runs (tokens live there then).
    pub fn postgres(&self) -> Option<&PgStore> {
        match self {
            Store::Sled(_) => None,
            Store::Postgres(p) => Some(p),
        }
    }

    /// Whether the store answers (for `/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sled(_) => Ok(()),
            Store::Postgres(p) => p.ping().await,
        }
    }

    /// The device with this serial, if registered.
    pub async fn device(&self, serial: &Serial) -> Result<Option<DeviceRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.device(serial),
            Store::Postgres(p) => p.device(serial).await,
        }
    }

    /// Up to `limit` devices after serial `after` (ordered by serial), keeping those
    /// `keep` accepts.
    pub async fn list_devices(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&DeviceRecord) -> bool,
    ) -> Result<DevicePage, StoreError> {
        match self {
            Store::Sled(s) => s.list_devices(after, limit, keep),
            Store::Postgres(p) => p.list_devices(after, limit, keep).await,
        }
    }

    /// How many devices have each status.
    pub async fn device_counts(&self) -> Result<[(Status, u64); 3], StoreError> {
        match self {
            Store::Sled(s) => s.device_counts(),
            Store::Postgres(p) => p.device_counts().await,
        }
    }

    /// Reads the records of `serials` (None where unregistered), lets `f` change them in
    /// memory, and writes back what changed, with one audit entry per changed serial
    /// (when `change.actor` is set), all in one transaction (`f` may run more than once:
    /// a conflict is retried). Returns the records as written.
    pub async fn mutate_devices<E, F>(
        &self,
        serials: &[Serial],
        change: &Change<'_>,
        f: F,
    ) -> Result<Vec<Option<DeviceRecord>>, MutateError<E>>
    where
        F: Fn(&mut [Option<DeviceRecord>]) -> Result<(), E>,
    {
        match self {
            Store::Sled(s) => s.mutate_devices(serials, change, f).await,
            Store::Postgres(p) => p.mutate_devices(serials, change, f).await,
        }
    }

    /// Appends an audit entry not tied to a device change (for example a release).
    pub async fn append_audit(
        &self,
        at: Timestamp,
        actor: &str,
        action: &str,
        serial: Option<&str>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<AuditEntry, StoreError> {
        match self {
            Store::Sled(s) => {
                s.append_audit(at, actor, action, serial, before, after)
                    .await
            }
            Store::Postgres(p) => {
                p.append_audit(at, actor, action, serial, before, after)
                    .await
            }
        }
    }

    /// Up to `limit` audit entries after id `after`, oldest first, of one serial or of all.
    pub async fn audit_entries(
        &self,
        serial: Option<&str>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        match self {
            Store::Sled(s) => s.audit_entries(serial, after, limit),
            Store::Postgres(p) => p.audit_entries(serial, after, limit).await,
        }
    }

    /// Up to `limit` entries older than id `before`, newest first, of one serial or of
    /// all, keeping those `keep` accepts; stops at the first entry `stop` says is too old.
    pub async fn audit_entries_newest(
        &self,
        serial: Option<&str>,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&AuditEntry) -> bool,
        stop: impl Fn(&AuditEntry) -> bool,
    ) -> Result<AuditPage, StoreError> {
        match self {
            Store::Sled(s) => s.audit_entries_newest(serial, before, limit, keep, stop),
            Store::Postgres(p) => {
                p.audit_entries_newest(serial, before, limit, keep, stop)
                    .await
            }
        }
    }

    /// Records `nonce` of `serial` until `expires`, unless it is already there and not
    /// expired at `now` (a replay, whichever replica saw it first).
    pub async fn remember_nonce(
        &self,
        serial: &Serial,
        nonce: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<NonceCheck, StoreError> {
        match self {
            Store::Sled(s) => s.remember_nonce(serial, nonce, expires, now).await,
            Store::Postgres(p) => p.remember_nonce(serial, nonce, expires, now).await,
        }
    }

    /// Drops every expired nonce of every box; answers how many live ones are left.
    pub async fn sweep_nonces(&self, now: Timestamp) -> Result<usize, StoreError> {
        match self {
            Store::Sled(s) => s.sweep_nonces(now),
            Store::Postgres(p) => p.sweep_nonces(now).await,
        }
    }

    /// Every release, newest version first.
    pub async fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.releases(),
            Store::Postgres(p) => p.releases().await,
        }
    }

    /// The release with this version, if any.
    pub async fn release(&self, version: &Version) -> Result<Option<ReleaseRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.release(version),
            Store::Postgres(p) => p.release(version).await,
        }
    }

    /// Stores a new release and its audit entry in one transaction; `false` when that
    /// version exists already (nothing written).
    pub async fn insert_release(
        &self,
        record: &ReleaseRecord,
        change: &Change<'_>,
        after: serde_json::Value,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sled(s) => s.insert_release(record, change, after).await,
            Store::Postgres(p) => p.insert_release(record, change, after).await,
        }
    }

    /// Changes the release `version` with `f` in one transaction and returns the record
    /// before and after.
    pub async fn update_release<E, F>(
        &self,
        version: &Version,
        f: F,
    ) -> Result<(ReleaseRecord, ReleaseRecord), ReleaseChangeError<E>>
    where
        F: Fn(&mut ReleaseRecord) -> Result<(), E>,
    {
        match self {
            Store::Sled(s) => s.update_release(version, f).await,
            Store::Postgres(p) => p.update_release(version, f).await,
        }
    }

    /// The box's last report (empty when it never checked in).
    pub async fn device_report(&self, serial: &Serial) -> Result<DeviceReport, StoreError> {
        match self {
            Store::Sled(s) => s.device_report(serial),
            Store::Postgres(p) => p.device_report(serial).await,
        }
    }

    /// Changes the box's report with `f` atomically and returns it.
    pub async fn update_device_report(
        &self,
        serial: &Serial,
        f: impl Fn(&mut DeviceReport),
    ) -> Result<DeviceReport, StoreError> {
        match self {
            Store::Sled(s) => s.update_device_report(serial, f).await,
            Store::Postgres(p) => p.update_device_report(serial, f).await,
        }
    }

    /// Appends an event of the box and drops its oldest events beyond the newest `keep`;
    /// answers how many were dropped.
    pub async fn append_device_event(
        &self,
        serial: &Serial,
        event: &EventRecord,
        keep: usize,
    ) -> Result<usize, StoreError> {
        match self {
            Store::Sled(s) => s.append_device_event(serial, event, keep).await,
            Store::Postgres(p) => p.append_device_event(serial, event, keep).await,
        }
    }

    /// The box's newest `limit` events, newest first.
    pub async fn device_events(
        &self,
        serial: &Serial,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.device_events(serial, limit),
            Store::Postgres(p) => p.device_events(serial, limit).await,
        }
    }

    /// Like [`Store::update_release`], and when `change.actor` is set, appends in the same
    /// transaction its audit entry, whose snapshots `audit` gives.
    pub async fn update_release_audited<E, F, A>(
        &self,
        version: &Version,
        change: &Change<'_>,
        f: F,
        audit: A,
    ) -> Result<(ReleaseRecord, ReleaseRecord), ReleaseChangeError<E>>
    where
        F: Fn(&mut ReleaseRecord) -> Result<(), E>,
        A: Fn(&ReleaseRecord, &ReleaseRecord) -> AuditSnapshots,
    {
        match self {
            Store::Sled(s) => s.update_release_audited(version, change, f, audit).await,
            Store::Postgres(p) => p.update_release_audited(version, change, f, audit).await,
        }
    }

    /// Stores a verified receipt once; when it is the box's newest, the record's running
    /// version and last result follow it. With `actor`, the change is audited (action
    /// `receipt`). Events past the newest `keep_events` of the box are dropped after.
    /// `Ok(None)` when the box is not registered.
    pub async fn file_receipt(
        &self,
        stored: &StoredReceipt,
        actor: Option<&str>,
        keep_events: usize,
    ) -> Result<Option<ReceiptFiled>, StoreError> {
        match self {
            Store::Sled(s) => s.file_receipt(stored, actor, keep_events).await,
            Store::Postgres(p) => p.file_receipt(stored, actor, keep_events).await,
        }
    }

    /// The receipt `seq` of the box, if held.
    pub async fn receipt(
        &self,
        serial: &Serial,
        seq: u64,
    ) -> Result<Option<StoredReceipt>, StoreError> {
        match self {
            Store::Sled(s) => s.receipt(serial, seq),
            Store::Postgres(p) => p.receipt(serial, seq).await,
        }
    }

    /// The box's newest `limit` receipts, newest (highest seq) first.
    pub async fn device_receipts(
        &self,
        serial: &Serial,
        limit: usize,
    ) -> Result<Vec<StoredReceipt>, StoreError> {
        match self {
            Store::Sled(s) => s.device_receipts(serial, limit),
            Store::Postgres(p) => p.device_receipts(serial, limit).await,
        }
    }

    /// Stores the box's mark for the release and answers the mark as stored: on
    /// PostgreSQL, joined with one another replica stored meanwhile.
    pub async fn put_tally_mark(
        &self,
        version: &Version,
        serial: &Serial,
        mark: &Mark,
    ) -> Result<Mark, StoreError> {
        match self {
            Store::Sled(s) => {
                s.put_tally_mark(version, serial, mark).await?;
                Ok(*mark)
            }
            Store::Postgres(p) => p.put_tally_mark(version, serial, mark).await,
        }
    }

    /// Every stored mark of the rollout guard (read at start).
    pub async fn tally_marks(&self) -> Result<Vec<(Version, Serial, Mark)>, StoreError> {
        match self {
            Store::Sled(s) => s.tally_marks(),
            Store::Postgres(p) => p.tally_marks().await,
        }
    }

    /// The support case with this id, if any.
    pub async fn case(&self, id: CaseId) -> Result<Option<CaseRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.case(id),
            Store::Postgres(p) => p.case(id).await,
        }
    }

    /// Up to `limit` cases older than `before` (of the box `serial`, or of all), newest
    /// first, keeping those `keep` accepts (filters on status or `overdue` go there).
    pub async fn list_cases(
        &self,
        serial: Option<&Serial>,
        before: Option<CaseId>,
        limit: usize,
        keep: impl Fn(&CaseRecord) -> bool,
    ) -> Result<CasePage, StoreError> {
        match self {
            Store::Sled(s) => s.list_cases(serial, before, limit, keep),
            Store::Postgres(p) => p.list_cases(serial, before, limit, keep).await,
        }
    }

    /// Opens a case for `serial`: `f` sees the box's record (None when unregistered,
    /// read under its row lock) and the new case's id, and builds the case or refuses.
    /// The case and its audit entry (`change.action`) are one transaction.
    pub async fn open_case<E, F>(
        &self,
        serial: &Serial,
        change: &CaseChange<'_>,
        f: F,
    ) -> Result<CaseRecord, MutateError<E>>
    where
        F: Fn(CaseId, Option<&DeviceRecord>) -> Result<CaseRecord, E>,
    {
        match self {
            Store::Sled(s) => s.open_case(serial, change, f).await,
            Store::Postgres(p) => p.open_case(serial, change, f).await,
        }
    }

    /// Changes case `id` and the devices `serials` together (the case's row locked, then
    /// the devices' in serial order): `f` changes them in memory or refuses (and may run
    /// more than once); the case, the changed devices and one audit entry for each are
    /// one transaction. `Ok(None)` when there is no such case.
    pub async fn mutate_case<E, F>(
        &self,
        id: CaseId,
        serials: &[Serial],
        change: &CaseChange<'_>,
        f: F,
    ) -> Result<Option<CaseChanged>, MutateError<E>>
    where
        F: Fn(&mut CaseRecord, &mut [Option<DeviceRecord>]) -> Result<(), E>,
    {
        match self {
            Store::Sled(s) => s.mutate_case(id, serials, change, f).await,
            Store::Postgres(p) => p.mutate_case(id, serials, change, f).await,
        }
    }

    /// How many registered boxes report running each version.
    pub async fn install_counts(&self) -> Result<HashMap<Version, u64>, StoreError> {
        match self {
            Store::Sled(s) => s.install_counts(),
            Store::Postgres(p) => p.install_counts().await,
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

/// The sled-backed store (the default: embedded, one process).
#[derive(Debug, Clone)]
pub struct SledStore {
    pub(crate) db: sled::Db,
    devices: sled::Tree,
    audit: sled::Tree,
    audit_by_serial: sled::Tree,
    cases: sled::Tree,
    cases_by_serial: sled::Tree,
    case_counter: sled::Tree,
    flushes: Arc<FlushState>,
    nonce_count: Arc<AtomicU64>,
}

impl SledStore {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|source| open_error(path, source))?;
        Ok(SledStore {
            devices: db.open_tree("devices")?,
            audit: db.open_tree("audit")?,
            audit_by_serial: db.open_tree("audit_by_serial")?,
            cases: db.open_tree("cases")?,
            cases_by_serial: db.open_tree("cases_by_serial")?,
            case_counter: db.open_tree("case_counter")?,
            flushes: Arc::default(),
            nonce_count: Arc::default(),
            db,
        })
    }

    /// How many devices are registered (a quick count, for the start-up checks).
    pub fn device_count(&self) -> usize {
        self.devices.len()
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

    #[test]
    fn a_store_held_by_another_opener_is_explained_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        let err = SledStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("another np-server"), "{text}");
        assert!(!text.contains("Os {"), "{text}");
    }
}
