//! Index lifecycle and reads: CreateIndex's online build, the rebuild at open,
//! DropIndex, ListIndexes, the planner's [`Database::index_scan`], and verification.
//!
//! The online build (writes continue throughout):
//! 1. Under the commit lock, the index joins its collection *building*: from the next
//!    staged commit on, every write maintains it (a write of a document the build has
//!    not reached yet records the document's new key, or that it is gone).
//! 2. Once every commit staged before that is durable, a snapshot is opened and every
//!    document live in it is read and inserted — unless a writer recorded it in step 1
//!    (its newer key is already there): nothing is lost, nothing counted twice. A
//!    unique index that meets a second document with one key fails here.
//! 3. Under the commit lock, its memory is reserved as a whole (`MemoryLimit` if it does
//!    not fit) and it becomes readable at snapshots from the newest staged commit on.
//! 4. The definition is written to `INDEXES`; only then is CreateIndex acknowledged.
//!
//! A failure in any step removes the index and its memory: nothing is left behind.
//! Step 2, the long one, holds no database-wide lock: several indexes may build at
//! once, and the caller may cancel a build there ([`Database::create_index_with`]).
//! A caller may also take step 1 apart ([`Database::begin_index`]) and run the rest
//! elsewhere ([`IndexBuild::run`]): the server registers the index on its database's
//! queue, so the requests queued after the CreateIndex see it, and fills it on a
//! thread of its own.
//! Steps 3–4 and DropIndex are serialised per database (the `INDEXES` file is
//! rewritten whole by each).

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::defs::{self, StoredDef};
use super::key::{key_of, Fill, Key, KeyPart};
use super::tree::SecondaryIndex;
use super::{IndexDef, IndexInfo};
use crate::db::{Database, Inner, OpenSnapshot};
use crate::error::{Error, Result};
use crate::index::Collection;

/// Serialises the ends of index DDL on one database (making an index readable and
/// rewriting `INDEXES`; not held across a build's fill).
#[derive(Default)]
pub(crate) struct Registry {
    ddl: Mutex<()>,
}

/// The order an [`IndexScan`] walks the index in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// The index's own order (each field ascending or descending per its definition).
    #[default]
    Forward,
    /// The reverse of it.
    Backward,
}

/// Which entries an [`IndexScan`] returns, in the index's key order.
///
/// `lower` and `upper` are key *prefixes*: each holds the values of the first 1..=n
/// fields (n = the index's field count; see [`KeyPart`]). A prefix bound compares on
/// its parts only, so `Included([5])` on an index `[a, b]` includes every `(5, *)`,
/// and `Excluded([5])` none of them. Bounds are in the index's order: for a `-1`
/// field the lower bound is the *larger* value. `Missing`, then `ViaArray`, sort below
/// every value.
///
/// `after` resumes a scan: only entries strictly after `(key, id)` in the scan's
/// direction are returned (pass the last [`IndexHit`] of the previous page).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRange {
    pub lower: Bound<Vec<KeyPart>>,
    pub upper: Bound<Vec<KeyPart>>,
    pub after: Option<(Vec<KeyPart>, u64)>,
}

impl IndexRange {
    /// Every entry.
    pub fn all() -> Self {
        IndexRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            after: None,
        }
    }

    /// The entries whose first fields equal `prefix`.
    pub fn prefix(prefix: Vec<KeyPart>) -> Self {
        IndexRange {
            lower: Bound::Included(prefix.clone()),
            upper: Bound::Included(prefix),
            after: None,
        }
    }
}

/// One entry of an index scan.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexHit {
    pub id: u64,
    /// The document's key at the scan's snapshot, one part per field.
    pub key: Vec<KeyPart>,
}

/// A CreateIndex whose index has joined its collection *building* (step 1 of the
/// build) and whose fill has not ended: see [`Database::begin_index`]. Until
/// [`IndexBuild::run`] ends (a panic in it, or in its caller's cancel check, or a
/// handle dropped without running), dropping it unregisters the index: no index is
/// left building forever.
pub struct IndexBuild {
    inner: Arc<Inner>,
    coll: Arc<Collection>,
    index: Arc<SecondaryIndex>,
    /// The newest commit staged when the index joined: the fill waits for it.
    registered: u64,
    /// Whether dropping it unregisters the index (until `run` ended).
    armed: bool,
}

