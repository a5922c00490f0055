//! `np-vendor bundle get SERIAL --version V --out FILE`: downloads the offline bundle the
//! server builds for one box, streamed to a temporary file that is renamed onto `--out`
//! only once it is complete.

use crate::client::{error_chain, progress, Client, ServerArgs};
use crate::failure::{CmdResult, Failure};
use crate::files;
use reqwest::Method;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

/// Arguments of `bundle get`.
#[derive(clap::Args)]
pub struct Args {
    /// The box's serial.
    serial: String,
    /// The release version to bundle.
    #[arg(long)]
    version: String,
    /// Where to write the bundle.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `bundle get`.
pub fn run(args: Args) -> CmdResult {
    let c = Client::new(&args.server)?;
    let mut url = c.url(&["api", "v1", "devices", &args.serial, "bundle"]);
    url.query_pairs_mut().append_pair("version", &args.version);
    let mut resp = c.send(c.request(Method::GET, url))?;
    // Taken before the body is read: reqwest's figure is a size hint that shrinks to 0
    // as the body is consumed.
    let expected = resp.content_length();
    let bar = progress(expected, "downloading");
    let tmp = files::temp_beside(&args.out)?;
    let mut out = BufWriter::with_capacity(64 * 1024, tmp);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = resp.read(&mut buf).map_err(|e| {
            Failure::io(format!(
                "the download broke off after {total} bytes: {}",
                error_chain(&e)
            ))
        })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| Failure::io(format!("cannot write {}: {e}", args.out.display())))?;
        total += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if let Some(len) = expected {
        if len != total {
            return Err(Failure::io(format!(
                "the download ended after {total} of {len} bytes; try again"
            )));
        }
    }
    let tmp = out.into_inner().map_err(|e| {
        Failure::io(format!(
            "cannot write {}: {}",
            args.out.display(),
            e.error()
        ))
    })?;
    files::persist(tmp, &args.out)?;
    np_server::outln!(
        "wrote bundle {} for {} version {} ({total} bytes)",
        args.out.display(),
        args.serial,
        args.version
    );
    Ok(())
}
