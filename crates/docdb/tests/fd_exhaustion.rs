//! Item 8 of issue 11: a server started with few file descriptors (`prlimit
//! --nofile=64`), 40 idle clients and 1 MiB WAL segments keeps a database writable
//! across segment switches, turns away the connections it has no descriptors for with
//! an error frame, and serves new ones once the idle clients leave.

#![allow(clippy::unwrap_used)]

mod common;
mod support;

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use docdb_protocol::text as msg;
use support::{read_reply, Reply};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `docdb serve` with soft and hard RLIMIT_NOFILE = `nofile` (as `prlimit
/// --nofile=N` does) and `toml` as its configuration.
fn start_limited(dir: &Path, nofile: u64, toml: &str) -> Killed {
    let cfg = dir.join("docdb.toml");
    std::fs::write(&cfg, toml).unwrap();
    let socket = dir.join("docdb.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docdb"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--socket")
        .arg(&socket)
        .env("DOCDB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = Killed(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "docdb exited at start"
        );
        assert!(Instant::now() < deadline, "docdb did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .count()
}

/// Connects `n` clients that send nothing; returns those the server kept and the
/// number it turned away with `LOW_ON_FDS` (any other refusal fails the test).
fn idle_clients(socket: &Path, n: usize) -> (Vec<UnixStream>, usize) {
    let mut streams = Vec::new();
    for _ in 0..n {
        streams.push(UnixStream::connect(socket).unwrap());
    }
    std::thread::sleep(Duration::from_millis(500));
    let (mut kept, mut refused) = (Vec::new(), 0);
    for mut s in streams {
        match read_reply(&mut s, Instant::now() + Duration::from_millis(50)) {
            Reply::TimedOut => kept.push(s),
            Reply::Frame(r) => {
                assert_eq!(support::text(&r), msg::LOW_ON_FDS);
                refused += 1;
            }
            Reply::Closed => panic!("a connection was closed without a refusal frame"),
        }
    }
    (kept, refused)
}

#[test]
fn few_fds_idle_clients_and_segment_switches_never_make_a_database_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_limited(dir.path(), 64, "[wal]\nmax_file_size_mb = 1\n");
    let pid = server.0.id();
    let socket = dir.path().join("docdb.sock");
    let mut writer = common::Client::connect(&socket);
    let db = writer.open_db("tenant");

    let (idle, refused) = idle_clients(&socket, 40);
    assert!(refused > 0, "all 40 idle clients were accepted with 64 fds");
    assert!(!idle.is_empty(), "no idle client was accepted");
    eprintln!(
        "kept {} idle clients, refused {refused}; server fds {}",
        idle.len(),
        fds_of(pid)
    );

    // ~4 MiB of writes: several switches to a new 1 MiB WAL segment.
    let doc = format!("{{\"pad\":\"{}\"}}", "x".repeat(60 * 1024));
    let mut ok = 0;
    for id in 1..=70u64 {
        let (status, data) = writer.create(db, "", id, &doc);
        let text = String::from_utf8_lossy(&data).to_string();
        assert_ne!(
            text,
            msg::READ_ONLY,
            "write {id} found the database read-only"
        );
        if status == 0 {
            ok += 1;
        }
    }
    assert_eq!(ok, 70, "every write succeeds: the reserve covers the rolls");
    let wal = dir.path().join("data/dbs/tenant/wal");
    assert!(segments(&wal) >= 3, "the WAL switched segments");
    assert!(fds_of(pid) <= 64);

    // Another connection past the reserve is still turned away with the frame.
    let (more, refused_more) = idle_clients(&socket, 1);
    assert_eq!((more.len(), refused_more), (0, 1));

    // The idle clients leave: new connections are served, writes go on.
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let mut late = common::Client::connect(&socket);
    let db2 = late.open_db("tenant");
    assert_eq!(db2, db);
    let (status, data) = late.create(db, "", 1000, "{\"late\":true}");
    assert_eq!(status, 0, "{}", String::from_utf8_lossy(&data));
    let (status, got) = late.read(db, "", 70);
    assert_eq!(status, 0);
    assert_eq!(got, doc.as_bytes());
}
