//! The device API (docs/api.md): every request is signed by the box's device key and checked
//! by the [`SignedDevice`] extractor (`crate::http::device_auth`). `POST /api/v1/device/check-in` answers the keyring, the box's
//! entitlement, a time token echoing its nonce, the newest release for it with the rule that
//! stops it (`available`), the release that is due (`offer`) and a pending staff action;
//! `POST /api/v1/device/events` records install progress and results. (A box's
//! diagnostics report goes to `POST /api/v1/device/diagnostics`, in `crate::http::cases`.) Staff read a box's
//! events with `GET /api/v1/devices/{serial}/events`.

use crate::domain::device::{DeviceRecord, PendingAction};
use crate::domain::guard::Seen;
use crate::domain::offers::{self, BoxView};
use crate::http::auth::StaffCaller;
use crate::http::device_auth::SignedDevice;
use crate::http::devices::path_serial;
use crate::http::error::{ApiError, ApiPath};
use crate::state::AppState;
use crate::store::{Change, DeviceReport, EventRecord, ReleaseRecord};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use np_common::api::{
    Available, CheckInRequest, CheckInResponse, DeviceEvent, EventKind, LastResult, Offer, Outcome,
    RefusalInfo,
};
use np_common::docs::{self, ActionKind, Entitlement, TimeToken};
use np_common::Version;
use serde::Serialize;

/// The channel of every box (the device record has no channel of its own yet).
pub const DEFAULT_CHANNEL: &str = "stable";

/// The longest nonce a box may send.
const MAX_NONCE: usize = 128;

/// The device API routes; an event body is capped at `limits.event_body_bytes` (413).
pub fn router(limits: &crate::state::Limits) -> Router<AppState> {
    Router::new()
        .route("/api/v1/device/check-in", post(check_in))
        .route(
            "/api/v1/device/events",
            post(event).layer(axum::extract::DefaultBodyLimit::max(
                limits.event_body_bytes,
            )),
        )
        .route("/api/v1/devices/{serial}/events", get(list_events))
}

/// What the offer logic needs about a box beyond its record.
#[derive(Debug, Clone)]
pub struct BoxParts {
    /// The running version (`0.0.0` when the box never said).
    pub running_version: Version,
    /// Whether the box reported its version.
    pub running_known: bool,
    /// The running release's security version (0 when the release is unknown here).
    pub running_security_version: u64,
    /// The box's current entitlement.
    pub entitlement: Entitlement,
    /// The box's report.
    pub report: DeviceReport,
}

impl BoxParts {
    /// The offer logic's view of the box.
    pub fn view<'a>(
        &'a self,
        device: &'a DeviceRecord,
        forced: Option<&'a Version>,
        now: Timestamp,
    ) -> BoxView<'a> {
        BoxView {
            serial: &device.serial,
            model: &device.model,
            channel: DEFAULT_CHANNEL,
            running_version: &self.running_version,
            running_security_version: self.running_security_version,
            entitlement: Some(&self.entitlement),
            rolled_back_from: &self.report.rolled_back_from,
            forced_upgrade: forced,
            now,
        }
    }
}

/// Gathers [`BoxParts`] for a device.
pub async fn box_view_parts(
    state: &AppState,
    device: &DeviceRecord,
    releases: &[ReleaseRecord],
) -> Result<BoxParts, ApiError> {
    // A stored entitlement that does not verify was signed under the previous keyring (an
    // install is re-signing the fleet): the callers re-sign it on the spot first
    // (`rotation::fresh_device`); if one still slips through, the box is told to try again.
    let entitlement: Entitlement =
        docs::verify(&device.entitlement, &state.keys().keyring).map_err(|e| {
            tracing::warn!(serial = %device.serial, error = %e, "a stored entitlement does not verify under the installed keyring");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "keyring_stale",
                "this server is re-signing documents under a new keyring; try again shortly",
            )
        })?;
    let running_known = device.version.is_some();
    let running_version = device.version.clone().unwrap_or_else(zero_version);
    let running_security_version = releases
        .iter()
        .find(|r| r.release.version == running_version)
        .map_or(0, |r| r.release.security_version);
    Ok(BoxParts {
        running_version,
        running_known,
        running_security_version,
        entitlement,
        report: state.store.device_report(&device.serial).await?,
    })
}

