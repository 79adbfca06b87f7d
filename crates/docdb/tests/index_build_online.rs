#![allow(clippy::unwrap_used)]
//! CreateIndex against the real binary (issue 14, part "ibuild"): the build runs off
//! its database's queue, so that database's reads and writes are answered while it
//! builds and the writes made meanwhile are in the index once; the requests queued
//! after a CreateIndex find its index building (ListIndexes, DropIndex); kill -9
//! during a build (and during indexed writes) leaves every index absent or complete; the
//! `limits.max_index_builds` error; DropDB, DropIndex and shutdown during a build; a
//! panic inside a build (`DOCDB_TEST_PANIC_INDEX_BUILD`, test-hooks builds only).
//!
//! `DOCDB_TEST_INDEX_BUILD_DELAY_MS` (test-hooks builds only) makes each 1024
//! documents of a build take that much longer, so a build lasts long enough to act
//! during it on a loaded machine without loading millions of documents.

mod common;
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{run_docdb, Client, Server};
use docdb_protocol::{Command as Cmd, Op, OpType, Request, Response};
use serde_json::{json, Value};

fn op(coll: &str, payload: &str) -> Op {
    Op::new(OpType::Read, coll, 0, payload.as_bytes().to_vec())
}

fn index_payload(name: &str, field: &str, unique: bool) -> String {
    json!({"name": name, "fields": [[field, 1]], "unique": unique}).to_string()
}

/// Loads documents `0..n` of `coll`, `{"k": i % 1000, "u": i}`, pipelining Executes
/// of 2000 creates, 8 in flight.
fn load(c: &mut Client, db: u64, coll: &str, n: u64) {
    let mut next_id = 1_000_000u64;
    let chunks: Vec<Vec<u64>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(2000)
        .map(<[u64]>::to_vec)
        .collect();
    for window in chunks.chunks(8) {
        for ids in window {
            let ops = ids
                .iter()
                .map(|&i| {
                    let doc = json!({"k": i % 1000, "u": i}).to_string();
                    Op::new(OpType::Create, coll, i, doc.into_bytes())
                })
                .collect();
            next_id += 1;
            c.send(&Request {
                request_id: next_id,
                db_id: db,
                command: Cmd::Execute as u8,
                ops,
            });
        }
        for _ in window {
            let r = c.recv().unwrap();
            assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
        }
    }
}

fn list(c: &mut Client, db: u64, coll: &str) -> Vec<Value> {
    let r = c.call(db, Cmd::ListIndexes, vec![op(coll, "")]);
    assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
    serde_json::from_slice::<Vec<Value>>(&r.data).unwrap()
}

fn find<'a>(l: &'a [Value], name: &str) -> Option<&'a Value> {
    l.iter().find(|i| i["name"] == name)
}

/// Sends request `id` without waiting for its answer.
fn send(c: &mut Client, id: u64, db: u64, cmd: Cmd, ops: Vec<Op>) {
    c.send(&Request {
        request_id: id,
        db_id: db,
        command: cmd as u8,
        ops,
    });
}

