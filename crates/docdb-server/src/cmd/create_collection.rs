//! CreateCollection (5): ops[0].collection. Empty reply.

use docdb_core::Database;
use docdb_protocol::Request;

use super::{collection, first_op};
use crate::context::Context;
use crate::reply::Reply;

pub fn run(_: &Context, db: &Database, req: &Request) -> Reply {
    match first_op(req) {
        Ok(op) => collection(op)
            .and_then(|c| db.create_collection(c))
            .map(|_| Vec::new())
            .into(),
        Err(reply) => reply,
    }
}
