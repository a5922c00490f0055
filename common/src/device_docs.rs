//! The documents a box signs with its own device key (docs/formats.md, "Documents a box
//! signs"): the offline `request` (what an air-gapped box runs, so that staff can make the
//! one bundle it needs), the `receipt` (what it did: an install, a rollback, a refusal) and
//! the `diagnostics` report a box sends for a support case.
//!
//! They are DSSE envelopes like the others, but verified against one key, the device key
//! registered for the box's serial, not against the keyring.

use crate::api::{is_request_nonce, Outcome};
use crate::dsse::{Envelope, EnvelopeError};
use crate::image::Sha256Digest;
use crate::keys::PublicKey;
use crate::serial::{Model, Serial};
use crate::version::Version;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The longest `detail` a receipt may carry.
pub const MAX_RECEIPT_DETAIL: usize = 4096;

/// A document kind signed by a device key.
pub trait DeviceDocument: Serialize + DeserializeOwned {
    /// `application/vnd.np.<kind>+json`.
    const PAYLOAD_TYPE: &'static str;
    /// Short kind name for messages.
    const KIND: &'static str;
    /// The largest JSON payload accepted for this kind.
    const MAX_PAYLOAD: usize = 64 * 1024;
    /// The box that signed it (by its own word).
    fn serial(&self) -> &Serial;
    /// Field checks beyond the JSON shape (lengths, formats).
    fn check(&self) -> Result<(), String>;
}

/// Why a device-signed document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceDocError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("the {kind} is not signed by the device key registered for {serial}")]
    NotSignedByDevice { kind: &'static str, serial: String },
    #[error("the {kind}'s payload is not valid: {reason}")]
    Payload { kind: &'static str, reason: String },
}

/// The slot a box runs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SlotName {
    A,
    B,
}

/// An offline box's request for its bundle (docs/formats.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceRequest {
    pub serial: Serial,
    pub model: Model,
    /// The running version.
    pub version: Version,
    /// The running release's security version.
    pub security_version: u64,
    pub active_slot: SlotName,
    /// The `sequence` of the entitlement the box holds (none: it holds none).
    pub entitlement_sequence: Option<u64>,
    /// The box's time floor (none: it has none yet).
    pub time_floor: Option<Timestamp>,
    /// 16 to 128 hex digits, new for every request; a receipt of the install it leads to
    /// names it.
    pub nonce: String,
    pub created_at: Timestamp,
}

impl DeviceDocument for DeviceRequest {
    const PAYLOAD_TYPE: &'static str = "application/vnd.np.request+json";
    const KIND: &'static str = "request";
    fn serial(&self) -> &Serial {
        &self.serial
    }
    fn check(&self) -> Result<(), String> {
        if !is_request_nonce(&self.nonce) {
            return Err("nonce must be 16 to 128 hex digits".into());
        }
        Ok(())
    }
}

/// What a box did, signed by it (docs/formats.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub serial: Serial,
    /// Grows by one with every receipt the box writes; never reused.
    pub seq: u64,
    /// The version the box ran before.
    pub from_version: Option<Version>,
    /// The version the event is about: installed, rolled back to, or refused.
    pub to_version: Option<Version>,
    pub outcome: Outcome,
    pub detail: String,
    pub at: Timestamp,
    /// The image of `to_version`, when known.
    pub image_sha256: Option<Sha256Digest>,
    /// The nonce of the offline request whose bundle this is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_nonce: Option<String>,
}

impl Receipt {
    /// The version the box runs after this receipt: the installed or rolled-back-to
    /// version, or the one it kept when it refused.
    pub fn running_after(&self) -> Option<&Version> {
        match self.outcome {
            Outcome::Installed | Outcome::RolledBack => self.to_version.as_ref(),
            Outcome::Refused | Outcome::Failed => self.from_version.as_ref(),
        }
    }
}

