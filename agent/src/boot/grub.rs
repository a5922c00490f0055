//! The `grub` boot loader: the agent's side of the A/B protocol that `deploy/grub/np-ab.cfg`
//! runs on every boot. Both read and write these variables of GRUB's environment block:
//!
//! - `NP_ORDER`: `a b` or `b a`, the order to try;
//! - `NP_A_OK`, `NP_B_OK`: `1` bootable, `0` bad;
//! - `NP_A_TRY`, `NP_B_TRY`: boots tried since the slot was activated or committed (GRUB
//!   adds one on each boot of the slot; the agent sets 0 when it comes up on a committed
//!   slot);
//! - `NP_MAX_TRIES`: `install.max_boot_attempts`.
//!
//! GRUB boots the first slot in `NP_ORDER` whose OK is 1 and whose TRY is below
//! `NP_MAX_TRIES`, or else the other one. Each change here reads the block, changes the
//! variables in memory ([`GrubSlots`]) and rewrites the whole block in place, fsynced.
//!
//! The block is kept twice: the primary (`[boot] grubenv`) and its backup beside it
//! ([`backup_path`]: `grubenv.bak`). The copy in force is the primary when it parses and
//! carries `NP_ORDER`, else the backup (GRUB's script decides alike). A change writes the
//! copies that do not hold the new block, one after the other, the copy in force last
//! (normally the backup, then the primary), so a power cut tears at most the one being
//! written and the other is whole, with the old or the new state; the next change repairs a
//! torn or stale copy. With neither copy usable, every change is an error naming both.
//! The reasoning per step of the protocol is in `docs/formats.md`.

use super::command::reboot_with;
use super::grubenv::GrubEnv;
use super::{BootControl, BootError};
use crate::state::Slot;
use np_fsutil as fsutil;
use serde_json::json;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The order to try the slots.
pub const VAR_ORDER: &str = "NP_ORDER";
/// The most boots of a slot before GRUB gives up on it.
pub const VAR_MAX_TRIES: &str = "NP_MAX_TRIES";

/// `NP_A_OK` / `NP_B_OK`.
pub fn var_ok(slot: Slot) -> &'static str {
    match slot {
        Slot::A => "NP_A_OK",
        Slot::B => "NP_B_OK",
    }
}

/// `NP_A_TRY` / `NP_B_TRY`.
pub fn var_try(slot: Slot) -> &'static str {
    match slot {
        Slot::A => "NP_A_TRY",
        Slot::B => "NP_B_TRY",
    }
}

/// The protocol's variables, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrubSlots {
    /// The slot tried first (the other one comes second).
    pub first: Slot,
    pub a_ok: bool,
    pub b_ok: bool,
    pub a_try: u32,
    pub b_try: u32,
    pub max_tries: u32,
}

impl GrubSlots {
    /// The block `provision` writes: `slot` first, bootable and committed; the other bad.
    pub fn provisioned(slot: Slot, max_tries: u32) -> GrubSlots {
        let mut s = GrubSlots {
            first: slot,
            a_ok: false,
            b_ok: false,
            a_try: 0,
            b_try: 0,
            max_tries,
        };
        s.set_ok(slot, true);
        s
    }

    /// Is `slot` marked bootable?
    pub fn ok(&self, slot: Slot) -> bool {
        match slot {
            Slot::A => self.a_ok,
            Slot::B => self.b_ok,
        }
    }

    /// Boots tried of `slot`.
    pub fn tries(&self, slot: Slot) -> u32 {
        match slot {
            Slot::A => self.a_try,
            Slot::B => self.b_try,
        }
    }

    fn set_ok(&mut self, slot: Slot, ok: bool) {
        match slot {
            Slot::A => self.a_ok = ok,
            Slot::B => self.b_ok = ok,
        }
    }

    fn set_tries(&mut self, slot: Slot, n: u32) {
        match slot {
            Slot::A => self.a_try = n,
            Slot::B => self.b_try = n,
        }
    }

    /// Activating `slot`: bootable, no tries yet, tried first.
    pub fn activate(&mut self, slot: Slot) {
        self.set_ok(slot, true);
        self.set_tries(slot, 0);
        self.first = slot;
    }

    /// Committing `slot`, or the agent coming up on the committed `slot`: tries back to 0.
    pub fn commit(&mut self, slot: Slot) {
        self.set_tries(slot, 0);
    }

    /// Marking `slot` bad: not bootable, no tries (so that a slot never activated since
    /// never reads as one the boot loader tried and gave up on), the other slot first.
    pub fn mark_bad(&mut self, slot: Slot) {
        self.set_ok(slot, false);
        self.set_tries(slot, 0);
        self.first = slot.other();
    }

    /// What the GRUB script does on a boot with a copy it can write: the slot it boots,
    /// and whether it counted a try. The first slot in the order whose OK is 1 and whose
    /// TRY is below the most, counted. When both slots are OK and out of tries (a trial
    /// GRUB gave up on, then the fallback's boots cut before its agent came up), a new
    /// round: both TRYs back to 0 and the first counted again, so that each whole slot
    /// keeps getting its tries and neither is booted uncounted forever. With one slot OK
    /// and out of tries (a committed slot whose boots were cut), that slot, uncounted: the
    /// other is not whole. With neither OK, the first, uncounted.
    pub fn boot_counted(&mut self) -> (Slot, bool) {
        let order = [self.first, self.first.other()];
        for s in order {
            if self.ok(s) && self.tries(s) < self.max_tries {
                self.set_tries(s, self.tries(s) + 1);
                return (s, true);
            }
        }
        if self.a_ok && self.b_ok {
            self.a_try = 0;
            self.b_try = 0;
            self.set_tries(self.first, 1);
            return (self.first, true);
        }
        (self.uncounted(), false)
    }

    /// The slot booted uncounted (a copy GRUB cannot write, or no slot qualifies): the
    /// first in the order whose OK is 1 and whose TRY is below the most, else the first
    /// whose OK is 1, else the first.
    pub fn uncounted(&self) -> Slot {
        let order = [self.first, self.first.other()];
        order
            .into_iter()
            .find(|&s| self.ok(s) && self.tries(s) < self.max_tries)
            .or_else(|| order.into_iter().find(|&s| self.ok(s)))
            .unwrap_or(self.first)
    }

    /// [`GrubSlots::boot_counted`], the slot only.
    pub fn boot(&mut self) -> Slot {
        self.boot_counted().0
    }

    /// Reads the variables; a missing or malformed one is an error naming it. The GRUB
    /// script accepts exactly these values (a TRY and the most of one digit), so a copy
    /// this refuses is one GRUB does not use either.
    pub fn from_env(env: &GrubEnv) -> Result<GrubSlots, String> {
        let get = |name: &str| env.get(name).ok_or_else(|| format!("{name} is missing"));
        let flag = |name: &str| match get(name)? {
            "1" => Ok(true),
            "0" => Ok(false),
            v => Err(format!("{name}={v:?} is neither 0 nor 1")),
        };
        let count = |name: &str| {
            let v = get(name)?;
            match v.as_bytes() {
                [d @ b'0'..=b'9'] => Ok(u32::from(d - b'0')),
                _ => Err(format!("{name}={v:?} is not a count from 0 to 9")),
            }
        };
        let first = match get(VAR_ORDER)? {
            "a b" => Slot::A,
            "b a" => Slot::B,
            v => return Err(format!("{VAR_ORDER}={v:?} is neither \"a b\" nor \"b a\"")),
        };
        let max_tries = count(VAR_MAX_TRIES)?;
        if max_tries == 0 {
            return Err(format!("{VAR_MAX_TRIES}=0 would boot nothing"));
        }
        Ok(GrubSlots {
            first,
            a_ok: flag(var_ok(Slot::A))?,
            b_ok: flag(var_ok(Slot::B))?,
            a_try: count(var_try(Slot::A))?,
            b_try: count(var_try(Slot::B))?,
            max_tries,
        })
    }

    /// Writes the variables into `env`, keeping its other variables.
    pub fn to_env(self, env: &mut GrubEnv) -> Result<(), super::grubenv::EnvError> {
        let order = match self.first {
            Slot::A => "a b",
            Slot::B => "b a",
        };
        let flag = |b: bool| if b { "1" } else { "0" };
        env.set(VAR_ORDER, order)?;
        for s in [Slot::A, Slot::B] {
            env.set(var_ok(s), flag(self.ok(s)))?;
            env.set(var_try(s), &self.tries(s).to_string())?;
        }
        env.set(VAR_MAX_TRIES, &self.max_tries.to_string())
    }
}

/// The backup copy of the block at `primary`: the same name with `.bak` appended
/// (`/boot/efi/EFI/np/grubenv` → `/boot/efi/EFI/np/grubenv.bak`), in the same folder, so
/// that GRUB finds it on the same partition.
pub fn backup_path(primary: &Path) -> PathBuf {
    let mut name = primary.as_os_str().to_owned();
    name.push(".bak");
    PathBuf::from(name)
}

