//! Queries against a naive model.
//!
//! `queries_match_a_naive_evaluator`: random documents (nested objects, arrays,
//! missing fields, mixed types) go through random creates, updates and deletes, with a
//! reopen in the middle; after each round random queries (filters with every
//! operator, sorts over one or two paths, limits) run through `Database::query`,
//! paging with `after` to the end, and the concatenated rows must equal what a naive
//! evaluator written here — straightforward recursive semantics of SPEC §11, sharing
//! only the value order (`docdb_core::order`) with the engine — selects and sorts.
//!
//! Every case also has random secondary indexes (single and compound, ascending and
//! descending, some over paths that hold arrays or pass through them), built before
//! the writes and online after the first round, so the planner's index sources must
//! return exactly what the model selects too.
//!
//! `paging_while_writes_happen`: a sorted query is paged with a small limit while
//! other documents are created, updated and deleted between pages; every document
//! untouched during the paging and matching the filter is returned exactly once, in
//! order.
//!
//! `bad_queries_are_clear_errors`: bad filters, limits and tampered cursors give
//! an `InvalidQuery` error naming what is wrong.
//!
//! `sparse_fields_match_a_naive_evaluator`: the same check over a field most
//! documents lack and a path through arrays of objects, with indexes on both;
//! `a_sparse_equality_examines_only_its_matches`: such an index reads the matches
//! only, not the documents missing the field.
//!
//! `or_unions_match_a_naive_evaluator`: `$or`s whose branches an index serves (or
//! not), beside other conditions and in `$and`s, with overlapping branches, sorts and
//! paging while writes happen, against the model and the plan `explain` names;
//! `an_or_of_indexed_fields_examines_only_its_matches`: a union reads its matches
//! only, each once.
//!
//! `DOCDB_PROPTEST_CASES` sets the number of cases (default 48).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use docdb_core::config::FsyncMode;
use docdb_core::order;
use docdb_core::{Config, Database, Error, IndexDef, Query};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError};
use serde_json::{json, Map, Value};

fn config() -> Config {
    let mut c = Config::default();
    c.wal.fsync.mode = FsyncMode::None;
    c
}

// ----------------------------------------------------------------------------------
// Generated values
// ----------------------------------------------------------------------------------

const KEYS: [&str; 3] = ["a", "b", "c"];
const PATHS: [&str; 8] = ["a", "b", "c", "a.b", "b.a", "a.0", "c.a.b", "a.c"];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(|n| json!(n)),
        (-3i64..4).prop_map(|n| json!(n as f64 + 0.5)),
        prop::sample::select(vec!["", "x", "y", "xy"]).prop_map(|s| json!(s)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..3).prop_map(
                |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}

fn document() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn path() -> impl Strategy<Value = String> {
    prop::sample::select(PATHS.to_vec()).prop_map(str::to_owned)
}

fn operand() -> impl Strategy<Value = Value> {
    prop_oneof![4 => scalar(), 1 => value()]
}

fn condition() -> impl Strategy<Value = Value> {
    let leaf = || {
        prop_oneof![
            operand().prop_map(|v| json!({"$eq": v})),
            operand().prop_map(|v| json!({"$ne": v})),
            operand().prop_map(|v| json!({"$gt": v})),
            operand().prop_map(|v| json!({"$gte": v})),
            operand().prop_map(|v| json!({"$lt": v})),
            operand().prop_map(|v| json!({"$lte": v})),
            prop::collection::vec(operand(), 0..3).prop_map(|v| json!({"$in": v})),
            prop::collection::vec(operand(), 0..3).prop_map(|v| json!({"$nin": v})),
            any::<bool>().prop_map(|b| json!({"$exists": b})),
        ]
    };
    prop_oneof![
        3 => leaf(),
        1 => leaf().prop_map(|c| json!({"$not": c})),
        1 => (leaf(), leaf()).prop_map(|(a, b)| {
            let mut m = a.as_object().cloned().unwrap_or_default();
            m.extend(b.as_object().cloned().unwrap_or_default());
            Value::Object(m)
        }),
        // Implicit equality (a literal that is not an operator object).
        1 => scalar(),
    ]
}

fn filter() -> impl Strategy<Value = Value> {
    let field = || (path(), condition()).prop_map(|(p, c)| json!({ p: c }));
    let base = prop_oneof![
        1 => Just(json!({})),
        6 => field(),
        2 => prop::collection::vec(field(), 2..3).prop_map(|fs| {
            // Several fields in one object (distinct paths), an implicit $and.
            let mut m = Map::new();
            for f in fs {
                if let Value::Object(o) = f {
                    m.extend(o);
                }
            }
            Value::Object(m)
        }),
    ];
    base.prop_recursive(2, 8, 3, |inner| {
        (
            prop::sample::select(vec!["$and", "$or", "$nor"]),
            prop::collection::vec(inner, 1..3),
        )
            .prop_map(|(op, fs)| json!({ op: fs }))
    })
}

fn sort() -> impl Strategy<Value = Vec<(String, i64)>> {
    prop::collection::vec((path(), prop::sample::select(vec![1i64, -1])), 0..3)
}

/// A random index: one to three distinct paths (some through arrays or numbered
/// segments), each ascending or descending.
fn index_def() -> impl Strategy<Value = Vec<(String, i8)>> {
    prop::collection::vec((path(), prop::sample::select(vec![1i8, -1])), 1..4).prop_map(|fs| {
        let mut out: Vec<(String, i8)> = Vec::new();
        for (p, d) in fs {
            if !out.iter().any(|(q, _)| *q == p) {
                out.push((p, d));
            }
        }
        out
    })
}

fn create_indexes(db: &Database, defs: &[Vec<(String, i8)>], tag: &str) {
    for (i, fields) in defs.iter().enumerate() {
        create_index(db, format!("{tag}{i}"), fields.clone());
    }
}

/// Creates the index `name` (not unique) on `fields` of `_default`.
fn create_index(db: &Database, name: impl Into<String>, fields: Vec<(String, i8)>) {
    let def = IndexDef {
        name: name.into(),
        fields,
        unique: false,
    };
    db.create_index("_default", def).expect("create_index");
}

/// Runs the query `v` (its `"explain"` set) on `_default`: the ids of its page and
/// the plan's JSON.
fn explained(db: &Database, v: &Value) -> (Vec<u64>, Value) {
    let page = db
        .query(
            "_default",
            &Query::parse(v.to_string().as_bytes()).expect("parse"),
        )
        .expect("query");
    let ids = page.rows.iter().map(|r| r.0).collect();
    (ids, page.plan.expect("explain").to_json())
}

#[derive(Debug, Clone)]
enum Op {
    Put(u64, Value),
    Delete(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0u64..40, document()).prop_map(|(id, d)| Op::Put(id, d)),
            1 => (0u64..40).prop_map(Op::Delete),
        ],
        1..40,
    )
}

#[derive(Debug, Clone)]
struct QuerySpec {
    filter: Value,
    sort: Vec<(String, i64)>,
    limit: usize,
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    (filter(), sort(), 1usize..15).prop_map(|(filter, sort, limit)| QuerySpec {
        filter,
        sort,
        limit,
    })
}

// ----------------------------------------------------------------------------------
// The naive evaluator
// ----------------------------------------------------------------------------------

fn segs(p: &str) -> Vec<&str> {
    p.split('.').collect()
}

fn as_index(s: &str) -> Option<usize> {
    if s == "0" || (!s.starts_with('0') && !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())) {
        s.parse().ok()
    } else {
        None
    }
}

/// Whether `test` holds for some value the path reaches (through objects; at an
/// array, into each object element and into the numbered element).
fn some_reached(v: &Value, path: &[&str], test: &dyn Fn(&Value) -> bool) -> bool {
    match path.split_first() {
        None => test(v),
        Some((first, rest)) => match v {
            Value::Object(m) => m.get(*first).is_some_and(|c| some_reached(c, rest, test)),
            Value::Array(items) => {
                let numbered = as_index(first)
                    .and_then(|i| items.get(i))
                    .is_some_and(|c| some_reached(c, rest, test));
                numbered
                    || items
                        .iter()
                        .any(|e| e.is_object() && some_reached(e, path, test))
            }
            _ => false,
        },
    }
}

