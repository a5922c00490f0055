//! `np-agent keygen --out FILE`: writes a new device key (0600, whatever the umask),
//! prints its public key. The key file is created fresh: never over an existing file or
//! through a link.

use crate::error::AgentError;
use np_common::SecretKey;
use np_fsutil as fsutil;
use std::path::PathBuf;

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the private key (mode 0600); it must not exist yet.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Writes the key and prints the public key.
pub fn run(a: &Args) -> Result<(), AgentError> {
    let exists = || {
        AgentError::Usage(format!(
            "{} already exists; remove it first or choose another --out",
            a.out.display()
        ))
    };
    if a.out.symlink_metadata().is_ok() {
        return Err(exists());
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| AgentError::Io {
        what: "cannot get random bytes for the key".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let key = SecretKey::from_seed(&seed);
    match fsutil::write_new(&a.out, key.to_base64().as_bytes(), fsutil::PRIVATE) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
        Err(source) => {
            return Err(AgentError::Io {
                what: format!("cannot write {}", a.out.display()),
                source,
            })
        }
    }
    super::out::say!("{}", key.public_key().to_base64());
    Ok(())
}
