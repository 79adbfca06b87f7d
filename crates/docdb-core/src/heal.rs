//! Self-healing (SPEC §5): a document whose data-file record fails its checksum is
//! rebuilt from the newest intact copy in the WAL — the record of the very commit that
//! wrote the version — and the repair is committed like any write (new WAL record, new
//! data-file record), so later reads and restarts need no healing. A version with no
//! intact copy left (its WAL segment was trimmed) is reported as unrecoverable, never
//! served as garbage.
//!
//! HealAll and the background scan check the live documents on a few threads (at most
//! the machine's cores), each taking a slice of at most `healing.max_batch_size`
//! documents at a time, so no more than that many are in flight. The corrupt ones are
//! looked up in the WAL together (one pass over it per [`LOOKUP_BYTES`] of their
//! payloads) and their repairs are committed `max_batch_size` at a time, each batch as
//! one commit: one WAL record and one fsync, in every fsync mode.
//!
//! The statistics count distinct documents: a corrupt version found again by other
//! reads or scans before it is healed counts once in `documents_corrupted`, and its
//! repair once in `documents_healed`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// Payload bytes of corrupt documents looked up in one pass over the WAL: bounds the
/// memory a heal holds, and the passes a heavily damaged database needs.
const LOOKUP_BYTES: u64 = 64 << 20;

/// Live documents copied from the index per step of a scan.
const SCAN_PAGE: usize = 4096;

/// Threads that check documents in one scan: the machine's cores, at most 4 (a scan
/// must not take every core from client work), and never more than `batch`.
fn scan_threads(batch: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 4)
        .min(batch)
}

/// WAL payload bytes of one repair commit (well below the WAL's record limit).
const COMMIT_BYTES: usize = 64 << 20;

/// A corrupt version seen: its document's (collection, id) → (the version's seq,
/// whether its repair was written).
type Seen = HashMap<(String, u64), (u64, bool)>;

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
    /// Corrupt versions counted already, so each counts once however often it is
    /// found; an entry lapses once its version is no longer current.
    seen: Mutex<Seen>,
}

