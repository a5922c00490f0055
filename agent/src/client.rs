//! The device side of the device API (docs/api.md): requests signed with the device key over
//! reqwest + rustls (with an optional extra CA), check-in, events and blob fetches.

use crate::clock::Clock;
use crate::config::{Config, ServerConfig};
use crate::report::Reporter;
use np_common::api::{
    CheckInRequest, CheckInResponse, DeviceEvent, ErrorBody, EventKind, RequestSignature,
};
use np_common::{SecretKey, Serial, Version};
use std::path::PathBuf;
use std::sync::Arc;

/// Why talking to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("this box has no [server] in its config; it is offline-only (use `np-agent apply`)")]
    Offline,
    #[error(
        "cannot read the device key {path}: {message}; create it with `np-agent keygen --out FILE`"
    )]
    Key { path: PathBuf, message: String },
    #[error("cannot use the CA certificate {path}: {message}")]
    CaCert { path: PathBuf, message: String },
    #[error("cannot reach {url}: {message}")]
    Network { url: String, message: String },
    #[error("the server turned the box away ({status} {code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the server's answer from {url} is not valid: {message}")]
    BadAnswer { url: String, message: String },
    #[error("the server at {url} did not finish its answer within {}s (twice server.stall_timeout); it was cut off (a slow network or a hostile server)", .after.as_secs())]
    TooSlow {
        url: String,
        after: std::time::Duration,
    },
    #[error("the server's answer from {url} is larger than {cap} bytes, the most this box reads; it is refused (a wrong server URL or a hostile server)")]
    TooLarge { url: String, cap: u64 },
}

impl ClientError {
    /// Exit code: a refusal by the server (401/403/404/409/422) is 1, the rest 3.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Rejected { status, .. } if (400..500).contains(status) => 1,
            ClientError::Offline => 2,
            _ => 3,
        }
    }
}

/// A signed-request client for one box.
#[derive(Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    serial: Serial,
    key: Arc<SecretKey>,
    clock: Arc<dyn Clock>,
    exchange_deadline: std::time::Duration,
}

/// The whole of a small JSON exchange (check-in, an event), from connecting to the
/// answer's last byte, may take at most this many times `server.stall_timeout`: a
/// server that drips its answer a byte at a time never stalls, but is cut off at this.
/// Downloads keep the stall timeout alone (they may take long while they progress).
pub const EXCHANGE_DEADLINE_STALLS: u32 = 2;

