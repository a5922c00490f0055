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

/// The event's name as the API writes it (`download`, `rollback`, ...), for log lines.
pub fn event_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Download => "download",
        EventKind::Install => "install",
        EventKind::Trial => "trial",
        EventKind::Commit => "commit",
        EventKind::Rollback => "rollback",
        EventKind::Refusal => "refusal",
        EventKind::Failure => "failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_the_wire_names() {
        for kind in [
            EventKind::Download,
            EventKind::Install,
            EventKind::Trial,
            EventKind::Commit,
            EventKind::Rollback,
            EventKind::Refusal,
            EventKind::Failure,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), event_name(kind));
        }
    }
}
