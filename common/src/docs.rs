//! The signed documents of the product and how each one is verified under a keyring.
//!
//! A verifier checks the envelope's payloadType first, then that a key of the keyring
//! holding the kind's role produced a valid signature, and only then parses the payload.

use crate::dsse::{Envelope, EnvelopeError};
use crate::image::Sha256Digest;
use crate::keyring::Keyring;
use crate::serial::{Model, Serial};
use crate::version::Version;
use crate::warranty::Term;
use jiff::civil::Date;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A key role named in a keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Entitlement,
    Time,
    Release,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Entitlement => "entitlement",
            Role::Time => "time",
            Role::Release => "release",
        })
    }
}

/// A document kind: its payloadType and the role its signer must hold.
pub trait Document: Serialize + DeserializeOwned {
    /// `application/vnd.np.<kind>+json`.
    const PAYLOAD_TYPE: &'static str;
    /// The role a signing key must hold.
    const ROLE: Role;
    /// Short kind name for messages.
    const KIND: &'static str;
}

/// payloadType of a keyring.
pub const KEYRING_TYPE: &str = "application/vnd.np.keyring+json";

/// Why a signed document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("the {kind} is not signed by any key of the keyring")]
    UnknownSigner { kind: &'static str },
    #[error("the {kind} is signed by key {keyid}, which lacks the {role} role")]
    WrongRole {
        kind: &'static str,
        keyid: String,
        role: Role,
    },
    #[error("the {kind}'s signature does not verify")]
    BadSignature { kind: &'static str },
    #[error("the {kind}'s payload is not valid: {reason}")]
    Payload { kind: &'static str, reason: String },
    #[error("the entitlement is for {got}, not for this box ({expected})")]
    OtherSerial { expected: String, got: String },
    #[error("entitlement sequence {got} is older than the stored sequence {stored}; an old entitlement cannot be replayed")]
    Replay { stored: u64, got: u64 },
    #[error("the time token answers nonce {got}, not the {expected} this box sent")]
    NonceMismatch { expected: String, got: String },
    #[error("the action was issued at {got}, not after the last action acted on ({last})")]
    StaleAction { last: Timestamp, got: Timestamp },
}

/// Verifies `envelope` as a document of kind `T` under `keyring`.
pub fn verify<T: Document>(envelope: &Envelope, keyring: &Keyring) -> Result<T, DocError> {
    verify_signed(envelope, keyring).map(|(doc, _)| doc)
}

/// As [`verify`], also saying which key of the keyring vouched for the document (the
/// first valid signer holding the role), so that what it vouched for can be forgotten
/// once a keyring drops that key.
pub fn verify_signed<T: Document>(
    envelope: &Envelope,
    keyring: &Keyring,
) -> Result<(T, crate::keys::KeyId), DocError> {
    let role_keys = keyring.keys_with_role(T::ROLE);
    let (payload, signers) = envelope.verified_signers(T::PAYLOAD_TYPE, role_keys)?;
    if signers.is_empty() {
        // Tell apart "a key without the role" from "nobody we know" and "bad signature".
        let all = keyring.all_keys();
        let (_, any) = envelope.verified_signers(T::PAYLOAD_TYPE, all)?;
        if let Some(k) = any.first() {
            return Err(DocError::WrongRole {
                kind: T::KIND,
                keyid: k.to_string(),
                role: T::ROLE,
            });
        }
        let known = envelope
            .signatures
            .iter()
            .any(|s| keyring.keys.iter().any(|k| k.keyid.as_str() == s.keyid));
        return Err(if known {
            DocError::BadSignature { kind: T::KIND }
        } else {
            DocError::UnknownSigner { kind: T::KIND }
        });
    }
    let doc = serde_json::from_slice(&payload).map_err(|e| DocError::Payload {
        kind: T::KIND,
        reason: e.to_string(),
    })?;
    let signer = signers
        .into_iter()
        .next()
        .ok_or(DocError::UnknownSigner { kind: T::KIND })?;
    Ok((doc, signer))
}

/// Signs a document with `key` (the caller makes sure the key holds the kind's role).
pub fn sign<T: Document>(doc: &T, key: &crate::keys::SecretKey) -> Envelope {
    let payload = serde_json::to_vec(doc).unwrap_or_default();
    Envelope::sign(T::PAYLOAD_TYPE, &payload, &[key])
}

/// Entitlement status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Revoked,
    Replaced,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
            Status::Replaced => "replaced",
        })
    }
}

