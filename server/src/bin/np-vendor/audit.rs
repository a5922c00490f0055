//! `np-vendor audit [--serial S] [--cursor C]`: the server's append-only audit log.

use crate::client::{field, items, print_json, Client, ServerArgs};
use crate::failure::CmdResult;
use crate::table;
use serde_json::Value;

/// Arguments of `audit`.
#[derive(clap::Args)]
pub struct Args {
    /// Only entries about this serial.
    #[arg(long)]
    serial: Option<String>,
    /// Continue from a previous page.
    #[arg(long)]
    cursor: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `audit`.
pub fn run(args: Args) -> CmdResult {
    let c = Client::new(&args.server)?;
    let q: Vec<(&str, String)> = [("serial", args.serial), ("cursor", args.cursor)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let v = c.get(&["api", "v1", "audit"], &q)?;
    if args.server.json {
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items(&v)
        .iter()
        .map(|e| {
            let time = match field(e, "time") {
                t if t == "-" => field(e, "at"),
                t => t,
            };
            vec![
                time,
                field(e, "actor"),
                field(e, "action"),
                field(e, "serial"),
            ]
        })
        .collect();
    table::print(
        &["TIME", "ACTOR", "ACTION", "SERIAL"],
        &rows,
        "no audit entries",
    );
    if let Some(next) = v.get("next_cursor").and_then(Value::as_str) {
        println!("more: --cursor {next}");
    }
    Ok(())
}
