//! The inbox watched by `np-agent run`, and what lies beside it:
//!
//! - `inbox/`: the only folder the admins' group may write (group-writable, sticky);
//! - `processed/applied/` and `processed/rejected/`: outside the inbox, written by the
//!   agent alone and readable by the admins' group; a rejected bundle gets a
//!   `NAME.reason` file (mode 0640) holding a sentence that says why.
//!
//! A file is taken once its writer closed it (inotify `close_write`, or a rename into
//! the inbox) and it stopped changing; without such an event (no inotify, or a file
//! found at start) once it has not changed for [`Timing::quiet`]. `*.part` files and
//! hidden files are left alone: a copy may be made as `NAME.part` and renamed.
//!
//! What the inbox remembers is bounded whatever the admins' group does: the watcher's
//! events go through a queue of [`EVENT_QUEUE`] (when it is full, events are dropped
//! and the folder is rescanned: every file then waits for [`Timing::quiet`]), and the
//! names seen closed are at most [`MAX_CLOSED`], only names present in the folder,
//! never ignored ones.
//!
//! Entries moved to `processed/` become root's (group: the inbox's group), mode 0640
//! for a file and 0750 for a folder moved aside, so the admins' group can read what it
//! dropped but not write there. Names are shown (logs, `.reason` files) with control
//! characters escaped ([`shown`]).
//!
//! Architecture Invariant: the agent opens an inbox entry once, without following links
//! and without blocking, checks that descriptor with `fstat` (a regular file with one
//! name, or it is moved aside unread), reads the bundle only through it, and checks
//! after moving it that the entry it moved is the one it read.

use crate::error::AgentError;
use np_fsutil as fsutil;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Mode of `inbox/`: group-writable, setgid (files keep the admins' group), sticky (an
/// admin can move or delete only their own files).
pub const INBOX_MODE: u32 = 0o3770;
/// Mode of `processed/` and its two folders: the agent writes, the group reads.
pub const PROCESSED_MODE: u32 = 0o750;
/// Mode of a file moved into `processed/` (when the agent runs as root).
pub const MOVED_FILE_MODE: u32 = 0o640;
/// Mode of a folder moved aside into `processed/rejected/` (when running as root).
pub const MOVED_DIR_MODE: u32 = 0o750;
/// How many watcher events wait for the agent at most; past it they are dropped and
/// the folder is rescanned.
pub const EVENT_QUEUE: usize = 1024;
/// How many names seen closed by their writer the inbox remembers at most.
pub const MAX_CLOSED: usize = 4096;

/// `name` as shown in logs and `.reason` files: control characters (a newline that
/// would forge a log line, terminal escapes) and bytes that are not UTF-8 escaped.
pub fn shown(name: &OsStr) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        escape_into(&mut out, chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A path as shown in logs ([`shown`]).
pub fn shown_path(path: &Path) -> String {
    shown(path.as_os_str())
}

/// `text` with its control characters escaped (for a line of a log or a `.reason` file).
pub fn escape_controls(text: &str) -> String {
    let mut out = String::new();
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// The watcher's side of the bounded event queue: when it is full, the event is
/// dropped and a rescan is asked for.
fn queue_handler(
    tx: SyncSender<notify::Result<notify::Event>>,
    overflow: Arc<AtomicBool>,
) -> impl FnMut(notify::Result<notify::Event>) + Send + 'static {
    move |ev| {
        if tx.try_send(ev).is_err() {
            overflow.store(true, Ordering::Relaxed);
        }
    }
}

/// How long the inbox waits.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A file with no close event is taken once unchanged for this long.
    pub quiet: Duration,
    /// A truncated bundle modified less than this long ago is left in place (a copy
    /// still in progress) and tried again when it changes or gets older.
    pub young: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            quiet: Duration::from_secs(30),
            young: Duration::from_secs(600),
        }
    }
}

/// Size, modification time and inode: what says a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sig {
    len: u64,
    mtime: (i64, i64),
    dev: u64,
    ino: u64,
    regular: bool,
}

impl Sig {
    fn of(st: &rustix::fs::Stat) -> Sig {
        Sig {
            len: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
            dev: st.st_dev,
            ino: st.st_ino,
            regular: FileType::from_raw_mode(st.st_mode) == FileType::RegularFile,
        }
    }

    fn modified(&self) -> SystemTime {
        let secs = Duration::from_secs(self.mtime.0.max(0) as u64)
            + Duration::from_nanos(self.mtime.1.max(0) as u64);
        SystemTime::UNIX_EPOCH + secs
    }

    fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.modified())
            .unwrap_or(Duration::ZERO)
    }
}

/// The inbox, its processed folders, and what it has seen.
pub struct Inbox {
    inbox: PathBuf,
    applied: PathBuf,
    rejected: PathBuf,
    dir: OwnedFd,
    group: Option<u32>,
    timing: Timing,
    _watcher: Option<notify::RecommendedWatcher>,
    events: Option<Receiver<notify::Result<notify::Event>>>,
    overflow: Arc<AtomicBool>,
    closed: HashSet<OsString>,
    seen: HashMap<OsString, Sig>,
    deferred: HashMap<OsString, Sig>,
}

/// An inbox entry the agent opened and checked: read the bundle through `file` only.
pub struct Opened {
    pub file: File,
    name: OsString,
    sig: Sig,
}

impl Opened {
    /// The entry's name in the inbox.
    pub fn name(&self) -> &OsStr {
        &self.name
    }
}

/// What taking an entry gave.
pub enum Taken {
    /// A regular file, open: apply it, then [`Inbox::settle`].
    Bundle(Opened),
    /// Not a regular file with one name: moved to `processed/rejected/` unread.
    Aside(PathBuf),
}

/// Where a bundle ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    Applied(PathBuf),
    Rejected(PathBuf),
    /// Truncated while its file is young: left in the inbox for the rest of the copy.
    Deferred,
}

/// Is this a name the agent leaves alone (hidden files, partial copies)?
fn ignored(name: &OsStr) -> bool {
    let n = name.to_string_lossy();
    n.starts_with('.') || n.ends_with(".part")
}

