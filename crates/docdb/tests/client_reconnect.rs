//! The Rust client survives server restarts: requests in flight when the connection
//! drops fail with `Error::Io`, the next call reconnects on its own, and database
//! handles keep working because ids survive restarts.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Server;
use docdb_client::{Batch, Client, ClientOptions};

#[test]
fn handles_keep_working_across_a_restart() {
    let mut server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("survivor").unwrap();
    let users = db.collection("users");
    db.create_collection("users").unwrap();
    db.create(1, r#"{"before":"restart"}"#).unwrap();
    users.create(1, "1").unwrap();

    let st = server.terminate(Duration::from_secs(20));
    assert!(st.success(), "{st}");
    server.spawn();

    // The same handles, no re-open: the first call reconnects transparently.
    assert_eq!(db.read(1).unwrap(), br#"{"before":"restart"}"#);
    assert_eq!(users.read(1).unwrap(), b"1");
    db.create(2, r#"{"after":"restart"}"#).unwrap();
    assert_eq!(client.open_db("survivor").unwrap().id(), db.id());

    // Twice, with a hard kill this time.
    server.kill();
    server.spawn();
    assert_eq!(db.read(2).unwrap(), br#"{"after":"restart"}"#);
    assert_eq!(client.stats().unwrap().total_dbs, 1);
}

#[test]
fn requests_in_flight_fail_with_io_and_later_ones_succeed() {
    // An fsync per write: 2,000 queued creates take far longer than the kill below, so
    // some of them are certainly still in flight when the server dies.
    let mut server = Server::start(&["--queue-depth", "4096", "--fsync-mode", "always"]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("inflight").unwrap();
    let pending: Vec<_> = (1..=2000u64)
        .map(|id| (id, db.submit(&Batch::new().create(id, "{}")).unwrap()))
        .collect();
    server.kill();
    let (mut acked, mut io) = (Vec::new(), 0);
    for (id, p) in pending {
        match p.wait() {
            Ok(r) => {
                assert!(r[0].is_ok(), "{r:?}");
                acked.push(id);
            }
            Err(e) => {
                assert!(e.is_io(), "{e:?}");
                io += 1;
            }
        }
    }
    eprintln!(
        "{} answered before the kill, {io} failed with Io",
        acked.len()
    );
    assert!(
        io >= 1,
        "no request was in flight at the kill: nothing tested"
    );
    server.spawn();
    // Acknowledged writes survived the kill; the connection is back.
    let mut stored = std::collections::HashSet::new();
    for row in db.scan().page_size(1000) {
        let (id, _) = row.unwrap();
        assert!((1..=2000).contains(&id), "unexpected document {id}");
        assert!(stored.insert(id), "document {id} scanned twice");
    }
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    db.create(5000, "{}").unwrap();
    assert_eq!(db.read(5000).unwrap(), b"{}");
}

#[test]
fn a_call_during_a_restart_waits_for_the_server() {
    let mut server = Server::start(&[]);
    let opts = ClientOptions::new().reconnect_timeout(Duration::from_secs(15));
    let client = Client::with_options(&server.socket, opts).unwrap();
    let db = client.open_db("patient").unwrap();
    db.create(1, "1").unwrap();

    server.terminate(Duration::from_secs(20));
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        server.spawn();
        server
    });
    let t = Instant::now();
    assert_eq!(db.read(1).unwrap(), b"1");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    let _server = restarter.join().unwrap();
}

#[test]
fn a_server_that_stays_down_is_reported_after_the_reconnect_timeout() {
    // One reconnect round lasts ROUND; it is long next to thread start-up, so the eight
    // threads below all wait behind the same round.
    const ROUND: Duration = Duration::from_secs(1);
    let mut server = Server::start(&[]);
    let opts = ClientOptions::new().reconnect_timeout(ROUND);
    let client = Client::with_options(&server.socket, opts).unwrap();
    let db = client.open_db("gone").unwrap();
    server.terminate(Duration::from_secs(20));

    let t = Instant::now();
    let e = db.read(1).unwrap_err();
    assert!(e.is_io(), "{e:?}");
    let one_round = t.elapsed();
    assert!(
        one_round >= ROUND - Duration::from_millis(50),
        "gave up before the reconnect timeout: {one_round:?}"
    );
    assert!(one_round < Duration::from_secs(5), "{one_round:?}");
    // Threads waiting behind a failed reconnect get its error without retrying: all
    // eight are answered after one more round. Were each to retry on its own, the
    // rounds would run one after another (the slot's lock is held while reconnecting):
    // eight rounds, 8 s.
    let t = Instant::now();
    let took: Vec<Duration> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    assert!(db.read(1).unwrap_err().is_io());
                    t.elapsed()
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all = t.elapsed();
    assert!(
        all < ROUND * 4,
        "8 threads took {all:?} ({took:?}): they retried one after another"
    );

    // And a client cannot be created at all without a server.
    assert!(Client::connect(&server.socket).unwrap_err().is_io());
}
