//! CloseDB (2): served through the database's queue so it runs after the requests
//! queued before it; the database is checkpointed and closed once no worker holds
//! it, and reopened transparently by the next request. Empty reply. The handling is
//! in `serve_batch` (`Context::close_requested`). A database read-only after an I/O
//! failure is answered OK but stays open, read-only, until the server restarts
//! (DECISIONS 38): reopening it would make it writable again.

use docdb_core::Database;
use docdb_protocol::Request;

use crate::context::Context;
use crate::reply::Reply;

/// The reply once the requests queued before it are served (the close itself follows
/// in `serve_batch`).
pub fn run(_: &Context, _: &Database, _: &Request) -> Reply {
    Reply::empty()
}
