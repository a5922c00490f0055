//! Support cases in the sled store: tree `cases`, key = the case number (big-endian u64),
//! value = the JSON [`CaseRecord`]; tree `cases_by_serial`, key = serial ++ 0x00 ++
//! number, value empty, to list one box's cases; tree `case_counter`, key `next`, the
//! next case number (from [`FIRST_CASE_NUMBER`]), raised in the transaction that opens a
//! case, so a number is never given twice and numbers stay small (sled's own id
//! generator jumps by a million at every restart).
//!
//! A change of a case, of the devices it touches (an RMA swap, a diagnostics request)
//! and their audit entries are one sled transaction over the five trees.

use super::{decode, encode, MutateError, SledStore, StoreError};
use crate::domain::case::{CaseId, CaseRecord, FIRST_CASE_NUMBER};
use crate::domain::device::DeviceRecord;
use jiff::Timestamp;
use np_common::Serial;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional as _, TransactionalTree,
    UnabortableTransactionError,
};

/// Who changes a case, how and when, for the audit log. Every change of a case is
/// audited (action `action`, serial = the case's box); devices changed with it get entries
/// of their own (action `device_action`), except the case's own box when `device_action`
/// is `action` (a diagnostics request, report or cancel): then the one entry of the case
/// carries the box's snapshot too, under `device`, so each step is one row of the box's
/// history.
#[derive(Debug, Clone)]
pub struct CaseChange<'a> {
    /// The token name, or `device:<serial>` for a box's own report.
    pub actor: &'a str,
    /// What was done to the case (`case_open`, `case_note`, `rma_end`, ...).
    pub action: &'a str,
    /// What was done to devices changed with it (`swap`, `diagnostics_request`, ...).
    pub device_action: &'a str,
    /// When.
    pub at: Timestamp,
}

impl<'a> CaseChange<'a> {
    /// A change whose case and devices are audited under the same action.
    pub fn one(actor: &'a str, action: &'a str, at: Timestamp) -> Self {
        CaseChange {
            actor,
            action,
            device_action: action,
            at,
        }
    }
}

/// One page of cases.
#[derive(Debug, Clone)]
pub struct CasePage {
    /// The cases, newest (highest number) first.
    pub cases: Vec<CaseRecord>,
    /// Continue with the cases older than this one, when there may be more.
    pub next_before: Option<CaseId>,
}

/// A case changed together with the devices it named.
#[derive(Debug, Clone)]
pub struct CaseChanged {
    /// The case as written.
    pub case: CaseRecord,
    /// The devices as written (None where unregistered), in the order asked.
    pub devices: Vec<Option<DeviceRecord>>,
}

/// The key of the next case number in tree `case_counter`.
const COUNTER_KEY: &[u8] = b"next";

pub(super) fn serial_key(serial: &str, number: u64) -> Vec<u8> {
    let mut k = serial.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&number.to_be_bytes());
    k
}

enum Abort<E> {
    Rejected(E),
    Corrupt(StoreError),
}

fn abort<E>(e: StoreError) -> ConflictableTransactionError<Abort<E>> {
    ConflictableTransactionError::Abort(Abort::Corrupt(e))
}