/// `0.0.0`, the version of a box that never said which it runs.
fn zero_version() -> Version {
    #[allow(clippy::expect_used)]
    Version::parse("0.0.0").expect("0.0.0 is a semver version")
}

fn bad_body(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("bad_request", format!("the {what} body is malformed: {e}"))
}

/// Has the box finished the staff action `p` (as of this check-in)?
fn action_done_at_check_in(p: &PendingAction, req: &CheckInRequest) -> bool {
    let reported_after = req.last_result.as_ref().filter(|r| r.at > p.issued_at);
    match p.action {
        ActionKind::Upgrade => {
            p.version.as_ref() == Some(&req.version)
                || reported_after.is_some_and(|r| r.version == p.version)
        }
        ActionKind::Rollback => reported_after.is_some(),
        // Done when the box posts its report, not at a check-in.
        ActionKind::Diagnostics => false,
    }
}

/// Is `e` the box's final word on the staff action `p`?
fn action_done_by_event(p: &PendingAction, e: &DeviceEvent) -> bool {
    let terminal = matches!(
        e.event,
        EventKind::Commit | EventKind::Rollback | EventKind::Refusal | EventKind::Failure
    );
    match p.action {
        ActionKind::Upgrade => terminal && e.version == p.version,
        ActionKind::Rollback => terminal && e.event != EventKind::Commit,
        ActionKind::Diagnostics => false,
    }
}

#[utoipa::path(post, path = "/api/v1/device/check-in", tag = "device", security(("device" = [])),
    request_body = CheckInRequest, responses((status = 200, description = "Signed documents, offer, action", body = CheckInResponse)))]
