//! ListDBs (8): JSON array of `{"Name","ID","CreatedAt","WALSize","MemoryUsed","DocsLive"}`
//! (the v0.3 field names), one per active database, by id; under a scope, only the
//! databases whose names it covers.

use docdb_protocol::Request;
use serde::Serialize;

use super::json;
use crate::auth::glob::Glob;
use crate::context::Context;
use crate::reply::Reply;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    name: String,
    #[serde(rename = "ID")]
    id: u64,
    created_at: String,
    #[serde(rename = "WALSize")]
    wal_size: u64,
    memory_used: u64,
    docs_live: u64,
}

pub fn run(ctx: &Context, _: &Request) -> Reply {
    run_in(ctx, None)
}

/// The rows of the databases `scope` covers (`None`: all).
pub fn run_in(ctx: &Context, scope: Option<&Glob>) -> Reply {
    let rows: Vec<Row> = ctx
        .pool
        .list()
        .into_iter()
        .filter(|i| scope.is_none_or(|g| g.matches(&i.entry.name)))
        .map(|i| Row {
            name: i.entry.name,
            id: i.entry.id,
            created_at: i.entry.created_at,
            wal_size: i.wal_bytes,
            memory_used: i.memory_used,
            docs_live: i.live_docs,
        })
        .collect();
    Reply::ok(json(&rows))
}
