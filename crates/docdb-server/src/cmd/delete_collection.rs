//! DeleteCollection (6): ops[0].collection; fails with `collection is not empty` while
//! it holds documents. Empty reply.

use docdb_core::Database;
use docdb_protocol::Request;

use super::{collection, first_op};
use crate::context::Context;
use crate::reply::Reply;

pub fn run(_: &Context, db: &Database, req: &Request) -> Reply {
    match first_op(req) {
        Ok(op) => collection(op)
            .and_then(|c| db.delete_collection(c))
            .map(|_| Vec::new())
            .into(),
        Err(reply) => reply,
    }
}
