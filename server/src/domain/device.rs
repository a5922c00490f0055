//! The device record: what the registry knows about one box, which is also the device
//! object of the API (docs/api.md), and the signing of its entitlement (docs/formats.md).

use jiff::civil::Date;
use jiff::Timestamp;
use np_common::docs::{self, ActionKind, Entitlement, Status};
use np_common::warranty::{coverage_end, Term};
use np_common::{Envelope, Model, PublicKey, SecretKey, Serial, Version};
use serde::{Deserialize, Serialize};

/// A staff action waiting for the box's next check-in (docs/formats.md, "Action").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingAction {
    /// `upgrade` or `rollback`.
    pub action: ActionKind,
    /// The version to upgrade to (none for a rollback).
    pub version: Option<Version>,
    /// When staff asked for it.
    pub issued_at: Timestamp,
    /// The signed action envelope handed to the box.
    pub envelope: Envelope,
    /// The support case of a `diagnostics` action (absent for the other actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
}

impl PendingAction {
    /// The signed action document this stands for.
    pub fn document(&self, serial: &Serial) -> docs::Action {
        docs::Action {
            serial: serial.clone(),
            action: self.action,
            version: self.version.clone(),
            issued_at: self.issued_at,
            case: self.case.clone(),
        }
    }

    /// Signs the action again with `key` (after a key rotation), keeping every field.
    pub fn resign(&mut self, serial: &Serial, key: &SecretKey) {
        self.envelope = docs::sign(&self.document(serial), key);
    }
}

pub use np_common::coverage::Coverage;

/// Parses a coverage word of a query (`covered`, `expired`, `not_yet_started`; also
/// `not_started`).
pub fn parse_coverage(s: &str) -> Option<Coverage> {
    match s {
        "covered" => Some(Coverage::Covered),
        "expired" => Some(Coverage::Expired),
        "not_yet_started" | "not_started" => Some(Coverage::NotYetStarted),
        _ => None,
    }
}

/// The device object of the API: the record and its coverage as of today.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    /// Every field of the record.
    #[serde(flatten)]
    pub device: DeviceRecord,
    /// Covered, expired or not yet started, today.
    pub coverage: Coverage,
}

impl DeviceView {
    /// The view of `device` on `today`.
    pub fn of(device: DeviceRecord, today: Date) -> DeviceView {
        let coverage = device.coverage_on(today);
        DeviceView { device, coverage }
    }
}

/// One registered box. Serialized as is, it is the device object of the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceRecord {
    /// The box's serial.
    pub serial: Serial,
    /// Its model.
    pub model: Model,
    /// Who owns it.
    pub customer: String,
    /// The purchase date; the first term starts here.
    pub purchase_date: Date,
    /// `active`, `revoked` or `replaced`.
    pub status: Status,
    /// The end of the last term (exclusive).
    pub coverage_end: Date,
    /// Every warranty, extension and reinstatement term.
    pub terms: Vec<Term>,
    /// Bumped by every change; the entitlement carries it.
    pub sequence: u64,
    /// The box's public key for signed device requests, if known.
    pub device_key: Option<PublicKey>,
    /// The box that took over this one's coverage in a swap.
    pub replaced_by: Option<Serial>,
    /// The box this one replaced in a swap.
    #[serde(default)]
    pub replaces: Option<Serial>,
    /// Why the box was revoked or swapped.
    #[serde(default)]
    pub status_reason: Option<String>,
    /// The last signed check-in.
    pub last_check_in: Option<Timestamp>,
    /// The firmware version the box reported last.
    pub version: Option<Version>,
    /// A staff action for the next check-in.
    pub pending_action: Option<PendingAction>,
    /// A `diagnostics` action for a support case, kept apart from `pending_action` so
    /// that neither replaces the other; check-in hands the older of the two first
    /// (docs/api.md, "Diagnostics").
    #[serde(default)]
    pub pending_diagnostics: Option<PendingAction>,
    /// How the box's last update attempt ended, as it reported it.
    #[serde(default)]
    pub last_result: Option<np_common::api::LastResult>,
    /// The `seq` of the newest signed receipt of the box the server holds: the running
    /// version and last result follow only a receipt newer than it.
    #[serde(default)]
    pub last_receipt_seq: Option<u64>,
    /// The current signed entitlement envelope.
    pub entitlement: Envelope,
    /// When the box was registered.
    pub registered_at: Timestamp,
    /// When the record last changed.
    pub updated_at: Timestamp,
}

