//! Sort order of query results: by one or more paths, each ascending or descending,
//! then by id ascending. Missing fields sort first ascending (last descending); values
//! compare under [`crate::order::cmp`], the order secondary indexes use too. A path's
//! sort value is the one value [`Path::get`] names (an array compares as a whole).

use std::cmp::Ordering;

use serde_json::Value;

use super::path::Path;
use crate::order;

/// One sort path and its direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortField {
    pub path: Path,
    pub descending: bool,
}

/// A row's sort key: one optional value per sort path (`None`: missing).
pub type SortKey = Vec<Option<Value>>;

/// The key of `doc` under `sort`.
pub fn key_of(sort: &[SortField], doc: &Value) -> SortKey {
    sort.iter().map(|f| f.path.get(doc).cloned()).collect()
}

/// The order of two rows `(key, id)` under `sort`.
pub fn compare(sort: &[SortField], a: (&SortKey, u64), b: (&SortKey, u64)) -> Ordering {
    for (i, f) in sort.iter().enumerate() {
        let x = a.0.get(i).and_then(Option::as_ref);
        let y = b.0.get(i).and_then(Option::as_ref);
        let o = order::cmp_opt(x, y);
        let o = if f.descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.1.cmp(&b.1)
}

/// Parses `[[path, 1|-1], ...]`.
pub fn parse(v: &Value) -> Result<Vec<SortField>, String> {
    let Value::Array(items) = v else {
        return Err("sort must be an array of [path, 1|-1] pairs".into());
    };
    items
        .iter()
        .map(|item| match item.as_array().map(Vec::as_slice) {
            Some([Value::String(p), d]) => {
                let descending = match d.as_i64() {
                    Some(1) => false,
                    Some(-1) => true,
                    _ => return Err(format!("sort direction of {p} must be 1 or -1, got {d}")),
                };
                Ok(SortField {
                    path: Path::parse(p)?,
                    descending,
                })
            }
            _ => Err(format!("sort entry must be [path, 1|-1], got {item}")),
        })
        .collect()
}