/// Installs the process-wide rustls crypto provider (ring) once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    /// Builds the client of `cfg` (its server, CA, device key).
    pub fn new(cfg: &Config, clock: Arc<dyn Clock>) -> Result<Client, ClientError> {
        let server: &ServerConfig = cfg.server.as_ref().ok_or(ClientError::Offline)?;
        let key_text = std::fs::read_to_string(&cfg.device_key).map_err(|e| ClientError::Key {
            path: cfg.device_key.clone(),
            message: e.to_string(),
        })?;
        let key = SecretKey::from_base64(&key_text).map_err(|e| ClientError::Key {
            path: cfg.device_key.clone(),
            message: e.to_string(),
        })?;
        install_crypto_provider();
        let mut b = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .connect_timeout(std::time::Duration::from_secs(15))
            .timeout(server.stall_timeout)
            .user_agent(concat!("np-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &server.ca_cert {
            let ca_err = |message: String| ClientError::CaCert {
                path: ca.clone(),
                message,
            };
            let pem = std::fs::read(ca).map_err(|e| ca_err(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_err(e.to_string()))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| ClientError::Network {
            url: server.url.clone(),
            message: e.to_string(),
        })?;
        Ok(Client {
            http,
            base: server.url.clone(),
            serial: cfg.serial.clone(),
            key: Arc::new(key),
            clock,
            exchange_deadline: server.stall_timeout * EXCHANGE_DEADLINE_STALLS,
        })
    }

    /// Resolves an offer URL: a path is relative to the server URL.
    pub fn resolve(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("{}/{}", self.base, url.trim_start_matches('/'))
        }
    }

    /// A request with the device signature headers (a new random nonce each time).
    pub fn signed(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Vec<u8>,
    ) -> reqwest::blocking::RequestBuilder {
        // The request target as sent: path and query.
        let target = reqwest::Url::parse(url)
            .map(|u| match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_owned(),
            })
            .unwrap_or_else(|_| "/".into());
        let sig = RequestSignature::sign(
            &self.key,
            method.as_str(),
            &target,
            self.clock.now(),
            &request_nonce(),
            &body,
        );
        let mut rb = self.http.request(method, url);
        for (name, value) in sig.headers(self.serial.as_str()) {
            rb = rb.header(name, value);
        }
        if !body.is_empty() {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        rb
    }

    /// A network error of an exchange that started at `started`: named as too slow
    /// once the exchange's deadline passed.
    fn slow_or(&self, url: &str, started: std::time::Instant, e: ClientError) -> ClientError {
        match e {
            ClientError::Network { .. } if started.elapsed() >= self.exchange_deadline => {
                ClientError::TooSlow {
                    url: url.to_owned(),
                    after: self.exchange_deadline,
                }
            }
            e => e,
        }
    }

    fn post_json<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let started = std::time::Instant::now();
        let url = self.resolve(path);
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let resp = self
            .signed(reqwest::Method::POST, &url, bytes)
            .timeout(self.exchange_deadline)
            .send()
            .map_err(|e| self.slow_or(&url, started, send_error(&url, &e)))?;
        check_status(resp).map_err(|e| self.slow_or(&url, started, e))
    }

    /// `POST /api/v1/device/check-in`.
    pub fn check_in(&self, req: &CheckInRequest) -> Result<CheckInResponse, ClientError> {
        let path = "/api/v1/device/check-in";
        let started = std::time::Instant::now();
        let resp = self.post_json(path, req)?;
        let bytes = read_answer(resp, MAX_ANSWER)
            .map_err(|e| self.slow_or(&self.resolve(path), started, e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
            url: self.resolve(path),
            message: e.to_string(),
        })
    }

    /// `POST /api/v1/device/events`.
    pub fn event(&self, ev: &DeviceEvent) -> Result<(), ClientError> {
        self.post_json("/api/v1/device/events", ev).map(|_| ())
    }

    /// `POST /api/v1/device/diagnostics`: a signed diagnostics envelope for a case.
    pub fn diagnostics(&self, env: &np_common::Envelope) -> Result<(), ClientError> {
        self.post_json("/api/v1/device/diagnostics", env)
            .map(|_| ())
    }

    /// `GET` a blob, from byte `offset` (a `Range` request when above 0).
    pub fn get_blob(
        &self,
        url: &str,
        offset: u64,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let mut rb = self.signed(reqwest::Method::GET, url, Vec::new());
        if offset > 0 {
            rb = rb.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let resp = rb.send().map_err(|e| send_error(url, &e))?;
        check_status(resp)
    }
}

/// The most the agent reads of a check-in answer (a few KiB in practice).
pub const MAX_ANSWER: u64 = 1 << 20;
/// The most the agent reads of an error answer.
pub const MAX_ERROR_BODY: u64 = 64 << 10;

/// Reads an answer's body whole, refusing more than `cap` bytes (a Content-Length above
/// it is refused before anything is read).
pub fn read_answer(resp: reqwest::blocking::Response, cap: u64) -> Result<Vec<u8>, ClientError> {
    let url = resp.url().to_string();
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(ClientError::TooLarge { url, cap });
    }
    np_common::CappedReader::new(resp, cap)
        .read_all()
        .map_err(|e| match np_common::capped::too_large(&e) {
            Some(t) => ClientError::TooLarge {
                url: url.clone(),
                cap: t.cap,
            },
            None => network(&url, error_chain(&e)),
        })
}

/// A network error, named by URL.
pub fn network(url: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Network {
        url: url.to_owned(),
        message: e.to_string(),
    }
}

/// A failed request, named by URL, with its whole chain of causes (`Connection refused`,
/// a certificate problem...), and the usual mix-up of http:// and https:// explained.
pub fn send_error(url: &str, e: &reqwest::Error) -> ClientError {
    use std::error::Error as _;
    // reqwest's own text only repeats the URL; its causes say what went wrong.
    let chain = match e.source() {
        Some(cause) => error_chain(cause),
        None => e.to_string(),
    };
    let message = match scheme_hint(url, &chain) {
        Some(hint) => format!("{hint} ({chain})"),
        None => chain,
    };
    ClientError::Network {
        url: url.to_owned(),
        message,
    }
}

/// An error and its causes, `outer: inner: ...`, each said once.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Explains a plain-HTTP server reached with https:// and the reverse, from the causes.
fn scheme_hint(url: &str, chain: &str) -> Option<String> {
    let https = url.starts_with("https://");
    let base = reqwest::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| url.to_owned());
    let tls_got_plain_text = ["InvalidContentType", "corrupt message", "InvalidMessage"]
        .iter()
        .any(|m| chain.contains(m));
    let http_got_tls = [
        "invalid HTTP version",
        "invalid HTTP status",
        "invalid HTTP",
    ]
    .iter()
    .any(|m| chain.contains(m));
    if https && tls_got_plain_text {
        Some(format!(
            "the server at {base} does not speak HTTPS (it answered TLS with plain data); if it \
             serves plain HTTP, write http:// in server.url of the config"
        ))
    } else if !https && http_got_tls {
        Some(format!(
            "the server at {base} speaks HTTPS, not plain HTTP; write https:// in server.url \
             of the config (and server.ca_cert when its certificate is not from a public CA)"
        ))
    } else {
        None
    }
}

