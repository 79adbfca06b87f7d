//! One secondary index in memory: its ordered, versioned entries, the newest key of
//! every document, and the bookkeeping that prunes entries no snapshot can see.
//!
//! An entry is `(key, id) -> intervals`: each `[added, removed)` is a range of commit
//! sequence numbers in which the document had that key (`removed == LIVE` while it
//! still has it). A reader at snapshot `s` sees the entry when an interval holds `s`.
//! Usually one interval; a document that goes back to an earlier key gets a second.
//!
//! Lock order: the state's lock is taken under the commit lock by staging (it is then
//! the last lock taken) and alone by readers and the builder; nothing is taken under it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::key::Key;
use super::IndexDef;

/// An entry's position: its key, then the document id.
pub(crate) type Pos = (Key, u64);
/// `[added, removed)` commit ranges in which an entry is present.
type Intervals = Vec<(u64, u64)>;

/// `removed` of an interval that is still open.
pub(crate) const LIVE: u64 = u64::MAX;

/// What one entry costs in memory beyond its key's heap bytes (counted twice, see
/// [`Key::heap_bytes`]): its slot in the ordered map (key, id, interval vector and
/// its heap cell, node slack) and in the by-id hash map, each holding a 40-byte key.
/// An estimate from the types' sizes, rounded up.
pub(crate) const ENTRY_OVERHEAD: u64 = 192;

/// The memory one entry with key `k` counts.
pub(crate) fn entry_bytes(k: &Key) -> u64 {
    ENTRY_OVERHEAD + 2 * k.heap_bytes()
}

pub(crate) struct SecondaryIndex {
    pub def: IndexDef,
    pub desc: u32,
    state: RwLock<State>,
    /// Set by DropIndex while the index builds: its builder stops at its next check.
    dropped: AtomicBool,
}

impl std::fmt::Debug for SecondaryIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondaryIndex")
            .field("def", &self.def)
            .finish_non_exhaustive()
    }
}

impl SecondaryIndex {
    /// A new, empty index that is building (not readable until [`State::finish_build`]).
    pub(crate) fn new(def: IndexDef) -> Self {
        SecondaryIndex {
            desc: def.desc_mask(),
            def,
            state: RwLock::new(State::default()),
            dropped: AtomicBool::new(false),
        }
    }

    /// Marks a building index dropped (see [`SecondaryIndex::dropped`]).
    pub(crate) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
    }

    /// Whether DropIndex removed the index while it was building.
    pub(crate) fn dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write()
    }
}

#[derive(Default)]
pub(crate) struct State {
    entries: BTreeMap<(Key, u64), Vec<(u64, u64)>>,
    /// Every indexed document's newest key. While building, `None` marks a document
    /// a writer deleted (or wrote) after the build's snapshot: the builder skips every
    /// id present here.
    by_id: HashMap<u64, Option<Key>>,
    /// Removed intervals, in commit order: `(removed, key, id)`, dropped from `entries`
    /// once no snapshot can see them.
    retired: VecDeque<(u64, Key, u64)>,
    /// `Some(seq)` once built: readable at snapshots `>= seq`.
    ready: Option<u64>,
    /// Memory of the newest state's entries ([`entry_bytes`] each).
    bytes: u64,
    live: u64,
    arrays: u64,
    /// Whether any entry ever added (since the index was built or loaded) had an
    /// array part or a via-array part. Never cleared, so when it is false no
    /// snapshot a reader holds can see such an entry (`arrays` counts only the
    /// newest state) and the planner skips those ranges.
    had_arrays: bool,
}

