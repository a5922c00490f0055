//! `np-vendor device import FILE.csv`: registers many boxes, one request per batch
//! (`POST /api/v1/devices/import`, one store transaction each). The whole file is read and
//! checked first, so every bad line is named before anything is sent; a batch the server
//! refuses is named line by line, and nothing of it is registered.
//!
//! The CSV has a header line naming its columns, in any order: `serial`,
//! `purchase_date`, `customer` (required), `model`, `device_key` (optional). Fields may be
//! quoted ("ACME, Inc."), with `""` for a quote inside. A UTF-8 byte-order mark (as
//! spreadsheets write) is skipped, and a file separated by semicolons (as spreadsheets
//! write in many locales) is read as such, with a note.

use crate::client::{print_json, Client, ServerArgs};
use crate::device::{check_date, check_serial};
use crate::failure::{CmdResult, Failure};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Instant;

/// The longest line (or quoted record) read from the file.
const MAX_RECORD: usize = 64 * 1024;
/// The most boxes one batch may hold (the server's limit).
const MAX_BATCH: usize = 5000;

/// Arguments of `device import`.
#[derive(clap::Args)]
pub struct Args {
    /// The CSV file: a header line (serial, purchase_date, customer, and optionally model,
    /// device_key), then one box per line.
    file: PathBuf,
    /// Boxes per request (1-5000); each batch is registered whole or not at all.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Accept purchase dates more than a few days in the future.
    #[arg(long)]
    allow_future: bool,
    /// Skip (and count) boxes registered already with the same facts, so that a file can
    /// be run again after a refused batch; a box registered with other facts is still
    /// refused.
    #[arg(long)]
    skip_existing: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// One record of a CSV file and the line it starts on.
#[derive(Debug, PartialEq)]
pub struct Record {
    /// 1-based line number.
    pub line: u64,
    /// Its fields.
    pub fields: Vec<String>,
}

/// The records of a CSV file and the separator they were split on.
#[derive(Debug)]
pub struct Csv {
    /// The records, header first.
    pub records: Vec<Record>,
    /// `,` or, when the header has semicolons and no comma, `;`.
    pub separator: char,
}

/// The separator of a header line: a comma, or a semicolon when the line has semicolons
/// outside quotes and no comma.
fn separator_of(header: &str) -> char {
    let mut quoted = false;
    let (mut commas, mut semis) = (0, 0);
    for c in header.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => commas += 1,
            ';' if !quoted => semis += 1,
            _ => {}
        }
    }
    if commas == 0 && semis > 0 {
        ';'
    } else {
        ','
    }
}

/// Reads CSV records (RFC 4180: quoted fields may hold separators, quotes and newlines);
/// empty lines are skipped, a leading byte-order mark is dropped, and the separator is
/// the header's (a comma or a semicolon).
pub fn read_csv(r: impl BufRead, name: &str) -> Result<Csv, Failure> {
    let mut out = Vec::new();
    let mut separator = None;
    let mut lines = r.lines();
    let mut line_no = 0u64;
    while let Some(first) = lines.next() {
        line_no += 1;
        let start = line_no;
        let mut text =
            first.map_err(|e| Failure::io(format!("cannot read {name} line {line_no}: {e}")))?;
        if start == 1 {
            if let Some(rest) = text.strip_prefix('\u{feff}') {
                text = rest.to_owned();
            }
        }
        // A record continues while a quote is open.
        while text.chars().filter(|c| *c == '"').count() % 2 == 1 {
            if text.len() > MAX_RECORD {
                break;
            }
            match lines.next() {
                Some(next) => {
                    line_no += 1;
                    let next = next.map_err(|e| {
                        Failure::io(format!("cannot read {name} line {line_no}: {e}"))
                    })?;
                    text.push('\n');
                    text.push_str(&next);
                }
                None => {
                    return Err(Failure::refused(format!(
                        "{name} line {start}: a quoted field is never closed"
                    )))
                }
            }
        }
        if text.len() > MAX_RECORD {
            return Err(Failure::refused(format!(
                "{name} line {start} is longer than {MAX_RECORD} bytes"
            )));
        }
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let sep = *separator.get_or_insert_with(|| separator_of(text));
        out.push(Record {
            line: start,
            fields: split_record(text, sep),
        });
    }
    Ok(Csv {
        records: out,
        separator: separator.unwrap_or(','),
    })
}

fn split_record(text: &str, sep: char) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (c, false) if c == sep => fields.push(std::mem::take(&mut cur).trim().to_owned()),
            _ => cur.push(c),
        }
    }
    fields.push(cur.trim().to_owned());
    fields
}

