//! np-fsutil: the one safe way the NP programs create and replace files.
//!
//! - A new file is always created fresh: `O_CREAT | O_EXCL | O_NOFOLLOW`, so it is never
//!   opened through an existing file or a link someone planted.
//! - Its mode is set by us with `fchmod` on the open descriptor, never left to the umask.
//! - A replaced file goes through a temporary file with a random name in the same folder:
//!   written, fsynced, renamed over the target, then the folder fsynced, so a power cut
//!   leaves the old or the new content and never a mix.
//!
//! Architecture Invariant: no NP program creates a state file, key or slot file except
//! through this crate.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, CWD};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// Mode of private files: keys, state, slots.
pub const PRIVATE: u32 = 0o600;
/// Mode of files the admins' group reads (`.reason` files).
pub const GROUP_READ: u32 = 0o640;
/// Mode of public files anyone may read (a public key, a signed keyring).
pub const PUBLIC_READ: u32 = 0o644;
/// Mode of private folders.
pub const PRIVATE_DIR: u32 = 0o700;

fn mode(m: u32) -> Mode {
    Mode::from_raw_mode(m)
}

/// The folder `path` lives in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// 16 random hex digits, for temporary names nobody can guess.
pub fn random_hex() -> io::Result<String> {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Creates `path` fresh (it must not exist, and is never a link) with exactly `mode`,
/// whatever the umask, and group `gid` when given. The folder is not fsynced: a caller
/// that needs the new name durable calls [`sync_dir`] (or uses [`write_new`]).
pub fn create_new(path: &Path, file_mode: u32, gid: Option<u32>) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC,
        mode(file_mode),
    )?;
    if let Some(g) = gid {
        rustix::fs::fchown(&fd, None, Some(rustix::fs::Gid::from_raw(g)))?;
    }
    rustix::fs::fchmod(&fd, mode(file_mode))?;
    Ok(File::from(fd))
}

/// Opens an existing file of ours for writing: never through a link, and only when it
/// is a regular file owned by this process's user with a single name (so it cannot be
/// another file hard-linked in).
pub fn open_own_rw(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    let ours = st.st_uid == rustix::process::geteuid().as_raw();
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || !ours || st.st_nlink != 1 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a regular file of this user with one name; refusing to write through it",
                path.display()
            ),
        ));
    }
    Ok(File::from(fd))
}

/// A temporary file with a random name beside its destination, removed on drop unless
/// [`TempFile::persist`] renamed it into place.
#[derive(Debug)]
pub struct TempFile {
    file: File,
    path: PathBuf,
    dir: PathBuf,
    done: bool,
}

impl TempFile {
    /// A new temporary file for `dest` (in `dest`'s folder), mode `file_mode`, group
    /// `gid` when given.
    pub fn for_dest(dest: &Path, file_mode: u32, gid: Option<u32>) -> io::Result<TempFile> {
        let dir = parent(dest).to_owned();
        let name = dest.file_name().map(|n| n.as_bytes()).unwrap_or(b"file");
        let mut tmp = OsString::from(".");
        tmp.push(std::ffi::OsStr::from_bytes(&name[..name.len().min(100)]));
        tmp.push(format!(".{}.tmp", random_hex()?));
        let path = dir.join(tmp);
        let file = create_new(&path, file_mode, gid)?;
        Ok(TempFile {
            file,
            path,
            dir,
            done: false,
        })
    }

    /// The open file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// fsyncs the file, renames it to `dest` (replacing what is there), fsyncs the folder.
    pub fn persist(self, dest: &Path) -> io::Result<()> {
        self.persist_with(dest, RenameFlags::empty())
    }

    /// As [`TempFile::persist`], but fails with `AlreadyExists` if `dest` exists.
    pub fn persist_new(self, dest: &Path) -> io::Result<()> {
        self.persist_with(dest, RenameFlags::NOREPLACE)
    }

    fn persist_with(mut self, dest: &Path, flags: RenameFlags) -> io::Result<()> {
        self.file.sync_all()?;
        rustix::fs::renameat_with(CWD, &self.path, CWD, dest, flags)?;
        self.done = true;
        sync_dir(&self.dir)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Replaces `path` with `bytes` atomically and durably, the new file having exactly
/// `file_mode`. Creates the parent folder (mode 0700) when it is missing.
pub fn write_atomic(path: &Path, bytes: &[u8], file_mode: u32) -> io::Result<()> {
    write_atomic_group(path, bytes, file_mode, None)
}

/// As [`write_atomic`], giving the file group `gid` (for files a group reads).
pub fn write_atomic_group(
    path: &Path,
    bytes: &[u8],
    file_mode: u32,
    gid: Option<u32>,
) -> io::Result<()> {
    create_dir_all(parent(path), PRIVATE_DIR)?;
    let mut t = TempFile::for_dest(path, file_mode, gid)?;
    t.file().write_all(bytes)?;
    t.persist(path)
}

/// Writes a new file `path` (it must not exist yet: `AlreadyExists` otherwise) through a
/// temporary file, so that it appears whole or not at all. For private keys.
pub fn write_new(path: &Path, bytes: &[u8], file_mode: u32) -> io::Result<()> {
    create_dir_all(parent(path), PRIVATE_DIR)?;
    let mut t = TempFile::for_dest(path, file_mode, None)?;
    t.file().write_all(bytes)?;
    t.persist_new(path)
}

/// Creates the folders of `path` that are missing, each with exactly `dir_mode`.
/// Folders that exist are left as they are.
pub fn create_dir_all(path: &Path, dir_mode: u32) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut p = path;
    while !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err() {
        missing.push(p);
        match p.parent() {
            Some(q) => p = q,
            None => break,
        }
    }
    for d in missing.into_iter().rev() {
        match rustix::fs::mkdir(d, mode(dir_mode)) {
            Ok(()) => rustix::fs::chmod(d, mode(dir_mode))?,
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a folder", path.display()),
        ));
    }
    Ok(())
}

