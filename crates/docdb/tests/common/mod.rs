//! Test harness: start the real `docdb` binary on a throwaway data dir and socket, and
//! speak raw protocol bytes to it. Each test gets its own directory and socket, so
//! tests run in parallel.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use docdb_protocol::frame::{decode_results, decode_status_results};
use docdb_protocol::{
    decode_response, encode_request, Command as Cmd, Op, OpType, Request, Response,
};

/// A running server process. Killed (SIGKILL) on drop if still running.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub child: Option<Child>,
    pub extra_args: Vec<String>,
    pub envs: Vec<(String, String)>,
}

impl Server {
    /// Starts a server with default settings plus `args`.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut s = Server::unstarted(args);
        s.envs = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (or restarts) the process on the same data dir and socket and waits
    /// until it accepts connections.
    pub fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_docdb"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.extra_args)
            .env("DOCDB_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start docdb"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("docdb exited during start-up: {st}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("docdb did not start listening within 20 s");
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("docdb did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A raw protocol client: frames in, frames out.
pub struct Client {
    pub stream: UnixStream,
    next_id: u64,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client { stream, next_id: 1 }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, req: &Request) {
        let mut buf = Vec::new();
        encode_request(req, &mut buf);
        self.send_raw(&buf);
    }

    /// Reads one response; None when the server closed the connection.
    pub fn recv(&mut self) -> Option<Response> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
        self.stream.read_exact(&mut frame).ok()?;
        Some(decode_response(&frame).unwrap())
    }

    pub fn call(&mut self, db_id: u64, command: Cmd, ops: Vec<Op>) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Request {
            request_id: id,
            db_id,
            command: command as u8,
            ops,
        });
        let r = self.recv().expect("response");
        assert_eq!(r.request_id, id);
        r
    }

    pub fn open_db(&mut self, name: &str) -> u64 {
        let r = self.call(
            0,
            Cmd::OpenDb,
            vec![Op::new(OpType::Create, "", 0, name.as_bytes().to_vec())],
        );
        assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
        u64::from_le_bytes(r.data[..8].try_into().unwrap())
    }

    /// Execute; returns (status, per-op results) when OK, else (status, [error text])
    /// (a non-OK reply's data is the first failed op's text alone, the v0.3 contract).
    pub fn execute(&mut self, db: u64, ops: Vec<Op>) -> (u8, Vec<Vec<u8>>) {
        let r = self.call(db, Cmd::Execute, ops);
        if r.status != 0 {
            return (r.status, vec![r.data]);
        }
        (r.status, decode_results(&r.data).unwrap())
    }

    /// Execute with the per-op status flag: (reply status, per op (status, bytes)), or
    /// (status, []) for a request-level error (its data is plain text).
    pub fn execute_statuses(&mut self, db: u64, ops: Vec<Op>) -> (u8, Vec<(u8, Vec<u8>)>) {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Request {
            request_id: id,
            db_id: db,
            command: Cmd::Execute as u8 | docdb_protocol::PER_OP_STATUS,
            ops,
        });
        let r = self.recv().expect("response");
        assert_eq!(r.request_id, id);
        if r.status != 0 {
            return (r.status, Vec::new());
        }
        (r.status, decode_status_results(&r.data).unwrap())
    }

    pub fn create(&mut self, db: u64, coll: &str, id: u64, json: &str) -> (u8, Vec<u8>) {
        let (st, mut res) = self.execute(
            db,
            vec![Op::new(OpType::Create, coll, id, json.as_bytes().to_vec())],
        );
        (st, res.remove(0))
    }

    pub fn read(&mut self, db: u64, coll: &str, id: u64) -> (u8, Vec<u8>) {
        let (st, mut res) = self.execute(db, vec![Op::new(OpType::Read, coll, id, vec![])]);
        (st, res.remove(0))
    }
}

// ---------------------------------------------------------------------------------
// Helpers for the healing and offline-tool tests (healing_*.rs, check_tool.rs,
// dump_restore.rs): start with a TOML config, corrupt records on disk, run the tools.

impl Server {
    /// A server that is set up (own temp dir and socket) but not started: run an
    /// offline tool on `data_dir()` first, then `spawn()`.
    pub fn unstarted(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docdb.sock");
        Server {
            dir,
            socket,
            child: None,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            envs: Vec::new(),
        }
    }

