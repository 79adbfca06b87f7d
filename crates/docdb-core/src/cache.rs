//! A bounded cache of verified document bytes, so hot reads skip the `pread` (which,
//! with its syscall and page-cache copy, is most of a read's cost).
//!
//! Entries are keyed by collection and id and carry the version's sequence number:
//! a read uses an entry only when it holds exactly the version the index picked, so
//! a stale entry is never served — it is simply replaced. Only bytes that passed their
//! checksum are cached. Sharded by id; each shard evicts arbitrary entries when over
//! its share of the budget.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;

const SHARDS: usize = 16;

/// (collection object address, doc id). The address is stable while the collection
/// exists; a recreated collection only holds versions newer than any cached one of the
/// old collection, so the seq check keeps addresses from being confused.
type Key = (usize, u64);

struct Shard {
    map: HashMap<Key, (u64, Arc<[u8]>), FxBuildHasher>,
    bytes: usize,
}

pub(crate) struct DocCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
}

impl DocCache {
    /// A cache of at most `budget` payload bytes (0 disables it).
    pub(crate) fn new(budget: usize) -> DocCache {
        DocCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::with_hasher(FxBuildHasher),
                        bytes: 0,
                    })
                })
                .collect(),
            shard_budget: budget / SHARDS,
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        &self.shards[(key.1 as usize ^ (key.0 >> 4)) % SHARDS]
    }

    /// The cached bytes of version `seq`, if that is what the entry holds.
    pub(crate) fn get(&self, key: Key, seq: u64) -> Option<Arc<[u8]>> {
        if self.shard_budget == 0 {
            return None;
        }
        let s = self.shard(&key).lock();
        match s.map.get(&key) {
            Some((cached, bytes)) if *cached == seq => Some(bytes.clone()),
            _ => None,
        }
    }

    /// Remembers verified bytes of version `seq`.
    pub(crate) fn put(&self, key: Key, seq: u64, bytes: &[u8]) {
        if bytes.len() > self.shard_budget / 4 {
            return; // large documents would flush everything else
        }
        let mut s = self.shard(&key).lock();
        if let Some((old_seq, old)) = s.map.get(&key) {
            if *old_seq >= seq {
                return;
            }
            let n = old.len();
            s.bytes -= n;
        }
        s.bytes += bytes.len();
        s.map.insert(key, (seq, Arc::from(bytes)));
        while s.bytes > self.shard_budget {
            let Some(victim) = s.map.keys().next().copied() else {
                break;
            };
            if let Some((_, b)) = s.map.remove(&victim) {
                s.bytes -= b.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_only_the_version_it_holds_and_stays_in_budget() {
        let c = DocCache::new(16 * 1024);
        c.put((1, 7), 5, b"five");
        assert_eq!(c.get((1, 7), 5).as_deref(), Some(&b"five"[..]));
        assert!(
            c.get((1, 7), 6).is_none(),
            "a newer version is not served stale"
        );
        assert!(c.get((2, 7), 5).is_none(), "another collection");
        c.put((1, 7), 4, b"four");
        assert_eq!(
            c.get((1, 7), 5).as_deref(),
            Some(&b"five"[..]),
            "never older"
        );
        for id in 0..10_000u64 {
            c.put((1, id), 1, &[0u8; 200]);
        }
        let total: usize = c.shards.iter().map(|s| s.lock().bytes).sum();
        assert!(total <= 16 * 1024, "{total}");
        assert!(DocCache::new(0).get((1, 7), 5).is_none());
    }
}
