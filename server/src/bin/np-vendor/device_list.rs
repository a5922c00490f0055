//! `np-vendor device list` (filters, `--limit`, `--all` across pages, `--csv`) and
//! `np-vendor device events SERIAL`.

use crate::client::{field, items, print_json, Client, ServerArgs};
use crate::device::{check_date, check_serial, result_words};
use crate::failure::{CmdResult, Failure};
use crate::table;
use serde_json::Value;

/// Arguments of `device list`.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Entitlement status (active, revoked, replaced) or coverage (covered, expired,
    /// not_yet_started).
    #[arg(long)]
    status: Option<String>,
    /// Coverage today: covered, expired or not_yet_started.
    #[arg(long)]
    coverage: Option<String>,
    /// Only this model (PP-MMMM).
    #[arg(long)]
    model: Option<String>,
    /// Only customers whose name contains this text (any case).
    #[arg(long)]
    customer: Option<String>,
    /// Only boxes whose coverage ends before this date.
    #[arg(long, value_name = "YYYY-MM-DD")]
    expiring_before: Option<String>,
    /// Only boxes that last reported running this version.
    #[arg(long = "running-version", value_name = "VERSION")]
    running_version: Option<String>,
    /// Only boxes whose last check-in is before this date, or that never checked in.
    #[arg(long, value_name = "YYYY-MM-DD")]
    checked_in_before: Option<String>,
    /// Boxes per page (1-1000; the server's default page otherwise).
    #[arg(long)]
    limit: Option<usize>,
    /// Every page, not just the first.
    #[arg(long, conflicts_with = "cursor")]
    all: bool,
    /// Continue after a previous page (the `more: --cursor C` line).
    #[arg(long)]
    cursor: Option<String>,
    /// Print CSV (a header line, then one line per box) instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Arguments of `device events`.
#[derive(clap::Args)]
pub struct EventsArgs {
    /// The box's serial.
    serial: String,
    /// Print CSV instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    #[command(flatten)]
    server: ServerArgs,
}

const COLUMNS: [(&str, &str); 9] = [
    ("SERIAL", "serial"),
    ("MODEL", "model"),
    ("STATUS", "status"),
    ("COVERAGE", "coverage"),
    ("COVERAGE_END", "coverage_end"),
    ("VERSION", "version"),
    ("LAST_CHECK_IN", "last_check_in"),
    ("PENDING", "pending_action"),
    ("CUSTOMER", "customer"),
];

fn row(d: &Value) -> Vec<String> {
    COLUMNS
        .iter()
        .map(|(_, k)| match *k {
            "pending_action" => match d.get(k) {
                Some(p) if p.is_object() => match p.get("version").and_then(Value::as_str) {
                    Some(v) => format!("{} {v}", field(p, "action")),
                    None => field(p, "action"),
                },
                _ => "-".to_owned(),
            },
            _ => field(d, k),
        })
        .collect()
}

/// One CSV field (RFC 4180 quoting when needed).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_line(cells: &[String]) -> String {
    cells
        .iter()
        .map(|c| csv_field(c))
        .collect::<Vec<_>>()
        .join(",")
}

/// `--running-version` is checked here, so that the error names the flag rather than the
/// server's query field, in words rather than the version parser's.
fn check_running_version(v: &str) -> Result<(), Failure> {
    semver::Version::parse(v.trim()).map(|_| ()).map_err(|_| {
        Failure::usage(format!(
            "--running-version {:?} is not a full version: give MAJOR.MINOR.PATCH, such as 5.3.0",
            v.chars().take(40).collect::<String>()
        ))
    })
}

/// Entitlement statuses and coverage words.
const STATUSES: [&str; 3] = ["active", "revoked", "replaced"];
const COVERAGES: [&str; 3] = ["covered", "expired", "not_yet_started"];

/// `--status` takes a status or a coverage word, `--coverage` only a coverage word.
fn check_filter(flag: &str, v: &str) -> Result<(), Failure> {
    let word = v.trim();
    if COVERAGES.contains(&word) || (flag == "--status" && STATUSES.contains(&word)) {
        return Ok(());
    }
    let shown = v.chars().take(40).collect::<String>();
    Err(Failure::usage(if flag == "--status" {
        format!(
            "--status {shown:?} is not one of {} (the entitlement) or {} (the coverage)",
            STATUSES.join(", "),
            COVERAGES.join(", ")
        )
    } else {
        format!(
            "--coverage {shown:?} is not one of {}",
            COVERAGES.join(", ")
        )
    }))
}

