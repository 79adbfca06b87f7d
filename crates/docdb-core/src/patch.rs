//! Partial document updates: DocDB's patch operations.
//!
//! A patch is a JSON array of operation objects, applied in order to one document, all or
//! nothing. Two families of operations are understood:
//!
//! * DocDB's original `set`, `delete` and `insert`, which create intermediate objects on
//!   the way (`set`) and address array elements by index;
//! * RFC 6902 (JSON Patch) `add`, `remove`, `replace`, `move`, `copy` and `test`, with the
//!   RFC's exact semantics (the RFC operations that change the document are delegated to
//!   the `json-patch` crate; `test` compares numbers numerically, as the RFC requires).
//!
//! Member names (`op`, `path`, `value`, `from`) and operation names are matched ASCII
//! case-insensitively; other members are ignored. Paths are RFC 6901 JSON Pointers. The
//! document must be, and stays, a JSON object; no operation may nest values deeper than
//! `limits.max_depth`, and a patch carries at most `limits.max_patch_ops` operations
//! ([`Limits`]).
//!
//! Cost: parsing the ops, then per op a walk down its path, a check of the value it
//! places and the change itself (an array insert shifts the array's tail): linear in
//! the document's size times the number of ops, which `max_ops` bounds. Nothing is
//! cloned per op; the document is cloned once.

use json_patch::jsonptr::{Pointer, PointerBuf};
use json_patch::{AddOperation, CopyOperation, MoveOperation, PatchOperation};
use json_patch::{RemoveOperation, ReplaceOperation};
use serde_json::{Map, Number, Value};

/// What one patch may ask for (the engine's `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of arrays/objects the result may have (`limits.max_depth`).
    pub max_depth: usize,
    /// Most operations in one patch (`limits.max_patch_ops`).
    pub max_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let l = crate::config::LimitsConfig::default();
        Limits {
            max_depth: l.max_depth,
            max_ops: l.max_patch_ops,
        }
    }
}

