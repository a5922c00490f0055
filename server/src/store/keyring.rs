//! The installed keyring as the store records it: its version, the key ids of its online
//! keys and its root-signed envelope. Replicas that share a database compare their data
//! folder's keyring with this record at start and while they run, so that none signs
//! with keys the database's documents are not (or no longer) signed under
//! (`crate::domain::replica_keys`).
//!
//! sled: one value in the tree `keyring`; PostgreSQL: the one row of `installed_keyring`
//! (migration 3). [`KeyringRecord`]s only move forward: [`Store::advance_keyring`] writes
//! a record when none is there or the one there is of a lower version, atomically, and
//! answers the record in force after, so two replicas starting together agree.

use super::{decode, encode, AuditEntry, PgStore, SledStore, Store, StoreError};
use crate::state::ServerKeys;
use np_common::Envelope;

/// The sled tree and key of the record.
const TREE: &str = "keyring";
const KEY: &[u8] = b"installed";

/// The installed keyring as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyringRecord {
    /// The keyring's version.
    pub version: u64,
    /// The key ids of its online keys, in the keyring's order.
    pub key_ids: Vec<String>,
    /// The root-signed envelope, as JSON.
    pub envelope: String,
}

impl KeyringRecord {
    /// The record of the keyring `keys` sign under.
    pub fn of(keys: &ServerKeys) -> KeyringRecord {
        KeyringRecord {
            version: keys.keyring.version,
            key_ids: keys
                .keyring
                .keys
                .iter()
                .map(|k| k.keyid.to_string())
                .collect(),
            envelope: String::from_utf8_lossy(&keys.keyring_envelope.to_json()).into_owned(),
        }
    }

    /// The signed payload (the keyring's bytes), if the envelope parses.
    fn payload(&self) -> Option<Vec<u8>> {
        Envelope::parse(self.envelope.as_bytes())
            .ok()?
            .payload_bytes()
            .ok()
    }

    /// Whether both are the same keyring: same version, same keys, same signed bytes.
    pub fn same_keyring(&self, other: &KeyringRecord) -> bool {
        self.version == other.version
            && self.key_ids == other.key_ids
            && self.payload().is_some()
            && self.payload() == other.payload()
    }

    /// The version and key ids, as messages name them: `version 2 (keys ab12…, cd34…)`.
    pub fn describe(&self) -> String {
        let ids: Vec<String> = self
            .key_ids
            .iter()
            .map(|k| k.chars().take(12).collect())
            .collect();
        format!("version {} (keys {})", self.version, ids.join(", "))
    }
}

impl Store {
    /// The recorded keyring, if any.
    pub async fn keyring_record(&self) -> Result<Option<KeyringRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.keyring_record(),
            Store::Postgres(p) => p.keyring_record().await,
        }
    }

    /// Records `record` when the store has none or one of a lower version (atomically)
    /// and answers the record in force after: `record` itself, or the one that was there.
    pub async fn advance_keyring(
        &self,
        record: &KeyringRecord,
    ) -> Result<KeyringRecord, StoreError> {
        match self {
            Store::Sled(s) => s.advance_keyring(record).await,
            Store::Postgres(p) => p.advance_keyring(record).await,
        }
    }

    /// As [`Store::advance_keyring`], and when `record` is written, `audit` (its `id`
    /// ignored) is appended with it, in the same transaction (PostgreSQL): an install is
    /// recorded with its audit entry or not at all.
    pub async fn advance_keyring_audited(
        &self,
        record: &KeyringRecord,
        audit: &AuditEntry,
    ) -> Result<KeyringRecord, StoreError> {
        match self {
            Store::Sled(s) => {
                let after = s.advance_keyring(record).await?;
                if after.same_keyring(record) && !s.has_install_audit(record.version)? {
                    s.append_audit(
                        audit.at,
                        &audit.actor,
                        &audit.action,
                        None,
                        audit.before.clone(),
                        audit.after.clone(),
                    )
                    .await?;
                }
                Ok(after)
            }
            Store::Postgres(p) => p.advance_keyring_audited(record, audit).await,
        }
    }

    /// From now on, a write that would sign (devices, releases) is refused with
    /// [`StoreError::KeyringStale`] once the recorded keyring is newer than `version`,
    /// the version this process signs under (PostgreSQL; the sled store has one process).
    pub fn expect_keyring(&self, version: u64) {
        if let Store::Postgres(p) = self {
            p.expect_keyring(version);
        }
    }
}

impl SledStore {
    fn keyring_record(&self) -> Result<Option<KeyringRecord>, StoreError> {
        match self.db.open_tree(TREE)?.get(KEY)? {
            Some(v) => Ok(Some(decode("the keyring record", &v)?)),
            None => Ok(None),
        }
    }

    /// Whether the record of `version` was written with its install's audit entry (a
    /// retried install does not audit twice).
    fn has_install_audit(&self, version: u64) -> Result<bool, StoreError> {
        let tree = self.db.open_tree(TREE)?;
        Ok(tree.get(audited_key(version))?.is_some() || {
            tree.insert(audited_key(version), &[] as &[u8])?;
            false
        })
    }

