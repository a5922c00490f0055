//! np-agent: the appliance daemon that keeps a box's firmware current under its warranty
//! entitlement, online or from offline bundles, with A/B slots, trial boot and rollback.
//! `main.rs` is a thin shell over this library.

pub mod agent;
pub mod archive;
pub mod boot;
pub mod bundle;
pub mod checkin;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod diagnostics;
pub mod download;
pub mod error;
pub mod inbox;
pub mod install;
pub mod journal;
pub mod lock;
pub mod receipts;
pub mod redact;
pub mod report;
pub mod slots;
pub mod state;
pub mod trial;
pub mod trust;

#[cfg(test)]
mod bundle_tests;
#[cfg(test)]
mod checkin_tests;
#[cfg(test)]
mod diagnostics_tests;
#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
pub(crate) mod testkit;
