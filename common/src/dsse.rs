//! DSSE envelopes (Dead Simple Signing Envelope, as used by in-toto and sigstore):
//! the JSON shape, PAE, signing, and checking signatures against a set of keys.

use crate::keys::{KeyId, PublicKey, SecretKey};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The largest envelope we parse. Documents are small; anything larger is refused before
/// it is decoded.
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Signature {
    /// Lowercase hex SHA-256 of the signer's raw public key.
    pub keyid: String,
    /// Standard base64 of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// A DSSE envelope as serialized JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Standard base64 of the payload bytes.
    pub payload: String,
    pub signatures: Vec<Signature>,
}

/// Why an envelope could not be read or did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the document is empty")]
    Empty,
    #[error("the document is {0} bytes; a signed document is at most 1 MiB")]
    TooLarge(usize),
    #[error(
        "the document is not a DSSE envelope (JSON with payloadType, payload, signatures): {0}"
    )]
    NotEnvelope(String),
    #[error("the envelope's payload is not standard base64")]
    PayloadBase64,
    #[error("the envelope has no signatures")]
    NoSignatures,
    #[error("the envelope's payloadType is {got:?}, expected {expected:?}")]
    WrongType { expected: String, got: String },
}

/// Pre-Authentication Encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` of type `payload_type` with every key given.
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[&SecretKey]) -> Envelope {
        let msg = pae(payload_type, payload);
        Envelope {
            payload_type: payload_type.to_owned(),
            payload: B64.encode(payload),
            signatures: keys
                .iter()
                .map(|k| Signature {
                    keyid: k.public_key().key_id().to_string(),
                    sig: B64.encode(k.sign(&msg)),
                })
                .collect(),
        }
    }

    /// Parses an envelope from bytes, refusing empty, oversized and malformed input.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(EnvelopeError::Empty);
        }
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotEnvelope(e.to_string()))
    }

    /// The envelope as compact JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The envelope as pretty JSON with a trailing newline, for files people read.
    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The decoded payload bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        B64.decode(&self.payload)
            .map_err(|_| EnvelopeError::PayloadBase64)
    }

    /// Checks the payloadType, then returns the payload and the ids of every key among
    /// `candidates` that produced a valid signature (each key counted once).
    pub fn verified_signers<'k>(
        &self,
        expected_type: &str,
        candidates: impl IntoIterator<Item = &'k PublicKey>,
    ) -> Result<(Vec<u8>, Vec<KeyId>), EnvelopeError> {
        if self.payload_type != expected_type {
            return Err(EnvelopeError::WrongType {
                expected: expected_type.to_owned(),
                got: self.payload_type.chars().take(100).collect(),
            });
        }
        let payload = self.payload_bytes()?;
        if self.signatures.is_empty() {
            return Err(EnvelopeError::NoSignatures);
        }
        let msg = pae(&self.payload_type, &payload);
        let mut signers = Vec::new();
        for key in candidates {
            let id = key.key_id();
            if signers.contains(&id) {
                continue;
            }
            let good = self.signatures.iter().any(|s| {
                s.keyid == id.as_str()
                    && B64
                        .decode(&s.sig)
                        .map(|raw| key.verify(&msg, &raw))
                        .unwrap_or(false)
            });
            if good {
                signers.push(id);
            }
        }
        Ok((payload, signers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn sign_then_verify_finds_the_signer() {
        let sk = SecretKey::from_seed(&[3; 32]);
        let pk = sk.public_key();
        let env = Envelope::sign("t", b"{}", &[&sk]);
        let (payload, signers) = env.verified_signers("t", [&pk]).expect("verifies");
        assert_eq!(payload, b"{}");
        assert_eq!(signers, vec![pk.key_id()]);
        assert!(matches!(
            env.verified_signers("other", [&pk]),
            Err(EnvelopeError::WrongType { .. })
        ));
    }

    #[test]
    fn junk_is_refused_with_a_reason() {
        assert_eq!(Envelope::parse(b"  \n"), Err(EnvelopeError::Empty));
        assert!(matches!(
            Envelope::parse(b"\x00\xff"),
            Err(EnvelopeError::NotEnvelope(_))
        ));
        assert!(matches!(
            Envelope::parse(b"{\"payloadType\":"),
            Err(EnvelopeError::NotEnvelope(_))
        ));
        let big = vec![b' '; MAX_ENVELOPE_BYTES + 2];
        let mut big = big;
        big[0] = b'{';
        assert!(matches!(
            Envelope::parse(&big),
            Err(EnvelopeError::TooLarge(_))
        ));
    }
}
