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

/// The server's signing keys and its signed keyring: for each role, the private key of a
/// key the keyring gives that role (one key may hold several roles).
#[derive(Debug)]
pub struct ServerKeys {
    /// Signs entitlements and actions (role `entitlement`).
    pub entitlement: SecretKey,
    /// Signs time tokens (role `time`).
    pub time: SecretKey,
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
    /// The largest body a box may post as an event (bytes); larger ones get 413.
    pub event_body_bytes: usize,
    /// How many events are kept per box; older ones are dropped.
    pub events_per_box: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            json_body_bytes: 64 * 1024,
            default_page: 100,
            max_page: 1000,
            blob_bytes: crate::blobs::DEFAULT_MAX_BLOB_SIZE,
            event_body_bytes: 8 * 1024,
            events_per_box: 1_000,
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
    /// Connection limits (header read timeout, connection cap).
    pub conn: crate::http::conn::ConnLimits,
    /// The PostgreSQL store (`[store] url`); `None`: the sled store in the data folder.
    pub store_url: Option<String>,
    /// The blob folder (`[blobs] dir`); `None`: DATA/blobs.
    pub blobs_dir: Option<PathBuf>,
    /// The vendor's service hours (`[support]`), for support cases' first response.
    pub support: crate::domain::service_hours::ServiceHours,
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The shared contents of [`AppState`].
pub struct Inner {
    /// The store.
    pub store: Store,
    keys: std::sync::RwLock<Arc<ServerKeys>>,
    /// Held while a keyring draft is made or a keyring installed (one at a time).
    pub rotation: tokio::sync::Mutex<()>,
    /// The last comparison of this replica's keyring with the store's.
    pub keyring_watch: crate::domain::replica_keys::KeyringWatch,
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
        let blobs = match &config.blobs_dir {
            Some(dir) => crate::blobs::BlobStore::at(dir, config.limits.blob_bytes),
            None => crate::blobs::BlobStore::new(&config.data_dir, config.limits.blob_bytes),
        };
        AppState(Arc::new(Inner {
            blobs,
            store,
            keys: std::sync::RwLock::new(Arc::new(keys)),
            rotation: tokio::sync::Mutex::new(()),
            keyring_watch: crate::domain::replica_keys::KeyringWatch::default(),
            config,
            metrics: Metrics::default(),
            tokens,
            tallies: crate::domain::guard::Tallies::default(),
            clock,
        }))
    }

    /// The current signing keys and keyring (they change when a new keyring is installed).
    pub fn keys(&self) -> Arc<ServerKeys> {
        match self.0.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Switches to new keys (after a keyring install).
    pub fn set_keys(&self, keys: ServerKeys) {
        let new = Arc::new(keys);
        match self.0.keys.write() {
            Ok(mut k) => *k = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
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
