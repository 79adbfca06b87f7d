#![allow(clippy::unwrap_used)]
//! Pipelining (SPEC §8: requests and responses are matched by request id): 1,000
//! requests written back to back on one connection before any reply is read are each
//! answered exactly once, with their request id and the right contents.

mod common;
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use common::Server;
use docdb_protocol::{Command as Cmd, Response};
use support::*;

/// What one pipelined request must get back.
#[derive(Debug, Clone)]
enum Want {
    /// OK with Execute results exactly these.
    Results(Vec<String>),
    /// OK with this much data (Stats).
    OkLen(usize),
    /// OK with data parsing as JSON.
    OkJson,
    /// Status and text.
    Error(u8, String),
}

fn check(r: &Response, want: &Want, queue_full_ok: bool) -> bool {
    if queue_full_ok && r.status == 1 && text(r) == "request queue is full" {
        return false;
    }
    match want {
        Want::Results(v) => {
            assert_eq!(
                r.status,
                if v.iter().any(|t| t == "document not found") {
                    2
                } else {
                    0
                },
                "{r:?}"
            );
            assert_eq!(&results_text(r), v, "request {}", r.request_id);
        }
        Want::OkLen(n) => {
            assert_eq!((r.status, r.data.len()), (0, *n), "{r:?}");
        }
        Want::OkJson => {
            assert_eq!(r.status, 0, "{r:?}");
            serde_json::from_slice::<serde_json::Value>(&r.data).unwrap();
        }
        Want::Error(st, t) => {
            assert_eq!(
                (r.status, text(r)),
                (*st, t.clone()),
                "request {}",
                r.request_id
            );
        }
    }
    true
}

/// The request bytes, what each request id must get, and the (db, doc id) created.
type Workload = (Vec<u8>, HashMap<u64, Want>, Vec<(u64, u64)>);

