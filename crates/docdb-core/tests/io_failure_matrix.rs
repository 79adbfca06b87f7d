//! The I/O-failure matrix (issue 12 item 2), in the spirit of SQLite's io-error and
//! crash tests.
//!
//! A deterministic scripted workload (collections created and deleted, creates,
//! updates, deletes, patches, a multi-document transaction, a batch, an explicit
//! checkpoint and compaction, automatic WAL rolls, checkpoints, trims and compaction
//! from small `Config` thresholds, healing, reads checked as it goes, a close) runs
//! once without faults to count its I/O calls C. Then, for every N in 1..=C and a
//! fault kind, it runs again on `FaultStorage` over `PowerLossStorage` with call N
//! failing, the power is cut (seeded), the machine "restarts" (`failure::reset` and a
//! fresh storage handle over the same files), and the database must open with every
//! document holding a value the model allows:
//! - acknowledged write → the new value;
//! - `OutcomeUnknown` → the old value or the new one (every key a transaction touched);
//! - refused (`ReadOnly`, or any error before the write reached the log) → unchanged.
//!
//! After the first failed write or fsync every later write must be refused, and reads
//! still answer from the model; EMFILE on a WAL roll, checkpoint or compaction is not
//! such a failure (DECISIONS 35): writes go on. Nothing may panic.
//!
//! A second matrix fails each call of an open that has a WAL tail to replay, then cuts
//! the power and reopens: everything is there.
//!
//! Sizes: by default every N with one fault kind per N (rotating) and one seed; with
//! `DOCDB_LONG_TESTS=1` every N × every kind × three seeds (run it with
//! `cargo nextest run --release --profile long -p docdb-core --test io_failure_matrix`:
//! it outlasts the default profile's 5-minute limit). Scenarios run two at a time
//! (`DOCDB_MATRIX_THREADS`). `DOCDB_MATRIX_SEED=<u64>`
//! replays with another base seed; `DOCDB_MATRIX_ONLY=<N>:<kind>` (kind one of eio,
//! enospc, emfile, short) runs that one scenario of the workload matrix.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use docdb_core::storage::testing::{FaultKind, FaultStorage, FileKind, OpClass, PowerLossStorage};
use docdb_core::storage::Storage;
use docdb_core::{Config, Database, Error, OpenOptions};
use serde_json::{json, Value};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on every thread (the maintenance thread too) while still printing
/// them.
fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn long() -> bool {
    std::env::var("DOCDB_LONG_TESTS").is_ok_and(|v| v == "1")
}

fn base_seed() -> u64 {
    std::env::var("DOCDB_MATRIX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1e55)
}

/// splitmix64: one well-mixed seed per scenario from the base seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The power-cut seed of scenario (`n`, `kind`, `s`-th seed) under base seed `base`.
fn seed_for(base: u64, n: u64, kind: FaultKind, s: u64) -> u64 {
    mix(base ^ (n << 8) ^ ((kind as u64) << 4) ^ s)
}

fn kind_name(k: FaultKind) -> &'static str {
    match k {
        FaultKind::Eio => "eio",
        FaultKind::Enospc => "enospc",
        FaultKind::Emfile => "emfile",
        FaultKind::ShortWrite => "short",
    }
}

fn only() -> Option<(u64, FaultKind)> {
    let v = std::env::var("DOCDB_MATRIX_ONLY").ok()?;
    let (n, k) = v.split_once(':')?;
    let kind = FaultKind::ALL.into_iter().find(|&x| kind_name(x) == k)?;
    Some((n.parse().ok()?, kind))
}

/// Small thresholds: a 1 MiB WAL segment, a checkpoint per MiB of WAL, compaction of a
/// data file past 1 MiB that is 30 % dead; healing checks one document at a time (one
/// thread: a deterministic order of reads).
fn config() -> Config {
    let mut c = Config::default();
    c.wal.max_file_size_mb = 1;
    c.wal.keep_segments = 1;
    c.checkpoint.interval_mb = 1;
    c.compaction.size_mb = 1;
    c.compaction.tombstone_ratio = 0.3;
    c.healing.max_batch_size = 1;
    c
}

fn open_on(dir: &Path, storage: Arc<dyn Storage>) -> Result<Database, Error> {
    let opts = OpenOptions {
        storage: Some(storage),
        ..Default::default()
    };
    Database::open_with(dir, config(), opts)
}

/// Padding of every document: ~20 writes fill a WAL segment.
const PAD: usize = 48 * 1024;

