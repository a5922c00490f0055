//! `np-agent provision`: the factory step. Verifies the first image against its manifest
//! under the keyring, writes it into slot a as the running, committed firmware, and stores
//! the keyring and entitlement.

use crate::clock::Clock;
use crate::config::Config;
use crate::error::AgentError;
use crate::slots::{Slots, CHUNK};
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
    let slots = Slots::from_config(cfg);
    slots.check_fits(Slot::A, release.image.size)?;
    slots.mark_invalid(Slot::A)?;
    let mut input = std::fs::File::open(&a.image).map_err(|source| AgentError::Io {
        what: format!("cannot read {}", a.image.display()),
        source,
    })?;
    let mut w = slots.writer(Slot::A, release.image.size, release.image.sha256, 0)?;
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
    trust.raise_floor(release.released_at, crate::trust::FloorSource::Installed)?;
    let downloads = cfg.state_dir.join("downloads");
    np_fsutil::create_dir_all(&downloads, np_fsutil::PRIVATE_DIR).map_err(|source| {
        AgentError::Io {
            what: format!("cannot create {}", downloads.display()),
            source,
        }
    })?;
    crate::inbox::prepare(&cfg.state_dir).map_err(|source| AgentError::Io {
        what: "cannot create the inbox and its processed folders".into(),
        source,
    })?;
    // The boot loader's record before the state: a record that cannot be written (its
    // partition not mounted) leaves the box unprovisioned, to be provisioned again.
    crate::boot::open(cfg).provision(Slot::A)?;
    State::provisioned().save(&cfg.state_dir)?;
    super::out::say!(
        "provisioned {} ({}) with {} in slot a",
        cfg.serial,
        cfg.model,
        release.version
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{release, Keys};

    /// The EFI system partition not mounted at the factory step: provision refuses,
    /// naming the missing folder, creates no folder below the mount point and saves no
    /// state, so that once the partition is mounted the box is provisioned again.
    #[test]
    fn provision_with_the_grub_block_folder_missing_can_be_done_again() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load();
        let state_dir = dir.path().join("state");
        let esp = dir.path().join("efi");
        let text = format!(
            "serial = \"{}\"\nmodel = \"NR-2000\"\nstate_dir = \"{}\"\n[trust]\nroot_keys = [\"{}\"]\n[install]\nreboot_command = \"true\"\n[boot]\nloader = \"grub\"\ngrubenv = \"{}\"\n",
            crate::testkit::serial(),
            state_dir.display(),
            k.root.public_key().to_base64(),
            esp.join("EFI/np/grubenv").display()
        );
        let cfg = Config::parse(Path::new("agent.toml"), &text).unwrap();
        let img = b"image one";
        let r = release("1.0.0", 2, img);
        let m = dir.path().join("manifest.json");
        std::fs::write(&m, k.sign_release(&r).to_json()).unwrap();
        let i = dir.path().join("image");
        std::fs::write(&i, img).unwrap();
        let kr = dir.path().join("keyring.json");
        std::fs::write(&kr, k.keyring_env(1).to_json()).unwrap();
        let args = Args {
            manifest: m,
            image: i,
            keyring: Some(kr),
            entitlement: None,
        };
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::FixedClock(crate::testkit::now()));
        let e = run(&cfg, clock.clone(), &args).unwrap_err().to_string();
        assert!(e.contains("efi/EFI/np does not exist"), "{e}");
        assert!(!esp.exists(), "a folder created below the mount point");
        assert!(!State::path(&state_dir).exists());
        std::fs::create_dir_all(esp.join("EFI/np")).unwrap();
        run(&cfg, clock, &args).unwrap();
        assert!(State::path(&state_dir).exists());
        assert!(esp.join("EFI/np/grubenv.bak").exists());
    }
}
