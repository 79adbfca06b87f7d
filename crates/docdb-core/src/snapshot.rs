//! Snapshot bookkeeping. A snapshot is a commit sequence number: commits are numbered
//! under the commit lock, and a separate *visible* number is published once a batch is
//! durable. Open snapshots are counted so old versions can be reclaimed once no
//! snapshot can see them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    /// Highest commit whose effects readers may see.
    visible: AtomicU64,
    /// Open snapshots: seq → how many.
    open: Mutex<BTreeMap<u64, usize>>,
}

impl Snapshots {
    pub(crate) fn new(visible: u64) -> Self {
        Snapshots {
            visible: AtomicU64::new(visible),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Publishes commits up to `seq`. Never moves backwards.
    pub(crate) fn publish(&self, seq: u64) {
        self.visible.fetch_max(seq, Ordering::AcqRel);
    }

    /// Opens a snapshot at the current visible number.
    pub(crate) fn open(&self) -> u64 {
        let mut open = self.open.lock();
        // Read under the lock so `oldest` can never be computed past it.
        let s = self.visible();
        *open.entry(s).or_insert(0) += 1;
        s
    }

    pub(crate) fn close(&self, seq: u64) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                open.remove(&seq);
            }
        }
    }

    /// The oldest sequence number any reader may still ask for.
    pub(crate) fn oldest(&self) -> u64 {
        let open = self.open.lock();
        let v = self.visible();
        open.keys().next().map_or(v, |&s| s.min(v))
    }

    pub(crate) fn open_count(&self) -> usize {
        self.open.lock().values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_follows_open_snapshots() {
        let s = Snapshots::new(3);
        let a = s.open();
        s.publish(10);
        assert_eq!(s.oldest(), 3);
        let b = s.open();
        assert_eq!(b, 10);
        s.close(a);
        assert_eq!(s.oldest(), 10);
        s.close(b);
        s.publish(7);
        assert_eq!(s.visible(), 10, "never backwards");
        assert_eq!(s.open_count(), 0);
    }
}
