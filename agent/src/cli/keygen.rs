//! `np-agent keygen --out FILE`: writes a new device key (0600), prints its public key.

use crate::error::AgentError;
use crate::fsutil;
use np_common::SecretKey;
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
    if a.out.exists() {
        return Err(AgentError::Usage(format!(
            "{} already exists; remove it first or choose another --out",
            a.out.display()
        )));
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| AgentError::Io {
        what: "cannot get random bytes for the key".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let key = SecretKey::from_seed(&seed);
    fsutil::write_atomic_mode(&a.out, key.to_base64().as_bytes(), 0o600).map_err(|source| {
        AgentError::Io {
            what: format!("cannot write {}", a.out.display()),
            source,
        }
    })?;
    super::out::say!("{}", key.public_key().to_base64());
    Ok(())
}
