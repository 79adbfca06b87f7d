//! The newest version of every document and collection as the files describe them:
//! what recovery rebuilds the index from, and what the index snapshot (`INDEX`,
//! [`crate::index_snapshot`]) stores.
//!
//! The rule (docs/FORMAT.md "Data file"): for each (collection, id) the record with the
//! highest `seq` wins; for each collection its create/delete record with the highest
//! `seq` wins. The rule does not depend on the order records are seen in, so a state
//! loaded from a snapshot of the first `n` bytes of a data file, followed by a scan of
//! the bytes after `n`, equals a scan of the whole file.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::data::file::DataFile;
use crate::data::record::{Header, Kind};
use crate::error::Result;
use crate::index::Version;

/// A collection as the files describe it: the newest create or delete wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CollState {
    pub seq: u64,
    pub exists: bool,
}

/// The documents of one collection: a sorted base (from a snapshot) under an overlay
/// of newer versions (from a scan or the WAL). An id is in the overlay only with a
/// `seq` above its base version's.
#[derive(Debug, Default)]
pub(crate) struct DocSet {
    /// INVARIANT: sorted by id, ids unique.
    base: Vec<(u64, Version)>,
    // Fx hashing: recovery does a lookup per replayed op, and SipHash dominated it.
    overlay: FxHashMap<u64, Version>,
}

impl DocSet {
    /// A set from versions sorted by id with unique ids (checked by the caller).
    pub(crate) fn from_sorted(base: Vec<(u64, Version)>) -> Self {
        DocSet {
            base,
            overlay: FxHashMap::default(),
        }
    }

    /// Ids known (each counted once).
    pub(crate) fn len(&self) -> usize {
        let shadowed = if self.base.is_empty() {
            0
        } else {
            self.overlay
                .keys()
                .filter(|&&id| self.base.binary_search_by_key(&id, |(k, _)| *k).is_ok())
                .count()
        };
        self.base.len() + self.overlay.len() - shadowed
    }

    /// Every id's newest version, sorted by id.
    pub(crate) fn into_sorted(self) -> Vec<(u64, Version)> {
        if self.overlay.is_empty() {
            return self.base;
        }
        let mut over: Vec<(u64, Version)> = self.overlay.into_iter().collect();
        over.sort_unstable_by_key(|(id, _)| *id);
        if self.base.is_empty() {
            return over;
        }
        let mut out = Vec::with_capacity(self.base.len() + over.len());
        let mut b = self.base.into_iter().peekable();
        for (id, v) in over {
            while let Some(&(bid, _)) = b.peek() {
                if bid > id {
                    break;
                }
                let e = b.next();
                if bid < id {
                    out.extend(e);
                }
                // bid == id: the overlay's version is newer; the base's is dropped.
            }
            out.push((id, v));
        }
        out.extend(b);
        out
    }
}

/// The newest version of every document and collection seen so far.
#[derive(Debug, Default)]
pub(crate) struct Rebuild {
    pub colls: HashMap<String, CollState>,
    pub docs: FxHashMap<String, DocSet>,
    pub max_seq: u64,
}

/// One collection of a finished rebuild.
#[derive(Debug)]
pub(crate) struct RebuiltColl {
    pub name: String,
    /// `None`: documents were seen but no create or delete record.
    pub state: Option<CollState>,
    /// Newest version of each id, tombstones included, sorted by id.
    pub docs: Vec<(u64, Version)>,
}

impl Rebuild {
    pub(crate) fn coll(&mut self, name: &str, seq: u64, exists: bool) -> bool {
        self.max_seq = self.max_seq.max(seq);
        match self.colls.get(name) {
            Some(c) if c.seq >= seq => false,
            _ => {
                self.colls
                    .insert(name.to_owned(), CollState { seq, exists });
                true
            }
        }
    }

