#![allow(clippy::unwrap_used)]
//! A write refused for memory in the middle of an Execute, and inside a Transaction,
//! through the real binary (`--memory-per-db 1`; issue 15):
//! - Execute `[create small, create over the limit, create small]`: status MemoryLimit,
//!   the middle op's text `memory limit exceeded`, the two others ran (each op of an
//!   Execute is atomic on its own);
//! - Transaction with the same shape: status MemoryLimit, nothing of it stored;
//! - Stats' `memory_used` and `wal_size` grew by the accepted writes only, `total_txns`
//!   counts only commits that happened;
//! - after a SIGKILL and restart: the refused documents are absent, the accepted ones
//!   present, `memory_used` unchanged.

mod common;
mod support;

use common::Server;
use docdb_protocol::Command as Cmd;
use support::*;

const KIB: usize = 1024;
const REFUSED: &[u8] = b"memory limit exceeded";
const STATUS_MEMORY_LIMIT: u8 = 4;

fn doc(id: u64, len: usize) -> String {
    let head = format!(r#"{{"id":{id},"pad":""#);
    format!("{head}{}\"}}", "p".repeat(len - head.len() - 2))
}

/// (memory_used, wal_size, total_txns) from Stats.
fn counters(c: &mut common::Client) -> (u64, u64, u64) {
    let s = stats(c);
    (s[4], s[3], s[2])
}

#[test]
fn a_write_refused_for_memory_mid_execute_or_in_a_transaction_leaves_no_trace() {
    let mut s = Server::start(&["--memory-per-db", "1"]);
    let mut c = s.connect();
    let db = c.open_db("mem");
    for id in 1..=4 {
        assert_eq!(c.create(db, "", id, &doc(id, 200 * KIB)).0, 0);
    }
    let (mem0, wal0, tx0) = counters(&mut c);
    assert!(mem0 >= 800 * KIB as u64, "memory_used {mem0}");

    // Execute: the op over the limit fails alone (per-op statuses).
    let (st, res) = c.execute_statuses(
        db,
        vec![
            create_op("", 10, &doc(10, KIB)),
            create_op("", 11, &doc(11, 300 * KIB)),
            create_op("", 12, &doc(12, KIB)),
        ],
    );
    assert_eq!(st, 0, "{res:?}");
    assert_eq!(res.len(), 3);
    assert!(res[0] == (0, vec![]) && res[2] == (0, vec![]), "{res:?}");
    assert_eq!(res[1], (STATUS_MEMORY_LIMIT, REFUSED.to_vec()));
    let (mem1, wal1, tx1) = counters(&mut c);
    let two_small = 2 * (KIB as u64 + docdb_core::memory::INDEX_ENTRY_BYTES);
    assert_eq!(
        mem1,
        mem0 + two_small,
        "memory_used counts the refused write"
    );
    assert_eq!(tx1, tx0 + 2, "total_txns counts the refused write");
    // Two records of ~1 KiB each, not a third of 300 KiB.
    assert!(
        wal1 > wal0 && wal1 - wal0 < 4 * KIB as u64,
        "wal_size grew by {}",
        wal1 - wal0
    );

    // Transaction: all or nothing, so nothing.
    let r = c.call(
        db,
        Cmd::Transaction,
        vec![
            create_op("", 20, &doc(20, KIB)),
            create_op("", 21, &doc(21, 300 * KIB)),
        ],
    );
    assert_eq!(r.status, STATUS_MEMORY_LIMIT, "{}", text(&r));
    assert_eq!(r.data, REFUSED, "the failing op's text alone");
    assert_eq!(
        counters(&mut c),
        (mem1, wal1, tx1),
        "a refused transaction left a trace"
    );
    for id in [11, 20, 21] {
        assert_eq!(c.read(db, "", id).0, 2, "refused document {id} exists");
    }

    // Survives a crash the same way.
    drop(c);
    s.kill();
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db("mem");
    let present: Vec<u64> = [1, 2, 3, 4, 10, 11, 12, 20, 21]
        .into_iter()
        .filter(|&id| c.read(db, "", id).0 == 0)
        .collect();
    assert_eq!(present, vec![1, 2, 3, 4, 10, 12]);
    assert_eq!(counters(&mut c).0, mem1, "memory_used after restart");
}
