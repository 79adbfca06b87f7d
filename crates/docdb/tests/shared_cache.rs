#![allow(clippy::unwrap_used)]

//! The read cache all databases of a server share (`memory.shared_cache_mb`): a tenant
//! reading everything it has cannot grow the server past the cache's budget, and no
//! tenant is ever served another's bytes, although their documents have the same ids,
//! collections and commit sequence numbers.

mod common;
mod support;

use common::{proc_status_kib, Server};
use support::metrics;

const DBS: u64 = 8;
const DOCS: u64 = 2_000;
/// About 4 KiB a document: 8 × 2,000 of them are ~64 MiB, sixteen times the budget.
const DOC_LEN: usize = 4 * 1024;

fn doc(db: u64, id: u64) -> String {
    // Every tenant's document `id` differs, at the start and in its length.
    format!(
        r#"{{"tenant":{db},"id":{id},"pad":"{}"}}"#,
        "x".repeat(DOC_LEN + db as usize)
    )
}

fn sample(m: &str, name: &str) -> f64 {
    m.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{m}"))
}

#[test]
fn tenants_reading_everything_stay_within_the_cache_budget_and_get_their_own_bytes() {
    let s = Server::start_with_config("[memory]\nshared_cache_mb = 4\n", &[]);
    let pid = s.pid();
    let mut c = s.connect();
    let dbs: Vec<u64> = (0..DBS).map(|i| c.open_db(&format!("tenant{i}"))).collect();
    for (i, &db) in dbs.iter().enumerate() {
        let docs: Vec<(u64, String)> = (1..=DOCS).map(|id| (id, doc(i as u64, id))).collect();
        c.write_many(db, "", &docs, false);
    }
    let before = proc_status_kib(pid, "VmHWM");

    // Every tenant reads all it has, twice, the tenants taking turns chunk by chunk so
    // that the same (collection, id, sequence number) of several tenants meet in the
    // cache.
    let ids: Vec<u64> = (1..=DOCS).collect();
    for _ in 0..2 {
        for chunk in ids.chunks(100) {
            for (i, &db) in dbs.iter().enumerate() {
                for (id, st, bytes) in c.read_many(db, "", chunk) {
                    assert_eq!(st, 0);
                    assert!(
                        bytes == doc(i as u64, id).as_bytes(),
                        "tenant {i} doc {id}: got {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
                    );
                }
            }
        }
    }

    let grew_mib = proc_status_kib(pid, "VmHWM").saturating_sub(before) / 1024;
    let m = metrics(&mut c);
    let cached = sample(&m, "docdb_doc_cache_bytes");
    let hits = sample(&m, "docdb_doc_cache_hits_total");
    let misses = sample(&m, "docdb_doc_cache_misses_total");
    println!(
        "read 2 × {} MiB: peak RSS +{grew_mib} MiB, cache {cached} B, {hits} hits, {misses} misses",
        (DBS * DOCS * DOC_LEN as u64) >> 20
    );
    assert!(cached <= (4 << 20) as f64, "cache holds {cached} B");
    assert!(cached > (2 << 20) as f64, "cache holds only {cached} B");
    assert!(misses >= (DBS * DOCS) as f64, "{misses} misses");
    // Holding what was read would be 64 MiB and more; the budget is 4.
    assert!(grew_mib < 32, "server peak RSS grew by {grew_mib} MiB");
}

#[test]
fn hot_documents_are_served_from_the_cache() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("hot");
    let docs: Vec<(u64, String)> = (1..=50).map(|id| (id, doc(0, id))).collect();
    c.write_many(db, "", &docs, false);
    let ids: Vec<u64> = (1..=50).collect();
    for _ in 0..4 {
        for (id, st, bytes) in c.read_many(db, "", &ids) {
            assert_eq!((st, bytes), (0, doc(0, id).into_bytes()));
        }
    }
    // An update is read as itself, never as the cached older version.
    c.write_many(db, "", &[(7, r#"{"new":true}"#.to_string())], true);
    assert_eq!(c.read(db, "", 7), (0, br#"{"new":true}"#.to_vec()));
    let m = metrics(&mut c);
    // On the defaults: 50 misses, then every read a hit.
    assert!(
        sample(&m, "docdb_doc_cache_hits_total") >= 150.0,
        "{}",
        m.lines()
            .filter(|l| l.starts_with("docdb_doc_cache"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
