//! `np-vendor verify --root FILE [--keyring FILE] FILE`: identifies the document by its
//! payloadType and verifies it. A keyring must be signed under the pinned root (and by a
//! threshold of its own root keys) and unexpired now; any other document needs
//! `--keyring`, which is verified under the root first.

use crate::failure::{CmdResult, Failure};
use crate::files;
use np_common::docs::{
    self, Action, ActionKind, Document, Entitlement, Release, TimeToken, KEYRING_TYPE,
};
use np_common::keyring::{accept_keyring, AcceptedKeyring, Keyring, RootSpec};
use np_common::{Envelope, KeyId, PublicKey, Timestamp};
use std::path::{Path, PathBuf};

/// Arguments of `verify`.
#[derive(clap::Args)]
pub struct Args {
    /// A file holding the base64 root public key.
    #[arg(long)]
    root: PathBuf,
    /// The signed keyring that holds the document's signing key (not for keyrings).
    #[arg(long)]
    keyring: Option<PathBuf>,
    /// The signed document (a DSSE envelope).
    file: PathBuf,
}

/// Runs `verify`.
pub fn run(args: Args) -> CmdResult {
    let root = files::read_public_key(&args.root, "root public key")?;
    let env = read_envelope(&args.file)?;
    let now = Timestamp::now();
    if env.payload_type == KEYRING_TYPE {
        let accepted = check_keyring(&env, &root, &args.file, now)?;
        print_keyring(&accepted.keyring);
        return Ok(());
    }
    let kind = env.payload_type.as_str();
    if ![
        Entitlement::PAYLOAD_TYPE,
        TimeToken::PAYLOAD_TYPE,
        Release::PAYLOAD_TYPE,
        Action::PAYLOAD_TYPE,
    ]
    .contains(&kind)
    {
        return Err(Failure::refused(format!(
            "{} has payloadType {:?}, which is not an np document kind (keyring, entitlement, time, release, action)",
            args.file.display(),
            kind.chars().take(100).collect::<String>()
        )));
    }
    let Some(keyring_path) = &args.keyring else {
        return Err(Failure::usage(format!(
            "{} is not a keyring; give --keyring FILE (the signed keyring holding its signing key)",
            args.file.display()
        )));
    };
    let kenv = read_envelope(keyring_path)?;
    if kenv.payload_type != KEYRING_TYPE {
        return Err(Failure::refused(format!(
            "--keyring {} is not a keyring (its payloadType is {:?})",
            keyring_path.display(),
            kenv.payload_type.chars().take(100).collect::<String>()
        )));
    }
    let keyring = check_keyring(&kenv, &root, keyring_path, now)?.keyring;
    let file = &args.file;
    match kind {
        k if k == Entitlement::PAYLOAD_TYPE => {
            let (e, by) = verify_doc::<Entitlement>(&env, &keyring, file)?;
            np_server::outln!(
                "verified entitlement for {} ({}): status {}, coverage until {}, sequence {}, issued {}; signed by {}",
                e.serial, e.model, e.status, e.coverage_end, e.sequence, e.issued_at, by
            );
        }
        k if k == TimeToken::PAYLOAD_TYPE => {
            let (t, by) = verify_doc::<TimeToken>(&env, &keyring, file)?;
            np_server::outln!(
                "verified time token {} (nonce {}); signed by {}",
                t.now,
                t.nonce,
                by
            );
        }
        k if k == Release::PAYLOAD_TYPE => {
            let (r, by) = verify_doc::<Release>(&env, &keyring, file)?;
            let models: Vec<&str> = r.models.iter().map(|m| m.as_str()).collect();
            np_server::outln!(
                "verified release manifest {} {} (channel {}, security version {}, models {}, from {}, released {}); image {} {} bytes sha256 {}; signed by {}",
                r.product, r.version, r.channel, r.security_version, models.join(","),
                r.min_from_version, r.released_at, r.image.name, r.image.size, r.image.sha256, by
            );
        }
        _ => {
            let (a, by) = verify_doc::<Action>(&env, &keyring, file)?;
            let version = a.version.map(|v| format!(" {v}")).unwrap_or_default();
            let what = match a.action {
                ActionKind::Upgrade => "upgrade",
                ActionKind::Rollback => "rollback",
                ActionKind::Diagnostics => "diagnostics",
            };
            np_server::outln!(
                "verified action {what}{version} for {} issued {}; signed by {}",
                a.serial,
                a.issued_at,
                by
            );
        }
    }
    Ok(())
}

/// Reads and parses an envelope file, refusing junk with a sentence naming the file.
pub fn read_envelope(path: &Path) -> Result<Envelope, Failure> {
    let bytes = files::read_doc(path, "signed document")?;
    Envelope::parse(&bytes).map_err(|e| Failure::refused(format!("{}: {e}", path.display())))
}

/// Accepts a keyring under the pinned root at `now` (no stored keyring).
pub fn check_keyring(
    env: &Envelope,
    root: &PublicKey,
    path: &Path,
    now: Timestamp,
) -> Result<AcceptedKeyring, Failure> {
    accept_keyring(env, &RootSpec::pinned(vec![root.clone()]), None, now).map_err(|e| {
        Failure::refused(format!(
            "the keyring {} does not verify under root key {}: {e}",
            path.display(),
            root.key_id()
        ))
    })
}

fn verify_doc<T: Document>(
    env: &Envelope,
    keyring: &Keyring,
    path: &Path,
) -> Result<(T, String), Failure> {
    let doc = docs::verify::<T>(env, keyring)
        .map_err(|e| Failure::refused(format!("{} does not verify: {e}", path.display())))?;
    let signers: Vec<KeyId> = env
        .verified_signers(T::PAYLOAD_TYPE, keyring.keys_with_role(T::ROLE))
        .map(|(_, s)| s)
        .unwrap_or_default();
    let by: Vec<String> = signers
        .iter()
        .map(|k| format!("{} key {k}", T::ROLE))
        .collect();
    Ok((doc, by.join(", ")))
}

fn print_keyring(k: &Keyring) {
    np_server::outln!(
        "verified keyring version {} (expires {}, root threshold {} of {} keys)",
        k.version,
        k.expires,
        k.root.threshold,
        k.root.keys.len()
    );
    for entry in &k.keys {
        let roles: Vec<String> = entry.roles.iter().map(|r| r.to_string()).collect();
        np_server::outln!("  key {} roles {}", entry.keyid, roles.join(","));
    }
}
