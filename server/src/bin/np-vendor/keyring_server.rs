//! `np-vendor keyring draft` and `keyring install`: key rotation and keyring renewal on the
//! server. `draft` asks the server for the next keyring (new keys for the rotated roles,
//! held by the server unused) and writes its payload for offline signing with
//! `keyring sign`; `install` sends the root-signed keyring, which the server checks as a
//! box would, and from then on signs with the new keys.

use crate::client::{print_json, Client, ServerArgs};
use crate::failure::{CmdResult, Failure};
use crate::files;
use np_common::Envelope;
use serde_json::{json, Value};
use std::path::PathBuf;

/// A role that can get a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RotateRole {
    /// The key that signs entitlements and staff actions.
    Entitlement,
    /// The key that signs time tokens.
    Time,
    /// The key that signs release manifests.
    Release,
}

impl RotateRole {
    fn name(self) -> &'static str {
        match self {
            RotateRole::Entitlement => "entitlement",
            RotateRole::Time => "time",
            RotateRole::Release => "release",
        }
    }
}

/// Arguments of `keyring draft`.
#[derive(clap::Args)]
pub struct DraftArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A role whose key is replaced (repeat for several); none: a renewal with a new expiry.
    #[arg(long, value_enum)]
    rotate: Vec<RotateRole>,
    /// When the new keyring expires: a date (2028-12-31) or an RFC 3339 time; default two
    /// years from now.
    #[arg(long, value_name = "DATE")]
    expires: Option<String>,
    /// A root rotation: the public key file of a root key of the new keyring (repeat for
    /// several; `np-vendor key new` writes KEY.pub). Sign the draft with the old root
    /// key(s) and the new ones.
    #[arg(long = "new-root-key", value_name = "FILE")]
    new_root_keys: Vec<PathBuf>,
    /// With --new-root-key: how many root signatures the new keyring needs (default 1).
    #[arg(long, value_name = "N", requires = "new_root_keys")]
    root_threshold: Option<u32>,
    /// Where to write the payload to sign (`np-vendor keyring sign --in FILE`).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Arguments of `keyring install`.
#[derive(clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The keyring signed with the root key(s) (`np-vendor keyring sign --out FILE`).
    file: PathBuf,
}

/// Runs `keyring draft`.
pub fn draft(args: DraftArgs) -> CmdResult {
    let client = Client::new(&args.server)?;
    let mut body = json!({"rotate": args.rotate.iter().map(|r| r.name()).collect::<Vec<_>>()});
    if let Some(e) = &args.expires {
        body["expires"] = json!(e);
    }
    if !args.new_root_keys.is_empty() {
        let mut keys = Vec::new();
        for p in &args.new_root_keys {
            keys.push(files::read_public_key(p, "--new-root-key")?.to_base64());
        }
        if let Some(t) = args.root_threshold {
            if t == 0 || t as usize > keys.len() {
                return Err(Failure::usage(format!(
                    "--root-threshold {t} must be between 1 and the number of --new-root-key files ({})",
                    keys.len()
                )));
            }
        }
        body["root_keys"] = json!(keys);
        body["root_threshold"] = json!(args.root_threshold.unwrap_or(1));
    }
    let answer = client.send_json(
        reqwest::Method::POST,
        &["api", "v1", "keyring", "drafts"],
        &body,
    )?;
    let payload = answer
        .get("payload")
        .ok_or_else(|| Failure::io("the server's answer has no payload"))?;
    let text = serde_json::to_string_pretty(payload)
        .map_err(|e| Failure::io(format!("cannot encode the payload: {e}")))?;
    files::write_atomic(&args.out, format!("{text}\n").as_bytes())?;
    if args.server.json {
        print_json(&answer);
    } else {
        println!(
            "wrote the draft of keyring version {} (expires {}) to {}",
            payload["version"],
            payload["expires"].as_str().unwrap_or("?"),
            args.out.display()
        );
        // A root rotation is signed by the old root key(s) and the new ones.
        let keys: String = std::iter::once("root.key".to_owned())
            .chain(args.new_root_keys.iter().map(|p| {
                let shown = p.display().to_string();
                shown
                    .strip_suffix(".pub")
                    .map(|s| format!("{s}.key"))
                    .unwrap_or_else(|| format!("<the private key of {shown}>"))
            }))
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!(
            "next: on the offline machine, np-vendor keyring sign --root-key {keys} --in {} --out keyring.signed.json; then np-vendor keyring install keyring.signed.json",
            args.out.display()
        );
    }
    Ok(())
}

/// Runs `keyring install`.
pub fn install(args: InstallArgs) -> CmdResult {
    let client = Client::new(&args.server)?;
    let bytes = files::read_doc(&args.file, "signed keyring")?;
    let env = Envelope::parse(&bytes).map_err(|e| {
        Failure::refused(format!(
            "{} is not a signed keyring (make it with np-vendor keyring sign): {e}",
            args.file.display()
        ))
    })?;
    let body: Value = serde_json::to_value(&env)
        .map_err(|e| Failure::io(format!("cannot encode the keyring: {e}")))?;
    let answer = client.send_json(reqwest::Method::POST, &["api", "v1", "keyring"], &body)?;
    if args.server.json {
        print_json(&answer);
    } else {
        println!(
            "installed keyring version {} (was {}); re-signed {} release(s) and {} device(s)",
            answer["version"],
            answer["previous"],
            answer["releases_resigned"],
            answer["devices_resigned"]
        );
    }
    Ok(())
}
