//! Signed device requests (docs/api.md): a box signs
//! `METHOD\nPATH_AND_QUERY\nX-NP-Time\nX-NP-Nonce\nhex(sha256(body))`
//! (`np_common::api::device_request_message`) with its device key and sends the serial, the
//! time, the nonce and the signature as headers. [`SignedHeaders`] checks the time against the
//! server's clock (at most `MAX_CLOCK_SKEW_SECONDS` off) and the signature with the box's
//! registered key, without I/O; the [`SignedDevice`] extractor looks the box up, verifies,
//! and then records the nonce in the store's replay cache, refusing one already seen from
//! that box within the window (401 `replayed`). Every other failure is a 401 `unauthorized`
//! with the reason in `details.reason`.

use crate::domain::device::DeviceRecord;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::NonceCheck;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use np_common::api::{
    device_request_message, is_request_nonce, HEADER_NONCE, HEADER_SERIAL, HEADER_SIGNATURE,
    HEADER_TIME, MAX_CLOCK_SKEW_SECONDS, MAX_REQUEST_NONCE_HEX, MIN_REQUEST_NONCE_HEX,
};
use np_common::{PublicKey, Serial, Timestamp};

/// Why a device request was refused (all answer 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceAuthError {
    #[error("the request lacks the {0} header; a box signs every device API request")]
    MissingHeader(&'static str),
    #[error("the {0} header is not valid text")]
    BadHeader(&'static str),
    #[error("the X-NP-Serial header is not a serial number: {0}")]
    BadSerial(String),
    #[error("box {0} is not registered")]
    UnknownSerial(Serial),
    #[error("box {0} has no device key registered; register its key to use the device API")]
    NoDeviceKey(Serial),
    #[error("the X-NP-Time header {0:?} is not an RFC 3339 time")]
    BadTime(String),
    #[error("the request time {time} is more than {MAX_CLOCK_SKEW_SECONDS} s away from the server's clock ({now}); set the box's clock")]
    ClockSkew { time: Timestamp, now: Timestamp },
    #[error("the X-NP-Nonce header must be {MIN_REQUEST_NONCE_HEX} to {MAX_REQUEST_NONCE_HEX} hex digits, new for every request")]
    BadNonce,
    #[error("the X-NP-Signature header is not base64 of a 64-byte signature")]
    BadSignatureEncoding,
    #[error("the request signature does not verify with the device key of {0}")]
    BadSignature(Serial),
    #[error("box {0} already sent a request with this nonce: a replayed request is refused; sign every request with a new nonce")]
    Replayed(Serial),
    #[error("box {0} sent more signed requests than the server remembers within {MAX_CLOCK_SKEW_SECONDS} s; slow down")]
    TooManyNonces(Serial),
}

impl DeviceAuthError {
    /// A stable snake_case reason for answers and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            DeviceAuthError::MissingHeader(_) => "missing_header",
            DeviceAuthError::BadHeader(_) => "bad_header",
            DeviceAuthError::BadSerial(_) => "bad_serial",
            DeviceAuthError::UnknownSerial(_) => "unknown_serial",
            DeviceAuthError::NoDeviceKey(_) => "no_device_key",
            DeviceAuthError::BadTime(_) => "bad_time",
            DeviceAuthError::ClockSkew { .. } => "clock_skew",
            DeviceAuthError::BadNonce => "bad_nonce",
            DeviceAuthError::BadSignatureEncoding => "bad_signature_encoding",
            DeviceAuthError::BadSignature(_) => "bad_signature",
            DeviceAuthError::Replayed(_) => "replayed",
            DeviceAuthError::TooManyNonces(_) => "too_many_requests",
        }
    }
}

impl From<DeviceAuthError> for ApiError {
    fn from(e: DeviceAuthError) -> Self {
        let reason = e.reason();
        let err = match &e {
            DeviceAuthError::Replayed(_) => ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "replayed",
                e.to_string(),
            ),
            DeviceAuthError::TooManyNonces(_) => ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                e.to_string(),
            ),
            _ => ApiError::unauthorized(e.to_string()),
        };
        err.with_details(serde_json::json!({ "reason": reason }))
    }
}

/// The four signing headers of a device request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// The box that claims to send the request.
    pub serial: Serial,
    /// The `X-NP-Time` value exactly as sent (it is part of the signed message).
    pub time_raw: String,
    /// The parsed time.
    pub time: Timestamp,
    /// The `X-NP-Nonce` value (hex, as sent).
    pub nonce: String,
    signature: Vec<u8>,
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, DeviceAuthError> {
    headers
        .get(name)
        .ok_or(DeviceAuthError::MissingHeader(name))?
        .to_str()
        .map_err(|_| DeviceAuthError::BadHeader(name))
}