/// The column of each field name in the header.
struct Columns {
    serial: usize,
    purchase_date: usize,
    customer: usize,
    model: Option<usize>,
    device_key: Option<usize>,
}

fn columns(header: &Record, name: &str) -> Result<Columns, Failure> {
    let norm: Vec<String> = header
        .fields
        .iter()
        .map(|f| f.to_lowercase().replace([' ', '-'], "_"))
        .collect();
    let find = |n: &str| norm.iter().position(|f| f == n);
    let need = |n: &str| {
        find(n).ok_or_else(|| {
            Failure::refused(format!(
                "{name} line {}: the header has no \"{n}\" column; it needs serial, purchase_date and customer (and may have model, device_key)",
                header.line
            ))
        })
    };
    Ok(Columns {
        serial: need("serial")?,
        purchase_date: need("purchase_date")?,
        customer: need("customer")?,
        model: find("model"),
        device_key: find("device_key"),
    })
}

/// The rows of a file as request bodies, or every bad line named.
fn rows(records: &[Record], name: &str, allow_future: bool) -> Result<Vec<Value>, Failure> {
    let Some((header, body)) = records.split_first() else {
        return Err(Failure::refused(format!(
            "{name} is empty: it needs a header line and one line per box"
        )));
    };
    let cols = columns(header, name)?;
    let needed = [cols.serial, cols.purchase_date, cols.customer]
        .into_iter()
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in body {
        if r.fields.len() < needed {
            let n = r.fields.len();
            errors.push(format!(
                "line {}: too few fields: it has {n} field{}, the header names {} columns (serial, purchase_date and customer are needed)",
                r.line,
                if n == 1 { "" } else { "s" },
                header.fields.len()
            ));
            continue;
        }
        let get = |i: usize| r.fields.get(i).map(String::as_str).unwrap_or("");
        let checked = check_serial(get(cols.serial))
            .and_then(|s| check_date("purchase_date", get(cols.purchase_date)).map(|()| s))
            .and_then(|s| {
                if get(cols.customer).is_empty() {
                    Err(Failure::refused("the customer is empty"))
                } else {
                    Ok(s)
                }
            });
        match checked {
            Ok(serial) => {
                let mut row = json!({
                    "line": r.line,
                    "serial": serial,
                    "purchase_date": get(cols.purchase_date),
                    "customer": get(cols.customer),
                });
                if let Some(m) = cols.model.map(get).filter(|m| !m.is_empty()) {
                    row["model"] = json!(m.to_ascii_uppercase());
                }
                if let Some(k) = cols.device_key.map(get).filter(|k| !k.is_empty()) {
                    row["device_key"] = json!(k);
                }
                if allow_future {
                    row["allow_future"] = json!(true);
                }
                out.push(row);
            }
            Err(f) => errors.push(format!("line {}: {}", r.line, f.message())),
        }
    }
    if !errors.is_empty() {
        return Err(Failure::refused(format!(
            "{name}: {} refused, nothing was sent:\n  {}",
            plural(errors.len(), "line is", "lines are"),
            errors.join("\n  ")
        )));
    }
    if out.is_empty() {
        return Err(Failure::refused(format!(
            "{name} holds a header but no box"
        )));
    }
    Ok(out)
}

