//! Releases in the store: tree `releases`, key = the version string, value = the JSON
//! [`ReleaseRecord`] (the manifest, its signed envelope and the rollout state). Creating a
//! release checks the key is absent and writes the release and its audit entry in one
//! transaction, so two uploads of one version cannot both win and the log never misses one; changes go through a transaction. Every write is flushed before returning.

use super::Change;
use super::{decode, encode, SledStore, StoreError};
use crate::domain::offers::ReleaseEntry;
use crate::domain::plan::{Figures, PlanState};
use jiff::Timestamp;
use np_common::docs::Release;
use np_common::{Envelope, Version};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional as _};

const TREE: &str = "releases";

/// A published release and its rollout state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// The manifest as signed.
    pub release: Release,
    /// The signed manifest envelope.
    pub manifest: Envelope,
    /// Share of boxes (0..=100) that are offered it.
    pub rollout_percent: u8,
    /// A paused rollout offers it to nobody (staff actions still can).
    pub paused: bool,
    /// A yanked release is never offered nor downloadable.
    pub yanked: bool,
    /// When it was published.
    pub created_at: Timestamp,
    /// Who published it (token name).
    pub created_by: String,
    /// When its rollout state last changed.
    pub updated_at: Timestamp,
    /// A staged rollout plan, if the release has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanState>,
    /// Why the guard paused it, while it stays paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt: Option<Halt>,
    /// The guard's epoch, raised by every resume of a halt: the guard counts only the
    /// boxes whose first attempt came in the current one.
    #[serde(default)]
    pub guard_epoch: u32,
    /// When the last resume of a halt raised [`ReleaseRecord::guard_epoch`]: a report
    /// about something a box did before then (an offline receipt uploaded late) counts in
    /// the epoch before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_since: Option<Timestamp>,
}

/// The guard's pause of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Halt {
    /// When it halted.
    pub at: Timestamp,
    /// The attempts and failures it counted (since the last resume).
    pub figures: Figures,
    /// The plan's threshold then.
    pub max_failure_percent: u8,
}

impl ReleaseRecord {
    /// The percent in force at `now`: the plan's stage (or a staff percent set in it), or
    /// the fixed percent of a release without a plan.
    pub fn percent_at(&self, now: Timestamp) -> u8 {
        match &self.plan {
            Some(p) => p.progress(now).percent,
            None => self.rollout_percent,
        }
    }

    /// Pauses or resumes at `now`, keeping the plan's hold clock in step. Resuming a
    /// halt starts a new guard epoch: the guard counts only boxes that try it later.
    pub fn set_paused(&mut self, paused: bool, now: Timestamp) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        if let Some(p) = &mut self.plan {
            if paused {
                p.pause(now);
            } else {
                p.resume(now);
            }
        }
        if !paused && self.halt.take().is_some() {
            self.guard_epoch = self.guard_epoch.saturating_add(1);
            self.guard_since = Some(now);
        }
    }

    /// The part the offer logic looks at, at `now`.
    pub fn entry(&self, now: Timestamp) -> ReleaseEntry {
        ReleaseEntry {
            release: self.release.clone(),
            manifest: self.manifest.clone(),
            rollout_percent: self.percent_at(now),
            paused: self.paused,
            yanked: self.yanked,
        }
    }
}

/// Why a release change did not happen.
#[derive(Debug)]
pub enum ReleaseChangeError<E> {
    /// No release has that version.
    NotFound,
    /// The caller's closure refused the change.
    Rejected(E),
    /// The store failed.
    Store(StoreError),
}

/// The audit entry of a release change: the snapshots before and after.
pub type AuditSnapshots = (serde_json::Value, serde_json::Value);

enum Abort<E> {
    NotFound,
    Rejected(E),
    Corrupt(StoreError),
}

