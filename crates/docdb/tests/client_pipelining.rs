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
