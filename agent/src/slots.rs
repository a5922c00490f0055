//! The two firmware slots and the one writer every image goes through (bundle, download,
//! provision): it hashes each chunk with `ImageVerifier` before a writer thread puts it on
//! disk, so reading, hashing and writing overlap, and nothing past the manifest's size is
//! ever written.
//!
//! A slot's image is either `slots/<slot>/image` in the state folder (the default) or a
//! target named in `[slots]`: a block device (a root partition) or a regular file standing
//! for one. A target is never created, truncated or grown: the image goes in from byte 0,
//! an image larger than the target is refused before a byte is written, and the bytes past
//! the image are left as they are. The manifest always stays in
//! `slots/<slot>/manifest.json`.
//!
//! Architecture Invariant: a slot is valid only while its `manifest.json` exists, and the
//! manifest is written only after the image's size and SHA-256 matched and it was fsynced.

use crate::state::Slot;
use np_common::{Envelope, ImageError, ImageVerifier, Sha256Digest};
use np_fsutil as fsutil;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Chunk size of every image copy (64 KiB measured fastest for sha2 here).
pub const CHUNK: usize = 64 * 1024;
const QUEUE: usize = 32;
/// Every this many bytes the writer starts the kernel's writeback of what it wrote, so
/// that the disk works while the next bytes are hashed, and the final fsync waits only
/// for the tail (instead of for the whole image).
const WRITEBACK_STEP: u64 = 8 << 20;

/// Why an image could not be written into a slot.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("slot {slot} ({path}) holds {capacity} bytes but the image is {image} bytes; give the slot a larger partition")]
    TooSmall {
        slot: Slot,
        path: PathBuf,
        image: u64,
        capacity: u64,
    },
    #[error(
        "slots a ({a}) and b ({b}) are the same device; name two partitions in [slots] a and b"
    )]
    SameTarget { a: PathBuf, b: PathBuf },
}

/// The slots folder of a state folder, and where each slot's image goes.
#[derive(Debug, Clone)]
pub struct Slots {
    root: PathBuf,
    /// `[slots] a, b`: block devices or regular files of a fixed size.
    targets: Option<[PathBuf; 2]>,
}

impl Slots {
    /// The slots of `state_dir`, images as files in it.
    pub fn new(state_dir: &Path) -> Slots {
        Slots {
            root: state_dir.join("slots"),
            targets: None,
        }
    }

    /// The slots a config names.
    pub fn from_config(cfg: &crate::config::Config) -> Slots {
        let mut s = Slots::new(&cfg.state_dir);
        if let crate::config::SlotPaths::Devices { a, b } = &cfg.slots {
            s.targets = Some([a.clone(), b.clone()]);
        }
        s
    }

    /// Does the slot's image go into a fixed target (a device) rather than a state file?
    pub fn is_target(&self, _slot: Slot) -> bool {
        self.targets.is_some()
    }

    /// Bytes the slot can hold (`None`: a file in the state folder, no limit). A target
    /// that cannot be opened is an error naming it.
    pub fn capacity(&self, slot: Slot) -> Result<Option<u64>, SlotError> {
        if !self.is_target(slot) {
            return Ok(None);
        }
        let path = self.image(slot);
        let mut f = open_target(&path)?;
        Ok(Some(target_len(&mut f, &path)?))
    }

    /// Refuses an image of `size` bytes that the slot cannot hold, before anything is
    /// written or marked.
    pub fn check_fits(&self, slot: Slot, size: u64) -> Result<(), SlotError> {
        match self.capacity(slot)? {
            Some(capacity) if capacity < size => Err(SlotError::TooSmall {
                slot,
                path: self.image(slot),
                image: size,
                capacity,
            }),
            _ => Ok(()),
        }
    }

