//! ListCollections (7): JSON array of the database's collection names, sorted.

use docdb_core::Database;
use docdb_protocol::Request;

use super::json;
use crate::context::Context;
use crate::reply::Reply;

pub fn run(_: &Context, db: &Database, _: &Request) -> Reply {
    Reply::ok(json(&db.list_collections()))
}
