//! The `[limits]` of one database: nesting depth on every write path, patch size and
//! cost, collections per database, and memory accounting that counts the index.

#![allow(clippy::unwrap_used)]

use docdb_core::config::LimitsConfig;
use docdb_core::{Config, Database, Error};

/// The stack of a server worker (Rust's default for spawned threads): a patch at the
/// largest configurable depth needs about 700 KiB of it (measured: fails at 512 KiB,
/// passes at 1 MiB).
const STACK: usize = 2 << 20;

fn nest(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

/// An object nesting `levels` levels: `{"a":{"a":...1}}`.
fn nest_obj(levels: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

fn too_deep(r: Result<impl std::fmt::Debug, Error>, max: usize) {
    match r {
        Err(e @ Error::TooDeep { .. }) => assert_eq!(
            e.to_string(),
            format!("document nests deeper than {max} levels (limits.max_depth)")
        ),
        other => panic!("expected TooDeep, got {other:?}"),
    }
}

#[test]
fn every_write_path_refuses_documents_deeper_than_max_depth() {
    let d = tempfile::tempdir().unwrap();
    let db = Database::open(d.path(), Config::default()).unwrap();
    let (at, over) = (nest_obj(128), nest_obj(129));
    // At the limit: accepted everywhere, read back, and patchable.
    db.create("", 1, at.as_bytes()).unwrap();
    db.update("", 1, at.as_bytes()).unwrap();
    assert_eq!(db.read("", 1).unwrap(), at.as_bytes());
    let new = db
        .patch("", 1, br#"[{"op":"set","path":"/b","value":[1]}]"#)
        .unwrap();
    assert!(new.ends_with(br#","b":[1]}"#));
    // Over it: refused, nothing changes.
    too_deep(db.create("", 2, over.as_bytes()), 128);
    too_deep(db.update("", 1, over.as_bytes()), 128);
    too_deep(db.create("", 3, nest(1_000_000).as_bytes()), 128);
    let deeper = format!(r#"[{{"op":"set","path":"/a","value":{}}}]"#, nest_obj(128));
    too_deep(db.patch("", 1, deeper.as_bytes()), 128);
    let mut b = db.batch();
    too_deep(b.create("", 2, over.as_bytes()), 128);
    too_deep(b.update("", 1, over.as_bytes()), 128);
    b.finish().unwrap();
    let mut tx = db.begin();
    too_deep(tx.create("", 2, over.as_bytes()), 128);
    too_deep(tx.update("", 1, over.as_bytes()), 128);
    too_deep(tx.patch("", 1, deeper.as_bytes()), 128);
    tx.commit().unwrap();
    assert!(matches!(db.read("", 2), Err(Error::NotFound)));
    assert!(db.read("", 1).unwrap().ends_with(br#","b":[1]}"#));
    assert_eq!(db.stats().live_docs, 1);
}

/// A document stored under a larger limit (or before there was one) is refused by
/// name when patched, not reported as corrupt.
#[test]
fn patching_a_document_stored_under_a_larger_limit_names_the_limit() {
    let d = tempfile::tempdir().unwrap();
    let mut big = Config::default();
    big.limits.max_depth = 1_000;
    let db = Database::open(d.path(), big.clone()).unwrap();
    db.create("", 1, nest_obj(1_000).as_bytes()).unwrap();
    // At the largest configurable depth a patch works, even on a thread with the
    // default 2 MiB stack of the server's workers.
    let path = format!("/{}", vec!["a"; 1_000].join("/"));
    let ops = format!(r#"[{{"op":"set","path":"{path}","value":2}}]"#);
    let db = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let new = db.patch("", 1, ops.as_bytes()).unwrap();
            assert_eq!(new, nest_obj(1_000).replace("1}", "2}").as_bytes());
            db
        })
        .unwrap()
        .join()
        .unwrap();
    db.close().unwrap();
    let db = Database::open(d.path(), Config::default()).unwrap();
    too_deep(
        db.patch("", 1, br#"[{"op":"set","path":"/b","value":1}]"#),
        128,
    );
}

#[test]
fn patches_longer_than_max_patch_ops_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let db = Database::open(d.path(), Config::default()).unwrap();
    db.create("", 1, br#"{"arr":[]}"#).unwrap();
    let ops = |n: usize| {
        let one = r#"{"op":"insert","path":"/arr/0","value":0}"#;
        format!("[{}]", vec![one; n].join(","))
    };
    match db.patch("", 1, ops(1001).as_bytes()) {
        Err(e @ Error::TooManyPatchOps { max: 1000 }) => assert_eq!(
            e.to_string(),
            "patch has more than 1000 operations (limits.max_patch_ops)"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(db.read("", 1).unwrap(), br#"{"arr":[]}"#);
    let new = db.patch("", 1, ops(1000).as_bytes()).unwrap();
    assert_eq!(new.len(), r#"{"arr":[]}"#.len() + 2 * 1000 - 1);
}

/// The worst ops the default limit allows, on a ~2 MiB document: quick, because a
/// patch costs the document's size times its ops, never more.
#[test]
fn worst_case_patches_within_the_limit_are_fast() {
    let d = tempfile::tempdir().unwrap();
    let db = Database::open(d.path(), Config::default()).unwrap();
    let items = vec!["\"0123456789abcdef\""; 100_000].join(",");
    let doc = format!(r#"{{"arr":[{items}],"o":{{"x":"{}"}}}}"#, "y".repeat(4096));
    db.create("", 1, doc.as_bytes()).unwrap();
    let inserts = vec![r#"{"op":"insert","path":"/arr/0","value":"z"}"#; 1000].join(",");
    let copies: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"op":"copy","from":"/o","path":"/c{}"}}"#, i % 50))
        .collect();
    for ops in [inserts, copies.join(",")] {
        let started = std::time::Instant::now();
        db.patch("", 1, format!("[{ops}]").as_bytes()).unwrap();
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    }
}

#[test]
fn collections_per_database_are_capped_default_included() {
    let d = tempfile::tempdir().unwrap();
    let cfg = Config {
        limits: LimitsConfig {
            max_collections: 3,
            ..LimitsConfig::default()
        },
        ..Config::default()
    };
    let db = Database::open(d.path(), cfg.clone()).unwrap();
    db.create_collection("a").unwrap();
    db.create_collection("b").unwrap();
    match db.create_collection("c") {
        Err(e @ Error::TooManyCollections { max: 3 }) => assert_eq!(
            e.to_string(),
            "database already has 3 collections, the most allowed (limits.max_collections)"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(db.list_collections(), ["_default", "a", "b"]);
    db.delete_collection("b").unwrap();
    db.create_collection("c").unwrap();
    db.close().unwrap();
    let db = Database::open(d.path(), cfg).unwrap();
    assert!(matches!(
        db.create_collection("d"),
        Err(Error::TooManyCollections { .. })
    ));
}

/// One-byte documents cost their index entry too: 1 MiB holds about 13,000 of them
/// (80 B of index + 1 B each), not a million.
#[test]
fn tiny_documents_count_their_index_entry() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.memory.per_db_limit_mb = 1;
    let db = Database::open(d.path(), cfg.clone()).unwrap();
    let mut stored = 0u64;
    let mut b = db.batch();
    for id in 0..1_000_000u64 {
        match b.create("", id, b"1") {
            Ok(()) => stored += 1,
            Err(Error::MemoryLimit) => break,
            Err(e) => panic!("{e}"),
        }
    }
    b.finish().unwrap();
    assert!((10_000..16_000).contains(&stored), "{stored}");
    assert!(matches!(db.create("", 0, b"2"), Err(Error::AlreadyExists)));
    assert!(matches!(db.read("", stored), Err(Error::NotFound)));
    // Deleting frees the entry's bytes too, and a reopen counts them the same way.
    db.delete("", 0).unwrap();
    db.create("", stored, b"1").unwrap();
    db.close().unwrap();
    let db = Database::open(d.path(), cfg).unwrap();
    assert!(matches!(
        db.create("", stored + 1, b"1"),
        Err(Error::MemoryLimit)
    ));
}
