//! `np-vendor bundle get SERIAL --version V --out FILE`: downloads the offline bundle the
//! server builds for one box; `np-vendor bundle get --request FILE --out FILE` sends a
//! box's signed request (`np-agent request`) instead, and the server picks the newest
//! release that box may install. The bundle is streamed to a temporary file that is renamed
//! onto `--out` only once it is complete. np-vendor asks for gzip on the wire and
//! decompresses it on the way, so the file is the bundle itself, a plain tar.

use crate::client::{error_chain, progress, Client, ServerArgs};
use crate::failure::{CmdResult, Failure};
use crate::files;
use reqwest::blocking::Response;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING};
use reqwest::Method;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Arguments of `bundle get`.
#[derive(clap::Args)]
pub struct Args {
    /// The box's serial (not with --request).
    #[arg(required_unless_present = "request", conflicts_with = "request")]
    serial: Option<String>,
    /// The release version to bundle (with SERIAL).
    #[arg(long, required_unless_present = "request", conflicts_with = "request")]
    version: Option<String>,
    /// A box's signed request (written by `np-agent request`): the server answers with the
    /// newest release that box may install.
    #[arg(long, value_name = "FILE")]
    request: Option<PathBuf>,
    /// Where to write the bundle.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `bundle get`.
pub fn run(args: Args) -> CmdResult {
    let c = Client::new(&args.server)?;
    if let Some(path) = &args.request {
        return by_request(&c, path, &args.out);
    }
    let (Some(serial), Some(version)) = (&args.serial, &args.version) else {
        return Err(Failure::usage(
            "give SERIAL and --version V, or --request FILE",
        ));
    };
    let mut url = c.url(&["api", "v1", "devices", serial, "bundle"]);
    url.query_pairs_mut().append_pair("version", version);
    let resp = c.send(c.request(Method::GET, url).header(ACCEPT_ENCODING, "gzip"))?;
    let total = download(resp, &args.out)?;
    np_server::outln!(
        "wrote bundle {} for {serial} version {version} ({total} bytes)",
        args.out.display(),
    );
    Ok(())
}

fn by_request(c: &Client, path: &Path, out: &Path) -> CmdResult {
    let bytes = files::read_doc(path, "request")?;
    let env = np_common::Envelope::parse(&bytes).map_err(|e| {
        Failure::usage(format!(
            "--request {}: {e}; give the file `np-agent request --out FILE` wrote on the box",
            path.display()
        ))
    })?;
    let resp = c.send(
        c.request(Method::POST, c.url(&["api", "v1", "bundles"]))
            .header(ACCEPT_ENCODING, "gzip")
            .json(&env),
    )?;
    let stale = resp
        .headers()
        .get(np_common::api::HEADER_STALE_REQUEST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let name = resp
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("filename=\"").nth(1))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or("the bundle")
        .to_owned();
    let total = download(resp, out)?;
    np_server::outln!(
        "wrote bundle {} ({name}, {total} bytes) for the request in {}",
        out.display(),
        path.display()
    );
    if let Some(s) = stale {
        np_server::errln!("warning: {s}");
    }
    Ok(())
}

/// The answer's bytes as they come off the wire, counted (and shown on the progress bar).
struct Wire<'a> {
    resp: Response,
    read: &'a std::cell::Cell<u64>,
    bar: &'a indicatif::ProgressBar,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.resp.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Streams the answer into a temporary file beside `out`, then renames it onto `out`. A
/// gzip-compressed answer (`Content-Encoding: gzip`, asked for to spare the network) is
/// decompressed on the way: the file is the bundle itself, a plain tar. Answers the
/// bundle's size.
fn download(resp: Response, out_path: &Path) -> Result<u64, Failure> {
    // Taken before the body is read: reqwest's figure is a size hint that shrinks to 0
    // as the body is consumed.
    let compressed = resp
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let gzip = match compressed.as_deref() {
        None | Some("identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(other) => {
            return Err(Failure::io(format!(
                "the server sent the bundle encoded as {other:?}, which np-vendor does not read"
            )))
        }
    };
    let expected = resp.content_length();
    let bar = progress(expected, "downloading");
    let wire_bytes = std::cell::Cell::new(0u64);
    let wire = Wire {
        resp,
        read: &wire_bytes,
        bar: &bar,
    };
    let mut body: Box<dyn Read + '_> = if gzip {
        Box::new(flate2::read::GzDecoder::new(wire))
    } else {
        Box::new(wire)
    };
    let tmp = files::temp_beside(out_path)?;
    let mut out = BufWriter::with_capacity(64 * 1024, tmp);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut buf).map_err(|e| {
            Failure::io(format!(
                "the download broke off after {} bytes: {}",
                wire_bytes.get(),
                error_chain(&e)
            ))
        })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| Failure::io(format!("cannot write {}: {e}", out_path.display())))?;
        total += n as u64;
    }
    drop(body);
    bar.finish_and_clear();
    if let Some(len) = expected {
        if len != wire_bytes.get() {
            return Err(Failure::io(format!(
                "the download ended after {} of {len} bytes; try again",
                wire_bytes.get()
            )));
        }
    }
    let tmp = out.into_inner().map_err(|e| {
        Failure::io(format!(
            "cannot write {}: {}",
            out_path.display(),
            e.error()
        ))
    })?;
    files::persist(tmp, out_path)?;
    if gzip {
        say_compressed(total, wire_bytes.get());
    }
    Ok(total)
}

/// Says how much the compression spared, on standard error (scripts read standard output).
fn say_compressed(total: u64, wire: u64) {
    np_server::errln!("received {wire} bytes gzip-compressed for the {total}-byte bundle");
}
