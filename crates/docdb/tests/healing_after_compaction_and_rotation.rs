#![allow(clippy::unwrap_used)]
//! Healing finds a document's copy in an older WAL segment, and still works across a
//! compaction (the data file rewritten as a new generation), through the real binary.
//!
//! Config: 1 MiB WAL segments (kept: `keep_segments = 100`), a checkpoint every MiB,
//! compaction of data files over 1 MiB that are more than 10 % dead. The wire has no
//! "compact" command, so compaction is triggered the way it happens in production:
//! overwrite documents until a checkpoint finds the file due, and wait for the data
//! file's generation to change (bounded; the test fails if it never does).
//!
//! 1. 600 documents of ~2 KiB: the WAL rolls (≥ 2 segments); document 1's only WAL
//!    copy is in segment 1, no longer the active one.
//! 2. Stopped: documents 1 and 2 damaged in data generation 1. Restarted: reading 1
//!    heals it from the old segment.
//! 3. Documents 300..600 overwritten until a compaction rewrites the file. The
//!    compaction copies records raw, so 2 is still damaged in the new generation;
//!    reading it heals it.
//! 4. Stopped: documents 3 (copied by the compaction) and 450 (rewritten after the
//!    overwrite) damaged in the new generation. Restarted: HealAll heals exactly those;
//!    every document reads back as last written, also after another restart.

mod common;

use std::time::{Duration, Instant};

use common::{corrupt_payload, current_data_file, find_all, unique_doc, wal_segments, Server};

const DB: &str = "healcompact";
const CONFIG: &str = "\
[wal]
max_file_size_mb = 1
keep_segments = 100
[checkpoint]
interval_mb = 1
[compaction]
size_mb = 1
tombstone_ratio = 0.1
";
const N: u64 = 600;
const SIZE: usize = 2000;

fn generation(s: &Server) -> u64 {
    let f = current_data_file(&s.db_dir(DB));
    f.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

#[test]
fn heals_from_an_old_segment_and_across_compaction() {
    let mut s = Server::start_with_config(CONFIG, &[]);
    let mut c = s.connect();
    let db = c.open_db(DB);
    // Current content of every document, by id (index = id - 1).
    let mut docs: Vec<(u64, String)> = (1..=N).map(|id| (id, unique_doc("v1", id, SIZE))).collect();
    c.write_many(db, "", &docs, false);
    drop(c);
    s.stop();

    // 1. Rotation: several segments, and document 1's copy is only in the first.
    let segs = wal_segments(&s.db_dir(DB));
    assert!(segs.len() >= 2, "the WAL rolled: {segs:?}");
    let in_seg = |seg: &std::path::Path, json: &str| {
        !find_all(&std::fs::read(seg).unwrap(), json.as_bytes()).is_empty()
    };
    assert!(in_seg(&segs[0], &docs[0].1));
    assert!(!in_seg(segs.last().unwrap(), &docs[0].1));
    assert_eq!(generation(&s), 1, "no compaction yet (nothing is dead)");

    // 2. Damage 1 and 2; reading 1 heals it from the old segment.
    let data_file = current_data_file(&s.db_dir(DB));
    corrupt_payload(&data_file, "_default", &docs[0].1);
    corrupt_payload(&data_file, "_default", &docs[1].1);
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db(DB);
    assert_eq!(c.read(db, "", 1), (0, docs[0].1.clone().into_bytes()));
    assert_eq!(c.heal_stats(db)["DocumentsHealed"], 1);

    // 3. Overwrite until a compaction replaces the data file.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut round = 0;
    while generation(&s) == 1 {
        assert!(
            Instant::now() < deadline,
            "no compaction after {round} overwrite rounds"
        );
        if round < 10 {
            round += 1;
            let tag = format!("v{}", round + 1);
            for d in &mut docs[299..] {
                d.1 = unique_doc(&tag, d.0, SIZE);
            }
            c.write_many(db, "", &docs[299..], true);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "compacted after {round} overwrite round(s): generation {}",
        generation(&s)
    );
    // Document 2's damaged record was copied as it was; the read still heals it.
    assert_eq!(c.read(db, "", 2), (0, docs[1].1.clone().into_bytes()));
    let st = c.heal_stats(db);
    assert_eq!(st["DocumentsHealed"], 2, "{st}");
    assert_eq!(st["Unrecoverable"], serde_json::json!([]), "{st}");
    drop(c);
    s.stop();

    // 4. Damage records of the new generation.
    let data_file = current_data_file(&s.db_dir(DB));
    assert!(generation(&s) > 1);
    corrupt_payload(&data_file, "_default", &docs[2].1);
    corrupt_payload(&data_file, "_default", &docs[449].1);
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db(DB);
    let mut healed = c.heal_all(db);
    healed.sort_unstable();
    assert_eq!(healed, vec![3, 450]);
    let ids: Vec<u64> = (1..=N).collect();
    for (id, st, bytes) in c.read_many(db, "", &ids) {
        assert_eq!(
            (st, bytes),
            (0, docs[id as usize - 1].1.clone().into_bytes()),
            "document {id}"
        );
    }
    drop(c);
    s.stop();

    s.spawn();
    let mut c = s.connect();
    let db = c.open_db(DB);
    assert_eq!(c.heal_all(db), Vec::<u64>::new());
    for (id, st, bytes) in c.read_many(db, "", &ids) {
        assert_eq!(
            (st, bytes),
            (0, docs[id as usize - 1].1.clone().into_bytes()),
            "document {id}"
        );
    }
    assert_eq!(c.heal_stats(db)["DocumentsHealed"], 0);
}