impl DeviceDocument for Receipt {
    const PAYLOAD_TYPE: &'static str = "application/vnd.np.receipt+json";
    const KIND: &'static str = "receipt";
    fn serial(&self) -> &Serial {
        &self.serial
    }
    fn check(&self) -> Result<(), String> {
        if self.seq == 0 {
            return Err("seq starts at 1".into());
        }
        if self.detail.len() > MAX_RECEIPT_DETAIL {
            return Err(format!("detail is at most {MAX_RECEIPT_DETAIL} bytes"));
        }
        if let Some(n) = &self.request_nonce {
            if !is_request_nonce(n) {
                return Err("request_nonce must be 16 to 128 hex digits".into());
            }
        }
        Ok(())
    }
}

/// The most a diagnostics document's JSON payload may hold.
pub const MAX_DIAGNOSTICS_BYTES: usize = 256 * 1024;

/// Whether `id` has the shape of a support case id: 1 to 64 ASCII letters, digits and `-`.
pub fn is_case_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The versions in a box's two slots, as its agent knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DiagnosticsSlots {
    pub active: SlotName,
    /// The slot the kernel command line says was booted, when the box reads one.
    pub booted: Option<SlotName>,
    pub a: Option<Version>,
    pub b: Option<Version>,
}

/// What the box's health command printed when the report was gathered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DiagnosticsHealth {
    /// Its exit code (none: it was killed, timed out or could not start).
    pub exit_code: Option<i32>,
    /// Its standard output and error, redacted and cut to a bound.
    pub output: String,
}

/// A box's diagnostics report for a support case, signed by its device key
/// (docs/formats.md). Never holds a key, a token or a secret from the agent's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Diagnostics {
    pub serial: Serial,
    /// The case the `diagnostics` action named.
    pub case: String,
    /// The `issued_at` of the action that asked for it.
    pub requested_at: Timestamp,
    /// When the box gathered it.
    pub at: Timestamp,
    /// The agent's version.
    pub agent_version: String,
    /// `np-agent status --json`, redacted.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub status: serde_json::Value,
    /// The last events the agent recorded, newest last.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub events: Vec<serde_json::Value>,
    pub slots: DiagnosticsSlots,
    /// Free bytes in the state folder's file system.
    pub state_free_bytes: Option<u64>,
    /// The health command's output (none: no health command is configured).
    pub health: Option<DiagnosticsHealth>,
    /// Set when something was cut to keep the report within its bound.
    pub truncated: bool,
}

impl DeviceDocument for Diagnostics {
    const PAYLOAD_TYPE: &'static str = "application/vnd.np.diagnostics+json";
    const KIND: &'static str = "diagnostics";
    const MAX_PAYLOAD: usize = MAX_DIAGNOSTICS_BYTES;
    fn serial(&self) -> &Serial {
        &self.serial
    }
    fn check(&self) -> Result<(), String> {
        if !is_case_id(&self.case) {
            return Err("case must be 1 to 64 letters, digits or '-'".into());
        }
        Ok(())
    }
}

fn parse_payload<T: DeviceDocument>(payload: &[u8]) -> Result<T, DeviceDocError> {
    if payload.len() > T::MAX_PAYLOAD {
        return Err(DeviceDocError::Payload {
            kind: T::KIND,
            reason: format!(
                "it is {} bytes; at most {} are accepted",
                payload.len(),
                T::MAX_PAYLOAD
            ),
        });
    }
    let doc: T = serde_json::from_slice(payload).map_err(|e| DeviceDocError::Payload {
        kind: T::KIND,
        reason: e.to_string(),
    })?;
    doc.check().map_err(|reason| DeviceDocError::Payload {
        kind: T::KIND,
        reason,
    })?;
    Ok(doc)
}

/// The serial a document names, read *without* checking its signature: only to find the
/// device key it must then verify under ([`verify_device`]).
pub fn claimed_serial<T: DeviceDocument>(envelope: &Envelope) -> Result<Serial, DeviceDocError> {
    if envelope.payload_type != T::PAYLOAD_TYPE {
        return Err(EnvelopeError::WrongType {
            expected: T::PAYLOAD_TYPE.to_owned(),
            got: envelope.payload_type.chars().take(100).collect(),
        }
        .into());
    }
    let payload = envelope.payload_bytes()?;
    Ok(parse_payload::<T>(&payload)?.serial().clone())
}

