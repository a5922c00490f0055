//! Publishing firmware (docs/api.md): `POST /api/v1/releases` signs a release manifest with the
//! release key over an image already in the blob store;
//! `PATCH /api/v1/releases/{version}` changes the rollout (percent, pause, yank, a staged
//! plan; a yanked release cannot be resumed or given a percent or plan: 409 `yanked`);
//! `GET /api/v1/releases` lists releases with their rollout state, the plan's stage, the
//! guard's figures and halt, and how many boxes run each. Writes need the release or admin
//! role and are audited.

use crate::domain::plan::{Figures, Plan, PlanError, PlanRequest, PlanState, Progress};
use crate::domain::validate;
use crate::http::auth::{AnyCaller, ReleaseCaller};
use crate::http::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
use crate::store::{Change, Halt, ReleaseChangeError, ReleaseRecord};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use np_common::docs::{self, ImageRef, Release};
use np_common::{Envelope, Model, Sha256Digest, Version};
use serde::{Deserialize, Serialize};

/// The longest release notes accepted.
const MAX_NOTES: usize = 64 * 1024;

/// The release routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/releases", post(create).get(list))
        .route("/api/v1/releases/{version}", get(show).patch(set))
}

/// The image part of a new release.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageRequest {
    /// File name shown to people; defaults to `<product>-<version>.img`.
    #[serde(default)]
    pub name: Option<String>,
    /// The blob's digest (uploaded before with `PUT /api/v1/blobs`).
    pub sha256: String,
    /// If given, must equal the stored blob's size.
    #[serde(default)]
    pub size: Option<u64>,
}

/// `POST /api/v1/releases` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub version: String,
    pub security_version: u64,
    pub models: Vec<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub released_at: Option<String>,
    #[serde(default)]
    pub min_from_version: Option<String>,
    pub image: ImageRequest,
    #[serde(default)]
    pub notes: String,
    /// Defaults to 100.
    #[serde(default)]
    pub rollout_percent: Option<i64>,
    #[serde(default)]
    pub paused: bool,
    /// A staged rollout plan instead of a fixed percent.
    #[serde(default)]
    pub plan: Option<PlanRequest>,
}

/// `PATCH /api/v1/releases/{version}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRequest {
    #[serde(default)]
    pub rollout_percent: Option<i64>,
    #[serde(default)]
    pub paused: Option<bool>,
    #[serde(default)]
    pub yanked: Option<bool>,
    /// A staged rollout plan; it starts at its first stage now. `null` removes the plan
    /// (the release keeps its fixed `rollout_percent`).
    #[serde(default, deserialize_with = "present")]
    pub plan: Option<Option<PlanRequest>>,
}

/// A field that may be absent (outer `None`) or `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A release as the API shows it: the manifest's fields, the signed `manifest`, the
/// rollout state and the number of boxes that run it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseBody {
    #[serde(flatten)]
    pub release: Release,
    pub manifest: Envelope,
    pub rollout_percent: u8,
    pub paused: bool,
    pub yanked: bool,
    pub created_at: Timestamp,
    pub created_by: String,
    pub updated_at: Timestamp,
    pub installs: u64,
    /// The staged rollout plan, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Where the plan stands now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Progress>,
    /// Boxes that tried this release, and those that failed or rolled back.
    pub attempts: u64,
    pub failures: u64,
    /// Why the guard paused it, while it stays paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt: Option<Halt>,
    /// What staff should know about what they just published (only in the answer to a
    /// `POST`): a `min_from_version` above every listed model's newest release, say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `GET /api/v1/releases` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseList {
    /// Newest version first.
    pub releases: Vec<ReleaseBody>,
}

fn body_of(state: &AppState, r: ReleaseRecord, installs: u64) -> ReleaseBody {
    let now = state.now();
    let Figures { attempts, failures } = state.tallies.figures(&r.release.version, 0);
    ReleaseBody {
        rollout_percent: r.percent_at(now),
        stage: r.plan.as_ref().map(|p| p.progress(now)),
        plan: r.plan.map(|p| p.plan),
        release: r.release,
        manifest: r.manifest,
        paused: r.paused,
        yanked: r.yanked,
        created_at: r.created_at,
        created_by: r.created_by,
        updated_at: r.updated_at,
        installs,
        attempts,
        failures,
        halt: r.halt,
        warnings: Vec::new(),
    }
}

/// Validates a plan from a request body (`bad_plan`).
fn plan_of(req: &PlanRequest) -> Result<Plan, ApiError> {
    Plan::build(req)
        .map_err(|e: PlanError| ApiError::unprocessable("bad_plan", format!("plan: {e}")))
}

