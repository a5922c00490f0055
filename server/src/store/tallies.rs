//! The rollout guard's marks (`domain::guard`): tree `rollout_tallies`, key = version ++
//! 0x00 ++ serial, value = the JSON [`Mark`] of that box for that release. A mark is
//! written only when it changes (a box's first attempt, its first failure, a staff
//! rollback), never once per check-in; all of them are read back once at start. Writes are
//! flushed before returning.

use super::{decode, encode, SledStore, StoreError};
use crate::domain::guard::Mark;
use np_common::{Serial, Version};

const TREE: &str = "rollout_tallies";

fn key(version: &Version, serial: &Serial) -> Vec<u8> {
    let mut k = version.to_string().into_bytes();
    k.push(0);
    k.extend_from_slice(serial.as_str().as_bytes());
    k
}

impl SledStore {
    /// Stores the box's mark for the release (replacing the one before) and flushes.
    pub async fn put_tally_mark(
        &self,
        version: &Version,
        serial: &Serial,
        mark: &Mark,
    ) -> Result<(), StoreError> {
        self.db
            .open_tree(TREE)?
            .insert(key(version, serial), encode(mark))?;
        self.flush().await
    }

    /// Every stored mark. A key that does not parse as a version and a serial is skipped
    /// (it cannot have been written by this code); a value that does not parse is an error.
    pub fn tally_marks(&self) -> Result<Vec<(Version, Serial, Mark)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.open_tree(TREE)?.iter() {
            let (k, v) = item?;
            let Some(end) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            let (Ok(version), Ok(serial)) = (
                Version::parse(&String::from_utf8_lossy(&k[..end])),
                Serial::parse(&String::from_utf8_lossy(&k[end + 1..])),
            ) else {
                continue;
            };
            let mark: Mark = decode(&format!("rollout mark {version} {serial}"), &v)?;
            out.push((version, serial, mark));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marks_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let v = Version::parse("5.3.0").unwrap();
        let s = Serial::parse("NR-2000-123456-4").unwrap();
        let m = Mark {
            attempt_at: "2026-11-01T00:00:00Z".parse().unwrap(),
            epoch: 1,
            failed_at: Some("2026-11-01T01:00:00Z".parse().unwrap()),
            staff_rollback: false,
        };
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.put_tally_mark(&v, &s, &m).await.unwrap();
            let later = Mark {
                staff_rollback: true,
                ..m
            };
            store.put_tally_mark(&v, &s, &later).await.unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let marks = store.tally_marks().unwrap();
        assert_eq!(
            marks,
            vec![(
                v,
                s,
                Mark {
                    staff_rollback: true,
                    ..m
                }
            )]
        );
    }
}