/// Runs `device list`.
pub fn list(a: ListArgs) -> CmdResult {
    for (flag, d) in [
        ("--expiring-before", &a.expiring_before),
        ("--checked-in-before", &a.checked_in_before),
    ] {
        if let Some(d) = d {
            check_date(flag, d)?;
        }
    }
    if let Some(v) = &a.running_version {
        check_running_version(v)?;
    }
    for (flag, v) in [("--status", &a.status), ("--coverage", &a.coverage)] {
        if let Some(v) = v {
            check_filter(flag, v)?;
        }
    }
    if a.limit.is_some_and(|n| n == 0) {
        return Err(Failure::usage("--limit must be at least 1"));
    }
    let q: Vec<(&str, String)> = [
        ("status", a.status),
        ("coverage", a.coverage),
        ("model", a.model.map(|m| m.trim().to_ascii_uppercase())),
        ("customer", a.customer),
        ("expiring_before", a.expiring_before),
        ("version", a.running_version),
        ("checked_in_before", a.checked_in_before),
        ("limit", a.limit.map(|n| n.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let c = Client::new(&a.server)?;
    let mut cursor = a.cursor;
    let mut devices: Vec<Value> = Vec::new();
    let mut printed_header = false;
    loop {
        let mut page_q = q.clone();
        if let Some(cur) = &cursor {
            page_q.push(("cursor", cur.clone()));
        }
        let v = c.get(&["api", "v1", "devices"], &page_q)?;
        let next = v
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let page = items(&v);
        if a.csv {
            // Streamed page by page: a large fleet is never held whole.
            if !printed_header {
                let header: Vec<String> = COLUMNS.iter().map(|(_, k)| (*k).to_owned()).collect();
                np_server::outln!("{}", csv_line(&header));
                printed_header = true;
            }
            for d in &page {
                np_server::outln!("{}", csv_line(&row(d)));
            }
        } else {
            devices.extend(page);
        }
        match next {
            Some(n) if a.all => cursor = Some(n),
            Some(n) => {
                cursor = Some(n);
                break;
            }
            None => {
                cursor = None;
                break;
            }
        }
    }
    if a.server.json {
        print_json(&serde_json::json!({"devices": devices, "next_cursor": cursor}));
        return Ok(());
    }
    if !a.csv {
        let rows: Vec<Vec<String>> = devices.iter().map(row).collect();
        let headers: Vec<&str> = COLUMNS.iter().map(|(h, _)| *h).collect();
        table::print(&headers, &rows, "no devices");
    }
    if let Some(next) = cursor {
        np_server::errln!("more: --cursor {next} (or --all for every page)");
    }
    Ok(())
}

/// Runs `device events`.
pub fn events(a: EventsArgs) -> CmdResult {
    let serial = check_serial(&a.serial)?;
    let c = Client::new(&a.server)?;
    let v = c.get(&["api", "v1", "devices", &serial, "events"], &[])?;
    if a.server.json {
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v
        .get("events")
        .and_then(Value::as_array)
        .map(|evs| {
            evs.iter()
                .map(|e| {
                    vec![
                        field(e, "at"),
                        field(e, "event"),
                        field(e, "version"),
                        field(e, "detail"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let headers = ["AT", "EVENT", "VERSION", "DETAIL"];
    if a.csv {
        np_server::outln!("at,event,version,detail");
        for r in &rows {
            np_server::outln!("{}", csv_line(r));
        }
        return Ok(());
    }
    let report = v.get("report").cloned().unwrap_or(Value::Null);
    np_server::outln!(
        "slot: {}   phase: {}   last result: {}",
        field(&report, "slot"),
        field(&report, "state"),
        result_words(report.get("last_result").unwrap_or(&Value::Null))
    );
    np_server::outln!();
    table::print(&headers, &rows, "no events yet");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_running_version_names_the_flag() {
        let f = check_running_version("5.3").unwrap_err();
        assert_eq!(
            f.message(),
            "--running-version \"5.3\" is not a full version: give MAJOR.MINOR.PATCH, such as 5.3.0"
        );
        assert_eq!(f.exit_code(), 2);
        assert!(check_running_version("5.3.0").is_ok());
    }

    #[test]
    fn coverage_lists_only_coverage_words() {
        let f = check_filter("--coverage", "bogus").unwrap_err();
        assert_eq!(
            f.message(),
            "--coverage \"bogus\" is not one of covered, expired, not_yet_started"
        );
        assert_eq!(f.exit_code(), 2);
        assert!(check_filter("--coverage", "active").is_err());
        assert!(check_filter("--status", "active").is_ok());
        assert!(check_filter("--status", "expired").is_ok());
    }
}
