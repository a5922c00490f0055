//! The keyring (docs/formats.md): which online keys hold which roles, signed by the root keys.
//!
//! A keyring is accepted when a threshold of the currently trusted root keys signed it,
//! a threshold of its own root keys signed it (so a root rotation is signed by the old
//! *and* the new root), its version grows (equal: same bytes), and it has not expired.

use crate::docs::{Role, KEYRING_TYPE};
use crate::dsse::{Envelope, EnvelopeError};
use crate::keys::{KeyId, PublicKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The root keys and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootSpec {
    pub threshold: u32,
    pub keys: Vec<PublicKey>,
}

impl RootSpec {
    /// The pinned root of an agent's config: any one of the listed keys.
    pub fn pinned(keys: Vec<PublicKey>) -> Self {
        RootSpec { threshold: 1, keys }
    }
}

/// An online key and its roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub keyid: KeyId,
    pub public_key: PublicKey,
    pub roles: Vec<Role>,
}

/// The keyring document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyring {
    pub version: u64,
    pub expires: Timestamp,
    pub root: RootSpec,
    pub keys: Vec<KeyEntry>,
}

/// Why a keyring was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("the keyring's payload is not valid: {0}")]
    Payload(String),
    #[error("the keyring is signed by {have} of the trusted root keys; {need} are needed")]
    RootThreshold { have: usize, need: u32 },
    #[error("the keyring's new root is signed by {have} of its own root keys; {need} are needed")]
    NewRootThreshold { have: usize, need: u32 },
    #[error("the keyring's root threshold {threshold} is impossible with {keys} root keys")]
    BadThreshold { threshold: u32, keys: usize },
    #[error("keyring version {got} is older than the stored version {stored}")]
    VersionRollback { stored: u64, got: u64 },
    #[error("keyring version {version} differs from the stored keyring of the same version")]
    SameVersionDiffers { version: u64 },
    #[error("the keyring expired at {expires}")]
    Expired { expires: Timestamp },
    #[error("key id {keyid} does not match the SHA-256 of its public key")]
    KeyIdMismatch { keyid: KeyId },
}

/// A keyring that passed every check, with its payload bytes (to compare and store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedKeyring {
    pub keyring: Keyring,
    pub payload: Vec<u8>,
}

impl Keyring {
    /// The public keys that hold `role`.
    pub fn keys_with_role(&self, role: Role) -> impl Iterator<Item = &PublicKey> {
        self.keys
            .iter()
            .filter(move |k| k.roles.contains(&role))
            .map(|k| &k.public_key)
    }

    /// Every online key of the keyring.
    pub fn all_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter().map(|k| &k.public_key)
    }

    /// Signs this keyring with root keys (release engineering, offline).
    pub fn sign(&self, root_keys: &[&crate::keys::SecretKey]) -> Envelope {
        let payload = serde_json::to_vec(self).unwrap_or_default();
        Envelope::sign(KEYRING_TYPE, &payload, root_keys)
    }
}

/// Checks `envelope` as a keyring under `trusted` (the stored keyring's root, or the
/// pinned root keys when none is stored), against the stored keyring, at time `now`.
pub fn accept_keyring(
    envelope: &Envelope,
    trusted: &RootSpec,
    stored: Option<&AcceptedKeyring>,
    now: Timestamp,
) -> Result<AcceptedKeyring, KeyringError> {
    let (payload, signers) = envelope.verified_signers(KEYRING_TYPE, &trusted.keys)?;
    if (signers.len() as u64) < u64::from(trusted.threshold.max(1)) {
        return Err(KeyringError::RootThreshold {
            have: signers.len(),
            need: trusted.threshold.max(1),
        });
    }
    let keyring: Keyring =
        serde_json::from_slice(&payload).map_err(|e| KeyringError::Payload(e.to_string()))?;
    let root = &keyring.root;
    if root.threshold == 0 || root.threshold as usize > root.keys.len() {
        return Err(KeyringError::BadThreshold {
            threshold: root.threshold,
            keys: root.keys.len(),
        });
    }
    let (_, own) = envelope.verified_signers(KEYRING_TYPE, &root.keys)?;
    if (own.len() as u64) < u64::from(root.threshold) {
        return Err(KeyringError::NewRootThreshold {
            have: own.len(),
            need: root.threshold,
        });
    }
    for k in &keyring.keys {
        if k.public_key.key_id() != k.keyid {
            return Err(KeyringError::KeyIdMismatch {
                keyid: k.keyid.clone(),
            });
        }
    }
    if let Some(s) = stored {
        if keyring.version < s.keyring.version {
            return Err(KeyringError::VersionRollback {
                stored: s.keyring.version,
                got: keyring.version,
            });
        }
        if keyring.version == s.keyring.version && payload != s.payload {
            return Err(KeyringError::SameVersionDiffers {
                version: keyring.version,
            });
        }
    }
    if keyring.expires <= now {
        return Err(KeyringError::Expired {
            expires: keyring.expires,
        });
    }
    Ok(AcceptedKeyring { keyring, payload })
}