    /// Refuses targets that are one device under two names (a symlink such as
    /// `/dev/disk/by-partlabel/...` and the device it points to): writing one slot would
    /// overwrite the other, running one.
    pub fn check_distinct(&self) -> Result<(), SlotError> {
        use std::os::unix::fs::MetadataExt as _;
        let Some([a, b]) = &self.targets else {
            return Ok(());
        };
        let id = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| {
                    if m.rdev() != 0 {
                        (m.rdev(), 0)
                    } else {
                        (m.dev(), m.ino())
                    }
                })
                .map_err(|source| SlotError::Io {
                    path: p.to_owned(),
                    source,
                })
        };
        if id(a)? == id(b)? {
            return Err(SlotError::SameTarget {
                a: a.clone(),
                b: b.clone(),
            });
        }
        Ok(())
    }

    /// A writer into the slot from byte `offset` (the bytes before it are re-hashed).
    pub fn writer(
        &self,
        slot: Slot,
        size: u64,
        sha256: Sha256Digest,
        offset: u64,
    ) -> Result<SlotWriter, SlotError> {
        let path = self.image(slot);
        if self.is_target(slot) {
            self.check_distinct()?;
            self.check_fits(slot, size)?;
            let file = open_target(&path)?;
            SlotWriter::start(path, file, size, sha256, offset, false)
        } else {
            SlotWriter::resume(&path, size, sha256, offset)
        }
    }

    /// Where a resumed write into the slot starts: what the slot file holds, or for a
    /// target (whose length says nothing) the bytes recorded as durable.
    pub fn resume_offset(&self, slot: Slot, recorded: u64, size: u64) -> u64 {
        if self.is_target(slot) {
            return recorded.min(size);
        }
        std::fs::metadata(self.image(slot))
            .map(|m| m.len())
            .unwrap_or(0)
            .min(size)
    }

    /// `slots/<slot>/`.
    pub fn dir(&self, slot: Slot) -> PathBuf {
        self.root.join(slot.as_str())
    }

    /// Where the slot's image goes: its target, or `slots/<slot>/image`.
    pub fn image(&self, slot: Slot) -> PathBuf {
        match (&self.targets, slot) {
            (Some([a, _]), Slot::A) => a.clone(),
            (Some([_, b]), Slot::B) => b.clone(),
            (None, _) => self.dir(slot).join("image"),
        }
    }

    /// `slots/<slot>/manifest.json`.
    pub fn manifest_path(&self, slot: Slot) -> PathBuf {
        self.dir(slot).join("manifest.json")
    }

    /// The slot's manifest envelope, or `None` when the slot is invalid.
    pub fn manifest(&self, slot: Slot) -> Result<Option<Envelope>, SlotError> {
        let path = self.manifest_path(slot);
        match std::fs::read(&path) {
            Ok(b) => Envelope::parse(&b).map(Some).map_err(|e| SlotError::Io {
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SlotError::Io { path, source }),
        }
    }

    /// The release a valid slot holds, from the manifest that was verified before the
    /// slot was made valid (the slot folder is the agent's alone). `None`: invalid slot.
    pub fn release(&self, slot: Slot) -> Result<Option<np_common::docs::Release>, SlotError> {
        let Some(env) = self.manifest(slot)? else {
            return Ok(None);
        };
        let path = self.manifest_path(slot);
        let damaged = |m: String| SlotError::Io {
            path: path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, m),
        };
        let payload = env.payload_bytes().map_err(|e| damaged(e.to_string()))?;
        serde_json::from_slice(&payload)
            .map(Some)
            .map_err(|e| damaged(e.to_string()))
    }

    /// Marks a slot invalid (removes its manifest, durably) before anything writes into it.
    pub fn mark_invalid(&self, slot: Slot) -> Result<(), SlotError> {
        let path = self.manifest_path(slot);
        fsutil::create_dir_all(&self.dir(slot), fsutil::PRIVATE_DIR).map_err(|source| {
            SlotError::Io {
                path: self.dir(slot),
                source,
            }
        })?;
        fsutil::remove_durable(&path).map_err(|source| SlotError::Io { path, source })
    }

    /// Makes a slot valid: writes its manifest once its image is complete and verified.
    pub fn mark_valid(&self, slot: Slot, manifest: &Envelope) -> Result<(), SlotError> {
        let path = self.manifest_path(slot);
        fsutil::write_atomic(&path, manifest.to_json_pretty().as_bytes(), fsutil::PRIVATE)
            .map_err(|source| SlotError::Io { path, source })
    }

    /// Drops a failed image's bytes (the slot stays invalid); a target is left as it is.
    pub fn discard_image(&self, slot: Slot) {
        if !self.is_target(slot) {
            let _ = fsutil::remove_durable(&self.image(slot));
        }
    }
}

