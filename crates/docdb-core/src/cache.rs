//! A bounded cache of verified document bytes, so hot reads skip the `pread` (which,
//! with its syscall and page-cache copy, is most of a read's cost).
//!
//! One cache can serve one database (the engine's `memory.cache_mb`) or every database
//! of a server ([`crate::OpenOptions::cache`]). Entries are keyed by collection and id
//! and carry the version's sequence number: a read uses an entry only when it holds
//! exactly the version the index picked, so a stale entry is never served — it is
//! simply replaced. A collection is named by a number given to each collection object
//! when it is made and never given again in the process, so neither a recreated
//! collection nor another database sharing the cache (whose sequence numbers count on
//! their own) can be served another's bytes; entries of a closed or dropped database
//! are never read again and go as the budget needs room. Only bytes that passed their
//! checksum are cached. Sharded by id; each shard evicts arbitrary entries when over
//! its share of the budget, which counts each entry's bookkeeping as well as its bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;

const SHARDS: usize = 16;

/// Bytes an entry costs beyond its payload: the map slot (key, seq, pointer, control
/// byte, spare capacity) and the payload allocation's header. Counted so a budget of
/// tiny documents cannot hold ten times its size in bookkeeping.
const ENTRY_OVERHEAD: usize = 96;

/// (collection number, doc id); see [`next_collection_number`].
type Key = (u64, u64);

/// A number no other collection object of this process has had.
pub(crate) fn next_collection_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Shard {
    map: HashMap<Key, (u64, Arc<[u8]>), FxBuildHasher>,
    bytes: usize,
}

/// A bounded cache of verified document bytes (see the module doc). Share one between
/// databases with [`crate::OpenOptions::cache`].
pub struct DocCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What a [`DocCache`] holds and how it served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocCacheStats {
    /// Bytes charged: payloads plus each entry's bookkeeping.
    pub bytes: u64,
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
}

impl std::fmt::Debug for DocCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocCache")
            .field("budget", &(self.shard_budget * SHARDS))
            .field("stats", &self.stats())
            .finish()
    }
}

impl DocCache {
    /// A cache of at most `budget` bytes (0 disables it).
    pub fn new(budget: usize) -> DocCache {
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
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> DocCacheStats {
        let mut st = DocCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            ..DocCacheStats::default()
        };
        for s in &self.shards {
            let s = s.lock();
            st.bytes += s.bytes as u64;
            st.entries += s.map.len() as u64;
        }
        st
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let mixed = key.1 ^ key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.shards[(mixed % SHARDS as u64) as usize]
    }

    /// The cached bytes of version `seq`, if that is what the entry holds.
    pub(crate) fn get(&self, key: Key, seq: u64) -> Option<Arc<[u8]>> {
        if self.shard_budget == 0 {
            return None;
        }
        let found = {
            let s = self.shard(&key).lock();
            match s.map.get(&key) {
                Some((cached, bytes)) if *cached == seq => Some(bytes.clone()),
                _ => None,
            }
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Remembers verified bytes of version `seq`.
    pub(crate) fn put(&self, key: Key, seq: u64, bytes: &[u8]) {
        let cost = bytes.len() + ENTRY_OVERHEAD;
        if cost > self.shard_budget / 4 {
            return; // large documents would flush everything else
        }
        let mut s = self.shard(&key).lock();
        if let Some((old_seq, old)) = s.map.get(&key) {
            if *old_seq >= seq {
                return;
            }
            let n = old.len() + ENTRY_OVERHEAD;
            s.bytes -= n;
        }
        s.bytes += cost;
        s.map.insert(key, (seq, Arc::from(bytes)));
        while s.bytes > self.shard_budget {
            // Never the entry just put: it is the one a reader is about to want.
            let Some(victim) = s.map.keys().find(|k| **k != key).copied() else {
                break;
            };
            if let Some((_, b)) = s.map.remove(&victim) {
                s.bytes -= b.len() + ENTRY_OVERHEAD;
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
        let st = c.stats();
        assert!(st.bytes <= 16 * 1024, "{st:?}");
        assert!(st.bytes >= st.entries * ENTRY_OVERHEAD as u64, "{st:?}");
        assert!(DocCache::new(0).get((1, 7), 5).is_none());
    }

    #[test]
    fn tiny_documents_are_charged_their_bookkeeping() {
        let c = DocCache::new(64 * 1024);
        for id in 0..100_000u64 {
            c.put((1, id), 1, b"1");
        }
        let st = c.stats();
        // Counting only payload bytes, 64 KiB would hold 65,536 one-byte entries
        // (several MiB of map slots and allocations).
        assert!(
            st.entries <= 64 * 1024 / (1 + ENTRY_OVERHEAD as u64),
            "{st:?}"
        );
        assert!(st.entries > 100, "{st:?}");
        assert!(c.get((1, 99_999), 1).is_some());
        assert_eq!((c.stats().hits, c.stats().misses), (1, 0));
    }
}
