#![allow(clippy::unwrap_used)]
//! A restart (clean SIGTERM, then SIGKILL) keeps every database, id, collection and
//! document exactly as the clients last saw them, through the socket.

mod common;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Client, Server};
use docdb_protocol::{Command as Cmd, Op};
use serde_json::{json, Value};
use support::*;

/// The expected state: (db name, collection, id) → document.
type Model = BTreeMap<(String, String, u64), Value>;

struct World {
    ids: BTreeMap<String, u64>,
    colls: BTreeMap<String, Vec<String>>,
    docs: Model,
}

fn build(c: &mut Client) -> World {
    let mut w = World {
        ids: BTreeMap::new(),
        colls: BTreeMap::new(),
        docs: Model::new(),
    };
    for name in ["tenant-1", "tenant-2", "tenant-3"] {
        let db = c.open_db(name);
        w.ids.insert(name.into(), db);
        let mut colls = vec!["_default".to_string()];
        for coll in ["users", "orders", "scratch"] {
            ok(c.call(db, Cmd::CreateCollection, vec![coll_op(coll)]));
            colls.push(coll.into());
        }
        // Creates in every collection, many ops per Execute.
        for coll in ["", "users", "orders"] {
            let ops = (1..=60u64)
                .map(|i| {
                    create_op(
                        coll,
                        i,
                        &json!({"db": name, "coll": coll, "i": i}).to_string(),
                    )
                })
                .collect();
            assert_eq!(c.execute(db, ops).0, 0);
            let key = if coll.is_empty() { "_default" } else { coll };
            for i in 1..=60u64 {
                w.docs.insert(
                    (name.into(), key.into(), i),
                    json!({"db": name, "coll": coll, "i": i}),
                );
            }
        }
        // Updates, deletes, patches.
        for i in (1..=60u64).step_by(3) {
            let v = json!({"updated": i, "nested": {"k": [1, 2, 3]}});
            assert_eq!(
                c.execute(db, vec![update_op("users", i, &v.to_string())]).0,
                0
            );
            w.docs.insert((name.into(), "users".into(), i), v);
        }
        for i in (2..=60u64).step_by(5) {
            assert_eq!(c.execute(db, vec![delete_op("orders", i)]).0, 0);
            w.docs.remove(&(name.into(), "orders".into(), i));
        }
        for i in (1..=60u64).step_by(7) {
            let (st, _) = c.execute(
                db,
                vec![Op::patch(
                    "",
                    i,
                    br#"[{"op":"set","path":"/patched","value":true},{"op":"remove","path":"/coll"}]"#
                        .to_vec(),
                )],
            );
            assert_eq!(st, 0);
            let d = w
                .docs
                .get_mut(&(name.into(), "_default".into(), i))
                .unwrap();
            d["patched"] = json!(true);
            d.as_object_mut().unwrap().remove("coll");
        }
        // A committed transaction and a rolled-back one.
        let r = c.call(
            db,
            Cmd::Transaction,
            vec![
                create_op("", 100, r#"{"tx":1}"#),
                delete_op("users", 2),
                update_op("orders", 1, r#"{"tx":"o"}"#),
            ],
        );
        assert_eq!(r.status, 0, "{:?}", results_text(&r));
        w.docs
            .insert((name.into(), "_default".into(), 100), json!({"tx":1}));
        w.docs.remove(&(name.into(), "users".into(), 2));
        w.docs
            .insert((name.into(), "orders".into(), 1), json!({"tx":"o"}));
        let r = c.call(
            db,
            Cmd::Transaction,
            vec![
                create_op("", 101, r#"{"tx":2}"#),
                create_op("users", 1, "{}"),
            ],
        );
        assert_eq!(r.status, 3);
        // A collection created, used, emptied and deleted.
        assert_eq!(c.create(db, "scratch", 1, "{}").0, 0);
        assert_eq!(c.execute(db, vec![delete_op("scratch", 1)]).0, 0);
        ok(c.call(db, Cmd::DeleteCollection, vec![coll_op("scratch")]));
        colls.retain(|x| x != "scratch");
        colls.sort();
        w.colls.insert(name.into(), colls);
    }
    // A large document.
    let big = json!({"blob": "z".repeat(1 << 20)});
    let db = w.ids["tenant-2"];
    assert_eq!(c.create(db, "", 5000, &big.to_string()).0, 0);
    w.docs
        .insert(("tenant-2".into(), "_default".into(), 5000), big);
    w
}

fn verify(c: &mut Client, w: &World) {
    // Ids (OpenDB by name in reverse order, so order of opening does not matter).
    for (name, id) in w.ids.iter().rev() {
        assert_eq!(c.open_db(name), *id, "id of {name}");
    }
    assert_eq!(stats(c)[0], w.ids.len() as u64, "total_dbs");
    for (name, id) in &w.ids {
        let cols = json_call(c, *id, Cmd::ListCollections, vec![]);
        assert_eq!(cols, json!(w.colls[name]), "collections of {name}");
        for coll in &w.colls[name] {
            // Scan gives exactly the model's documents of this collection, in id order.
            let want: Vec<Value> = w
                .docs
                .iter()
                .filter(|((n, cl, _), _)| n == name && cl == coll)
                .map(|((_, _, i), d)| json!({"id": i, "doc": d}))
                .collect();
            let got = json_call(
                c,
                *id,
                Cmd::Scan,
                vec![docdb_protocol::Op::new(
                    docdb_protocol::OpType::Read,
                    coll,
                    0,
                    br#"{"limit":1000}"#.to_vec(),
                )],
            );
            assert_eq!(got, Value::Array(want), "{name}/{coll}");
        }
    }
    // Point reads, including ids that must be absent.
    for ((name, coll, i), d) in &w.docs {
        let (st, bytes) = c.read(w.ids[name], coll, *i);
        assert_eq!(st, 0, "{name}/{coll}/{i}");
        assert_eq!(&serde_json::from_slice::<Value>(&bytes).unwrap(), d);
    }
    for (name, id) in w.ids.iter().filter(|(n, _)| *n != "tenant-4") {
        assert_eq!(c.read(*id, "", 101).0, 2, "{name}: rolled-back transaction");
        assert_eq!(
            c.read(*id, "users", 2).0,
            2,
            "{name}: deleted in a transaction"
        );
        assert_eq!(
            c.read(*id, "scratch", 1),
            (1, b"collection not found".to_vec())
        );
    }
}

#[test]
fn clean_restart_then_kill_restart_keep_everything() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let mut w = build(&mut c);
    verify(&mut c, &w);
    drop(c);
    let st = s.terminate(Duration::from_secs(30));
    assert!(st.success(), "{st}");
    s.spawn();
    let mut c = s.connect();
    verify(&mut c, &w);
    // More acknowledged writes, then SIGKILL: nothing acknowledged is lost.
    let db = w.ids["tenant-3"];
    for i in 200..260u64 {
        let v = json!({"after_restart": i});
        assert_eq!(c.create(db, "orders", i, &v.to_string()).0, 0);
        w.docs.insert(("tenant-3".into(), "orders".into(), i), v);
    }
    let d4 = c.open_db("tenant-4");
    assert!(d4 > *w.ids.values().max().unwrap());
    w.ids.insert("tenant-4".into(), d4);
    w.colls.insert("tenant-4".into(), vec!["_default".into()]);
    assert_eq!(c.create(d4, "", 1, "[4]").0, 0);
    w.docs
        .insert(("tenant-4".into(), "_default".into(), 1), json!([4]));
    drop(c);
    s.kill();
    s.spawn();
    let mut c = s.connect();
    verify(&mut c, &w);
    // And once more, cleanly, after recovery.
    drop(c);
    assert!(s.terminate(Duration::from_secs(30)).success());
    s.spawn();
    verify(&mut s.connect(), &w);
}

#[test]
fn wal_dir_flag_moves_the_wal_and_survives_restart() {
    let wal = tempfile::tempdir().unwrap();
    let wal_path = wal.path().join("wal");
    let mut s = Server::start(&["--wal-dir", wal_path.to_str().unwrap()]);
    let mut c = s.connect();
    let db = c.open_db("walmoved");
    for i in 1..=50u64 {
        assert_eq!(c.create(db, "", i, &format!(r#"{{"i":{i}}}"#)).0, 0);
    }
    drop(c);
    s.kill();
    // The WAL lives under --wal-dir.
    let mut found = false;
    let mut stack = vec![wal_path.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.metadata().unwrap().len() > 0 {
                found = true;
            }
        }
    }
    assert!(found, "no WAL bytes under {}", wal_path.display());
    s.spawn();
    let mut c = s.connect();
    for i in 1..=50u64 {
        assert_eq!(
            c.read(db, "", i),
            (0, format!(r#"{{"i":{i}}}"#).into_bytes())
        );
    }
}
