//! Secondary indexes in the engine (SPEC §11, issue 14 items 2 and 5): an index always
//! agrees with the documents — across every write kind, reopen, a build racing
//! writers and a power cut — unique indexes refuse duplicates changing nothing, and
//! index memory counts towards the database's limit.
//!
//! The oracle ([`check`]) recomputes every key from a full scan of the collection and
//! compares it with an index scan (ids, keys and order) and with `verify()`.

#![allow(clippy::unwrap_used)]

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use docdb_core::order::cmp;
use docdb_core::{Config, Database, Direction, Error, IndexDef, IndexRange, KeyPart, OpenOptions};
use serde_json::{json, Value};

fn def(name: &str, fields: &[(&str, i8)], unique: bool) -> IndexDef {
    IndexDef {
        name: name.into(),
        fields: fields.iter().map(|(p, d)| (p.to_string(), *d)).collect(),
        unique,
    }
}

/// The key part at a path, by the rule SPEC §11 states: object members only; no
/// value is `ViaArray` when an array stands on the way, else `Missing`.
fn at(doc: &Value, path: &str) -> KeyPart {
    let mut v = doc;
    for seg in path.split('.') {
        if v.is_array() {
            return KeyPart::ViaArray;
        }
        match v.as_object().and_then(|m| m.get(seg)) {
            Some(x) => v = x,
            None => return KeyPart::Missing,
        }
    }
    KeyPart::Value(v.clone())
}

