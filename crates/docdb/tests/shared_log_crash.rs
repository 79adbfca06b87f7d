#![allow(clippy::unwrap_used)]
//! The shared commit log (`wal.shared_log`, on by default) through the real binary:
//! - many databases with one writer each: the metrics show fewer shared-log fsyncs
//!   than the batches they made durable; a SIGKILL during the writes and a restart
//!   keep every acknowledged write;
//! - after a SIGKILL, each database's WAL is cut back to what its own fsyncs made
//!   durable (its header: commits never fsynced it — the shared log did), as a power
//!   cut may leave it: `docdb check` and `docdb dump` drain the shared log first and
//!   see every acknowledged write, and so does the restarted server.

mod common;
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{run_docdb, unique_doc, wal_segments, Server};
use support::*;

/// The value of metric `name` in a text exposition.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}")) as u64
}

/// `n` databases, one writer thread each creating documents one at a time until
/// `stop`; returns per database the ids acknowledged.
fn write_until(
    s: &Server,
    n: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<u64>>> {
    (0..n)
        .map(|k| {
            let mut c = client(s);
            let db = c.open_db(&format!("tenant{k}"));
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut id = 0;
                while !stop.load(Ordering::Relaxed) && id < 400 {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        c.create(db, "", id, &unique_doc(&format!("t{k}"), id, 200))
                    }));
                    match r {
                        Ok((0, _)) => acked.push(id),
                        _ => break, // the server died mid-request
                    }
                    id += 1;
                }
                acked
            })
        })
        .collect()
}

/// Reads back every acknowledged document (`doc_len` as written).
fn read_back(s: &Server, acked: &[Vec<u64>], doc_len: usize) {
    let mut c = client(s);
    for (k, ids) in acked.iter().enumerate() {
        let db = c.open_db(&format!("tenant{k}"));
        for &id in ids {
            let (st, body) = c.read(db, "", id);
            assert_eq!(st, 0, "tenant{k} doc {id} acknowledged, then lost");
            assert_eq!(body, unique_doc(&format!("t{k}"), id, doc_len).into_bytes());
        }
    }
}

#[test]
fn sigkill_during_writes_to_many_databases_keeps_every_acknowledged_write() {
    let mut s = Server::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = write_until(&s, 12, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let text = metrics(&mut client(&s));
    let (fsyncs, records) = (
        metric(&text, "docdb_shared_log_fsyncs_total"),
        metric(&text, "docdb_shared_log_records_total"),
    );
    eprintln!("shared log: {fsyncs} fsyncs for {records} batches");
    assert_eq!(metric(&text, "docdb_shared_log_enabled"), 1);
    assert!(
        records > 0 && fsyncs < records,
        "{fsyncs} fsyncs, {records} records"
    );
    s.kill();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Vec<u64>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(acked.iter().map(Vec::len).sum::<usize>() > 12);
    s.spawn();
    read_back(&s, &acked, 200);
}

/// Cuts every database's WAL back to its header, as a power cut may when only the
/// shared log was fsynced.
fn lose_unsynced_wal(data: &Path, n: usize) {
    for k in 0..n {
        let segs = wal_segments(&data.join("dbs").join(format!("tenant{k}")));
        assert_eq!(segs.len(), 1, "{segs:?}");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&segs[0])
            .unwrap();
        f.set_len(24).unwrap();
    }
}

