#![allow(clippy::unwrap_used)]
//! Scan pagination under concurrent writes (issue 15): while writers create, update
//! and delete documents between the pages, a paged scan returns every document that
//! existed for the whole scan exactly once, in strictly increasing id order, each with
//! the bytes of one of its committed versions.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use docdb_core::{Config, Database};

/// Stable documents: even ids, never touched during the scan except by updates.
const STABLE: u64 = 2_000;

fn doc(id: u64, v: u64) -> Vec<u8> {
    format!(r#"{{"id":{id},"v":{v}}}"#).into_bytes()
}

#[test]
fn a_paged_scan_under_concurrent_writes_returns_each_lasting_document_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.wal.fsync.mode = docdb_core::FsyncMode::None;
    let db = Arc::new(Database::open(dir.path(), cfg).unwrap());
    for i in 0..STABLE {
        db.create("_default", 2 * i, &doc(2 * i, 0)).unwrap();
    }
    // Odd ids come and go during the scan; even ids are updated.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let odd = 2 * ((n * 7 + w * 13) % STABLE) + 1;
                    if db.create("_default", odd, &doc(odd, n)).is_err() {
                        let _ = db.delete("_default", odd);
                    }
                    let even = 2 * ((n * 11 + w) % STABLE);
                    db.update("_default", even, &doc(even, n + 1)).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();

    let mut seen = Vec::new();
    let mut after = 0u64;
    let mut first = true;
    let mut pages = 0;
    loop {
        let rows = db.scan("_default", after, 7).unwrap();
        pages += 1;
        for (id, bytes) in &rows {
            // Scan from 0 includes id 0; later pages start strictly after `after`.
            assert!(
                first || *id > after,
                "id {id} repeated or out of order (after {after})"
            );
            let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(
                v["id"].as_u64(),
                Some(*id),
                "row {id} holds another document"
            );
            seen.push(*id);
        }
        first = false;
        match rows.last() {
            Some((id, _)) if rows.len() == 7 => after = *id,
            _ => break,
        }
        // Let the writers in between pages.
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(writes > 0, "the writers never ran during the scan");
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an id was returned twice");
    let evens: Vec<u64> = seen.iter().copied().filter(|i| i % 2 == 0).collect();
    let want: Vec<u64> = (0..STABLE).map(|i| 2 * i).collect();
    assert_eq!(evens, want, "a document present throughout was skipped");
    eprintln!(
        "{pages} pages, {writes} concurrent write pairs, {} rows",
        seen.len()
    );
}
