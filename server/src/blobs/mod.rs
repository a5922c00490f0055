//! The content-addressed blob store: firmware images on disk under `DATA/blobs/<sha256>`.
//!
//! An upload streams into a temporary file under `DATA/blobs/tmp/`, hashing as it writes and
//! failing the moment it passes the size limit; the file is fsynced, renamed to its digest
//! and the folder fsynced. An image is never held in memory. Reading opens the file; the
//! caller seeks to the range it serves.

pub mod bundle;
pub mod bundle_tar;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use np_common::Sha256Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{Receiver, Sender};

/// The default largest blob: 4 GiB.
pub const DEFAULT_MAX_BLOB_SIZE: u64 = 4 << 30;

/// How much of an upload is buffered before it is handed to the file.
const WRITE_BUFFER: usize = 1 << 20;

/// How many received chunks may wait for the writer.
const CHANNEL_CHUNKS: usize = 4;

/// An upload's file in `tmp/` untouched this long is a leftover (of a server killed
/// during the upload): an upload in progress writes to it all the time.
pub const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(3600);

/// How often a running server looks for such leftovers.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// What an upload stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobInfo {
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("could not {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload was cut off: {reason}")]
    Body { reason: String },
    #[error("no blob {0} is stored")]
    NotFound(Sha256Digest),
    /// The blob folder is missing (a configured one is never recreated), or refuses writes.
    #[error("{0}")]
    Unavailable(String),
}

impl BlobError {
    /// Whether the folder itself is the cause (gone, read-only, immutable, full): the
    /// answer is 503 `blobs_unavailable`, as `/healthz` says, not a server fault.
    pub fn is_folder_unavailable(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            BlobError::Unavailable(_) => true,
            BlobError::Io { source, .. } => matches!(
                source.kind(),
                K::NotFound | K::PermissionDenied | K::ReadOnlyFilesystem | K::StorageFull
            ),
            _ => false,
        }
    }
}

/// The blob folder and its size limit.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
    max_size: u64,
    /// A configured folder (`[blobs] dir`, perhaps a shared mount) must exist; the
    /// default DATA/blobs is made on first use.
    configured: bool,
}

