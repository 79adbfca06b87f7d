//! Query (18, new; SPEC §8.1, §11): ops[0].collection, payload = query JSON
//! `{"filter","sort","limit","after","projection","explain"}` (every key optional; an
//! empty payload is `{}`).
//!
//! Reply: JSON `{"rows":[{"id":n,"doc":v},...],"next":cursor-or-null}`, plus `"plan"`
//! when the query asks for `explain`. `next` is the opaque text to pass as `after` for
//! the following page, `null` when no rows follow. Like Scan, a page stops before the
//! row that would take it past `net.reply_budget_mb` (its first row always included)
//! and then gives `next`. A bad query is status Error with a text starting
//! `invalid query: ` that names the key, operator or path.

use docdb_core::{Database, Query, QueryPage, ReadAt};
use docdb_protocol::Request;

use super::{collection, first_op, page_reply, rows_json};
use crate::context::Context;
use crate::reply::Reply;

/// A parsed query fixed at the snapshot of its place in its database's queue. A light
/// one is answered there ([`Pinned::run_light`]); a heavier one runs after the queue
/// is handed on ([`super::serve_batch`]), so the database's next requests (another
/// reader's queries) are served by other workers meanwhile, and it still sees exactly
/// the writes before it.
pub struct Pinned {
    query: Query,
    read: ReadAt,
}

/// Parses the request and fixes its snapshot; a bad query or an unknown collection
/// is answered at once.
pub fn pin(db: &Database, req: &Request) -> Result<Pinned, Reply> {
    let op = first_op(req)?;
    let pinned =
        Query::parse_with_depth(&op.payload, db.config().limits.max_depth).and_then(|query| {
            let read = db.read_at(collection(op)?)?;
            Ok(Pinned { query, read })
        });
    pinned.map_err(|e| Reply::from(&e))
}

/// Index entries examined plus documents read within which a query is answered in
/// its place in the queue, like a by-id read ([`Pinned::run_light`]); an equality on
/// an indexed field costs 2, a 20-row range over an index about 40, a 100-row one about
/// 200 (DECISIONS 72).
pub const LIGHT_QUERY_WORK: u64 = 64;

impl Pinned {
    pub fn run(&self, ctx: &Context) -> Reply {
        reply(
            self.read
                .query_page(&self.query, ctx.cfg.net.reply_budget_bytes()),
        )
    }

    /// The reply if the page takes at most [`LIGHT_QUERY_WORK`]; `None` (the work
    /// done so far dropped) for a heavier query, to be [`Pinned::run`] once the queue
    /// is handed on. An error is a reply.
    pub fn run_light(&self, ctx: &Context) -> Option<Reply> {
        let budget = ctx.cfg.net.reply_budget_bytes();
        self.read
            .query_page_within(&self.query, budget, LIGHT_QUERY_WORK)
            .transpose()
            .map(reply)
    }
}

/// A page's reply, or the error's.
fn reply(page: docdb_core::Result<QueryPage>) -> Reply {
    match page {
        Ok(page) => page_reply(encode(&page)),
        Err(e) => Reply::from(&e),
    }
}

/// The reply JSON of a page. Rows are stored (or projected) JSON, embedded as is.
fn encode(page: &QueryPage) -> Vec<u8> {
    let mut out = b"{\"rows\":".to_vec();
    rows_json(&mut out, &page.rows);
    out.extend_from_slice(b",\"next\":");
    match &page.next {
        // The cursor is lowercase hex: no escaping needed.
        Some(c) => {
            out.push(b'"');
            out.extend_from_slice(c.as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    if let Some(plan) = &page.plan {
        out.extend_from_slice(b",\"plan\":");
        out.extend_from_slice(plan.to_json().to_string().as_bytes());
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use docdb_core::query::Plan;

    #[test]
    fn reply_json() {
        let page = QueryPage {
            rows: vec![(1, b"{}".to_vec()), (7, b"[1]".to_vec())],
            next: Some("0a1b".into()),
            plan: None,
        };
        assert_eq!(
            encode(&page),
            br#"{"rows":[{"id":1,"doc":{}},{"id":7,"doc":[1]}],"next":"0a1b"}"#
        );
        let end = QueryPage {
            rows: vec![],
            next: None,
            plan: Some(Plan {
                kind: "scan",
                collection: "c".into(),
                examined: 3,
                index: None,
                branches: Vec::new(),
            }),
        };
        assert_eq!(
            encode(&end),
            br#"{"rows":[],"next":null,"plan":{"collection":"c","examined":3,"kind":"scan"}}"#
        );
    }
}
