//! The warranty registry's operations (docs/api.md, "Warranty rules"): register, extend, swap and revoke. Each
//! validates its request, changes the records in one store transaction (which also
//! writes the audit entries), re-signs the entitlements, and is flushed before it returns.

use crate::domain::device::DeviceRecord;
use crate::domain::validate;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{Change, MutateError};
use np_common::docs::Status;
use np_common::warranty::{initial_term, plan_extension};
use np_common::Serial;
use serde::Deserialize;

/// `POST /api/v1/devices`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The box's serial.
    pub serial: String,
    /// Its model; defaults to the one the serial names.
    pub model: Option<String>,
    /// `YYYY-MM-DD`.
    pub purchase_date: String,
    /// The owner.
    pub customer: String,
    /// The box's public key (base64), if known.
    pub device_key: Option<String>,
}

/// `POST /api/v1/devices/{serial}/extensions`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// Months to add.
    pub months: Option<i64>,
    /// Years to add.
    pub years: Option<i64>,
    /// Pay for the gap of a lapsed box and start a new term today.
    #[serde(default)]
    pub reinstate: bool,
}

/// `POST /api/v1/devices/{serial}/swap`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// The replacement box's serial.
    pub new_serial: String,
    /// Its model; defaults to the one its serial names.
    pub new_model: Option<String>,
    /// Its public key (base64), if known.
    pub new_device_key: Option<String>,
    /// Why (the RMA case).
    pub reason: String,
}

/// `POST /api/v1/devices/{serial}/revoke`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why.
    pub reason: String,
}

const MAX_TEXT: usize = 500;

fn unknown(serial: &Serial) -> ApiError {
    ApiError::not_found(format!(
        "no device {serial} is registered; register it with POST /api/v1/devices"
    ))
}

fn exists(serial: &Serial) -> ApiError {
    ApiError::conflict(
        "exists",
        format!("device {serial} is registered already; GET /api/v1/devices/{serial} shows it"),
    )
}

/// Refuses a change to a box that is no longer active.
fn require_active(d: &DeviceRecord, what: &str) -> Result<(), ApiError> {
    if d.status == Status::Active {
        return Ok(());
    }
    let why = match (&d.status, &d.replaced_by) {
        (Status::Replaced, Some(by)) => format!("it was replaced by {by}; {what} {by} instead"),
        _ => "it was revoked; its coverage cannot change any more".to_owned(),
    };
    Err(ApiError::conflict(
        "not_active",
        format!(
            "device {} is {}, so it cannot be changed: {why}",
            d.serial, d.status
        ),
    )
    .with_details(serde_json::json!({"status": d.status})))
}

fn one(mut recs: Vec<Option<DeviceRecord>>) -> Result<DeviceRecord, ApiError> {
    recs.pop()
        .flatten()
        .ok_or_else(|| ApiError::internal("a changed record vanished"))
}

/// Registers a box with one year of warranty from its purchase date.
pub async fn register(
    state: &AppState,
    actor: &str,
    req: RegisterRequest,
) -> Result<DeviceRecord, ApiError> {
    let serial = validate::serial(&req.serial)?;
    let given = req.model.as_deref().map(validate::model).transpose()?;
    let model = state
        .config
        .catalog
        .device_model(&serial, given.as_ref())
        .map_err(validate::model_error)?;
    let purchase = validate::date("purchase_date", &req.purchase_date)?;
    let customer = validate::text("customer", &req.customer, MAX_TEXT)?;
    let device_key = validate::device_key("device_key", req.device_key.as_deref())?;
    let term = initial_term(purchase).map_err(validate::warranty_error)?;
    let now = state.now();
    let change = Change {
        actor: Some(actor),
        action: "register",
        at: now,
    };
    let recs = state
        .store
        .mutate_devices(std::slice::from_ref(&serial), &change, |recs| {
            if recs[0].is_some() {
                return Err(exists(&serial));
            }
            recs[0] = Some(DeviceRecord::new(
                serial.clone(),
                model.clone(),
                customer.clone(),
                purchase,
                vec![term],
                device_key.clone(),
                &state.keys.online,
                now,
            ));
            Ok(())
        })
        .await
        .map_err(MutateError::<ApiError>::into_inner)?;
    one(recs)
}

