//! The update rule (docs/formats.md) as one function that both the agent and the server call, and
//! that names the rule that failed.

use crate::docs::{Entitlement, Release, Status};
use crate::serial::{Model, Serial};
use crate::version::Version;
use jiff::civil::Date;
use jiff::Timestamp;

/// What the rule looks at. The manifest and the entitlement have already been verified
/// under the keyring (`crate::docs::verify`); the image is checked as it streams
/// (`crate::image::ImageVerifier`).
#[derive(Debug, Clone, Copy)]
pub struct UpdateInputs<'a> {
    pub serial: &'a Serial,
    pub model: &'a Model,
    pub release: &'a Release,
    pub entitlement: Option<&'a Entitlement>,
    /// Trusted now: max(system clock, time floor).
    pub now: Timestamp,
    pub running_version: &'a Version,
    pub running_security_version: u64,
}

/// The rule that stops an update, with its values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("release {version} is not for model {model} (it lists {listed})")]
    ModelNotListed {
        version: Version,
        model: Model,
        listed: String,
    },
    #[error("box {serial} has no warranty entitlement; ask the vendor for one")]
    NoEntitlement { serial: Serial },
    #[error("the entitlement is for {entitled}, not for box {serial}")]
    EntitlementOtherSerial { serial: Serial, entitled: Serial },
    #[error("the entitlement is for model {entitled}, but box {serial} is model {model}")]
    EntitlementOtherModel {
        serial: Serial,
        model: Model,
        entitled: Model,
    },
    #[error("the warranty of {serial} is {status}; only an active warranty allows updates")]
    EntitlementNotActive { serial: Serial, status: Status },
    #[error("warranty for {serial} ended on {coverage_end}; extend it to install {version}")]
    WarrantyExpired {
        serial: Serial,
        coverage_end: Date,
        version: Version,
    },
    #[error("release {version} was published at {released_at}, after the warranty of {serial} ended on {coverage_end}; extend it to install it")]
    ReleasedAfterCoverage {
        serial: Serial,
        version: Version,
        released_at: Timestamp,
        coverage_end: Date,
    },
    #[error("release {version} has security version {offered}, below the running firmware's {running}: a security downgrade")]
    SecurityDowngrade {
        version: Version,
        running: u64,
        offered: u64,
    },
    #[error("release {offered} is not newer than the running version {running}")]
    NotNewer { running: Version, offered: Version },
    #[error("release {version} installs only over {min_from} or later; this box runs {running}")]
    FromVersionTooOld {
        version: Version,
        running: Version,
        min_from: Version,
    },
}

impl Refusal {
    /// A stable snake_case name of the rule, for JSON answers and reports.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::ModelNotListed { .. } => "model_not_listed",
            Refusal::NoEntitlement { .. } => "no_entitlement",
            Refusal::EntitlementOtherSerial { .. } => "entitlement_other_serial",
            Refusal::EntitlementOtherModel { .. } => "entitlement_other_model",
            Refusal::EntitlementNotActive { .. } => "entitlement_not_active",
            Refusal::WarrantyExpired { .. } => "warranty_expired",
            Refusal::ReleasedAfterCoverage { .. } => "released_after_coverage",
            Refusal::SecurityDowngrade { .. } => "security_downgrade",
            Refusal::NotNewer { .. } => "not_newer",
            Refusal::FromVersionTooOld { .. } => "from_version_too_old",
        }
    }
}

/// The start of a coverage-end date as an instant (UTC midnight).
pub fn date_start(d: Date) -> Timestamp {
    d.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MIN)
}

/// May this box install this release? `Ok(())` or the first rule that fails.
pub fn check_update(i: &UpdateInputs<'_>) -> Result<(), Refusal> {
    let r = i.release;
    if !r.models.contains(i.model) {
        return Err(Refusal::ModelNotListed {
            version: r.version.clone(),
            model: i.model.clone(),
            listed: r
                .models
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let Some(e) = i.entitlement else {
        return Err(Refusal::NoEntitlement {
            serial: i.serial.clone(),
        });
    };
    if &e.serial != i.serial {
        return Err(Refusal::EntitlementOtherSerial {
            serial: i.serial.clone(),
            entitled: e.serial.clone(),
        });
    }
    if &e.model != i.model {
        return Err(Refusal::EntitlementOtherModel {
            serial: i.serial.clone(),
            model: i.model.clone(),
            entitled: e.model.clone(),
        });
    }
    if e.status != Status::Active {
        return Err(Refusal::EntitlementNotActive {
            serial: i.serial.clone(),
            status: e.status,
        });
    }
    let end = date_start(e.coverage_end);
    if i.now >= end {
        return Err(Refusal::WarrantyExpired {
            serial: i.serial.clone(),
            coverage_end: e.coverage_end,
            version: r.version.clone(),
        });
    }
    if r.released_at >= end {
        return Err(Refusal::ReleasedAfterCoverage {
            serial: i.serial.clone(),
            version: r.version.clone(),
            released_at: r.released_at,
            coverage_end: e.coverage_end,
        });
    }
    if r.security_version < i.running_security_version {
        return Err(Refusal::SecurityDowngrade {
            version: r.version.clone(),
            running: i.running_security_version,
            offered: r.security_version,
        });
    }
    if r.version <= *i.running_version {
        return Err(Refusal::NotNewer {
            running: i.running_version.clone(),
            offered: r.version.clone(),
        });
    }
    if *i.running_version < r.min_from_version {
        return Err(Refusal::FromVersionTooOld {
            version: r.version.clone(),
            running: i.running_version.clone(),
            min_from: r.min_from_version.clone(),
        });
    }
    Ok(())
}
