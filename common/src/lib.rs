//! np-common: everything the agent and the server must agree on, with no I/O.
//!
//! Wire types, DSSE envelopes and Ed25519 keys, the signed documents of the product
//! (keyring, entitlement, time token, release manifest, action), serial numbers and the
//! model catalog, warranty arithmetic, versions, the streaming image check and the one
//! update rule. Bytes come in as `&[u8]`, time comes in as a value: nothing here reads a
//! file, opens a socket or looks at the system clock.

pub mod api;
pub mod bundle;
pub mod capped;
pub mod coverage;
pub mod device_docs;
pub mod docs;
pub mod dsse;
pub mod image;
pub mod keyring;
pub mod keys;
#[cfg(feature = "man")]
pub mod manpage;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod rule;
pub mod serial;
pub mod version;
pub mod warranty;

pub use capped::CappedReader;
pub use dsse::Envelope;
pub use image::{ImageError, ImageVerifier, Sha256Digest};
pub use keys::{KeyId, PublicKey, SecretKey};
pub use rule::{check_update, Refusal, UpdateInputs};
pub use serial::{Catalog, Model, Serial};
pub use version::Version;

/// Re-exported so that callers name dates and instants with the same types.
pub use jiff::{civil::Date, Timestamp};