impl State {
    pub(crate) fn ready(&self) -> Option<u64> {
        self.ready
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn live(&self) -> u64 {
        self.live
    }

    pub(crate) fn arrays(&self) -> u64 {
        self.arrays
    }

    /// False when no entry at any snapshot has an array or via-array part (see
    /// `had_arrays`).
    pub(crate) fn may_hold_arrays(&self) -> bool {
        self.had_arrays
    }

    /// The newest key of `id`, if it is indexed.
    pub(crate) fn key_of(&self, id: u64) -> Option<&Key> {
        self.by_id.get(&id).and_then(Option::as_ref)
    }

    /// Ids whose newest key equals `key`.
    pub(crate) fn live_ids_with(&self, key: &Key) -> Vec<u64> {
        let lo = (key.clone(), 0u64);
        let hi = (key.clone(), u64::MAX);
        self.entries
            .range(lo..=hi)
            .filter(|(_, iv)| iv.last().is_some_and(|&(_, r)| r == LIVE))
            .map(|((_, id), _)| *id)
            .collect()
    }

    /// Applies a commit's change of `id` to `new` (`None`: deleted) at `seq`.
    pub(crate) fn apply(&mut self, id: u64, new: Option<Key>, seq: u64) {
        let building = self.ready.is_none();
        let old = self.by_id.remove(&id).flatten();
        if let (Some(o), Some(n)) = (&old, &new) {
            if o == n {
                self.by_id.insert(id, new);
                return;
            }
        }
        if let Some(o) = old {
            if let Some(iv) = self.entries.get_mut(&(o.clone(), id)) {
                if let Some(last) = iv.last_mut() {
                    last.1 = seq;
                }
            }
            self.account(&o, false);
            self.retired.push_back((seq, o, id));
        }
        match new {
            Some(n) => {
                self.account(&n, true);
                self.entries
                    .entry((n.clone(), id))
                    .or_default()
                    .push((seq, LIVE));
                self.by_id.insert(id, Some(n));
            }
            None if building => {
                self.by_id.insert(id, None);
            }
            None => {}
        }
    }

    fn account(&mut self, k: &Key, add: bool) {
        let b = entry_bytes(k);
        let arr = u64::from(k.has_array());
        if add {
            self.bytes += b;
            self.live += 1;
            self.arrays += arr;
            self.had_arrays |= arr == 1;
        } else {
            self.bytes = self.bytes.saturating_sub(b);
            self.live = self.live.saturating_sub(1);
            self.arrays = self.arrays.saturating_sub(arr);
        }
    }

    /// Drops intervals removed at or before `oldest` (no snapshot sees them).
    pub(crate) fn prune(&mut self, oldest: u64) {
        while self.retired.front().is_some_and(|(s, _, _)| *s <= oldest) {
            let Some((seq, key, id)) = self.retired.pop_front() else {
                break;
            };
            let k = (key, id);
            if let Some(iv) = self.entries.get_mut(&k) {
                iv.retain(|&(_, r)| r != seq);
                if iv.is_empty() {
                    self.entries.remove(&k);
                }
            }
        }
    }

    /// The builder's insert of a document it read at the build snapshot, written at
    /// `seq`: skipped (`Ok(false)`) when a writer changed the document since; `Err(id)`
    /// when a unique index already holds the key for another document `id`.
    pub(crate) fn build_insert(
        &mut self,
        id: u64,
        key: Key,
        seq: u64,
        unique: bool,
    ) -> Result<bool, u64> {
        if self.by_id.contains_key(&id) {
            return Ok(false);
        }
        if unique && !key.all_missing() {
            if let Some(other) = self.live_ids_with(&key).into_iter().find(|&o| o != id) {
                return Err(other);
            }
        }
        self.account(&key, true);
        self.entries
            .entry((key.clone(), id))
            .or_default()
            .push((seq, LIVE));
        self.by_id.insert(id, Some(key));
        Ok(true)
    }

    /// Ends the build: readable from snapshot `seq` on.
    pub(crate) fn finish_build(&mut self, seq: u64) {
        self.by_id.retain(|_, k| k.is_some());
        self.ready = Some(seq);
    }

    /// The entries visible at `snapshot` among the next `max` within `(lo, hi)`, in
    /// key order (reversed when `backward`), and the last entry examined when the
    /// range may hold more (resume after it), `None` at its end.
    pub(crate) fn chunk(
        &self,
        lo: Bound<&(Key, u64)>,
        hi: Bound<&(Key, u64)>,
        backward: bool,
        snapshot: u64,
        max: usize,
    ) -> (Vec<Pos>, Option<Pos>) {
        let visible = |iv: &Vec<(u64, u64)>| iv.iter().any(|&(a, r)| a <= snapshot && snapshot < r);
        // One descent to the bound the read starts from, then a walk that stops at the
        // other: `range((lo, hi))` would search for both bounds, comparing each key on
        // the way down twice (most index reads are a few entries, or none).
        let examined: Vec<(&Pos, &Intervals)> = if backward {
            self.entries
                .range::<(Key, u64), _>((Bound::Unbounded, hi))
                .rev()
                .take_while(|(k, _)| beyond(k, lo, true))
                .take(max)
                .collect()
        } else {
            self.entries
                .range::<(Key, u64), _>((lo, Bound::Unbounded))
                .take_while(|(k, _)| beyond(k, hi, false))
                .take(max)
                .collect()
        };
        let resume = (examined.len() == max)
            .then(|| examined.last().map(|(k, _)| (*k).clone()))
            .flatten();
        let out = examined
            .into_iter()
            .filter(|(_, iv)| visible(iv))
            .map(|(k, _)| k.clone())
            .collect();
        (out, resume)
    }

    /// Every entry visible at `snapshot`: `(id, key)`, for verification.
    pub(crate) fn visible_at(&self, snapshot: u64) -> Vec<(u64, Key)> {
        self.entries
            .iter()
            .filter(|(_, iv)| iv.iter().any(|&(a, r)| a <= snapshot && snapshot < r))
            .map(|((k, id), _)| (*id, k.clone()))
            .collect()
    }
}

/// Whether `k` is within the range's other end `b`: below it (an upper bound) or,
/// with `lower`, above it.
fn beyond(k: &Pos, b: Bound<&Pos>, lower: bool) -> bool {
    match b {
        Bound::Unbounded => true,
        Bound::Included(b) if lower => k >= b,
        Bound::Excluded(b) if lower => k > b,
        Bound::Included(b) => k <= b,
        Bound::Excluded(b) => k < b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(v: i64) -> Key {
        Key::exact(vec![super::super::key::KeyPart::Value(json!(v))], 0)
    }

    fn ids(s: &State, snap: u64) -> Vec<u64> {
        s.chunk(Bound::Unbounded, Bound::Unbounded, false, snap, 100)
            .0
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    #[test]
    fn snapshots_see_the_entries_of_their_commit_and_pruning_keeps_them() {
        let mut s = State::default();
        s.finish_build(0);
        s.apply(1, Some(key(5)), 1);
        s.apply(2, Some(key(3)), 2);
        s.apply(1, Some(key(1)), 3);
        s.apply(2, None, 4);
        s.apply(1, Some(key(5)), 5);
        assert_eq!(ids(&s, 1), vec![1]);
        assert_eq!(ids(&s, 2), vec![2, 1]);
        assert_eq!(ids(&s, 3), vec![1, 2]);
        assert_eq!(ids(&s, 4), vec![1]);
        assert_eq!(ids(&s, 5), vec![1]);
        assert_eq!((s.live(), s.key_of(1)), (1, Some(&key(5))));
        s.prune(3);
        assert_eq!(ids(&s, 3), vec![1, 2], "snapshot 3 still sees its entries");
        s.prune(5);
        assert_eq!(ids(&s, 5), vec![1]);
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.bytes(), entry_bytes(&key(5)));
    }

    #[test]
    fn the_builder_skips_documents_written_during_the_build() {
        let mut s = State::default();
        s.apply(7, None, 10); // deleted by a writer during the build
        s.apply(8, Some(key(2)), 11); // rewritten by a writer
        assert_eq!(s.build_insert(7, key(1), 3, true), Ok(false));
        assert_eq!(s.build_insert(8, key(1), 3, true), Ok(false));
        assert_eq!(s.build_insert(9, key(2), 3, true), Err(8));
        assert_eq!(s.build_insert(9, key(3), 3, true), Ok(true));
        s.finish_build(11);
        assert_eq!(ids(&s, 11), vec![8, 9]);
        assert_eq!(s.live(), 2);
    }
}