/// A yanked release takes no percent, plan nor resume (409 `yanked`).
fn yanked(v: &Version, what: &str) -> ApiError {
    ApiError::conflict(
        "yanked",
        format!(
            "release {v} is yanked (withdrawn); it cannot be {what}; publish a new version instead"
        ),
    )
}

/// The audit snapshot of a release (without the envelope).
fn snapshot(r: &ReleaseRecord) -> serde_json::Value {
    serde_json::json!({
        "version": r.release.version,
        "security_version": r.release.security_version,
        "models": r.release.models,
        "channel": r.release.channel,
        "image": r.release.image,
        "rollout_percent": r.rollout_percent,
        "paused": r.paused,
        "yanked": r.yanked,
        "plan": r.plan.as_ref().map(|p| &p.plan),
        "halt": r.halt,
    })
}

/// Parses a version (`bad_version`).
pub fn parse_version(field: &str, s: &str) -> Result<Version, ApiError> {
    Version::parse(s.trim())
        .map_err(|e| ApiError::unprocessable("bad_version", format!("{field}: {e}")))
}

fn rollout(p: i64) -> Result<u8, ApiError> {
    u8::try_from(p).ok().filter(|p| *p <= 100).ok_or_else(|| {
        ApiError::unprocessable(
            "bad_rollout",
            format!("rollout_percent must be 0 to 100, not {p}"),
        )
    })
}

fn plain_name(field: &str, s: &str, max: usize) -> Result<String, ApiError> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
        && !s.starts_with('.');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ApiError::unprocessable(
            &format!("bad_{field}"),
            format!("{field} {s:?} must be 1 to {max} letters, digits, '.', '_', '-' or '+', not starting with '.'"),
        ))
    }
}

/// The product of a set of models: their one family, lowercased (`n-reporter`).
fn product_of(state: &AppState, models: &[String]) -> Result<(Vec<Model>, String), ApiError> {
    if models.is_empty() {
        return Err(ApiError::unprocessable(
            "bad_model",
            "a release needs at least one model, such as NR-2000",
        ));
    }
    let mut out: Vec<Model> = Vec::new();
    let mut family: Option<String> = None;
    for m in models {
        let model = validate::model(m)?;
        let entry = state
            .config
            .catalog
            .get(&model)
            .map_err(validate::model_error)?;
        match &family {
            Some(f) if f != &entry.family => {
                return Err(ApiError::unprocessable(
                    "bad_model",
                    format!(
                        "a release is for one product family; {model} is {}, the others {f}",
                        entry.family
                    ),
                ))
            }
            _ => family = Some(entry.family.clone()),
        }
        if !out.contains(&model) {
            out.push(model);
        }
    }
    let product = family.unwrap_or_default().to_lowercase().replace(' ', "-");
    Ok((out, product))
}

#[utoipa::path(post, path = "/api/v1/releases", tag = "releases", security(("staff" = [])),
    request_body = CreateRequest, responses((status = 201, description = "The signed release", body = ReleaseBody)))]
