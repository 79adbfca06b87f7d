//! Scan (15, new): ops[0].collection, doc_id = start after (0 = from the start),
//! payload = JSON `{"limit":n}` (default 100, at most 1000; empty payload = default).
//! Reply: JSON `[{"id":n,"doc":<value>},...]` in id order; fewer than `limit` = end.

use docdb_core::error::msg;
use docdb_core::Database;
use docdb_protocol::{Request, Status};

use super::{collection, first_op, reply_of};
use crate::context::Context;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    100
}

pub fn run(ctx: &Context, db: &Database, req: &Request) -> (Status, Vec<u8>) {
    let op = match first_op(req) {
        Ok(op) => op,
        Err(text) => return (Status::Error, text.as_bytes().to_vec()),
    };
    let limit = if op.payload.iter().all(u8::is_ascii_whitespace) {
        default_limit()
    } else {
        match serde_json::from_slice::<Options>(&op.payload) {
            Ok(o) if o.limit >= 1 => o.limit,
            _ => return (Status::Error, msg::INVALID_SCAN.as_bytes().to_vec()),
        }
    };
    let limit = limit.min(docdb_core::MAX_SCAN_LIMIT as u64) as usize;
    reply_of(
        ctx,
        collection(op)
            .and_then(|coll| db.scan(coll, op.doc_id, limit))
            .map(|rows| {
                // Stored documents are valid JSON, so they are embedded as they are.
                let mut out =
                    Vec::with_capacity(2 + rows.iter().map(|(_, d)| d.len() + 32).sum::<usize>());
                out.push(b'[');
                for (i, (id, doc)) in rows.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(format!("{{\"id\":{id},\"doc\":").as_bytes());
                    out.extend_from_slice(doc);
                    out.push(b'}');
                }
                out.push(b']');
                out
            }),
    )
}
