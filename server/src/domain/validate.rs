//! Turning request fields into domain values, each failure a 422 with the code docs/api.md
//! names (`bad_serial`, `bad_model`, `bad_date`, `bad_duration`, ...) and a sentence.

use crate::http::error::ApiError;
use jiff::civil::Date;
use np_common::serial::ModelError;
use np_common::warranty::{Duration, WarrantyError};
use np_common::{Model, PublicKey, Serial};

/// The earliest and latest year a date may have.
const YEARS: std::ops::RangeInclusive<i16> = 1990..=2200;

/// A serial as people type it: spaces dropped, letters upper-cased
/// (` nr-2000-123456-4` is `NR-2000-123456-4`).
pub fn normalize_serial(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// A serial, normalized first (`bad_serial`).
pub fn serial(s: &str) -> Result<Serial, ApiError> {
    Serial::parse(&normalize_serial(s))
        .map_err(|e| ApiError::unprocessable("bad_serial", e.to_string()))
}

/// A model name (`bad_model`).
pub fn model(s: &str) -> Result<Model, ApiError> {
    Model::parse(s).map_err(|e| ApiError::unprocessable("bad_model", e.to_string()))
}

/// A catalog refusal: `bad_model` for an unknown or contradicting model,
/// `swap_not_allowed` for a swap across families or to a lower tier.
pub fn model_error(e: ModelError) -> ApiError {
    match e {
        ModelError::Unknown(_) | ModelError::ContradictsSerial { .. } => {
            ApiError::unprocessable("bad_model", e.to_string())
        }
        ModelError::FamilyDiffers { .. } | ModelError::LowerTier { .. } => {
            ApiError::unprocessable("swap_not_allowed", e.to_string())
        }
    }
}

/// A calendar date `YYYY-MM-DD` (`bad_date`).
pub fn date(field: &str, s: &str) -> Result<Date, ApiError> {
    let bad = || {
        ApiError::unprocessable(
            "bad_date",
            format!(
                "{field} {:?} is not a calendar date: use YYYY-MM-DD between {} and {}",
                s.chars().take(40).collect::<String>(),
                YEARS.start(),
                YEARS.end()
            ),
        )
    };
    let is_shape = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    let d: Date = if is_shape {
        s.parse().map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    if !YEARS.contains(&d.year()) {
        return Err(bad());
    }
    Ok(d)
}

/// An optional device public key (`bad_device_key`).
pub fn device_key(field: &str, s: Option<&str>) -> Result<Option<PublicKey>, ApiError> {
    s.map(|k| {
        PublicKey::from_base64(k).map_err(|e| {
            ApiError::unprocessable(
                "bad_device_key",
                format!("{field} is not an Ed25519 public key: {e}"),
            )
        })
    })
    .transpose()
}

/// A required free text of at most `max` characters (`bad_<field>`).
pub fn text(field: &str, s: &str, max: usize) -> Result<String, ApiError> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > max || t.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            &format!("bad_{field}"),
            format!("{field} must be 1 to {max} characters of text without control characters"),
        ));
    }
    Ok(t.to_owned())
}

/// An extension's length (`bad_duration`).
pub fn duration(months: Option<i64>, years: Option<i64>) -> Result<Duration, ApiError> {
    Duration::from_request(months, years).map_err(|e| match e {
        WarrantyError::BadDuration(_) => ApiError::unprocessable(
            "bad_duration",
            format!("{e}; extend by a whole number of months or of years"),
        ),
        other => warranty_error(other),
    })
}

/// A warranty arithmetic failure: `lapsed` (409, with the gap), `bad_duration`, `bad_date`.
pub fn warranty_error(e: WarrantyError) -> ApiError {
    match &e {
        WarrantyError::Lapsed {
            ended,
            gap_days,
            billable_months,
        } => ApiError::conflict(
            "lapsed",
            format!(
                "coverage ended on {ended}, {gap_days} days ago ({billable_months} billable months); a reinstatement pays for the gap and starts a new term today"
            ),
        )
        .with_details(serde_json::json!({
            "coverage_end": ended.to_string(),
            "gap_days": gap_days,
            "billable_months": billable_months,
        })),
        WarrantyError::BadDuration(_) => ApiError::unprocessable("bad_duration", e.to_string()),
        WarrantyError::DateRange => ApiError::unprocessable(
            "bad_date",
            "the resulting date is out of the calendar's range",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(serial("NR-2000-123456-5").unwrap_err().code, "bad_serial");
        assert_eq!(
            serial(" nr-2000-123456-4 ").unwrap().as_str(),
            "NR-2000-123456-4"
        );
        assert_eq!(
            date("purchase_date", "2026-13-45").unwrap_err().code,
            "bad_date"
        );
        assert_eq!(
            date("purchase_date", "2026-2-1").unwrap_err().code,
            "bad_date"
        );
        assert_eq!(
            date("purchase_date", "0001-01-01").unwrap_err().code,
            "bad_date"
        );
        assert_eq!(
            date("d", "2024-02-29").unwrap(),
            jiff::civil::date(2024, 2, 29)
        );
        assert_eq!(duration(Some(0), None).unwrap_err().code, "bad_duration");
        assert_eq!(
            duration(Some(i64::MAX), None).unwrap_err().code,
            "bad_duration"
        );
        assert_eq!(text("reason", " ", 10).unwrap_err().code, "bad_reason");
        assert_eq!(
            device_key("device_key", Some("xx")).unwrap_err().code,
            "bad_device_key"
        );
    }
}
