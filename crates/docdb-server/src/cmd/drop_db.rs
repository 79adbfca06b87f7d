//! DropDB (17): db_id 0, ops[0].payload = database name. Closes the database (its
//! queued and later requests are answered `database was dropped`), removes its files
//! and marks it deleted in the catalog; its id is never reused, and a later OpenDB of
//! the name makes a new, empty database with a new id. Reply: empty; NotFound
//! `database not found` for a name with no database. Served server-wide (it waits for
//! the database's requests, not behind them in its queue). Under `auth.mode = token`
//! it is an admin command.

use docdb_protocol::{text, Request, Status};

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
    match ctx.pool.drop_db(name) {
        Ok(_) => Reply::empty(),
        Err(PoolError::UnknownName) => {
            Reply::new(Status::NotFound, text::DB_NOT_FOUND.as_bytes().to_vec())
        }
        Err(PoolError::Engine(e)) => Reply::from(&e),
        Err(PoolError::Stopped) => Reply::error(text::POOL_STOPPED),
        Err(e) => Reply::error(crate::errors::client_text(&e)),
    }
}
