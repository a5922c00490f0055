//! Signed receipts (docs/formats.md, "Receipt"): after every install, rollback (manual,
//! remote, health check, boot-loader fallback) and refused bundle the box writes one
//! `receipt`, signed by its device key, to `state_dir/outbox/` as
//! `receipt-<seq, 10 digits>.json`. `seq` only grows: it is saved in `state.json` before the
//! file is written, so a power cut between the two leaves a gap, never a reused number.
//! An offline admin copies them out with `np-agent receipts --out DIR`; an online box sends
//! them with its check-in and drops each one the server says it holds.

use crate::agent::Agent;
use np_common::api::Outcome;
use np_common::device_docs::{sign_device, Receipt};
use np_common::{Envelope, SecretKey, Sha256Digest, Version};
use np_fsutil as fsutil;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The folder of unsent receipts in `state_dir`.
pub fn outbox_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("outbox")
}

/// The file name of receipt `seq`.
pub fn file_name(seq: u64) -> String {
    format!("receipt-{seq:010}.json")
}

/// The seq of a receipt file name, or `None` for any other name.
pub fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("receipt-")?.strip_suffix(".json")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The largest receipt file read back (a receipt's detail is capped at 4 KiB).
const MAX_RECEIPT_FILE: u64 = 64 * 1024;

/// Reads the device key (a private file of ours, small).
pub fn load_device_key(path: &Path) -> Result<SecretKey, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| format!("cannot read the device key {}: {e}", path.display()))?;
    SecretKey::from_base64(&text)
        .map_err(|e| format!("the device key {} is not valid: {e}", path.display()))
}

/// One receipt file of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub path: PathBuf,
}

/// The receipts in the outbox, oldest first. A missing outbox holds none.
pub fn list(state_dir: &Path) -> std::io::Result<Vec<Stored>> {
    let dir = outbox_dir(state_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e?;
        let name = e.file_name();
        if let Some(seq) = name.to_str().and_then(seq_of) {
            out.push(Stored {
                seq,
                path: e.path(),
            });
        }
    }
    out.sort_by_key(|s| s.seq);
    Ok(out)
}

/// Reads one stored receipt (never through a link, capped).
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_RECEIPT_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECEIPT_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is larger than a receipt can be", path.display()),
        ));
    }
    Ok(bytes)
}

