//! The inbox folder watched by `np-agent run`: a bundle is taken only once it is complete
//! (its size and modification time did not change between two polls: a copy still being
//! written keeps growing, a file renamed into place is stable at once), then moved to
//! `inbox/applied/` or `inbox/rejected/` beside a `NAME.reason` file. Nothing in the
//! inbox is ever deleted by the agent.

use crate::error::AgentError;
use crate::fsutil;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The inbox and what it saw at the last poll.
pub struct Inbox {
    dir: PathBuf,
    seen: HashMap<OsString, (u64, Option<SystemTime>)>,
}

/// Is this a name the agent leaves alone (hidden files, partial copies)?
fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp")
}

impl Inbox {
    /// The inbox of `state_dir`.
    pub fn new(state_dir: &Path) -> Inbox {
        Inbox {
            dir: state_dir.join("inbox"),
            seen: HashMap::new(),
        }
    }

    /// Polls the folder; returns the files that were unchanged since the last poll.
    pub fn ready(&mut self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut now = HashMap::new();
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name();
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() || ignored(&name.to_string_lossy()) {
                continue;
            }
            let sig = (meta.len(), meta.modified().ok());
            if self.seen.get(&name) == Some(&sig) {
                out.push(e.path());
            }
            now.insert(name, sig);
        }
        self.seen = now;
        out.sort();
        out
    }

    /// Files the agent moved: into `applied/`, or `rejected/` with a reason.
    pub fn settle(
        &mut self,
        file: &Path,
        result: &Result<(), AgentError>,
    ) -> std::io::Result<PathBuf> {
        let sub = if result.is_ok() {
            "applied"
        } else {
            "rejected"
        };
        let dest_dir = self.dir.join(sub);
        std::fs::create_dir_all(&dest_dir)?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle".into());
        let mut dest = dest_dir.join(&name);
        let mut n = 1;
        while dest.exists() {
            dest = dest_dir.join(format!("{name}.{n}"));
            n += 1;
        }
        fsutil::rename_durable(file, &dest)?;
        if let Err(e) = result {
            let reason = format!("{}: {e}\n", e.rule());
            let rname = format!(
                "{}.reason",
                dest.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or(name)
            );
            fsutil::write_atomic(&dest_dir.join(rname), reason.as_bytes())?;
        }
        if let Some(f) = file.file_name() {
            self.seen.remove(f);
        }
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_taken_only_once_it_stops_changing() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::new(dir.path());
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        let f = dir.path().join("inbox/b.tar");
        std::fs::write(&f, b"12").unwrap();
        std::fs::write(dir.path().join("inbox/c.tar.part"), b"12").unwrap();
        assert!(inbox.ready().is_empty(), "first sight");
        std::fs::write(&f, b"1234").unwrap();
        assert!(inbox.ready().is_empty(), "still growing");
        assert_eq!(inbox.ready(), vec![f.clone()]);
        let err: Result<(), AgentError> = Err(AgentError::NoPrevious);
        let dest = inbox.settle(&f, &err).unwrap();
        assert!(dest.ends_with("rejected/b.tar"));
        let reason =
            std::fs::read_to_string(dir.path().join("inbox/rejected/b.tar.reason")).unwrap();
        assert!(reason.contains("no previous image"));
        assert!(inbox.ready().is_empty());
    }
}
