//! Devices in the store: tree `devices`, key = the serial's bytes, value = the JSON
//! [`DeviceRecord`]. Every change of devices appends audit entries in the same sled
//! transaction, so the log and the records never disagree.

use super::{decode, encode, SledStore, StoreError};
use crate::domain::device::DeviceRecord;
use jiff::Timestamp;
use np_common::docs::Status;
use np_common::Serial;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional as _};

/// Who changes devices, how and when, for the audit log.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The actor (token name); `None` for changes not made by staff (check-ins), which
    /// are not audited.
    pub actor: Option<&'a str>,
    /// What was done (`register`, `extend`, `swap`, `revoke`, ...).
    pub action: &'a str,
    /// When.
    pub at: Timestamp,
}

/// Why a change of devices did not happen.
#[derive(Debug)]
pub enum MutateError<E> {
    /// The caller's closure refused the change.
    Rejected(E),
    /// The store failed.
    Store(StoreError),
}

impl<E: From<StoreError>> MutateError<E> {
    /// Collapses both cases into the caller's error type.
    pub fn into_inner(self) -> E {
        match self {
            MutateError::Rejected(e) => e,
            MutateError::Store(s) => E::from(s),
        }
    }
}

/// One page of devices.
#[derive(Debug, Clone)]
pub struct DevicePage {
    /// The devices, ordered by serial.
    pub devices: Vec<DeviceRecord>,
    /// The serial to continue after, when there may be more.
    pub next_after: Option<String>,
}

enum Abort<E> {
    Rejected(E),
    Corrupt(StoreError),
}

impl SledStore {
    /// The device with this serial, if registered.
    pub fn device(&self, serial: &Serial) -> Result<Option<DeviceRecord>, StoreError> {
        match self.devices.get(serial.as_str().as_bytes())? {
            Some(v) => Ok(Some(decode(serial.as_str(), &v)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` devices after serial `after`, keeping those `keep` accepts.
    pub fn list_devices(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&DeviceRecord) -> bool,
    ) -> Result<DevicePage, StoreError> {
        let iter = match after {
            Some(a) => {
                let mut start = a.as_bytes().to_vec();
                start.push(0);
                self.devices.range(start..)
            }
            None => self.devices.iter(),
        };
        let mut devices = Vec::new();
        for item in iter {
            let (k, v) = item?;
            let d: DeviceRecord = decode(&String::from_utf8_lossy(&k), &v)?;
            if keep(&d) {
                if devices.len() == limit {
                    let next_after = devices.last().map(|d: &DeviceRecord| d.serial.to_string());
                    return Ok(DevicePage {
                        devices,
                        next_after,
                    });
                }
                devices.push(d);
            }
        }
        Ok(DevicePage {
            devices,
            next_after: None,
        })
    }

    /// How many devices have each status.
    pub fn device_counts(&self) -> Result<[(Status, u64); 3], StoreError> {
        let mut counts = [
            (Status::Active, 0),
            (Status::Revoked, 0),
            (Status::Replaced, 0),
        ];
        for item in self.devices.iter() {
            let (k, v) = item?;
            let d: DeviceRecord = decode(&String::from_utf8_lossy(&k), &v)?;
            for c in counts.iter_mut() {
                if c.0 == d.status {
                    c.1 += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Reads the records of `serials` (None where unregistered), lets `f` change them in
    /// memory, and writes back what changed, with one audit entry per changed serial, all
    /// in one transaction (retried on conflict, so `f` may run more than once), then
    /// flushes. Returns the records as written.
    pub async fn mutate_devices<E, F>(
        &self,
        serials: &[Serial],
        change: &Change<'_>,
        f: F,
    ) -> Result<Vec<Option<DeviceRecord>>, MutateError<E>>
    where
        F: Fn(&mut [Option<DeviceRecord>]) -> Result<(), E>,
    {
        let trees = (&self.devices, &self.audit, &self.audit_by_serial);
        let result = trees.transaction(|(devs, audit, idx)| {
            let mut records = Vec::with_capacity(serials.len());
            for s in serials {
                let rec = match devs.get(s.as_str().as_bytes())? {
                    Some(v) => Some(
                        decode::<DeviceRecord>(s.as_str(), &v)
                            .map_err(|e| ConflictableTransactionError::Abort(Abort::Corrupt(e)))?,
                    ),
                    None => None,
                };
                records.push(rec);
            }
            let before = records.clone();
            f(&mut records).map_err(|e| ConflictableTransactionError::Abort(Abort::Rejected(e)))?;
            for ((s, old), new) in serials.iter().zip(&before).zip(&records) {
                if old == new {
                    continue;
                }
                let key = s.as_str().as_bytes();
                match new {
                    Some(n) => devs.insert(key, encode(n))?,
                    None => devs.remove(key)?,
                };
                if let Some(actor) = change.actor {
                    let entry = super::AuditEntry {
                        id: audit.generate_id()?,
                        at: change.at,
                        actor: actor.to_owned(),
                        action: change.action.to_owned(),
                        serial: Some(s.to_string()),
                        before: old.as_ref().map(DeviceRecord::snapshot),
                        after: new.as_ref().map(DeviceRecord::snapshot),
                    };
                    super::audit::append_in(audit, idx, &entry)?;
                }
            }
            Ok(records)
        });
        let records = result.map_err(|e| match e {
            TransactionError::Abort(Abort::Rejected(e)) => MutateError::Rejected(e),
            TransactionError::Abort(Abort::Corrupt(s)) => MutateError::Store(s),
            TransactionError::Storage(s) => MutateError::Store(StoreError::Sled(s)),
        })?;
        self.flush().await.map_err(MutateError::Store)?;
        Ok(records)
    }
}
