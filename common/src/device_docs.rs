//! The documents a box signs with its own device key (docs/formats.md, "Documents a box
//! signs"): the offline `request` (what an air-gapped box runs, so that staff can make the
//! one bundle it needs) and the `receipt` (what it did: an install, a rollback, a refusal).
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

fn parse_payload<T: DeviceDocument>(payload: &[u8]) -> Result<T, DeviceDocError> {
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