async fn check_in(
    State(state): State<AppState>,
    SignedDevice { device, body }: SignedDevice,
) -> Result<Json<CheckInResponse>, ApiError> {
    let req: CheckInRequest = serde_json::from_slice(&body).map_err(|e| bad_body("check-in", e))?;
    if req.nonce.is_empty()
        || req.nonce.len() > MAX_NONCE
        || !req.nonce.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ApiError::bad_request(
            "bad_nonce",
            format!("the nonce must be 1 to {MAX_NONCE} hex digits"),
        ));
    }
    if req.slot != "a" && req.slot != "b" {
        return Err(ApiError::bad_request(
            "bad_slot",
            "the slot must be \"a\" or \"b\"",
        ));
    }
    if req.receipts.len() > np_common::api::MAX_RECEIPTS_PER_CHECK_IN {
        return Err(ApiError::bad_request(
            "too_many_receipts",
            format!(
                "a check-in carries at most {} receipts",
                np_common::api::MAX_RECEIPTS_PER_CHECK_IN
            ),
        ));
    }
    let now = state.now();
    let serial = device.serial.clone();
    let receipts_done =
        crate::http::offline::file_checked_in(&state, &device, req.receipts.clone()).await?;

    // The box's own account: slot, phase, last result, versions it rolled back from.
    let pending = device.pending_action.clone();
    let done = pending
        .as_ref()
        .is_some_and(|p| action_done_at_check_in(p, &req));
    // Sent with every check-in until the box has acted on it or refused it: an answer
    // lost on the way (a cut connection, a manifest the box refused) must not lose the
    // action. The box carries out each action once (it ignores one not newer than the
    // last it took).
    // A diagnostics request for a support case waits in its own slot: of the two, the
    // older goes first, since the box ignores an action older than one it took. A
    // diagnostics request handed over already no longer holds back a newer action (a box
    // that never sends its report must not block an upgrade).
    let staff_action = pending.as_ref().filter(|_| !done);
    let diagnostics = match (staff_action, device.pending_diagnostics.as_ref()) {
        (Some(a), Some(d)) if d.issued_at < a.issued_at => {
            let handed = state
                .store
                .device_report(&device.serial)
                .await?
                .delivered_action;
            (handed < Some(d.issued_at)).then_some(d)
        }
        (_, d) => d,
    };
    let deliver = staff_action
        .into_iter()
        .chain(diagnostics)
        .min_by_key(|p| p.issued_at)
        .map(|p| (p.issued_at, p.envelope.clone()));
    let delivered_at = deliver.as_ref().map(|(at, _)| *at);
    // Whole seconds, as every time the server keeps (older agents sent nanoseconds).
    let last_result = req.last_result.clone().map(|mut r| {
        r.at = Timestamp::from_second(r.at.as_second()).unwrap_or(r.at);
        r
    });
    let changed_from = device.version.clone().filter(|v| v != &req.version);
    let report = state
        .store
        .update_device_report(&serial, |r| {
            if let Some(v) = &changed_from {
                r.previous_version = Some(v.clone());
            }
            r.slot = Some(req.slot.clone());
            r.state = Some(req.state);
            if let Some(lr) = &last_result {
                r.last_result = Some(lr.clone());
                if let (Outcome::RolledBack, Some(v)) = (lr.outcome, &lr.version) {
                    if !r.rolled_back_from.contains(v) {
                        r.rolled_back_from.push(v.clone());
                    }
                }
            }
            if let Some(at) = delivered_at {
                r.delivered_action = Some(at);
            }
        })
        .await?;
    let version = req.version.clone();
    let change = Change {
        actor: None,
        action: "check_in",
        at: now,
    };
    let keys = state.keys();
    let written = state
        .store
        .mutate_devices(std::slice::from_ref(&serial), &change, |recs| {
            if let Some(Some(d)) = recs.first_mut() {
                // Signed under the previous keyring (an install is re-signing the fleet
                // and has not reached this box yet): re-signed now, under the row lock.
                crate::domain::rotation::refresh_device(d, &keys, now);
                d.last_check_in = Some(now);
                d.version = Some(version.clone());
                if let Some(lr) = &last_result {
                    d.last_result = Some(lr.clone());
                }
                if done {
                    d.pending_action = None;
                }
            }
            Ok::<(), ApiError>(())
        })
        .await
        .map_err(|e| e.into_inner())?;
    // A rollback reported with a staff rollback action handed to this box: staff ordered
    // it, so it is no failure of the release.
    let staff_rollback = done
        && pending.as_ref().is_some_and(|p| {
            p.action == ActionKind::Rollback && report.delivered_action == Some(p.issued_at)
        });
    if let Some(lr) = &last_result {
        if let (Some(v), Some(seen)) = (&lr.version, Seen::of_outcome(lr.outcome, staff_rollback)) {
            crate::http::guard::observe(&state, &serial, v, seen).await;
        }
    }
    let device = written
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| ApiError::unauthorized(format!("box {serial} is not registered")))?;

    let records = state.store.releases().await?;
    let entries: Vec<_> = records.iter().map(|r| r.entry(now)).collect();
    let parts = box_view_parts(&state, &device, &records).await?;
    let forced = device
        .pending_action
        .as_ref()
        .filter(|p| p.action == ActionKind::Upgrade)
        .and_then(|p| p.version.clone());
    let view = parts.view(&device, forced.as_ref(), now);
    let decision = offers::decide(&view, &entries);
    let url_of = |r: &offers::ReleaseEntry| {
        let sha = r.release.image.sha256;
        match &state.config.mirror_url {
            Some(m) => format!("{}/{sha}", m.trim_end_matches('/')),
            None => format!("/api/v1/device/blobs/{sha}"),
        }
    };
    // The action as stored now (re-signed above if it had to be).
    let deliver = deliver.map(|(at, env)| {
        [&device.pending_action, &device.pending_diagnostics]
            .into_iter()
            .flatten()
            .find(|p| p.issued_at == at)
            .map_or(env, |p| p.envelope.clone())
    });
    let time = docs::sign(
        &TimeToken {
            now,
            nonce: req.nonce.clone(),
        },
        &keys.time,
    );
    Ok(Json(CheckInResponse {
        keyring: keys.keyring_envelope.clone(),
        entitlement: device.entitlement.clone(),
        time,
        available: decision.available.map(|(r, hold)| Available {
            manifest: r.manifest.clone(),
            refusal: hold.as_ref().map(RefusalInfo::from),
        }),
        offer: decision.offer.map(|r| Offer {
            manifest: r.manifest.clone(),
            url: url_of(r),
        }),
        action: deliver,
        receipts_done,
    }))
}

#[utoipa::path(post, path = "/api/v1/device/events", tag = "device", security(("device" = [])),
    request_body = DeviceEvent, responses((status = 200, description = "The recorded event", body = EventRecord)))]
