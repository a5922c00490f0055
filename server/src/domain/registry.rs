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
    /// Accept a purchase date more than [`FUTURE_DAYS`] days ahead of today.
    #[serde(default)]
    pub allow_future: bool,
}

/// `PATCH /api/v1/devices/{serial}`: corrects what staff typed at registration.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    /// The corrected owner.
    pub customer: Option<String>,
    /// The corrected purchase date (`YYYY-MM-DD`); the warranty term follows it.
    pub purchase_date: Option<String>,
    /// Accept a purchase date more than [`FUTURE_DAYS`] days ahead of today.
    #[serde(default)]
    pub allow_future: bool,
    /// The box's public key (base64), set or replaced (a box swapped in without one
    /// cannot check in until it has one).
    #[serde(default)]
    pub device_key: Option<String>,
}

/// How many days ahead of today a purchase date may be without `allow_future` (time
/// zones, and a box registered the day before it ships).
pub const FUTURE_DAYS: i64 = 3;

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

/// The longest customer name or reason.
pub const MAX_TEXT: usize = 500;

/// 404 for a serial that is not registered (`details.serial` names it).
pub fn unknown(serial: &Serial) -> ApiError {
    ApiError::not_found(format!(
        "no device {serial} is registered; register it first"
    ))
    .with_details(serde_json::json!({"serial": serial}))
}

/// 409 `exists` for a serial registered already (`details.serial` names it).
pub fn exists(serial: &Serial) -> ApiError {
    ApiError::conflict("exists", format!("device {serial} is registered already"))
        .with_details(serde_json::json!({"serial": serial}))
}

/// Refuses a purchase date more than [`FUTURE_DAYS`] days after `today` unless allowed
/// (422 `future_purchase_date`): a year-long typo would otherwise go unnoticed.
pub fn check_purchase_date(
    purchase: jiff::civil::Date,
    today: jiff::civil::Date,
    allow_future: bool,
) -> Result<(), ApiError> {
    let ahead = (purchase - today).get_days();
    let ahead = i64::from(ahead);
    if allow_future || ahead <= FUTURE_DAYS {
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "future_purchase_date",
        format!(
            "the purchase date {purchase} is {ahead} days after today ({today}); a box is registered once it is sold, so check the date, or allow a future date explicitly"
        ),
    )
    .with_details(serde_json::json!({
        "purchase_date": purchase.to_string(),
        "today": today.to_string(),
        "days_ahead": ahead,
    })))
}

/// Refuses a change to a box that is no longer active (409 `not_active`).
pub fn require_active(d: &DeviceRecord, what: &str) -> Result<(), ApiError> {
    if d.status == Status::Active {
        return Ok(());
    }
    // Said once: the status is the reason ("is revoked, so ..."), not repeated after it.
    let message = match (&d.status, &d.replaced_by) {
        (Status::Replaced, Some(by)) => format!(
            "device {} was replaced by {by}, so it cannot be changed; {what} {by} instead",
            d.serial
        ),
        _ => format!(
            "device {} is {}, so its coverage cannot change any more",
            d.serial, d.status
        ),
    };
    Err(ApiError::conflict("not_active", message)
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
    check_purchase_date(purchase, state.today(), req.allow_future)?;
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
                &state.keys().entitlement,
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
            d.reissue(&state.keys().entitlement, now);
            Ok(())
        })
        .await
        .map_err(MutateError::<ApiError>::into_inner)?;
    one(recs)
}

/// A checked swap request: what [`SwapPlan::apply`] does to the two records, in the
/// transaction that writes them (the swap route, and an RMA that ends in a swap).
#[derive(Debug, Clone)]
pub struct SwapPlan {
    old_serial: Serial,
    new_serial: Serial,
    new_model: np_common::Model,
    new_key: Option<np_common::PublicKey>,
    reason: String,
}

impl SwapPlan {
    /// Checks the request's own fields (`bad_serial`, `bad_model`, `bad_device_key`,
    /// `swap_not_allowed` for a box swapped for itself).
    pub fn new(
        state: &AppState,
        old_serial: &Serial,
        req: &SwapRequest,
    ) -> Result<SwapPlan, ApiError> {
        let new_serial = validate::serial(&req.new_serial)?;
        let given = req.new_model.as_deref().map(validate::model).transpose()?;
        let new_model = state
            .config
            .catalog
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
        Ok(SwapPlan {
            old_serial: old_serial.clone(),
            new_serial,
            new_model,
            new_key,
            reason,
        })
    }

    /// The replacement's serial.
    pub fn new_serial(&self) -> &Serial {
        &self.new_serial
    }

    /// The two serials a swap changes: (old, new).
    pub fn serials(&self) -> [Serial; 2] {
        [self.old_serial.clone(), self.new_serial.clone()]
    }