    /// Applies a version of `coll/id` if `seq` is newer than what is known: `make`
    /// (which may append the data record) runs only then. One lookup per op when the
    /// id is in the overlay or new; a binary search of the base otherwise.
    pub(crate) fn apply_if_newer(
        &mut self,
        coll: &str,
        id: u64,
        seq: u64,
        make: impl FnOnce() -> Version,
    ) -> bool {
        self.max_seq = self.max_seq.max(seq);
        let set = match self.docs.get_mut(coll) {
            Some(m) => m,
            None => self.docs.entry(coll.to_owned()).or_default(),
        };
        match set.overlay.entry(id) {
            Entry::Occupied(e) if e.get().seq >= seq => false,
            Entry::Occupied(mut e) => {
                e.insert(make());
                true
            }
            Entry::Vacant(e) => {
                if let Ok(i) = set.base.binary_search_by_key(&id, |(k, _)| *k) {
                    if set.base[i].1.seq >= seq {
                        return false;
                    }
                }
                e.insert(make());
                true
            }
        }
    }

    /// Applies one data-file record found at `offset` of `generation`.
    pub(crate) fn record(&mut self, generation: u64, offset: u64, h: &Header<'_>) {
        match h.kind {
            Kind::Put | Kind::Tombstone => {
                let v = Version {
                    seq: h.seq,
                    generation,
                    offset,
                    len: h.payload_len,
                    tombstone: h.kind == Kind::Tombstone,
                };
                self.apply_if_newer(h.collection, h.doc_id, h.seq, || v);
            }
            Kind::CreateCollection => {
                self.coll(h.collection, h.seq, true);
            }
            Kind::DeleteCollection => {
                self.coll(h.collection, h.seq, false);
            }
        }
    }

    /// Scans the records of `data` in `[from, to)` (headers only) into `self`; damaged
    /// stretches are reported through `on_gap`. Returns the number of records read.
    pub(crate) fn scan(
        &mut self,
        data: &DataFile,
        from: u64,
        to: u64,
        on_gap: impl FnMut(u64, u64),
    ) -> Result<u64> {
        let generation = data.generation;
        let mut n = 0;
        data.scan_from(
            from,
            to,
            false,
            |offset, h, _| {
                n += 1;
                self.record(generation, offset, h);
                Ok(())
            },
            on_gap,
        )?;
        Ok(n)
    }

    /// Every collection named by a record or a document, sorted by name, each with
    /// its documents sorted by id.
    pub(crate) fn finish(self) -> (Vec<RebuiltColl>, u64) {
        let Rebuild {
            colls,
            mut docs,
            max_seq,
        } = self;
        let mut out: Vec<RebuiltColl> = colls
            .into_iter()
            .map(|(name, st)| {
                let docs = docs
                    .remove(&name)
                    .map(DocSet::into_sorted)
                    .unwrap_or_default();
                RebuiltColl {
                    name,
                    state: Some(st),
                    docs,
                }
            })
            .collect();
        out.extend(docs.into_iter().map(|(name, set)| RebuiltColl {
            name,
            state: None,
            docs: set.into_sorted(),
        }));
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        (out, max_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(seq: u64, tombstone: bool) -> Version {
        Version {
            seq,
            generation: 1,
            offset: 24 + seq,
            len: 3,
            tombstone,
        }
    }

    #[test]
    fn newest_seq_wins_across_base_and_overlay() {
        let mut rb = Rebuild::default();
        rb.docs.insert(
            "c".into(),
            DocSet::from_sorted(vec![(1, v(5, false)), (3, v(6, false)), (9, v(2, true))]),
        );
        assert!(
            !rb.apply_if_newer("c", 1, 4, || v(4, false)),
            "older than base"
        );
        assert!(rb.apply_if_newer("c", 3, 8, || v(8, true)));
        assert!(rb.apply_if_newer("c", 2, 7, || v(7, false)), "new id");
        assert!(
            !rb.apply_if_newer("c", 3, 7, || v(7, false)),
            "older than overlay"
        );
        assert!(rb.apply_if_newer("c", 10, 9, || v(9, false)));
        let (colls, max) = rb.finish();
        assert_eq!(max, 9);
        assert_eq!(colls.len(), 1);
        assert_eq!(colls[0].state, None);
        let got: Vec<(u64, u64)> = colls[0].docs.iter().map(|(id, v)| (*id, v.seq)).collect();
        assert_eq!(got, vec![(1, 5), (2, 7), (3, 8), (9, 2), (10, 9)]);
    }
}
