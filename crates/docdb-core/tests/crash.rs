//! Crash test: guards SPEC §4's promise that after `kill -9` at any instant every
//! acknowledged write is present, no transaction is partially visible and no document is
//! torn — in every fsync mode (`always` and `group` promise it on ack; `interval` and
//! `none` promise survival of a process crash, which is what SIGKILL is).
//!
//! The parent test re-executes this test binary as a child (`crash_child`, which does
//! nothing unless `DOCDB_CRASH_CHILD_DIR` is set). The child opens the database, runs
//! writer threads that create, update and delete their own documents and commit
//! 3-document transactions, and prints one line per call: an intent line (lowercase
//! verb) before the call and an acknowledgement line (uppercase verb) after it returned
//! `Ok`. The parent SIGKILLs the child 20–300 ms after it opened the database (after it
//! was spawned, in one round of five, so some kills land during recovery), reopens the
//! database and checks it against a model of every acknowledged write of every round so
//! far: a document must be exactly in its acknowledged state, or — only for the one call
//! per thread that was in flight at the kill — in the state that call would have
//! produced. Every visible transaction must be whole, `verify()` must be clean, and
//! nothing else may exist. The model is exact, so a lost ack, a resurrected delete, a torn or stale
//! document, a phantom document or half a transaction all fail the test.
//!
//! Rounds continue one database, each in its own id range; some use 1 MiB WAL segments
//! and checkpoint intervals, and some also compact at 1 MiB and call `checkpoint()` and
//! `compact()` by hand, so rotations, checkpoints and compactions are under way when the
//! kills land. Each round prints one line saying what its kill hit. The database of a
//! failing round is kept and its path printed. `DOCDB_CRASH_SEED=<n>` changes the seed of
//! the kill delays and of the children's choices.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use docdb_core::{Config, Database, Error, FsyncMode};

const CHILD_DIR_ENV: &str = "DOCDB_CRASH_CHILD_DIR";
const CHILD_MODE_ENV: &str = "DOCDB_CRASH_CHILD_MODE";
const CHILD_SEED_ENV: &str = "DOCDB_CRASH_CHILD_SEED";
const CHILD_ROUND_ENV: &str = "DOCDB_CRASH_CHILD_ROUND";
const CHILD_PROFILE_ENV: &str = "DOCDB_CRASH_CHILD_PROFILE";
const SEED_ENV: &str = "DOCDB_CRASH_SEED";
const DEFAULT_SEED: u64 = 0x00D0_CDB0_C4A5_4001;

/// Writer threads in the child.
const THREADS: u64 = 8;
/// Id layout: `round * ROUND_SPAN + thread * THREAD_SPAN + i`. Single documents use
/// `i < TX_BASE`; transaction members use `i = TX_BASE + 3k + {0,1,2}`, so a member's
/// id names its two siblings.
const ROUND_SPAN: u64 = 10_000_000;
const THREAD_SPAN: u64 = 1_000_000;
const TX_BASE: u64 = 500_000;
/// A child that is never killed gives up after this long (it is then a failure).
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// xorshift64: deterministic choices without extra crates.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The exact bytes of version `v` of document `id` (a few hundred bytes).
fn doc_bytes(id: u64, v: u64) -> Vec<u8> {
    let len = 200 + (id.wrapping_mul(31).wrapping_add(v * 17) % 300) as usize;
    let c = char::from(b'a' + ((id + v) % 26) as u8);
    let pad = c.to_string().repeat(len);
    format!(r#"{{"id":{id},"v":{v},"pad":"{pad}"}}"#).into_bytes()
}

fn thread_of(id: u64) -> u64 {
    (id % ROUND_SPAN) / THREAD_SPAN
}

fn round_of(id: u64) -> u64 {
    id / ROUND_SPAN
}

/// The three members of the transaction `id` belongs to, if it is a transaction member.
fn tx_group(id: u64) -> Option<[u64; 3]> {
    let i = id % THREAD_SPAN;
    (i >= TX_BASE).then(|| {
        let first = id - (i - TX_BASE) % 3;
        [first, first + 1, first + 2]
    })
}

/// One call of a child writer, as printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create(u64, u64),
    Update(u64, u64),
    Delete(u64),
    Tx([u64; 3]),
}

