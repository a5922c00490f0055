//! Offline boxes (docs/api.md): `POST /api/v1/bundles` answers a box's signed request with
//! the bundle of the newest release it may install; `POST /api/v1/receipts` takes the
//! signed receipts of what boxes did (one or a list, all checked before any is stored);
//! `GET /api/v1/devices/{serial}/receipts` lists a box's receipts. Receipts a box sends with
//! its check-in go through [`file_checked_in`].

use crate::domain::device::DeviceRecord;
use crate::domain::offline::{
    release_for_request, stale_request, verify_from_box, DeviceDocRefusal,
};
use crate::http::auth::StaffCaller;
use crate::http::blobs::not_entitled;
use crate::http::bundle::serve_bundle;
use crate::http::device_api::{box_view_parts, DEFAULT_CHANNEL};
use crate::http::devices::path_serial;
use crate::http::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
use crate::store::{ReceiptFiled, StoredReceipt};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use np_common::api::{
    Outcome, ReceiptStored, ReceiptUpload, ReceiptUploadAnswer, HEADER_STALE_REQUEST,
    MAX_RECEIPTS_PER_UPLOAD,
};
use np_common::device_docs::DeviceDocument;
use np_common::device_docs::{DeviceRequest, Receipt};
use np_common::{Envelope, Serial};

/// The largest request body (a request envelope is well under 2 KiB).
pub const REQUEST_BODY_BYTES: usize = 16 * 1024;
/// The largest receipt upload: [`MAX_RECEIPTS_PER_UPLOAD`] receipts of up to 8 KiB.
pub const RECEIPTS_BODY_BYTES: usize = MAX_RECEIPTS_PER_UPLOAD * 8 * 1024;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/bundles",
            post(bundle_for_request).layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES)),
        )
        .route(
            "/api/v1/receipts",
            post(upload_receipts).layer(DefaultBodyLimit::max(RECEIPTS_BODY_BYTES)),
        )
        .route("/api/v1/devices/{serial}/receipts", get(list_receipts))
}

/// A refused device document as an API error; `what` names it (`the request`, `receipt 2`).
fn refusal_error(r: DeviceDocRefusal, what: &str, bad_signature: &str) -> ApiError {
    match r {
        DeviceDocRefusal::Malformed(e) => {
            ApiError::bad_request("bad_document", format!("{what} is not valid: {e}"))
        }
        DeviceDocRefusal::UnknownBox(s) => {
            ApiError::not_found(format!("{what} names box {s}, which is not registered"))
        }
        DeviceDocRefusal::NoDeviceKey(s) => ApiError::conflict(
            "no_device_key",
            format!("{what}: {}", DeviceDocRefusal::NoDeviceKey(s.clone())),
        )
        .with_details(serde_json::json!({ "serial": s })),
        DeviceDocRefusal::Signature(e) => ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            bad_signature,
            format!("{what}: {e}; it was not made by that box"),
        ),
    }
}

#[utoipa::path(post, path = "/api/v1/bundles", tag = "devices", security(("staff" = [])),
    request_body(content = Envelope, description = "The box's signed request (np-agent request)"),
    responses(
        (status = 200, description = "The bundle of the newest release the box may install (tar; gzip with Content-Encoding when accepted). Header x-np-stale-request says when the request is older than what the server last heard from the box", content_type = "application/x-tar", body = Vec<u8>),
        (status = 401, description = "bad_request_signature: not signed by the box's device key", body = np_common::api::ErrorBody),
        (status = 403, description = "No release the box may install; the code and details.rule name the rule", body = np_common::api::ErrorBody)))]
