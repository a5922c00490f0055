//! `GET /api/v1/devices/{serial}/bundle?version=V` (staff): an offline bundle (docs/formats.md) for one
//! box — the keyring, the release manifest, the box's current entitlement and the image —
//! streamed as tar straight from the blob file (`crate::blobs::bundle_tar`), never held in memory.
//! A box that may not install V (the update rule, or V is yanked) gets 403 with `details.rule`.

use crate::blobs::bundle_tar::{
    accepts_gzip, bundle_stream, gzip_stream, BundleDocs, BundleLayout,
};
use crate::domain::device::DeviceRecord;
use crate::domain::offers;
use crate::http::auth::StaffCaller;
use crate::http::blobs::{not_entitled, release_blob_error};
use crate::http::device_api::box_view_parts;
use crate::http::devices::path_serial;
use crate::http::error::{ApiError, ApiPath, ApiQuery};
use crate::http::releases::parse_version;
use crate::state::AppState;
use crate::store::ReleaseRecord;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

/// The bundle route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/devices/{serial}/bundle", get(bundle))
}

/// Query of the bundle route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BundleQuery {
    /// The release to bundle.
    pub version: String,
}

/// Also called by the staff console with a session's caller.
#[utoipa::path(get, path = "/api/v1/devices/{serial}/bundle", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path), BundleQuery),
    responses((status = 200, description = "The offline bundle (tar)", content_type = "application/x-tar", body = Vec<u8>)))]
pub async fn bundle(
    State(state): State<AppState>,
    _caller: StaffCaller,
    headers: HeaderMap,
    ApiPath(serial): ApiPath<String>,
    ApiQuery(q): ApiQuery<BundleQuery>,
) -> Result<Response, ApiError> {
    let serial = path_serial(&serial)?;
    let version = parse_version("version", &q.version)?;
    let device = state
        .store
        .device(&serial)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("box {serial} is not registered")))?;
    let device = crate::domain::rotation::fresh_device(&state, device).await?;
    let releases = state.store.releases().await?;
    let record = releases
        .iter()
        .find(|r| r.release.version == version)
        .ok_or_else(|| ApiError::not_found(format!("there is no release {version}")))?;
    let parts = box_view_parts(&state, &device, &releases).await?;
    let view = parts.view(&device, None, state.now());
    offers::may_install_for(&view, &record.entry(view.now), parts.running_known)
        .map_err(|h| not_entitled(&h))?;

    let resp = serve_bundle(&state, &device, record, &headers).await?;
    tracing::info!(serial = %serial, version = %version, "bundle served");
    Ok(resp)
}

/// Answers the bundle of `record` for `device` (the current keyring, the release's
/// manifest, the box's entitlement, the image streamed from its blob), gzip-compressed
/// (`Content-Encoding: gzip`) when the request's `Accept-Encoding` takes it, else with
/// its exact `Content-Length`.
pub async fn serve_bundle(
    state: &AppState,
    device: &DeviceRecord,
    record: &ReleaseRecord,
    request_headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let image = &record.release.image;
    let (file, size) = state.blobs.open_blob(&image.sha256).await.map_err(|e| {
        release_blob_error(
            e,
            &record.release.version,
            &state.blobs.path_of(&image.sha256),
        )
    })?;
    if size != image.size {
        return Err(ApiError::internal(format!(
            "stored blob {} is {size} bytes, its release says {}",
            image.sha256, image.size
        )));
    }
    let docs = BundleDocs {
        keyring: Some(state.keys().keyring_envelope.to_json()),
        manifest: record.manifest.to_json(),
        entitlement: Some(device.entitlement.to_json()),
    };
    let mtime = u64::try_from(record.release.released_at.as_second()).unwrap_or(0);
    let layout = BundleLayout::new(docs, size, mtime).map_err(ApiError::internal)?;
    let len = layout.archive_len();
    let gzip = request_headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let stream = bundle_stream(layout, file);
    let mut resp = if gzip {
        Response::new(Body::from_stream(gzip_stream(stream)))
    } else {
        Response::new(Body::from_stream(stream))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    } else {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let disposition = format!(
        "attachment; filename=\"{}-{}.tar\"",
        device.serial, record.release.version
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