/// Adds an extension term (stacked on the coverage end), or for a lapsed box with
/// `reinstate`, a reinstatement of the gap and a new term from today.
pub async fn extend(
    state: &AppState,
    actor: &str,
    serial: &Serial,
    req: ExtendRequest,
) -> Result<DeviceRecord, ApiError> {
    let duration = validate::duration(req.months, req.years)?;
    let now = state.now();
    let today = state.today();
    let action = if req.reinstate { "reinstate" } else { "extend" };
    let change = Change {
        actor: Some(actor),
        action,
        at: now,
    };
    let recs = state
        .store
        .mutate_devices(std::slice::from_ref(serial), &change, |recs| {
            let d = recs[0].as_mut().ok_or_else(|| unknown(serial))?;
            require_active(d, "extend")?;
            let added = plan_extension(&d.terms, today, duration, req.reinstate)
                .map_err(validate::warranty_error)?;
            d.terms.extend(added);
            d.reissue(&state.keys.online, now);
            Ok(())
        })
        .await
        .map_err(MutateError::<ApiError>::into_inner)?;
    one(recs)
}

/// Swaps a failed box for a new one of the same family and the same or a higher tier:
/// the new box takes every term; the old one becomes `replaced`. Returns (old, new).
pub async fn swap(
    state: &AppState,
    actor: &str,
    old_serial: &Serial,
    req: SwapRequest,
) -> Result<(DeviceRecord, DeviceRecord), ApiError> {
    let new_serial = validate::serial(&req.new_serial)?;
    let given = req.new_model.as_deref().map(validate::model).transpose()?;
    let catalog = &state.config.catalog;
    let new_model = catalog
        .device_model(&new_serial, given.as_ref())
        .map_err(validate::model_error)?;
    let new_key = validate::device_key("new_device_key", req.new_device_key.as_deref())?;
    let reason = validate::text("reason", &req.reason, MAX_TEXT)?;
    if &new_serial == old_serial {
        return Err(ApiError::unprocessable(
            "swap_not_allowed",
            format!(
                "a box cannot be swapped for itself ({old_serial}); name the replacement's serial"
            ),
        ));
    }
    let now = state.now();
    let change = Change {
        actor: Some(actor),
        action: "swap",
        at: now,
    };
    let serials = [old_serial.clone(), new_serial.clone()];
    let mut recs = state
        .store
        .mutate_devices(&serials, &change, |recs| {
            let old = recs[0].as_mut().ok_or_else(|| unknown(old_serial))?;
            require_active(old, "swap")?;
            catalog
                .check_swap(&old.model, &new_model)
                .map_err(validate::model_error)?;
            if recs[1].is_some() {
                return Err(exists(&new_serial));
            }
            let Some(old) = recs[0].as_mut() else {
                return Err(unknown(old_serial));
            };
            old.status = Status::Replaced;
            old.replaced_by = Some(new_serial.clone());
            old.status_reason = Some(reason.clone());
            old.pending_action = None;
            old.reissue(&state.keys.online, now);
            let mut new = DeviceRecord::new(
                new_serial.clone(),
                new_model.clone(),
                old.customer.clone(),
                old.purchase_date,
                old.terms.clone(),
                new_key.clone(),
                &state.keys.online,
                now,
            );
            new.replaces = Some(old_serial.clone());
            new.status_reason = Some(reason.clone());
            recs[1] = Some(new);
            Ok(())
        })
        .await
        .map_err(MutateError::<ApiError>::into_inner)?;
    let new = one(recs.split_off(1))?;
    let old = one(recs)?;
    Ok((old, new))
}

/// Revokes a box's entitlement, with a reason.
pub async fn revoke(
    state: &AppState,
    actor: &str,
    serial: &Serial,
    req: RevokeRequest,
) -> Result<DeviceRecord, ApiError> {
    let reason = validate::text("reason", &req.reason, MAX_TEXT)?;
    let now = state.now();
    let change = Change {
        actor: Some(actor),
        action: "revoke",
        at: now,
    };
    let recs = state
        .store
        .mutate_devices(std::slice::from_ref(serial), &change, |recs| {
            let d = recs[0].as_mut().ok_or_else(|| unknown(serial))?;
            require_active(d, "revoke")?;
            d.status = Status::Revoked;
            d.status_reason = Some(reason.clone());
            d.pending_action = None;
            d.reissue(&state.keys.online, now);
            Ok(())
        })
        .await
        .map_err(MutateError::<ApiError>::into_inner)?;
    one(recs)
}

/// The registered device `serial`, or 404.
pub fn get(state: &AppState, serial: &Serial) -> Result<DeviceRecord, ApiError> {
    state.store.device(serial)?.ok_or_else(|| unknown(serial))
}
