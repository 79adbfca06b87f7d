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
    let mut server = Server::start(&["--queue-depth", "4096"]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("inflight").unwrap();
    let pending: Vec<_> = (1..=2000u64)
        .map(|id| db.submit(&Batch::new().create(id, "{}")).unwrap())
        .collect();
    server.kill();
    let (mut ok, mut io) = (0, 0);
    for p in pending {
        match p.wait() {
            Ok(r) => {
                assert!(r[0].is_ok(), "{r:?}");
                ok += 1;
            }
            Err(e) => {
                assert!(e.is_io(), "{e:?}");
                io += 1;
            }
        }
    }
    eprintln!("{ok} answered before the kill, {io} failed with Io");
    server.spawn();
    // Acknowledged writes survived the kill; the connection is back.
    let rows = db.scan().page_size(1000).count();
    assert!(rows >= ok, "{rows} documents, {ok} acknowledged");
    db.create(5000, "{}").unwrap();
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
    let mut server = Server::start(&[]);
    let opts = ClientOptions::new().reconnect_timeout(Duration::from_millis(300));
    let client = Client::with_options(&server.socket, opts).unwrap();
    let db = client.open_db("gone").unwrap();
    server.terminate(Duration::from_secs(20));

    let t = Instant::now();
    let e = db.read(1).unwrap_err();
    assert!(e.is_io(), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Threads waiting behind a failed reconnect get its error without retrying.
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| assert!(db.read(1).unwrap_err().is_io()));
        }
    });
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // And a client cannot be created at all without a server.
    assert!(Client::connect(&server.socket).unwrap_err().is_io());
}
