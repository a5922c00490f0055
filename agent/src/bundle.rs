//! The streaming offline-bundle reader (the bundle format: docs/formats.md): gzip or plain tar, detected from the first
//! bytes; entries checked in order by `np_common::bundle::LayoutCheck` as they arrive;
//! the documents verified before the image; the image hashed while it streams into the
//! inactive slot through the same path as a download. A bundle is read once.

use crate::agent::Agent;
use crate::error::AgentError;
use crate::install::{Done, When};
use crate::trust::TrustError;
use np_common::bundle::{BundleError, Entry, EntryType, LayoutCheck};
use np_common::docs::{DocError, Release};
use np_common::keyring::KeyringError;
use np_common::{Envelope, ImageError};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Why a bundle was refused (beyond the update rule and signature checks).
#[derive(Debug, thiserror::Error)]
pub enum BundleReject {
    #[error(transparent)]
    Layout(#[from] BundleError),
    #[error("the bundle is truncated or damaged: {0}")]
    Truncated(String),
    #[error("the bundle's {name} is not a signed document: {reason}")]
    BadDocument { name: &'static str, reason: String },
    #[error("cannot read bundle {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is {what}, not a bundle file; give the bundle's .tar or .tar.gz file")]
    NotAFile { path: String, what: &'static str },
}

impl BundleReject {
    /// Exit code: 3 when the file cannot be read, 1 for a refused bundle.
    pub fn exit_code(&self) -> u8 {
        match self {
            BundleReject::Open { .. } => 3,
            BundleReject::NotAFile { .. } => 2,
            _ => 1,
        }
    }

    /// The rule's short name.
    pub fn rule(&self) -> &'static str {
        match self {
            BundleReject::Layout(BundleError::Path(_)) => "entry_path",
            BundleReject::Layout(BundleError::Link(_)) => "entry_link",
            BundleReject::Layout(BundleError::NotFile(_)) => "entry_type",
            BundleReject::Layout(BundleError::Unknown(_)) => "unknown_entry",
            BundleReject::Layout(BundleError::Order { .. }) => "entry_order",
            BundleReject::Layout(BundleError::DocTooLarge { .. }) => "document_too_large",
            BundleReject::Layout(BundleError::Missing(_)) | BundleReject::Truncated(_) => {
                "truncated"
            }
            BundleReject::BadDocument { .. } => "bad_document",
            BundleReject::Open { .. } => "unreadable",
            BundleReject::NotAFile { .. } => "not_a_file",
        }
    }

    /// A read error inside the archive: it is truncated or damaged.
    pub fn from_read(e: std::io::Error) -> BundleReject {
        BundleReject::Truncated(e.to_string())
    }
}

/// Opens a bundle file; `progress` is told how many bytes of the file were read.
pub fn open<'a>(
    path: &Path,
    progress: &'a mut dyn FnMut(u64),
) -> Result<Box<dyn Read + 'a>, BundleReject> {
    let open_err = |source| BundleReject::Open {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(open_err)?;
    // Checked on the descriptor we read: a folder opens fine but reads as EISDIR, which
    // would otherwise look like a damaged bundle.
    let kind = file.metadata().map_err(open_err)?.file_type();
    if !kind.is_file() {
        return Err(BundleReject::NotAFile {
            path: path.display().to_string(),
            what: if kind.is_dir() {
                "a directory"
            } else {
                "a special file (a device, socket or pipe)"
            },
        });
    }
    Ok(Box::new(Counting {
        inner: file,
        progress,
    }))
}

/// Gzip when the stream starts with the gzip magic bytes, plain tar otherwise.
fn decode<'a>(reader: &'a mut dyn Read) -> Result<Box<dyn Read + 'a>, BundleReject> {
    let mut buf = BufReader::with_capacity(crate::slots::CHUNK, reader);
    let head = buf.fill_buf().map_err(BundleReject::from_read)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buf)))
    } else {
        Ok(Box::new(buf))
    }
}

struct Counting<'a, R> {
    inner: R,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

