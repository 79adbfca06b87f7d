//! Scan (15, new): ops[0].collection, doc_id = start after (0 = from the start),
//! payload = JSON options `{"limit":n,"next":bool}` (limit: default 100, at most 1000;
//! empty payload = defaults).
//!
//! Reply, by default: JSON `[{"id":n,"doc":<value>},...]` in id order. With
//! `"next":true`: `{"rows":[...],"next":id-or-null}`, where `next` is the id to start
//! after for the following page, `null` once the collection's end was reached.
//!
//! A page stops before the row that would take it past `net.reply_budget_mb` (8 MiB),
//! judged from the index before any document is read; its first row is always
//! included (a document is at most 16 MiB, so one row always fits the frame limit).
//! Such a page can be shorter than `limit` although documents follow: only the `next`
//! form tells a short page from the end, so every client that pages should ask for
//! it (docs/PROTOCOL.md).

use docdb_core::{Database, ScanPage};
use docdb_protocol::{text, Request};

use super::{collection, first_op, page_reply, rows_json};
use crate::context::Context;
use crate::reply::Reply;

/// The options of a Scan request.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    limit: u64,
    /// Reply `{"rows":[...],"next":...}` instead of the bare array.
    next: bool,
}

/// The options object; anything else (not an object, unknown keys, a limit that is
/// not a positive integer, a `next` that is not a boolean) is refused.
fn parse_options(payload: &[u8]) -> Option<Options> {
    let mut opts = Options {
        limit: DEFAULT_LIMIT,
        next: false,
    };
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Some(opts);
    }
    let serde_json::Value::Object(map) = serde_json::from_slice(payload).ok()? else {
        return None;
    };
    for (k, v) in &map {
        match k.as_str() {
            "limit" => opts.limit = v.as_u64().filter(|&n| n >= 1)?,
            "next" => opts.next = v.as_bool()?,
            _ => return None,
        }
    }
    Some(opts)
}

const DEFAULT_LIMIT: u64 = 100;

pub fn run(ctx: &Context, db: &Database, req: &Request) -> Reply {
    let op = match first_op(req) {
        Ok(op) => op,
        Err(reply) => return reply,
    };
    let Some(opts) = parse_options(&op.payload) else {
        return Reply::error(text::INVALID_SCAN);
    };
    let limit = opts.limit.min(docdb_core::MAX_SCAN_LIMIT as u64) as usize;
    let budget = ctx.cfg.net.reply_budget_bytes();
    let page = collection(op).and_then(|coll| db.scan_page(coll, op.doc_id, limit, budget));
    match page {
        Ok(page) => page_reply(encode(&page, opts.next)),
        Err(e) => Reply::from(&e),
    }
}

/// The reply JSON of a page. Stored documents are valid JSON, so they are embedded as
/// they are.
fn encode(page: &ScanPage, with_next: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if with_next {
        out.extend_from_slice(b"{\"rows\":");
    }
    rows_json(&mut out, &page.rows);
    if with_next {
        match page.rows.last() {
            Some((id, _)) if page.more => {
                out.extend_from_slice(format!(",\"next\":{id}}}").as_bytes());
            }
            _ => out.extend_from_slice(b",\"next\":null}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_refuse() {
        let o = |s: &str| parse_options(s.as_bytes());
        assert_eq!(
            o(""),
            Some(Options {
                limit: 100,
                next: false
            })
        );
        assert_eq!(
            o(r#"{"limit":5,"next":true}"#),
            Some(Options {
                limit: 5,
                next: true
            })
        );
        assert_eq!(o(r#"{"next":false}"#).map(|x| x.limit), Some(100));
        for bad in [r#"{"next":1}"#, r#"{"limit":0}"#, r#"{"x":1}"#, "[1]", "{"] {
            assert_eq!(o(bad), None, "{bad}");
        }
    }

    #[test]
    fn both_reply_forms() {
        let page = ScanPage {
            rows: vec![(1, b"{}".to_vec()), (7, b"[1]".to_vec())],
            more: true,
        };
        assert_eq!(
            encode(&page, false),
            br#"[{"id":1,"doc":{}},{"id":7,"doc":[1]}]"#
        );
        assert_eq!(
            encode(&page, true),
            br#"{"rows":[{"id":1,"doc":{}},{"id":7,"doc":[1]}],"next":7}"#
        );
        let end = ScanPage {
            rows: vec![(1, b"{}".to_vec())],
            more: false,
        };
        assert_eq!(
            encode(&end, true),
            br#"{"rows":[{"id":1,"doc":{}}],"next":null}"#
        );
        assert_eq!(
            encode(&ScanPage::default(), true),
            br#"{"rows":[],"next":null}"#
        );
    }
}
