//! np-server: the vendor's warranty registry, firmware releases and device API, and the
//! library code that `np-vendor` (the staff CLI) shares with it.
//!
//! Rooms: `domain` (the business rules: devices, the registry, offers, rollout), `store`
//! (the only code knowing how records are kept), `http` (the JSON API, the device API,
//! staff and device authentication, errors, metrics, TLS), `blobs` (content-addressed
//! images and the offline bundles made from them). Around them: `state` (shared state,
//! injected clock), `datadir` (init/open the data folder), `config` (`server.toml`),
//! `tokens` (staff tokens), `cli` (the `np-server` commands), `fsutil` (durable writes), `stdout` (printing that
//! survives a closed pipe).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod blobs;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod domain;
pub mod fsutil;
pub mod http;
pub mod state;
pub mod stdout;
pub mod store;
pub mod tokens;
