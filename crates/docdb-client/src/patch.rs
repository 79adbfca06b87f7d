//! [`PatchOp`]: typed patch operations, serialized as the JSON array the Patch op
//! (type 7) carries. Paths are JSON Pointers (`/a/b/0`; `~1` is `/`, `~0` is `~`).

use serde::Serialize;
use serde_json::Value;

/// One patch operation. A patch (a slice of these) is applied all or nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    op: &'static str,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
}

impl PatchOp {
    fn new(op: &'static str, path: &str, from: Option<&str>, value: Option<Value>) -> Self {
        PatchOp {
            op,
            path: path.to_owned(),
            from: from.map(str::to_owned),
            value,
        }
    }

    /// Sets `path` to `value`, creating intermediate objects as needed (DocDB).
    pub fn set(path: &str, value: impl Into<Value>) -> Self {
        Self::new("set", path, None, Some(value.into()))
    }

    /// Deletes the field or array element at `path`, which must exist (DocDB).
    pub fn delete(path: &str) -> Self {
        Self::new("delete", path, None, None)
    }

    /// Inserts `value` into an array before the index that ends `path`; the array's
    /// length appends (DocDB).
    pub fn insert(path: &str, value: impl Into<Value>) -> Self {
        Self::new("insert", path, None, Some(value.into()))
    }

    /// RFC 6902 `add`.
    pub fn add(path: &str, value: impl Into<Value>) -> Self {
        Self::new("add", path, None, Some(value.into()))
    }

    /// RFC 6902 `remove`.
    pub fn remove(path: &str) -> Self {
        Self::new("remove", path, None, None)
    }

    /// RFC 6902 `replace`.
    pub fn replace(path: &str, value: impl Into<Value>) -> Self {
        Self::new("replace", path, None, Some(value.into()))
    }

    /// RFC 6902 `move`: the value at `from` moves to `path`.
    pub fn move_from(from: &str, path: &str) -> Self {
        Self::new("move", path, Some(from), None)
    }

    /// RFC 6902 `copy`: the value at `from` is copied to `path`.
    pub fn copy_from(from: &str, path: &str) -> Self {
        Self::new("copy", path, Some(from), None)
    }

    /// RFC 6902 `test`: the whole patch fails (`patch test failed`) unless the value
    /// at `path` equals `value`.
    pub fn test(path: &str, value: impl Into<Value>) -> Self {
        Self::new("test", path, None, Some(value.into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serializes_to_the_wire_shape() {
        let ops = [
            PatchOp::set("/a/b", 1),
            PatchOp::delete("/c"),
            PatchOp::move_from("/x", "/y"),
            PatchOp::test("/s", "v"),
        ];
        assert_eq!(
            serde_json::to_string(&ops).unwrap(),
            r#"[{"op":"set","path":"/a/b","value":1},{"op":"delete","path":"/c"},{"op":"move","path":"/y","from":"/x"},{"op":"test","path":"/s","value":"v"}]"#
        );
        // A null value is still sent: `set` to null is meaningful.
        assert_eq!(
            serde_json::to_string(&PatchOp::set("/n", Value::Null)).unwrap(),
            r#"{"op":"set","path":"/n","value":null}"#
        );
    }
}
