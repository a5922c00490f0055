//! Writing offline bundles (§7) as a stream.
