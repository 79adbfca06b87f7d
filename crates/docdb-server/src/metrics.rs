//! Prometheus metrics (SPEC §9), served by command 12 and `GET /metrics`. Counters and
//! the latency histogram are updated as requests complete; gauges (documents, memory,
//! WAL size, scheduler, worker pool, group commit) are read from the pool and the
//! scheduler when scraped, so they are never stale. Running totals the engine and
//! the scheduler keep (panics, group-commit batches and records) are exposed as
//! counters, set to the total when scraped.
//!
//! Two text formats: [`Metrics::render`] writes OpenMetrics 1.0 (what command 12
//! returns, and `GET /metrics` when the scraper's `Accept` asks for
//! `application/openmetrics-text`); [`to_classic`] turns it into the classic
//! Prometheus text format 0.0.4 for every other scraper.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::pool::Pool;
use crate::scheduler::Scheduler;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub operation: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DbLabel {
    pub db: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// Every metric of the server.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub operations: Family<OpLabels, Counter>,
    pub duration: Family<OperationLabel, Histogram>,
    pub errors: Family<CategoryLabel, Counter>,
    pub healing_operations: Counter,
    pub documents_healed: Counter,
    pub connections: Gauge,
    documents: Gauge,
    memory: Gauge,
    wal_size: Gauge,
    dbs_open: Gauge,
    dbs_total: Gauge,
    panics: Counter,
    shared_fsyncs: Counter,
    shared_records: Counter,
    shared_enabled: Gauge,
    shared_trimmed: Counter,
    shared_trim_syncs: Counter,
    shared_trim_wait: Counter<f64, AtomicU64>,
    cache_bytes: Gauge,
    cache_hits: Counter,
    cache_misses: Counter,
    queue_depth: Family<DbLabel, Gauge>,
    avg_queue_depth: Family<DbLabel, FGauge>,
    workers: Gauge,
    pool_running: Gauge,
    pool_waiting: Gauge,
    pool_free: Gauge,
    pool_capacity: Gauge,
    gc_batches: Family<DbLabel, Counter>,
    gc_records: Family<DbLabel, Counter>,
    gc_avg_batch: Family<DbLabel, FGauge>,
    gc_max_batch: Family<DbLabel, Gauge>,
    gc_avg_latency: Family<DbLabel, FGauge>,
    gc_max_latency: Family<DbLabel, FGauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            operations: Family::default(),
            duration: Family::new_with_constructor(|| {
                // 10 µs .. ~20 s
                Histogram::new(exponential_buckets(0.00001, 2.0, 22))
            }),
            errors: Family::default(),
            healing_operations: Counter::default(),
            documents_healed: Counter::default(),
            connections: Gauge::default(),
            documents: Gauge::default(),
            memory: Gauge::default(),
            wal_size: Gauge::default(),
            dbs_open: Gauge::default(),
            dbs_total: Gauge::default(),
            panics: Counter::default(),
            shared_fsyncs: Counter::default(),
            shared_records: Counter::default(),
            shared_enabled: Gauge::default(),
            shared_trimmed: Counter::default(),
            shared_trim_syncs: Counter::default(),
            shared_trim_wait: Counter::default(),
            cache_bytes: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            queue_depth: Family::default(),
            avg_queue_depth: Family::default(),
            workers: Gauge::default(),
            pool_running: Gauge::default(),
            pool_waiting: Gauge::default(),
            pool_free: Gauge::default(),
            pool_capacity: Gauge::default(),
            gc_batches: Family::default(),
            gc_records: Family::default(),
            gc_avg_batch: Family::default(),
            gc_max_batch: Family::default(),
            gc_avg_latency: Family::default(),
            gc_max_latency: Family::default(),
        };
        r.register(
            "docdb_operations",
            "Operations by type and outcome",
            m.operations.clone(),
        );
        r.register(
            "docdb_operation_duration_seconds",
            "Request latency from arrival to reply, by operation",
            m.duration.clone(),
        );
        r.register(
            "docdb_errors",
            "Errors by category (transient, permanent, critical, validation, network)",
            m.errors.clone(),
        );
        r.register(
            "docdb_healing_operations",
            "Healing runs (on read, on demand, background)",
            m.healing_operations.clone(),
        );
        r.register(
            "docdb_documents_healed",
            "Documents rebuilt from the WAL",
            m.documents_healed.clone(),
        );
        r.register(
            "docdb_connections",
            "Open client connections",
            m.connections.clone(),
        );
        r.register(
            "docdb_documents",
            "Live documents in open databases",
            m.documents.clone(),
        );
        r.register(
            "docdb_memory_bytes",
            "Bytes of live documents charged to the global budget",
            m.memory.clone(),
        );
        r.register(
            "docdb_wal_size_bytes",
            "Bytes of WAL segments of open databases",
            m.wal_size.clone(),
        );
        r.register(
            "docdb_databases_open",
            "Databases currently open",
            m.dbs_open.clone(),
        );
        r.register(
            "docdb_databases",
            "Databases in the catalog",
            m.dbs_total.clone(),
        );
        r.register(
            "docdb_worker_panics",
            "Panics caught while serving requests",
            m.panics.clone(),
        );
        r.register(
            "docdb_scheduler_queue_depth",
            "Queued requests per database",
            m.queue_depth.clone(),
        );
        r.register(
            "docdb_scheduler_avg_queue_depth",
            "Average queue depth seen on enqueue, per database",
            m.avg_queue_depth.clone(),
        );
        r.register(
            "docdb_scheduler_workers",
            "Worker threads alive",
            m.workers.clone(),
        );
        r.register(
            "docdb_worker_pool_running_workers",
            "Workers serving a batch",
            m.pool_running.clone(),
        );
        r.register(
            "docdb_worker_pool_waiting_tasks",
            "Requests waiting in queues",
            m.pool_waiting.clone(),
        );
        r.register(
            "docdb_worker_pool_free_workers",
            "Idle workers",
            m.pool_free.clone(),
        );
        r.register(
            "docdb_worker_pool_capacity",
            "Maximum workers",
            m.pool_capacity.clone(),
        );
        r.register(
            "docdb_wal_group_commit_batches",
            "Group-commit fsync batches per database",
            m.gc_batches.clone(),
        );
        r.register(
            "docdb_wal_group_commit_records",
            "Commits covered by group-commit batches per database",
            m.gc_records.clone(),
        );
        r.register(
            "docdb_wal_group_commit_avg_batch_size",
            "Average commits per fsync per database",
            m.gc_avg_batch.clone(),
        );
        r.register(
            "docdb_wal_group_commit_max_batch_size",
            "Largest batch per database",
            m.gc_max_batch.clone(),
        );
        r.register(
            "docdb_wal_group_commit_avg_batch_latency_seconds",
            "Average write+fsync time per batch",
            m.gc_avg_latency.clone(),
        );
        r.register(
            "docdb_wal_group_commit_max_batch_latency_seconds",
            "Longest write+fsync time of a batch",
            m.gc_max_latency.clone(),
        );
        r.register(
            "docdb_shared_log_fsyncs",
            "fsyncs of the shared commit log (each covers the commits of many databases)",
            m.shared_fsyncs.clone(),
        );
        r.register(
            "docdb_shared_log_records",
            "Group-commit batches made durable through the shared commit log",
            m.shared_records.clone(),
        );
        r.register(
            "docdb_shared_log_trimmed_segments",
            "Shared-log segments removed after the databases with records in them fsynced their WALs",
            m.shared_trimmed.clone(),
        );
        r.register(
            "docdb_shared_log_trim_wal_fsyncs",
            "fsyncs of databases' WALs made by the shared log's trim",
            m.shared_trim_syncs.clone(),
        );
        r.register(
            "docdb_shared_log_trim_wait_seconds",
            "Time commits waited for the shared log's trim (the log at its size bound, wal.shared_log_max_mb): every database's commits stall meanwhile",
            m.shared_trim_wait.clone(),
        );
        r.register(
            "docdb_shared_log_enabled",
            "1 while commits go through the shared log; 0 when off (configured off, or after a failure: databases fsync their own WALs)",
            m.shared_enabled.clone(),
        );
        r.register(
            "docdb_doc_cache_bytes",
            "Bytes held by the read cache all databases share (memory.shared_cache_mb), bookkeeping included",
            m.cache_bytes.clone(),
        );
        r.register(
            "docdb_doc_cache_hits",
            "Document reads served from the shared read cache",
            m.cache_hits.clone(),
        );
        r.register(
            "docdb_doc_cache_misses",
            "Document reads the shared read cache did not hold (read from the data file)",
            m.cache_misses.clone(),
        );
        *m.registry.lock() = r;
        m
    }

    /// Registers the pool's own counters (the pool counts them as it works).
    pub fn register_pool(&self, pool: &Pool) {
        self.registry.lock().register(
            "docdb_db_evictions",
            "Databases closed to make room under db.max_open_dbs",
            pool.evictions().clone(),
        );
    }

    /// Counts one finished operation.
    pub fn record(&self, operation: &'static str, status: docdb_protocol::Status, secs: f64) {
        self.operations
            .get_or_create(&OpLabels {
                operation,
                status: status.name(),
            })
            .inc();
        self.duration
            .get_or_create(&OperationLabel { operation })
            .observe(secs);
    }

    pub fn error(&self, category: crate::errors::Category) {
        self.errors
            .get_or_create(&CategoryLabel {
                category: category.name(),
            })
            .inc();
    }

    /// Refreshes the gauges and renders the text exposition.
    pub fn render(&self, pool: &Pool, sched: &Scheduler) -> String {
        let mut docs = 0u64;
        let mut wal = 0u64;
        self.gc_batches.clear();
        self.gc_records.clear();
        self.gc_max_batch.clear();
        for f in [
            &self.gc_avg_batch,
            &self.gc_avg_latency,
            &self.gc_max_latency,
        ] {
            f.clear();
        }
        let open = pool.open_dbs();
        for (id, db) in &open {
            let s = db.stats();
            docs += s.live_docs;
            wal += s.wal_bytes;
            let l = DbLabel { db: id.to_string() };
            let g = &s.group_commit;
            self.gc_batches
                .get_or_create(&l)
                .inner()
                .store(g.total_batches, Ordering::Relaxed);
            self.gc_records
                .get_or_create(&l)
                .inner()
                .store(g.total_records, Ordering::Relaxed);
            self.gc_max_batch
                .get_or_create(&l)
                .set(g.max_batch_size as i64);
            self.gc_avg_batch.get_or_create(&l).set(g.avg_batch_size);
            self.gc_avg_latency
                .get_or_create(&l)
                .set(g.avg_batch_latency_ns as f64 / 1e9);
            self.gc_max_latency
                .get_or_create(&l)
                .set(g.max_batch_latency_ns as f64 / 1e9);
        }
        self.documents.set(docs as i64);
        self.wal_size.set(wal as i64);
        self.memory.set(pool.memory().used() as i64);
        self.dbs_open.set(open.len() as i64);
        self.dbs_total.set(pool.catalog().list().len() as i64);
        let st = sched.stats();
        self.panics.inner().store(st.panics, Ordering::Relaxed);
        let sl = pool.shared_log_stats().unwrap_or_default();
        self.shared_fsyncs
            .inner()
            .store(sl.fsyncs, Ordering::Relaxed);
        self.shared_records
            .inner()
            .store(sl.records, Ordering::Relaxed);
        self.shared_trimmed
            .inner()
            .store(sl.trimmed_segments, Ordering::Relaxed);
        self.shared_trim_syncs
            .inner()
            .store(sl.trim_wal_syncs, Ordering::Relaxed);
        self.shared_trim_wait
            .inner()
            .store((sl.trim_wait_ns as f64 / 1e9).to_bits(), Ordering::Relaxed);
        self.shared_enabled.set(i64::from(sl.enabled));
        let dc = pool.doc_cache_stats().unwrap_or_default();
        self.cache_bytes.set(dc.bytes as i64);
        self.cache_hits.inner().store(dc.hits, Ordering::Relaxed);
        self.cache_misses
            .inner()
            .store(dc.misses, Ordering::Relaxed);
        self.queue_depth.clear();
        self.avg_queue_depth.clear();
        for (id, d) in &st.queue_depths {
            self.queue_depth
                .get_or_create(&DbLabel { db: id.to_string() })
                .set(*d as i64);
        }
        for (id, d) in &st.avg_queue_depth {
            self.avg_queue_depth
                .get_or_create(&DbLabel { db: id.to_string() })
                .set(*d);
        }
        self.workers.set(st.worker_count as i64);
        self.pool_running.set(st.worker_pool.running_workers as i64);
        self.pool_waiting.set(st.worker_pool.waiting_tasks as i64);
        self.pool_free.set(st.worker_pool.free_workers as i64);
        self.pool_capacity.set(st.worker_pool.pool_capacity as i64);
        let mut out = String::new();
        if encode(&mut out, &self.registry.lock()).is_err() {
            out.push_str("# metrics encoding failed\n");
        }
        out
    }
}

