//! Downloads an offered image straight into the inactive slot: hashed as it is written,
//! never past the manifest's size, resumed with `Range` after a cut connection or a
//! restart (the bytes already in the slot are re-hashed first), partial bytes discarded
//! on a hash mismatch. `downloads/<sha256>.json` keeps only what a resume needs.

use crate::agent::Agent;
use crate::client::{network, Client, ClientError};
use crate::error::AgentError;
use crate::slots::{SlotError, SlotWriter, CHUNK};
use crate::state::Slot;
use np_common::api::EventKind;
use np_common::docs::Release;
use np_common::ImageError;
use np_fsutil as fsutil;
use serde::{Deserialize, Serialize};
use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

/// How many times one fetch reconnects after a cut before it gives up (and leaves the
/// bytes for a later resume).
const ATTEMPTS: u32 = 5;

/// What a resumed download needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Resume {
    version: np_common::Version,
    sha256: np_common::Sha256Digest,
    size: u64,
    slot: Slot,
    url: String,
}

fn resume_path(agent: &Agent, release: &Release) -> PathBuf {
    agent
        .cfg
        .state_dir
        .join("downloads")
        .join(format!("{}.json", release.image.sha256))
}

/// Fetches `release`'s image from `url` into the inactive slot; returns the slot, which
/// the caller makes valid with `finish_write`.
pub fn fetch(
    agent: &mut Agent,
    client: &Client,
    url: &str,
    release: &Release,
) -> Result<Slot, AgentError> {
    let url = client.resolve(url);
    let rpath = resume_path(agent, release);
    let had_resume = std::fs::read(&rpath)
        .ok()
        .and_then(|b| serde_json::from_slice::<Resume>(&b).ok());
    let (slot, same) = agent.begin_write(release)?;
    let image = agent.slots.image(slot);
    let mut offset = 0;
    if same
        && had_resume
            .as_ref()
            .is_some_and(|r| r.slot == slot && r.sha256 == release.image.sha256)
    {
        offset = std::fs::metadata(&image)
            .map(|m| m.len())
            .unwrap_or(0)
            .min(release.image.size);
    }
    let record = Resume {
        version: release.version.clone(),
        sha256: release.image.sha256,
        size: release.image.size,
        slot,
        url: url.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    fsutil::write_atomic(&rpath, &bytes, fsutil::PRIVATE).map_err(|source| AgentError::Io {
        what: format!("cannot write {}", rpath.display()),
        source,
    })?;
    agent.event(
        Some(&release.version),
        EventKind::Download,
        &format!(
            "downloading {} bytes into slot {slot} from byte {offset}",
            release.image.size
        ),
    );
    let mut last_err = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
        }
        match fetch_once(client, &url, release, &image, offset) {
            Ok(()) => {
                let _ = fsutil::remove_durable(&rpath);
                return Ok(slot);
            }
            Err(Fetch::Cut { at, error }) => {
                tracing::warn!("download cut at byte {at} ({error}); resuming with Range");
                offset = at;
                last_err = Some(error);
            }
            Err(Fetch::Fatal(e)) => {
                let _ = fsutil::remove_durable(&rpath);
                agent.abort_write(slot, release, &e);
                return Err(e);
            }
        }
    }
    Err(AgentError::Client(
        last_err.unwrap_or_else(|| network(&url, "no attempt made")),
    ))
}

enum Fetch {
    /// The connection broke after `at` good bytes: resume from there.
    Cut { at: u64, error: ClientError },
    /// The bytes are wrong: discard them.
    Fatal(AgentError),
}

fn fetch_once(
    client: &Client,
    url: &str,
    release: &Release,
    image: &std::path::Path,
    offset: u64,
) -> Result<(), Fetch> {
    let size = release.image.size;
    let sha = release.image.sha256;
    let fatal = |e: SlotError| Fetch::Fatal(e.into());
    let mut w = match SlotWriter::resume(image, size, sha, offset) {
        Ok(w) => w,
        Err(SlotError::Image(_)) => SlotWriter::create(image, size, sha).map_err(fatal)?,
        Err(e) => return Err(fatal(e)),
    };
    let cut = |at: u64, error: ClientError| Fetch::Cut { at, error };
    let mut resp = client.get_blob(url, w.written()).map_err(|e| match e {
        ClientError::Network { .. } => cut(offset, e),
        e => Fetch::Fatal(e.into()),
    })?;
    if w.written() > 0 && resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
        tracing::warn!("the server ignored the Range request; downloading from byte 0");
        drop(w);
        w = SlotWriter::create(image, size, sha).map_err(fatal)?;
    } else if w.written() > 0 {
        tracing::info!("resumed the download at byte {} with Range", w.written());
    }
    if let Some(len) = resp.content_length() {
        if len > size - w.written() {
            return Err(Fetch::Fatal(ImageError::TooLong { expected: size }.into()));
        }
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let at = w.written();
                drop(w);
                return Err(cut(at, network(url, e)));
            }
        };
        w.write(&buf[..n]).map_err(fatal)?;
    }
    let at = w.written();
    if at < size {
        drop(w);
        return Err(cut(
            at,
            network(url, format!("the body ended after {at} of {size} bytes")),
        ));
    }
    w.finish().map_err(fatal)?;
    Ok(())
}
