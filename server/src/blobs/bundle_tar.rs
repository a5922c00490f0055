//! The one tar writer of the offline bundle (docs/formats.md): [`BundleLayout`] lays out
//! every byte around the image (tar headers of 512 bytes, the small JSON entries, zero
//! padding, the two end-of-archive blocks), so that the image itself is copied straight
//! from its source and never held in memory. The server streams it ([`bundle_stream`],
//! gzip-compressed on the fly when the client accepts it: [`gzip_stream`]); `np-vendor
//! bundle build` writes it to a file ([`crate::blobs::bundle::write_bundle`]).
//!
//! Entry order: `keyring.json` (optional), `manifest.json`, `entitlement.json` (optional),
//! `image`; each a plain regular file of mode 0644, owner 0:0, GNU tar headers.

use bytes::{Bytes, BytesMut};
use futures_util::{stream, Stream, StreamExt as _};
use np_common::bundle::{ENTITLEMENT, IMAGE, KEYRING, MANIFEST};
use tokio::io::AsyncReadExt as _;

const BLOCK: u64 = 512;
const CHUNK: usize = 64 << 10;

/// The documents of a bundle.
#[derive(Debug, Clone)]
pub struct BundleDocs {
    pub keyring: Option<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub entitlement: Option<Vec<u8>>,
}

fn header(name: &str, size: u64, mtime: u64) -> std::io::Result<Bytes> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(Bytes::copy_from_slice(h.as_bytes()))
}

fn padding(size: u64) -> Bytes {
    let rem = size % BLOCK;
    if rem == 0 {
        Bytes::new()
    } else {
        Bytes::from(vec![0u8; (BLOCK - rem) as usize])
    }
}

/// Every byte of a bundle but the image's: `head` (the documents and the image's header)
/// comes before the image, `tail` (its padding and the end-of-archive blocks) after it.
#[derive(Debug, Clone)]
pub struct BundleLayout {
    head: Vec<Bytes>,
    tail: Vec<Bytes>,
    image_size: u64,
}

impl BundleLayout {
    /// Lays out `docs` and an image of `image_size` bytes, every entry dated `mtime`.
    pub fn new(docs: BundleDocs, image_size: u64, mtime: u64) -> std::io::Result<BundleLayout> {
        let mut head: Vec<Bytes> = Vec::new();
        let mut doc = |name: &str, body: Vec<u8>| -> std::io::Result<()> {
            let size = body.len() as u64;
            head.push(header(name, size, mtime)?);
            head.push(Bytes::from(body));
            head.push(padding(size));
            Ok(())
        };
        if let Some(k) = docs.keyring {
            doc(KEYRING, k)?;
        }
        doc(MANIFEST, docs.manifest)?;
        if let Some(e) = docs.entitlement {
            doc(ENTITLEMENT, e)?;
        }
        head.push(header(IMAGE, image_size, mtime)?);
        let tail = vec![
            padding(image_size),
            Bytes::from(vec![0u8; 2 * BLOCK as usize]),
        ];
        Ok(BundleLayout {
            head,
            tail,
            image_size,
        })
    }

    /// The exact length of the (uncompressed) archive.
    pub fn archive_len(&self) -> u64 {
        let n = |v: &[Bytes]| v.iter().map(|b| b.len() as u64).sum::<u64>();
        n(&self.head) + self.image_size + n(&self.tail)
    }

    /// The size the image entry must have.
    pub fn image_size(&self) -> u64 {
        self.image_size
    }

    /// The bytes before the image.
    pub fn head(&self) -> &[Bytes] {
        &self.head
    }

    /// The bytes after the image.
    pub fn tail(&self) -> &[Bytes] {
        &self.tail
    }
}

/// The bundle as a stream of bytes. `image` is read from its current position for exactly
/// the layout's image size; a file that ends early fails the stream instead of padding it.
pub fn bundle_stream(
    layout: BundleLayout,
    image: tokio::fs::File,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let size = layout.image_size;
    stream::iter(layout.head.into_iter().map(Ok))
        .chain(image_stream(image, size))
        .chain(stream::iter(layout.tail.into_iter().map(Ok)))
}

