//! The HTTP client of the online commands: the server URL and token (`NP_SERVER`, and
//! `NP_TOKEN` or a token file; flags too; the token is never printed), JSON requests, streamed uploads
//! and downloads, and the mapping of answers to failures: a 4xx answer is a refusal
//! (exit 1) shown as `<message> (<code>)`, a 5xx answer or a network failure is exit 3.

use crate::failure::Failure;
use indicatif::{ProgressBar, ProgressStyle};
use np_common::api::ErrorBody;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::Url;
use serde_json::Value;
use std::io::IsTerminal as _;
use std::time::Duration;

/// Where the server is and how to authenticate, plus the output format.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// The np-server base URL, such as https://updates.example.com.
    #[arg(long, env = "NP_SERVER")]
    server: Option<String>,
    /// A staff, release or admin token (made with `np-server token create`). Prefer NP_TOKEN
    /// or --token-file: a token on the command line is visible to every user in the
    /// process list.
    #[arg(long, env = "NP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the token on its first line (one only you can read); it wins over
    /// --token and NP_TOKEN.
    #[arg(long, env = "NP_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    /// A PEM file with the certificate of the CA that signed the server's certificate, when
    /// that CA is a private one (not trusted by this machine).
    #[arg(long, env = "NP_CA_CERT", value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,
    /// Print the server's JSON instead of a table, and errors as JSON on standard error.
    #[arg(long)]
    pub json: bool,
}

/// A connection to one server.
pub struct Client {
    http: Http,
    base: Url,
    token: String,
}

impl Client {
    /// Builds a client from the arguments (usage error when server or token is missing).
    pub fn new(args: &ServerArgs) -> Result<Client, Failure> {
        let server = args
            .server
            .as_deref()
            .ok_or_else(|| Failure::usage("no server given; pass --server URL or set NP_SERVER"))?;
        let token = match &args.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Failure::usage(format!("cannot read --token-file {}: {e}", path.display()))
                })?;
                let first = text.lines().next().unwrap_or("").trim().to_owned();
                if first.is_empty() {
                    return Err(Failure::usage(format!(
                        "--token-file {} is empty; put the token on its first line",
                        path.display()
                    )));
                }
                first
            }
            None => args
                .token
                .clone()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    Failure::usage(
                        "no token given; set NP_TOKEN, or pass --token-file FILE (or NP_TOKEN_FILE)",
                    )
                })?,
        };
        let base = Url::parse(server)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                Failure::usage(format!(
                    "--server {server:?} is not an http:// or https:// URL"
                ))
            })?;
        // One TLS stack (ring); installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = Http::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(15))
            .timeout(None::<Duration>)
            .user_agent(concat!("np-vendor/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &args.ca_cert {
            for cert in read_ca_certs(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Failure::io(format!("cannot start the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            token: token.trim().to_owned(),
        })
    }

    /// The URL of a path given as segments (each one escaped).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut s) = url.path_segments_mut() {
            s.pop_if_empty();
            s.extend(segments);
        }
        url
    }

    /// A request with the token.
    pub fn request(&self, method: reqwest::Method, url: Url) -> RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    /// Sends a request; a non-2xx answer becomes a failure.
    pub fn send(&self, req: RequestBuilder) -> Result<Response, Failure> {
        let resp = req
            .send()
            .map_err(|e| Failure::io(connect_failure(&self.base, &e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().unwrap_or_default();
        let (message, code) = match serde_json::from_str::<ErrorBody>(&body) {
            Ok(b) => {
                let e = b.error;
                let words = crate::words::cli_message(&e.code, &e.message, e.details.as_ref());
                (with_code(&words, &e.code), Some((e.code, e.details)))
            }
            Err(_) => (format!("the server answered {status}"), None),
        };
        let failure = if status.is_client_error() {
            Failure::refused(message)
        } else {
            Failure::io(message)
        };
        Err(match code {
            Some((c, d)) => failure.with_code(&c, d),
            None => failure,
        })
    }

    /// Sends a request and reads its JSON answer.
    pub fn json(&self, req: RequestBuilder) -> Result<Value, Failure> {
        let resp = self.send(req)?;
        resp.json::<Value>().map_err(|e| {
            Failure::io(format!(
                "the server's answer is not JSON: {}",
                error_chain(&e)
            ))
        })
    }

    /// GET a path as JSON.
    pub fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value, Failure> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.json(self.request(reqwest::Method::GET, url))
    }

    /// POST (or another method) a JSON body.
    pub fn send_json(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: &Value,
    ) -> Result<Value, Failure> {
        self.json(self.request(method, self.url(segments)).json(body))
    }
}

/// A refusal's words with its code in parentheses at the end, once (a message that ends
/// with its code already, such as "withdrawn (yanked)", keeps it once).
pub fn with_code(words: &str, code: &str) -> String {
    let tail = format!("({code})");
    if words.trim_end().ends_with(&tail) {
        words.trim_end().to_owned()
    } else {
        format!("{words} {tail}")
    }
}

/// The certificates of a `--ca-cert` PEM file (at most 1 MiB); a missing file, or one
/// without a certificate, is a usage error naming the flag.
fn read_ca_certs(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, Failure> {
    use std::io::Read as _;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file".to_owned()
        } else {
            e.to_string()
        };
        Failure::usage(format!("cannot read --ca-cert {shown}: {why}"))
    })?;
    let mut pem = Vec::new();
    file.take(1024 * 1024 + 1)
        .read_to_end(&mut pem)
        .map_err(|e| Failure::usage(format!("cannot read --ca-cert {shown}: {e}")))?;
    let not_pem = || {
        Failure::usage(format!(
            "--ca-cert {shown} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"); give the CA's certificate in PEM form"
        ))
    };
    if pem.len() > 1024 * 1024 {
        return Err(not_pem());
    }
    let mut certs = Vec::new();
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = der.map_err(|_| not_pem())?;
        certs.push(reqwest::Certificate::from_der(der.as_ref()).map_err(|_| not_pem())?);
    }
    if certs.is_empty() {
        return Err(not_pem());
    }
    Ok(certs)
}

