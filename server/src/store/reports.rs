//! What boxes report through the device API. Tree `device_reports`, key = serial, value =
//! the JSON [`DeviceReport`] (slot, phase, last result, the versions it rolled back from,
//! the action handed over); tree `device_events`, key = serial ++ 0x00 ++ big-endian id,
//! value = the JSON [`EventRecord`], one per event a box sent, the newest few hundred per box
//! kept (the caller names the bound). Writes are flushed before returning.

use super::{decode, encode, SledStore, StoreError};
use crate::domain::device::DeviceRecord;
use jiff::Timestamp;
use np_common::api::{EventKind, LastResult, Phase};
use np_common::{Serial, Version};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

const REPORTS: &str = "device_reports";
const EVENTS: &str = "device_events";

/// The box's own account of itself, as of its last check-in or event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceReport {
    /// The slot it runs from (`a` or `b`).
    pub slot: Option<String>,
    /// Its update phase.
    pub state: Option<Phase>,
    /// How its last update attempt ended.
    pub last_result: Option<LastResult>,
    /// Versions it rolled back from: not offered to it again automatically.
    #[serde(default)]
    pub rolled_back_from: Vec<Version>,
    /// `issued_at` of the staff action already handed to the box.
    pub delivered_action: Option<Timestamp>,
    /// The version the box ran before the one it runs now, as the server saw it: where a
    /// rollback from the current version takes it.
    #[serde(default)]
    pub previous_version: Option<Version>,
}

/// One event a box sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventRecord {
    /// When the server received it.
    pub at: Timestamp,
    /// The release it is about.
    pub version: Option<Version>,
    /// What happened.
    pub event: EventKind,
    /// The box's words.
    pub detail: String,
}

fn event_key(serial: &Serial, id: u64) -> Vec<u8> {
    let mut k = serial.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

impl SledStore {
    /// The box's last report (empty when it never checked in).
    pub fn device_report(&self, serial: &Serial) -> Result<DeviceReport, StoreError> {
        match self
            .db
            .open_tree(REPORTS)?
            .get(serial.as_str().as_bytes())?
        {
            Some(v) => decode(serial.as_str(), &v),
            None => Ok(DeviceReport::default()),
        }
    }

    /// Changes the box's report with `f` atomically, flushes, and returns it.
    pub async fn update_device_report(
        &self,
        serial: &Serial,
        f: impl Fn(&mut DeviceReport),
    ) -> Result<DeviceReport, StoreError> {
        let tree = self.db.open_tree(REPORTS)?;
        let key = serial.as_str().as_bytes();
        loop {
            let old = tree.get(key)?;
            let mut report = match &old {
                Some(v) => decode(serial.as_str(), v)?,
                None => DeviceReport::default(),
            };
            f(&mut report);
            if tree
                .compare_and_swap(key, old, Some(encode(&report)))?
                .is_ok()
            {
                self.flush().await?;
                return Ok(report);
            }
        }
    }

    /// Appends an event of the box, drops its oldest events beyond the newest `keep`, and
    /// flushes. Answers how many were dropped.
    pub async fn append_device_event(
        &self,
        serial: &Serial,
        event: &EventRecord,
        keep: usize,
    ) -> Result<usize, StoreError> {
        let id = self.db.generate_id()?;
        let tree = self.db.open_tree(EVENTS)?;
        tree.insert(event_key(serial, id), encode(event))?;
        let mut prefix = serial.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut dropped = 0;
        // Newest first: everything past the first `keep` goes.
        for item in tree.scan_prefix(&prefix).rev().skip(keep.max(1)) {
            let (k, _) = item?;
            tree.remove(k)?;
            dropped += 1;
        }
        self.flush().await?;
        Ok(dropped)
    }

    /// The box's newest `limit` events, newest first.
    pub fn device_events(
        &self,
        serial: &Serial,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut prefix = serial.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.db.open_tree(EVENTS)?.scan_prefix(prefix).rev() {
            if out.len() == limit {
                break;
            }
            let (_, v) = item?;
            out.push(decode(serial.as_str(), &v)?);
        }
        Ok(out)
    }

    /// How many registered boxes report running each version.
    pub fn install_counts(&self) -> Result<HashMap<Version, u64>, StoreError> {
        let mut counts = HashMap::new();
        for item in self.devices.iter() {
            let (k, v) = item?;
            let d: DeviceRecord = decode(&String::from_utf8_lossy(&k), &v)?;
            if let Some(version) = d.version {
                *counts.entry(version).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}