async fn event(
    State(state): State<AppState>,
    SignedDevice { device, body }: SignedDevice,
) -> Result<Json<EventRecord>, ApiError> {
    let ev: DeviceEvent = serde_json::from_slice(&body).map_err(|e| bad_body("event", e))?;
    if ev.detail.len() > 4096 {
        return Err(ApiError::bad_request(
            "bad_request",
            "an event's detail is at most 4096 bytes",
        ));
    }
    let now = state.now();
    let serial = device.serial.clone();
    let record = EventRecord {
        at: now,
        version: ev.version.clone(),
        event: ev.event,
        detail: ev.detail.clone(),
    };
    state
        .store
        .append_device_event(&serial, &record, state.config.limits.events_per_box)
        .await?;
    // The version the box runs after this event: a commit runs the new version, a
    // rollback from the version the server had on record goes back to the one before it.
    let rolled_back_from_running =
        ev.event == EventKind::Rollback && ev.version.is_some() && ev.version == device.version;
    let committed_new =
        ev.event == EventKind::Commit && ev.version.is_some() && ev.version != device.version;
    let outcome = match ev.event {
        EventKind::Commit => Some(Outcome::Installed),
        EventKind::Rollback => Some(Outcome::RolledBack),
        EventKind::Refusal => Some(Outcome::Refused),
        EventKind::Failure => Some(Outcome::Failed),
        EventKind::Download | EventKind::Install | EventKind::Trial => None,
    };
    let report = state
        .store
        .update_device_report(&serial, |r| {
            if let Some(outcome) = outcome {
                r.last_result = Some(LastResult {
                    version: ev.version.clone(),
                    outcome,
                    detail: ev.detail.clone(),
                    at: now,
                });
            }
            if let (EventKind::Rollback, Some(v)) = (ev.event, &ev.version) {
                if !r.rolled_back_from.contains(v) {
                    r.rolled_back_from.push(v.clone());
                }
            }
            if committed_new {
                r.previous_version = device.version.clone();
            }
        })
        .await?;
    let back_to = rolled_back_from_running.then(|| report.previous_version.clone());
    let clears = device.pending_action.as_ref().is_some_and(|p| {
        report.delivered_action == Some(p.issued_at) && action_done_by_event(p, &ev)
    });
    let committed = (ev.event == EventKind::Commit)
        .then(|| ev.version.clone())
        .flatten();
    let result = report.last_result.clone().filter(|_| outcome.is_some());
    if clears || committed.is_some() || result.is_some() || back_to.is_some() {
        let change = Change {
            actor: None,
            action: "device_event",
            at: now,
        };
        state
            .store
            .mutate_devices(std::slice::from_ref(&serial), &change, |recs| {
                if let Some(Some(d)) = recs.first_mut() {
                    if clears {
                        d.pending_action = None;
                    }
                    if let Some(v) = &committed {
                        d.version = Some(v.clone());
                    }
                    if let Some(back) = &back_to {
                        // Unknown when the server never saw the version before: better
                        // unknown than the version the box just left.
                        d.version = back.clone();
                    }
                    if let Some(r) = &result {
                        d.last_result = Some(r.clone());
                    }
                }
                Ok::<(), ApiError>(())
            })
            .await
            .map_err(|e| e.into_inner())?;
    }
    // A rollback that answers the staff rollback action handed to this box is no failure.
    let staff_rollback = device.pending_action.as_ref().is_some_and(|p| {
        p.action == ActionKind::Rollback && report.delivered_action == Some(p.issued_at)
    });
    if let (Some(v), Some(seen)) = (&ev.version, Seen::of_event(ev.event, staff_rollback)) {
        crate::http::guard::observe(&state, &serial, v, seen).await;
    }
    tracing::info!(serial = %serial, event = %crate::domain::words::wire_name(&ev.event), "device event");
    Ok(Json(record))
}

/// A box's report and its newest events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct EventsBody {
    report: DeviceReport,
    events: Vec<EventRecord>,
}

#[utoipa::path(get, path = "/api/v1/devices/{serial}/events", tag = "devices", security(("staff" = [])),
    params(("serial" = np_common::Serial, Path)), responses((status = 200, description = "The box's report and newest events", body = EventsBody)))]
async fn list_events(
    State(state): State<AppState>,
    _caller: StaffCaller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<EventsBody>, ApiError> {
    let serial = path_serial(&serial)?;
    if state.store.device(&serial).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "box {serial} is not registered"
        )));
    }
    Ok(Json(EventsBody {
        report: state.store.device_report(&serial).await?,
        events: state.store.device_events(&serial, 100).await?,
    }))
}

#[cfg(test)]
#[path = "release_api_tests.rs"]
mod api_tests;
