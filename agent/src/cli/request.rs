//! `np-agent request --out FILE`: the signed offline request (docs/formats.md, "Request"):
//! what this box runs and holds, so that the vendor can answer with the one bundle it may
//! install (`np-vendor bundle get --request FILE`). Its nonce is kept in `state.json`, and
//! the receipts of what the box then does name it.

use super::out::say;
use crate::agent::Agent;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::AgentError;
use crate::state::Slot;
use np_common::device_docs::{sign_device, DeviceRequest, SlotName};
use np_fsutil as fsutil;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `request`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the signed request; it must not exist yet.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

fn random_nonce() -> Result<String, AgentError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| AgentError::Io {
        what: "cannot get random bytes for the request's nonce".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex::encode(b))
}

/// Writes the request and prints where it went.
pub fn run(cfg: Config, clock: Arc<dyn Clock>, a: &Args) -> Result<(), AgentError> {
    let exists = || {
        AgentError::Usage(format!(
            "{} already exists; remove it first or choose another --out",
            a.out.display()
        ))
    };
    if a.out.symlink_metadata().is_ok() {
        return Err(exists());
    }
    let key = crate::receipts::load_device_key(&cfg.device_key).map_err(|e| {
        AgentError::Usage(format!(
            "{e}; a request is signed with the device key (config key device_key): create \
             one with `np-agent keygen` and have the vendor register its public key"
        ))
    })?;
    let mut agent = Agent::open(cfg, clock)?;
    let running = agent.running()?;
    let request = DeviceRequest {
        serial: agent.cfg.serial.clone(),
        model: agent.cfg.model.clone(),
        version: running.version.clone(),
        security_version: running.security_version,
        active_slot: match agent.state.active {
            Slot::A => SlotName::A,
            Slot::B => SlotName::B,
        },
        entitlement_sequence: agent.trust.entitlement().map(|e| e.sequence),
        time_floor: Some(agent.trust.floor()),
        nonce: random_nonce()?,
        created_at: crate::state::whole_second(agent.trust.now()),
    };
    // The nonce is kept first: the receipts of what this request leads to name it.
    agent.state.request_nonce = Some(request.nonce.clone());
    agent.save()?;
    let env = sign_device(&request, &key);
    match fsutil::write_new(&a.out, env.to_json_pretty().as_bytes(), fsutil::PUBLIC_READ) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
        Err(source) => {
            return Err(AgentError::Io {
                what: format!("cannot write {}", a.out.display()),
                source,
            })
        }
    }
    say!(
        "request for {} (running {}) written to {}; the vendor answers it with a bundle \
         (`np-vendor bundle get --request FILE`) to apply with `np-agent apply BUNDLE`",
        agent.cfg.serial,
        running.version,
        a.out.display()
    );
    Ok(())
}