/// Why the copy at `path` cannot be written as a boot record: a link or something other
/// than a regular file. `None` for a regular file or no file (created fresh).
fn not_a_regular_file(path: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let t = m.file_type();
    if t.is_symlink() {
        Some("is a symbolic link; the boot record must be a regular file".to_owned())
    } else if t.is_dir() {
        Some("is a directory; the boot record must be a regular file".to_owned())
    } else if !t.is_file() {
        Some("is not a regular file; the boot record must be one".to_owned())
    } else {
        None
    }
}

/// One of the two copies of the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The configured `[boot] grubenv`.
    Primary,
    /// [`backup_path`] of it.
    Backup,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Primary => "primary",
            Which::Backup => "backup",
        }
    }
}

/// What one copy holds: its bytes (`None`: no such file), or why it could not be read.
type Raw = Result<Option<Vec<u8>>, std::io::Error>;

/// Both copies as read, and the one in force: the primary when it parses and all six
/// variables are valid (as GRUB's script decides), else the backup when it does.
#[derive(Debug)]
struct Loaded {
    primary: Raw,
    backup: Raw,
    /// The copy in force and its variables; `None` when neither qualifies.
    in_force: Option<(Which, GrubEnv)>,
}

impl Loaded {
    fn bytes(&self, c: Which) -> Option<&[u8]> {
        match c {
            Which::Primary => self.primary.as_ref().ok()?.as_deref(),
            Which::Backup => self.backup.as_ref().ok()?.as_deref(),
        }
    }
}

/// Drives GRUB through its environment block, kept twice: the primary (`[boot] grubenv`)
/// and a backup beside it ([`backup_path`]). Both are rewritten in place and fsynced, one
/// after the other, the copy in force last (normally: backup, then primary), so that a
/// power cut can tear at most the one being written while the other is whole.
#[derive(Debug, Clone)]
pub struct GrubBoot {
    path: PathBuf,
    backup: PathBuf,
    max_tries: u32,
    reboot_command: Option<String>,
}

/// Writes one copy of the block (the real writer, or a test's).
type Put<'a> = dyn FnMut(&Path, &[u8]) -> Result<(), BootError> + 'a;

impl GrubBoot {
    /// The block at `path` (and its backup beside it); `max_tries` is
    /// `install.max_boot_attempts`.
    pub fn new(path: &Path, max_tries: u32, reboot_command: Option<String>) -> GrubBoot {
        GrubBoot {
            path: path.to_owned(),
            backup: backup_path(path),
            max_tries,
            reboot_command,
        }
    }

    fn path_of(&self, c: Which) -> &Path {
        match c {
            Which::Primary => &self.path,
            Which::Backup => &self.backup,
        }
    }

    fn corrupt(&self, message: String) -> BootError {
        BootError::Corrupt {
            path: self.path.clone(),
            message,
        }
    }

    /// Reads the block in force and the protocol's variables.
    pub fn read(&self) -> Result<(GrubEnv, GrubSlots), BootError> {
        let loaded = self.load();
        self.in_force(&loaded)
    }

    /// The copy in force and its variables, or why there is none (both copies named).
    fn in_force(&self, loaded: &Loaded) -> Result<(GrubEnv, GrubSlots), BootError> {
        // GRUB's ext2/3/4 driver follows a link, and its save_env writes through it; the
        // agent never does: the two would keep different blocks.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(BootError::Link {
                path: self.path.clone(),
            });
        }
        if let Some((_, env)) = &loaded.in_force {
            let slots = GrubSlots::from_env(env).map_err(|m| self.corrupt(m))?;
            return Ok((env.clone(), slots));
        }
        // Neither copy is usable: say why for each.
        let why = |c: Which, raw: &Raw| -> Result<String, BootError> {
            match raw {
                Ok(None) => Ok("there is no such file".to_owned()),
                Ok(Some(bytes)) => Ok(match GrubEnv::parse(bytes) {
                    Err(e) => e.to_string(),
                    Ok(env) => match GrubSlots::from_env(&env) {
                        Err(m) => m,
                        Ok(_) => "it reads whole".to_owned(),
                    },
                }),
                Err(e) => Err(BootError::Io {
                    path: self.path_of(c).to_owned(),
                    source: std::io::Error::new(e.kind(), e.to_string()),
                }),
            }
        };
        match (&loaded.primary, &loaded.backup) {
            (Ok(None), Ok(None)) => Err(BootError::Missing {
                path: self.path.clone(),
            }),
            (p, b) => {
                let p = why(Which::Primary, p)?;
                let b = why(Which::Backup, b)?;
                Err(self.corrupt(format!(
                    "{p} (and its backup {}: {b})",
                    self.backup.display()
                )))
            }
        }
    }

    /// Reads one copy: its bytes (at most one more than a block, to see a longer file),
    /// `None` when it does not exist.
    fn read_raw(path: &Path) -> Raw {
        // Never through a link (GRUB's file system may not follow it, and the agent never
        // writes through one): such a copy is no copy, and `status` says why.
        if let Some(why) = not_a_regular_file(path) {
            return Err(std::io::Error::other(why));
        }
        let mut bytes = Vec::with_capacity(super::grubenv::BLOCK_SIZE);
        match std::fs::File::open(path) {
            Ok(f) => f
                .take(super::grubenv::BLOCK_SIZE as u64 + 1)
                .read_to_end(&mut bytes)
                .map(|_| Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads both copies and picks the one in force: a copy qualifies only when it is a
    /// whole block and all six variables are valid (GRUB's script checks each of them
    /// too), so a damaged primary gives way to a whole backup.
    fn load(&self) -> Loaded {
        let primary = Self::read_raw(&self.path);
        let backup = Self::read_raw(&self.backup);
        let usable = |raw: &Raw| -> Option<GrubEnv> {
            let env = GrubEnv::parse(raw.as_ref().ok()?.as_deref()?).ok()?;
            GrubSlots::from_env(&env).ok().map(|_| env)
        };
        let in_force = match (usable(&primary), usable(&backup)) {
            (Some(env), _) => Some((Which::Primary, env)),
            (None, Some(env)) => Some((Which::Backup, env)),
            (None, None) => None,
        };
        Loaded {
            primary,
            backup,
            in_force,
        }
    }

    /// Writes one copy: in place when it is a 1024-byte file of ours, else created fresh.
    fn write_copy(path: &Path, block: &[u8]) -> Result<(), BootError> {
        let io = |source| BootError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(why) = not_a_regular_file(path) {
            return Err(io(std::io::Error::other(why)));
        }
        // Never create the block's folder: a missing one is a partition not mounted (the
        // EFI system partition, the data partition), and a block written on the root file
        // system below the mount point is one GRUB never reads.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "its folder {} does not exist: mount the partition that holds it \
                         (the folder must exist; the agent does not create it)",
                        dir.display()
                    ),
                )));
            }
        }
        // In place, as GRUB's own `save_env` writes it: GRUB reads the block through the
        // file system's blocks on disk and never replays a journal, so after a power cut
        // a block replaced by a rename can read as "invalid environment block" (its new
        // inode still only in the journal). Overwriting the same 1024 bytes changes no
        // metadata GRUB reads. A copy of another size (or none yet) is created fresh
        // (a new file, never through a link) and renamed into place.
        match fsutil::open_own_rw(path) {
            Ok(f) if f.metadata().map(|m| m.len()).ok() == Some(block.len() as u64) => {
                use std::os::unix::fs::FileExt as _;
                f.write_all_at(block, 0).map_err(io)?;
                f.sync_all().map_err(io)
            }
            Ok(_) => fsutil::write_atomic(path, block, fsutil::PRIVATE).map_err(io),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fsutil::write_atomic(path, block, fsutil::PRIVATE).map_err(io)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The copies to write for `block`, in order: those that do not hold it yet, the copy
    /// in force last. While the first is written the one in force is whole; while the
    /// one in force is written the other already holds the new block. So a power cut
    /// tears at most one copy and the other is whole, with the old or the new state.
    fn plan(&self, loaded: &Loaded, block: &[u8]) -> Vec<Which> {
        let order = match loaded.in_force {
            Some((Which::Backup, _)) => [Which::Primary, Which::Backup],
            _ => [Which::Backup, Which::Primary],
        };
        order
            .into_iter()
            .filter(|&c| loaded.bytes(c) != Some(block))
            .collect()
    }

    /// Writes `slots` into `env` and the block into the copies that need it.
    fn write(
        &self,
        loaded: &Loaded,
        mut env: GrubEnv,
        slots: GrubSlots,
        put: &mut Put<'_>,
    ) -> Result<(), BootError> {
        slots
            .to_env(&mut env)
            .map_err(|e| self.corrupt(e.to_string()))?;
        let block = env.to_block().map_err(|e| self.corrupt(e.to_string()))?;
        for c in self.plan(loaded, &block) {
            put(self.path_of(c), &block)?;
        }
        Ok(())
    }

    /// Reads, changes and writes back the copies that do not hold the result: a torn or
    /// stale copy is repaired even when the variables do not change.
    fn update_with(
        &self,
        change: impl FnOnce(&mut GrubSlots),
        put: &mut Put<'_>,
    ) -> Result<(), BootError> {
        let loaded = self.load();
        let (env, old) = self.in_force(&loaded)?;
        let mut new = old;
        new.max_tries = self.max_tries;
        change(&mut new);
        self.write(&loaded, env, new, put)
    }

    fn update(&self, change: impl FnOnce(&mut GrubSlots)) -> Result<(), BootError> {
        self.update_with(change, &mut Self::write_copy)
    }

    /// `started`: TRY of `slot` back to 0 in both copies, like any change; but when the
    /// primary is in force and only the backup cannot be written (a full disk, a backup
    /// that is a link or a folder), the primary is still rewritten in place, with a loud
    /// warning: else the tries would pile up at every start until GRUB gives up on the
    /// committed slot. Only this change goes on without its backup; marking a slot bad,
    /// activating and committing fail closed. `Ok(Some(error))`: done without the backup.
    fn started_with(&self, slot: Slot, put: &mut Put<'_>) -> Result<Option<String>, BootError> {
        let loaded = self.load();
        let (mut env, old) = self.in_force(&loaded)?;
        let mut new = old;
        new.max_tries = self.max_tries;
        new.commit(slot);
        new.to_env(&mut env)
            .map_err(|e| self.corrupt(e.to_string()))?;
        let block = env.to_block().map_err(|e| self.corrupt(e.to_string()))?;
        let in_force = loaded.in_force.as_ref().map(|(c, _)| *c);
        let mut skipped = None;
        for c in self.plan(&loaded, &block) {
            match put(self.path_of(c), &block) {
                // The copy not in force (written first) cannot be written: the copy in
                // force is still rewritten, or the tries would pile up at every start.
                Err(e) if in_force.is_some_and(|f| f != c) => {
                    let f = if c == Which::Backup {
                        Which::Primary
                    } else {
                        Which::Backup
                    };
                    tracing::warn!(
                        "the {} copy of the boot record cannot be written ({e}); rewriting the {} copy {} alone: the block is kept once until the other copy is fixed",
                        c.name(),
                        f.name(),
                        self.path_of(f).display()
                    );
                    skipped = Some(e.to_string());
                }
                r => r?,
            }
        }
        Ok(skipped)
    }

    /// Why the primary is not the copy in force, when the backup is (for `status`).
    fn primary_problem(&self, loaded: &Loaded) -> Option<String> {
        let Some((Which::Backup, _)) = &loaded.in_force else {
            return None;
        };
        let shown = self.path.display();
        Some(match &loaded.primary {
            Err(e) => format!("{shown} {e}"),
            Ok(None) => format!("{shown} is missing"),
            Ok(Some(bytes)) => match GrubEnv::parse(bytes) {
                Err(e) => format!("{shown}: {e}"),
                Ok(env) => match GrubSlots::from_env(&env) {
                    Err(m) => format!("{shown}: {m}"),
                    Ok(_) => format!("{shown} is not in force"),
                },
            },
        })
    }

    /// Why the backup does not hold the block in force, if it does not: `None` when it
    /// does (for `status`).
    fn backup_problem(&self, loaded: &Loaded) -> Option<String> {
        let shown = self.backup.display();
        if let Some(why) = not_a_regular_file(&self.backup) {
            return Some(format!("{shown} {why}"));
        }
        let Some((Which::Primary, _)) = &loaded.in_force else {
            return None;
        };
        match &loaded.backup {
            Err(e) => Some(format!("cannot read {shown}: {e}")),
            Ok(None) => Some(format!("{shown} is missing")),
            Ok(Some(b)) if Some(b.as_slice()) != loaded.bytes(Which::Primary) => Some(format!(
                "{shown} does not hold the block in force (it could not be written at the last change)"
            )),
            Ok(Some(_)) => None,
        }
    }
}

