//! The domain room: the rules of the business on top of np-common, with no HTTP in them.
//! `device` (the device record and its signed entitlement), `registry` (register, extend,
//! swap, revoke, edit), `import` (bulk registration, all or none), `validate` (request
//! fields into domain values), `offers` (what a box is told at check-in), `rollout` (the
//! staged-rollout bucket), `plan` (rollout plans: stages on a clock and the guard's
//! threshold), `guard` (attempts and failures per release), `offline` (requests and
//! receipts boxes sign with their device key), `rotation` (keyring drafts,
//! installs and re-signing), `case` (support cases, their status machine and the RMA
//! clock), `support` (support-case operations for the API and
//! the console), `service_hours` (the vendor's hours and the service time between two
//! instants) and `words` (wire names for people and logs).

pub mod case;
pub mod device;
pub mod guard;
pub mod import;
pub mod offers;
pub mod offline;
pub mod plan;
pub mod registry;
pub mod replica_keys;
pub mod rollout;
pub mod rotation;
pub mod service_hours;
pub mod support;
pub mod validate;
pub mod words;
