//! [`Scan`]: a collection's documents in id order, fetched a page at a time (Scan,
//! command 15) as the iterator advances.
//!
//! Each page asks for up to `page_size` documents after the last id seen, in the
//! reply form that says where to resume (`"next":true`): the server may end a page
//! early to keep it within its reply budget (`net.reply_budget_mb`), so only its
//! `next` being null marks the end, never a short page. Pages are separate requests,
//! so a scan is not one snapshot: documents written while it runs may or may not be
//! seen.

use std::collections::VecDeque;
use std::marker::PhantomData;

use docdb_protocol::{Command, Op, OpType};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::client::{json_reply, ok_data};
use crate::database::Database;
use crate::error::{Error, Result};

/// Largest page the server returns (a larger limit is capped, so it must be capped
/// here too, or a full page would look short).
pub const MAX_PAGE_SIZE: usize = 1000;

/// Page size when none is chosen.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Iterator over `(id, document)` of one collection, in id order. The document type
/// is `serde_json::Value` unless [`Scan::typed`] chose another; [`Scan::raw`] yields
/// the stored bytes instead.
///
/// A failed request is yielded as an error once, then the iterator ends; a document
/// that does not fit the chosen type is yielded as [`Error::Json`] and the scan goes
/// on.
#[must_use = "iterators do nothing unless advanced"]
pub struct Scan<D = serde_json::Value> {
    db: Database,
    collection: String,
    /// Start-after id of the next page request.
    after: u64,
    /// Last id received.
    last: Option<u64>,
    page_size: usize,
    page: VecDeque<(u64, Box<RawValue>)>,
    done: bool,
    _doc: PhantomData<fn() -> D>,
}

#[derive(Deserialize)]
struct Row {
    id: u64,
    doc: Box<RawValue>,
}

/// A Scan reply in its `"next":true` form.
#[derive(Deserialize)]
struct Page {
    rows: Vec<Row>,
    /// The id to start after for the next page; `None` at the end.
    next: Option<u64>,
}

impl Scan {
    pub(crate) fn new(db: Database, collection: &str) -> Scan {
        Scan {
            db,
            collection: collection.to_owned(),
            after: 0,
            last: None,
            page_size: DEFAULT_PAGE_SIZE,
            page: VecDeque::new(),
            done: false,
            _doc: PhantomData,
        }
    }
}

impl<D> Scan<D> {
    /// Documents per request, 1 to [`MAX_PAGE_SIZE`] (default 100; out-of-range
    /// values are clamped).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// Starts after document `id` (default 0: from the start). Resuming a scan from
    /// the last id it yielded continues where it stopped.
    pub fn start_after(mut self, id: u64) -> Self {
        self.after = id;
        // No id follows the largest one.
        self.done = id == u64::MAX;
        self
    }

    /// Yields documents deserialized as `T`; one that does not fit fails with
    /// [`Error::Json`].
    pub fn typed<T: DeserializeOwned>(self) -> Scan<T> {
        Scan {
            db: self.db,
            collection: self.collection,
            after: self.after,
            last: self.last,
            page_size: self.page_size,
            page: self.page,
            done: self.done,
            _doc: PhantomData,
        }
    }

    /// Yields the stored JSON bytes of each document, without parsing them.
    pub fn raw(self) -> RawScan {
        RawScan(self.typed())
    }

    /// The next stored document, fetching a page when the current one is used up.
    fn next_raw(&mut self) -> Option<Result<(u64, Box<RawValue>)>> {
        while self.page.is_empty() && !self.done {
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.page.pop_front().map(Ok)
    }

    fn fetch(&mut self) -> Result<()> {
        // "After 0" cannot be asked for (0 means from the start): when the last page
        // ended at id 0, ask for one more and drop id 0 again.
        let refetch_zero = self.last == Some(0);
        let limit = (self.page_size + usize::from(refetch_zero)).min(MAX_PAGE_SIZE);
        let options = format!("{{\"limit\":{limit},\"next\":true}}").into_bytes();
        let op = Op::new(OpType::Read, &self.collection, self.after, options);
        let page: Page =
            self.db
                .client()
                .request(self.db.id(), Command::Scan, vec![op], |resp| {
                    json_reply(&ok_data(resp)?, "Scan")
                })?;
        let before = self.last;
        if page.next.is_none() {
            self.done = true;
        }
        for row in page.rows {
            if refetch_zero && row.id == 0 {
                continue;
            }
            let in_order = match self.last {
                Some(last) => row.id > last,
                None => self.after == 0 || row.id > self.after,
            };
            if !in_order {
                return Err(Error::protocol(format!(
                    "Scan returned id {} out of order (after {})",
                    row.id, self.after
                )));
            }
            self.last = Some(row.id);
            self.after = row.id;
            self.page.push_back((row.id, row.doc));
        }
        if !self.done && self.last == before {
            // Only possible when document 0 alone fills the server's reply budget:
            // "after 0" cannot be asked for, so the page would repeat forever.
            return Err(Error::protocol(
                "Scan made no progress (document 0 alone fills a page)",
            ));
        }
        if self.last == Some(u64::MAX) {
            // Nothing can follow; do not ask (the server would treat the id as a
            // start-after it cannot exceed).
            self.done = true;
        }
        Ok(())
    }
}

impl<D: DeserializeOwned> Iterator for Scan<D> {
    type Item = Result<(u64, D)>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_raw()?.and_then(|(id, doc)| {
            serde_json::from_str(doc.get())
                .map(|d| (id, d))
                .map_err(Error::Json)
        }))
    }
}

impl<D: DeserializeOwned> std::iter::FusedIterator for Scan<D> {}

/// Iterator over `(id, stored JSON bytes)`, from [`Scan::raw`].
#[must_use = "iterators do nothing unless advanced"]
pub struct RawScan(Scan<()>);

impl Iterator for RawScan {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(
            self.0
                .next_raw()?
                .map(|(id, doc)| (id, Box::<str>::from(doc).into_boxed_bytes().into_vec())),
        )
    }
}

impl std::iter::FusedIterator for RawScan {}
