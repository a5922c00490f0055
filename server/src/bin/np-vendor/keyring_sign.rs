//! `np-vendor keyring sign --root-key FILE... --in keyring.json --out FILE`: checks the
//! keyring payload (key ids, root threshold, enough of its own root keys among the
//! signers) and signs it with every root key given.

use crate::failure::{CmdResult, Failure};
use crate::files;
use crate::sign::{check_keyids, parse_payload, sign_keyring, write_envelope};
use np_common::keyring::Keyring;
use std::path::PathBuf;

/// Keyring commands.
#[derive(clap::Subcommand)]
pub enum KeyringCommand {
    /// Sign a keyring payload with one or more root keys.
    Sign(SignArgs),
}

/// Arguments of `keyring sign`.
#[derive(clap::Args)]
pub struct SignArgs {
    /// A root private key (repeat for each root key that signs).
    #[arg(long = "root-key", required = true, num_args = 1..)]
    root_keys: Vec<PathBuf>,
    /// The keyring payload JSON.
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the signed keyring envelope.
    #[arg(long)]
    out: PathBuf,
}

/// Runs a keyring command.
pub fn run(cmd: KeyringCommand) -> CmdResult {
    let KeyringCommand::Sign(args) = cmd;
    let bytes = files::read_doc(&args.input, "keyring payload")?;
    let keyring: Keyring = parse_payload(&bytes, &args.input, "keyring")?;
    check_keyids(&keyring)?;
    let mut keys = Vec::new();
    for path in &args.root_keys {
        let k = files::read_secret_key(path)?;
        let id = k.public_key().key_id();
        if keys
            .iter()
            .any(|o: &np_common::SecretKey| o.public_key().key_id() == id)
        {
            return Err(Failure::usage(format!(
                "the root key {} is given twice (key id {id})",
                path.display()
            )));
        }
        keys.push(k);
    }
    let own = keys
        .iter()
        .filter(|k| keyring.root.keys.contains(&k.public_key()))
        .count();
    if own < keyring.root.threshold as usize {
        return Err(Failure::refused(format!(
            "only {own} of the given keys are among the keyring's own root keys, which need {} signatures; sign with its root keys too",
            keyring.root.threshold
        )));
    }
    let env = sign_keyring(&keyring, &keys);
    write_envelope(&env, &args.out)?;
    let ids: Vec<String> = keys
        .iter()
        .map(|k| k.public_key().key_id().to_string())
        .collect();
    np_server::outln!(
        "signed keyring version {} with {} root key(s) ({}) into {}",
        keyring.version,
        keys.len(),
        ids.join(", "),
        args.out.display()
    );
    Ok(())
}