impl SignedHeaders {
    /// Reads the serial, time, nonce and signature headers.
    pub fn from_headers(headers: &HeaderMap) -> Result<SignedHeaders, DeviceAuthError> {
        let serial_raw = header(headers, HEADER_SERIAL)?;
        let serial = Serial::parse(serial_raw.trim())
            .map_err(|_| DeviceAuthError::BadSerial(serial_raw.chars().take(40).collect()))?;
        let time_raw = header(headers, HEADER_TIME)?.to_owned();
        let time: Timestamp = time_raw
            .trim()
            .parse()
            .map_err(|_| DeviceAuthError::BadTime(time_raw.chars().take(40).collect()))?;
        let nonce = header(headers, HEADER_NONCE)?.to_owned();
        if !is_request_nonce(&nonce) {
            return Err(DeviceAuthError::BadNonce);
        }
        let sig_raw = header(headers, HEADER_SIGNATURE)?;
        let signature = B64
            .decode(sig_raw.trim())
            .ok()
            .filter(|s| s.len() == 64)
            .ok_or(DeviceAuthError::BadSignatureEncoding)?;
        Ok(SignedHeaders {
            serial,
            time_raw,
            time,
            nonce,
            signature,
        })
    }

    /// Checks the time against `now`, then the signature over this request with the box's
    /// registered device key (`None`: the box has none). The nonce is checked by the caller
    /// against the replay cache, after this.
    pub fn verify(
        &self,
        device_key: Option<&PublicKey>,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), DeviceAuthError> {
        let skew = (now.as_second() - self.time.as_second()).abs();
        if skew > MAX_CLOCK_SKEW_SECONDS {
            return Err(DeviceAuthError::ClockSkew {
                time: self.time,
                now,
            });
        }
        let key = device_key.ok_or_else(|| DeviceAuthError::NoDeviceKey(self.serial.clone()))?;
        let msg = device_request_message(method, path_and_query, &self.time_raw, &self.nonce, body);
        if !key.verify(&msg, &self.signature) {
            return Err(DeviceAuthError::BadSignature(self.serial.clone()));
        }
        Ok(())
    }

    /// Until when the nonce must be remembered: past it, the request's time is outside
    /// the allowed skew anyway.
    pub fn nonce_expires(&self) -> Timestamp {
        Timestamp::from_second(
            self.time
                .as_second()
                .saturating_add(MAX_CLOCK_SKEW_SECONDS + 1),
        )
        .unwrap_or(self.time)
    }
}

/// A verified device request: the registered box it comes from and the body it signed.
/// Use it as a handler's last argument (it consumes the body).
#[derive(Debug, Clone)]
pub struct SignedDevice {
    /// The box, as stored when the request arrived.
    pub device: DeviceRecord,
    /// The request body, exactly as signed.
    pub body: Bytes,
}

impl SignedDevice {
    /// Authenticates a request from its parts: parse, look the box up, verify, and record
    /// the nonce (refusing a replay).
    pub async fn authenticate(
        state: &AppState,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<SignedDevice, ApiError> {
        let signed = SignedHeaders::from_headers(headers)?;
        let Some(device) = state.store.device(&signed.serial).await? else {
            return Err(DeviceAuthError::UnknownSerial(signed.serial).into());
        };
        let now = state.now();
        signed.verify(
            device.device_key.as_ref(),
            method,
            path_and_query,
            &body,
            now,
        )?;
        match state
            .store
            .remember_nonce(&signed.serial, &signed.nonce, signed.nonce_expires(), now)
            .await?
        {
            NonceCheck::Fresh => Ok(SignedDevice { device, body }),
            NonceCheck::Replayed => Err(DeviceAuthError::Replayed(signed.serial).into()),
            NonceCheck::TooMany => Err(DeviceAuthError::TooManyNonces(signed.serial).into()),
        }
    }
}

impl FromRequest<AppState> for SignedDevice {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let req = Request::from_parts(parts, body);
        let method = req.method().as_str().to_owned();
        let headers = req.headers().clone();
        let body = body_bytes(Bytes::from_request(req, state).await)?;
        SignedDevice::authenticate(state, &method, &target, &headers, body).await
    }
}

/// The raw body of a signed request (it is hashed as sent), or our JSON error: 413 past
/// the JSON body limit, 400 when it cannot be read.
fn body_bytes(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                "the request body is larger than the server accepts; send a smaller one",
            )
        } else {
            ApiError::bad_request(
                "bad_request",
                format!("the request body could not be read: {}", r.body_text()),
            )
        }
    })
}