/// The oldest receipts of the outbox as envelopes, with their seq: at most `max`, and
/// no more than `max_bytes` of them (files that do not parse are logged and left for the
/// admin).
pub fn unsent(state_dir: &Path, max: usize, max_bytes: usize) -> Vec<(u64, Envelope)> {
    let stored = match list(state_dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot list the receipt outbox: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for s in stored.into_iter().take(max) {
        match read(&s.path).map(|b| Envelope::parse(&b)) {
            Ok(Ok(env)) => {
                bytes += env.to_json().len();
                if bytes > max_bytes && !out.is_empty() {
                    break;
                }
                out.push((s.seq, env));
            }
            Ok(Err(e)) => tracing::warn!("{}: {e}", s.path.display()),
            Err(e) => tracing::warn!("cannot read {}: {e}", s.path.display()),
        }
    }
    out
}

/// Drops the receipts the server said it holds.
pub fn drop_sent(state_dir: &Path, seqs: &[u64]) {
    let dir = outbox_dir(state_dir);
    for seq in seqs {
        let path = dir.join(file_name(*seq));
        if let Err(e) = fsutil::remove_durable(&path) {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

/// What one receipt says, before its seq and signature.
#[derive(Debug, Clone)]
pub struct ReceiptFacts {
    pub outcome: Outcome,
    pub from_version: Option<Version>,
    pub to_version: Option<Version>,
    pub image_sha256: Option<Sha256Digest>,
    pub detail: String,
}

impl Agent {
    /// Writes the next receipt to the outbox (best effort: a box without a device key, or a
    /// failed write, is logged; the install or rollback itself stands).
    pub fn write_receipt(&mut self, facts: ReceiptFacts) {
        if let Err(e) = self.try_write_receipt(facts) {
            tracing::warn!("no receipt written: {e}");
        }
    }

    fn try_write_receipt(&mut self, facts: ReceiptFacts) -> Result<u64, String> {
        let key = load_device_key(&self.cfg.device_key)
            .map_err(|e| format!("{e}; run `np-agent keygen` and register its public key"))?;
        let dir = outbox_dir(&self.cfg.state_dir);
        fsutil::ensure_dir(&dir, fsutil::PRIVATE_DIR, None, None)
            .map_err(|e| format!("cannot prepare {}: {e}", dir.display()))?;
        // The seq is saved before the file exists: a cut between leaves a gap, never a
        // number used twice.
        let seq = self.state.receipt_seq + 1;
        self.state.receipt_seq = seq;
        self.save().map_err(|e| e.to_string())?;
        let mut detail = facts.detail;
        if detail.len() > np_common::device_docs::MAX_RECEIPT_DETAIL {
            let mut cut = np_common::device_docs::MAX_RECEIPT_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        let receipt = Receipt {
            serial: self.cfg.serial.clone(),
            seq,
            from_version: facts.from_version,
            to_version: facts.to_version,
            outcome: facts.outcome,
            detail,
            at: crate::state::whole_second(self.trust.now()),
            image_sha256: facts.image_sha256,
            request_nonce: self.state.request_nonce.clone(),
        };
        let env = sign_device(&receipt, &key);
        let path = dir.join(file_name(seq));
        fsutil::write_new(&path, env.to_json_pretty().as_bytes(), fsutil::PRIVATE)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if facts.outcome == Outcome::Installed && self.state.request_nonce.take().is_some() {
            self.save().map_err(|e| e.to_string())?;
        }
        tracing::info!(seq, "receipt written to {}", path.display());
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::{Done, When};
    use crate::testkit::{self, tar_bundle, Keys, Kind};
    use np_common::device_docs::verify_device;

    const IMAGE_2: &[u8] = b"firmware 2.0.0, the receipts test";

    fn bundle_of(r: &np_common::docs::Release, image: &[u8]) -> Vec<u8> {
        let k = Keys::load();
        tar_bundle(
            &[
                ("manifest.json", Kind::File, k.sign_release(r).to_json()),
                ("image", Kind::File, image.to_vec()),
            ],
            false,
        )
    }

    fn receipts_of(agent: &Agent) -> Vec<Receipt> {
        let key = load_device_key(&agent.cfg.device_key).unwrap().public_key();
        list(&agent.cfg.state_dir)
            .unwrap()
            .iter()
            .map(|s| {
                let env = Envelope::parse(&read(&s.path).unwrap()).unwrap();
                let r: Receipt = verify_device(&env, &key, &agent.cfg.serial).unwrap();
                assert_eq!(r.seq, s.seq);
                r
            })
            .collect()
    }

    #[test]
    fn installs_rollbacks_and_refused_bundles_leave_signed_receipts_with_growing_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let key = testkit::device_key(dir.path());
        let mut agent = testkit::provisioned_box_with(
            dir.path(),
            "2099-01-01",
            &format!("device_key = \"{}\"", key.display()),
            "",
        );
        agent.state.request_nonce = Some("00112233445566778899aabbccddeeff".into());
        let r2 = testkit::release("2.0.0", 2, IMAGE_2);
        let done =
            crate::bundle::apply(&mut agent, &mut &bundle_of(&r2, IMAGE_2)[..], When::Now).unwrap();
        assert_eq!(done, Done::Installed(r2.version.clone()));
        agent
            .rollback("requested with `np-agent rollback`")
            .unwrap();
        // An older version than the running one: refused by the rule.
        let old = testkit::release("0.9.0", 2, b"old");
        let err = crate::bundle::apply(&mut agent, &mut &bundle_of(&old, b"old")[..], When::Now)
            .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        // Junk is a refused bundle too, about no version.
        assert!(crate::bundle::apply(&mut agent, &mut &b"junk"[..], When::Now).is_err());

        let got = receipts_of(&agent);
        let running = "1.0.0";
        let summary: Vec<_> = got
            .iter()
            .map(|r| {
                (
                    r.seq,
                    r.outcome,
                    r.from_version.as_ref().map(|v| v.to_string()),
                    r.to_version.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            summary,
            vec![
                (1, Outcome::Installed, s(running), s("2.0.0")),
                (2, Outcome::RolledBack, s("2.0.0"), s(running)),
                (3, Outcome::Refused, s(running), s("0.9.0")),
                (4, Outcome::Refused, s(running), None),
            ]
        );
        assert_eq!(got[0].image_sha256, Some(r2.image.sha256));
        assert_eq!(
            got[0].request_nonce.as_deref(),
            Some("00112233445566778899aabbccddeeff")
        );
        // The install that answered the request ends it: later receipts do not name it.
        assert_eq!(got[1].request_nonce, None);
        assert!(
            got[1].detail.contains("np-agent rollback"),
            "{}",
            got[1].detail
        );
        assert!(
            got[3].detail.starts_with("bundle refused: "),
            "{}",
            got[3].detail
        );

        // The seq survives a restart, and sent receipts leave the outbox.
        let reloaded = crate::state::State::load(&agent.cfg.state_dir).unwrap();
        assert_eq!(reloaded.receipt_seq, 4);
        drop_sent(&agent.cfg.state_dir, &[1, 3]);
        let left: Vec<u64> = list(&agent.cfg.state_dir)
            .unwrap()
            .iter()
            .map(|s| s.seq)
            .collect();
        assert_eq!(left, [2, 4]);
        let first = unsent(&agent.cfg.state_dir, 1, usize::MAX);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, 2);
        // A byte budget smaller than one receipt still sends the oldest one.
        let small = unsent(&agent.cfg.state_dir, 16, 10);
        assert_eq!(small.iter().map(|u| u.0).collect::<Vec<_>>(), [2]);
        assert_eq!(unsent(&agent.cfg.state_dir, 16, usize::MAX).len(), 2);
    }

    #[test]
    fn a_box_without_a_device_key_installs_but_writes_no_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let mut agent = testkit::provisioned_box_with(
            dir.path(),
            "2099-01-01",
            &format!(
                "device_key = \"{}\"",
                dir.path().join("missing.key").display()
            ),
            "",
        );
        let r2 = testkit::release("2.0.0", 2, IMAGE_2);
        crate::bundle::apply(&mut agent, &mut &bundle_of(&r2, IMAGE_2)[..], When::Now).unwrap();
        assert!(list(&agent.cfg.state_dir).unwrap().is_empty());
        assert_eq!(agent.state.receipt_seq, 0);
    }

    #[test]
    fn names_carry_the_seq_and_nothing_else_counts() {
        assert_eq!(file_name(7), "receipt-0000000007.json");
        assert_eq!(seq_of("receipt-0000000007.json"), Some(7));
        assert_eq!(seq_of("receipt-.json"), None);
        assert_eq!(seq_of("receipt-12a.json"), None);
        assert_eq!(seq_of(".receipt-1.json.tmp"), None);
        assert_eq!(seq_of("notes.txt"), None);
    }
}
