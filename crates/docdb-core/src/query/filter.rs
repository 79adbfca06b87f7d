//! The filter language (MongoDB's, for the operators SPEC §11 lists): parsed once into
//! a typed tree, then evaluated against each candidate document.
//!
//! Semantics, per field condition:
//! - A path `a.b.c` descends through objects; at an array it continues into every
//!   element that is an object (`a.b` on `{"a":[{"b":1},{"b":2}]}` yields 1 and 2),
//!   and a numeric segment also selects that element (`a.0`). The values reached are
//!   the field's *candidates*; none means the field is missing.
//! - A candidate that is an array matches a value condition when the whole array does
//!   or any of its elements does (equality with a whole array, "any element" for
//!   scalars and ranges).
//! - `$eq`, `$in`: equality under [`crate::order::equal`]; `null` also matches a
//!   missing field (as in MongoDB). `$gt $gte $lt $lte`: only between values of the
//!   same JSON type ([`crate::order::same_type`]), so `{"$gt": 1}` never matches a string.
//! - `$ne`, `$nin`, `$not` are the negation of `$eq`, `$in` and their operand, so they
//!   match documents missing the field.
//! - `$exists: bool`: the field has at least one candidate.
//! - Several operators on one field must all hold; several fields in one object must
//!   all hold (implicit `$and`).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::path::Path;
use crate::order;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every sub-filter holds (an object of several fields, or `$and`).
    And(Vec<Filter>),
    /// At least one holds.
    Or(Vec<Filter>),
    /// None holds.
    Nor(Vec<Filter>),
    /// Every condition holds on the field at `path`.
    Field(Path, Vec<Cond>),
}

/// One condition on a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    /// None of the conditions' conjunction: `{"$not": {...}}`.
    Not(Vec<Cond>),
}

/// A filter that cannot be parsed: the text says what and where.
pub type ParseError = String;

impl Filter {
    /// Parses a filter object. `{}` matches every document.
    pub fn parse(v: &Value) -> Result<Filter, ParseError> {
        let Value::Object(m) = v else {
            return Err(format!("filter must be an object, got {}", kind(v)));
        };
        parse_object(m)
    }

    /// Whether the document matches.
    pub fn matches(&self, doc: &Value) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(doc)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
            Filter::Nor(fs) => !fs.iter().any(|f| f.matches(doc)),
            Filter::Field(path, conds) => {
                let cands = path.candidates(doc);
                conds.iter().all(|c| c.holds(&cands))
            }
        }
    }

    /// Appends every path the filter reads (with repeats) to `out`.
    pub fn paths(&self, out: &mut Vec<Path>) {
        match self {
            Filter::And(fs) | Filter::Or(fs) | Filter::Nor(fs) => {
                for f in fs {
                    f.paths(out);
                }
            }
            Filter::Field(p, _) => out.push(p.clone()),
        }
    }

    /// The equality conditions on top-level conjuncts (for a future index planner):
    /// `(path, value)` pairs every match must satisfy.
    pub fn equalities(&self) -> Vec<(&Path, &Value)> {
        let mut out = Vec::new();
        match self {
            Filter::And(fs) => {
                for f in fs {
                    out.extend(f.equalities());
                }
            }
            Filter::Field(p, conds) => {
                for c in conds {
                    if let Cond::Eq(v) = c {
                        out.push((p, v));
                    }
                }
            }
            _ => {}
        }
        out
    }
}

