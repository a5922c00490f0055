//! `np-vendor bundle build --manifest FILE --image FILE [--entitlement FILE]
//! [--keyring FILE] [--gzip] --out FILE`: writes an offline bundle (docs/formats.md), streaming the image
//! and checking its size and SHA-256 against the manifest on the way. The bundle goes to
//! a temporary file that is renamed onto `--out` only when it is complete.

use crate::failure::{CmdResult, Failure};
use crate::files;
use np_common::docs::{self, Document, Entitlement, Release, KEYRING_TYPE};
use np_common::keyring::Keyring;
use np_common::Envelope;
use np_server::blobs::bundle::{manifest_image_ref, write_bundle, BundleParts, BundleWriteError};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

/// Arguments of `bundle build`.
#[derive(clap::Args)]
pub struct Args {
    /// The signed release manifest envelope.
    #[arg(long)]
    manifest: PathBuf,
    /// The firmware image the manifest names.
    #[arg(long)]
    image: PathBuf,
    /// The box's signed entitlement envelope (optional).
    #[arg(long)]
    entitlement: Option<PathBuf>,
    /// The signed keyring envelope (optional).
    #[arg(long)]
    keyring: Option<PathBuf>,
    /// Compress the bundle with gzip.
    #[arg(long)]
    gzip: bool,
    /// Where to write the bundle.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `bundle build`.
pub fn run(args: Args) -> CmdResult {
    let manifest = files::read_doc(&args.manifest, "release manifest")?;
    let image_ref = manifest_image_ref(&manifest)
        .map_err(|e| Failure::refused(format!("{}: {e}", args.manifest.display())))?;
    let keyring = match &args.keyring {
        Some(p) => Some(read_typed(p, KEYRING_TYPE, "keyring")?),
        None => None,
    };
    let entitlement = match &args.entitlement {
        Some(p) => Some(read_typed(p, Entitlement::PAYLOAD_TYPE, "entitlement")?),
        None => None,
    };
    if let Some((kenv, _)) = &keyring {
        check_against_keyring(kenv, &manifest, entitlement.as_ref(), &args)?;
    }
    let file = File::open(&args.image).map_err(|e| {
        Failure::io(format!(
            "cannot read the image {}: {e}",
            args.image.display()
        ))
    })?;
    let size = file
        .metadata()
        .map_err(|e| {
            Failure::io(format!(
                "cannot read the image {}: {e}",
                args.image.display()
            ))
        })?
        .len();
    if size != image_ref.size {
        return Err(Failure::refused(format!(
            "the image {} is {size} bytes but the manifest names {} bytes; it is not the image of this release",
            args.image.display(),
            image_ref.size
        )));
    }
    let mut entries = vec![];
    if keyring.is_some() {
        entries.push("keyring.json");
    }
    entries.push("manifest.json");
    if entitlement.is_some() {
        entries.push("entitlement.json");
    }
    entries.push("image");
    let parts = BundleParts {
        keyring: keyring.map(|(_, b)| b),
        manifest,
        entitlement: entitlement.map(|(_, b)| b),
        image: BufReader::with_capacity(64 * 1024, file),
        image_ref,
    };
    let tmp = files::temp_beside(&args.out)?;
    let out = BufWriter::with_capacity(64 * 1024, tmp);
    let out = write_bundle(out, parts, args.gzip).map_err(|e| match e {
        BundleWriteError::Io(e) => Failure::io(format!("cannot write {}: {e}", args.out.display())),
        other => Failure::refused(format!("{}: {other}", args.image.display())),
    })?;
    let tmp = out.into_inner().map_err(|e| {
        Failure::io(format!(
            "cannot write {}: {}",
            args.out.display(),
            e.error()
        ))
    })?;
    files::persist(tmp, &args.out)?;
    let written = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    np_server::outln!(
        "wrote bundle {} ({} bytes{}): {}",
        args.out.display(),
        written,
        if args.gzip { ", gzip" } else { "" },
        entries.join(", ")
    );
    Ok(())
}

/// Reads an envelope file that must have `payload_type`; returns it and its bytes.
fn read_typed(path: &Path, payload_type: &str, what: &str) -> Result<(Envelope, Vec<u8>), Failure> {
    let bytes = files::read_doc(path, what)?;
    let env = Envelope::parse(&bytes)
        .map_err(|e| Failure::refused(format!("{}: {e}", path.display())))?;
    if env.payload_type != payload_type {
        return Err(Failure::refused(format!(
            "{} is not a signed {what} (its payloadType is {:?})",
            path.display(),
            env.payload_type.chars().take(100).collect::<String>()
        )));
    }
    Ok((env, bytes))
}

/// With a keyring in the bundle, its release (and entitlement) keys must have signed the
/// manifest (and entitlement), or every box would reject the bundle. The keyring itself is
/// checked against the root by the box (and by `np-vendor verify`).
fn check_against_keyring(
    kenv: &Envelope,
    manifest: &[u8],
    entitlement: Option<&(Envelope, Vec<u8>)>,
    args: &Args,
) -> CmdResult {
    let keyring: Keyring = kenv
        .payload_bytes()
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or_else(|| {
            let p = args.keyring.as_deref().unwrap_or(Path::new("keyring"));
            Failure::refused(format!(
                "{}: the keyring's payload is not valid",
                p.display()
            ))
        })?;
    let menv = Envelope::parse(manifest)
        .map_err(|e| Failure::refused(format!("{}: {e}", args.manifest.display())))?;
    docs::verify::<Release>(&menv, &keyring).map_err(|e| {
        Failure::refused(format!(
            "{} does not verify under the bundle's keyring: {e}",
            args.manifest.display()
        ))
    })?;
    if let (Some((eenv, _)), Some(p)) = (entitlement, &args.entitlement) {
        docs::verify::<Entitlement>(eenv, &keyring).map_err(|e| {
            Failure::refused(format!(
                "{} does not verify under the bundle's keyring: {e}",
                p.display()
            ))
        })?;
    }
    Ok(())
}
