//! The one check every image stream goes through (download, bundle, upload, provision):
//! it counts and hashes bytes as they pass, fails the moment the stream grows past the
//! expected size, and compares size and SHA-256 at the end.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

/// A string that is not a SHA-256 hex digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a SHA-256 digest (64 hex digits)")]
pub struct DigestError(pub String);

impl Sha256Digest {
    /// Parses 64 hex digits (either case; stored and shown in lowercase).
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(DigestError(s.chars().take(80).collect()));
        }
        Ok(Sha256Digest(out))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(raw: [u8; 32]) -> Self {
        Sha256Digest(raw)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sha256Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why an image stream was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the image is longer than the {expected} bytes its manifest names")]
    TooLong { expected: u64 },
    #[error("the image is {actual} bytes but its manifest names {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("the image's SHA-256 is {actual} but its manifest names {expected}")]
    HashMismatch {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
}

/// Hashes and counts an image stream against the size and digest a manifest names.
#[derive(Clone)]
pub struct ImageVerifier {
    expected_size: u64,
    expected_sha256: Sha256Digest,
    seen: u64,
    hasher: Sha256,
}

impl ImageVerifier {
    /// Starts a check for an image of `expected_size` bytes and digest `expected_sha256`.
    pub fn new(expected_size: u64, expected_sha256: Sha256Digest) -> Self {
        ImageVerifier {
            expected_size,
            expected_sha256,
            seen: 0,
            hasher: Sha256::new(),
        }
    }

    /// How many bytes have passed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// How many bytes may still come.
    pub fn remaining(&self) -> u64 {
        self.expected_size - self.seen
    }

    /// Feeds the next chunk. Fails, without hashing the chunk, if it would take the
    /// stream past the expected size: the caller must not write it.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        if chunk.len() as u64 > self.remaining() {
            return Err(ImageError::TooLong {
                expected: self.expected_size,
            });
        }
        self.hasher.update(chunk);
        self.seen += chunk.len() as u64;
        Ok(())
    }

    /// Ends the stream: the size and the digest must both match.
    pub fn finish(self) -> Result<Sha256Digest, ImageError> {
        if self.seen != self.expected_size {
            return Err(ImageError::SizeMismatch {
                expected: self.expected_size,
                actual: self.seen,
            });
        }
        let actual = Sha256Digest(self.hasher.finalize().into());
        if actual != self.expected_sha256 {
            return Err(ImageError::HashMismatch {
                expected: self.expected_sha256,
                actual,
            });
        }
        Ok(actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exact_bytes_in_any_chunking() {
        let data = b"firmware image bytes";
        let mut v = ImageVerifier::new(data.len() as u64, Sha256Digest::of(data));
        for c in data.chunks(3) {
            v.update(c).expect("within size");
        }
        assert_eq!(v.finish(), Ok(Sha256Digest::of(data)));
    }

    #[test]
    fn refuses_long_short_and_wrong() {
        let data = b"abcdef";
        let d = Sha256Digest::of(data);
        let mut v = ImageVerifier::new(5, d);
        assert_eq!(v.update(data), Err(ImageError::TooLong { expected: 5 }));
        let mut v = ImageVerifier::new(7, d);
        v.update(data).expect("fits");
        assert_eq!(
            v.finish(),
            Err(ImageError::SizeMismatch {
                expected: 7,
                actual: 6
            })
        );
        let mut v = ImageVerifier::new(6, Sha256Digest::of(b"other!"));
        v.update(data).expect("fits");
        assert!(matches!(v.finish(), Err(ImageError::HashMismatch { .. })));
    }

    #[test]
    fn digest_parses_hex() {
        let d = Sha256Digest::of(b"x");
        assert_eq!(Sha256Digest::parse(&d.to_hex().to_uppercase()), Ok(d));
        assert!(Sha256Digest::parse("abc").is_err());
    }
}