impl Op {
    fn ids(&self) -> Vec<u64> {
        match *self {
            Op::Create(id, _) | Op::Update(id, _) | Op::Delete(id) => vec![id],
            Op::Tx(ids) => ids.to_vec(),
        }
    }

    /// The state of each of its documents once this call has taken effect.
    fn effect(&self) -> Vec<(u64, State)> {
        match *self {
            Op::Create(id, v) | Op::Update(id, v) => vec![(id, State::Live(v))],
            Op::Delete(id) => vec![(id, State::Absent)],
            Op::Tx(ids) => ids.iter().map(|&id| (id, State::Live(1))).collect(),
        }
    }

    /// The protocol line: `@ <verb> <numbers>`, verb lowercase for an intent (printed
    /// before the call) and uppercase for an acknowledgement (printed after `Ok`).
    fn line(&self, ack: bool) -> String {
        let (verb, nums) = match *self {
            Op::Create(id, v) => ('c', vec![id, v]),
            Op::Update(id, v) => ('u', vec![id, v]),
            Op::Delete(id) => ('d', vec![id]),
            Op::Tx(ids) => ('t', ids.to_vec()),
        };
        let verb = if ack { verb.to_ascii_uppercase() } else { verb };
        let nums: Vec<String> = nums.iter().map(u64::to_string).collect();
        format!("@ {verb} {}\n", nums.join(" "))
    }

    /// Parses a protocol line; `Err` for a malformed one.
    fn parse(line: &str) -> Result<(bool, Op), String> {
        let bad = || format!("malformed line {line:?}");
        let mut words = line.split(' ');
        let _at = words.next();
        let verb = words
            .next()
            .and_then(|w| w.chars().next())
            .ok_or_else(bad)?;
        let nums: Vec<u64> = words
            .map(|w| w.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let op = match (verb.to_ascii_lowercase(), nums.as_slice()) {
            ('c', &[id, v]) => Op::Create(id, v),
            ('u', &[id, v]) => Op::Update(id, v),
            ('d', &[id]) => Op::Delete(id),
            ('t', &[a, b, c]) => Op::Tx([a, b, c]),
            _ => return Err(bad()),
        };
        Ok((verb.is_ascii_uppercase(), op))
    }
}

/// What one round's child is configured as.
#[derive(Debug, Clone, Copy)]
struct Round {
    mode: &'static str,
    /// 1 MiB WAL segments and checkpoint interval (rotation and background checkpoints
    /// during the run).
    small: bool,
    /// Also compact at 1 MiB and 10% dead, and run `checkpoint()` and `compact()` by
    /// hand every few tens of milliseconds, during the writes.
    compact: bool,
}

impl Round {
    fn profile(&self) -> &'static str {
        match (self.small, self.compact) {
            (_, true) => "compact",
            (true, false) => "small",
            (false, false) => "default",
        }
    }
}

fn config(mode: &str, profile: &str) -> Config {
    let mut c = Config::default();
    c.wal.fsync.mode = mode.parse::<FsyncMode>().expect("fsync mode");
    if profile != "default" {
        c.wal.max_file_size_mb = 1;
        c.wal.keep_segments = 1;
        c.checkpoint.interval_mb = 1;
    }
    if profile == "compact" {
        c.compaction.size_mb = 1;
        c.compaction.tombstone_ratio = 0.1;
    }
    c
}

// ---------------------------------------------------------------------------------
// Child side.

/// Writes one whole line to stdout and flushes it, under the stdout lock so lines of
/// different threads never interleave.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).expect("write stdout");
    out.flush().expect("flush stdout");
}

/// Runs `call` between its intent and acknowledgement lines. `false` when it failed
/// (reported with an `@ E` line, which fails the parent).
fn logged(op: Op, call: impl FnOnce() -> docdb_core::Result<()>) -> bool {
    emit(&op.line(false));
    match call() {
        Ok(()) => {
            emit(&op.line(true));
            true
        }
        Err(e) => {
            emit(&format!("@ E {op:?} failed: {e}\n"));
            false
        }
    }
}

