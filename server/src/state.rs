//! The state every handler shares: the store, the signing keys, the configuration, the
//! metrics, the token cache and the clock. Time comes from the injected [`Clock`], so
//! tests control it.

use crate::http::metrics::Metrics;
use crate::store::Store;
use crate::tokens::TokenCache;
use jiff::civil::Date;
use jiff::Timestamp;
use np_common::keyring::Keyring;
use np_common::{Catalog, Envelope, SecretKey};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the server gets "now" from.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// A clock that always answers `t` (for tests).
pub fn fixed_clock(t: Timestamp) -> Clock {
    Arc::new(move || t)
}

/// The server's signing keys and its signed keyring.
#[derive(Debug)]
pub struct ServerKeys {
    /// Signs entitlements, time tokens and actions (roles `entitlement`, `time`).
    pub online: SecretKey,
    /// Signs release manifests (role `release`).
    pub release: SecretKey,
    /// The keyring as signed by the root key.
    pub keyring_envelope: Envelope,
    /// The keyring's content.
    pub keyring: Keyring,
}

/// Size and page limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest JSON request body (bytes); larger ones get 413.
    pub json_body_bytes: usize,
    /// The page size of lists when the client does not ask for one.
    pub default_page: usize,
    /// The largest page a client may ask for.
    pub max_page: usize,
    /// The largest firmware image upload (bytes); larger ones get 413.
    pub blob_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            json_body_bytes: 64 * 1024,
            default_page: 100,
            max_page: 1000,
            blob_bytes: crate::blobs::DEFAULT_MAX_BLOB_SIZE,
        }
    }
}

/// The configuration the routes need.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data folder.
    pub data_dir: PathBuf,
    /// The model catalog (families and tiers).
    pub catalog: Catalog,
    /// Size and page limits.
    pub limits: Limits,
    /// A base URL of a download mirror for offers, if any.
    pub mirror_url: Option<String>,
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The shared contents of [`AppState`].
pub struct Inner {
    /// The store.
    pub store: Store,
    /// The signing keys and keyring.
    pub keys: ServerKeys,
    /// The configuration.
    pub config: Config,
    /// Request metrics.
    pub metrics: Metrics,
    /// The staff tokens (hashes), re-read when their file changes.
    pub tokens: TokenCache,
    /// The content-addressed firmware images.
    pub blobs: crate::blobs::BlobStore,
    /// The rollout guard's attempts and failures per release (in memory, from reports).
    pub tallies: crate::domain::guard::Tallies,
    clock: Clock,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Assembles a state from its parts.
    pub fn new(
        store: Store,
        keys: ServerKeys,
        config: Config,
        tokens: TokenCache,
        clock: Clock,
    ) -> Self {
        let blobs = crate::blobs::BlobStore::new(&config.data_dir, config.limits.blob_bytes);
        AppState(Arc::new(Inner {
            blobs,
            store,
            keys,
            config,
            metrics: Metrics::default(),
            tokens,
            tallies: crate::domain::guard::Tallies::default(),
            clock,
        }))
    }

    /// Now, from the injected clock, in whole seconds (every time in an answer, a record
    /// or a signed document is a whole second).
    pub fn now(&self) -> Timestamp {
        let t = (self.0.clock)();
        Timestamp::from_second(t.as_second()).unwrap_or(t)
    }

    /// Today's UTC calendar date.
    pub fn today(&self) -> Date {
        self.now().to_zoned(jiff::tz::TimeZone::UTC).date()
    }
}
