//! Console sessions: a random session id in a cookie (`HttpOnly`, `SameSite=Strict`,
//! `Path=/console`, `Secure` when served over TLS) that expires after [`SESSION_HOURS`];
//! the server keeps, per session, the token's name, the SHA-256 of the token (re-checked on
//! every request, so a revoked token ends its sessions), the CSRF token and a notice for
//! the next page. Wrong sign-in tokens are counted per client address and refused for a
//! while past [`MAX_FAILURES`]; no token is ever logged.

use super::{ConsoleState, Notice};
use crate::http::auth::Caller;
use crate::http::tls::ServedOverTls;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "np_console";
/// How long a session lasts from sign-in.
pub const SESSION_HOURS: i64 = 8;
/// The most sessions kept at once; the oldest go first.
const MAX_SESSIONS: usize = 10_000;
/// Wrong tokens allowed per client address within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The window over which wrong tokens are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The most client addresses tracked by the limiter.
const MAX_TRACKED: usize = 10_000;

/// One signed-in session.
#[derive(Debug, Clone)]
struct Session {
    token_sha256: String,
    csrf: String,
    expires: Timestamp,
    notice: Option<Notice>,
}

/// The sessions and the sign-in limiter.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    failures: Mutex<Failures>,
}

/// A signed-in user, as the extractor finds it.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    /// The token's name and its current role.
    pub caller: Caller,
    /// The session's CSRF token.
    pub csrf: String,
    /// A notice left for this page by the previous action.
    pub notice: Option<Notice>,
    key: String,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    // getrandom fails only without an OS random source; then no session can be made safely.
    if getrandom::getrandom(&mut b).is_err() {
        return String::new();
    }
    URL_SAFE_NO_PAD.encode(b)
}

