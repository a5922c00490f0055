//! `np-vendor audit`: the server's append-only audit log, newest first, filtered by
//! serial, time, action and actor, each entry with what it changed (field: before → after).

use crate::client::{field, items, print_json, Client, ServerArgs};
use crate::device::check_serial;
use crate::device_list::csv_field;
use crate::failure::{CmdResult, Failure};
use crate::table;
use np_server::store::AUDIT_ACTIONS;
use serde_json::Value;

/// Arguments of `audit`.
#[derive(clap::Args)]
pub struct Args {
    /// Only entries about this serial.
    #[arg(long)]
    serial: Option<String>,
    /// Only entries at or after this date (YYYY-MM-DD) or time (RFC 3339).
    #[arg(long, value_name = "DATE|TIME")]
    since: Option<String>,
    /// Only entries of this action (register, import, edit, extend, reinstate, swap,
    /// revoke, action, action_cancel, release_create, release_set, ...).
    #[arg(long)]
    action: Option<String>,
    /// Only entries by this token name.
    #[arg(long)]
    actor: Option<String>,
    /// Entries per page (1-1000; the server's default page otherwise).
    #[arg(long)]
    limit: Option<usize>,
    /// Every page, not just the first.
    #[arg(long, conflicts_with = "cursor")]
    all: bool,
    /// Continue after a previous page (the `more: --cursor C` line).
    #[arg(long)]
    cursor: Option<String>,
    /// Print CSV instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Fields not worth showing in a change summary (they change with every change).
const NOISE: [&str; 3] = ["updated_at", "sequence", "entitlement"];

fn short(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) if o.contains_key("action") => {
            let a = o.get("action").and_then(Value::as_str).unwrap_or("-");
            match o.get("version").and_then(Value::as_str) {
                Some(ver) => format!("{a} {ver}"),
                None => a.to_owned(),
            }
        }
        // A support case's newest entry, and its RMA.
        Some(Value::Object(o)) if o.contains_key("kind") && o.contains_key("text") => {
            let text = o.get("text").and_then(Value::as_str).unwrap_or_default();
            let mut cut: String = text
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(60)
                .collect();
            if cut.len() < text.len() {
                cut.push('…');
            }
            let kind = o.get("kind").and_then(Value::as_str).unwrap_or("-");
            format!("{} {cut:?}", kind.replace('_', " "))
        }
        Some(Value::Object(o)) if o.contains_key("due") => {
            match o.get("outcome").and_then(Value::as_str) {
                Some(out) => format!("ended: {}", out.replace('_', " ")),
                None if o.get("shortage_since").is_some_and(|v| !v.is_null()) => {
                    "parts short".to_owned()
                }
                None => format!(
                    "due {}",
                    o.get("due").and_then(Value::as_str).unwrap_or("-")
                ),
            }
        }
        Some(Value::Array(a)) if a.iter().all(|t| t.get("kind").is_some()) => a
            .iter()
            .map(|t| {
                format!(
                    "{} {}..{}",
                    field(t, "kind"),
                    field(t, "start"),
                    field(t, "end")
                )
            })
            .collect::<Vec<_>>()
            .join(" + "),
        Some(other) => other.to_string(),
    }
}

/// What an entry changed, as `field: before → after; ...` (`created` / `deleted` for a
/// whole record).
pub fn changes(e: &Value) -> String {
    let before = e.get("before").filter(|v| !v.is_null());
    let after = e.get("after").filter(|v| !v.is_null());
    match (before, after) {
        (None, None) => "-".to_owned(),
        (None, Some(_)) => "created".to_owned(),
        (Some(_), None) => "deleted".to_owned(),
        (Some(b), Some(a)) => {
            let mut keys: Vec<&String> = a
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            if let Some(o) = b.as_object() {
                for k in o.keys() {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
            let parts: Vec<String> = keys
                .into_iter()
                .filter(|k| !NOISE.contains(&k.as_str()))
                .filter(|k| b.get(k.as_str()) != a.get(k.as_str()))
                .map(|k| {
                    format!(
                        "{k}: {} → {}",
                        short(b.get(k.as_str())),
                        short(a.get(k.as_str()))
                    )
                })
                .collect();
            if parts.is_empty() {
                "no change".to_owned()
            } else {
                parts.join("; ")
            }
        }
    }
}

/// `--action` is one the audit log records (a typo would list nothing).
fn check_action(a: &str) -> Result<(), Failure> {
    if AUDIT_ACTIONS.contains(&a.trim()) {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "--action {:?} is not an audited action; the actions are: {}",
        a.chars().take(40).collect::<String>(),
        AUDIT_ACTIONS.join(", ")
    )))
}