impl BootControl for GrubBoot {
    fn name(&self) -> &'static str {
        "grub"
    }

    fn provision(&self, slot: Slot) -> Result<(), BootError> {
        self.provision_with(slot, &mut Self::write_copy)
    }

    fn activate(&self, slot: Slot) -> Result<(), BootError> {
        self.update(|s| s.activate(slot))
    }

    fn commit(&self, slot: Slot) -> Result<(), BootError> {
        self.update(|s| s.commit(slot))
    }

    fn mark_bad(&self, slot: Slot) -> Result<(), BootError> {
        self.update(|s| s.mark_bad(slot))
    }

    fn reboot(&self) -> Result<bool, BootError> {
        reboot_with(self.reboot_command.as_deref())
    }

    fn started(&self, slot: Slot) -> Result<(), BootError> {
        self.started_with(slot, &mut Self::write_copy).map(|_| ())
    }

    /// The most tries of `slot` that any copy reading valid holds: GRUB counts in the
    /// copy it can write, which may not be the one in force for the agent (a primary GRUB
    /// reads but cannot write), and a try GRUB counted must never read as "never tried".
    fn tries(&self, slot: Slot) -> Result<Option<u32>, BootError> {
        let loaded = self.load();
        let (_, in_force) = self.in_force(&loaded)?;
        let most = [Which::Primary, Which::Backup]
            .into_iter()
            .filter_map(|c| GrubEnv::parse(loaded.bytes(c)?).ok())
            .filter_map(|env| GrubSlots::from_env(&env).ok())
            .map(|s| s.tries(slot))
            .fold(in_force.tries(slot), u32::max);
        Ok(Some(most))
    }

    fn chose_over(&self, booted: Slot, first: Slot) -> Result<bool, BootError> {
        let s = self.read()?.1;
        Ok(s.first == first && s.ok(first) && s.ok(booted))
    }

    fn record(&self) -> Result<serde_json::Value, BootError> {
        let loaded = self.load();
        let (env, _) = self.in_force(&loaded)?;
        let mut vars = serde_json::Map::new();
        for (n, v) in env.vars() {
            if n.starts_with("NP_") {
                vars.insert(n.clone(), json!(v));
            }
        }
        let in_force = loaded.in_force.as_ref().map(|(c, _)| c.name());
        Ok(json!({
            "grubenv": self.path,
            "backup": self.backup,
            "in_force": in_force,
            "primary_problem": self.primary_problem(&loaded),
            "backup_problem": self.backup_problem(&loaded),
            "variables": vars,
        }))
    }
}

