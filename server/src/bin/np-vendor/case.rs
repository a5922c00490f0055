//! `np-vendor case open|list|show|note|status|rma|diagnostics`: support cases, their RMA
//! and remote diagnostics (docs/cli.md). Flags are checked here first, so a mistake names
//! the flag; the server's refusals come back in this command line's words.

use crate::client::{field, print_json, Client, ServerArgs};
use crate::device::check_serial;
use crate::failure::{CmdResult, Failure};
use crate::table;
use reqwest::Method;
use serde_json::{json, Value};

/// Case commands.
#[derive(clap::Subcommand)]
pub enum CaseCommand {
    /// Open a support case for a box covered today (a lapsed box is reinstated first).
    Open {
        /// The box's serial.
        serial: String,
        /// The problem in a sentence.
        #[arg(long)]
        summary: String,
        /// How bad it is.
        #[arg(long, value_enum, default_value = "normal")]
        severity: SeverityArg,
        /// How the customer reached you.
        #[arg(long, value_enum, default_value = "phone")]
        channel: ChannelArg,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List cases, newest first; one page unless --all.
    List {
        /// Only this box's cases.
        #[arg(long)]
        serial: Option<String>,
        /// Only cases with this status: open, remote_session, waiting_customer, rma,
        /// resolved or closed.
        #[arg(long)]
        status: Option<String>,
        /// Only cases whose RMA is past its due time.
        #[arg(long)]
        overdue: bool,
        /// Cases per page (1-1000; the server's default page otherwise).
        #[arg(long)]
        limit: Option<usize>,
        /// Every page, not just the first.
        #[arg(long, conflicts_with = "cursor")]
        all: bool,
        /// Continue after a previous page (the `more: --cursor C` line).
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a case: its box, status, first response, RMA and history.
    Show {
        /// The case id, such as C-1042.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Add a note to a case.
    Note {
        /// The case id.
        id: String,
        /// The note.
        text: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Move a case to another status: open, remote_session, waiting_customer, resolved or
    /// closed (rma comes with `case rma`; nothing changes a closed case).
    Status {
        /// The case id.
        id: String,
        /// The new status.
        status: String,
        /// Why, for the case's history.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Open the case's RMA (repair due in five days), stop or restart its clock while
    /// parts are short (--shortage on|off), or end it (--outcome), which resolves the case.
    Rma {
        /// The case id.
        id: String,
        /// Parts are short (on: the clock stops) or arrived (off: it runs again).
        #[arg(long, value_enum, conflicts_with = "outcome")]
        shortage: Option<OnOff>,
        /// End the RMA: repaired, swapped (needs --replacement-serial) or not_covered
        /// (needs --exclusion).
        #[arg(long, value_enum)]
        outcome: Option<OutcomeArg>,
        /// The replacement box of a swap: same family, same or higher tier; it takes over
        /// the coverage.
        #[arg(long, value_name = "SERIAL", requires = "outcome")]
        replacement_serial: Option<String>,
        /// A check of the replacement's model (the one its serial names).
        #[arg(long, value_name = "MODEL", requires = "replacement_serial")]
        replacement_model: Option<String>,
        /// The replacement's public key: a file holding base64 (from `np-agent keygen`),
        /// or the base64 itself; without it, it cannot check in until set.
        #[arg(long, value_name = "FILE|BASE64", requires = "replacement_serial")]
        replacement_device_key: Option<String>,
        /// Why the warranty does not cover it (with --outcome not_covered).
        #[arg(long, value_enum, requires = "outcome")]
        exclusion: Option<ExclusionArg>,
        /// A note for the case's history.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask the case's box for a diagnostics report; it sends it after its next check-in
    /// and it shows in `case show`.
    Diagnostics {
        /// The case id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Severities.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SeverityArg {
    /// Low.
    Low,
    /// Normal.
    Normal,
    /// High.
    High,
    /// The box is down.
    Critical,
}

/// Channels.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ChannelArg {
    /// By telephone.
    Phone,
    /// By e-mail.
    Email,
    /// By instant message.
    Message,
    /// Seen remotely.
    Remote,
}

/// On or off.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Parts are short: the clock stops.
    On,
    /// Parts arrived: the clock runs again.
    Off,
}

/// How an RMA ends.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutcomeArg {
    /// Repaired and returned.
    Repaired,
    /// Swapped for --replacement-serial.
    Swapped,
    /// Not covered: --exclusion says why.
    #[value(name = "not_covered")]
    NotCovered,
}

/// The warranty page's exclusions.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExclusionArg {
    /// Damage in shipping from negligent packing.
    #[value(name = "shipping_damage")]
    ShippingDamage,
    /// Natural disaster, fire, flood or other force majeure.
    #[value(name = "force_majeure")]
    ForceMajeure,
    /// Misuse, or wear and tear.
    #[value(name = "misuse_or_wear")]
    MisuseOrWear,
    /// Repaired or opened by someone not authorized, or uncertified parts.
    #[value(name = "unauthorized_repair")]
    UnauthorizedRepair,
    /// Not an official product.
    #[value(name = "non_official_product")]
    NonOfficialProduct,
}

fn wire<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

/// The statuses `case status` may set.
const SETTABLE: [&str; 5] = [
    "open",
    "remote_session",
    "waiting_customer",
    "resolved",
    "closed",
];
/// Every status, for `case list --status`.
const STATUSES: [&str; 6] = [
    "open",
    "remote_session",
    "waiting_customer",
    "rma",
    "resolved",
    "closed",
];

/// A case id as typed (`c-1042` is `C-1042`), refused here when it cannot be one.
pub fn check_id(s: &str) -> Result<String, Failure> {
    let t = s.trim().to_ascii_uppercase();
    let ok = t
        .strip_prefix("C-")
        .is_some_and(|d| !d.is_empty() && d.len() < 19 && d.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(t)
    } else {
        Err(Failure::usage(format!(
            "{:?} is not a case id: case ids look like C-1042 (`np-vendor case list` shows them)",
            s.chars().take(40).collect::<String>()
        )))
    }
}

/// The longest note, summary or status text the server keeps.
const MAX_TEXT: usize = 4000;

/// A case text given as `arg` (`TEXT`, `--note`): 1 to 4000 characters on one line,
/// checked here so the refusal names the argument.
fn check_text(arg: &str, s: &str) -> Result<(), Failure> {
    let t = s.trim();
    let n = t.chars().count();
    if t.is_empty() {
        return Err(Failure::usage(format!("{arg} is empty; write the note")));
    }
    if n > MAX_TEXT {
        return Err(Failure::usage(format!(
            "{arg} is {n} characters; a case keeps at most {MAX_TEXT} per note (split it into several notes)"
        )));
    }
    if t.chars().any(|c| c == '\n' || c == '\r') {
        return Err(Failure::usage(format!(
            "{arg} has a line break; a note is one line of text (add one note per line)"
        )));
    }
    if t.chars().any(char::is_control) {
        return Err(Failure::usage(format!(
            "{arg} has a control character (such as a tab or an escape); a note is plain text"
        )));
    }
    Ok(())
}

fn check_status(flag: &str, s: &str, allowed: &[&str]) -> Result<String, Failure> {
    let t = s.trim().to_ascii_lowercase().replace('-', "_");
    if allowed.contains(&t.as_str()) {
        return Ok(t);
    }
    if t == "rma" {
        return Err(Failure::usage(
            "a case moves to rma only by opening its RMA: `np-vendor case rma ID`",
        ));
    }
    Err(Failure::usage(format!(
        "{flag} {:?} is not one of {}",
        s.chars().take(40).collect::<String>(),
        allowed.join(", ")
    )))
}

/// Runs a case command.
pub fn run(cmd: CaseCommand) -> CmdResult {
    match cmd {
        CaseCommand::Open {
            serial,
            summary,
            severity,
            channel,
            server,
        } => {
            let serial = check_serial(&serial)?;
            let body = json!({"serial": serial, "summary": summary,
                "severity": wire(severity), "channel": wire(channel)});
            let c = Client::new(&server)?;
            let v = c.send_json(Method::POST, &["api", "v1", "cases"], &body)?;
            show(&v, server.json, "opened")
        }
        CaseCommand::List {
            serial,
            status,
            overdue,
            limit,
            all,
            cursor,
            server,
        } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(s) = serial {
                q.push(("serial", check_serial(&s)?));
            }
            if let Some(s) = status {
                q.push(("status", check_status("--status", &s, &STATUSES)?));
            }
            if overdue {
                q.push(("overdue", "true".into()));
            }
            if let Some(n) = limit {
                if n == 0 {
                    return Err(Failure::usage(
                        "--limit 0 is out of range: ask for at least 1 case per page",
                    ));
                }
                q.push(("limit", n.to_string()));
            }
            list(&Client::new(&server)?, q, cursor, all, server.json)
        }
        CaseCommand::Show { id, server } => {
            let id = check_id(&id)?;
            let c = Client::new(&server)?;
            let v = c.get(&["api", "v1", "cases", &id], &[])?;
            show(&v, server.json, "")
        }
        CaseCommand::Note { id, text, server } => {
            let id = check_id(&id)?;
            check_text("TEXT", &text)?;
            let c = Client::new(&server)?;
            let path = ["api", "v1", "cases", id.as_str(), "entries"];
            let v = c.send_json(Method::POST, &path, &json!({"kind": "note", "text": text}))?;
            done(&v, server.json, &format!("{id}: note added"))
        }
        CaseCommand::Status {
            id,
            status,
            note,
            server,
        } => {
            let id = check_id(&id)?;
            let status = check_status("STATUS", &status, &SETTABLE)?;
            if let Some(n) = note.as_deref().filter(|n| !n.trim().is_empty()) {
                check_text("--note", n)?;
            }
            let c = Client::new(&server)?;
            let path = ["api", "v1", "cases", id.as_str(), "entries"];
            let body =
                json!({"kind": "status", "status": status, "text": note.unwrap_or_default()});
            let v = c.send_json(Method::POST, &path, &body)?;
            done(
                &v,
                server.json,
                &format!("{id}: now {}", field(&v, "status")),
            )
        }
        CaseCommand::Rma {
            id,
            shortage,
            outcome,
            replacement_serial,
            replacement_model,
            replacement_device_key,
            exclusion,
            note,
            server,
        } => {
            let id = check_id(&id)?;
            let rma = RmaArgs {
                shortage,
                outcome,
                replacement_serial,
                replacement_model,
                replacement_device_key,
                exclusion: exclusion.map(wire),
                note,
            };
            rma_cmd(&id, rma, &server)
        }
        CaseCommand::Diagnostics { id, server } => {
            let id = check_id(&id)?;
            let c = Client::new(&server)?;
            let url = c.url(&["api", "v1", "cases", &id, "diagnostics"]);
            let v = c.json(c.request(Method::POST, url))?;
            done(
                &v,
                server.json,
                &format!(
                    "{id}: diagnostics asked of {}; the box sends them after its next check-in (`np-vendor case show {id}`)",
                    field(&v, "serial")
                ),
            )
        }
    }
}

struct RmaArgs {
    shortage: Option<OnOff>,
    outcome: Option<OutcomeArg>,
    replacement_serial: Option<String>,
    replacement_model: Option<String>,
    replacement_device_key: Option<String>,
    exclusion: Option<String>,
    note: Option<String>,
}

/// The request body of `case rma` (None: open the RMA), checked flag by flag.
fn rma_body(a: &RmaArgs) -> Result<Option<Value>, Failure> {
    let mut body = json!({});
    if let Some(n) = &a.note {
        body["note"] = json!(n);
    }
    match (a.shortage, a.outcome) {
        // Opening: POST with the note alone.
        (None, None) => Ok(None),
        (Some(s), _) => {
            body["shortage"] = json!(s == OnOff::On);
            Ok(Some(body))
        }
        (None, Some(o)) => {
            match (o, &a.replacement_serial, &a.exclusion) {
                (OutcomeArg::Swapped, None, _) => {
                    return Err(Failure::usage(
                        "--outcome swapped needs --replacement-serial SERIAL (the box the customer gets)",
                    ))
                }
                (OutcomeArg::NotCovered, _, None) => {
                    return Err(Failure::usage(
                        "--outcome not_covered needs --exclusion: shipping_damage, force_majeure, misuse_or_wear, unauthorized_repair or non_official_product",
                    ))
                }
                (OutcomeArg::Swapped, _, Some(_)) | (OutcomeArg::Repaired, _, Some(_)) => {
                    return Err(Failure::usage("--exclusion goes only with --outcome not_covered"))
                }
                (OutcomeArg::NotCovered, Some(_), _) | (OutcomeArg::Repaired, Some(_), _) => {
                    return Err(Failure::usage(
                        "--replacement-serial goes only with --outcome swapped",
                    ))
                }
                _ => {}
            }
            body["outcome"] = json!(wire(o));
            if let Some(s) = &a.replacement_serial {
                body["replacement_serial"] = json!(check_serial(s)?);
            }
            if let Some(m) = &a.replacement_model {
                body["replacement_model"] = json!(m.trim().to_ascii_uppercase());
            }
            if let Some(k) = &a.replacement_device_key {
                body["replacement_device_key"] = json!(crate::device::public_key_arg(
                    k,
                    "--replacement-device-key"
                )?);
            }
            if let Some(e) = &a.exclusion {
                body["exclusion"] = json!(e);
            }
            Ok(Some(body))
        }
    }
}

fn rma_cmd(id: &str, a: RmaArgs, server: &ServerArgs) -> CmdResult {
    let body = rma_body(&a)?;
    let c = Client::new(server)?;
    let path = ["api", "v1", "cases", id, "rma"];
    let v = match &body {
        None => {
            let open = match &a.note {
                Some(n) => json!({"note": n}),
                None => json!({}),
            };
            c.send_json(Method::POST, &path, &open)?
        }
        Some(b) => c.send_json(Method::PATCH, &path, b)?,
    };
    if server.json {
        print_json(&v);
        return Ok(());
    }
    let rma = v.get("rma").unwrap_or(&Value::Null);
    let line = match (body.is_none(), a.shortage, a.outcome) {
        (true, _, _) => format!("{id}: RMA opened; repair due by {}", field(rma, "due")),
        (_, Some(OnOff::On), _) => format!("{id}: parts short; the repair clock is stopped"),
        (_, Some(OnOff::Off), _) => format!(
            "{id}: parts arrived; the repair clock runs again, due by {}",
            field(rma, "due")
        ),
        (_, _, Some(OutcomeArg::Swapped)) => {
            let new = v.get("swapped").and_then(|s| s.get("new"));
            if new
                .and_then(|n| n.get("device_key"))
                .is_some_and(Value::is_null)
            {
                let s = field(rma, "replacement_serial");
                np_server::errln!(
                    "warning: {s} has no device key, so it cannot check in until it has one: set it with `np-vendor device edit {s} --device-key FILE`"
                );
            }
            format!(
                "{id}: RMA ended, swapped: {} took over the coverage of {}; the case is resolved",
                field(rma, "replacement_serial"),
                field(&v, "serial")
            )
        }
        (_, _, Some(o)) => format!(
            "{id}: RMA ended, {}; the case is resolved",
            wire(o).replace('_', " ")
        ),
        _ => format!("{id}: done"),
    };
    np_server::outln!("{line}");
    Ok(())
}

fn done(v: &Value, json: bool, line: &str) -> CmdResult {
    if json {
        print_json(v);
    } else {
        np_server::outln!("{line}");
    }
    Ok(())
}

/// The RMA in words: "due 2026-11-28T10:00:00Z", "OVERDUE since ...", "parts short", the end.
fn rma_words(r: &Value) -> String {
    if r.is_null() {
        return "-".to_owned();
    }
    if !r["outcome"].is_null() {
        let mut s = format!(
            "ended {}: {}",
            field(r, "ended_at"),
            field(r, "outcome").replace('_', " ")
        );
        if !r["replacement_serial"].is_null() {
            s.push_str(&format!(" for {}", field(r, "replacement_serial")));
        }
        if !r["exclusion"].is_null() {
            s.push_str(&format!(" ({})", field(r, "exclusion").replace('_', " ")));
        }
        return s;
    }
    let mut s = if r["overdue"] == json!(true) {
        format!("OVERDUE: was due {}", field(r, "due"))
    } else {
        format!("due {}", field(r, "due"))
    };
    if r["shortage"] == json!(true) {
        s.push_str(&format!(
            "; parts short since {} (clock stopped)",
            field(r, "shortage_since")
        ));
    }
    s
}

fn cut(s: &str, n: usize) -> String {
    let one_line = s.lines().next().unwrap_or_default();
    if one_line.chars().count() <= n && one_line.len() == s.len() {
        return one_line.to_owned();
    }
    let mut out: String = one_line.chars().take(n).collect();
    out.push('…');
    out
}

fn row(c: &Value) -> Vec<String> {
    let rma = c.get("rma").unwrap_or(&Value::Null);
    let due = if rma.is_null() || !rma["outcome"].is_null() {
        "-".to_owned()
    } else if rma["overdue"] == json!(true) {
        format!("{} OVERDUE", field(rma, "due"))
    } else {
        field(rma, "due")
    };
    vec![
        field(c, "id"),
        field(c, "serial"),
        field(c, "status"),
        field(c, "severity"),
        field(c, "opened_at"),
        due,
        cut(&field(c, "summary"), 50),
    ]
}

fn list(
    c: &Client,
    q: Vec<(&str, String)>,
    mut cursor: Option<String>,
    all: bool,
    json_out: bool,
) -> CmdResult {
    let mut cases: Vec<Value> = Vec::new();
    loop {
        let mut page_q = q.clone();
        if let Some(cur) = &cursor {
            page_q.push(("cursor", cur.clone()));
        }
        let v = c.get(&["api", "v1", "cases"], &page_q)?;
        cases.extend(
            v.get("cases")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
        cursor = v
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if !(all && cursor.is_some()) {
            break;
        }
    }
    if json_out {
        print_json(&json!({"cases": cases, "next_cursor": cursor}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = cases.iter().map(row).collect();
    table::print(
        &[
            "ID", "SERIAL", "STATUS", "SEVERITY", "OPENED", "RMA DUE", "SUMMARY",
        ],
        &rows,
        "no cases",
    );
    if let Some(next) = cursor {
        np_server::errln!("more: --cursor {next} (or --all for every page)");
    }
    Ok(())
}

/// Prints a case for people (or its JSON).
pub fn show(v: &Value, json_out: bool, verb: &str) -> CmdResult {
    if json_out {
        print_json(v);
        return Ok(());
    }
    if !verb.is_empty() {
        np_server::outln!("{verb} {} for {}", field(v, "id"), field(v, "serial"));
    }
    let minutes = |k: &str| match v.get(k).and_then(Value::as_i64) {
        Some(m) => format!("{m} min of service hours"),
        None => "-".to_owned(),
    };
    let first = if v["first_response_at"].is_null() {
        match v.get("waiting_service_minutes").and_then(Value::as_i64) {
            Some(m) => format!("none yet (waiting {m} min of service hours)"),
            None => "none".to_owned(),
        }
    } else {
        format!(
            "{} ({})",
            field(v, "first_response_at"),
            minutes("first_response_service_minutes")
        )
    };
    let pending = match v.get("diagnostics_pending") {
        Some(p) if !p.is_null() => format!(
            "asked at {} by {}",
            field(p, "issued_at"),
            field(p, "requested_by")
        ),
        _ => "-".to_owned(),
    };
    let lines: Vec<(&str, String)> = vec![
        ("case", field(v, "id")),
        ("serial", field(v, "serial")),
        ("status", field(v, "status")),
        ("severity", field(v, "severity")),
        ("channel", field(v, "channel")),
        ("summary", field(v, "summary")),
        (
            "opened",
            format!("{} by {}", field(v, "opened_at"), field(v, "opened_by")),
        ),
        ("first response", first),
        ("rma", rma_words(v.get("rma").unwrap_or(&Value::Null))),
        ("diagnostics", pending),
    ];
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, value) in lines {
        np_server::outln!("{:<width$} {value}", format!("{k}:"));
    }
    let entries = v
        .get("entries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let text = field(e, "text");
            let text = if field(e, "kind") == "diagnostics" {
                diagnostics_words(&text)
            } else {
                cut(&text, 80)
            };
            vec![
                field(e, "at"),
                field(e, "by"),
                field(e, "kind").replace('_', " "),
                text,
            ]
        })
        .collect();
    np_server::outln!();
    table::print(&["AT", "BY", "KIND", "TEXT"], &rows, "no entries yet");
    Ok(())
}

/// A box's report in one line (all of it with --json).
fn diagnostics_words(text: &str) -> String {
    let Ok(r) = serde_json::from_str::<Value>(text) else {
        return cut(text, 80);
    };
    let slots = r.get("slots").unwrap_or(&Value::Null);
    let health = match r.get("health") {
        Some(h) if !h.is_null() => format!("health exit {}", field(h, "exit_code")),
        _ => "no health command".to_owned(),
    };
    format!(
        "report: slot {} active (a {}, b {}), {} events, {}; all of it with --json",
        field(slots, "active"),
        field(slots, "a"),
        field(slots, "b"),
        r.get("events")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
        health
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args() -> RmaArgs {
        RmaArgs {
            shortage: None,
            outcome: None,
            replacement_serial: None,
            replacement_model: None,
            replacement_device_key: None,
            exclusion: None,
            note: None,
        }
    }

    #[test]
    fn rma_flags_are_checked_and_name_what_is_missing() {
        assert!(rma_body(&args()).unwrap().is_none());
        let a = RmaArgs {
            shortage: Some(OnOff::On),
            note: Some("no PSU".into()),
            ..args()
        };
        assert_eq!(
            rma_body(&a).unwrap().unwrap(),
            json!({"shortage": true, "note": "no PSU"})
        );
        let a = RmaArgs {
            outcome: Some(OutcomeArg::Swapped),
            ..args()
        };
        let f = rma_body(&a).unwrap_err();
        assert_eq!(f.exit_code(), 2);
        assert!(
            f.message().contains("--replacement-serial"),
            "{}",
            f.message()
        );
        let a = RmaArgs {
            outcome: Some(OutcomeArg::NotCovered),
            ..args()
        };
        assert!(rma_body(&a)
            .unwrap_err()
            .message()
            .contains("--exclusion: shipping_damage"));
        let a = RmaArgs {
            outcome: Some(OutcomeArg::Swapped),
            replacement_serial: Some(" nr-3000-000000-7".into()),
            ..args()
        };
        assert_eq!(
            rma_body(&a).unwrap().unwrap(),
            json!({"outcome": "swapped", "replacement_serial": "NR-3000-000000-7"})
        );
        let a = RmaArgs {
            outcome: Some(OutcomeArg::NotCovered),
            exclusion: Some("force_majeure".into()),
            ..args()
        };
        assert_eq!(
            rma_body(&a).unwrap().unwrap(),
            json!({"outcome": "not_covered", "exclusion": "force_majeure"})
        );
    }

    #[test]
    fn ids_and_statuses_are_checked_with_the_words_of_the_command_line() {
        assert_eq!(check_id(" c-1042").unwrap(), "C-1042");
        assert!(check_id("1042").unwrap_err().message().contains("C-1042"));
        assert_eq!(
            check_status("STATUS", "Remote-Session", &SETTABLE).unwrap(),
            "remote_session"
        );
        assert!(check_status("STATUS", "rma", &SETTABLE)
            .unwrap_err()
            .message()
            .contains("np-vendor case rma"));
        assert!(check_status("--status", "done", &STATUSES)
            .unwrap_err()
            .message()
            .contains("--status \"done\""));
    }

    #[test]
    fn a_report_is_one_line_in_the_history() {
        let text = json!({"slots": {"active": "a", "a": "5.2.0", "b": "5.1.0"}, "events": [1, 2], "health": {"exit_code": 0}}).to_string();
        assert_eq!(
            diagnostics_words(&text),
            "report: slot a active (a 5.2.0, b 5.1.0), 2 events, health exit 0; all of it with --json"
        );
    }

    #[test]
    fn a_note_is_checked_here_naming_its_argument_and_the_4000_character_rule() {
        assert!(check_text("TEXT", "the PSU was swapped").is_ok());
        let long = check_text("TEXT", &"x".repeat(70_000))
            .unwrap_err()
            .message()
            .to_owned();
        assert!(long.contains("TEXT is 70000 characters"), "{long}");
        assert!(long.contains("4000"), "{long}");
        let lines = check_text("TEXT", "line1\nline2")
            .unwrap_err()
            .message()
            .to_owned();
        assert!(lines.starts_with("TEXT has a line break"), "{lines}");
        let esc = check_text("--note", "a\u{1b}[2J")
            .unwrap_err()
            .message()
            .to_owned();
        assert!(esc.starts_with("--note has a control character"), "{esc}");
        assert!(check_text("TEXT", "  ")
            .unwrap_err()
            .message()
            .to_owned()
            .starts_with("TEXT is empty"));
    }
}
