//! Bulk registration (`POST /api/v1/devices/import`): a batch of boxes checked row by row,
//! then registered in one store transaction, all or none. A refused batch names every bad
//! row by its line in the caller's file, so one pass fixes them all.

use crate::domain::device::DeviceRecord;
use crate::domain::registry::{self, RegisterRequest, MAX_TEXT};
use crate::domain::validate;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{Change, MutateError};
use np_common::warranty::initial_term;
use np_common::{Model, PublicKey, Serial};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The most rows one batch may hold.
pub const MAX_ROWS: usize = 5000;

/// One row of a batch: a registration and the line it came from.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    /// The line in the caller's file (for errors); the row's position when absent.
    pub line: Option<u64>,
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
    /// Accept a purchase date in the future.
    #[serde(default)]
    pub allow_future: bool,
}

impl ImportRow {
    fn request(&self) -> RegisterRequest {
        RegisterRequest {
            serial: self.serial.clone(),
            model: self.model.clone(),
            purchase_date: self.purchase_date.clone(),
            customer: self.customer.clone(),
            device_key: self.device_key.clone(),
            allow_future: self.allow_future,
        }
    }
}

/// `POST /api/v1/devices/import` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The boxes to register.
    pub devices: Vec<ImportRow>,
    /// Skip (and count) a box registered already with the same facts (model, customer,
    /// purchase date, and the key when the row gives one), so that a re-run of a file is
    /// safe; a box registered with other facts is still refused (`exists`).
    #[serde(default)]
    pub skip_existing: bool,
}

/// What one batch did.
#[derive(Debug)]
pub struct Imported {
    /// The boxes registered now, in the order given.
    pub registered: Vec<DeviceRecord>,
    /// The serials skipped as registered already with the same facts.
    pub skipped: Vec<Serial>,
}

/// Why one row was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowError {
    /// The line in the caller's file.
    pub line: u64,
    /// The row's serial as given.
    pub serial: String,
    /// The error code, as for one registration (`bad_serial`, `exists`, ...).
    pub code: String,
    /// What is wrong.
    pub message: String,
}

struct Checked {
    serial: Serial,
    model: Model,
    customer: String,
    purchase: jiff::civil::Date,
    device_key: Option<PublicKey>,
    term: np_common::warranty::Term,
    line: u64,
}

fn check_row(state: &AppState, r: &RegisterRequest) -> Result<Checked, ApiError> {
    let serial = validate::serial(&r.serial)?;
    let given = r.model.as_deref().map(validate::model).transpose()?;
    let model = state
        .config
        .catalog
        .device_model(&serial, given.as_ref())
        .map_err(validate::model_error)?;
    let purchase = validate::date("purchase_date", &r.purchase_date)?;
    registry::check_purchase_date(purchase, state.today(), r.allow_future)?;
    let customer = validate::text("customer", &r.customer, MAX_TEXT)?;
    let device_key = validate::device_key("device_key", r.device_key.as_deref())?;
    let term = initial_term(purchase).map_err(validate::warranty_error)?;
    Ok(Checked {
        serial,
        model,
        customer,
        purchase,
        device_key,
        term,
        line: 0,
    })
}

fn row_error(line: u64, serial: &str, e: &ApiError) -> RowError {
    RowError {
        line,
        serial: serial.chars().take(40).collect(),
        code: e.code.clone(),
        message: e.message.clone(),
    }
}

fn rejected(errors: Vec<RowError>) -> ApiError {
    let first = errors
        .first()
        .map(|e| format!("; line {}: {}", e.line, e.message))
        .unwrap_or_default();
    ApiError::unprocessable(
        "import_rejected",
        format!(
            "{} of the rows are refused, so none was registered{first}",
            errors.len()
        ),
    )
    .with_details(serde_json::json!({ "errors": errors }))
}

/// Does a registered box carry the facts of a row (the key only when the row gives one)?
fn same_facts(rec: &DeviceRecord, row: &Checked) -> bool {
    rec.model == row.model
        && rec.customer == row.customer
        && rec.purchase_date == row.purchase
        && (row.device_key.is_none() || rec.device_key == row.device_key)
}

/// Registers every row in one transaction (audited `import`, one entry per box), or none:
/// 422 `import_rejected` with `details.errors` naming each bad row's line. With
/// `skip_existing`, a box registered already with the same facts is skipped, not refused.
pub async fn import(
    state: &AppState,
    actor: &str,
    req: ImportRequest,
) -> Result<Imported, ApiError> {
    if req.devices.is_empty() || req.devices.len() > MAX_ROWS {
        return Err(ApiError::unprocessable(
            "bad_import",
            format!(
                "a batch holds 1 to {MAX_ROWS} boxes, not {}",
                req.devices.len()
            ),
        ));
    }
    let mut errors = Vec::new();
    let mut rows = Vec::with_capacity(req.devices.len());
    let mut seen: HashMap<Serial, u64> = HashMap::new();
    for (i, row) in req.devices.iter().enumerate() {
        let line = row.line.unwrap_or(i as u64 + 1);
        match check_row(state, &row.request()) {
            Ok(mut c) => {
                c.line = line;
                if let Some(first) = seen.insert(c.serial.clone(), line) {
                    errors.push(RowError {
                        line,
                        serial: c.serial.to_string(),
                        code: "duplicate".into(),
                        message: format!("{} appears already on line {first}", c.serial),
                    });
                } else {
                    rows.push(c);
                }
            }
            Err(e) => errors.push(row_error(line, &row.serial, &e)),
        }
    }
    if !errors.is_empty() {
        return Err(rejected(errors));
    }
    let serials: Vec<Serial> = rows.iter().map(|r| r.serial.clone()).collect();
    let now = state.now();
    let change = Change {
        actor: Some(actor),
        action: "import",
        at: now,
    };
    // The rows found registered already (the closure may run again on a conflict).
    let found = std::sync::Mutex::new(Vec::<Serial>::new());
    let written = state
        .store
        .mutate_devices(&serials, &change, |recs| {
            let mut skipped = Vec::new();
            let taken: Vec<RowError> = rows
                .iter()
                .zip(recs.iter())
                .filter(|(r, rec)| match rec {
                    Some(rec) => !(req.skip_existing && same_facts(rec, r)),
                    None => false,
                })
                .map(|(r, _)| row_error(r.line, r.serial.as_str(), &registry::exists(&r.serial)))
                .collect();
            if !taken.is_empty() {
                return Err(rejected(taken));
            }
            for (slot, r) in recs.iter_mut().zip(&rows) {
                if slot.is_some() {
                    skipped.push(r.serial.clone());
                    continue;
                }
                *slot = Some(DeviceRecord::new(
                    r.serial.clone(),
                    r.model.clone(),
                    r.customer.clone(),
                    r.purchase,
                    vec![r.term],
                    r.device_key.clone(),
                    &state.keys().entitlement,
                    now,
                ));
            }
            if let Ok(mut f) = found.lock() {
                *f = skipped;
            }
            Ok(())
        })
        .await
        .map_err(MutateError::<ApiError>::into_inner)?;
    let skipped = found.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(Imported {
        registered: written
            .into_iter()
            .flatten()
            .filter(|r| !skipped.contains(&r.serial))
            .collect(),
        skipped,
    })
}
