//! A database whose write fails on disk stays read-only until the server restarts
//! (DECISIONS 38): the failed write is reported with an unknown outcome, later writes
//! are refused, and neither CloseDB nor idle close reopens it writable. The disk
//! failure is a file-size limit (`RLIMIT_FSIZE`, set on the running server with
//! `prlimit`): writes past it fail with EFBIG, which the server must survive.

mod common;

use std::time::Duration;

use common::Server;
use docdb_protocol::Command as Cmd;

const READ_ONLY: &str = "database is read-only after a failed write or fsync";
const UNKNOWN: &str = "write outcome unknown";

fn set_file_size_limit(pid: i32, bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit on our own child process; `lim` outlives the call.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_failed_write_keeps_the_database_read_only_until_restart() {
    let mut server = Server::start_with_config("[db]\nidle_timeout = \"1s\"\n", &[]);
    let mut c = server.connect();
    let db = c.open_db("tenant");
    let other = c.open_db("neighbour");
    let small = r#"{"v":1}"#;
    for id in 1..=5 {
        assert_eq!(c.create(db, "", id, small).0, 0);
    }

    // Files may grow to 2 MiB from now on; 256 KiB documents soon pass that.
    set_file_size_limit(server.pid(), 2 * 1024 * 1024);
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(256 * 1024));
    let mut acked = Vec::new();
    let mut failure = None;
    for id in 100..140 {
        let (status, text) = c.create(db, "", id, &big);
        if status == 0 {
            acked.push(id);
        } else {
            failure = Some(String::from_utf8_lossy(&text).into_owned());
            break;
        }
    }
    let failure = failure.expect("a write past the file-size limit fails");
    assert!(failure.starts_with(UNKNOWN), "the failed write: {failure}");
    assert!(!acked.is_empty(), "some writes fit under the limit");

    // The server lives; later writes are refused, reads go on.
    let (status, text) = c.create(db, "", 1000, small);
    assert_ne!(status, 0);
    assert!(String::from_utf8_lossy(&text).starts_with(READ_ONLY));
    assert_eq!(c.read(db, "", 1).1, small.as_bytes());

    // Closing it (explicitly, then by idle timeout) does not make it writable again.
    let r = c.call(db, Cmd::CloseDb, vec![]);
    assert_eq!(r.status, 0, "CloseDB is answered OK");
    let (status, text) = c.create(db, "", 1001, small);
    assert!(
        status != 0 && String::from_utf8_lossy(&text).starts_with(READ_ONLY),
        "after CloseDB: {}",
        String::from_utf8_lossy(&text)
    );
    std::thread::sleep(Duration::from_millis(2500));
    let (status, text) = c.create(db, "", 1002, small);
    assert!(
        status != 0 && String::from_utf8_lossy(&text).starts_with(READ_ONLY),
        "after the idle timeout: {}",
        String::from_utf8_lossy(&text)
    );
    for id in &acked {
        assert_eq!(c.read(db, "", *id).1, big.as_bytes());
    }
    // A neighbour with small writes is not affected.
    assert_eq!(c.create(other, "", 1, small).0, 0);

    // A restart (without the limit) makes it writable, with every acknowledged write.
    drop(c);
    server.stop();
    server.spawn();
    let mut c = server.connect();
    let db = c.open_db("tenant");
    for id in 1..=5 {
        assert_eq!(c.read(db, "", id).1, small.as_bytes());
    }
    for id in &acked {
        assert_eq!(c.read(db, "", *id).1, big.as_bytes(), "acknowledged {id}");
    }
    for id in 1000..=1002 {
        assert_eq!(c.read(db, "", id).0, 2, "refused write {id} is absent");
    }
    assert_eq!(c.create(db, "", 2000, small).0, 0, "writable after restart");
}