    /// The swap rule on the records of [`SwapPlan::serials`]: the old box must be active,
    /// the new model of the same family and the same or a higher tier
    /// (`swap_not_allowed`), the new serial unregistered (`exists`). The old box becomes
    /// `replaced`; the new one takes every term; both entitlements are re-signed.
    pub fn apply(
        &self,
        state: &AppState,
        recs: &mut [Option<DeviceRecord>],
        now: jiff::Timestamp,
    ) -> Result<(), ApiError> {
        let (old_serial, new_serial) = (&self.old_serial, &self.new_serial);
        let old = recs
            .first_mut()
            .and_then(Option::as_mut)
            .ok_or_else(|| unknown(old_serial))?;
        require_active(old, "swap")?;
        state
            .config
            .catalog
            .check_swap(&old.model, &self.new_model)
            .map_err(validate::model_error)?;
        if recs.get(1).is_some_and(Option::is_some) {
            return Err(exists(new_serial));
        }
        let Some(old) = recs.first_mut().and_then(Option::as_mut) else {
            return Err(unknown(old_serial));
        };
        old.status = Status::Replaced;
        old.replaced_by = Some(new_serial.clone());
        old.status_reason = Some(self.reason.clone());
        old.pending_action = None;
        old.pending_diagnostics = None;
        old.reissue(&state.keys().entitlement, now);
        let mut new = DeviceRecord::new(
            new_serial.clone(),
            self.new_model.clone(),
            old.customer.clone(),
            old.purchase_date,
            old.terms.clone(),
            self.new_key.clone(),
            &state.keys().entitlement,
            now,
        );
        new.replaces = Some(old_serial.clone());
        new.status_reason = Some(self.reason.clone());
        match recs.get_mut(1) {
            Some(slot) => *slot = Some(new),
            None => return Err(ApiError::internal("a swap without the new box's slot")),
        }
        Ok(())
    }
}

/// Swaps a failed box for a new one of the same family and the same or a higher tier:
/// the new box takes every term; the old one becomes `replaced`. Returns (old, new).
pub async fn swap(
    state: &AppState,
    actor: &str,
    old_serial: &Serial,
    req: SwapRequest,
) -> Result<(DeviceRecord, DeviceRecord), ApiError> {
    let plan = SwapPlan::new(state, old_serial, &req)?;
    let now = state.now();
    let change = Change {
        actor: Some(actor),
        action: "swap",
        at: now,
    };
    let mut recs = state
        .store
        .mutate_devices(&plan.serials(), &change, |recs| {
            plan.apply(state, recs, now)
        })
        .await
        .map_err(MutateError::<ApiError>::into_inner)?;
    let new = one(recs.split_off(1))?;
    let old = one(recs)?;
    let why = format!("the box was replaced by {}", new.serial);
    crate::domain::support::box_gone(state, actor, old_serial, &why).await;
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
            d.pending_diagnostics = None;
            d.reissue(&state.keys().entitlement, now);
            Ok(())
        })
        .await
        .map_err(MutateError::<ApiError>::into_inner)?;
    crate::domain::support::box_gone(state, actor, serial, "the box was revoked").await;
    one(recs)
}

/// Corrects a box's customer or purchase date (audited as `edit`, before and after). A
/// new purchase date moves the warranty term and re-signs the entitlement; it is refused
/// (409 `has_extensions`) once terms are stacked on that warranty, since they would not
/// move with it.
pub async fn edit(
    state: &AppState,
    actor: &str,
    serial: &Serial,
    req: EditRequest,
) -> Result<DeviceRecord, ApiError> {
    let customer = req
        .customer
        .as_deref()
        .map(|c| validate::text("customer", c, MAX_TEXT))
        .transpose()?;
    let purchase = req
        .purchase_date
        .as_deref()
        .map(|d| validate::date("purchase_date", d))
        .transpose()?;
    let device_key = validate::device_key("device_key", req.device_key.as_deref())?;
    if customer.is_none() && purchase.is_none() && device_key.is_none() {
        return Err(ApiError::unprocessable(
            "nothing_to_change",
            "name what to correct: the customer, the purchase date, the device key, or some of them",
        ));
    }
    if let Some(p) = purchase {
        check_purchase_date(p, state.today(), req.allow_future)?;
    }
    let term = purchase
        .map(initial_term)
        .transpose()
        .map_err(validate::warranty_error)?;
    let now = state.now();
    let change = Change {
        actor: Some(actor),
        action: "edit",
        at: now,
    };
    let recs = state
        .store
        .mutate_devices(std::slice::from_ref(serial), &change, |recs| {
            let d = recs[0].as_mut().ok_or_else(|| unknown(serial))?;
            if let Some(c) = &customer {
                d.customer = c.clone();
                d.updated_at = now;
            }
            if let Some(k) = &device_key {
                if d.device_key.as_ref() != Some(k) {
                    d.device_key = Some(k.clone());
                    d.updated_at = now;
                }
            }
            if let (Some(p), Some(t)) = (purchase, &term) {
                if p == d.purchase_date {
                    return Ok(());
                }
                require_active(d, "correct")?;
                if d.terms.len() != 1 || d.replaces.is_some() {
                    return Err(ApiError::conflict(
                        "has_extensions",
                        format!(
                            "device {serial} has {} terms (extensions, a reinstatement or a swap) stacked on its warranty; they would not move with the purchase date, so it cannot be corrected any more",
                            d.terms.len()
                        ),
                    ));
                }
                d.purchase_date = p;
                d.terms = vec![*t];
                d.reissue(&state.keys().entitlement, now);
            }
            Ok(())
        })
        .await
        .map_err(MutateError::<ApiError>::into_inner)?;
    one(recs)
}

/// The registered device `serial`, or 404.
pub async fn get(state: &AppState, serial: &Serial) -> Result<DeviceRecord, ApiError> {
    state
        .store
        .device(serial)
        .await?
        .ok_or_else(|| unknown(serial))
}