    /// Starts a server with `toml` written to `<dir>/docdb.toml` and passed with
    /// `--config`, plus `args`.
    pub fn start_with_config(toml: &str, args: &[&str]) -> Server {
        let mut s = Server::unstarted(args);
        let path = s.config_path();
        std::fs::write(&path, toml).unwrap();
        s.extra_args
            .splice(0..0, ["--config".to_string(), path.display().to_string()]);
        s.spawn();
        s
    }

    /// Where `start_with_config` writes the configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("docdb.toml")
    }

    /// `<data_dir>/dbs/<name>`: the files of database `name`.
    pub fn db_dir(&self, name: &str) -> PathBuf {
        self.data_dir().join("dbs").join(name)
    }

    /// SIGTERM, and assert a clean exit.
    pub fn stop(&mut self) {
        let st = self.terminate(Duration::from_secs(30));
        assert!(st.success(), "docdb exited with {st}");
    }
}

impl Client {
    /// HealStats (11) as JSON.
    pub fn heal_stats(&mut self, db: u64) -> serde_json::Value {
        let r = self.call(db, Cmd::HealStats, vec![]);
        assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
        serde_json::from_slice(&r.data).unwrap()
    }

    /// HealAll (10): the ids it reports as healed.
    pub fn heal_all(&mut self, db: u64) -> Vec<u64> {
        let r = self.call(db, Cmd::HealAll, vec![]);
        assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
        serde_json::from_slice(&r.data).unwrap()
    }

    /// Heal (9) of one document: (status, reply text).
    pub fn heal(&mut self, db: u64, coll: &str, id: u64) -> (u8, Vec<u8>) {
        let r = self.call(db, Cmd::Heal, vec![Op::new(OpType::Read, coll, id, vec![])]);
        (r.status, r.data)
    }

    /// CreateCollection (5).
    pub fn create_collection(&mut self, db: u64, coll: &str) {
        let r = self.call(
            db,
            Cmd::CreateCollection,
            vec![Op::new(OpType::Create, coll, 0, vec![])],
        );
        assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
    }

    /// ListCollections (7).
    pub fn list_collections(&mut self, db: u64) -> Vec<String> {
        let r = self.call(db, Cmd::ListCollections, vec![]);
        assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
        serde_json::from_slice(&r.data).unwrap()
    }

    /// Writes `docs` with Create (or Update when `update`), many ops per Execute;
    /// asserts every op succeeded.
    pub fn write_many(&mut self, db: u64, coll: &str, docs: &[(u64, String)], update: bool) {
        let kind = if update {
            OpType::Update
        } else {
            OpType::Create
        };
        for chunk in docs.chunks(64) {
            let ops = chunk
                .iter()
                .map(|(id, json)| Op::new(kind, coll, *id, json.as_bytes().to_vec()))
                .collect();
            let (st, res) = self.execute(db, ops);
            assert_eq!(
                st,
                0,
                "write failed: {:?}",
                res.iter()
                    .map(|r| String::from_utf8_lossy(r).into_owned())
                    .find(|r| !r.is_empty())
            );
        }
    }

    /// Reads `ids`, many per Execute: (id, status of the op, bytes).
    pub fn read_many(&mut self, db: u64, coll: &str, ids: &[u64]) -> Vec<(u64, u8, Vec<u8>)> {
        let mut out = Vec::new();
        for chunk in ids.chunks(128) {
            let ops = chunk
                .iter()
                .map(|id| Op::new(OpType::Read, coll, *id, vec![]))
                .collect();
            let (st, res) = self.execute(db, ops);
            assert_eq!(res.len(), chunk.len());
            for (id, bytes) in chunk.iter().zip(res) {
                // Execute reports only the first failure's status; a failed read's
                // text is its error, which never parses as the stored document.
                out.push((*id, st, bytes));
            }
        }
        out
    }

