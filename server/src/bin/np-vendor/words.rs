//! The server's refusals in the words of this command line: its commands and flags, never
//! the HTTP API's routes and JSON fields. Codes whose remedy differs by interface get a
//! sentence of their own, built from the error's details; in every other message a JSON
//! field name becomes the flag that sets it.

use serde_json::Value;

/// JSON fields of requests and the flags that set them.
const FLAGS: &[(&str, &str)] = &[
    ("purchase_date", "--purchase-date"),
    ("customer", "--customer"),
    ("device_key", "--device-key"),
    ("new_device_key", "--new-device-key"),
    ("new_serial", "--new-serial"),
    ("new_model", "--new-model"),
    ("expiring_before", "--expiring-before"),
    ("checked_in_before", "--checked-in-before"),
    ("min_from_version", "--min-from-version"),
    ("security_version", "--security-version"),
    ("released_at", "--released-at"),
    ("rollout_percent", "--rollout"),
    ("image_name", "--name"),
    ("since", "--since"),
    ("reinstate", "--reinstate"),
    ("summary", "--summary"),
    ("replacement_serial", "--replacement-serial"),
    ("replacement_model", "--replacement-model"),
    ("replacement_device_key", "--replacement-device-key"),
    ("exclusion", "--exclusion"),
];

/// Routes the server may name, and the command that does the same.
const ROUTES: &[(&str, &str)] = &[
    ("PUT /api/v1/blobs", "`np-vendor release upload`"),
    ("POST /api/v1/devices", "`np-vendor device add`"),
    ("POST /api/v1/cases/{id}/rma", "`np-vendor case rma ID`"),
];