/// A leaf test on a reached value: itself or, for an array, any element.
fn itself_or_element(x: &Value, test: &dyn Fn(&Value) -> bool) -> bool {
    test(x) || matches!(x, Value::Array(items) if items.iter().any(test))
}

fn model_eq(doc: &Value, path: &[&str], want: &Value) -> bool {
    let exists = some_reached(doc, path, &|_| true);
    if !exists {
        return want.is_null();
    }
    some_reached(doc, path, &|x| {
        itself_or_element(x, &|y| order::cmp(y, want) == Ordering::Equal)
    })
}

fn model_op(doc: &Value, path: &[&str], op: &str, arg: &Value) -> bool {
    let range = |ok: fn(Ordering) -> bool| {
        some_reached(doc, path, &|x| {
            itself_or_element(x, &|y| {
                order::type_rank(y) == order::type_rank(arg) && ok(order::cmp(y, arg))
            })
        })
    };
    match op {
        "$eq" => model_eq(doc, path, arg),
        "$ne" => !model_eq(doc, path, arg),
        "$gt" => range(|o| o.is_gt()),
        "$gte" => range(|o| o.is_ge()),
        "$lt" => range(|o| o.is_lt()),
        "$lte" => range(|o| o.is_le()),
        "$in" => arg
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| model_eq(doc, path, v))),
        "$nin" => !arg
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| model_eq(doc, path, v))),
        "$exists" => some_reached(doc, path, &|_| true) == (arg == &json!(true)),
        "$not" => !model_conds(doc, path, arg),
        _ => panic!("the generator made {op}"),
    }
}

fn model_conds(doc: &Value, path: &[&str], cond: &Value) -> bool {
    match cond {
        Value::Object(m) if !m.is_empty() && m.keys().all(|k| k.starts_with('$')) => {
            m.iter().all(|(op, arg)| model_op(doc, path, op, arg))
        }
        literal => model_eq(doc, path, literal),
    }
}

fn model_matches(doc: &Value, filter: &Value) -> bool {
    let Value::Object(m) = filter else {
        panic!("filters are objects")
    };
    m.iter().all(|(k, v)| match k.as_str() {
        "$and" => v
            .as_array()
            .is_some_and(|fs| fs.iter().all(|f| model_matches(doc, f))),
        "$or" => v
            .as_array()
            .is_some_and(|fs| fs.iter().any(|f| model_matches(doc, f))),
        "$nor" => !v
            .as_array()
            .is_some_and(|fs| fs.iter().any(|f| model_matches(doc, f))),
        field => model_conds(doc, &segs(field), v),
    })
}