/// Makes `path` a real folder (not a link) with exactly `dir_mode`, owner `uid` and
/// group `gid` where given, creating it when missing. Used for folders whose modes are
/// part of the security design (the inbox and what lies beside it).
pub fn ensure_dir(
    path: &Path,
    dir_mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> io::Result<()> {
    create_dir_all(parent(path), PRIVATE_DIR)?;
    match rustix::fs::mkdir(path, mode(dir_mode)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "{} is not a folder (a link or a file is in its place)",
                path.display()
            ),
        )
    })?;
    if uid.is_some() || gid.is_some() {
        rustix::fs::fchown(
            &fd,
            uid.map(rustix::fs::Uid::from_raw),
            gid.map(rustix::fs::Gid::from_raw),
        )?;
    }
    rustix::fs::fchmod(&fd, mode(dir_mode))?;
    Ok(())
}

/// Removes `path` if it exists (never following a link) and makes the removal durable.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    match rustix::fs::unlinkat(CWD, path, AtFlags::empty()) {
        Ok(()) => sync_dir(parent(path)),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Renames `from` to `to` and fsyncs both folders.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    sync_dir(parent(to))?;
    if parent(from) != parent(to) {
        sync_dir(parent(from))?;
    }
    Ok(())
}

/// fsyncs a folder so that a rename or removal inside it survives a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Mutex;

    /// The umask is per process: tests that change it run one at a time.
    static UMASK: Mutex<()> = Mutex::new(());

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn modes_are_ours_whatever_the_umask() {
        let _g = UMASK.lock().unwrap();
        for umask in [0o000, 0o077, 0o022] {
            let old = rustix::process::umask(mode(umask));
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("a/b/state.json");
            write_atomic(&state, b"x", PRIVATE).unwrap();
            let reason = dir.path().join("r.reason");
            write_atomic(&reason, b"x", GROUP_READ).unwrap();
            let key = dir.path().join("device.key");
            write_new(&key, b"k", PRIVATE).unwrap();
            let inbox = dir.path().join("inbox");
            ensure_dir(&inbox, 0o1770, None, None).unwrap();
            rustix::process::umask(old);
            assert_eq!(mode_of(&state), 0o600, "umask {umask:o}");
            assert_eq!(mode_of(&reason), 0o640, "umask {umask:o}");
            assert_eq!(mode_of(&key), 0o600, "umask {umask:o}");
            assert_eq!(mode_of(&inbox), 0o1770, "umask {umask:o}");
            assert_eq!(mode_of(&dir.path().join("a/b")), 0o700, "umask {umask:o}");
        }
    }

    #[test]
    fn replaces_atomically_with_random_temp_names_and_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        // A planted file at the old fixed temp name is neither used nor touched.
        let planted = dir.path().join(".state.json.tmp");
        std::fs::write(&planted, b"planted").unwrap();
        write_atomic(&p, b"one", PRIVATE).unwrap();
        write_atomic(&p, b"two", PRIVATE).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read(&planted).unwrap(), b"planted");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary file is left behind");
        let a = TempFile::for_dest(&p, PRIVATE, None).unwrap();
        let b = TempFile::for_dest(&p, PRIVATE, None).unwrap();
        assert_ne!(a.path, b.path, "temporary names are random");
        drop((a, b));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn never_creates_through_a_link_or_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"root only").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = create_new(&link, PRIVATE, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let e = create_new(&victim, PRIVATE, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let e = write_new(&victim, b"new", PRIVATE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        // open_own_rw refuses a link and a file with a second name.
        assert!(open_own_rw(&link).is_err());
        let hard = dir.path().join("hard");
        std::fs::hard_link(&victim, &hard).unwrap();
        let e = open_own_rw(&hard).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(std::fs::read(&victim).unwrap(), b"root only");
        // A link where a folder should be is refused, not followed.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let before = mode_of(&elsewhere);
        let dlink = dir.path().join("processed");
        std::os::unix::fs::symlink(&elsewhere, &dlink).unwrap();
        assert!(ensure_dir(&dlink, 0o750, None, None).is_err());
        assert_eq!(
            mode_of(&elsewhere),
            before,
            "the link's target keeps its mode"
        );
        remove_durable(&victim).unwrap();
        remove_durable(&victim).unwrap();
    }
}
