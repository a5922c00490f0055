//! Ed25519 keys as the product stores them: standard base64 of the raw 32-byte public key,
//! standard base64 of the 32-byte seed for a private key, and the key id (lowercase hex of
//! SHA-256 over the raw public key).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, Verifier as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// Why a key could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the key is not standard base64: {0}")]
    Base64(String),
    #[error("the key decodes to {0} bytes; an Ed25519 key is 32 bytes")]
    Length(usize),
    #[error("the bytes are not a valid Ed25519 public key")]
    InvalidPoint,
    #[error("key id {0:?} is not 64 lowercase hex characters")]
    KeyIdFormat(String),
}

/// Lowercase hex of SHA-256 over a raw 32-byte public key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Parses a key id, refusing anything that is not 64 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(KeyError::KeyIdFormat(s.chars().take(80).collect()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Reads standard base64 of the raw 32 bytes (surrounding whitespace is ignored).
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let raw = B64
            .decode(s.trim())
            .map_err(|e| KeyError::Base64(e.to_string()))?;
        Self::from_bytes(&raw)
    }

    /// Reads the raw 32 bytes.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 32] = raw.try_into().map_err(|_| KeyError::Length(raw.len()))?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|_| KeyError::InvalidPoint)
    }

    /// Standard base64 of the raw 32 bytes.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Lowercase hex of SHA-256 over the raw key.
    pub fn key_id(&self) -> KeyId {
        KeyId(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// True when `sig` is a valid Ed25519 signature of `msg` by this key (strict checking).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(arr) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&arr);
        self.0.verify_strict(msg, &sig).is_ok() && self.0.verify(msg, &sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 private key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// Builds a key from a 32-byte seed (the caller draws it from the OS random source).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// Reads a key file's text: standard base64 of the 32-byte seed.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let raw = B64
            .decode(s.trim())
            .map_err(|_| KeyError::Base64("the private key is not valid base64".into()))?;
        let seed: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(raw.len()))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key file's text: standard base64 of the seed, with a trailing newline.
    pub fn to_base64(&self) -> String {
        format!("{}\n", B64.encode(self.0.to_bytes()))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `msg`, returning the 64-byte signature.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key().to_base64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_sha256_of_raw_key() {
        let sk = SecretKey::from_seed(&[7u8; 32]);
        let pk = sk.public_key();
        assert_eq!(
            pk.key_id().as_str(),
            hex::encode(Sha256::digest(pk.as_bytes()))
        );
        assert_eq!(PublicKey::from_base64(&pk.to_base64()), Ok(pk));
    }

    #[test]
    fn secret_round_trips_and_signs() {
        let sk = SecretKey::from_seed(&[1u8; 32]);
        let back = SecretKey::from_base64(&sk.to_base64()).expect("round trip");
        let sig = back.sign(b"hello");
        assert!(sk.public_key().verify(b"hello", &sig));
        assert!(!sk.public_key().verify(b"hellO", &sig));
        assert!(!sk.public_key().verify(b"hello", &sig[..63]));
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(matches!(
            PublicKey::from_base64("!!"),
            Err(KeyError::Base64(_))
        ));
        assert_eq!(PublicKey::from_base64("AAAA"), Err(KeyError::Length(3)));
        assert!(KeyId::parse("ABC").is_err());
        assert!(format!("{:?}", SecretKey::from_seed(&[2; 32])).starts_with("SecretKey(public"));
    }
}