fn parse_object(m: &Map<String, Value>) -> Result<Filter, ParseError> {
    let mut parts = Vec::with_capacity(m.len());
    for (k, v) in m {
        if let Some(op) = k.strip_prefix('$') {
            let list = |v: &Value| -> Result<Vec<Filter>, ParseError> {
                let Value::Array(items) = v else {
                    return Err(format!("${op} needs an array of filters, got {}", kind(v)));
                };
                if items.is_empty() {
                    return Err(format!("${op} needs at least one filter"));
                }
                items
                    .iter()
                    .map(|f| match f {
                        Value::Object(m) => parse_object(m),
                        other => Err(format!(
                            "${op} elements must be objects, got {}",
                            kind(other)
                        )),
                    })
                    .collect()
            };
            parts.push(match op {
                "and" => Filter::And(list(v)?),
                "or" => Filter::Or(list(v)?),
                "nor" => Filter::Nor(list(v)?),
                _ => return Err(format!("unknown top-level operator {k}")),
            });
        } else {
            let path = Path::parse(k)?;
            let conds = parse_conditions(&path, v)?;
            parts.push(Filter::Field(path, conds));
        }
    }
    Ok(if parts.len() == 1 {
        parts.pop().unwrap_or(Filter::And(Vec::new()))
    } else {
        Filter::And(parts)
    })
}

/// The conditions of one field: an object of operators, or a value for implicit
/// equality (an object without `$` keys is a literal; mixing both is an error).
fn parse_conditions(path: &Path, v: &Value) -> Result<Vec<Cond>, ParseError> {
    match v {
        Value::Object(m) if !m.is_empty() && m.keys().all(|k| k.starts_with('$')) => m
            .iter()
            .map(|(op, operand)| parse_op(path, op, operand))
            .collect(),
        Value::Object(m) if m.keys().any(|k| k.starts_with('$')) => Err(format!(
            "at path {path}: an object mixing operators and fields (use $eq for a literal)"
        )),
        _ => Ok(vec![Cond::Eq(v.clone())]),
    }
}

fn parse_op(path: &Path, op: &str, v: &Value) -> Result<Cond, ParseError> {
    let array = |v: &Value| -> Result<Vec<Value>, ParseError> {
        match v {
            Value::Array(items) => Ok(items.clone()),
            other => Err(format!(
                "{op} at path {path} needs an array, got {}",
                kind(other)
            )),
        }
    };
    Ok(match op {
        "$eq" => Cond::Eq(v.clone()),
        "$ne" => Cond::Ne(v.clone()),
        "$gt" => Cond::Gt(v.clone()),
        "$gte" => Cond::Gte(v.clone()),
        "$lt" => Cond::Lt(v.clone()),
        "$lte" => Cond::Lte(v.clone()),
        "$in" => Cond::In(array(v)?),
        "$nin" => Cond::Nin(array(v)?),
        "$exists" => match v {
            Value::Bool(b) => Cond::Exists(*b),
            other => {
                return Err(format!(
                    "$exists at path {path} needs true or false, got {}",
                    kind(other)
                ))
            }
        },
        "$not" => match v {
            Value::Object(m) if !m.is_empty() && m.keys().all(|k| k.starts_with('$')) => Cond::Not(
                m.iter()
                    .map(|(op, operand)| parse_op(path, op, operand))
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(format!(
                    "$not at path {path} needs an object of operators, got {}",
                    kind(other)
                ))
            }
        },
        _ => return Err(format!("unknown operator {op} at path {path}")),
    })
}

impl Cond {
    /// Whether the condition holds for a field with these candidates.
    /// Whether the condition holds on a field that is missing (no candidate): the
    /// planner reads an index's missing entries only when every condition on the
    /// field does.
    pub(crate) fn matches_missing(&self) -> bool {
        self.holds(&[])
    }

    fn holds(&self, cands: &[&Value]) -> bool {
        match self {
            Cond::Eq(v) => eq_any(cands, v),
            Cond::Ne(v) => !eq_any(cands, v),
            Cond::In(vs) => vs.iter().any(|v| eq_any(cands, v)),
            Cond::Nin(vs) => !vs.iter().any(|v| eq_any(cands, v)),
            Cond::Gt(v) => range_any(cands, v, |o| o == Ordering::Greater),
            Cond::Gte(v) => range_any(cands, v, |o| o != Ordering::Less),
            Cond::Lt(v) => range_any(cands, v, |o| o == Ordering::Less),
            Cond::Lte(v) => range_any(cands, v, |o| o != Ordering::Greater),
            Cond::Exists(want) => cands.is_empty() != *want,
            Cond::Not(cs) => !cs.iter().all(|c| c.holds(cands)),
        }
    }
}

