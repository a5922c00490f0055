//! The agent's error, gathering each area's own error enum, and the one place that maps
//! errors to exit codes (docs/cli.md): 0 done, 1 refused by a rule or rolled back, 2 bad usage,
//! 3 I/O or network failure.

use crate::boot::BootError;
use crate::bundle::BundleReject;
use crate::client::ClientError;
use crate::config::ConfigError;
use crate::slots::SlotError;
use crate::state::StateError;
use crate::trust::TrustError;
use np_common::{ImageError, Refusal, Version};

/// Everything that can stop an agent command.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Bundle(#[from] BundleReject),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("refused by rule {rule}: {text}", rule = .0.rule(), text = refusal_text(.0))]
    Refused(Box<Refusal>),
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("{version} was rolled back: {reason}")]
    RolledBack { version: Version, reason: String },
    #[error("there is no previous image to roll back to")]
    NoPrevious,
    #[error(
        "slot {slot} is the slot the box runs from (np.slot={slot} on the kernel command \
         line), so no update is written into it; the agent's state names slot {active} \
         active: restart the box (its start switches the boot loader back), then install"
    )]
    WritingBootedSlot {
        slot: crate::state::Slot,
        active: crate::state::Slot,
    },
    #[error(
        "a rollback to slot {back} is under way but the boot loader could not be told of it \
         yet, so nothing is installed: run `np-agent rollback` again, or restart the box, to \
         finish it"
    )]
    RollbackPending { back: crate::state::Slot },
    #[error(
        "{source}; the rollback to slot {back} is saved as under way: run `np-agent rollback` \
         again, or restart the box, to finish it"
    )]
    RollbackInterrupted {
        back: crate::state::Slot,
        source: Box<AgentError>,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    /// Whoever read our standard output went away (`| head -1`): stop quietly.
    #[error("standard output was closed")]
    StdoutClosed,
}

/// A refusal in the words of the box's owner: a warranty that ended or an entitlement
/// that is not active is a matter for the vendor, who alone can extend or restore it.
pub fn refusal_text(r: &Refusal) -> String {
    match r {
        Refusal::WarrantyExpired {
            serial,
            coverage_end,
            version,
        } => format!(
            "the warranty of {serial} ended on {coverage_end}, so {version} cannot be \
             installed; contact the vendor to extend the warranty"
        ),
        Refusal::ReleasedAfterCoverage {
            serial,
            version,
            released_at,
            coverage_end,
        } => format!(
            "release {version} was published on {}, after the warranty of {serial} ended on \
             {coverage_end}; contact the vendor to extend the warranty",
            released_at.strftime("%Y-%m-%d")
        ),
        Refusal::EntitlementNotActive { serial, status } => format!(
            "the warranty of {serial} is {status}; only an active warranty allows updates; \
             contact the vendor"
        ),
        other => other.to_string(),
    }
}

impl From<Refusal> for AgentError {
    fn from(r: Refusal) -> Self {
        AgentError::Refused(Box::new(r))
    }
}

impl AgentError {
    /// The process exit code for this error (the only place that decides it).
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::Config(_) | AgentError::Usage(_) => 2,
            AgentError::Trust(TrustError::Io { .. } | TrustError::Corrupt { .. }) => 3,
            AgentError::Trust(_) => 1,
            AgentError::State(StateError::Refused { .. }) => 1,
            AgentError::State(_) => 3,
            AgentError::Slot(SlotError::Image(_) | SlotError::TooSmall { .. }) => 1,
            AgentError::Slot(SlotError::Io { .. }) => 3,
            AgentError::Slot(SlotError::SameTarget { .. }) => 2,
            // A damaged boot record does not mend by trying again later.
            AgentError::Boot(BootError::Corrupt { .. } | BootError::Link { .. }) => 1,
            AgentError::Boot(_) => 3,
            AgentError::Bundle(b) => b.exit_code(),
            AgentError::Client(c) => c.exit_code(),
            AgentError::Refused(_)
            | AgentError::Image(_)
            | AgentError::RolledBack { .. }
            | AgentError::NoPrevious
            | AgentError::WritingBootedSlot { .. }
            | AgentError::RollbackPending { .. } => 1,
            AgentError::Io { .. } => 3,
            AgentError::RollbackInterrupted { source, .. } => source.exit_code(),
            AgentError::StdoutClosed => 0,
        }
    }

    /// Did the bundle end early (a copy perhaps still in progress)?
    pub fn is_truncation(&self) -> bool {
        match self {
            AgentError::Bundle(b) => b.is_truncation(),
            _ => false,
        }
    }

    /// Why, in a sentence fit for a `.reason` file that admins read: never quoting bytes
    /// of the bundle (entry names, unverified document text), only our own words and
    /// values from verified documents.
    pub fn reason(&self) -> String {
        use np_common::docs::DocError;
        use np_common::keyring::KeyringError;
        match self {
            AgentError::Bundle(b) => b.sentence(),
            AgentError::Trust(TrustError::Doc(DocError::Envelope(_)))
            | AgentError::Trust(TrustError::Keyring(KeyringError::Envelope(_))) => {
                "a document of the bundle is not a signed document of the kind its entry name says"
                    .into()
            }
            AgentError::Trust(TrustError::Doc(DocError::Payload { kind, .. })) => {
                format!("the bundle's {kind} is signed but its content is not valid")
            }
            AgentError::Trust(TrustError::Keyring(KeyringError::Payload(_))) => {
                "the bundle's keyring is signed but its content is not valid".into()
            }
            // The rule's name goes before the sentence already (`not_newer: …`).
            AgentError::Refused(r) => refusal_text(r),
            other => other.to_string(),
        }
    }

    /// A short name of the rule or check that failed, for reports and `.reason` files.
    pub fn rule(&self) -> String {
        match self {
            AgentError::Refused(r) => r.rule().to_owned(),
            AgentError::Bundle(b) => b.rule().to_owned(),
            AgentError::Image(_) | AgentError::Slot(SlotError::Image(_)) => "image_mismatch".into(),
            AgentError::Trust(_) => "verification".into(),
            AgentError::RolledBack { .. } => "rolled_back".into(),
            AgentError::Slot(SlotError::TooSmall { .. }) => "slot_too_small".into(),
            _ => "failure".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_warranty_sends_the_owner_to_the_vendor() {
        let r = Refusal::WarrantyExpired {
            serial: "NR-2000-123456-4".parse().unwrap(),
            coverage_end: "2025-11-29".parse().unwrap(),
            version: Version::parse("5.3.0").unwrap(),
        };
        let text = AgentError::from(r).to_string();
        assert_eq!(
            text,
            "refused by rule warranty_expired: the warranty of NR-2000-123456-4 ended on \
             2025-11-29, so 5.3.0 cannot be installed; contact the vendor to extend the warranty"
        );
        assert!(!text.contains("extend it"));
    }
}