fn read_doc(entry: &mut dyn Read, size: u64, name: &'static str) -> Result<Envelope, AgentError> {
    let mut bytes = Vec::new();
    entry
        .take(np_common::bundle::MAX_DOC_ENTRY + 1)
        .read_to_end(&mut bytes)
        .map_err(BundleReject::from_read)?;
    if (bytes.len() as u64) < size {
        return Err(BundleReject::Truncated(format!(
            "{name} ends after {} of its {size} bytes",
            bytes.len()
        ))
        .into());
    }
    Envelope::parse(&bytes).map_err(|e| {
        BundleReject::BadDocument {
            name,
            reason: e.to_string(),
        }
        .into()
    })
}

/// Applies the bundle read from `reader`: verify, write the inactive slot, then install
/// per `when`.
pub fn apply(agent: &mut Agent, reader: &mut dyn Read, when: When) -> Result<Done, AgentError> {
    let mut decoded = decode(reader)?;
    let mut archive = tar::Archive::new(&mut decoded);
    let entries = archive.entries().map_err(BundleReject::from_read)?;
    let mut layout = LayoutCheck::new();
    let mut manifest: Option<(Envelope, Release)> = None;
    let mut staged = None;
    for entry in entries {
        let mut entry = entry.map_err(BundleReject::from_read)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let t = entry.header().entry_type();
        let kind = if t.is_file() {
            EntryType::File
        } else if t.is_symlink() || t.is_hard_link() {
            EntryType::Link
        } else {
            EntryType::Other
        };
        let size = entry.size();
        if let Err(e) = layout.next(&name, kind, size) {
            if let (Some(slot), Some((_, r))) = (staged, &manifest) {
                let err = AgentError::from(BundleReject::from(e));
                agent.abort_write(slot, r, &err);
                return Err(err);
            }
            return Err(BundleReject::from(e).into());
        }
        match layout_entry(&name) {
            Entry::Keyring => {
                let env = read_doc(&mut entry, size, "keyring.json")?;
                match agent.trust.accept_keyring(&env) {
                    Ok(_) | Err(TrustError::Keyring(KeyringError::VersionRollback { .. })) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Entry::Manifest => {
                let env = read_doc(&mut entry, size, "manifest.json")?;
                let release = agent.trust.verify_release(&env)?;
                manifest = Some((env, release));
            }
            Entry::Entitlement => {
                let env = read_doc(&mut entry, size, "entitlement.json")?;
                match agent.trust.accept_entitlement(&env) {
                    Ok(_) | Err(TrustError::Doc(DocError::Replay { .. })) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Entry::Image => {
                let Some((env, release)) = &manifest else {
                    return Err(BundleReject::Layout(BundleError::Missing("manifest.json")).into());
                };
                if let Err(e) = agent.check_rule(release) {
                    agent.record_refusal(Some(&release.version), &e);
                    return Err(e);
                }
                let expected = release.image.size;
                if size != expected {
                    let e = AgentError::Image(if size > expected {
                        ImageError::TooLong { expected }
                    } else {
                        ImageError::SizeMismatch {
                            expected,
                            actual: size,
                        }
                    });
                    agent.record_refusal(Some(&release.version), &e);
                    return Err(e);
                }
                let _ = env;
                staged = Some(agent.write_image_unfinished(release, &mut entry)?);
            }
        }
    }
    let (Some(slot), Some((env, release))) = (staged, manifest) else {
        let e = layout
            .finish()
            .err()
            .unwrap_or(BundleError::Missing("image"));
        return Err(BundleReject::from(e).into());
    };
    agent.finish_write(slot, &env)?;
    agent.event(
        Some(&release.version),
        np_common::api::EventKind::Download,
        &format!(
            "bundle verified; {} written to slot {slot}",
            release.version
        ),
    );
    agent.after_staged(&release, when)
}

fn layout_entry(name: &str) -> Entry {
    match name {
        np_common::bundle::KEYRING => Entry::Keyring,
        np_common::bundle::MANIFEST => Entry::Manifest,
        np_common::bundle::ENTITLEMENT => Entry::Entitlement,
        _ => Entry::Image,
    }
}

/// Applies the bundle file at `path`.
pub fn apply_file(
    agent: &mut Agent,
    path: &Path,
    when: When,
    progress: &mut dyn FnMut(u64),
) -> Result<Done, AgentError> {
    let mut reader = open(path, progress)?;
    apply(agent, &mut reader, when)
}