impl GrubBoot {
    /// `provision`, each copy written by `put`.
    fn provision_with(&self, slot: Slot, put: &mut Put<'_>) -> Result<(), BootError> {
        // Variables other than ours (a saved_entry, say) survive a provision: they are
        // taken from the copy in force, or from the first copy that parses.
        let loaded = self.load();
        let env = match &loaded.in_force {
            Some((_, env)) => env.clone(),
            None => [Which::Primary, Which::Backup]
                .into_iter()
                .find_map(|c| GrubEnv::parse(loaded.bytes(c)?).ok())
                .unwrap_or_default(),
        };
        for c in [Which::Primary, Which::Backup] {
            let raw = match c {
                Which::Primary => &loaded.primary,
                Which::Backup => &loaded.backup,
            };
            if let Err(e) = raw {
                return Err(BootError::Io {
                    path: self.path_of(c).to_owned(),
                    source: std::io::Error::new(e.kind(), e.to_string()),
                });
            }
        }
        self.write(
            &loaded,
            env,
            GrubSlots::provisioned(slot, self.max_tries),
            put,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(vars: &[(&str, &str)]) -> Vec<u8> {
        let mut e = GrubEnv::new();
        for (n, v) in vars {
            e.set(n, v).unwrap();
        }
        e.to_block().unwrap()
    }

    /// The variables in force; and both copies hold the same block.
    fn vars(b: &GrubBoot) -> Vec<(String, String)> {
        let p = std::fs::read(&b.path).unwrap();
        assert_eq!(p, std::fs::read(&b.backup).unwrap(), "the copies differ");
        b.read().unwrap().0.vars().to_vec()
    }

    /// The six variables of the protocol, in the order the script saves them.
    const SIX: [&str; 6] = [
        VAR_ORDER,
        "NP_A_OK",
        "NP_A_TRY",
        "NP_B_OK",
        "NP_B_TRY",
        VAR_MAX_TRIES,
    ];

    /// GRUB's `load_env --file FILE` (lib/envblk.c), as loose as GRUB is: any file that
    /// starts with the header is read, line by line, up to the first broken line (a name
    /// without `=`, or a value running to the end of the file without a newline), so the
    /// variables in the first sector of a block whose second sector is torn still load.
    /// Only the protocol's six variables are kept, as the script asks.
    fn grub_load_env(file: &Path) -> Option<GrubEnv> {
        let bytes = std::fs::read(file).ok()?;
        let body = bytes.strip_prefix(super::super::grubenv::HEADER.as_bytes())?;
        let mut env = GrubEnv::new();
        let mut p = 0;
        while p < body.len() {
            if body[p] == b'#' {
                while p < body.len() && body[p] != b'\n' {
                    p += 1;
                }
                p += 1;
                continue;
            }
            let start = p;
            while p < body.len() && body[p] != b'=' {
                p += 1;
            }
            if p >= body.len() {
                break;
            }
            let name = String::from_utf8_lossy(&body[start..p]).into_owned();
            p += 1;
            let mut value = Vec::new();
            while p < body.len() && body[p] != b'\n' {
                if body[p] == b'\\' {
                    p += 1;
                }
                if let Some(&c) = body.get(p) {
                    value.push(c);
                }
                p += 1;
            }
            if p >= body.len() {
                break;
            }
            p += 1;
            // GRUB hands the value on as a C string: it ends at a NUL.
            let end = value.iter().position(|&c| c == 0).unwrap_or(value.len());
            if SIX.contains(&name.as_str()) {
                env.set(&name, &String::from_utf8_lossy(&value[..end]))
                    .unwrap();
            }
        }
        Some(env)
    }

    /// GRUB's `save_env --file FILE NAMES...`: sets NAMES in FILE's block, in place. GRUB
    /// makes room in the `#` padding at the end of the block; a block whose tail is torn
    /// (zeros, garbage) has none and is refused ("environment block too small"), writing
    /// nothing. Modelled as: refused unless FILE is a whole block.
    fn save_env(file: &Path, from: &GrubEnv, names: &[&str]) -> bool {
        let Ok(mut env) = std::fs::read(file)
            .map_err(|_| ())
            .and_then(|b| GrubEnv::parse(&b).map_err(|_| ()))
        else {
            return false;
        };
        for n in names {
            env.set(n, from.get(n).unwrap()).unwrap();
        }
        std::fs::write(file, env.to_block().unwrap()).unwrap();
        true
    }

    /// The script's `np_load FILE`: the variables GRUB reads from FILE, when all six are
    /// valid, and whether GRUB can write FILE (an unchanged variable saved back).
    fn np_load(file: &Path) -> Option<(GrubEnv, GrubSlots, bool)> {
        let env = grub_load_env(file)?;
        let slots = GrubSlots::from_env(&env).ok()?;
        let writable = save_env(file, &env, &[VAR_ORDER]);
        Some((env, slots, writable))
    }

    /// What `deploy/grub/np-ab.cfg` does on a boot: the primary if all six variables read
    /// valid and GRUB can write it, else the backup if so; the try counted and all six
    /// saved into both copies, the one in use last. With no such copy, a copy that reads
    /// valid chooses the slot, uncounted; with none, slot a.
    fn grub_boot(b: &GrubBoot) -> Slot {
        grub_boot_counted(b).0
    }

    /// [`grub_boot`], and whether the try was counted.
    fn grub_boot_counted(b: &GrubBoot) -> (Slot, bool) {
        let usable = |p: &Path| np_load(p).filter(|l| l.2);
        let (src, other, (mut env, mut s, _)) = match (usable(&b.path), usable(&b.backup)) {
            (Some(l), _) => (&b.path, &b.backup, l),
            (None, Some(l)) => (&b.backup, &b.path, l),
            (None, None) => {
                return match np_load(&b.path).or_else(|| np_load(&b.backup)) {
                    Some((_, s, _)) => (s.uncounted(), false),
                    None => (Slot::A, false),
                }
            }
        };
        let (slot, counted) = s.boot_counted();
        if counted {
            s.to_env(&mut env).unwrap();
            save_env(other, &env, &SIX);
            save_env(src, &env, &SIX);
        }
        (slot, counted)
    }

    fn v(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn provision_writes_the_whole_block_for_slot_a() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grubenv");
        let b = GrubBoot::new(&p, 3, None);
        assert!(matches!(
            b.activate(Slot::B),
            Err(BootError::Missing { .. })
        ));
        b.provision(Slot::A).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 1024);
        assert!(String::from_utf8(bytes).unwrap().starts_with(
            "# GRUB Environment Block\nNP_ORDER=a b\nNP_A_OK=1\nNP_A_TRY=0\nNP_B_OK=0\nNP_B_TRY=0\nNP_MAX_TRIES=3\n#"
        ));
        assert_eq!(b.name(), "grub");
        assert_eq!(b.tries(Slot::A).unwrap(), Some(0));
    }

    /// Every transition of the protocol, through the file, against the exact variables.
    #[test]
    fn every_transition_writes_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grubenv");
        // Another tool's variable is kept, and ours keep its order.
        std::fs::write(&p, block(&[("saved_entry", "0")])).unwrap();
        let b = GrubBoot::new(&p, 3, None);
        b.provision(Slot::A).unwrap();
        let base = |order, aok, atry, bok, btry| {
            v(&[
                ("saved_entry", "0"),
                ("NP_ORDER", order),
                ("NP_A_OK", aok),
                ("NP_A_TRY", atry),
                ("NP_B_OK", bok),
                ("NP_B_TRY", btry),
                ("NP_MAX_TRIES", "3"),
            ])
        };
        assert_eq!(vars(&b), base("a b", "1", "0", "0", "0"));
        // GRUB boots a and counts a try; the agent comes up on committed a: TRY back to 0.
        assert_eq!(grub_boot(&b), Slot::A);
        assert_eq!(vars(&b), base("a b", "1", "1", "0", "0"));
        b.started(Slot::A).unwrap();
        assert_eq!(vars(&b), base("a b", "1", "0", "0", "0"));
        // Installing into b: b marked bad first (it is already), a stays first.
        b.mark_bad(Slot::B).unwrap();
        assert_eq!(vars(&b), base("a b", "1", "0", "0", "0"));
        // Activating b: OK, no tries, first.
        b.activate(Slot::B).unwrap();
        assert_eq!(vars(&b), base("b a", "1", "0", "1", "0"));
        assert_eq!(b.tries(Slot::B).unwrap(), Some(0));
        // GRUB tries b once; the agent commits it.
        assert_eq!(grub_boot(&b), Slot::B);
        assert_eq!(vars(&b), base("b a", "1", "0", "1", "1"));
        b.commit(Slot::B).unwrap();
        assert_eq!(vars(&b), base("b a", "1", "0", "1", "0"));
        // A failed trial of a: a marked bad, b first again.
        b.activate(Slot::A).unwrap();
        assert_eq!(vars(&b), base("a b", "1", "0", "1", "0"));
        b.mark_bad(Slot::A).unwrap();
        assert_eq!(vars(&b), base("b a", "0", "0", "1", "0"));
        // A new max_boot_attempts is written with the next change.
        let b5 = GrubBoot::new(&p, 5, None);
        b5.commit(Slot::B).unwrap();
        assert_eq!(b5.read().unwrap().1.max_tries, 5);
    }