/// The value a sort path names: objects by key, arrays by number only.
fn sort_value<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = doc;
    for s in segs(path) {
        cur = match cur {
            Value::Object(m) => m.get(s)?,
            Value::Array(items) => items.get(as_index(s)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn model_query(docs: &BTreeMap<u64, Value>, q: &QuerySpec) -> Vec<(u64, Value)> {
    let mut rows: Vec<(u64, Value)> = docs
        .iter()
        .filter(|(_, d)| model_matches(d, &q.filter))
        .map(|(id, d)| (*id, d.clone()))
        .collect();
    rows.sort_by(|(ia, a), (ib, b)| {
        for (p, dir) in &q.sort {
            let o = match (sort_value(a, p), sort_value(b, p)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => order::cmp(x, y),
            };
            let o = if *dir < 0 { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        ia.cmp(ib)
    });
    rows
}

// ----------------------------------------------------------------------------------
// Running queries on the engine
// ----------------------------------------------------------------------------------

fn query_json(q: &QuerySpec, after: Option<&str>) -> Vec<u8> {
    let sort: Vec<Value> = q.sort.iter().map(|(p, d)| json!([p, d])).collect();
    let mut v = json!({"filter": q.filter, "sort": sort, "limit": q.limit});
    if let Some(a) = after {
        v["after"] = json!(a);
    }
    v.to_string().into_bytes()
}

/// Every page of a query, concatenated; each page at most `limit` rows. Each page is
/// also run within a work budget at the same snapshot (as the server answers light
/// queries): it either gives up or gives the same page.
fn all_pages(db: &Database, q: &QuerySpec) -> Result<Vec<(u64, Value)>, TestCaseError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for n in 0..1000u64 {
        let query = Query::parse(&query_json(q, after.as_deref()))
            .map_err(|e| TestCaseError::fail(format!("parse: {e}")))?;
        let read = db
            .read_at("_default")
            .map_err(|e| TestCaseError::fail(format!("read_at: {e}")))?;
        let page = read
            .query_page(&query, usize::MAX)
            .map_err(|e| TestCaseError::fail(format!("query: {e}")))?;
        let budget = [0, 1, 2, 5, 17, 64][n as usize % 6];
        let light = read
            .query_page_within(&query, usize::MAX, budget)
            .map_err(|e| TestCaseError::fail(format!("query within {budget}: {e}")))?;
        if let Some(light) = light {
            prop_assert_eq!(&light, &page, "within a budget of {}", budget);
        }
        let unbounded = read
            .query_page_within(&query, usize::MAX, u64::MAX)
            .map_err(|e| TestCaseError::fail(format!("query within u64::MAX: {e}")))?;
        prop_assert_eq!(unbounded.as_ref(), Some(&page));
        prop_assert!(page.rows.len() <= q.limit);
        for (id, doc) in page.rows {
            let v: Value = serde_json::from_slice(&doc)
                .map_err(|e| TestCaseError::fail(format!("row: {e}")))?;
            out.push((id, v));
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
    Err(TestCaseError::fail("more than 1000 pages"))
}

fn cases() -> u32 {
    std::env::var("DOCDB_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48)
}

fn apply(db: &Database, model: &mut BTreeMap<u64, Value>, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(id, d) => {
                let bytes = d.to_string();
                if model.contains_key(id) {
                    db.update("_default", *id, bytes.as_bytes())
                        .expect("update");
                } else {
                    db.create("_default", *id, bytes.as_bytes())
                        .expect("create");
                }
                model.insert(*id, d.clone());
            }
            Op::Delete(id) => {
                if model.remove(id).is_some() {
                    db.delete("_default", *id).expect("delete");
                }
            }
        }
    }
}

/// Checks `property` over the strategy `strategy()` builds, with this file's settings
/// (`cases()`, the saved regressions replayed first), on a thread with a 64 MiB stack:
/// generating the recursive JSON filters takes more than the default 2 MiB in debug
/// builds. (The strategy is built on that thread: boxed strategies are not `Send`.)
fn check<S, M, F>(strategy: M, property: F)
where
    S: Strategy,
    M: FnOnce() -> S + Send + 'static,
    F: Fn(S::Value) -> Result<(), TestCaseError> + Send + 'static,
{
    let run = move || {
        let strategy = strategy();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: cases(),
            source_file: Some(file!()),
            ..ProptestConfig::default()
        });
        if let Err(e) = runner.run(&strategy, property) {
            panic!("{e}");
        }
    };
    let t = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(run)
        .expect("spawn");
    if let Err(panic) = t.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn queries_match_a_naive_evaluator() {
    let strategy = || {
        (
            prop::collection::vec((ops(), prop::collection::vec(query_spec(), 1..5)), 1..4),
            0usize..4,
            prop::collection::vec(index_def(), 0..4),
            prop::collection::vec(index_def(), 0..3),
        )
    };
    check(strategy, |(rounds, reopen_after, early, late)| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = Database::open(dir.path(), config()).expect("open");
        let mut model = BTreeMap::new();
        // Indexes built over an empty collection (maintained by every write), and
        // others built online over the documents of the first round.
        create_indexes(&db, &early, "early");
        for (round, (ops, queries)) in rounds.iter().enumerate() {
            apply(&db, &mut model, ops);
            if round == 0 {
                create_indexes(&db, &late, "late");
            }
            if round == reopen_after {
                db.close().expect("close");
                db = Database::open(dir.path(), config()).expect("reopen");
            }
            for q in queries {
                let got = all_pages(&db, q)?;
                let want = model_query(&model, q);
                let ids = |rows: &[(u64, Value)]| rows.iter().map(|r| r.0).collect::<Vec<_>>();
                prop_assert_eq!(
                    ids(&got),
                    ids(&want),
                    "query {}",
                    String::from_utf8_lossy(&query_json(q, None))
                );
                prop_assert_eq!(got, want);
            }
        }
        Ok(())
    });
}

// ----------------------------------------------------------------------------------
// Sparse fields
// ----------------------------------------------------------------------------------

const SPARSE_PATHS: [&str; 4] = ["e", "e.x", "k", "e.0"];

/// A document where `e` is usually missing; when present a scalar, an object with
/// `x`, or an array of such objects (so `e.x` walks through an array); `k` is
/// present four times in five.
fn sparse_document() -> impl Strategy<Value = Value> {
    let e = prop_oneof![
        8 => Just(None),
        2 => scalar().prop_map(Some),
        1 => scalar().prop_map(|v| Some(json!({"x": v}))),
        1 => prop::collection::vec(scalar().prop_map(|v| json!({"x": v})), 0..3)
            .prop_map(|v| Some(Value::Array(v))),
        1 => Just(Some(json!({}))),
    ];
    (e, prop::option::weighted(0.8, 0i64..3)).prop_map(|(e, k)| {
        let mut m = Map::new();
        if let Some(e) = e {
            m.insert("e".into(), e);
        }
        if let Some(k) = k {
            m.insert("k".into(), json!(k));
        }
        Value::Object(m)
    })
}

fn sparse_path() -> impl Strategy<Value = String> {
    prop::sample::select(SPARSE_PATHS.to_vec()).prop_map(str::to_owned)
}

/// (Boxed: the unboxed strategy types overflow a test thread's stack.)
fn sparse_query() -> BoxedStrategy<QuerySpec> {
    let field = || {
        (sparse_path(), condition())
            .prop_map(|(p, c)| json!({ p: c }))
            .boxed()
    };
    let filter = prop_oneof![
        3 => field(),
        2 => (field(), field()).prop_map(|(a, b)| json!({"$and": [a, b]})),
        1 => prop::collection::vec(field(), 1..3).prop_map(|fs| json!({"$or": fs})),
    ];
    let sort = prop::collection::vec((sparse_path(), prop::sample::select(vec![1i64, -1])), 0..3);
    (filter.boxed(), sort, 1usize..6)
        .prop_map(|(filter, sort, limit)| QuerySpec {
            filter,
            sort,
            limit,
        })
        .boxed()
}

fn sparse_index() -> impl Strategy<Value = Vec<(String, i8)>> {
    prop::collection::vec((sparse_path(), prop::sample::select(vec![1i8, -1])), 1..3).prop_map(
        |fs| {
            let mut out: Vec<(String, i8)> = Vec::new();
            for (p, d) in fs {
                if !out.iter().any(|(q, _)| *q == p) {
                    out.push((p, d));
                }
            }
            out
        },
    )
}

/// Indexes over a field most documents lack (the planner skips their missing
/// entries when no condition can match a missing field) and over a path through
/// arrays (whose entries it must still read), with sorts the index may serve.
#[test]
fn sparse_fields_match_a_naive_evaluator() {
    let strategy = || {
        (
            prop::collection::vec(sparse_document(), 1..60),
            prop::collection::vec((0u64..60, sparse_document()), 0..20),
            prop::collection::vec(sparse_index(), 1..4),
            prop::collection::vec(sparse_query(), 1..8),
        )
    };
    check(strategy, |(docs, updates, indexes, queries)| {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path(), config()).expect("open");
        let mut model = BTreeMap::new();
        create_indexes(&db, &indexes, "sparse");
        let ops: Vec<Op> = docs
            .into_iter()
            .enumerate()
            .map(|(i, d)| Op::Put(i as u64, d))
            .chain(updates.into_iter().map(|(id, d)| Op::Put(id, d)))
            .collect();
        apply(&db, &mut model, &ops);
        for q in &queries {
            let got = all_pages(&db, q)?;
            let want = model_query(&model, q);
            let ids = |rows: &[(u64, Value)]| rows.iter().map(|r| r.0).collect::<Vec<_>>();
            prop_assert_eq!(
                ids(&got),
                ids(&want),
                "query {}",
                String::from_utf8_lossy(&query_json(q, None))
            );
        }
        Ok(())
    });
}

/// An equality on an indexed field that nine documents in ten lack reads the
/// matching documents only, not the ones missing the field; a filter that a missing
/// field can match (`null`) still reads those.
#[test]
fn a_sparse_equality_examines_only_its_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), config()).expect("open");
    for id in 0..500u64 {
        let doc = if id % 10 == 0 {
            json!({"n": id, "email": format!("u{}@x", id % 30)})
        } else {
            json!({"n": id})
        };
        db.create("_default", id, doc.to_string().as_bytes())
            .expect("create");
    }
    create_index(&db, "by_email", vec![("email".into(), 1)]);
    let run = |filter: Value| {
        let (ids, plan) = explained(
            &db,
            &json!({"filter": filter, "limit": 1000, "explain": true}),
        );
        assert_eq!(plan["index"], json!("by_email"), "{plan}");
        (
            ids.len() as u64,
            plan["keys_examined"].as_u64().unwrap_or(0),
            plan["examined"].as_u64().unwrap_or(0),
            plan["exact"] == json!(true),
        )
    };
    // 17 documents have u0@x (ids 0, 30, ..., 480), 450 have no email. The index
    // never held an array, so an equality, `$in` or range decides the filter: its
    // entries are the rows, no document is tested (examined 0).
    assert_eq!(run(json!({"email": "u0@x"})), (17, 17, 0, true));
    assert_eq!(
        run(json!({"email": {"$in": ["u0@x", "u10@x"]}})),
        (34, 34, 0, true)
    );
    assert_eq!(run(json!({"email": {"$gte": "u20@x"}})), (16, 16, 0, true));
    // $exists is re-checked on each document read.
    assert_eq!(
        run(json!({"email": {"$exists": true}})),
        (50, 50, 50, false)
    );
    // null matches the documents without an email: those entries are read.
    assert_eq!(
        run(json!({"email": {"$in": [null, "u0@x"]}})),
        (467, 467, 0, true)
    );
}

/// A budgeted page counts index entries examined plus documents read, and gives up
/// past its budget: an exact equality with 17 matches needs 17 entries and 17 rows
/// read for the page; a scan of 500 documents reads each once (it keeps their bytes
/// for the page).
#[test]
fn a_budgeted_page_counts_entries_and_documents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), config()).expect("open");
    for id in 0..500u64 {
        let doc = json!({"n": id, "email": format!("u{}@x", id % 30)});
        db.create("_default", id, doc.to_string().as_bytes())
            .expect("create");
    }
    create_index(&db, "by_email", vec![("email".into(), 1)]);
    let read = db.read_at("_default").expect("read_at");
    let rows = |q: &[u8], budget: u64| {
        let q = Query::parse(q).expect("parse");
        read.query_page_within(&q, usize::MAX, budget)
            .expect("query")
            .map(|p| p.rows.len())
    };
    let eq = br#"{"filter":{"email":"u0@x"},"limit":1000}"#;
    assert_eq!(rows(eq, 33), None);
    assert_eq!(rows(eq, 34), Some(17));
    let scan = br#"{"filter":{"n":{"$gte":0}},"limit":1000}"#;
    assert_eq!(rows(scan, 499), None);
    assert_eq!(rows(scan, 500), Some(500));
}

