//! One integration-test binary; each module is a scenario area.

mod agent_disks;
mod agent_offline;
mod agent_online;
mod agent_ux;
mod cases;
mod console;
mod console_cases;
mod receipts;
mod replicas;
mod rollout_guard;
mod rotation;
mod security;
mod server_e2e;
mod server_releases;
mod vendor_cli;
mod vendor_cli_ux;
