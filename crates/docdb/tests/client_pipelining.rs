//! The Rust client keeps many requests in flight on one connection: 8 threads share
//! one `Client`, each with 125 requests outstanding at once, and every response
//! reaches the request it answers.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::Server;
use docdb_client::{Batch, Client, Database};
use serde_json::{json, Value};

const THREADS: u64 = 8;
const PER_THREAD: u64 = 125;

/// Each thread creates its documents with all its requests in flight, then reads
/// them back the same way, checking every reply is its own.
fn pipelined_round_trip(db: &Database) {
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let db = db.clone();
            s.spawn(move || {
                let ids = t * 10_000..t * 10_000 + PER_THREAD;
                let pending: Vec<_> = ids
                    .clone()
                    .map(|id| {
                        db.submit(&Batch::new().create_json(id, &json!({"id": id, "t": t})))
                            .unwrap()
                    })
                    .collect();
                for p in pending {
                    let r = p.wait().unwrap();
                    assert!(r[0].is_ok(), "{r:?}");
                }
                let pending: Vec<_> = ids
                    .clone()
                    .map(|id| (id, db.submit(&Batch::new().read(id)).unwrap()))
                    .collect();
                for (id, p) in pending {
                    let mut r = p.wait().unwrap();
                    let doc: Value =
                        serde_json::from_slice(&r.remove(0).unwrap().unwrap()).unwrap();
                    assert_eq!(doc, json!({"id": id, "t": t}));
                }
            });
        }
    });
}

#[test]
fn a_thousand_requests_in_flight_from_eight_threads_on_one_client() {
    // Every request of this test may sit in the database's queue at once.
    let server = Server::start(&["--queue-depth", "4096"]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("pipeline").unwrap();
    let t = Instant::now();
    pipelined_round_trip(&db);
    eprintln!(
        "{} pipelined requests in {:?}",
        2 * THREADS * PER_THREAD,
        t.elapsed()
    );
    assert_eq!(
        db.scan().page_size(1000).count() as u64,
        THREADS * PER_THREAD
    );

    // Blocking calls from many threads share the connection too.
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let db = db.clone();
            s.spawn(move || {
                for id in t * 10_000..t * 10_000 + 20 {
                    db.update_json(id, &json!({"updated": id})).unwrap();
                    assert_eq!(db.read_json::<Value>(id).unwrap(), json!({"updated": id}));
                }
            });
        }
    });
}

#[test]
fn a_pool_spreads_requests_over_several_connections() {
    let server = Server::start(&["--queue-depth", "4096"]);
    let client = Client::pool(&server.socket, 4).unwrap();
    let db = client.open_db("pool").unwrap();
    pipelined_round_trip(&db);
    let metrics = client.metrics().unwrap();
    let open_connections: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("docdb_connections "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(open_connections, 4.0, "one per pooled connection");
    assert_eq!(client.stats().unwrap().active_dbs, 1);
}

#[test]
fn responses_are_waited_for_in_any_order_and_dropped_requests_do_not_stall_others() {
    // Callers take turns reading the connection: a request nobody waits for yet, or
    // one whose caller gave up on it, must never hold the others' responses.
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("order").unwrap();
    let pending: Vec<_> = (0..50u64)
        .map(|id| {
            db.submit(&Batch::new().create_json(id, &json!({"id": id})))
                .unwrap()
        })
        .collect();
    // Newest first: the first wait reads the other 49 responses for their owners.
    for p in pending.into_iter().rev() {
        assert!(p.wait().unwrap()[0].is_ok());
    }
    // Half of these are dropped unwaited while another thread waits for the rest.
    let mut pending: Vec<_> = (0..50u64)
        .map(|id| db.submit(&Batch::new().read(id)).unwrap())
        .collect();
    let kept: Vec<_> = pending.drain(..25).collect();
    std::thread::scope(|s| {
        s.spawn(move || {
            for p in kept {
                assert!(p.wait().unwrap()[0].is_ok());
            }
        });
        drop(pending);
    });
    // The connection is still in order for a plain call.
    assert_eq!(db.read_json::<Value>(7).unwrap(), json!({"id": 7}));
}

#[test]
fn a_request_timeout_fails_that_call_and_the_connection_stays_usable() {
    let server = Server::start(&[]);
    let opts = docdb_client::ClientOptions::new()
        .request_timeout(Some(std::time::Duration::from_millis(200)));
    let client = Client::with_options(&server.socket, opts).unwrap();
    let db = client.open_db("timeout").unwrap();
    db.create_json(1, &json!({"a": 1})).unwrap();
    // Stop the server from answering (SIGSTOP), so the next call times out.
    let pid: libc::pid_t = server.pid();
    // SAFETY: signals to the server process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // The stop takes effect asynchronously; wait until the kernel reports it.
    let stat = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(&stat).unwrap().contains(") T ") {
        assert!(Instant::now() < deadline, "the server never stopped");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let t = Instant::now();
    let e = db.read(1).unwrap_err();
    assert!(e.is_io(), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // The late response is discarded; the next call gets its own. A server just woken
    // on a loaded machine may miss the 200 ms timeout again: only a timeout is retried,
    // and every answer must be the one its own call asked for.
    let retry = |what: &str, f: &mut dyn FnMut() -> Result<Value, docdb_client::Error>| {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match f() {
                Ok(v) => return v,
                Err(e) if e.is_io() && Instant::now() < deadline => continue,
                Err(e) => panic!("{what}: {e}"),
            }
        }
    };
    assert_eq!(
        retry("read 1", &mut || db.read_json::<Value>(1)),
        json!({"a": 1})
    );
    // A create whose answer timed out may have been applied: its retry then conflicts.
    retry(
        "create 2",
        &mut || match db.create_json(2, &json!({"a": 2})) {
            Err(e) if e.is_conflict() => Ok(Value::Null),
            r => r.map(|()| Value::Null),
        },
    );
    assert_eq!(
        retry("read 2", &mut || db.read_json::<Value>(2)),
        json!({"a": 2})
    );
}