/// Also called by the staff console with a session's caller.
pub async fn bundle_for_request(
    State(state): State<AppState>,
    _caller: StaffCaller,
    headers: HeaderMap,
    ApiJson(env): ApiJson<Envelope>,
) -> Result<Response, ApiError> {
    let mut claimed = claimed_device::<DeviceRequest>(&state, &env).await?;
    let (req, device) = verify_from_box::<DeviceRequest, _>(&env, |_| {
        Ok::<_, crate::store::StoreError>(claimed.take())
    })?
    .map_err(|r| refusal_error(r, "the request", "bad_request_signature"))?;
    let device = crate::domain::rotation::fresh_device(&state, device).await?;
    let releases = state.store.releases().await?;
    let now = state.now();
    let entries: Vec<_> = releases.iter().map(|r| r.entry(now)).collect();
    let parts = box_view_parts(&state, &device, &releases).await?;
    let mut view = parts.view(&device, None, now);
    view.running_version = &req.version;
    view.running_security_version = req.security_version;
    view.channel = DEFAULT_CHANNEL;
    let chosen = release_for_request(&view, &entries).map_err(|hold| match hold {
        Some(h) => not_entitled(&h),
        None => ApiError::not_found(format!("there is no release for model {}", device.model)),
    })?;
    let record = releases
        .iter()
        .find(|r| r.release.version == chosen.release.version)
        .ok_or_else(|| ApiError::internal("the chosen release vanished"))?;
    let last_receipt_at = state
        .store
        .device_receipts(&device.serial, 1)
        .await?
        .first()
        .map(|r| r.receipt.at);
    let stale = stale_request(&req, &device, last_receipt_at);
    let mut resp = serve_bundle(&state, &device, record, &headers).await?;
    if let Some(s) = &stale {
        if let Ok(v) = HeaderValue::from_str(s) {
            resp.headers_mut().insert(HEADER_STALE_REQUEST, v);
        }
    }
    tracing::info!(serial = %device.serial, version = %record.release.version, stale = stale.is_some(), "bundle served for an offline request");
    Ok(resp)
}

/// Stores a verified receipt and feeds a new one to the rollout guard; when it moves the
/// box back from a version, the box's report lists that version as rolled back from (not
/// offered again automatically).
async fn file(
    state: &AppState,
    receipt: Receipt,
    envelope: Envelope,
    via: &str,
    actor: Option<&str>,
) -> Result<Option<ReceiptFiled>, ApiError> {
    let stored = StoredReceipt {
        receipt,
        envelope,
        received_at: state.now(),
        via: via.to_owned(),
    };
    let filed = state
        .store
        .file_receipt(&stored, actor, state.config.limits.events_per_box)
        .await?;
    let r = &stored.receipt;
    if let Some(ReceiptFiled::New { .. }) = filed {
        // The rollout guard counts it like the same outcome reported online.
        let about = crate::store::last_result_of(r).version;
        if let (Some(v), Some(seen)) = (
            about,
            crate::domain::guard::Seen::of_outcome(r.outcome, false),
        ) {
            crate::http::guard::observe_at(state, &r.serial, &v, seen, Some(r.at)).await;
        }
    }
    if let (Some(ReceiptFiled::New { latest: true }), Outcome::RolledBack, Some(v)) =
        (filed, r.outcome, &r.from_version)
    {
        state
            .store
            .update_device_report(&r.serial, |rep| {
                if !rep.rolled_back_from.contains(v) {
                    rep.rolled_back_from.push(v.clone());
                }
            })
            .await?;
    }
    Ok(filed)
}

#[utoipa::path(post, path = "/api/v1/receipts", tag = "devices", security(("staff" = [])),
    request_body(content = ReceiptUpload, description = "One signed receipt, or a list of up to 64"),
    responses(
        (status = 200, description = "What became of each receipt", body = ReceiptUploadAnswer),
        (status = 401, description = "bad_receipt_signature: a receipt is not signed by its box's device key (nothing stored)", body = np_common::api::ErrorBody),
        (status = 409, description = "receipt_conflict: another receipt with the same seq is held (nothing stored)", body = np_common::api::ErrorBody)))]
