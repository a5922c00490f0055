//! Reading inputs with a size cap and writing outputs atomically (temp file, fsync,
//! rename, fsync the folder); private keys are created 0600 and never overwritten.

use crate::failure::Failure;
use np_common::dsse::MAX_ENVELOPE_BYTES;
use np_common::{PublicKey, SecretKey};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Reads a document or payload file (at most 1 MiB), refusing an empty one.
pub fn read_doc(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    let file = File::open(path)
        .map_err(|e| Failure::io(format!("cannot read the {what} {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_ENVELOPE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::io(format!("cannot read the {what} {}: {e}", path.display())))?;
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(Failure::refused(format!(
            "the {what} {} is larger than 1 MiB; a signed document is at most 1 MiB",
            path.display()
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Failure::refused(format!(
            "the {what} {} is empty",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Reads a key file's text (a line of base64; anything over 4 KiB is not a key).
fn read_key_text(path: &Path, what: &str) -> Result<String, Failure> {
    let file = File::open(path)
        .map_err(|e| Failure::io(format!("cannot read the {what} {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(4097)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::io(format!("cannot read the {what} {}: {e}", path.display())))?;
    if bytes.len() > 4096 {
        return Err(Failure::refused(format!(
            "the {what} {} is too large to be a key file",
            path.display()
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Failure::refused(format!(
            "the {what} {} is not text (standard base64 of 32 bytes)",
            path.display()
        ))
    })
}

/// Reads a private key file; warns (and goes on) when group or others may read it.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, Failure> {
    let text = read_key_text(path, "private key")?;
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            np_server::errln!(
                "warning: private key {} can be read by group or others; run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    SecretKey::from_base64(&text).map_err(|e| {
        Failure::refused(format!(
            "{} is not a private key file (standard base64 of a 32-byte seed): {e}",
            path.display()
        ))
    })
}

/// Reads a public key file (standard base64 of the raw 32 bytes).
pub fn read_public_key(path: &Path, what: &str) -> Result<PublicKey, Failure> {
    let text = read_key_text(path, what)?;
    PublicKey::from_base64(&text).map_err(|e| {
        Failure::refused(format!(
            "the {what} {} is not a public key (standard base64 of 32 bytes): {e}",
            path.display()
        ))
    })
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsyncs a folder so that a rename or a new file in it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), Failure> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Failure::io(format!("cannot sync the folder {}: {e}", dir.display())))
}

/// A temporary file beside `path`, renamed onto it by [`persist`]; dropped, it is removed.
pub fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile, Failure> {
    tempfile::Builder::new()
        .prefix(".np-vendor-")
        .suffix(".tmp")
        .tempfile_in(parent_of(path))
        .map_err(|e| {
            Failure::io(format!(
                "cannot create a temporary file beside {}: {e}",
                path.display()
            ))
        })
}

/// fsyncs a temporary file, renames it onto `path` and fsyncs the folder.
pub fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::io(format!("cannot write {}: {e}", path.display()));
    tmp.as_file().sync_all().map_err(io)?;
    // Outputs are documents and bundles anybody may read; temp files start 0600.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    sync_dir(parent_of(path))
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)
        .map_err(|e| Failure::io(format!("cannot write {}: {e}", path.display())))?;
    persist(tmp, path)
}

/// Creates a private key file, mode 0600, refusing to overwrite anything.
pub fn write_new_private(path: &Path, text: &str) -> Result<(), Failure> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Failure::refused(format!(
                    "{} already exists; a key file is never overwritten, choose another name",
                    path.display()
                ))
            } else {
                Failure::io(format!("cannot create {}: {e}", path.display()))
            }
        })?;
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(Failure::io(format!("cannot write {}: {e}", path.display())));
    }
    sync_dir(parent_of(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Kind;

    #[test]
    fn inputs_are_capped_and_must_not_be_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        fs::write(&empty, " \n").expect("write");
        assert_eq!(
            read_doc(&empty, "payload").err().map(|f| f.kind()),
            Some(Kind::Refused)
        );
        let big = dir.path().join("big");
        fs::write(&big, vec![b'a'; MAX_ENVELOPE_BYTES + 1]).expect("write");
        assert_eq!(
            read_doc(&big, "payload").err().map(|f| f.kind()),
            Some(Kind::Refused)
        );
        let missing = dir.path().join("missing");
        assert_eq!(
            read_doc(&missing, "payload").err().map(|f| f.kind()),
            Some(Kind::Io)
        );
    }

    #[test]
    fn private_keys_are_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k.key");
        write_new_private(&p, "x\n").expect("first");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = write_new_private(&p, "y\n").err().map(|f| f.kind());
        assert_eq!(again, Some(Kind::Refused));
        assert_eq!(fs::read_to_string(&p).expect("read"), "x\n");
    }

    #[test]
    fn atomic_writes_leave_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("out.json");
        write_atomic(&p, b"{}").expect("write");
        write_atomic(&p, b"{1}").expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"{1}");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
