//! Index keys: the values at an index's paths, in the one order of JSON values
//! ([`crate::order`]), each part reversed for a descending field.
//!
//! A [`Key`] also serves as a range bound over a key *prefix*: a bound with fewer parts
//! than the index compares only on the parts it has, and its [`Fill`] decides whether it
//! sorts before (`Low`) or after (`High`) every stored key sharing that prefix. Stored
//! keys always have every part and `Fill::Exact`.

use std::cmp::Ordering;

use serde_json::Value;

/// One part of a key: the value at the field's path, or why there is none. The two
/// kinds of "no value" sort below every value (null included), `Missing` first; they
/// are apart so that a query whose conditions cannot match a missing field skips the
/// `Missing` entries yet still reads the `ViaArray` ones, where a filter (which fans
/// out through arrays) may find a value.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyPart {
    /// No value, and no array on the way: a filter sees the field as missing too
    /// (a member absent, a path through a scalar or null, a document that is not an
    /// object).
    Missing,
    /// No value by object members, but the path reaches an array before its end
    /// (`a.b` on `{"a":[{"b":1}]}`, or the document itself is an array): a filter's
    /// path may still reach values through the elements.
    ViaArray,
    /// The value at the path (an array as a whole).
    Value(Value),
}

impl KeyPart {
    /// The value, if the part has one.
    pub fn value(&self) -> Option<&Value> {
        match self {
            KeyPart::Value(v) => Some(v),
            KeyPart::Missing | KeyPart::ViaArray => None,
        }
    }

    /// The rank of the kind: `Missing < ViaArray < every value`.
    fn rank(&self) -> u8 {
        match self {
            KeyPart::Missing => 0,
            KeyPart::ViaArray => 1,
            KeyPart::Value(_) => 2,
        }
    }

    /// The order of key parts: by kind, then values under [`crate::order::cmp`].
    pub fn order(&self, other: &KeyPart) -> Ordering {
        match (self, other) {
            (KeyPart::Value(a), KeyPart::Value(b)) => crate::order::cmp(a, b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

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
    /// The first part's [`head`] (inverted when it sorts descending), kept inline so
    /// that most comparisons on the way down the index decide without following
    /// the parts' and the value's pointers (two cache misses per key on a large
    /// index). Two words, not a `u128`, so the key stays 8-aligned (40 bytes).
    /// Private: every key is made by [`Key::new`].
    head: [u64; 2],
}

impl Key {
    pub(crate) fn new(parts: Box<[KeyPart]>, desc: u32, fill: Fill) -> Key {
        let head = parts.first().map_or(0, |p| {
            let h = head(p);
            if desc & 1 != 0 {
                !h
            } else {
                h
            }
        });
        let head = [(head >> 64) as u64, head as u64];
        Key {
            parts,
            desc,
            fill,
            head,
        }
    }

    pub(crate) fn exact(parts: Vec<KeyPart>, desc: u32) -> Key {
        Key::new(parts.into_boxed_slice(), desc, Fill::Exact)
    }

    /// True when no field had a value (such keys are exempt from uniqueness).
    pub(crate) fn all_missing(&self) -> bool {
        self.parts.iter().all(|p| p.value().is_none())
    }

    /// Whether a part is an array (indexed whole) or walks through one: a filter
    /// that matches elements cannot be answered from such an entry alone.
    pub(crate) fn has_array(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, KeyPart::ViaArray | KeyPart::Value(Value::Array(_))))
    }

    /// An estimate of the heap bytes the key's parts hold (the key is kept twice: in
    /// the ordered entries and in the by-id map).
    pub(crate) fn heap_bytes(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| 32 + p.value().map_or(0, value_heap_bytes))
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
        // Different heads order the first parts, so the keys (see `head`); a key
        // without parts (an unbounded prefix bound) sorts by its fill alone.
        if !self.parts.is_empty() && !other.parts.is_empty() && self.head != other.head {
            return self.head.cmp(&other.head);
        }
        self.cmp_parts(other)
    }
}