/// Parses JSON text into a tree without `serde_json`'s fixed 128-level cap.
///
/// IMPORTANT: parsing (and dropping, cloning, serialising) a tree recurses once per
/// level, so callers pass only text whose depth they have bounded first
/// ([`crate::json::nesting_depth`]) by `limits.max_depth`, which the configuration caps.
pub(crate) fn parse_bounded(bytes: &[u8]) -> serde_json::Result<Value> {
    use serde::Deserialize;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.disable_recursion_limit();
    let value = Value::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Errors a patch can fail with. Each maps to a stable wire text (given in the doc comment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// "invalid JSON path": a path that is not a JSON Pointer, or that does not resolve
    /// where the op needs it to (e.g. `delete`/`remove`/`replace` of a missing field, array
    /// index out of range or not a number, `from` missing for move/copy).
    #[error("invalid JSON path")]
    InvalidPath,
    /// "invalid patch operations": the ops payload is not a JSON array of objects, an op is
    /// unknown, a required member (`value` for set/insert/add/replace/test, `from` for
    /// move/copy) is missing, or the array is empty.
    #[error("invalid patch operations")]
    InvalidOps,
    /// "document is not a JSON object": the target document's root is not an object.
    #[error("document is not a JSON object")]
    NotAnObject,
    /// "patch test failed": an RFC 6902 `test` op did not match.
    #[error("patch test failed")]
    TestFailed,
    /// "payload exceeds maximum size": the patched document would exceed 16 MiB.
    #[error("payload exceeds maximum size")]
    TooLarge,
    /// The result would nest deeper than `max` (`limits.max_depth`).
    #[error("document nests deeper than {max} levels (limits.max_depth)")]
    TooDeep { max: usize },
    /// More than `max` operations (`limits.max_patch_ops`).
    #[error("patch has more than {max} operations (limits.max_patch_ops)")]
    TooManyOps { max: usize },
}

/// One validated operation.
enum Op {
    Set(PointerBuf, Value),
    Insert(PointerBuf, Value),
    Test(PointerBuf, Value),
    /// `add`, `remove` (and DocDB's `delete`, which is the same), `replace`, `move`, `copy`.
    Rfc(PatchOperation),
}

/// Applies `ops` (the raw JSON bytes of the patch) to `doc` and returns the new document,
/// within the default [`Limits`].
/// All-or-nothing: on error `doc` is untouched (it is borrowed immutably; work on a clone).
pub fn apply(doc: &Value, ops: &[u8]) -> Result<Value, PatchError> {
    apply_limited(doc, ops, Limits::default())
}

/// [`apply`] within `limits`.
pub fn apply_limited(doc: &Value, ops: &[u8], limits: Limits) -> Result<Value, PatchError> {
    let ops = parse_ops(ops, limits)?;
    if !doc.is_object() {
        return Err(PatchError::NotAnObject);
    }
    let mut work = doc.clone();
    let mut size = SizeBound::default();
    for op in ops {
        apply_op(&mut work, op, limits.max_depth, &mut size)?;
        if !work.is_object() {
            return Err(PatchError::NotAnObject);
        }
    }
    Ok(work)
}

/// Parses the whole payload. Every structural problem (`InvalidOps`) anywhere in the array
/// wins over a malformed pointer (`InvalidPath`) anywhere in it.
fn parse_ops(bytes: &[u8], limits: Limits) -> Result<Vec<Op>, PatchError> {
    // The ops array and an op object wrap each value: two levels more than a value
    // may have. Deeper text could not be placed anyway; refuse it before parsing.
    let wrap = limits.max_depth.saturating_add(2);
    if crate::json::nesting_depth(bytes, wrap) > wrap {
        return Err(PatchError::TooDeep {
            max: limits.max_depth,
        });
    }
    let Ok(Value::Array(items)) = parse_bounded(bytes) else {
        return Err(PatchError::InvalidOps);
    };
    if items.is_empty() {
        return Err(PatchError::InvalidOps);
    }
    if items.len() > limits.max_ops {
        return Err(PatchError::TooManyOps {
            max: limits.max_ops,
        });
    }
    let mut ops = Vec::with_capacity(items.len());
    let mut bad_path = false;
    for item in items {
        match parse_op(item) {
            Ok(op) => ops.push(op),
            Err(PatchError::InvalidPath) => bad_path = true,
            Err(e) => return Err(e),
        }
    }
    if bad_path {
        return Err(PatchError::InvalidPath);
    }
    Ok(ops)
}

/// The members of one operation object that this module reads.
#[derive(Default)]
struct Members {
    op: Option<Value>,
    path: Option<Value>,
    value: Option<Value>,
    from: Option<Value>,
}

fn parse_op(item: Value) -> Result<Op, PatchError> {
    let Value::Object(object) = item else {
        return Err(PatchError::InvalidOps);
    };
    let mut m = Members::default();
    for (key, value) in object {
        let slot = match key.to_ascii_lowercase().as_str() {
            "op" => &mut m.op,
            "path" => &mut m.path,
            "value" => &mut m.value,
            "from" => &mut m.from,
            _ => continue,
        };
        // `op` and `Op` in one object: ambiguous, so refuse rather than guess.
        if slot.replace(value).is_some() {
            return Err(PatchError::InvalidOps);
        }
    }
    let (Some(Value::String(name)), Some(Value::String(path))) = (m.op, m.path) else {
        return Err(PatchError::InvalidOps);
    };
    let name = name.to_ascii_lowercase();
    let (needs_value, needs_from) = match name.as_str() {
        "set" | "insert" | "add" | "replace" | "test" => (true, false),
        "move" | "copy" => (false, true),
        "delete" | "remove" => (false, false),
        _ => return Err(PatchError::InvalidOps),
    };
    let value = match (needs_value, m.value) {
        (true, None) => return Err(PatchError::InvalidOps),
        (_, value) => value.unwrap_or(Value::Null),
    };
    let from = match (needs_from, m.from) {
        (true, Some(Value::String(from))) => Some(from),
        (true, _) => return Err(PatchError::InvalidOps),
        (false, _) => None,
    };
    let path = pointer(path)?;
    let from = from.map(pointer).transpose()?.unwrap_or_default();
    Ok(match name.as_str() {
        "set" => Op::Set(path, value),
        "insert" => Op::Insert(path, value),
        "test" => Op::Test(path, value),
        "add" => Op::Rfc(PatchOperation::Add(AddOperation { path, value })),
        "replace" => Op::Rfc(PatchOperation::Replace(ReplaceOperation { path, value })),
        "move" => Op::Rfc(PatchOperation::Move(MoveOperation { from, path })),
        "copy" => Op::Rfc(PatchOperation::Copy(CopyOperation { from, path })),
        // "delete" | "remove": DocDB's delete is exactly RFC 6902's remove.
        _ => Op::Rfc(PatchOperation::Remove(RemoveOperation { path })),
    })
}

/// Parses an RFC 6901 JSON Pointer (`""`, or `/`-separated tokens with `~0`/`~1` escapes).
fn pointer(text: String) -> Result<PointerBuf, PatchError> {
    PointerBuf::parse(text).map_err(|_| PatchError::InvalidPath)
}

/// An upper bound of the encoded size of the document being patched, for `copy`, the one
/// op that grows a document beyond what the patch itself carries (each copy of the root
/// doubles it). Measured once, then raised by each copy; measured again only when the
/// bound passes the limit (an earlier op may have shrunk the document): linear, not one
/// full serialisation per op.
#[derive(Default)]
struct SizeBound(Option<usize>);

impl SizeBound {
    /// Accounts a copy of `value` into `doc`, or refuses it past the size limit.
    fn copy(&mut self, doc: &Value, value: &Value) -> Result<(), PatchError> {
        let add = encoded_len(value);
        let bound = self
            .0
            .unwrap_or_else(|| encoded_len(doc))
            .saturating_add(add);
        let bound = if bound > MAX_RESULT_LEN {
            encoded_len(doc).saturating_add(add)
        } else {
            bound
        };
        if bound > MAX_RESULT_LEN {
            return Err(PatchError::TooLarge);
        }
        self.0 = Some(bound);
        Ok(())
    }

    /// Accounts a value placed by `set`/`insert`/`add`/`replace` (bounded by the ops
    /// text, but it still counts towards later copies).
    fn place(&mut self, value: &Value) {
        if let Some(b) = self.0.as_mut() {
            *b = b.saturating_add(encoded_len(value));
        }
    }
}

fn apply_op(
    doc: &mut Value,
    op: Op,
    max_depth: usize,
    size: &mut SizeBound,
) -> Result<(), PatchError> {
    let check_depth = |path: &Pointer, value: &Value| check_depth(path, value, max_depth);
    match op {
        Op::Set(path, value) => {
            check_depth(&path, &value)?;
            size.place(&value);
            set(doc, &path, value)
        }
        Op::Insert(path, value) => {
            check_depth(&path, &value)?;
            size.place(&value);
            insert(doc, &path, value)
        }
        Op::Test(path, expected) => match doc.pointer(path.as_str()) {
            None => Err(PatchError::InvalidPath),
            Some(actual) if json_eq(actual, &expected) => Ok(()),
            Some(_) => Err(PatchError::TestFailed),
        },
        Op::Rfc(op) => {
            match &op {
                PatchOperation::Add(AddOperation { path, value })
                | PatchOperation::Replace(ReplaceOperation { path, value }) => {
                    check_depth(path, value)?;
                    size.place(value);
                }
                PatchOperation::Move(MoveOperation { from, path }) => {
                    // A missing `from` is reported by the operation itself.
                    if let Some(value) = doc.pointer(from.as_str()) {
                        check_depth(path, value)?;
                    }
                }
                PatchOperation::Copy(CopyOperation { from, path }) => {
                    if let Some(value) = doc.pointer(from.as_str()) {
                        check_depth(path, value)?;
                        // Copying is the one op that grows a document beyond what the
                        // patch itself carries: each copy of the root doubles it.
                        size.copy(doc, value)?;
                    }
                }
                _ => {}
            }
            // A failed op may leave `doc` half-changed; the caller then drops it.
            json_patch::patch_unsafe(doc, std::slice::from_ref(&op)).map_err(|e| match e.kind {
                json_patch::PatchErrorKind::TestFailed => PatchError::TestFailed,
                _ => PatchError::InvalidPath,
            })
        }
    }
}

/// Largest document a patch may produce (the engine's document size limit).
const MAX_RESULT_LEN: usize = 16 * 1024 * 1024;

/// Length of `v` serialized as compact JSON, without building the text.
fn encoded_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// DocDB `set`: creates missing intermediate objects and replaces primitives met on the
/// way with objects; array segments must be existing indexes (or `len`/`-` at the end).
fn set(doc: &mut Value, path: &Pointer, value: Value) -> Result<(), PatchError> {
    let Some((parent, last)) = path.split_back() else {
        return Err(PatchError::InvalidPath);
    };
    let mut current = doc;
    for token in parent.tokens() {
        let slot = match current {
            Value::Object(map) => map.entry(token.decoded()).or_insert(Value::Null),
            Value::Array(list) => {
                let index = token.to_index().map_err(|_| PatchError::InvalidPath)?;
                let index = index
                    .for_len(list.len())
                    .map_err(|_| PatchError::InvalidPath)?;
                list.get_mut(index).ok_or(PatchError::InvalidPath)?
            }
            // Unreachable: primitives are turned into objects before descending.
            _ => return Err(PatchError::InvalidPath),
        };
        if !slot.is_object() && !slot.is_array() {
            *slot = Value::Object(Map::new());
        }
        current = slot;
    }
    match current {
        Value::Object(map) => {
            map.insert(last.decoded().into_owned(), value);
        }
        Value::Array(list) => {
            let index = last.to_index().map_err(|_| PatchError::InvalidPath)?;
            let index = index
                .for_len_incl(list.len())
                .map_err(|_| PatchError::InvalidPath)?;
            match list.get_mut(index) {
                Some(slot) => *slot = value,
                None => list.push(value),
            }
        }
        _ => return Err(PatchError::InvalidPath),
    }
    Ok(())
}

/// DocDB `insert`: inserts into an existing array before the index (`len` or `-` appends).
fn insert(doc: &mut Value, path: &Pointer, value: Value) -> Result<(), PatchError> {
    let Some((parent, last)) = path.split_back() else {
        return Err(PatchError::InvalidPath);
    };
    let Some(Value::Array(list)) = doc.pointer_mut(parent.as_str()) else {
        return Err(PatchError::InvalidPath);
    };
    let index = last.to_index().map_err(|_| PatchError::InvalidPath)?;
    let index = index
        .for_len_incl(list.len())
        .map_err(|_| PatchError::InvalidPath)?;
    list.insert(index, value);
    Ok(())
}

/// Refuses to place `value` where the document would nest deeper than `max_depth`
/// (the root object is level 1, so a value at a path of `n` tokens starts at `n + 1`).
fn check_depth(path: &Pointer, value: &Value, max_depth: usize) -> Result<(), PatchError> {
    let too_deep = PatchError::TooDeep { max: max_depth };
    let budget = max_depth
        .checked_sub(path.count())
        .ok_or(too_deep.clone())?;
    // Iterative, so a deep value cannot overflow the stack.
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        if (value.is_array() || value.is_object()) && depth >= budget {
            return Err(too_deep);
        }
        match value {
            Value::Array(list) => stack.extend(list.iter().map(|child| (child, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|child| (child, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// RFC 6902 §4.6 equality: like `==`, except that numbers compare by numeric value.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

fn number_eq(x: &Number, y: &Number) -> bool {
    fn integer(n: &Number) -> Option<i128> {
        n.as_i64().map(i128::from).or(n.as_u64().map(i128::from))
    }
    /// A float equals an integer only if it is integral; `as` saturates, and every
    /// integer here is far inside `i128`, so a huge float never matches by accident.
    fn float_int_eq(f: f64, i: i128) -> bool {
        f.fract() == 0.0 && f as i128 == i
    }
    match (integer(x), integer(y), x.as_f64(), y.as_f64()) {
        (Some(i), Some(j), _, _) => i == j,
        (Some(i), None, _, Some(f)) | (None, Some(i), Some(f), _) => float_int_eq(f, i),
        (None, None, Some(f), Some(g)) => f == g,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use PatchError::{InvalidOps, InvalidPath, NotAnObject, TestFailed};

    /// Parses test JSON written with `'` for `"`; an op object alone is wrapped in an array.
    fn j(text: &str) -> Value {
        let text = text.replace('\'', "\"");
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        match value {
            Value::Object(m) if m.keys().any(|k| k.eq_ignore_ascii_case("op")) => json!([m]),
            value => value,
        }
    }

    /// Runs a table of `document | ops | expected` lines (JSON per [`j`]); `expected` is the
    /// resulting document or the name of the error. A `-` document repeats the previous one.
    fn check(table: &str) {
        let mut doc = String::new();
        for line in table.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let [d, ops, want] = line.split(" | ").collect::<Vec<_>>()[..] else {
                panic!("bad table line {line}");
            };
            if d != "-" {
                doc = d.to_string();
            }
            match apply(&j(&doc), j(ops).to_string().as_bytes()) {
                Ok(got) => assert_eq!(got, j(want), "{line}"),
                Err(e) => assert_eq!(format!("{e:?}"), want, "{line}"),
            }
        }
    }

    #[test]
    fn error_texts_are_the_stable_ones() {
        assert_eq!(InvalidPath.to_string(), "invalid JSON path");
        assert_eq!(InvalidOps.to_string(), "invalid patch operations");
        assert_eq!(NotAnObject.to_string(), "document is not a JSON object");
        assert_eq!(TestFailed.to_string(), "patch test failed");
    }

    #[test]
    fn set_creates_replaces_and_goes_through_primitives() {
        check(
            "{'a':1,'s':'x','n':null,'l':[1,{'k':0},true]} | {'op':'set','path':'/a','value':9} | {'a':9,'s':'x','n':null,'l':[1,{'k':0},true]}
            - | {'op':'set','path':'/b/c/d','value':9} | {'a':1,'b':{'c':{'d':9}},'s':'x','n':null,'l':[1,{'k':0},true]}
            - | {'op':'set','path':'/s/t','value':9} | {'a':1,'s':{'t':9},'n':null,'l':[1,{'k':0},true]}
            - | {'op':'set','path':'/n/t/u','value':9} | {'a':1,'s':'x','n':{'t':{'u':9}},'l':[1,{'k':0},true]}
            - | {'op':'set','path':'/a/b','value':9} | {'a':{'b':9},'s':'x','n':null,'l':[1,{'k':0},true]}
            - | {'op':'set','path':'/l/1/k','value':9} | {'a':1,'s':'x','n':null,'l':[1,{'k':9},true]}
            - | {'op':'set','path':'/l/2/z','value':9} | {'a':1,'s':'x','n':null,'l':[1,{'k':0},{'z':9}]}
            - | {'op':'set','path':'/l/0','value':9} | {'a':1,'s':'x','n':null,'l':[9,{'k':0},true]}
            - | {'op':'set','path':'/l/3','value':9} | {'a':1,'s':'x','n':null,'l':[1,{'k':0},true,9]}
            - | {'op':'set','path':'/l/-','value':9} | {'a':1,'s':'x','n':null,'l':[1,{'k':0},true,9]}
            - | {'op':'set','path':'','value':{}} | InvalidPath
            - | {'op':'set','path':'/l/4','value':9} | InvalidPath
            - | {'op':'set','path':'/l/x','value':9} | InvalidPath
            - | {'op':'set','path':'/l/01','value':9} | InvalidPath
            - | {'op':'set','path':'/l/+1','value':9} | InvalidPath
            - | {'op':'set','path':'/l/-1','value':9} | InvalidPath
            - | {'op':'set','path':'/l/3/k','value':9} | InvalidPath
            - | {'op':'set','path':'/l/-/k','value':9} | InvalidPath",
        );
    }

    #[test]
    fn delete_fields_and_array_elements() {
        check(
            "{'a':{'b':1,'c':2},'l':[1,2,3]} | {'op':'delete','path':'/a/b'} | {'a':{'c':2},'l':[1,2,3]}
            - | {'op':'delete','path':'/a'} | {'l':[1,2,3]}
            - | {'op':'delete','path':'/l/1'} | {'a':{'b':1,'c':2},'l':[1,3]}
            - | {'op':'delete','path':'/l/0'} | {'a':{'b':1,'c':2},'l':[2,3]}
            - | {'op':'delete','path':''} | InvalidPath
            - | {'op':'delete','path':'/x'} | InvalidPath
            - | {'op':'delete','path':'/a/x'} | InvalidPath
            - | {'op':'delete','path':'/x/y'} | InvalidPath
            - | {'op':'delete','path':'/l/3'} | InvalidPath
            - | {'op':'delete','path':'/l/-'} | InvalidPath
            - | {'op':'delete','path':'/l/a'} | InvalidPath
            - | {'op':'delete','path':'/a/b/c'} | InvalidPath",
        );
    }

    #[test]
    fn insert_at_start_middle_end_and_past_end() {
        check(
            "{'l':['a','b'],'o':{}} | {'op':'insert','path':'/l/0','value':'x'} | {'l':['x','a','b'],'o':{}}
            - | {'op':'insert','path':'/l/1','value':'x'} | {'l':['a','x','b'],'o':{}}
            - | {'op':'insert','path':'/l/2','value':'x'} | {'l':['a','b','x'],'o':{}}
            - | {'op':'insert','path':'/l/-','value':'x'} | {'l':['a','b','x'],'o':{}}
            - | {'op':'insert','path':'/l/3','value':'x'} | InvalidPath
            - | {'op':'insert','path':'/l/x','value':'x'} | InvalidPath
            - | {'op':'insert','path':'/o/0','value':'x'} | InvalidPath
            - | {'op':'insert','path':'/o/k','value':'x'} | InvalidPath
            - | {'op':'insert','path':'/missing/0','value':'x'} | InvalidPath
            - | {'op':'insert','path':'/0','value':'x'} | InvalidPath
            - | {'op':'insert','path':'','value':'x'} | InvalidPath",
        );
    }

    #[test]
    fn keys_and_op_names_are_case_insensitive() {
        check(
            "{} | {'Op':'SET','Path':'/a','Value':1} | {'a':1}
            {'l':[5]} | {'OP':'Insert','PATH':'/l/0','vAlUe':0} | {'l':[0,5]}
            {'a':1} | {'op':'cOpY','FROM':'/a','path':'/b'} | {'a':1,'b':1}
            - | {'Op':'Test','Path':'/a','Value':1} | {'a':1}
            - | {'Op':'DELETE','Path':'/a'} | {}",
        );
    }

    #[test]
    fn escapes_in_paths() {
        check(
            "{'a/b':1,'m~n':2} | {'op':'set','path':'/a~1b','value':0} | {'a/b':0,'m~n':2}
            - | {'op':'set','path':'/m~0n','value':0} | {'a/b':1,'m~n':0}
            - | {'op':'set','path':'/~01','value':0} | {'a/b':1,'m~n':2,'~1':0}
            - | {'op':'test','path':'/m~0n','value':2} | {'a/b':1,'m~n':2}
            - | {'op':'set','path':'/m~2n','value':0} | InvalidPath
            - | {'op':'set','path':'/a~','value':0} | InvalidPath
            - | {'op':'set','path':'a','value':0} | InvalidPath
            - | {'op':'set','path':'#/a','value':0} | InvalidPath",
        );
    }

    #[test]
    fn malformed_payloads_are_invalid_ops() {
        let doc = json!({"a": 1});
        let raws: [&[u8]; 8] = [b"", b"nope", b"{}", b"[]", b"[1]", b"[[]]", b"[{", b"\xff"];
        for raw in raws {
            assert_eq!(apply(&doc, raw), Err(InvalidOps), "{raw:?}");
        }
        check(
            "{'a':1} | {'op':'frobnicate','path':'/a','value':1} | InvalidOps
            - | [{'path':'/a','value':1}] | InvalidOps
            - | {'op':'set','value':1} | InvalidOps
            - | {'op':1,'path':'/a','value':1} | InvalidOps
            - | {'op':'set','path':1,'value':1} | InvalidOps
            - | {'op':'set','path':'/a'} | InvalidOps
            - | {'op':'insert','path':'/a/0'} | InvalidOps
            - | {'op':'add','path':'/a'} | InvalidOps
            - | {'op':'replace','path':'/a'} | InvalidOps
            - | {'op':'test','path':'/a'} | InvalidOps
            - | {'op':'move','path':'/b'} | InvalidOps
            - | {'op':'copy','path':'/b','from':3} | InvalidOps
            - | {'op':'set','Op':'set','path':'/a','value':1} | InvalidOps
            - | {'op':'set','path':'/a','value':1,'VALUE':2} | InvalidOps",
        );
    }

    #[test]
    fn error_precedence_ops_then_paths_then_root_then_apply() {
        check(
            "{} | [{'op':'set','path':'a','value':1},{'op':'nope','path':'/a'}] | InvalidOps
            [] | {'op':'nope','path':'/a'} | InvalidOps
            - | {'op':'set','path':'a','value':1} | InvalidPath
            - | {'op':'delete','path':'/missing'} | NotAnObject
            'str' | {'op':'set','path':'/a','value':1} | NotAnObject
            {} | [{'op':'delete','path':'/missing'},{'op':'set','path':'a','value':1}] | InvalidPath",
        );
    }

    #[test]
    fn extra_members_are_ignored() {
        check(
            "{'a':1} | [{'op':'delete','path':'/a','value':[1],'from':7,'x':'y'}] | {}
            - | {'op':'set','path':'/b','value':null,'from':{'x':1},'Extra':1} | {'a':1,'b':null}",
        );
    }

    #[test]
    fn patches_are_all_or_nothing() {
        let doc = json!({"a": 1, "l": [1]});
        let ops = j(
            "[{'op':'set','path':'/b','value':2}, {'op':'delete','path':'/a'},
                      {'op':'insert','path':'/l/5','value':3}, {'op':'set','path':'/c','value':4}]",
        );
        assert_eq!(apply(&doc, ops.to_string().as_bytes()), Err(InvalidPath));
        let ops = j("[{'op':'add','path':'/b','value':2}, {'op':'test','path':'/a','value':2}]");
        assert_eq!(apply(&doc, ops.to_string().as_bytes()), Err(TestFailed));
        assert_eq!(doc, json!({"a": 1, "l": [1]}));
    }

    #[test]
    fn root_must_stay_an_object() {
        check(
            "{'a':{'x':1},'l':[1]} | {'op':'replace','path':'','value':{'z':0}} | {'z':0}
            - | {'op':'replace','path':'','value':[1]} | NotAnObject
            - | {'op':'replace','path':'','value':null} | NotAnObject
            - | {'op':'add','path':'','value':3} | NotAnObject
            - | {'op':'move','from':'/a','path':''} | {'x':1}
            - | {'op':'move','from':'/l','path':''} | NotAnObject
            - | {'op':'move','from':'','path':''} | InvalidPath
            - | {'op':'copy','from':'/l','path':''} | NotAnObject
            - | {'op':'remove','path':''} | InvalidPath",
        );
    }

    #[test]
    fn rfc_ops() {
        check(
            "{'a':{'b':[1,2]},'c':1} | {'op':'remove','path':'/x'} | InvalidPath
            - | {'op':'remove','path':'/a/b/-'} | InvalidPath
            - | {'op':'replace','path':'/x','value':1} | InvalidPath
            - | {'op':'replace','path':'/a/b/2','value':1} | InvalidPath
            - | {'op':'add','path':'/a/b/3','value':1} | InvalidPath
            - | {'op':'add','path':'/c/d','value':1} | InvalidPath
            - | {'op':'move','from':'/a','path':'/a/b/0'} | InvalidPath
            - | {'op':'move','from':'/x','path':'/y'} | InvalidPath
            - | {'op':'copy','from':'/x','path':'/y'} | InvalidPath
            - | {'op':'copy','from':'/c','path':'/x/y'} | InvalidPath
            - | {'op':'test','path':'/x','value':1} | InvalidPath
            - | {'op':'test','path':'/c','value':'1'} | TestFailed
            - | {'op':'test','path':'/a','value':{'b':[2,1]}} | TestFailed
            - | {'op':'copy','from':'/a/b','path':'/a/d'} | {'a':{'b':[1,2],'d':[1,2]},'c':1}
            - | {'op':'move','from':'/a/b/0','path':'/a/b/-'} | {'a':{'b':[2,1]},'c':1}
            - | {'op':'move','from':'/c','path':'/c'} | {'a':{'b':[1,2]},'c':1}
            - | {'op':'move','from':'/a','path':'/ab'} | {'ab':{'b':[1,2]},'c':1}
            - | {'op':'replace','path':'/c','value':[true]} | {'a':{'b':[1,2]},'c':[true]}
            - | {'op':'add','path':'/a/b/0','value':0} | {'a':{'b':[0,1,2]},'c':1}
            - | {'op':'remove','path':'/a/b/1'} | {'a':{'b':[1]},'c':1}
            - | {'op':'test','path':'/a','value':{'b':[1.0,2e0]}} | {'a':{'b':[1,2]},'c':1}
            - | {'op':'test','path':'','value':{'c':1,'a':{'b':[1,2]}}} | {'a':{'b':[1,2]},'c':1}",
        );
    }

    #[test]
    fn test_compares_numbers_numerically() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(json_eq(&json!(-3), &json!(-3.0)));
        assert!(json_eq(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_eq(&json!(1), &json!(1.5)));
        let (big, near) = (json!(9007199254740993u64), json!(9.007199254740992e15));
        assert!(!json_eq(&big, &near));
        assert!(!json_eq(&json!(u64::MAX), &json!(1e300)));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 1})));
        assert!(!json_eq(&json!("1"), &json!(1)));
    }

    /// RFC 6902 appendix A, the examples whose target document is an object: A.1-A.12 and
    /// A.14-A.16. (A.13, a duplicated `op` member, cannot be seen: serde_json keeps the last.)
    #[test]
    fn rfc6902_appendix_a() {
        check(
            "{'foo':'bar'} | {'op':'add','path':'/baz','value':'qux'} | {'baz':'qux','foo':'bar'}
            {'foo':['bar','baz']} | {'op':'add','path':'/foo/1','value':'qux'} | {'foo':['bar','qux','baz']}
            {'baz':'qux','foo':'bar'} | {'op':'remove','path':'/baz'} | {'foo':'bar'}
            {'foo':['bar','qux','baz']} | {'op':'remove','path':'/foo/1'} | {'foo':['bar','baz']}
            {'baz':'qux','foo':'bar'} | {'op':'replace','path':'/baz','value':'boo'} | {'baz':'boo','foo':'bar'}
            {'foo':{'bar':'baz','waldo':'fred'},'qux':{'corge':'grault'}} | {'op':'move','from':'/foo/waldo','path':'/qux/thud'} | {'foo':{'bar':'baz'},'qux':{'corge':'grault','thud':'fred'}}
            {'foo':['all','grass','cows','eat']} | {'op':'move','from':'/foo/1','path':'/foo/3'} | {'foo':['all','cows','eat','grass']}
            {'baz':'qux','foo':['a',2,'c']} | [{'op':'test','path':'/baz','value':'qux'},{'op':'test','path':'/foo/1','value':2}] | {'baz':'qux','foo':['a',2,'c']}
            {'baz':'qux'} | {'op':'test','path':'/baz','value':'bar'} | TestFailed
            {'foo':'bar'} | {'op':'add','path':'/child','value':{'grandchild':{}}} | {'foo':'bar','child':{'grandchild':{}}}
            - | {'op':'add','path':'/baz','value':'qux','xyz':123} | {'foo':'bar','baz':'qux'}
            - | {'op':'add','path':'/baz/bat','value':'qux'} | InvalidPath
            {'/':9,'~1':10} | {'op':'test','path':'/~01','value':10} | {'/':9,'~1':10}
            - | {'op':'test','path':'/~01','value':'10'} | TestFailed
            {'foo':['bar']} | {'op':'add','path':'/foo/-','value':['abc','def']} | {'foo':['bar',['abc','def']]}",
        );
    }

    #[test]
    fn nesting_is_capped_at_max_depth_and_the_result_reads_back() {
        let max = Limits::default().max_depth;
        let too_deep = Err(PatchError::TooDeep { max });
        let set = |depth: usize, value: Value| {
            let op = json!([{"op": "set", "path": "/k".repeat(depth), "value": value}]);
            apply(&json!({}), op.to_string().as_bytes())
        };
        // `depth` tokens below the root put a scalar at level `depth + 1`... which is
        // not a container: the deepest container is the last intermediate object.
        let text = set(max, json!(1))
            .map(|d| d.to_string())
            .unwrap_or_default();
        assert_eq!(crate::json::nesting_depth(text.as_bytes(), usize::MAX), max);
        assert!(parse_bounded(text.as_bytes()).is_ok());
        assert_eq!(set(max, json!({})), too_deep);
        assert_eq!(set(max - 1, json!([[]])), too_deep);
        assert!(set(max - 1, json!([])).is_ok());
        assert_eq!(set(100_000, json!(1)), too_deep);
        let grow = json!(vec![json!({"op": "copy", "from": "", "path": "/k"}); 200]);
        assert_eq!(apply(&json!({}), grow.to_string().as_bytes()), too_deep);
        // Ops text nested past what any op could place is refused before parsing.
        let deep = format!(
            "[{{\"op\":\"set\",\"path\":\"/a\",\"value\":{}1{}}}]",
            "[".repeat(1_000_000),
            "]".repeat(1_000_000)
        );
        assert_eq!(apply(&json!({}), deep.as_bytes()), too_deep);
    }

    #[test]
    fn patches_are_capped_at_max_ops() {
        let limits = Limits {
            max_depth: 8,
            max_ops: 3,
        };
        let ops = |n: usize| {
            let ops = vec![json!({"op": "set", "path": "/a", "value": 1}); n];
            Value::Array(ops).to_string()
        };
        assert!(apply_limited(&json!({}), ops(3).as_bytes(), limits).is_ok());
        assert_eq!(
            apply_limited(&json!({}), ops(4).as_bytes(), limits),
            Err(PatchError::TooManyOps { max: 3 })
        );
        assert_eq!(
            PatchError::TooManyOps { max: 3 }.to_string(),
            "patch has more than 3 operations (limits.max_patch_ops)"
        );
    }

    /// The worst ops within the default limit (inserts at the front of a large array,
    /// copies of a large subtree) on a ~1 MiB document finish quickly: cost is linear
    /// in the document's size times the ops.
    #[test]
    fn max_ops_worst_case_patches_are_fast() {
        let limits = Limits::default();
        let doc =
            json!({"arr": vec![json!("0123456789abcdef"); 50_000], "o": {"x": "y".repeat(1000)}});
        let inserts = vec![json!({"op": "insert", "path": "/arr/0", "value": "z"}); limits.max_ops];
        let copies: Vec<Value> = (0..limits.max_ops)
            .map(|i| json!({"op": "copy", "from": "/o", "path": format!("/c{}", i % 10)}))
            .collect();
        for ops in [inserts, copies] {
            let text = Value::Array(ops).to_string();
            let started = std::time::Instant::now();
            assert!(apply_limited(&doc, text.as_bytes(), limits).is_ok());
            let took = started.elapsed();
            assert!(took < std::time::Duration::from_secs(5), "{took:?}");
        }
    }

    #[test]
    fn copies_cannot_blow_a_document_past_the_size_limit() {
        let ops: Vec<Value> = (0..40)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/k{i}")}))
            .collect();
        let doc = json!({"seed": "x".repeat(100)});
        assert_eq!(
            apply(&doc, Value::Array(ops).to_string().as_bytes()),
            Err(PatchError::TooLarge)
        );
    }

    fn arb_path() -> impl Strategy<Value = String> {
        let usual = prop::sample::select(vec!["a", "b", "0", "1", "-", "~0", "~1"]);
        let odd = prop::sample::select(vec!["~", "~2", "01", "x y", "", "a/b"]);
        let token = prop_oneof![8 => usual, 1 => odd].prop_map(|t| format!("/{t}"));
        let path = prop::collection::vec(token, 1..3).prop_map(|t| t.concat());
        prop_oneof![9 => path, 1 => Just(String::new())]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            Just(json!(1.0)),
            "[ab]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                arb_object(inner),
            ]
        })
    }

    fn arb_object(inner: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[ab0]", inner, 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    fn arb_op() -> impl Strategy<Value = Value> {
        let names = "set delete insert add remove replace move copy test SET Move";
        let name = prop::sample::select(names.split(' ').collect::<Vec<_>>());
        let name = prop_oneof![20 => name, 1 => Just("bogus")];
        let value = prop::option::weighted(0.97, arb_value());
        let up = any::<bool>();
        (name, arb_path(), arb_path(), value, up).prop_map(|(op, path, from, value, up)| {
            let key = |k: &str| if up { k.to_uppercase() } else { k.to_string() };
            let mut m = Map::new();
            m.insert(key("op"), json!(op));
            m.insert(key("path"), json!(path));
            m.insert(key("from"), json!(from));
            if let Some(value) = value {
                m.insert(key("value"), value);
            }
            Value::Object(m)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn random_patches_never_panic_and_are_deterministic(
            doc in prop_oneof![1 => arb_value(), 4 => arb_object(arb_value())],
            ops in prop::collection::vec(arb_op(), 1..4),
        ) {
            let before = doc.clone();
            let bytes = Value::Array(ops.clone()).to_string();
            let first = apply(&doc, bytes.as_bytes());
            prop_assert_eq!(&doc, &before);
            prop_assert_eq!(&first, &apply(&doc, bytes.as_bytes()));
            if let Ok(result) = &first {
                prop_assert!(result.is_object());
                // Appending a failing op turns the whole patch into that error.
                let mut longer = ops;
                longer.push(json!({"op": "test", "path": "", "value": "never"}));
                let longer = Value::Array(longer).to_string();
                prop_assert_eq!(apply(&doc, longer.as_bytes()), Err(TestFailed));
                prop_assert_eq!(&doc, &before);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let doc = json!({"a": [1, {"b": 2}]});
            prop_assert_eq!(apply(&doc, &bytes), apply(&doc, &bytes));
        }
    }
}