/// What an entry changed; an entry about a release (no serial) names its version first.
fn entry_changes(e: &Value) -> String {
    let what = changes(e);
    let serial_less = e.get("serial").is_none_or(Value::is_null);
    let version = ["after", "before"].iter().find_map(|k| {
        e.get(*k)
            .and_then(|v| v.get("version"))
            .and_then(Value::as_str)
    });
    match version {
        Some(v) if serial_less => format!("release {v}: {what}"),
        _ => what,
    }
}

/// Runs `audit`.
pub fn run(args: Args) -> CmdResult {
    if args.limit.is_some_and(|n| n == 0) {
        return Err(Failure::usage("--limit must be at least 1"));
    }
    let serial = args.serial.as_deref().map(check_serial).transpose()?;
    if let Some(a) = &args.action {
        check_action(a)?;
    }
    let c = Client::new(&args.server)?;
    let q: Vec<(&str, String)> = [
        ("serial", serial),
        ("since", args.since),
        ("action", args.action),
        ("actor", args.actor),
        ("limit", args.limit.map(|n| n.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let mut cursor = args.cursor;
    let mut entries = Vec::new();
    loop {
        let mut page_q = q.clone();
        if let Some(cur) = &cursor {
            page_q.push(("cursor", cur.clone()));
        }
        let v = c.get(&["api", "v1", "audit"], &page_q)?;
        entries.extend(items(&v));
        cursor = v
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if !args.all || cursor.is_none() {
            break;
        }
    }
    if args.server.json {
        print_json(&serde_json::json!({"entries": entries, "next_cursor": cursor}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                field(e, "at"),
                field(e, "actor"),
                field(e, "action"),
                field(e, "serial"),
                entry_changes(e),
            ]
        })
        .collect();
    if args.csv {
        np_server::outln!("at,actor,action,serial,changes");
        for r in &rows {
            let cells: Vec<String> = r.iter().map(|c| csv_field(c)).collect();
            np_server::outln!("{}", cells.join(","));
        }
    } else {
        table::print(
            &["TIME", "ACTOR", "ACTION", "SERIAL", "CHANGES"],
            &rows,
            "no audit entries",
        );
    }
    if let Some(next) = cursor {
        np_server::errln!("more: --cursor {next} (or --all for every page)");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_name_each_field_before_and_after() {
        let e = json!({"before": {"customer": "ACEM", "sequence": 1, "purchase_date": "2026-01-02"},
                       "after": {"customer": "ACME", "sequence": 2, "purchase_date": "2026-01-02"}});
        assert_eq!(changes(&e), "customer: ACEM → ACME");
        assert_eq!(changes(&json!({"before": null, "after": {}})), "created");
    }

    #[test]
    fn a_case_entry_shows_its_newest_entry_and_rma_in_words() {
        let e = json!({"action": "rma_shortage", "serial": "NR-2000-123456-4",
            "before": {"status": "rma", "entries": 1, "rma": {"due": "2026-11-28T10:00:00Z", "shortage_since": null, "outcome": null},
                       "last_entry": {"kind": "rma", "text": "RMA opened", "at": "x", "by": "a"}},
            "after": {"status": "rma", "entries": 2, "rma": {"due": "2026-11-28T10:00:00Z", "shortage_since": "2026-11-24T10:00:00Z", "outcome": null},
                      "last_entry": {"kind": "rma", "text": "parts are short: the repair clock is stopped", "at": "y", "by": "a"}}});
        assert_eq!(
            changes(&e),
            "entries: 1 → 2; last_entry: rma \"RMA opened\" → rma \"parts are short: the repair clock is stopped\"; rma: due 2026-11-28T10:00:00Z → parts short"
        );
    }

    #[test]
    fn a_release_entry_names_its_version_and_actions_are_checked() {
        let e = json!({"action": "release_halt", "serial": null,
                       "before": {"version": "5.4.0", "paused": false},
                       "after": {"version": "5.4.0", "paused": true}});
        assert_eq!(entry_changes(&e), "release 5.4.0: paused: false → true");
        let f = check_action("bogus").unwrap_err();
        assert_eq!(f.exit_code(), 2);
        assert!(
            f.message().contains("release_halt, keyring_draft"),
            "{}",
            f.message()
        );
        assert!(check_action("edit").is_ok());
    }
}
