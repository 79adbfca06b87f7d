//! SchedulerStats (14, new): JSON with `queue_depths` {db_id: n}, `avg_queue_depth`,
//! `worker_count`, `policy`, `panics`, `worker_pool` {running_workers, waiting_tasks,
//! free_workers, pool_capacity} and `wal_group_commit` {db_id: {total_batches,
//! total_records, avg_batch_size, avg_batch_latency_ns, max_batch_size,
//! max_batch_latency_ns, last_flush_time_unix_ns}}.

use std::collections::BTreeMap;

use docdb_protocol::Request;
use serde_json::json;

use super::json as to_json;
use crate::context::Context;
use crate::reply::Reply;

pub fn run(ctx: &Context, _: &Request) -> Reply {
    let s = ctx.scheduler().stats();
    let depths: BTreeMap<String, u64> = s
        .queue_depths
        .iter()
        .map(|(id, d)| (id.to_string(), *d))
        .collect();
    let total: u64 = depths.values().sum();
    let avg = if depths.is_empty() {
        0.0
    } else {
        s.avg_queue_depth.values().sum::<f64>() / s.avg_queue_depth.len() as f64
    };
    let group: BTreeMap<String, docdb_core::GroupCommitStats> = ctx
        .pool
        .open_dbs()
        .into_iter()
        .map(|(id, db)| (id.to_string(), db.stats().group_commit))
        .collect();
    let v = json!({
        "queue_depths": depths,
        "total_queued": total,
        "avg_queue_depth": avg,
        "worker_count": s.worker_count,
        "policy": s.policy,
        "panics": s.panics,
        "worker_pool": s.worker_pool,
        "wal_group_commit": group,
    });
    Reply::ok(to_json(&v))
}
