//! The append-only audit log: tree `audit`, key = big-endian u64 id (from sled's id
//! generator, so ascending in time), value = the JSON [`AuditEntry`]; tree
//! `audit_by_serial`, key = serial ++ 0x00 ++ id, value empty, to list one box's history.
//! Nothing ever rewrites or deletes an entry.

use super::{decode, encode, SledStore, StoreError};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sled::transaction::{TransactionalTree, UnabortableTransactionError};

/// One staff change: who, when, what, and the record before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Ascending id.
    pub id: u64,
    /// When.
    pub at: Timestamp,
    /// The token name that made the change.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// The box concerned, if any.
    pub serial: Option<String>,
    /// The record before (null when it was created).
    pub before: Option<serde_json::Value>,
    /// The record after (null when it was deleted).
    pub after: Option<serde_json::Value>,
}

/// One page of audit entries.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// Entries, oldest first.
    pub entries: Vec<AuditEntry>,
    /// The id to continue after, when there may be more.
    pub next_after: Option<u64>,
}

fn idx_key(serial: &str, id: u64) -> Vec<u8> {
    let mut k = serial.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Appends an entry inside a transaction.
pub(super) fn append_in(
    audit: &TransactionalTree,
    idx: &TransactionalTree,
    entry: &AuditEntry,
) -> Result<(), UnabortableTransactionError> {
    audit.insert(&entry.id.to_be_bytes(), encode(entry))?;
    if let Some(s) = &entry.serial {
        idx.insert(idx_key(s, entry.id), &[] as &[u8])?;
    }
    Ok(())
}

/// Every action the audit log records, for filters (`np-vendor audit --action`).
pub const AUDIT_ACTIONS: &[&str] = &[
    "register",
    "import",
    "edit",
    "extend",
    "reinstate",
    "swap",
    "revoke",
    "action",
    "action_cancel",
    "release_create",
    "release_set",
    "release_halt",
    "keyring_draft",
    "keyring_install",
    "keyring_resign",
    "receipt",
    "case_open",
    "case_note",
    "case_status",
    "rma_open",
    "rma_shortage",
    "rma_end",
    "diagnostics_request",
    "diagnostics_report",
    "diagnostics_cancel",
];

impl SledStore {
    /// Appends an entry that is not tied to a device change (for example a release), and
    /// flushes it.
    pub async fn append_audit(
        &self,
        at: Timestamp,
        actor: &str,
        action: &str,
        serial: Option<&str>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<AuditEntry, StoreError> {
        let entry = AuditEntry {
            id: self.db.generate_id()?,
            at,
            actor: actor.to_owned(),
            action: action.to_owned(),
            serial: serial.map(str::to_owned),
            before,
            after,
        };
        self.audit.insert(entry.id.to_be_bytes(), encode(&entry))?;
        if let Some(s) = serial {
            self.audit_by_serial
                .insert(idx_key(s, entry.id), &[] as &[u8])?;
        }
        self.flush().await?;
        Ok(entry)
    }

    /// Up to `limit` entries after id `after`, of one serial or of all.
    pub fn audit_entries(
        &self,
        serial: Option<&str>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut ids = Vec::new();
        let mut more = false;
        match serial {
            Some(s) => {
                let mut prefix = s.as_bytes().to_vec();
                prefix.push(0);
                for item in self.audit_by_serial.range(idx_key(s, start)..) {
                    let (k, _) = item?;
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    if ids.len() == limit {
                        more = true;
                        break;
                    }
                    let raw: [u8; 8] =
                        k[prefix.len()..]
                            .try_into()
                            .map_err(|_| StoreError::Corrupt {
                                what: "audit index".into(),
                                reason: "key of the wrong length".into(),
                            })?;
                    ids.push(u64::from_be_bytes(raw));
                }
            }
            None => {
                for item in self.audit.range(start.to_be_bytes()..) {
                    let (k, _) = item?;
                    if ids.len() == limit {
                        more = true;
                        break;
                    }
                    let raw: [u8; 8] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                        what: "audit log".into(),
                        reason: "key of the wrong length".into(),
                    })?;
                    ids.push(u64::from_be_bytes(raw));
                }
            }
        }
        let mut entries = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(v) = self.audit.get(id.to_be_bytes())? {
                entries.push(decode(&format!("audit entry {id}"), &v)?);
            }
        }
        let next_after = if more { ids.last().copied() } else { None };
        Ok(AuditPage {
            entries,
            next_after,
        })
    }

    /// Up to `limit` entries older than id `before`, newest first, of one serial or of
    /// all, keeping those `keep` accepts; stops at the first entry `stop` says is too old.
    pub fn audit_entries_newest(
        &self,
        serial: Option<&str>,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&AuditEntry) -> bool,
        stop: impl Fn(&AuditEntry) -> bool,
    ) -> Result<AuditPage, StoreError> {
        let end = before.unwrap_or(u64::MAX);
        let ids: Box<dyn Iterator<Item = Result<u64, StoreError>>> = match serial {
            Some(s) => {
                let prefix_len = s.len() + 1;
                Box::new(
                    self.audit_by_serial
                        .range(idx_key(s, 0)..idx_key(s, end))
                        .rev()
                        .map(move |item| {
                            let (k, _) = item?;
                            let raw: [u8; 8] =
                                k.get(prefix_len..).unwrap_or_default().try_into().map_err(
                                    |_| StoreError::Corrupt {
                                        what: "audit index".into(),
                                        reason: "key of the wrong length".into(),
                                    },
                                )?;
                            Ok(u64::from_be_bytes(raw))
                        }),
                )
            }
            None => Box::new(self.audit.range(..end.to_be_bytes()).rev().map(|item| {
                let (k, _) = item?;
                let raw: [u8; 8] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    what: "audit log".into(),
                    reason: "key of the wrong length".into(),
                })?;
                Ok(u64::from_be_bytes(raw))
            })),
        };
        let mut entries: Vec<AuditEntry> = Vec::new();
        let mut more = false;
        for id in ids {
            let id = id?;
            let Some(v) = self.audit.get(id.to_be_bytes())? else {
                continue;
            };
            let e: AuditEntry = decode(&format!("audit entry {id}"), &v)?;
            if stop(&e) {
                break;
            }
            if !keep(&e) {
                continue;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push(e);
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
}
