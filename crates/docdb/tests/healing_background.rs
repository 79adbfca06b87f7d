#![allow(clippy::unwrap_used)]
//! The background healing scan (SPEC §5, `[healing] interval_secs = 1`): after a
//! document's payload is damaged and the server restarted, the scan repairs it within
//! a few seconds without any client reading it — HealStats shows it as a background
//! healing — and the next read serves the original bytes without healing again.
//! (The scan covers open databases; the client opens the database but reads nothing.)

mod common;

use std::time::{Duration, Instant};

use common::{corrupt_payload, current_data_file, unique_doc, Server};

const DB: &str = "healbg";

#[test]
fn background_scan_heals_without_a_read() {
    let mut s = Server::start_with_config("[healing]\ninterval_secs = 1\n", &[]);
    let mut c = s.connect();
    let db = c.open_db(DB);
    let docs: Vec<(u64, String)> = (1..=10)
        .map(|id| (id, unique_doc("background", id, 150)))
        .collect();
    c.write_many(db, "", &docs, false);
    drop(c);
    s.stop();

    corrupt_payload(&current_data_file(&s.db_dir(DB)), "_default", &docs[3].1); // id 4
    s.spawn();
    let mut c = s.connect();
    let started = Instant::now();
    let db = c.open_db(DB);
    let st = loop {
        let st = c.heal_stats(db);
        if st["BackgroundHealings"].as_u64().unwrap() >= 1 {
            break st;
        }
        // The scan runs every second here (default: hourly); 20 s is room for a
        // loaded VM and still nowhere near the default.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no background healing within 20 s: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("background healing after {:?}: {st}", started.elapsed());
    assert_eq!(st["BackgroundHealings"], 1, "{st}");
    assert_eq!(st["OnDemandHealings"], 0, "{st}");
    assert_eq!(st["DocumentsHealed"], 1, "{st}");
    assert_eq!(st["DocumentsCorrupted"], 1, "{st}");
    assert!(st["TotalScans"].as_u64().unwrap() >= 1, "{st}");
    assert_ne!(st["LastScanTime"], "0001-01-01T00:00:00Z", "{st}");
    assert_ne!(st["LastHealingTime"], "0001-01-01T00:00:00Z", "{st}");

    assert_eq!(c.read(db, "", 4), (0, docs[3].1.clone().into_bytes()));
    let after = c.heal_stats(db);
    assert_eq!(
        after["DocumentsHealed"], 1,
        "the read needed no healing: {after}"
    );
    assert_eq!(c.heal_all(db), Vec::<u64>::new());
}
