//! `np-vendor receipt upload FILE...`: uploads the signed receipts an offline box wrote
//! (`np-agent receipts --out DIR`). The server checks each against its box's device key
//! before it stores any; a receipt it holds already changes nothing, and one older than
//! the box's newest is kept in its history without moving the box back.

use crate::client::{print_json, Client, ServerArgs};
use crate::failure::{CmdResult, Failure};
use crate::files;
use np_common::api::{ReceiptUploadAnswer, MAX_RECEIPTS_PER_UPLOAD};
use np_common::Envelope;
use reqwest::Method;
use std::path::PathBuf;

/// The receipt commands.
#[derive(clap::Subcommand)]
pub enum ReceiptCommand {
    /// Upload receipts written by offline boxes.
    Upload {
        /// Receipt files (receipt-NNNNNNNNNN.json), as `np-agent receipts` copies them out.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Runs a receipt command.
pub fn run(c: ReceiptCommand) -> CmdResult {
    match c {
        ReceiptCommand::Upload { files, server } => upload(&files, &server),
    }
}

fn upload(paths: &[PathBuf], server: &ServerArgs) -> CmdResult {
    let mut envelopes = Vec::with_capacity(paths.len());
    for p in paths {
        let bytes = files::read_doc(p, "receipt")?;
        let env = Envelope::parse(&bytes).map_err(|e| {
            Failure::usage(format!(
                "{}: {e}; give the files `np-agent receipts --out DIR` wrote",
                p.display()
            ))
        })?;
        envelopes.push(env);
    }
    let c = Client::new(server)?;
    let mut answers = Vec::new();
    for (chunk, names) in envelopes
        .chunks(MAX_RECEIPTS_PER_UPLOAD)
        .zip(paths.chunks(MAX_RECEIPTS_PER_UPLOAD))
    {
        let req = c
            .request(Method::POST, c.url(&["api", "v1", "receipts"]))
            .json(chunk);
        let v = c.json(req).map_err(|f| {
            // The server counts the list; name the file instead.
            let mut msg = f.message().to_owned();
            for (i, name) in names.iter().enumerate() {
                msg = msg.replace(
                    &format!("receipt {} of the list", i + 1),
                    &format!("{}", name.display()),
                );
            }
            f.reworded(msg)
        })?;
        let a: ReceiptUploadAnswer = serde_json::from_value(v.clone()).map_err(|e| {
            Failure::io(format!(
                "the server's answer is not a receipt upload answer: {e}"
            ))
        })?;
        answers.extend(a.receipts.into_iter().zip(names.iter().cloned()));
    }
    if server.json {
        let all: Vec<_> = answers.iter().map(|(a, _)| a).collect();
        print_json(&serde_json::json!({ "receipts": all }));
        return Ok(());
    }
    for (a, name) in &answers {
        let what = match (a.new, a.latest) {
            (true, true) => "stored; the box's record follows it",
            (true, false) => {
                "stored in its history; older than the box's newest receipt, so it changes nothing else"
            }
            (false, _) => "already held; nothing changed",
        };
        np_server::outln!("{}: {} receipt {}: {what}", name.display(), a.serial, a.seq);
    }
    let new = answers.iter().filter(|(a, _)| a.new).count();
    np_server::outln!(
        "{} receipt{} uploaded, {new} new",
        answers.len(),
        if answers.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
