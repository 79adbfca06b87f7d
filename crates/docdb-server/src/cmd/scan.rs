//! Scan (15, new): ops[0].collection, doc_id = start after (0 = from the start),
//! payload = JSON `{"limit":n}` (default 100, at most 1000; empty payload = default).
//! Reply: JSON `[{"id":n,"doc":<value>},...]` in id order; fewer than `limit` = end.

use docdb_core::error::msg;
use docdb_core::Database;
use docdb_protocol::{Request, Status};

use super::{collection, first_op, reply_of};
use crate::context::Context;

/// The `limit` of the options object; anything else (not an object, unknown keys, a
/// limit that is not a positive integer) is refused.
fn parse_limit(payload: &[u8]) -> Option<u64> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Some(DEFAULT_LIMIT);
    }
    let serde_json::Value::Object(map) = serde_json::from_slice(payload).ok()? else {
        return None;
    };
    if map.keys().any(|k| k != "limit") {
        return None;
    }
    match map.get("limit") {
        None => Some(DEFAULT_LIMIT),
        Some(v) => v.as_u64().filter(|&n| n >= 1),
    }
}

const DEFAULT_LIMIT: u64 = 100;

pub fn run(ctx: &Context, db: &Database, req: &Request) -> (Status, Vec<u8>) {
    let op = match first_op(req) {
        Ok(op) => op,
        Err(text) => return (Status::Error, text.as_bytes().to_vec()),
    };
    let Some(limit) = parse_limit(&op.payload) else {
        return (Status::Error, msg::INVALID_SCAN.as_bytes().to_vec());
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