/// A TLS failure in words, with what to do; `None` when the chain is not about a
/// certificate.
fn tls_words(lower: &str) -> Option<&'static str> {
    if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        Some("the server's certificate is not signed by a CA this machine trusts: pass --ca-cert FILE with your CA's certificate (or set NP_CA_CERT)")
    } else if lower.contains("causedasendentity") {
        Some("the server presents a CA certificate as its own certificate: configure the server with a certificate signed by that CA, and pass the CA's certificate with --ca-cert FILE")
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        Some("the server's certificate is not made out for this host name: use the name the certificate names in --server")
    } else if lower.contains("expired") && lower.contains("certificate") {
        Some("the server's certificate has expired (or this machine's clock is wrong): renew the certificate on the server")
    } else if lower.contains("notvalidyet") {
        Some("the server's certificate is not valid yet (or this machine's clock is wrong)")
    } else if lower.contains("badsignature") || lower.contains("bad signature") {
        Some("the server's certificate chain does not verify (bad signature): check the server's certificate and --ca-cert")
    } else if lower.contains("invalid peer certificate") {
        Some("the server's certificate was not accepted: check the server's certificate, and pass --ca-cert FILE when it comes from a private CA")
    } else {
        None
    }
}

/// Why the server could not be reached, with every cause, and what a scheme mismatch
/// looks like in words: `https://` against a plain HTTP server fails the TLS handshake
/// with a "corrupt message"; `http://` against an HTTPS server is hung up on.
pub fn connect_failure(base: &Url, e: &reqwest::Error) -> String {
    let lower = error_chain(e).to_lowercase();
    if let Some(words) = tls_words(&lower) {
        return format!(
            "cannot reach the server at {}: {words}",
            base.as_str().trim_end_matches('/')
        );
    }
    let chain = network_cause(e);
    let hint = if base.scheme() == "https"
        && (lower.contains("corrupt message") || lower.contains("invalidcontenttype"))
    {
        let mut plain = base.clone();
        let _ = plain.set_scheme("http");
        format!(
            "; the server answered in plain HTTP, not HTTPS: use --server {}",
            plain.as_str().trim_end_matches('/')
        )
    } else if base.scheme() == "http"
        && (lower.contains("connection closed before message completed")
            || lower.contains("incompletemessage")
            || lower.contains("connection reset")
            || lower.contains("invalid http version"))
    {
        let mut tls = base.clone();
        let _ = tls.set_scheme("https");
        format!(
            "; the server closed the connection without an answer: it may have stopped (see its log; a change it was making may have been done, check before sending it again), or it serves HTTPS: then use --server {}",
            tls.as_str().trim_end_matches('/')
        )
    } else if lower.contains("connection refused") {
        "; is np-server serving at that address (check --server or NP_SERVER, and the port)?"
            .to_owned()
    } else if e.is_timeout() {
        "; the server did not answer in time: check that it runs and that nothing in between drops the connection".to_owned()
    } else {
        String::new()
    };
    format!(
        "cannot reach the server at {}: {chain}{hint}",
        base.as_str().trim_end_matches('/')
    )
}