/// A sort over `[e.x, k]` served by an index on the same fields: documents without
/// `e.x` and those whose `e` is an array (`ViaArray` entries, read after the
/// `Missing` ones) have the same missing sort value, so their `k` values must be
/// merged, not taken in index order (the read may not stop at the first `k` past the
/// page).
#[test]
fn a_served_sort_merges_missing_and_via_array_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), config()).expect("open");
    for (id, doc) in [
        (0u64, json!({"e": {}, "k": 5})),
        (1, json!({"e": {}, "k": 6})),
        (2, json!({"e": [{"x": 1}], "k": 1})),
        (3, json!({"e": {}, "k": 7})),
        (4, json!({"e": {"x": 0}, "k": 0})),
    ] {
        db.create("_default", id, doc.to_string().as_bytes())
            .expect("create");
    }
    create_index(&db, "by_ex_k", vec![("e.x".into(), 1), ("k".into(), 1)]);
    let q = QuerySpec {
        filter: json!({}),
        sort: vec![("e.x".into(), 1), ("k".into(), 1)],
        limit: 1,
    };
    let v = json!({"sort": [["e.x", 1], ["k", 1]], "limit": 1, "explain": true});
    let (ids, plan) = explained(&db, &v);
    assert_eq!(plan["ordered"], json!(true), "{plan}");
    assert_eq!(ids, vec![2]);
    let got: Vec<u64> = all_pages(&db, &q)
        .expect("pages")
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(got, vec![2, 0, 1, 3, 4]);
}

#[test]
fn paging_while_writes_happen() {
    paging_while_writes_happen_with(&[]);
}

/// The same paging with the sort served by an index: read in its order, read in
/// reverse, and a compound one of which the sort is a prefix. Each must name the
/// index in `explain`.
#[test]
fn paging_while_writes_happen_through_an_index() {
    paging_while_writes_happen_with(&[("g", -1)]);
    paging_while_writes_happen_with(&[("g", 1)]);
    paging_while_writes_happen_with(&[("g", 1), ("k", -1)]);
}