/// Waits until `pred` holds of the collection's index list (at most 20 s).
fn wait_list(c: &mut Client, db: u64, coll: &str, pred: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pred(&list(c, db, coll)) {
        assert!(Instant::now() < deadline, "{:?}", list(c, db, coll));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn reads_and_writes_of_the_database_are_answered_while_an_index_builds() {
    const N: u64 = 200_000;
    // 196 cancel checks of 5 ms: the build lasts a second or more on any machine.
    let s = Server::start_with_env(&[], &[("DOCDB_TEST_INDEX_BUILD_DELAY_MS", "5")]);
    let mut c = s.connect();
    let db = c.open_db("online");
    c.create_collection(db, "items");
    load(&mut c, db, "items", N);

    const BUILD: u64 = 900_000;
    let started = Instant::now();
    send(
        &mut c,
        BUILD,
        db,
        Cmd::CreateIndex,
        vec![op("items", &index_payload("by_k", "k", false))],
    );
    // Writes and reads, one at a time, until the CreateIndex is answered: creates of
    // new documents, updates that move a document to another key, deletes.
    let mut built = None;
    let mut latencies = Vec::new();
    let (mut created, mut deleted) = (0u64, 0u64);
    let mut i = 0u64;
    while built.is_none() {
        i += 1;
        let (ops, creates, deletes) = match i % 4 {
            0 => (vec![Op::new(OpType::Delete, "items", i, vec![])], 0, 1),
            1 => (
                vec![Op::new(
                    OpType::Update,
                    "items",
                    i,
                    json!({"k": 5000 + i, "u": i}).to_string().into_bytes(),
                )],
                0,
                0,
            ),
            2 => (vec![Op::new(OpType::Read, "items", i, vec![])], 0, 0),
            _ => (
                vec![Op::new(
                    OpType::Create,
                    "items",
                    N + i,
                    json!({"k": i % 7, "u": N + i}).to_string().into_bytes(),
                )],
                1,
                0,
            ),
        };
        let sent = Instant::now();
        send(&mut c, i, db, Cmd::Execute, ops);
        loop {
            let r: Response = c.recv().unwrap();
            if r.request_id == BUILD {
                assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
                built = Some(started.elapsed());
                continue;
            }
            assert_eq!(r.request_id, i);
            assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
            if built.is_none() {
                latencies.push(sent.elapsed());
            }
            created += creates;
            deleted += deletes;
            break;
        }
        if i == 2 {
            // While it builds, ListIndexes shows it building: the index joined its
            // collection before the requests after the CreateIndex were taken.
            let l = list(&mut c, db, "items");
            let by_k = find(&l, "by_k").expect("listed while building");
            assert_eq!(by_k["building"], true, "{l:?}");
        }
    }
    let build = built.unwrap();
    assert!(
        latencies.len() >= 20,
        "only {} requests answered during a {build:?} build",
        latencies.len()
    );
    latencies.sort();
    let worst = latencies[latencies.len() - 1];
    let median = latencies[latencies.len() / 2];
    eprintln!(
        "build of {N} documents: {build:?}; {} requests answered during it, median {median:?}, worst {worst:?}",
        latencies.len()
    );
    assert!(
        worst * 4 < build,
        "a request waited {worst:?} during a {build:?} build"
    );

    // Every write made during the build is in the index, once.
    let l = list(&mut c, db, "items");
    let by_k = find(&l, "by_k").unwrap();
    assert_eq!(by_k["building"], false);
    assert_eq!(by_k["entries"], N + created - deleted, "{l:?}");
}

#[test]
fn requests_queued_after_a_create_index_see_the_index_building() {
    // 200 ms per check: each build lasts until its DropIndex stops it.
    let s = Server::start_with_env(&[], &[("DOCDB_TEST_INDEX_BUILD_DELAY_MS", "200")]);
    let mut c = s.connect();
    let db = c.open_db("queued");
    load(&mut c, db, "", 3000);
    for round in 0..5u64 {
        // CreateIndex, ListIndexes and DropIndex in one write: the two after it are
        // taken from the database's queue after it, so they find the index building,
        // whenever the build's thread gets to run.
        let name = format!("by_k{round}");
        let mut frame = Vec::new();
        let reqs = [
            (Cmd::CreateIndex, index_payload(&name, "k", false)),
            (Cmd::ListIndexes, String::new()),
            (Cmd::DropIndex, json!({ "name": name }).to_string()),
        ];
        for (n, (cmd, payload)) in reqs.into_iter().enumerate() {
            let req = Request {
                request_id: 10 * round + n as u64,
                db_id: db,
                command: cmd as u8,
                ops: vec![op("", &payload)],
            };
            docdb_protocol::encode_request(&req, &mut frame);
        }
        c.send_raw(&frame);
        let mut answers: Vec<Response> = (0..3).map(|_| c.recv().unwrap()).collect();
        answers.sort_by_key(|r| r.request_id);
        let text = |r: &Response| String::from_utf8_lossy(&r.data).into_owned();
        let [create, listed, dropped] = &answers[..] else {
            unreachable!()
        };
        assert_eq!(listed.status, 0, "round {round}: {}", text(listed));
        let l: Vec<Value> = serde_json::from_slice(&listed.data).unwrap();
        let ix = find(&l, &name).unwrap_or_else(|| panic!("round {round}: not listed: {l:?}"));
        assert_eq!(ix["building"], true, "round {round}: {l:?}");
        assert_eq!(dropped.status, 0, "round {round}: {}", text(dropped));
        assert_eq!(
            (create.status, text(create)),
            (1, format!("index {name} was dropped while it was building")),
            "round {round}"
        );
        assert!(list(&mut c, db, "").is_empty(), "round {round}");
    }
}

#[test]
fn kill_9_during_builds_and_indexed_writes_leaves_every_index_absent_or_complete() {
    const N: u64 = 30_000;
    // 30 checks of 40 ms: each build lasts about 1.2 s.
    let mut s = Server::start_with_env(&[], &[("DOCDB_TEST_INDEX_BUILD_DELAY_MS", "40")]);
    {
        let mut c = s.connect();
        let db = c.open_db("crash");
        c.create_collection(db, "items");
        load(&mut c, db, "items", N);
        let r = c.call(
            db,
            Cmd::CreateIndex,
            vec![op("items", &index_payload("by_u", "u", true))],
        );
        assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
    }
    // Kill points: early in the fill, late in it, and just after the answer.
    let kill_after = [
        Duration::from_millis(50),
        Duration::from_millis(700),
        Duration::ZERO,
    ];
    for (round, &after) in kill_after.iter().enumerate() {
        let name = format!("by_k{round}");
        let unique = round == 1;
        let field = if unique { "u" } else { "k" };
        // Indexed writes on another connection until the kill.
        let socket = s.socket.clone();
        let writer = std::thread::spawn(move || {
            let mut c = Client::connect(&socket);
            let db = c.open_db("crash");
            let mut n = 0u64;
            loop {
                n += 1;
                let id = N + round as u64 * 1_000_000 + n;
                let doc = json!({"k": n % 13, "u": id}).to_string();
                let upd = json!({"k": 999, "u": 10_000_000 + id}).to_string();
                let ops = vec![
                    Op::new(OpType::Create, "items", id, doc.into_bytes()),
                    Op::new(OpType::Update, "items", n % N, upd.into_bytes()),
                ];
                let mut frame = Vec::new();
                let req = Request {
                    request_id: n,
                    db_id: db,
                    command: Cmd::Execute as u8,
                    ops,
                };
                docdb_protocol::encode_request(&req, &mut frame);
                if c.stream.write_all(&frame).is_err() {
                    return n; // the server died
                }
                match c.recv() {
                    Some(r) => assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data)),
                    None => return n,
                }
            }
        });
        let mut c = s.connect();
        let db = c.open_db("crash");
        send(
            &mut c,
            1,
            db,
            Cmd::CreateIndex,
            vec![op("items", &index_payload(&name, field, unique))],
        );
        if after.is_zero() {
            let r = c.recv().unwrap();
            assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
        } else {
            std::thread::sleep(after);
        }
        s.kill();
        let writes = writer.join().unwrap();
        assert!(
            writes > 1,
            "round {round}: no indexed writes before the kill"
        );

        // The offline check finds every index in agreement with the documents.
        let data = s.data_dir();
        let out = run_docdb(&["check", "--data-dir", data.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "round {round}: docdb check: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        s.spawn();
        let mut c = s.connect();
        let db = c.open_db("crash");
        let all = c.scan_all(db, "items");
        let l = list(&mut c, db, "items");
        let by_u = find(&l, "by_u").expect("the index built before stays");
        assert_eq!(by_u["entries"], all.len() as u64, "round {round}: {l:?}");
        let mut us: Vec<u64> = all.iter().map(|(_, d)| d["u"].as_u64().unwrap()).collect();
        us.sort_unstable();
        us.dedup();
        assert_eq!(us.len(), all.len(), "round {round}: duplicate u values");
        match find(&l, &name) {
            None => assert!(
                !after.is_zero(),
                "round {round}: an answered index was lost"
            ),
            Some(ix) => {
                assert_eq!(ix["building"], false, "round {round}: {ix}");
                assert_eq!(ix["entries"], all.len() as u64, "round {round}: {ix}");
            }
        }
    }
}

#[test]
fn builds_past_the_limit_are_refused_and_drop_db_cancels_a_build() {
    let toml = "[limits]\nmax_index_builds = 1\n";
    let mut s = Server::unstarted(&[]);
    std::fs::write(s.config_path(), toml).unwrap();
    let cfg = s.config_path().display().to_string();
    s.extra_args = vec!["--config".into(), cfg];
    // 20 checks of 250 ms: a build would last 5 s.
    s.envs = vec![("DOCDB_TEST_INDEX_BUILD_DELAY_MS".into(), "250".into())];
    s.spawn();
    let mut c = s.connect();
    let a = c.open_db("a");
    let b = c.open_db("b");
    load(&mut c, a, "", 20_000);
    c.create(b, "", 1, r#"{"k":1}"#);

    send(
        &mut c,
        100,
        a,
        Cmd::CreateIndex,
        vec![op("", &index_payload("by_k", "k", false))],
    );
    wait_list(&mut c, a, "", |l| !l.is_empty());
    // A second build anywhere is refused at once, naming the key.
    let r = c.call(
        b,
        Cmd::CreateIndex,
        vec![op("", &index_payload("by_k", "k", false))],
    );
    let text = String::from_utf8_lossy(&r.data).into_owned();
    assert_eq!(r.status, 1, "{text}");
    assert!(text.contains("limits.max_index_builds"), "{text}");
    assert!(list(&mut c, b, "").is_empty());

    // DropDB of the building database: the build is cancelled, the drop goes through
    // well before the build would have ended.
    let mut admin = s.connect();
    let started = Instant::now();
    let r = admin.call(0, Cmd::DropDb, vec![op("", "a")]);
    assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "DropDB waited {took:?}");
    let r = c.recv().unwrap();
    assert_eq!(r.request_id, 100);
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.data).into_owned()),
        (1, docdb_protocol::text::INDEX_BUILD_DB_DROPPED.to_owned())
    );
    assert!(!s.db_dir("a").exists());

    // The place is free again: b's build runs (1 check) and is answered.
    let r = c.call(
        b,
        Cmd::CreateIndex,
        vec![op("", &index_payload("by_k", "k", false))],
    );
    assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
    assert_eq!(list(&mut c, b, "")[0]["entries"], 1);
}

