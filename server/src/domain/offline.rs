//! Offline boxes (docs/formats.md, "Request" and "Receipt"): checking a document a box
//! signed against the device key registered for its serial, choosing the release an
//! offline request is answered with, and saying when a request is older than what the
//! server last heard from the box.

use crate::domain::device::DeviceRecord;
use crate::domain::offers::{may_install, BoxView, Hold, ReleaseEntry};
use np_common::device_docs::{claimed_serial, verify_device, DeviceDocError, DeviceDocument};
use np_common::{Envelope, Serial};

/// Why a device-signed document was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceDocRefusal {
    /// It is not a document of this kind at all.
    #[error("{0}")]
    Malformed(DeviceDocError),
    /// It names a box the server does not know.
    #[error("box {0} is not registered")]
    UnknownBox(Serial),
    /// The box has no device key on record, so nothing it signed can be checked.
    #[error("box {0} has no registered device key, so what it signed cannot be checked; register its public key (np-agent keygen prints it) first")]
    NoDeviceKey(Serial),
    /// It does not verify under the box's registered device key.
    #[error("{0}")]
    Signature(DeviceDocError),
}

/// Reads the serial a document claims, finds that box with `lookup`, and verifies the
/// document under its registered device key.
pub fn verify_from_box<T: DeviceDocument, E>(
    envelope: &Envelope,
    lookup: impl FnOnce(&Serial) -> Result<Option<DeviceRecord>, E>,
) -> Result<Result<(T, DeviceRecord), DeviceDocRefusal>, E> {
    let serial = match claimed_serial::<T>(envelope) {
        Ok(s) => s,
        Err(e) => return Ok(Err(DeviceDocRefusal::Malformed(e))),
    };
    let Some(device) = lookup(&serial)? else {
        return Ok(Err(DeviceDocRefusal::UnknownBox(serial)));
    };
    let Some(key) = device.device_key.as_ref() else {
        return Ok(Err(DeviceDocRefusal::NoDeviceKey(serial)));
    };
    Ok(match verify_device::<T>(envelope, key, &serial) {
        Ok(doc) => Ok((doc, device)),
        Err(e @ DeviceDocError::NotSignedByDevice { .. }) => Err(DeviceDocRefusal::Signature(e)),
        Err(e) => Err(DeviceDocRefusal::Malformed(e)),
    })
}

/// The release an offline request is answered with: the newest one for the box's model
/// and channel that the update rule allows and that is not paused (by staff or by the
/// rollout guard: a halt stops offline boxes too) nor withdrawn. `Err(Some(hold))` names
/// what stops the newest release; `Err(None)`: there is no release for the model. Staff who
/// mean to hand over a paused release ask for it by version (`bundle get --version`).
pub fn release_for_request<'r>(
    b: &BoxView<'_>,
    releases: &'r [ReleaseEntry],
) -> Result<&'r ReleaseEntry, Option<Hold>> {
    let mut mine: Vec<&ReleaseEntry> = releases
        .iter()
        .filter(|r| r.release.channel == b.channel && r.release.models.contains(b.model))
        .collect();
    mine.sort_by(|x, y| y.release.version.cmp(&x.release.version));
    if let Some(r) = mine.iter().find(|r| !r.paused && may_install(b, r).is_ok()) {
        return Ok(r);
    }
    let newest = mine.iter().find(|r| !r.yanked).or(mine.first());
    Err(newest.and_then(|r| match may_install(b, r) {
        Err(h) => Some(h),
        Ok(()) if r.paused => Some(Hold::Paused(r.release.version.clone())),
        Ok(()) => None,
    }))
}

/// Says so when the request is older than what the server last heard from the box: it
/// was made before the box's last check-in or last receipt, or it names an older version
/// than the one the server has on record.
pub fn stale_request(
    request: &np_common::device_docs::DeviceRequest,
    device: &DeviceRecord,
    last_receipt_at: Option<jiff::Timestamp>,
) -> Option<String> {
    if let Some(v) = &device.version {
        if &request.version < v {
            return Some(format!(
                "the request names {} but the box has reported {v} after it; it may run something newer than the request says",
                request.version
            ));
        }
    }
    let last_heard = [device.last_check_in, last_receipt_at]
        .into_iter()
        .flatten()
        .max();
    match last_heard {
        Some(t) if request.created_at < t => Some(format!(
            "the request was made at {}, before the box was last heard from at {t}; what it says may be out of date",
            request.created_at
        )),
        _ => None,
    }
}
