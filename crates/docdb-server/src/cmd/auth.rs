//! Auth (16): ops[0].payload = token. Checks the token against the server's key and
//! binds its scope to the connection, replacing any earlier one. Reply: JSON
//! `{"db": pattern, "rights": "read"|"write"|"admin", "expires": unix_secs|null}`;
//! a bad, expired, tampered or other-key token is Denied with the reason. Answered by
//! the connection itself (one signature check, tens of microseconds).

use docdb_protocol::{Request, Status};

use super::first_op;
use crate::auth::token::unix_now;
use crate::auth::Session;
use crate::context::Context;
use crate::reply::Reply;

pub fn run(ctx: &Context, session: &mut Session, req: &Request) -> Reply {
    let op = match first_op(req) {
        Ok(op) => op,
        Err(reply) => return reply,
    };
    match ctx.auth.authenticate(&op.payload, unix_now()) {
        Ok(scope) => {
            let reply = Reply::ok(scope.to_json());
            tracing::debug!(db = scope.db.as_str(), rights = scope.rights.name(), "auth");
            session.bind(scope);
            reply
        }
        Err(text) => {
            tracing::info!(why = %text, "auth refused");
            Reply::new(Status::Denied, text.into_bytes())
        }
    }
}
