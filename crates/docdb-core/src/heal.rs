//! Self-healing (SPEC §5): a document whose data-file record fails its checksum is
//! rebuilt from the newest intact copy in the WAL — the record of the very commit that
//! wrote the version — and the repair is committed like any write (new WAL record, new
//! data-file record), so later reads and restarts need no healing. A version with no
//! intact copy left (its WAL segment was trimmed) is reported as unrecoverable, never
//! served as garbage.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::commit::{DocKind, StagedOp};
use crate::db::{Database, Inner};
use crate::error::{Error, Result};
use crate::index::{Collection, Version};
use crate::wal::find::{find_payloads, VersionKey};

/// Healing statistics (the HealStats reply).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealStats {
    pub total_scans: u64,
    pub documents_healed: u64,
    pub documents_corrupted: u64,
    pub on_demand_healings: u64,
    pub background_healings: u64,
    pub last_scan_time: Option<SystemTime>,
    pub last_healing_time: Option<SystemTime>,
    /// Documents found corrupt with no intact copy left: (collection, id).
    pub unrecoverable: Vec<(String, u64)>,
}

/// What one HealAll or background scan did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealReport {
    /// Documents checked.
    pub scanned: u64,
    pub healed: Vec<(String, u64)>,
    pub unrecoverable: Vec<(String, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct HealState {
    scans: AtomicU64,
    healed: AtomicU64,
    corrupted: AtomicU64,
    on_demand: AtomicU64,
    background: AtomicU64,
    last_scan: Mutex<Option<SystemTime>>,
    last_heal: Mutex<Option<SystemTime>>,
    /// (collection, id) → the corrupt version's seq; an entry lapses once that
    /// version is no longer the document's current one (rewritten or deleted).
    unrecoverable: Mutex<BTreeMap<(String, u64), u64>>,
}

/// Why a heal was run (for the statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealTrigger {
    Read,
    OnDemand,
    Background,
}

impl Inner {
    /// Rebuilds version `v` of `coll/id` from the WAL and commits the repair. Returns
    /// the document's bytes.
    pub(crate) fn heal_version(
        &self,
        coll: &Arc<Collection>,
        id: u64,
        v: &Version,
        trigger: HealTrigger,
    ) -> Result<Vec<u8>> {
        self.heal.corrupted.fetch_add(1, Ordering::Relaxed);
        let key: VersionKey = (coll.name.to_string(), id, v.seq);
        let wanted: HashSet<VersionKey> = [key.clone()].into_iter().collect();
        let mut found = find_payloads(&*self.storage, &self.wal_dir, &wanted)?;
        let Some(payload) = found.remove(&key) else {
            self.heal
                .unrecoverable
                .lock()
                .insert((coll.name.to_string(), id), v.seq);
            tracing::error!(db = %self.dir.display(), collection = %coll.name, id,
                "corrupt document has no intact copy left in the WAL: unrecoverable");
            return Err(Error::Corrupt {
                detail: format!(
                    "{}/{id}: no intact copy left in the WAL (unrecoverable)",
                    coll.name
                ),
            });
        };
        self.commit_repairs(&[(coll.clone(), id, v.seq, payload.clone())], trigger)?;
        Ok(payload)
    }

