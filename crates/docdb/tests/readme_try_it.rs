//! README's "Try it", followed verbatim: every `sh` command of the section is run
//! (with `cargo run --release --` replaced by the binary under test, and the socket and
//! data dir moved into a temporary directory), the shell session's commands are typed
//! into `docdb shell` and its output must be the README's, and Ctrl-C (SIGINT) must stop
//! the server cleanly. A README that drifts from the binaries fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUN: &str = "cargo run --release -- ";

/// The fenced blocks of README's "## Try it" section: (language, text).
fn try_it_blocks() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find("\n## Try it\n")
        .expect("README has a \"## Try it\" section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((lang.to_string(), body.join("\n") + "\n"));
        }
    }
    blocks
}

/// A README command line with the binary, socket and data dir of this test.
fn localize(line: &str, dir: &Path) -> Vec<String> {
    let rest = line
        .strip_prefix(RUN)
        .unwrap_or_else(|| panic!("README command does not start with `{RUN}`: {line}"));
    rest.split_whitespace()
        .map(|w| match w {
            "/tmp/docdb.sock" => dir.join("docdb.sock").display().to_string(),
            "./data" => dir.join("data").display().to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// The server process, killed if the test fails before Ctrl-C stopped it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_socket(server: &mut Child, socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if UnixStream::connect(socket).is_ok() {
            return;
        }
        if let Some(st) = server.try_wait().unwrap() {
            panic!("docdb serve exited during start-up: {st}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "docdb serve did not listen on {} within 20 s",
        socket.display()
    );
}

#[test]
fn readme_try_it_runs_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = try_it_blocks();
    let sh: Vec<&str> = blocks
        .iter()
        .filter(|(lang, _)| lang == "sh")
        .flat_map(|(_, body)| body.lines())
        .collect();
    let serve = sh
        .iter()
        .find(|l| l.starts_with(&format!("{RUN}serve")))
        .expect("README starts the server with `cargo run --release -- serve ...`");
    let example = sh
        .iter()
        .find(|l| l.contains(" config example > "))
        .expect("README writes the example config");
    let shell = sh
        .iter()
        .find(|l| l.starts_with(&format!("{RUN}shell")))
        .expect("README opens `docdb shell`");
    let bin = env!("CARGO_BIN_EXE_docdb");

    // `docdb config example > docdb.toml`, then serve with it: the example must be a
    // file the server accepts.
    let (cmd, file) = example.split_once(" > ").unwrap();
    let out = Command::new(bin)
        .args(localize(cmd, dir.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{example}: {out:?}");
    let config = dir.path().join(file.trim());
    std::fs::write(&config, &out.stdout).unwrap();

    let socket = dir.path().join("docdb.sock");
    let mut server = Running(
        Command::new(bin)
            .args(localize(serve, dir.path()))
            .arg("--config")
            .arg(&config)
            .env("DOCDB_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_for_socket(&mut server.0, &socket);

    // The session: the block right after the shell command. Prompt lines are typed,
    // every other line is what the shell must print.
    let at = blocks
        .iter()
        .position(|(_, b)| b.lines().any(|l| l == *shell))
        .unwrap();
    let (_, session) = blocks.get(at + 1).expect("a shell session after `shell`");
    let mut typed = String::new();
    let mut expected = String::new();
    for line in session.lines() {
        match line.split_once("> ") {
            Some((prompt, cmd)) if prompt.starts_with("docdb") && !prompt.contains(' ') => {
                typed.push_str(cmd);
                typed.push('\n');
            }
            _ => {
                expected.push_str(line);
                expected.push('\n');
            }
        }
    }
    assert!(typed.contains(".open"), "no commands found in:\n{session}");
    let mut sh_child = Command::new(bin)
        .args(localize(shell, dir.path()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sh_child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let out = sh_child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        expected,
        "the shell session in README drifted; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{out:?}");

    // "Stop the server with Ctrl-C": exit 0, socket removed.
    // SAFETY: sends a signal to the child this test started.
    unsafe {
        libc::kill(server.0.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = server.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "Ctrl-C did not stop the server");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "after Ctrl-C: {status}");
    assert!(!socket.exists(), "the socket outlived the server");
}
