//! np-server: the vendor's warranty registry, firmware releases and device API, and the
//! library code that `np-vendor` (the staff CLI) shares with it.

pub mod bundle;
