//! HTTP `Range` requests on a blob of known size: one byte range (`bytes=a-b`, `bytes=a-`
//! or the suffix `bytes=-n`), answered with 206 and `Content-Range`, or 416 with
//! `Content-Range: bytes */size` when it cannot be satisfied.
//!
//! A header in another unit is ignored (the whole body is sent, as RFC 9110 allows). A
//! malformed byte range, or several ranges at once, is refused with 416 rather than
//! silently answered with the whole image: a resuming box must never mistake a full body
//! for the tail it asked for.

/// An inclusive byte range `start..=end` inside a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// How many bytes the range covers.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never empty: a range covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value of a 206 answer: `bytes a-b/size`.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, size)
    }
}

/// Why a `Range` header was refused (both answer 416).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("the Range header {header:?} is not one byte range such as bytes=1000- or bytes=0-99 or bytes=-500")]
    Malformed { header: String },
    #[error("the Range header {header:?} starts past the end of the {size}-byte image")]
    Unsatisfiable { header: String, size: u64 },
}

/// The `Content-Range` value of a 416 answer: `bytes */size`.
pub fn unsatisfied_content_range(size: u64) -> String {
    format!("bytes */{size}")
}

/// Parses a `Range` header for a blob of `size` bytes. `Ok(None)` means "send it all".
pub fn parse(header: Option<&str>, size: u64) -> Result<Option<ByteRange>, RangeError> {
    let Some(raw) = header else {
        return Ok(None);
    };
    let h = raw.trim();
    let Some((unit, spec)) = h.split_once('=') else {
        return Err(malformed(raw));
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(None);
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return Err(malformed(raw));
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Err(malformed(raw));
    };
    let (first, last) = (first.trim(), last.trim());
    let unsatisfiable = || RangeError::Unsatisfiable {
        header: clip(raw),
        size,
    };
    if first.is_empty() {
        // Suffix: the last n bytes.
        let n = number(last).ok_or_else(|| malformed(raw))?;
        if n == 0 || size == 0 {
            return Err(unsatisfiable());
        }
        let n = n.min(size);
        return Ok(Some(ByteRange {
            start: size - n,
            end: size - 1,
        }));
    }
    let start = number(first).ok_or_else(|| malformed(raw))?;
    let end = if last.is_empty() {
        None
    } else {
        let e = number(last).ok_or_else(|| malformed(raw))?;
        if e < start {
            return Err(malformed(raw));
        }
        Some(e)
    };
    if start >= size {
        return Err(unsatisfiable());
    }
    let end = end.map_or(size - 1, |e| e.min(size - 1));
    Ok(Some(ByteRange { start, end }))
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

fn malformed(raw: &str) -> RangeError {
    RangeError::Malformed { header: clip(raw) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Option<ByteRange> {
        Some(ByteRange { start, end })
    }

    #[test]
    fn no_header_or_other_unit_means_everything() {
        assert_eq!(parse(None, 100), Ok(None));
        assert_eq!(parse(Some("items=0-5"), 100), Ok(None));
    }

    #[test]
    fn closed_open_and_suffix_ranges() {
        assert_eq!(parse(Some("bytes=0-99"), 1000), Ok(r(0, 99)));
        assert_eq!(parse(Some("bytes=500-"), 1000), Ok(r(500, 999)));
        assert_eq!(parse(Some("bytes=-100"), 1000), Ok(r(900, 999)));
        assert_eq!(parse(Some(" bytes = 10 - 19 "), 1000), Ok(r(10, 19)));
        // An end past the size is clamped; a suffix longer than the blob is all of it.
        assert_eq!(parse(Some("bytes=990-5000"), 1000), Ok(r(990, 999)));
        assert_eq!(parse(Some("bytes=-5000"), 1000), Ok(r(0, 999)));
        assert_eq!(parse(Some("bytes=999-999"), 1000), Ok(r(999, 999)));
    }

    #[test]
    fn content_range_values() {
        let b = ByteRange { start: 5, end: 9 };
        assert_eq!(b.len(), 5);
        assert_eq!(b.content_range(10), "bytes 5-9/10");
        assert_eq!(unsatisfied_content_range(10), "bytes */10");
    }

    #[test]
    fn unsatisfiable_ranges() {
        for h in ["bytes=1000-", "bytes=1000-2000", "bytes=-0"] {
            assert_eq!(
                parse(Some(h), 1000),
                Err(RangeError::Unsatisfiable {
                    header: h.to_owned(),
                    size: 1000
                }),
                "{h}"
            );
        }
        assert!(matches!(
            parse(Some("bytes=0-"), 0),
            Err(RangeError::Unsatisfiable { .. })
        ));
        assert!(matches!(
            parse(Some("bytes=-5"), 0),
            Err(RangeError::Unsatisfiable { .. })
        ));
    }

    #[test]
    fn malformed_ranges() {
        for h in [
            "bytes=",
            "bytes=-",
            "bytes=abc-",
            "bytes=5-2",
            "bytes=0-1,5-6",
            "bytes=+1-2",
            "bytes=1-2x",
            "bytes 0-1",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(
                parse(Some(h), 1000),
                Err(RangeError::Malformed {
                    header: h.to_owned()
                }),
                "{h}"
            );
        }
    }
}
