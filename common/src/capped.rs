//! One size-capped reader around every untrusted stream an NP program reads whole (a
//! server's answer, a request body): it yields at most `cap` bytes and fails on the
//! first byte past it, so nothing unbounded is ever buffered. (It performs no I/O of
//! its own: it wraps a reader the caller owns.)

use std::io::{self, Read};

/// More bytes than the cap arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {cap} bytes")]
pub struct TooLarge {
    pub cap: u64,
}

/// A reader that fails once more than `cap` bytes came through.
#[derive(Debug)]
pub struct CappedReader<R> {
    inner: R,
    cap: u64,
    seen: u64,
}

impl<R: Read> CappedReader<R> {
    /// Wraps `inner`, allowing at most `cap` bytes.
    pub fn new(inner: R, cap: u64) -> Self {
        CappedReader {
            inner,
            cap,
            seen: 0,
        }
    }

    /// Reads everything, or fails with [`TooLarge`] (inside the `io::Error`, see
    /// [`too_large`]) past the cap.
    pub fn read_all(mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to_end(&mut out)?;
        Ok(out)
    }
}

/// The cap of an error a [`CappedReader`] returned, if it was the cap.
pub fn too_large(e: &io::Error) -> Option<TooLarge> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<TooLarge>())
        .copied()
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte more than allowed is asked for, to tell "exactly cap" from "more".
        let room = (self.cap - self.seen.min(self.cap)).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.seen += n as u64;
        if self.seen > self.cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                TooLarge { cap: self.cap },
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_up_to_the_cap_and_fails_past_it() {
        let data = vec![7u8; 1000];
        assert_eq!(
            CappedReader::new(&data[..], 1000).read_all().ok(),
            Some(data.clone())
        );
        let e = CappedReader::new(&data[..], 999)
            .read_all()
            .err()
            .map(|e| too_large(&e));
        assert_eq!(e, Some(Some(TooLarge { cap: 999 })));
        // An endless source is cut at the cap, not buffered.
        let e = CappedReader::new(io::repeat(1), 4096).read_all().err();
        assert_eq!(e.as_ref().and_then(too_large), Some(TooLarge { cap: 4096 }));
    }
}