fn text(details: Option<&Value>, key: &str) -> Option<String> {
    match details?.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Replaces whole words `from` by `to` in `s` (a word being letters, digits and `_`).
fn replace_word(s: &str, from: &str, to: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(from) {
        let before_ok = rest[..i].chars().next_back().is_none_or(|c| !is_word(c));
        let after = &rest[i + from.len()..];
        let after_ok = after.chars().next().is_none_or(|c| !is_word(c));
        out.push_str(&rest[..i]);
        out.push_str(if before_ok && after_ok { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The sentence for a server refusal `code` with `message` and `details`.
pub fn cli_message(code: &str, message: &str, details: Option<&Value>) -> String {
    let serial = text(details, "serial");
    match (code, serial) {
        ("not_found", Some(s)) => {
            return format!(
                "no device {s} is registered; register it with `np-vendor device add {s} --purchase-date YYYY-MM-DD --customer NAME`"
            )
        }
        ("exists", Some(s)) => {
            return format!("device {s} is registered already; `np-vendor device show {s}` shows it")
        }
        ("action_pending", Some(s)) => {
            let pending = details.and_then(|d| d.get("pending"));
            let what = pending
                .map(|p| match text(Some(p), "version") {
                    Some(v) => format!("{} to {v}", text(Some(p), "action").unwrap_or_default()),
                    None => text(Some(p), "action").unwrap_or_default(),
                })
                .unwrap_or_else(|| "action".into());
            let at = pending
                .and_then(|p| text(Some(p), "issued_at"))
                .unwrap_or_default();
            return format!(
                "{s} already has a pending {what} (asked at {at}); pass --replace to replace it, or cancel it with `np-vendor device action {s} cancel`"
            );
        }
        ("not_covered", Some(s)) if text(details, "coverage") == Some("expired".into()) => {
            let then = if text(details, "for").as_deref() == Some("rma") {
                "then open the RMA again with `np-vendor case rma ID`"
            } else {
                "then open the case"
            };
            return format!(
                "device {s} is not covered: its coverage ended on {}, and there is no support after expiry; the gap must be paid first: `np-vendor device extend {s} --months N --reinstate`, {then}",
                text(details, "coverage_end").unwrap_or_default()
            )
        }
        ("replaced", Some(s)) => {
            let by = text(details, "replaced_by").unwrap_or_default();
            return format!(
                "device {s} was replaced by {by}; open the case for {by}: `np-vendor case open {by} --summary TEXT`"
            );
        }
        ("no_device_key", Some(s)) if text(details, "for").as_deref() == Some("diagnostics") => {
            return format!(
                "box {s} has no device key registered, so it can neither check in nor sign a diagnostics report; set its public key with `np-vendor device edit {s} --device-key FILE`"
            )
        }
        ("no_device_key", Some(s)) => {
            return format!(
                "box {s} was registered without a device key, so what it signs (a request, a receipt) cannot be checked; a box's key is registered with `np-vendor device add SERIAL --device-key FILE`, or `np-vendor device swap {s} --new-device-key FILE` for a replacement"
            )
        }
        _ => {}
    }
    match code {
        "lapsed" => {
            return format!(
                "coverage ended on {}, {} days ago ({} billable months); extend again with --reinstate to pay for the gap and start a new term today",
                text(details, "coverage_end").unwrap_or_default(),
                text(details, "gap_days").unwrap_or_default(),
                text(details, "billable_months").unwrap_or_default()
            )
        }
        "blob_missing" => {
            let v = text(details, "version").unwrap_or_else(|| "V".into());
            return format!(
                "the server holds release {v} but lost its image (SHA-256 {}) from its blob folder: restore the blob folder from a backup, or upload the same image file again with `np-vendor release upload IMAGE --version {v} ...` (refused as existing, but the image is stored again)",
                text(details, "sha256").unwrap_or_default()
            );
        }
        "future_purchase_date" => {
            return format!(
                "--purchase-date {} is {} days after today ({}); a box is registered once it is sold: check the date, or pass --allow-future",
                text(details, "purchase_date").unwrap_or_default(),
                text(details, "days_ahead").unwrap_or_default(),
                text(details, "today").unwrap_or_default()
            )
        }
        _ => {}
    }
    let mut m = message.to_owned();
    for (route, cmd) in ROUTES {
        m = m.replace(route, cmd);
    }
    for (field, flag) in FLAGS {
        m = replace_word(&m, field, flag);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_unreachable_minimum_warning_names_the_flag_without_a_stray_comma() {
        let m = cli_message(
            "",
            "no box running a release published here can install 9.0.0: min_from_version 8.0.0 is above the newest release of every listed model (NR-2000 5.3.0); boxes on older firmware need an intermediate release, or lower min_from_version",
            None,
        );
        assert!(
            m.contains(": --min-from-version 8.0.0 is above the newest")
                && m.ends_with("or lower --min-from-version")
                && !m.contains(", is above"),
            "{m}"
        );
    }

    #[test]
    fn a_lapsed_box_at_rma_time_is_told_to_open_the_rma_not_the_case() {
        let d = |what: &str| {
            json!({"serial": "NR-2000-123456-4", "coverage": "expired",
                "coverage_end": "2026-11-01", "for": what})
        };
        let rma = cli_message("not_covered", "", Some(&d("rma")));
        assert!(
            rma.ends_with("then open the RMA again with `np-vendor case rma ID`"),
            "{rma}"
        );
        assert!(!rma.contains("open the case"), "{rma}");
        let case = cli_message("not_covered", "", Some(&d("case")));
        assert!(case.ends_with("then open the case"), "{case}");
    }

    #[test]
    fn a_second_shortage_names_no_flag() {
        let m = cli_message(
            "bad_transition",
            "parts are already short (from 2026-12-01T00:00:00Z on); the clock is stopped",
            None,
        );
        assert!(!m.contains("--since"), "{m}");
    }

    #[test]
    fn remedies_name_commands_and_flags_not_routes() {
        let m = cli_message(
            "not_found",
            "no device NR-2000-123456-4 is registered; register it first",
            Some(&json!({"serial": "NR-2000-123456-4"})),
        );
        assert!(m.contains("np-vendor device add NR-2000-123456-4"), "{m}");
        let m = cli_message(
            "lapsed",
            "coverage ended",
            Some(&json!({"coverage_end": "2026-03-01", "gap_days": 30, "billable_months": 1})),
        );
        assert!(m.contains("--reinstate") && m.contains("30 days"), "{m}");
        let m = cli_message(
            "bad_date",
            "purchase_date \"x\" is not a calendar date",
            None,
        );
        assert!(m.starts_with("--purchase-date \"x\""), "{m}");
        let m = cli_message("bad_device_key", "new_device_key is not a key", None);
        assert_eq!(m, "--new-device-key is not a key");
        let m = cli_message(
            "unknown_blob",
            "upload it first with PUT /api/v1/blobs",
            None,
        );
        assert!(!m.contains("/api/"), "{m}");
    }

    #[test]
    fn a_lapsed_box_is_told_to_reinstate_before_a_case() {
        let m = cli_message(
            "not_covered",
            "device NR-2000-123456-4 is not covered: ... (\"reinstate\": true) ...",
            Some(
                &json!({"serial": "NR-2000-123456-4", "coverage": "expired", "coverage_end": "2026-01-01"}),
            ),
        );
        assert!(
            m.contains("ended on 2026-01-01")
                && m.contains("np-vendor device extend NR-2000-123456-4 --months N --reinstate")
                && !m.contains("\"reinstate\""),
            "{m}"
        );
        let m = cli_message(
            "bad_transition",
            "a case enters rma only by opening an RMA (POST /api/v1/cases/{id}/rma)",
            None,
        );
        assert!(
            m.contains("`np-vendor case rma ID`") && !m.contains("/api/"),
            "{m}"
        );
        let m = cli_message(
            "bad_exclusion",
            "not_covered names one of the warranty's exclusions as exclusion: a, b",
            None,
        );
        assert!(m.contains("as --exclusion:"), "{m}");
    }

    #[test]
    fn a_lost_image_names_the_release_and_the_command_that_stores_it_again() {
        let m = cli_message(
            "blob_missing",
            "the image of release 5.3.0 (SHA-256 ab) is missing",
            Some(&json!({"version": "5.3.0", "sha256": "ab"})),
        );
        assert!(
            m.contains("release 5.3.0")
                && m.contains("`np-vendor release upload IMAGE --version 5.3.0 ...`")
                && m.contains("restore the blob folder"),
            "{m}"
        );
    }

    #[test]
    fn a_box_without_a_device_key_is_explained_with_the_commands_that_register_one() {
        let m = cli_message(
            "no_device_key",
            "the request: box NR-2000-123456-4 has no registered device key",
            Some(&json!({"serial": "NR-2000-123456-4"})),
        );
        assert!(
            m.contains("--device-key FILE") && m.contains("device swap NR-2000-123456-4"),
            "{m}"
        );
    }
}
