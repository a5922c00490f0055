//! `np-vendor device add|show|list|extend|swap|revoke|action`: the staff API for boxes
//! and their warranties (docs/api.md).

use crate::client::{field, items, print_json, Client, ServerArgs};
use crate::failure::{CmdResult, Failure};
use crate::table;
use np_common::{PublicKey, Serial};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;

/// Device commands.
#[derive(clap::Subcommand)]
pub enum DeviceCommand {
    /// Register a box and start its one-year warranty.
    Add {
        serial: String,
        /// Purchase date, YYYY-MM-DD.
        #[arg(long)]
        purchase_date: String,
        #[arg(long)]
        customer: String,
        /// Model, when it differs from the one the serial names.
        #[arg(long)]
        model: Option<String>,
        /// The box's public key: a file holding base64, or the base64 itself.
        #[arg(long)]
        device_key: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one box.
    Show {
        serial: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List boxes (one page; --cursor for the next).
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        customer: Option<String>,
        /// Only boxes whose coverage ends before this date (YYYY-MM-DD).
        #[arg(long)]
        expiring_before: Option<String>,
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Extend a warranty by months or years.
    Extend {
        serial: String,
        #[arg(long, conflicts_with = "years", required_unless_present = "years")]
        months: Option<i64>,
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
        serial: String,
        #[arg(long)]
        new_serial: String,
        #[arg(long)]
        new_model: Option<String>,
        /// The new box's public key: a file holding base64, or the base64 itself.
        #[arg(long)]
        new_device_key: Option<String>,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a box's entitlement.
    Revoke {
        serial: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask a box to upgrade to a version or roll back, at its next check-in.
    Action {
        serial: String,
        #[arg(value_enum)]
        action: ActionArg,
        /// The version to upgrade to (upgrade only).
        #[arg(long, required_if_eq("action", "upgrade"))]
        version: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The remote actions.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ActionArg {
    Upgrade,
    Rollback,
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
            server,
        } => {
            let serial = check_serial(&serial)?;
            let mut body =
                json!({"serial": serial, "purchase_date": purchase_date, "customer": customer});
            if let Some(m) = model {
                body["model"] = json!(m);
            }
            if let Some(k) = device_key {
                body["device_key"] = json!(public_key_arg(&k, "--device-key")?);
            }
            let c = Client::new(&server)?;
            let v = c.send_json(Method::POST, &["api", "v1", "devices"], &body)?;
            show(&v, server.json, "registered")
        }
        DeviceCommand::Show { serial, server } => {
            let c = Client::new(&server)?;
            let v = c.get(&["api", "v1", "devices", &serial], &[])?;
            show(&v, server.json, "")
        }
        DeviceCommand::List {
            status,
            model,
            customer,
            expiring_before,
            cursor,
            server,
        } => {
            let q: Vec<(&str, String)> = [
                ("status", status),
                ("model", model),
                ("customer", customer),
                ("expiring_before", expiring_before),
                ("cursor", cursor),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let c = Client::new(&server)?;
            let v = c.get(&["api", "v1", "devices"], &q)?;
            if server.json {
                print_json(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items(&v)
                .iter()
                .map(|d| {
                    [
                        "serial",
                        "model",
                        "status",
                        "coverage_end",
                        "version",
                        "last_check_in",
                        "customer",
                    ]
                    .iter()
                    .map(|k| field(d, k))
                    .collect()
                })
                .collect();
            table::print(
                &[
                    "SERIAL",
                    "MODEL",
                    "STATUS",
                    "COVERAGE_END",
                    "VERSION",
                    "LAST_CHECK_IN",
                    "CUSTOMER",
                ],
                &rows,
                "no devices",
            );
            if let Some(next) = v.get("next_cursor").and_then(Value::as_str) {
                println!("more: --cursor {next}");
            }
            Ok(())
        }
        DeviceCommand::Extend {
            serial,
            months,
            years,
            reinstate,
            server,
        } => {
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
            let new_serial = check_serial(&new_serial)?;
            let mut body = json!({"new_serial": new_serial, "reason": reason});
            if let Some(m) = new_model {
                body["new_model"] = json!(m);
            }
            if let Some(k) = new_device_key {
                body["new_device_key"] = json!(public_key_arg(&k, "--new-device-key")?);
            }
            let c = Client::new(&server)?;
            let path = ["api", "v1", "devices", serial.as_str(), "swap"];
            let v = c.send_json(Method::POST, &path, &body)?;
            after_change(&c, &new_serial, &v, server.json, "swapped; now")
        }
        DeviceCommand::Revoke {
            serial,
            reason,
            server,
        } => {
            let c = Client::new(&server)?;
            let path = ["api", "v1", "devices", serial.as_str(), "revoke"];
            let v = c.send_json(Method::POST, &path, &json!({"reason": reason}))?;
            after_change(&c, &serial, &v, server.json, "revoked")
        }
        DeviceCommand::Action {
            serial,
            action,
            version,
            server,
        } => {
            let body = match action {
                ActionArg::Upgrade => json!({"action": "upgrade", "version": version}),
                ActionArg::Rollback => json!({"action": "rollback"}),
            };
            let c = Client::new(&server)?;
            let path = ["api", "v1", "devices", serial.as_str(), "actions"];
            let v = c.send_json(Method::POST, &path, &body)?;
            if server.json {
                print_json(&v);
            } else {
                let what = match (action, version) {
                    (ActionArg::Upgrade, Some(v)) => format!("upgrade to {v}"),
                    _ => "rollback".to_owned(),
                };
                println!("{serial}: {what} requested; the box does it at its next check-in");
            }
            Ok(())
        }
    }
}

/// Refuses a malformed serial before asking the server (the server checks it again).
fn check_serial(s: &str) -> Result<String, Failure> {
    Serial::parse(s)
        .map(|s| s.to_string())
        .map_err(|e| Failure::refused(format!("{s:?} is not a standard serial: {e}")))
}

/// A public key given as a file holding base64, or as the base64 itself.
fn public_key_arg(arg: &str, flag: &str) -> Result<String, Failure> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg)
            .map_err(|e| Failure::io(format!("cannot read {flag} {arg}: {e}")))?
    } else {
        arg.to_owned()
    };
    PublicKey::from_base64(&text)
        .map(|k| k.to_base64())
        .map_err(|e| {
            Failure::refused(format!(
                "{flag} is not a public key file or base64 key: {e}"
            ))
        })
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
        println!(
            "{} is now {}; its coverage moved to {}",
            field(old, "serial"),
            field(old, "status"),
            field(new, "serial")
        );
        return show(new, false, verb);
    }
    if v.get("serial").is_some() && v.get("terms").is_some() {
        return show(v, false, verb);
    }
    let device = c.get(&["api", "v1", "devices", serial], &[])?;
    show(&device, false, verb)
}

/// Prints a device for people (or its JSON).
fn show(v: &Value, json: bool, verb: &str) -> CmdResult {
    if json {
        print_json(v);
        return Ok(());
    }
    let d = v.get("device").unwrap_or(v);
    if !verb.is_empty() {
        println!("{verb} {}", field(d, "serial"));
    }
    for k in [
        "serial",
        "model",
        "customer",
        "purchase_date",
        "status",
        "coverage_end",
        "sequence",
        "version",
        "last_check_in",
        "replaced_by",
        "pending_action",
        "device_key",
    ] {
        if d.get(k).is_some() {
            println!("{:<15} {}", format!("{k}:"), field(d, k));
        }
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
        println!();
        table::print(&["TERM", "START", "END"], &rows, "no terms");
    }
    Ok(())
}
