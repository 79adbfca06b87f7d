#![allow(clippy::unwrap_used)]
//! `[healing] on_read_corruption = false` (SPEC §5): a read of a document whose
//! data-file payload is damaged fails with status 1 and a text starting
//! `document is corrupt` — every time, in a single read, in a multi-op Execute and in a
//! Scan — and never returns the damaged bytes. Heal (9) then repairs one, HealAll (10)
//! the other (reporting its id), and both read back exactly as written.

mod common;

use common::{corrupt_payload, current_data_file, unique_doc, Server};
use docdb_protocol::frame::decode_results;
use docdb_protocol::{Command, Op, OpType};

const DB: &str = "nohealread";

#[test]
fn corrupt_read_fails_cleanly_until_healed_on_demand() {
    let mut s = Server::start_with_config("[healing]\non_read_corruption = false\n", &[]);
    let mut c = s.connect();
    let db = c.open_db(DB);
    let docs: Vec<(u64, String)> = (1..=10)
        .map(|id| (id, unique_doc("noheal", id, 150)))
        .collect();
    c.write_many(db, "", &docs, false);
    let doc = |id: u64| docs[id as usize - 1].1.as_bytes().to_vec();
    drop(c);
    s.stop();

    let data_file = current_data_file(&s.db_dir(DB));
    corrupt_payload(&data_file, "_default", &docs[2].1); // id 3
    corrupt_payload(&data_file, "_default", &docs[6].1); // id 7

    s.spawn();
    let mut c = s.connect();
    let db = c.open_db(DB);
    let marker = |id: u64| format!("noheal-{id}-marker");
    for id in [3, 7] {
        for _ in 0..3 {
            let (st, text) = c.read(db, "", id);
            let text = String::from_utf8(text).unwrap();
            assert_eq!(st, 1, "{text}");
            assert!(text.starts_with("document is corrupt"), "{text}");
            assert!(!text.contains(&marker(id)), "no document bytes: {text}");
        }
    }
    // In a multi-op Execute the intact document is served and the corrupt one fails
    // (per-op statuses); without the flag the reply is the failure's text alone.
    let reads = || {
        vec![
            Op::new(OpType::Read, "", 2, vec![]),
            Op::new(OpType::Read, "", 3, vec![]),
            Op::new(OpType::Read, "", 4, vec![]),
        ]
    };
    let (st, res) = c.execute(db, reads());
    assert_eq!(st, 1);
    assert!(res[0].starts_with(b"document is corrupt"));
    let (st, res) = c.execute_statuses(db, reads());
    assert_eq!(st, 0);
    assert_eq!(res[0], (0, doc(2)));
    assert_eq!(res[1].0, 1);
    assert!(res[1].1.starts_with(b"document is corrupt"));
    assert_eq!(res[2], (0, doc(4)));
    // A scan over the damaged document fails rather than serving it.
    let r = c.call(
        db,
        Command::Scan,
        vec![Op::new(OpType::Read, "", 0, br#"{"limit":100}"#.to_vec())],
    );
    let text = String::from_utf8_lossy(&r.data).into_owned();
    assert_eq!(r.status, 1, "{text}");
    assert!(text.starts_with("document is corrupt"), "{text}");
    let st = c.heal_stats(db);
    assert_eq!(st["DocumentsHealed"], 0, "reads do not heal: {st}");

    // Heal (9) repairs one document.
    assert_eq!(c.heal(db, "", 3), (0, b"OK".to_vec()));
    assert_eq!(c.read(db, "", 3), (0, doc(3)));
    // HealAll repairs the other and names it.
    assert_eq!(c.heal_all(db), vec![7]);
    assert_eq!(c.read(db, "", 7), (0, doc(7)));
    let st = c.heal_stats(db);
    assert_eq!(st["DocumentsHealed"], 2, "{st}");
    assert_eq!(st["OnDemandHealings"], 2, "{st}");
    assert!(st["DocumentsCorrupted"].as_u64().unwrap() >= 2, "{st}");
    // Heal of an intact document is a no-op that still answers OK.
    assert_eq!(c.heal(db, "", 3), (0, b"OK".to_vec()));
    assert_eq!(c.heal_stats(db)["DocumentsHealed"], 2);

    let r = c.call(
        db,
        Command::Execute,
        (1..=10)
            .map(|id| Op::new(OpType::Read, "", id, vec![]))
            .collect(),
    );
    assert_eq!(r.status, 0);
    let res = decode_results(&r.data).unwrap();
    for (i, bytes) in res.into_iter().enumerate() {
        assert_eq!(bytes, doc(i as u64 + 1));
    }

    // Durable: after a restart the repaired documents read without healing.
    drop(c);
    s.stop();
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db(DB);
    for id in 1..=10 {
        assert_eq!(c.read(db, "", id), (0, doc(id)), "document {id}");
    }
    assert_eq!(c.heal_all(db), Vec::<u64>::new());
}