async fn create(
    State(state): State<AppState>,
    ReleaseCaller(caller): ReleaseCaller,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<ReleaseBody>), ApiError> {
    let version = parse_version("version", &req.version)?;
    if req.version.contains('+') {
        return Err(ApiError::unprocessable(
            "build_metadata",
            format!(
                "version {:?} carries build metadata (after '+'), which does not make a version newer; publish a plain version such as 5.2.1",
                req.version.trim()
            ),
        ));
    }
    let (models, product) = product_of(&state, &req.models)?;
    let channel = plain_name("channel", req.channel.as_deref().unwrap_or("stable"), 32)?;
    let now = state.now();
    let released_at = match &req.released_at {
        Some(s) => s.trim().parse::<Timestamp>().map_err(|e| {
            ApiError::unprocessable(
                "bad_date",
                format!(
                    "released_at {s:?} is not an RFC 3339 time such as 2026-10-01T00:00:00Z: {e}"
                ),
            )
        })?,
        None => now,
    };
    if released_at > now + jiff::SignedDuration::from_hours(1) {
        // Boxes refuse a manifest dated more than 24 hours ahead of their clock: such a
        // release would break every box's check-in until that day.
        return Err(ApiError::unprocessable(
            "future_release_date",
            format!(
                "released_at {released_at} is ahead of the server's clock ({now}); boxes refuse a release dated ahead of their time, so publish it dated now (leave released_at out) and hold it with paused or a rollout plan"
            ),
        ));
    }
    let min_from_version = match &req.min_from_version {
        Some(s) => parse_version("min_from_version", s)?,
        None => parse_version("min_from_version", "0.0.0")?,
    };
    if min_from_version >= version {
        return Err(ApiError::unprocessable(
            "bad_min_from_version",
            format!(
                "min_from_version {min_from_version} must be below the release's own version {version}: it is the oldest version a box may upgrade from"
            ),
        ));
    }
    let warnings: Vec<String> = unreachable_min_from(&state, &version, &min_from_version, &models)
        .await?
        .into_iter()
        .collect();
    let sha256 = Sha256Digest::parse(req.image.sha256.trim())
        .map_err(|e| ApiError::unprocessable("bad_sha256", e.to_string()))?;
    let name = match &req.image.name {
        Some(n) => plain_name("image_name", n, 128)?,
        None => format!("{product}-{version}.img"),
    };
    let rollout_percent = rollout(req.rollout_percent.unwrap_or(100))?;
    let plan = req.plan.as_ref().map(plan_of).transpose()?;
    if req.notes.len() > MAX_NOTES {
        return Err(ApiError::unprocessable(
            "bad_notes",
            format!("release notes are at most {MAX_NOTES} bytes"),
        ));
    }
    if state.store.release(&version).await?.is_some() {
        return Err(exists(&version));
    }
    let Some(size) = state
        .blobs
        .size_of(&sha256)
        .await
        .map_err(super::blobs::blob_error)?
    else {
        return Err(ApiError::unprocessable(
            "unknown_blob",
            format!(
                "no image with SHA-256 {sha256} is stored; upload it first with PUT /api/v1/blobs"
            ),
        ));
    };
    if let Some(claimed) = req.image.size.filter(|s| *s != size) {
        return Err(ApiError::unprocessable(
            "size_mismatch",
            format!("image.size is {claimed}, but the stored image {sha256} is {size} bytes"),
        ));
    }
    let release = Release {
        product,
        version: version.clone(),
        security_version: req.security_version,
        models,
        channel,
        released_at,
        min_from_version,
        image: ImageRef { name, size, sha256 },
        notes: req.notes,
    };
    let manifest = docs::sign(&release, &state.keys().release);
    let record = ReleaseRecord {
        release,
        manifest,
        rollout_percent,
        paused: req.paused,
        yanked: false,
        created_at: now,
        created_by: caller.name.clone(),
        updated_at: now,
        plan: plan.map(|p| PlanState::new(p, now, req.paused)),
        halt: None,
        guard_epoch: 0,
        guard_since: None,
    };
    let audited = Change {
        actor: Some(&caller.name),
        action: "release_create",
        at: now,
    };
    if !state
        .store
        .insert_release(&record, &audited, snapshot(&record))
        .await?
    {
        return Err(exists(&version));
    }
    tracing::info!(version = %version, actor = %caller.name, "release published");
    let mut body = body_of(&state, record, 0);
    body.warnings = warnings;
    Ok((StatusCode::CREATED, Json(body)))
}

/// Says so when no box the server knows of could install `version`: its minimum version to
/// upgrade from is above the newest release (not yanked) of every listed model. That is a warning, not a
/// refusal: boxes may run firmware the server never published (a factory image), and models
/// with no release yet pass outright.
async fn unreachable_min_from(
    state: &AppState,
    version: &Version,
    min_from: &Version,
    models: &[Model],
) -> Result<Option<String>, ApiError> {
    let releases = state.store.releases().await?;
    let mut newest = Vec::new();
    for m in models {
        let top = releases
            .iter()
            .filter(|r| !r.yanked && r.release.models.contains(m))
            .map(|r| &r.release.version)
            .max();
        match top {
            None => return Ok(None),
            Some(v) if v >= min_from => return Ok(None),
            Some(v) => newest.push(format!("{m} {v}")),
        }
    }
    if newest.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "no box running a release published here can install {version}: min_from_version {min_from} is above the newest release of every listed model ({}); boxes on older firmware need an intermediate release, or lower min_from_version",
        newest.join(", ")
    )))
}

fn exists(v: &Version) -> ApiError {
    ApiError::conflict(
        "exists",
        format!("release {v} exists already; publish a new version instead"),
    )
}

fn not_found(v: &Version) -> ApiError {
    ApiError::not_found(format!("there is no release {v}"))
}

/// Also called by the staff console with a session's caller.
#[utoipa::path(patch, path = "/api/v1/releases/{version}", tag = "releases", security(("staff" = [])),
    params(("version" = np_common::Version, Path)), request_body = SetRequest,
    responses((status = 200, description = "The release after the change", body = ReleaseBody)))]
