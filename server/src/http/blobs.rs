//! Firmware images over HTTP: `PUT /api/v1/blobs` (role release or admin) streams an
//! upload into the content-addressed store; `GET /api/v1/device/blobs/{sha256}` (signed
//! device request) serves an image to a box entitled to a release that uses it, with
//! single-range `Range` support so a cut download resumes where it stopped.

use crate::blobs::{BlobError, BlobInfo};
use crate::domain::offers::{self, Hold};
use crate::http::auth::ReleaseCaller;
use crate::http::device_api::box_view_parts;
use crate::http::device_auth::SignedDevice;
use crate::http::error::{ApiError, ApiPath};
use crate::http::range::{self, RangeError};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use np_common::Sha256Digest;
use std::path::Path;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_util::io::ReaderStream;

/// The blob routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/blobs",
            put(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/device/blobs/{sha256}", get(download))
}

/// The API error of a blob failure.
pub fn blob_error(e: BlobError) -> ApiError {
    match e {
        BlobError::TooLarge { limit } => ApiError::too_large(format!(
            "the image is larger than this server's limit of {limit} bytes; raise limits.blob_bytes in the server config"
        )),
        BlobError::Body { reason } => ApiError::bad_request(
            "upload_cut",
            format!("the upload did not arrive whole ({reason}); send it again"),
        ),
        BlobError::NotFound(d) => ApiError::not_found(format!("no image with SHA-256 {d} is stored")),
        e if e.is_folder_unavailable() => {
            tracing::warn!(error = %e, "an image could not be stored or read: the blob folder is unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "blobs_unavailable",
                "the server's image folder is unavailable; try again later (the server's log says why)",
            )
        }
        e @ (BlobError::Io { .. } | BlobError::Unavailable(_)) => ApiError::internal(e),
    }
}

#[utoipa::path(put, path = "/api/v1/blobs", tag = "releases", security(("staff" = [])),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The image, streamed"),
    responses((status = 201, description = "The stored blob", body = BlobInfo)))]
async fn upload(
    State(state): State<AppState>,
    ReleaseCaller(caller): ReleaseCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BlobInfo>), ApiError> {
    let limit = state.blobs.max_size();
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(blob_error(BlobError::TooLarge { limit }));
    }
    let info = state
        .blobs
        .put(body.into_data_stream())
        .await
        .map_err(blob_error)?;
    tracing::info!(sha256 = %info.sha256, size = info.size, actor = %caller.name, "blob stored");
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(get, path = "/api/v1/device/blobs/{sha256}", tag = "device", security(("device" = [])),
    params(("sha256" = np_common::Sha256Digest, Path), ("Range" = Option<String>, Header, description = "One byte range, to resume")),
    responses((status = 200, description = "The image", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The asked range", content_type = "application/octet-stream", body = Vec<u8>)))]
async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(sha): ApiPath<String>,
    SignedDevice { device, .. }: SignedDevice,
) -> Result<Response, ApiError> {
    let sha = Sha256Digest::parse(&sha)
        .map_err(|e| ApiError::bad_request("bad_sha256", e.to_string()))?;
    let releases = state.store.releases().await?;
    let using: Vec<_> = releases
        .iter()
        .filter(|r| r.release.image.sha256 == sha)
        .collect();
    if using.is_empty() {
        return Err(ApiError::not_found(format!(
            "no release uses the image {sha}"
        )));
    }
    let device = crate::domain::rotation::fresh_device(&state, device).await?;
    let parts = box_view_parts(&state, &device, &releases).await?;
    let view = parts.view(&device, None, state.now());
    let mut refusal: Option<Hold> = None;
    let mut allowed = false;
    for r in &using {
        match offers::may_install(&view, &r.entry(view.now)) {
            Ok(()) => {
                allowed = true;
                break;
            }
            Err(h) => {
                refusal.get_or_insert(h);
            }
        }
    }
    if !allowed {
        let h = refusal.unwrap_or_else(|| Hold::Yanked(using[0].release.version.clone()));
        return Err(not_entitled(&h));
    }
    let (file, size) = state.blobs.open_blob(&sha).await.map_err(|e| {
        release_blob_error(e, &using[0].release.version, &state.blobs.path_of(&sha))
    })?;
    serve_file(file, size, headers.get(header::RANGE), &sha).await
}

/// The error of a release whose image cannot be read: its blob gone from the folder is a
/// fault of the server (500 `blob_missing`, naming the release and what staff can do),
/// not a missing resource; other failures as [`blob_error`].
pub fn release_blob_error(e: BlobError, version: &np_common::Version, path: &Path) -> ApiError {
    match e {
        BlobError::NotFound(sha) => {
            tracing::error!(%version, %sha, path = %path.display(), "the image of a published release is missing from the blob folder");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "blob_missing",
                format!(
                    "the image of release {version} (SHA-256 {sha}) is missing from the server's blob folder: upload the same image again, or restore the blob folder from a backup"
                ),
            )
            .with_details(serde_json::json!({ "version": version.to_string(), "sha256": sha.to_hex() }))
        }
        other => blob_error(other),
    }
}

/// 403 whose code is the rule that refused (`not_newer`, `warranty_expired`, `yanked`,
/// ...), also in `details.rule`.
pub fn not_entitled(h: &Hold) -> ApiError {
    ApiError::forbidden(h.rule(), h.to_string())
        .with_details(serde_json::json!({ "rule": h.rule() }))
}

/// Answers a file: 200 whole, 206 one range, 416 a range that cannot be served.
pub async fn serve_file(
    mut file: tokio::fs::File,
    size: u64,
    range_header: Option<&HeaderValue>,
    sha: &Sha256Digest,
) -> Result<Response, ApiError> {
    let etag = format!("\"{sha}\"");
    let raw = match range_header.map(HeaderValue::to_str) {
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => Some("\u{0}"),
        None => None,
    };
    let range = match range::parse(raw, size) {
        Ok(r) => r,
        Err(e) => {
            let msg = match &e {
                RangeError::Malformed { .. } | RangeError::Unsatisfiable { .. } => e.to_string(),
            };
            let mut resp =
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "bad_range", msg).into_response();
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&range::unsatisfied_content_range(size))
                    .map_err(ApiError::internal)?,
            );
            return Ok(resp);
        }
    };
    let (status, start, len) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.len()),
        None => (StatusCode::OK, 0, size),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(ApiError::internal)?;
    }
    let body = Body::from_stream(ReaderStream::with_capacity(file.take(len), 64 << 10));
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(r) = range {
        if let Ok(v) = HeaderValue::from_str(&r.content_range(size)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}
