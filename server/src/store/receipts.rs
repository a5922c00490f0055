//! Signed receipts of boxes (docs/formats.md, "Receipt"): tree `device_receipts`, key =
//! serial ++ 0x00 ++ big-endian seq, value = the JSON [`StoredReceipt`]. A receipt is
//! stored once; storing it, moving the device record to it when it is the box's newest,
//! its event and (for staff uploads) its audit entry are one sled transaction.

use super::{decode, encode, SledStore, StoreError};
use crate::domain::device::DeviceRecord;
use crate::store::EventRecord;
use jiff::Timestamp;
use np_common::api::{EventKind, LastResult, Outcome};
use np_common::device_docs::Receipt;
use np_common::{Envelope, Serial};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional as _};

const RECEIPTS: &str = "device_receipts";
const EVENTS: &str = "device_events";

/// A receipt as the server keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredReceipt {
    /// What the box signed.
    pub receipt: Receipt,
    /// The signed envelope as received.
    pub envelope: Envelope,
    /// When the server received it.
    pub received_at: Timestamp,
    /// Who brought it: the staff token's name, or `check-in` when the box sent it.
    pub via: String,
}

/// What storing one receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptFiled {
    /// Stored now; `latest`: the box's record follows it.
    New { latest: bool },
    /// The same receipt was held already: nothing changed.
    Duplicate,
    /// Another receipt with the same seq is held (the box's state was reset): kept the
    /// held one, changed nothing.
    Conflict,
}

fn receipt_key(serial: &Serial, seq: u64) -> Vec<u8> {
    let mut k = serial.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The event kind a receipt's outcome is listed as.
pub fn event_kind(outcome: Outcome) -> EventKind {
    match outcome {
        Outcome::Installed => EventKind::Commit,
        Outcome::RolledBack => EventKind::Rollback,
        Outcome::Refused => EventKind::Refusal,
        Outcome::Failed => EventKind::Failure,
    }
}

/// The last result a receipt stands for (as a box's check-in reports it).
pub fn last_result_of(r: &Receipt) -> LastResult {
    LastResult {
        version: match r.outcome {
            Outcome::RolledBack => r.from_version.clone(),
            _ => r.to_version.clone(),
        },
        outcome: r.outcome,
        detail: r.detail.clone(),
        at: r.at,
    }
}

enum Abort {
    NotRegistered,
    Corrupt(StoreError),
}

impl SledStore {
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
        let r = &stored.receipt;
        let serial = &r.serial;
        let receipts = self.db.open_tree(RECEIPTS)?;
        let events = self.db.open_tree(EVENTS)?;
        let trees = (
            &self.devices,
            &self.audit,
            &self.audit_by_serial,
            &receipts,
            &events,
        );
        let key = receipt_key(serial, r.seq);
        let result = trees.transaction(|(devs, audit, idx, recs, evs)| {
            let abort = |a| ConflictableTransactionError::Abort(a);
            let Some(raw) = devs.get(serial.as_str().as_bytes())? else {
                return Err(abort(Abort::NotRegistered));
            };
            let old: DeviceRecord =
                decode(serial.as_str(), &raw).map_err(|e| abort(Abort::Corrupt(e)))?;
            if let Some(held) = recs.get(&key)? {
                let held: StoredReceipt =
                    decode(serial.as_str(), &held).map_err(|e| abort(Abort::Corrupt(e)))?;
                return Ok(if held.receipt == *r {
                    ReceiptFiled::Duplicate
                } else {
                    ReceiptFiled::Conflict
                });
            }
            recs.insert(key.clone(), encode(stored))?;
            let event = EventRecord {
                at: stored.received_at,
                version: last_result_of(r).version,
                event: event_kind(r.outcome),
                detail: format!("receipt {} (at {}): {}", r.seq, r.at, r.detail),
            };
            let mut ek = serial.as_str().as_bytes().to_vec();
            ek.push(0);
            ek.extend_from_slice(&evs.generate_id()?.to_be_bytes());
            evs.insert(ek, encode(&event))?;
            let latest = old.last_receipt_seq.is_none_or(|s| r.seq > s);
            if latest {
                let mut new = old.clone();
                new.last_receipt_seq = Some(r.seq);
                if let Some(v) = r.running_after() {
                    new.version = Some(v.clone());
                }
                new.last_result = Some(last_result_of(r));
                devs.insert(serial.as_str().as_bytes(), encode(&new))?;
                if let Some(actor) = actor {
                    let entry = super::AuditEntry {
                        id: audit.generate_id()?,
                        at: stored.received_at,
                        actor: actor.to_owned(),
                        action: "receipt".to_owned(),
                        serial: Some(serial.to_string()),
                        before: Some(old.snapshot()),
                        after: Some(new.snapshot()),
                    };
                    super::audit::append_in(audit, idx, &entry)?;
                }
            } else if let Some(actor) = actor {
                // An older receipt is kept and listed, and moves nothing: audited as such.
                let entry = super::AuditEntry {
                    id: audit.generate_id()?,
                    at: stored.received_at,
                    actor: actor.to_owned(),
                    action: "receipt".to_owned(),
                    serial: Some(serial.to_string()),
                    before: Some(old.snapshot()),
                    after: Some(old.snapshot()),
                };
                super::audit::append_in(audit, idx, &entry)?;
            }
            Ok(ReceiptFiled::New { latest })
        });
        let filed = match result {
            Ok(f) => f,
            Err(TransactionError::Abort(Abort::NotRegistered)) => return Ok(None),
            Err(TransactionError::Abort(Abort::Corrupt(e))) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(StoreError::Sled(e)),
        };
        if matches!(filed, ReceiptFiled::New { .. }) {
            let mut prefix = serial.as_str().as_bytes().to_vec();
            prefix.push(0);
            for item in events.scan_prefix(&prefix).rev().skip(keep_events.max(1)) {
                let (k, _) = item?;
                events.remove(k)?;
            }
            self.flush().await?;
        }
        Ok(Some(filed))
    }

    /// The receipt `seq` of the box, if held.
    pub fn receipt(&self, serial: &Serial, seq: u64) -> Result<Option<StoredReceipt>, StoreError> {
        match self.db.open_tree(RECEIPTS)?.get(receipt_key(serial, seq))? {
            Some(v) => Ok(Some(decode(serial.as_str(), &v)?)),
            None => Ok(None),
        }
    }

    /// The box's newest `limit` receipts, newest (highest seq) first.
    pub fn device_receipts(
        &self,
        serial: &Serial,
        limit: usize,
    ) -> Result<Vec<StoredReceipt>, StoreError> {
        let mut prefix = serial.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.db.open_tree(RECEIPTS)?.scan_prefix(prefix).rev() {
            if out.len() == limit {
                break;
            }
            let (_, v) = item?;
            out.push(decode(serial.as_str(), &v)?);
        }
        Ok(out)
    }
}