impl Drop for IndexBuild {
    fn drop(&mut self) {
        if self.armed {
            self.inner.remove_index(&self.coll, &self.index);
        }
    }
}

/// Closes a build's snapshot, on unwinding too.
struct BuildSnapshot<'a>(&'a Inner, u64);

impl Drop for BuildSnapshot<'_> {
    fn drop(&mut self) {
        self.0.snapshots.close(self.1);
    }
}

/// How many documents a build inserts between two looks at its cancel check.
const CANCEL_EVERY: usize = 1024;

/// How many entries an [`IndexScan`] examines per visit to the index (its read lock
/// is held for one visit only, so writers are never blocked for a whole scan).
const CHUNK: usize = 256;

/// The document ids of an index range in key order at one snapshot; see
/// [`Database::index_scan`]. An iterator of `Result` only in spirit: once created it
/// cannot fail.
pub struct IndexScan {
    index: Arc<SecondaryIndex>,
    lo: Bound<(Key, u64)>,
    hi: Bound<(Key, u64)>,
    backward: bool,
    snapshot: u64,
    buf: VecDeque<(Key, u64)>,
    done: bool,
    _guard: Option<OpenSnapshot>,
}

impl IndexScan {
    /// The snapshot the scan reads at: read the documents it returns at the same one.
    pub fn snapshot(&self) -> u64 {
        self.snapshot
    }
}

impl Iterator for IndexScan {
    type Item = IndexHit;

    fn next(&mut self) -> Option<IndexHit> {
        while self.buf.is_empty() && !self.done {
            let (hits, resume) = self.index.read().chunk(
                self.lo.as_ref(),
                self.hi.as_ref(),
                self.backward,
                self.snapshot,
                CHUNK,
            );
            self.buf.extend(hits);
            match resume {
                None => self.done = true,
                Some(last) if self.backward => self.hi = Bound::Excluded(last),
                Some(last) => self.lo = Bound::Excluded(last),
            }
        }
        let (key, id) = self.buf.pop_front()?;
        Some(IndexHit {
            id,
            key: key.parts.into_vec(),
        })
    }
}

/// A prefix bound as a bound on `(key, id)` (see [`Fill`]).
fn bound(b: Bound<Vec<KeyPart>>, desc: u32, is_lower: bool, n: usize) -> Result<Bound<(Key, u64)>> {
    let (parts, included) = match b {
        Bound::Unbounded => return Ok(Bound::Unbounded),
        Bound::Included(p) => (p, true),
        Bound::Excluded(p) => (p, false),
    };
    if parts.is_empty() || parts.len() > n {
        return Err(Error::InvalidIndex {
            reason: format!("a scan bound has 1 to {n} parts (the index's fields)"),
        });
    }
    // Included lower / excluded upper sit before the prefix; the others after it.
    let fill = if is_lower == included {
        Fill::Low
    } else {
        Fill::High
    };
    Ok(Bound::Excluded((
        Key::new(parts.into_boxed_slice(), desc, fill),
        0,
    )))
}

/// The tighter of two lower (or, with `upper`, upper) bounds.
fn tighter(a: Bound<(Key, u64)>, b: Bound<(Key, u64)>, upper: bool) -> Bound<(Key, u64)> {
    let key = |x: &Bound<(Key, u64)>| match x {
        Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
        Bound::Unbounded => None,
    };
    match (key(&a), key(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) => {
            let a_wins = if upper { x < y } else { x > y };
            if a_wins {
                a
            } else {
                b
            }
        }
    }
}

/// True when `(lo, hi)` holds nothing (and `BTreeMap::range` would panic on it).
fn empty_range(lo: &Bound<(Key, u64)>, hi: &Bound<(Key, u64)>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a >= b
        }
        _ => false,
    }
}

impl Inner {
    fn find_index(&self, coll: &Collection, name: &str) -> Result<Arc<SecondaryIndex>> {
        coll.indexes
            .read()
            .iter()
            .find(|i| i.def.name == name && i.read().ready().is_some())
            .cloned()
            .ok_or_else(|| Error::IndexNotFound {
                name: name.to_owned(),
            })
    }

