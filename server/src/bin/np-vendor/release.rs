//! `np-vendor release upload|list|set`: streams an image to `PUT /api/v1/blobs` (hashing
//! it on the way, so the server's digest is checked), creates the signed release, lists
//! releases and steers their rollout.

use crate::client::{field, items, print_json, progress, Client, ServerArgs};
use crate::failure::{CmdResult, Failure};
use crate::table;
use np_common::{Model, Sha256Digest, Version};
use reqwest::blocking::Body;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Release commands.
#[derive(clap::Subcommand)]
pub enum ReleaseCommand {
    /// Upload an image and publish a signed release for it.
    Upload(UploadArgs),
    /// List releases with their rollout state and install counts.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Change a release's rollout: a percentage, pause, resume or yank.
    Set(SetArgs),
}

/// Arguments of `release upload`.
#[derive(clap::Args)]
pub struct UploadArgs {
    /// The image file.
    image: PathBuf,
    /// The release's version (semver, such as 5.3.0; no build metadata).
    #[arg(long)]
    version: String,
    /// Models the release installs on (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    models: Vec<String>,
    /// The anti-rollback floor: a box never installs a release whose security version
    /// is below that of the firmware it runs.
    #[arg(long)]
    security_version: u64,
    /// The oldest version a box may upgrade from (0.0.0: any); it must be below
    /// --version and reachable from a listed model's newest release.
    #[arg(long)]
    min_from_version: String,
    /// The channel boxes follow (every box follows stable today).
    #[arg(long, default_value = "stable")]
    channel: String,
    /// Release notes shown to staff and boxes.
    #[arg(long, default_value = "")]
    notes: String,
    /// RFC 3339 release time (default: now, set by the server).
    #[arg(long)]
    released_at: Option<String>,
    /// The image's name in the manifest (default: the file's name).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Arguments of `release set`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(false)
    .args(["rollout", "pause", "resume", "yank"])))]
