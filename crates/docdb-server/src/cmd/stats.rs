//! Stats (4): 5 × u64 — total_dbs, active_dbs, total_txns, wal_size, memory_used.
//! `total_dbs` counts the catalog, `active_dbs` the open databases, `total_txns` the
//! transactions committed since the server started, `wal_size` the WAL bytes of the
//! open databases, `memory_used` the bytes charged to the global budget.

use docdb_protocol::Request;

use crate::context::Context;
use crate::reply::Reply;

pub fn run(ctx: &Context, _: &Request) -> Reply {
    let open = ctx.pool.open_dbs();
    let wal: u64 = open.iter().map(|(_, d)| d.stats().wal_bytes).sum();
    let fields = [
        ctx.pool.catalog().list().len() as u64,
        open.len() as u64,
        ctx.pool.total_txns(),
        wal,
        ctx.pool.memory().used(),
    ];
    let mut out = Vec::with_capacity(40);
    for f in fields {
        out.extend_from_slice(&f.to_le_bytes());
    }
    Reply::ok(out)
}