    async fn advance_keyring(&self, record: &KeyringRecord) -> Result<KeyringRecord, StoreError> {
        let tree = self.db.open_tree(TREE)?;
        loop {
            let old = tree.get(KEY)?;
            if let Some(v) = &old {
                let held: KeyringRecord = decode("the keyring record", v)?;
                if held.version >= record.version {
                    return Ok(held);
                }
            }
            if tree
                .compare_and_swap(KEY, old, Some(encode(record)))?
                .is_ok()
            {
                self.flush().await?;
                return Ok(record.clone());
            }
        }
    }
}

/// The sled key marking that the install of `version` was audited.
fn audited_key(version: u64) -> Vec<u8> {
    format!("audited-{version}").into_bytes()
}

impl PgStore {
    async fn advance_keyring_audited(
        &self,
        record: &KeyringRecord,
        audit: &AuditEntry,
    ) -> Result<KeyringRecord, StoreError> {
        let version = i64::try_from(record.version).unwrap_or(i64::MAX);
        let text = String::from_utf8(encode(record)).unwrap_or_default();
        let entry = String::from_utf8(encode(audit)).unwrap_or_default();
        super::postgres::timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(super::postgres::pg)?;
            let written = tx
                .execute(
                    "INSERT INTO installed_keyring (id, version, record) VALUES (1, $1, $2) \
                     ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, record = EXCLUDED.record \
                     WHERE installed_keyring.version < EXCLUDED.version",
                    &[&version, &text],
                )
                .await
                .map_err(super::postgres::pg)?;
            if written == 1 {
                tx.execute(
                    "INSERT INTO audit (serial, entry) VALUES (NULL, $1)",
                    &[&entry],
                )
                .await
                .map_err(super::postgres::pg)?;
            }
            tx.commit().await.map_err(super::postgres::pg)?;
            Ok(())
        })
        .await?;
        self.keyring_record()
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "the keyring record".into(),
                reason: "missing right after it was written".into(),
            })
    }

    async fn keyring_record(&self) -> Result<Option<KeyringRecord>, StoreError> {
        let rows = self
            .query("SELECT record FROM installed_keyring WHERE id = 1", &[])
            .await?;
        match rows.first() {
            Some(r) => Ok(Some(decode(
                "the keyring record",
                r.get::<_, &str>(0).as_bytes(),
            )?)),
            None => Ok(None),
        }
    }

    async fn advance_keyring(&self, record: &KeyringRecord) -> Result<KeyringRecord, StoreError> {
        let version = i64::try_from(record.version).unwrap_or(i64::MAX);
        let text = String::from_utf8(encode(record)).unwrap_or_default();
        // One statement: inserts, or raises a lower version; concurrent callers serialize
        // on the row, and the loser reads the winner's record below.
        self.query(
            "INSERT INTO installed_keyring (id, version, record) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, record = EXCLUDED.record \
             WHERE installed_keyring.version < EXCLUDED.version",
            &[&version, &text],
        )
        .await?;
        self.keyring_record()
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "the keyring record".into(),
                reason: "missing right after it was written".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract_tests::{keyring_record, record, TestDb};
    use crate::store::{Change, MutateError};
    use np_common::{SecretKey, Serial};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_behind_the_recorded_keyring_cannot_write_what_it_signs() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let a = Store::connect(&db.url).await.unwrap();
        let b = Store::connect(&db.url).await.unwrap();
        let s = Serial::parse("NR-2000-123456-4").unwrap();
        let key = SecretKey::from_seed(&[1; 32]);
        let change = Change {
            actor: None,
            action: "register",
            at: "2026-01-02T00:00:00Z".parse().unwrap(),
        };
        let write = |store: Store| {
            let (s, key, change) = (s.clone(), key.clone(), change.clone());
            async move {
                store
                    .mutate_devices(std::slice::from_ref(&s), &change, |recs| {
                        recs[0] = Some(record(&s, &key));
                        Ok::<(), ()>(())
                    })
                    .await
            }
        };
        a.advance_keyring(&keyring_record(1, 1)).await.unwrap();
        a.expect_keyring(1);
        b.expect_keyring(1);
        write(b.clone()).await.unwrap();
        // A installs version 2; B, still on 1, may no longer write.
        a.advance_keyring(&keyring_record(2, 2)).await.unwrap();
        a.expect_keyring(2);
        let err = write(b.clone()).await.unwrap_err();
        assert!(
            matches!(
                err,
                MutateError::Store(StoreError::KeyringStale { ours: 1, stored: 2 })
            ),
            "{err:?}"
        );
        let text = StoreError::KeyringStale { ours: 1, stored: 2 }.to_string();
        assert!(
            text.contains("version 1") && text.contains("version 2"),
            "{text}"
        );
        let api =
            crate::http::error::ApiError::from(StoreError::KeyringStale { ours: 1, stored: 2 });
        assert_eq!(
            (api.status.as_u16(), api.code.as_str()),
            (503, "keyring_stale")
        );
        write(a.clone()).await.unwrap();
        b.expect_keyring(2);
        write(b).await.unwrap();
    }
}
