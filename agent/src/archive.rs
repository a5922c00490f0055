//! A bounded streaming tar reader for offline bundles. It holds one 512-byte header
//! block at a time and at most [`MAX_EXT_HEADER`] bytes of an extension header (PAX `x`
//! and `g`, GNU long names `L` and `K`): an extension header's size is checked before
//! a byte of it is read. The archive must end with tar's two zero blocks, and only zero
//! padding may follow them, at most [`MAX_TRAILING_ZEROS`] of it: a gzip "zero bomb"
//! (gigabytes of zeros compressed to a few megabytes) is refused after that much.
//!
//! Error messages never quote bytes of the archive (they end up in `.reason` files that
//! admins read).

use std::io::{self, Read};

/// Size of a tar block.
pub const BLOCK: usize = 512;
/// The largest extension header (PAX records, GNU long name) the reader accepts.
pub const MAX_EXT_HEADER: u64 = 8 * 1024;
/// The most zero padding read after the end-of-archive blocks (tar pads to its record
/// size, 10 KiB by default); anything more is refused as data after the end.
pub const MAX_TRAILING_ZEROS: u64 = 1024 * 1024;

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive ends without tar's end-of-archive blocks (truncated, or a copy still in progress)")]
    NoEndBlocks,
    #[error(
        "the archive ends inside a header or an entry (truncated, or a copy still in progress)"
    )]
    Truncated,
    #[error(
        "the archive has data after tar's end-of-archive blocks; only zero padding (at most 1 MiB) may follow them"
    )]
    TrailingData,
    #[error("the archive's {kind} extension header is {size} bytes; at most {MAX_EXT_HEADER} bytes are allowed")]
    ExtensionTooLarge { kind: &'static str, size: u64 },
    #[error("header {index} of the archive is damaged: {what}")]
    BadHeader { index: u64, what: &'static str },
    #[error("the archive cannot be read: {0}")]
    Read(io::Error),
}

/// What kind of tar entry a header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Link,
    Other,
}

/// One entry's header, after any extension headers were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The path (lossy UTF-8).
    pub name: String,
    pub kind: Kind,
    pub size: u64,
}

/// Reads a tar stream entry by entry; between [`Archive::next_entry`] calls, `read`
/// gives the current entry's data.
pub struct Archive<R> {
    inner: R,
    /// Data bytes of the current entry not read yet, then its padding.
    remaining: u64,
    padding: u64,
    index: u64,
    ended: bool,
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Fills `buf` completely; `Ok(n < buf.len())` only at end of stream.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, ArchiveError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ArchiveError::Truncated)
            }
            Err(e) => return Err(ArchiveError::Read(e)),
        }
    }
    Ok(n)
}

/// An octal number field (NUL or space terminated), or GNU base-256 when the high bit
/// of the first byte is set.
fn number(field: &[u8], index: u64, what: &'static str) -> Result<u64, ArchiveError> {
    let bad = || ArchiveError::BadHeader { index, what };
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = 0;
        for (i, b) in field.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { *b };
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(bad)?;
        }
        return Ok(v);
    }
    let digits = field
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| **b != 0 && **b != b' ');
    let mut v: u64 = 0;
    for b in digits {
        if !(b'0'..=b'7').contains(b) {
            return Err(bad());
        }
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(bad)?;
    }
    Ok(v)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Extension values that apply to the next entry.
#[derive(Default)]
struct Pending {
    name: Option<Vec<u8>>,
    size: Option<u64>,
}

