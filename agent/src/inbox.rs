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
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, SystemTime};

/// Mode of `inbox/`: group-writable, setgid (files keep the admins' group), sticky (an
/// admin can move or delete only their own files).
pub const INBOX_MODE: u32 = 0o3770;
/// Mode of `processed/` and its two folders: the agent writes, the group reads.
pub const PROCESSED_MODE: u32 = 0o750;

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
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
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
        let (tx, rx) = channel();
        let watcher = notify::recommended_watcher(tx).and_then(|mut w| {
            use notify::Watcher as _;
            w.watch(&inbox, notify::RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        let (watcher, events) = match watcher {
            Ok(w) => (Some(w), Some(rx)),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} ({e}); a bundle is taken once it is unchanged for {:?}",
                    inbox.display(),
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
        while let Ok(ev) = rx.try_recv() {
            let Ok(ev) = ev else { continue };
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
                if done {
                    self.closed.insert(name.to_owned());
                } else {
                    self.closed.remove(name);
                }
            }
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
        for n in 0..1000u32 {
            let mut cand = name.to_owned();
            if n > 0 {
                cand.push(format!(".{n}"));
            }
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
        let text = format!("{}\n", sentence.trim_end());
        fsutil::write_atomic_group(&path, text.as_bytes(), fsutil::GROUP_READ, self.group)
    }

    fn aside(&mut self, name: &OsStr, what: &str) -> std::io::Result<PathBuf> {
        let (dest, _) = self.move_out(name, &self.rejected)?;
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
        drop(file);
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
        for n in 0..1000u32 {
            let mut cand = name.to_owned();
            if n > 0 {
                cand.push(format!(".{n}"));
            }
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