fn doc(id: u64, v: u64) -> Value {
    json!({"id": id, "v": v, "pad": "p".repeat(PAD)})
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

type Key = (String, u64);
/// A document's state: its JSON, or `None` when absent.
type Val = Option<Value>;

/// What the workload was told, and what each key may hold after a restart.
#[derive(Default)]
struct Model {
    /// The state every acknowledged write left (exact until the first failure; after
    /// it no write may succeed, so it no longer changes).
    cur: BTreeMap<Key, Val>,
    /// Values each key may hold after a restart.
    allowed: BTreeMap<Key, Vec<Val>>,
    /// Collections: whether each exists now / may exist after a restart.
    colls_cur: BTreeMap<String, bool>,
    colls_allowed: BTreeMap<String, BTreeSet<bool>>,
    /// Keys of a batch whose flush failed: some of its group commits may have been
    /// durable and visible, so in-process reads may show either value.
    batch_unknown: BTreeSet<Key>,
    /// A write or fsync failed: every later write must be refused.
    poisoned: bool,
    acked: u64,
    unknown: u64,
    refused: u64,
    reads: u64,
    /// The database's figures just before the close.
    stats: Option<docdb_core::Stats>,
    /// What went wrong (a non-empty list fails the scenario).
    problems: Vec<String>,
}

impl Model {
    fn get(&self, k: &Key) -> Val {
        self.cur.get(k).cloned().flatten()
    }

    fn allowed(&self, k: &Key) -> Vec<Val> {
        self.allowed.get(k).cloned().unwrap_or_else(|| vec![None])
    }

    fn coll_allowed(&self, c: &str) -> BTreeSet<bool> {
        self.colls_allowed
            .get(c)
            .cloned()
            .unwrap_or_else(|| [c.is_empty() || c == "_default"].into())
    }
}

/// A doc or collection change a write makes if it takes effect.
enum Effect {
    Doc(Key, Val),
    Coll(String, bool),
}

/// The workload's view: the database, the storage counting calls, the model.
struct Run<'a> {
    db: &'a Database,
    fs: &'a FaultStorage,
    m: Model,
}