fn writer(db: &Database, round: u64, thread: u64, seed: u64) {
    let mut rng = Rng::new(seed ^ (thread + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let base = round * ROUND_SPAN + thread * THREAD_SPAN;
    let started = Instant::now();
    // Own live single documents and their versions.
    let mut live: Vec<(u64, u64)> = Vec::new();
    let (mut next_single, mut next_tx) = (0u64, 0u64);
    while started.elapsed() < CHILD_TIMEOUT {
        assert!(next_single < TX_BASE && TX_BASE + 3 * next_tx + 2 < THREAD_SPAN);
        let id = base + next_single;
        next_single += 1;
        if !logged(Op::Create(id, 1), || db.create("", id, &doc_bytes(id, 1))) {
            return;
        }
        live.push((id, 1));

        if rng.below(4) != 0 {
            let k = rng.below(live.len() as u64) as usize;
            let (id, v) = (live[k].0, live[k].1 + 1);
            if !logged(Op::Update(id, v), || db.update("", id, &doc_bytes(id, v))) {
                return;
            }
            live[k].1 = v;
        }

        if live.len() > 4 && rng.below(5) == 0 {
            let k = rng.below(live.len() as u64) as usize;
            let (id, _) = live.swap_remove(k);
            if !logged(Op::Delete(id), || db.delete("", id)) {
                return;
            }
        }

        if rng.below(3) == 0 {
            let first = base + TX_BASE + 3 * next_tx;
            next_tx += 1;
            let ids = [first, first + 1, first + 2];
            let ok = logged(Op::Tx(ids), || {
                let mut tx = db.begin();
                for id in ids {
                    tx.create("", id, &doc_bytes(id, 1))?;
                }
                tx.commit()
            });
            if !ok {
                return;
            }
        }
    }
    emit("@ E child was never killed\n");
}

/// The child process. A no-op unless the parent set `DOCDB_CRASH_CHILD_DIR`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let mode = var(CHILD_MODE_ENV);
    let profile = var(CHILD_PROFILE_ENV);
    let seed: u64 = var(CHILD_SEED_ENV).parse().expect("seed");
    let round: u64 = var(CHILD_ROUND_ENV).parse().expect("round");
    let db = match Database::open(&dir, config(&mode, &profile)) {
        Ok(db) => Arc::new(db),
        Err(e) => {
            emit(&format!("\n@ E open failed: {e}\n"));
            return;
        }
    };
    // libtest has printed "test crash_child ... " without a newline: start a fresh line.
    emit("\n@ O\n");
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || writer(&db, round, t, seed))
        })
        .collect();
    // Progress of maintenance, so the parent can tell what the kill hit.
    let stats_db = db.clone();
    std::thread::spawn(move || loop {
        let s = stats_db.stats();
        emit(&format!("@ S {} {}\n", s.checkpoints, s.compactions));
        std::thread::sleep(Duration::from_millis(10));
    });
    // Rounds are too short for 1 MiB of WAL to trigger many background compactions:
    // also run checkpoints and compactions by hand, concurrently with the writers.
    if profile == "compact" {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            loop {
                std::thread::sleep(Duration::from_millis(10 + rng.below(40)));
                if let Err(e) = db.checkpoint() {
                    emit(&format!("@ E checkpoint failed: {e}\n"));
                }
                std::thread::sleep(Duration::from_millis(10 + rng.below(40)));
                if let Err(e) = db.compact() {
                    emit(&format!("@ E compact failed: {e}\n"));
                }
            }
        });
    }
    for t in threads {
        t.join().expect("writer thread");
    }
}

// ---------------------------------------------------------------------------------
// Parent side.

/// Kills and reaps the child if the parent panics before it does.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the child printed before it died.
struct ChildRun {
    /// Protocol lines, complete (newline-terminated) ones only, in order.
    lines: Vec<String>,
    opened: bool,
    /// The child's last `checkpoints compactions` counts before the kill.
    maintenance: String,
    stderr: String,
    delay_ms: u64,
}

