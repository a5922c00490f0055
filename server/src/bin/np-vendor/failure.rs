//! How a command fails, and the one place that maps a failure to an exit code:
//! 0 done, 1 refused or verification failed, 2 bad usage, 3 I/O or network failure.

use std::fmt::Display;

/// The class of a failure; it decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad input, a failed verification, or a 4xx answer from the server.
    Refused,
    /// The command line is incomplete or contradictory.
    Usage,
    /// A file or the network failed, or the server failed (5xx).
    Io,
}

/// A failed command: its class and one sentence for a person.
#[derive(Debug)]
pub struct Failure {
    kind: Kind,
    message: String,
}

impl Failure {
    /// Refused: bad input or failed verification (exit 1).
    pub fn refused(message: impl Display) -> Self {
        Failure {
            kind: Kind::Refused,
            message: message.to_string(),
        }
    }

    /// Bad usage (exit 2).
    pub fn usage(message: impl Display) -> Self {
        Failure {
            kind: Kind::Usage,
            message: message.to_string(),
        }
    }

    /// I/O or network failure (exit 3).
    pub fn io(message: impl Display) -> Self {
        Failure {
            kind: Kind::Io,
            message: message.to_string(),
        }
    }

    /// The sentence shown after `error: `.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The failure's class.
    #[cfg(test)]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The process exit code: the only place codes are decided.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            Kind::Refused => 1,
            Kind::Usage => 2,
            Kind::Io => 3,
        }
    }
}

/// Shorthand for a command's result.
pub type CmdResult = Result<(), Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_decided_here() {
        assert_eq!(Failure::refused("x").exit_code(), 1);
        assert_eq!(Failure::usage("x").exit_code(), 2);
        assert_eq!(Failure::io("x").exit_code(), 3);
        assert_eq!(Failure::io("disk").kind(), Kind::Io);
    }
}