/// Removes a temporary file unless the upload completed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl BlobStore {
    /// The blob store of `data_dir` (`data_dir/blobs`). Uploads left half-done by an
    /// earlier run are removed now (best effort); folders are created on first upload.
    pub fn new(data_dir: &Path, max_size: u64) -> BlobStore {
        let root = data_dir.join("blobs");
        let tmp = root.join("tmp");
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        BlobStore {
            root,
            tmp,
            max_size,
            configured: false,
        }
    }

    /// The blob store in the folder `root` (`[blobs] dir`), which replicas may share: of
    /// the uploads left half-done there, only those untouched for an hour are removed (a
    /// younger one may be another replica's upload in progress).
    pub fn at(root: &Path, max_size: u64) -> BlobStore {
        let store = BlobStore {
            root: root.to_path_buf(),
            tmp: root.join("tmp"),
            max_size,
            configured: true,
        };
        store.sweep_stale_uploads(STALE_UPLOAD);
        store
    }

    /// Removes the files in `tmp/` untouched for longer than `stale` (best effort) and
    /// answers how many went. An upload in progress writes its file all the time; a
    /// request that ends removes its own file (a drop guard), so what is left is an
    /// upload of a server that was killed (`kill -9`, a power cut), perhaps another
    /// replica's, whose file nobody else would remove.
    pub fn sweep_stale_uploads(&self, stale: std::time::Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.tmp) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > stale);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                folder = %self.tmp.display(),
                "removed uploads left half-done by a server that stopped during them"
            );
        }
        removed
    }

    /// Sweeps `tmp/` every `every` while the server runs (see
    /// [`BlobStore::sweep_stale_uploads`]): the leftovers of a replica killed during an
    /// upload go within about an hour, without waiting for a restart.
    pub async fn sweep_while_serving(self, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let store = self.clone();
            let _ =
                tokio::task::spawn_blocking(move || store.sweep_stale_uploads(STALE_UPLOAD)).await;
        }
    }

    /// Whether uploads can land here (for `/healthz`): the folder exists (a configured
    /// one is never made here: a missing shared mount must show) and a file can be made
    /// and removed in its `tmp/`. Answers the sentence that names the folder.
    pub async fn check_writable(&self) -> Result<(), String> {
        let failed = |what: &str, e: std::io::Error| {
            format!("the blob folder {} {what}: {e}", self.root.display())
        };
        self.prepare().await.map_err(|e| e.to_string())?;
        let mut name = [0u8; 8];
        getrandom::getrandom(&mut name)
            .map_err(|e| failed("is not writable", std::io::Error::other(e.to_string())))?;
        // As an upload does: a file made in tmp/, then renamed into the folder itself.
        let file = format!(".healthz-{}.probe", hex::encode(name));
        let probe = self.tmp.join(&file);
        tokio::fs::write(&probe, b"")
            .await
            .map_err(|e| failed("is not writable", e))?;
        let placed = self.root.join(&file);
        let renamed = tokio::fs::rename(&probe, &placed).await;
        let _ = tokio::fs::remove_file(&probe).await;
        let _ = tokio::fs::remove_file(&placed).await;
        renamed.map_err(|e| failed("does not take files renamed into it", e))
    }

    /// Makes sure `tmp/` exists: a configured folder must exist already (a missing shared
    /// mount must show, and an image must never land on the local disk under the mount
    /// point); the default `DATA/blobs` is made on first use.
    async fn prepare(&self) -> Result<(), BlobError> {
        if self.configured {
            match tokio::fs::metadata(&self.root).await {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(BlobError::Unavailable(format!(
                        "the blob folder {} is not a folder",
                        self.root.display()
                    )))
                }
                Err(e) => {
                    return Err(BlobError::Unavailable(format!(
                        "the blob folder {} cannot be read: {e}",
                        self.root.display()
                    )))
                }
            }
        }
        tokio::fs::create_dir_all(&self.tmp).await.map_err(|e| {
            BlobError::Unavailable(format!(
                "the blob folder {} is not writable: {e}",
                self.root.display()
            ))
        })
    }

    /// The largest blob accepted.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Where the blob with this digest lives.
    pub fn path_of(&self, sha256: &Sha256Digest) -> PathBuf {
        self.root.join(sha256.to_hex())
    }

    /// The size of a stored blob, or `None` when there is none.
    pub async fn size_of(&self, sha256: &Sha256Digest) -> Result<Option<u64>, BlobError> {
        let path = self.path_of(sha256);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Opens a stored blob for reading: the file and its size.
    pub async fn open_blob(
        &self,
        sha256: &Sha256Digest,
    ) -> Result<(tokio::fs::File, u64), BlobError> {
        let path = self.path_of(sha256);
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A configured folder that is gone (an unmounted share) is the folder's
                // fault, as for an upload, not one missing blob.
                if self.configured
                    && !tokio::fs::metadata(&self.root)
                        .await
                        .is_ok_and(|m| m.is_dir())
                {
                    return Err(BlobError::Unavailable(format!(
                        "the blob folder {} is missing",
                        self.root.display()
                    )));
                }
                return Err(BlobError::NotFound(*sha256));
            }
            Err(e) => return Err(io("open", &path)(e)),
        };
        let size = file.metadata().await.map_err(io("read", &path))?.len();
        Ok((file, size))
    }

    /// Streams `body` into the store: hashes while writing, refuses more than the limit,
    /// fsyncs, renames the file to its digest and fsyncs the folder.
    ///
    /// The network side only counts bytes and hands each chunk to a blocking writer task
    /// (hash, write, fsync) through a bounded channel, so receiving, hashing and writing
    /// overlap and at most `CHANNEL_CHUNKS` chunks are in flight.
    pub async fn put<S, E>(&self, body: S) -> Result<BlobInfo, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut name = [0u8; 16];
        getrandom::getrandom(&mut name).map_err(|e| BlobError::Io {
            op: "draw a name for",
            path: self.tmp.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        self.prepare().await?;
        let tmp_path = self.tmp.join(format!("{}.part", hex::encode(name)));
        let mut guard = TempGuard(Some(tmp_path.clone()));
        let file = std::fs::File::create(&tmp_path).map_err(io("create", &tmp_path))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let abort = Arc::new(AtomicBool::new(false));
        let worker = {
            let abort = abort.clone();
            let path = tmp_path.clone();
            tokio::task::spawn_blocking(move || write_blob(file, rx, &abort, &path))
        };
        let received = self.receive(body, tx, &abort).await;
        let written = worker.await.map_err(|e| BlobError::Io {
            op: "write",
            path: tmp_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let size = received?;
        let (sha256, written_size) = written?;
        debug_assert_eq!(size, written_size);
        let dest = self.path_of(&sha256);
        tokio::fs::rename(&tmp_path, &dest)
            .await
            .map_err(io("rename into place", &dest))?;
        guard.0 = None;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&root)?.sync_all())
            .await
            .map_err(|e| BlobError::Io {
                op: "fsync",
                path: self.root.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(io("fsync", &self.root))?;
        Ok(BlobInfo {
            sha256,
            size: written_size,
        })
    }

    /// Counts the body's bytes against the limit and passes its chunks to the writer.
    async fn receive<S, E>(
        &self,
        body: S,
        tx: Sender<Bytes>,
        abort: &AtomicBool,
    ) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let result = self.count_and_pass(body, &tx).await;
        if result.is_err() {
            // Set before `tx` drops, so the writer skips the fsync of a dead upload.
            abort.store(true, Ordering::SeqCst);
        }
        result
    }

    async fn count_and_pass<S, E>(&self, body: S, tx: &Sender<Bytes>) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body {
                reason: e.to_string(),
            })?;
            size += chunk.len() as u64;
            if size > self.max_size {
                return Err(BlobError::TooLarge {
                    limit: self.max_size,
                });
            }
            if chunk.is_empty() {
                continue;
            }
            if tx.send(chunk).await.is_err() {
                // The writer stopped: its error is reported by the caller.
                break;
            }
        }
        Ok(size)
    }
}

