//! Index keys: the values at an index's paths, in the one order of JSON values
//! ([`crate::order`]), each part reversed for a descending field.
//!
//! A [`Key`] also serves as a range bound over a key *prefix*: a bound with fewer parts
//! than the index compares only on the parts it has, and its [`Fill`] decides whether it
//! sorts before (`Low`) or after (`High`) every stored key sharing that prefix. Stored
//! keys always have every part and `Fill::Exact`.

use std::cmp::Ordering;

use serde_json::Value;

use crate::order::cmp_opt;

/// One part of a key: the value at the field's path, `None` when the document has no
/// value there (missing sorts below every value, null included).
pub type KeyPart = Option<Value>;

/// Where a key sorts among the stored keys that share its parts (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Fill {
    Low,
    Exact,
    High,
}

#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub parts: Box<[KeyPart]>,
    /// Bit i set: part i sorts descending.
    pub desc: u32,
    pub fill: Fill,
}

impl Key {
    pub(crate) fn exact(parts: Vec<KeyPart>, desc: u32) -> Key {
        Key {
            parts: parts.into_boxed_slice(),
            desc,
            fill: Fill::Exact,
        }
    }

    /// True when no field had a value (such keys are exempt from uniqueness).
    pub(crate) fn all_missing(&self) -> bool {
        self.parts.iter().all(Option::is_none)
    }

    pub(crate) fn has_array(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Some(Value::Array(_))))
    }

    /// An estimate of the heap bytes the key's parts hold (the key is kept twice: in
    /// the ordered entries and in the by-id map).
    pub(crate) fn heap_bytes(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| 32 + p.as_ref().map_or(0, value_heap_bytes))
            .sum()
    }
}

fn value_heap_bytes(v: &Value) -> u64 {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len() as u64,
        Value::Array(a) => a.iter().map(|x| 32 + value_heap_bytes(x)).sum(),
        Value::Object(o) => o
            .iter()
            .map(|(k, x)| 64 + k.len() as u64 + value_heap_bytes(x))
            .sum(),
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        for (i, (a, b)) in self.parts.iter().zip(other.parts.iter()).enumerate() {
            let o = cmp_opt(a.as_ref(), b.as_ref());
            let o = if self.desc & (1 << i) != 0 {
                o.reverse()
            } else {
                o
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        // Equal on the common parts: a shorter bound sorts by its fill.
        let side = |f: Fill| match f {
            Fill::High => Ordering::Greater,
            Fill::Low | Fill::Exact => Ordering::Less,
        };
        match self.parts.len().cmp(&other.parts.len()) {
            Ordering::Equal => self.fill.cmp(&other.fill),
            Ordering::Less => side(self.fill),
            Ordering::Greater => side(other.fill).reverse(),
        }
    }
}

/// The value at a dotted path: object members only; a path through a non-object (an
/// array included) has no value.
pub(crate) fn at_path<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = doc;
    for seg in path.split('.') {
        v = v.as_object()?.get(seg)?;
    }
    Some(v)
}

/// The key of `doc` under an index's fields.
pub(crate) fn key_of(doc: &Value, fields: &[(String, i8)], desc: u32) -> Key {
    Key::exact(
        fields
            .iter()
            .map(|(p, _)| at_path(doc, p).cloned())
            .collect(),
        desc,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k(parts: Vec<KeyPart>, desc: u32, fill: Fill) -> Key {
        Key {
            parts: parts.into_boxed_slice(),
            desc,
            fill,
        }
    }

    #[test]
    fn keys_order_by_parts_with_direction_and_prefix_bounds_bracket_them() {
        let a = k(vec![Some(json!(1)), Some(json!("x"))], 0, Fill::Exact);
        let b = k(vec![Some(json!(1)), Some(json!("y"))], 0, Fill::Exact);
        let c = k(vec![Some(json!(2)), None], 0, Fill::Exact);
        assert!(a < b && b < c);
        let low = k(vec![Some(json!(1))], 0, Fill::Low);
        let high = k(vec![Some(json!(1))], 0, Fill::High);
        assert!(low < a && a < high && b < high && high < c);
        // Descending second part.
        let a2 = k(vec![Some(json!(1)), Some(json!("x"))], 2, Fill::Exact);
        let b2 = k(vec![Some(json!(1)), Some(json!("y"))], 2, Fill::Exact);
        assert!(b2 < a2);
        // Missing below null.
        let m = k(vec![None], 0, Fill::Exact);
        let n = k(vec![Some(Value::Null)], 0, Fill::Exact);
        assert!(m < n);
        assert_eq!(
            k(vec![Some(json!(1))], 0, Fill::Exact),
            k(vec![Some(json!(1.0))], 0, Fill::Exact)
        );
    }

    #[test]
    fn paths_walk_objects_only() {
        let d = json!({"a": {"b": [1, 2]}, "c": [{"d": 1}]});
        assert_eq!(at_path(&d, "a.b"), Some(&json!([1, 2])));
        assert_eq!(at_path(&d, "c.d"), None);
        assert_eq!(at_path(&d, "c.0.d"), None);
        assert_eq!(at_path(&json!(5), "a"), None);
        let key = key_of(&d, &[("a.b".into(), 1), ("z".into(), -1)], 2);
        assert!(key.has_array() && !key.all_missing());
    }
}