/// Also called by the staff console with a session's caller.
pub async fn upload_receipts(
    State(state): State<AppState>,
    StaffCaller(caller): StaffCaller,
    ApiJson(upload): ApiJson<ReceiptUpload>,
) -> Result<Json<ReceiptUploadAnswer>, ApiError> {
    let envelopes = upload.into_vec();
    if envelopes.is_empty() {
        return Err(ApiError::bad_request(
            "no_receipts",
            "the list of receipts is empty",
        ));
    }
    if envelopes.len() > MAX_RECEIPTS_PER_UPLOAD {
        return Err(ApiError::bad_request(
            "too_many_receipts",
            format!(
                "{} receipts in one upload; send at most {MAX_RECEIPTS_PER_UPLOAD} at a time",
                envelopes.len()
            ),
        ));
    }
    // Every receipt is checked before any is stored.
    let many = envelopes.len() > 1;
    let mut checked = Vec::with_capacity(envelopes.len());
    for (i, env) in envelopes.into_iter().enumerate() {
        let what = if many {
            format!("receipt {} of the list", i + 1)
        } else {
            "the receipt".to_owned()
        };
        let mut claimed = claimed_device::<Receipt>(&state, &env).await?;
        let (receipt, _) = verify_from_box::<Receipt, _>(&env, |_| {
            Ok::<_, crate::store::StoreError>(claimed.take())
        })?
        .map_err(|r| refusal_error(r, &what, "bad_receipt_signature"))?;
        if let Some(held) = state.store.receipt(&receipt.serial, receipt.seq).await? {
            if held.receipt != receipt {
                return Err(ApiError::conflict(
                    "receipt_conflict",
                    format!(
                        "{what}: the server holds another receipt {} of {}; either the box's state folder was reset and it numbers its receipts again, or this receipt is not what the box wrote",
                        receipt.seq, receipt.serial
                    ),
                ));
            }
        }
        checked.push((receipt, env));
    }
    let mut answer = Vec::with_capacity(checked.len());
    for (receipt, env) in checked {
        let (serial, seq) = (receipt.serial.clone(), receipt.seq);
        let filed = file(&state, receipt, env, &caller.name, Some(&caller.name)).await?;
        let (new, latest) = match filed {
            Some(ReceiptFiled::New { latest }) => (true, latest),
            Some(ReceiptFiled::Duplicate | ReceiptFiled::Conflict) => (false, false),
            None => {
                return Err(ApiError::not_found(format!(
                    "box {serial} is not registered"
                )))
            }
        };
        tracing::info!(serial = %serial, seq, new, latest, "receipt uploaded");
        answer.push(ReceiptStored {
            serial,
            seq,
            new,
            latest,
        });
    }
    Ok(Json(ReceiptUploadAnswer { receipts: answer }))
}

/// The receipts a box sent with its check-in: each verified under its device key and filed.
/// Answers the seq of every receipt the server is done with: stored, held already, or
/// refused for good (logged; it would never verify, so the box need not keep it).
pub async fn file_checked_in(
    state: &AppState,
    device: &DeviceRecord,
    receipts: Vec<Envelope>,
) -> Result<Vec<u64>, ApiError> {
    let mut done = Vec::new();
    for env in receipts {
        let Some(key) = device.device_key.as_ref() else {
            break;
        };
        match np_common::device_docs::verify_device::<Receipt>(&env, key, &device.serial) {
            Ok(receipt) => {
                let seq = receipt.seq;
                if let Some(ReceiptFiled::Conflict) =
                    file(state, receipt, env, "check-in", None).await?
                {
                    tracing::warn!(serial = %device.serial, seq, "a check-in sent another receipt with a seq already held; kept the held one");
                }
                done.push(seq);
            }
            Err(e) => {
                tracing::warn!(serial = %device.serial, "a receipt sent with a check-in was refused: {e}");
                if let Some(seq) = unverified_seq(&env) {
                    done.push(seq);
                }
            }
        }
    }
    Ok(done)
}

/// The seq a receipt envelope claims (for one that does not verify: the box that sent it
/// over its signed check-in can drop it).
fn unverified_seq(env: &Envelope) -> Option<u64> {
    let payload = env.payload_bytes().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    v.get("seq")?.as_u64()
}

#[utoipa::path(get, path = "/api/v1/devices/{serial}/receipts", tag = "devices", security(("staff" = [])),
    params(("serial" = Serial, Path)),
    responses((status = 200, description = "The box's newest 100 receipts, highest seq first", body = Vec<StoredReceipt>)))]
async fn list_receipts(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<Vec<StoredReceipt>>, ApiError> {
    let serial = path_serial(&serial)?;
    if state.store.device(&serial).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "box {serial} is not registered"
        )));
    }
    Ok(Json(state.store.device_receipts(&serial, 100).await?))
}

/// The record of the box a signed document claims to come from (read before the
/// signature is checked against its key; none when the claim does not parse).
async fn claimed_device<T: DeviceDocument>(
    state: &AppState,
    env: &Envelope,
) -> Result<Option<DeviceRecord>, ApiError> {
    match np_common::device_docs::claimed_serial::<T>(env) {
        Ok(serial) => Ok(state.store.device(&serial).await?),
        Err(_) => Ok(None),
    }
}