impl HealState {
    /// Counts version `seq` of `coll/id` as corrupt unless it was counted already.
    fn note_corrupt(&self, coll: &str, id: u64, seq: u64) {
        let mut seen = self.seen.lock();
        let e = seen.entry((coll.to_owned(), id)).or_insert((0, false));
        if e.0 != seq {
            *e = (seq, false);
            self.corrupted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks the repair of version `seq` of `coll/id` written; true the first time.
    fn note_healed(&self, coll: &str, id: u64, seq: u64) -> bool {
        let mut seen = self.seen.lock();
        let e = seen.entry((coll.to_owned(), id)).or_insert((seq, false));
        if e.0 != seq {
            // Found by a path that did not count it (cannot happen today): count it.
            *e = (seq, false);
            self.corrupted.fetch_add(1, Ordering::Relaxed);
        }
        !std::mem::replace(&mut e.1, true)
    }
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
        self.heal.note_corrupt(&coll.name, id, v.seq);
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

    /// Commits repaired payloads, each guarded so a newer write is never overwritten,
    /// as one commit (one WAL record, one fsync; more only past [`COMMIT_BYTES`]).
    /// Returns how many were written (a guarded-out one needs no repair any more).
    fn commit_repairs(
        &self,
        repairs: &[(Arc<Collection>, u64, u64, Vec<u8>)],
        trigger: HealTrigger,
    ) -> Result<usize> {
        let mut last = None;
        let mut written: Vec<usize> = Vec::new();
        {
            let mut c = self.group_commit.lock_commit();
            // Under the commit lock no other write can stage, so a repair whose guard
            // holds now still holds when its commit is staged below.
            let mut group: (Vec<usize>, Vec<StagedOp>) = (Vec::new(), Vec::new());
            let mut bytes = 0usize;
            for (i, (coll, id, seq, payload)) in repairs.iter().enumerate() {
                if !self.repair_applies(coll, *id, *seq) {
                    // Rewritten or deleted meanwhile: nothing to repair.
                    continue;
                }
                if !group.0.is_empty() && bytes + payload.len() > COMMIT_BYTES {
                    let full = std::mem::take(&mut group);
                    last = self.stage_repairs(&mut c, full, &mut written)?.or(last);
                    bytes = 0;
                }
                bytes += payload.len();
                group.0.push(i);
                group.1.push(StagedOp::Doc {
                    coll: coll.clone(),
                    id: *id,
                    kind: DocKind::Update,
                    payload: payload.clone(),
                    not_after: Some(*seq),
                });
            }
            if !group.0.is_empty() {
                last = self.stage_repairs(&mut c, group, &mut written)?.or(last);
            }
        }
        if let Some(s) = last {
            self.wait_durable(s)?;
        }
        let mut n = 0u64;
        for &i in &written {
            let (coll, id, seq, _) = &repairs[i];
            if self.heal.note_healed(&coll.name, *id, *seq) {
                n += 1;
            }
        }
        self.heal.healed.fetch_add(n, Ordering::Relaxed);
        let counter = match trigger {
            HealTrigger::Background => &self.heal.background,
            HealTrigger::Read | HealTrigger::OnDemand => &self.heal.on_demand,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        if !written.is_empty() {
            *self.heal.last_heal.lock() = Some(SystemTime::now());
        }
        {
            let mut u = self.heal.unrecoverable.lock();
            for (coll, id, ..) in repairs {
                u.remove(&(coll.name.to_string(), *id));
            }
        }
        Ok(written.len())
    }

    /// Whether version `seq` of `coll/id` is still the document's current, live one
    /// in the current collection of that name (else a repair has nothing to do).
    fn repair_applies(&self, coll: &Arc<Collection>, id: u64, seq: u64) -> bool {
        let current = self
            .collections
            .read()
            .get(&*coll.name)
            .is_some_and(|c| Arc::ptr_eq(c, coll));
        current && coll.latest(id).is_some_and(|v| v.is_live() && v.seq == seq)
    }

    /// Stages `group` as one commit; should that fail on a guard after all, one commit
    /// each, skipping the guarded-out ones. Records the indices written in `written`
    /// and returns the last seq staged.
    fn stage_repairs(
        &self,
        c: &mut crate::commit::CommitState,
        (idx, ops): (Vec<usize>, Vec<StagedOp>),
        written: &mut Vec<usize>,
    ) -> Result<Option<u64>> {
        match self.stage(c, &ops) {
            Ok(s) => {
                written.extend(idx);
                return Ok(Some(s));
            }
            Err(Error::Conflict | Error::NotFound | Error::CollectionNotFound) => {}
            Err(e) => return Err(e),
        }
        let mut last = None;
        for (i, op) in idx.into_iter().zip(&ops) {
            match self.stage(c, std::slice::from_ref(op)) {
                Ok(s) => {
                    last = Some(s);
                    written.push(i);
                }
                Err(Error::Conflict | Error::NotFound | Error::CollectionNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(last)
    }

    /// Checks every live document and heals the corrupt ones.
    pub(crate) fn heal_all(&self, trigger: HealTrigger) -> Result<HealReport> {
        self.heal.scans.fetch_add(1, Ordering::Relaxed);
        let mut report = HealReport::default();
        let colls: Vec<Arc<Collection>> = self.collections.read().values().cloned().collect();
        let batch = self.config.healing.max_batch_size.max(1);
        let threads = scan_threads(batch);
        let mut corrupt: Vec<(Arc<Collection>, u64, Version)> = Vec::new();
        for coll in &colls {
            // A page of the index at a time: the index lock is held only to copy it,
            // and memory stays bounded however large the collection.
            let mut after: Option<u64> = None;
            loop {
                let page: Vec<(u64, Version)> = {
                    let docs = coll.docs.read();
                    let snap = self.snapshots.visible();
                    let range = match after {
                        None => docs.range(0..),
                        Some(id) => match id.checked_add(1) {
                            Some(from) => docs.range(from..),
                            None => break,
                        },
                    };
                    range
                        .filter_map(|(&id, ch)| {
                            ch.at(snap).filter(|v| v.is_live()).map(|v| (id, *v))
                        })
                        .take(SCAN_PAGE)
                        .collect()
                };
                let Some(&(last_id, _)) = page.last() else {
                    break;
                };
                after = Some(last_id);
                report.scanned += page.len() as u64;
                for (id, v) in self.check_page(coll, &page, threads, batch)? {
                    corrupt.push((coll.clone(), id, v));
                }
                if page.len() < SCAN_PAGE {
                    break;
                }
            }
        }
        *self.heal.last_scan.lock() = Some(SystemTime::now());
        self.heal.seen.lock().retain(|(name, id), (seq, _)| {
            colls
                .iter()
                .find(|c| *c.name == **name)
                .and_then(|c| c.latest(*id))
                .is_some_and(|v| v.seq == *seq)
        });
        if corrupt.is_empty() {
            return Ok(report);
        }
        for (coll, id, v) in &corrupt {
            self.heal.note_corrupt(&coll.name, *id, v.seq);
        }
        // Look the copies up in passes of at most LOOKUP_BYTES, commit a batch at a time.
        let mut rest = &corrupt[..];
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0u64;
            while n < rest.len() && (n == 0 || bytes + u64::from(rest[n].2.len) <= LOOKUP_BYTES) {
                bytes += u64::from(rest[n].2.len);
                n += 1;
            }
            let (part, tail) = rest.split_at(n);
            rest = tail;
            let wanted: HashSet<VersionKey> = part
                .iter()
                .map(|(c, id, v)| (c.name.to_string(), *id, v.seq))
                .collect();
            let mut found = find_payloads(&*self.storage, &self.wal_dir, &wanted)?;
            let mut repairs = Vec::new();
            for (coll, id, v) in part {
                match found.remove(&(coll.name.to_string(), *id, v.seq)) {
                    Some(p) => {
                        report.healed.push((coll.name.to_string(), *id));
                        repairs.push((coll.clone(), *id, v.seq, p));
                    }
                    None => {
                        report.unrecoverable.push((coll.name.to_string(), *id));
                        self.heal
                            .unrecoverable
                            .lock()
                            .insert((coll.name.to_string(), *id), v.seq);
                    }
                }
            }
            for chunk in repairs.chunks(batch) {
                self.commit_repairs(chunk, trigger)?;
            }
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

    /// Reads every version of `page` and returns the corrupt ones, on up to `threads`
    /// threads, each claiming a slice of at most `batch / threads` documents at a time
    /// (so at most `batch` are in flight).
    fn check_page(
        &self,
        coll: &Collection,
        page: &[(u64, Version)],
        threads: usize,
        batch: usize,
    ) -> Result<Vec<(u64, Version)>> {
        let check = |part: &[(u64, Version)], out: &mut Vec<(u64, Version)>| -> Result<()> {
            for &(id, v) in part {
                match self.read_version(coll, id, &v) {
                    Ok(_) => {} // intact, or moved by a compaction meanwhile
                    Err(Error::Corrupt { .. }) => out.push((id, v)),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        let threads = threads.min(page.len()).max(1);
        if threads == 1 {
            let mut out = Vec::new();
            for part in page.chunks(batch) {
                check(part, &mut out)?;
            }
            return Ok(out);
        }
        let slice = (batch / threads).max(1);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Vec<Result<Vec<(u64, Version)>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Vec::new();
                        while !failed.load(Ordering::Relaxed) {
                            let from = next.fetch_add(slice, Ordering::Relaxed);
                            if from >= page.len() {
                                break;
                            }
                            let to = (from + slice).min(page.len());
                            if let Err(e) = check(&page[from..to], &mut out) {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                        Ok(out)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut out = Vec::new();
        for r in results {
            out.extend(r?);
        }
        Ok(out)
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