    /// Commits repaired payloads, each guarded so a newer write is never overwritten.
    /// Returns how many were written (a guarded-out one needs no repair any more).
    fn commit_repairs(
        &self,
        repairs: &[(Arc<Collection>, u64, u64, Vec<u8>)],
        trigger: HealTrigger,
    ) -> Result<usize> {
        let mut last = None;
        let mut written = 0;
        {
            let mut c = self.commit.lock();
            for (coll, id, seq, payload) in repairs {
                let op = StagedOp::Doc {
                    coll: coll.clone(),
                    id: *id,
                    kind: DocKind::Update,
                    payload: payload.clone(),
                    not_after: Some(*seq),
                };
                match self.stage(&mut c, std::slice::from_ref(&op)) {
                    Ok(s) => {
                        last = Some(s);
                        written += 1;
                    }
                    // Rewritten or deleted meanwhile: the corrupt version is no
                    // longer current, nothing to repair.
                    Err(Error::Conflict | Error::NotFound | Error::CollectionNotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(s) = last {
            self.wait_durable(s)?;
        }
        let n = written as u64;
        self.heal.healed.fetch_add(n, Ordering::Relaxed);
        let counter = match trigger {
            HealTrigger::Background => &self.heal.background,
            HealTrigger::Read | HealTrigger::OnDemand => &self.heal.on_demand,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        if n > 0 {
            *self.heal.last_heal.lock() = Some(SystemTime::now());
        }
        {
            let mut u = self.heal.unrecoverable.lock();
            for (coll, id, ..) in repairs {
                u.remove(&(coll.name.to_string(), *id));
            }
        }
        Ok(written)
    }

    /// Checks every live document and heals the corrupt ones.
    pub(crate) fn heal_all(&self, trigger: HealTrigger) -> Result<HealReport> {
        self.heal.scans.fetch_add(1, Ordering::Relaxed);
        let mut report = HealReport::default();
        let colls: Vec<Arc<Collection>> = self.collections.read().values().cloned().collect();
        let mut corrupt: Vec<(Arc<Collection>, u64, Version)> = Vec::new();
        for coll in &colls {
            let versions: Vec<(u64, Version)> = {
                let docs = coll.docs.read();
                let snap = self.snapshots.visible();
                docs.iter()
                    .filter_map(|(&id, ch)| ch.at(snap).filter(|v| v.is_live()).map(|v| (id, *v)))
                    .collect()
            };
            for (id, v) in versions {
                report.scanned += 1;
                match self.read_version(coll, id, &v) {
                    Ok(_) => {} // intact, or moved by a compaction meanwhile
                    Err(Error::Corrupt { .. }) => corrupt.push((coll.clone(), id, v)),
                    Err(e) => return Err(e),
                }
            }
        }
        *self.heal.last_scan.lock() = Some(SystemTime::now());
        if corrupt.is_empty() {
            return Ok(report);
        }
        self.heal
            .corrupted
            .fetch_add(corrupt.len() as u64, Ordering::Relaxed);
        let wanted: HashSet<VersionKey> = corrupt
            .iter()
            .map(|(c, id, v)| (c.name.to_string(), *id, v.seq))
            .collect();
        let mut found = find_payloads(&*self.storage, &self.wal_dir, &wanted)?;
        let mut repairs = Vec::new();
        for (coll, id, v) in corrupt {
            match found.remove(&(coll.name.to_string(), id, v.seq)) {
                Some(p) => {
                    report.healed.push((coll.name.to_string(), id));
                    repairs.push((coll, id, v.seq, p));
                }
                None => {
                    report.unrecoverable.push((coll.name.to_string(), id));
                    self.heal
                        .unrecoverable
                        .lock()
                        .insert((coll.name.to_string(), id), v.seq);
                }
            }
        }
        for chunk in repairs.chunks(self.config.healing.max_batch_size) {
            self.commit_repairs(chunk, trigger)?;
        }
        if !report.unrecoverable.is_empty() {
            tracing::error!(db = %self.dir.display(), unrecoverable = ?report.unrecoverable,
                "corrupt documents with no intact copy left in the WAL");
        }
        if !report.healed.is_empty() {
            tracing::warn!(db = %self.dir.display(), healed = ?report.healed, "healed corrupt documents from the WAL");
        }
        Ok(report)
    }

    pub(crate) fn heal_stats(&self) -> HealStats {
        let h = &self.heal;
        h.unrecoverable.lock().retain(|(coll, id), seq| {
            let c = self.collections.read().get(coll.as_str()).cloned();
            c.and_then(|c| self.version_at(&c, *id, None))
                .is_some_and(|v| v.is_live() && v.seq == *seq)
        });
        HealStats {
            total_scans: h.scans.load(Ordering::Relaxed),
            documents_healed: h.healed.load(Ordering::Relaxed),
            documents_corrupted: h.corrupted.load(Ordering::Relaxed),
            on_demand_healings: h.on_demand.load(Ordering::Relaxed),
            background_healings: h.background.load(Ordering::Relaxed),
            last_scan_time: *h.last_scan.lock(),
            last_healing_time: *h.last_heal.lock(),
            unrecoverable: h.unrecoverable.lock().keys().cloned().collect(),
        }
    }
}

impl Database {
    /// Heals one document if its record is corrupt. Returns true if it was repaired,
    /// false if it was intact.
    pub fn heal(&self, collection: &str, id: u64) -> Result<bool> {
        let coll = self.inner.collection(collection)?;
        let v = self
            .inner
            .version_at(&coll, id, None)
            .filter(Version::is_live)
            .ok_or(Error::NotFound)?;
        match self.inner.read_version(&coll, id, &v) {
            Ok(_) => Ok(false),
            Err(Error::Corrupt { .. }) => {
                self.inner
                    .heal_version(&coll, id, &v, HealTrigger::OnDemand)?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Verifies every live document and heals the corrupt ones (HealAll).
    pub fn heal_all(&self) -> Result<HealReport> {
        self.inner.heal_all(HealTrigger::OnDemand)
    }

    /// The background scan: like [`Database::heal_all`], counted as background.
    pub fn heal_scan(&self) -> Result<HealReport> {
        self.inner.heal_all(HealTrigger::Background)
    }

    pub fn heal_stats(&self) -> HealStats {
        self.inner.heal_stats()
    }
}