/// When the kill delay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DelayFrom {
    /// At spawn: the kill may land while the child is still opening (recovering).
    Spawn,
    /// When the child reports the database open: the kill lands among the writes.
    Open,
}

/// Runs one child and SIGKILLs it `delay_ms` after `from`.
fn run_child(
    dir: &Path,
    round_no: u64,
    round: Round,
    seed: u64,
    from: DelayFrom,
    delay_ms: u64,
) -> ChildRun {
    let exe = std::env::current_exe().expect("current_exe");
    let child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_MODE_ENV, round.mode)
        .env(CHILD_PROFILE_ENV, round.profile())
        .env(CHILD_SEED_ENV, seed.to_string())
        .env(CHILD_ROUND_ENV, round_no.to_string())
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().expect("child stdout");
    let mut stderr = guard.0.stderr.take().expect("child stderr");
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let out_reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut lines = Vec::new();
        let mut maintenance = String::from("0 0");
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // A last line without its newline was cut by the kill: not acknowledged.
            if buf.last() != Some(&b'\n') {
                break;
            }
            let line = String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned();
            if let Some(s) = line.strip_prefix("@ S ") {
                maintenance = s.to_owned();
            } else if line.starts_with("@ ") {
                if line == "@ O" {
                    let _ = opened_tx.send(());
                }
                lines.push(line);
            }
        }
        (lines, maintenance)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    if from == DelayFrom::Open {
        // If it never opens, kill it anyway; the checks below then say why.
        let _ = opened_rx.recv_timeout(Duration::from_secs(20));
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    let pid = libc::pid_t::try_from(guard.0.id()).expect("pid");
    // SAFETY: `pid` is our own child, not yet reaped (so not reused).
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
    let status = guard.0.wait().expect("wait for child");
    let (mut lines, maintenance) = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child exited by itself ({status}) instead of being killed; is `crash_child` \
         running? stdout tail: {:?}\nstderr: {stderr}",
        &lines[lines.len().saturating_sub(5)..]
    );
    let opened = lines.first().is_some_and(|l| l == "@ O");
    if opened {
        lines.remove(0);
    }
    ChildRun {
        lines,
        opened,
        maintenance,
        stderr,
        delay_ms,
    }
}

/// What the kill left on disk, for the round's report.
struct FilesAtKill {
    /// Newest WAL segment number (rotations happened when it grows).
    wal_segment: u64,
    /// Newest data file generation (each finished compaction adds one).
    data_generation: u64,
    /// A compaction's temp file was left behind.
    compacting: bool,
}