pub async fn set(
    State(state): State<AppState>,
    ReleaseCaller(caller): ReleaseCaller,
    ApiPath(version): ApiPath<String>,
    ApiJson(req): ApiJson<SetRequest>,
) -> Result<Json<ReleaseBody>, ApiError> {
    let version = parse_version("version", &version)?;
    let percent = req.rollout_percent.map(rollout).transpose()?;
    let plan = match &req.plan {
        Some(Some(p)) => Some(Some(plan_of(p)?)),
        Some(None) => Some(None),
        None => None,
    };
    let now = state.now();
    let change = Change {
        actor: Some(&caller.name),
        action: "release_set",
        at: now,
    };
    let (_, after) = state
        .store
        .update_release_audited(
            &version,
            &change,
            |r| {
                // A yanked release stays yanked, and takes no resume, percent or plan,
                // also in the request that yanks it.
                if r.yanked || req.yanked == Some(true) {
                    let refused = [
                        (req.yanked == Some(false), "un-yanked"),
                        (req.paused == Some(false), "resumed"),
                        (percent.is_some(), "given a rollout percent"),
                        (matches!(plan, Some(Some(_))), "given a plan"),
                    ];
                    if let Some((_, what)) = refused.iter().find(|(bad, _)| *bad) {
                        return Err(yanked(&version, what));
                    }
                }
                if let Some(y) = req.yanked {
                    r.yanked = y;
                }
                match &plan {
                    Some(Some(p)) => match &mut r.plan {
                        // The same stages: only the guard's settings change; the stages
                        // and their progress stay.
                        Some(current) if current.plan.stages == p.stages => {
                            current.plan.max_failure_percent = p.max_failure_percent;
                            current.plan.min_attempts = p.min_attempts;
                        }
                        _ => r.plan = Some(PlanState::new(p.clone(), now, r.paused)),
                    },
                    Some(None) => {
                        // Without its plan the rollout stays where the plan had taken it.
                        r.rollout_percent = r.percent_at(now);
                        r.plan = None;
                    }
                    None => {}
                }
                if let Some(p) = percent {
                    r.rollout_percent = p;
                    if let Some(ps) = &mut r.plan {
                        ps.set_percent(now, p);
                    }
                }
                if let Some(p) = req.paused {
                    r.set_paused(p, now);
                }
                r.updated_at = now;
                Ok::<(), ApiError>(())
            },
            |before, after| (snapshot(before), snapshot(after)),
        )
        .await
        .map_err(|e| match e {
            ReleaseChangeError::NotFound => not_found(&version),
            ReleaseChangeError::Rejected(e) => e,
            ReleaseChangeError::Store(s) => s.into(),
        })?;
    // A plan whose threshold the figures already reach halts at once.
    let after = if matches!(plan, Some(Some(_))) {
        crate::http::guard::judge(&state, &version).await?;
        state
            .store
            .release(&version)
            .await?
            .ok_or_else(|| not_found(&version))?
    } else {
        after
    };
    let installs = state
        .store
        .install_counts()
        .await?
        .get(&version)
        .copied()
        .unwrap_or(0);
    Ok(Json(body_of(&state, after, installs)))
}

#[utoipa::path(get, path = "/api/v1/releases/{version}", tag = "releases", security(("staff" = [])),
    params(("version" = np_common::Version, Path)), responses((status = 200, description = "The release", body = ReleaseBody)))]
async fn show(
    State(state): State<AppState>,
    _caller: AnyCaller,
    ApiPath(version): ApiPath<String>,
) -> Result<Json<ReleaseBody>, ApiError> {
    let version = parse_version("version", &version)?;
    let r = state
        .store
        .release(&version)
        .await?
        .ok_or_else(|| not_found(&version))?;
    let installs = state
        .store
        .install_counts()
        .await?
        .get(&version)
        .copied()
        .unwrap_or(0);
    Ok(Json(body_of(&state, r, installs)))
}

/// Also called by the staff console with a session's caller.
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases", security(("staff" = [])),
    responses((status = 200, description = "Releases, newest first", body = ReleaseList)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AnyCaller,
) -> Result<Json<ReleaseList>, ApiError> {
    let counts = state.store.install_counts().await?;
    let releases = state
        .store
        .releases()
        .await?
        .into_iter()
        .map(|r| {
            let n = counts.get(&r.release.version).copied().unwrap_or(0);
            body_of(&state, r, n)
        })
        .collect();
    Ok(Json(ReleaseList { releases }))
}
