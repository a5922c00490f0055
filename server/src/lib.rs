//! np-server: the vendor's warranty registry, firmware releases and device API, and the
//! library code that `np-vendor` (the staff CLI) shares with it.

pub mod blobs;
pub mod bundle;
pub mod bundle_tar;
pub mod device_auth;
pub mod offers;
pub mod range;
pub mod rollout;