impl FilesAtKill {
    fn read(dir: &Path) -> FilesAtKill {
        let names = |sub: &str| -> Vec<String> {
            std::fs::read_dir(dir.join(sub))
                .map(|rd| {
                    rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let newest = |names: &[String], suffix: &str| {
            names
                .iter()
                .filter_map(|n| n.strip_suffix(suffix)?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        };
        let data = names("data");
        FilesAtKill {
            wal_segment: newest(&names("wal"), ".wal"),
            data_generation: newest(&data, ".data"),
            compacting: data.iter().any(|n| n.ends_with(".data.tmp")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Absent,
    Live(u64),
}

fn describe(bytes: Option<&Vec<u8>>) -> String {
    match bytes {
        None => "absent".into(),
        Some(b) => {
            let s = String::from_utf8_lossy(&b[..b.len().min(48)]).into_owned();
            format!("{} bytes {s:?}...", b.len())
        }
    }
}

/// Every acknowledged write of every round so far: the exact state of every document
/// the children ever acknowledged or the parent ever observed.
#[derive(Default)]
struct Model {
    docs: HashMap<u64, State>,
}

/// What one round checked.
struct RoundStats {
    acks: usize,
    in_flight: usize,
    stored: usize,
}

impl Model {
    /// Applies one round's lines; returns the calls still in flight at the kill (at most
    /// one per thread). Protocol violations are problems too.
    fn apply(
        &mut self,
        round_no: u64,
        lines: &[String],
        problems: &mut Vec<String>,
    ) -> (usize, Vec<Op>) {
        let mut in_flight: BTreeMap<u64, Op> = BTreeMap::new();
        let mut acks = 0;
        for line in lines {
            if let Some(e) = line.strip_prefix("@ E ") {
                problems.push(format!("child reported an error: {e}"));
                continue;
            }
            let (ack, op) = match Op::parse(line) {
                Ok(x) => x,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let ids = op.ids();
            if ids.iter().any(|&id| round_of(id) != round_no) {
                problems.push(format!("{line:?}: id outside round {round_no}"));
                continue;
            }
            let t = thread_of(ids[0]);
            if !ack {
                if let Some(prev) = in_flight.insert(t, op) {
                    problems.push(format!(
                        "thread {t}: intent {op:?} before the ack of {prev:?}"
                    ));
                }
                continue;
            }
            if in_flight.remove(&t) != Some(op) {
                problems.push(format!("thread {t}: ack {op:?} without its intent"));
            }
            acks += 1;
            for (id, st) in op.effect() {
                self.docs.insert(id, st);
            }
        }
        (acks, in_flight.into_values().collect())
    }

    /// Checks the reopened database against the model; afterwards the model holds what
    /// the in-flight calls were found to have done.
    fn check(&mut self, db: &Database, in_flight: &[Op], problems: &mut Vec<String>) -> usize {
        let mut stored: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = db.scan("", after, 1000).expect("scan");
            let Some(&(last, _)) = page.last() else { break };
            after = last;
            stored.extend(page);
        }

        // The states each document may be in: its acknowledged one, and the effect of
        // the call in flight on it, if any.
        let mut allowed: BTreeMap<u64, Vec<State>> = BTreeMap::new();
        for (&id, &st) in &self.docs {
            allowed.insert(id, vec![st]);
        }
        for op in in_flight {
            for (id, st) in op.effect() {
                allowed
                    .entry(id)
                    .or_insert_with(|| vec![State::Absent])
                    .push(st);
            }
        }

        let mut observed: Vec<(u64, State)> = Vec::new();
        for (&id, states) in &allowed {
            let got = stored.get(&id);
            let found = states.iter().copied().find(|st| match (st, got) {
                (State::Absent, None) => true,
                (State::Live(v), Some(b)) => *b == doc_bytes(id, *v),
                _ => false,
            });
            match found {
                Some(st) => observed.push((id, st)),
                None => problems.push(format!(
                    "doc {id}: expected one of {states:?} (acknowledged first), found {}",
                    describe(got)
                )),
            }
            // The read path must agree with the scan.
            let read = match db.read("", id) {
                Ok(b) => Some(b),
                Err(Error::NotFound) => None,
                Err(e) => {
                    problems.push(format!("doc {id}: read failed: {e}"));
                    continue;
                }
            };
            if read.as_ref() != got {
                problems.push(format!(
                    "doc {id}: read gives {} but scan gives {}",
                    describe(read.as_ref()),
                    describe(got)
                ));
            }
        }
        for (&id, b) in &stored {
            if !allowed.contains_key(&id) {
                problems.push(format!(
                    "doc {id} exists but was never written: {}",
                    describe(Some(b))
                ));
            }
            if let Some(group) = tx_group(id) {
                if !group.iter().all(|m| stored.contains_key(m)) {
                    let present: Vec<u64> = group
                        .iter()
                        .copied()
                        .filter(|m| stored.contains_key(m))
                        .collect();
                    problems.push(format!(
                        "partial transaction {group:?}: only {present:?} visible"
                    ));
                }
            }
        }
        let live = db.stats().live_docs;
        if live != stored.len() as u64 {
            problems.push(format!(
                "stats().live_docs = {live} but a scan finds {}",
                stored.len()
            ));
        }
        match db.verify() {
            Ok(r) if r.is_ok() => {}
            Ok(r) => problems.push(format!("verify(): {:?}", r.problems)),
            Err(e) => problems.push(format!("verify() failed: {e}")),
        }
        for (id, st) in observed {
            self.docs.insert(id, st);
        }
        stored.len()
    }
}

/// Runs `rounds` kill rounds against one database; panics with the first problems (and
/// keeps the database directory) on any violation.
fn crash_rounds(name: &str, seed: u64, rounds: &[Round]) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("db");
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let (mut total_acks, mut opened) = (0, 0);
    for (round_no, &round) in rounds.iter().enumerate() {
        // From 1: ids start at `ROUND_SPAN`, so none is 0 (`scan` starts after an id).
        let round_no = round_no as u64 + 1;
        let delay_ms = 20 + rng.below(281);
        let child_seed = rng.next();
        // One kill in five may land while the child is still opening the database.
        let from = if round_no % 5 == 3 {
            DelayFrom::Spawn
        } else {
            DelayFrom::Open
        };
        let run = run_child(&dir, round_no, round, child_seed, from, delay_ms);

        let files = FilesAtKill::read(&dir);
        let mut problems = Vec::new();
        let (acks, in_flight) = model.apply(round_no, &run.lines, &mut problems);
        let cfg = config(round.mode, round.profile());
        let mut stats = RoundStats {
            acks,
            in_flight: in_flight.len(),
            stored: 0,
        };
        let mut recovery = Vec::new();
        match Database::open(&dir, cfg) {
            Ok(db) => {
                recovery = db.recovery_report().dropped;
                stats.stored = model.check(&db, &in_flight, &mut problems);
                if let Err(e) = db.close() {
                    problems.push(format!("close failed: {e}"));
                }
            }
            Err(e) => problems.push(format!("reopen after the kill failed: {e}")),
        }
        total_acks += stats.acks;
        let (ckpts, compactions) = run.maintenance.split_once(' ').unwrap_or(("?", "?"));
        println!(
            "{name} round {round_no:2} {:8} {:7}: killed {:3} ms after {from:?}{}, {:5} acks + {} in flight \
             (child had done {ckpts} checkpoints, {compactions} compactions; WAL segment {}, \
             data generation {}{}), {:6} docs stored, recovery dropped {recovery:?}",
            round.mode,
            round.profile(),
            run.delay_ms,
            if run.opened { "" } else { " (before open)" },
            stats.acks,
            stats.in_flight,
            files.wal_segment,
            files.data_generation,
            if files.compacting { ", killed mid-compaction" } else { "" },
            stats.stored,
        );
        if run.opened {
            opened += 1;
        }
        if !problems.is_empty() {
            let kept = tmp.keep();
            let shown: Vec<&String> = problems.iter().take(30).collect();
            panic!(
                "{name}: round {round_no} ({round:?}, seed {seed}, child seed {child_seed}, kill \
                 {delay_ms} ms after {from:?}): {} problem(s); database kept at {}\nrecovery dropped: {recovery:?}\n\
                 in flight: {in_flight:?}\nchild stderr: {}\n{shown:#?}",
                problems.len(),
                kept.join("db").display(),
                run.stderr,
            );
        }
    }
    println!(
        "{name}: {} kills ({opened} after the child opened the database), {total_acks} \
         acknowledged writes checked, {:.1} s",
        rounds.len(),
        started.elapsed().as_secs_f64()
    );
}

fn seed() -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// `count` rounds cycling through `modes`, each mode in turn with the default, small,
/// small and compacting profiles.
fn plan(modes: &[&'static str], count: usize) -> Vec<Round> {
    (0..count)
        .map(|i| {
            let profile = (i / modes.len()) % 4;
            Round {
                mode: modes[i % modes.len()],
                small: profile != 0,
                compact: profile == 3,
            }
        })
        .collect()
}

/// `always` and `group`: durable on acknowledgement.
#[test]
fn sigkill_loses_no_acknowledged_write_in_durable_modes() {
    crash_rounds("durable", seed(), &plan(&["always", "group"], 32));
}

/// `interval` and `none`: they promise to survive a process crash.
#[test]
fn sigkill_loses_no_acknowledged_write_in_interval_and_none_modes() {
    crash_rounds("relaxed", seed() ^ 0xA5A5, &plan(&["interval", "none"], 12));
}