fn check_status(
    resp: reqwest::blocking::Response,
) -> Result<reqwest::blocking::Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    // An error body is read only up to its cap; a larger one is dropped (the status
    // still says what happened).
    let body = read_answer(resp, MAX_ERROR_BODY).unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (
            "http_error".into(),
            String::from_utf8_lossy(&body).chars().take(200).collect(),
        ),
    };
    Err(ClientError::Rejected {
        status: status.as_u16(),
        code,
        message,
    })
}

/// Reports events to the server (and never fails the caller).
pub struct ServerReporter(pub Client);

impl Reporter for ServerReporter {
    fn event(&self, version: Option<&Version>, kind: EventKind, detail: &str) {
        let ev = DeviceEvent {
            version: version.cloned(),
            event: kind,
            detail: detail.to_owned(),
        };
        if let Err(e) = self.0.event(&ev) {
            tracing::warn!(
                "cannot report the {} event: {e}",
                crate::report::event_name(kind)
            );
        }
    }
}

/// A new request nonce: 128 random bits as hex (a replayed request is refused by the
/// server). Without randomness (never on Linux), the clock's nanoseconds and a counter.
fn request_nonce() -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b[..8].copy_from_slice(&(t as u64).to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|l| l as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn the_chain_keeps_every_cause_once() {
        let e = Layer(
            "client error (Connect)",
            Some(Box::new(Layer(
                "tcp connect error",
                Some(Box::new(Layer(
                    "Connection refused (os error 111)",
                    Some(Box::new(Layer("Connection refused (os error 111)", None))),
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn http_and_https_mix_ups_are_explained_and_nothing_else() {
        let tls = "client error (Connect): received corrupt message of type InvalidContentType";
        let hint = scheme_hint("https://10.0.0.1:8443/api/v1/device/check-in", tls).unwrap();
        assert!(hint.starts_with("the server at https://10.0.0.1:8443 does not speak HTTPS"));
        assert!(hint.contains("write http://"), "{hint}");
        let plain = "client error (SendRequest): invalid HTTP version parsed";
        let hint = scheme_hint("http://10.0.0.1:8443/x", plain).unwrap();
        assert!(hint.contains("speaks HTTPS, not plain HTTP"), "{hint}");
        assert!(hint.contains("write https://"), "{hint}");
        assert_eq!(scheme_hint("http://10.0.0.1/x", tls), None);
        assert_eq!(
            scheme_hint(
                "https://10.0.0.1/x",
                "tcp connect error: Connection refused"
            ),
            None
        );
    }

    /// A server on 127.0.0.1 that answers every request with headers, then one space a
    /// tenth of a second, for a minute: it never stalls. Stops when its listener drops.
    fn dripping_server() -> (String, std::thread::JoinHandle<()>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            if let Ok((mut c, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
                );
                for _ in 0..600 {
                    if c.write_all(b" ").is_err() {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        });
        (url, h)
    }

    #[test]
    fn a_dripping_check_in_answer_is_cut_off_at_the_exchange_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::testkit::device_key(dir.path());
        let (url, server) = dripping_server();
        let agent = crate::testkit::provisioned_box_with(
            dir.path(),
            "2099-01-01",
            &format!("device_key = \"{}\"", key.display()),
            &format!("[server]\nurl = \"{url}\"\nstall_timeout = \"1s\""),
        );
        let client = Client::new(&agent.cfg, agent.clock.clone()).unwrap();
        let req = CheckInRequest {
            version: "1.0.0".parse().unwrap(),
            slot: "a".into(),
            state: np_common::api::Phase::Idle,
            last_result: None,
            nonce: "00".into(),
            receipts: Vec::new(),
        };
        let started = std::time::Instant::now();
        let err = client.check_in(&req).unwrap_err();
        let took = started.elapsed();
        match &err {
            ClientError::TooSlow { after, .. } => {
                assert_eq!(*after, std::time::Duration::from_secs(2))
            }
            e => panic!("{e}"),
        }
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
        assert_eq!(err.exit_code(), 3);
        drop(client);
        server.join().unwrap();
    }
}
