//! np-server: the vendor's warranty registry, firmware releases and device API, and the
//! library code that `np-vendor` (the staff CLI) shares with it.
//!
//! Code map: `routes` (HTTP handlers, `app(state)`, `run`), `registry` (warranty
//! operations), `store` (sled, the only code knowing its layout), `auth` and `tokens`
//! (bearer tokens), `state` (shared state, injected clock), `datadir` (init/open the data
//! folder), `config` (`server.toml`), `tls` (HTTPS), `metrics`, `error` (the JSON error); releases:
//! `blobs` (content-addressed images), `offers` (what a box is offered), `rollout`,
//! `device_auth` (signed device requests), `range` (HTTP Range), `bundle_tar`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod blobs;
pub mod bundle;
pub mod bundle_tar;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod device;
pub mod device_auth;
pub mod error;
pub mod fsutil;
pub mod metrics;
pub mod offers;
pub mod range;
pub mod registry;
pub mod rollout;
pub mod routes;
pub mod state;
pub mod store;
pub mod tls;
pub mod tokens;
pub mod validate;
