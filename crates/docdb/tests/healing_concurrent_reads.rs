#![allow(clippy::unwrap_used)]
//! Healing under concurrency: eight clients read the same damaged document at the same
//! instant (and a ninth runs HealAll meanwhile). Every read returns exactly the
//! original bytes, the document is repaired once (DocumentsHealed = 1: racing repairs
//! of the same version are guarded out), and after a restart it needs no healing.

mod common;

use std::sync::{Arc, Barrier};

use common::{corrupt_payload, current_data_file, unique_doc, Server};

const DB: &str = "healrace";

#[test]
fn concurrent_reads_of_a_corrupt_document_all_get_the_original() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db(DB);
    let docs: Vec<(u64, String)> = (1..=5)
        .map(|id| (id, unique_doc("race", id, 4000)))
        .collect();
    c.write_many(db, "", &docs, false);
    drop(c);
    s.stop();
    corrupt_payload(&current_data_file(&s.db_dir(DB)), "_default", &docs[2].1); // id 3

    s.spawn();
    let want = docs[2].1.clone().into_bytes();
    let barrier = Arc::new(Barrier::new(9));
    let mut threads = Vec::new();
    for i in 0..9 {
        let mut c = s.connect();
        let barrier = barrier.clone();
        threads.push(std::thread::spawn(move || {
            let db = c.open_db(DB);
            barrier.wait();
            if i == 8 {
                // Either it repaired 3 itself or a read got there first.
                let healed = c.heal_all(db);
                assert!(healed.is_empty() || healed == vec![3], "{healed:?}");
                return None;
            }
            Some(c.read(db, "", 3))
        }));
    }
    for t in threads {
        if let Some(got) = t.join().unwrap() {
            assert_eq!(got, (0, want.clone()));
        }
    }
    let mut c = s.connect();
    let db = c.open_db(DB);
    let st = c.heal_stats(db);
    assert_eq!(st["DocumentsHealed"], 1, "repaired once: {st}");
    assert!(st["DocumentsCorrupted"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(c.read(db, "", 3), (0, want.clone()));
    drop(c);
    s.stop();

    s.spawn();
    let mut c = s.connect();
    let db = c.open_db(DB);
    assert_eq!(c.read(db, "", 3), (0, want));
    assert_eq!(c.heal_stats(db)["DocumentsHealed"], 0);
    assert_eq!(c.heal_all(db), Vec::<u64>::new());
}
