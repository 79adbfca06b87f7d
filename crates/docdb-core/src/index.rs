//! In-memory index: per collection, an ordered map from document id to its version
//! chain. A version names the commit that wrote it (`seq`) and where its record lies in
//! which data file generation; a delete is a tombstone version. Readers pick the newest
//! version at or below their snapshot; versions no open snapshot can see are pruned.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

/// One version of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version {
    /// Commit sequence number that wrote this version (its transaction id).
    pub seq: u64,
    /// Data file generation holding the record.
    pub generation: u64,
    /// Offset of the record in that file.
    pub offset: u64,
    /// Payload length (0 for tombstones).
    pub len: u32,
    pub tombstone: bool,
}

impl Version {
    pub(crate) fn is_live(&self) -> bool {
        !self.tombstone
    }
}

/// The versions of one document, oldest first. Almost always exactly one.
#[derive(Debug, Clone)]
pub(crate) enum Chain {
    One(Version),
    Many(Vec<Version>),
}

impl Chain {
    pub(crate) fn latest(&self) -> &Version {
        match self {
            Chain::One(v) => v,
            // INVARIANT: a Many chain is never empty (built from ≥ 2, pruned to ≥ 1).
            Chain::Many(vs) => &vs[vs.len() - 1],
        }
    }

    pub(crate) fn versions(&self) -> &[Version] {
        match self {
            Chain::One(v) => std::slice::from_ref(v),
            Chain::Many(vs) => vs,
        }
    }

    pub(crate) fn versions_mut(&mut self) -> &mut [Version] {
        match self {
            Chain::One(v) => std::slice::from_mut(v),
            Chain::Many(vs) => vs,
        }
    }

    /// The newest version with `seq <= snapshot`.
    pub(crate) fn at(&self, snapshot: u64) -> Option<&Version> {
        self.versions().iter().rev().find(|v| v.seq <= snapshot)
    }

    /// Adds a newer version and prunes versions no snapshot at or after `oldest` can
    /// see.
    pub(crate) fn push(&mut self, v: Version, oldest: u64) {
        let mut vs = match std::mem::replace(self, Chain::One(v)) {
            Chain::One(old) => vec![old],
            Chain::Many(vs) => vs,
        };
        vs.push(v);
        *self = Chain::Many(vs);
        self.prune(oldest);
    }

    /// Drops versions hidden from every snapshot `>= oldest`: all but the newest of the
    /// versions with `seq <= oldest`. Returns true when the whole entry can go (its only
    /// remaining version is a tombstone every snapshot sees).
    pub(crate) fn prune(&mut self, oldest: u64) -> bool {
        if let Chain::Many(vs) = self {
            let keep_from = vs.iter().rposition(|v| v.seq <= oldest).unwrap_or(0);
            if keep_from > 0 {
                vs.drain(..keep_from);
            }
            if vs.len() == 1 {
                *self = Chain::One(vs[0]);
            }
        }
        match self {
            Chain::One(v) => v.tombstone && v.seq <= oldest,
            Chain::Many(_) => false,
        }
    }
}

/// A collection: its name, when it was created, and its documents.
#[derive(Debug)]
pub(crate) struct Collection {
    pub name: Arc<str>,
    /// Its name in the document cache: unique in the process (see [`crate::cache`]).
    pub cache_number: u64,
    /// Commit that created it (0 for `_default`). Records of an older, deleted
    /// collection of the same name are ignored when rebuilding.
    pub created_seq: u64,
    pub docs: RwLock<BTreeMap<u64, Chain>>,
    /// Live documents in the newest state (including commits not yet visible).
    /// Changed only under the commit lock.
    pub live: AtomicU64,
    /// Its secondary indexes (building ones included). Changed under the commit lock;
    /// staging reads it under the commit lock.
    pub indexes: RwLock<Vec<Arc<crate::secondary::tree::SecondaryIndex>>>,
}

impl Collection {
    pub(crate) fn new(name: &str, created_seq: u64) -> Self {
        Collection {
            name: Arc::from(name),
            cache_number: crate::cache::next_collection_number(),
            created_seq,
            docs: RwLock::new(BTreeMap::new()),
            live: AtomicU64::new(0),
            indexes: RwLock::new(Vec::new()),
        }
    }

    pub(crate) fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// The newest version of `id`, including commits not yet visible.
    pub(crate) fn latest(&self, id: u64) -> Option<Version> {
        self.docs.read().get(&id).map(|c| *c.latest())
    }

    /// The ids of the documents live at `snapshot`, in id order (the caller must hold
    /// the snapshot open so none of their versions is pruned meanwhile).
    pub(crate) fn live_ids_at(&self, snapshot: u64) -> Vec<u64> {
        self.docs
            .read()
            .iter()
            .filter(|(_, c)| c.at(snapshot).is_some_and(Version::is_live))
            .map(|(&id, _)| id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(seq: u64, tombstone: bool) -> Version {
        Version {
            seq,
            generation: 1,
            offset: seq * 100,
            len: 10,
            tombstone,
        }
    }

    #[test]
    fn snapshots_see_the_newest_version_at_or_below_them() {
        let mut c = Chain::One(v(2, false));
        c.push(v(5, false), 0);
        c.push(v(9, true), 0);
        assert_eq!(c.at(1), None);
        assert_eq!(c.at(2).unwrap().seq, 2);
        assert_eq!(c.at(8).unwrap().seq, 5);
        assert!(c.at(9).unwrap().tombstone);
        assert_eq!(c.versions().len(), 3);
    }

    #[test]
    fn pruning_keeps_what_the_oldest_snapshot_needs() {
        let mut c = Chain::One(v(2, false));
        c.push(v(5, false), 0);
        c.push(v(9, false), 6);
        // Snapshot 6 still needs seq 5; seq 2 is invisible to everyone.
        assert_eq!(
            c.versions().iter().map(|v| v.seq).collect::<Vec<_>>(),
            vec![5, 9]
        );
        assert!(!c.prune(20));
        assert!(matches!(c, Chain::One(x) if x.seq == 9));
        c.push(v(21, true), 20);
        assert!(!c.prune(20), "the tombstone is not yet seen by snapshot 20");
        assert!(c.prune(21));
    }
}