/// The blocking half of an upload: hashes and writes chunks until the channel closes,
/// then fsyncs (unless the upload was aborted). Returns the digest and the size.
fn write_blob(
    file: std::fs::File,
    mut rx: Receiver<Bytes>,
    abort: &AtomicBool,
    path: &Path,
) -> Result<(Sha256Digest, u64), BlobError> {
    let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        hasher.update(&chunk);
        out.write_all(&chunk).map_err(io("write", path))?;
        size += chunk.len() as u64;
    }
    if abort.load(Ordering::SeqCst) {
        return Ok((Sha256Digest::from_bytes(hasher.finalize().into()), size));
    }
    let file = out
        .into_inner()
        .map_err(|e| io("write", path)(e.into_error()))?;
    file.sync_all().map_err(io("fsync", path))?;
    Ok((Sha256Digest::from_bytes(hasher.finalize().into()), size))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

    fn chunks(parts: Vec<&'static [u8]>) -> impl Stream<Item = Result<Bytes, String>> {
        futures_util::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
    }

    fn tmp_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("blobs/tmp")).unwrap().count()
    }

    #[tokio::test]
    async fn put_hashes_stores_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path(), 1 << 20);
        let info = store
            .put(chunks(vec![b"hello ", b"", b"world"]))
            .await
            .unwrap();
        assert_eq!(info.size, 11);
        assert_eq!(info.sha256, Sha256Digest::of(b"hello world"));
        assert_eq!(store.size_of(&info.sha256).await.unwrap(), Some(11));
        let (mut f, size) = store.open_blob(&info.sha256).await.unwrap();
        assert_eq!(size, 11);
        f.seek(std::io::SeekFrom::Start(6)).await.unwrap();
        let mut tail = String::new();
        f.read_to_string(&mut tail).await.unwrap();
        assert_eq!(tail, "world");
        assert_eq!(tmp_files(dir.path()), 0);
        // The same bytes again: same digest, still one file.
        let again = store.put(chunks(vec![b"hello world"])).await.unwrap();
        assert_eq!(again, info);
    }

    #[tokio::test]
    async fn too_large_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path(), 10);
        let err = store
            .put(chunks(vec![b"12345", b"678901"]))
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 10 }), "{err:?}");
        assert_eq!(tmp_files(dir.path()), 0);
        // Exactly at the limit is fine.
        let ok = store.put(chunks(vec![b"12345", b"67890"])).await.unwrap();
        assert_eq!(ok.size, 10);
    }

    #[tokio::test]
    async fn a_broken_body_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path(), 100);
        let body = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err("connection reset".to_owned()),
        ]);
        let err = store.put(body).await.unwrap_err();
        assert!(
            matches!(&err, BlobError::Body { reason } if reason == "connection reset"),
            "{err:?}"
        );
        assert_eq!(tmp_files(dir.path()), 0);
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs")).unwrap().count(),
            1
        );
    }

    #[tokio::test]
    async fn an_upload_whose_request_ends_mid_stream_leaves_nothing() {
        // The request's future is dropped (the connection went) while the body still
        // promises more: no error comes from the body, the drop guard removes the file.
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path(), 1 << 20);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(1);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let upload = tokio::spawn({
            let store = store.clone();
            async move { store.put(body).await }
        });
        tx.send(Ok(Bytes::from_static(b"half an image")))
            .await
            .unwrap();
        // The chunk was taken: the next send waits for room, i.e. for the upload to
        // have read the first one, so its file exists.
        tx.send(Ok(Bytes::from_static(b", more"))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b", more"))).await.unwrap();
        assert_eq!(tmp_files(dir.path()), 1, "the upload's file is there");
        upload.abort();
        assert!(upload.await.unwrap_err().is_cancelled());
        assert_eq!(tmp_files(dir.path()), 0);
        drop(tx);
    }

    #[tokio::test]
    async fn the_sweep_removes_only_leftovers_older_than_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let store = BlobStore::at(&root, 100);
        let old = root.join("tmp/killed.part");
        std::fs::write(&old, b"130 MB, once").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let young = root.join("tmp/in-progress.part");
        std::fs::write(&young, b"being written").unwrap();
        // A running server (no restart) sweeps: the old one goes, the young one stays.
        assert_eq!(store.sweep_stale_uploads(STALE_UPLOAD), 1);
        assert!(!old.exists() && young.exists());
    }

    #[tokio::test]
    async fn missing_blob_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path(), 100);
        let d = Sha256Digest::of(b"nothing");
        assert_eq!(store.size_of(&d).await.unwrap(), None);
        assert!(matches!(
            store.open_blob(&d).await,
            Err(BlobError::NotFound(x)) if x == d
        ));
    }

    #[tokio::test]
    async fn open_clears_leftover_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path(), 100);
        store.put(chunks(vec![b"x"])).await.unwrap();
        std::fs::write(dir.path().join("blobs/tmp/old.part"), b"half").unwrap();
        BlobStore::new(dir.path(), 100);
        assert_eq!(tmp_files(dir.path()), 0);
    }

    #[tokio::test]
    async fn a_configured_folder_that_is_gone_is_unavailable_and_never_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        let store = BlobStore::at(&root, 1 << 20);
        let err = store.put(chunks(vec![b"image"])).await.unwrap_err();
        assert!(err.is_folder_unavailable(), "{err}");
        assert!(store.check_writable().await.is_err());
        assert!(!root.exists(), "a configured folder is not recreated");
        std::fs::create_dir(&root).unwrap();
        store.check_writable().await.unwrap();
        // The probe leaves nothing behind, in tmp/ or in the folder.
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        store.put(chunks(vec![b"image"])).await.unwrap();
    }

    #[test]
    fn a_folder_that_refuses_writes_is_unavailable_not_a_fault() {
        let refused = |kind| BlobError::Io {
            op: "create",
            path: "x".into(),
            source: std::io::Error::from(kind),
        };
        for kind in [
            std::io::ErrorKind::PermissionDenied,
            std::io::ErrorKind::ReadOnlyFilesystem,
            std::io::ErrorKind::NotFound,
        ] {
            assert!(refused(kind).is_folder_unavailable(), "{kind:?}");
        }
        assert!(!refused(std::io::ErrorKind::InvalidData).is_folder_unavailable());
        assert!(!BlobError::TooLarge { limit: 1 }.is_folder_unavailable());
    }
}
