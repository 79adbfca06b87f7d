//! Figures a database reports about itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A point-in-time view of one database.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Documents that exist (newest committed state).
    pub live_docs: u64,
    /// Deleted documents whose tombstones are still held (for open snapshots, until
    /// the next cleanup).
    pub tombstones: u64,
    pub collections: u64,
    /// Bytes in WAL segments on disk.
    pub wal_bytes: u64,
    /// Bytes in the current data file.
    pub data_bytes: u64,
    /// Bytes of data file records no live version points at.
    pub dead_bytes: u64,
    /// Bytes of live documents, as charged against the memory limits.
    pub memory_used: u64,
    /// Transactions committed since open (a single write is one).
    pub tx_count: u64,
    pub open_snapshots: u64,
    /// Highest committed sequence number visible to readers.
    pub visible_seq: u64,
    pub checkpoints: u64,
    pub compactions: u64,
    pub group_commit: GroupCommitStats,
}

/// Group-commit figures, named as the wire protocol's SchedulerStats reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupCommitStats {
    pub total_batches: u64,
    pub total_records: u64,
    pub avg_batch_size: f64,
    pub max_batch_size: u64,
    pub avg_batch_latency_ns: u64,
    pub max_batch_latency_ns: u64,
    pub last_flush_time_unix_ns: u64,
}

/// Lock-free accumulators behind [`GroupCommitStats`], updated by the syncer.
#[derive(Debug, Default)]
pub(crate) struct GroupCounters {
    batches: AtomicU64,
    records: AtomicU64,
    max_batch: AtomicU64,
    latency_ns: AtomicU64,
    max_latency_ns: AtomicU64,
    last_flush_ns: AtomicU64,
}

impl GroupCounters {
    pub(crate) fn record(&self, records: u64, latency: Duration) {
        let ns = latency.as_nanos().min(u64::MAX as u128) as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
        self.max_batch.fetch_max(records, Ordering::Relaxed);
        self.latency_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_latency_ns.fetch_max(ns, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.last_flush_ns.store(now, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> GroupCommitStats {
        let batches = self.batches.load(Ordering::Relaxed);
        let records = self.records.load(Ordering::Relaxed);
        GroupCommitStats {
            total_batches: batches,
            total_records: records,
            avg_batch_size: if batches == 0 {
                0.0
            } else {
                records as f64 / batches as f64
            },
            max_batch_size: self.max_batch.load(Ordering::Relaxed),
            avg_batch_latency_ns: self
                .latency_ns
                .load(Ordering::Relaxed)
                .checked_div(batches)
                .unwrap_or(0),
            max_batch_latency_ns: self.max_latency_ns.load(Ordering::Relaxed),
            last_flush_time_unix_ns: self.last_flush_ns.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_and_maxima() {
        let g = GroupCounters::default();
        assert_eq!(g.snapshot().avg_batch_size, 0.0);
        g.record(2, Duration::from_nanos(100));
        g.record(6, Duration::from_nanos(300));
        let s = g.snapshot();
        assert_eq!(
            (s.total_batches, s.total_records, s.max_batch_size),
            (2, 8, 6)
        );
        assert_eq!(s.avg_batch_size, 4.0);
        assert_eq!((s.avg_batch_latency_ns, s.max_batch_latency_ns), (200, 300));
        assert!(s.last_flush_time_unix_ns > 0);
    }
}
