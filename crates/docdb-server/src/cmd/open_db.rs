//! OpenDB (1): ops[0].payload = database name; creates it on first use. Reply: u64 id.

use docdb_core::error::msg;
use docdb_protocol::{Request, Status};

use super::first_op;
use crate::context::Context;
use crate::pool::PoolError;

pub fn run(ctx: &Context, req: &Request) -> (Status, Vec<u8>) {
    let op = match first_op(req) {
        Ok(op) => op,
        Err(text) => return (Status::Error, text.as_bytes().to_vec()),
    };
    let Ok(name) = std::str::from_utf8(&op.payload) else {
        return (
            Status::Error,
            b"invalid database name: must be UTF-8".to_vec(),
        );
    };
    match ctx.pool.open_db(name) {
        Ok(id) => (Status::Ok, id.to_le_bytes().to_vec()),
        Err(PoolError::Engine(e)) => super::engine_error(ctx, &e),
        Err(PoolError::Stopped) => (Status::Error, msg::POOL_STOPPED.as_bytes().to_vec()),
        Err(e) => (Status::Error, crate::errors::client_text(&e).into_bytes()),
    }
}
