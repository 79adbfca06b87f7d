//! Test harness: start the real `docdb` binary on a throwaway data dir and socket, and
//! speak raw protocol bytes to it. Each test gets its own directory and socket, so
//! tests run in parallel.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use docdb_protocol::frame::decode_results;
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
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docdb.sock");
        let mut s = Server {
            dir,
            socket,
            child: None,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
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

    /// Execute; returns (status, per-op results).
    pub fn execute(&mut self, db: u64, ops: Vec<Op>) -> (u8, Vec<Vec<u8>>) {
        let r = self.call(db, Cmd::Execute, ops);
        (r.status, decode_results(&r.data).unwrap())
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