impl Run<'_> {
    /// Accounts for the outcome of one write that would make `effects`; returns the
    /// value on success. `failures_before` is the fault count before the call.
    fn write<T>(
        &mut self,
        what: &str,
        failures_before: u64,
        r: Result<T, Error>,
        effects: Vec<Effect>,
    ) -> Option<T> {
        // Background maintenance a write triggered runs before the next step.
        self.db.wait_for_maintenance();
        let fault_fired = self.fs.failures() > failures_before;
        let was_poisoned = self.m.poisoned;
        let out = match r {
            Ok(v) => {
                if was_poisoned {
                    self.m.problems.push(format!(
                        "{what}: acknowledged after a failed write or fsync"
                    ));
                }
                self.m.acked += 1;
                for e in effects {
                    match e {
                        Effect::Doc(k, v) => {
                            self.m.allowed.insert(k.clone(), vec![v.clone()]);
                            self.m.cur.insert(k, v);
                        }
                        Effect::Coll(c, b) => {
                            self.m.colls_allowed.insert(c.clone(), [b].into());
                            self.m.colls_cur.insert(c, b);
                        }
                    }
                }
                Some(v)
            }
            Err(Error::OutcomeUnknown { detail }) => {
                if was_poisoned {
                    self.m.problems.push(format!(
                        "{what}: outcome unknown ({detail}) after an earlier failure: it \
                         should have been refused"
                    ));
                }
                self.m.unknown += 1;
                self.m.poisoned = true;
                for e in effects {
                    match e {
                        Effect::Doc(k, v) => {
                            let mut a = self.m.allowed(&k);
                            a.push(v);
                            self.m.allowed.insert(k, a);
                        }
                        Effect::Coll(c, b) => {
                            let mut a = self.m.coll_allowed(&c);
                            a.insert(b);
                            self.m.colls_allowed.insert(c, a);
                        }
                    }
                }
                None
            }
            Err(Error::ReadOnly) => {
                self.m.refused += 1;
                if !was_poisoned && !fault_fired && !self.db.is_read_only() {
                    self.m
                        .problems
                        .push(format!("{what}: read-only with no failure seen"));
                }
                self.m.poisoned = true;
                None
            }
            // An earlier write did not take effect, so the script's assumption about
            // this one no longer holds: refused by the engine's rules, not the disk's.
            Err(
                Error::NotFound
                | Error::AlreadyExists
                | Error::CollectionNotFound
                | Error::CollectionExists
                | Error::CollectionNotEmpty,
            ) if self.m.refused + self.m.unknown > 0 => {
                self.m.refused += 1;
                None
            }
            Err(e) => {
                self.m.refused += 1;
                if was_poisoned {
                    self.m.problems.push(format!(
                        "{what}: after a failure, refused with {e} instead of read-only"
                    ));
                } else if !fault_fired {
                    self.m
                        .problems
                        .push(format!("{what}: failed without an injected fault: {e}"));
                }
                None
            }
        };
        self.after(what);
        out
    }

    /// A write-like operation with no effect on documents (checkpoint, compaction,
    /// close): once poisoned it must be refused; otherwise an error needs a fault.
    fn upkeep<T>(&mut self, what: &str, failures_before: u64, r: Result<T, Error>) {
        self.db.wait_for_maintenance();
        let fault_fired = self.fs.failures() > failures_before;
        match r {
            Ok(_) if self.m.poisoned => self
                .m
                .problems
                .push(format!("{what}: succeeded after a failed write or fsync")),
            Ok(_) => {}
            Err(Error::ReadOnly) if self.m.poisoned || fault_fired => {}
            Err(e) if self.m.poisoned => self.m.problems.push(format!(
                "{what}: after a failure, refused with {e} instead of read-only"
            )),
            Err(e) if !fault_fired => self
                .m
                .problems
                .push(format!("{what}: failed without an injected fault: {e}")),
            Err(_) => {}
        }
        self.after(what);
    }

    /// An operation that writes nothing when nothing is corrupt (healing): it may
    /// succeed after a failure; an error needs a fault or the read-only state.
    fn read_only_op(&mut self, what: &str, failures_before: u64, r: Result<(), Error>) {
        self.db.wait_for_maintenance();
        let fault_fired = self.fs.failures() > failures_before;
        match r {
            Ok(()) => {}
            Err(Error::ReadOnly) if self.m.poisoned || fault_fired => {}
            Err(_) if fault_fired => {}
            Err(e) => self.m.problems.push(format!("{what}: {e}")),
        }
        self.after(what);
    }

    fn after(&mut self, what: &str) {
        if self.db.is_read_only() {
            self.m.poisoned = true;
        } else if self.m.poisoned {
            self.m.problems.push(format!(
                "{what}: a write or fsync failed but the database is not read-only"
            ));
        }
    }

    fn create(&mut self, c: &str, id: u64, v: Value) {
        let f = self.fs.failures();
        let r = self.db.create(c, id, &bytes(&v));
        let e = vec![Effect::Doc((c.into(), id), Some(v))];
        self.write(&format!("create {c}/{id}"), f, r, e);
    }

    fn update(&mut self, c: &str, id: u64, v: Value) {
        let f = self.fs.failures();
        let r = self.db.update(c, id, &bytes(&v));
        let e = vec![Effect::Doc((c.into(), id), Some(v))];
        self.write(&format!("update {c}/{id}"), f, r, e);
    }

    fn delete(&mut self, c: &str, id: u64) {
        let f = self.fs.failures();
        let r = self.db.delete(c, id);
        self.write(
            &format!("delete {c}/{id}"),
            f,
            r,
            vec![Effect::Doc((c.into(), id), None)],
        );
    }

    /// Sets `/v` to `v` by a patch; checks the returned document.
    fn patch(&mut self, c: &str, id: u64, v: u64) {
        let k: Key = (c.into(), id);
        let Some(mut want) = self.m.get(&k) else {
            return;
        };
        want["v"] = json!(v);
        let ops = format!(r#"[{{"op":"set","path":"/v","value":{v}}}]"#);
        let f = self.fs.failures();
        let r = self.db.patch(c, id, ops.as_bytes());
        let what = format!("patch {c}/{id}");
        let e = vec![Effect::Doc(k, Some(want.clone()))];
        if let Some(got) = self.write(&what, f, r, e) {
            let got: Value = serde_json::from_slice(&got).unwrap();
            if got != want {
                self.m.problems.push(format!("{what}: returned {got}"));
            }
        }
    }

    fn create_collection(&mut self, c: &str) {
        let f = self.fs.failures();
        let r = self.db.create_collection(c);
        let e = vec![Effect::Coll(c.into(), true)];
        self.write(&format!("create collection {c}"), f, r, e);
    }

    fn delete_collection(&mut self, c: &str) {
        let f = self.fs.failures();
        let r = self.db.delete_collection(c);
        let e = vec![Effect::Coll(c.into(), false)];
        self.write(&format!("delete collection {c}"), f, r, e);
    }

    /// Reads `c/id` and checks it against the model.
    fn read(&mut self, c: &str, id: u64) {
        let k: Key = (c.into(), id);
        let f = self.fs.failures();
        let r = self.db.read(c, id);
        self.m.reads += 1;
        let fault_fired = self.fs.failures() > f;
        // In this process a write whose outcome is unknown is not visible: reads show
        // the acknowledged state (a failed batch's writes may each be either).
        let allowed = if self.m.batch_unknown.contains(&k) {
            self.m.allowed(&k)
        } else {
            vec![self.m.get(&k)]
        };
        let got: Val = match r {
            Ok(b) => Some(serde_json::from_slice(&b).unwrap()),
            Err(Error::NotFound) | Err(Error::CollectionNotFound) => None,
            Err(_) if fault_fired => return,
            Err(e) => {
                self.m.problems.push(format!("read {c}/{id}: {e}"));
                return;
            }
        };
        if !allowed.contains(&got) {
            self.m
                .problems
                .push(format!("read {c}/{id}: {} not allowed", show(&got)));
        }
    }
}

