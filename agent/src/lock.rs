//! One actor at a time on a state folder: `np-agent run` and the commands an admin types
//! (`apply`, `install`, `rollback`, `commit`, `check`) take `STATE_DIR/agent.lock` (an
//! exclusive `flock`) for each step, and the daemon reads the state again after it got the
//! lock, so a step taken by hand is never undone by the daemon's older copy in memory.

use crate::error::AgentError;
use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use std::fs::File;
use std::io;
use std::path::Path;

/// The lock file's name in the state folder. It holds no data; only its lock matters.
pub const LOCK_FILE: &str = "agent.lock";

/// Holds the state folder's lock until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// How to wait for a lock someone else holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Wait quietly (the daemon between its steps).
    Quiet,
    /// Say on stderr what is being waited for, then wait (a command typed by an admin).
    Say,
}

impl StateLock {
    /// Takes the lock of `state_dir`, waiting for whoever holds it.
    pub fn acquire(state_dir: &Path, wait: Wait) -> Result<StateLock, AgentError> {
        let path = state_dir.join(LOCK_FILE);
        let io_err = |source: io::Error| AgentError::Io {
            what: format!("cannot lock the state folder ({})", path.display()),
            source,
        };
        let fd = rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err(e.into()))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| io_err(e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_uid != rustix::process::geteuid().as_raw()
        {
            return Err(io_err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "it is not a regular file of this user; remove it and try again",
            )));
        }
        // Our mode, whatever the umask made of it.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600)).map_err(|e| io_err(e.into()))?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                if wait == Wait::Say {
                    eprintln!(
                        "np-agent run is busy with a step (a check-in, a download or an install); waiting for it to finish"
                    );
                }
                rustix::fs::flock(&fd, FlockOperation::LockExclusive)
                    .map_err(|e| io_err(e.into()))?;
            }
            Err(e) => return Err(io_err(e.into())),
        }
        Ok(StateLock {
            _file: File::from(fd),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_second_holder_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path(), Wait::Quiet).unwrap();
        let (tx, rx) = mpsc::channel();
        let p = dir.path().to_owned();
        let t = std::thread::spawn(move || {
            let second = StateLock::acquire(&p, Wait::Quiet).unwrap();
            tx.send(()).unwrap();
            drop(second);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the second holder got the lock while the first held it"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the second holder gets the lock once the first lets go");
        t.join().unwrap();
        let st = std::fs::metadata(dir.path().join(LOCK_FILE)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(st.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_link_in_place_of_the_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"x").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(LOCK_FILE)).unwrap();
        let e = StateLock::acquire(dir.path(), Wait::Quiet).unwrap_err();
        assert!(
            e.to_string().contains("cannot lock the state folder"),
            "{e}"
        );
    }
}
