//! `server.toml`: where the data lives, where to listen, TLS, limits, the model catalog
//! and an optional download mirror. Unknown keys are refused so a typo is not ignored.

use crate::domain::service_hours::{ServiceHours, ServiceHoursError};
use crate::http::conn::ConnLimits;
use crate::state::{Config, Limits};
use np_common::serial::CatalogEntry;
use np_common::Catalog;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `[tls]`: serve HTTPS with this certificate chain and key (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsToml {
    /// The largest JSON request body in bytes.
    pub json_body_bytes: Option<usize>,
    /// The largest page a client may ask for.
    pub max_page: Option<usize>,
    /// The largest firmware image upload in bytes (default 4 GiB).
    pub blob_bytes: Option<u64>,
    /// The largest event body a box may post, in bytes (default 8 KiB).
    pub event_body_bytes: Option<usize>,
    /// How many events are kept per box (default 1000); older ones are dropped.
    pub events_per_box: Option<usize>,
    /// Seconds a client may take to send a request head, or sit idle between requests
    /// (default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// The most connections served at once (default 10000); more wait to be accepted.
    pub max_connections: Option<usize>,
    /// Seconds a request (but an image upload) may take from its head to its answer
    /// (default 30): a body trickled slower is answered 408.
    pub request_timeout_secs: Option<u64>,
}

/// `[store]`: where the records live.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreToml {
    /// A PostgreSQL URL (`postgres://USER:PASSWORD@HOST/DB`); absent: the embedded sled
    /// store in the data folder.
    pub url: Option<String>,
}

/// `[blobs]`: where firmware images live.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobsToml {
    /// The folder (default DATA/blobs); replicas share one.
    pub dir: Option<PathBuf>,
}

/// `[support]`: the vendor's service hours (docs/api.md, "Support cases").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportToml {
    /// An IANA time zone (default `Asia/Taipei`).
    pub time_zone: Option<String>,
    /// Opening hours, `HH:MM-HH:MM` (default `09:00-20:00`).
    pub hours: Option<String>,
    /// Working days, such as `mon-fri` (the default) or `mon-fri,sat`.
    pub days: Option<String>,
}

impl SupportToml {
    /// The service hours these settings describe (defaults for what is absent).
    pub fn service_hours(&self) -> Result<ServiceHours, ServiceHoursError> {
        use crate::domain::service_hours::{DEFAULT_DAYS, DEFAULT_HOURS, DEFAULT_TIME_ZONE};
        ServiceHours::parse(
            self.time_zone.as_deref().unwrap_or(DEFAULT_TIME_ZONE),
            self.hours.as_deref().unwrap_or(DEFAULT_HOURS),
            self.days.as_deref().unwrap_or(DEFAULT_DAYS),
        )
    }
}

/// The contents of `server.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerToml {
    /// The data folder.
    pub data: PathBuf,
    /// The listen address (default 127.0.0.1:8080).
    pub listen: Option<SocketAddr>,
    /// HTTPS files.
    pub tls: Option<TlsFiles>,
    /// Base URL of a download mirror for offers.
    pub mirror_url: Option<String>,
    /// Limits.
    pub limits: Option<LimitsToml>,
    /// The model catalog; absent: the built-in one (docs/formats.md, "Serials and models").
    pub models: Option<Vec<CatalogEntry>>,
    /// The store.
    pub store: Option<StoreToml>,
    /// The blob folder.
    pub blobs: Option<BlobsToml>,
    /// Service hours for support cases.
    pub support: Option<SupportToml>,
}

/// Why `server.toml` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// It does not parse.
    #[error("{path} is not a valid server config: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl ServerToml {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<ServerToml, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| ConfigError::Parse {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<ServerToml, String> {
        let t: ServerToml = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(models) = &t.models {
            if models.is_empty() {
                return Err("`models` is empty; remove it to use the built-in catalog".into());
            }
        }
        if let Some(support) = &t.support {
            support.service_hours().map_err(|e| e.to_string())?;
        }
        Ok(t)
    }

    /// The route configuration this file describes.
    pub fn config(&self) -> Config {
        let mut limits = Limits::default();
        let mut conn = ConnLimits::default();
        if let Some(l) = &self.limits {
            if let Some(s) = l.header_read_timeout_secs {
                conn.header_read_timeout = std::time::Duration::from_secs(s.max(1));
            }
            conn.max_connections = l.max_connections.unwrap_or(conn.max_connections).max(1);
            if let Some(s) = l.request_timeout_secs {
                conn.request_timeout = std::time::Duration::from_secs(s.max(1));
            }
            limits.json_body_bytes = l.json_body_bytes.unwrap_or(limits.json_body_bytes);
            limits.max_page = l.max_page.unwrap_or(limits.max_page).max(1);
            limits.blob_bytes = l.blob_bytes.unwrap_or(limits.blob_bytes);
            limits.event_body_bytes = l.event_body_bytes.unwrap_or(limits.event_body_bytes);
            limits.events_per_box = l.events_per_box.unwrap_or(limits.events_per_box).max(1);
        }
        Config {
            data_dir: self.data.clone(),
            catalog: self
                .models
                .clone()
                .map_or_else(Catalog::default, |models| Catalog { models }),
            limits,
            mirror_url: self.mirror_url.clone(),
            conn,
            store_url: self.store.as_ref().and_then(|s| s.url.clone()),
            blobs_dir: self.blobs.as_ref().and_then(|b| b.dir.clone()),
            // Checked by `parse`; a hand-built ServerToml with bad hours gets the default.
            support: self
                .support
                .as_ref()
                .and_then(|s| s.service_hours().ok())
                .unwrap_or_default(),
        }
    }
}