#[test]
fn drop_index_cancels_a_build_and_the_name_can_be_created_again() {
    // 20 checks of 100 ms: a build lasts 2 s.
    let s = Server::start_with_env(&[], &[("DOCDB_TEST_INDEX_BUILD_DELAY_MS", "100")]);
    let mut c = s.connect();
    let a = c.open_db("a");
    load(&mut c, a, "", 20_000);
    send(
        &mut c,
        100,
        a,
        Cmd::CreateIndex,
        vec![op("", &index_payload("by_k", "k", false))],
    );
    wait_list(&mut c, a, "", |l| {
        find(l, "by_k").is_some_and(|i| i["building"] == true)
    });
    // DropIndex from another connection: answered at once, the index gone from the
    // list, the build answered Error with nothing left.
    let mut other = s.connect();
    let a2 = other.open_db("a");
    let started = Instant::now();
    let r = other.call(a2, Cmd::DropIndex, vec![op("", r#"{"name":"by_k"}"#)]);
    assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
    assert!(list(&mut other, a2, "").is_empty());
    let r = c.recv().unwrap();
    assert_eq!(r.request_id, 100);
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.data).into_owned()),
        (1, "index by_k was dropped while it was building".to_owned())
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Dropping it again: not found.
    let r = other.call(a2, Cmd::DropIndex, vec![op("", r#"{"name":"by_k"}"#)]);
    assert_eq!(r.status, 2, "{}", String::from_utf8_lossy(&r.data));
    // Writes go on, and the same name builds again, complete.
    assert_eq!(c.create(a, "", 30_000, r#"{"k": 5}"#).0, 0);
    let r = c.call(
        a,
        Cmd::CreateIndex,
        vec![op("", &index_payload("by_k", "k", false))],
    );
    assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
    let l = list(&mut c, a, "");
    assert_eq!((l.len(), &l[0]["entries"]), (1, &json!(20_001)));
}

#[test]
fn a_panic_in_a_build_is_an_error_and_leaves_nothing_registered() {
    let s = Server::start_with_env(
        &[],
        &[
            ("DOCDB_TEST_PANIC_INDEX_BUILD", "by_k"),
            ("RUST_BACKTRACE", "0"),
        ],
    );
    let mut c = s.connect();
    let a = c.open_db("a");
    load(&mut c, a, "", 3000);
    let r = c.call(
        a,
        Cmd::CreateIndex,
        vec![op("", &index_payload("by_k", "k", false))],
    );
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.data).into_owned()),
        (1, "internal error".to_owned())
    );
    assert!(list(&mut c, a, "").is_empty(), "not left building");
    // The database keeps serving, and a retry (the hook fires once) builds.
    assert_eq!(c.create(a, "", 5000, r#"{"k": 1}"#).0, 0);
    assert_eq!(c.read(a, "", 5000).0, 0);
    let r = c.call(
        a,
        Cmd::CreateIndex,
        vec![op("", &index_payload("by_k", "k", false))],
    );
    assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
    let l = list(&mut c, a, "");
    assert_eq!(
        (&l[0]["entries"], &l[0]["building"]),
        (&json!(3001), &json!(false))
    );
}

#[test]
fn shutdown_cancels_a_build_and_the_restart_has_no_trace_of_it() {
    // 10 checks of 1 s: the build would last 10 s.
    let mut s = Server::start_with_env(&[], &[("DOCDB_TEST_INDEX_BUILD_DELAY_MS", "1000")]);
    let mut c = s.connect();
    let db = c.open_db("stop");
    load(&mut c, db, "", 10_000);
    send(
        &mut c,
        7,
        db,
        Cmd::CreateIndex,
        vec![op("", &index_payload("by_k", "k", false))],
    );
    wait_list(&mut c, db, "", |l| !l.is_empty());
    let started = Instant::now();
    let st = s.terminate(Duration::from_secs(30));
    let took = started.elapsed();
    assert!(st.success(), "{st}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // The CreateIndex was answered (cancelled), not left hanging.
    let r = c
        .recv()
        .expect("the CreateIndex is answered before the server exits");
    assert_eq!(r.request_id, 7);
    assert_eq!(
        String::from_utf8_lossy(&r.data),
        docdb_protocol::text::INDEX_BUILD_STOPPING
    );
    drop(c);
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db("stop");
    assert!(list(&mut c, db, "").is_empty());
    assert_eq!(c.read(db, "", 9_999).0, 0);
}