    /// The block is rewritten in place (same file, same inode), as GRUB's `save_env` does,
    /// so that GRUB, which reads the disk without replaying a journal, never finds the
    /// name pointing at an inode that is still only in the journal after a power cut.
    #[test]
    fn a_block_is_rewritten_in_place_once_it_exists() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grubenv");
        let b = GrubBoot::new(&p, 3, None);
        b.provision(Slot::A).unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        b.activate(Slot::B).unwrap();
        b.commit(Slot::B).unwrap();
        b.mark_bad(Slot::A).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.ino(), ino, "the same file, written in place");
        assert_eq!(m.len(), 1024);
        assert_eq!(b.read().unwrap().1.first, Slot::B);
    }

    /// What GRUB does with these variables, boot after boot: a slot that never comes up is
    /// abandoned after NP_MAX_TRIES boots.
    #[test]
    fn grub_gives_up_on_a_slot_after_max_tries() {
        let mut s = GrubSlots::provisioned(Slot::A, 3);
        s.activate(Slot::B);
        assert_eq!([s.boot(), s.boot(), s.boot()], [Slot::B; 3]);
        assert_eq!(s.b_try, 3);
        // b never committed: the fourth boot goes to a.
        assert_eq!(s.boot(), Slot::A);
        assert_eq!(s.a_try, 1);
        // The agent on a marks b bad and comes up: a, a, a from now on.
        s.mark_bad(Slot::B);
        s.commit(Slot::A);
        assert_eq!(s.first, Slot::A);
        assert_eq!(s.boot(), Slot::A);
        // Nothing qualifies by its tries (a's tries ran out, power cuts while it booted;
        // b bad): GRUB boots a, the slot whose OK is 1, uncounted, again and again, never
        // the bad b; the agent on a resets the count.
        let mut s = GrubSlots::provisioned(Slot::A, 1);
        assert_eq!(s.boot_counted(), (Slot::A, true));
        assert_eq!([s.boot(), s.boot(), s.boot()], [Slot::A; 3]);
        assert_eq!(s.boot_counted(), (Slot::A, false));
        assert_eq!(s.a_try, 1);
        // Committed b, a marked bad, b in the second place of the order (a power cut
        // between two changes): still b, never the bad a.
        let mut s = GrubSlots::provisioned(Slot::B, 3);
        s.b_try = 3;
        s.first = Slot::A;
        assert_eq!(s.boot_counted(), (Slot::B, false));
        // Neither slot OK (nothing better to do): the first of the order.
        s.b_ok = false;
        assert_eq!(s.boot_counted(), (Slot::A, false));
    }

    /// Marking a slot bad clears its tries: a slot written afresh and never activated is
    /// never taken for one the boot loader tried and gave up on.
    #[test]
    fn marking_a_slot_bad_clears_its_tries() {
        let mut s = GrubSlots::provisioned(Slot::A, 3);
        s.activate(Slot::B);
        assert_eq!(
            [s.boot(), s.boot(), s.boot(), s.boot()],
            [Slot::B, Slot::B, Slot::B, Slot::A]
        );
        assert_eq!(s.b_try, 3);
        s.mark_bad(Slot::B);
        assert_eq!((s.b_ok, s.b_try, s.first), (false, 0, Slot::A));
    }

    #[test]
    fn a_damaged_block_is_an_error_never_slot_a_committed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grubenv");
        let b = GrubBoot::new(&p, 3, None);
        let good = [
            ("NP_ORDER", "a b"),
            ("NP_A_OK", "1"),
            ("NP_A_TRY", "0"),
            ("NP_B_OK", "0"),
            ("NP_B_TRY", "0"),
            ("NP_MAX_TRIES", "3"),
        ];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![b'#'; 1000], "1024 bytes"),
            (block(&good)[..1023].to_vec(), "1024 bytes"),
            (block(&good[1..]), "NP_ORDER is missing"),
            (block(&[("NP_ORDER", "a a")]), "NP_ORDER"),
            (
                block(&[
                    good[0],
                    ("NP_A_OK", "yes"),
                    good[2],
                    good[3],
                    good[4],
                    good[5],
                ]),
                "NP_A_OK",
            ),
            (
                block(&[
                    good[0],
                    good[1],
                    ("NP_A_TRY", "-1"),
                    good[3],
                    good[4],
                    good[5],
                ]),
                "NP_A_TRY",
            ),
            (
                block(&[
                    good[0],
                    good[1],
                    good[2],
                    good[3],
                    good[4],
                    ("NP_MAX_TRIES", "0"),
                ]),
                "NP_MAX_TRIES",
            ),
        ];
        for (bytes, what) in cases {
            std::fs::write(&p, &bytes).unwrap();
            for r in [
                b.commit(Slot::A),
                b.tries(Slot::A).map(|_| ()),
                b.started(Slot::A),
            ] {
                match r {
                    Err(BootError::Corrupt { ref message, .. }) => {
                        assert!(message.contains(what), "{message} lacks {what}")
                    }
                    other => panic!("{what}: {other:?}"),
                }
            }
            // Nothing was written over the damaged block.
            assert_eq!(std::fs::read(&p).unwrap(), bytes);
        }
    }

    /// What the agent writes, grub-editenv lists (where it is installed).
    #[test]
    fn grub_editenv_reads_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grubenv");
        let b = GrubBoot::new(&p, 2, None);
        b.provision(Slot::A).unwrap();
        b.activate(Slot::B).unwrap();
        let Ok(out) = std::process::Command::new("grub-editenv")
            .arg(&p)
            .arg("list")
            .output()
        else {
            eprintln!("grub-editenv is not installed: not checked against it");
            return;
        };
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8(out.stdout.clone()).unwrap(),
            "NP_ORDER=b a\nNP_A_OK=1\nNP_A_TRY=0\nNP_B_OK=1\nNP_B_TRY=0\nNP_MAX_TRIES=2\n"
        );
        let bak = std::process::Command::new("grub-editenv")
            .arg(backup_path(&p))
            .arg("list")
            .output()
            .unwrap();
        assert!(bak.status.success(), "{bak:?}");
        assert_eq!(bak.stdout, out.stdout, "the backup lists the same");
    }

    /// Both copies' bytes, to put back between simulated power cuts.
    fn snapshot(b: &GrubBoot) -> [Option<Vec<u8>>; 2] {
        [std::fs::read(&b.path).ok(), std::fs::read(&b.backup).ok()]
    }

    fn restore(b: &GrubBoot, snap: &[Option<Vec<u8>>; 2]) {
        for (p, bytes) in [(&b.path, &snap[0]), (&b.backup, &snap[1])] {
            match bytes {
                Some(bytes) => std::fs::write(p, bytes).unwrap(),
                None => {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }

    /// A provisioned block (slot a committed, b activated: the copies are not the
    /// provisioned default), in a new folder.
    fn two_copies() -> (tempfile::TempDir, GrubBoot) {
        let dir = tempfile::tempdir().unwrap();
        let b = GrubBoot::new(&dir.path().join("grubenv"), 3, None);
        b.provision(Slot::A).unwrap();
        b.activate(Slot::B).unwrap();
        (dir, b)
    }

    /// Records the copies written, in order, and writes them.
    fn recording(log: &mut Vec<PathBuf>) -> impl FnMut(&Path, &[u8]) -> Result<(), BootError> + '_ {
        |p: &Path, bytes: &[u8]| {
            log.push(p.to_owned());
            GrubBoot::write_copy(p, bytes)
        }
    }

    #[test]
    fn provision_keeps_the_block_twice() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grubenv");
        assert_eq!(backup_path(&p), dir.path().join("grubenv.bak"));
        // As the VM build and the README do: grub-editenv creates the primary, the agent
        // creates the backup beside it.
        std::fs::write(&p, GrubEnv::new().to_block().unwrap()).unwrap();
        let b = GrubBoot::new(&p, 3, None);
        b.provision(Slot::A).unwrap();
        let bak = dir.path().join("grubenv.bak");
        let m = std::fs::metadata(&bak).unwrap();
        assert_eq!(m.len(), 1024);
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&bak).unwrap());
        let inodes = (
            std::fs::metadata(&p).unwrap().ino(),
            std::fs::metadata(&bak).unwrap().ino(),
        );
        // Every change goes into both, each in place.
        b.activate(Slot::B).unwrap();
        b.commit(Slot::B).unwrap();
        assert_eq!(vars(&b)[0], ("NP_ORDER".to_string(), "b a".to_string()));
        assert_eq!(
            (
                std::fs::metadata(&p).unwrap().ino(),
                std::fs::metadata(&bak).unwrap().ino()
            ),
            inodes
        );
        let rec = b.record().unwrap();
        assert_eq!(rec["in_force"], "primary");
        assert_eq!(rec["backup"], bak.to_str().unwrap());
        // A backup that is a link someone planted is not written through.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b.read().unwrap().0.to_block().unwrap()).unwrap();
        std::fs::remove_file(&bak).unwrap();
        std::os::unix::fs::symlink(&target, &bak).unwrap();
        assert!(matches!(b.mark_bad(Slot::A), Err(BootError::Io { ref path, .. }) if *path == bak));
        assert_eq!(
            std::fs::read(&target).unwrap(),
            std::fs::read(&p).unwrap(),
            "nothing written through the link"
        );
    }

    /// A torn primary (a power cut in the middle of its in-place write): the backup is in
    /// force, and the next change rewrites the primary first, then the backup.
    #[test]
    fn a_torn_primary_gives_way_to_the_backup_and_is_repaired() {
        let (_dir, b) = two_copies();
        let good = std::fs::read(&b.path).unwrap();
        let state = b.read().unwrap().1;
        assert_eq!(state.first, Slot::B);
        // Half new, half old, where a long variable grew across the sector boundary: the
        // first sector of a block with a 600-byte value, the second of one with 300.
        let with = |n: usize| {
            let mut e = b.read().unwrap().0;
            e.set("note", &"n".repeat(n)).unwrap();
            e.to_block().unwrap()
        };
        let mut half = with(600)[..512].to_vec();
        half.extend_from_slice(&with(300)[512..]);
        assert!(
            GrubEnv::parse(&half).is_err(),
            "the mix must not be a block"
        );
        let mut zeros = good[..512].to_vec();
        zeros.resize(1024, 0);
        let mut garbage = good.clone();
        for (i, x) in garbage[512..].iter_mut().enumerate() {
            *x = (i * 7 + 3) as u8;
        }
        let empty = GrubEnv::new().to_block().unwrap();
        let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
            ("zeros in the second sector", Some(zeros)),
            ("garbage in the second sector", Some(garbage)),
            ("half old, half new", Some(half)),
            ("a 1023-byte file", Some(good[..1023].to_vec())),
            ("a block without NP_ORDER", Some(empty)),
            ("no primary at all", None),
        ];
        for (what, torn) in cases {
            match &torn {
                Some(bytes) => std::fs::write(&b.path, bytes).unwrap(),
                None => std::fs::remove_file(&b.path).unwrap(),
            }
            assert_eq!(b.read().unwrap().1, state, "{what}: the backup's state");
            assert_eq!(b.tries(Slot::B).unwrap(), Some(0), "{what}");
            assert_eq!(b.record().unwrap()["in_force"], "backup", "{what}");
            // A change that changes no variable still repairs the primary, first.
            let mut log = Vec::new();
            b.update_with(|s| s.commit(Slot::A), &mut recording(&mut log))
                .unwrap();
            assert_eq!(log, std::slice::from_ref(&b.path), "{what}");
            assert_eq!(std::fs::read(&b.path).unwrap(), good, "{what}: repaired");
            assert_eq!(b.record().unwrap()["in_force"], "primary", "{what}");
            // A real change with a torn primary: primary first, then the backup.
            std::fs::write(&b.path, &good[..700]).unwrap();
            let mut log = Vec::new();
            b.update_with(|s| s.mark_bad(Slot::A), &mut recording(&mut log))
                .unwrap();
            assert_eq!(log, [b.path.clone(), b.backup.clone()], "{what}");
            assert!(!b.read().unwrap().1.a_ok);
            vars(&b);
            std::fs::write(&b.path, &good).unwrap();
            std::fs::write(&b.backup, &good).unwrap();
        }
    }

    /// A torn backup: the primary is in force, and the backup is rewritten (even when no
    /// variable changes, as at every start of the agent).
    #[test]
    fn a_torn_backup_is_ignored_and_repaired() {
        let (_dir, b) = two_copies();
        let good = std::fs::read(&b.path).unwrap();
        let state = b.read().unwrap().1;
        let mut torn = good[..512].to_vec();
        torn.resize(1024, 0);
        for bak in [Some(torn), Some(b"# GRUB".to_vec()), None] {
            match &bak {
                Some(bytes) => std::fs::write(&b.backup, bytes).unwrap(),
                None => std::fs::remove_file(&b.backup).unwrap(),
            }
            assert_eq!(b.read().unwrap().1, state);
            assert_eq!(b.record().unwrap()["in_force"], "primary");
            let mut log = Vec::new();
            b.update_with(|s| s.commit(Slot::A), &mut recording(&mut log))
                .unwrap();
            assert_eq!(log, std::slice::from_ref(&b.backup));
            vars(&b);
            // Nothing to repair: nothing written.
            let mut log = Vec::new();
            b.update_with(|s| s.commit(Slot::A), &mut recording(&mut log))
                .unwrap();
            assert!(log.is_empty(), "{log:?}");
        }
    }

    #[test]
    fn no_usable_copy_is_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let b = GrubBoot::new(&dir.path().join("grubenv"), 3, None);
        // Both missing: the box was never provisioned.
        for r in [
            b.commit(Slot::A),
            b.tries(Slot::A).map(|_| ()),
            b.record().map(|_| ()),
        ] {
            assert!(matches!(r, Err(BootError::Missing { .. })), "{r:?}");
        }
        // Both torn: refused, nothing written, both copies named.
        let mut torn = GrubSlots::provisioned(Slot::A, 3);
        torn.activate(Slot::B);
        let mut env = GrubEnv::new();
        torn.to_env(&mut env).unwrap();
        let block = env.to_block().unwrap();
        let mut p = block[..512].to_vec();
        p.resize(1024, 0);
        std::fs::write(&b.path, &p).unwrap();
        std::fs::write(&b.backup, &block[..100]).unwrap();
        let e = b.started(Slot::A).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, BootError::Corrupt { .. }), "{msg}");
        assert!(
            msg.contains("grubenv.bak") && msg.contains("1024 bytes, this one is 100"),
            "{msg}"
        );
        assert!(msg.contains("without a newline"), "{msg}");
        assert_eq!(std::fs::read(&b.path).unwrap(), p);
        assert_eq!(std::fs::read(&b.backup).unwrap(), &block[..100]);
        // Primary missing, backup torn.
        std::fs::remove_file(&b.path).unwrap();
        let msg = b.activate(Slot::A).unwrap_err().to_string();
        assert!(
            msg.contains("no such file") && msg.contains("grubenv.bak"),
            "{msg}"
        );
        // provision starts afresh from there, both copies whole.
        b.provision(Slot::A).unwrap();
        assert_eq!(vars(&b)[0], ("NP_ORDER".to_string(), "a b".to_string()));
    }

    /// The order of the writes, and a failure between them: the backup is written first,
    /// so a cut before the primary leaves the primary's (old) state in force, whole, and
    /// the next change brings the backup back in line.
    #[test]
    fn the_backup_is_written_before_the_primary() {
        let (_dir, b) = two_copies();
        assert_eq!(grub_boot(&b), Slot::B);
        let old = b.read().unwrap().1;
        let mut log = Vec::new();
        b.update_with(|s| s.commit(Slot::B), &mut recording(&mut log))
            .unwrap();
        assert_eq!(log, [b.backup.clone(), b.path.clone()]);
        vars(&b);
        // The power goes after the backup is written.
        let before = snapshot(&b);
        let mut log = Vec::new();
        let r = b.update_with(|s| s.mark_bad(Slot::B), &mut |p: &Path, bytes: &[u8]| {
            log.push(p.to_owned());
            if p == b.path {
                return Err(BootError::Io {
                    path: p.to_owned(),
                    source: std::io::Error::other("injected power cut"),
                });
            }
            GrubBoot::write_copy(p, bytes)
        });
        assert!(matches!(r, Err(BootError::Io { .. })));
        assert_eq!(log, [b.backup.clone(), b.path.clone()]);
        assert_eq!(std::fs::read(&b.path).unwrap(), before[0].clone().unwrap());
        let mut committed = old;
        committed.commit(Slot::B);
        assert_eq!(b.read().unwrap().1, committed, "the primary, old and whole");
        assert!(
            !GrubSlots::from_env(&GrubEnv::parse(&std::fs::read(&b.backup).unwrap()).unwrap())
                .unwrap()
                .b_ok
        );
        // Retried: both copies hold the new state.
        b.mark_bad(Slot::B).unwrap();
        assert_eq!(vars(&b)[0], ("NP_ORDER".to_string(), "a b".to_string()));
        // A stale backup with the same variables as the primary in force is rewritten
        // even by a change that changes nothing.
        std::fs::write(&b.backup, before[1].clone().unwrap()).unwrap();
        b.mark_bad(Slot::B).unwrap();
        vars(&b);
    }

    use super::super::grubenv::BLOCK_SIZE;

    type Tear = fn(&[u8], Option<&[u8]>) -> Vec<u8>;

    /// A writer that writes `k` copies, then tears the next one (or leaves it, with no
    /// tear) and fails: a power cut.
    fn cut_in(
        k: usize,
        tear: Option<&Tear>,
    ) -> impl FnMut(&Path, &[u8]) -> Result<(), BootError> + '_ {
        let mut n = 0;
        move |p: &Path, bytes: &[u8]| {
            n += 1;
            if n <= k {
                return GrubBoot::write_copy(p, bytes);
            }
            if let Some(tear) = tear {
                // What was there, as the 1024 bytes on the disk the write goes to.
                let mut prev = std::fs::read(p).ok();
                if let Some(v) = &mut prev {
                    v.resize(BLOCK_SIZE, 0);
                }
                std::fs::write(p, tear(bytes, prev.as_deref())).unwrap();
            }
            Err(BootError::Io {
                path: p.to_owned(),
                source: std::io::Error::other("power cut"),
            })
        }
    }

    /// A power cut at every instant of every transition (before a write, or in the middle
    /// of one, tearing it in several ways): one copy is always whole and in force, with the
    /// old or the new state, and the next transition repairs the other.
    #[test]
    fn a_power_cut_at_any_instant_leaves_a_whole_copy() {
        type Change = Box<dyn Fn(&GrubBoot, &mut Put<'_>) -> Result<(), BootError>>;
        let up =
            |f: fn(&mut GrubSlots)| -> Change { Box::new(move |b, put| b.update_with(f, put)) };
        let steps: Vec<(&str, Change)> = vec![
            (
                "provision a",
                Box::new(|b, put| b.provision_with(Slot::A, put)),
            ),
            ("started a", up(|s| s.commit(Slot::A))),
            ("mark b bad", up(|s| s.mark_bad(Slot::B))),
            ("activate b", up(|s| s.activate(Slot::B))),
            ("commit b", up(|s| s.commit(Slot::B))),
            ("activate a", up(|s| s.activate(Slot::A))),
            ("mark a bad", up(|s| s.mark_bad(Slot::A))),
            ("started b", up(|s| s.commit(Slot::B))),
        ];
        let dir = tempfile::tempdir().unwrap();
        let b = GrubBoot::new(&dir.path().join("grubenv"), 3, None);
        // Another tool's long variable makes the two sectors of a block differ.
        let mut e = GrubEnv::new();
        e.set("note", &"n".repeat(480)).unwrap();
        std::fs::write(&b.path, e.to_block().unwrap()).unwrap();
        let tears: [Tear; 4] = [
            // the first sector new, the second old (or zeros where there was none)
            |new, old| {
                let mut t = new[..512].to_vec();
                t.extend_from_slice(old.map_or(&[0u8; 512][..], |o| &o[512..]));
                t
            },
            // the first sector old, the second new
            |new, old| {
                let mut t = old.map_or(vec![0u8; 512], |o| o[..512].to_vec());
                t.extend_from_slice(&new[512..]);
                t
            },
            // the first 100 bytes only
            |new, old| {
                let mut t = old.map_or(vec![0u8; 1024], |o| o.to_vec());
                t[..100].copy_from_slice(&new[..100]);
                t
            },
            // a file cut short
            |new, _| new[..300].to_vec(),
        ];
        let mut cuts = 0;
        for (what, step) in &steps {
            let before = snapshot(&b);
            let old = b.read().ok().map(|r| r.1);
            step(&b, &mut GrubBoot::write_copy).unwrap();
            let new = b.read().unwrap().1;
            vars(&b);
            let writes = {
                restore(&b, &before);
                let mut log = Vec::new();
                step(&b, &mut recording(&mut log)).unwrap();
                log.len()
            };
            for k in 0..writes {
                for tear in tears.iter().map(Some).chain([None]) {
                    restore(&b, &before);
                    let r = step(&b, &mut cut_in(k, tear));
                    assert!(r.is_err());
                    cuts += 1;
                    let got = b.read().map(|r| r.1);
                    match (&got, old) {
                        (Ok(s), Some(o)) => assert!(
                            *s == o || *s == new,
                            "{what}, cut in write {k}: {s:?} is neither old nor new"
                        ),
                        (Ok(s), None) => assert_eq!(*s, new, "{what}, cut in write {k}"),
                        // Before the first provision there is no state to keep.
                        (Err(_), None) => {}
                        (Err(e), Some(_)) => panic!("{what}, cut in write {k}: {e}"),
                    }
                    // A second cut, in the next change (GRUB counting a try, say) made
                    // over the torn copy, leaves a whole copy too, old or new.
                    if let Ok(state) = &got {
                        let torn = snapshot(&b);
                        // GRUB, reading as loosely as it does, boots what the agent's
                        // copy in force says, and counts the try where the agent sees it.
                        let mut expect = *state;
                        let want = expect.boot_counted();
                        assert_eq!(grub_boot_counted(&b), want, "{what}, cut in write {k}");
                        assert_eq!(b.read().unwrap().1, expect, "{what}, cut in write {k}");
                        restore(&b, &torn);
                        let count = |s: &mut GrubSlots| s.a_try += 1;
                        let mut counted = *state;
                        count(&mut counted);
                        for k2 in 0..2 {
                            for tear2 in tears.iter().map(Some).chain([None]) {
                                restore(&b, &torn);
                                let _ = b.update_with(count, &mut cut_in(k2, tear2));
                                match b.read() {
                                    Ok(r) => assert!(
                                        r.1 == *state || r.1 == counted,
                                        "{what}, cuts in writes {k} and {k2}: {:?}",
                                        r.1
                                    ),
                                    Err(e) => panic!("{what}, cut in write {k}, then {k2}: {e}"),
                                }
                                cuts += 1;
                            }
                        }
                        restore(&b, &torn);
                        b.update(|_| {}).unwrap();
                        assert!(got.as_ref().is_ok_and(|s| b.read().unwrap().1 == *s));
                        vars(&b);
                    }
                }
            }
            // Leave the step done, for the next one.
            restore(&b, &before);
            step(&b, &mut GrubBoot::write_copy).unwrap();
            assert_eq!(b.read().unwrap().1, new);
            // GRUB boots in between, as it would.
            if *what == "activate b" {
                assert_eq!(grub_boot(&b), Slot::B);
            }
        }
        assert!(cuts >= 400, "{cuts} cuts");
    }

    /// GRUB's side with a torn primary: it boots from the backup, rewrites our variables
    /// into the primary (when its header is whole) and counts the try in both.
    #[test]
    fn grub_boots_from_the_backup_when_the_primary_is_torn() {
        let (_dir, b) = two_copies();
        let good = std::fs::read(&b.path).unwrap();
        // The header whole, the rest not a block: GRUB's save_env repairs it.
        let mut torn = GrubEnv::new().to_block().unwrap();
        torn[600] = b'x';
        std::fs::write(&b.path, &torn).unwrap();
        assert!(GrubEnv::parse(&torn).is_err());
        assert_eq!(grub_boot(&b), Slot::B);
        assert_eq!(b.tries(Slot::B).unwrap(), Some(1));
        // The header torn too: GRUB can only count in the backup; the agent repairs.
        std::fs::write(&b.path, &good[512..]).unwrap();
        assert_eq!(grub_boot(&b), Slot::B);
        assert_eq!(b.tries(Slot::B).unwrap(), Some(2));
        b.commit(Slot::B).unwrap();
        assert_eq!(b.tries(Slot::B).unwrap(), Some(0));
        vars(&b);
    }

    /// The reviewer's first finding: a primary whose header and first sector survive but
    /// whose second sector is zeros or garbage. GRUB reads our variables from it (they are
    /// all in the first sector) but cannot save into it; it must use the backup and count
    /// there, so a slot that never comes up is still abandoned after NP_MAX_TRIES boots.
    #[test]
    fn grub_uses_only_a_copy_it_can_write() {
        let (_dir, b) = two_copies();
        let good = std::fs::read(&b.path).unwrap();
        let mut zeros = good[..512].to_vec();
        zeros.resize(1024, 0);
        let mut garbage = good.clone();
        for (i, x) in garbage[512..].iter_mut().enumerate() {
            *x = (i * 7 + 3) as u8;
        }
        for (what, torn) in [("zeros", zeros), ("garbage", garbage)] {
            std::fs::write(&b.path, &good).unwrap();
            std::fs::write(&b.backup, &good).unwrap();
            std::fs::write(&b.path, &torn).unwrap();
            // GRUB reads the torn primary loosely: all six variables, valid ...
            let (_, s, writable) = np_load(&b.path).unwrap();
            assert_eq!(s, b.read().unwrap().1, "{what}");
            // ... but cannot write it: the backup is used, and counts.
            assert!(!writable, "{what}");
            assert_eq!(b.record().unwrap()["in_force"], "backup", "{what}");
            // b never comes up (no agent runs): three counted tries, then a, for good.
            let boots: Vec<_> = (0..6).map(|_| grub_boot_counted(&b)).collect();
            assert_eq!(
                boots,
                [
                    (Slot::B, true),
                    (Slot::B, true),
                    (Slot::B, true),
                    (Slot::A, true),
                    (Slot::A, true),
                    (Slot::A, true),
                ],
                "{what}"
            );
            assert_eq!(
                std::fs::read(&b.path).unwrap(),
                torn,
                "{what}: not writable"
            );
            // The agent on a sees the backup's counts and repairs the primary.
            assert_eq!(b.tries(Slot::B).unwrap(), Some(3), "{what}");
            b.started(Slot::A).unwrap();
            vars(&b);
        }
    }

    /// The second review's first finding: a trial of b panics, GRUB gives up on it and
    /// boots the committed a, whose boots are all cut before its agent comes up. Both
    /// slots are whole and out of tries: GRUB starts a new round (both TRYs from 0, the
    /// first counted) rather than booting the panicking b uncounted forever, so a keeps
    /// getting boots, and its agent, once it comes up, records the fallback.
    #[test]
    fn both_slots_out_of_tries_start_a_new_round_never_one_slot_forever() {
        for max in [1, 3] {
            let dir = tempfile::tempdir().unwrap();
            let b = GrubBoot::new(&dir.path().join("grubenv"), max, None);
            b.provision(Slot::A).unwrap();
            b.mark_bad(Slot::B).unwrap();
            b.activate(Slot::B).unwrap();
            let boots: Vec<_> = (0..4 * max).map(|_| grub_boot_counted(&b)).collect();
            let n = max as usize;
            assert!(
                boots.iter().all(|(_, counted)| *counted),
                "{max}: {boots:?}"
            );
            for round in 0..2 {
                let at = 2 * n * round;
                assert!(
                    boots[at..at + n].iter().all(|(s, _)| *s == Slot::B),
                    "{max}: {boots:?}"
                );
                assert!(
                    boots[at + n..at + 2 * n].iter().all(|(s, _)| *s == Slot::A),
                    "{max}: {boots:?}"
                );
            }
            // a's agent comes up at last: b is given up on, a keeps booting.
            b.started(Slot::A).unwrap();
            b.mark_bad(Slot::B).unwrap();
            assert_eq!(grub_boot_counted(&b), (Slot::A, true), "{max}");
        }
    }

    /// A copy GRUB reads but cannot write: it boots uncounted, by the tries as they read
    /// (the first slot with tries left), never a slot marked bad over a good one.
    #[test]
    fn a_copy_grub_cannot_write_boots_by_the_tries_it_reads() {
        let mut s = GrubSlots::provisioned(Slot::A, 3);
        s.activate(Slot::B);
        s.b_try = 3;
        assert_eq!(s.uncounted(), Slot::A);
        s.a_try = 3;
        assert_eq!(s.uncounted(), Slot::B);
        s.mark_bad(Slot::B);
        s.a_try = 3;
        assert_eq!(s.uncounted(), Slot::A);
    }

    /// The block's folder missing (the EFI system partition or the data partition not
    /// mounted): no copy is written and no folder is created below the mount point.
    #[test]
    fn a_missing_folder_of_the_block_is_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("efi/EFI/np/grubenv");
        let b = GrubBoot::new(&path, 3, None);
        let e = b.provision(Slot::A).unwrap_err().to_string();
        assert!(e.contains("efi/EFI/np does not exist"), "{e}");
        assert!(e.contains("mount the partition"), "{e}");
        assert!(!dir.path().join("efi").exists());
        std::fs::create_dir_all(dir.path().join("efi/EFI/np")).unwrap();
        b.provision(Slot::A).unwrap();
        assert_eq!(grub_boot(&b), Slot::A);
    }

    /// The reviewer's second finding, through the file: a committed a, b bad, and power cuts
    /// while a boots push NP_A_TRY to the most: GRUB keeps booting a (uncounted), never
    /// the bad b. And a primary torn after its first lines (zeros from byte 54: NP_ORDER
    /// and NP_A_OK only) is no copy at all: GRUB uses the backup.
    #[test]
    fn grub_never_boots_a_bad_slot_over_a_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let b = GrubBoot::new(&dir.path().join("grubenv"), 3, None);
        b.provision(Slot::A).unwrap();
        b.activate(Slot::B).unwrap();
        assert_eq!(grub_boot(&b), Slot::B);
        b.mark_bad(Slot::B).unwrap();
        b.started(Slot::A).unwrap();
        let boots: Vec<_> = (0..5).map(|_| grub_boot_counted(&b)).collect();
        assert_eq!(
            boots,
            [
                (Slot::A, true),
                (Slot::A, true),
                (Slot::A, true),
                (Slot::A, false),
                (Slot::A, false)
            ]
        );
        b.started(Slot::A).unwrap();
        assert_eq!(grub_boot_counted(&b), (Slot::A, true));
        b.started(Slot::A).unwrap();
        // Torn at byte 54: GRUB reads NP_ORDER and NP_A_OK only.
        let good = std::fs::read(&b.path).unwrap();
        let mut torn = good[..54].to_vec();
        torn.resize(1024, 0);
        std::fs::write(&b.path, &torn).unwrap();
        let loose = grub_load_env(&b.path).unwrap();
        assert_eq!(loose.vars().len(), 2, "{loose:?}");
        assert!(np_load(&b.path).is_none());
        assert_eq!(grub_boot_counted(&b), (Slot::A, true));
        assert_eq!(b.tries(Slot::A).unwrap(), Some(1));
        // Neither copy usable nor readable: the last resort, slot a.
        std::fs::write(&b.backup, &torn).unwrap();
        assert_eq!(grub_boot_counted(&b), (Slot::A, false));
    }

    /// A copy that parses but whose variables do not (NP_ORDER="b b") is not in force:
    /// the whole backup is, and the message for two bad copies does not ask for a new
    /// provision.
    #[test]
    fn a_copy_with_an_invalid_variable_gives_way_to_the_backup() {
        let (_dir, b) = two_copies();
        let state = b.read().unwrap().1;
        let bad = |name: &str, value: &str| {
            let mut e = b.read().unwrap().0;
            e.set(name, value).unwrap();
            e.to_block().unwrap()
        };
        for (name, value) in [
            ("NP_ORDER", "b b"),
            ("NP_ORDER", ""),
            ("NP_A_OK", "2"),
            ("NP_B_TRY", "10"),
            ("NP_MAX_TRIES", ""),
            ("NP_MAX_TRIES", "0"),
        ] {
            let good = std::fs::read(&b.backup).unwrap();
            std::fs::write(&b.path, bad(name, value)).unwrap();
            assert_eq!(b.read().unwrap().1, state, "{name}={value:?}");
            assert_eq!(b.record().unwrap()["in_force"], "backup");
            // GRUB, too.
            assert!(np_load(&b.path).is_none(), "{name}={value:?}");
            assert_eq!(grub_boot(&b), Slot::B);
            b.commit(Slot::B).unwrap();
            vars(&b);
            assert_eq!(std::fs::read(&b.path).unwrap(), good);
        }
        std::fs::write(&b.path, bad("NP_ORDER", "b b")).unwrap();
        std::fs::write(&b.backup, bad("NP_A_OK", "x")).unwrap();
        let e = b.started(Slot::A).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("NP_ORDER=\"b b\"") && msg.contains("NP_A_OK=\"x\""),
            "{msg}"
        );
        assert!(msg.contains("do not provision again"), "{msg}");
        assert_eq!(crate::error::AgentError::from(e).exit_code(), 1);
    }

    /// The reviewer's third finding: a backup that cannot be written (a link, a folder, a
    /// full disk) must not stop the start from resetting TRY in the primary; changes that
    /// must fail closed still fail, naming the backup.
    /// The mirror image: a primary that is a folder is no copy; the backup is in force,
    /// `status` says why the primary is not, and a start still resets the tries in the
    /// backup. A primary that is a symbolic link is refused outright: GRUB's ext driver
    /// follows it (and counts in it), the agent does not.
    #[test]
    fn a_primary_folder_gives_way_and_a_primary_link_is_refused() {
        let (dir, b) = two_copies();
        assert_eq!(grub_boot(&b), Slot::B);
        b.commit(Slot::B).unwrap();
        std::fs::remove_file(&b.path).unwrap();
        std::fs::create_dir(&b.path).unwrap();
        // GRUB's double reads the backup (GRUB cannot read a folder as a block).
        let (mut env, mut s) = b.read().unwrap();
        assert_eq!(s.boot(), Slot::B);
        s.to_env(&mut env).unwrap();
        std::fs::write(&b.backup, env.to_block().unwrap()).unwrap();
        let rec = b.record().unwrap();
        assert_eq!(rec["in_force"], "backup");
        let problem = rec["primary_problem"].as_str().unwrap().to_owned();
        assert!(
            problem.ends_with("grubenv is a directory; the boot record must be a regular file"),
            "{problem}"
        );
        assert_eq!(b.tries(Slot::B).unwrap(), Some(1));
        b.started(Slot::B).unwrap();
        assert_eq!(b.tries(Slot::B).unwrap(), Some(0));
        let e = b.mark_bad(Slot::A).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        std::fs::remove_dir(&b.path).unwrap();
        // A link to a whole block: refused, naming the setting to change.
        let real = dir.path().join("grubenv.real");
        std::fs::copy(&b.backup, &real).unwrap();
        std::os::unix::fs::symlink(&real, &b.path).unwrap();
        let e = b.started(Slot::B).unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") && e.contains("mv -f TARGET"),
            "{e}"
        );
        assert!(b.record().is_err());
        std::fs::remove_file(&b.path).unwrap();
        std::fs::copy(&real, &b.path).unwrap();
        assert!(b.record().unwrap()["primary_problem"].is_null());
    }

    /// GRUB counts in the copy it can write, which may be the backup while the agent's
    /// copy in force is the primary: the tries the agent reads are the most any valid
    /// copy holds, so a trial GRUB tried never reads as never tried.
    #[test]
    fn tries_are_the_most_any_valid_copy_holds() {
        let (_dir, b) = two_copies();
        let (mut env, mut s) = b.read().unwrap();
        s.b_try = 3;
        s.to_env(&mut env).unwrap();
        std::fs::write(&b.backup, env.to_block().unwrap()).unwrap();
        assert_eq!(b.record().unwrap()["in_force"], "primary");
        assert_eq!(b.read().unwrap().1.b_try, 0);
        assert_eq!(b.tries(Slot::B).unwrap(), Some(3));
        assert!(b.chose_over(Slot::A, Slot::B).unwrap());
        assert!(!b.chose_over(Slot::B, Slot::A).unwrap());
    }

    #[test]
    fn a_start_resets_the_tries_even_when_the_backup_cannot_be_written() {
        let (dir, b) = two_copies();
        assert_eq!(grub_boot(&b), Slot::B);
        b.commit(Slot::B).unwrap();
        let target = dir.path().join("elsewhere");
        type Make<'a> = Box<dyn Fn() + 'a>;
        let cases: Vec<(&str, Make<'_>)> = vec![
            (
                "is a symbolic link; the boot record must be a regular file",
                Box::new(|| std::os::unix::fs::symlink(&target, &b.backup).unwrap()),
            ),
            (
                "is a directory; the boot record must be a regular file",
                Box::new(|| std::fs::create_dir(&b.backup).unwrap()),
            ),
        ];
        for (why, make) in cases {
            let _ = std::fs::remove_file(&b.backup);
            make();
            assert_eq!(grub_boot(&b), Slot::B);
            assert_eq!(b.tries(Slot::B).unwrap(), Some(1));
            b.started(Slot::B).unwrap();
            assert_eq!(b.tries(Slot::B).unwrap(), Some(0), "{why}");
            let rec = b.record().unwrap();
            let problem = rec["backup_problem"].as_str().unwrap().to_owned();
            assert!(problem.contains(why), "{problem}");
            // Marking a slot bad fails closed, naming the backup and why.
            let e = b.mark_bad(Slot::A).unwrap_err().to_string();
            assert!(e.contains("grubenv.bak") && e.contains(why), "{e}");
            assert!(!target.exists(), "nothing written through the link");
            let _ = std::fs::remove_file(&b.backup);
            let _ = std::fs::remove_dir(&b.backup);
        }
        // A full disk: the backup's write fails; the primary is still rewritten.
        b.started(Slot::B).unwrap();
        assert_eq!(grub_boot(&b), Slot::B);
        let mut log = Vec::new();
        let skipped = b
            .started_with(Slot::B, &mut |p: &Path, bytes: &[u8]| {
                log.push(p.to_owned());
                if p == b.backup {
                    return Err(BootError::Io {
                        path: p.to_owned(),
                        source: std::io::Error::other("No space left on device"),
                    });
                }
                GrubBoot::write_copy(p, bytes)
            })
            .unwrap();
        assert_eq!(log, [b.backup.clone(), b.path.clone()]);
        assert!(skipped.unwrap().contains("No space left"));
        assert_eq!(b.read().unwrap().1.b_try, 0);
        assert!(b.record().unwrap()["backup_problem"]
            .as_str()
            .unwrap()
            .contains("does not hold the block in force"));
        // Whole again at the next change; no problem reported.
        b.started(Slot::B).unwrap();
        vars(&b);
        assert!(b.record().unwrap()["backup_problem"].is_null());
    }
}
