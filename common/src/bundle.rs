//! The offline bundle layout (docs/formats.md) as a pure checker: entries are fed in the order they
//! arrive, and anything out of place is refused before its bytes are used.

/// Entry name of the optional keyring.
pub const KEYRING: &str = "keyring.json";
/// Entry name of the release envelope.
pub const MANIFEST: &str = "manifest.json";
/// Entry name of the optional entitlement.
pub const ENTITLEMENT: &str = "entitlement.json";
/// Entry name of the image.
pub const IMAGE: &str = "image";
/// The largest JSON entry of a bundle.
pub const MAX_DOC_ENTRY: u64 = 1 << 20;

/// What kind of tar entry arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    File,
    Link,
    Other,
}

/// A bundle entry that is in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Keyring,
    Manifest,
    Entitlement,
    Image,
}

/// Why a bundle's layout was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("the bundle holds entry {0:?}, whose path has '/' or '..'; entries are plain names")]
    Path(String),
    #[error("the bundle's entry {0:?} is a link; links are not allowed")]
    Link(String),
    #[error("the bundle's entry {0:?} is not a regular file")]
    NotFile(String),
    #[error("the bundle holds an unknown entry {0:?}; only keyring.json, manifest.json, entitlement.json and image are allowed")]
    Unknown(String),
    #[error("the bundle's entry {name:?} is out of order; the order is keyring.json, manifest.json, entitlement.json, image")]
    Order { name: String },
    #[error("the bundle's {name} entry is {size} bytes; a document entry is at most 1 MiB")]
    DocTooLarge { name: String, size: u64 },
    #[error("the bundle ends before its {0} entry (truncated or incomplete)")]
    Missing(&'static str),
}

/// Checks the order of a bundle's entries as they arrive.
#[derive(Debug, Default)]
pub struct LayoutCheck {
    last: Option<Entry>,
}

impl LayoutCheck {
    /// Starts a check.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next entry: its path, tar type and size.
    pub fn next(&mut self, path: &str, kind: EntryType, size: u64) -> Result<Entry, BundleError> {
        let shown: String = path.chars().take(100).collect();
        if path.contains('/') || path.contains('\\') || path.contains("..") {
            return Err(BundleError::Path(shown));
        }
        match kind {
            EntryType::Link => return Err(BundleError::Link(shown)),
            EntryType::Other => return Err(BundleError::NotFile(shown)),
            EntryType::File => {}
        }
        let entry = match path {
            KEYRING => Entry::Keyring,
            MANIFEST => Entry::Manifest,
            ENTITLEMENT => Entry::Entitlement,
            IMAGE => Entry::Image,
            _ => return Err(BundleError::Unknown(shown)),
        };
        let ok = matches!(
            (self.last, entry),
            (None, Entry::Keyring | Entry::Manifest)
                | (Some(Entry::Keyring), Entry::Manifest)
                | (Some(Entry::Manifest), Entry::Entitlement | Entry::Image)
                | (Some(Entry::Entitlement), Entry::Image)
        );
        if !ok {
            return Err(BundleError::Order { name: shown });
        }
        if entry != Entry::Image && size > MAX_DOC_ENTRY {
            return Err(BundleError::DocTooLarge { name: shown, size });
        }
        self.last = Some(entry);
        Ok(entry)
    }

    /// The archive ended: it must have reached its image.
    pub fn finish(&self) -> Result<(), BundleError> {
        match self.last {
            Some(Entry::Image) => Ok(()),
            None | Some(Entry::Keyring) => Err(BundleError::Missing(MANIFEST)),
            _ => Err(BundleError::Missing(IMAGE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(entries: &[(&str, EntryType)]) -> Result<(), BundleError> {
        let mut c = LayoutCheck::new();
        for (p, k) in entries {
            c.next(p, *k, 10)?;
        }
        c.finish()
    }

    #[test]
    fn accepts_the_layouts_of_the_spec() {
        use EntryType::File as F;
        assert_eq!(run(&[(MANIFEST, F), (IMAGE, F)]), Ok(()));
        assert_eq!(
            run(&[(KEYRING, F), (MANIFEST, F), (ENTITLEMENT, F), (IMAGE, F)]),
            Ok(())
        );
    }

    #[test]
    fn refuses_each_hostile_layout() {
        use EntryType::File as F;
        assert!(matches!(run(&[("../image", F)]), Err(BundleError::Path(_))));
        assert!(matches!(
            run(&[("a/manifest.json", F)]),
            Err(BundleError::Path(_))
        ));
        assert!(matches!(
            run(&[(MANIFEST, EntryType::Link)]),
            Err(BundleError::Link(_))
        ));
        assert!(matches!(run(&[("extra", F)]), Err(BundleError::Unknown(_))));
        assert!(matches!(
            run(&[(ENTITLEMENT, F), (MANIFEST, F)]),
            Err(BundleError::Order { .. })
        ));
        assert!(matches!(run(&[(IMAGE, F)]), Err(BundleError::Order { .. })));
        assert!(matches!(
            run(&[(MANIFEST, F), (IMAGE, F), (IMAGE, F)]),
            Err(BundleError::Order { .. })
        ));
        assert!(matches!(
            run(&[(MANIFEST, F), (KEYRING, F)]),
            Err(BundleError::Order { .. })
        ));
        assert_eq!(run(&[(MANIFEST, F)]), Err(BundleError::Missing(IMAGE)));
        assert_eq!(run(&[]), Err(BundleError::Missing(MANIFEST)));
        let mut c = LayoutCheck::new();
        assert!(matches!(
            c.next(MANIFEST, F, MAX_DOC_ENTRY + 1),
            Err(BundleError::DocTooLarge { .. })
        ));
    }
}
