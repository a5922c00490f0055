//! A small HTTP/1.1 proxy for agent tests: it forwards every request to the real server,
//! records each request line and `Range` header, and can cut, corrupt or lengthen the
//! body of a blob download, so a test can show what the agent does with bad transfers.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the proxy does to the next blob download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward as is.
    Pass,
    /// Send the head and the first `n` body bytes of the next blob answer, then close;
    /// afterwards pass.
    CutOnce(usize),
    /// Send the head and the first `n` body bytes of the next blob answer, then stall
    /// (up to 5 s) before closing; afterwards pass.
    StallOnce(usize),
    /// Flip one byte in the middle of every blob answer.
    Corrupt,
    /// Append bytes to every blob answer (with a matching Content-Length).
    Oversize,
}

/// A running proxy (its thread ends with the test process).
pub struct Proxy {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub mode: Arc<Mutex<Mode>>,
    /// "METHOD PATH [range]" per request.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (m, l) = (mode.clone(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (m, l, up) = (m.clone(), l.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &up, &m, &l);
                });
            }
        });
        Proxy { url, mode, log }
    }

    /// Sets what happens to the next blob answers.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let t = line.trim_end().to_owned();
        if t.is_empty() {
            break;
        }
        lines.push(t);
    }
    Ok(lines)
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn dechunk(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        let n =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if n == 0 {
            let _ = read_head(r);
            return Ok(out);
        }
        let start = out.len();
        out.resize(start + n, 0);
        r.read_exact(&mut out[start..])?;
        let mut crlf = String::new();
        r.read_line(&mut crlf)?;
    }
}

fn handle(
    client: TcpStream,
    upstream: &str,
    mode: &Mutex<Mode>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut cr = BufReader::new(client.try_clone()?);
    let head = read_head(&mut cr)?;
    if head.is_empty() {
        return Ok(());
    }
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    cr.read_exact(&mut body)?;
    let mut entry = head[0]
        .rsplit_once(' ')
        .map(|(a, _)| a.to_owned())
        .unwrap_or_default();
    if let Some(r) = header(&head, "range") {
        entry.push(' ');
        entry.push_str(r);
    }
    log.lock().unwrap().push(entry);
    let is_blob = head[0].starts_with("GET /api/v1/device/blobs/");

    let mut up = TcpStream::connect(upstream)?;
    let mut req = format!("{}\r\n", head[0]);
    for h in head.iter().skip(1) {
        if !h.to_ascii_lowercase().starts_with("connection:") {
            req.push_str(h);
            req.push_str("\r\n");
        }
    }
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes())?;
    up.write_all(&body)?;
    let mut ur = BufReader::new(up);
    let rhead = read_head(&mut ur)?;
    let mut rbody = Vec::new();
    if header(&rhead, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        rbody = dechunk(&mut ur)?;
    } else {
        ur.read_to_end(&mut rbody)?;
    }
    let ok = rhead
        .first()
        .is_some_and(|l| l.contains(" 200 ") || l.contains(" 206 "));
    let m = *mode.lock().unwrap();
    let mut cut = None;
    let mut stall = false;
    if is_blob && ok {
        match m {
            Mode::Pass => {}
            Mode::CutOnce(n) => {
                cut = Some(n.min(rbody.len()));
                *mode.lock().unwrap() = Mode::Pass;
            }
            Mode::StallOnce(n) => {
                cut = Some(n.min(rbody.len()));
                stall = true;
                *mode.lock().unwrap() = Mode::Pass;
            }
            Mode::Corrupt => {
                let i = rbody.len() / 2;
                if let Some(b) = rbody.get_mut(i) {
                    *b ^= 0x5a;
                }
            }
            Mode::Oversize => rbody.extend_from_slice(&[0xee; 4096]),
        }
    }
    let mut out = format!("{}\r\n", rhead.first().cloned().unwrap_or_default());
    for h in rhead.iter().skip(1) {
        let l = h.to_ascii_lowercase();
        if !(l.starts_with("content-length:")
            || l.starts_with("transfer-encoding:")
            || l.starts_with("connection:"))
        {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        rbody.len()
    ));
    let mut client = client;
    client.write_all(out.as_bytes())?;
    client.write_all(&rbody[..cut.unwrap_or(rbody.len())])?;
    client.flush()?;
    if stall {
        // Hold the connection open without sending more, until the agent gives up on it.
        client.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        let _ = client.read(&mut [0u8; 1]);
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    Ok(())
}