/// The content type of [`Metrics::render`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`to_classic`]'s output.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text (as [`Metrics::render`] writes it) in the classic
/// Prometheus text format 0.0.4: a counter family is named after its samples
/// (`# TYPE docdb_operations_total counter`, where OpenMetrics writes the family as
/// `docdb_operations`), and the OpenMetrics-only lines (`# UNIT`, `# EOF`) go.
/// Samples are unchanged.
pub fn to_classic(openmetrics: &str) -> String {
    // Families whose TYPE is counter: their HELP/TYPE lines get the `_total` name.
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) && !name.ends_with("_total") {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether an HTTP `Accept` header prefers OpenMetrics over the classic text format
/// (Prometheus sends `application/openmetrics-text;version=1.0.0,...;q=...,
/// text/plain;version=0.0.4;q=0.5,*/*;q=0.1`). Media ranges are weighed by their
/// `q`; a tie goes to OpenMetrics; no header means classic.
pub fn wants_openmetrics(accept: &str) -> bool {
    let mut om = 0.0f32;
    let mut plain = 0.0f32;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|v| v.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
            _ => {}
        }
    }
    om > 0.0 && om >= plain
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OM: &str = "# HELP docdb_operations Operations.\n# TYPE docdb_operations counter\ndocdb_operations_total{operation=\"read\"} 3\n# HELP docdb_documents Live documents.\n# TYPE docdb_documents gauge\ndocdb_documents 7\n# EOF\n";

    #[test]
    fn classic_names_counter_families_after_their_samples_and_drops_eof() {
        let c = to_classic(OM);
        assert_eq!(
            c,
            "# HELP docdb_operations_total Operations.\n# TYPE docdb_operations_total counter\ndocdb_operations_total{operation=\"read\"} 3\n# HELP docdb_documents Live documents.\n# TYPE docdb_documents gauge\ndocdb_documents 7\n"
        );
    }

    #[test]
    fn accept_headers_choose_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(prometheus));
        assert!(!wants_openmetrics(""));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(!wants_openmetrics(
            "application/openmetrics-text;q=0.2, text/plain"
        ));
        assert!(wants_openmetrics(
            "application/openmetrics-text; version=1.0.0"
        ));
    }
}