    /// Every built index's definition, for `INDEXES`, leaving out `except`.
    fn stored_defs(&self, except: Option<&Arc<SecondaryIndex>>) -> Vec<StoredDef> {
        let colls: Vec<Arc<Collection>> = self.collections.read().values().cloned().collect();
        let mut out = Vec::new();
        for c in colls {
            for i in c.indexes.read().iter() {
                if except.is_some_and(|e| Arc::ptr_eq(e, i)) || i.read().ready().is_none() {
                    continue;
                }
                out.push(StoredDef {
                    collection: c.name.to_string(),
                    created_seq: c.created_seq,
                    def: i.def.clone(),
                });
            }
        }
        out.sort_by(|a, b| (&a.collection, &a.def.name).cmp(&(&b.collection, &b.def.name)));
        out
    }

    /// Removes `index` from `coll` and frees its memory (if it was counted).
    fn remove_index(&self, coll: &Collection, index: &Arc<SecondaryIndex>) {
        let _c = self.group_commit.lock_commit();
        coll.indexes.write().retain(|i| !Arc::ptr_eq(i, index));
        let st = index.read();
        if st.ready().is_some() {
            self.memory.try_apply(0, st.bytes());
        }
    }

    /// Step 2 of the build: inserts every document live at `snapshot`.
    fn fill_index(
        &self,
        coll: &Arc<Collection>,
        index: &SecondaryIndex,
        snapshot: u64,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<()> {
        for (n, id) in coll.live_ids_at(snapshot).into_iter().enumerate() {
            if n % CANCEL_EVERY == 0 {
                if index.dropped() {
                    return Err(Error::IndexDroppedWhileBuilding {
                        name: index.def.name.clone(),
                    });
                }
                if cancelled() {
                    return Err(Error::IndexBuildCancelled {
                        name: index.def.name.clone(),
                    });
                }
            }
            let (v, payload) = match self.read_doc(coll, id, Some(snapshot)) {
                Ok(r) => r,
                Err(Error::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let doc: Value = serde_json::from_slice(&payload).map_err(|_| Error::Corrupt {
                detail: format!("{}/{id}: stored document is not JSON", coll.name),
            })?;
            let key = key_of(&doc, &index.def.fields, index.desc);
            index
                .write()
                .build_insert(id, key, v.seq, index.def.unique)
                .map_err(|_| Error::DuplicateKey {
                    index: index.def.name.clone(),
                })?;
        }
        Ok(())
    }

    /// Step 1 of the build (see the module doc): `index` joins `coll` building.
    fn register_index(
        self: &Arc<Self>,
        coll: Arc<Collection>,
        index: Arc<SecondaryIndex>,
    ) -> Result<IndexBuild> {
        let c = self.group_commit.lock_commit();
        // The collection may have been deleted since it was looked up.
        if !self.is_current(&coll) {
            return Err(Error::CollectionNotFound);
        }
        let mut list = coll.indexes.write();
        if list.iter().any(|i| i.def.name == index.def.name) {
            return Err(Error::IndexExists {
                name: index.def.name.clone(),
            });
        }
        let max = self.config.limits.max_indexes;
        if list.len() >= max {
            return Err(Error::TooManyIndexes { max });
        }
        list.push(index.clone());
        drop(list);
        Ok(IndexBuild {
            inner: self.clone(),
            coll,
            index,
            registered: self.last_staged_locked(&c),
            armed: true,
        })
    }

    /// Whether `coll` is still the collection of its name (not deleted since).
    fn is_current(&self, coll: &Arc<Collection>) -> bool {
        let current = self.collections.read().get(&coll.name).cloned();
        current.is_some_and(|x| Arc::ptr_eq(&x, coll))
    }
}

impl IndexBuild {
    /// The name of the index being built.
    pub fn name(&self) -> &str {
        &self.index.def.name
    }

    /// Steps 2–4 of the build (see the module doc): fills the index, makes it
    /// readable and writes its definition; returns once it is durable. `cancelled` is
    /// asked every 1024 documents and once before the index becomes readable; when it
    /// answers true the build stops with `IndexBuildCancelled`. Any failure leaves
    /// nothing (the index leaves its collection, its memory is freed).
    pub fn run(mut self, cancelled: &dyn Fn() -> bool) -> Result<()> {
        // `self` is dropped after the locks below on unwinding (it takes the commit
        // lock): a parameter outlives the body's locals.
        let (inner, coll, index) = (&*self.inner, &self.coll, &self.index);
        let filled = inner.wait_durable(self.registered).and_then(|()| {
            let snapshot = BuildSnapshot(inner, inner.snapshots.open());
            inner.fill_index(coll, index, snapshot.1, cancelled)
        });
        // Asked once more after the fill, holding no lock (the caller's check may
        // take its time, or even write).
        let filled = filled.and_then(|()| match cancelled() {
            true => Err(Error::IndexBuildCancelled {
                name: index.def.name.clone(),
            }),
            false => Ok(()),
        });
        // From here to the definition's write, DropIndex and the other builds' ends
        // wait: each rewrites INDEXES whole from the indexes that are ready.
        let _ddl = inner.secondary.ddl.lock();
        let finished = filled.and_then(|()| {
            let c = inner.group_commit.lock_commit();
            // Deleted (with its indexes) while the build filled: nothing to finish.
            if !inner.is_current(coll) {
                return Err(Error::CollectionNotFound);
            }
            // Dropped while it filled (DropIndex has unregistered it already).
            if index.dropped() {
                return Err(Error::IndexDroppedWhileBuilding {
                    name: index.def.name.clone(),
                });
            }
            let mut st = index.write();
            if !inner.memory.try_apply(st.bytes(), 0) {
                return Err(Error::MemoryLimit);
            }
            st.finish_build(inner.last_staged_locked(&c));
            Ok(())
        });
        let stored = finished
            .and_then(|()| defs::store(&*inner.storage, &inner.dir, &inner.stored_defs(None)));
        if stored.is_err() {
            inner.remove_index(coll, index);
        }
        self.armed = false;
        stored
    }
}

impl Database {
    /// Creates a secondary index on `collection` and builds it from the documents
    /// while writes continue (see [`crate::secondary::build`]); returns once it is
    /// built, readable and its definition durable. Fails with `IndexExists`,
    /// `TooManyIndexes` (`limits.max_indexes`), `InvalidIndex`, `DuplicateKey` (a unique
    /// index over documents that share a key), `MemoryLimit`; a failure leaves nothing.
    pub fn create_index(&self, collection: &str, def: IndexDef) -> Result<()> {
        self.create_index_with(collection, def, &|| false)
    }

    /// [`Database::create_index`] that the caller can stop: `cancelled` is asked every
    /// 1024 documents of the build and once before the index becomes readable; when it
    /// answers true the build stops with `IndexBuildCancelled` and leaves nothing
    /// (no entries, no memory, no definition). Several builds (on one collection or
    /// several) may run at once on different threads; reads and writes of the
    /// database go on throughout.
    pub fn create_index_with(
        &self,
        collection: &str,
        def: IndexDef,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<()> {
        self.begin_index(collection, def)?.run(cancelled)
    }

    /// The first step of [`Database::create_index_with`], for a caller that runs the
    /// rest ([`IndexBuild::run`]) on another thread: checks the definition and
    /// registers the index *building* (ListIndexes shows it, writes from the next
    /// commit on maintain it, DropIndex can stop it, a second index of its name is
    /// `IndexExists`), without reading any document. Fails as `create_index` does for
    /// everything but the fill's outcomes; dropping the handle unrun unregisters the
    /// index.
    pub fn begin_index(&self, collection: &str, def: IndexDef) -> Result<IndexBuild> {
        def.validate()?;
        let inner = &self.inner;
        inner.check_writable()?;
        let coll = inner.collection(collection)?;
        inner.register_index(coll, Arc::new(SecondaryIndex::new(def)))
    }

    /// Drops an index: its definition leaves `INDEXES` first, then its entries and
    /// memory go. An index still building is dropped too: it leaves the collection at
    /// once (writes stop maintaining it, ListIndexes no longer shows it) and its build
    /// stops at its next check, its CreateIndex failing with
    /// `IndexDroppedWhileBuilding`; nothing of it was stored.
    pub fn drop_index(&self, collection: &str, name: &str) -> Result<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        let _ddl = inner.secondary.ddl.lock();
        let coll = inner.collection(collection)?;
        let building = coll
            .indexes
            .read()
            .iter()
            .find(|i| i.def.name == name && i.read().ready().is_none())
            .cloned();
        if let Some(index) = building {
            // Under the DDL lock, so the build cannot be finishing: its end checks the
            // mark under the same lock.
            index.mark_dropped();
            inner.remove_index(&coll, &index);
            return Ok(());
        }
        let index = inner.find_index(&coll, name)?;
        defs::store(
            &*inner.storage,
            &inner.dir,
            &inner.stored_defs(Some(&index)),
        )?;
        inner.remove_index(&coll, &index);
        Ok(())
    }

    /// The indexes of `collection`, by name: the built ones, and those building
    /// (`building`: not yet usable by queries; their counts are those so far).
    pub fn list_indexes(&self, collection: &str) -> Result<Vec<IndexInfo>> {
        let coll = self.inner.collection(collection)?;
        let mut out: Vec<IndexInfo> = coll
            .indexes
            .read()
            .iter()
            .map(|i| {
                let st = i.read();
                let building = st.ready().is_none();
                IndexInfo {
                    name: i.def.name.clone(),
                    fields: i.def.fields.clone(),
                    unique: i.def.unique,
                    entries: st.live(),
                    array_entries: st.arrays(),
                    // A building index's memory is reserved only when it ends.
                    memory_bytes: if building { 0 } else { st.bytes() },
                    building,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The query planner's read of an index: the ids of the documents whose keys lie
    /// in `range` (see [`IndexRange`]: prefix bounds in the index's key order, an
    /// optional resume point), in key order then id order (`Forward`) or the reverse
    /// (`Backward`), as of one snapshot.
    ///
    /// `snapshot`: `None` opens one at the newest visible commit and keeps it open
    /// while the scan lives ([`IndexScan::snapshot`] says which, so the documents can
    /// be read at the same one); `Some(s)` reads at `s`, which the caller must keep
    /// open (a transaction's snapshot). Documents are not read: the caller reads each
    /// id at the snapshot (every id returned is live there) and applies any filter
    /// the index cannot (a path that holds an array is indexed as the whole array,
    /// [`IndexInfo::array_entries`]).
    ///
    /// Errors: `CollectionNotFound`, `IndexNotFound` (also while it is building),
    /// `IndexNotReady` (the snapshot predates the build: scan the collection instead),
    /// `InvalidIndex` (a bound with no parts or more parts than fields).
    pub fn index_scan(
        &self,
        collection: &str,
        name: &str,
        range: IndexRange,
        direction: Direction,
        snapshot: Option<u64>,
    ) -> Result<IndexScan> {
        let inner = &self.inner;
        let coll = inner.collection(collection)?;
        let index = inner.find_index(&coll, name)?;
        let guard = match snapshot {
            Some(_) => None,
            None => Some(OpenSnapshot::open(inner)),
        };
        let snap = snapshot.or(guard.as_ref().map(|g| g.seq)).unwrap_or(0);
        let mut scan = scan_at(index, range, direction, snap)?;
        scan._guard = guard;
        Ok(scan)
    }
}

/// [`Database::index_scan`] of a found index at `snap`, which the caller keeps open
/// (the query planner's read at its page's snapshot). `IndexNotReady` when `snap`
/// predates the build.
pub(crate) fn scan_at(
    index: Arc<SecondaryIndex>,
    range: IndexRange,
    direction: Direction,
    snap: u64,
) -> Result<IndexScan> {
    if index.read().ready().is_none_or(|r| r > snap) {
        return Err(Error::IndexNotReady {
            name: index.def.name.clone(),
        });
    }
    let n = index.def.fields.len();
    let mut lo = bound(range.lower, index.desc, true, n)?;
    let mut hi = bound(range.upper, index.desc, false, n)?;
    let backward = direction == Direction::Backward;
    if let Some((parts, id)) = range.after {
        if parts.len() != n {
            return Err(Error::InvalidIndex {
                reason: format!("a scan's resume key has {n} parts (the index's fields)"),
            });
        }
        let after = Bound::Excluded((Key::exact(parts, index.desc), id));
        if backward {
            hi = tighter(hi, after, true);
        } else {
            lo = tighter(lo, after, false);
        }
    }
    let done = empty_range(&lo, &hi);
    Ok(IndexScan {
        index,
        lo,
        hi,
        backward,
        snapshot: snap,
        buf: VecDeque::new(),
        done,
        _guard: None,
    })
}

/// At open, after recovery: builds every index `INDEXES` defines from the recovered
/// documents (nobody writes yet). A definition whose collection is gone is skipped;
/// one that cannot be built (a unique index over duplicates, which a correct history
/// cannot produce) is reported in the recovery report and left out.
pub(crate) fn load_at_open(db: &Database) -> Result<()> {
    let inner = &db.inner;
    let stored = defs::load(&*inner.storage, &inner.dir)?;
    if stored.is_empty() {
        return Ok(());
    }
    let snapshot = inner.snapshots.visible();
    let mut total = 0u64;
    for d in stored {
        let coll = inner.collections.read().get(d.collection.as_str()).cloned();
        let Some(coll) = coll.filter(|c| c.created_seq == d.created_seq) else {
            continue;
        };
        let index = Arc::new(SecondaryIndex::new(d.def));
        coll.indexes.write().push(index.clone());
        match inner.fill_index(&coll, &index, snapshot, &|| false) {
            Ok(()) => {
                let mut st = index.write();
                st.finish_build(snapshot);
                total += st.bytes();
            }
            Err(e) => {
                coll.indexes.write().retain(|i| !Arc::ptr_eq(i, &index));
                let line = format!(
                    "index {}/{}: not rebuilt at open: {e}",
                    coll.name, index.def.name
                );
                tracing::warn!(db = %inner.dir.display(), "{line}");
                inner.recovery.lock().dropped.push(line);
            }
        }
    }
    inner.memory.force_add(total);
    Ok(())
}

/// Checks every index against the documents at one snapshot: each live document has
/// exactly its key's entry, and no other entry is visible. One line per problem.
pub(crate) fn verify(inner: &Inner) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let snapshot = inner.snapshots.open();
    let result = (|| {
        let colls: Vec<Arc<Collection>> = inner.collections.read().values().cloned().collect();
        for coll in colls {
            let indexes: Vec<_> = coll.indexes.read().clone();
            let indexes: Vec<_> = indexes
                .into_iter()
                .filter(|i| i.read().ready().is_some_and(|r| r <= snapshot))
                .collect();
            if indexes.is_empty() {
                continue;
            }
            let mut expected: Vec<Vec<(u64, Key)>> = vec![Vec::new(); indexes.len()];
            for id in coll.live_ids_at(snapshot) {
                let payload = match inner.read_doc(&coll, id, Some(snapshot)) {
                    Ok((_, p)) => p,
                    Err(Error::NotFound) => continue,
                    Err(e) => return Err(e),
                };
                let Ok(doc) = serde_json::from_slice::<Value>(&payload) else {
                    problems.push(format!("{}/{id}: stored document is not JSON", coll.name));
                    continue;
                };
                for (i, index) in indexes.iter().enumerate() {
                    expected[i].push((id, key_of(&doc, &index.def.fields, index.desc)));
                }
            }
            for (index, mut want) in indexes.iter().zip(expected) {
                let mut have = index.read().visible_at(snapshot);
                have.sort_by_key(|e| e.0);
                want.sort_by_key(|e| e.0);
                if have != want {
                    problems.push(format!(
                        "index {}/{}: {} entries disagree with {} documents",
                        coll.name,
                        index.def.name,
                        have.len(),
                        want.len()
                    ));
                }
            }
        }
        Ok(())
    })();
    inner.snapshots.close(snapshot);
    result.map(|()| problems)
}
