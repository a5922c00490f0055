//! Durable file writes: every state file is written to a temporary file, fsynced, renamed
//! over the target, and the folder fsynced, so a crash leaves the old or the new file.
//! The temporary file is created fresh (`O_EXCL`, `O_NOFOLLOW`, a random name) with the mode
//! set by us, not the umask: private keys are 0600 from the start.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `path` atomically; `private` makes the file mode 0600.
pub fn atomic_write(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut rnd = [0u8; 8];
    getrandom::getrandom(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(rnd)));
    let mode = if private { 0o600 } else { 0o644 };
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        #[cfg(unix)]
        {
            // The mode is ours, not the umask's.
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates a new file (never an existing one, never through a symbolic link) with mode
/// 0600, writes `bytes`, and fsyncs it and its folder.
pub fn create_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)?;
    f.sync_all()?;
    sync_dir(path.parent().unwrap_or_else(|| Path::new(".")))
}

/// Fsyncs a folder so that a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a folder (and its parents) with mode 0700 where it is new.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_private_files_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        atomic_write(&p, b"one", true).unwrap();
        atomic_write(&p, b"two", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }
}
