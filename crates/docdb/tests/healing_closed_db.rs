#![allow(clippy::unwrap_used)]
//! The background healer covers closed databases (SPEC §5, `[healing] interval_secs =
//! 1`): a database is closed with CloseDB, one document's data-file payload is damaged
//! on disk while the server runs, and — with no client touching that database — the
//! healer's offline verify finds it, opens the database, writes the repair (a second,
//! intact copy of the document appears in the data file) and closes it again. HealStats
//! afterwards shows the background healing, and the read serves the original bytes.

mod common;

use std::time::{Duration, Instant};

use common::{corrupt_payload, current_data_file, payload_offsets, unique_doc, Server};
use docdb_protocol::Command as Cmd;

const DB: &str = "healclosed";

/// Waits until the server has closed the database (its LOCK is free).
fn wait_closed(dir: &std::path::Path) {
    let started = Instant::now();
    loop {
        let f = std::fs::File::open(dir.join("LOCK")).unwrap();
        if f.try_lock_shared().is_ok() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "database not closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn background_scan_heals_a_closed_database() {
    let s = Server::start_with_config("[healing]\ninterval_secs = 1\n", &[]);
    let mut c = s.connect();
    let db = c.open_db(DB);
    let docs: Vec<(u64, String)> = (1..=10)
        .map(|id| (id, unique_doc("closedheal", id, 150)))
        .collect();
    c.write_many(db, "", &docs, false);
    assert_eq!(c.call(db, Cmd::CloseDb, vec![]).status, 0);
    let dir = s.db_dir(DB);
    wait_closed(&dir);

    let data = current_data_file(&dir);
    corrupt_payload(&data, "_default", &docs[5].1); // id 6
    let damaged_at = Instant::now();
    // No request reaches this database until the repair is on disk.
    loop {
        let bytes = std::fs::read(&data).unwrap();
        if payload_offsets(&bytes, "_default", docs[5].1.as_bytes()).len() == 1 {
            break; // the repair's record: the damaged one no longer matches
        }
        assert!(
            damaged_at.elapsed() < Duration::from_secs(10),
            "the closed database was not healed within 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("closed database healed after {:?}", damaged_at.elapsed());
    // It was closed again after healing.
    wait_closed(&dir);

    let st = c.heal_stats(db);
    assert_eq!(st["BackgroundHealings"], 1, "{st}");
    assert_eq!(st["DocumentsHealed"], 1, "{st}");
    assert_eq!(st["DocumentsCorrupted"], 1, "{st}");
    assert_eq!(st["OnDemandHealings"], 0, "{st}");
    assert!(st["TotalScans"].as_u64().unwrap() >= 2, "{st}");
    assert_ne!(st["LastScanTime"], "0001-01-01T00:00:00Z", "{st}");
    assert_eq!(c.read(db, "", 6), (0, docs[5].1.clone().into_bytes()));
    for (id, json) in &docs {
        assert_eq!(c.read(db, "", *id), (0, json.clone().into_bytes()));
    }
    let after = c.heal_stats(db);
    assert_eq!(
        after["DocumentsHealed"], 1,
        "no read needed healing: {after}"
    );
}
