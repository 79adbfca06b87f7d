//! OpenDB (1): ops[0].payload = database name; creates it on first use. Reply: u64 id.

use docdb_protocol::{text, Request};

use super::first_op;
use crate::context::Context;
use crate::pool::PoolError;
use crate::reply::Reply;

pub fn run(ctx: &Context, req: &Request) -> Reply {
    let op = match first_op(req) {
        Ok(op) => op,
        Err(reply) => return reply,
    };
    let Ok(name) = std::str::from_utf8(&op.payload) else {
        return Reply::error("invalid database name: must be UTF-8");
    };
    match ctx.pool.open_db(name) {
        Ok(id) => Reply::ok(id.to_le_bytes().to_vec()),
        Err(PoolError::Engine(e)) => Reply::from(&e),
        Err(PoolError::Stopped) => Reply::error(text::POOL_STOPPED),
        Err(e) => Reply::error(crate::errors::client_text(&e)),
    }
}
