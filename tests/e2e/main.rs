//! One integration-test binary; each module is a scenario area.

mod agent_offline;