/// The order of key parts: missing, via-array, then values.
fn cmp_part(a: &KeyPart, b: &KeyPart) -> std::cmp::Ordering {
    let rank = |p: &KeyPart| match p {
        KeyPart::Missing => 0,
        KeyPart::ViaArray => 1,
        KeyPart::Value(_) => 2,
    };
    match (a, b) {
        (KeyPart::Value(x), KeyPart::Value(y)) => cmp(x, y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Every document's key under `d`, sorted the way the index must be.
fn expected(db: &Database, coll: &str, d: &IndexDef) -> Vec<(Vec<KeyPart>, u64)> {
    let mut rows = Vec::new();
    let mut after = 0;
    let mut first = true;
    loop {
        let page = db.scan(coll, after, 1000).unwrap();
        for (id, bytes) in &page {
            if !first && *id == after {
                continue;
            }
            let doc: Value = serde_json::from_slice(bytes).unwrap();
            let key: Vec<KeyPart> = d.fields.iter().map(|(p, _)| at(&doc, p)).collect();
            rows.push((key, *id));
        }
        first = false;
        match page.last() {
            Some((id, _)) if page.len() == 1000 => after = *id,
            _ => break,
        }
    }
    rows.sort_by(|a, b| {
        for (i, (_, dir)) in d.fields.iter().enumerate() {
            let o = cmp_part(&a.0[i], &b.0[i]);
            let o = if *dir < 0 { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        a.1.cmp(&b.1)
    });
    rows
}

/// The index agrees with the documents: same entries in the same order, counted
/// right by `list_indexes`, and `verify()` finds nothing.
fn check(db: &Database, coll: &str, d: &IndexDef) {
    let want = expected(db, coll, d);
    let have: Vec<(Vec<KeyPart>, u64)> = db
        .index_scan(coll, &d.name, IndexRange::all(), Direction::Forward, None)
        .unwrap()
        .map(|h| (h.key, h.id))
        .collect();
    assert_eq!(have.len(), want.len(), "index {} entries", d.name);
    for (h, w) in have.iter().zip(&want) {
        assert_eq!(h.1, w.1, "index {} order", d.name);
        assert!(
            h.0.iter().zip(&w.0).all(|(a, b)| cmp_part(a, b).is_eq()),
            "index {} key of {}: {:?} vs {:?}",
            d.name,
            h.1,
            h.0,
            w.0
        );
    }
    let info = db.list_indexes(coll).unwrap();
    let info = info.iter().find(|i| i.name == d.name).expect("listed");
    assert_eq!(info.entries, want.len() as u64);
    let report = db.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn ids(db: &Database, coll: &str, name: &str, range: IndexRange, dir: Direction) -> Vec<u64> {
    db.index_scan(coll, name, range, dir, None)
        .unwrap()
        .map(|h| h.id)
        .collect()
}

#[test]
fn indexes_follow_every_write_kind_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    db.create_collection("users").unwrap();
    for i in 0..50u64 {
        let doc = json!({"age": i % 7, "name": format!("u{i}"), "addr": {"city": if i % 2 == 0 { "x" } else { "y" }}});
        db.create("users", i, doc.to_string().as_bytes()).unwrap();
    }
    let by_age = def("by_age", &[("age", 1), ("name", -1)], false);
    let by_city = def("by_city", &[("addr.city", 1)], false);
    db.create_index("users", by_age.clone()).unwrap();
    db.create_index("users", by_city.clone()).unwrap();
    check(&db, "users", &by_age);
    check(&db, "users", &by_city);

    db.create("users", 100, br#"{"age": 3, "name": "new"}"#)
        .unwrap();
    db.update("users", 1, br#"{"age": "old", "tags": [1,2]}"#)
        .unwrap();
    db.patch(
        "users",
        2,
        br#"[{"op":"replace","path":"/age","value":99}]"#,
    )
    .unwrap();
    db.delete("users", 3).unwrap();
    let mut tx = db.begin();
    tx.update("users", 4, br#"{"age": 3, "addr": {"city": "z"}}"#)
        .unwrap();
    tx.delete("users", 5).unwrap();
    tx.create("users", 101, br#"{"name": "no age"}"#).unwrap();
    tx.commit().unwrap();
    let mut b = db.batch();
    b.create("users", 102, br#"{"age": [1, 2]}"#).unwrap();
    b.update("users", 6, br#"{"age": null}"#).unwrap();
    b.delete("users", 7).unwrap();
    b.finish().unwrap();
    // A document that goes back to an earlier key.
    db.update("users", 8, br#"{"age": 1000}"#).unwrap();
    db.update("users", 8, br#"{"age": 1, "name": "u8"}"#)
        .unwrap();
    check(&db, "users", &by_age);
    check(&db, "users", &by_city);
    let info = db.list_indexes("users").unwrap();
    assert_eq!(
        info.iter().map(|i| i.array_entries).collect::<Vec<_>>(),
        vec![1, 0]
    );

    db.close().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    let names: Vec<String> = db
        .list_indexes("users")
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["by_age", "by_city"]);
    check(&db, "users", &by_age);
    check(&db, "users", &by_city);
    db.drop_index("users", "by_city").unwrap();
    assert!(matches!(
        db.index_scan(
            "users",
            "by_city",
            IndexRange::all(),
            Direction::Forward,
            None
        ),
        Err(Error::IndexNotFound { .. })
    ));
    // Reopen without a clean close: the drop is durable, the rest rebuilt.
    drop(db);
    let db = Database::open(dir.path(), Config::default()).unwrap();
    assert_eq!(db.list_indexes("users").unwrap().len(), 1);
    check(&db, "users", &by_age);
}

#[test]
fn ranges_prefixes_directions_cursors_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    for i in 1..=20u64 {
        let doc = if i == 20 {
            json!({"b": 0})
        } else {
            json!({"a": i % 4, "b": i})
        };
        db.create("", i, doc.to_string().as_bytes()).unwrap();
    }
    db.create_index("", def("ab", &[("a", 1), ("b", -1)], false))
        .unwrap();
    let fwd = Direction::Forward;
    // Missing sorts first.
    assert_eq!(ids(&db, "", "ab", IndexRange::all(), fwd)[0], 20);
    // Prefix a == 1, b descending.
    assert_eq!(
        ids(
            &db,
            "",
            "ab",
            IndexRange::prefix(vec![KeyPart::Value(json!(1))]),
            fwd
        ),
        vec![17, 13, 9, 5, 1]
    );
    assert_eq!(
        ids(
            &db,
            "",
            "ab",
            IndexRange::prefix(vec![KeyPart::Value(json!(1))]),
            Direction::Backward
        ),
        vec![1, 5, 9, 13, 17]
    );
    // 1 <= a < 3 with a full-key bound inside: (a=2, b<=10) starts at b=10 (desc).
    let r = IndexRange {
        lower: Bound::Included(vec![KeyPart::Value(json!(2)), KeyPart::Value(json!(10))]),
        upper: Bound::Excluded(vec![KeyPart::Value(json!(3))]),
        after: None,
    };
    assert_eq!(ids(&db, "", "ab", r, fwd), vec![10, 6, 2]);
    // Excluded prefix lower bound skips every a == 2.
    let r = IndexRange {
        lower: Bound::Excluded(vec![KeyPart::Value(json!(2))]),
        upper: Bound::Unbounded,
        after: None,
    };
    assert_eq!(ids(&db, "", "ab", r, fwd), vec![19, 15, 11, 7, 3]);
    // An empty or inverted range is empty, not a panic.
    let r = IndexRange {
        lower: Bound::Excluded(vec![KeyPart::Value(json!(3))]),
        upper: Bound::Excluded(vec![KeyPart::Value(json!(3))]),
        after: None,
    };
    assert!(ids(&db, "", "ab", r, fwd).is_empty());
    let r = IndexRange {
        lower: Bound::Included(vec![KeyPart::Value(json!(3))]),
        upper: Bound::Included(vec![KeyPart::Value(json!(1))]),
        after: None,
    };
    assert!(ids(&db, "", "ab", r, fwd).is_empty());
    // Resume after a hit, both directions.
    let mut all = db
        .index_scan("", "ab", IndexRange::all(), fwd, None)
        .unwrap();
    let third = all.nth(2).unwrap();
    let mut r = IndexRange::all();
    r.after = Some((third.key.clone(), third.id));
    let rest = ids(&db, "", "ab", r.clone(), fwd);
    assert_eq!(rest.len(), 20 - 3);
    let before = ids(&db, "", "ab", r, Direction::Backward);
    assert_eq!(before.len(), 2);
    // A bound with too many parts is a clear error.
    let r = IndexRange::prefix(vec![KeyPart::Missing, KeyPart::Missing, KeyPart::Missing]);
    assert!(matches!(
        db.index_scan("", "ab", r, fwd, None),
        Err(Error::InvalidIndex { .. })
    ));

    // A scan sees the index as of its snapshot while writes go on.
    let tx = db.begin();
    let scan = db
        .index_scan(
            "",
            "ab",
            IndexRange::prefix(vec![KeyPart::Value(json!(1))]),
            fwd,
            None,
        )
        .unwrap();
    for i in 1..=20u64 {
        db.update("", i, br#"{"a": 1, "b": 1000}"#).unwrap();
    }
    db.checkpoint().unwrap();
    let old: Vec<u64> = scan.map(|h| h.id).collect();
    assert_eq!(old, vec![17, 13, 9, 5, 1]);
    let at_tx: Vec<u64> = db
        .index_scan(
            "",
            "ab",
            IndexRange::prefix(vec![KeyPart::Value(json!(1))]),
            fwd,
            Some(tx.snapshot()),
        )
        .unwrap()
        .map(|h| h.id)
        .collect();
    assert_eq!(at_tx, vec![17, 13, 9, 5, 1]);
    drop(tx);
    assert_eq!(
        ids(
            &db,
            "",
            "ab",
            IndexRange::prefix(vec![KeyPart::Value(json!(1))]),
            fwd
        )
        .len(),
        20
    );
}

fn is_dup(r: docdb_core::Result<impl Sized>, name: &str) -> bool {
    match r {
        Err(e @ Error::DuplicateKey { .. }) => {
            assert_eq!(
                e.to_string(),
                format!("duplicate key for unique index {name}")
            );
            true
        }
        _ => false,
    }
}

#[test]
fn unique_indexes_refuse_duplicates_from_every_write_kind_changing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    db.create("", 1, br#"{"email": "a"}"#).unwrap();
    db.create("", 2, br#"{"email": "b"}"#).unwrap();
    let email = def("email", &[("email", 1)], true);
    db.create_index("", email.clone()).unwrap();
    let before = db.stats().memory_used;

    assert!(is_dup(db.create("", 3, br#"{"email": "a"}"#), "email"));
    assert!(is_dup(db.update("", 2, br#"{"email": "a"}"#), "email"));
    assert!(is_dup(
        db.patch("", 2, br#"[{"op":"replace","path":"/email","value":"a"}]"#),
        "email"
    ));
    // Within one transaction: two new documents with one key.
    let mut tx = db.begin();
    tx.create("", 4, br#"{"email": "c"}"#).unwrap();
    tx.create("", 5, br#"{"email": "c"}"#).unwrap();
    assert!(is_dup(tx.commit(), "email"));
    // Within one batch: the second write meets the first, staged but not durable.
    let mut b = db.batch();
    b.create("", 6, br#"{"email": "d"}"#).unwrap();
    assert!(is_dup(b.create("", 7, br#"{"email": "d"}"#), "email"));
    b.finish().unwrap();
    assert_eq!(db.read("", 2).unwrap(), br#"{"email": "b"}"#);
    for id in [3, 4, 5, 7] {
        assert!(matches!(db.read("", id), Err(Error::NotFound)));
    }
    assert!(db.stats().memory_used > before, "id 6 added");

    // A swap inside one transaction is no duplicate; neither are numbers equal in
    // value refused less (1 == 1.0), nor documents without the field.
    let mut tx = db.begin();
    tx.update("", 1, br#"{"email": "b"}"#).unwrap();
    tx.update("", 2, br#"{"email": "a"}"#).unwrap();
    tx.commit().unwrap();
    db.create("", 8, br#"{"email": 1}"#).unwrap();
    assert!(is_dup(db.create("", 9, br#"{"email": 1.0}"#), "email"));
    db.create("", 10, br#"{"other": 1}"#).unwrap();
    db.create("", 11, br#"{"other": 2}"#).unwrap();
    // Deleting frees the key.
    db.delete("", 8).unwrap();
    db.create("", 9, br#"{"email": 1.0}"#).unwrap();
    check(&db, "", &email);
}

#[test]
fn a_unique_build_over_duplicates_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    for i in 0..100u64 {
        db.create("", i, json!({"k": i % 60}).to_string().as_bytes())
            .unwrap();
    }
    let before = db.stats().memory_used;
    assert!(is_dup(
        db.create_index("", def("k", &[("k", 1)], true)),
        "k"
    ));
    assert!(db.list_indexes("").unwrap().is_empty());
    assert_eq!(db.stats().memory_used, before);
    // Writes go on unhindered, and the name is free.
    db.create("", 1000, br#"{"k": 1}"#).unwrap();
    db.create_index("", def("k", &[("k", 1)], false)).unwrap();
    assert!(matches!(
        db.create_index("", def("k", &[("k", -1)], false)),
        Err(Error::IndexExists { .. })
    ));
    db.close().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    let info = db.list_indexes("").unwrap();
    assert_eq!((info.len(), info[0].unique), (1, false));
}

#[test]
fn a_build_racing_writers_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), Config::default()).unwrap());
    let mut b = db.batch();
    for i in 0..20_000u64 {
        b.create("", i, json!({"v": i}).to_string().as_bytes())
            .unwrap();
    }
    b.finish().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writers: Vec<_> = (0..3u64)
        .map(|t| {
            let (db, stop, done) = (db.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = (n * 7919 + t * 13) % 20_000;
                    let r = match n % 3 {
                        0 => db.update("", id, json!({"v": n, "t": t}).to_string().as_bytes()),
                        1 => db.delete("", id),
                        _ => db.create("", id, json!({"v": id}).to_string().as_bytes()),
                    };
                    match r {
                        Ok(()) | Err(Error::NotFound) | Err(Error::AlreadyExists) => {}
                        Err(e) => panic!("{e}"),
                    }
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                n
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let d = def("v", &[("v", 1)], false);
    let at_start = done.load(Ordering::Relaxed);
    db.create_index("", d.clone()).unwrap();
    let during = done.load(Ordering::Relaxed) - at_start;
    assert!(
        during > 10,
        "writes acknowledged during the build: {during}"
    );
    std::thread::sleep(std::time::Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(
        writes > 100,
        "writers ran during the build ({writes} writes)"
    );
    check(&db, "", &d);
}

#[test]
fn after_a_power_cut_every_index_agrees_with_the_documents() {
    use docdb_core::storage::testing::PowerLossStorage;
    for seed in 0..6u64 {
        let dir = tempfile::tempdir().unwrap();
        let disk = PowerLossStorage::new();
        let opts = |d: &Arc<PowerLossStorage>| OpenOptions {
            storage: Some(d.clone()),
            ..OpenOptions::default()
        };
        let db = Database::open_with(dir.path(), Config::default(), opts(&disk)).unwrap();
        for i in 0..200u64 {
            db.create("", i, json!({"a": i % 10, "u": i}).to_string().as_bytes())
                .unwrap();
        }
        db.create_index("", def("a", &[("a", 1)], false)).unwrap();
        db.create_index("", def("u", &[("u", -1)], true)).unwrap();
        for i in 0..300u64 {
            let id = (i * 31 + seed) % 250;
            let _ = match i % 4 {
                0 => db.delete("", id),
                1 => db.update("", id, json!({"a": i}).to_string().as_bytes()),
                _ => db.create(
                    "",
                    id,
                    json!({"a": "s", "u": 1000 + i}).to_string().as_bytes(),
                ),
            };
            if i == 150 && seed % 2 == 0 {
                db.checkpoint().unwrap();
            }
        }
        disk.cut(seed).unwrap();
        drop(db);
        let disk = disk.restart();
        let db = Database::open_with(dir.path(), Config::default(), opts(&disk)).unwrap();
        assert_eq!(db.list_indexes("").unwrap().len(), 2, "seed {seed}");
        check(&db, "", &def("a", &[("a", 1)], false));
        check(&db, "", &def("u", &[("u", -1)], true));
    }
}

#[test]
fn index_memory_counts_towards_the_database_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.memory.per_db_limit_mb = 1;
    let db = Database::open(dir.path(), config.clone()).unwrap();
    let big = "x".repeat(2000);
    for i in 0..200u64 {
        db.create(
            "",
            i,
            json!({"n": i, "s": format!("{i}{big}")})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    }
    let base = db.stats().memory_used;
    db.create_index("", def("n", &[("n", 1)], false)).unwrap();
    let with_n = db.stats().memory_used;
    let info = &db.list_indexes("").unwrap()[0];
    assert_eq!(with_n - base, info.memory_bytes);
    assert!(info.memory_bytes >= 200 * 160, "{}", info.memory_bytes);
    // An index of the 2 KB strings does not fit in what is left: refused, nothing kept.
    assert!(matches!(
        db.create_index("", def("s", &[("s", 1)], false)),
        Err(Error::MemoryLimit)
    ));
    assert_eq!(db.stats().memory_used, with_n);
    // Writes account their index entries.
    db.create("", 500, br#"{"n": 500}"#).unwrap();
    let grown = db.stats().memory_used - with_n;
    assert!(grown > 160, "{grown}");
    let before_drop = db.stats().memory_used;
    let n_bytes = db.list_indexes("").unwrap()[0].memory_bytes;
    db.drop_index("", "n").unwrap();
    assert_eq!(db.stats().memory_used, before_drop - n_bytes);
    // Reopen counts the rebuilt index exactly as the writes did.
    db.create_index("", def("n", &[("n", -1)], false)).unwrap();
    db.update("", 7, br#"{"n": "seven"}"#).unwrap();
    db.delete("", 8).unwrap();
    let used = db.stats().memory_used;
    db.close().unwrap();
    let db = Database::open(dir.path(), config).unwrap();
    assert_eq!(db.stats().memory_used, used);
}
