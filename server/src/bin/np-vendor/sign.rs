//! `np-vendor sign --kind KIND --key FILE --in PAYLOAD.json --out FILE`: checks that the
//! payload is a valid document of that kind (no unknown fields), then writes the DSSE
//! envelope of its canonical JSON signed by the key.

use crate::failure::{CmdResult, Failure};
use crate::files;
use np_common::docs::{self, Action, Document, Entitlement, Release, TimeToken, KEYRING_TYPE};
use np_common::keyring::Keyring;
use np_common::{Envelope, SecretKey};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The document kinds np-vendor signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Keyring,
    Entitlement,
    Time,
    Release,
    Action,
}

/// Arguments of `sign`.
#[derive(clap::Args)]
pub struct Args {
    /// The document kind of the payload.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The private key to sign with.
    #[arg(long)]
    key: PathBuf,
    /// The payload JSON.
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the signed envelope.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `sign`.
pub fn run(args: Args) -> CmdResult {
    let bytes = files::read_doc(&args.input, "payload")?;
    let key = files::read_secret_key(&args.key)?;
    let (env, what) = match args.kind {
        Kind::Keyring => {
            let k: Keyring = parse_payload(&bytes, &args.input, "keyring")?;
            check_keyids(&k)?;
            (k.sign(&[&key]), format!("keyring version {}", k.version))
        }
        Kind::Entitlement => {
            let e: Entitlement = parse_payload(&bytes, &args.input, Entitlement::KIND)?;
            let what = format!("entitlement for {} (sequence {})", e.serial, e.sequence);
            (docs::sign(&e, &key), what)
        }
        Kind::Time => {
            let t: TimeToken = parse_payload(&bytes, &args.input, TimeToken::KIND)?;
            let what = format!("time token {}", t.now);
            (docs::sign(&t, &key), what)
        }
        Kind::Release => {
            let r: Release = parse_payload(&bytes, &args.input, Release::KIND)?;
            let what = format!("release manifest {} {}", r.product, r.version);
            (docs::sign(&r, &key), what)
        }
        Kind::Action => {
            let a: Action = parse_payload(&bytes, &args.input, Action::KIND)?;
            let what = format!("action for {}", a.serial);
            (docs::sign(&a, &key), what)
        }
    };
    write_envelope(&env, &args.out)?;
    np_server::outln!(
        "signed the {what} with key {} into {}",
        key.public_key().key_id(),
        args.out.display()
    );
    Ok(())
}

/// Writes an envelope as pretty JSON, atomically.
pub fn write_envelope(env: &Envelope, out: &Path) -> CmdResult {
    files::write_atomic(out, env.to_json_pretty().as_bytes())
}

/// Parses a payload as document type `T`, refusing fields `T` does not know (they would
/// be dropped from the signed bytes without anybody noticing).
pub fn parse_payload<T: serde::Serialize + serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    kind: &str,
) -> Result<T, Failure> {
    let doc: T = serde_json::from_slice(bytes).map_err(|e| {
        Failure::refused(format!(
            "{} is not a valid {kind} payload: {e}",
            path.display()
        ))
    })?;
    let given: Value = serde_json::from_slice(bytes)
        .map_err(|e| Failure::refused(format!("{} is not JSON: {e}", path.display())))?;
    let canonical = serde_json::to_value(&doc)
        .map_err(|e| Failure::refused(format!("{} cannot be re-encoded: {e}", path.display())))?;
    if let Some(field) = unknown_field(&given, &canonical, String::new()) {
        return Err(Failure::refused(format!(
            "{} has the field {field:?}, which a {kind} does not have; remove it or fix its name",
            path.display()
        )));
    }
    Ok(doc)
}

/// The path of the first object key in `given` that `canonical` lacks.
fn unknown_field(given: &Value, canonical: &Value, at: String) -> Option<String> {
    match (given, canonical) {
        (Value::Object(g), Value::Object(c)) => g.iter().find_map(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match c.get(k) {
                None => Some(path),
                Some(cv) => unknown_field(v, cv, path),
            }
        }),
        (Value::Array(g), Value::Array(c)) => g
            .iter()
            .zip(c)
            .enumerate()
            .find_map(|(i, (gv, cv))| unknown_field(gv, cv, format!("{at}[{i}]"))),
        _ => None,
    }
}

/// Refuses a keyring whose key ids are not the SHA-256 of their public keys.
pub fn check_keyids(k: &Keyring) -> CmdResult {
    for entry in &k.keys {
        let actual = entry.public_key.key_id();
        if actual != entry.keyid {
            return Err(Failure::refused(format!(
                "the keyring lists key id {} for public key {}, whose key id is {actual}",
                entry.keyid,
                entry.public_key.to_base64()
            )));
        }
    }
    if k.root.threshold == 0 || k.root.threshold as usize > k.root.keys.len() {
        return Err(Failure::refused(format!(
            "the keyring's root threshold {} is impossible with {} root keys",
            k.root.threshold,
            k.root.keys.len()
        )));
    }
    Ok(())
}

/// The payload type a kind signs.
#[cfg(test)]
fn payload_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Keyring => KEYRING_TYPE,
        Kind::Entitlement => Entitlement::PAYLOAD_TYPE,
        Kind::Time => TimeToken::PAYLOAD_TYPE,
        Kind::Release => Release::PAYLOAD_TYPE,
        Kind::Action => Action::PAYLOAD_TYPE,
    }
}

/// Signs with several keys (used by `keyring sign`).
pub fn sign_keyring(k: &Keyring, keys: &[SecretKey]) -> Envelope {
    let refs: Vec<&SecretKey> = keys.iter().collect();
    let env = k.sign(&refs);
    debug_assert_eq!(env.payload_type, KEYRING_TYPE);
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_at_any_depth() {
        let c = json!({"a": 1, "b": [{"x": 1}]});
        assert_eq!(unknown_field(&json!({"a": 2}), &c, String::new()), None);
        assert_eq!(
            unknown_field(&json!({"a": 2, "z": 0}), &c, String::new()),
            Some("z".to_owned())
        );
        assert_eq!(
            unknown_field(&json!({"b": [{"x": 1, "y": 2}]}), &c, String::new()),
            Some("b[0].y".to_owned())
        );
    }

    #[test]
    fn every_kind_has_its_own_payload_type() {
        let all = [
            Kind::Keyring,
            Kind::Entitlement,
            Kind::Time,
            Kind::Release,
            Kind::Action,
        ];
        let mut types: Vec<_> = all.iter().map(|k| payload_type(*k)).collect();
        types.dedup();
        assert_eq!(types.len(), 5);
        assert_eq!(payload_type(Kind::Time), "application/vnd.np.time+json");
    }

    #[test]
    fn a_release_with_a_typo_is_refused() {
        let p = Path::new("r.json");
        let r = parse_payload::<Release>(b"{\"product\": 1}", p, "release");
        assert_eq!(r.err().map(|f| f.exit_code()), Some(1));
    }
}