/// Applies PAX records (`"LEN key=value\n"`...) to `p`.
fn pax(records: &[u8], p: &mut Pending, index: u64) -> Result<(), ArchiveError> {
    let bad = |what| ArchiveError::BadHeader { index, what };
    let mut rest = records;
    while !rest.is_empty() && rest[0] != 0 {
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or(bad("a PAX record has no length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(bad("a PAX record's length is not a number"))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("a PAX record's length does not match it"));
        }
        let kv = &rest[sp + 1..len - 1];
        let eq = kv
            .iter()
            .position(|b| *b == b'=')
            .ok_or(bad("a PAX record has no '='"))?;
        let (key, value) = (&kv[..eq], &kv[eq + 1..]);
        match key {
            b"path" => p.name = Some(value.to_vec()),
            b"size" => {
                let s = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(bad("a PAX size is not a number"))?;
                p.size = Some(s);
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(())
}

/// Could `head` (less than a block) be the start of a bundle's first header? Its name
/// field must begin like a bundle's first entry or an extension header.
fn plausible_start(head: &[u8]) -> bool {
    const FIRST: [&[u8]; 5] = [
        b"keyring.json",
        b"manifest.json",
        b"PaxHeader",
        b"./PaxHeaders",
        b"././@LongLink",
    ];
    let field = &head[..head.len().min(100)];
    let name = cstr(field);
    // Ended by a NUL: the whole name is here; otherwise only its beginning.
    let whole = name.len() < field.len();
    FIRST.iter().any(|f| {
        name.starts_with(f)
            || (if whole {
                name == *f
            } else {
                f.starts_with(name)
            })
    })
}

impl<R: Read> Archive<R> {
    /// Reads a tar stream.
    pub fn new(inner: R) -> Archive<R> {
        Archive {
            inner,
            remaining: 0,
            padding: 0,
            index: 0,
            ended: false,
        }
    }

    /// Skips `n` bytes of the stream.
    fn skip(&mut self, mut n: u64) -> Result<(), ArchiveError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            if read_full(&mut self.inner, &mut buf[..want])? < want {
                return Err(ArchiveError::Truncated);
            }
            n -= want as u64;
        }
        Ok(())
    }

    fn block(&mut self, buf: &mut [u8; BLOCK]) -> Result<usize, ArchiveError> {
        read_full(&mut self.inner, buf)
    }

    /// After the first zero block: a second one, then nothing but zeros to the end.
    fn finish(&mut self) -> Result<(), ArchiveError> {
        let mut b = [0u8; BLOCK];
        match self.block(&mut b)? {
            BLOCK if b.iter().all(|x| *x == 0) => {}
            BLOCK => return Err(ArchiveError::TrailingData),
            _ => return Err(ArchiveError::NoEndBlocks),
        }
        let mut buf = [0u8; 8192];
        let mut zeros: u64 = 0;
        loop {
            let n = read_full(&mut self.inner, &mut buf)?;
            if buf[..n].iter().any(|x| *x != 0) {
                return Err(ArchiveError::TrailingData);
            }
            zeros += n as u64;
            if zeros > MAX_TRAILING_ZEROS {
                return Err(ArchiveError::TrailingData);
            }
            if n < buf.len() {
                self.ended = true;
                return Ok(());
            }
        }
    }

    /// The next entry's header, or `None` after the end-of-archive blocks (and the zero
    /// padding after them). The rest of the previous entry is skipped first.
    pub fn next_entry(&mut self) -> Result<Option<Header>, ArchiveError> {
        if self.ended {
            return Ok(None);
        }
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let mut pending = Pending::default();
        loop {
            let mut h = [0u8; BLOCK];
            let n = self.block(&mut h)?;
            if n == 0 {
                return Err(ArchiveError::NoEndBlocks);
            }
            if n < BLOCK {
                // A short first block is a copy still arriving only if it starts like a
                // bundle does; anything else is not a bundle at all.
                if self.index == 0 && !plausible_start(&h[..n]) {
                    return Err(ArchiveError::BadHeader {
                        index: 1,
                        what: "the file does not start like a bundle (a tar archive)",
                    });
                }
                return Err(ArchiveError::Truncated);
            }
            self.index += 1;
            let index = self.index;
            if h.iter().all(|x| *x == 0) {
                self.finish()?;
                return Ok(None);
            }
            let stored = number(&h[148..156], index, "its checksum is not a number")?;
            let sum: u64 = h
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        u64::from(*b)
                    }
                })
                .sum();
            if sum != stored {
                return Err(ArchiveError::BadHeader {
                    index,
                    what: "its checksum does not match",
                });
            }
            let size = number(&h[124..136], index, "its size is not a number")?;
            let ext = match h[156] {
                b'x' => Some("PAX"),
                b'g' => Some("PAX global"),
                b'L' => Some("GNU long name"),
                b'K' => Some("GNU long link name"),
                _ => None,
            };
            if let Some(kind) = ext {
                if size > MAX_EXT_HEADER {
                    return Err(ArchiveError::ExtensionTooLarge { kind, size });
                }
                let mut data = vec![0u8; size as usize];
                if read_full(&mut self.inner, &mut data)? < data.len() {
                    return Err(ArchiveError::Truncated);
                }
                self.skip(padding(size))?;
                match h[156] {
                    b'x' => pax(&data, &mut pending, index)?,
                    b'L' => pending.name = Some(cstr(&data).to_vec()),
                    _ => {}
                }
                continue;
            }
            let name = match pending.name.take() {
                Some(n) => n,
                None => {
                    let name = cstr(&h[0..100]);
                    let prefix = cstr(&h[345..500]);
                    if &h[257..263] == b"ustar\0" && !prefix.is_empty() {
                        [prefix, b"/", name].concat()
                    } else {
                        name.to_vec()
                    }
                }
            };
            let size = pending.size.unwrap_or(size);
            let kind = match h[156] {
                b'0' | 0 | b'7' => Kind::File,
                b'1' | b'2' => Kind::Link,
                _ => Kind::Other,
            };
            // Only a regular file has data to read; the others' sizes are skipped.
            self.remaining = size;
            self.padding = padding(size);
            return Ok(Some(Header {
                name: String::from_utf8_lossy(&name).into_owned(),
                kind,
                size,
            }));
        }
    }
}

