//! Starting a real np-server for a test (filled in by the server work).
