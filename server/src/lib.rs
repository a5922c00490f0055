//! np-server: the vendor's warranty registry, firmware releases and device API, and the
//! library code that `np-vendor` (the staff CLI) shares with it.
//!
//! Code map: `routes` (HTTP handlers, `app(state)`, `run`), `registry` (warranty
//! operations), `store` (sled, the only code knowing its layout), `auth` and `tokens`
//! (bearer tokens), `state` (shared state, injected clock), `datadir` (init/open the data
//! folder), `config` (`server.toml`), `tls` (HTTPS), `metrics`, `error` (the JSON error).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod device;
pub mod error;
pub mod fsutil;
pub mod metrics;
pub mod registry;
pub mod routes;
pub mod state;
pub mod store;
pub mod tls;
pub mod tokens;
pub mod validate;
