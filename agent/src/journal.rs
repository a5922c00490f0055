//! The box's own event journal (docs/formats.md, "Diagnostics"): the last events the agent
//! recorded (install, trial, commit, rollback, refusal, failure, diagnostics), newest last,
//! kept in `state_dir/events.json` so that a diagnostics report can show them. Bounded to
//! [`MAX_ENTRIES`] entries of at most [`MAX_DETAIL`] bytes of detail; each change is written
//! to a fresh temporary file, fsynced and renamed (mode 0600). Best effort: a journal that
//! cannot be read or written never stops what the agent is doing.

use jiff::Timestamp;
use np_common::Version;
use np_fsutil as fsutil;
use serde::{Deserialize, Serialize};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The most entries the journal keeps (the oldest are dropped).
pub const MAX_ENTRIES: usize = 100;
/// The longest detail an entry keeps (cut at a character boundary).
pub const MAX_DETAIL: usize = 8 * 1024;
/// The largest journal file read back.
const MAX_FILE: u64 = 2 * 1024 * 1024;

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: Timestamp,
    /// `install`, `rollback`, ... as the API names them, or `diagnostics`.
    pub event: String,
    pub version: Option<Version>,
    pub detail: String,
}

/// `state_dir/events.json`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("events.json")
}

/// `text` cut to at most `max` bytes at a character boundary.
pub fn cut_at_char(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// The journal, oldest first; a missing, unreadable or damaged journal is empty (logged).
pub fn read(state_dir: &Path) -> Vec<Entry> {
    let p = path(state_dir);
    let meta = match std::fs::symlink_metadata(&p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!("cannot read the event journal {}: {e}", p.display());
            return Vec::new();
        }
    };
    if !meta.file_type().is_file() || meta.len() > MAX_FILE {
        tracing::warn!(
            "the event journal {} is not a regular file of at most {MAX_FILE} bytes; ignored",
            p.display()
        );
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::fs::File::open(&p).and_then(|f| f.take(MAX_FILE).read_to_end(&mut bytes)) {
        tracing::warn!("cannot read the event journal {}: {e}", p.display());
        return Vec::new();
    }
    match serde_json::from_slice::<Vec<Entry>>(&bytes) {
        Ok(mut v) => {
            let extra = v.len().saturating_sub(MAX_ENTRIES);
            v.drain(..extra);
            v
        }
        Err(e) => {
            tracing::warn!(
                "the event journal {} is damaged ({e}); starting a new one",
                p.display()
            );
            Vec::new()
        }
    }
}

/// Appends one event (its detail cut to [`MAX_DETAIL`]), dropping the oldest beyond
/// [`MAX_ENTRIES`]. Does nothing when the state folder does not exist (yet).
pub fn append(state_dir: &Path, mut entry: Entry) -> std::io::Result<()> {
    if !state_dir.is_dir() {
        return Ok(());
    }
    entry.detail = cut_at_char(&entry.detail, MAX_DETAIL).to_owned();
    let mut all = read(state_dir);
    all.push(entry);
    let extra = all.len().saturating_sub(MAX_ENTRIES);
    all.drain(..extra);
    let bytes = serde_json::to_vec(&all).map_err(std::io::Error::other)?;
    fsutil::write_atomic(&path(state_dir), &bytes, fsutil::PRIVATE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn entry(i: usize, detail: String) -> Entry {
        Entry {
            at: "2026-11-23T12:00:00Z".parse().unwrap(),
            event: "failure".into(),
            version: None,
            detail: format!("{i} {detail}"),
        }
    }

    #[test]
    fn the_journal_keeps_the_newest_entries_and_cuts_long_details() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).is_empty());
        for i in 0..MAX_ENTRIES + 5 {
            append(dir.path(), entry(i, String::new())).unwrap();
        }
        let got = read(dir.path());
        assert_eq!(got.len(), MAX_ENTRIES);
        assert_eq!(got[0].detail, "5 ");
        assert_eq!(got[MAX_ENTRIES - 1].detail, format!("{} ", MAX_ENTRIES + 4));
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A detail of multi-byte characters is cut at a character boundary.
        append(dir.path(), entry(0, "é".repeat(MAX_DETAIL))).unwrap();
        let last = read(dir.path()).pop().unwrap();
        assert!(last.detail.len() <= MAX_DETAIL && last.detail.len() > MAX_DETAIL - 4);
    }

    #[test]
    fn a_damaged_journal_is_empty_and_a_missing_state_folder_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), b"{not json").unwrap();
        assert!(read(dir.path()).is_empty());
        append(dir.path(), entry(1, String::new())).unwrap();
        assert_eq!(read(dir.path()).len(), 1);
        let missing = dir.path().join("none");
        append(&missing, entry(1, String::new())).unwrap();
        assert!(!missing.exists());
    }
}
