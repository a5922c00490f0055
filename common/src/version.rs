//! Firmware versions: semver, compared by semver precedence.
//!
//! Build metadata (`5.2.0+b1`) takes no part in precedence: `5.2.0+b1` is the same version
//! as `5.2.0` for equality, ordering and hashing, so it is never "newer" than it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A semver firmware version such as `5.3.0`.
#[derive(Clone)]
pub struct Version(semver::Version);

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Version {}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Exactly the fields precedence compares (build metadata left out), as Eq.
        (
            self.0.major,
            self.0.minor,
            self.0.patch,
            self.0.pre.as_str(),
        )
            .hash(state);
    }
}

/// Why a version string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{input:?} is not a semver version such as 5.3.0: {reason}")]
pub struct VersionError {
    pub input: String,
    pub reason: String,
}

impl Version {
    /// Parses a semver version.
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        semver::Version::parse(s)
            .map(Version)
            .map_err(|e| VersionError {
                input: s.chars().take(64).collect(),
                reason: e.to_string(),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // semver precedence only: build metadata never makes a version newer.
        self.0.cmp_precedence(&other.0)
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.0)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_semver() {
        let v = |s| Version::parse(s).expect("valid");
        assert!(v("5.10.0") > v("5.9.9"));
        assert!(v("5.3.0") > v("5.3.0-rc.1"));
        assert!(Version::parse("5.3").is_err());
    }

    #[test]
    fn build_metadata_is_not_newer() {
        let v = |s| Version::parse(s).expect("valid");
        assert!(
            v("5.2.0+b1") <= v("5.2.0"),
            "5.2.0+b1 is not newer than 5.2.0"
        );
        assert!(v("5.2.0") <= v("5.2.0+b1"));
        assert_eq!(v("5.2.0+b1"), v("5.2.0"));
        assert_eq!(v("5.2.0+b1").cmp(&v("5.2.0+b2")), std::cmp::Ordering::Equal);
        let set: std::collections::HashSet<Version> = [v("5.2.0"), v("5.2.0+b1")].into();
        assert_eq!(set.len(), 1, "Hash agrees with Eq");
        assert!(v("5.2.1+b1") > v("5.2.0+zzz"));
        assert_eq!(v("5.2.0+b1").to_string(), "5.2.0+b1", "shown as written");
    }
}
