//! Runs the TypeScript client's test suite (`clients/ts`, Node's test runner) against
//! this build's `docdb` binary, so `cargo nextest run --workspace` covers it.
//!
//! Needs Node.js >= 20 and npm. Without `node` the test prints a loud notice and passes,
//! unless `CI` is set (CI installs Node): then it fails. The suite also runs under Bun
//! when `bun` is installed; without it, a notice, and under `CI` a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/ts")
}

fn run(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env("NO_COLOR", "1")
        .env("npm_config_fund", "false")
        .env("npm_config_audit", "false")
        .env("npm_config_update_notifier", "false");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"))
}

/// As [`run`], but kills the process (and fails) when it outlives `limit`, so a hung
/// JavaScript test cannot hang the Rust suite. Output is read while it runs.
fn run_with_deadline(
    dir: &Path,
    program: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    limit: Duration,
) -> Output {
    use std::io::Read;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // Its own process group, so a kill reaches the test files node runs as children
    // (they hold the output pipes too).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out_t = drain(Box::new(child.stdout.take().unwrap()));
    let err_t = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            // SAFETY: signalling the process group this test created.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            let (o, e) = (out_t.join().unwrap(), err_t.join().unwrap());
            panic!(
                "{program} {args:?} did not finish within {limit:?}:\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

fn expect_success(what: &str, out: &Output) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// `npm ci` is needed when node_modules is missing or older than the lock file
/// (npm writes `node_modules/.package-lock.json` on every install).
fn needs_install(dir: &Path) -> bool {
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    let lock = modified(&dir.join("package-lock.json"));
    let tsc = dir.join("node_modules/typescript/bin/tsc").exists();
    match (installed, lock) {
        (Some(i), Some(l)) => !tsc || i < l,
        _ => true,
    }
}

/// Node's major version, from `node --version` (`v20.11.1`).
fn node_major() -> Option<u32> {
    let out = Command::new("node").arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v = String::from_utf8_lossy(&out.stdout);
    v.trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Writes to the process's stderr directly, past the test harness's output capture
/// (`cargo test` shows it even for a passing test; nextest with `--no-capture`).
fn notice(msg: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(msg.as_bytes());
}

/// Node is there (else a loud notice, and a failure only under CI), `clients/ts` is
/// installed and built. Returns the build lock (held while its tests run) and the test
/// files, or `None` when the suite cannot run here.
fn prepare() -> Option<(DirLock, Vec<String>)> {
    let Some(major) = node_major() else {
        let msg = "\n\n************************************************************\n\
                   *  node not found: the TypeScript client tests did NOT run  *\n\
                   *  install Node.js >= 20 (CI does: .ci/run)                  *\n\
                   ************************************************************\n";
        notice(msg);
        if std::env::var_os("CI").is_some() {
            panic!("node is required in CI (CI is set)");
        }
        return None;
    };
    assert!(
        major >= 20,
        "the TypeScript client needs Node.js >= 20, found {major}"
    );

    let dir = client_dir();
    // One build of clients/ts at a time; the lock is held until the tests are done so
    // no other process rebuilds dist/ under them.
    let lock = DirLock::acquire(&dir.join(".test-lock"));
    if needs_install(&dir) {
        let out = run(&dir, "npm", &["ci", "--no-audit", "--no-fund"], &[]);
        expect_success("npm ci", &out);
    }
    let out = run(&dir, "npm", &["run", "build"], &[]);
    expect_success("npm run build", &out);

    // The test files by name: `node --test test/` finds them on Node 20 only (later
    // versions take the argument as a file glob).
    let mut files: Vec<String> = std::fs::read_dir(dir.join("test"))
        .expect("clients/ts/test")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".test.js"))
        .map(|n| format!("test/{n}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no test/*.test.js in {}", dir.display());
    Some((lock, files))
}

/// Runs a test command with `DOCDB_BIN` set, prints its summary, asserts success and
/// that the end-to-end tests really ran.
fn run_suite(program: &str, args: &[&str]) {
    let started = Instant::now();
    let out = run_with_deadline(
        &client_dir(),
        program,
        args,
        &[("DOCDB_BIN", env!("CARGO_BIN_EXE_docdb"))],
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| {
            let l = l.trim_start_matches(['#', ' ', 'ℹ']);
            [
                "tests ",
                "suites ",
                "pass ",
                "fail ",
                "skipped ",
                "duration_ms ",
                "Ran ",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    eprintln!(
        "{program} {} ({:.1} s): {}",
        args.join(" "),
        started.elapsed().as_secs_f64(),
        summary.join(" | ")
    );
    expect_success(program, &out);
    assert!(
        !stdout.contains("SKIPPING DocDB end-to-end")
            && !stderr.contains("SKIPPING DocDB end-to-end"),
        "the end-to-end tests were skipped:\n{stdout}"
    );
}

#[test]
fn typescript_client_suite_passes_against_the_real_server() {
    let Some((_lock, files)) = prepare() else {
        return;
    };
    let mut args = vec!["--test"];
    args.extend(files.iter().map(String::as_str));
    run_suite("node", &args);
}

/// The same suite under Bun (its test runner runs `node:test` files), when `bun` is
/// installed; otherwise a notice, and a failure under CI (`.ci/run` installs Bun).
#[test]
fn typescript_client_suite_passes_under_bun() {
    let bun = Command::new("bun")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success());
    let Some(version) = bun else {
        notice("bun not found: the TypeScript client's Bun run is skipped\n");
        if std::env::var_os("CI").is_some() {
            panic!("bun is required in CI (CI is set; .ci/run installs it)");
        }
        return;
    };
    eprintln!("bun {}", String::from_utf8_lossy(&version.stdout).trim());
    let Some((_lock, files)) = prepare() else {
        return;
    };
    let mut args = vec!["test".to_string()];
    args.extend(files.iter().map(|f| format!("./{f}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_suite("bun", &args);
}

/// A lock directory (mkdir is atomic), removed on drop; a stale one (older than ten
/// minutes) is taken over.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: &Path) -> DirLock {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return DirLock(path.to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = modified(path)
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(600));
                    if stale {
                        let _ = std::fs::remove_dir(path);
                        continue;
                    }
                    assert!(Instant::now() < deadline, "waiting for {}", path.display());
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("creating {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