/// Builds 1,000 requests over two databases: reads of preloaded documents, creates of
/// new ones, misses, global commands and errors.
fn workload(a: u64, b: u64, new_base: u64) -> Workload {
    let mut bytes = Vec::new();
    let mut want = HashMap::new();
    let mut creates = Vec::new();
    // Request ids that are not sequential, to show matching is by id, not by order.
    let rid = |i: u64| 0x5EED_0000_0000 + i * 7919;
    for i in 0..1000u64 {
        let id = rid(i);
        let db = if i % 2 == 0 { a } else { b };
        let (f, w) = match i % 10 {
            0..=3 => {
                let doc = 1 + (i * 13) % 200;
                (
                    frame(id, db, Cmd::Execute as u8, vec![read_op("", doc)]),
                    Want::Results(vec![format!(r#"{{"db":{db},"doc":{doc}}}"#)]),
                )
            }
            4..=6 => {
                let doc = new_base + i;
                creates.push((db, doc));
                (
                    frame(
                        id,
                        db,
                        Cmd::Execute as u8,
                        vec![create_op("", doc, &format!(r#"{{"new":{doc}}}"#))],
                    ),
                    Want::Results(vec![String::new()]),
                )
            }
            7 => (
                frame(id, db, Cmd::Execute as u8, vec![read_op("", 999_999)]),
                Want::Results(vec!["document not found".into()]),
            ),
            8 => match i % 30 {
                8 => (frame(id, 0, Cmd::Stats as u8, vec![]), Want::OkLen(40)),
                18 => (
                    frame(id, db, Cmd::ListCollections as u8, vec![]),
                    Want::OkJson,
                ),
                _ => (
                    frame(id, 0, Cmd::SchedulerStats as u8, vec![]),
                    Want::OkJson,
                ),
            },
            _ => match i % 20 {
                9 => (
                    frame(id, 777_777, Cmd::Execute as u8, vec![read_op("", 1)]),
                    Want::Error(1, "database not open".into()),
                ),
                _ => (
                    frame(id, db, 99, vec![]),
                    Want::Error(1, "unknown command".into()),
                ),
            },
        };
        bytes.extend(f);
        assert!(want.insert(id, w).is_none());
    }
    (bytes, want, creates)
}

fn preload(c: &mut common::Client, db: u64) {
    let ops = (1..=200u64)
        .map(|d| create_op("", d, &format!(r#"{{"db":{db},"doc":{d}}}"#)))
        .collect();
    assert_eq!(c.execute(db, ops).0, 0);
}

/// Writes everything, then reads every reply; checks each id is answered exactly once.
/// Returns how many were rejected as `request queue is full` (only allowed when
/// `queue_full_ok`).
fn run(
    s: &Server,
    queue_full_ok: bool,
    new_base: u64,
) -> (usize, Vec<(u64, u64)>, HashMap<u64, bool>) {
    let mut c = s.connect();
    let a = c.open_db("pipe-a");
    let b = c.open_db("pipe-b");
    if new_base == 1_000 {
        preload(&mut c, a);
        preload(&mut c, b);
    }
    let (bytes, want, creates) = workload(a, b, new_base);
    let mut st = raw(s);
    let t = Instant::now();
    // Every request is written before any reply is read.
    st.write_all(&bytes).unwrap();
    let mut seen: HashMap<u64, bool> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < want.len() {
        match read_reply(&mut st, deadline) {
            Reply::Frame(r) => {
                let w = want
                    .get(&r.request_id)
                    .unwrap_or_else(|| panic!("reply to an unknown request id {}", r.request_id));
                let served = check(&r, w, queue_full_ok);
                assert!(
                    seen.insert(r.request_id, served).is_none(),
                    "request {} answered twice",
                    r.request_id
                );
            }
            other => panic!("{other:?} after {} of {} replies", seen.len(), want.len()),
        }
    }
    // Nothing more comes.
    match read_reply(&mut st, Instant::now() + Duration::from_millis(200)) {
        Reply::TimedOut => {}
        other => panic!("unexpected after the last reply: {other:?}"),
    }
    eprintln!("1000 pipelined requests answered in {:?}", t.elapsed());
    let rejected = seen.values().filter(|s| !**s).count();
    (rejected, creates, seen)
}

#[test]
fn thousand_pipelined_requests_each_answered_once() {
    // A queue deep enough for everything: every answer is the real one.
    let s = Server::start(&["--queue-depth", "2000"]);
    let (rejected, creates, _) = run(&s, false, 1_000);
    assert_eq!(rejected, 0);
    // The pipelined creates are all there.
    let mut c = s.connect();
    for (db, doc) in creates {
        assert_eq!(
            c.read(db, "", doc),
            (0, format!(r#"{{"new":{doc}}}"#).into_bytes())
        );
    }
}

#[test]
fn pipelining_past_the_queue_depth_is_answered_not_dropped() {
    // A queue of 5 per database and ~450 queued requests for each written in one
    // burst: the reader enqueues far faster than a worker serves (an fsync per batch),
    // so part of the burst is refused with `request queue is full`; every request
    // still gets exactly one answer, and a refused create did nothing.
    let s = Server::start(&["--queue-depth", "5"]);
    let (rejected, creates, seen) = run(&s, true, 1_000);
    eprintln!("{rejected} of 1000 refused with `request queue is full`");
    assert!(
        rejected > 0,
        "no request was refused: the queue bound was never hit"
    );
    assert!(rejected < 1000, "every request was refused");
    let mut c = s.connect();
    let rid = |i: u64| 0x5EED_0000_0000 + i * 7919;
    let mut k = 0;
    for i in 0..1000u64 {
        if matches!(i % 10, 4..=6) {
            let (db, doc) = creates[k];
            k += 1;
            let served = seen[&rid(i)];
            let (st, _) = c.read(db, "", doc);
            assert_eq!(
                st,
                if served { 0 } else { 2 },
                "create {doc}: served {served}"
            );
        }
    }
}

#[test]
fn many_pipelining_connections_at_once() {
    let s = Server::start(&["--queue-depth", "5000"]);
    let mut c = s.connect();
    let db = c.open_db("shared");
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let sock = s.socket.clone();
            std::thread::spawn(move || {
                let mut st = std::os::unix::net::UnixStream::connect(&sock).unwrap();
                let mut bytes = Vec::new();
                for i in 0..250u64 {
                    let doc = t * 1000 + i;
                    bytes.extend(frame(
                        i,
                        db,
                        Cmd::Execute as u8,
                        vec![create_op("", doc, &format!("{doc}"))],
                    ));
                    bytes.extend(frame(
                        10_000 + i,
                        db,
                        Cmd::Execute as u8,
                        vec![read_op("", doc)],
                    ));
                }
                st.write_all(&bytes).unwrap();
                let mut got = HashMap::new();
                let deadline = Instant::now() + Duration::from_secs(30);
                while got.len() < 500 {
                    match read_reply(&mut st, deadline) {
                        Reply::Frame(r) => assert!(got.insert(r.request_id, r).is_none()),
                        other => panic!("{other:?}"),
                    }
                }
                for i in 0..250u64 {
                    let doc = t * 1000 + i;
                    assert_eq!(got[&i].status, 0);
                    // Requests of one database run in arrival order: the read follows
                    // its create on the same connection.
                    let r = &got[&(10_000 + i)];
                    assert_eq!((r.status, results_text(r)), (0, vec![format!("{doc}")]));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
