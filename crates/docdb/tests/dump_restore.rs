#![allow(clippy::unwrap_used)]
//! `docdb dump` / `docdb restore` (SPEC §10) through the real binary, on stopped
//! servers' data dirs. The data: two databases, several collections (one of them
//! empty, one of 1500 documents so the dump pages through scans), ids 0 and
//! u64::MAX, every JSON kind, unicode, escapes and insignificant whitespace inside a
//! document.
//! - directory form: the dump is exactly the expected JSON Lines; restoring it into a
//!   fresh data dir gives identical documents (every one read back through a server on
//!   the restored dir, byte for byte) and collections, and dumping that gives the same
//!   files;
//! - restore refuses to replace an existing document (exit 1, nothing changed — not
//!   even a new document of the same dump added) unless `--force`, which then applies
//!   the whole dump;
//! - stream form: `dump` to stdout, `restore` from stdin round-trips too;
//! - a refused restore changes no other database either;
//! - a document stored with newlines (pretty-printed JSON) round-trips (as the same value).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{run_docdb, run_docdb_with_stdin, unique_doc, Client, Server};

/// db → collection → id → document JSON.
type Model = BTreeMap<String, BTreeMap<String, BTreeMap<u64, String>>>;

fn model() -> Model {
    let mut m = Model::new();
    let shop = m.entry("shop".into()).or_default();
    let def = shop.entry("_default".into()).or_default();
    def.insert(0, unique_doc("shop-zero", 0, 100));
    def.insert(1, unique_doc("shop", 1, 100));
    def.insert(2, r#"{ "spaced" : [1, 2 ,3] , "id": 2 }"#.into());
    def.insert(u64::MAX, unique_doc("shop-max", u64::MAX, 100));
    let orders = shop.entry("orders".into()).or_default();
    for id in 0..1500 {
        orders.insert(id, unique_doc("order", id, 110));
    }
    let misc = shop.entry("misc".into()).or_default();
    misc.insert(1, r#"[1,"two",{"three":3}]"#.into());
    misc.insert(2, r#""héllo \"wörld\" \u2603 ✓ \\ / \n""#.into());
    misc.insert(3, "-12.5e3".into());
    misc.insert(4, "true".into());
    misc.insert(5, "null".into());
    misc.insert(6, r#"{"a":{"b":{"c":[{"d":null}]}},"e":""}"#.into());
    misc.insert(7, "{}".into());
    shop.entry("empty".into()).or_default();
    let crm = m.entry("crm".into()).or_default();
    crm.entry("_default".into()).or_default(); // always exists, here empty
    let people = crm.entry("people".into()).or_default();
    for id in 0..6 {
        people.insert(id, unique_doc("person", id, 100));
    }
    m
}

/// Writes `m` through a server (collections created as needed).
fn load(c: &mut Client, m: &Model) {
    for (db, colls) in m {
        let id = c.open_db(db);
        for (coll, docs) in colls {
            if coll != "_default" {
                c.create_collection(id, coll);
            }
            let docs: Vec<(u64, String)> = docs.iter().map(|(k, v)| (*k, v.clone())).collect();
            c.write_many(id, coll, &docs, false);
        }
    }
}

/// Reads every document of `m` back through a running server and compares bytes; also
/// checks collections and that no extra document exists.
fn assert_served(s: &Server, m: &Model) {
    let mut c = s.connect();
    for (db, colls) in m {
        let id = c.open_db(db);
        let mut listed = c.list_collections(id);
        listed.sort();
        let mut want: Vec<String> = colls.keys().cloned().collect();
        want.sort();
        assert_eq!(listed, want, "collections of {db}");
        for (coll, docs) in colls {
            let ids: Vec<u64> = docs.keys().copied().collect();
            for (doc_id, st, bytes) in c.read_many(id, coll, &ids) {
                assert_eq!(
                    (st, String::from_utf8(bytes).unwrap()),
                    (0, docs[&doc_id].clone()),
                    "{db}/{coll}/{doc_id}"
                );
            }
            let scanned: Vec<u64> = c.scan_all(id, coll).into_iter().map(|r| r.0).collect();
            assert_eq!(scanned, ids, "ids of {db}/{coll}");
        }
    }
}

/// The directory form `dump --out` should write for `m`.
fn render_dir(m: &Model) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for (db, colls) in m {
        for (coll, docs) in colls {
            let text: String = docs
                .iter()
                .map(|(id, doc)| format!("{{\"id\":{id},\"doc\":{doc}}}\n"))
                .collect();
            files.insert(format!("{db}/{coll}.jsonl"), text);
        }
    }
    files
}

/// Every file under `dir`, by relative path.
fn read_dir_files(dir: &Path) -> BTreeMap<String, String> {
    common::snapshot_tree(dir)
        .into_iter()
        .map(|(p, (bytes, _))| {
            (
                p.strip_prefix(dir).unwrap().to_str().unwrap().to_string(),
                String::from_utf8(bytes).unwrap(),
            )
        })
        .collect()
}

/// Compares two sets of dump files, reporting the first difference compactly.
fn assert_same_files(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>, what: &str) {
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: file names");
    for (name, text) in want {
        let got = &got[name];
        if got != text {
            let line = got
                .lines()
                .zip(text.lines())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("got  {a}\nwant {b}"))
                .unwrap_or_else(|| {
                    format!("{} vs {} lines", got.lines().count(), text.lines().count())
                });
            panic!("{what}: {name} differs:\n{line}");
        }
    }
}

fn write_dir_files(dir: &Path, files: &BTreeMap<String, String>) {
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn tool(args: &[&str]) -> (i32, String, String) {
    let out = run_docdb(args);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn tool_ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = tool(args);
    assert_eq!(code, 0, "docdb {args:?}: {stderr}");
    stdout
}

fn dump_dir(data: &Path, out: &Path) -> BTreeMap<String, String> {
    tool_ok(&[
        "dump",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    read_dir_files(out)
}

/// A stopped server whose data dir holds `m`.
fn source(m: &Model) -> Server {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    load(&mut c, m);
    drop(c);
    s.stop();
    s
}

#[test]
fn dump_dir_restore_round_trip_and_refusal() {
    let m = model();
    let src = source(&m);
    let work = tempfile::tempdir().unwrap();
    let out1 = work.path().join("dump1");
    let dumped = dump_dir(&src.data_dir(), &out1);
    assert_same_files(&dumped, &render_dir(&m), "the dump is exactly the data");

    // Restore into a fresh data dir and serve it.
    let mut dst = Server::unstarted(&[]);
    std::fs::create_dir_all(dst.data_dir()).unwrap();
    let dst_data = dst.data_dir();
    tool_ok(&[
        "restore",
        "--data-dir",
        dst_data.to_str().unwrap(),
        "--from",
        out1.to_str().unwrap(),
    ]);
    dst.spawn();
    assert_served(&dst, &m);
    dst.stop();
    assert_same_files(
        &dump_dir(&dst_data, &work.path().join("dump2")),
        &dumped,
        "dump of the restored dir",
    );

    // A dump that changes one existing document and adds one: refused without
    // --force, and nothing of it is applied.
    let mut changed = m.clone();
    let def = changed
        .get_mut("shop")
        .unwrap()
        .get_mut("_default")
        .unwrap();
    def.insert(1, unique_doc("replaced", 1, 100));
    def.insert(99, unique_doc("added", 99, 100));
    let out3 = work.path().join("dump3");
    write_dir_files(&out3, &render_dir(&changed));
    let (code, _, stderr) = tool(&[
        "restore",
        "--data-dir",
        dst_data.to_str().unwrap(),
        "--from",
        out3.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "restore over existing documents must be refused");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_same_files(
        &dump_dir(&dst_data, &work.path().join("dump4")),
        &dumped,
        "a refused restore changes nothing",
    );

    // --force applies it all.
    tool_ok(&[
        "restore",
        "--data-dir",
        dst_data.to_str().unwrap(),
        "--from",
        out3.to_str().unwrap(),
        "--force",
    ]);
    assert_same_files(
        &dump_dir(&dst_data, &work.path().join("dump5")),
        &render_dir(&changed),
        "after restore --force",
    );
    dst.spawn();
    assert_served(&dst, &changed);
}

#[test]
fn dump_stream_restore_stdin_round_trip() {
    let m = model();
    let src = source(&m);
    let src_data = src.data_dir();
    let stream = tool_ok(&["dump", "--data-dir", src_data.to_str().unwrap()]);
    // One JSON object per line, naming db and collection.
    let mut lines: Vec<String> = stream.lines().map(str::to_string).collect();
    let total: usize = m.values().flat_map(|c| c.values()).map(BTreeMap::len).sum();
    assert_eq!(lines.len(), total);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let (db, coll, id) = (
            v["db"].as_str().unwrap(),
            v["collection"].as_str().unwrap(),
            v["id"].as_u64().unwrap(),
        );
        let want: serde_json::Value = serde_json::from_str(&m[db][coll][&id]).unwrap();
        assert_eq!(v["doc"], want, "{l}");
    }

    let mut dst = Server::unstarted(&[]);
    let dst_data = dst.data_dir();
    let out = run_docdb_with_stdin(
        &["restore", "--data-dir", dst_data.to_str().unwrap()],
        Some(stream.as_bytes()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The stream form has no line for an empty collection: it is not recreated.
    let mut m_docs = m.clone();
    m_docs.get_mut("shop").unwrap().remove("empty");
    dst.spawn();
    assert_served(&dst, &m_docs);
    dst.stop();
    let again = tool_ok(&["dump", "--data-dir", dst_data.to_str().unwrap()]);
    let mut again: Vec<String> = again.lines().map(str::to_string).collect();
    // Database ids (hence the order of databases) may differ; the lines may not.
    lines.sort();
    again.sort();
    assert!(again == lines, "the restored dir dumps the same stream");
}

#[test]
fn refused_restore_changes_no_database() {
    // Target: database "zeta" with document 1.
    let mut target = Server::start(&[]);
    let mut c = target.connect();
    let z = c.open_db("zeta");
    let original = unique_doc("zeta", 1, 100);
    assert_eq!(c.create(z, "", 1, &original).0, 0);
    drop(c);
    target.stop();

    // A dump with a new database "alpha" and a conflicting "zeta"/_default/1.
    let work = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    m.entry("alpha".into())
        .or_default()
        .entry("_default".into())
        .or_default()
        .insert(1, unique_doc("alpha", 1, 100));
    m.entry("zeta".into())
        .or_default()
        .entry("_default".into())
        .or_default()
        .insert(1, unique_doc("zeta-new", 1, 100));
    write_dir_files(work.path(), &render_dir(&m));
    let data = target.data_dir();
    let (code, _, stderr) = tool(&[
        "restore",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        work.path().to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{stderr}");
    let after = tool_ok(&["dump", "--data-dir", data.to_str().unwrap()]);
    assert!(
        !after.contains("alpha-1-marker"),
        "a refused restore wrote another database: {after}"
    );
    assert!(after.contains("zeta-1-marker"), "{after}");
}

#[test]
fn pretty_printed_document_round_trips() {
    let mut m = Model::new();
    let docs = m
        .entry("pretty".into())
        .or_default()
        .entry("_default".into())
        .or_default();
    docs.insert(
        1,
        "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": \"x\"\n}".into(),
    );
    docs.insert(2, unique_doc("plain", 2, 100));
    let src = source(&m);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("dump");
    tool_ok(&[
        "dump",
        "--data-dir",
        src.data_dir().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let mut dst = Server::unstarted(&[]);
    tool_ok(&[
        "restore",
        "--data-dir",
        dst.data_dir().to_str().unwrap(),
        "--from",
        out.to_str().unwrap(),
    ]);
    dst.spawn();
    // Identical as JSON values at least (a dump may normalise whitespace).
    let mut c = dst.connect();
    let db = c.open_db("pretty");
    for (id, doc) in &m["pretty"]["_default"] {
        let (st, bytes) = c.read(db, "", *id);
        assert_eq!(st, 0, "{}", String::from_utf8_lossy(&bytes));
        let got: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let want: serde_json::Value = serde_json::from_str(doc).unwrap();
        assert_eq!(got, want, "document {id}");
    }
}
