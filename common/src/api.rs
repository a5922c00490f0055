//! JSON bodies of the HTTP API that both sides use: the error shape, device check-in,
//! events, and the signed-request message of the device API (docs/api.md).

use crate::dsse::Envelope;
use crate::version::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Header carrying the box's serial.
pub const HEADER_SERIAL: &str = "x-np-serial";
/// Header carrying the request time (RFC 3339).
pub const HEADER_TIME: &str = "x-np-time";
/// Header carrying the request's nonce: hex digits, new for every request.
pub const HEADER_NONCE: &str = "x-np-nonce";
/// Header carrying base64 Ed25519 over [`device_request_message`].
pub const HEADER_SIGNATURE: &str = "x-np-signature";
/// How far a signed request's time may be from the server's clock.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;
/// The fewest hex digits a request nonce has (64 random bits).
pub const MIN_REQUEST_NONCE_HEX: usize = 16;
/// The most hex digits a request nonce may have.
pub const MAX_REQUEST_NONCE_HEX: usize = 128;

/// The bytes a box signs for a device API request:
/// `METHOD\nPATH_AND_QUERY\nX-NP-Time\nX-NP-Nonce\nhex(sha256(body))`, where
/// `path_and_query` is the request target as sent (`/api/v1/x?y=1`).
pub fn device_request_message(
    method: &str,
    path_and_query: &str,
    time: &str,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    format!(
        "{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path_and_query,
        time,
        nonce,
        hex::encode(Sha256::digest(body))
    )
    .into_bytes()
}

/// Whether `nonce` is a well-formed request nonce: 16 to 128 hex digits.
pub fn is_request_nonce(nonce: &str) -> bool {
    (MIN_REQUEST_NONCE_HEX..=MAX_REQUEST_NONCE_HEX).contains(&nonce.len())
        && nonce.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The signing headers of one device request, as a box sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSignature {
    /// `X-NP-Time`.
    pub time: String,
    /// `X-NP-Nonce`.
    pub nonce: String,
    /// `X-NP-Signature` (standard base64).
    pub signature: String,
}

impl RequestSignature {
    /// Signs a request with the box's device key. `time` is the box's clock (sent whole
    /// seconds, RFC 3339); `nonce` must be fresh random hex (at least
    /// [`MIN_REQUEST_NONCE_HEX`] digits) for every request: the caller supplies it, as
    /// this crate does no I/O.
    pub fn sign(
        key: &crate::keys::SecretKey,
        method: &str,
        path_and_query: &str,
        time: jiff::Timestamp,
        nonce: &str,
        body: &[u8],
    ) -> RequestSignature {
        use base64::Engine as _;
        let time = jiff::Timestamp::from_second(time.as_second())
            .unwrap_or(time)
            .to_string();
        let msg = device_request_message(method, path_and_query, &time, nonce, body);
        RequestSignature {
            signature: base64::engine::general_purpose::STANDARD.encode(key.sign(&msg)),
            time,
            nonce: nonce.to_owned(),
        }
    }

    /// The four headers `(name, value)`, serial first.
    pub fn headers<'a>(&'a self, serial: &'a str) -> [(&'static str, &'a str); 4] {
        [
            (HEADER_SERIAL, serial),
            (HEADER_TIME, &self.time),
            (HEADER_NONCE, &self.nonce),
            (HEADER_SIGNATURE, &self.signature),
        ]
    }
}

/// The error body: `{"error": {"code", "message", "details"?}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// The agent's phase as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Idle,
    Downloading,
    Staged,
    Trial,
}

/// How the last update attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Installed,
    Refused,
    RolledBack,
    Failed,
}

/// The last update attempt of a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastResult {
    pub version: Option<Version>,
    pub outcome: Outcome,
    pub detail: String,
    pub at: jiff::Timestamp,
}

/// `POST /api/v1/device/check-in` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckInRequest {
    pub version: Version,
    /// `a` or `b`.
    pub slot: String,
    pub state: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<LastResult>,
    pub nonce: String,
    /// Signed receipts the server may not have yet (the oldest first, at most
    /// [`MAX_RECEIPTS_PER_CHECK_IN`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receipts: Vec<Envelope>,
}

/// The most receipts one `POST /api/v1/receipts` may carry.
pub const MAX_RECEIPTS_PER_UPLOAD: usize = 64;
/// The most receipts one check-in may carry (the rest go with the next ones).
pub const MAX_RECEIPTS_PER_CHECK_IN: usize = 16;
/// The most bytes of receipt envelopes a box puts into one check-in, well inside the
/// server's JSON body limit (a receipt is under 1 KiB, at most about 6 KiB).
pub const MAX_RECEIPT_BYTES_PER_CHECK_IN: usize = 32 * 1024;

/// The newest release for the box, and the rule that stops it if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Available {
    pub manifest: Envelope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalInfo>,
}

/// A refusal as it travels: the rule's name and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefusalInfo {
    pub rule: String,
    pub message: String,
}

impl From<&crate::rule::Refusal> for RefusalInfo {
    fn from(r: &crate::rule::Refusal) -> Self {
        RefusalInfo {
            rule: r.rule().to_owned(),
            message: r.to_string(),
        }
    }
}

/// An update that is due: the manifest and where to fetch the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Offer {
    pub manifest: Envelope,
    /// A path such as `/api/v1/device/blobs/<sha256>` (resolved against the server URL)
    /// or an absolute URL on a mirror.
    pub url: String,
}

/// `POST /api/v1/device/check-in` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckInResponse {
    pub keyring: Envelope,
    pub entitlement: Envelope,
    pub time: Envelope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<Available>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<Offer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Envelope>,
    /// The `seq` of every receipt of the check-in the server is done with: stored now, held
    /// already, or refused for good (it logs why). The box drops them from its outbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receipts_done: Vec<u64>,
}

/// What a box reports about an install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Download,
    Install,
    Trial,
    Commit,
    Rollback,
    Refusal,
    Failure,
}

/// `POST /api/v1/device/events` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceEvent {
    pub version: Option<Version>,
    pub event: EventKind,
    pub detail: String,
}

/// `POST /api/v1/receipts` body: one receipt envelope, or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ReceiptUpload {
    One(Envelope),
    Many(Vec<Envelope>),
}

impl ReceiptUpload {
    /// The envelopes, in the order given.
    pub fn into_vec(self) -> Vec<Envelope> {
        match self {
            ReceiptUpload::One(e) => vec![e],
            ReceiptUpload::Many(v) => v,
        }
    }
}

/// What the server did with one uploaded receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptStored {
    pub serial: crate::serial::Serial,
    pub seq: u64,
    /// False when the server already held this receipt (nothing changed).
    pub new: bool,
    /// True when it is now the box's newest receipt: its running version and last result
    /// follow it.
    pub latest: bool,
}

/// `POST /api/v1/receipts` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptUploadAnswer {
    pub receipts: Vec<ReceiptStored>,
}

/// Header of an answer to `POST /api/v1/bundles` whose request is older than what the server
/// last heard from the box: a sentence saying so.
pub const HEADER_STALE_REQUEST: &str = "x-np-stale-request";
