//! The PostgreSQL store: the same records as the sled store (as JSON text), in tables keyed
//! by serial, version or id, so that several replicas can share one database.
//!
//! - Every change and its audit entries are one transaction; a read-modify-write of devices,
//!   a release or a report locks the rows first (`SELECT ... FOR UPDATE`); a conflict that
//!   PostgreSQL reports anyway (two first inserts of one key, a deadlock) is retried.
//! - The schema is versioned by the embedded migrations in `migrations/`, applied at
//!   connect under an advisory lock (replicas starting together do not race); a database
//!   of a newer version than [`SCHEMA_VERSION`] is refused.
//! - Every operation is bounded by [`OP_TIMEOUT`]: an unreachable or silent database
//!   answers [`StoreError::Unavailable`] (503 `store_unavailable`) instead of hanging, and
//!   the pool drops dead connections, so service resumes by itself when it is back.

use super::receipts::event_kind as receipt_event_kind;
use super::AuditSnapshots;
use super::StoreError;
use super::{decode, encode, AuditEntry, AuditPage, Change, DevicePage, MutateError};
use super::{last_result_of, ReceiptFiled, StoredReceipt};
use super::{CaseChange, CaseChanged, CasePage};
use super::{DeviceReport, EventRecord, NonceCheck, ReleaseChangeError, ReleaseRecord};
use crate::domain::case::{CaseId, CaseRecord};
use crate::domain::device::DeviceRecord;
use crate::domain::guard::Mark;
use crate::tokens::TokenRecord;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use jiff::Timestamp;
use np_common::docs::Status;
use np_common::{Serial, Version};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// The embedded migrations, in order: (version, SQL).
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_receipts_tallies.sql")),
    (3, include_str!("migrations/0003_keyring.sql")),
    (4, include_str!("migrations/0004_cases.sql")),
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = 4;

/// The longest any store operation may take before it answers "unavailable".
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The advisory lock key held while migrations run ("np-migr").
const MIGRATION_LOCK: i64 = 0x006e_702d_6d69_6772;

/// How many times a transaction that lost a race is run again.
const RETRIES: usize = 20;

/// Rows read per round when a filter decides what is kept.
const BATCH: i64 = 500;

/// A pool of connections to one PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    nonce_count: Arc<AtomicU64>,
    /// The keyring version this process signs under (0: none, writes are not guarded).
    signs_under: Arc<AtomicU64>,
    /// The URL without its password.
    shown: Arc<str>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// Maps a driver error: no database answer at all, a lost connection, a server shutting
/// down or out of connections (SQLSTATE classes 08, 57, 53) mean "unavailable".
pub(super) fn pg(e: tokio_postgres::Error) -> StoreError {
    let transient = e.code().is_some_and(|c| {
        ["08", "57", "53"]
            .iter()
            .any(|class| c.code().starts_with(class))
    });
    if e.as_db_error().is_none() || transient {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Postgres(e.to_string())
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    )
}