impl Key {
    /// The order by the parts themselves (what [`Ord`] gives, without the heads).
    fn cmp_parts(&self, other: &Self) -> Ordering {
        for (i, (a, b)) in self.parts.iter().zip(other.parts.iter()).enumerate() {
            let o = a.order(b);
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

/// An order-preserving summary of a key part in 16 bytes: for parts `a`, `b`,
/// `a < b` implies `head(a) <= head(b)` and `a == b` implies `head(a) == head(b)`
/// (under [`KeyPart::order`]), so different heads order the parts and equal ones
/// leave it to the full comparison. The top byte is the kind (missing, via-array,
/// then the value's [`crate::order::type_rank`]); below it, a string's first 15
/// bytes (zero-padded: truncating and padding keep the byte order, ties aside), a
/// number as an `f64` in order-preserving bits (rounding an integer to `f64` keeps
/// the order, ties aside; `-0.0` as `0.0`, equal to `0` under the order), a
/// boolean's value; null, arrays and objects have the kind only.
fn head(p: &KeyPart) -> u128 {
    let v = match p {
        KeyPart::Missing => return 0,
        KeyPart::ViaArray => return 1 << 120,
        KeyPart::Value(v) => v,
    };
    let kind = u128::from(2 + crate::order::type_rank(v)) << 120;
    let rest = match v {
        Value::String(s) => {
            let mut b = [0u8; 16];
            let n = s.len().min(15);
            b[1..1 + n].copy_from_slice(&s.as_bytes()[..n]);
            u128::from_be_bytes(b)
        }
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            let f = if f == 0.0 { 0.0 } else { f };
            let bits = f.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits | 1 << 63
            };
            u128::from(ordered) << 56
        }
        Value::Bool(b) => u128::from(*b),
        Value::Null | Value::Array(_) | Value::Object(_) => 0,
    };
    kind | rest
}

/// The key part of a dotted path: the value walking object members only; with none,
/// `ViaArray` when the walk stops at an array (a filter fans out there), else
/// `Missing`.
pub fn part_at(doc: &Value, path: &str) -> KeyPart {
    let mut v = doc;
    for seg in path.split('.') {
        v = match v {
            Value::Object(m) => match m.get(seg) {
                Some(x) => x,
                None => return KeyPart::Missing,
            },
            Value::Array(_) => return KeyPart::ViaArray,
            _ => return KeyPart::Missing,
        };
    }
    KeyPart::Value(v.clone())
}

/// The key of `doc` under an index's fields.
pub(crate) fn key_of(doc: &Value, fields: &[(String, i8)], desc: u32) -> Key {
    Key::exact(fields.iter().map(|(p, _)| part_at(doc, p)).collect(), desc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(x: Value) -> KeyPart {
        KeyPart::Value(x)
    }

    fn k(parts: Vec<KeyPart>, desc: u32, fill: Fill) -> Key {
        Key::new(parts.into_boxed_slice(), desc, fill)
    }

    #[test]
    fn keys_order_by_parts_with_direction_and_prefix_bounds_bracket_them() {
        let a = k(vec![v(json!(1)), v(json!("x"))], 0, Fill::Exact);
        let b = k(vec![v(json!(1)), v(json!("y"))], 0, Fill::Exact);
        let c = k(vec![v(json!(2)), KeyPart::Missing], 0, Fill::Exact);
        assert!(a < b && b < c);
        let low = k(vec![v(json!(1))], 0, Fill::Low);
        let high = k(vec![v(json!(1))], 0, Fill::High);
        assert!(low < a && a < high && b < high && high < c);
        // Descending second part.
        let a2 = k(vec![v(json!(1)), v(json!("x"))], 2, Fill::Exact);
        let b2 = k(vec![v(json!(1)), v(json!("y"))], 2, Fill::Exact);
        assert!(b2 < a2);
        // Missing below via-array below null.
        let m = k(vec![KeyPart::Missing], 0, Fill::Exact);
        let via = k(vec![KeyPart::ViaArray], 0, Fill::Exact);
        let n = k(vec![v(Value::Null)], 0, Fill::Exact);
        assert!(m < via && via < n);
        assert_eq!(
            k(vec![v(json!(1))], 0, Fill::Exact),
            k(vec![v(json!(1.0))], 0, Fill::Exact)
        );
    }

    #[test]
    fn paths_walk_objects_and_tell_missing_from_through_an_array() {
        let d = json!({"a": {"b": [1, 2]}, "c": [{"d": 1}], "n": null, "s": 5});
        assert_eq!(part_at(&d, "a.b"), v(json!([1, 2])));
        assert_eq!(part_at(&d, "c.d"), KeyPart::ViaArray);
        assert_eq!(part_at(&d, "c.0.d"), KeyPart::ViaArray);
        assert_eq!(part_at(&d, "a.b.c"), KeyPart::ViaArray);
        assert_eq!(part_at(&d, "x"), KeyPart::Missing);
        assert_eq!(part_at(&d, "n.x"), KeyPart::Missing);
        assert_eq!(part_at(&d, "s.x"), KeyPart::Missing);
        assert_eq!(part_at(&json!(5), "a"), KeyPart::Missing);
        assert_eq!(part_at(&json!([{"a": 1}]), "a"), KeyPart::ViaArray);
        let key = key_of(&d, &[("a.b".into(), 1), ("z".into(), -1)], 2);
        assert!(key.has_array() && !key.all_missing());
        let key = key_of(&d, &[("c.d".into(), 1), ("z".into(), -1)], 2);
        assert!(key.has_array() && key.all_missing());
        let key = key_of(&d, &[("x".into(), 1)], 0);
        assert!(!key.has_array() && key.all_missing());
    }

    #[test]
    fn a_part_is_as_small_as_the_memory_accounting_assumes() {
        // `heap_bytes` counts 32 bytes per part besides the value's heap, and
        // `tree::ENTRY_OVERHEAD` a 40-byte key.
        assert!(std::mem::size_of::<KeyPart>() <= 32);
        assert!(std::mem::size_of::<Key>() <= 40);
    }

    /// The heads never change the order: for every pair of a set of values chosen
    /// to sit on the edges (integers past 2^53 and near ±2^64, -0.0, strings that
    /// tie in their first 15 bytes or differ only by a trailing NUL, every type),
    /// as the first of one or two parts, ascending and descending, and as prefix
    /// bounds, the order with heads is the order by the parts.
    #[test]
    fn heads_agree_with_the_order_of_the_parts() {
        let long = "abcdefghijklmno";
        let mut values: Vec<KeyPart> = vec![KeyPart::Missing, KeyPart::ViaArray];
        for x in [
            json!(null),
            json!(0),
            json!(0.0),
            json!(-0.0),
            json!(1),
            json!(1.0),
            json!(1.5),
            json!(-1),
            json!(-1.5),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(u64::MAX - 1),
            json!(9_007_199_254_740_993u64),
            json!(9_007_199_254_740_992.0),
            json!(1.8e19),
            json!(1e300),
            json!(-1e300),
            json!(1e-300),
            json!(""),
            json!("a"),
            json!("a\u{0}"),
            json!("ab"),
            json!("b"),
            json!(long),
            json!(format!("{long}p")),
            json!(format!("{long}q")),
            json!(format!("{long}\u{0}")),
            json!("é"),
            json!("\u{10FFFF}"),
            json!([]),
            json!([1]),
            json!([1, 2]),
            json!({}),
            json!({"a": 1}),
            json!(false),
            json!(true),
        ] {
            values.push(v(x));
        }
        let mut checked = 0;
        for desc in 0..4u32 {
            let mut keys = Vec::new();
            for a in &values {
                keys.push(k(vec![a.clone()], desc, Fill::Exact));
                keys.push(k(vec![a.clone(), v(json!(1))], desc, Fill::Exact));
                keys.push(k(vec![a.clone()], desc, Fill::Low));
                keys.push(k(vec![a.clone()], desc, Fill::High));
            }
            keys.push(k(vec![], desc, Fill::Low));
            keys.push(k(vec![], desc, Fill::High));
            for x in &keys {
                for y in &keys {
                    assert_eq!(x.cmp(y), x.cmp_parts(y), "{x:?} vs {y:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000);
        // And the heads decide comparisons of values that differ early.
        let (a, b) = (
            k(vec![v(json!("user1@x"))], 0, Fill::Exact),
            k(vec![v(json!("user2@x"))], 0, Fill::Exact),
        );
        assert_ne!(a.head, b.head);
    }
}
