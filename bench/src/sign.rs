//! `np-bench sign`: prints the four device-API headers for one request (with a new random
//! nonce: the server refuses a replay, so sign again for every request), so that a plain
//! `curl -H @FILE` can fetch a blob as a box would (the baseline of the online benchmark).

use anyhow::Context as _;
use np_common::api::RequestSignature;
use np_common::SecretKey;
use std::path::PathBuf;

/// Options of `np-bench sign`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The box's serial number.
    #[arg(long)]
    serial: String,
    /// The box's device key file (standard base64 of the 32-byte seed).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request target: the URL path and query string as sent (`/api/v1/x?y=1`).
    #[arg(long)]
    path: String,
    /// The request body (default: empty).
    #[arg(long, value_name = "FILE")]
    body: Option<PathBuf>,
}

/// The header lines (`Name: value`) for a request with the given (or an empty) body, signed now.
pub fn headers(a: &Args) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&a.key)
        .with_context(|| format!("cannot read the device key {}", a.key.display()))?;
    let key = SecretKey::from_base64(text.trim())
        .with_context(|| format!("{} is not a base64 Ed25519 seed", a.key.display()))?;
    let body = match &a.body {
        Some(p) => {
            std::fs::read(p).with_context(|| format!("cannot read the body {}", p.display()))?
        }
        None => Vec::new(),
    };
    let sig = RequestSignature::sign(
        &key,
        &a.method,
        &a.path,
        jiff::Timestamp::now(),
        &request_nonce()?,
        &body,
    );
    Ok(sig
        .headers(&a.serial)
        .iter()
        .map(|(name, value)| format!("{name}: {value}\n"))
        .collect())
}

/// A new random request nonce (128 bits, hex).
pub fn request_nonce() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b)
        .map_err(|e| anyhow::anyhow!("cannot read random bytes for a request nonce: {e}"))?;
    Ok(hex::encode(b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signed_headers_verify() {
        let dir = std::env::temp_dir().join(format!("np-bench-sign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = SecretKey::from_seed(&[7u8; 32]);
        let path = dir.join("device.key");
        std::fs::write(&path, key.to_base64()).unwrap();
        let a = Args {
            serial: "NR-2000-123456-4".into(),
            key: path,
            method: "GET".into(),
            path: "/api/v1/device/blobs/ab".into(),
            body: None,
        };
        let out = headers(&a).unwrap();
        let get = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap()
                .to_string()
        };
        use base64::Engine as _;
        use np_common::api::*;
        let msg =
            device_request_message("GET", &a.path, &get(HEADER_TIME), &get(HEADER_NONCE), b"");
        let sig = base64::engine::general_purpose::STANDARD
            .decode(get(HEADER_SIGNATURE))
            .unwrap();
        assert!(key.public_key().verify(&msg, &sig));
        assert_eq!(get(HEADER_SERIAL), "NR-2000-123456-4");
        // Every call signs with a new nonce.
        assert_ne!(headers(&a).unwrap(), out);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