/// The default configuration for a data folder.
pub fn default_config(data_dir: &Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        catalog: Catalog::default(),
        limits: Limits::default(),
        mirror_url: None,
        conn: ConnLimits::default(),
        store_url: None,
        blobs_dir: None,
        support: ServiceHours::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_typos() {
        let t = ServerToml::parse(
            "data = \"/var/lib/np\"\nlisten = \"0.0.0.0:8443\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             [[models]]\nmodel = \"NR-1000\"\nfamily = \"N-Reporter\"\ntier = 1\n",
        )
        .unwrap();
        assert_eq!(t.tls.as_ref().unwrap().cert, PathBuf::from("c.pem"));
        assert_eq!(t.config().catalog.models.len(), 1);
        assert!(ServerToml::parse("data = \"x\"\nlisen = \"1\"")
            .unwrap_err()
            .contains("lisen"));
        assert!(ServerToml::parse("data = \"x\"\nmodels = []").is_err());
        let c = ServerToml::parse(
            "data = \"x\"\n[store]\nurl = \"postgres://np@db/np\"\n[blobs]\ndir = \"/srv/b\"\n",
        )
        .unwrap()
        .config();
        assert_eq!(c.store_url.as_deref(), Some("postgres://np@db/np"));
        assert_eq!(c.blobs_dir, Some(PathBuf::from("/srv/b")));
        assert!(ServerToml::parse("data = \"x\"\n[store]\nuri = \"p\"")
            .unwrap_err()
            .contains("uri"));
        let c = ServerToml::parse(
            "data = \"x\"\n[limits]\nheader_read_timeout_secs = 3\nmax_connections = 7\n",
        )
        .unwrap()
        .config();
        assert_eq!(
            c.conn,
            ConnLimits {
                header_read_timeout: std::time::Duration::from_secs(3),
                max_connections: 7,
                request_timeout: std::time::Duration::from_secs(30)
            }
        );
        assert_eq!(
            ServerToml::parse("data = \"x\"").unwrap().config().conn,
            ConnLimits::default()
        );
    }

    #[test]
    fn service_hours_are_read_and_checked_at_start() {
        let c = ServerToml::parse("data = \"x\"").unwrap().config();
        assert_eq!(c.support.to_string(), "09:00-20:00 Asia/Taipei");
        let c = ServerToml::parse(
            "data = \"x\"\n[support]\ntime_zone = \"America/New_York\"\nhours = \"08:30-17:00\"\ndays = \"mon-sat\"\n",
        )
        .unwrap()
        .config();
        assert_eq!(c.support.to_string(), "08:30-17:00 America/New_York");
        let e = ServerToml::parse("data = \"x\"\n[support]\ntime_zone = \"Asia/Taipie\"\n")
            .unwrap_err();
        assert!(e.contains("[support] time_zone \"Asia/Taipie\""), "{e}");
        let e =
            ServerToml::parse("data = \"x\"\n[support]\nhours = \"20:00-09:00\"\n").unwrap_err();
        assert!(e.contains("[support] hours"), "{e}");
        let e = ServerToml::parse("data = \"x\"\n[support]\ndays = \"weekdays\"\n").unwrap_err();
        assert!(e.contains("[support] days"), "{e}");
        assert!(ServerToml::parse("data = \"x\"\n[support]\nzone = \"UTC\"\n").is_err());
    }

    #[test]
    fn the_example_config_parses() {
        let t = ServerToml::parse(include_str!("../../deploy/server.toml.example")).unwrap();
        assert_eq!(t.config().catalog, Catalog::default());
        assert_eq!(t.listen, Some("0.0.0.0:8443".parse().unwrap()));
    }
}
