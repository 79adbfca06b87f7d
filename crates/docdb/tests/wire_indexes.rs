#![allow(clippy::unwrap_used)]
//! Commands 19 CreateIndex, 20 DropIndex and 21 ListIndexes against the real server
//! (SPEC §8.1, §11): the payloads and replies on the wire, unique violations answered
//! Conflict `duplicate key for unique index NAME` with nothing changed, bad payloads
//! answered with a text that says what is wrong, definitions surviving a restart.

mod common;
mod support;

use common::Server;
use docdb_protocol::{Command as Cmd, Op, OpType};
use serde_json::{json, Value};
use support::*;

fn op(coll: &str, payload: &str) -> Op {
    Op::new(OpType::Read, coll, 0, payload.as_bytes().to_vec())
}

fn list(c: &mut common::Client, db: u64, coll: &str) -> Value {
    let r = c.call(db, Cmd::ListIndexes, vec![op(coll, "")]);
    assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
    serde_json::from_slice(&r.data).unwrap()
}

#[test]
fn create_list_drop_indexes_and_unique_conflicts_over_the_wire() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("idx");
    c.create_collection(db, "users");
    for i in 1..=5u64 {
        let doc = json!({"email": format!("u{i}@x"), "age": 20 + i % 2});
        assert_eq!(c.create(db, "users", i, &doc.to_string()).0, 0);
    }

    // 19 CreateIndex: the raw frame layout, code 19.
    let payload = r#"{"name":"by_email","fields":[["email",1]],"unique":true}"#;
    let r = c.call(db, Cmd::CreateIndex, vec![op("users", payload)]);
    assert_eq!(
        (r.status, r.data.len()),
        (0, 0),
        "{}",
        String::from_utf8_lossy(&r.data)
    );
    assert_eq!(Cmd::CreateIndex as u8, 19);
    let r = c.call(
        db,
        Cmd::CreateIndex,
        vec![op(
            "users",
            r#"{"name":"by_age","fields":[["age",-1],["email",1]]}"#,
        )],
    );
    assert_eq!(r.status, 0);

    // 21 ListIndexes.
    let l = list(&mut c, db, "users");
    assert_eq!(l[0]["name"], "by_age");
    assert_eq!(l[0]["fields"], json!([["age", -1], ["email", 1]]));
    assert_eq!(l[0]["unique"], false);
    assert_eq!(l[1]["name"], "by_email");
    assert_eq!(l[1]["unique"], true);
    assert_eq!(l[1]["entries"], 5);

    // A duplicate through Execute and through Transaction: Conflict, the exact text,
    // nothing written.
    let (st, res) = c.execute(db, vec![create_op("users", 9, r#"{"email":"u1@x"}"#)]);
    assert_eq!(st, 3);
    assert_eq!(res[0], b"duplicate key for unique index by_email");
    let r = c.call(
        db,
        Cmd::Transaction,
        vec![
            create_op("users", 10, r#"{"email":"new@x"}"#),
            update_op("users", 2, r#"{"email":"u3@x"}"#),
        ],
    );
    assert_eq!(r.status, 3);
    // A failed Transaction answers the failing op's text, plain (DECISIONS 49).
    assert_eq!(r.data, b"duplicate key for unique index by_email");
    assert_eq!(c.read(db, "users", 10).0, 2);
    assert_eq!(list(&mut c, db, "users")[1]["entries"], 5);

    // A unique build over duplicates: Conflict, and no index left behind.
    let r = c.call(
        db,
        Cmd::CreateIndex,
        vec![op(
            "users",
            r#"{"name":"u_age","fields":[["age",1]],"unique":true}"#,
        )],
    );
    assert_eq!(r.status, 3);
    assert_eq!(r.data, b"duplicate key for unique index u_age");
    assert_eq!(list(&mut c, db, "users").as_array().unwrap().len(), 2);

    // Bad payloads: Error with a text that says what is wrong; the connection lives.
    for (payload, want) in [
        ("{", "create index payload must be JSON like"),
        (
            r#"{"name":"x","fields":[["a",2]]}"#,
            "direction must be 1 or -1",
        ),
        (r#"{"name":"bad name","fields":[["a",1]]}"#, "may hold only"),
        (
            r#"{"name":"by_age","fields":[["a",1]]}"#,
            "index already exists: by_age",
        ),
    ] {
        let r = c.call(db, Cmd::CreateIndex, vec![op("users", payload)]);
        assert_eq!(r.status, 1, "{payload}");
        let text = String::from_utf8(r.data).unwrap();
        assert!(text.contains(want), "{payload}: {text}");
    }
    let r = c.call(
        db,
        Cmd::CreateIndex,
        vec![op("nope", r#"{"name":"x","fields":[["a",1]]}"#)],
    );
    assert_eq!(
        (r.status, r.data.as_slice()),
        (1, &b"collection not found"[..])
    );

    // 20 DropIndex: an unknown name is NotFound.
    let r = c.call(db, Cmd::DropIndex, vec![op("users", r#"{"name":"zzz"}"#)]);
    assert_eq!(r.status, 2);
    assert_eq!(r.data, b"index not found: zzz");
    let r = c.call(db, Cmd::DropIndex, vec![op("users", r#"{"nam":"by_age"}"#)]);
    assert_eq!(r.status, 1);

    // Definitions survive a restart (entries rebuilt from the documents).
    s.terminate(std::time::Duration::from_secs(30));
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db("idx");
    let l = list(&mut c, db, "users");
    assert_eq!(l.as_array().unwrap().len(), 2);
    assert_eq!(l[1]["entries"], 5);
    let (st, _) = c.execute(db, vec![create_op("users", 11, r#"{"email":"u5@x"}"#)]);
    assert_eq!(st, 3, "still unique after the restart");
    let r = c.call(
        db,
        Cmd::DropIndex,
        vec![op("users", r#"{"name":"by_email"}"#)],
    );
    assert_eq!((r.status, r.data.len()), (0, 0));
    assert_eq!(c.create(db, "users", 11, r#"{"email":"u5@x"}"#).0, 0);
    let l = list(&mut c, db, "users");
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["entries"], 6);
}

/// `docdb dump` carries index definitions (stream and directory forms) and `docdb
/// restore` recreates them over the restored documents.
#[test]
fn dump_and_restore_carry_index_definitions() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("shop");
    for i in 1..=3u64 {
        assert_eq!(c.create(db, "", i, &json!({"k": i}).to_string()).0, 0);
    }
    let r = c.call(
        db,
        Cmd::CreateIndex,
        vec![op(
            "",
            r#"{"name":"by_k","fields":[["k",-1]],"unique":true}"#,
        )],
    );
    assert_eq!(r.status, 0);
    drop(c);
    s.stop();
    let src = s.data_dir();
    let stream = common::run_docdb(&["dump", "--data-dir", src.to_str().unwrap()]);
    assert!(stream.status.success());
    let text = String::from_utf8(stream.stdout).unwrap();
    assert!(
        text.lines().any(|l| l
            == r#"{"db":"shop","collection":"_default","index":{"name":"by_k","fields":[["k",-1]],"unique":true}}"#),
        "{text}"
    );
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("d");
    let o = common::run_docdb(&[
        "dump",
        "--data-dir",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(out.join("shop").join("_indexes.json").exists());

    for from_dir in [false, true] {
        let mut dst = Server::unstarted(&[]);
        let data = dst.data_dir();
        let o = if from_dir {
            common::run_docdb(&[
                "restore",
                "--data-dir",
                data.to_str().unwrap(),
                "--from",
                out.to_str().unwrap(),
            ])
        } else {
            common::run_docdb_with_stdin(
                &["restore", "--data-dir", data.to_str().unwrap()],
                Some(text.as_bytes()),
            )
        };
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dst.spawn();
        let mut c = dst.connect();
        let db = c.open_db("shop");
        let l = list(&mut c, db, "");
        assert_eq!(l[0]["name"], "by_k", "from_dir {from_dir}");
        assert_eq!(l[0]["entries"], 3);
        assert_eq!(c.create(db, "", 9, r#"{"k":2}"#).0, 3, "unique again");
    }
}

#[test]
fn limits_max_indexes_bounds_the_indexes_of_a_collection() {
    let s = Server::start_with_config("[limits]\nmax_indexes = 2\n", &[]);
    let mut c = s.connect();
    let db = c.open_db("bounded");
    let create = |c: &mut common::Client, name: &str| {
        let payload = format!(r#"{{"name":"{name}","fields":[["{name}",1]]}}"#);
        c.call(db, Cmd::CreateIndex, vec![op("_default", &payload)])
    };
    assert_eq!(create(&mut c, "a").status, 0);
    assert_eq!(create(&mut c, "b").status, 0);
    let r = create(&mut c, "c");
    assert_eq!(r.status, 1);
    assert_eq!(
        r.data,
        b"collection already has 2 indexes, the most allowed (limits.max_indexes)"
    );
    // Nothing was kept, and dropping one makes room again.
    assert_eq!(list(&mut c, db, "_default").as_array().unwrap().len(), 2);
    let r = c.call(db, Cmd::DropIndex, vec![op("_default", r#"{"name":"a"}"#)]);
    assert_eq!(r.status, 0);
    assert_eq!(create(&mut c, "c").status, 0);
}
