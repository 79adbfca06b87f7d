#![allow(clippy::unwrap_used)]
//! Healing on read (SPEC §5, default `healing.on_read_corruption = true`), through the
//! real binary: four documents (three in `_default`, one in a named collection) get a
//! flipped byte inside their data-file payload while the server is stopped. After a
//! restart
//! - reading one returns exactly the original bytes, and HealStats counts the repair;
//! - the repair is durable: after another restart the same read needs no healing;
//! - HealAll repairs the other three and reports exactly their ids (with
//!   `healing.max_batch_size = 2`, so the repairs span batches); HealStats counts
//!   them; after one more restart nothing is left to heal and every document reads
//!   back exactly as written.
//!
//! `docdb check` is run on the stopped data dir between the steps. It reads every
//! record of the data file, superseded ones included, so the damaged records that
//! healing superseded are still reported (observed: they are named as "corrupt
//! document" until a compaction rewrites the file). The test asserts only that the
//! documents not yet healed are reported and that no intact document is.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{corrupt_payload, current_data_file, run_docdb, unique_doc, Server};

const DB: &str = "healread";
const NOTES: &str = "notes";

/// Ids named on the "corrupt document: _default/<id>" lines of a check report.
/// (Ids of the `notes` collection are 101..=105, so they cannot be confused.)
fn reported_corrupt(stdout: &str) -> BTreeSet<u64> {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("corrupt document: _default/")
                .or_else(|| l.strip_prefix("corrupt document: notes/"))
        })
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

fn check(data_dir: &Path) -> (i32, String) {
    let out = run_docdb(&["check", "--data-dir", data_dir.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    eprintln!(
        "docdb check:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), stdout)
}

#[test]
fn read_heals_exactly_and_heal_all_heals_the_rest_durably() {
    let mut s = Server::start_with_config("[healing]\nmax_batch_size = 2\n", &[]);
    let mut c = s.connect();
    let db = c.open_db(DB);
    let docs: Vec<(u64, String)> = (1..=20)
        .map(|id| (id, unique_doc("onread", id, 160)))
        .collect();
    c.write_many(db, "", &docs, false);
    let doc = |id: u64| docs[id as usize - 1].1.as_bytes().to_vec();
    c.create_collection(db, NOTES);
    let notes: Vec<(u64, String)> = (101..=105)
        .map(|id| (id, unique_doc("note", id, 160)))
        .collect();
    c.write_many(db, NOTES, &notes, false);
    let note = |id: u64| notes[id as usize - 101].1.as_bytes().to_vec();
    let note_ids: Vec<u64> = notes.iter().map(|d| d.0).collect();
    drop(c);
    s.stop();

    let data_file = current_data_file(&s.db_dir(DB));
    for id in [5, 12, 17] {
        corrupt_payload(&data_file, "_default", &docs[id as usize - 1].1);
    }
    corrupt_payload(&data_file, NOTES, &notes[2].1); // 103
    let (code, out) = check(&s.data_dir());
    assert_eq!(code, 1, "check must fail on corrupt payloads");
    assert_eq!(reported_corrupt(&out), BTreeSet::from([5, 12, 17, 103]));

    // 1. A read heals: the client gets exactly the original document.
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db(DB);
    assert_eq!(c.read(db, "", 5), (0, doc(5)));
    let st = c.heal_stats(db);
    assert!(st["DocumentsCorrupted"].as_u64().unwrap() >= 1, "{st}");
    assert!(st["DocumentsHealed"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["DocumentsHealed"], 1, "only the read document: {st}");
    assert_eq!(st["BackgroundHealings"], 0, "{st}");
    assert_ne!(st["LastHealingTime"], "0001-01-01T00:00:00Z", "{st}");
    assert_eq!(st["Unrecoverable"], serde_json::json!([]), "{st}");
    // Reading it again serves the repaired record: no second healing.
    assert_eq!(c.read(db, "", 5), (0, doc(5)));
    assert_eq!(c.heal_stats(db)["DocumentsHealed"], 1);
    drop(c);
    s.stop();

    // 2. Durable: the offline check still sees 12, 17, 103 (never read). Whether it
    // also names 5 (its damaged record is superseded but still in the file) is
    // printed, not asserted.
    let (code, out) = check(&s.data_dir());
    assert_eq!(code, 1);
    let reported = reported_corrupt(&out);
    assert!(
        reported.is_superset(&BTreeSet::from([12, 17, 103]))
            && reported.is_subset(&[5, 12, 17, 103].into()),
        "{reported:?}"
    );
    eprintln!(
        "observed: after healing 5, check reports {reported:?} (5 included: {})",
        reported.contains(&5)
    );

    s.spawn();
    let mut c = s.connect();
    let db = c.open_db(DB);
    assert_eq!(c.read(db, "", 5), (0, doc(5)));
    let st = c.heal_stats(db);
    assert_eq!(
        st["DocumentsHealed"], 0,
        "the repair survived the restart: {st}"
    );
    assert_eq!(st["DocumentsCorrupted"], 0, "{st}");

    // 3. HealAll heals the rest and reports exactly their ids.
    let mut healed = c.heal_all(db);
    healed.sort_unstable();
    assert_eq!(healed, vec![12, 17, 103]);
    let st = c.heal_stats(db);
    assert_eq!(st["DocumentsHealed"], 3, "{st}");
    assert_eq!(st["DocumentsCorrupted"], 3, "{st}");
    assert_eq!(st["OnDemandHealings"], 3, "{st}");
    assert_eq!(st["BackgroundHealings"], 0, "{st}");
    assert_eq!(st["TotalScans"], 1, "{st}");
    assert_ne!(st["LastScanTime"], "0001-01-01T00:00:00Z", "{st}");
    assert_eq!(c.heal_all(db), Vec::<u64>::new(), "nothing left right away");
    for (id, st, bytes) in c.read_many(db, "", &docs.iter().map(|d| d.0).collect::<Vec<_>>()) {
        assert_eq!((st, bytes), (0, doc(id)), "document {id}");
    }
    for (id, st, bytes) in c.read_many(db, NOTES, &note_ids) {
        assert_eq!((st, bytes), (0, note(id)), "note {id}");
    }
    drop(c);
    s.stop();

    let (code, out) = check(&s.data_dir());
    let reported = reported_corrupt(&out);
    assert!(reported.is_subset(&[5, 12, 17, 103].into()), "{reported:?}");
    eprintln!("observed: after healing everything, check exits {code} and reports {reported:?}");

    // 4. A second restart finds nothing to heal; everything reads back exactly.
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db(DB);
    for (id, st, bytes) in c.read_many(db, "", &docs.iter().map(|d| d.0).collect::<Vec<_>>()) {
        assert_eq!((st, bytes), (0, doc(id)), "document {id}");
    }
    for (id, st, bytes) in c.read_many(db, NOTES, &note_ids) {
        assert_eq!((st, bytes), (0, note(id)), "note {id}");
    }
    assert_eq!(c.heal_all(db), Vec::<u64>::new());
    let st = c.heal_stats(db);
    assert_eq!(st["DocumentsHealed"], 0, "{st}");
    assert_eq!(st["DocumentsCorrupted"], 0, "{st}");
    assert_eq!(st["TotalScans"], 1, "{st}");
}