fn paging_while_writes_happen_with(index: &[(&str, i8)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), config()).expect("open");
    if !index.is_empty() {
        create_index(
            &db,
            "by_g",
            index.iter().map(|(p, d)| (p.to_string(), *d)).collect(),
        );
    }
    // Ids 0..300: stable ones (even) are never written during the paging; odd ones are
    // updated (their sort key moves) or deleted, and new ids are created.
    for id in 0..300u64 {
        let doc = json!({"g": (id * 7919) % 13, "k": id % 3});
        db.create("_default", id, doc.to_string().as_bytes())
            .expect("create");
    }
    let q = |after: Option<&str>| {
        let mut v = json!({"filter": {"k": {"$ne": 1}}, "sort": [["g", -1]], "limit": 7});
        if let Some(a) = after {
            v["after"] = json!(a);
        }
        v["explain"] = json!(true);
        Query::parse(v.to_string().as_bytes()).expect("parse")
    };
    let mut seen: Vec<(u64, Value)> = Vec::new();
    let mut after: Option<String> = None;
    for (next_new, page_no) in (1000u64..).zip(0..1000u64) {
        let page = db.query("_default", &q(after.as_deref())).expect("query");
        let plan = page.plan.as_ref().expect("explain").to_json();
        let want = if index.is_empty() { "scan" } else { "index" };
        assert_eq!(plan["kind"], json!(want), "{plan}");
        if !index.is_empty() {
            // Ordered: a page reads about `limit + 1` documents plus ties, however
            // deep it is.
            assert!(plan["examined"].as_u64() < Some(60), "{plan}");
            // The index read starts at the cursor, not at the first page.
            assert!(plan["keys_examined"].as_u64() < Some(80), "{plan}");
        }
        for (id, doc) in &page.rows {
            seen.push((*id, serde_json::from_slice(doc).expect("json")));
        }
        // Writes between pages: move odd documents around, delete some, add new ones.
        let odd = (page_no * 2 + 1) % 300;
        let moved = json!({"g": page_no % 13, "k": 0});
        db.update("_default", odd, moved.to_string().as_bytes())
            .ok();
        db.delete("_default", (odd + 100) % 300).ok();
        db.create(
            "_default",
            next_new,
            json!({"g": page_no % 13, "k": 2}).to_string().as_bytes(),
        )
        .expect("create new");
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let stable: Vec<u64> = (0..300u64)
        .filter(|id| id % 2 == 0 && id % 3 != 1)
        .collect();
    for id in &stable {
        let n = seen.iter().filter(|(s, _)| s == id).count();
        assert_eq!(n, 1, "stable id {id} returned {n} times");
    }
    // The stable rows come in the sort's order: g descending, then id ascending.
    let keys: Vec<(i64, u64)> = seen
        .iter()
        .filter(|(id, _)| stable.contains(id))
        .map(|(id, d)| (-d["g"].as_i64().unwrap_or(0), *id))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn bad_queries_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), config()).expect("open");
    for id in 0..5u64 {
        db.create("_default", id, format!(r#"{{"n":{id}}}"#).as_bytes())
            .expect("create");
    }
    let err = |q: &str| match Query::parse(q.as_bytes()).and_then(|q| db.query("", &q)) {
        Err(e @ Error::InvalidQuery(_)) => e.to_string(),
        other => panic!("{q}: {other:?}"),
    };
    assert_eq!(
        err(r#"{"filter":{"n":{"$in":5}}}"#),
        "invalid query: $in at path n needs an array, got a number"
    );
    assert_eq!(
        err(r#"{"filter":{"x.y":{"$where":1}}}"#),
        "invalid query: unknown operator $where at path x.y"
    );
    assert_eq!(
        err(r#"{"limit":0}"#),
        "invalid query: limit must be an integer from 1 to 1000, got 0"
    );
    // A real cursor, then the same cursor tampered with, and under another sort.
    let first = Query::parse(br#"{"sort":[["n",-1]],"limit":2}"#).expect("parse");
    let page = db.query("", &first).expect("query");
    assert_eq!(
        page.rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![4, 3]
    );
    let next = page.next.expect("more rows");
    let resumed = format!(r#"{{"sort":[["n",-1]],"limit":2,"after":"{next}"}}"#);
    let page2 = db
        .query("", &Query::parse(resumed.as_bytes()).expect("parse"))
        .expect("query");
    assert_eq!(
        page2.rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![2, 1]
    );
    let mut bad = next.clone().into_bytes();
    bad[10] = if bad[10] == b'a' { b'b' } else { b'a' };
    let bad = String::from_utf8(bad).expect("ascii");
    assert_eq!(
        err(&format!(r#"{{"sort":[["n",-1]],"after":"{bad}"}}"#)),
        "invalid query: after: the cursor is damaged or was not returned by this server"
    );
    assert_eq!(
        err(&format!(r#"{{"sort":[["n",1]],"after":"{next}"}}"#)),
        "invalid query: after: the cursor belongs to a different sort"
    );
    // The depth limit is the database's limits.max_depth.
    let mut c = config();
    c.limits.max_depth = 4;
    drop(db);
    let db = Database::open(dir.path(), c).expect("reopen");
    let q = Query::parse(br#"{"filter":{"a":{"$eq":[[[[1]]]]}}}"#).expect("parse");
    match db.query("", &q) {
        Err(e @ Error::InvalidQuery(_)) => assert_eq!(
            e.to_string(),
            "invalid query: query nests deeper than 4 levels (limits.max_depth)"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn explain_and_projection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), config()).expect("open");
    for id in 0..10u64 {
        let doc = json!({"n": id, "tag": if id % 2 == 0 { "even" } else { "odd" }, "x": {"y": id, "z": 0}});
        db.create("_default", id, doc.to_string().as_bytes())
            .expect("create");
    }
    let q =
        Query::parse(br#"{"filter":{"tag":"even"},"projection":["x.y"],"explain":true,"limit":3}"#)
            .expect("parse");
    let page = db.query("", &q).expect("query");
    let rows: Vec<(u64, Value)> = page
        .rows
        .iter()
        .map(|(id, d)| (*id, serde_json::from_slice(d).expect("json")))
        .collect();
    assert_eq!(
        rows,
        vec![
            (0, json!({"x": {"y": 0}})),
            (2, json!({"x": {"y": 2}})),
            (4, json!({"x": {"y": 4}}))
        ]
    );
    let plan = page.plan.expect("explain").to_json();
    assert_eq!(
        plan,
        json!({"kind": "scan", "collection": "_default", "examined": 7})
    );
    assert!(page.next.is_some());
}

#[test]
fn a_page_stops_at_the_byte_budget_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), config()).expect("open");
    let big = "x".repeat(1000);
    for id in 0..20u64 {
        db.create(
            "_default",
            id,
            json!({"s": big, "n": id}).to_string().as_bytes(),
        )
        .expect("create");
    }
    let q = Query::parse(br#"{"sort":[["n",-1]],"limit":100}"#).expect("parse");
    let page = db.query_page("", &q, 3500).expect("query");
    assert_eq!(
        page.rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![19, 18, 17]
    );
    let next = page.next.expect("more");
    let q2 =
        Query::parse(format!(r#"{{"sort":[["n",-1]],"limit":100,"after":"{next}"}}"#).as_bytes())
            .expect("parse");
    let page2 = db.query_page("", &q2, usize::MAX).expect("query");
    assert_eq!(page2.rows.len(), 17);
    assert_eq!(page2.next, None);
}

/// A sort after an equality prefix of a compound index (`{"k": 0}` sorted by `g`
/// over `[k, g]`): every page in order, each reading about `limit + 1` documents.
#[test]
fn a_sort_after_an_equality_prefix_pages_in_index_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), config()).expect("open");
    for id in 0..300u64 {
        let doc = json!({"k": id % 3, "g": (id * 7919) % 13});
        db.create("_default", id, doc.to_string().as_bytes())
            .expect("create");
    }
    create_index(&db, "by_k_g", vec![("k".into(), 1), ("g".into(), 1)]);
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut v = json!({"filter": {"k": 0}, "sort": [["g", -1]], "limit": 7, "explain": true});
        if let Some(a) = &after {
            v["after"] = json!(a);
        }
        let page = db
            .query(
                "_default",
                &Query::parse(v.to_string().as_bytes()).expect("parse"),
            )
            .expect("query");
        let plan = page.plan.as_ref().expect("explain").to_json();
        assert_eq!(
            (&plan["index"], &plan["ordered"]),
            (&json!("by_k_g"), &json!(true)),
            "{plan}"
        );
        assert!(plan["examined"].as_u64() < Some(20), "{plan}");
        got.extend(page.rows.iter().map(|r| r.0));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut want: Vec<u64> = (0..300u64).filter(|id| id % 3 == 0).collect();
    want.sort_by_key(|id| (std::cmp::Reverse((id * 7919) % 13), *id));
    assert_eq!(got, want);
}

/// A page keeps the bytes its rows were read with (within the reply budget; rows past
/// it are read again): under a small budget, with a heap that evicts rows and without
/// one, with and without an index, with a projection, every page's rows are exactly
/// the stored documents in the query's order, and paging covers every match once.
#[test]
fn pages_under_a_small_budget_return_each_rows_own_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), config()).expect("open");
    let mut stored: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for id in 0..60u64 {
        let pad = "p".repeat(((id * 37) % 500) as usize);
        let doc = json!({"n": (id * 7) % 60, "odd": id % 2 == 1, "pad": pad, "o": {"x": id}});
        let text = doc.to_string().into_bytes();
        db.create("_default", id, &text).expect("create");
        stored.insert(id, text);
    }
    let n_of = |id: u64| (id * 7) % 60;
    let queries: [(&str, Vec<u64>); 3] = [
        // Sorted (a bounded heap that evicts), descending by n.
        (r#""filter":{"odd":true},"sort":[["n",-1]]"#, {
            let mut ids: Vec<u64> = (0..60).filter(|i| i % 2 == 1).collect();
            ids.sort_by_key(|&i| std::cmp::Reverse(n_of(i)));
            ids
        }),
        // Id order (no heap).
        (
            r#""filter":{"odd":false}"#,
            (0..60).filter(|i| i % 2 == 0).collect(),
        ),
        // A range on n (the index, once built).
        (r#""filter":{"n":{"$gte":10,"$lt":40}}"#, {
            (0..60).filter(|&i| (10..40).contains(&n_of(i))).collect()
        }),
    ];
    for indexed in [false, true] {
        if indexed {
            create_index(&db, "by_n", vec![("n".into(), 1)]);
        }
        for (body, want) in &queries {
            for projection in [false, true] {
                let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
                let mut after: Option<String> = None;
                for _ in 0..100 {
                    let mut text = format!("{{{body},\"limit\":7");
                    if projection {
                        text.push_str(r#","projection":["o.x","n"]"#);
                    }
                    if let Some(a) = &after {
                        text.push_str(&format!(",\"after\":\"{a}\""));
                    }
                    text.push('}');
                    let q = Query::parse(text.as_bytes()).expect("parse");
                    let page = db.query_page("_default", &q, 1200).expect("query");
                    assert!(!page.rows.is_empty() || page.next.is_none());
                    got.extend(page.rows);
                    after = page.next;
                    if after.is_none() {
                        break;
                    }
                }
                let expect: Vec<(u64, Vec<u8>)> = want
                    .iter()
                    .map(|&id| {
                        let bytes = if projection {
                            json!({"n": n_of(id), "o": {"x": id}})
                                .to_string()
                                .into_bytes()
                        } else {
                            stored[&id].clone()
                        };
                        (id, bytes)
                    })
                    .collect();
                assert_eq!(
                    got.iter().map(|r| r.0).collect::<Vec<_>>(),
                    want.clone(),
                    "{body} indexed={indexed} projection={projection}"
                );
                assert!(
                    got == expect,
                    "{body} indexed={indexed} projection={projection}: bytes differ"
                );
            }
        }
    }
}

// ----------------------------------------------------------------------------------
// $or served by a union of index plans
// ----------------------------------------------------------------------------------

/// Fields of the `$or` documents: `a`, `b` and `c` indexed (`c` as the leading field
/// of a compound index), `d` never.
const OR_FIELDS: [&str; 4] = ["a", "b", "c", "d"];

/// A document whose fields are usually small scalars (so branches overlap), sometimes
/// missing, an array or an object.
fn or_document() -> BoxedStrategy<Value> {
    let field = prop_oneof![
        2 => Just(None),
        8 => scalar().prop_map(Some),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(|v| Some(Value::Array(v))),
        1 => scalar().prop_map(|v| Some(json!({"a": v}))),
    ];
    prop::collection::vec(field, 4)
        .prop_map(|fs| {
            let mut m = Map::new();
            for (k, v) in OR_FIELDS.iter().zip(fs) {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            }
            Value::Object(m)
        })
        .boxed()
}

/// A condition an index bounds (equality, `$in`, a range, `$exists: true`).
fn bounded_condition() -> BoxedStrategy<Value> {
    prop_oneof![
        scalar(),
        scalar().prop_map(|v| json!({"$eq": v})),
        prop::collection::vec(scalar(), 0..3).prop_map(|v| json!({"$in": v})),
        (
            prop::sample::select(vec!["$gt", "$gte"]),
            scalar(),
            prop::option::of((prop::sample::select(vec!["$lt", "$lte"]), scalar()))
        )
            .prop_map(|(lo, v, hi)| {
                let mut m = Map::new();
                m.insert(lo.into(), v);
                if let Some((op, w)) = hi {
                    m.insert(op.into(), w);
                }
                Value::Object(m)
            }),
        (prop::sample::select(vec!["$lt", "$lte"]), scalar()).prop_map(|(op, v)| json!({ op: v })),
        Just(json!({"$exists": true})),
    ]
    .boxed()
}

/// One `$or` branch and whether an index serves it (`None`: it depends): a bounded
/// condition on an indexed field (sometimes with a second condition on `d`), or
/// anything on `d`, or any condition on any field.
fn or_branch() -> BoxedStrategy<(Value, Option<bool>)> {
    let indexed = || prop::sample::select(vec!["a", "b", "c"]);
    prop_oneof![
        6 => (indexed(), bounded_condition()).prop_map(|(p, c)| (json!({ p: c }), Some(true))),
        1 => (indexed(), bounded_condition(), condition().boxed())
            .prop_map(|(p, c, d)| (json!({ p: c, "d": d }), Some(true))),
        1 => condition().boxed().prop_map(|c| (json!({ "d": c }), Some(false))),
        1 => (prop::sample::select(OR_FIELDS.to_vec()), condition().boxed())
            .prop_map(|(p, c)| (json!({ p: c }), None)),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct OrQuery {
    spec: QuerySpec,
    /// The plan `explain` must name, when the filter decides it.
    kind: Option<&'static str>,
}

/// `{"$or": [...]}`, with a condition beside it (on `d`, or on any field), in the
/// same object or in an `$and`, or two `$or`s in an `$and`.
fn or_query() -> BoxedStrategy<OrQuery> {
    let branches = || prop::collection::vec(or_branch(), 1..4);
    let beside: BoxedStrategy<Option<(String, Value, bool)>> = prop_oneof![
        2 => Just(None),
        1 => condition().boxed().prop_map(|c| Some(("d".to_string(), c, false))),
        1 => (prop::sample::select(OR_FIELDS.to_vec()), condition().boxed())
            .prop_map(|(p, c)| Some((p.to_string(), c, true))),
    ]
    .boxed();
    let sort = prop::collection::vec(
        (
            prop::sample::select(OR_FIELDS.to_vec()).prop_map(str::to_owned),
            prop::sample::select(vec![1i64, -1]),
        ),
        0..3,
    )
    .boxed();
    (
        branches().boxed(),
        prop::option::weighted(0.2, branches()).boxed(),
        beside,
        any::<bool>(),
        sort,
        1usize..6,
    )
        .prop_map(|(first, second, beside, nested, sort, limit)| {
            let list =
                |bs: &[(Value, Option<bool>)]| bs.iter().map(|b| b.0.clone()).collect::<Vec<_>>();
            let served = |bs: &[(Value, Option<bool>)]| bs.iter().all(|b| b.1 == Some(true));
            let unserved = |bs: &[(Value, Option<bool>)]| bs.iter().any(|b| b.1 == Some(false));
            let mut parts = vec![json!({"$or": list(&first)})];
            if let Some(s) = &second {
                parts.push(json!({"$or": list(s)}));
            }
            let mut indexed_beside = false;
            if let Some((p, c, indexed)) = &beside {
                parts.push(json!({ p.as_str(): c }));
                indexed_beside = *indexed;
            }
            // (Two `$or`s cannot share one object.)
            let filter = if nested || second.is_some() {
                json!({ "$and": parts })
            } else {
                let mut m = Map::new();
                for p in parts {
                    if let Value::Object(o) = p {
                        m.extend(o);
                    }
                }
                Value::Object(m)
            };
            // With nothing indexed beside the `$or`s: a union when some `$or` has
            // every branch served, a scan when each has one no index serves (and no
            // sort an index could serve).
            let any_served = served(&first) || second.as_deref().is_some_and(served);
            let all_unserved = unserved(&first) && second.as_deref().is_none_or(unserved);
            let kind = if indexed_beside {
                None
            } else if any_served {
                Some("union")
            } else if all_unserved && sort.is_empty() {
                Some("scan")
            } else {
                None
            };
            OrQuery {
                spec: QuerySpec {
                    filter,
                    sort,
                    limit,
                },
                kind,
            }
        })
        .boxed()
}

fn or_indexes(db: &Database, desc: &[bool; 3]) {
    let dir = |d: bool| if d { -1 } else { 1 };
    let defs = [
        ("by_a", vec![("a".to_string(), dir(desc[0]))]),
        ("by_b", vec![("b".to_string(), dir(desc[1]))]),
        (
            "by_c_a",
            vec![("c".to_string(), dir(desc[2])), ("a".to_string(), 1)],
        ),
    ];
    for (name, fields) in defs {
        create_index(db, name, fields);
    }
}

/// One page of `q` after `after`, with `explain`.
fn or_page(
    db: &Database,
    q: &QuerySpec,
    after: Option<&str>,
) -> Result<docdb_core::query::QueryPage, TestCaseError> {
    let mut v: Value = serde_json::from_slice(&query_json(q, after)).expect("json");
    v["explain"] = json!(true);
    let query = Query::parse(v.to_string().as_bytes())
        .map_err(|e| TestCaseError::fail(format!("parse: {e}")))?;
    db.query("_default", &query)
        .map_err(|e| TestCaseError::fail(format!("query: {e}")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// `$or`s (alone, beside other conditions, in an `$and`, two of them) over indexed
    /// and unindexed fields, with branches that overlap (one document matching
    /// several), sorts and small limits: every query pages to exactly what the model
    /// selects, each page naming the plan the filter calls for. Then the same query is
    /// paged again while odd ids are created, updated and deleted between pages: the
    /// even ids (never written meanwhile) come once each, in the model's order, and
    /// no page holds an id twice; after the writes it matches the model again.
    #[test]
    fn or_unions_match_a_naive_evaluator(
        docs in prop::collection::vec(or_document(), 1..60),
        desc in any::<[bool; 3]>(),
        queries in prop::collection::vec(or_query(), 1..6),
        writes in prop::collection::vec((0u64..40, prop::option::weighted(0.8, or_document())), 0..30),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path(), config()).expect("open");
        or_indexes(&db, &desc);
        let mut model = BTreeMap::new();
        let ops: Vec<Op> = docs
            .into_iter()
            .enumerate()
            .map(|(i, d)| Op::Put(i as u64, d))
            .collect();
        apply(&db, &mut model, &ops);
        let ids = |rows: &[(u64, Value)]| rows.iter().map(|r| r.0).collect::<Vec<_>>();
        for OrQuery { spec: q, kind } in &queries {
            let text = String::from_utf8_lossy(&query_json(q, None)).into_owned();
            let got = all_pages(&db, q)?;
            let want = model_query(&model, q);
            prop_assert_eq!(ids(&got), ids(&want), "query {}", text);
            prop_assert_eq!(&got, &want);
            if let Some(kind) = kind {
                let plan = or_page(&db, q, None)?.plan.expect("explain").to_json();
                prop_assert_eq!(&plan["kind"], &json!(kind), "query {} plan {}", text, plan);
            }
            // Paging with writes between pages (odd ids only; ids 60.. are new).
            let stable: Vec<u64> = ids(&want).into_iter().filter(|id| id % 2 == 0).collect();
            let mut seen: Vec<u64> = Vec::new();
            let mut after: Option<String> = None;
            let mut w = writes.iter();
            for _ in 0..1000 {
                let page = or_page(&db, q, after.as_deref())?;
                let mut page_ids: Vec<u64> = page.rows.iter().map(|r| r.0).collect();
                seen.extend(&page_ids);
                page_ids.sort_unstable();
                page_ids.dedup();
                prop_assert_eq!(page_ids.len(), page.rows.len(), "a page repeats an id: {}", text);
                for (id, d) in w.by_ref().take(2) {
                    let id = id * 2 + 1 + if id % 3 == 0 { 60 } else { 0 };
                    let op = match d {
                        Some(d) => Op::Put(id, d.clone()),
                        None => Op::Delete(id),
                    };
                    apply(&db, &mut model, &[op]);
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            let seen_stable: Vec<u64> = seen.into_iter().filter(|id| id % 2 == 0).collect();
            prop_assert_eq!(seen_stable, stable, "query {} while writing", text);
            let got = all_pages(&db, q)?;
            prop_assert_eq!(got, model_query(&model, q), "query {} after the writes", text);
        }
    }
}

/// An `$or` over two indexed fields reads its two matches of 10,000 documents (each
/// once, though both branches match one); with a branch on an unindexed field, or
/// more than 16 branches, it scans; beside an indexed equality that the branches do
/// not beat, the equality's index.
#[test]
fn an_or_of_indexed_fields_examines_only_its_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), config()).expect("open");
    for (name, field) in [("by_email", "email"), ("by_n", "n")] {
        create_index(&db, name, vec![(field.into(), 1)]);
    }
    for id in 0..10_000u64 {
        let doc = json!({"email": format!("u{id}@x"), "n": id, "k": id % 7});
        db.create("_default", id, doc.to_string().as_bytes())
            .expect("create");
    }
    let run = |filter: Value, sort: Value| {
        explained(
            &db,
            &json!({"filter": filter, "sort": sort, "limit": 1000, "explain": true}),
        )
    };
    let filter = json!({"$or": [
        {"email": {"$in": ["u42@x", "u9000@x"]}},
        {"n": {"$gt": 8999, "$lt": 9001}},
    ]});
    let (ids, plan) = run(filter.clone(), json!([]));
    assert_eq!(ids, vec![42, 9000]);
    assert_eq!(
        (&plan["kind"], &plan["examined"], &plan["keys_examined"]),
        (&json!("union"), &json!(2), &json!(3)),
        "{plan}"
    );
    let branches: Vec<&Value> = plan["branches"]
        .as_array()
        .map(|b| b.iter().map(|b| &b["index"]).collect())
        .unwrap_or_default();
    assert_eq!(branches, vec!["by_email", "by_n"], "{plan}");
    // Sorted, and in an $and beside a condition on an unindexed field.
    let (ids, plan) = run(
        json!({"$and": [{"k": {"$ne": 3}}, filter.clone()]}),
        json!([["n", -1]]),
    );
    assert_eq!(ids, vec![9000, 42]);
    assert_eq!(
        (&plan["kind"], &plan["examined"]),
        (&json!("union"), &json!(2)),
        "{plan}"
    );
    // A branch no index serves: a scan.
    let (ids, plan) = run(json!({"$or": [{"email": "u42@x"}, {"k": 100}]}), json!([]));
    assert_eq!(ids, vec![42]);
    assert_eq!(
        (&plan["kind"], &plan["examined"]),
        (&json!("scan"), &json!(10_000)),
        "{plan}"
    );
    // At most 16 branches: past that, a scan.
    for (n, kind) in [(16u64, "union"), (17, "scan")] {
        let branches: Vec<Value> = (0..n).map(|i| json!({"n": i * 100})).collect();
        let (ids, plan) = run(json!({"$or": branches}), json!([]));
        assert_eq!(ids, (0..n).map(|i| i * 100).collect::<Vec<_>>());
        assert_eq!(plan["kind"], json!(kind), "{plan}");
    }
    // An equality beside the $or that the branches do not beat: its index alone.
    let (ids, plan) = run(
        json!({"n": 42, "$or": [{"email": "u42@x"}, {"email": "u43@x"}]}),
        json!([]),
    );
    assert_eq!(ids, vec![42]);
    assert_eq!(
        (&plan["kind"], &plan["index"], &plan["examined"]),
        (&json!("index"), &json!("by_n"), &json!(1)),
        "{plan}"
    );
}

// ----------------------------------------------------------------------------------
// Exact index plans
// ----------------------------------------------------------------------------------

const EXACT_PATHS: [&str; 3] = ["p", "q", "r.s"];

/// A scalar of any type, often `null` or missing (the caller leaves fields out).
fn exact_scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => (-2i64..3).prop_map(|n| json!(n)),
        1 => (-2i64..3).prop_map(|n| json!(n as f64 + 0.5)),
        1 => Just(json!(1.0)),
        2 => prop::sample::select(vec!["", "x", "y"]).prop_map(|s| json!(s)),
    ]
    .boxed()
}

/// A document over `p`, `q` and `r.s`: scalars of mixed types, missing fields, `r` a
/// scalar or an object with or without `s`; with `arrays`, sometimes an array at one
/// of them or on the way to `r.s` (so an index on it holds an array entry from then on).
fn exact_document(arrays: bool) -> BoxedStrategy<Value> {
    let field = || prop::option::weighted(0.75, exact_scalar());
    let r = prop_oneof![
        2 => Just(None),
        1 => exact_scalar().prop_map(Some),
        4 => exact_scalar().prop_map(|v| Some(json!({"s": v}))),
        1 => Just(Some(json!({}))),
    ];
    let array = prop_oneof![
        Just(None),
        (0usize..3, prop::collection::vec(exact_scalar(), 0..3))
            .prop_map(|(at, vs)| Some((at, Value::Array(vs)))),
    ];
    (field(), field(), r, array)
        .prop_map(move |(p, q, r, array)| {
            let mut m = Map::new();
            for (k, v) in [("p", p), ("q", q), ("r", r)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            if let (true, Some((at, a))) = (arrays, array) {
                match at {
                    0 => m.insert("p".into(), a),
                    1 => m.insert("q".into(), a),
                    // Via an array: `r.s` reaches the elements' `s`.
                    _ => m.insert(
                        "r".into(),
                        Value::Array(
                            a.as_array()
                                .into_iter()
                                .flatten()
                                .map(|v| json!({"s": v}))
                                .collect(),
                        ),
                    ),
                };
            }
            Value::Object(m)
        })
        .boxed()
}

/// Conditions an index may decide alone (equality, `$in` of scalars, ranges of one
/// type), mixed types across conditions, and some it may not.
fn exact_condition() -> BoxedStrategy<Value> {
    let range = || {
        (
            prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]),
            exact_scalar(),
        )
    };
    prop_oneof![
        3 => exact_scalar(),
        2 => exact_scalar().prop_map(|v| json!({"$eq": v})),
        2 => prop::collection::vec(exact_scalar(), 0..4).prop_map(|vs| json!({"$in": vs})),
        3 => range().prop_map(|(op, v)| json!({ op: v })),
        // Two bounds: usually of one type, sometimes of two (nothing matches).
        3 => (range(), range(), any::<bool>()).prop_map(|((a, x), (b, y), same)| {
            let y = if same && order::type_rank(&x) != order::type_rank(&y) { x.clone() } else { y };
            if a == b { json!({ a: x }) } else { json!({ a: x, b: y }) }
        }),
        1 => exact_scalar().prop_map(|v| json!({"$ne": v})),
        1 => any::<bool>().prop_map(|b| json!({"$exists": b})),
        1 => (exact_scalar(), exact_scalar()).prop_map(|(a, b)| json!({"$in": [a], "$nin": [b]})),
        1 => Just(json!({"$in": [[1]]})),
    ]
    .boxed()
}

fn exact_query() -> BoxedStrategy<QuerySpec> {
    let path = || prop::sample::select(EXACT_PATHS.to_vec());
    let filter = prop_oneof![
        // No condition: exact when a sort is served by an index (every entry).
        1 => Just(json!({})),
        6 => prop::collection::btree_map(path(), exact_condition(), 1..4).prop_map(|m| {
            Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        }),
        1 => (path(), exact_condition(), path(), exact_condition()).prop_map(|(a, x, b, y)| {
            json!({"$or": [{ a: x }, { b: y }]})
        }),
        1 => (path(), exact_condition(), path(), exact_condition()).prop_map(|(a, x, b, y)| {
            json!({"$and": [{ a: x }, { b: y }]})
        }),
    ];
    let sort = prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec((path().prop_map(str::to_owned), prop::sample::select(vec![1i64, -1])), 1..3),
    ];
    (filter, sort, 1usize..12)
        .prop_map(|(filter, sort, limit)| QuerySpec {
            filter,
            sort,
            limit,
        })
        .boxed()
}

fn exact_index() -> BoxedStrategy<Vec<(String, i8)>> {
    prop::collection::vec(
        (
            prop::sample::select(EXACT_PATHS.to_vec()),
            prop::sample::select(vec![1i8, -1]),
        ),
        1..4,
    )
    .prop_map(|fs| {
        let mut out: Vec<(String, i8)> = Vec::new();
        for (p, d) in fs {
            if !out.iter().any(|(q, _)| q == p) {
                out.push((p.to_string(), d));
            }
        }
        out
    })
    .boxed()
}

/// Whether the path meets an array on its way or at its end in `doc` (then an index
/// on it holds an array or via-array entry for the document).
fn meets_array(doc: &Value, path: &str) -> bool {
    let mut cur = doc;
    for s in segs(path) {
        match cur {
            Value::Array(_) => return true,
            Value::Object(m) => match m.get(s) {
                Some(v) => cur = v,
                None => return false,
            },
            _ => return false,
        }
    }
    cur.is_array()
}

/// One round of [`exact_plans_match_a_naive_evaluator`]: writes (with arrays or
/// not), whether to reopen after them, then queries.
type ExactRound = (Vec<(u64, Option<Value>)>, bool, Vec<QuerySpec>);

fn exact_round() -> BoxedStrategy<ExactRound> {
    any::<bool>()
        .prop_flat_map(|arrays| {
            (
                prop::collection::vec(
                    (
                        0u64..50,
                        prop::option::weighted(0.85, exact_document(arrays)),
                    ),
                    1..50,
                ),
                prop::bool::weighted(0.25),
                prop::collection::vec(exact_query(), 1..8),
            )
        })
        .boxed()
}

/// Filters of field conditions an index can decide by itself (plus some it cannot)
/// over scalars of mixed types, missing fields and `null`, single and compound
/// indexes over plain and dotted paths, built before the writes and online: every
/// query pages to what the model selects. A plan `explain` calls exact tested no
/// document (`examined` 0) and is on an index no live document gives an array entry;
/// rounds that write arrays (some deleted again, some surviving a reopen) come after
/// exact plans were used, and the runs as a whole use exact plans.
#[test]
fn exact_plans_match_a_naive_evaluator() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    });
    let exact_runs = std::cell::Cell::new(0u64);
    let strategy = (
        prop::collection::vec(exact_index(), 1..4),
        prop::collection::vec(exact_index(), 0..2),
        prop::collection::vec(exact_round(), 1..4),
    );
    let result = runner.run(&strategy, |(early, late, rounds)| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = Database::open(dir.path(), config()).expect("open");
        let mut model: BTreeMap<u64, Value> = BTreeMap::new();
        let mut defs: BTreeMap<String, Vec<(String, i8)>> = BTreeMap::new();
        for (i, fields) in early.iter().enumerate() {
            create_index(&db, format!("early{i}"), fields.clone());
            defs.insert(format!("early{i}"), fields.clone());
        }
        for (round, (writes, reopen, queries)) in rounds.iter().enumerate() {
            let ops: Vec<Op> = writes
                .iter()
                .map(|(id, d)| match d {
                    Some(d) => Op::Put(*id, d.clone()),
                    None => Op::Delete(*id),
                })
                .collect();
            apply(&db, &mut model, &ops);
            if round == 0 {
                for (i, fields) in late.iter().enumerate() {
                    create_index(&db, format!("late{i}"), fields.clone());
                    defs.insert(format!("late{i}"), fields.clone());
                }
            }
            if *reopen {
                db.close().expect("close");
                db = Database::open(dir.path(), config()).expect("reopen");
            }
            for q in queries {
                let text = String::from_utf8_lossy(&query_json(q, None)).into_owned();
                let got = all_pages(&db, q)?;
                let want = model_query(&model, q);
                let ids = |rows: &[(u64, Value)]| rows.iter().map(|r| r.0).collect::<Vec<_>>();
                prop_assert_eq!(ids(&got), ids(&want), "query {}", text);
                prop_assert_eq!(&got, &want, "query {}", text);
                let plan = or_page(&db, q, None)?.plan.expect("explain").to_json();
                if plan["exact"] == json!(true) {
                    exact_runs.set(exact_runs.get() + 1);
                    prop_assert_eq!(&plan["examined"], &json!(0), "{} {}", text, plan);
                    let name = plan["index"].as_str().unwrap_or_default();
                    let fields = defs.get(name).cloned().unwrap_or_default();
                    prop_assert!(
                        !model
                            .values()
                            .any(|d| fields.iter().any(|(p, _)| meets_array(d, p))),
                        "exact over an index with an array entry: {} {}",
                        text,
                        plan
                    );
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(exact_runs.get() > 0, "no query ran an exact plan");
}

/// A range and an equality on an index that never held an array are exact (no
/// document tested, only the page's rows read); once an array document is written
/// the same queries are not (and find it); after it is deleted still not (older
/// snapshots may see it); reopened, the index is rebuilt without it: exact again.
/// `$ne`, a field outside the index, `$or` and a null equality in front of a
/// compound index's second field are never exact.
#[test]
fn explain_reports_exact_plans_until_an_array_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(dir.path(), config()).expect("open");
    for id in 0..40u64 {
        let doc = json!({"n": id, "k": format!("k{}", id % 4), "o": id % 2});
        db.create("_default", id, doc.to_string().as_bytes())
            .expect("create");
    }
    create_index(&db, "by_n", vec![("n".into(), 1)]);
    create_index(&db, "by_k_n", vec![("k".into(), 1), ("n".into(), -1)]);
    let run = |db: &Database, filter: Value, sort: Value| {
        let (ids, plan) = explained(
            db,
            &json!({"filter": filter, "sort": sort, "limit": 5, "explain": true}),
        );
        assert_eq!(plan["kind"], json!("index"), "{plan}");
        (ids, plan["exact"].clone(), plan["examined"].clone())
    };
    let range = || json!({"n": {"$gte": 10, "$lt": 13}});
    let eq = || json!({"k": "k1"});
    let none = json!([]);
    assert_eq!(
        run(&db, range(), none.clone()),
        (vec![10, 11, 12], json!(true), json!(0))
    );
    // Sorted by the index's second field after the equality: still no document read
    // for the sort.
    assert_eq!(
        run(&db, eq(), json!([["n", -1]])),
        (vec![37, 33, 29, 25, 21], json!(true), json!(0))
    );
    assert_eq!(
        run(&db, eq(), none.clone()),
        (vec![1, 5, 9, 13, 17], json!(true), json!(0))
    );
    // Not exact: the filter says more than the bounds.
    let not_exact = |db: &Database, f: Value| {
        let (_, exact, examined) = run(db, f.clone(), json!([]));
        assert_eq!(exact, json!(false), "{f}");
        assert_ne!(examined, json!(0), "{f}");
    };
    not_exact(&db, json!({"n": {"$gte": 10, "$lt": 13, "$ne": 11}}));
    not_exact(&db, json!({"n": {"$gte": 10, "$lt": 13}, "o": 1}));
    not_exact(&db, json!({"k": "k1", "$or": [{"o": 1}, {"o": 0}]}));
    not_exact(&db, json!({"k": {"$in": ["k1", null]}, "n": {"$lt": 20}}));
    // A sort on a field not in the index: the rows are read for their sort key.
    let (ids, exact, _) = run(&db, eq(), json!([["o", 1], ["n", 1]]));
    assert_eq!((ids, exact), (vec![1, 5, 9, 13, 17], json!(false)));

    db.create("_default", 100, br#"{"n":[11,50],"k":["k1"]}"#)
        .expect("create");
    assert_eq!(
        run(&db, range(), none.clone()),
        (vec![10, 11, 12, 100], json!(false), json!(4))
    );
    assert_eq!(
        run(&db, eq(), none.clone()),
        (vec![1, 5, 9, 13, 17], json!(false), json!(11))
    );
    db.delete("_default", 100).expect("delete");
    assert_eq!(run(&db, range(), none.clone()).1, json!(false));
    db.close().expect("close");
    db = Database::open(dir.path(), config()).expect("reopen");
    assert_eq!(
        run(&db, range(), none),
        (vec![10, 11, 12], json!(true), json!(0))
    );
}
