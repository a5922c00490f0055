//! An offline bundle (docs/formats.md) written as an async byte stream: tar headers are built in memory
//! (512 bytes each), the small JSON entries are sent as they are, and the image is streamed
//! from its file, so a bundle of any size is served without holding the image in memory.
//!
//! Entry order: `keyring.json` (optional), `manifest.json`, `entitlement.json` (optional),
//! `image`; each a plain regular file of mode 0644. The archive is uncompressed tar.

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

/// The exact length of the tar stream for these documents and an image of `image_size`.
pub fn bundle_len(docs: &BundleDocs, image_size: u64) -> u64 {
    let entry = |size: u64| BLOCK + size.div_ceil(BLOCK) * BLOCK;
    let mut n = entry(docs.manifest.len() as u64) + entry(image_size) + 2 * BLOCK;
    if let Some(k) = &docs.keyring {
        n += entry(k.len() as u64);
    }
    if let Some(e) = &docs.entitlement {
        n += entry(e.len() as u64);
    }
    n
}

/// The bundle as a stream of bytes. `image` is read from its current position for exactly
/// `image_size` bytes; a file that ends early fails the stream instead of padding it.
pub fn bundle_stream(
    docs: BundleDocs,
    image: tokio::fs::File,
    image_size: u64,
    mtime: u64,
) -> std::io::Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
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
    let tail = [
        padding(image_size),
        Bytes::from(vec![0u8; 2 * BLOCK as usize]),
    ];
    Ok(stream::iter(head.into_iter().map(Ok))
        .chain(image_stream(image, image_size))
        .chain(stream::iter(tail.into_iter().map(Ok))))
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
        let expected_len = bundle_len(&docs, image.len() as u64);
        let f = image_file(dir.path(), &image).await;
        let bytes = collect(bundle_stream(docs, f, image.len() as u64, 0).unwrap())
            .await
            .unwrap();
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
        let bytes = collect(bundle_stream(docs.clone(), f, 3, 0).unwrap())
            .await
            .unwrap();
        assert_eq!(bytes.len() as u64, bundle_len(&docs, 3));
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
        let err = collect(bundle_stream(docs, f, 10, 0).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