impl<R: Read> Read for Archive<R> {
    /// The current entry's data; an error if the stream ends before the entry does.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside an entry",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, typ: u8, size: u64) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        let s = format!("{size:011o}");
        h[124..135].copy_from_slice(s.as_bytes());
        h[156] = typ;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    fn entry(out: &mut Vec<u8>, name: &str, typ: u8, data: &[u8]) {
        out.extend_from_slice(&header(name, typ, data.len() as u64));
        out.extend_from_slice(data);
        out.resize(out.len() + padding(data.len() as u64) as usize, 0);
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(Header, Vec<u8>)>, ArchiveError> {
        let mut a = Archive::new(bytes);
        let mut out = Vec::new();
        while let Some(h) = a.next_entry()? {
            let mut d = Vec::new();
            a.read_to_end(&mut d).map_err(|_| ArchiveError::Truncated)?;
            out.push((h, d));
        }
        Ok(out)
    }

    #[test]
    fn reads_what_the_tar_crate_writes_with_long_names_and_pax() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        let long = "x".repeat(150);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        b.append_data(&mut h, "image", &b"hi"[..]).unwrap();
        let got = read_all(&b.into_inner().unwrap()).unwrap();
        assert_eq!(got[0].0.name, long);
        assert_eq!(got[0].1, b"abc");
        assert_eq!(
            got[1].0,
            Header {
                name: "image".into(),
                kind: Kind::File,
                size: 2
            }
        );
        let mut t = Vec::new();
        entry(&mut t, "pax", b'x', b"20 path=manifest.js\n");
        entry(&mut t, "short", b'0', b"{}");
        t.extend_from_slice(&[0u8; 1024]);
        assert_eq!(read_all(&t).unwrap()[0].0.name, "manifest.js");
    }

    #[test]
    fn a_huge_extension_header_is_refused_before_it_is_read() {
        for typ in [b'x', b'g', b'L', b'K'] {
            // The header claims 300 MiB; none of it follows, and none is read.
            let t = header("big", typ, 300 << 20);
            match read_all(&t) {
                Err(ArchiveError::ExtensionTooLarge { size, .. }) => assert_eq!(size, 300 << 20),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn end_blocks_are_required_and_only_zeros_may_follow() {
        let mut t = Vec::new();
        entry(&mut t, "manifest.json", b'0', b"data");
        assert!(matches!(read_all(&t), Err(ArchiveError::NoEndBlocks)));
        let mut one = t.clone();
        one.extend_from_slice(&[0u8; 512]);
        assert!(matches!(read_all(&one), Err(ArchiveError::NoEndBlocks)));
        let mut good = t.clone();
        good.extend_from_slice(&[0u8; 1024 + 8192 + 100]);
        assert_eq!(read_all(&good).unwrap().len(), 1);
        let mut padded = t.clone();
        padded.extend_from_slice(&vec![0u8; 1024 + MAX_TRAILING_ZEROS as usize]);
        assert_eq!(
            read_all(&padded).unwrap().len(),
            1,
            "1 MiB of padding is taken"
        );
        padded.extend_from_slice(&[0u8; 1]);
        assert!(
            matches!(read_all(&padded), Err(ArchiveError::TrailingData)),
            "one byte more is refused"
        );
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"garbage");
        assert!(matches!(
            read_all(&trailing),
            Err(ArchiveError::TrailingData)
        ));
        let mut cut = t.clone();
        cut.truncate(512 + 2);
        assert!(matches!(read_all(&cut), Err(ArchiveError::Truncated)));
        let mut half = t.clone();
        half.truncate(100);
        assert!(matches!(read_all(&half), Err(ArchiveError::Truncated)));
        // A short file that cannot be the start of a bundle is not "truncated".
        let mut m = Vec::new();
        entry(&mut m, "manifest.json", b'0', b"{}");
        assert!(matches!(read_all(&m[..20]), Err(ArchiveError::Truncated)));
        assert!(matches!(read_all(&m[..5]), Err(ArchiveError::Truncated)));
        assert!(matches!(
            read_all(b"this is not a tar archive at all"),
            Err(ArchiveError::BadHeader { index: 1, .. })
        ));
        assert!(matches!(
            read_all(b"image\0\0"),
            Err(ArchiveError::BadHeader { .. })
        ));
        let mut bad = t.clone();
        bad[0] = b'y';
        assert!(matches!(
            read_all(&bad),
            Err(ArchiveError::BadHeader { index: 1, .. })
        ));
    }
}
