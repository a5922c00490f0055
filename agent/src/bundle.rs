//! The streaming offline-bundle reader (the bundle format: docs/formats.md): gzip or plain tar, detected from the first
//! bytes; entries checked in order by `np_common::bundle::LayoutCheck` as they arrive;
//! the documents verified before the image; the image hashed while it streams into the
//! inactive slot through the same path as a download. A bundle is read once.

use crate::agent::Agent;
use crate::archive::{Archive, ArchiveError, Kind};
use crate::error::AgentError;
use crate::install::{Done, When};
use crate::state::Slot;
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
    #[error("the bundle is refused: {0}")]
    Archive(#[from] ArchiveError),
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
            BundleReject::Archive(ArchiveError::NoEndBlocks | ArchiveError::Truncated) => {
                "truncated"
            }
            BundleReject::Archive(ArchiveError::TrailingData) => "trailing_data",
            BundleReject::Archive(ArchiveError::ExtensionTooLarge { .. }) => "header_too_large",
            BundleReject::Archive(ArchiveError::BadHeader { .. }) => "damaged",
            BundleReject::Archive(ArchiveError::Read(_)) => "damaged",
            BundleReject::Open { .. } => "unreadable",
            BundleReject::NotAFile { .. } => "not_a_file",
        }
    }

    /// Did the bundle end early (a copy perhaps still in progress)?
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            BundleReject::Truncated(_)
                | BundleReject::Layout(BundleError::Missing(_))
                | BundleReject::Archive(ArchiveError::NoEndBlocks | ArchiveError::Truncated)
        )
    }

    /// The reason in our own words: entry names and read errors, which come from the
    /// bundle's bytes, are left out.
    pub fn sentence(&self) -> String {
        match self {
            BundleReject::Layout(BundleError::Path(_)) => {
                "the bundle holds an entry whose path has '/' or '..'; entries are plain names"
                    .into()
            }
            BundleReject::Layout(BundleError::Link(_)) => {
                "the bundle holds a link; links are not allowed".into()
            }
            BundleReject::Layout(BundleError::NotFile(_)) => {
                "the bundle holds an entry that is not a regular file".into()
            }
            BundleReject::Layout(BundleError::Unknown(_)) => "the bundle holds an unknown entry; \
                 only keyring.json, manifest.json, entitlement.json and image are allowed"
                .into(),
            BundleReject::Layout(BundleError::Order { .. }) => "the bundle's entries are out of \
                 order; the order is keyring.json, manifest.json, entitlement.json, image"
                .into(),
            BundleReject::Layout(BundleError::DocTooLarge { size, .. }) => {
                format!("a document entry of the bundle is {size} bytes; at most 1 MiB is allowed")
            }
            BundleReject::Layout(e @ BundleError::Missing(_)) => e.to_string(),
            BundleReject::Truncated(_) => "the bundle is truncated or damaged".into(),
            BundleReject::Archive(ArchiveError::Read(_)) => {
                "the bundle cannot be decompressed or read (truncated or damaged)".into()
            }
            BundleReject::Archive(e) => e.to_string(),
            BundleReject::BadDocument { name, .. } => {
                format!("the bundle's {name} is not a signed document (a DSSE envelope)")
            }
            BundleReject::Open { .. } => "the bundle cannot be read".into(),
            BundleReject::NotAFile { what, .. } => format!("the bundle is {what}, not a file"),
        }
    }

    /// A read error inside the archive: truncated when the stream ended early, damaged
    /// otherwise (a corrupt gzip stream is known bad: no more bytes will mend it).
    pub fn from_read(e: std::io::Error) -> BundleReject {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            BundleReject::Truncated(e.to_string())
        } else {
            BundleReject::Archive(ArchiveError::Read(e))
        }
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
/// per `when`. Whatever goes wrong once the inactive slot was taken, its bytes are
/// discarded and the phase goes back to idle. The bundle's entitlement is stored (and
/// raises the time floor) only once the whole bundle was accepted.
pub fn apply(agent: &mut Agent, reader: &mut dyn Read, when: When) -> Result<Done, AgentError> {
    let mut taken: Option<(Slot, Release)> = None;
    let mut seen: Option<Release> = None;
    let staged = read_and_stage(agent, reader, &mut taken, &mut seen)
        .and_then(|(slot, env, release)| agent.finish_write(slot, &env).map(|()| (slot, release)))
        .and_then(|staged| {
            agent.trust.commit_staged()?;
            Ok(staged)
        });
    agent.trust.discard_staged();
    match staged {
        Ok((slot, release)) => {
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
        Err(e) => {
            let release = taken.as_ref().map(|(_, r)| r.clone()).or(seen);
            if let Some((slot, release)) = taken {
                if agent.state.phase == crate::state::Phase::Downloading {
                    agent.abort_write(slot, &release, &e);
                }
            }
            receipt_for_refusal(agent, release.as_ref(), &e);
            Err(e)
        }
    }
}

/// A refused bundle leaves a receipt (a rollback during its trial wrote its own).
fn receipt_for_refusal(agent: &mut Agent, release: Option<&Release>, e: &AgentError) {
    if matches!(e, AgentError::RolledBack { .. }) {
        return;
    }
    let outcome = match e.exit_code() {
        1 => np_common::api::Outcome::Refused,
        _ => np_common::api::Outcome::Failed,
    };
    let from_version = agent.running().ok().map(|r| r.version);
    agent.write_receipt(crate::receipts::ReceiptFacts {
        outcome,
        from_version,
        to_version: release.map(|r| r.version.clone()),
        image_sha256: release.map(|r| r.image.sha256),
        detail: format!("bundle refused: {e}"),
    });
}

/// Reads the archive to its end: documents verified, the image streamed into the
/// inactive slot (`taken` says which, as soon as it is taken), the end-of-archive
/// blocks checked. Returns the slot, the manifest envelope and its release.
fn read_and_stage(
    agent: &mut Agent,
    reader: &mut dyn Read,
    taken: &mut Option<(Slot, Release)>,
    seen: &mut Option<Release>,
) -> Result<(Slot, Envelope, Release), AgentError> {
    let mut decoded = decode(reader)?;
    let mut archive = Archive::new(&mut decoded);
    let mut layout = LayoutCheck::new();
    let mut manifest: Option<(Envelope, Release)> = None;
    while let Some(header) = archive.next_entry().map_err(BundleReject::from)? {
        let kind = match header.kind {
            Kind::File => EntryType::File,
            Kind::Link => EntryType::Link,
            Kind::Other => EntryType::Other,
        };
        let size = header.size;
        let entry = layout
            .next(&header.name, kind, size)
            .map_err(BundleReject::from)?;
        match entry {
            Entry::Keyring => {
                let env = read_doc(&mut archive, size, "keyring.json")?;
                match agent.trust.accept_keyring(&env) {
                    Ok(_) | Err(TrustError::Keyring(KeyringError::VersionRollback { .. })) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Entry::Manifest => {
                let env = read_doc(&mut archive, size, "manifest.json")?;
                let release = agent.trust.verify_release(&env)?;
                *seen = Some(release.clone());
                manifest = Some((env, release));
            }
            Entry::Entitlement => {
                let env = read_doc(&mut archive, size, "entitlement.json")?;
                match agent.trust.stage_entitlement(&env) {
                    Ok(_) | Err(TrustError::Doc(DocError::Replay { .. })) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Entry::Image => {
                let Some((_, release)) = &manifest else {
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
                let release = release.clone();
                let slot = agent.write_image_unfinished(&release, &mut archive)?;
                *taken = Some((slot, release));
            }
        }
    }
    layout.finish().map_err(BundleReject::from)?;
    match (taken.clone(), manifest) {
        (Some((slot, _)), Some((env, release))) => Ok((slot, env, release)),
        _ => Err(BundleReject::from(BundleError::Missing("image")).into()),
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
