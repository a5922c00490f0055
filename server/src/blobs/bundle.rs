//! Writing offline bundles (docs/formats.md) as a stream.
//!
//! A bundle is a tar archive (optionally gzip-compressed) whose entries come in the order
//! `keyring.json`, `manifest.json`, `entitlement.json`, `image`. The writer takes the
//! image as an `impl Read` and copies it straight into the archive, counting and hashing
//! it with [`ImageVerifier`] as it passes: an image whose size or SHA-256 differs from the
//! manifest makes the write fail, and an image is never held in memory. The bytes around
//! the image come from the one tar layout, [`crate::blobs::bundle_tar::BundleLayout`],
//! which the server's bundle endpoint streams too.

use crate::blobs::bundle_tar::{BundleDocs, BundleLayout};
use flate2::write::GzEncoder;
use flate2::Compression;
use np_common::bundle::{ENTITLEMENT, KEYRING, MANIFEST, MAX_DOC_ENTRY};
use np_common::docs::{Document as _, ImageRef, Release};
use np_common::{Envelope, ImageError, ImageVerifier};
use std::io::{self, Read, Write};

/// Why a bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleWriteError {
    /// The manifest is not a release envelope whose payload names an image.
    #[error("the manifest is not a release manifest envelope: {0}")]
    Manifest(String),
    /// A document entry is larger than a bundle allows.
    #[error("the {name} entry is {size} bytes; a document entry is at most 1 MiB")]
    DocTooLarge { name: &'static str, size: usize },
    /// The image does not match the manifest.
    #[error("the image does not match the manifest: {0}")]
    Image(#[from] ImageError),
    /// Reading the image or writing the archive failed.
    #[error("writing the bundle failed: {0}")]
    Io(#[from] io::Error),
}

/// What goes into a bundle. The document entries are the envelopes' bytes as they were
/// signed and stored; the image is read once, from `image`.
pub struct BundleParts<R: Read> {
    /// The signed keyring envelope, if the bundle carries one.
    pub keyring: Option<Vec<u8>>,
    /// The signed release envelope.
    pub manifest: Vec<u8>,
    /// The box's signed entitlement envelope, if the bundle carries one.
    pub entitlement: Option<Vec<u8>>,
    /// The image bytes, checked against `image_ref` while they are copied.
    pub image: R,
    /// The size and SHA-256 the image must have (from the manifest).
    pub image_ref: ImageRef,
}

/// Reads the image reference out of a release envelope *without* checking signatures
/// (the caller verifies the manifest where it has a keyring; this is only the layout).
pub fn manifest_image_ref(manifest: &[u8]) -> Result<ImageRef, BundleWriteError> {
    let env = Envelope::parse(manifest).map_err(|e| BundleWriteError::Manifest(e.to_string()))?;
    if env.payload_type != Release::PAYLOAD_TYPE {
        return Err(BundleWriteError::Manifest(format!(
            "its payloadType is {:?}, expected {:?}",
            env.payload_type.chars().take(100).collect::<String>(),
            Release::PAYLOAD_TYPE
        )));
    }
    let payload = env
        .payload_bytes()
        .map_err(|e| BundleWriteError::Manifest(e.to_string()))?;
    let release: Release = serde_json::from_slice(&payload)
        .map_err(|e| BundleWriteError::Manifest(format!("its payload is not valid: {e}")))?;
    Ok(release.image)
}

/// Writes a bundle to `out` (gzip-compressed when `gzip`), streaming the image, and
/// returns `out` once everything, including the gzip trailer, has been written. On an
/// error the output holds a partial archive: the caller discards it.
pub fn write_bundle<W: Write, R: Read>(
    out: W,
    parts: BundleParts<R>,
    gzip: bool,
) -> Result<W, BundleWriteError> {
    for (name, doc) in [
        (KEYRING, parts.keyring.as_ref()),
        (MANIFEST, Some(&parts.manifest)),
        (ENTITLEMENT, parts.entitlement.as_ref()),
    ] {
        if let Some(d) = doc {
            if d.len() as u64 > MAX_DOC_ENTRY {
                return Err(BundleWriteError::DocTooLarge {
                    name,
                    size: d.len(),
                });
            }
        }
    }
    if gzip {
        let enc = write_tar(GzEncoder::new(out, Compression::default()), parts)?;
        Ok(enc.finish()?)
    } else {
        write_tar(out, parts)
    }
}

fn write_tar<W: Write, R: Read>(mut out: W, parts: BundleParts<R>) -> Result<W, BundleWriteError> {
    let layout = BundleLayout::new(
        BundleDocs {
            keyring: parts.keyring,
            manifest: parts.manifest,
            entitlement: parts.entitlement,
        },
        parts.image_ref.size,
        0,
    )?;
    for b in layout.head() {
        out.write_all(b)?;
    }
    let mut image = CheckedImage {
        inner: parts.image,
        verifier: Some(ImageVerifier::new(
            parts.image_ref.size,
            parts.image_ref.sha256,
        )),
        failure: None,
    };
    let copied = io::copy(&mut image, &mut out);
    if let Some(e) = image.failure.take() {
        return Err(BundleWriteError::Image(e));
    }
    copied?;
    for b in layout.tail() {
        out.write_all(b)?;
    }
    Ok(out)
}

/// Counts and hashes the image as it is copied. It refuses to hand out a byte past the
/// manifest's size, and at the end of the stream it fails unless size and hash match, so
/// the archive never gets an image entry of the wrong length.
struct CheckedImage<R> {
    inner: R,
    verifier: Option<ImageVerifier>,
    failure: Option<ImageError>,
}

impl<R: Read> Read for CheckedImage<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(v) = self.verifier.as_mut() else {
            return Ok(0);
        };
        let n = self.inner.read(buf)?;
        let result = if n == 0 {
            self.verifier.take().map(|v| v.finish().map(|_| ()))
        } else {
            Some(v.update(&buf[..n]))
        };
        match result {
            Some(Err(e)) => {
                let err = io::Error::new(io::ErrorKind::InvalidData, e.to_string());
                self.failure = Some(e);
                Err(err)
            }
            _ => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use np_common::bundle::IMAGE;
    use np_common::Sha256Digest;

    fn parts(image: &[u8], size: u64, with_docs: bool) -> BundleParts<&[u8]> {
        BundleParts {
            keyring: with_docs.then(|| b"{\"k\":1}".to_vec()),
            manifest: b"{\"m\":1}".to_vec(),
            entitlement: with_docs.then(|| b"{\"e\":1}".to_vec()),
            image,
            image_ref: ImageRef {
                name: "x.img".into(),
                size,
                sha256: Sha256Digest::of(image),
            },
        }
    }

    fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut ar = tar::Archive::new(bytes);
        let mut out = Vec::new();
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            out.push((name, data));
        }
        out
    }

    #[test]
    fn writes_the_entries_in_spec_order() {
        let img = vec![7u8; 3000];
        let out = write_bundle(Vec::new(), parts(&img, 3000, true), false).expect("bundle");
        let names: Vec<_> = entries(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [KEYRING, MANIFEST, ENTITLEMENT, IMAGE]);
        let e = entries(&out);
        assert_eq!(e[3].1, img);
        let out = write_bundle(Vec::new(), parts(&img, 3000, false), false).expect("bundle");
        let names: Vec<_> = entries(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [MANIFEST, IMAGE]);
    }

    #[test]
    fn gzip_bundles_decompress_to_the_same_tar() {
        let img = b"abc".to_vec();
        let plain = write_bundle(Vec::new(), parts(&img, 3, true), false).expect("plain");
        let gz = write_bundle(Vec::new(), parts(&img, 3, true), true).expect("gz");
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, plain);
    }

    #[test]
    fn refuses_images_that_do_not_match() {
        let img = vec![1u8; 100];
        let long = write_bundle(Vec::new(), parts(&img, 99, false), false);
        assert!(matches!(
            long,
            Err(BundleWriteError::Image(ImageError::TooLong {
                expected: 99
            }))
        ));
        let short = write_bundle(Vec::new(), parts(&img, 101, false), false);
        assert!(matches!(
            short,
            Err(BundleWriteError::Image(ImageError::SizeMismatch {
                expected: 101,
                actual: 100
            }))
        ));
        let mut p = parts(&img, 100, false);
        p.image_ref.sha256 = Sha256Digest::of(b"other");
        assert!(matches!(
            write_bundle(Vec::new(), p, false),
            Err(BundleWriteError::Image(ImageError::HashMismatch { .. }))
        ));
    }

    #[test]
    fn refuses_oversized_documents() {
        let mut p = parts(b"", 0, false);
        p.manifest = vec![b' '; (MAX_DOC_ENTRY + 1) as usize];
        assert!(matches!(
            write_bundle(Vec::new(), p, false),
            Err(BundleWriteError::DocTooLarge { name: MANIFEST, .. })
        ));
    }

    #[test]
    fn reads_the_image_ref_of_a_release_envelope() {
        assert!(matches!(
            manifest_image_ref(b"junk"),
            Err(BundleWriteError::Manifest(_))
        ));
        let env = Envelope::sign("application/vnd.np.keyring+json", b"{}", &[]);
        assert!(matches!(
            manifest_image_ref(&env.to_json()),
            Err(BundleWriteError::Manifest(_))
        ));
    }
}