fn show(v: &Val) -> String {
    match v {
        None => "absent".into(),
        Some(v) => format!("v={}", v["v"]),
    }
}

/// The scripted workload. Returns the model; the database is closed (or dropped when
/// the close failed).
fn workload(dir: &Path, fs: &FaultStorage) -> Model {
    let db = match open_on(dir, fs.handle()) {
        Ok(db) => db,
        Err(e) => {
            let mut m = Model::default();
            if fs.failures() == 0 {
                m.problems.push(format!("first open failed: {e}"));
            }
            return m;
        }
    };
    let mut r = Run {
        db: &db,
        fs,
        m: Model::default(),
    };
    r.create_collection("c1");
    for id in 0..12 {
        r.create("", id, doc(id, 0));
        if id % 6 == 5 {
            r.read("", id - 2);
        }
    }
    for id in 100..104 {
        r.create("c1", id, doc(id, 0));
    }
    for id in 0..6 {
        r.update("", id, doc(id, 1));
    }
    r.read("", 3);
    r.read("c1", 101);
    for id in 6..9 {
        r.delete("", id);
    }
    r.read("", 6);
    for id in 9..11 {
        r.patch("", id, 2);
    }
    r.read("", 10);

    // A transaction over both collections.
    {
        let f = fs.failures();
        let mut tx = db.begin();
        let k0: Key = ("".into(), 0);
        let mut p = r.m.get(&("".into(), 11)).unwrap_or(Value::Null);
        p["v"] = json!(3);
        let staged = tx
            .update("", 0, &bytes(&doc(0, 3)))
            .and_then(|()| tx.create("c1", 200, &bytes(&doc(200, 3))))
            .and_then(|()| tx.delete("", 1))
            .and_then(|()| tx.patch("", 11, br#"[{"op":"set","path":"/v","value":3}]"#));
        let res = staged.and_then(|_| tx.commit());
        let e = vec![
            Effect::Doc(k0, Some(doc(0, 3))),
            Effect::Doc(("c1".into(), 200), Some(doc(200, 3))),
            Effect::Doc(("".into(), 1), None),
            Effect::Doc(("".into(), 11), Some(p)),
        ];
        r.write("transaction", f, res, e);
    }
    r.read("", 0);
    r.read("", 1);

    // A batch: independent writes sharing group commits; its flush reports for all.
    {
        let f = fs.failures();
        let mut b = db.batch();
        let mut staged = Vec::new();
        let mut refused = None;
        for id in 300..303 {
            match b.create("", id, &bytes(&doc(id, 4))) {
                Ok(()) => staged.push(Effect::Doc(("".into(), id), Some(doc(id, 4)))),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let flushed = b.finish();
        match (refused, flushed) {
            // Every staged write was acknowledged.
            (None, Ok(())) => {
                r.write("batch", f, Ok(()), staged);
            }
            // A staging refusal, or a failed flush: each staged write may or may not be
            // there (the flush does not say which of its group commits failed).
            (refused, flushed) => {
                for e in &staged {
                    if let Effect::Doc(k, _) = e {
                        r.m.batch_unknown.insert(k.clone());
                    }
                }
                let e = refused.unwrap_or_else(|| flushed.unwrap_err());
                let e = match e {
                    Error::ReadOnly if !staged.is_empty() => Error::OutcomeUnknown {
                        detail: "batch flush".into(),
                    },
                    e => e,
                };
                r.write::<()>("batch", f, Err(e), staged);
            }
        }
    }
    r.read("", 302);

    let f = fs.failures();
    let res = db.checkpoint();
    r.upkeep("checkpoint", f, res);

    // Enough rewrites to roll the WAL, checkpoint, trim and compact on their own.
    for round in 5..9 {
        for id in (0..6).chain(9..12) {
            if r.m.get(&("".into(), id)).is_some() {
                r.update("", id, doc(id, round));
            }
        }
        r.read("", 5);
    }

    // Empty c1, delete it, make c2.
    for id in (100..104).chain([200]) {
        r.delete("c1", id);
    }
    r.delete_collection("c1");
    r.create_collection("c2");
    r.create("c2", 7, doc(7, 8));
    r.read("c2", 7);
    r.read("c1", 100);

    // Healing runs even with nothing corrupt: it reads every live document.
    let f = fs.failures();
    let res = db.heal_all();
    r.read_only_op("heal_all", f, res.map(|_| ()));
    let f = fs.failures();
    let res = db.heal_scan();
    r.read_only_op("heal_scan", f, res.map(|_| ()));

    let f = fs.failures();
    let res = db.compact();
    r.upkeep("compact", f, res);
    for id in 400..402 {
        r.create("", id, doc(id, 9));
    }
    for id in [0, 2, 5, 10, 11, 300, 401] {
        r.read("", id);
    }
    let mut m = r.m;
    m.stats = Some(db.stats());
    let f = fs.failures();
    let res = db.close();
    // After close the handle is closed, not read-only: accounted here, not by `after`.
    let fault_fired = fs.failures() > f;
    match res {
        Ok(()) if m.poisoned => m.problems.push("close: succeeded after a failure".into()),
        Ok(()) => {}
        Err(Error::ReadOnly) if m.poisoned || fault_fired => {}
        Err(e) if !fault_fired => m.problems.push(format!("close failed: {e}")),
        Err(_) => {}
    }
    m
}

/// Every key the workload may touch, and a few it never does.
fn universe(m: &Model) -> BTreeSet<Key> {
    let mut u: BTreeSet<Key> = m.allowed.keys().cloned().collect();
    u.extend(m.cur.keys().cloned());
    for c in ["", "c1", "c2"] {
        for id in [0, 50, 100, 200, 300, 400, 999] {
            u.insert((c.into(), id));
        }
    }
    u
}

/// Opens the database after the restart and checks it against the model; returns
/// the problems found.
fn check_after_restart(dir: &Path, storage: Arc<dyn Storage>, m: &Model) -> Vec<String> {
    docdb_core::failure::reset(dir);
    let db = match open_on(dir, storage) {
        Ok(db) => db,
        Err(e) => return vec![format!("reopen after the power cut failed: {e}")],
    };
    let mut problems = Vec::new();
    let colls = db.list_collections();
    for c in ["c1", "c2"] {
        let there = colls.iter().any(|x| x == c);
        if !m.coll_allowed(c).contains(&there) {
            problems.push(format!("collection {c}: exists={there} not allowed"));
        }
    }
    let u = universe(m);
    // Nothing the workload never wrote.
    for c in &colls {
        let c = if c == "_default" { "" } else { c.as_str() };
        match db.scan(c, 0, 1000) {
            Ok(rows) => {
                for (id, _) in rows {
                    if !u.contains(&(c.to_string(), id)) {
                        problems.push(format!("after restart, {c}/{id} exists: never written"));
                    }
                }
            }
            Err(e) => problems.push(format!("after restart, scan {c}: {e}")),
        }
    }
    for k in u {
        let got: Val = match db.read(&k.0, k.1) {
            Ok(b) => Some(serde_json::from_slice(&b).unwrap()),
            Err(Error::NotFound) | Err(Error::CollectionNotFound) => None,
            Err(e) => {
                problems.push(format!("after restart, read {}/{}: {e}", k.0, k.1));
                continue;
            }
        };
        let allowed = m.allowed(&k);
        if !allowed.contains(&got) {
            problems.push(format!(
                "after restart, {}/{}: {} (allowed: {})",
                k.0,
                k.1,
                show(&got),
                allowed.iter().map(show).collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    match db.verify() {
        Ok(v) if v.is_ok() => {}
        Ok(v) => problems.push(format!("verify after restart: {:?}", v.problems)),
        Err(e) => problems.push(format!("verify after restart failed: {e}")),
    }
    // And it takes writes again.
    if let Err(e) = db.create("", 1_000_000, b"{}") {
        problems.push(format!("write after restart: {e}"));
    }
    if let Err(e) = db.close() {
        problems.push(format!("close after restart: {e}"));
    }
    problems
}

#[derive(Default)]
struct Tally {
    scenarios: u64,
    unfired: u64,
    acked: u64,
    unknown: u64,
    refused: u64,
    reads: u64,
    /// Scenarios where EMFILE hit an open (they must not poison).
    emfile_opens: u64,
    failures: Vec<String>,
    /// The slowest scenarios: (time, label).
    slowest: Vec<(std::time::Duration, String)>,
}

/// One scenario: call `n` fails with `kind`, the power is cut with `seed`.
fn scenario(n: u64, kind: FaultKind, seed: u64, t: &mut Tally) {
    let label = format!("N={n} kind={} seed={seed}", kind_name(kind));
    let started = Instant::now();
    scenario_inner(n, kind, seed, t, &label);
    t.slowest.push((started.elapsed(), label));
    t.slowest.sort_by_key(|b| std::cmp::Reverse(b.0));
    t.slowest.truncate(3);
}

fn scenario_inner(n: u64, kind: FaultKind, seed: u64, t: &mut Tally, label: &str) {
    let d = tempfile::tempdir().unwrap();
    let disk = PowerLossStorage::new();
    let fs = FaultStorage::new(disk.clone());
    fs.fail_call(n, kind);
    let panics = PANICS.load(Ordering::SeqCst);
    let m = match catch_unwind(AssertUnwindSafe(|| workload(d.path(), &fs))) {
        Ok(m) => m,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            t.failures.push(format!("{label}: panicked: {msg}"));
            return;
        }
    };
    if PANICS.load(Ordering::SeqCst) != panics {
        t.failures
            .push(format!("{label}: a thread panicked during the workload"));
    }
    t.scenarios += 1;
    if fs.failures() == 0 {
        t.unfired += 1;
    }
    // Running out of descriptors when opening a file (a WAL roll, a checkpoint, a
    // compaction, an index snapshot) is a shortage, not a disk failure (DECISIONS 35):
    // it must never make the database read-only.
    let failed = fs.log().into_iter().find(|c| c.failed);
    if let Some(c) = failed {
        if kind == FaultKind::Emfile && c.class == OpClass::Open {
            t.emfile_opens += 1;
            if m.poisoned {
                t.failures.push(format!(
                    "{label}: EMFILE opening a {:?} file made the database read-only",
                    c.file
                ));
            }
        }
    }
    if only().is_some() {
        let log = fs.log();
        let at = (n as usize).saturating_sub(4)..(n as usize + 3).min(log.len());
        eprintln!("{label}: calls around N: {:?}", &log[at]);
    }
    t.acked += m.acked;
    t.unknown += m.unknown;
    t.refused += m.refused;
    t.reads += m.reads;
    for p in &m.problems {
        t.failures.push(format!("{label}: {p}"));
    }
    if let Err(e) = disk.cut(seed) {
        t.failures.push(format!("{label}: power cut failed: {e}"));
        return;
    }
    let restarted: Arc<dyn Storage> = disk.restart();
    let panics = PANICS.load(Ordering::SeqCst);
    match catch_unwind(AssertUnwindSafe(|| {
        check_after_restart(d.path(), restarted, &m)
    })) {
        Ok(ps) => t
            .failures
            .extend(ps.into_iter().map(|p| format!("{label}: {p}"))),
        Err(_) => t.failures.push(format!("{label}: panicked after restart")),
    }
    if PANICS.load(Ordering::SeqCst) != panics {
        t.failures
            .push(format!("{label}: a thread panicked after restart"));
    }
    if only().is_some() {
        eprintln!("{label}: files kept in {}", d.keep().display());
    }
}

fn report(name: &str, t: &Tally, started: Instant) {
    eprintln!(
        "{name}: {} scenarios ({} where the fault did not fire), {} acknowledged / {} \
         unknown / {} refused writes and {} reads checked, {} EMFILE-on-open scenarios \
         that went on writing, {} failures, {:.1?}",
        t.scenarios,
        t.unfired,
        t.acked,
        t.unknown,
        t.refused,
        t.reads,
        t.emfile_opens,
        t.failures.len(),
        started.elapsed()
    );
    eprintln!("  slowest scenarios: {:?}", t.slowest);
    for f in t.failures.iter().take(40) {
        eprintln!("  {f}");
    }
    assert!(
        t.failures.is_empty(),
        "{name}: {} failures (first: {})",
        t.failures.len(),
        t.failures[0]
    );
}

#[test]
fn every_failed_call_of_the_workload_keeps_the_model_through_a_power_cut() {
    count_panics();
    let started = Instant::now();
    let base = base_seed();
    eprintln!("workload matrix: base seed {base} (DOCDB_MATRIX_SEED to replay)");

    // The fault-free run: counts the calls, and is itself checked.
    let d = tempfile::tempdir().unwrap();
    let disk = PowerLossStorage::new();
    let fs = FaultStorage::new(disk.clone());
    let m = workload(d.path(), &fs);
    assert!(m.problems.is_empty(), "fault-free run: {:?}", m.problems);
    assert_eq!(m.refused + m.unknown, 0);
    let calls = fs.calls();
    let mut classes: BTreeMap<String, u64> = BTreeMap::new();
    for c in fs.log() {
        *classes
            .entry(format!("{:?}/{:?}", c.class, c.file))
            .or_default() += 1;
    }
    eprintln!("workload calls by class: {classes:?}");
    eprintln!(
        "workload: C = {calls} I/O calls, {} acknowledged writes",
        m.acked
    );
    // The workload does what it claims: automatic checkpoints and compaction besides
    // the explicit ones, WAL segments rolled and trimmed.
    let stats = m.stats.clone().unwrap();
    let trims = fs.count_on(OpClass::Remove, FileKind::Wal);
    eprintln!(
        "workload: {} checkpoints, {} compactions, {trims} WAL segments trimmed",
        stats.checkpoints, stats.compactions
    );
    assert!(stats.checkpoints >= 3, "{stats:?}");
    assert!(stats.compactions >= 2, "{stats:?}");
    assert!(trims >= 1, "no WAL segment was trimmed");
    disk.cut(base).unwrap();
    let problems = check_after_restart(d.path(), disk.restart(), &m);
    assert!(problems.is_empty(), "fault-free run: {problems:?}");

    let mut t = Tally::default();
    if let Some((n, kind)) = only() {
        scenario(n, kind, seed_for(base, n, kind, 0), &mut t);
        return report("workload matrix (one)", &t, started);
    }
    let seeds: u64 = if long() { 3 } else { 1 };
    let mut jobs = Vec::new();
    for n in 1..=calls {
        let kinds: Vec<FaultKind> = if long() {
            FaultKind::ALL.to_vec()
        } else {
            vec![FaultKind::ALL[(n % 4) as usize]]
        };
        for kind in kinds {
            for s in 0..seeds {
                jobs.push((n, kind, seed_for(base, n, kind, s)));
            }
        }
    }
    // Scenarios are independent (own directories, own storages): two at a time.
    let threads = std::env::var("DOCDB_MATRIX_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2usize)
        .max(1);
    let next = AtomicUsize::new(0);
    let tallies: Vec<Tally> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| {
                    let mut t = Tally::default();
                    while let Some(&(n, kind, seed)) = jobs.get(next.fetch_add(1, Ordering::SeqCst))
                    {
                        scenario(n, kind, seed, &mut t);
                    }
                    t
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for x in tallies {
        t.scenarios += x.scenarios;
        t.unfired += x.unfired;
        t.acked += x.acked;
        t.unknown += x.unknown;
        t.refused += x.refused;
        t.reads += x.reads;
        t.emfile_opens += x.emfile_opens;
        t.failures.extend(x.failures);
        t.slowest.extend(x.slowest);
    }
    t.slowest.sort_by_key(|b| std::cmp::Reverse(b.0));
    t.slowest.truncate(3);
    report("workload matrix", &t, started);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Every call of an open that replays a WAL tail fails in turn: the open errs or
/// succeeds (and then answers from the model), and after a power cut and a restart
/// the database opens with every acknowledged write.
#[test]
fn every_failed_call_of_a_recovering_open_loses_nothing_through_a_power_cut() {
    count_panics();
    let started = Instant::now();
    let base = base_seed();
    let src = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    {
        let db = open_on(src.path(), docdb_core::storage::default_storage()).unwrap();
        db.create_collection("c1").unwrap();
        for id in 0..30 {
            db.create("", id, &bytes(&doc(id, 0))).unwrap();
            m.allowed.insert(("".into(), id), vec![Some(doc(id, 0))]);
        }
        db.checkpoint().unwrap();
        // The tail past the checkpoint that the open replays.
        for id in 0..10 {
            db.update("", id, &bytes(&doc(id, 1))).unwrap();
            m.allowed.insert(("".into(), id), vec![Some(doc(id, 1))]);
        }
        for id in 10..14 {
            db.delete("", id).unwrap();
            m.allowed.insert(("".into(), id), vec![None]);
        }
        let mut tx = db.begin();
        tx.create("c1", 5, &bytes(&doc(5, 2))).unwrap();
        tx.update("", 20, &bytes(&doc(20, 2))).unwrap();
        tx.commit().unwrap();
        m.allowed.insert(("c1".into(), 5), vec![Some(doc(5, 2))]);
        m.allowed.insert(("".into(), 20), vec![Some(doc(20, 2))]);
        m.colls_allowed.insert("c1".into(), [true].into());
        // Dropped without close: acknowledged, not checkpointed.
    }
    let probe = tempfile::tempdir().unwrap();
    copy_dir(src.path(), probe.path());
    let fs = FaultStorage::new(PowerLossStorage::new());
    drop(open_on(probe.path(), fs.handle()).unwrap());
    let calls = fs.calls();
    eprintln!("recovering open: C = {calls} I/O calls, base seed {base}");
    let mut t = Tally::default();
    let mut failed_opens = 0;
    for n in 1..=calls {
        let kinds: Vec<FaultKind> = if long() {
            FaultKind::ALL.to_vec()
        } else {
            vec![FaultKind::ALL[(n % 4) as usize]]
        };
        for kind in kinds {
            let seed = mix(base ^ (n << 8) ^ ((kind as u64) << 4) ^ 0xabc);
            let label = format!("open N={n} kind={} seed={seed}", kind_name(kind));
            let d = tempfile::tempdir().unwrap();
            copy_dir(src.path(), d.path());
            let disk = PowerLossStorage::new();
            let fs = FaultStorage::new(disk.clone());
            fs.fail_call(n, kind);
            let panics = PANICS.load(Ordering::SeqCst);
            let r = catch_unwind(AssertUnwindSafe(|| {
                let mut problems = Vec::new();
                match open_on(d.path(), fs.handle()) {
                    Ok(db) => {
                        for k in universe(&m) {
                            let got: Val = match db.read(&k.0, k.1) {
                                Ok(b) => Some(serde_json::from_slice(&b).unwrap()),
                                Err(Error::NotFound) | Err(Error::CollectionNotFound) => None,
                                Err(e) => {
                                    problems.push(format!("read {}/{}: {e}", k.0, k.1));
                                    continue;
                                }
                            };
                            if !m.allowed(&k).contains(&got) {
                                problems.push(format!("{}/{}: {}", k.0, k.1, show(&got)));
                            }
                        }
                        drop(db);
                        false
                    }
                    Err(_) => true,
                }
                .then(|| failed_opens += 1);
                problems
            }));
            t.scenarios += 1;
            match r {
                Ok(ps) => t
                    .failures
                    .extend(ps.into_iter().map(|p| format!("{label}: {p}"))),
                Err(_) => t.failures.push(format!("{label}: panicked")),
            }
            if fs.failures() == 0 {
                t.unfired += 1;
            }
            disk.cut(seed).unwrap();
            let ps = check_after_restart(d.path(), disk.restart(), &m);
            t.failures
                .extend(ps.into_iter().map(|p| format!("{label}: {p}")));
            if PANICS.load(Ordering::SeqCst) != panics {
                t.failures.push(format!("{label}: a thread panicked"));
            }
        }
    }
    eprintln!("recovering open: {failed_opens} opens reported an error");
    assert!(failed_opens > 0, "no failed call made an open fail");
    report("recovering-open matrix", &t, started);
}

/// Found by the matrix (N=212 eio, N=246 emfile): when zero-filling ahead of the WAL
/// failed, the writer appended without the zeros but left its record of the
/// zero-filled end behind the records it then wrote, so the next zero-fill started
/// there and overwrote acknowledged records with zeros; replay then stopped at them.
#[test]
fn a_failed_wal_zero_fill_does_not_erase_acknowledged_records() {
    for kind in [FaultKind::Enospc, FaultKind::Eio] {
        let d = tempfile::tempdir().unwrap();
        let disk = PowerLossStorage::new();
        let fs = FaultStorage::new(disk.clone());
        let db = open_on(d.path(), fs.handle()).unwrap();
        // The first WAL write of the first commit is its zero-fill: it fails, the
        // records go in without it.
        fs.arm(
            docdb_core::storage::testing::Fault::first(OpClass::Write, 1, kind).on(FileKind::Wal),
        );
        for id in 1..=3 {
            db.create("", id, &bytes(&doc(id, 0))).unwrap();
        }
        assert_eq!(
            fs.failures(),
            1,
            "{kind:?}: the zero-fill was tried and failed"
        );
        assert!(
            !db.is_read_only(),
            "{kind:?}: a failed zero-fill is not a poison"
        );
        // The power goes before any checkpoint: the WAL is the only copy.
        disk.cut_keep_nothing_unsynced().unwrap();
        drop(db);
        docdb_core::failure::reset(d.path());
        let db = open_on(d.path(), disk.restart()).unwrap();
        for id in 1..=3 {
            let got = db
                .read("", id)
                .map(|b| serde_json::from_slice::<Value>(&b).unwrap());
            assert_eq!(
                got.ok(),
                Some(doc(id, 0)),
                "{kind:?}: acknowledged doc {id} lost"
            );
        }
        let v = db.verify().unwrap();
        assert!(v.is_ok(), "{kind:?}: {:?}", v.problems);
    }
}

/// Found by the matrix (N=9 enospc): a first open that failed writing the new data
/// file's header (or a crash at that moment) left an empty `1.data` and no CHECKPOINT,
/// and every later open refused the database ("invalid data file header") although
/// it never held a record.
#[test]
fn a_new_database_whose_first_open_failed_opens_later() {
    for kind in FaultKind::ALL {
        for seed in 0..4 {
            let d = tempfile::tempdir().unwrap();
            let disk = PowerLossStorage::new();
            let fs = FaultStorage::new(disk.clone());
            fs.arm(
                docdb_core::storage::testing::Fault::first(OpClass::Write, 1, kind)
                    .on(FileKind::Data),
            );
            assert!(open_on(d.path(), fs.handle()).is_err(), "{kind:?}");
            disk.cut(seed).unwrap();
            docdb_core::failure::reset(d.path());
            let db = open_on(d.path(), disk.restart())
                .unwrap_or_else(|e| panic!("{kind:?} seed {seed}: reopen: {e}"));
            db.create("", 1, b"{}").unwrap();
            db.close().unwrap();
        }
    }
}
