//! [`Query`]: a typed builder for the Query command (18): a filter in MongoDB's
//! language, a sort, a projection, a limit per page, and a resume cursor. Run one
//! page with [`Query::page`], or iterate over every matching document, a page per
//! request, with [`Query::iter`].
//!
//! Each page is one snapshot on the server; pages are separate requests, resumed
//! strictly after the last row's sort key and id, so a row that exists throughout
//! and does not change is seen exactly once even while others write.

use std::collections::VecDeque;

use docdb_protocol::{Command, Op, OpType};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{json_reply, ok_data};
use crate::database::Database;
use crate::error::Result;

/// Most rows the server returns per page.
pub const MAX_LIMIT: usize = 1000;

/// A query on one collection. Built from [`crate::Collection::query`] or
/// [`Database::query`].
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until .page() or .iter()"]
pub struct Query {
    db: Database,
    collection: String,
    filter: Value,
    sort: Vec<(String, i8)>,
    limit: Option<usize>,
    projection: Option<Vec<String>>,
    after: Option<String>,
    explain: bool,
}

/// One page of a query, each document as a `D`: a [`Value`] from [`Query::page`],
/// or any type from [`Query::page_as`] (`Box<serde_json::value::RawValue>` keeps the
/// server's JSON text unparsed).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(bound = "D: serde::de::DeserializeOwned")]
pub struct QueryPage<D = Value> {
    /// Matching documents (projected when asked) in the query's order.
    pub rows: Vec<QueryRow<D>>,
    /// Pass to [`Query::after`] for the next page; `None` at the end.
    pub next: Option<String>,
    /// The plan, with [`Query::explain`].
    #[serde(default)]
    pub plan: Option<Value>,
}

/// One row of a page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(bound = "D: serde::de::DeserializeOwned")]
pub struct QueryRow<D = Value> {
    pub id: u64,
    pub doc: D,
}

impl Query {
    pub(crate) fn new(db: Database, collection: &str) -> Query {
        Query {
            db,
            collection: collection.to_owned(),
            filter: json!({}),
            sort: Vec::new(),
            limit: None,
            projection: None,
            after: None,
            explain: false,
        }
    }

    /// The filter, e.g. `json!({"age": {"$gte": 18}, "tags": "admin"})` (default
    /// `{}`: every document).
    pub fn filter(mut self, filter: Value) -> Self {
        self.filter = filter;
        self
    }

    /// Sorts ascending by a dotted path, after the sort paths added before.
    pub fn sort_asc(mut self, path: &str) -> Self {
        self.sort.push((path.to_owned(), 1));
        self
    }

    /// Sorts descending by a dotted path, after the sort paths added before.
    pub fn sort_desc(mut self, path: &str) -> Self {
        self.sort.push((path.to_owned(), -1));
        self
    }

    /// Rows per page, 1 to [`MAX_LIMIT`] (server default 100). Out of range is
    /// refused by the server.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Returns only these dotted paths of each document (the id always comes with the
    /// row).
    pub fn projection<S: AsRef<str>>(mut self, paths: &[S]) -> Self {
        self.projection = Some(paths.iter().map(|p| p.as_ref().to_owned()).collect());
        self
    }

    /// Resumes after a page's [`QueryPage::next`].
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.after = Some(cursor.into());
        self
    }

    /// Asks for the plan ([`QueryPage::plan`]).
    pub fn explain(mut self, on: bool) -> Self {
        self.explain = on;
        self
    }

    /// The query JSON sent as the payload.
    pub fn to_json(&self) -> Value {
        let mut q = json!({"filter": self.filter});
        if !self.sort.is_empty() {
            q["sort"] = self.sort.iter().map(|(p, d)| json!([p, d])).collect();
        }
        if let Some(n) = self.limit {
            q["limit"] = json!(n);
        }
        if let Some(p) = &self.projection {
            q["projection"] = json!(p);
        }
        if let Some(a) = &self.after {
            q["after"] = json!(a);
        }
        if self.explain {
            q["explain"] = json!(true);
        }
        q
    }

    /// Runs one page. A bad query fails with [`crate::Error::Server`] and the
    /// server's `invalid query: ...` text.
    pub fn page(&self) -> Result<QueryPage> {
        self.page_as()
    }

    /// Runs one page, each document deserialized straight into a `D` (your own
    /// type, or `Box<serde_json::value::RawValue>` for the JSON text as the server
    /// sent it) instead of a [`Value`]: parsing 100 documents into `Value`s costs
    /// more than the query. A document that does not fit `D` fails the page with
    /// [`crate::Error::Protocol`].
    pub fn page_as<D: serde::de::DeserializeOwned>(&self) -> Result<QueryPage<D>> {
        let payload = self.to_json().to_string().into_bytes();
        let op = Op::new(OpType::Read, &self.collection, 0, payload);
        self.db
            .client()
            .request(self.db.id(), Command::Query, vec![op], |resp| {
                json_reply(&ok_data(resp)?, "Query")
            })
    }

    /// Every matching `(id, document)`, fetching pages as the iterator advances. A
    /// failed request is yielded once, then the iterator ends.
    pub fn iter(&self) -> QueryIter {
        QueryIter {
            query: self.clone(),
            rows: VecDeque::new(),
            done: false,
        }
    }
}

/// Iterator over a query's rows, a page per request (see [`Query::iter`]).
#[must_use = "iterators do nothing unless advanced"]
pub struct QueryIter {
    query: Query,
    rows: VecDeque<QueryRow>,
    done: bool,
}

impl Iterator for QueryIter {
    type Item = Result<(u64, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.rows.is_empty() && !self.done {
            match self.query.page() {
                Ok(page) => {
                    match page.next {
                        Some(n) => self.query.after = Some(n),
                        None => self.done = true,
                    }
                    self.rows.extend(page.rows);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.rows.pop_front().map(|r| Ok((r.id, r.doc)))
    }
}

impl std::iter::FusedIterator for QueryIter {}
