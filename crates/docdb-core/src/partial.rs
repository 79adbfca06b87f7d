//! Parsing only the parts of a document that some dotted paths can reach.
//!
//! A query's filter re-check, its sort key and a write's index keys look at a few
//! paths of each document; parsing the whole document into a [`Value`] tree allocates
//! every string, array and object of it (a 256-byte document with a long `pad` field
//! costs more in its unread fields than in the one compared). [`Fields::parse`] walks
//! the same text but materialises only the members on a listed path; every other
//! member is skipped with serde's `IgnoredAny` (syntax-checked, nothing allocated).
//!
//! The result is the document with every member off the listed paths removed, so any
//! lookup of a listed path gives the same answer on it as on the full tree:
//! - an object keeps the members whose name is the next segment of a listed path;
//! - the value where a listed path ends is kept whole;
//! - an array on the way is kept with all its elements, each reduced the same way as
//!   the array itself (a path fans out through arrays of objects); when the next
//!   segment could be an array index (all digits), its elements are kept whole, as
//!   `a.0.b` must see element 0 as it is;
//! - scalars are kept (they are cheap and a path may end at them through an array).
//!
//! Duplicate member names resolve as in the full parse (the last one wins).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// A tree of dotted paths: which members of a document to materialise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    /// A listed path ends here: the whole value is kept.
    whole: bool,
    /// Some child's name is an array index (arrays here are kept whole).
    index_child: bool,
    children: Vec<(String, Fields)>,
}

impl Fields {
    /// The tree of `paths`, each given as its segments.
    pub(crate) fn new<P, S>(paths: impl IntoIterator<Item = P>) -> Fields
    where
        P: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut root = Fields::default();
        for p in paths {
            let mut node = &mut root;
            for s in p {
                let s = s.as_ref();
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    node.index_child = true;
                }
                let at = match node.children.iter().position(|(k, _)| k == s) {
                    Some(i) => i,
                    None => {
                        node.children.push((s.to_owned(), Fields::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            node.whole = true;
        }
        root
    }

    fn child(&self, name: &str) -> Option<&Fields> {
        self.children
            .iter()
            .find_map(|(k, f)| (k == name).then_some(f))
    }

    /// Parses `bytes` (one JSON value, nothing after it) keeping only what the paths
    /// reach. With `bounded`, serde_json's recursion limit (128) applies as in
    /// `serde_json::from_slice`; without it the caller has checked the nesting depth.
    pub(crate) fn parse(&self, bytes: &[u8], bounded: bool) -> serde_json::Result<Value> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        if !bounded {
            de.disable_recursion_limit();
        }
        let v = Pruned(self).deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }
}

/// The seed that deserialises one value under a node of the tree.
#[derive(Clone, Copy)]
struct Pruned<'f>(&'f Fields);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            Value::deserialize(d)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        if self.0.index_child {
            while let Some(v) = seq.next_element::<Value>()? {
                out.push(v);
            }
        } else {
            while let Some(v) = seq.next_element_seed(self)? {
                out.push(v);
            }
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        // Member names are borrowed from the text when they have no escapes: a
        // skipped member allocates nothing.
        while let Some(key) = map.next_key_seed(Name)? {
            match self.0.child(&key) {
                Some(child) => {
                    let v = map.next_value_seed(Pruned(child))?;
                    out.insert(key.into_owned(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// A member name, borrowed from the text when it can be.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{Filter, Path};
    use serde_json::json;

    fn fields(paths: &[&str]) -> Fields {
        let segs: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
        Fields::new(segs.iter().map(|s| s.iter()))
    }

    fn parse(paths: &[&str], doc: &str) -> Value {
        fields(paths)
            .parse(doc.as_bytes(), true)
            .unwrap_or(Value::String("parse failed".into()))
    }

    #[test]
    fn keeps_only_the_listed_paths() {
        let doc = r#"{"email":"a@b","pad":"xxxxxxxx","n":7,"o":{"p":1,"q":[1,{"r":2}]},
                      "arr":[{"x":1,"y":2},3,[{"x":4,"z":5}]],"f":1.5,"neg":-3,"nul":null}"#;
        assert_eq!(parse(&["n"], doc), json!({"n": 7}));
        assert_eq!(parse(&[], doc), json!({}));
        assert_eq!(
            parse(&["o.q", "email"], doc),
            json!({"email": "a@b", "o": {"q": [1, {"r": 2}]}})
        );
        assert_eq!(
            parse(&["arr.x"], doc),
            json!({"arr": [{"x": 1}, 3, [{"x": 4}]]})
        );
        assert_eq!(
            parse(&["arr.0.y"], doc),
            json!({"arr": [{"x": 1, "y": 2}, 3, [{"x": 4, "z": 5}]]})
        );
        assert_eq!(
            parse(&["f", "neg", "nul", "missing.deep"], doc),
            json!({"f": 1.5, "neg": -3, "nul": null})
        );
        // Duplicate names: the last wins, as in the full parse.
        assert_eq!(
            parse(&["a"], r#"{"a":1,"b":2,"a":{"c":3}}"#),
            json!({"a": {"c": 3}})
        );
        assert_eq!(parse(&["a"], "[1,2]"), json!([1, 2]));
        // Escaped member names compare by their value.
        assert_eq!(
            parse(&["é", "a\"b"], r#"{"\u00e9":1,"a\"b":2,"c":3}"#),
            json!({"é": 1, "a\"b": 2})
        );
        assert_eq!(parse(&["a"], "5"), json!(5));
        assert_eq!(parse(&["a"], r#"{"a":1} x"#), json!("parse failed"));
        assert_eq!(parse(&["a"], r#"{"a":1,"b":[}"#), json!("parse failed"));
    }

    #[test]
    fn filters_see_the_same_on_the_pruned_document() {
        let docs = [
            json!({"a": [{"b": 1}, {"b": [2, 3]}, 4, {"c": 5}], "x": {"y": null}, "s": "t"}),
            json!({"a": {"b": {"c": [1, {"d": 2}]}}, "n": [[1], 2]}),
            json!({"a": [[{"b": 9}]], "x": [{"y": [{"z": 1}]}]}),
        ];
        let filters = [
            json!({"a.b": 2}),
            json!({"a.b": {"$gt": 3}}),
            json!({"a.1.b": 3}),
            json!({"a.0": {"b": 1}}),
            json!({"a.b.c.d": 2}),
            json!({"a.b.c": [1, {"d": 2}]}),
            json!({"x.y": null}),
            json!({"x.y.z": {"$exists": true}}),
            json!({"$or": [{"s": "t"}, {"n": 2}], "a": {"$exists": true}}),
            json!({"a.0.0.b": 9}),
        ];
        for f in &filters {
            let Ok(filter) = Filter::parse(f) else {
                panic!("bad test filter {f}");
            };
            let mut paths: Vec<Path> = Vec::new();
            filter.paths(&mut paths);
            let tree = Fields::new(paths.iter().map(|p| p.segments()));
            for d in &docs {
                let text = d.to_string();
                let pruned = tree.parse(text.as_bytes(), true);
                assert_eq!(
                    pruned.as_ref().map(|p| filter.matches(p)).ok(),
                    Some(filter.matches(d)),
                    "{f} on {d}: pruned {pruned:?}"
                );
                for p in &paths {
                    assert_eq!(
                        pruned.as_ref().ok().and_then(|v| p.get(v)),
                        p.get(d),
                        "{p} on {d}"
                    );
                }
            }
        }
    }
}
