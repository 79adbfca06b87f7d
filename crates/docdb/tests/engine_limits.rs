#![allow(clippy::unwrap_used)]
//! The engine's `[limits]` and memory accounting through the real binary:
//! - JSON nesting over `limits.max_depth` is refused on Create, Update, Patch, in a
//!   Transaction and by `docdb restore`, with a text naming the limit; a document at
//!   the limit is stored and patchable; a 1,000,000-deep one is refused and the
//!   server lives on;
//! - a patch of more than `limits.max_patch_ops` ops is refused;
//! - CreateCollection past `limits.max_collections` is refused;
//! - `--memory-per-db 1` refuses one-byte documents after ~13,000 (each counts its
//!   index entry), not after a million;
//! - an error about a database's files names the file, not the server's path.

mod common;
mod support;

use common::{run_docdb_with_stdin, Server};
use docdb_protocol::{Command as Cmd, Op, OpType};
use support::*;

const TOO_DEEP: &str = "document nests deeper than 128 levels (limits.max_depth)";

fn nest_obj(levels: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

fn patch_op(coll: &str, id: u64, ops: &str) -> Op {
    Op {
        op_type: OpType::Patch as u8,
        collection: coll.as_bytes().to_vec(),
        doc_id: id,
        patch: Some(ops.as_bytes().to_vec()),
        payload: Vec::new(),
    }
}

#[test]
fn documents_deeper_than_max_depth_are_refused_on_every_write_path() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("deep");
    let (at, over) = (nest_obj(128), nest_obj(129));
    assert_eq!(c.create(db, "", 1, &at), (0, Vec::new()));
    assert_eq!(c.read(db, "", 1), (0, at.clone().into_bytes()));
    let refused = |r: (u8, Vec<u8>)| {
        assert_eq!(r.0, 1, "{}", String::from_utf8_lossy(&r.1));
        assert_eq!(String::from_utf8_lossy(&r.1), TOO_DEEP);
    };
    refused(c.create(db, "", 2, &over));
    let (st, mut res) = c.execute(db, vec![update_op("", 1, &over)]);
    refused((st, res.remove(0)));
    let deeper = format!(r#"[{{"op":"set","path":"/b","value":{}}}]"#, nest_obj(128));
    let (st, mut res) = c.execute(db, vec![patch_op("", 1, &deeper)]);
    refused((st, res.remove(0)));
    let (st, res) = c.execute(
        db,
        vec![patch_op("", 1, r#"[{"op":"set","path":"/b","value":[1]}]"#)],
    );
    assert_eq!(st, 0, "a document at the limit is patchable: {res:?}");
    let r = c.call(
        db,
        Cmd::Transaction,
        vec![create_op("", 3, "{}"), create_op("", 4, &over)],
    );
    assert_ne!(r.status, 0);
    // The failing op's text alone (the v0.3 error contract).
    assert_eq!(text(&r), TOO_DEEP);
    // A million levels (2 MB): refused, and nothing crashed.
    let million = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    refused(c.create(db, "", 5, &million));
    let (st, mut res) = c.execute(
        db,
        vec![patch_op(
            "",
            1,
            &format!(r#"[{{"op":"set","path":"/m","value":{million}}}]"#),
        )],
    );
    refused((st, res.remove(0)));
    assert_eq!(c.read(db, "", 3).0, 2, "the transaction changed nothing");
    assert_eq!(c.read(db, "", 5).0, 2);
    assert!(alive(&mut s));
    assert!(c.read(db, "", 1).1.ends_with(br#","b":[1]}"#));

    // restore: refused before anything is written.
    s.stop();
    let line = format!("{{\"db\":\"deep\",\"collection\":\"_default\",\"id\":9,\"doc\":{over}}}\n");
    let data = s.data_dir();
    let out = run_docdb_with_stdin(
        &["restore", "--data-dir", data.to_str().unwrap()],
        Some(line.as_bytes()),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(TOO_DEEP), "{stderr}");
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db("deep");
    assert_eq!(c.read(db, "", 9).0, 2);
}

#[test]
fn patches_over_max_patch_ops_and_collections_over_max_collections_are_refused() {
    let mut s = Server::start_with_config("[limits]\nmax_collections = 4\n", &[]);
    let mut c = s.connect();
    let db = c.open_db("lim");
    assert_eq!(c.create(db, "", 1, r#"{"arr":[]}"#).0, 0);
    let ops = |n: usize| {
        let one = r#"{"op":"insert","path":"/arr/0","value":0}"#;
        format!("[{}]", vec![one; n].join(","))
    };
    let (st, res) = c.execute(db, vec![patch_op("", 1, &ops(1001))]);
    assert_eq!(st, 1);
    assert_eq!(
        String::from_utf8_lossy(&res[0]),
        "patch has more than 1000 operations (limits.max_patch_ops)"
    );
    assert_eq!(c.read(db, "", 1).1, br#"{"arr":[]}"#);
    assert_eq!(c.execute(db, vec![patch_op("", 1, &ops(1000))]).0, 0);

    for name in ["a", "b", "c"] {
        ok(c.call(db, Cmd::CreateCollection, vec![coll_op(name)]));
    }
    let r = c.call(db, Cmd::CreateCollection, vec![coll_op("d")]);
    assert_reply(
        &r,
        1,
        "database already has 4 collections, the most allowed (limits.max_collections)",
    );
    assert_eq!(c.list_collections(db), ["_default", "a", "b", "c"]);
    assert!(alive(&mut s));
}

/// 400,000 one-byte documents used 35 MB but counted 400 KB. Now each counts its index
/// entry: a 1 MiB per-database limit is met after ~13,000 of them.
#[test]
fn tiny_documents_meet_the_per_database_memory_limit() {
    let mut s = Server::start(&["--memory-per-db", "1"]);
    let mut c = s.connect();
    let db = c.open_db("tiny");
    let mut stored = 0u64;
    'outer: for chunk in 0..1000u64 {
        let ops: Vec<Op> = (0..1000)
            .map(|i| create_op("", chunk * 1000 + i, "1"))
            .collect();
        let (_, res) = c.execute(db, ops);
        for r in res {
            if r == b"memory limit exceeded" {
                break 'outer;
            }
            assert!(r.is_empty(), "{}", String::from_utf8_lossy(&r));
            stored += 1;
        }
    }
    assert!((10_000..16_000).contains(&stored), "stored {stored}");
    assert!(alive(&mut s));
}

/// A database whose files are damaged: the reply names the file, never the data dir.
#[test]
fn errors_about_files_do_not_show_server_paths() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("broken");
    assert_eq!(c.create(db, "", 1, "{}").0, 0);
    s.stop();
    std::fs::write(s.db_dir("broken").join("CHECKPOINT"), b"garbage").unwrap();
    s.spawn();
    let mut c = s.connect();
    let r = c.call(
        0,
        Cmd::OpenDb,
        vec![Op::new(OpType::Read, "", 0, b"broken".to_vec())],
    );
    let text = if r.status == 0 {
        let id = u64::from_le_bytes(r.data[..8].try_into().unwrap());
        String::from_utf8_lossy(&c.read(id, "", 1).1).into_owned()
    } else {
        text(&r)
    };
    let data = s.data_dir();
    assert!(text.contains("CHECKPOINT"), "{text}");
    assert!(!text.contains(data.to_str().unwrap()), "{text}");
    assert!(!text.contains("/dbs/"), "{text}");
}