pub struct SetArgs {
    /// The release's version.
    version: String,
    /// Percentage of boxes (0-100) that get the offer.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    rollout: Option<u8>,
    /// Stop offering the release (boxes that have it keep it).
    #[arg(long)]
    pause: bool,
    /// Offer a paused release again (refused for a yanked one).
    #[arg(long)]
    resume: bool,
    /// Withdraw the release for good: never offered nor bundled again.
    #[arg(long)]
    yank: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs a release command.
pub fn run(cmd: ReleaseCommand) -> CmdResult {
    match cmd {
        ReleaseCommand::Upload(a) => upload(a),
        ReleaseCommand::List { server } => {
            let c = Client::new(&server)?;
            let v = c.get(&["api", "v1", "releases"], &[])?;
            if server.json {
                print_json(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items(&v).iter().map(release_row).collect();
            table::print(
                &[
                    "VERSION",
                    "CHANNEL",
                    "SECURITY",
                    "MODELS",
                    "ROLLOUT",
                    "STATE",
                    "INSTALLS",
                    "RELEASED_AT",
                ],
                &rows,
                "no releases",
            );
            Ok(())
        }
        ReleaseCommand::Set(a) => {
            let body = if let Some(n) = a.rollout {
                json!({"rollout_percent": n})
            } else if a.pause {
                json!({"paused": true})
            } else if a.resume {
                json!({"paused": false})
            } else {
                json!({"yanked": true})
            };
            let c = Client::new(&a.server)?;
            let path = ["api", "v1", "releases", a.version.as_str()];
            let v = c.send_json(Method::PATCH, &path, &body)?;
            if a.server.json {
                print_json(&v);
            } else {
                np_server::outln!(
                    "{}",
                    table::render(
                        &[
                            "VERSION",
                            "CHANNEL",
                            "SECURITY",
                            "MODELS",
                            "ROLLOUT",
                            "STATE",
                            "INSTALLS",
                            "RELEASED_AT"
                        ],
                        &[release_row(&v)]
                    )
                    .trim_end()
                );
            }
            Ok(())
        }
    }
}

/// One row of the release table. An entry is `{release: <manifest payload>, manifest,
/// rollout_percent, paused, yanked, installs, ...}`; fields are looked up on the entry
/// first, then on its payload.
fn release_row(entry: &Value) -> Vec<String> {
    let inner = entry.get("release").unwrap_or(entry);
    let pick = |k: &str| match field(entry, k) {
        v if v == "-" => field(inner, k),
        v => v,
    };
    let models = inner
        .get("models")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_else(|| "-".into());
    let flag = |k: &str| entry.get(k).and_then(Value::as_bool) == Some(true);
    let state = if flag("yanked") {
        "yanked"
    } else if flag("paused") {
        "paused"
    } else {
        "active"
    };
    let rollout = match pick("rollout_percent").as_str() {
        "-" => "-".to_owned(),
        p => format!("{p}%"),
    };
    vec![
        pick("version"),
        pick("channel"),
        pick("security_version"),
        models,
        rollout,
        state.to_owned(),
        pick("installs"),
        pick("released_at"),
    ]
}

/// Reads a file, feeding a shared hasher and a progress bar.
struct Tee {
    file: File,
    hasher: Arc<Mutex<Sha256>>,
    bar: indicatif::ProgressBar,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Ok(mut h) = self.hasher.lock() {
            h.update(&buf[..n]);
        }
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn upload(a: UploadArgs) -> CmdResult {
    let version = Version::parse(&a.version).map_err(|e| {
        Failure::refused(format!(
            "--version {:?} is not a semver version: {e}",
            a.version
        ))
    })?;
    let from = Version::parse(&a.min_from_version).map_err(|e| {
        Failure::refused(format!(
            "--min-from-version {:?} is not a semver version: {e}",
            a.min_from_version
        ))
    })?;
    for m in &a.models {
        Model::parse(m).map_err(|e| Failure::refused(format!("--models {m:?}: {e}")))?;
    }
    let name = match &a.name {
        Some(n) => n.clone(),
        None => a
            .image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("image-{version}.img")),
    };
    let c = Client::new(&a.server)?;
    let file = File::open(&a.image)
        .map_err(|e| Failure::io(format!("cannot read the image {}: {e}", a.image.display())))?;
    let size = file
        .metadata()
        .map_err(|e| Failure::io(format!("cannot read the image {}: {e}", a.image.display())))?
        .len();
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let bar = progress(Some(size), "uploading");
    let tee = Tee {
        file,
        hasher: Arc::clone(&hasher),
        bar: bar.clone(),
    };
    let req = c
        .request(Method::PUT, c.url(&["api", "v1", "blobs"]))
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::sized(tee, size));
    let blob = c.json(req)?;
    bar.finish_and_clear();
    let ours = hasher
        .lock()
        .map(|h| Sha256Digest::from_bytes(h.clone().finalize().into()))
        .map_err(|_| Failure::io("the upload's hasher failed"))?;
    let theirs = blob
        .get("sha256")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let their_size = blob.get("size").and_then(Value::as_u64);
    if theirs != ours.to_hex() || their_size != Some(size) {
        return Err(Failure::io(format!(
            "the server stored {theirs} ({} bytes) but the image {} is {} ({size} bytes); upload it again",
            their_size.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string()),
            a.image.display(),
            ours
        )));
    }
    let mut body = json!({
        "version": version.to_string(),
        "security_version": a.security_version,
        "models": a.models,
        "channel": a.channel,
        "min_from_version": from.to_string(),
        "image": {"name": name, "sha256": ours.to_hex()},
        "notes": a.notes,
    });
    if let Some(t) = a.released_at {
        body["released_at"] = json!(t);
    }
    let v = c.send_json(Method::POST, &["api", "v1", "releases"], &body)?;
    if a.server.json {
        print_json(&v);
    } else {
        np_server::outln!(
            "uploaded {} ({size} bytes, sha256 {ours})",
            a.image.display()
        );
        np_server::outln!("published release {version}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_row_reads_the_entry_and_its_payload() {
        let entry = json!({
            "release": {"version": "5.3.0", "channel": "stable", "security_version": 4,
                        "models": ["NR-1000", "NR-2000"], "released_at": "2026-10-01T00:00:00Z"},
            "manifest": {}, "rollout_percent": 25, "paused": true, "yanked": false, "installs": 3
        });
        assert_eq!(
            release_row(&entry),
            [
                "5.3.0",
                "stable",
                "4",
                "NR-1000,NR-2000",
                "25%",
                "paused",
                "3",
                "2026-10-01T00:00:00Z"
            ]
        );
    }
}
