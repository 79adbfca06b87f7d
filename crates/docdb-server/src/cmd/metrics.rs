//! Metrics (12): the Prometheus text exposition.

use docdb_protocol::Status;

use crate::context::Context;

pub fn run(ctx: &Context) -> (Status, Vec<u8>) {
    (Status::Ok, ctx.render_metrics().into_bytes())
}