impl DeviceRecord {
    /// A new active record with one warranty term, signed at sequence 1.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        serial: Serial,
        model: Model,
        customer: String,
        purchase_date: Date,
        terms: Vec<Term>,
        device_key: Option<PublicKey>,
        key: &SecretKey,
        now: Timestamp,
    ) -> DeviceRecord {
        let mut d = DeviceRecord {
            serial,
            model,
            customer,
            purchase_date,
            status: Status::Active,
            coverage_end: coverage_end(&terms).unwrap_or(purchase_date),
            terms,
            sequence: 0,
            device_key,
            replaced_by: None,
            replaces: None,
            status_reason: None,
            last_check_in: None,
            version: None,
            pending_action: None,
            pending_diagnostics: None,
            last_result: None,
            last_receipt_seq: None,
            entitlement: Envelope {
                payload_type: String::new(),
                payload: String::new(),
                signatures: Vec::new(),
            },
            registered_at: now,
            updated_at: now,
        };
        d.reissue(key, now);
        d
    }

    /// Whether the box is covered on `today` (the same rule as the agent's status).
    pub fn coverage_on(&self, today: Date) -> Coverage {
        Coverage::at(
            &self.terms,
            self.coverage_end,
            np_common::rule::date_start(today),
        )
    }

    /// The entitlement document for the record as it is now.
    pub fn entitlement_doc(&self, issued_at: Timestamp) -> Entitlement {
        Entitlement {
            serial: self.serial.clone(),
            model: self.model.clone(),
            device_key: self.device_key.as_ref().map(PublicKey::to_base64),
            sequence: self.sequence,
            issued_at,
            coverage_end: self.coverage_end,
            status: self.status,
            terms: self.terms.clone(),
        }
    }

    /// Records a change: bumps the sequence, recomputes the coverage end and re-signs the
    /// entitlement with the online key.
    pub fn reissue(&mut self, key: &SecretKey, now: Timestamp) {
        self.sequence += 1;
        self.coverage_end = coverage_end(&self.terms).unwrap_or(self.purchase_date);
        self.updated_at = now;
        self.entitlement = docs::sign(&self.entitlement_doc(now), key);
    }

    /// The record as an audit snapshot: the device without its (bulky) envelopes.
    pub fn snapshot(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.remove("entitlement");
            for slot in ["pending_action", "pending_diagnostics"] {
                if let Some(serde_json::Value::Object(a)) = o.get_mut(slot) {
                    a.remove("envelope");
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use np_common::docs::verify;
    use np_common::docs::Role;
    use np_common::keyring::{KeyEntry, Keyring, RootSpec};
    use np_common::warranty::initial_term;

    #[test]
    fn reissue_bumps_sequence_and_signs() {
        let key = SecretKey::from_seed(&[9; 32]);
        let pk = key.public_key();
        let keyring = Keyring {
            version: 1,
            expires: "2030-01-01T00:00:00Z".parse().unwrap(),
            root: RootSpec::pinned(vec![pk.clone()]),
            keys: vec![KeyEntry {
                keyid: pk.key_id(),
                public_key: pk,
                roles: vec![Role::Entitlement],
            }],
        };
        let p = jiff::civil::date(2025, 3, 1);
        let now: Timestamp = "2025-03-02T00:00:00Z".parse().unwrap();
        let serial = Serial::parse("NR-2000-123456-4").unwrap();
        let mut d = DeviceRecord::new(
            serial.clone(),
            serial.model(),
            "ACME".into(),
            p,
            vec![initial_term(p).unwrap()],
            None,
            &key,
            now,
        );
        assert_eq!(d.sequence, 1);
        assert_eq!(d.coverage_end, jiff::civil::date(2026, 3, 1));
        d.reissue(&key, now);
        let e: Entitlement = verify(&d.entitlement, &keyring).unwrap();
        assert_eq!((e.sequence, e.serial), (2, serial));
        assert!(d.snapshot().get("entitlement").is_none());
        let day = jiff::civil::date;
        assert_eq!(d.coverage_on(day(2025, 2, 28)), Coverage::NotYetStarted);
        assert_eq!(d.coverage_on(day(2025, 3, 1)), Coverage::Covered);
        assert_eq!(d.coverage_on(day(2026, 2, 28)), Coverage::Covered);
        assert_eq!(d.coverage_on(day(2026, 3, 1)), Coverage::Expired);
        let v = serde_json::to_value(DeviceView::of(d, day(2026, 3, 1))).unwrap();
        assert_eq!(v["coverage"], "expired");
        assert_eq!(v["status"], "active");
    }
}