/// What a box is entitled to (docs/formats.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Entitlement {
    pub serial: Serial,
    pub model: Model,
    pub device_key: Option<String>,
    pub sequence: u64,
    pub issued_at: Timestamp,
    pub coverage_end: Date,
    pub status: Status,
    pub terms: Vec<Term>,
}

impl Document for Entitlement {
    const PAYLOAD_TYPE: &'static str = "application/vnd.np.entitlement+json";
    const ROLE: Role = Role::Entitlement;
    const KIND: &'static str = "entitlement";
}

impl Entitlement {
    /// Verifies an entitlement for this box: signature and role, serial, and a sequence
    /// no lower than the stored one.
    pub fn verify_for(
        envelope: &Envelope,
        keyring: &Keyring,
        serial: &Serial,
        stored_sequence: Option<u64>,
    ) -> Result<Entitlement, DocError> {
        let e: Entitlement = verify(envelope, keyring)?;
        e.check_for(serial, stored_sequence)?;
        Ok(e)
    }

    /// The checks of [`Entitlement::verify_for`] after the signature: this box's serial,
    /// and a sequence no lower than the stored one.
    pub fn check_for(&self, serial: &Serial, stored_sequence: Option<u64>) -> Result<(), DocError> {
        let e = self;
        if &e.serial != serial {
            return Err(DocError::OtherSerial {
                expected: serial.to_string(),
                got: e.serial.to_string(),
            });
        }
        if let Some(stored) = stored_sequence {
            if e.sequence < stored {
                return Err(DocError::Replay {
                    stored,
                    got: e.sequence,
                });
            }
        }
        Ok(())
    }
}

/// A signed time token (docs/formats.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimeToken {
    pub now: Timestamp,
    pub nonce: String,
}

impl Document for TimeToken {
    const PAYLOAD_TYPE: &'static str = "application/vnd.np.time+json";
    const ROLE: Role = Role::Time;
    const KIND: &'static str = "time token";
}

impl TimeToken {
    /// Verifies a time token that must answer `nonce`.
    pub fn verify_nonce(
        envelope: &Envelope,
        keyring: &Keyring,
        nonce: &str,
    ) -> Result<TimeToken, DocError> {
        let t: TimeToken = verify(envelope, keyring)?;
        t.check_nonce(nonce)?;
        Ok(t)
    }

    /// Does the token answer `nonce`?
    pub fn check_nonce(&self, nonce: &str) -> Result<(), DocError> {
        if self.nonce != nonce {
            return Err(DocError::NonceMismatch {
                expected: nonce.to_owned(),
                got: self.nonce.clone(),
            });
        }
        Ok(())
    }
}

/// The image a release installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageRef {
    pub name: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// A release manifest (docs/formats.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Release {
    pub product: String,
    pub version: Version,
    pub security_version: u64,
    pub models: Vec<Model>,
    pub channel: String,
    pub released_at: Timestamp,
    pub min_from_version: Version,
    pub image: ImageRef,
    #[serde(default)]
    pub notes: String,
}

impl Document for Release {
    const PAYLOAD_TYPE: &'static str = "application/vnd.np.release+json";
    const ROLE: Role = Role::Release;
    const KIND: &'static str = "release manifest";
}

/// What staff asked a box to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Upgrade,
    Rollback,
    /// Gather a diagnostics report for a support case and post it, signed by the device key.
    Diagnostics,
}

/// A remote action (docs/formats.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Action {
    pub serial: Serial,
    pub action: ActionKind,
    pub version: Option<Version>,
    pub issued_at: Timestamp,
    /// The support case a `diagnostics` action is for (absent for the other actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
}

impl Document for Action {
    const PAYLOAD_TYPE: &'static str = "application/vnd.np.action+json";
    const ROLE: Role = Role::Entitlement;
    const KIND: &'static str = "action";
}

impl Action {
    /// Verifies an action for this box that is newer than the last one acted on.
    pub fn verify_for(
        envelope: &Envelope,
        keyring: &Keyring,
        serial: &Serial,
        last_acted: Option<Timestamp>,
    ) -> Result<Action, DocError> {
        let a: Action = verify(envelope, keyring)?;
        if &a.serial != serial {
            return Err(DocError::OtherSerial {
                expected: serial.to_string(),
                got: a.serial.to_string(),
            });
        }
        if let Some(last) = last_acted {
            if a.issued_at <= last {
                return Err(DocError::StaleAction {
                    last,
                    got: a.issued_at,
                });
            }
        }
        Ok(a)
    }
}
