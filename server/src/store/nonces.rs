//! The replay cache of signed device requests: tree `request_nonces`, key = serial ++ 0x00
//! ++ nonce, value = the big-endian second until which the nonce must be remembered. It
//! lives in the store (not in memory) so that every replica behind a load balancer sees
//! the same nonces. Bounded: a box holds at most [`MAX_NONCES_PER_BOX`] live nonces, expired
//! ones of a box are dropped whenever it sends a request, and every
//! [`SWEEP_EVERY`] requests the whole tree is swept.

use super::{SledStore, StoreError};
use jiff::Timestamp;
use np_common::Serial;
use std::sync::atomic::Ordering;

const TREE: &str = "request_nonces";

/// The most nonces a box may have in the window (a box sends a few requests a minute).
pub const MAX_NONCES_PER_BOX: usize = 2_000;

/// A sweep of the whole cache after this many new nonces.
pub const SWEEP_EVERY: u64 = 4_096;

/// What the replay cache says about a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Not seen before: it is remembered now.
    Fresh,
    /// Seen from that box within the window.
    Replayed,
    /// The box has too many live nonces; nothing was remembered.
    TooMany,
}

fn prefix(serial: &Serial) -> Vec<u8> {
    let mut k = serial.as_str().as_bytes().to_vec();
    k.push(0);
    k
}

fn expiry_of(v: &[u8]) -> i64 {
    v.try_into().map(i64::from_be_bytes).unwrap_or(i64::MIN)
}

impl SledStore {
    /// Records `nonce` of `serial` until `expires`, unless it is already there and not
    /// expired at `now` (a replay). Flushed before returning.
    pub async fn remember_nonce(
        &self,
        serial: &Serial,
        nonce: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<NonceCheck, StoreError> {
        let tree = self.db.open_tree(TREE)?;
        let p = prefix(serial);
        let now_s = now.as_second();
        let mut live = 0usize;
        for item in tree.scan_prefix(&p) {
            let (k, v) = item?;
            if expiry_of(&v) < now_s {
                tree.remove(k)?;
            } else {
                live += 1;
            }
        }
        let mut key = p;
        key.extend_from_slice(nonce.to_ascii_lowercase().as_bytes());
        let value = expires.as_second().to_be_bytes();
        loop {
            let old = tree.get(&key)?;
            if old.as_ref().is_some_and(|v| expiry_of(v) >= now_s) {
                return Ok(NonceCheck::Replayed);
            }
            if live >= MAX_NONCES_PER_BOX {
                return Ok(NonceCheck::TooMany);
            }
            if tree.compare_and_swap(&key, old, Some(&value[..]))?.is_ok() {
                break;
            }
        }
        if self.nonce_count.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep_nonces(now)?;
        }
        self.flush().await?;
        Ok(NonceCheck::Fresh)
    }

    /// Drops every expired nonce of every box; answers how many live ones are left.
    pub fn sweep_nonces(&self, now: Timestamp) -> Result<usize, StoreError> {
        let tree = self.db.open_tree(TREE)?;
        let mut live = 0;
        for item in tree.iter() {
            let (k, v) = item?;
            if expiry_of(&v) < now.as_second() {
                tree.remove(k)?;
            } else {
                live += 1;
            }
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn a_nonce_is_refused_again_until_it_expires_and_boxes_are_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let a = Serial::parse("NR-2000-123456-4").unwrap();
        let b = Serial::parse("NR-1000-000000-9").unwrap();
        let now = t("2026-11-23T10:00:00Z");
        let exp = t("2026-11-23T10:05:01Z");
        let n = "00112233445566778899";
        assert_eq!(
            store.remember_nonce(&a, n, exp, now).await.unwrap(),
            NonceCheck::Fresh
        );
        assert_eq!(
            store.remember_nonce(&a, n, exp, now).await.unwrap(),
            NonceCheck::Replayed
        );
        // Hex case does not make a new nonce.
        assert_eq!(
            store
                .remember_nonce(&a, "00112233445566778899".to_uppercase().as_str(), exp, now)
                .await
                .unwrap(),
            NonceCheck::Replayed
        );
        assert_eq!(
            store.remember_nonce(&b, n, exp, now).await.unwrap(),
            NonceCheck::Fresh
        );
        // Past its expiry the entry is dropped (the request's time would be refused anyway).
        let later = t("2026-11-23T10:05:02Z");
        assert_eq!(store.sweep_nonces(later).unwrap(), 0);
        assert_eq!(
            store
                .remember_nonce(&a, n, t("2026-11-23T10:10:03Z"), later)
                .await
                .unwrap(),
            NonceCheck::Fresh
        );
    }

    #[tokio::test]
    async fn a_box_holds_a_bounded_number_of_nonces() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let a = Serial::parse("NR-2000-123456-4").unwrap();
        let now = t("2026-11-23T10:00:00Z");
        let exp = t("2026-11-23T10:05:01Z");
        for i in 0..MAX_NONCES_PER_BOX {
            let n = format!("{i:016x}");
            assert_eq!(
                store.remember_nonce(&a, &n, exp, now).await.unwrap(),
                NonceCheck::Fresh
            );
        }
        assert_eq!(
            store
                .remember_nonce(&a, "ffffffffffffffff", exp, now)
                .await
                .unwrap(),
            NonceCheck::TooMany
        );
        // Once the window has passed, the box may go on.
        let later = t("2026-11-23T10:06:00Z");
        assert_eq!(
            store
                .remember_nonce(&a, "ffffffffffffffff", t("2026-11-23T10:11:01Z"), later)
                .await
                .unwrap(),
            NonceCheck::Fresh
        );
    }
}
