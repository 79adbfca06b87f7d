//! Queries (SPEC §11, wire command 18): a filter in MongoDB's language, a sort, a
//! projection, a limit and a resume cursor, evaluated over one snapshot of a
//! collection.
//!
//! # Layout
//! - [`Query`] here: the parsed request (`Query::parse` checks everything once).
//! - [`filter`]: the filter tree and its evaluation; [`path`]: dotted paths.
//! - [`sort`]: sort keys and their order (built on [`crate::order`], the order the
//!   indexes use); [`projection`]; [`cursor`]: the opaque `after`/`next` text.
//! - [`plan`]: where candidates come from (a full scan or an index, chosen by
//!   `planner`) and the execution: a bounded heap of the best `limit + 1` rows, then
//!   a page within the reply budget.

pub mod cursor;
pub mod filter;
pub mod path;
pub mod plan;
mod planner;
pub mod projection;
pub mod sort;

use serde_json::Value;

pub use filter::{Cond, Filter};
pub use path::Path;
pub use plan::{Plan, QueryPage};
pub use projection::Projection;
pub use sort::SortField;

use crate::error::{Error, Result};

/// Rows a query returns when it names no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// Most rows one query page returns.
pub const MAX_LIMIT: usize = 1000;
/// The nesting a query is parsed under when no database names one
/// (`limits.max_depth`'s default).
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// A parsed query: `{"filter","sort","limit","after","projection","explain"}`, every
/// key optional.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: Filter,
    pub sort: Vec<SortField>,
    pub limit: usize,
    /// The `after` cursor text, decoded against the sort when the query runs.
    pub after: Option<String>,
    pub projection: Option<Vec<Path>>,
    pub explain: bool,
    /// How deeply the query text nests (checked against the database's
    /// `limits.max_depth` when it runs).
    pub depth: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            filter: Filter::And(Vec::new()),
            sort: Vec::new(),
            limit: DEFAULT_LIMIT,
            after: None,
            projection: None,
            explain: false,
            depth: 0,
        }
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidQuery(msg.into())
}

impl Query {
    /// Parses query JSON nested at most [`DEFAULT_MAX_DEPTH`] deep.
    pub fn parse(bytes: &[u8]) -> Result<Query> {
        Query::parse_with_depth(bytes, DEFAULT_MAX_DEPTH)
    }

    /// Parses query JSON nested at most `max_depth` arrays/objects deep. An empty
    /// payload is the query `{}` (every document, by id, 100 rows).
    pub fn parse_with_depth(bytes: &[u8], max_depth: usize) -> Result<Query> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Query::default());
        }
        if bytes.len() > crate::db::MAX_DOCUMENT_SIZE {
            return Err(invalid("query text exceeds 16 MiB"));
        }
        let depth = crate::json::nesting_depth(bytes, max_depth);
        if depth > max_depth {
            return Err(invalid(format!(
                "query nests deeper than {max_depth} levels (limits.max_depth)"
            )));
        }
        let v = crate::patch::parse_bounded(bytes)
            .map_err(|e| invalid(format!("query is not valid JSON: {e}")))?;
        let Value::Object(m) = v else {
            return Err(invalid("query must be a JSON object"));
        };
        let mut q = Query {
            depth,
            ..Query::default()
        };
        for (k, v) in &m {
            match k.as_str() {
                "filter" => q.filter = Filter::parse(v).map_err(invalid)?,
                "sort" => q.sort = sort::parse(v).map_err(invalid)?,
                "limit" => {
                    q.limit = match v.as_u64() {
                        Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
                        _ => {
                            return Err(invalid(format!(
                                "limit must be an integer from 1 to {MAX_LIMIT}, got {v}"
                            )))
                        }
                    }
                }
                "after" => match v {
                    Value::Null => q.after = None,
                    Value::String(s) => q.after = Some(s.clone()),
                    _ => return Err(invalid("after must be a cursor string or null")),
                },
                "projection" => {
                    let Value::Array(items) = v else {
                        return Err(invalid("projection must be an array of paths"));
                    };
                    if items.is_empty() {
                        return Err(invalid("projection must list at least one path"));
                    }
                    let paths = items
                        .iter()
                        .map(|p| match p {
                            Value::String(s) => Path::parse(s),
                            other => Err(format!("projection path must be a string, got {other}")),
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(invalid)?;
                    q.projection = Some(paths);
                }
                "explain" => {
                    q.explain = v
                        .as_bool()
                        .ok_or_else(|| invalid("explain must be true or false"))?
                }
                other => {
                    return Err(invalid(format!(
                        "unknown key {other:?} (expected filter, sort, limit, after, projection, explain)"
                    )))
                }
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        Query::parse(s.as_bytes())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn parses_every_key_and_refuses_bad_ones() {
        let q = Query::parse(
            br#"{"filter":{"a":1},"sort":[["b",-1]],"limit":5,"projection":["a"],"explain":true}"#,
        );
        assert!(matches!(
            q,
            Ok(Query {
                limit: 5,
                explain: true,
                ..
            })
        ));
        assert_eq!(Query::parse(b"").map(|q| q.limit).ok(), Some(100));
        assert_eq!(
            err(r#"{"limit":1001}"#),
            "invalid query: limit must be an integer from 1 to 1000, got 1001"
        );
        assert_eq!(
            err(r#"{"filter":{"a":{"$regex":"x"}}}"#),
            "invalid query: unknown operator $regex at path a"
        );
        assert_eq!(
            err(r#"{"sort":[["a",2]]}"#),
            "invalid query: sort direction of a must be 1 or -1, got 2"
        );
        assert!(err(r#"{"x":1}"#).starts_with("invalid query: unknown key \"x\""));
        assert!(err("{").starts_with("invalid query: query is not valid JSON"));
        let deep = format!(
            "{{\"filter\":{}1{}}}",
            "{\"a\":".repeat(200),
            "}".repeat(200)
        );
        assert_eq!(
            err(&deep),
            "invalid query: query nests deeper than 128 levels (limits.max_depth)"
        );
    }
}
