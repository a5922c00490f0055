//! Where install events go: the log always, and the server when the box is online.

use np_common::api::EventKind;
use np_common::Version;

/// Receives install events (download, install, trial, commit, rollback, refusal).
pub trait Reporter: Send {
    /// Reports one event; failures are logged, never fatal.
    fn event(&self, version: Option<&Version>, kind: EventKind, detail: &str);
}

/// Reports to the log only (offline boxes).
pub struct LogOnly;

impl Reporter for LogOnly {
    fn event(&self, _: Option<&Version>, _: EventKind, _: &str) {}
}