/// Gzip-compresses a byte stream as it passes, ending with the gzip trailer; an error of
/// the inner stream ends it. The fast level: the work is done chunk by chunk (64 KiB) on
/// the answering task, and a firmware image rarely shrinks much more at higher levels.
pub fn gzip_stream(
    inner: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use flate2::write::GzEncoder;
    use std::io::Write as _;
    let enc = GzEncoder::new(Vec::with_capacity(CHUNK), flate2::Compression::fast());
    let inner = Box::pin(inner);
    stream::unfold(Some((inner, enc)), |state| async move {
        let (mut inner, mut enc) = state?;
        loop {
            match inner.next().await {
                Some(Ok(chunk)) => {
                    if let Err(e) = enc.write_all(&chunk) {
                        return Some((Err(e), None));
                    }
                    if enc.get_ref().len() >= CHUNK {
                        let out = Bytes::from(std::mem::take(enc.get_mut()));
                        return Some((Ok(out), Some((inner, enc))));
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    return Some((enc.finish().map(Bytes::from), None));
                }
            }
        }
    })
}

/// Does an `Accept-Encoding` header value accept gzip (a `gzip` coding whose q is not 0)?
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        if !coding.eq_ignore_ascii_case("gzip") && !coding.eq_ignore_ascii_case("x-gzip") {
            return false;
        }
        !it.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        })
    })
}

/// Exactly `size` bytes of `file` in chunks; an error if the file ends early.
fn image_stream(
    file: tokio::fs::File,
    size: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    stream::unfold(
        (file.take(size), 0u64, false),
        move |(mut reader, seen, done)| async move {
            if done {
                return None;
            }
            let mut buf = BytesMut::with_capacity(CHUNK);
            match reader.read_buf(&mut buf).await {
                Ok(0) if seen < size => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the image ended after {seen} of {size} bytes"),
                    );
                    Some((Err(e), (reader, seen, true)))
                }
                Ok(0) => None,
                Ok(n) => Some((Ok(buf.freeze()), (reader, seen + n as u64, false))),
                Err(e) => Some((Err(e), (reader, seen, true))),
            }
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use np_common::bundle::{Entry, EntryType, LayoutCheck};
    use std::io::Read as _;

    async fn collect(s: impl Stream<Item = std::io::Result<Bytes>>) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = std::pin::pin!(s);
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    async fn image_file(dir: &std::path::Path, bytes: &[u8]) -> tokio::fs::File {
        let p = dir.join("image");
        std::fs::write(&p, bytes).unwrap();
        tokio::fs::File::open(&p).await.unwrap()
    }

    #[tokio::test]
    async fn writes_a_bundle_the_layout_check_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let image: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let docs = BundleDocs {
            keyring: Some(b"{\"k\":1}".to_vec()),
            manifest: b"{\"m\":2}".to_vec(),
            entitlement: Some(b"{\"e\":3}".to_vec()),
        };
        let layout = BundleLayout::new(docs, image.len() as u64, 0).unwrap();
        let expected_len = layout.archive_len();
        let f = image_file(dir.path(), &image).await;
        let bytes = collect(bundle_stream(layout.clone(), f)).await.unwrap();
        // Compressed on the way, it decompresses to the same archive.
        let f = image_file(dir.path(), &image).await;
        let gz = collect(gzip_stream(bundle_stream(layout, f)))
            .await
            .unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, bytes);
        assert_eq!(bytes.len() as u64, expected_len);
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut check = LayoutCheck::new();
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let kind = check.next(&name, EntryType::File, e.size()).unwrap();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            seen.push((kind, body));
        }
        check.finish().unwrap();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0], (Entry::Keyring, b"{\"k\":1}".to_vec()));
        assert_eq!(seen[2].0, Entry::Entitlement);
        assert_eq!(seen[3], (Entry::Image, image));
    }

    #[tokio::test]
    async fn optional_entries_may_be_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let docs = BundleDocs {
            keyring: None,
            manifest: b"{}".to_vec(),
            entitlement: None,
        };
        let f = image_file(dir.path(), b"abc").await;
        let layout = BundleLayout::new(docs, 3, 0).unwrap();
        let bytes = collect(bundle_stream(layout.clone(), f)).await.unwrap();
        assert_eq!(bytes.len() as u64, layout.archive_len());
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["manifest.json", "image"]);
    }

    #[tokio::test]
    async fn a_short_image_fails_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let docs = BundleDocs {
            keyring: None,
            manifest: b"{}".to_vec(),
            entitlement: None,
        };
        let f = image_file(dir.path(), b"abc").await;
        let layout = BundleLayout::new(docs, 10, 0).unwrap();
        let err = collect(bundle_stream(layout.clone(), f)).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        // Compressed, the error still ends the stream.
        let f = image_file(dir.path(), b"abc").await;
        let err = collect(gzip_stream(bundle_stream(layout, f)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn accept_encoding_is_read_as_http_says() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5, br"));
        assert!(accepts_gzip("GZIP"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("br, deflate"));
        assert!(!accepts_gzip(""));
    }
}
