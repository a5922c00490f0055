//! The `file` boot loader: a record in `state_dir/boot.json` and nothing else. The
//! default on development boxes and in tests, where "reboot" means going straight on.

use super::{BootControl, BootError};
use crate::state::Slot;
use np_fsutil as fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the file-backed boot loader records in `state_dir/boot.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootRecord {
    pub active: Slot,
    pub committed: bool,
    pub bad: Vec<Slot>,
}

/// The most of `boot.json` read.
const MAX_RECORD: u64 = 4096;

/// A boot loader that is a file: the default when no `activate_command` is configured.
#[derive(Debug, Clone)]
pub struct FileBoot {
    path: PathBuf,
}

impl FileBoot {
    /// The boot record of `state_dir`.
    pub fn new(state_dir: &Path) -> FileBoot {
        FileBoot {
            path: state_dir.join("boot.json"),
        }
    }

    /// The current record; a missing or damaged one is an error (never a guess).
    pub fn read(&self) -> Result<BootRecord, BootError> {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        match std::fs::File::open(&self.path) {
            Ok(f) => f.take(MAX_RECORD + 1).read_to_end(&mut bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BootError::Missing {
                    path: self.path.clone(),
                })
            }
            Err(e) => Err(e),
        }
        .map_err(|source| BootError::Io {
            path: self.path.clone(),
            source,
        })?;
        if bytes.len() as u64 > MAX_RECORD {
            return Err(BootError::Corrupt {
                path: self.path.clone(),
                message: format!("larger than {MAX_RECORD} bytes"),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| BootError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    fn write(&self, r: &BootRecord) -> Result<(), BootError> {
        let bytes = serde_json::to_vec_pretty(r).unwrap_or_default();
        fsutil::write_atomic(&self.path, &bytes, fsutil::PRIVATE).map_err(|source| BootError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

impl BootControl for FileBoot {
    fn name(&self) -> &'static str {
        "file"
    }

    fn provision(&self, slot: Slot) -> Result<(), BootError> {
        self.write(&BootRecord {
            active: slot,
            committed: true,
            bad: Vec::new(),
        })
    }

    fn activate(&self, slot: Slot) -> Result<(), BootError> {
        let mut r = self.read()?;
        r.active = slot;
        r.committed = false;
        r.bad.retain(|s| *s != slot);
        self.write(&r)
    }

    fn commit(&self, slot: Slot) -> Result<(), BootError> {
        let mut r = self.read()?;
        r.active = slot;
        r.committed = true;
        self.write(&r)
    }

    fn mark_bad(&self, slot: Slot) -> Result<(), BootError> {
        let mut r = self.read()?;
        if !r.bad.contains(&slot) {
            r.bad.push(slot);
        }
        self.write(&r)
    }

    fn reboot(&self) -> Result<bool, BootError> {
        Ok(false)
    }

    fn record(&self) -> Result<serde_json::Value, BootError> {
        Ok(serde_json::to_value(self.read()?).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_boot_records_activate_commit_and_bad() {
        let dir = tempfile::tempdir().unwrap();
        let b = FileBoot::new(dir.path());
        assert!(matches!(b.read(), Err(BootError::Missing { .. })));
        assert!(matches!(
            b.activate(Slot::B),
            Err(BootError::Missing { .. })
        ));
        b.provision(Slot::A).unwrap();
        assert_eq!(b.read().unwrap().active, Slot::A);
        b.mark_bad(Slot::B).unwrap();
        b.activate(Slot::B).unwrap();
        assert_eq!(
            b.read().unwrap(),
            BootRecord {
                active: Slot::B,
                committed: false,
                bad: vec![]
            }
        );
        b.mark_bad(Slot::B).unwrap();
        b.commit(Slot::A).unwrap();
        assert_eq!(
            b.read().unwrap(),
            BootRecord {
                active: Slot::A,
                committed: true,
                bad: vec![Slot::B]
            }
        );
        assert!(!b.reboot().unwrap());
        assert_eq!(b.tries(Slot::A).unwrap(), None);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_slot_a() {
        let dir = tempfile::tempdir().unwrap();
        let b = FileBoot::new(dir.path());
        for bytes in [
            &b"{"[..],
            b"{\"active\":\"c\",\"committed\":true,\"bad\":[]}",
            b"",
        ] {
            std::fs::write(dir.path().join("boot.json"), bytes).unwrap();
            assert!(matches!(b.read(), Err(BootError::Corrupt { .. })));
            assert!(matches!(b.commit(Slot::A), Err(BootError::Corrupt { .. })));
        }
        std::fs::write(dir.path().join("boot.json"), vec![b' '; 5000]).unwrap();
        assert!(
            matches!(b.read(), Err(BootError::Corrupt { ref message, .. }) if message.contains("4096"))
        );
    }
}