/// Runs `fut` within [`OP_TIMEOUT`].
pub(super) async fn timed<T>(
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {} s",
            OP_TIMEOUT.as_secs()
        ))),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn limit_i64(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn audit_from_row(id: i64, text: &str) -> Result<AuditEntry, StoreError> {
    let mut e: AuditEntry = decode(&format!("audit entry {id}"), text.as_bytes())?;
    e.id = u64::try_from(id).unwrap_or_default();
    Ok(e)
}

fn text<T: serde::Serialize>(v: &T) -> String {
    String::from_utf8(encode(v)).unwrap_or_default()
}

/// Why one run of a transaction failed.
enum Fail<E> {
    Rejected(E),
    NotFound,
    Store(StoreError),
    Pg(tokio_postgres::Error),
}

impl<E> From<tokio_postgres::Error> for Fail<E> {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl<E> From<StoreError> for Fail<E> {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

/// Runs `once` until it does not fail with a retryable conflict, within [`OP_TIMEOUT`].
async fn with_retries<T, E, Fut>(mut once: impl FnMut() -> Fut) -> Result<T, Fail<E>>
where
    Fut: Future<Output = Result<T, Fail<E>>>,
{
    let run = async {
        let mut tries = 0;
        loop {
            tries += 1;
            match once().await {
                Err(Fail::Pg(e)) if retryable(&e) && tries < RETRIES => continue,
                Err(Fail::Pg(e)) => return Err(Fail::Store(pg(e))),
                other => return other,
            }
        }
    };
    match tokio::time::timeout(OP_TIMEOUT, run).await {
        Ok(r) => r,
        Err(_) => Err(Fail::Store(StoreError::Unavailable(format!(
            "no answer within {} s",
            OP_TIMEOUT.as_secs()
        )))),
    }
}

/// This build talks to PostgreSQL without TLS: a URL that asks for it (`sslmode=require`,
/// `verify-ca`, `verify-full`) is refused with a sentence saying so, rather than failing
/// later with a handshake error.
fn refuse_tls(url: &str) -> Result<(), StoreError> {
    let lower = url.to_ascii_lowercase();
    let asks = [
        "sslmode=require",
        "sslmode=verify-ca",
        "sslmode=verify-full",
    ]
    .iter()
    .any(|m| lower.contains(m));
    if asks {
        return Err(StoreError::Postgres(
            "the store URL asks for TLS (sslmode=require or verify-*), but TLS to PostgreSQL is not supported by this build; use a local socket/loopback, a private network or an stunnel/pgbouncer with TLS, and drop sslmode from the URL (or set sslmode=disable)".into(),
        ));
    }
    Ok(())
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL), applies missing migrations under an
    /// advisory lock, and refuses a database of a newer schema.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let store = PgStore::connect_only(url)?;
        super::pg_connect::first_contact(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// A pool for `url`, without touching the database yet.
    fn connect_only(url: &str) -> Result<PgStore, StoreError> {
        refuse_tls(url)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Postgres(format!(
                "the store URL is not a valid PostgreSQL URL ({e}); write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ))
        })?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(OP_TIMEOUT)
            .application_name("np-server");
        let shown = super::shown_url(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Postgres(format!("cannot make a connection pool: {e}")))?;
        Ok(PgStore {
            pool,
            nonce_count: Arc::default(),
            signs_under: Arc::default(),
            shown: shown.into(),
        })
    }

    /// The database's URL without its password.
    pub fn shown_url(&self) -> String {
        self.shown.to_string()
    }

    pub(super) async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg(e),
            other => StoreError::Unavailable(other.to_string()),
        })
    }

    /// The case with this id, if any.
    pub async fn case(&self, id: CaseId) -> Result<Option<CaseRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT record FROM cases WHERE number = $1",
                &[&to_i64(id.number())],
            )
            .await?;
        match rows.first() {
            Some(r) => Ok(Some(decode(
                &id.to_string(),
                r.get::<_, &str>(0).as_bytes(),
            )?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` cases older than `before` (of one box, or of all), newest first,
    /// keeping those `keep` accepts.
    pub async fn list_cases(
        &self,
        serial: Option<&Serial>,
        before: Option<CaseId>,
        limit: usize,
        keep: impl Fn(&CaseRecord) -> bool,
    ) -> Result<CasePage, StoreError> {
        let mut cursor = before.map_or(i64::MAX, |b| to_i64(b.number()));
        let serial = serial.map(Serial::as_str);
        let mut cases: Vec<CaseRecord> = Vec::new();
        loop {
            let rows = self
                .query(
                    "SELECT number, record FROM cases WHERE number < $1 AND ($2::text IS NULL OR serial = $2) ORDER BY number DESC LIMIT $3",
                    &[&cursor, &serial, &BATCH],
                )
                .await?;
            let full = rows.len() == BATCH as usize;
            for r in &rows {
                cursor = r.get(0);
                let c: CaseRecord =
                    decode(&format!("case {cursor}"), r.get::<_, &str>(1).as_bytes())?;
                if !keep(&c) {
                    continue;
                }
                if cases.len() == limit {
                    let next_before = cases.last().map(|c| c.id);
                    return Ok(CasePage { cases, next_before });
                }
                cases.push(c);
            }
            if !full {
                return Ok(CasePage {
                    cases,
                    next_before: None,
                });
            }
        }
    }

    /// See [`super::Store::open_case`]: the box's row is locked (`FOR UPDATE`) while the
    /// case is built, so a revocation cannot slip in between.
    pub async fn open_case<E, F>(
        &self,
        serial: &Serial,
        change: &CaseChange<'_>,
        f: F,
    ) -> Result<CaseRecord, MutateError<E>>
    where
        F: Fn(CaseId, Option<&DeviceRecord>) -> Result<CaseRecord, E>,
    {
        let f = &f;
        with_retries(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let rows = tx
                .query(
                    "SELECT record FROM devices WHERE serial = $1 FOR UPDATE",
                    &[&serial.as_str()],
                )
                .await?;
            let device: Option<DeviceRecord> = match rows.first() {
                Some(r) => Some(decode(serial.as_str(), r.get::<_, &str>(0).as_bytes())?),
                None => None,
            };
            let row = tx.query_one("SELECT nextval('case_numbers')", &[]).await?;
            let n: i64 = row.get(0);
            let id = CaseId::from_number(u64::try_from(n).unwrap_or_default());
            let case = f(id, device.as_ref()).map_err(Fail::Rejected)?;
            tx.execute(
                "INSERT INTO cases (number, serial, record) VALUES ($1, $2, $3)",
                &[&n, &case.serial.as_str(), &text(&case)],
            )
            .await?;
            insert_case_audit(&tx, change, change.action, &case, None, (None, None)).await?;
            tx.commit().await?;
            Ok(case)
        })
        .await
        .map_err(fail_to_mutate)
    }

    /// See [`super::Store::mutate_case`]: the case's row is locked first, then the
    /// devices' rows in serial order (every case change locks in that order, and device
    /// changes never lock a case, so they cannot deadlock).
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
        let f = &f;
        let result = with_retries(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let n = to_i64(id.number());
            let rows = tx
                .query("SELECT record FROM cases WHERE number = $1 FOR UPDATE", &[&n])
                .await?;
            let Some(row) = rows.first() else {
                return Err(Fail::NotFound);
            };
            let before_case: CaseRecord =
                decode(&id.to_string(), row.get::<_, &str>(0).as_bytes())?;
            let keys: Vec<&str> = serials.iter().map(Serial::as_str).collect();
            let rows = tx
                .query(
                    "SELECT serial, record FROM devices WHERE serial = ANY($1) ORDER BY serial FOR UPDATE",
                    &[&keys],
                )
                .await?;
            let mut found: HashMap<String, DeviceRecord> = HashMap::new();
            for r in &rows {
                let serial: &str = r.get(0);
                found.insert(
                    serial.to_owned(),
                    decode(serial, r.get::<_, &str>(1).as_bytes())?,
                );
            }
            let mut records: Vec<Option<DeviceRecord>> =
                serials.iter().map(|s| found.get(s.as_str()).cloned()).collect();
            let before = records.clone();
            let mut case = before_case.clone();
            f(&mut case, &mut records).map_err(Fail::Rejected)?;
            let case_changed = case != before_case;
            let mut merged: (Option<&DeviceRecord>, Option<&DeviceRecord>) = (None, None);
            for ((s, old), new) in serials.iter().zip(&before).zip(&records) {
                if old == new {
                    continue;
                }
                match (old, new) {
                    (None, Some(d)) => {
                        tx.execute(
                            "INSERT INTO devices (serial, record) VALUES ($1, $2)",
                            &[&s.as_str(), &text(d)],
                        )
                        .await?;
                    }
                    (Some(_), Some(d)) => {
                        tx.execute(
                            "UPDATE devices SET record = $2 WHERE serial = $1",
                            &[&s.as_str(), &text(d)],
                        )
                        .await?;
                    }
                    (_, None) => {
                        tx.execute("DELETE FROM devices WHERE serial = $1", &[&s.as_str()])
                            .await?;
                    }
                }
                if super::cases::merged_into_case(change, &case, case_changed, s) {
                    merged = (old.as_ref(), new.as_ref());
                    continue;
                }
                let entry = AuditEntry {
                    id: 0,
                    at: change.at,
                    actor: change.actor.to_owned(),
                    action: change.device_action.to_owned(),
                    serial: Some(s.to_string()),
                    before: old.as_ref().map(DeviceRecord::snapshot),
                    after: new.as_ref().map(DeviceRecord::snapshot),
                };
                tx.execute(
                    "INSERT INTO audit (serial, entry) VALUES ($1, $2)",
                    &[&s.as_str(), &text(&entry)],
                )
                .await?;
            }
            if case_changed {
                tx.execute(
                    "UPDATE cases SET record = $2 WHERE number = $1",
                    &[&n, &text(&case)],
                )
                .await?;
                insert_case_audit(
                    &tx,
                    change,
                    change.action,
                    &case,
                    Some(&before_case),
                    merged,
                )
                .await?;
            }
            tx.commit().await?;
            Ok(CaseChanged {
                case,
                devices: records,
            })
        })
        .await;
        match result {
            Ok(c) => Ok(Some(c)),
            Err(Fail::NotFound) => Ok(None),
            Err(e) => Err(fail_to_mutate(e)),
        }
    }

    /// Applies the migrations the database lacks (under an advisory lock, so replicas
    /// starting together apply each once); answers the schema version now in force.
    pub async fn migrate(&self) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        let result = apply_migrations(&mut client).await;
        let unlock = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg);
        let version = result?;
        unlock?;
        Ok(version)
    }

    /// See [`super::Store::expect_keyring`].
    pub(super) fn expect_keyring(&self, version: u64) {
        self.signs_under.store(version, Ordering::SeqCst);
    }

    /// Refuses a write that may sign when the recorded keyring is newer than the one this
    /// process signs under. The record's row stays share-locked until the transaction
    /// ends, so an install (which updates it) waits for the writes in flight, and every
    /// write after it sees the new version.
    async fn guard_keyring<E>(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<(), Fail<E>> {
        let ours = self.signs_under.load(Ordering::SeqCst);
        if ours == 0 {
            return Ok(());
        }
        let rows = tx
            .query(
                "SELECT version FROM installed_keyring WHERE id = 1 FOR SHARE",
                &[],
            )
            .await?;
        let stored = rows
            .first()
            .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or_default());
        if stored > ours {
            return Err(Fail::Store(StoreError::KeyringStale { ours, stored }));
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        timed(async {
            self.client()
                .await?
                .simple_query("SELECT 1")
                .await
                .map_err(pg)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        timed(async { self.client().await?.query(sql, params).await.map_err(pg) }).await
    }

    /// The device with this serial, if registered.
    pub async fn device(&self, serial: &Serial) -> Result<Option<DeviceRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT record FROM devices WHERE serial = $1",
                &[&serial.as_str()],
            )
            .await?;
        match rows.first() {
            Some(r) => Ok(Some(decode(
                serial.as_str(),
                r.get::<_, &str>(0).as_bytes(),
            )?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` devices after serial `after`, keeping those `keep` accepts.
    pub async fn list_devices(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&DeviceRecord) -> bool,
    ) -> Result<DevicePage, StoreError> {
        let mut cursor = after.unwrap_or("").to_owned();
        let mut devices: Vec<DeviceRecord> = Vec::new();
        loop {
            let rows = self
                .query(
                    "SELECT serial, record FROM devices WHERE serial > $1 ORDER BY serial LIMIT $2",
                    &[&cursor, &BATCH],
                )
                .await?;
            let full = rows.len() == BATCH as usize;
            for r in &rows {
                let serial: &str = r.get(0);
                cursor = serial.to_owned();
                let d: DeviceRecord = decode(serial, r.get::<_, &str>(1).as_bytes())?;
                if keep(&d) {
                    if devices.len() == limit {
                        let next_after = devices.last().map(|d| d.serial.to_string());
                        return Ok(DevicePage {
                            devices,
                            next_after,
                        });
                    }
                    devices.push(d);
                }
            }
            if !full {
                return Ok(DevicePage {
                    devices,
                    next_after: None,
                });
            }
        }
    }

    /// How many devices have each status.
    pub async fn device_counts(&self) -> Result<[(Status, u64); 3], StoreError> {
        let rows = self
            .query(
                "SELECT (record::jsonb)->>'status', count(*) FROM devices GROUP BY 1",
                &[],
            )
            .await?;
        let mut counts = [
            (Status::Active, 0),
            (Status::Revoked, 0),
            (Status::Replaced, 0),
        ];
        for r in &rows {
            let name: Option<String> = r.get(0);
            let n: i64 = r.get(1);
            let status: Status =
                serde_json::from_value(serde_json::Value::String(name.unwrap_or_default()))
                    .map_err(|e| StoreError::Corrupt {
                        what: "device status".into(),
                        reason: e.to_string(),
                    })?;
            for c in counts.iter_mut() {
                if c.0 == status {
                    c.1 += u64::try_from(n).unwrap_or_default();
                }
            }
        }
        Ok(counts)
    }

    /// See [`super::Store::mutate_devices`]: the rows are locked with `FOR UPDATE` (in
    /// serial order, so two changes of several boxes cannot deadlock), `f` runs once per
    /// attempt, and a lost race to insert a new serial runs it again.
    pub async fn mutate_devices<E, F>(
        &self,
        serials: &[Serial],
        change: &Change<'_>,
        f: F,
    ) -> Result<Vec<Option<DeviceRecord>>, MutateError<E>>
    where
        F: Fn(&mut [Option<DeviceRecord>]) -> Result<(), E>,
    {
        let f = &f;
        with_retries(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            self.guard_keyring(&tx).await?;
            let keys: Vec<&str> = serials.iter().map(Serial::as_str).collect();
            let rows = tx
                .query(
                    "SELECT serial, record FROM devices WHERE serial = ANY($1) ORDER BY serial FOR UPDATE",
                    &[&keys],
                )
                .await?;
            let mut found: HashMap<String, DeviceRecord> = HashMap::new();
            for r in &rows {
                let serial: &str = r.get(0);
                found.insert(
                    serial.to_owned(),
                    decode(serial, r.get::<_, &str>(1).as_bytes())?,
                );
            }
            let mut records: Vec<Option<DeviceRecord>> =
                serials.iter().map(|s| found.get(s.as_str()).cloned()).collect();
            let before = records.clone();
            f(&mut records).map_err(Fail::Rejected)?;
            for ((s, old), new) in serials.iter().zip(&before).zip(&records) {
                if old == new {
                    continue;
                }
                match (old, new) {
                    (None, Some(n)) => {
                        tx.execute(
                            "INSERT INTO devices (serial, record) VALUES ($1, $2)",
                            &[&s.as_str(), &text(n)],
                        )
                        .await?;
                    }
                    (Some(_), Some(n)) => {
                        tx.execute(
                            "UPDATE devices SET record = $2 WHERE serial = $1",
                            &[&s.as_str(), &text(n)],
                        )
                        .await?;
                    }
                    (_, None) => {
                        tx.execute("DELETE FROM devices WHERE serial = $1", &[&s.as_str()])
                            .await?;
                    }
                }
                if let Some(actor) = change.actor {
                    let entry = AuditEntry {
                        id: 0,
                        at: change.at,
                        actor: actor.to_owned(),
                        action: change.action.to_owned(),
                        serial: Some(s.to_string()),
                        before: old.as_ref().map(DeviceRecord::snapshot),
                        after: new.as_ref().map(DeviceRecord::snapshot),
                    };
                    tx.execute(
                        "INSERT INTO audit (serial, entry) VALUES ($1, $2)",
                        &[&s.as_str(), &text(&entry)],
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(records)
        })
        .await
        .map_err(|e| match e {
            Fail::Rejected(e) => MutateError::Rejected(e),
            Fail::Store(s) => MutateError::Store(s),
            Fail::Pg(e) => MutateError::Store(pg(e)),
            Fail::NotFound => MutateError::Store(StoreError::Postgres("unexpected".into())),
        })
    }

    /// Appends an audit entry not tied to a device change.
    pub async fn append_audit(
        &self,
        at: Timestamp,
        actor: &str,
        action: &str,
        serial: Option<&str>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<AuditEntry, StoreError> {
        let mut entry = AuditEntry {
            id: 0,
            at,
            actor: actor.to_owned(),
            action: action.to_owned(),
            serial: serial.map(str::to_owned),
            before,
            after,
        };
        let rows = self
            .query(
                "INSERT INTO audit (serial, entry) VALUES ($1, $2) RETURNING id",
                &[&serial, &text(&entry)],
            )
            .await?;
        let id: i64 = rows.first().map(|r| r.get(0)).unwrap_or_default();
        entry.id = u64::try_from(id).unwrap_or_default();
        Ok(entry)
    }

    /// Up to `limit` entries after id `after`, oldest first.
    pub async fn audit_entries(
        &self,
        serial: Option<&str>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        // Ids start at 0 in a store copied from sled.
        let start = after.map_or(0, |a| to_i64(a.saturating_add(1)));
        let rows = self
            .query(
                "SELECT id, entry FROM audit WHERE ($1::text IS NULL OR serial = $1) AND id >= $2 ORDER BY id LIMIT $3",
                &[&serial, &start, &limit_i64(limit.saturating_add(1))],
            )
            .await?;
        let more = rows.len() > limit;
        let mut entries = Vec::with_capacity(limit.min(rows.len()));
        for r in rows.iter().take(limit) {
            entries.push(audit_from_row(r.get(0), r.get(1))?);
        }
        let next_after = if more {
            entries.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_after,
        })
    }

    /// Up to `limit` entries older than `before`, newest first, filtered by `keep`,
    /// stopping at the first `stop` accepts.
    pub async fn audit_entries_newest(
        &self,
        serial: Option<&str>,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&AuditEntry) -> bool,
        stop: impl Fn(&AuditEntry) -> bool,
    ) -> Result<AuditPage, StoreError> {
        let mut cursor = before.map_or(i64::MAX, to_i64);
        let mut entries: Vec<AuditEntry> = Vec::new();
        let mut more = false;
        'rounds: loop {
            let rows = self
                .query(
                    "SELECT id, entry FROM audit WHERE ($1::text IS NULL OR serial = $1) AND id < $2 ORDER BY id DESC LIMIT $3",
                    &[&serial, &cursor, &BATCH],
                )
                .await?;
            let full = rows.len() == BATCH as usize;
            for r in &rows {
                cursor = r.get(0);
                let e = audit_from_row(cursor, r.get(1))?;
                if stop(&e) {
                    break 'rounds;
                }
                if !keep(&e) {
                    continue;
                }
                if entries.len() == limit {
                    more = true;
                    break 'rounds;
                }
                entries.push(e);
            }
            if !full {
                break;
            }
        }
        let next_after = if more {
            entries.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_after,
        })
    }

    /// Records a request nonce unless it is live already (from any replica).
    pub async fn remember_nonce(
        &self,
        serial: &Serial,
        nonce: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<NonceCheck, StoreError> {
        let nonce = nonce.to_ascii_lowercase();
        let now_s = now.as_second();
        let exp = expires.as_second();
        let check = timed(async {
            let client = self.client().await?;
            client
                .execute(
                    "DELETE FROM request_nonces WHERE serial = $1 AND expires < $2",
                    &[&serial.as_str(), &now_s],
                )
                .await
                .map_err(pg)?;
            let row = client
                .query_one(
                    "SELECT count(*), count(*) FILTER (WHERE nonce = $2) FROM request_nonces WHERE serial = $1",
                    &[&serial.as_str(), &nonce],
                )
                .await
                .map_err(pg)?;
            let (live, this): (i64, i64) = (row.get(0), row.get(1));
            if this > 0 {
                return Ok(NonceCheck::Replayed);
            }
            if live >= limit_i64(super::nonces::MAX_NONCES_PER_BOX) {
                return Ok(NonceCheck::TooMany);
            }
            // A replica that inserted the same nonce meanwhile wins; this one sees 0 rows.
            let inserted = client
                .execute(
                    "INSERT INTO request_nonces (serial, nonce, expires) VALUES ($1, $2, $3) \
                     ON CONFLICT (serial, nonce) DO UPDATE SET expires = EXCLUDED.expires \
                     WHERE request_nonces.expires < $4",
                    &[&serial.as_str(), &nonce, &exp, &now_s],
                )
                .await
                .map_err(pg)?;
            Ok(if inserted == 1 {
                NonceCheck::Fresh
            } else {
                NonceCheck::Replayed
            })
        })
        .await?;
        if check == NonceCheck::Fresh
            && self.nonce_count.fetch_add(1, Ordering::Relaxed) % super::nonces::SWEEP_EVERY
                == super::nonces::SWEEP_EVERY - 1
        {
            self.sweep_nonces(now).await?;
        }
        Ok(check)
    }

    /// Drops every expired nonce; answers how many live ones are left.
    pub async fn sweep_nonces(&self, now: Timestamp) -> Result<usize, StoreError> {
        let now_s = now.as_second();
        self.query("DELETE FROM request_nonces WHERE expires < $1", &[&now_s])
            .await?;
        let rows = self
            .query("SELECT count(*) FROM request_nonces", &[])
            .await?;
        let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or_default();
        Ok(usize::try_from(n).unwrap_or_default())
    }

    /// Every release, newest version first.
    pub async fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError> {
        let rows = self
            .query("SELECT version, record FROM releases", &[])
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(decode::<ReleaseRecord>(
                r.get(0),
                r.get::<_, &str>(1).as_bytes(),
            )?);
        }
        out.sort_by(|a, b| b.release.version.cmp(&a.release.version));
        Ok(out)
    }

    /// The release with this version, if any.
    pub async fn release(&self, version: &Version) -> Result<Option<ReleaseRecord>, StoreError> {
        let key = version.to_string();
        let rows = self
            .query("SELECT record FROM releases WHERE version = $1", &[&key])
            .await?;
        match rows.first() {
            Some(r) => Ok(Some(decode(&key, r.get::<_, &str>(0).as_bytes())?)),
            None => Ok(None),
        }
    }

    /// Stores a new release and its audit entry in one transaction; `false` when the
    /// version exists.
    pub async fn insert_release(
        &self,
        record: &ReleaseRecord,
        change: &Change<'_>,
        after: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let key = record.release.version.to_string();
        let after = &after;
        let key = &key;
        with_retries::<bool, (), _>(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            self.guard_keyring(&tx).await?;
            let n = tx
                .execute(
                    "INSERT INTO releases (version, record) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[key, &text(record)],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            if let Some(actor) = change.actor {
                let entry = AuditEntry {
                    id: 0,
                    at: change.at,
                    actor: actor.to_owned(),
                    action: change.action.to_owned(),
                    serial: None,
                    before: None,
                    after: Some(after.clone()),
                };
                tx.execute(
                    "INSERT INTO audit (serial, entry) VALUES (NULL, $1)",
                    &[&text(&entry)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
        .map_err(|e| match e {
            Fail::Store(s) => s,
            Fail::Pg(e) => pg(e),
            Fail::Rejected(()) | Fail::NotFound => StoreError::Postgres("unexpected".into()),
        })
    }

    /// Changes the release `version` with `f` under a row lock.
    pub async fn update_release<E, F>(
        &self,
        version: &Version,
        f: F,
    ) -> Result<(ReleaseRecord, ReleaseRecord), ReleaseChangeError<E>>
    where
        F: Fn(&mut ReleaseRecord) -> Result<(), E>,
    {
        let key = version.to_string();
        let (key, f) = (&key, &f);
        with_retries(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            self.guard_keyring(&tx).await?;
            let rows = tx
                .query(
                    "SELECT record FROM releases WHERE version = $1 FOR UPDATE",
                    &[key],
                )
                .await?;
            let Some(row) = rows.first() else {
                return Err(Fail::NotFound);
            };
            let before: ReleaseRecord = decode(key, row.get::<_, &str>(0).as_bytes())?;
            let mut after = before.clone();
            f(&mut after).map_err(Fail::Rejected)?;
            if after != before {
                tx.execute(
                    "UPDATE releases SET record = $2 WHERE version = $1",
                    &[key, &text(&after)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok((before, after))
        })
        .await
        .map_err(|e| match e {
            Fail::NotFound => ReleaseChangeError::NotFound,
            Fail::Rejected(e) => ReleaseChangeError::Rejected(e),
            Fail::Store(s) => ReleaseChangeError::Store(s),
            Fail::Pg(e) => ReleaseChangeError::Store(pg(e)),
        })
    }

    /// The box's last report (empty when it never checked in).
    pub async fn device_report(&self, serial: &Serial) -> Result<DeviceReport, StoreError> {
        let rows = self
            .query(
                "SELECT report FROM device_reports WHERE serial = $1",
                &[&serial.as_str()],
            )
            .await?;
        match rows.first() {
            Some(r) => decode(serial.as_str(), r.get::<_, &str>(0).as_bytes()),
            None => Ok(DeviceReport::default()),
        }
    }

    /// Changes the box's report with `f` under a row lock and returns it.
    pub async fn update_device_report(
        &self,
        serial: &Serial,
        f: impl Fn(&mut DeviceReport),
    ) -> Result<DeviceReport, StoreError> {
        let f = &f;
        with_retries::<_, (), _>(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let rows = tx
                .query(
                    "SELECT report FROM device_reports WHERE serial = $1 FOR UPDATE",
                    &[&serial.as_str()],
                )
                .await?;
            let mut report: DeviceReport = match rows.first() {
                Some(r) => decode(serial.as_str(), r.get::<_, &str>(0).as_bytes())?,
                None => DeviceReport::default(),
            };
            f(&mut report);
            if rows.is_empty() {
                tx.execute(
                    "INSERT INTO device_reports (serial, report) VALUES ($1, $2)",
                    &[&serial.as_str(), &text(&report)],
                )
                .await?;
            } else {
                tx.execute(
                    "UPDATE device_reports SET report = $2 WHERE serial = $1",
                    &[&serial.as_str(), &text(&report)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(report)
        })
        .await
        .map_err(fail_to_store)
    }

    /// Appends an event of the box and drops its events beyond the newest `keep`.
    pub async fn append_device_event(
        &self,
        serial: &Serial,
        event: &EventRecord,
        keep: usize,
    ) -> Result<usize, StoreError> {
        let keep = limit_i64(keep.max(1));
        with_retries::<_, (), _>(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO device_events (serial, event) VALUES ($1, $2)",
                &[&serial.as_str(), &text(event)],
            )
            .await?;
            let dropped = tx
                .execute(
                    "DELETE FROM device_events WHERE serial = $1 AND id NOT IN \
                     (SELECT id FROM device_events WHERE serial = $1 ORDER BY id DESC LIMIT $2)",
                    &[&serial.as_str(), &keep],
                )
                .await?;
            tx.commit().await?;
            Ok(usize::try_from(dropped).unwrap_or_default())
        })
        .await
        .map_err(fail_to_store)
    }

    /// The box's newest `limit` events, newest first.
    pub async fn device_events(
        &self,
        serial: &Serial,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT event FROM device_events WHERE serial = $1 ORDER BY id DESC LIMIT $2",
                &[&serial.as_str(), &limit_i64(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| decode(serial.as_str(), r.get::<_, &str>(0).as_bytes()))
            .collect()
    }

    /// See [`super::Store::update_release_audited`]: the row is locked, and the audit
    /// entry is written in the same transaction.
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
        let key = version.to_string();
        let (key, f, audit) = (&key, &f, &audit);
        with_retries(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            self.guard_keyring(&tx).await?;
            let rows = tx
                .query(
                    "SELECT record FROM releases WHERE version = $1 FOR UPDATE",
                    &[key],
                )
                .await?;
            let Some(row) = rows.first() else {
                return Err(Fail::NotFound);
            };
            let before: ReleaseRecord = decode(key, row.get::<_, &str>(0).as_bytes())?;
            let mut after = before.clone();
            f(&mut after).map_err(Fail::Rejected)?;
            if after != before {
                tx.execute(
                    "UPDATE releases SET record = $2 WHERE version = $1",
                    &[key, &text(&after)],
                )
                .await?;
            }
            if let Some(actor) = change.actor {
                let (b, a) = audit(&before, &after);
                let entry = AuditEntry {
                    id: 0,
                    at: change.at,
                    actor: actor.to_owned(),
                    action: change.action.to_owned(),
                    serial: None,
                    before: Some(b),
                    after: Some(a),
                };
                tx.execute(
                    "INSERT INTO audit (serial, entry) VALUES (NULL, $1)",
                    &[&text(&entry)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok((before, after))
        })
        .await
        .map_err(|e| match e {
            Fail::NotFound => ReleaseChangeError::NotFound,
            Fail::Rejected(e) => ReleaseChangeError::Rejected(e),
            Fail::Store(s) => ReleaseChangeError::Store(s),
            Fail::Pg(e) => ReleaseChangeError::Store(pg(e)),
        })
    }

    /// See [`super::Store::file_receipt`]: the device row is locked first, so two uploads
    /// of one box's receipts are filed one after the other.
    pub async fn file_receipt(
        &self,
        stored: &StoredReceipt,
        actor: Option<&str>,
        keep_events: usize,
    ) -> Result<Option<ReceiptFiled>, StoreError> {
        let keep = limit_i64(keep_events.max(1));
        let r = &stored.receipt;
        let serial = r.serial.as_str();
        let seq = to_i64(r.seq);
        with_retries::<_, (), _>(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let rows = tx
                .query(
                    "SELECT record FROM devices WHERE serial = $1 FOR UPDATE",
                    &[&serial],
                )
                .await?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let old: DeviceRecord = decode(serial, row.get::<_, &str>(0).as_bytes())?;
            let held = tx
                .query(
                    "SELECT receipt FROM device_receipts WHERE serial = $1 AND seq = $2",
                    &[&serial, &seq],
                )
                .await?;
            if let Some(h) = held.first() {
                let h: StoredReceipt = decode(serial, h.get::<_, &str>(0).as_bytes())?;
                return Ok(Some(if h.receipt == *r {
                    ReceiptFiled::Duplicate
                } else {
                    ReceiptFiled::Conflict
                }));
            }
            tx.execute(
                "INSERT INTO device_receipts (serial, seq, receipt) VALUES ($1, $2, $3)",
                &[&serial, &seq, &text(stored)],
            )
            .await?;
            let event = EventRecord {
                at: stored.received_at,
                version: last_result_of(r).version,
                event: receipt_event_kind(r.outcome),
                detail: format!("receipt {} (at {}): {}", r.seq, r.at, r.detail),
            };
            tx.execute(
                "INSERT INTO device_events (serial, event) VALUES ($1, $2)",
                &[&serial, &text(&event)],
            )
            .await?;
            let latest = old.last_receipt_seq.is_none_or(|s| r.seq > s);
            let mut new = old.clone();
            if latest {
                new.last_receipt_seq = Some(r.seq);
                if let Some(v) = r.running_after() {
                    new.version = Some(v.clone());
                }
                new.last_result = Some(last_result_of(r));
                tx.execute(
                    "UPDATE devices SET record = $2 WHERE serial = $1",
                    &[&serial, &text(&new)],
                )
                .await?;
            }
            if let Some(actor) = actor {
                // An older receipt is kept and listed, and moves nothing: audited as such.
                let entry = AuditEntry {
                    id: 0,
                    at: stored.received_at,
                    actor: actor.to_owned(),
                    action: "receipt".to_owned(),
                    serial: Some(serial.to_owned()),
                    before: Some(old.snapshot()),
                    after: Some(new.snapshot()),
                };
                tx.execute(
                    "INSERT INTO audit (serial, entry) VALUES ($1, $2)",
                    &[&serial, &text(&entry)],
                )
                .await?;
            }
            tx.execute(
                "DELETE FROM device_events WHERE serial = $1 AND id NOT IN \
                 (SELECT id FROM device_events WHERE serial = $1 ORDER BY id DESC LIMIT $2)",
                &[&serial, &keep],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(ReceiptFiled::New { latest }))
        })
        .await
        .map_err(fail_to_store)
    }

    /// The receipt `seq` of the box, if held.
    pub async fn receipt(
        &self,
        serial: &Serial,
        seq: u64,
    ) -> Result<Option<StoredReceipt>, StoreError> {
        let rows = self
            .query(
                "SELECT receipt FROM device_receipts WHERE serial = $1 AND seq = $2",
                &[&serial.as_str(), &to_i64(seq)],
            )
            .await?;
        rows.first()
            .map(|r| decode(serial.as_str(), r.get::<_, &str>(0).as_bytes()))
            .transpose()
    }

    /// The box's newest `limit` receipts, newest (highest seq) first.
    pub async fn device_receipts(
        &self,
        serial: &Serial,
        limit: usize,
    ) -> Result<Vec<StoredReceipt>, StoreError> {
        let rows = self
            .query(
                "SELECT receipt FROM device_receipts WHERE serial = $1 ORDER BY seq DESC LIMIT $2",
                &[&serial.as_str(), &limit_i64(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| decode(serial.as_str(), r.get::<_, &str>(0).as_bytes()))
            .collect()
    }

    /// Stores the box's mark for the release, joined with the one another replica may
    /// have stored meanwhile ([`Mark::join`]), under a row lock; answers the mark as
    /// stored.
    pub async fn put_tally_mark(
        &self,
        version: &Version,
        serial: &Serial,
        mark: &Mark,
    ) -> Result<Mark, StoreError> {
        let v = version.to_string();
        let v = &v;
        with_retries::<_, (), _>(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let rows = tx
                .query(
                    "SELECT mark FROM rollout_tallies WHERE version = $1 AND serial = $2 FOR UPDATE",
                    &[v, &serial.as_str()],
                )
                .await?;
            let joined = match rows.first() {
                Some(r) => {
                    let held: Mark = decode(
                        &format!("rollout mark {version} {serial}"),
                        r.get::<_, &str>(0).as_bytes(),
                    )?;
                    held.join(mark)
                }
                None => *mark,
            };
            if rows.is_empty() {
                tx.execute(
                    "INSERT INTO rollout_tallies (version, serial, mark) VALUES ($1, $2, $3)",
                    &[v, &serial.as_str(), &text(&joined)],
                )
                .await?;
            } else {
                tx.execute(
                    "UPDATE rollout_tallies SET mark = $3, changed = nextval('rollout_tallies_changes') \
                     WHERE version = $1 AND serial = $2",
                    &[v, &serial.as_str(), &text(&joined)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(joined)
        })
        .await
        .map_err(fail_to_store)
    }

    /// Every stored mark (keys that do not parse are skipped, as in the sled store).
    pub async fn tally_marks(&self) -> Result<Vec<(Version, Serial, Mark)>, StoreError> {
        Ok(self
            .tally_marks_changed_after(-1)
            .await?
            .into_iter()
            .map(|(_, v, s, m)| (v, s, m))
            .collect())
    }

    /// The newest change number of a mark (0 when there is none).
    pub async fn last_tally_change(&self) -> Result<i64, StoreError> {
        let rows = self
            .query("SELECT coalesce(max(changed), 0) FROM rollout_tallies", &[])
            .await?;
        Ok(rows.first().map(|r| r.get(0)).unwrap_or_default())
    }

    /// The marks written (by any replica) with a change number above `after`, with that
    /// number, in change order.
    pub async fn tally_marks_changed_after(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, Version, Serial, Mark)>, StoreError> {
        let rows = self
            .query(
                "SELECT changed, version, serial, mark FROM rollout_tallies WHERE changed > $1 ORDER BY changed",
                &[&after],
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let (v, s): (&str, &str) = (r.get(1), r.get(2));
            let (Ok(version), Ok(serial)) = (Version::parse(v), Serial::parse(s)) else {
                continue;
            };
            let mark: Mark = decode(
                &format!("rollout mark {version} {serial}"),
                r.get::<_, &str>(3).as_bytes(),
            )?;
            out.push((r.get(0), version, serial, mark));
        }
        Ok(out)
    }

    /// How many registered boxes report running each version.
    pub async fn install_counts(&self) -> Result<HashMap<Version, u64>, StoreError> {
        let rows = self
            .query(
                "SELECT (record::jsonb)->>'version', count(*) FROM devices \
                 WHERE (record::jsonb)->>'version' IS NOT NULL GROUP BY 1",
                &[],
            )
            .await?;
        let mut counts = HashMap::new();
        for r in &rows {
            let v: String = r.get(0);
            let n: i64 = r.get(1);
            let version: Version =
                serde_json::from_value(serde_json::Value::String(v)).map_err(|e| {
                    StoreError::Corrupt {
                        what: "device version".into(),
                        reason: e.to_string(),
                    }
                })?;
            counts.insert(version, u64::try_from(n).unwrap_or_default());
        }
        Ok(counts)
    }

    /// Stores a new token; `false` when the name is taken.
    pub async fn insert_token(&self, record: &TokenRecord) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "INSERT INTO tokens (name, sha256, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                &[&record.name, &record.sha256, &text(record)],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Every token, by name.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self
            .query("SELECT name, record FROM tokens ORDER BY name", &[])
            .await?;
        rows.iter()
            .map(|r| decode(r.get(0), r.get::<_, &str>(1).as_bytes()))
            .collect()
    }

    /// The token whose SHA-256 (hex) is `h`.
    pub async fn token_by_hash(&self, h: &str) -> Result<Option<TokenRecord>, StoreError> {
        let rows = self
            .query("SELECT name, record FROM tokens WHERE sha256 = $1", &[&h])
            .await?;
        match rows.first() {
            Some(r) => Ok(Some(decode(r.get(0), r.get::<_, &str>(1).as_bytes())?)),
            None => Ok(None),
        }
    }

    /// Records in the token's record (hash `h`) that it was used, once.
    pub async fn mark_token_used(&self, h: &str) -> Result<(), StoreError> {
        self.query(
            "UPDATE tokens SET record = (record::jsonb || '{\"used\": true}'::jsonb)::text \
             WHERE sha256 = $1 AND (record::jsonb -> 'used') IS DISTINCT FROM 'true'::jsonb \
             RETURNING 1",
            &[&h],
        )
        .await?;
        Ok(())
    }

    /// Whether any token in the database was ever used (on any replica).
    pub async fn any_token_used(&self) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "SELECT 1 FROM tokens WHERE (record::jsonb -> 'used') = 'true'::jsonb LIMIT 1",
                &[],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Deletes the token named `name`; `false` when there is none.
    pub async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        let rows = self
            .query("DELETE FROM tokens WHERE name = $1 RETURNING 1", &[&name])
            .await?;
        Ok(!rows.is_empty())
    }
}

fn fail_to_mutate<E>(e: Fail<E>) -> MutateError<E> {
    match e {
        Fail::Rejected(e) => MutateError::Rejected(e),
        Fail::Store(s) => MutateError::Store(s),
        Fail::Pg(e) => MutateError::Store(pg(e)),
        Fail::NotFound => MutateError::Store(StoreError::Postgres("unexpected".into())),
    }
}

/// Appends the audit entry of a case change inside `tx`.
async fn insert_case_audit(
    tx: &tokio_postgres::Transaction<'_>,
    change: &CaseChange<'_>,
    action: &str,
    case: &CaseRecord,
    before: Option<&CaseRecord>,
    device: (Option<&DeviceRecord>, Option<&DeviceRecord>),
) -> Result<(), tokio_postgres::Error> {
    let entry = AuditEntry {
        id: 0,
        at: change.at,
        actor: change.actor.to_owned(),
        action: action.to_owned(),
        serial: Some(case.serial.to_string()),
        before: before.map(|b| super::cases::case_snapshot(b, device.0)),
        after: Some(super::cases::case_snapshot(case, device.1)),
    };
    tx.execute(
        "INSERT INTO audit (serial, entry) VALUES ($1, $2)",
        &[&case.serial.as_str(), &text(&entry)],
    )
    .await?;
    Ok(())
}

fn fail_to_store(e: Fail<()>) -> StoreError {
    match e {
        Fail::Store(s) => s,
        Fail::Pg(e) => pg(e),
        Fail::Rejected(()) | Fail::NotFound => StoreError::Postgres("unexpected".into()),
    }
}

/// Applies what the database lacks, each migration in its own transaction.
async fn apply_migrations(client: &mut Object) -> Result<i64, StoreError> {
    // Made only when missing (under the migration lock): `CREATE ... IF NOT EXISTS` would
    // send a NOTICE at every start, which the driver logs.
    let exists = client
        .query_one(
            "SELECT to_regclass('np_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg)?;
    if !exists.get::<_, bool>(0) {
        client
            .batch_execute(
                "CREATE TABLE np_schema_migrations (\
                   version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(pg)?;
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM np_schema_migrations",
            &[],
        )
        .await
        .map_err(pg)?;
    let mut current: i64 = row.get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    // Every migration the database lacks, also one numbered below its newest (versions
    // need not be contiguous: branches add theirs independently).
    let applied: Vec<i64> = client
        .query("SELECT version FROM np_schema_migrations", &[])
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = client.transaction().await.map_err(pg)?;
        tx.batch_execute(sql).await.map_err(pg)?;
        tx.execute(
            "INSERT INTO np_schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(version, "applied a database migration");
        current = current.max(*version);
    }
    Ok(current)
}

/// The tables that hold records, and the sled tree each is copied from by
/// [`PgStore::import_sled`] (tokens come from `tokens.json`).
const KINDS: &[(&str, &str)] = &[
    ("devices", "devices"),
    ("audit", "audit"),
    ("releases", "releases"),
    ("device_reports", "device_reports"),
    ("device_events", "device_events"),
    ("request_nonces", "request_nonces"),
    ("device_receipts", "device_receipts"),
    ("rollout_tallies", "rollout_tallies"),
    ("cases", "cases"),
    ("tokens", ""),
];

/// sled trees that are derived from others (rebuilt, not copied), and the keyring record
/// (not copied: the first replica that starts on the database records its own).
const DERIVED_TREES: &[&str] = &[
    "audit_by_serial",
    "cases_by_serial",
    "case_counter",
    "__sled__default",
    "keyring",
];

/// Rows sent per statement while copying.
const IMPORT_BATCH: usize = 1_000;

/// One kind of record copied by `migrate-store`: how many the sled folder held and how
/// many the database holds after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The kind (table name).
    pub kind: &'static str,
    /// Records in the sled folder.
    pub source: u64,
    /// Rows in the database.
    pub target: u64,
}

fn split_serial_key(k: &[u8]) -> Option<(String, &[u8])> {
    let end = k.iter().position(|b| *b == 0)?;
    Some((
        String::from_utf8_lossy(&k[..end]).into_owned(),
        &k[end + 1..],
    ))
}

impl PgStore {
    /// How many rows each record table holds (all zero: an empty database).
    pub async fn counts(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let mut out = Vec::new();
        for (table, _) in KINDS {
            let rows = self
                .query(&format!("SELECT count(*) FROM {table}"), &[])
                .await?;
            let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or_default();
            out.push((*table, u64::try_from(n).unwrap_or_default()));
        }
        Ok(out)
    }

    /// Copies every record of the sled store `sled` and the `tokens` into this (empty)
    /// database in one transaction, keeping audit and event ids; commits only when the
    /// count of every kind matches. A sled tree of a kind this binary does not know is
    /// refused rather than left behind.
    pub async fn import_sled(
        &self,
        sled: &super::SledStore,
        tokens: &[TokenRecord],
    ) -> Result<Vec<Copied>, StoreError> {
        for name in sled.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            let known =
                KINDS.iter().any(|(_, t)| *t == name) || DERIVED_TREES.contains(&name.as_str());
            if !known && !sled.db.open_tree(&name)?.is_empty() {
                return Err(StoreError::Corrupt {
                    what: format!("sled tree {name:?}"),
                    reason: "this np-server does not know how to copy it; use the np-server version that wrote the folder".into(),
                });
            }
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let mut copied = Vec::new();
        for (table, tree) in KINDS {
            let mut source = 0u64;
            let mut batch: Vec<Vec<String>> = Vec::new();
            let flush = |batch: &mut Vec<Vec<String>>| {
                let rows = std::mem::take(batch);
                let tx = &tx;
                async move {
                    if rows.is_empty() {
                        return Ok::<(), StoreError>(());
                    }
                    let cols = rows[0].len();
                    let columns: Vec<Vec<&str>> = (0..cols)
                        .map(|c| rows.iter().map(|r| r[c].as_str()).collect())
                        .collect();
                    let sql = match *table {
                        "devices" => "INSERT INTO devices (serial, record) SELECT * FROM unnest($1::text[], $2::text[])",
                        "audit" => "INSERT INTO audit (id, serial, entry) SELECT i::bigint, nullif(s, ''), e FROM unnest($1::text[], $2::text[], $3::text[]) AS t(i, s, e)",
                        "releases" => "INSERT INTO releases (version, record) SELECT * FROM unnest($1::text[], $2::text[])",
                        "device_reports" => "INSERT INTO device_reports (serial, report) SELECT * FROM unnest($1::text[], $2::text[])",
                        "device_events" => "INSERT INTO device_events (id, serial, event) SELECT i::bigint, s, e FROM unnest($1::text[], $2::text[], $3::text[]) AS t(i, s, e)",
                        "request_nonces" => "INSERT INTO request_nonces (serial, nonce, expires) SELECT s, n, x::bigint FROM unnest($1::text[], $2::text[], $3::text[]) AS t(s, n, x)",
                        "device_receipts" => "INSERT INTO device_receipts (serial, seq, receipt) SELECT s, q::bigint, r FROM unnest($1::text[], $2::text[], $3::text[]) AS t(s, q, r)",
                        "rollout_tallies" => "INSERT INTO rollout_tallies (version, serial, mark) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])",
                        "cases" => "INSERT INTO cases (number, serial, record) SELECT n::bigint, s, r FROM unnest($1::text[], $2::text[], $3::text[]) AS t(n, s, r)",
                        _ => "INSERT INTO tokens (name, sha256, record) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])",
                    };
                    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = columns
                        .iter()
                        .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync))
                        .collect();
                    tx.execute(sql, &params).await.map_err(pg)?;
                    Ok(())
                }
            };
            if tree.is_empty() {
                for t in tokens {
                    batch.push(vec![t.name.clone(), t.sha256.clone(), text(t)]);
                    source += 1;
                }
            } else {
                for item in sled.db.open_tree(tree)?.iter() {
                    let (k, v) = item?;
                    let value = String::from_utf8_lossy(&v).into_owned();
                    let row = match *table {
                        "audit" => {
                            let id = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                                StoreError::Corrupt {
                                    what: "audit log".into(),
                                    reason: "key of the wrong length".into(),
                                }
                            })?);
                            let e: AuditEntry = decode(&format!("audit entry {id}"), &v)?;
                            vec![id.to_string(), e.serial.unwrap_or_default(), value]
                        }
                        "cases" => {
                            let n = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                                StoreError::Corrupt {
                                    what: "cases".into(),
                                    reason: "key of the wrong length".into(),
                                }
                            })?);
                            let c: CaseRecord = decode(&format!("case {n}"), &v)?;
                            vec![n.to_string(), c.serial.to_string(), value]
                        }
                        "device_events" | "request_nonces" | "device_receipts"
                        | "rollout_tallies" => {
                            let Some((serial, rest)) = split_serial_key(&k) else {
                                return Err(StoreError::Corrupt {
                                    what: format!("{table} key"),
                                    reason: "no serial separator".into(),
                                });
                            };
                            if *table == "rollout_tallies" {
                                // Key: version ++ 0x00 ++ serial.
                                vec![serial, String::from_utf8_lossy(rest).into_owned(), value]
                            } else if *table == "device_receipts" {
                                let seq: [u8; 8] =
                                    rest.try_into().map_err(|_| StoreError::Corrupt {
                                        what: "receipt key".into(),
                                        reason: "key of the wrong length".into(),
                                    })?;
                                vec![serial, u64::from_be_bytes(seq).to_string(), value]
                            } else if *table == "device_events" {
                                let id: [u8; 8] =
                                    rest.try_into().map_err(|_| StoreError::Corrupt {
                                        what: "event key".into(),
                                        reason: "key of the wrong length".into(),
                                    })?;
                                vec![u64::from_be_bytes(id).to_string(), serial, value]
                            } else {
                                let expires: [u8; 8] =
                                    v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                                        what: "nonce".into(),
                                        reason: "value of the wrong length".into(),
                                    })?;
                                vec![
                                    serial,
                                    String::from_utf8_lossy(rest).into_owned(),
                                    i64::from_be_bytes(expires).to_string(),
                                ]
                            }
                        }
                        _ => vec![String::from_utf8_lossy(&k).into_owned(), value],
                    };
                    batch.push(row);
                    source += 1;
                    if batch.len() == IMPORT_BATCH {
                        flush(&mut batch).await?;
                    }
                }
            }
            flush(&mut batch).await?;
            let row = tx
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .map_err(pg)?;
            let target = u64::try_from(row.get::<_, i64>(0)).unwrap_or_default();
            copied.push(Copied {
                kind: table,
                source,
                target,
            });
        }
        // New ids continue after the copied ones.
        for table in ["audit", "device_events"] {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                ),
                &[],
            )
            .await
            .map_err(pg)?;
        }
        tx.execute(
            "SELECT setval('case_numbers', greatest(coalesce((SELECT max(number) FROM cases), 0) + 1, 1001), false)",
            &[],
        )
        .await
        .map_err(pg)?;
        if let Some(c) = copied.iter().find(|c| c.source != c.target) {
            return Err(StoreError::Postgres(format!(
                "the copy of {} holds {} rows for {} records; nothing was kept",
                c.kind, c.target, c.source
            )));
        }
        tx.commit().await.map_err(pg)?;
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract_tests::TestDb;
    use crate::tokens::TokenRole;

    #[test]
    fn a_url_asking_for_tls_is_refused_with_a_sentence_saying_why() {
        for url in [
            "postgres://np:pw@db/np?sslmode=require",
            "postgres://np@db/np?sslmode=verify-full",
            "postgresql://np@db/np?application_name=x&sslmode=verify-ca",
        ] {
            let err = PgStore::connect_only(url).unwrap_err().to_string();
            assert!(
                err.contains("TLS to PostgreSQL is not supported by this build"),
                "{err}"
            );
            assert!(err.contains("stunnel/pgbouncer"), "{err}");
            assert!(!err.contains("pw"), "{err}");
        }
        let store =
            PgStore::connect_only("postgres://np:secret@db:5433/fleet?sslmode=disable").unwrap();
        assert_eq!(store.shown_url(), "postgres://np@db:5433/fleet");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_starting_together_migrate_once_and_a_newer_schema_is_refused() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { PgStore::connect(&url).await.map(|_| ()) })
            })
            .collect();
        for s in starts {
            s.await.unwrap().unwrap();
        }
        let store = PgStore::connect(&db.url).await.unwrap();
        assert_eq!(store.migrate().await.unwrap(), SCHEMA_VERSION);
        let rows = store
            .query("SELECT count(*) FROM np_schema_migrations", &[])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), MIGRATIONS.len() as i64);
        // A migration numbered below the newest applied one, but missing (a branch's
        // migration merged after another's), is applied too.
        store
            .query("DELETE FROM np_schema_migrations WHERE version = 2", &[])
            .await
            .unwrap();
        for drop in [
            "DROP TABLE device_receipts",
            "DROP TABLE rollout_tallies",
            "DROP SEQUENCE rollout_tallies_changes",
        ] {
            store.query(drop, &[]).await.unwrap();
        }
        assert_eq!(store.migrate().await.unwrap(), SCHEMA_VERSION);
        store
            .query("SELECT count(*) FROM device_receipts", &[])
            .await
            .unwrap();
        store
            .query(
                "INSERT INTO np_schema_migrations (version) VALUES ($1)",
                &[&(SCHEMA_VERSION + 1)],
            )
            .await
            .unwrap();
        let err = PgStore::connect(&db.url).await.unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, known } if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("version {}", SCHEMA_VERSION + 1)),
            "{text}"
        );
        assert!(
            text.contains(&format!("version {SCHEMA_VERSION}")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_bad_url_is_named_and_an_unreachable_server_is_unavailable() {
        let err = PgStore::connect("mysql://x").await.unwrap_err();
        assert!(err.to_string().contains("postgres://USER"), "{err}");
        // A port nobody listens on: refused at once, answered as "unavailable".
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let started = std::time::Instant::now();
        let err = PgStore::connect(&format!("postgres://np:np@127.0.0.1:{port}/np"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
        assert!(started.elapsed() < OP_TIMEOUT + CONNECT_TIMEOUT);
    }

    #[tokio::test]
    async fn a_mark_from_another_replica_is_joined_not_overwritten_and_followed() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let a = PgStore::connect(&db.url).await.unwrap();
        let b = PgStore::connect(&db.url).await.unwrap();
        let v: Version = "2.0.0".parse().unwrap();
        let s = Serial::parse("NR-2000-123456-4").unwrap();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let start = a.last_tally_change().await.unwrap();
        // Replica a saw the box try and fail; replica b, not knowing, saw it try later.
        let failed = Mark {
            attempt_at: t0,
            epoch: 0,
            failed_at: Some(t0),
            staff_rollback: false,
        };
        assert_eq!(a.put_tally_mark(&v, &s, &failed).await.unwrap(), failed);
        let late = Mark {
            attempt_at: t1,
            epoch: 1,
            failed_at: None,
            staff_rollback: false,
        };
        assert_eq!(b.put_tally_mark(&v, &s, &late).await.unwrap(), failed);
        assert_eq!(
            a.tally_marks().await.unwrap(),
            vec![(v.clone(), s.clone(), failed)]
        );
        // Each write raises the change number the other replica follows.
        let changed = a.tally_marks_changed_after(start).await.unwrap();
        assert_eq!(changed.len(), 1);
        let (n, ..) = changed[0];
        assert_eq!(n, a.last_tally_change().await.unwrap());
        assert!(a.tally_marks_changed_after(n).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn tokens_live_in_the_database() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let store = PgStore::connect(&db.url).await.unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t = crate::tokens::create_in(&store, TokenRole::Staff, "sam", now)
            .await
            .unwrap();
        assert!(matches!(
            crate::tokens::create_in(&store, TokenRole::Admin, "sam", now).await,
            Err(crate::tokens::TokenError::NameTaken(_))
        ));
        assert!(matches!(
            crate::tokens::create_in(&store, TokenRole::Admin, "a b", now).await,
            Err(crate::tokens::TokenError::BadName(_))
        ));
        // Another "replica": a second pool on the same database sees it at once.
        let dir = tempfile::tempdir().unwrap();
        let other = PgStore::connect(&db.url).await.unwrap();
        assert!(!crate::tokens::any_used(dir.path(), Some(&store)).await);
        let cache = crate::tokens::TokenCache::in_store(dir.path(), other);
        assert_eq!(
            cache.lookup(&t).await.unwrap().unwrap().role,
            TokenRole::Staff
        );
        // Its use is recorded in the database, where a replica with another (fresh)
        // data folder reads it; no marker file is needed there.
        assert!(store.any_token_used().await.unwrap());
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(crate::tokens::any_used(elsewhere.path(), Some(&store)).await);
        assert!(crate::tokens::list_in(&store).await.unwrap()[0].used);
        assert_eq!(crate::tokens::list_in(&store).await.unwrap().len(), 1);
        crate::tokens::revoke_in(&store, "sam").await.unwrap();
        assert_eq!(cache.lookup(&t).await.unwrap(), None);
        assert!(matches!(
            crate::tokens::revoke_in(&store, "sam").await,
            Err(crate::tokens::TokenError::NoSuchName(_))
        ));
    }

    #[tokio::test]
    async fn a_sled_store_is_copied_whole_or_refused_when_it_holds_unknown_records() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sled = crate::store::SledStore::open(dir.path()).unwrap();
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for i in 0..3 {
            sled.append_audit(at, "alice", &format!("a{i}"), None, None, None)
                .await
                .unwrap();
        }
        let s = Serial::parse("NR-2000-123456-4").unwrap();
        let e = EventRecord {
            at,
            version: None,
            event: np_common::api::EventKind::Download,
            detail: String::new(),
        };
        sled.append_device_event(&s, &e, 10).await.unwrap();
        sled.remember_nonce(&s, "ab", at, at).await.unwrap();
        let key = np_common::SecretKey::from_seed(&[1; 32]);
        sled.mutate_devices(
            std::slice::from_ref(&s),
            &Change {
                actor: None,
                action: "register",
                at,
            },
            |recs| {
                recs[0] = Some(crate::store::contract_tests::record(&s, &key));
                Ok::<(), ()>(())
            },
        )
        .await
        .unwrap();
        let receipt = crate::store::contract_tests::stored_receipt(
            &s,
            7,
            np_common::api::Outcome::Installed,
            "ok",
        );
        sled.file_receipt(&receipt, None, 10).await.unwrap();
        let v: Version = "2.0.0".parse().unwrap();
        let mark = Mark {
            attempt_at: at,
            epoch: 2,
            failed_at: Some(at),
            staff_rollback: false,
        };
        sled.put_tally_mark(&v, &s, &mark).await.unwrap();
        let case_change = crate::store::CaseChange {
            actor: "alice",
            action: "case_open",
            device_action: "case_open",
            at,
        };
        let case = sled
            .open_case(&s, &case_change, |id, _| {
                Ok::<_, ()>(CaseRecord::new(
                    id,
                    s.clone(),
                    "alice",
                    crate::domain::case::Channel::Phone,
                    "x".into(),
                    crate::domain::case::Severity::Low,
                    at,
                ))
            })
            .await
            .unwrap();
        let pg = PgStore::connect(&db.url).await.unwrap();
        let copied = pg.import_sled(&sled, &[]).await.unwrap();
        let n = |kind: &str| {
            copied
                .iter()
                .find(|c| c.kind == kind)
                .map(|c| (c.source, c.target))
        };
        assert_eq!(n("audit"), Some((4, 4)));
        assert_eq!(n("cases"), Some((1, 1)));
        assert_eq!(pg.case(case.id).await.unwrap(), Some(case.clone()));
        assert_eq!(
            pg.list_cases(Some(&s), None, 10, |_| true)
                .await
                .unwrap()
                .cases,
            vec![case.clone()]
        );
        // Case numbers go on after the copied ones.
        let later = pg
            .open_case(&s, &case_change, |id, _| {
                let mut c = case.clone();
                c.id = id;
                Ok::<_, ()>(c)
            })
            .await
            .unwrap();
        assert!(later.id > case.id, "{} after {}", later.id, case.id);
        assert_eq!(n("device_events"), Some((2, 2)));
        assert_eq!(n("request_nonces"), Some((1, 1)));
        assert_eq!(n("device_receipts"), Some((1, 1)));
        assert_eq!(n("rollout_tallies"), Some((1, 1)));
        assert_eq!(pg.receipt(&s, 7).await.unwrap(), Some(receipt));
        assert_eq!(pg.tally_marks().await.unwrap(), vec![(v, s.clone(), mark)]);
        // Ids go on after the copied ones.
        let next = pg
            .append_audit(at, "alice", "next", None, None, None)
            .await
            .unwrap();
        let old = pg.audit_entries(None, None, 10).await.unwrap();
        assert_eq!(old.entries.len(), 6, "the entry of id 0 is listed too");
        let ids: Vec<u64> = old.entries.iter().map(|e| e.id).collect();
        assert!(
            old.entries[..4].iter().all(|e| e.id < next.id),
            "{ids:?} {}",
            next.id
        );
        assert_eq!(
            pg.remember_nonce(&s, "AB", at, at).await.unwrap(),
            NonceCheck::Replayed
        );

        // A kind of record this binary does not know is refused, nothing copied.
        let db2 = TestDb::create().await.unwrap();
        sled.db
            .open_tree("future_records")
            .unwrap()
            .insert("k", "v")
            .unwrap();
        let pg2 = PgStore::connect(&db2.url).await.unwrap();
        let err = pg2.import_sled(&sled, &[]).await.unwrap_err();
        assert!(err.to_string().contains("\"future_records\""), "{err}");
        assert!(pg2.counts().await.unwrap().iter().all(|(_, n)| *n == 0));
    }
}
