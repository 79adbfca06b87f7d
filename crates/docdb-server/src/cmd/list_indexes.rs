//! ListIndexes (21, new): ops[0].collection. Reply: JSON array, by name, of
//! `{"name","fields":[[path,1|-1],...],"unique","entries"}` plus `"array_entries"`
//! (entries whose key holds an array, indexed as a whole value) and `"memory_bytes"`.

use docdb_core::Database;
use docdb_protocol::Request;

use super::{collection, first_op};
use crate::context::Context;
use crate::reply::Reply;

pub fn run(_: &Context, db: &Database, req: &Request) -> Reply {
    let op = match first_op(req) {
        Ok(op) => op,
        Err(reply) => return reply,
    };
    collection(op)
        .and_then(|c| db.list_indexes(c))
        .map(|list| serde_json::to_vec(&list).unwrap_or_else(|_| b"[]".to_vec()))
        .into()
}
