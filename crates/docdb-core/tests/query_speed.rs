//! The planner's effect on an equality query, embedded: 100 000 documents, the
//! queries/s of `{"k": v}` (10 matches each) with and without an index on `k`.
//! Ignored by default; run with
//! `cargo test --release -p docdb-core --test query_speed -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use docdb_core::config::FsyncMode;
use docdb_core::{Config, Database, IndexDef, Query};

const DOCS: u64 = 100_000;
const KEYS: u64 = 10_000;

/// This thread's CPU time (ns), from `/proc/thread-self/schedstat` (0 elsewhere): the
/// machine is shared, so CPU time per query is the steadier figure.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Queries/s (wall clock), CPU µs per query, documents read per query.
fn rate(db: &Database, min: Duration) -> (f64, f64, u64) {
    let cpu = cpu_ns();
    let mut n = 0u64;
    let mut examined = 0u64;
    let start = Instant::now();
    while start.elapsed() < min {
        let k = (n * 7919) % KEYS;
        let q = format!(r#"{{"filter":{{"k":"k{k}"}},"explain":true}}"#);
        let page = db
            .query("", &Query::parse(q.as_bytes()).expect("parse"))
            .expect("query");
        assert_eq!(page.rows.len() as u64, DOCS / KEYS);
        examined += page.plan.map_or(0, |p| p.examined);
        n += 1;
    }
    let cpu_us = (cpu_ns() - cpu) as f64 / 1000.0 / n.max(1) as f64;
    (
        n as f64 / start.elapsed().as_secs_f64(),
        cpu_us,
        examined / n.max(1),
    )
}

#[test]
#[ignore = "a measurement: prints queries/s"]
fn equality_queries_per_second_with_and_without_an_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Config::default();
    c.wal.fsync.mode = FsyncMode::None;
    let db = Database::open(dir.path(), c).expect("open");
    for id in 0..DOCS {
        let doc = format!(
            r#"{{"k":"k{}","n":{id},"name":"user {id}","tags":["a","b"]}}"#,
            id % KEYS
        );
        db.create("", id, doc.as_bytes()).expect("create");
    }
    let (scan, scan_cpu, scan_examined) = rate(&db, Duration::from_secs(3));
    let def = IndexDef {
        name: "by_k".into(),
        fields: vec![("k".into(), 1)],
        unique: false,
    };
    db.create_index("", def).expect("create_index");
    let (indexed, indexed_cpu, indexed_examined) = rate(&db, Duration::from_secs(3));
    println!(
        "{DOCS} documents, equality on k (10 matches):\n  scan:  {scan:.1} queries/s, \
         {scan_cpu:.0} µs CPU/query, {scan_examined} documents read/query\n  index: \
         {indexed:.0} queries/s, {indexed_cpu:.1} µs CPU/query, {indexed_examined} \
         documents read/query\n  CPU per query: {:.0}x less with the index",
        scan_cpu / indexed_cpu.max(0.001)
    );
}
