//! The Rust client decodes the informational replies of the real server: Stats,
//! ListDBs, Metrics, SchedulerStats, and the healing and close commands.
#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use docdb_client::Client;

#[test]
fn stats_list_dbs_metrics_and_scheduler_stats_decode() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let a = client.open_db("alpha").unwrap();
    let b = client.open_db("beta").unwrap();
    for id in 1..=3 {
        a.create(id, r#"{"k":"vvvvvvvv"}"#).unwrap();
    }
    b.create(1, "{}").unwrap();

    let s = client.stats().unwrap();
    assert_eq!(s.total_dbs, 2);
    assert_eq!(s.active_dbs, 2);
    assert!(s.total_txns >= 4, "{s:?}");
    assert!(s.wal_size > 0, "{s:?}");
    assert!(s.memory_used > 0, "{s:?}");

    let dbs = client.list_dbs().unwrap();
    assert_eq!(
        dbs.iter()
            .map(|d| (d.name.as_str(), d.id))
            .collect::<Vec<_>>(),
        vec![("alpha", a.id()), ("beta", b.id())]
    );
    assert_eq!(dbs[0].docs_live, 3);
    assert_eq!(dbs[1].docs_live, 1);
    assert!(dbs[0].memory_used > dbs[1].memory_used, "{dbs:?}");
    assert!(dbs[0].wal_size > 0);
    assert!(
        dbs[0].created_at.len() >= 20 && dbs[0].created_at.contains('T'),
        "RFC 3339: {:?}",
        dbs[0].created_at
    );

    let metrics = client.metrics().unwrap();
    assert!(metrics.contains("docdb_operations_total"), "{metrics}");
    assert!(metrics.contains("# TYPE"), "{metrics}");

    let sched = client.scheduler_stats().unwrap();
    for key in [
        "queue_depths",
        "avg_queue_depth",
        "worker_count",
        "policy",
        "panics",
        "worker_pool",
        "wal_group_commit",
    ] {
        assert!(sched.get(key).is_some(), "{key} missing from {sched}");
    }
    assert!(
        sched["worker_pool"].get("pool_capacity").is_some(),
        "{sched}"
    );
    let group = &sched["wal_group_commit"][a.id().to_string()];
    assert!(group["total_records"].as_u64().unwrap() >= 3, "{sched}");
}

#[test]
fn heal_close_and_reopen() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("healing").unwrap();
    db.create(1, r#"{"intact":true}"#).unwrap();

    // Nothing is corrupt: heal succeeds, heal_all heals nothing.
    db.heal(1).unwrap();
    assert_eq!(db.heal_all().unwrap(), Vec::<u64>::new());
    let hs = db.heal_stats().unwrap();
    assert!(hs.total_scans >= 1, "{hs:?}");
    assert_eq!(hs.documents_healed, 0);
    assert_eq!(hs.last_healing_time, None, "never healed: {hs:?}");
    assert!(hs.unrecoverable.is_empty());
    assert!(db.heal(2).is_err(), "no document 2");

    // Close: the handle stays usable (the server reopens the database on next use).
    db.close().unwrap();
    assert_eq!(db.read(1).unwrap(), br#"{"intact":true}"#);
    db.create(2, "2").unwrap();
    assert_eq!(client.stats().unwrap().active_dbs, 1);
}