/// `1 box`, `2 boxes`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Runs `device import`.
pub fn run(a: Args) -> CmdResult {
    if !(1..=MAX_BATCH).contains(&a.batch_size) {
        return Err(Failure::usage(format!(
            "--batch-size must be 1 to {MAX_BATCH}"
        )));
    }
    let name = a.file.display().to_string();
    let file = std::fs::File::open(&a.file)
        .map_err(|e| Failure::io(format!("cannot open {name}: {e}")))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Failure::usage(format!(
            "{name} is a folder; give the CSV file"
        )));
    }
    let csv = read_csv(BufReader::new(file), &name)?;
    if csv.separator == ';' && !a.server.json {
        np_server::errln!("note: {name} is separated by semicolons; reading it so");
    }
    let rows = rows(&csv.records, &name, a.allow_future)?;
    let c = Client::new(&a.server)?;
    let started = Instant::now();
    let (mut imported, mut skipped) = (0usize, 0usize);
    let batches: Vec<&[Value]> = rows.chunks(a.batch_size).collect();
    let count = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
    for (i, batch) in batches.iter().enumerate() {
        let mut body = json!({ "devices": batch });
        if a.skip_existing {
            body["skip_existing"] = json!(true);
        }
        let answer = c.send_json(Method::POST, &["api", "v1", "devices", "import"], &body);
        match answer {
            Ok(v) => {
                imported += count(&v, "imported");
                skipped += count(&v, "skipped");
            }
            Err(f) => {
                let lines = f.row_errors();
                let first = batch
                    .first()
                    .and_then(|r| r.get("line"))
                    .cloned()
                    .unwrap_or_default();
                let rerun = if a.skip_existing {
                    "run it again with --skip-existing"
                } else {
                    "run it again with --skip-existing (boxes registered already with the same facts are then skipped)"
                };
                let registered_already = lines.contains("(exists)");
                let resume = if i == 0 && registered_already && !a.skip_existing {
                    "; to run the file again and skip the boxes registered already with the same facts, pass --skip-existing".to_owned()
                } else if i == 0 {
                    "; fix these lines and run the file again".to_owned()
                } else {
                    let before = imported + skipped;
                    format!(
                        "; the {} of the batches before it {} registered: fix these lines, then resume from line {first} or {rerun}",
                        plural(before, "box", "boxes"),
                        if before == 1 { "is" } else { "are" }
                    )
                };
                return Err(f.reworded(format!(
                    "{name}: batch {} (from line {first}) was refused, none of it registered{resume}{lines}",
                    i + 1
                )));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if a.server.json {
        print_json(
            &json!({"imported": imported, "skipped": skipped, "batches": batches.len(), "seconds": secs}),
        );
    } else {
        let skipped = if a.skip_existing {
            format!(
                "; skipped {} registered already with the same facts",
                plural(skipped, "box", "boxes")
            )
        } else {
            String::new()
        };
        np_server::outln!(
            "imported {} from {name} in {}, {secs:.2} s{skipped}",
            plural(imported, "box", "boxes"),
            plural(batches.len(), "request", "requests")
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_keep_quotes_commas_and_line_numbers() {
        let text = "serial,purchase_date,customer\n\nNR-2000-123456-4,2026-01-02,\"ACME, Inc.\"\nx,y,\"two\nlines \"\"q\"\"\"\n";
        let r = read_csv(text.as_bytes(), "f.csv").unwrap().records;
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].line, 3);
        assert_eq!(r[1].fields[2], "ACME, Inc.");
        assert_eq!(r[2].line, 4);
        assert_eq!(r[2].fields[2], "two\nlines \"q\"");
        let bad = read_csv("a,\"b\n".as_bytes(), "f.csv").unwrap_err();
        assert!(bad.message().contains("line 1"), "{}", bad.message());
    }

    #[test]
    fn bad_lines_are_all_named_before_anything_is_sent() {
        let text = "Serial,Purchase Date,Customer\nNR-2000-123456-5,2026-01-02,A\nNR-2000-123456-4,2026-13-02,B\nnr-2000-654321-7 ,2026-01-02,C\n";
        let recs = read_csv(text.as_bytes(), "f.csv").unwrap().records;
        let e = rows(&recs, "f.csv", false).unwrap_err();
        assert!(e.message().contains("line 2:"), "{}", e.message());
        assert!(e.message().contains("line 3:"), "{}", e.message());
        assert!(!e.message().contains("line 4:"), "{}", e.message());
    }

    #[test]
    fn a_byte_order_mark_and_semicolons_are_read_and_short_lines_named() {
        let text = "\u{feff}serial;purchase_date;customer\nNR-2000-123456-4;2026-01-02;\"A; B\"\nNR-2000-654321-7\n";
        let csv = read_csv(text.as_bytes(), "f.csv").unwrap();
        assert_eq!(csv.separator, ';');
        assert_eq!(
            csv.records[0].fields,
            ["serial", "purchase_date", "customer"]
        );
        assert_eq!(csv.records[1].fields[2], "A; B");
        let e = rows(&csv.records, "f.csv", false).unwrap_err();
        assert_eq!(
            e.message(),
            "f.csv: 1 line is refused, nothing was sent:\n  line 3: too few fields: it has 1 field, \
             the header names 3 columns (serial, purchase_date and customer are needed)"
        );
        let csv = read_csv("serial,purchase_date,customer\n".as_bytes(), "f.csv").unwrap();
        assert_eq!(csv.separator, ',');
        assert_eq!(plural(1, "box", "boxes"), "1 box");
        assert_eq!(plural(2, "box", "boxes"), "2 boxes");
    }
}
