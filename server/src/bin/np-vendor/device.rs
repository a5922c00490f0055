//! `np-vendor device add|import|show|edit|list|events|extend|swap|revoke|action`: the
//! staff API for boxes and their warranties. Serials are normalized as typed (case,
//! spaces); dates and durations are checked here first, so errors name the flag.

use crate::client::{field, print_json, Client, ServerArgs};
use crate::device_list::{self, EventsArgs, ListArgs};
use crate::failure::{CmdResult, Failure};
use crate::table;
use np_common::warranty::Duration;
use np_common::{PublicKey, Serial};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;

/// Device commands.
#[derive(clap::Subcommand)]
pub enum DeviceCommand {
    /// Register a box and start its one-year warranty from the purchase date.
    Add {
        /// The box's serial, PP-MMMM-NNNNNN-C (case and spaces do not matter).
        serial: String,
        /// The purchase date, YYYY-MM-DD: the warranty runs one year from it.
        #[arg(long, value_name = "YYYY-MM-DD")]
        purchase_date: String,
        /// The customer who owns the box.
        #[arg(long)]
        customer: String,
        /// A check of the model (PP-MMMM): it must be the one the serial names; a
        /// different one is refused.
        #[arg(long)]
        model: Option<String>,
        /// The box's public key: a file holding the base64 `np-agent keygen` prints (not its
        /// private --out file), or the
        /// base64 itself.
        #[arg(long, value_name = "FILE|BASE64")]
        device_key: Option<String>,
        /// Accept a purchase date more than a few days in the future.
        #[arg(long)]
        allow_future: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Register many boxes from a CSV file, in batches of one request and one transaction
    /// each (a batch is registered whole or not at all).
    Import(crate::device_import::Args),
    /// Show one box: warranty, coverage, running version, last result, pending action.
    Show {
        /// The box's serial.
        serial: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Correct a mistyped customer or purchase date, or set the box's key (audited; a new
    /// purchase date moves the warranty and re-signs the entitlement).
    Edit {
        /// The box's serial.
        serial: String,
        /// The corrected customer.
        #[arg(long)]
        customer: Option<String>,
        /// The corrected purchase date, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD")]
        purchase_date: Option<String>,
        /// The box's public key, set or replaced: a file holding base64 (from `np-agent
        /// keygen`), or the base64 itself.
        #[arg(long, value_name = "FILE|BASE64")]
        device_key: Option<String>,
        /// Accept a purchase date more than a few days in the future.
        #[arg(long)]
        allow_future: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List boxes, filtered; one page unless --all.
    List(ListArgs),
    /// Show what a box reported: its last report and its newest events.
    Events(EventsArgs),
    /// Extend a warranty by months or years (stacked on the current end).
    Extend {
        /// The box's serial.
        serial: String,
        /// Months to add (1-120).
        #[arg(long, conflicts_with = "years", required_unless_present = "years")]
        months: Option<i64>,
        /// Years to add (1-10).
        #[arg(long)]
        years: Option<i64>,
        /// After a lapse: pay for the gap and start a new term today.
        #[arg(long)]
        reinstate: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Swap a failed box for another (RMA); coverage moves to the new serial.
    Swap {
        /// The failed box's serial.
        serial: String,
        /// The replacement's serial.
        #[arg(long)]
        new_serial: String,
        /// A check of the replacement's model: it must be the one its serial names, of
        /// the same family and the same or a higher tier.
        #[arg(long)]
        new_model: Option<String>,
        /// The new box's public key: a file holding base64, or the base64 itself.
        #[arg(long, value_name = "FILE|BASE64")]
        new_device_key: Option<String>,
        /// Why (the RMA case), kept on both boxes and in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a box's entitlement.
    Revoke {
        /// The box's serial.
        serial: String,
        /// Why, kept on the box and in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask a box to upgrade or roll back at its next check-in, or cancel what is pending.
    Action {
        /// The box's serial.
        serial: String,
        /// upgrade (needs --version), rollback (to the image the box kept) or cancel.
        #[arg(value_enum)]
        action: ActionArg,
        /// The version to upgrade to (upgrade only).
        #[arg(long, required_if_eq("action", "upgrade"))]
        version: Option<String>,
        /// Replace an action that is still pending.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The remote actions.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ActionArg {
    /// Upgrade to --version.
    Upgrade,
    /// Go back to the image the box kept.
    Rollback,
    /// Cancel the pending action.
    Cancel,
}

/// Runs a device command.
pub fn run(cmd: DeviceCommand) -> CmdResult {
    match cmd {
        DeviceCommand::Add {
            serial,
            purchase_date,
            customer,
            model,
            device_key,
            allow_future,
            server,
        } => {
            let serial = check_serial(&serial)?;
            check_date("--purchase-date", &purchase_date)?;
            let mut body =
                json!({"serial": serial, "purchase_date": purchase_date, "customer": customer});
            if let Some(m) = model {
                body["model"] = json!(m.trim().to_ascii_uppercase());
            }
            if let Some(k) = device_key {
                body["device_key"] = json!(public_key_arg(&k, "--device-key")?);
            }
            if allow_future {
                body["allow_future"] = json!(true);
            }
            let c = Client::new(&server)?;
            let v = c.send_json(Method::POST, &["api", "v1", "devices"], &body)?;
            show(&v, server.json, "registered")
        }
        DeviceCommand::Import(a) => crate::device_import::run(a),
        DeviceCommand::Show { serial, server } => {
            let serial = check_serial(&serial)?;
            let c = Client::new(&server)?;
            let mut v = c.get(&["api", "v1", "devices", &serial], &[])?;
            let receipts = c.get(&["api", "v1", "devices", &serial, "receipts"], &[])?;
            if let Some(o) = v.as_object_mut() {
                o.insert("receipts".into(), receipts);
            }
            show(&v, server.json, "")
        }
        DeviceCommand::Edit {
            serial,
            customer,
            purchase_date,
            device_key,
            allow_future,
            server,
        } => {
            let serial = check_serial(&serial)?;
            if customer.is_none() && purchase_date.is_none() && device_key.is_none() {
                return Err(Failure::usage(
                    "name what to correct: --customer NAME, --purchase-date YYYY-MM-DD and/or --device-key FILE",
                ));
            }
            let mut body = json!({});
            if let Some(k) = device_key {
                body["device_key"] = json!(public_key_arg(&k, "--device-key")?);
            }
            if let Some(c) = customer {
                body["customer"] = json!(c);
            }
            if let Some(d) = purchase_date {
                check_date("--purchase-date", &d)?;
                body["purchase_date"] = json!(d);
            }
            if allow_future {
                body["allow_future"] = json!(true);
            }
            let c = Client::new(&server)?;
            let v = c.send_json(Method::PATCH, &["api", "v1", "devices", &serial], &body)?;
            show(&v, server.json, "corrected")
        }
        DeviceCommand::List(a) => device_list::list(a),
        DeviceCommand::Events(a) => device_list::events(a),
        DeviceCommand::Extend {
            serial,
            months,
            years,
            reinstate,
            server,
        } => {
            let serial = check_serial(&serial)?;
            Duration::from_request(months, years).map_err(|e| {
                Failure::refused(format!(
                    "--months/--years: {e}; give --months N or --years N (bad_duration)"
                ))
                .with_code("bad_duration", None)
            })?;
            let mut body = json!({});
            if let Some(m) = months {
                body["months"] = json!(m);
            }
            if let Some(y) = years {
                body["years"] = json!(y);
            }
            if reinstate {
                body["reinstate"] = json!(true);
            }
            let c = Client::new(&server)?;
            let path = ["api", "v1", "devices", serial.as_str(), "extensions"];
            let v = c.send_json(Method::POST, &path, &body)?;
            after_change(&c, &serial, &v, server.json, "extended")
        }
        DeviceCommand::Swap {
            serial,
            new_serial,
            new_model,
            new_device_key,
            reason,
            server,
        } => {
            let serial = check_serial(&serial)?;
            let new_serial = check_serial(&new_serial)?;
            let mut body = json!({"new_serial": new_serial, "reason": reason});
            if let Some(m) = new_model {
                body["new_model"] = json!(m.trim().to_ascii_uppercase());
            }
            if let Some(k) = new_device_key {
                body["new_device_key"] = json!(public_key_arg(&k, "--new-device-key")?);
            }
            let c = Client::new(&server)?;
            let path = ["api", "v1", "devices", serial.as_str(), "swap"];
            let v = c.send_json(Method::POST, &path, &body)?;
            let new_key = v.get("new").and_then(|n| n.get("device_key"));
            if new_key.is_some_and(Value::is_null) {
                np_server::errln!(
                    "warning: {new_serial} has no device key, so it cannot check in until it has one: set it with `np-vendor device edit {new_serial} --device-key FILE`"
                );
            }
            after_change(&c, &new_serial, &v, server.json, "")
        }
        DeviceCommand::Revoke {
            serial,
            reason,
            server,
        } => {
            let serial = check_serial(&serial)?;
            let c = Client::new(&server)?;
            let path = ["api", "v1", "devices", serial.as_str(), "revoke"];
            let v = c.send_json(Method::POST, &path, &json!({"reason": reason}))?;
            after_change(&c, &serial, &v, server.json, "revoked")
        }
        DeviceCommand::Action {
            serial,
            action,
            version,
            replace,
            server,
        } => action_cmd(&serial, action, version, replace, &server),
    }
}

fn action_cmd(
    serial: &str,
    action: ActionArg,
    version: Option<String>,
    replace: bool,
    server: &ServerArgs,
) -> CmdResult {
    let serial = check_serial(serial)?;
    let body = match (action, &version) {
        (ActionArg::Upgrade, v) => json!({"action": "upgrade", "version": v, "replace": replace}),
        (ActionArg::Rollback, None) => json!({"action": "rollback", "replace": replace}),
        (ActionArg::Rollback, Some(_)) => {
            return Err(Failure::usage(
                "rollback takes no --version: the box goes back to the image it kept; to install a given version use `upgrade --version V`",
            ))
        }
        (ActionArg::Cancel, Some(_)) => {
            return Err(Failure::usage("cancel takes no --version"));
        }
        (ActionArg::Cancel, None) => Value::Null,
    };
    let c = Client::new(server)?;
    let path = ["api", "v1", "devices", serial.as_str(), "actions"];
    let v = if action == ActionArg::Cancel {
        c.json(c.request(Method::DELETE, c.url(&path)))?
    } else {
        c.send_json(Method::POST, &path, &body)?
    };
    if server.json {
        print_json(&v);
        return Ok(());
    }
    match (action, version) {
        (ActionArg::Upgrade, Some(ver)) => np_server::outln!(
            "{serial}: upgrade to {ver} requested; the box does it at its next check-in"
        ),
        (ActionArg::Cancel, _) => np_server::outln!("{serial}: pending action cancelled"),
        _ => {
            np_server::outln!("{serial}: rollback requested; the box does it at its next check-in")
        }
    }
    Ok(())
}

/// A serial as typed (case and spaces do not matter), refused here when malformed (the
/// server checks it again).
pub fn check_serial(s: &str) -> Result<String, Failure> {
    let norm: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Serial::parse(&norm).map(|s| s.to_string()).map_err(|e| {
        // The error already names the serial and the expected form; saying it twice reads
        // as a stutter ("... is not a standard serial: ... is not a standard serial").
        Failure::refused(format!(
            "{e}; check the serial on the box's label (bad_serial)"
        ))
        .with_code("bad_serial", None)
    })
}

/// A calendar date `YYYY-MM-DD` given to `flag`.
pub fn check_date(flag: &str, s: &str) -> Result<(), Failure> {
    let ok = s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(Failure::refused(format!(
            "{flag} \"{}\" is not a calendar date: use YYYY-MM-DD (bad_date)",
            s.chars().take(40).collect::<String>()
        ))
        .with_code("bad_date", None))
    }
}

/// A public key given as a file holding base64, or as the base64 itself. A value that
/// cannot be base64 (a dot, say) is taken for a file name, so a missing file reads as
/// one; a key file holds one line.
pub fn public_key_arg(arg: &str, flag: &str) -> Result<String, Failure> {
    let path = Path::new(arg);
    let looks_base64 = !arg.is_empty()
        && arg
            .trim()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    let from_file = path.is_file();
    let text = if from_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read {flag} {arg}: {}", io_words(&e))))?;
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        if lines > 1 {
            return Err(Failure::refused(format!(
                "{flag} {arg} has {lines} lines; a key file holds one line of base64 (the public key `np-agent keygen` printed)"
            )));
        }
        text
    } else if path.exists() {
        return Err(Failure::usage(format!(
            "{flag} {arg} is a folder; give the key file or the base64 key"
        )));
    } else if !looks_base64 || (arg.contains('/') && PublicKey::from_base64(arg).is_err()) {
        return Err(Failure::usage(format!(
            "cannot read {flag} {arg}: no such file (give the file holding the public key `np-agent keygen` printed, e.g. `np-agent keygen --out device.key > device.pub`, or the base64 key itself; never the private key file)"
        )));
    } else {
        arg.to_owned()
    };
    PublicKey::from_base64(&text)
        .map(|k| k.to_base64())
        .map_err(|_| {
            let what = if from_file {
                format!("{flag} {arg} does not hold a public key")
            } else {
                format!("{flag} is not a public key")
            };
            Failure::refused(format!(
                "{what}: expected 44 characters of standard base64 (32 bytes), as `np-agent keygen` prints"
            ))
        })
}

/// An I/O error in a few words ("no such file", "permission denied").
fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

/// After a change: shows the device the answer carries (an extension answers the new
/// entitlement with `device`, a swap answers `{old, new}`), or fetches it.
fn after_change(c: &Client, serial: &str, v: &Value, json: bool, verb: &str) -> CmdResult {
    if json {
        print_json(v);
        return Ok(());
    }
    if let Some(d) = v.get("device") {
        return show(d, false, verb);
    }
    if let (Some(old), Some(new)) = (v.get("old"), v.get("new")) {
        // One line for the swap; the new box follows without a heading of its own.
        np_server::outln!(
            "{} is now {}; its coverage moved to {}",
            field(old, "serial"),
            field(old, "status"),
            field(new, "serial")
        );
        return show(new, false, "");
    }
    if v.get("serial").is_some() && v.get("terms").is_some() {
        return show(v, false, verb);
    }
    let device = c.get(&["api", "v1", "devices", serial], &[])?;
    show(&device, false, verb)
}

/// A pending action in words: "upgrade to 5.3.0, asked at ..., not yet delivered".
pub fn pending_words(p: &Value) -> String {
    if p.is_null() {
        return "-".to_owned();
    }
    let what = match p.get("version").and_then(Value::as_str) {
        Some(v) => format!("{} to {v}", field(p, "action")),
        None => field(p, "action"),
    };
    format!(
        "{what}, asked at {}; the box does it at its next check-in",
        field(p, "issued_at")
    )
}

/// The last result a box reported, in words.
pub fn result_words(r: &Value) -> String {
    if r.is_null() {
        return "-".to_owned();
    }
    let outcome = field(r, "outcome").replace('_', " ");
    let version = r
        .get("version")
        .and_then(Value::as_str)
        .map(|v| format!(" {v}"))
        .unwrap_or_default();
    let detail = r
        .get("detail")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    format!("{outcome}{version} at {}{detail}", field(r, "at"))
}

/// Prints a device for people (or its JSON).
pub fn show(v: &Value, json: bool, verb: &str) -> CmdResult {
    if json {
        print_json(v);
        return Ok(());
    }
    let d = v.get("device").unwrap_or(v);
    if !verb.is_empty() {
        np_server::outln!("{verb} {}", field(d, "serial"));
    }
    // Both boxes of a swap carry its reason under one label.
    let swapped = ["replaces", "replaced_by"]
        .iter()
        .any(|k| d.get(*k).is_some_and(|v| !v.is_null()));
    let reason_label = match d.get("status").and_then(Value::as_str) {
        Some("revoked") => "revoke reason",
        _ if swapped => "swap reason",
        _ => "reason",
    };
    let lines: Vec<(&str, String)> = vec![
        ("serial", field(d, "serial")),
        ("model", field(d, "model")),
        ("customer", field(d, "customer")),
        ("purchase date", field(d, "purchase_date")),
        ("status", field(d, "status")),
        ("coverage", field(d, "coverage").replace('_', " ")),
        ("coverage end", field(d, "coverage_end")),
        (reason_label, field(d, "status_reason")),
        ("replaces", field(d, "replaces")),
        ("replaced by", field(d, "replaced_by")),
        ("sequence", field(d, "sequence")),
        ("version", field(d, "version")),
        ("last check-in", field(d, "last_check_in")),
        (
            "last result",
            result_words(d.get("last_result").unwrap_or(&Value::Null)),
        ),
        (
            "pending action",
            pending_words(d.get("pending_action").unwrap_or(&Value::Null)),
        ),
        ("device key", field(d, "device_key")),
    ];
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, value) in lines {
        np_server::outln!("{:<width$} {value}", format!("{k}:"));
    }
    if let Some(terms) = d.get("terms").and_then(Value::as_array) {
        let rows: Vec<Vec<String>> = terms
            .iter()
            .map(|t| {
                ["kind", "start", "end"]
                    .iter()
                    .map(|k| field(t, k))
                    .collect()
            })
            .collect();
        np_server::outln!();
        table::print(&["TERM", "START", "END"], &rows, "no terms");
    }
    if let Some(receipts) = v.get("receipts").and_then(Value::as_array) {
        let rows: Vec<Vec<String>> = receipts
            .iter()
            .take(20)
            .map(|s| {
                let r = s.get("receipt").unwrap_or(&Value::Null);
                vec![
                    field(r, "seq"),
                    field(r, "at"),
                    field(r, "outcome").replace('_', " "),
                    field(r, "from_version"),
                    field(r, "to_version"),
                    field(s, "via"),
                ]
            })
            .collect();
        np_server::outln!();
        table::print(
            &["RECEIPT", "AT", "OUTCOME", "FROM", "TO", "VIA"],
            &rows,
            "no receipts",
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_serial_is_named_once_with_what_to_do() {
        let f = check_serial("NR-2000-99999-1").unwrap_err();
        assert_eq!(
            f.message(),
            "\"NR-2000-99999-1\" is not a standard serial: expected PP-MMMM-NNNNNN-C, such as \
             NR-2000-123456-4; check the serial on the box's label (bad_serial)"
        );
        let f = check_serial("NR-2000-123456-5").unwrap_err();
        assert_eq!(
            f.message(),
            "serial \"NR-2000-123456-5\" has check digit 5, but the Luhn digit of 2000123456 is \
             4; check the serial on the box's label (bad_serial)"
        );
        assert_eq!(
            check_serial(" nr-2000-123456-4 ").unwrap(),
            "NR-2000-123456-4"
        );
    }

    #[test]
    fn a_device_key_names_a_missing_file_and_a_file_of_many_lines() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("box.pub");
        let m = missing.display().to_string();
        let f = public_key_arg(&m, "--device-key").unwrap_err();
        assert_eq!(f.exit_code(), 2);
        assert!(f.message().contains(": no such file"), "{}", f.message());
        assert!(!f.message().contains("Invalid symbol"), "{}", f.message());
        let f = public_key_arg("box.pub", "--device-key").unwrap_err();
        assert!(
            f.message().contains("box.pub: no such file"),
            "{}",
            f.message()
        );
        let key = np_common::SecretKey::from_seed(&[7u8; 32])
            .public_key()
            .to_base64();
        let two = dir.path().join("two.pub");
        std::fs::write(&two, format!("{key}\n{key}\n")).unwrap();
        let f = public_key_arg(&two.display().to_string(), "--device-key").unwrap_err();
        assert!(f.message().contains("has 2 lines"), "{}", f.message());
        let one = dir.path().join("one.pub");
        std::fs::write(&one, format!("{key}\n")).unwrap();
        assert_eq!(
            public_key_arg(&one.display().to_string(), "--device-key").unwrap(),
            key
        );
        assert_eq!(public_key_arg(&key, "--device-key").unwrap(), key);
        let f = public_key_arg("abcd", "--device-key").unwrap_err();
        assert_eq!(
            f.message(),
            "--device-key is not a public key: expected 44 characters of standard base64 (32 bytes), as `np-agent keygen` prints"
        );
    }
}