/// The header values a box sends for a request (used by tests and tools that act as a box).
pub fn sign_request(
    key: &np_common::SecretKey,
    method: &str,
    path_and_query: &str,
    time: Timestamp,
    nonce: &str,
    body: &[u8],
) -> np_common::api::RequestSignature {
    np_common::api::RequestSignature::sign(key, method, path_and_query, time, nonce, body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use np_common::SecretKey;

    const SERIAL: &str = "NR-2000-123456-4";

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    const NONCE: &str = "0123456789abcdef";

    fn headers(serial: &str, time: &str, nonce: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER_SERIAL, HeaderValue::from_str(serial).unwrap());
        h.insert(HEADER_TIME, HeaderValue::from_str(time).unwrap());
        h.insert(HEADER_NONCE, HeaderValue::from_str(nonce).unwrap());
        h.insert(HEADER_SIGNATURE, HeaderValue::from_str(sig).unwrap());
        h
    }

    fn signed(k: &SecretKey, method: &str, path: &str, at: Timestamp, body: &[u8]) -> HeaderMap {
        let s = sign_request(k, method, path, at, NONCE, body);
        headers(SERIAL, &s.time, &s.nonce, &s.signature)
    }

    fn check(
        h: &HeaderMap,
        pubkey: Option<&PublicKey>,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(), DeviceAuthError> {
        SignedHeaders::from_headers(h)?.verify(pubkey, method, path, body, now())
    }

    #[test]
    fn a_correctly_signed_request_passes() {
        let k = key(1);
        let pk = k.public_key();
        let h = signed(&k, "POST", "/api/v1/device/check-in", now(), b"{}");
        assert_eq!(
            check(&h, Some(&pk), "POST", "/api/v1/device/check-in", b"{}"),
            Ok(())
        );
        // Four minutes off either way is within the allowed skew.
        let early = now()
            .checked_sub(jiff::SignedDuration::from_secs(240))
            .unwrap();
        let h = signed(&k, "GET", "/p", early, b"");
        assert_eq!(check(&h, Some(&pk), "GET", "/p", b""), Ok(()));
    }

    #[test]
    fn wrong_key_fails() {
        let h = signed(&key(1), "POST", "/p", now(), b"{}");
        let other = key(2).public_key();
        let serial = Serial::parse(SERIAL).unwrap();
        assert_eq!(
            check(&h, Some(&other), "POST", "/p", b"{}"),
            Err(DeviceAuthError::BadSignature(serial.clone()))
        );
        assert_eq!(
            check(&h, None, "POST", "/p", b"{}"),
            Err(DeviceAuthError::NoDeviceKey(serial))
        );
    }

    #[test]
    fn replay_on_another_path_query_method_body_or_nonce_fails() {
        let k = key(1);
        let pk = k.public_key();
        let h = signed(&k, "POST", "/api/v1/device/check-in", now(), b"{\"a\":1}");
        for (m, p, b) in [
            ("POST", "/api/v1/device/events", &b"{\"a\":1}"[..]),
            ("GET", "/api/v1/device/check-in", &b"{\"a\":1}"[..]),
            ("POST", "/api/v1/device/check-in", &b"{\"a\":2}"[..]),
            ("POST", "/api/v1/device/check-in?x=1", &b"{\"a\":1}"[..]),
        ] {
            assert!(matches!(
                check(&h, Some(&pk), m, p, b),
                Err(DeviceAuthError::BadSignature(_))
            ));
        }
        // The nonce is signed: another one in the header breaks the signature.
        let mut other = h.clone();
        other.insert(HEADER_NONCE, HeaderValue::from_static("fedcba9876543210"));
        assert!(matches!(
            check(
                &other,
                Some(&pk),
                "POST",
                "/api/v1/device/check-in",
                b"{\"a\":1}"
            ),
            Err(DeviceAuthError::BadSignature(_))
        ));
    }

    #[test]
    fn stale_or_future_time_fails() {
        let k = key(1);
        let pk = k.public_key();
        for secs in [-301i64, 301, 86_400] {
            let at = now()
                .checked_add(jiff::SignedDuration::from_secs(secs))
                .unwrap();
            let h = signed(&k, "GET", "/p", at, b"");
            assert_eq!(
                check(&h, Some(&pk), "GET", "/p", b""),
                Err(DeviceAuthError::ClockSkew {
                    time: at,
                    now: now()
                })
            );
        }
    }

    #[test]
    fn bad_headers_fail() {
        let sig = sign_request(&key(1), "GET", "/p", now(), NONCE, b"");
        let (t, s) = (sig.time.as_str(), sig.signature.as_str());
        let mut h = headers(SERIAL, t, NONCE, s);
        h.remove(HEADER_TIME);
        assert_eq!(
            SignedHeaders::from_headers(&h),
            Err(DeviceAuthError::MissingHeader(HEADER_TIME))
        );
        let mut h = headers(SERIAL, t, NONCE, s);
        h.remove(HEADER_NONCE);
        assert_eq!(
            SignedHeaders::from_headers(&h),
            Err(DeviceAuthError::MissingHeader(HEADER_NONCE))
        );
        assert!(matches!(
            SignedHeaders::from_headers(&headers("NR-2000-123456-5", t, NONCE, s)),
            Err(DeviceAuthError::BadSerial(_))
        ));
        assert!(matches!(
            SignedHeaders::from_headers(&headers(SERIAL, "yesterday", NONCE, s)),
            Err(DeviceAuthError::BadTime(_))
        ));
        for bad in ["0123456789abcde", "0123456789abcdeX"] {
            assert_eq!(
                SignedHeaders::from_headers(&headers(SERIAL, t, bad, s)),
                Err(DeviceAuthError::BadNonce)
            );
        }
        assert_eq!(
            SignedHeaders::from_headers(&headers(SERIAL, t, NONCE, "c2hvcnQ=")),
            Err(DeviceAuthError::BadSignatureEncoding)
        );
    }
}
