//! Writing to standard output. A reader that goes away early (`np-agent status | head -1`,
//! `| true`) ends the command quietly, as Unix tools do: a broken pipe becomes
//! [`AgentError::StdoutClosed`], which `main` turns into a silent exit 0, never a panic.

use crate::error::AgentError;
use std::io::Write as _;

/// Writes one line to stdout (flushed, so a closed reader is noticed here).
pub fn line(args: std::fmt::Arguments<'_>) -> Result<(), AgentError> {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    written.map_err(stdout_error)
}

/// The error for a failed write to stdout.
pub fn stdout_error(source: std::io::Error) -> AgentError {
    if source.kind() == std::io::ErrorKind::BrokenPipe {
        AgentError::StdoutClosed
    } else {
        AgentError::Io {
            what: "cannot write to standard output".into(),
            source,
        }
    }
}

/// `say!("...", args)`: [`line`] with `?`, for commands that return `Result<_, AgentError>`.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))?
    };
}
pub(crate) use say;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_a_quiet_stop_and_other_errors_stay_errors() {
        let e = stdout_error(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(matches!(e, AgentError::StdoutClosed));
        assert_eq!(e.exit_code(), 0);
        let e = stdout_error(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(matches!(e, AgentError::Io { .. }));
        assert_eq!(e.exit_code(), 3);
    }
}
