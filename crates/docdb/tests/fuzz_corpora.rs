#![allow(clippy::unwrap_used)]
//! The fuzz corpora, replayed on stable in the normal suite (issue 15): every file of
//! the committed corpus `fuzz/seeds/<target>/` (and of the local working corpus
//! `fuzz/corpus/<target>/` that `fuzz/run.sh` grows, when there is one) goes through the
//! same check its fuzz target runs (`fuzz/checks.rs`: no panic, and a decoded frame
//! re-encodes to the same bytes, a decoded record lies within its input). A committed
//! corpus that is missing or empty fails the test, and so does one whose every input
//! the decoder rejects (it would exercise nothing past the first length check).
//!
//! The seeds are written by `DOCDB_WRITE_FUZZ_SEEDS=1 cargo nextest run -p docdb --test
//! fuzz_corpora` (valid frames, and real WAL and data-file records of a database);
//! inputs a fuzz run found worth keeping are copied into `fuzz/seeds/<target>/` too.

#[path = "../../../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

use docdb_protocol::frame::encode_results;
use docdb_protocol::{encode_request, encode_response, Command, Op, OpType, Request, Response};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The committed corpus of `target`.
fn corpus_dir(target: &str) -> PathBuf {
    fuzz_dir().join("seeds").join(target)
}

/// Every file of `dir`: (name, bytes); empty when `dir` does not exist.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = rd
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Runs `check` on every input of `target`'s committed corpus and of the local working
/// corpus; returns (inputs, accepted) of the committed one.
fn replay(target: &str, check: fn(&[u8]) -> bool) -> (usize, usize) {
    let run = |dir: &Path| -> (usize, usize) {
        let files = files(dir);
        let mut accepted = 0;
        for (name, bytes) in &files {
            let ok = std::panic::catch_unwind(|| check(bytes)).unwrap_or_else(|_| {
                panic!("{target}: input {}/{name} fails its check", dir.display())
            });
            accepted += usize::from(ok);
        }
        eprintln!(
            "{}: {} inputs, {accepted} decoded",
            dir.display(),
            files.len()
        );
        (files.len(), accepted)
    };
    let (n, accepted) = run(&corpus_dir(target));
    assert!(n > 0, "{target}: the committed corpus is missing or empty");
    assert!(accepted > 0, "{target}: no committed corpus input decodes");
    run(&fuzz_dir().join("corpus").join(target));
    (n, accepted)
}

#[test]
fn request_frame_corpus_replays() {
    replay("request_frame", checks::request_frame);
}

#[test]
fn response_frame_corpus_replays() {
    replay("response_frame", checks::response_frame);
}

#[test]
fn wal_record_corpus_replays() {
    replay("wal_record", |b| checks::wal_record(b) > 0);
}

#[test]
fn data_record_corpus_replays() {
    replay("data_record", checks::data_record);
}

#[test]
fn query_corpus_replays() {
    replay("query", checks::query);
}

#[test]
fn patch_corpus_replays() {
    replay("patch", checks::patch);
}

// ---------------------------------------------------------------------------------
// The seeds (run with DOCDB_WRITE_FUZZ_SEEDS=1 to rewrite them).

fn frame_body(req: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(req, &mut out);
    out[4..].to_vec()
}

fn response_body(resp: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    encode_response(resp, &mut out);
    out[4..].to_vec()
}

fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut patch = Op::new(OpType::Patch, "c", 7, Vec::new());
    patch.patch = Some(br#"[{"op":"set","path":"/a","value":1}]"#.to_vec());
    let requests = [
        (
            "open_db",
            Request {
                request_id: 1,
                db_id: 0,
                command: Command::OpenDb as u8,
                ops: vec![Op::new(OpType::Create, "", 0, b"db".to_vec())],
            },
        ),
        (
            "execute",
            Request {
                request_id: 2,
                db_id: 1,
                command: Command::Execute as u8,
                ops: vec![
                    Op::new(OpType::Create, "c", 7, br#"{"a":0}"#.to_vec()),
                    patch,
                    Op::new(OpType::Read, "c", 7, Vec::new()),
                    Op::new(OpType::Delete, "c", 7, Vec::new()),
                ],
            },
        ),
        (
            "scan",
            Request {
                request_id: 3,
                db_id: 1,
                command: Command::Scan as u8,
                ops: vec![Op::new(OpType::Read, "c", 0, br#"{"limit":2}"#.to_vec())],
            },
        ),
        (
            "stats",
            Request {
                request_id: 4,
                db_id: 0,
                command: Command::Stats as u8,
                ops: Vec::new(),
            },
        ),
    ];
    for (name, r) in requests {
        out.push(("request_frame", name.to_string(), frame_body(&r)));
    }
    let responses = [
        (
            "execute_ok",
            Response {
                request_id: 2,
                status: 0,
                data: encode_results(&[Vec::new(), br#"{"a":1}"#.to_vec()]),
            },
        ),
        (
            "error_text",
            Response {
                request_id: 5,
                status: 1,
                data: b"document not found".to_vec(),
            },
        ),
        (
            "empty",
            Response {
                request_id: 6,
                status: 0,
                data: Vec::new(),
            },
        ),
    ];
    for (name, r) in responses {
        out.push(("response_frame", name.to_string(), response_body(&r)));
    }

    // Real records: a small database's WAL segment and data file.
    let dir = tempfile::tempdir().unwrap();
    let db = docdb_core::Database::open(dir.path(), docdb_core::Config::default()).unwrap();
    db.create_collection("c").unwrap();
    db.create("c", 1, br#"{"a":1}"#).unwrap();
    db.create("_default", 2, br#"{"b":[1,2,{"c":null}]}"#)
        .unwrap();
    db.update("c", 1, br#"{"a":2}"#).unwrap();
    let mut tx = db.begin();
    tx.create("c", 3, br#"{"t":1}"#).unwrap();
    tx.delete("c", 1).unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
    const HEADER: usize = 24;
    let wal = std::fs::read(dir.path().join("wal").join(format!("{:020}.wal", 1))).unwrap();
    let records = wal[HEADER..].to_vec();
    out.push(("wal_record", "segment_records".into(), records.clone()));
    out.push((
        "wal_record",
        "torn_last_record".into(),
        records[..records.len() - 3].to_vec(),
    ));
    let data = std::fs::read(dir.path().join("data").join(format!("{:020}.data", 1))).unwrap();
    let mut pos = HEADER;
    let mut i = 0;
    while let Ok(h) = docdb_core::data::record::decode_header(&data[pos..]) {
        let n = h.total_len();
        out.push((
            "data_record",
            format!("record_{i}"),
            data[pos..pos + n].to_vec(),
        ));
        pos += n;
        i += 1;
    }

    // Queries: every operator, sorts, projections, limits, explain, and resume
    // cursors the query database really gives (`checks::query_db`).
    let queries = [
        ("eq", r#"{"filter":{"n":3}}"#),
        (
            "ops",
            r#"{"filter":{"n":{"$gte":2,"$lt":30,"$ne":5},"s":{"$in":["s1","s2",null]},"tags":{"$nin":["u"]},"a.b":{"$exists":true,"$not":{"$gt":1}}}}"#,
        ),
        (
            "logic",
            r#"{"filter":{"$or":[{"n":{"$lte":4}},{"tags":"t1"}],"$nor":[{"x":{"$eq":[[5]]}}],"$and":[{"s":{"$exists":false}}]}}"#,
        ),
        (
            "sort",
            r#"{"filter":{},"sort":[["tags",1],["n",-1]],"limit":3,"projection":["n","a.b"],"explain":true}"#,
        ),
        (
            "range",
            r#"{"filter":{"n":{"$gt":"1","$lt":"9"}},"sort":[["n",-1]],"limit":1000}"#,
        ),
    ];
    for (name, q) in queries {
        out.push(("query", name.to_string(), q.as_bytes().to_vec()));
    }
    let patches = [
        (
            "set_delete",
            r#"[{"op":"set","path":"/a/d","value":{"z":[1]}},{"op":"delete","path":"/f"}]"#,
        ),
        (
            "rfc",
            r#"[{"op":"add","path":"/e/-","value":1},{"op":"move","from":"/a/b/0","path":"/g/h/i/j"},{"op":"copy","from":"/a","path":"/k"},{"op":"replace","path":"/f","value":"y"},{"op":"remove","path":"/a/b/1"}]"#,
        ),
        (
            "test_insert",
            r#"[{"op":"test","path":"/a/d","value":"x"},{"op":"insert","path":"/a/b/0","value":0}]"#,
        ),
    ];
    for (name, p) in patches {
        out.push(("patch", name.to_string(), p.as_bytes().to_vec()));
    }
    for (name, sort) in [("after_sorted", r#"[["n",1]]"#), ("after_ids", "[]")] {
        let q = format!(r#"{{"filter":{{}},"sort":{sort},"limit":4}}"#);
        let page = checks::query_db()
            .query("_default", &docdb_core::Query::parse(q.as_bytes()).unwrap())
            .unwrap();
        let next = page.next.expect("40 documents fill more than a page of 4");
        let q = format!(r#"{{"filter":{{}},"sort":{sort},"limit":4,"after":"{next}"}}"#);
        out.push(("query", name.to_string(), q.into_bytes()));
    }
    out
}

/// The seeds decode (so the corpus starts where the decoders do real work) and are
/// what is committed; with `DOCDB_WRITE_FUZZ_SEEDS=1`, (re)writes them.
#[test]
fn the_committed_seeds_are_current() {
    let write = std::env::var_os("DOCDB_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in seeds() {
        let path = corpus_dir(target).join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (DOCDB_WRITE_FUZZ_SEEDS=1 writes it)",
                path.display()
            )
        });
        assert!(
            committed == bytes,
            "{} differs from the seed the encoders produce today (a format change? rewrite with DOCDB_WRITE_FUZZ_SEEDS=1)",
            path.display()
        );
    }
}
