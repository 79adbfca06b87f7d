//! DeleteCollection (6): ops[0].collection; fails with `collection is not empty` while
//! it holds documents. Empty reply.

use docdb_core::Database;
use docdb_protocol::{Request, Status};

use super::{collection, first_op, reply_of};
use crate::context::Context;

pub fn run(ctx: &Context, db: &Database, req: &Request) -> (Status, Vec<u8>) {
    match first_op(req) {
        Ok(op) => reply_of(
            ctx,
            collection(op)
                .and_then(|c| db.delete_collection(c))
                .map(|_| Vec::new()),
        ),
        Err(text) => (Status::Error, text.as_bytes().to_vec()),
    }
}
