//! Setting up and running a real np-agent for a test (filled in by the agent work).