/// Opens a slot target for writing: it must exist (a partition is never created).
fn open_target(path: &Path) -> Result<File, SlotError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| SlotError::Io {
            path: path.to_owned(),
            source,
        })
}

/// The size of a block device or regular file (a block device's metadata says 0).
fn target_len(f: &mut File, path: &Path) -> Result<u64, SlotError> {
    let io_err = |source| SlotError::Io {
        path: path.to_owned(),
        source,
    };
    let len = f.seek(SeekFrom::End(0)).map_err(io_err)?;
    f.seek(SeekFrom::Start(0)).map_err(io_err)?;
    Ok(len)
}

/// Streams an image into a slot file, hashing as it goes.
pub struct SlotWriter {
    path: PathBuf,
    verifier: ImageVerifier,
    tx: Option<SyncSender<Vec<u8>>>,
    /// Buffers the writer thread is done with, to be filled again (no copy per chunk).
    spare: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<io::Result<()>>>,
}

impl SlotWriter {
    /// Starts writing `path` from byte 0.
    pub fn create(path: &Path, size: u64, sha256: Sha256Digest) -> Result<SlotWriter, SlotError> {
        Self::resume(path, size, sha256, 0)
    }

    /// Continues writing `path` after its first `offset` bytes, which are re-hashed first
    /// (a resume after a cut connection or a restart). Bytes past `offset` are dropped.
    pub fn resume(
        path: &Path,
        size: u64,
        sha256: Sha256Digest,
        offset: u64,
    ) -> Result<SlotWriter, SlotError> {
        // From byte 0 the file is created fresh (whatever was there, a file or a link,
        // is removed, never written through); a resume reopens only our own regular file.
        let file = if offset == 0 {
            fsutil::remove_durable(path)
                .and_then(|()| fsutil::create_new(path, fsutil::PRIVATE, None))
        } else {
            fsutil::open_own_rw(path)
        }
        .map_err(|source| SlotError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::start(path.to_owned(), file, size, sha256, offset, true)
    }

    /// Re-hashes the first `offset` bytes of `file`, then starts the writer thread at
    /// `offset`; `truncate`: drop what the file holds past `offset` (a slot file, not a
    /// device).
    fn start(
        path: PathBuf,
        mut file: File,
        size: u64,
        sha256: Sha256Digest,
        offset: u64,
        truncate: bool,
    ) -> Result<SlotWriter, SlotError> {
        let io_err = |source| SlotError::Io {
            path: path.clone(),
            source,
        };
        let mut verifier = ImageVerifier::new(size, sha256);
        if offset > 0 {
            let mut buf = vec![0u8; CHUNK];
            let mut left = offset;
            while left > 0 {
                let want = (left.min(CHUNK as u64)) as usize;
                file.read_exact(&mut buf[..want]).map_err(io_err)?;
                verifier.update(&buf[..want])?;
                left -= want as u64;
            }
        }
        if truncate {
            file.set_len(offset).map_err(io_err)?;
        }
        file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let (spare_tx, spare) = sync_channel::<Vec<u8>>(QUEUE + 2);
        let worker = std::thread::spawn(move || -> io::Result<()> {
            let mut file = file;
            let (mut pos, mut started) = (offset, offset);
            for chunk in rx {
                file.write_all(&chunk)?;
                pos += chunk.len() as u64;
                // Hand the buffer back for reuse; if nobody wants it, it is dropped.
                let _ = spare_tx.try_send(chunk);
                if pos - started >= WRITEBACK_STEP {
                    start_writeback(&file, started, pos - started);
                    started = pos;
                }
            }
            file.sync_all()
        });
        Ok(SlotWriter {
            path,
            verifier,
            tx: Some(tx),
            spare,
            worker: Some(worker),
        })
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.verifier.seen()
    }

    /// Hashes `chunk` and queues it for writing; refuses it whole if it would pass the size.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), SlotError> {
        self.verifier.update(chunk)?;
        let sent = self.tx.as_ref().map(|tx| tx.send(chunk.to_vec()).is_ok());
        if sent != Some(true) {
            return Err(self.worker_error());
        }
        Ok(())
    }