/// Verifies `envelope` as a document of kind `T` signed by `device_key`, the key
/// registered for `serial`, and naming that serial. The payloadType is checked first.
pub fn verify_device<T: DeviceDocument>(
    envelope: &Envelope,
    device_key: &PublicKey,
    serial: &Serial,
) -> Result<T, DeviceDocError> {
    let (payload, signers) = envelope.verified_signers(T::PAYLOAD_TYPE, [device_key])?;
    if signers.is_empty() {
        return Err(DeviceDocError::NotSignedByDevice {
            kind: T::KIND,
            serial: serial.to_string(),
        });
    }
    let doc = parse_payload::<T>(&payload)?;
    if doc.serial() != serial {
        return Err(DeviceDocError::Payload {
            kind: T::KIND,
            reason: format!("it names {}, not {serial}", doc.serial()),
        });
    }
    Ok(doc)
}

/// Signs a document with the box's device key.
pub fn sign_device<T: DeviceDocument>(doc: &T, key: &crate::keys::SecretKey) -> Envelope {
    let payload = serde_json::to_vec(doc).unwrap_or_default();
    Envelope::sign(T::PAYLOAD_TYPE, &payload, &[key])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn report(serial: &Serial, health_output: String) -> Diagnostics {
        Diagnostics {
            serial: serial.clone(),
            case: "C-17".into(),
            requested_at: "2026-12-01T10:00:00Z".parse().unwrap(),
            at: "2026-12-01T10:05:00Z".parse().unwrap(),
            agent_version: "1.0.0".into(),
            status: serde_json::json!({"version": "5.2.0"}),
            events: vec![serde_json::json!({"event": "commit"})],
            slots: DiagnosticsSlots {
                active: SlotName::A,
                booted: Some(SlotName::A),
                a: Some(Version::parse("5.2.0").unwrap()),
                b: None,
            },
            state_free_bytes: Some(1 << 30),
            health: Some(DiagnosticsHealth {
                exit_code: Some(0),
                output: health_output,
            }),
            truncated: false,
        }
    }

    #[test]
    fn a_diagnostics_report_verifies_under_the_device_key_only() {
        let serial: Serial = "NR-2000-123456-4".parse().unwrap();
        let key = SecretKey::from_seed(&[7; 32]);
        let other = SecretKey::from_seed(&[8; 32]);
        let doc = report(&serial, "ok".into());
        let env = sign_device(&doc, &key);
        assert_eq!(claimed_serial::<Diagnostics>(&env).unwrap(), serial);
        let got: Diagnostics = verify_device(&env, &key.public_key(), &serial).unwrap();
        assert_eq!(got, doc);
        assert!(matches!(
            verify_device::<Diagnostics>(&env, &other.public_key(), &serial),
            Err(DeviceDocError::NotSignedByDevice { .. })
        ));
        // A receipt's type is not a diagnostics report.
        assert!(verify_device::<Receipt>(&env, &key.public_key(), &serial).is_err());
    }

    #[test]
    fn a_report_over_its_bound_or_with_a_bad_case_id_is_refused() {
        let serial: Serial = "NR-2000-123456-4".parse().unwrap();
        let key = SecretKey::from_seed(&[7; 32]);
        let big = sign_device(&report(&serial, "x".repeat(MAX_DIAGNOSTICS_BYTES)), &key);
        let err = verify_device::<Diagnostics>(&big, &key.public_key(), &serial).unwrap_err();
        assert!(err.to_string().contains("at most 262144"), "{err}");
        let mut bad = report(&serial, String::new());
        bad.case = "C 17/../x".into();
        let env = sign_device(&bad, &key);
        let err = verify_device::<Diagnostics>(&env, &key.public_key(), &serial).unwrap_err();
        assert!(err.to_string().contains("case must be"), "{err}");
        assert!(is_case_id("C-1") && !is_case_id("") && !is_case_id(&"9".repeat(65)));
    }
}
