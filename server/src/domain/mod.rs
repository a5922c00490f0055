//! The domain room: the rules of the business on top of np-common, with no HTTP in them.
//! `device` (the device record and its signed entitlement), `registry` (register, extend,
//! swap, revoke), `validate` (request fields into domain values), `offers` (what a box is
//! told at check-in), `rollout` (the staged-rollout bucket) and `rotation` (keyring drafts,
//! installs and re-signing).

pub mod device;
pub mod offers;
pub mod registry;
pub mod rollout;
pub mod rotation;
pub mod validate;