fn key_of(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl Sessions {
    /// Starts a session for the token with this hash; returns the session id for the
    /// cookie (None when the system has no random source).
    pub fn start(&self, token_sha256: &str, now: Timestamp) -> Option<String> {
        let id = random_token();
        let csrf = random_token();
        if id.is_empty() || csrf.is_empty() {
            return None;
        }
        let expires = now
            .checked_add(SignedDuration::from_hours(SESSION_HOURS))
            .ok()?;
        let mut map = self.by_id.lock().ok()?;
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            key_of(&id),
            Session {
                token_sha256: token_sha256.to_owned(),
                csrf,
                expires,
                notice: None,
            },
        );
        Some(id)
    }

    /// Ends the session with this id.
    pub fn end(&self, id: &str) {
        if let Ok(mut m) = self.by_id.lock() {
            m.remove(&key_of(id));
        }
    }

    /// The live session of `id` at `now`: (token hash, CSRF token, the notice, taken).
    fn find(&self, id: &str, now: Timestamp) -> Option<(String, String, Option<Notice>)> {
        let mut map = self.by_id.lock().ok()?;
        let key = key_of(id);
        match map.get_mut(&key) {
            Some(s) if s.expires > now => {
                Some((s.token_sha256.clone(), s.csrf.clone(), s.notice.take()))
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Leaves a notice for the session's next page.
    pub fn leave_notice(&self, user: &ConsoleUser, notice: Notice) {
        if let Ok(mut m) = self.by_id.lock() {
            if let Some(s) = m.get_mut(&user.key) {
                s.notice = Some(notice);
            }
        }
    }

    /// Checks a sign-in token from `client` in one step under the limiter's lock: refused
    /// while the client is over the limit, else `lookup` runs and a wrong token is counted.
    /// (Checking and counting apart would let many tries sent at once all pass the check.)
    pub fn attempt<R, E>(
        &self,
        client: IpAddr,
        now: Instant,
        lookup: impl FnOnce() -> Result<Option<R>, E>,
    ) -> Attempt<R, E> {
        let Ok(mut f) = self.failures.lock() else {
            return Attempt::Limited(FAILURE_WINDOW);
        };
        if let Err(wait) = may_try_in(&mut f, client, now) {
            return Attempt::Limited(wait);
        }
        match lookup() {
            Ok(Some(r)) => Attempt::Right(r),
            Ok(None) => {
                failed_in(&mut f, client, now);
                Attempt::Wrong
            }
            Err(e) => Attempt::Failed(e),
        }
    }

    /// Whether `client` may try a token now (fewer than [`MAX_FAILURES`] wrong ones in
    /// the window); if not, how long until it may.
    pub fn may_try(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(mut f) = self.failures.lock() else {
            return Err(FAILURE_WINDOW);
        };
        may_try_in(&mut f, client, now)
    }

    /// Counts a wrong token from `client`.
    pub fn failed(&self, client: IpAddr, now: Instant) {
        if let Ok(mut f) = self.failures.lock() {
            failed_in(&mut f, client, now);
        }
    }
}

/// The outcome of [`Sessions::attempt`].
#[derive(Debug)]
pub enum Attempt<R, E> {
    /// Too many wrong tokens from this client: wait this long.
    Limited(Duration),
    /// The token is unknown or revoked (and was counted).
    Wrong,
    /// The token's record.
    Right(R),
    /// The lookup failed.
    Failed(E),
}

type Failures = HashMap<IpAddr, VecDeque<Instant>>;

fn may_try_in(f: &mut Failures, client: IpAddr, now: Instant) -> Result<(), Duration> {
    let Some(list) = f.get_mut(&client) else {
        return Ok(());
    };
    while list
        .front()
        .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
    {
        list.pop_front();
    }
    match list.front() {
        Some(first) if list.len() >= MAX_FAILURES => {
            Err(FAILURE_WINDOW.saturating_sub(now.duration_since(*first)))
        }
        _ => Ok(()),
    }
}

fn failed_in(f: &mut Failures, client: IpAddr, now: Instant) {
    if f.len() >= MAX_TRACKED && !f.contains_key(&client) {
        f.retain(|_, l| {
            l.back()
                .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
        });
        if f.len() >= MAX_TRACKED {
            return;
        }
    }
    let list = f.entry(client).or_default();
    list.push_back(now);
    while list.len() > MAX_FAILURES {
        list.pop_front();
    }
}

/// The session id in the request's cookie, if any.
pub fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The `Set-Cookie` value of a new session (`id`) or of its removal (`None`).
pub fn set_cookie(id: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_HOURS * 3600
        ),
        None => format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Whether the request came over TLS.
pub fn is_tls(parts: &Parts) -> bool {
    parts.extensions.get::<ServedOverTls>().is_some()
}

/// The client's address for the sign-in limiter (one shared bucket when unknown).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
}

/// Where a request without a valid session goes.
pub fn to_sign_in() -> Response {
    Redirect::to("/console/sign-in").into_response()
}

impl FromRequestParts<ConsoleState> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, Response> {
        let Some(id) = cookie_id(&parts.headers) else {
            return Err(to_sign_in());
        };
        let Some((hash, csrf, notice)) = state.sessions.find(&id, state.app.now()) else {
            return Err(to_sign_in());
        };
        let record = match state.app.tokens.lookup_hash(&hash).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                // The token was revoked: its sessions end with it.
                state.sessions.end(&id);
                return Err(to_sign_in());
            }
            Err(e) => return Err(super::ConsoleError::internal(e).into_response()),
        };
        Ok(ConsoleUser {
            caller: Caller {
                name: record.name,
                role: record.role,
            },
            csrf,
            notice,
            key: key_of(&id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::default();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let id = s.start("abc", t0).unwrap();
        assert_eq!(s.find(&id, t0).unwrap().0, "abc");
        let later = t0
            .checked_add(SignedDuration::from_hours(SESSION_HOURS))
            .unwrap();
        assert!(s.find(&id, later).is_none(), "expired at 8 hours");
        let id = s.start("abc", t0).unwrap();
        s.end(&id);
        assert!(s.find(&id, t0).is_none());
        assert!(s.find("made-up", t0).is_none());
    }

    #[test]
    fn wrong_tokens_are_limited_per_client_for_a_window() {
        let s = Sessions::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let t = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(s.may_try(a, t), Ok(()));
            s.failed(a, t);
        }
        assert!(s.may_try(a, t).is_err());
        assert_eq!(s.may_try(b, t), Ok(()));
        assert_eq!(s.may_try(a, t + FAILURE_WINDOW), Ok(()));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_under_tls() {
        let c = set_cookie(Some("x"), true);
        assert_eq!(
            c,
            "np_console=x; Path=/console; HttpOnly; SameSite=Strict; Max-Age=28800; Secure"
        );
        assert!(!set_cookie(Some("x"), false).contains("Secure"));
        assert!(set_cookie(None, false).contains("Max-Age=0"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=b; np_console=id1".parse().unwrap());
        assert_eq!(cookie_id(&h).as_deref(), Some("id1"));
    }
}