fn io(what: &str, path: &Path, e: impl Into<std::io::Error>) -> std::io::Error {
    let e: std::io::Error = e.into();
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", shown_path(path)))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Creates (or puts right) `inbox/` and `processed/applied|rejected/` with their modes;
/// the processed folders belong to the agent and get the inbox's group (the admins').
/// Returns the inbox, the two processed folders and that group (when running as root).
pub fn prepare(state_dir: &Path) -> std::io::Result<(PathBuf, PathBuf, PathBuf, Option<u32>)> {
    let inbox = state_dir.join("inbox");
    fsutil::ensure_dir(&inbox, INBOX_MODE, None, None)
        .map_err(|e| io("cannot prepare", &inbox, e))?;
    let st = rustix::fs::stat(&inbox).map_err(|e| io("cannot stat", &inbox, e))?;
    let group = is_root().then_some(st.st_gid);
    let owner = is_root().then_some(0);
    let processed = state_dir.join("processed");
    let (applied, rejected) = (processed.join("applied"), processed.join("rejected"));
    for d in [&processed, &applied, &rejected] {
        fsutil::ensure_dir(d, PROCESSED_MODE, owner, group)
            .map_err(|e| io("cannot prepare", d, e))?;
    }
    Ok((inbox, applied, rejected, group))
}

impl Inbox {
    /// Opens the inbox of `state_dir`, creating it and `processed/applied|rejected` with
    /// their modes (the processed folders get the inbox's group), and starts watching.
    pub fn open(state_dir: &Path, timing: Timing) -> std::io::Result<Inbox> {
        let (inbox, applied, rejected, group) = prepare(state_dir)?;
        let dir = rustix::fs::open(
            &inbox,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("cannot open", &inbox, e))?;
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let handler = queue_handler(tx, overflow.clone());
        let watcher = notify::recommended_watcher(handler).and_then(|mut w| {
            use notify::Watcher as _;
            w.watch(&inbox, notify::RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        let (watcher, events) = match watcher {
            Ok(w) => (Some(w), Some(rx)),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} ({e}); a bundle is taken once it is unchanged for {:?}",
                    shown_path(&inbox),
                    timing.quiet
                );
                (None, None)
            }
        };
        Ok(Inbox {
            inbox,
            applied,
            rejected,
            dir,
            group,
            timing,
            _watcher: watcher,
            events,
            overflow,
            closed: HashSet::new(),
            seen: HashMap::new(),
            deferred: HashMap::new(),
        })
    }

    /// Takes in the watcher's events: which files were closed after writing (or renamed
    /// in), and which changed since.
    fn drain_events(&mut self) {
        use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
        use notify::EventKind;
        let Some(rx) = &self.events else { return };
        let mut rescan = false;
        let mut notes = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            let Ok(ev) = ev else {
                rescan = true;
                continue;
            };
            rescan |= ev.need_rescan();
            let done = match ev.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(true),
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => Some(true),
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_)) => Some(false),
                _ => None,
            };
            let path = match ev.kind {
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => ev.paths.get(1),
                _ => ev.paths.first(),
            };
            if let (Some(done), Some(name)) = (done, path.and_then(|p| p.file_name())) {
                if !ignored(name) {
                    notes.push((name.to_owned(), done));
                }
            }
        }
        for (name, done) in notes {
            if !done {
                self.closed.remove(&name);
            } else if self.closed.len() < MAX_CLOSED || self.closed.contains(&name) {
                self.closed.insert(name);
            } else {
                rescan = true;
            }
        }
        // Events were lost (the queue was full, or the kernel's): what was closed and
        // what changed since is not known, so every file waits until it is quiet.
        if self.overflow.swap(false, Ordering::Relaxed) || rescan {
            tracing::debug!("inbox events were dropped; rescanning the folder");
            self.closed.clear();
        }
    }

    fn lstat(&self, name: &OsStr) -> Option<rustix::fs::Stat> {
        rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()
    }

    /// The names ready to be taken: closed by their writer (or quiet for long enough)
    /// and unchanged since the last poll. Anything but a regular file is ready at once
    /// (it will be moved aside unread).
    pub fn ready(&mut self) -> Vec<OsString> {
        self.drain_events();
        let Ok(rd) = std::fs::read_dir(&self.inbox) else {
            return Vec::new();
        };
        let mut now = HashMap::new();
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name();
            if ignored(&name) {
                continue;
            }
            let Some(st) = self.lstat(&name) else {
                continue;
            };
            let sig = Sig::of(&st);
            if !sig.regular || st.st_nlink != 1 {
                out.push(name);
                continue;
            }
            let stable = self.seen.get(&name) == Some(&sig);
            let young = sig.age() < self.timing.young;
            let waiting = self.deferred.get(&name) == Some(&sig) && young;
            let closed = self.closed.contains(&name);
            if stable && !waiting && (closed || sig.age() >= self.timing.quiet) {
                out.push(name.clone());
            }
            now.insert(name, sig);
        }
        self.seen = now;
        self.deferred.retain(|n, _| self.seen.contains_key(n));
        self.closed.retain(|n| self.seen.contains_key(n));
        out.sort();
        out
    }

    /// Opens `name` once (no link followed, no blocking on a fifo), checks the
    /// descriptor, and either returns it open or moves the entry aside unread.
    pub fn take(&mut self, name: &OsStr) -> std::io::Result<Taken> {
        let path = self.inbox.join(name);
        let Some(st) = self.lstat(name) else {
            return Err(io("cannot stat", &path, std::io::ErrorKind::NotFound));
        };
        let sig = Sig::of(&st);
        if !sig.regular || st.st_nlink != 1 {
            return self.aside(name, kind_of(&st)).map(Taken::Aside);
        }
        let fd = match rustix::fs::openat(
            &self.dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Replaced by a link between the look and the open.
            Err(rustix::io::Errno::LOOP) => {
                return self.aside(name, "a symbolic link").map(Taken::Aside)
            }
            Err(e) => return Err(io("cannot open", &path, e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| io("cannot stat", &path, e))?;
        let sig = Sig::of(&st);
        if !sig.regular || st.st_nlink != 1 {
            drop(fd);
            return self.aside(name, kind_of(&st)).map(Taken::Aside);
        }
        Ok(Taken::Bundle(Opened {
            file: File::from(fd),
            name: name.to_owned(),
            sig,
        }))
    }

    /// Moves the entry `name` into `dest_dir` under a free name (never over anything);
    /// returns the new name and what is now there.
    fn move_out(
        &self,
        name: &OsStr,
        dest_dir: &Path,
    ) -> std::io::Result<(PathBuf, rustix::fs::Stat)> {
        let dest_fd = rustix::fs::open(
            dest_dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("cannot open", dest_dir, e))?;
        for cand in free_names(name) {
            let mut reason = cand.clone();
            reason.push(".reason");
            if rustix::fs::statat(&dest_fd, &reason, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                continue;
            }
            match rustix::fs::renameat_with(
                &self.dir,
                name,
                &dest_fd,
                &cand,
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => {
                    let _ = rustix::fs::fsync(&dest_fd);
                    let _ = rustix::fs::fsync(&self.dir);
                    let st = rustix::fs::statat(&dest_fd, &cand, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| io("cannot stat", &dest_dir.join(&cand), e))?;
                    return Ok((dest_dir.join(cand), st));
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(io("cannot move", &self.inbox.join(name), e)),
            }
        }
        Err(io(
            "no free name in",
            dest_dir,
            std::io::ErrorKind::AlreadyExists,
        ))
    }

    /// Writes `dest.reason` (mode 0640, the admins' group) holding `sentence`.
    fn write_reason(&self, dest: &Path, sentence: &str) -> std::io::Result<()> {
        let mut name = dest.file_name().unwrap_or_default().to_owned();
        name.push(".reason");
        let path = fsutil::parent(dest).join(name);
        let text = format!("{}\n", escape_controls(sentence.trim_end()));
        fsutil::write_atomic_group(&path, text.as_bytes(), fsutil::GROUP_READ, self.group)
    }

    fn aside(&mut self, name: &OsStr, what: &str) -> std::io::Result<PathBuf> {
        let (dest, st) = self.move_out(name, &self.rejected)?;
        self.make_ours(&dest, &st, None);
        self.write_reason(
            &dest,
            &format!(
                "not_regular_file: the inbox entry was {what}, not a regular file with one name; \
                 it was moved aside unread. Copy the bundle itself into the inbox."
            ),
        )?;
        self.forget(name);
        Ok(dest)
    }

    /// When running as root: makes the entry moved to `dest` (`st` its lstat there)
    /// root's, with the inbox's group, so the admins' group can read but not write in
    /// `processed/`: a file gets mode 0640 (through `held`, the descriptor the bundle
    /// was read from, when it is that file), a folder 0750 (through a descriptor opened
    /// without following links), a link only its owner. A file with other names is left
    /// as it is (changing it would change them). The entry's name is in a folder only
    /// the agent writes, so it cannot be swapped under these calls.
    fn make_ours(&self, dest: &Path, st: &rustix::fs::Stat, held: Option<&File>) {
        if !is_root() {
            return;
        }
        let (uid, gid) = (
            Some(rustix::fs::Uid::ROOT),
            self.group.map(rustix::fs::Gid::from_raw),
        );
        let file_mode = Mode::from_raw_mode(MOVED_FILE_MODE);
        let r = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile if st.st_nlink != 1 => Ok(()),
            FileType::RegularFile => match held {
                Some(f) => rustix::fs::fstat(f).and_then(|now| {
                    if (now.st_dev, now.st_ino, now.st_nlink) != (st.st_dev, st.st_ino, 1) {
                        return Ok(());
                    }
                    rustix::fs::fchown(f, uid, gid)?;
                    rustix::fs::fchmod(f, file_mode)
                }),
                None => rustix::fs::open(
                    dest,
                    OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::NOCTTY
                        | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .and_then(|fd| {
                    let now = rustix::fs::fstat(&fd)?;
                    if (now.st_dev, now.st_ino, now.st_nlink) != (st.st_dev, st.st_ino, 1) {
                        return Ok(());
                    }
                    rustix::fs::fchown(&fd, uid, gid)?;
                    rustix::fs::fchmod(&fd, file_mode)
                }),
            },
            FileType::Directory => rustix::fs::open(
                dest,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .and_then(|fd| {
                let now = rustix::fs::fstat(&fd)?;
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                    return Ok(());
                }
                rustix::fs::fchown(&fd, uid, gid)?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(MOVED_DIR_MODE))
            }),
            FileType::Symlink => {
                rustix::fs::chownat(rustix::fs::CWD, dest, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            }
            // A fifo, socket or device: never opened; its name cannot be swapped.
            _ => rustix::fs::chownat(rustix::fs::CWD, dest, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                .and_then(|()| {
                    rustix::fs::chmodat(rustix::fs::CWD, dest, file_mode, AtFlags::empty())
                }),
        };
        if let Err(e) = r {
            tracing::warn!(
                "cannot make {} the agent's (mode and owner): {e}",
                shown_path(dest)
            );
        }
    }

    fn forget(&mut self, name: &OsStr) {
        self.seen.remove(name);
        self.closed.remove(name);
        self.deferred.remove(name);
    }

    /// After applying `opened`: leave a young truncated bundle for the rest of its copy,
    /// or move it to `processed/applied/` or `processed/rejected/` (with its reason).
    /// If the name no longer holds the file that was read, what is there now is moved
    /// aside as rejected, unread.
    pub fn settle(
        &mut self,
        opened: Opened,
        result: &Result<(), AgentError>,
    ) -> std::io::Result<Settled> {
        let Opened { file, name, sig } = opened;
        if let Err(e) = result {
            if e.is_truncation() && sig.age() < self.timing.young {
                self.deferred.insert(name.clone(), sig);
                return Ok(Settled::Deferred);
            }
        }
        let dest_dir = if result.is_ok() {
            self.applied.clone()
        } else {
            self.rejected.clone()
        };
        let (dest, st) = self.move_out(&name, &dest_dir)?;
        self.forget(&name);
        if (st.st_dev, st.st_ino) != (sig.dev, sig.ino) {
            drop(file);
            self.make_ours(&dest, &st, None);
            let dest = if result.is_ok() {
                // Not the file that was applied: it does not belong among the applied.
                self.move_between(&dest, &self.rejected.clone())?
            } else {
                dest
            };
            self.write_reason(
                &dest,
                "replaced: the file in the inbox was replaced while the agent read it; \
                 what was there afterwards was moved aside unread",
            )?;
            return Ok(Settled::Rejected(dest));
        }
        self.make_ours(&dest, &st, Some(&file));
        drop(file);
        match result {
            Ok(()) => Ok(Settled::Applied(dest)),
            Err(e) => {
                self.write_reason(&dest, &format!("{}: {}", e.rule(), e.reason()))?;
                Ok(Settled::Rejected(dest))
            }
        }
    }

    fn move_between(&self, from: &Path, dest_dir: &Path) -> std::io::Result<PathBuf> {
        let name = from.file_name().unwrap_or_default();
        for cand in free_names(name) {
            let to = dest_dir.join(&cand);
            match rustix::fs::renameat_with(
                rustix::fs::CWD,
                from,
                rustix::fs::CWD,
                &to,
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => return Ok(to),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(io("cannot move", from, e)),
            }
        }
        Err(io(
            "no free name in",
            dest_dir,
            std::io::ErrorKind::AlreadyExists,
        ))
    }
}

/// The names tried for `name` in a processed folder: NAME, NAME.1 … NAME.999, then
/// NAME.<16 random hex digits>, so that a folder already full of one name never leaves
/// a bundle in the inbox (read again on every poll).
fn free_names(name: &OsStr) -> impl Iterator<Item = OsString> + '_ {
    let numbered = (0..1000u32).map(move |n| {
        let mut cand = name.to_owned();
        if n > 0 {
            cand.push(format!(".{n}"));
        }
        cand
    });
    let random = (0..16).map(move |_| {
        let mut r = [0u8; 8];
        if getrandom::getrandom(&mut r).is_err() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            r = (nanos ^ u64::from(std::process::id()).rotate_left(32)).to_be_bytes();
        }
        let mut cand = name.to_owned();
        cand.push(format!(".{:016x}", u64::from_be_bytes(r)));
        cand
    });
    numbered.chain(random)
}

fn kind_of(st: &rustix::fs::Stat) -> &'static str {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => "a symbolic link",
        FileType::Directory => "a folder",
        FileType::Fifo => "a named pipe",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Socket => "a socket",
        FileType::RegularFile => "a file with more than one name (a hard link)",
        FileType::Unknown => "of an unknown kind",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn timing(quiet: u64, young: u64) -> Timing {
        Timing {
            quiet: Duration::from_secs(quiet),
            young: Duration::from_secs(young),
        }
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn refused() -> Result<(), AgentError> {
        Err(AgentError::Bundle(crate::bundle::BundleReject::Archive(
            crate::archive::ArchiveError::TrailingData,
        )))
    }

    fn truncated() -> Result<(), AgentError> {
        Err(AgentError::Bundle(crate::bundle::BundleReject::Archive(
            crate::archive::ArchiveError::NoEndBlocks,
        )))
    }

    /// Polls until `name` is ready (the watcher's events arrive on their own thread).
    fn wait_ready(inbox: &mut Inbox, name: &str) -> bool {
        for _ in 0..100 {
            if inbox.ready().iter().any(|n| n == name) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn the_layout_has_its_modes_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let old = rustix::process::umask(Mode::from_raw_mode(0o077));
        let inbox = Inbox::open(dir.path(), timing(0, 0));
        rustix::process::umask(old);
        drop(inbox.unwrap());
        assert_eq!(mode_of(&dir.path().join("inbox")), INBOX_MODE);
        for d in ["processed", "processed/applied", "processed/rejected"] {
            assert_eq!(mode_of(&dir.path().join(d)), PROCESSED_MODE, "{d}");
        }
    }

    #[test]
    fn a_file_is_taken_only_once_its_writer_closed_it() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), timing(3600, 3600)).unwrap();
        let p = dir.path().join("inbox/b.tar");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"first half").unwrap();
        std::fs::write(dir.path().join("inbox/c.tar.part"), b"12").unwrap();
        for _ in 0..5 {
            assert!(inbox.ready().is_empty(), "still open for writing");
            std::thread::sleep(Duration::from_millis(20));
        }
        f.write_all(b" and the rest").unwrap();
        drop(f);
        assert!(wait_ready(&mut inbox, "b.tar"), "closed and unchanged");
        assert!(!inbox.ready().iter().any(|n| n == "c.tar.part"));
        // A copy renamed into place is ready as well.
        std::fs::rename(
            dir.path().join("inbox/c.tar.part"),
            dir.path().join("inbox/c.tar"),
        )
        .unwrap();
        assert!(wait_ready(&mut inbox, "c.tar"));
    }

    #[test]
    fn links_fifos_folders_and_second_names_are_moved_aside_unread() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), timing(0, 0)).unwrap();
        let victim = dir.path().join("root-only");
        std::fs::write(&victim, b"ROOT-ONLY-SECRET").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let i = dir.path().join("inbox");
        std::os::unix::fs::symlink(&victim, i.join("link.tar")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            i.join("fifo.tar"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::create_dir(i.join("dir.tar")).unwrap();
        std::fs::hard_link(&victim, i.join("hard.tar")).unwrap();
        let mut names = inbox.ready();
        names.sort();
        assert_eq!(names, vec!["dir.tar", "fifo.tar", "hard.tar", "link.tar"]);
        for (name, what) in [
            ("link.tar", "a symbolic link"),
            ("fifo.tar", "a named pipe"),
            ("dir.tar", "a folder"),
            ("hard.tar", "a hard link"),
        ] {
            match inbox.take(OsStr::new(name)).unwrap() {
                Taken::Aside(dest) => {
                    assert_eq!(dest, dir.path().join("processed/rejected").join(name));
                    let reason = dir.path().join(format!("processed/rejected/{name}.reason"));
                    let text = std::fs::read_to_string(&reason).unwrap();
                    assert!(text.starts_with("not_regular_file: "), "{text}");
                    assert!(text.contains(what), "{name}: {text}");
                    assert!(!text.contains("ROOT-ONLY"));
                    assert_eq!(mode_of(&reason), 0o640);
                }
                Taken::Bundle(_) => panic!("{name} was opened as a bundle"),
            }
        }
        assert!(
            std::fs::symlink_metadata(dir.path().join("processed/rejected/link.tar"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"ROOT-ONLY-SECRET");
        assert_eq!(mode_of(&victim), 0o600);
        assert!(inbox.ready().is_empty());
    }

    #[test]
    fn an_entry_swapped_while_it_was_read_is_moved_aside_and_named_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), timing(0, 0)).unwrap();
        let victim = dir.path().join("root-only");
        std::fs::write(&victim, b"ROOT-ONLY-SECRET").unwrap();
        let p = dir.path().join("inbox/b.tar");
        std::fs::write(&p, b"the admin's bundle").unwrap();
        let Taken::Bundle(opened) = inbox.take(OsStr::new("b.tar")).unwrap() else {
            panic!("not opened")
        };
        // While the agent reads: the file goes, a link to a root-only file comes.
        std::fs::rename(&p, dir.path().join("inbox/away.part")).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let got = inbox.settle(opened, &Ok(())).unwrap();
        let dest = dir.path().join("processed/rejected/b.tar");
        assert_eq!(got, Settled::Rejected(dest.clone()));
        assert!(std::fs::symlink_metadata(&dest).unwrap().is_symlink());
        let reason =
            std::fs::read_to_string(dir.path().join("processed/rejected/b.tar.reason")).unwrap();
        assert!(reason.starts_with("replaced: "), "{reason}");
        assert!(!reason.contains("ROOT-ONLY"));
        assert_eq!(
            std::fs::read_dir(dir.path().join("processed/applied"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"ROOT-ONLY-SECRET");
    }

    #[test]
    fn a_young_truncated_bundle_waits_and_an_old_one_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), timing(0, 3600)).unwrap();
        let p = dir.path().join("inbox/b.tar");
        std::fs::write(&p, b"half a bundle").unwrap();
        let Taken::Bundle(o) = inbox.take(OsStr::new("b.tar")).unwrap() else {
            panic!()
        };
        assert_eq!(inbox.settle(o, &truncated()).unwrap(), Settled::Deferred);
        assert!(p.exists());
        inbox.ready();
        assert!(
            inbox.ready().is_empty(),
            "unchanged and young: not tried again"
        );
        // An old truncated file is rejected for good, with a sentence.
        let mut inbox = Inbox::open(dir.path(), timing(0, 0)).unwrap();
        let Taken::Bundle(o) = inbox.take(OsStr::new("b.tar")).unwrap() else {
            panic!()
        };
        let dest = dir.path().join("processed/rejected/b.tar");
        assert_eq!(
            inbox.settle(o, &truncated()).unwrap(),
            Settled::Rejected(dest)
        );
        let reason =
            std::fs::read_to_string(dir.path().join("processed/rejected/b.tar.reason")).unwrap();
        assert_eq!(
            reason,
            "truncated: the archive ends without tar's end-of-archive blocks (truncated, or a \
             copy still in progress)\n"
        );
        // A second bundle of the same name never overwrites the first or its reason.
        std::fs::write(&p, b"again").unwrap();
        let Taken::Bundle(o) = inbox.take(OsStr::new("b.tar")).unwrap() else {
            panic!()
        };
        let dest = dir.path().join("processed/rejected/b.tar.1");
        assert_eq!(
            inbox.settle(o, &refused()).unwrap(),
            Settled::Rejected(dest)
        );
        assert_eq!(
            std::fs::read(dir.path().join("processed/rejected/b.tar")).unwrap(),
            b"half a bundle"
        );
    }
    fn close_event(name: &str) -> notify::Result<notify::Event> {
        use notify::event::{AccessKind, AccessMode, EventKind};
        Ok(
            notify::Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write)))
                .add_path(PathBuf::from("/inbox").join(name)),
        )
    }

    #[test]
    fn a_flood_of_events_keeps_the_queue_and_the_names_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), timing(3600, 3600)).unwrap();
        // The watcher's queue, fed by hand.
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let mut handler = queue_handler(tx, overflow.clone());
        inbox.events = Some(rx);
        inbox.overflow = overflow.clone();
        // Hidden files and partial copies never enter the set.
        for i in 0..100 {
            handler(close_event(&format!(".h{i}")));
            handler(close_event(&format!("b{i}.tar.part")));
        }
        inbox.drain_events();
        assert!(inbox.closed.is_empty());
        // Create/close/unlink of many names: the queue holds EVENT_QUEUE at most, the
        // rest is dropped and a rescan asked for.
        for i in 0..100_000 {
            handler(close_event(&format!("f{i}.tar")));
        }
        assert!(overflow.load(Ordering::Relaxed));
        assert_eq!(
            inbox.events.as_ref().unwrap().try_iter().count(),
            EVENT_QUEUE
        );
        for i in 0..100_000 {
            handler(close_event(&format!("f{i}.tar")));
        }
        inbox.drain_events();
        assert!(
            inbox.closed.is_empty(),
            "after dropped events nothing counts as closed"
        );
        assert!(!overflow.load(Ordering::Relaxed));
        // Within the queue: at most MAX_CLOSED names, and only names in the folder.
        let (tx, rx) = sync_channel(MAX_CLOSED * 2);
        let mut handler = queue_handler(tx, overflow.clone());
        inbox.events = Some(rx);
        for i in 0..MAX_CLOSED - 1 {
            handler(close_event(&format!("g{i}.tar")));
        }
        inbox.drain_events();
        assert_eq!(inbox.closed.len(), MAX_CLOSED - 1);
        for i in 0..10 {
            handler(close_event(&format!("h{i}.tar")));
        }
        inbox.drain_events();
        assert!(inbox.closed.len() <= MAX_CLOSED);
        std::fs::write(dir.path().join("inbox/g1.tar"), b"x").unwrap();
        handler(close_event("g1.tar"));
        inbox.ready();
        assert!(
            inbox.closed.len() <= 1,
            "pruned to the names present: {}",
            inbox.closed.len()
        );
    }

    #[test]
    fn names_are_shown_with_control_characters_escaped() {
        use std::os::unix::ffi::OsStrExt as _;
        assert_eq!(shown(OsStr::new("b.tar")), "b.tar");
        assert_eq!(
            shown(OsStr::new("x.tar\n2026-11-29 INFO bundle applied\u{1b}[2K")),
            "x.tar\\n2026-11-29 INFO bundle applied\\u{1b}[2K"
        );
        assert_eq!(shown(OsStr::from_bytes(b"a\xffb\r")), "a\\xffb\\r");
        assert_eq!(escape_controls("one\ttwo"), "one\\ttwo");
        // A .reason file is one line, whatever the sentence holds.
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path(), timing(0, 0)).unwrap();
        let dest = dir.path().join("processed/rejected/n.tar");
        inbox.write_reason(&dest, "rule: a\nforged line\n").unwrap();
        let text =
            std::fs::read_to_string(dir.path().join("processed/rejected/n.tar.reason")).unwrap();
        assert_eq!(text, "rule: a\\nforged line\n");
    }

    #[test]
    fn a_rejected_folder_full_of_one_name_falls_back_to_a_random_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), timing(0, 0)).unwrap();
        let rejected = dir.path().join("processed/rejected");
        std::fs::write(rejected.join("b.tar"), b"old").unwrap();
        for n in 1..1000 {
            std::fs::write(rejected.join(format!("b.tar.{n}")), b"old").unwrap();
        }
        std::fs::write(dir.path().join("inbox/b.tar"), b"a bad bundle").unwrap();
        let Taken::Bundle(o) = inbox.take(OsStr::new("b.tar")).unwrap() else {
            panic!()
        };
        let Settled::Rejected(dest) = inbox.settle(o, &refused()).unwrap() else {
            panic!()
        };
        let name = dest.file_name().unwrap().to_str().unwrap().to_owned();
        let suffix = name.strip_prefix("b.tar.").unwrap();
        assert_eq!(suffix.len(), 16, "{name}");
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"a bad bundle");
        assert!(rejected.join(format!("{name}.reason")).exists());
        assert!(!dir.path().join("inbox/b.tar").exists());
    }

    #[test]
    fn entries_moved_out_are_roots_and_not_writable_by_the_group() {
        use std::os::unix::fs::MetadataExt as _;
        if !is_root() {
            eprintln!("skipped: needs root (CI runs as root)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), timing(0, 0)).unwrap();
        let i = dir.path().join("inbox");
        let group = std::fs::metadata(&i).unwrap().gid();
        let dropper = Some(rustix::fs::Uid::from_raw(54321));
        let theirs = |p: &Path, mode: u32| {
            rustix::fs::chownat(rustix::fs::CWD, p, dropper, None, AtFlags::SYMLINK_NOFOLLOW)
                .unwrap();
            if mode != 0 {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        };
        std::fs::write(i.join("good.tar"), b"applied").unwrap();
        theirs(&i.join("good.tar"), 0o666);
        std::fs::write(i.join("bad.tar"), b"rejected").unwrap();
        theirs(&i.join("bad.tar"), 0o644);
        std::fs::create_dir(i.join("d.tar")).unwrap();
        theirs(&i.join("d.tar"), 0o777);
        std::os::unix::fs::symlink("/nowhere", i.join("l.tar")).unwrap();
        theirs(&i.join("l.tar"), 0);
        for (name, ok) in [("good.tar", true), ("bad.tar", false)] {
            let Taken::Bundle(o) = inbox.take(OsStr::new(name)).unwrap() else {
                panic!()
            };
            let r = if ok { Ok(()) } else { refused() };
            inbox.settle(o, &r).unwrap();
        }
        for name in ["d.tar", "l.tar"] {
            assert!(matches!(
                inbox.take(OsStr::new(name)).unwrap(),
                Taken::Aside(_)
            ));
        }
        let p = dir.path().join("processed");
        for (path, mode) in [
            (p.join("applied/good.tar"), Some(MOVED_FILE_MODE)),
            (p.join("rejected/bad.tar"), Some(MOVED_FILE_MODE)),
            (p.join("rejected/d.tar"), Some(MOVED_DIR_MODE)),
            (p.join("rejected/l.tar"), None),
        ] {
            let md = std::fs::symlink_metadata(&path).unwrap();
            assert_eq!((md.uid(), md.gid()), (0, group), "{}", path.display());
            if let Some(mode) = mode {
                assert_eq!(md.mode() & 0o7777, mode, "{}", path.display());
            }
        }
    }
}
