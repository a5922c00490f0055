//! `np-vendor release upload|list|set`: streams an image to `PUT /api/v1/blobs` (hashing
//! it on the way, so the server's digest is checked), creates the signed release, lists
//! releases (with a plan's stage and a halt by the rollout
//! guard) and steers their rollout: a percent, pause, resume, yank or a staged plan.

use crate::client::{field, items, print_json, progress, Client, ServerArgs};
use crate::failure::{CmdResult, Failure};
use crate::table;
use np_common::{Model, Sha256Digest, Version};
use np_server::domain::plan;
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
    /// Change a release's rollout: a percentage, pause, resume, yank or a staged plan.
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

/// Arguments of `release set`: one change at a time (checked by [`change_of`], so that a
/// wrong combination is named by its flags).
#[derive(clap::Args)]
pub struct SetArgs {
    /// The release's version.
    version: String,
    /// Percentage of boxes (0-100) that get the offer (with a plan: until its next stage).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    rollout: Option<u8>,
    /// Stop offering the release (boxes that have it keep it).
    #[arg(long)]
    pause: bool,
    /// Offer a paused release again, or one the rollout guard halted (refused for a yanked
    /// one).
    #[arg(long)]
    resume: bool,
    /// Withdraw the release for good: never offered nor bundled again.
    #[arg(long)]
    yank: bool,
    /// A staged plan, PERCENT:HOLD stages then a last PERCENT, such as 1:24h,10:24h,100
    /// (holds in d, h, m, s); it starts at its first stage now.
    #[arg(long, value_name = "STAGES")]
    stages: Option<String>,
    /// Halt the release when this share of the boxes that tried it failed or rolled back.
    /// With --stages, part of the new plan; alone, it changes the guard of the release's
    /// plan and keeps its stages and progress.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    max_failure_percent: Option<u8>,
    /// How many boxes must have tried it before the guard judges (default 20). With
    /// --stages or alone, as for --max-failure-percent.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    min_attempts: Option<u32>,
    /// Drop the release's plan (and its guard); its rollout stays at the percent the plan
    /// had reached.
    #[arg(long)]
    no_plan: bool,
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
            let change = change_of(&a)?;
            let c = Client::new(&a.server)?;
            let body = match change {
                SetChange::Stages(text) => {
                    if a.max_failure_percent.is_none() {
                        eprintln!(
                            "note: this plan has no automatic halt; add --max-failure-percent to have the server pause the release when too many boxes fail"
                        );
                    }
                    plan_body(&text, a.max_failure_percent, a.min_attempts)?
                }
                SetChange::Guard => {
                    let current = c.get(&["api", "v1", "releases", a.version.as_str()], &[])?;
                    guard_body(&a.version, &current, a.max_failure_percent, a.min_attempts)?
                }
                SetChange::NoPlan => json!({ "plan": null }),
                SetChange::Rollout(n) => json!({"rollout_percent": n}),
                SetChange::Pause => json!({"paused": true}),
                SetChange::Resume => json!({"paused": false}),
                SetChange::Yank => json!({"yanked": true}),
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

/// The one change a `release set` asks for.
#[derive(Debug, PartialEq)]
enum SetChange {
    Rollout(u8),
    Pause,
    Resume,
    Yank,
    Stages(String),
    /// Only the guard's settings of the current plan.
    Guard,
    NoPlan,
}

/// The change the flags ask for: exactly one of --rollout, --pause, --resume, --yank,
/// --stages (with --max-failure-percent and --min-attempts), the guard's flags alone, or
/// --no-plan. A wrong combination is a usage error that names the flags.
fn change_of(a: &SetArgs) -> Result<SetChange, Failure> {
    let guard = a.max_failure_percent.is_some() || a.min_attempts.is_some();
    let mut given: Vec<(&str, SetChange)> = Vec::new();
    if let Some(n) = a.rollout {
        given.push(("--rollout", SetChange::Rollout(n)));
    }
    if a.pause {
        given.push(("--pause", SetChange::Pause));
    }
    if a.resume {
        given.push(("--resume", SetChange::Resume));
    }
    if a.yank {
        given.push(("--yank", SetChange::Yank));
    }
    if let Some(t) = &a.stages {
        given.push(("--stages", SetChange::Stages(t.clone())));
    } else if guard {
        let flags = match (a.max_failure_percent.is_some(), a.min_attempts.is_some()) {
            (true, true) => "--max-failure-percent/--min-attempts",
            (true, false) => "--max-failure-percent",
            _ => "--min-attempts",
        };
        given.push((flags, SetChange::Guard));
    }
    if a.no_plan {
        given.push(("--no-plan", SetChange::NoPlan));
    }
    if a.no_plan && guard {
        return Err(Failure::usage(
            "--no-plan drops the plan and its guard: it cannot be combined with --max-failure-percent or --min-attempts",
        ));
    }
    match given.len() {
        0 => Err(Failure::usage(
            "give the change to make: --rollout PERCENT, --pause, --resume, --yank, --stages STAGES [--max-failure-percent N] [--min-attempts N], --max-failure-percent/--min-attempts alone (the current plan's guard), or --no-plan",
        )),
        1 => Ok(given.remove(0).1),
        _ => {
            let names: Vec<&str> = given.iter().map(|(n, _)| *n).collect();
            Err(Failure::usage(format!(
                "{} cannot be combined: give one change at a time",
                names.join(" and ")
            )))
        }
    }
}

/// The `PATCH` body that changes only the guard of the release's current plan: the same
/// stages (the server keeps their progress), the given settings, the current ones else.
fn guard_body(
    version: &str,
    current: &Value,
    max_failure_percent: Option<u8>,
    min_attempts: Option<u32>,
) -> Result<Value, Failure> {
    let Some(plan) = current.get("plan").filter(|p| p.is_object()) else {
        return Err(Failure::refused(format!(
            "release {version} has no plan, so --max-failure-percent and --min-attempts have nothing to guard; give the stages too, such as --stages 1:24h,10:24h,100"
        )));
    };
    let mut plan = plan.clone();
    if let Some(p) = max_failure_percent {
        plan["max_failure_percent"] = json!(p);
    }
    if let Some(n) = min_attempts {
        plan["min_attempts"] = json!(n);
    }
    Ok(json!({ "plan": plan }))
}

/// The `PATCH` body of `--stages`, checked here so that mistakes are named by the flag.
fn plan_body(
    text: &str,
    max_failure_percent: Option<u8>,
    min_attempts: Option<u32>,
) -> Result<Value, Failure> {
    let stages =
        plan::parse_stages(text).map_err(|e| Failure::usage(format!("--stages {text:?}: {e}")))?;
    let req = plan::PlanRequest {
        stages,
        max_failure_percent: max_failure_percent.map(i64::from),
        min_attempts: min_attempts.map(i64::from),
    };
    let built =
        plan::Plan::build(&req).map_err(|e| Failure::usage(format!("--stages {text:?}: {e}")))?;
    Ok(json!({ "plan": built }))
}

/// The STATE column: yanked, halted with the guard's figures, paused or active.
fn state_of(entry: &Value) -> String {
    let flag = |k: &str| entry.get(k).and_then(Value::as_bool) == Some(true);
    let halt = entry.get("halt").and_then(|h| h.get("figures"));
    if flag("yanked") {
        "yanked".to_owned()
    } else if let (true, Some(f)) = (flag("paused"), halt) {
        format!(
            "halted ({} of {} failed)",
            field(f, "failures"),
            field(f, "attempts")
        )
    } else if flag("paused") {
        "paused".to_owned()
    } else {
        "active".to_owned()
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
    let state = state_of(entry);
    let rollout = match (pick("rollout_percent").as_str(), entry.get("stage")) {
        ("-", _) => "-".to_owned(),
        (p, Some(st)) if st.is_object() => format!(
            "{p}% (stage {} of {})",
            field(st, "stage"),
            field(st, "stages")
        ),
        (p, _) => format!("{p}%"),
    };
    vec![
        pick("version"),
        pick("channel"),
        pick("security_version"),
        models,
        rollout,
        state,
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

/// Opens the image to upload and gives its size; a folder is refused here, before the
/// upload starts (reading it would fail mid-request as if the server were unreachable).
fn open_image(path: &std::path::Path) -> Result<(File, u64), Failure> {
    let file = File::open(path)
        .map_err(|e| Failure::io(format!("cannot read the image {}: {e}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(|e| Failure::io(format!("cannot read the image {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Failure::usage(format!(
            "{} is a folder, not an image file: give the image file itself",
            path.display()
        )));
    }
    Ok((file, meta.len()))
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
    if from >= version {
        return Err(Failure::usage(format!(
            "--min-from-version {from} must be below --version {version}: it is the oldest version a box may upgrade from (0.0.0: any)"
        )));
    }
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
    let (file, size) = open_image(&a.image)?;
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
    let v = match c.send_json(Method::POST, &["api", "v1", "releases"], &body) {
        Ok(v) => v,
        Err(f) if f.code() == Some("exists") => {
            // The release exists: if with this very image, the upload stored its image
            // again (the remedy for an image the server lost: `blob_missing`); say so.
            let current = c.get(&["api", "v1", "releases", &version.to_string()], &[])?;
            let same = current.pointer("/image/sha256").and_then(Value::as_str)
                == Some(ours.to_hex().as_str());
            if !same {
                return Err(f);
            }
            let words = f
                .message()
                .trim_end()
                .trim_end_matches("(exists)")
                .trim_end();
            let note = format!(
                "{words}; {} is that release's own image, and the server holds it again",
                a.image.display()
            );
            return Err(f.reworded(crate::client::with_code(&note, "exists")));
        }
        Err(f) => return Err(f),
    };
    for w in v
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let w = crate::words::cli_message("", w.as_str().unwrap_or_default(), None);
        eprintln!("warning: {w}");
    }
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_given_as_the_image_is_refused_as_usage() {
        let dir = tempfile::tempdir().unwrap();
        let f = open_image(dir.path()).unwrap_err();
        assert_eq!(f.exit_code(), 2);
        assert!(
            f.message().contains("is a folder, not an image file"),
            "{}",
            f.message()
        );
        let missing = dir.path().join("missing.img");
        assert_eq!(open_image(&missing).unwrap_err().exit_code(), 3);
        std::fs::write(&missing, b"abc").unwrap();
        assert_eq!(open_image(&missing).unwrap().1, 3);
    }

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

    #[test]
    fn a_halted_release_shows_the_guard_figures_and_its_stage() {
        let entry = json!({
            "release": {"version": "5.3.0", "channel": "stable", "security_version": 4,
                        "models": ["NR-2000"], "released_at": "2026-10-01T00:00:00Z"},
            "rollout_percent": 10, "paused": true, "yanked": false, "installs": 33,
            "stage": {"stage": 2, "stages": 3, "percent": 10, "next_at": null},
            "halt": {"at": "2026-11-01T00:00:00Z", "figures": {"attempts": 40, "failures": 7},
                     "max_failure_percent": 5}
        });
        let row = release_row(&entry);
        assert_eq!(
            (row[4].as_str(), row[5].as_str()),
            ("10% (stage 2 of 3)", "halted (7 of 40 failed)")
        );
    }

    fn set_args(args: &[&str]) -> SetArgs {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: SetArgs,
        }
        let mut argv = vec!["np-vendor", "5.3.0"];
        argv.extend_from_slice(args);
        <P as clap::Parser>::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn the_guard_s_flags_alone_change_only_the_guard_and_bad_combinations_name_the_flags() {
        assert_eq!(
            change_of(&set_args(&["--min-attempts", "30"])).unwrap(),
            SetChange::Guard
        );
        assert_eq!(
            change_of(&set_args(&["--max-failure-percent", "5"])).unwrap(),
            SetChange::Guard
        );
        assert_eq!(
            change_of(&set_args(&[
                "--stages",
                "100",
                "--max-failure-percent",
                "5"
            ]))
            .unwrap(),
            SetChange::Stages("100".into())
        );
        let e = change_of(&set_args(&[])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.message()
                .starts_with("give the change to make: --rollout"),
            "{}",
            e.message()
        );
        let e = change_of(&set_args(&["--pause", "--resume"])).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.message()),
            (
                2,
                "--pause and --resume cannot be combined: give one change at a time"
            )
        );
        let e = change_of(&set_args(&["--rollout", "5", "--min-attempts", "3"])).unwrap_err();
        assert_eq!(
            e.message(),
            "--rollout and --min-attempts cannot be combined: give one change at a time"
        );
        let e = change_of(&set_args(&["--no-plan", "--max-failure-percent", "3"])).unwrap_err();
        assert!(
            e.message().starts_with("--no-plan drops the plan"),
            "{}",
            e.message()
        );
        let e = change_of(&set_args(&["--no-plan", "--stages", "100"])).unwrap_err();
        assert_eq!(
            e.message(),
            "--stages and --no-plan cannot be combined: give one change at a time"
        );
    }

    #[test]
    fn a_guard_change_keeps_the_current_stages_and_settings() {
        let current = json!({"plan": {"stages": [{"percent": 1, "hold": "1d"}, {"percent": 100}],
            "max_failure_percent": 5, "min_attempts": 20}});
        assert_eq!(
            guard_body("5.3.0", &current, None, Some(40)).unwrap(),
            json!({"plan": {"stages": [{"percent": 1, "hold": "1d"}, {"percent": 100}],
                "max_failure_percent": 5, "min_attempts": 40}})
        );
        let e = guard_body("5.3.0", &json!({"plan": null}), Some(5), None).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(
            e.message().starts_with("release 5.3.0 has no plan"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn stages_are_checked_in_the_flag_s_words() {
        let body = plan_body("1:24h,10:24h,100", Some(5), None).unwrap();
        assert_eq!(
            body,
            json!({"plan": {"stages": [{"percent": 1, "hold": "1d"}, {"percent": 10, "hold": "1d"},
                {"percent": 100}], "max_failure_percent": 5, "min_attempts": 20}})
        );
        let e = plan_body("10:1h,5", None, None).unwrap_err();
        assert_eq!(
            e.message(),
            "--stages \"10:1h,5\": stage 2: 5% is not above the 10% of stage 1; the percents must rise"
        );
        let e = plan_body("ten,100", None, None).unwrap_err();
        assert!(
            e.message()
                .starts_with("--stages \"ten,100\": stage 1: \"ten\" is not PERCENT"),
            "{}",
            e.message()
        );
    }
}