    /// Scan (15) of a whole collection: (id, document) in id order, paging with the
    /// `"next"` form (a page may end early at the server's reply budget).
    pub fn scan_all(&mut self, db: u64, coll: &str) -> Vec<(u64, serde_json::Value)> {
        let mut out: Vec<(u64, serde_json::Value)> = Vec::new();
        let mut after = 0u64;
        loop {
            let r = self.call(
                db,
                Cmd::Scan,
                vec![Op::new(
                    OpType::Read,
                    coll,
                    after,
                    br#"{"limit":1000,"next":true}"#.to_vec(),
                )],
            );
            assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
            let page: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
            for row in page["rows"].as_array().unwrap() {
                let id = row["id"].as_u64().unwrap();
                // Scan from 0 includes id 0; later pages start strictly after `after`.
                if !out.is_empty() && id <= after {
                    continue;
                }
                out.push((id, row["doc"].clone()));
            }
            match page["next"].as_u64() {
                Some(next) => after = next,
                None => return out,
            }
        }
    }
}

/// A unique JSON document of at least `min_len` bytes: `{"id":N,"marker":"<tag>-N-...",
/// "pad":"..."}`. Its bytes occur once in a data file, so a test can find its record.
pub fn unique_doc(tag: &str, id: u64, min_len: usize) -> String {
    let head = format!(r#"{{"id":{id},"marker":"{tag}-{id}-marker","pad":""#);
    let pad_len = min_len.saturating_sub(head.len() + 2).max(8);
    let pad: String = (0..pad_len)
        .map(|i| char::from(b'a' + ((i as u64).wrapping_add(id) % 26) as u8))
        .collect();
    format!("{head}{pad}\"}}")
}

/// Every offset where `needle` occurs in `hay`.
pub fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return Vec::new();
    }
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// The data file of a database: `<db_dir>/data/<g>.data` of the highest generation
/// (a stopped database has exactly one).
pub fn current_data_file(db_dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(db_dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    files.sort();
    files.pop().expect("a data file")
}

/// The WAL segment files of a database, oldest first.
pub fn wal_segments(db_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(db_dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Size of the fixed part of a data-file record header (docs/FORMAT.md).
pub const DATA_RECORD_FIXED: usize = 35;

/// Offsets (in `data`) of the records of `coll` whose payload is exactly `json`.
/// Checks each hit is really a record payload: the magic, the collection name and
/// the payload length of the header in front of it agree.
pub fn payload_offsets(data: &[u8], coll: &str, json: &[u8]) -> Vec<usize> {
    find_all(data, json)
        .into_iter()
        .filter(|&p| {
            let Some(start) = p.checked_sub(DATA_RECORD_FIXED + coll.len()) else {
                return false;
            };
            let h = &data[start..p];
            h[0..4] == *b"DDBR"
                && u32::from_le_bytes(h[11..15].try_into().unwrap()) as usize == json.len()
                && &h[DATA_RECORD_FIXED..] == coll.as_bytes()
        })
        .collect()
}

/// Flips one byte in the middle of the payload of the one data-file record of
/// `coll` holding exactly `json` (the server must be stopped). The header stays
/// intact, so the record is known and only its payload checksum fails. Returns the
/// offset of the flipped byte.
pub fn corrupt_payload(data_file: &Path, coll: &str, json: &str) -> u64 {
    use std::os::unix::fs::FileExt;
    let data = std::fs::read(data_file).unwrap();
    let hits = payload_offsets(&data, coll, json.as_bytes());
    assert_eq!(
        hits.len(),
        1,
        "expected exactly one record holding {json:.60}... in {}",
        data_file.display()
    );
    // Inside the marker/pad: flipping 0x01 keeps it printable ASCII, so the damaged
    // bytes still look like (different) JSON — a reader must not be fooled.
    let at = hits[0] + json.len() / 2;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(data_file)
        .unwrap();
    f.write_all_at(&[data[at] ^ 0x01], at as u64).unwrap();
    f.sync_all().unwrap();
    at as u64
}

/// Runs `docdb <args>` (an offline tool) to completion.
pub fn run_docdb(args: &[&str]) -> std::process::Output {
    run_docdb_with_stdin(args, None)
}

/// Runs `docdb <args>` with `stdin` piped in (None: no stdin).
pub fn run_docdb_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docdb"));
    cmd.args(args)
        .env("DOCDB_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("run docdb");
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(w) = writer {
        w.join().unwrap();
    }
    out
}

/// Every file under `dir` with its bytes and modification time: compare two of these
/// to show a tool changed nothing.
pub fn snapshot_tree(
    dir: &Path,
) -> std::collections::BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let meta = e.metadata().unwrap();
                out.insert(
                    p.clone(),
                    (std::fs::read(&p).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, ...): what resource-bound
/// tests measure of the real server process.
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