impl SledStore {
    fn releases_tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(TREE)?)
    }

    /// Every release, newest version first.
    pub fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.releases_tree()?.iter() {
            let (k, v) = item?;
            out.push(decode::<ReleaseRecord>(&String::from_utf8_lossy(&k), &v)?);
        }
        out.sort_by(|a, b| b.release.version.cmp(&a.release.version));
        Ok(out)
    }

    /// The release with this version, if any.
    pub fn release(&self, version: &Version) -> Result<Option<ReleaseRecord>, StoreError> {
        let key = version.to_string();
        match self.releases_tree()?.get(key.as_bytes())? {
            Some(v) => Ok(Some(decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    /// Stores a new release and, in the same transaction, its audit entry (`after` is the
    /// snapshot to record; nothing is audited when `change.actor` is `None`); `false` when
    /// that version exists already (nothing written).
    pub async fn insert_release(
        &self,
        record: &ReleaseRecord,
        change: &Change<'_>,
        after: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let key = record.release.version.to_string();
        let releases = self.releases_tree()?;
        let trees = (&releases, &self.audit, &self.audit_by_serial);
        let result = trees.transaction(|(rel, audit, idx)| {
            if rel.get(key.as_bytes())?.is_some() {
                return Err(ConflictableTransactionError::Abort(()));
            }
            rel.insert(key.as_bytes(), encode(record))?;
            if let Some(actor) = change.actor {
                let entry = super::AuditEntry {
                    id: audit.generate_id()?,
                    at: change.at,
                    actor: actor.to_owned(),
                    action: change.action.to_owned(),
                    serial: None,
                    before: None,
                    after: Some(after.clone()),
                };
                super::audit::append_in(audit, idx, &entry)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(())) => return Ok(false),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        }
        self.flush().await?;
        Ok(true)
    }

    /// Changes the release `version` with `f` in one transaction, flushes, and returns the
    /// record before and after.
    pub async fn update_release<E, F>(
        &self,
        version: &Version,
        f: F,
    ) -> Result<(ReleaseRecord, ReleaseRecord), ReleaseChangeError<E>>
    where
        F: Fn(&mut ReleaseRecord) -> Result<(), E>,
    {
        let tree = self.releases_tree().map_err(ReleaseChangeError::Store)?;
        let key = version.to_string();
        let result = tree.transaction(|t| {
            let Some(v) = t.get(key.as_bytes())? else {
                return Err(ConflictableTransactionError::Abort(Abort::NotFound));
            };
            let before: ReleaseRecord = decode(&key, &v)
                .map_err(|e| ConflictableTransactionError::Abort(Abort::Corrupt(e)))?;
            let mut after = before.clone();
            f(&mut after).map_err(|e| ConflictableTransactionError::Abort(Abort::Rejected(e)))?;
            if after != before {
                t.insert(key.as_bytes(), encode(&after))?;
            }
            Ok((before, after))
        });
        let pair = result.map_err(|e| match e {
            TransactionError::Abort(Abort::NotFound) => ReleaseChangeError::NotFound,
            TransactionError::Abort(Abort::Rejected(e)) => ReleaseChangeError::Rejected(e),
            TransactionError::Abort(Abort::Corrupt(s)) => ReleaseChangeError::Store(s),
            TransactionError::Storage(s) => ReleaseChangeError::Store(StoreError::Sled(s)),
        })?;
        self.flush().await.map_err(ReleaseChangeError::Store)?;
        Ok(pair)
    }

    /// Like [`Store::update_release`], and when the record changed, appends in the same
    /// transaction the audit entry by `change.actor` whose snapshots `audit` gives.
    pub async fn update_release_audited<E, F, A>(
        &self,
        version: &Version,
        change: &Change<'_>,
        f: F,
        audit: A,
    ) -> Result<(ReleaseRecord, ReleaseRecord), ReleaseChangeError<E>>
    where
        F: Fn(&mut ReleaseRecord) -> Result<(), E>,
        A: Fn(&ReleaseRecord, &ReleaseRecord) -> AuditSnapshots,
    {
        let releases = self.releases_tree().map_err(ReleaseChangeError::Store)?;
        let key = version.to_string();
        let trees = (&releases, &self.audit, &self.audit_by_serial);
        let result = trees.transaction(|(rel, audit_tree, idx)| {
            let Some(v) = rel.get(key.as_bytes())? else {
                return Err(ConflictableTransactionError::Abort(Abort::NotFound));
            };
            let before: ReleaseRecord = decode(&key, &v)
                .map_err(|e| ConflictableTransactionError::Abort(Abort::Corrupt(e)))?;
            let mut after = before.clone();
            f(&mut after).map_err(|e| ConflictableTransactionError::Abort(Abort::Rejected(e)))?;
            if after != before {
                rel.insert(key.as_bytes(), encode(&after))?;
            }
            if let Some(actor) = change.actor {
                let (b, a) = audit(&before, &after);
                let entry = super::AuditEntry {
                    id: audit_tree.generate_id()?,
                    at: change.at,
                    actor: actor.to_owned(),
                    action: change.action.to_owned(),
                    serial: None,
                    before: Some(b),
                    after: Some(a),
                };
                super::audit::append_in(audit_tree, idx, &entry)?;
            }
            Ok((before, after))
        });
        let pair = result.map_err(|e| match e {
            TransactionError::Abort(Abort::NotFound) => ReleaseChangeError::NotFound,
            TransactionError::Abort(Abort::Rejected(e)) => ReleaseChangeError::Rejected(e),
            TransactionError::Abort(Abort::Corrupt(s)) => ReleaseChangeError::Store(s),
            TransactionError::Storage(s) => ReleaseChangeError::Store(StoreError::Sled(s)),
        })?;
        self.flush().await.map_err(ReleaseChangeError::Store)?;
        Ok(pair)
    }
}
