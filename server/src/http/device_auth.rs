//! Signed device requests (docs/api.md): a box signs `METHOD\nPATH\nX-NP-Time\nhex(sha256(body))`
//! (`np_common::api::device_request_message`) with its device key and sends the serial, the
//! time and the signature as headers. The server checks the time against its clock (at most
//! `MAX_CLOCK_SKEW_SECONDS` off), finds the device key of that serial, and verifies the
//! signature. Every failure is a 401 with the reason; nothing here looks at the store: the
//! caller reads the header values, looks the key up, then calls [`SignedHeaders::verify`].

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use np_common::api::{
    device_request_message, HEADER_SERIAL, HEADER_SIGNATURE, HEADER_TIME, MAX_CLOCK_SKEW_SECONDS,
};
use np_common::{PublicKey, SecretKey, Serial, Timestamp};

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
    #[error("the X-NP-Signature header is not base64 of a 64-byte signature")]
    BadSignatureEncoding,
    #[error("the request signature does not verify with the device key of {0}")]
    BadSignature(Serial),
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
            DeviceAuthError::BadSignatureEncoding => "bad_signature_encoding",
            DeviceAuthError::BadSignature(_) => "bad_signature",
        }
    }
}

/// The three signing headers of a device request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// The box that claims to send the request.
    pub serial: Serial,
    /// The `X-NP-Time` value exactly as sent (it is part of the signed message).
    pub time_raw: String,
    /// The parsed time.
    pub time: Timestamp,
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
    /// Reads the serial, time and signature headers.
    pub fn from_headers(headers: &HeaderMap) -> Result<SignedHeaders, DeviceAuthError> {
        let serial_raw = header(headers, HEADER_SERIAL)?;
        let serial = Serial::parse(serial_raw.trim())
            .map_err(|_| DeviceAuthError::BadSerial(serial_raw.chars().take(40).collect()))?;
        let time_raw = header(headers, HEADER_TIME)?.to_owned();
        let time: Timestamp = time_raw
            .trim()
            .parse()
            .map_err(|_| DeviceAuthError::BadTime(time_raw.chars().take(40).collect()))?;
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
            signature,
        })
    }

    /// Checks the time against `now`, then the signature over this request with the box's
    /// registered device key (`None`: the box has none).
    pub fn verify(
        &self,
        device_key: Option<&PublicKey>,
        method: &str,
        path: &str,
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
        let msg = device_request_message(method, path, &self.time_raw, body);
        if !key.verify(&msg, &self.signature) {
            return Err(DeviceAuthError::BadSignature(self.serial.clone()));
        }
        Ok(())
    }
}

/// The header values a box sends for a request (used by tests and tools that act as a box):
/// `(X-NP-Time, X-NP-Signature)`.
pub fn sign_request(
    key: &SecretKey,
    method: &str,
    path: &str,
    time: Timestamp,
    body: &[u8],
) -> (String, String) {
    let time = time.to_string();
    let sig = key.sign(&device_request_message(method, path, &time, body));
    (time, B64.encode(sig))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SERIAL: &str = "NR-2000-123456-4";

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn headers(serial: &str, time: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER_SERIAL, HeaderValue::from_str(serial).unwrap());
        h.insert(HEADER_TIME, HeaderValue::from_str(time).unwrap());
        h.insert(HEADER_SIGNATURE, HeaderValue::from_str(sig).unwrap());
        h
    }

    fn signed(k: &SecretKey, method: &str, path: &str, at: Timestamp, body: &[u8]) -> HeaderMap {
        let (t, s) = sign_request(k, method, path, at, body);
        headers(SERIAL, &t, &s)
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
    fn replay_on_another_path_method_or_body_fails() {
        let k = key(1);
        let pk = k.public_key();
        let h = signed(&k, "POST", "/api/v1/device/check-in", now(), b"{\"a\":1}");
        for (m, p, b) in [
            ("POST", "/api/v1/device/events", &b"{\"a\":1}"[..]),
            ("GET", "/api/v1/device/check-in", &b"{\"a\":1}"[..]),
            ("POST", "/api/v1/device/check-in", &b"{\"a\":2}"[..]),
        ] {
            assert!(matches!(
                check(&h, Some(&pk), m, p, b),
                Err(DeviceAuthError::BadSignature(_))
            ));
        }
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
        let (t, s) = sign_request(&key(1), "GET", "/p", now(), b"");
        let mut h = headers(SERIAL, &t, &s);
        h.remove(HEADER_TIME);
        assert_eq!(
            SignedHeaders::from_headers(&h),
            Err(DeviceAuthError::MissingHeader(HEADER_TIME))
        );
        assert!(matches!(
            SignedHeaders::from_headers(&headers("NR-2000-123456-5", &t, &s)),
            Err(DeviceAuthError::BadSerial(_))
        ));
        assert!(matches!(
            SignedHeaders::from_headers(&headers(SERIAL, "yesterday", &s)),
            Err(DeviceAuthError::BadTime(_))
        ));
        assert_eq!(
            SignedHeaders::from_headers(&headers(SERIAL, &t, "c2hvcnQ=")),
            Err(DeviceAuthError::BadSignatureEncoding)
        );
    }
}
