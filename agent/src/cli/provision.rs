//! `np-agent provision`: the factory step. Verifies the first image against its manifest
//! under the keyring, writes it into slot a as the running, committed firmware, and stores
//! the keyring and entitlement.

use crate::boot::{BootControl as _, CommandBoot};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::AgentError;
use crate::slots::{SlotWriter, Slots, CHUNK};
use crate::state::{Slot, State};
use crate::trust::Trust;
use np_common::{Envelope, Refusal};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `provision`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The signed release manifest of the image.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// The firmware image.
    #[arg(long, value_name = "FILE")]
    pub image: PathBuf,
    /// The signed keyring (needed unless one is stored).
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// The box's signed entitlement.
    #[arg(long, value_name = "FILE")]
    pub entitlement: Option<PathBuf>,
}

fn read_env(path: &Path) -> Result<Envelope, AgentError> {
    let bytes = std::fs::read(path).map_err(|source| AgentError::Io {
        what: format!("cannot read {}", path.display()),
        source,
    })?;
    Envelope::parse(&bytes).map_err(|e| AgentError::Trust(crate::trust::TrustError::Doc(e.into())))
}

/// Provisions the box.
pub fn run(cfg: &Config, clock: Arc<dyn Clock>, a: &Args) -> Result<(), AgentError> {
    if State::path(&cfg.state_dir).exists() {
        return Err(AgentError::Usage(format!(
            "{} is already provisioned; provisioning again would discard its firmware state",
            cfg.state_dir.display()
        )));
    }
    let mut trust = Trust::load(
        &cfg.state_dir.join("trust"),
        &cfg.root_keys,
        &cfg.serial,
        clock,
    )?;
    if let Some(k) = &a.keyring {
        trust.accept_keyring(&read_env(k)?)?;
    }
    let manifest = read_env(&a.manifest)?;
    let release = trust.verify_release(&manifest)?;
    if !release.models.contains(&cfg.model) {
        return Err(Refusal::ModelNotListed {
            version: release.version.clone(),
            model: cfg.model.clone(),
            listed: release
                .models
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    }
    if let Some(e) = &a.entitlement {
        trust.accept_entitlement(&read_env(e)?)?;
    }
    let slots = Slots::new(&cfg.state_dir);
    slots.mark_invalid(Slot::A)?;
    let mut input = std::fs::File::open(&a.image).map_err(|source| AgentError::Io {
        what: format!("cannot read {}", a.image.display()),
        source,
    })?;
    let mut w = SlotWriter::create(
        &slots.image(Slot::A),
        release.image.size,
        release.image.sha256,
    )?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = input.read(&mut buf).map_err(|source| AgentError::Io {
            what: format!("cannot read {}", a.image.display()),
            source,
        })?;
        if n == 0 {
            break;
        }
        w.write(&buf[..n])?;
    }
    w.finish()?;
    slots.mark_valid(Slot::A, &manifest)?;
    trust.raise_floor(release.released_at)?;
    for d in ["downloads", "inbox/applied", "inbox/rejected"] {
        let p = cfg.state_dir.join(d);
        std::fs::create_dir_all(&p).map_err(|source| AgentError::Io {
            what: format!("cannot create {}", p.display()),
            source,
        })?;
    }
    State::provisioned().save(&cfg.state_dir)?;
    CommandBoot::new(&cfg.state_dir, &cfg.install).commit(Slot::A)?;
    super::out::say!(
        "provisioned {} ({}) with {} in slot a",
        cfg.serial,
        cfg.model,
        release.version
    );
    Ok(())
}