fn audit_entry(
    id: u64,
    change: &CaseChange<'_>,
    action: &str,
    serial: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> super::AuditEntry {
    super::AuditEntry {
        id,
        at: change.at,
        actor: change.actor.to_owned(),
        action: action.to_owned(),
        serial: Some(serial.to_owned()),
        before,
        after,
    }
}

/// Whether the change of device `serial` goes into the case's own audit entry.
pub(super) fn merged_into_case(
    change: &CaseChange<'_>,
    case: &CaseRecord,
    case_changed: bool,
    serial: &Serial,
) -> bool {
    case_changed && change.device_action == change.action && &case.serial == serial
}

/// A case's audit snapshot with its box's (when merged) under `device`.
pub(super) fn case_snapshot(case: &CaseRecord, device: Option<&DeviceRecord>) -> serde_json::Value {
    let mut v = case.snapshot();
    if let (Some(d), Some(o)) = (device, v.as_object_mut()) {
        o.insert("device".into(), d.snapshot());
    }
    v
}

fn append(
    audit: &TransactionalTree,
    idx: &TransactionalTree,
    entry: &super::AuditEntry,
) -> Result<(), UnabortableTransactionError> {
    super::audit::append_in(audit, idx, entry)
}

fn map_tx<T, E>(r: Result<T, TransactionError<Abort<E>>>) -> Result<T, MutateError<E>> {
    r.map_err(|e| match e {
        TransactionError::Abort(Abort::Rejected(e)) => MutateError::Rejected(e),
        TransactionError::Abort(Abort::Corrupt(s)) => MutateError::Store(s),
        TransactionError::Storage(s) => MutateError::Store(StoreError::Sled(s)),
    })
}

impl SledStore {
    /// The case with this id, if any.
    pub fn case(&self, id: CaseId) -> Result<Option<CaseRecord>, StoreError> {
        match self.cases.get(id.number().to_be_bytes())? {
            Some(v) => Ok(Some(decode(&id.to_string(), &v)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` cases older than `before` (of one box, or of all), newest first,
    /// keeping those `keep` accepts.
    pub fn list_cases(
        &self,
        serial: Option<&Serial>,
        before: Option<CaseId>,
        limit: usize,
        keep: impl Fn(&CaseRecord) -> bool,
    ) -> Result<CasePage, StoreError> {
        let end = before.map_or(u64::MAX, CaseId::number);
        let numbers: Box<dyn Iterator<Item = Result<u64, StoreError>>> = match serial {
            Some(s) => {
                let prefix = s.as_str().len() + 1;
                Box::new(
                    self.cases_by_serial
                        .range(serial_key(s.as_str(), 0)..serial_key(s.as_str(), end))
                        .rev()
                        .map(move |item| {
                            let (k, _) = item?;
                            let raw: [u8; 8] = k
                                .get(prefix..)
                                .unwrap_or_default()
                                .try_into()
                                .map_err(|_| StoreError::Corrupt {
                                    what: "case index".into(),
                                    reason: "key of the wrong length".into(),
                                })?;
                            Ok(u64::from_be_bytes(raw))
                        }),
                )
            }
            None => Box::new(self.cases.range(..end.to_be_bytes()).rev().map(|item| {
                let (k, _) = item?;
                let raw: [u8; 8] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    what: "cases".into(),
                    reason: "key of the wrong length".into(),
                })?;
                Ok(u64::from_be_bytes(raw))
            })),
        };
        let mut cases: Vec<CaseRecord> = Vec::new();
        for n in numbers {
            let Some(c) = self.case(CaseId::from_number(n?))? else {
                continue;
            };
            if !keep(&c) {
                continue;
            }
            if cases.len() == limit {
                let next_before = cases.last().map(|c| c.id);
                return Ok(CasePage { cases, next_before });
            }
            cases.push(c);
        }
        Ok(CasePage {
            cases,
            next_before: None,
        })
    }

    /// Opens a case for `serial`: `f` sees the box's record (None when unregistered) and
    /// a new id, and builds the case or refuses; the case and its audit entry are one
    /// transaction, flushed before it returns.
    pub async fn open_case<E, F>(
        &self,
        serial: &Serial,
        change: &CaseChange<'_>,
        f: F,
    ) -> Result<CaseRecord, MutateError<E>>
    where
        F: Fn(CaseId, Option<&DeviceRecord>) -> Result<CaseRecord, E>,
    {
        let trees = (
            &self.devices,
            &self.audit,
            &self.audit_by_serial,
            &self.cases,
            &self.cases_by_serial,
            &self.case_counter,
        );
        let result = trees.transaction(|(devs, audit, idx, cases, by_serial, counter)| {
            let device = match devs.get(serial.as_str().as_bytes())? {
                Some(v) => Some(decode::<DeviceRecord>(serial.as_str(), &v).map_err(abort)?),
                None => None,
            };
            let number = match counter.get(COUNTER_KEY)? {
                Some(v) => {
                    let raw: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                        abort(StoreError::Corrupt {
                            what: "case counter".into(),
                            reason: "value of the wrong length".into(),
                        })
                    })?;
                    u64::from_be_bytes(raw).max(FIRST_CASE_NUMBER)
                }
                None => FIRST_CASE_NUMBER,
            };
            let id = CaseId::from_number(number);
            let case = f(id, device.as_ref())
                .map_err(|e| ConflictableTransactionError::Abort(Abort::Rejected(e)))?;
            let key = case.id.number().to_be_bytes();
            cases.insert(&key, encode(&case))?;
            counter.insert(COUNTER_KEY, &(number + 1).to_be_bytes())?;
            by_serial.insert(
                serial_key(case.serial.as_str(), case.id.number()),
                &[] as &[u8],
            )?;
            let entry = audit_entry(
                audit.generate_id()?,
                change,
                change.action,
                case.serial.as_str(),
                None,
                Some(case.snapshot()),
            );
            append(audit, idx, &entry)?;
            Ok(case)
        });
        let case = map_tx(result)?;
        self.flush().await.map_err(MutateError::Store)?;
        Ok(case)
    }

    /// Changes case `id` and the devices `serials` together: `f` changes them in memory
    /// (or refuses), then the case, the changed devices and an audit entry for each are
    /// written in one transaction (retried on conflict, so `f` may run more than once),
    /// and flushed. `Ok(None)` when there is no such case.
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
        let trees = (
            &self.devices,
            &self.audit,
            &self.audit_by_serial,
            &self.cases,
        );
        let result = trees.transaction(|(devs, audit, idx, cases)| {
            let key = id.number().to_be_bytes();
            let Some(raw) = cases.get(key)? else {
                return Ok(None);
            };
            let before_case: CaseRecord = decode(&id.to_string(), &raw).map_err(abort)?;
            let mut records = Vec::with_capacity(serials.len());
            for s in serials {
                records.push(match devs.get(s.as_str().as_bytes())? {
                    Some(v) => Some(decode::<DeviceRecord>(s.as_str(), &v).map_err(abort)?),
                    None => None,
                });
            }
            let before = records.clone();
            let mut case = before_case.clone();
            f(&mut case, &mut records)
                .map_err(|e| ConflictableTransactionError::Abort(Abort::Rejected(e)))?;
            let case_changed = case != before_case;
            let mut merged: (Option<&DeviceRecord>, Option<&DeviceRecord>) = (None, None);
            for ((s, old), new) in serials.iter().zip(&before).zip(&records) {
                if old == new {
                    continue;
                }
                let k = s.as_str().as_bytes();
                match new {
                    Some(n) => devs.insert(k, encode(n))?,
                    None => devs.remove(k)?,
                };
                if merged_into_case(change, &case, case_changed, s) {
                    merged = (old.as_ref(), new.as_ref());
                    continue;
                }
                let entry = audit_entry(
                    audit.generate_id()?,
                    change,
                    change.device_action,
                    s.as_str(),
                    old.as_ref().map(DeviceRecord::snapshot),
                    new.as_ref().map(DeviceRecord::snapshot),
                );
                append(audit, idx, &entry)?;
            }
            if case_changed {
                cases.insert(&key, encode(&case))?;
                let entry = audit_entry(
                    audit.generate_id()?,
                    change,
                    change.action,
                    case.serial.as_str(),
                    Some(case_snapshot(&before_case, merged.0)),
                    Some(case_snapshot(&case, merged.1)),
                );
                append(audit, idx, &entry)?;
            }
            Ok(Some(CaseChanged {
                case,
                devices: records,
            }))
        });
        let changed = map_tx(result)?;
        self.flush().await.map_err(MutateError::Store)?;
        Ok(changed)
    }
}