/// The values a candidate offers to a comparison: itself, and when it is an array,
/// each of its elements.
fn each_value<'a>(c: &'a Value) -> impl Iterator<Item = &'a Value> {
    let elems: &'a [Value] = match c {
        Value::Array(items) => items,
        _ => &[],
    };
    std::iter::once(c).chain(elems.iter())
}

fn eq_any(cands: &[&Value], v: &Value) -> bool {
    if cands.is_empty() {
        return v.is_null();
    }
    cands
        .iter()
        .any(|c| each_value(c).any(|x| order::equal(x, v)))
}

fn range_any(cands: &[&Value], v: &Value, want: impl Fn(Ordering) -> bool) -> bool {
    cands
        .iter()
        .any(|c| each_value(c).any(|x| order::same_type(x, v) && want(order::cmp(x, v))))
}

/// The JSON type of a value, for error texts.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: Value, doc: Value) -> bool {
        Filter::parse(&filter)
            .map(|f| f.matches(&doc))
            .unwrap_or(false)
    }

    #[test]
    fn equality_ranges_and_arrays() {
        let doc = json!({"a": 1, "s": "x", "tags": ["red", "blue"], "n": {"b": [1, 5]},
                         "items": [{"q": 2}, {"q": 7}]});
        assert!(m(json!({"a": 1.0}), doc.clone()));
        assert!(m(json!({"tags": "red"}), doc.clone()));
        assert!(m(json!({"tags": ["red", "blue"]}), doc.clone()));
        assert!(!m(json!({"tags": ["blue", "red"]}), doc.clone()));
        assert!(m(json!({"n.b": {"$gt": 4}}), doc.clone()));
        assert!(m(json!({"items.q": 7}), doc.clone()));
        assert!(m(json!({"items.1.q": 7}), doc.clone()));
        assert!(!m(json!({"items.0.q": 7}), doc.clone()));
        assert!(
            !m(json!({"a": {"$gt": "0"}}), doc.clone()),
            "no cross-type range"
        );
        assert!(m(json!({"s": {"$gte": "x", "$lt": "y"}}), doc.clone()));
        assert!(m(json!({"missing": {"$ne": 1}}), doc.clone()));
        assert!(m(json!({"missing": {"$nin": [1]}}), doc.clone()));
        assert!(m(json!({"missing": null}), doc.clone()));
        assert!(!m(json!({"missing": {"$exists": true}}), doc.clone()));
        assert!(m(json!({"a": {"$not": {"$gt": 5}}}), doc.clone()));
        assert!(m(json!({"$or": [{"a": 2}, {"s": "x"}]}), doc.clone()));
        assert!(!m(json!({"$nor": [{"a": 2}, {"s": "x"}]}), doc.clone()));
        assert!(m(
            json!({"$and": [{"a": 1}, {"tags": {"$in": ["blue", 9]}}]}),
            doc
        ));
    }

    #[test]
    fn bad_filters_name_the_operator_and_path() {
        let e = |f: Value| Filter::parse(&f).err().unwrap_or_default();
        assert_eq!(
            e(json!({"a.b": {"$foo": 1}})),
            "unknown operator $foo at path a.b"
        );
        assert_eq!(
            e(json!({"a": {"$in": 1}})),
            "$in at path a needs an array, got a number"
        );
        assert_eq!(e(json!({"$xor": []})), "unknown top-level operator $xor");
        assert_eq!(
            e(json!({"$or": {}})),
            "$or needs an array of filters, got an object"
        );
        assert_eq!(
            e(json!({"a": {"$exists": 1}})),
            "$exists at path a needs true or false, got a number"
        );
        assert_eq!(
            e(json!({"a..b": 1})),
            "invalid path \"a..b\": empty segment"
        );
        assert_eq!(e(json!([1])), "filter must be an object, got an array");
    }
}
