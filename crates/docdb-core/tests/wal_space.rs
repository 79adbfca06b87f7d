//! The zeros the WAL writer writes ahead of its records (DECISIONS 21) must not make a
//! nearly full disk fail writes that still fit. A file-size limit (`RLIMIT_FSIZE`)
//! stands in for the full disk. Its own test binary: the limit and the ignored
//! SIGXFSZ apply to the whole process.

use docdb_core::{Config, Database};

#[test]
fn writes_that_fit_succeed_when_the_zeros_ahead_do_not() {
    const LIMIT: u64 = 256 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let doc = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000));
    // SAFETY: process-wide settings of this test binary only: ignore the signal that
    // would otherwise kill it, then limit every file it writes to LIMIT bytes.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: LIMIT,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let db = Database::open(&path, Config::default()).expect("open");
    let mut acked = Vec::new();
    for id in 1..=1_000u64 {
        match db.create("", id, doc.as_bytes()) {
            Ok(()) => acked.push(id),
            Err(_) => break,
        }
    }
    // Each write puts ~1.05 KiB in the WAL and the data file, so ~240 fit under the
    // limit. Zeros written ahead need up to twice the log's length: had their failure
    // failed the write, it would have stopped near 120.
    assert!(
        acked.len() >= 200,
        "only {} writes succeeded under a {LIMIT}-byte file limit",
        acked.len()
    );
    assert!(acked.len() < 1_000, "the limit was never reached");
    drop(db);
    // SAFETY: as above; lift the limit for the reopen.
    unsafe {
        let lim = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    // The failed write made the database read-only for the life of the process
    // (DECISIONS 38): a reopen is refused until the explicit reset.
    match Database::open(&path, Config::default()) {
        Err(docdb_core::Error::FailedEarlier { .. }) => {}
        other => panic!("reopen after a failed write: {:?}", other.map(|_| ())),
    }
    assert!(docdb_core::failure::reset(&path));
    let db = Database::open(&path, Config::default()).expect("reopen");
    for id in &acked {
        assert_eq!(
            db.read("", *id).expect("an acknowledged write survives"),
            doc.as_bytes()
        );
    }
    db.create("", 5_000, doc.as_bytes()).expect("writes go on");
}