#[test]
fn check_and_dump_drain_the_shared_log_first() {
    let n = 3;
    let mut s = Server::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = write_until(&s, n, stop);
    let acked: Vec<Vec<u64>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(acked.iter().all(|a| a.len() == 400));
    s.kill();
    let data = s.data_dir();
    let d = data.to_str().unwrap();
    lose_unsynced_wal(&data, n);

    let out = run_docdb(&["check", "--data-dir", d]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    for k in 0..n {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("tenant{k} ")))
            .unwrap();
        let records: u64 = line
            .split("OK — ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("tenant{k}: {line}"));
        assert!(records >= 400, "tenant{k}: {line}");
    }

    // Again, for dump: the server runs (recovering from the drained WALs), writes 50
    // more per database, is killed, and the WALs lose those 50 again.
    s.spawn();
    let mut c = client(&s);
    for k in 0..n {
        let db = c.open_db(&format!("tenant{k}"));
        for id in 400..450 {
            assert_eq!(
                c.create(db, "", id, &unique_doc(&format!("t{k}"), id, 200))
                    .0,
                0
            );
        }
    }
    drop(c);
    s.kill();
    for k in 0..n {
        let segs = wal_segments(&data.join("dbs").join(format!("tenant{k}")));
        let last = segs.last().unwrap();
        // Keep what replay wrote and synced at the restart; cut the 50 new commits.
        let len = std::fs::metadata(last).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
        let cut = find_doc(last, &unique_doc(&format!("t{k}"), 400, 200)).unwrap_or(len);
        f.set_len(cut).unwrap();
    }
    let out = run_docdb(&["dump", "--data-dir", d]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped = String::from_utf8(out.stdout).unwrap();
    for k in 0..n {
        for id in (0..450).step_by(7) {
            let doc = unique_doc(&format!("t{k}"), id, 200);
            assert!(
                dumped.contains(&doc),
                "tenant{k} doc {id} missing from the dump"
            );
        }
    }
    s.spawn();
    let all: Vec<Vec<u64>> = (0..n).map(|_| (0..450).collect()).collect();
    read_back(&s, &all, 200);
}

/// Offset of the WAL record holding `doc` (its record header starts well before the
/// payload; cutting there leaves a torn record, which replay drops).
fn find_doc(path: &Path, doc: &str) -> Option<u64> {
    let bytes = std::fs::read(path).unwrap();
    common::find_all(&bytes, doc.as_bytes())
        .first()
        .map(|&at| at as u64)
}

/// Bytes of every file under `dir` (0 if it is gone).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// `wal.shared_log_max_mb` reaches the server's log: 8 writers push about 16 MiB of
/// records through a log bounded at 4 MiB (segments of 1 MiB; at the default 64 MiB
/// they would all fit one 16 MiB segment and none would be trimmed); the directory,
/// sampled all along, never holds more than the bound plus one round's overshoot, and a
/// SIGKILL afterwards loses no acknowledged write. (The bound under a trim that falls
/// behind: `docdb-core`'s `a_trim_that_falls_behind_holds_the_log_at_its_size_bound`.)
#[test]
fn the_shared_log_stays_within_shared_log_max_mb_on_disk() {
    const MIB: u64 = 1 << 20;
    let (writers, docs, doc_len) = (8usize, 1000u64, 2000usize);
    let mut s = Server::start_with_config("[wal]\nshared_log_max_mb = 4\n", &[]);
    let log_dir = s.data_dir().join("shared-log");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, log_dir) = (stop.clone(), log_dir.clone());
        std::thread::spawn(move || {
            let mut most = 0u64;
            while !stop.load(Ordering::Relaxed) {
                most = most.max(dir_bytes(&log_dir));
                std::thread::sleep(Duration::from_millis(2));
            }
            most
        })
    };
    let handles: Vec<_> = (0..writers)
        .map(|k| {
            let mut c = client(&s);
            let db = c.open_db(&format!("tenant{k}"));
            std::thread::spawn(move || {
                for id in 0..docs {
                    let (st, body) =
                        c.create(db, "", id, &unique_doc(&format!("t{k}"), id, doc_len));
                    assert_eq!(st, 0, "{}", String::from_utf8_lossy(&body));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let text = metrics(&mut client(&s));
    stop.store(true, Ordering::Relaxed);
    let most = sampler.join().unwrap();
    let records = metric(&text, "docdb_shared_log_records_total");
    let trimmed = metric(&text, "docdb_shared_log_trimmed_segments_total");
    eprintln!(
        "shared log: {records} records, {trimmed} segments trimmed, at most {most} bytes on disk"
    );
    // Most of the 8,000 commits went through the log (~16 MiB of records), so the
    // bound was met by trimming, not by the log being idle.
    assert!(records >= 4000, "{records} records");
    assert!(trimmed >= 8, "{trimmed} segments trimmed");
    assert!(
        most <= 4 * MIB + MIB / 2,
        "the shared log held {most} bytes with shared_log_max_mb = 4"
    );
    s.kill();
    s.spawn();
    let all: Vec<Vec<u64>> = (0..writers).map(|_| (0..docs).collect()).collect();
    read_back(&s, &all, doc_len);
}
