//! Metrics (12): the Prometheus text exposition.

use docdb_protocol::Request;

use crate::context::Context;
use crate::reply::Reply;

pub fn run(ctx: &Context, _: &Request) -> Reply {
    Reply::ok(ctx.render_metrics().into_bytes())
}
