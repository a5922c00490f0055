//! The staged-rollout bucket (docs/api.md): a box falls inside a release's rollout when the first
//! 8 bytes of `sha256(serial ":" version)`, read as a big-endian integer, mod 100, are below
//! the release's `rollout_percent`. The bucket is stable per box and release, so raising the
//! percentage only ever adds boxes.

use np_common::{Serial, Version};
use sha2::{Digest as _, Sha256};

/// The box's bucket for this release, in `0..100`.
pub fn bucket(serial: &Serial, version: &Version) -> u8 {
    let digest = Sha256::digest(format!("{serial}:{version}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The remainder is below 100, so it fits in a u8.
    (u64::from_be_bytes(first) % 100) as u8
}

/// Does the box fall inside a rollout of `percent` (0..=100)?
pub fn in_rollout(serial: &Serial, version: &Version, percent: u8) -> bool {
    bucket(serial, version) < percent
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn serial(s: &str) -> Serial {
        Serial::parse(s).unwrap()
    }

    #[test]
    fn bucket_matches_the_spec_formula() {
        let s = serial("NR-2000-123456-4");
        let v = Version::parse("5.3.0").unwrap();
        let d = Sha256::digest(b"NR-2000-123456-4:5.3.0");
        let n = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        assert_eq!(u64::from(bucket(&s, &v)), n % 100);
    }

    #[test]
    fn zero_excludes_everyone_and_hundred_includes_everyone() {
        let s = serial("NR-2000-123456-4");
        let v = Version::parse("5.3.0").unwrap();
        assert!(!in_rollout(&s, &v, 0));
        assert!(in_rollout(&s, &v, 100));
        let b = bucket(&s, &v);
        assert!(in_rollout(&s, &v, b + 1));
        assert!(!in_rollout(&s, &v, b));
    }

    #[test]
    fn buckets_spread_over_many_boxes() {
        let v = Version::parse("5.3.0").unwrap();
        let mut inside = 0;
        for n in 0..1000u32 {
            let digits = format!("2000{n:06}");
            let check = np_common::serial::luhn_check_digit(&digits);
            let s = serial(&format!("NR-2000-{n:06}-{check}"));
            if in_rollout(&s, &v, 30) {
                inside += 1;
            }
        }
        assert!((220..380).contains(&inside), "{inside} of 1000 inside 30%");
    }
}