    /// A buffer of [`CHUNK`] bytes to read the next chunk into: one the writer thread
    /// finished with when there is one, so that steady streaming allocates nothing.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut buf = self.spare.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        buf
    }

    /// Like [`SlotWriter::write`], for a buffer from [`SlotWriter::buffer`] holding the
    /// chunk: it is handed to the writer thread as it is, not copied.
    pub fn write_owned(&mut self, chunk: Vec<u8>) -> Result<(), SlotError> {
        self.verifier.update(&chunk)?;
        let sent = self.tx.as_ref().map(|tx| tx.send(chunk).is_ok());
        if sent != Some(true) {
            return Err(self.worker_error());
        }
        Ok(())
    }

    fn worker_error(&mut self) -> SlotError {
        self.tx = None;
        let source = match self.worker.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the slot writer stopped"),
        };
        SlotError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Flushes and fsyncs the file, then checks size and SHA-256.
    pub fn finish(mut self) -> Result<Sha256Digest, SlotError> {
        self.tx = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(source))) => {
                return Err(SlotError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
            _ => return Err(self.worker_error()),
        }
        Ok(self.verifier.clone().finish()?)
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` to disk without waiting
/// (Linux: `POSIX_FADV_DONTNEED` starts writeback of dirty pages, then drops the clean
/// ones: the slot is not read back soon). Only advice: `sync_all` in the end is what
/// makes the image durable, so a failure here changes nothing.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

impl Drop for SlotWriter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_verifies_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("image");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sha = Sha256Digest::of(&data);
        let mut w = SlotWriter::create(&p, data.len() as u64, sha).unwrap();
        w.write(&data[..70_000]).unwrap();
        drop(w);
        let mut w = SlotWriter::resume(&p, data.len() as u64, sha, 70_000).unwrap();
        w.write(&data[70_000..]).unwrap();
        assert_eq!(w.finish().unwrap(), sha);
        assert_eq!(std::fs::read(&p).unwrap(), data);
    }

    #[test]
    fn a_slot_file_is_created_fresh_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("root-only");
        std::fs::write(&victim, b"root only secret").unwrap();
        let p = dir.path().join("image");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let mut w = SlotWriter::create(&p, 4, Sha256Digest::of(b"abcd")).unwrap();
        w.write(b"abcd").unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"root only secret");
        assert!(!std::fs::symlink_metadata(&p).unwrap().is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"abcd");
        // A resume refuses a link or a second name in the slot's place.
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        assert!(matches!(
            SlotWriter::resume(&p, 16, Sha256Digest::of(b"x"), 4),
            Err(SlotError::Io { .. })
        ));
        std::fs::remove_file(&p).unwrap();
        std::fs::hard_link(&victim, &p).unwrap();
        assert!(matches!(
            SlotWriter::resume(&p, 16, Sha256Digest::of(b"x"), 4),
            Err(SlotError::Io { .. })
        ));
        assert_eq!(std::fs::read(&victim).unwrap(), b"root only secret");
    }

    #[test]
    fn refuses_past_the_size_and_a_wrong_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("image");
        let mut w = SlotWriter::create(&p, 4, Sha256Digest::of(b"abcd")).unwrap();
        assert!(matches!(
            w.write(b"abcde"),
            Err(SlotError::Image(ImageError::TooLong { expected: 4 }))
        ));
        w.write(b"abce").unwrap();
        assert!(matches!(
            w.finish(),
            Err(SlotError::Image(ImageError::HashMismatch { .. }))
        ));
    }

    fn target_slots(dir: &Path, len_a: usize, len_b: usize) -> Slots {
        let (a, b) = (dir.join("part-a"), dir.join("part-b"));
        std::fs::write(&a, vec![0xEEu8; len_a]).unwrap();
        std::fs::write(&b, vec![0xEEu8; len_b]).unwrap();
        let mut s = Slots::new(&dir.join("state"));
        s.targets = Some([a, b]);
        s
    }

    #[test]
    fn a_target_gets_the_image_from_byte_0_and_keeps_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let slots = target_slots(dir.path(), 300_000, 100);
        assert_eq!(slots.image(Slot::A), dir.path().join("part-a"));
        assert_eq!(slots.capacity(Slot::A).unwrap(), Some(300_000));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let sha = Sha256Digest::of(&data);
        let mut w = slots.writer(Slot::A, data.len() as u64, sha, 0).unwrap();
        w.write(&data[..50_000]).unwrap();
        drop(w);
        // A resume at the recorded offset re-hashes what is there and goes on.
        assert_eq!(
            slots.resume_offset(Slot::A, 50_000, data.len() as u64),
            50_000
        );
        let mut w = slots
            .writer(Slot::A, data.len() as u64, sha, 50_000)
            .unwrap();
        w.write(&data[50_000..]).unwrap();
        assert_eq!(w.finish().unwrap(), sha);
        let part = std::fs::read(dir.path().join("part-a")).unwrap();
        assert_eq!(part.len(), 300_000, "the target was truncated or grown");
        assert_eq!(&part[..200_000], &data[..]);
        assert!(
            part[200_000..].iter().all(|b| *b == 0xEE),
            "bytes past the image changed"
        );
        // Discarding leaves a partition alone.
        slots.discard_image(Slot::A);
        assert!(dir.path().join("part-a").exists());
        // A slot file's resume offset is its length.
        let files = Slots::new(dir.path());
        assert_eq!(files.resume_offset(Slot::B, 99, 10), 0);
    }

    #[test]
    fn two_names_of_one_target_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut slots = target_slots(dir.path(), 1000, 1000);
        let link = dir.path().join("link-to-a");
        std::os::unix::fs::symlink(dir.path().join("part-a"), &link).unwrap();
        slots.targets = Some([dir.path().join("part-a"), link.clone()]);
        let sha = Sha256Digest::of(b"x");
        match slots.writer(Slot::B, 1, sha, 0) {
            Err(SlotError::SameTarget { a, b }) => {
                assert_eq!(a, dir.path().join("part-a"));
                assert_eq!(b, link);
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("wrote slot b over slot a"),
        }
        assert_eq!(
            std::fs::read(dir.path().join("part-a")).unwrap(),
            vec![0xEE; 1000]
        );
    }

    #[test]
    fn an_image_larger_than_the_target_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let slots = target_slots(dir.path(), 300_000, 100);
        let sha = Sha256Digest::of(b"x");
        match slots.writer(Slot::B, 101, sha, 0) {
            Err(SlotError::TooSmall {
                slot: Slot::B,
                image: 101,
                capacity: 100,
                ref path,
            }) => assert_eq!(path, &dir.path().join("part-b")),
            other => panic!("{:?}", other.err()),
        }
        let e = slots.check_fits(Slot::B, 101).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "slot b ({}) holds 100 bytes but the image is 101 bytes; give the slot a larger partition",
                dir.path().join("part-b").display()
            )
        );
        assert_eq!(
            std::fs::read(dir.path().join("part-b")).unwrap(),
            vec![0xEE; 100]
        );
        slots.check_fits(Slot::B, 100).unwrap();
        // A target that does not exist is never created.
        std::fs::remove_file(dir.path().join("part-b")).unwrap();
        assert!(matches!(
            slots.writer(Slot::B, 1, sha, 0),
            Err(SlotError::Io { .. })
        ));
        assert!(!dir.path().join("part-b").exists());
    }
}