/// What went wrong on the way to the server, without the HTTP client's wrappers ("error
/// sending request for url (…)", "client error (Connect)"), which repeat the URL or say
/// nothing a user can act on.
fn network_cause(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        let mut t = c.to_string();
        // Each level repeats its source at its end ("tcp connect error: <source>").
        if let Some(inner) = c.source().map(|s| s.to_string()) {
            if let Some(head) = t.strip_suffix(&inner) {
                t = head.trim_end_matches([':', ' ']).to_owned();
            }
        }
        let wrapper = t.starts_with("error sending request for url")
            || t.starts_with("client error (")
            || t.is_empty();
        if !wrapper && !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = c.source();
    }
    if parts.is_empty() {
        return error_chain(e);
    }
    parts.join(": ")
}

/// An error with its causes, for one sentence.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// A progress bar on a terminal, hidden otherwise.
pub fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// A string field of a JSON object, or "-".
pub fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Prints JSON for scripts.
pub fn print_json(v: &Value) {
    np_server::outln!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// The first array in an answer: `devices`, `releases`, `entries`, `items`, or the
/// answer itself.
pub fn items(v: &Value) -> Vec<Value> {
    if let Some(a) = v.as_array() {
        return a.clone();
    }
    for k in ["devices", "releases", "entries", "items", "audit"] {
        if let Some(a) = v.get(k).and_then(Value::as_array) {
            return a.clone();
        }
    }
    Vec::new()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::failure::Kind;

    #[test]
    fn a_code_is_shown_once() {
        assert_eq!(
            with_code("release 5.4.0 was withdrawn (yanked)", "yanked"),
            "release 5.4.0 was withdrawn (yanked)"
        );
        assert_eq!(
            with_code("no token", "unauthorized"),
            "no token (unauthorized)"
        );
    }

    #[test]
    fn tls_failures_are_words_not_debug_text() {
        let w = tls_words(&"invalid peer certificate: UnknownIssuer".to_lowercase()).unwrap();
        assert!(w.contains("not signed by a CA this machine trusts"), "{w}");
        assert!(w.contains("--ca-cert FILE"), "{w}");
        let w = tls_words(
            &"invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))".to_lowercase(),
        )
        .unwrap();
        assert!(!w.contains("OtherError"), "{w}");
        assert!(w.contains("CA certificate as its own"), "{w}");
        assert_eq!(tls_words("tcp connect error: connection refused"), None);
    }

    #[test]
    fn a_missing_or_bad_ca_file_is_a_usage_error_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let f = read_ca_certs(&missing).unwrap_err();
        assert_eq!(f.kind(), Kind::Usage);
        assert!(
            f.message().starts_with("cannot read --ca-cert "),
            "{}",
            f.message()
        );
        assert!(f.message().ends_with("no such file"), "{}", f.message());
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let f = read_ca_certs(&junk).unwrap_err();
        assert_eq!(f.kind(), Kind::Usage);
        assert!(f.message().contains("--ca-cert") && f.message().contains("no PEM certificate"));
        let ca = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/tls/TEST-ONLY-ca.pem"
        );
        assert_eq!(read_ca_certs(std::path::Path::new(ca)).unwrap().len(), 1);
    }
}
