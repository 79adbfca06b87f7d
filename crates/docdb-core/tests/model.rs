//! Model-based property tests of the storage engine, and never-panic properties of its
//! on-disk decoders.
//!
//! `engine_matches_the_model` runs random sequences of operations against a real
//! [`Database`] and against an in-memory model (a map from `(collection, id)` to the
//! document's bytes, plus the set of collections), and compares every outcome: the
//! returned value, or the exact [`Error`] variant. The operations cover create / read /
//! update / delete / patch (successful and failing patches; the model computes patches
//! with the engine's own `docdb_core::patch::apply`, which is unit-tested on its own —
//! what is under test here is storage), scans with random bounds and limits,
//! transactions that commit or roll back (including writes inside them that must fail),
//! transactions interleaved with writes, checkpoints and compactions outside them
//! (snapshot reads, `Conflict` on a write-write conflict), collection create / delete
//! (including deleting a non-empty collection), explicit checkpoints and compactions,
//! and three kinds of restart:
//!
//! * clean: `close()` and reopen — the state is exactly the model, nothing is dropped;
//! * drop: drop the handle without `close()` and reopen — the same;
//! * crash: drop without `close()`, truncate the newest WAL segment at a random offset
//!   at or after its header, reopen — the state must be the model's state after some
//!   prefix of the committed operations, no shorter than what was durable (the last
//!   checkpoint, compaction or open), so a transaction is wholly present or wholly
//!   absent. The run then continues from the recovered state.
//!
//! Configurations are random too: small WAL segments and checkpoint intervals (so
//! rotation, automatic checkpoints, WAL trimming and automatic compaction happen inside
//! one case, with documents from a few bytes up to ~20 KB), and every fsync mode. Half
//! the cases are "calm" (few restarts, bulk writes: a megabyte of WAL accumulates), half
//! "stormy" (restarts, checkpoints and compactions every few operations).
//! `the_generator_reaches_the_interesting_paths` checks on fixed cases that all of this
//! really happens.
//!
//! `DOCDB_PROPTEST_CASES` sets the number of cases (default 100: about 8 s in release
//! mode on 2 idle cores, under a minute on a loaded machine — the test is fsync-bound);
//! `PROPTEST_RNG_SEED` replays a run.
//!
//! The decoder properties are the fuzz targets of CI in proptest form:
//! `docdb_core::wal::record::decode` and `docdb_core::data::record::decode_header` never
//! panic on arbitrary bytes, on well-framed records with arbitrary bodies (valid CRC,
//! nonsense inside), or on damaged valid records.
//!
//! Engine bugs this file found (since fixed) are at the end, as regression tests; each
//! doc comment there describes the bug as it was found.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use docdb_core::config::FsyncMode;
use docdb_core::data::record::{decode_header, payload_ok, Kind};
use docdb_core::wal::record::{decode, DecodeError, WalOp};
use docdb_core::{Config, Database, Error, Transaction};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// What is generated
// ---------------------------------------------------------------------------------------

/// Collection names the operations use: `""` is `_default`; `c1` exists at the start and
/// may be deleted and re-created; `tmp` is created and deleted during the run.
const COLLS: [&str; 4] = ["_default", "", "c1", "tmp"];
/// The id space: small so operations collide, plus the largest id for scan edges.
const IDS: [u64; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, u64::MAX];

fn canon(name: &str) -> &str {
    if name.is_empty() {
        "_default"
    } else {
        name
    }
}

/// A document, described compactly (so failures print short inputs) and expanded by
/// [`DocSpec::bytes`].
#[derive(Debug, Clone, Copy)]
struct DocSpec {
    shape: u8,
    pad: u16,
    salt: u16,
}

impl DocSpec {
    fn bytes(&self) -> Vec<u8> {
        let pad: String = (0..self.pad as u32)
            .map(|i| (b'a' + ((i + self.salt as u32) % 26) as u8) as char)
            .collect();
        let s = self.salt;
        // Raw and escaped non-ASCII text, in one document out of five: stored bytes
        // must come back byte for byte.
        let uni = ["\u{e9}\\u00e9\u{1F600}", "", "", "", ""][s as usize % 5];
        match self.shape {
            0 => format!(r#"{{"k0":{s},"k1":"{}","pad":"{pad}{uni}"}}"#, s % 7),
            1 => format!(
                r#"{{ "k1" : {} , "n" : {{ "k2" : [1, 2, {s}] }} , "pad" : "{pad}" }}"#,
                s % 3
            ),
            2 => format!(r#"{{"pad":"{pad}","arr":[{s},"{uni}"],"k2":null}}"#),
            3 => format!(r#"[{s}, "{pad}"]"#),
            4 => format!(r#""{pad}{uni}""#),
            _ => ["null", "true", "-12.5e3", "0", "{}", "[]"][s as usize % 6].to_string(),
        }
        .into_bytes()
    }
}

/// A patch, described compactly and expanded by [`PatchSpec::bytes`]. Some always
/// fail, some fail depending on the document, most succeed on objects.
#[derive(Debug, Clone, Copy)]
enum PatchSpec {
    SetField(u8, i16),
    SetNested(u8, i16),
    /// DocDB `delete`: fails with InvalidPath when the field is missing.
    DeleteField(u8),
    /// RFC `remove` of a path that never exists: InvalidPath.
    RemoveMissing,
    /// `test` then `set`: PatchTestFailed unless the field has that value.
    TestThenSet(u8, i16),
    /// Not an array: InvalidPatch.
    NotAnArray,
    /// Unknown op name: InvalidPatch.
    UnknownOp,
    /// `[]`: InvalidPatch.
    Empty,
    /// A pointer without the leading `/`: InvalidPath.
    BadPointer,
    /// Capitalised member names (Go clients) and a value that grows the document.
    Grow(u16),
    /// `set` of an array, then `insert` into it.
    ArrayInsert(i16),
    /// A good op, then a failing one: all or nothing, so InvalidPath and no change.
    HalfBad(i16),
}

impl PatchSpec {
    fn bytes(&self) -> Vec<u8> {
        match *self {
            PatchSpec::SetField(k, v) => format!(r#"[{{"op":"set","path":"/k{}","value":{v}}}]"#, k % 4),
            PatchSpec::SetNested(k, v) => {
                format!(r#"[{{"op":"set","path":"/n/k{}/x","value":{v}}}]"#, k % 4)
            }
            PatchSpec::DeleteField(k) => format!(r#"[{{"op":"delete","path":"/k{}"}}]"#, k % 4),
            PatchSpec::RemoveMissing => r#"[{"op":"remove","path":"/nope/deeper"}]"#.into(),
            PatchSpec::TestThenSet(k, v) => format!(
                r#"[{{"op":"test","path":"/k{}","value":{v}}},{{"op":"set","path":"/t","value":true}}]"#,
                k % 4
            ),
            PatchSpec::NotAnArray => r#"{"op":"set","path":"/a","value":1}"#.into(),
            PatchSpec::UnknownOp => r#"[{"op":"frobnicate","path":"/a","value":1}]"#.into(),
            PatchSpec::Empty => "[]".into(),
            PatchSpec::BadPointer => r#"[{"op":"set","path":"k0","value":1}]"#.into(),
            PatchSpec::Grow(n) => format!(r#"[{{"Op":"SET","Path":"/big","Value":"{}"}}]"#, "g".repeat(n as usize)),
            PatchSpec::ArrayInsert(v) => format!(
                r#"[{{"op":"set","path":"/arr","value":[1,2]}},{{"op":"insert","path":"/arr/1","value":{v}}}]"#
            ),
            PatchSpec::HalfBad(v) => format!(
                r#"[{{"op":"set","path":"/k0","value":{v}}},{{"op":"delete","path":"/missing"}}]"#
            ),
        }
        .into_bytes()
    }
}

/// Where a scan starts: `after` indexes [`scan_after`] (0: from the start).
#[derive(Debug, Clone, Copy)]
struct ScanSpec {
    coll: usize,
    after: usize,
    limit: usize,
}

fn scan_after(i: usize) -> u64 {
    match i {
        0 => 0,
        16 => u64::MAX - 1,
        17 => u64::MAX,
        i => i as u64,
    }
}

#[derive(Debug, Clone)]
enum TxOp {
    Create(usize, usize, DocSpec),
    Update(usize, usize, DocSpec),
    Delete(usize, usize),
    Patch(usize, usize, PatchSpec),
    Read(usize, usize),
    Scan(ScanSpec),
}

/// One step while a transaction is open: an operation in it, or one outside it (a
/// write, a checkpoint or a compaction).
#[derive(Debug, Clone)]
enum Step {
    Tx(TxOp),
    Db(Op),
}

#[derive(Debug, Clone, Copy)]
enum Restart {
    /// `close()`, reopen.
    Clean,
    /// Drop without `close()`, reopen.
    Drop,
    /// Drop, truncate the newest WAL segment at `24 + frac * (len - 24)`, reopen.
    Crash(u32),
}

#[derive(Debug, Clone)]
enum Op {
    Create(usize, usize, DocSpec),
    Update(usize, usize, DocSpec),
    Delete(usize, usize),
    Read(usize, usize),
    Patch(usize, usize, PatchSpec),
    /// A create or update with invalid JSON: always InvalidJson, nothing changes.
    BadJson(usize, usize, bool),
    Scan(ScanSpec),
    Tx(Vec<TxOp>, bool),
    /// A transaction interleaved with writes, checkpoints and compactions outside it.
    Interleaved(Vec<Step>, bool),
    /// A committed transaction writing 5 documents (create or update) from id `.1` on.
    Bulk(usize, usize, DocSpec),
    CreateColl(usize),
    DeleteColl(usize),
    /// Delete every document of the collection, then the collection (which must work).
    EmptyAndDeleteColl(usize),
    ListColls,
    Checkpoint,
    Compact,
    Verify,
    Restart(Restart),
}

#[derive(Debug, Clone)]
struct CaseConfig {
    calm: bool,
    small_wal: bool,
    small_checkpoint: bool,
    small_compaction: bool,
    keep_segments: usize,
    mode: u8,
}

impl CaseConfig {
    fn config(&self) -> Config {
        let mut c = Config::default();
        c.wal.max_file_size_mb = if self.small_wal { 1 } else { 64 };
        c.checkpoint.interval_mb = if self.small_checkpoint { 1 } else { 64 };
        c.compaction.size_mb = if self.small_compaction { 1 } else { 100 };
        c.wal.keep_segments = self.keep_segments;
        c.wal.fsync.mode = match self.mode {
            0 | 1 => FsyncMode::Group,
            2 => FsyncMode::Always,
            3 => FsyncMode::Interval,
            _ => FsyncMode::None,
        };
        c
    }
}

fn coll_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0usize), 1 => Just(1usize), 3 => Just(2usize), 2 => Just(3usize)]
}

/// Patches and bulk writes mostly go where documents are dense (and the collection
/// exists), so that most of them succeed.
fn patch_coll_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![6 => Just(0usize), 1 => Just(1usize), 2 => Just(2usize), 1 => Just(3usize)]
}

fn id_strategy() -> impl Strategy<Value = usize> {
    0usize..IDS.len()
}

fn doc_strategy() -> impl Strategy<Value = DocSpec> {
    let pad = prop_oneof![3 => 0u16..40, 2 => 40u16..2000, 5 => 5000u16..20000];
    let shape = prop_oneof![6 => 0u8..3, 1 => 3u8..6];
    (shape, pad, any::<u16>()).prop_map(|(shape, pad, salt)| DocSpec { shape, pad, salt })
}

/// Large objects, for bulk writes that fill WAL segments.
fn big_doc_strategy() -> impl Strategy<Value = DocSpec> {
    (0u8..3, 5000u16..20000, any::<u16>()).prop_map(|(shape, pad, salt)| DocSpec {
        shape,
        pad,
        salt,
    })
}

fn patch_strategy() -> impl Strategy<Value = PatchSpec> {
    prop_oneof![
        4 => (any::<u8>(), -3i16..3).prop_map(|(k, v)| PatchSpec::SetField(k, v)),
        2 => (any::<u8>(), any::<i16>()).prop_map(|(k, v)| PatchSpec::SetNested(k, v)),
        2 => any::<u8>().prop_map(PatchSpec::DeleteField),
        1 => Just(PatchSpec::RemoveMissing),
        2 => (any::<u8>(), -3i16..3).prop_map(|(k, v)| PatchSpec::TestThenSet(k, v)),
        1 => Just(PatchSpec::NotAnArray),
        1 => Just(PatchSpec::UnknownOp),
        1 => Just(PatchSpec::Empty),
        1 => Just(PatchSpec::BadPointer),
        2 => (0u16..8000).prop_map(PatchSpec::Grow),
        1 => any::<i16>().prop_map(PatchSpec::ArrayInsert),
        1 => any::<i16>().prop_map(PatchSpec::HalfBad),
    ]
}

fn scan_strategy() -> impl Strategy<Value = ScanSpec> {
    let limit = prop_oneof![8 => 0usize..20, 1 => Just(1000usize), 1 => Just(5000usize)];
    (coll_strategy(), 0usize..18, limit).prop_map(|(coll, after, limit)| ScanSpec {
        coll,
        after,
        limit,
    })
}

fn tx_op_strategy() -> impl Strategy<Value = TxOp> {
    tx_op_strategy_on(IDS.len())
}

/// Transaction operations on the first `n` ids.
fn tx_op_strategy_on(n: usize) -> impl Strategy<Value = TxOp> {
    let id_strategy = move || 0usize..n;
    prop_oneof![
        4 => (coll_strategy(), id_strategy(), doc_strategy()).prop_map(|(c, i, d)| TxOp::Create(c, i, d)),
        3 => (coll_strategy(), id_strategy(), doc_strategy()).prop_map(|(c, i, d)| TxOp::Update(c, i, d)),
        2 => (coll_strategy(), id_strategy()).prop_map(|(c, i)| TxOp::Delete(c, i)),
        2 => (coll_strategy(), id_strategy(), patch_strategy()).prop_map(|(c, i, p)| TxOp::Patch(c, i, p)),
        1 => (coll_strategy(), id_strategy()).prop_map(|(c, i)| TxOp::Read(c, i)),
        1 => scan_strategy().prop_map(TxOp::Scan),
    ]
}

/// Steps of a transaction interleaved with work outside it, on few documents so that
/// they collide: writes outside the transaction, checkpoints and compactions (which
/// prune and move the versions the open snapshot still reads).
fn step_strategy(calm: bool) -> impl Strategy<Value = Step> {
    // As in `op_strategy`: checkpoints and compactions are rare in calm cases.
    let k = if calm { 20 } else { 1 };
    let ids = 0usize..4;
    let colls = prop_oneof![3 => Just(0usize), 1 => Just(1usize), 2 => Just(2usize)];
    prop_oneof![
        5 * k => tx_op_strategy_on(4).prop_map(Step::Tx),
        2 * k => (colls.clone(), ids.clone(), doc_strategy()).prop_map(|(c, i, d)| Step::Db(Op::Create(c, i, d))),
        2 * k => (colls.clone(), ids.clone(), doc_strategy()).prop_map(|(c, i, d)| Step::Db(Op::Update(c, i, d))),
        k => (colls.clone(), ids.clone()).prop_map(|(c, i)| Step::Db(Op::Delete(c, i))),
        k => (colls.clone(), ids.clone(), patch_strategy()).prop_map(|(c, i, p)| Step::Db(Op::Patch(c, i, p))),
        k => (colls, ids).prop_map(|(c, i)| Step::Db(Op::Read(c, i))),
        1 => Just(Step::Db(Op::Checkpoint)),
        1 => Just(Step::Db(Op::Compact)),
    ]
}

/// `calm` cases restart and checkpoint rarely and write in bulk, so that a megabyte of
/// WAL accumulates between restarts (rotation, automatic checkpoints, trimming and
/// automatic compaction); the others restart, checkpoint and compact often.
fn op_strategy(calm: bool) -> impl Strategy<Value = Op> {
    // Weights: `m` scales the ordinary operations, so in calm cases restarts (weight 1
    // each) come about once per 200 operations and checkpoints about as rarely.
    let (m, bulk, checkpoint, restart) = if calm { (12, 10, 1, 1) } else { (1, 2, 2, 2) };
    prop_oneof![
        m * bulk => (patch_coll_strategy(), id_strategy(), big_doc_strategy()).prop_map(|(c, i, d)| Op::Bulk(c, i, d)),
        m * 12 => (coll_strategy(), id_strategy(), doc_strategy()).prop_map(|(c, i, d)| Op::Create(c, i, d)),
        m * 8 => (coll_strategy(), id_strategy(), doc_strategy()).prop_map(|(c, i, d)| Op::Update(c, i, d)),
        m * 5 => (coll_strategy(), id_strategy()).prop_map(|(c, i)| Op::Delete(c, i)),
        m * 6 => (coll_strategy(), id_strategy()).prop_map(|(c, i)| Op::Read(c, i)),
        m * 8 => (patch_coll_strategy(), id_strategy(), patch_strategy()).prop_map(|(c, i, p)| Op::Patch(c, i, p)),
        m => (coll_strategy(), id_strategy(), any::<bool>()).prop_map(|(c, i, u)| Op::BadJson(c, i, u)),
        m * 3 => scan_strategy().prop_map(Op::Scan),
        m * 6 => (prop::collection::vec(tx_op_strategy(), 1..=5), prop::bool::weighted(0.75))
            .prop_map(|(ops, commit)| Op::Tx(ops, commit)),
        m * 4 => (prop::collection::vec(step_strategy(calm), 2..10), prop::bool::weighted(0.85))
            .prop_map(|(steps, commit)| Op::Interleaved(steps, commit)),
        m * 2 => prop_oneof![6 => Just(3usize), 2 => Just(2usize), 1 => Just(0usize), 1 => Just(1usize)]
            .prop_map(Op::CreateColl),
        m * 2 => prop_oneof![6 => Just(3usize), 2 => Just(2usize), 1 => Just(0usize), 1 => Just(1usize)]
            .prop_map(Op::DeleteColl),
        m => prop_oneof![3 => Just(3usize), 1 => Just(2usize)].prop_map(Op::EmptyAndDeleteColl),
        m => Just(Op::ListColls),
        m => Just(Op::Verify),
        checkpoint => Just(Op::Checkpoint),
        checkpoint => Just(Op::Compact),
        restart => Just(Op::Restart(Restart::Clean)),
        restart => Just(Op::Restart(Restart::Drop)),
        2 * restart => any::<u32>().prop_map(|f| Op::Restart(Restart::Crash(f))),
    ]
}

fn config_strategy() -> impl Strategy<Value = CaseConfig> {
    (
        prop::bool::weighted(0.7),
        prop::bool::weighted(0.6),
        any::<bool>(),
        0usize..3,
        0u8..5,
        any::<bool>(),
    )
        .prop_map(
            |(small_wal, small_checkpoint, small_compaction, keep_segments, mode, calm)| {
                CaseConfig {
                    calm,
                    small_wal,
                    small_checkpoint,
                    small_compaction,
                    keep_segments,
                    mode,
                }
            },
        )
}

fn case_strategy() -> impl Strategy<Value = (CaseConfig, Vec<Op>)> {
    config_strategy().prop_flat_map(|cfg| {
        let len = if cfg.calm { 100..500 } else { 20..300 };
        let ops = prop::collection::vec(op_strategy(cfg.calm), len);
        (Just(cfg), ops)
    })
}

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

/// The expected state: which collections exist and every live document's exact bytes.
/// Cheap to clone (payloads are shared), so a history of states can be kept.
#[derive(Clone, PartialEq, Eq)]
struct Model {
    colls: BTreeSet<String>,
    docs: BTreeMap<(String, u64), Rc<Vec<u8>>>,
}

impl Model {
    fn new() -> Self {
        Model {
            colls: ["_default".to_string()].into(),
            docs: BTreeMap::new(),
        }
    }

    fn key(c: &str, id: u64) -> (String, u64) {
        (c.to_string(), id)
    }

    fn count_in(&self, c: &str) -> usize {
        self.docs.keys().filter(|(k, _)| k == c).count()
    }

    /// A short description of how `other` differs from `self`.
    fn diff(&self, other: &Model) -> String {
        let mut out = Vec::new();
        if self.colls != other.colls {
            out.push(format!("collections {:?} vs {:?}", self.colls, other.colls));
        }
        let keys: BTreeSet<&(String, u64)> = self.docs.keys().chain(other.docs.keys()).collect();
        for k in keys {
            let (a, b) = (self.docs.get(k), other.docs.get(k));
            if a != b {
                out.push(format!(
                    "{}/{}: {} vs {}",
                    k.0,
                    k.1,
                    show_opt(a),
                    show_opt(b)
                ));
            }
        }
        if out.is_empty() {
            "no difference".into()
        } else {
            out.join("; ")
        }
    }
}

fn show_opt(v: Option<&Rc<Vec<u8>>>) -> String {
    v.map_or_else(|| "absent".into(), |b| b.as_slice().show())
}

/// The error variants the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum E {
    NotFound,
    AlreadyExists,
    CollectionNotFound,
    CollectionExists,
    CollectionNotEmpty,
    DefaultCollection,
    InvalidJson,
    InvalidPath,
    InvalidPatch,
    NotAnObject,
    PatchTestFailed,
    Conflict,
}

fn kind(e: &Error) -> Option<E> {
    Some(match e {
        Error::NotFound => E::NotFound,
        Error::AlreadyExists => E::AlreadyExists,
        Error::CollectionNotFound => E::CollectionNotFound,
        Error::CollectionExists => E::CollectionExists,
        Error::CollectionNotEmpty => E::CollectionNotEmpty,
        Error::DefaultCollection => E::DefaultCollection,
        Error::InvalidJson => E::InvalidJson,
        Error::InvalidPath => E::InvalidPath,
        Error::InvalidPatch => E::InvalidPatch,
        Error::NotAnObject => E::NotAnObject,
        Error::PatchTestFailed => E::PatchTestFailed,
        Error::Conflict => E::Conflict,
        _ => return None,
    })
}

/// Short rendering of values for failure messages.
trait Show {
    fn show(&self) -> String;
}

impl Show for () {
    fn show(&self) -> String {
        "()".into()
    }
}

impl Show for [u8] {
    fn show(&self) -> String {
        let head = String::from_utf8_lossy(&self[..self.len().min(48)]).into_owned();
        format!(
            "{} bytes {head:?}{}",
            self.len(),
            if self.len() > 48 { "…" } else { "" }
        )
    }
}

impl Show for Vec<u8> {
    fn show(&self) -> String {
        self.as_slice().show()
    }
}

impl Show for Vec<(u64, Vec<u8>)> {
    fn show(&self) -> String {
        let items: Vec<String> = self
            .iter()
            .map(|(id, b)| format!("{id}:{}B", b.len()))
            .collect();
        format!("[{}]", items.join(", "))
    }
}

impl<T: Show> Show for Result<T, E> {
    fn show(&self) -> String {
        match self {
            Ok(v) => format!("Ok({})", v.show()),
            Err(e) => format!("Err({e:?})"),
        }
    }
}

type Want<T> = Result<T, E>;

fn want_create(m: &Model, c: &str, id: u64) -> Want<()> {
    if !m.colls.contains(c) {
        Err(E::CollectionNotFound)
    } else if m.docs.contains_key(&Model::key(c, id)) {
        Err(E::AlreadyExists)
    } else {
        Ok(())
    }
}

/// Update and delete: the document must exist.
fn want_existing(m: &Model, c: &str, id: u64) -> Want<()> {
    want_read(m, c, id).map(|_| ())
}

fn want_read(m: &Model, c: &str, id: u64) -> Want<Vec<u8>> {
    if !m.colls.contains(c) {
        return Err(E::CollectionNotFound);
    }
    m.docs
        .get(&Model::key(c, id))
        .map(|b| b.to_vec())
        .ok_or(E::NotFound)
}

fn want_patch(m: &Model, c: &str, id: u64, ops: &[u8]) -> Result<Want<Vec<u8>>, String> {
    let current = match want_read(m, c, id) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let doc: Value =
        serde_json::from_slice(&current).map_err(|e| format!("model doc is not JSON: {e}"))?;
    Ok(match docdb_core::patch::apply(&doc, ops) {
        Ok(new) => Ok(serde_json::to_vec(&new).map_err(|e| e.to_string())?),
        Err(pe) => {
            let e = Error::from(pe);
            Err(kind(&e).ok_or_else(|| format!("patch error without a model variant: {e:?}"))?)
        }
    })
}

/// Documents with ids after `after` — `0` meaning from the start, id 0 included
/// (SPEC §8) — in id order, at most `limit` of them, never more than 1000.
fn want_scan(m: &Model, c: &str, after: u64, limit: usize) -> Want<Vec<(u64, Vec<u8>)>> {
    if !m.colls.contains(c) {
        return Err(E::CollectionNotFound);
    }
    Ok(m.docs
        .iter()
        .filter(|((k, id), _)| k == c && (after == 0 || *id > after))
        .take(limit.min(docdb_core::MAX_SCAN_LIMIT))
        .map(|((_, id), b)| (*id, b.to_vec()))
        .collect())
}

/// Compares an engine result with the model's prediction; returns the engine's value.
fn compare<T: PartialEq + Show>(
    what: &str,
    got: docdb_core::Result<T>,
    want: Want<T>,
) -> Result<Option<T>, String> {
    let got = match got {
        Ok(v) => Ok(v),
        Err(e) => Err(kind(&e).ok_or_else(|| {
            format!("{what}: unexpected error {e:?}, model says {}", want.show())
        })?),
    };
    if got != want {
        return Err(format!(
            "{what}: engine {}, model {}",
            got.show(),
            want.show()
        ));
    }
    Ok(got.ok())
}

// ---------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------

/// What a run exercised; `the_generator_reaches_the_interesting_paths` checks it.
#[derive(Debug, Default, Clone)]
struct Coverage {
    max_segment: u64,
    trimmed: bool,
    auto_checkpoints: u64,
    auto_compactions: u64,
    crashes: u64,
    crashes_that_lost_commits: u64,
    crashes_reporting_drops: u64,
    patches_ok: u64,
    patches_failed: u64,
    tx_committed: u64,
    tx_rolled_back: u64,
    tx_ops_failed: u64,
    tx_conflicts: u64,
    not_empty_refused: u64,
    colls_deleted: u64,
}

struct Harness {
    dir: tempfile::TempDir,
    config: Config,
    db: Option<Rc<Database>>,
    model: Model,
    /// Model states since the last point where everything was known durable;
    /// `history[0]` is that point, the last entry is `model`.
    history: Vec<Model>,
    step: usize,
    cov: Coverage,
    explicit_checkpoints: u64,
    explicit_compactions: u64,
    /// A simulated crash cut the WAL shorter than the checkpoint position. The engine
    /// then appends behind the torn bytes, which `verify` reports forever after (an
    /// engine bug, see `a_wal_cut_behind_the_checkpoint_leaves_no_torn_bytes_mid_log`), so
    /// `Op::Verify` tolerates WAL problems from then on.
    wal_torn_behind_checkpoint: bool,
    /// While a transaction is open: the documents committed outside it since its
    /// snapshot.
    touched: Option<BTreeSet<(String, u64)>>,
}

impl Harness {
    fn new(config: Config) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let db = Database::open(dir.path(), config.clone()).map_err(|e| format!("open: {e}"))?;
        let mut h = Harness {
            dir,
            config,
            db: Some(Rc::new(db)),
            model: Model::new(),
            history: Vec::new(),
            step: 0,
            cov: Coverage::default(),
            explicit_checkpoints: 0,
            explicit_compactions: 0,
            wal_torn_behind_checkpoint: false,
            touched: None,
        };
        h.db()?
            .create_collection("c1")
            .map_err(|e| format!("create c1: {e}"))?;
        // The open was durable; the creation of `c1` is not yet checkpointed.
        h.history = vec![h.model.clone()];
        h.model.colls.insert("c1".into());
        h.committed();
        Ok(h)
    }

    fn db(&self) -> Result<&Database, String> {
        self.db
            .as_deref()
            .ok_or_else(|| "database not open".to_string())
    }

    /// Records a committed change.
    fn committed(&mut self) {
        self.history.push(self.model.clone());
    }

    /// Everything so far is durable.
    fn durable(&mut self) {
        self.history = vec![self.model.clone()];
    }

    /// Notes a committed write to `c/id` for the transaction in progress, if any.
    fn touch(&mut self, c: &str, id: u64) {
        if let Some(t) = &mut self.touched {
            t.insert(Model::key(c, id));
        }
    }

    fn ctx(&self, what: impl std::fmt::Display) -> String {
        format!("step {}: {what}", self.step)
    }

    fn run(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Create(c, i, d) => {
                let (name, id, bytes) = (COLLS[*c], IDS[*i], d.bytes());
                let want = want_create(&self.model, canon(name), id);
                let got = self.db()?.create(name, id, &bytes);
                if compare(&self.ctx(format!("create {name:?}/{id}")), got, want)?.is_some() {
                    self.model
                        .docs
                        .insert(Model::key(canon(name), id), Rc::new(bytes));
                    self.touch(canon(name), id);
                    self.committed();
                }
            }
            Op::Update(c, i, d) => {
                let (name, id, bytes) = (COLLS[*c], IDS[*i], d.bytes());
                let want = want_existing(&self.model, canon(name), id);
                let got = self.db()?.update(name, id, &bytes);
                if compare(&self.ctx(format!("update {name:?}/{id}")), got, want)?.is_some() {
                    self.model
                        .docs
                        .insert(Model::key(canon(name), id), Rc::new(bytes));
                    self.touch(canon(name), id);
                    self.committed();
                }
            }
            Op::Delete(c, i) => {
                let (name, id) = (COLLS[*c], IDS[*i]);
                let want = want_existing(&self.model, canon(name), id);
                let got = self.db()?.delete(name, id);
                if compare(&self.ctx(format!("delete {name:?}/{id}")), got, want)?.is_some() {
                    self.model.docs.remove(&Model::key(canon(name), id));
                    self.touch(canon(name), id);
                    self.committed();
                }
            }
            Op::Read(c, i) => {
                let (name, id) = (COLLS[*c], IDS[*i]);
                let want = want_read(&self.model, canon(name), id);
                compare(
                    &self.ctx(format!("read {name:?}/{id}")),
                    self.db()?.read(name, id),
                    want,
                )?;
            }
            Op::Patch(c, i, p) => {
                let (name, id, ops) = (COLLS[*c], IDS[*i], p.bytes());
                let want = want_patch(&self.model, canon(name), id, &ops)?;
                let got = self.db()?.patch(name, id, &ops);
                match compare(&self.ctx(format!("patch {name:?}/{id} {p:?}")), got, want)? {
                    Some(new) => {
                        self.cov.patches_ok += 1;
                        self.model
                            .docs
                            .insert(Model::key(canon(name), id), Rc::new(new));
                        self.touch(canon(name), id);
                        self.committed();
                    }
                    None => self.cov.patches_failed += 1,
                }
            }
            Op::BadJson(c, i, update) => {
                let (name, id) = (COLLS[*c], IDS[*i]);
                let bad: &[u8] = if *update { b"{\"a\":" } else { b"raw:{}" };
                let got = if *update {
                    self.db()?.update(name, id, bad)
                } else {
                    self.db()?.create(name, id, bad)
                };
                compare(
                    &self.ctx(format!("invalid JSON into {name:?}/{id}")),
                    got,
                    Err(E::InvalidJson),
                )?;
            }
            Op::Scan(s) => {
                let (name, after) = (COLLS[s.coll], scan_after(s.after));
                let want = want_scan(&self.model, canon(name), after, s.limit);
                let got = self.db()?.scan(name, after, s.limit);
                compare(
                    &self.ctx(format!("scan {name:?} after {after} limit {}", s.limit)),
                    got,
                    want,
                )?;
            }
            Op::Tx(ops, commit) => {
                let steps: Vec<Step> = ops.iter().cloned().map(Step::Tx).collect();
                self.run_tx(&steps, *commit)?;
            }
            Op::Interleaved(steps, commit) => self.run_tx(steps, *commit)?,
            Op::Bulk(c, first, d) => {
                let cn = canon(COLLS[*c]);
                let ops: Vec<Step> = (0..5)
                    .map(|k| {
                        let i = (first + k) % IDS.len();
                        let doc = DocSpec {
                            salt: d.salt.wrapping_add(k as u16),
                            ..*d
                        };
                        if self.model.docs.contains_key(&Model::key(cn, IDS[i])) {
                            TxOp::Update(*c, i, doc)
                        } else {
                            TxOp::Create(*c, i, doc)
                        }
                    })
                    .map(Step::Tx)
                    .collect();
                self.run_tx(&ops, true)?;
            }
            Op::CreateColl(c) => {
                let name = COLLS[*c];
                let want = if self.model.colls.contains(canon(name)) {
                    Err(E::CollectionExists)
                } else {
                    Ok(())
                };
                let got = self.db()?.create_collection(name);
                if compare(&self.ctx(format!("create collection {name:?}")), got, want)?.is_some() {
                    self.model.colls.insert(canon(name).to_string());
                    self.committed();
                }
            }
            Op::DeleteColl(c) => {
                let name = COLLS[*c];
                let want = self.want_delete_coll(name);
                let got = self.db()?.delete_collection(name);
                if want == Err(E::CollectionNotEmpty) {
                    self.cov.not_empty_refused += 1;
                }
                if compare(&self.ctx(format!("delete collection {name:?}")), got, want)?.is_some() {
                    self.model.colls.remove(canon(name));
                    self.cov.colls_deleted += 1;
                    self.committed();
                }
            }
            Op::EmptyAndDeleteColl(c) => {
                let name = COLLS[*c];
                let ids: Vec<u64> = self
                    .model
                    .docs
                    .keys()
                    .filter(|(k, _)| k == name)
                    .map(|(_, id)| *id)
                    .collect();
                for id in ids {
                    let got = self.db()?.delete(name, id);
                    compare(
                        &self.ctx(format!("delete {name}/{id} to empty it")),
                        got,
                        Ok(()),
                    )?;
                    self.model.docs.remove(&Model::key(name, id));
                    self.committed();
                }
                let want = self.want_delete_coll(name);
                let got = self.db()?.delete_collection(name);
                if compare(
                    &self.ctx(format!("delete emptied collection {name:?}")),
                    got,
                    want,
                )?
                .is_some()
                {
                    self.model.colls.remove(name);
                    self.cov.colls_deleted += 1;
                    self.committed();
                }
            }
            Op::ListColls => {
                let got = self.db()?.list_collections();
                let want: Vec<String> = self.model.colls.iter().cloned().collect();
                if got != want {
                    return Err(
                        self.ctx(format!("list_collections: engine {got:?}, model {want:?}"))
                    );
                }
            }
            Op::Checkpoint => {
                self.db()?
                    .checkpoint()
                    .map_err(|e| self.ctx(format!("checkpoint: {e}")))?;
                self.explicit_checkpoints += 1;
                self.durable();
            }
            Op::Compact => {
                self.db()?
                    .compact()
                    .map_err(|e| self.ctx(format!("compact: {e}")))?;
                self.explicit_compactions += 1;
                self.durable();
                self.check_all("after compact")?;
            }
            Op::Verify => {
                let r = self
                    .db()?
                    .verify()
                    .map_err(|e| self.ctx(format!("verify: {e}")))?;
                let tolerated = |p: &String| self.wal_torn_behind_checkpoint && p.contains("/wal/");
                if !r.problems.iter().all(tolerated) || !r.corrupt_documents.is_empty() {
                    return Err(self.ctx(format!(
                        "verify found problems in an undamaged database: {:?}",
                        r.problems
                    )));
                }
            }
            Op::Restart(r) => self.restart(*r)?,
        }
        Ok(())
    }

    fn want_delete_coll(&self, name: &str) -> Want<()> {
        let c = canon(name);
        if c == "_default" {
            Err(E::DefaultCollection)
        } else if !self.model.colls.contains(c) {
            Err(E::CollectionNotFound)
        } else if self.model.count_in(c) > 0 {
            Err(E::CollectionNotEmpty)
        } else {
            Ok(())
        }
    }

    /// A transaction: its operations, possibly interleaved with writes, checkpoints
    /// and compactions outside it, then a commit or a rollback. The transaction reads
    /// its snapshot plus its own writes; its commit fails with `Conflict` when a
    /// document it writes was committed by someone else after its snapshot.
    fn run_tx(&mut self, steps: &[Step], commit: bool) -> Result<(), String> {
        let db = self.db.clone().ok_or("database not open")?;
        let mut tx = db.begin();
        // The snapshot, and what the transaction sees: the snapshot plus its writes.
        let snapshot = self.model.clone();
        let mut view = self.model.clone();
        let mut writes: BTreeSet<(String, u64)> = BTreeSet::new();
        self.touched = Some(BTreeSet::new());
        for step in steps {
            match step {
                Step::Tx(op) => {
                    if !self.tx_op(&mut tx, op, &snapshot, &mut view, &mut writes)? {
                        self.cov.tx_ops_failed += 1;
                    }
                }
                Step::Db(op) => self.run(op)?,
            }
        }
        let touched = self.touched.take().unwrap_or_default();
        if !commit {
            tx.rollback();
            self.cov.tx_rolled_back += 1;
            return Ok(());
        }
        let want = if writes.iter().any(|k| touched.contains(k)) {
            self.cov.tx_conflicts += 1;
            Err(E::Conflict)
        } else {
            Ok(())
        };
        let got = tx.commit();
        if compare(&self.ctx("transaction commit"), got, want)?.is_some() {
            self.cov.tx_committed += 1;
            if !writes.is_empty() {
                for k in &writes {
                    match view.docs.get(k) {
                        Some(b) => self.model.docs.insert(k.clone(), b.clone()),
                        None => self.model.docs.remove(k),
                    };
                }
                self.committed();
            }
        }
        Ok(())
    }

    /// One operation inside a transaction; returns whether it succeeded.
    fn tx_op(
        &mut self,
        tx: &mut Transaction<'_>,
        op: &TxOp,
        snapshot: &Model,
        view: &mut Model,
        writes: &mut BTreeSet<(String, u64)>,
    ) -> Result<bool, String> {
        let step = self.step;
        let ctx = |what: String| format!("step {step}: in transaction: {what}");
        let mut put = |view: &mut Model, name: &str, id: u64, bytes: Option<Vec<u8>>| {
            let key = Model::key(canon(name), id);
            match bytes {
                Some(b) => view.docs.insert(key.clone(), Rc::new(b)),
                None => view.docs.remove(&key),
            };
            writes.insert(key);
        };
        Ok(match op {
            TxOp::Create(c, i, d) => {
                let (name, id, bytes) = (COLLS[*c], IDS[*i], d.bytes());
                let want = want_create(view, canon(name), id);
                let got = tx.create(name, id, &bytes);
                let done = compare(&ctx(format!("create {name:?}/{id}")), got, want)?;
                if done.is_some() {
                    put(view, name, id, Some(bytes));
                }
                done.is_some()
            }
            TxOp::Update(c, i, d) => {
                let (name, id, bytes) = (COLLS[*c], IDS[*i], d.bytes());
                let want = want_existing(view, canon(name), id);
                let got = tx.update(name, id, &bytes);
                let done = compare(&ctx(format!("update {name:?}/{id}")), got, want)?;
                if done.is_some() {
                    put(view, name, id, Some(bytes));
                }
                done.is_some()
            }
            TxOp::Delete(c, i) => {
                let (name, id) = (COLLS[*c], IDS[*i]);
                let want = want_existing(view, canon(name), id);
                let got = tx.delete(name, id);
                let done = compare(&ctx(format!("delete {name:?}/{id}")), got, want)?;
                if done.is_some() {
                    put(view, name, id, None);
                }
                done.is_some()
            }
            TxOp::Patch(c, i, p) => {
                let (name, id, ops) = (COLLS[*c], IDS[*i], p.bytes());
                let want = want_patch(view, canon(name), id, &ops)?;
                let got = tx.patch(name, id, &ops);
                let done = compare(&ctx(format!("patch {name:?}/{id} {p:?}")), got, want)?;
                let ok = done.is_some();
                if let Some(new) = done {
                    put(view, name, id, Some(new));
                }
                ok
            }
            TxOp::Read(c, i) => {
                let (name, id) = (COLLS[*c], IDS[*i]);
                let want = want_read(view, canon(name), id);
                compare(&ctx(format!("read {name:?}/{id}")), tx.read(name, id), want)?;
                true
            }
            TxOp::Scan(s) => {
                // A transaction's scan sees its snapshot, not its own writes.
                let (name, after) = (COLLS[s.coll], scan_after(s.after));
                let want = want_scan(snapshot, canon(name), after, s.limit);
                let got = tx.scan(name, after, s.limit);
                let what = format!("scan {name:?} after {after} limit {}", s.limit);
                compare(&ctx(what), got, want)?;
                true
            }
        })
    }

    /// The engine's whole state, read through scans.
    fn dump(&self) -> Result<Model, String> {
        let db = self.db()?;
        let mut m = Model {
            colls: db.list_collections().into_iter().collect(),
            docs: BTreeMap::new(),
        };
        for c in &m.colls {
            let page = db
                .scan(c, 0, docdb_core::MAX_SCAN_LIMIT)
                .map_err(|e| self.ctx(format!("scan {c}: {e:?}")))?;
            for (id, b) in page {
                m.docs.insert(Model::key(c, id), Rc::new(b));
            }
        }
        Ok(m)
    }

    /// Compares everything: collections, scans, every read, the live-document count.
    fn check_all(&self, when: &str) -> Result<(), String> {
        let got = self.dump()?;
        if got != self.model {
            return Err(self.ctx(format!(
                "{when}: state differs (model vs engine): {}",
                self.model.diff(&got)
            )));
        }
        let db = self.db()?;
        for c in COLLS {
            for id in IDS {
                let want = want_read(&self.model, canon(c), id);
                compare(
                    &self.ctx(format!("{when}: read {c:?}/{id}")),
                    db.read(c, id),
                    want,
                )?;
            }
        }
        let s = db.stats();
        if s.live_docs != self.model.docs.len() as u64
            || s.collections != self.model.colls.len() as u64
        {
            return Err(self.ctx(format!(
                "{when}: stats say {} live documents in {} collections, model {} in {}",
                s.live_docs,
                s.collections,
                self.model.docs.len(),
                self.model.colls.len()
            )));
        }
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), String> {
        let db = Database::open(self.dir.path(), self.config.clone())
            .map_err(|e| self.ctx(format!("reopen: {e}")))?;
        self.db = Some(Rc::new(db));
        Ok(())
    }

    fn note_files(&mut self) {
        if let Ok(segs) = wal_segments(self.dir.path()) {
            if let Some((n, _)) = segs.last() {
                self.cov.max_segment = self.cov.max_segment.max(*n);
            }
            if segs.first().is_some_and(|(n, _)| *n > 1) {
                self.cov.trimmed = true;
            }
        }
        if let Some(db) = &self.db {
            let s = db.stats();
            self.cov.auto_compactions += s.compactions.saturating_sub(self.explicit_compactions);
            self.cov.auto_checkpoints += s.checkpoints.saturating_sub(self.explicit_checkpoints);
        }
        self.explicit_checkpoints = 0;
        self.explicit_compactions = 0;
    }

    fn restart(&mut self, r: Restart) -> Result<(), String> {
        self.note_files();
        let db = self.db.take().ok_or("database not open")?;
        let db = Rc::try_unwrap(db).map_err(|_| self.ctx("the database handle is still shared"))?;
        match r {
            Restart::Clean => {
                db.close().map_err(|e| self.ctx(format!("close: {e}")))?;
            }
            Restart::Drop | Restart::Crash(_) => drop(db),
        }
        if let Restart::Crash(frac) = r {
            let segs = wal_segments(self.dir.path()).map_err(|e| e.to_string())?;
            let (segment, path) = segs.last().ok_or("no WAL segment")?;
            let len = fs::metadata(path).map_err(|e| e.to_string())?.len();
            let cut =
                24 + (len.saturating_sub(24) as u128 * frac as u128 / u32::MAX as u128) as u64;
            let (ckpt_segment, ckpt_offset) = checkpoint_wal_position(self.dir.path())?;
            if *segment == ckpt_segment && cut < ckpt_offset {
                self.wal_torn_behind_checkpoint = true;
            }
            let f = fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| e.to_string())?;
            f.set_len(cut).map_err(|e| e.to_string())?;
            drop(f);
            self.reopen()?;
            self.cov.crashes += 1;
            let report = self.db()?.recovery_report();
            if !report.dropped.is_empty() {
                self.cov.crashes_reporting_drops += 1;
            }
            let got = self.dump()?;
            let Some(i) = self.history.iter().rposition(|m| *m == got) else {
                let newest = self.history.last().ok_or("empty history")?;
                return Err(self.ctx(format!(
                    "after a crash (WAL segment {} cut from {len} to {cut} bytes) the state is no prefix of the {} states since the last durable point; vs the newest: {}; vs the durable one: {}; recovery dropped {:?}",
                    path.display(),
                    self.history.len(),
                    newest.diff(&got),
                    self.history[0].diff(&got),
                    report.dropped
                )));
            };
            if i + 1 < self.history.len() {
                self.cov.crashes_that_lost_commits += 1;
            }
            self.model = got;
        } else {
            self.reopen()?;
            let report = self.db()?.recovery_report();
            if !report.dropped.is_empty() {
                return Err(self.ctx(format!(
                    "{r:?} restart dropped something: {:?}",
                    report.dropped
                )));
            }
            if matches!(r, Restart::Clean) && report.replayed_records != 0 {
                return Err(self.ctx(format!(
                    "after close() the reopen replayed {} WAL records; close checkpoints everything",
                    report.replayed_records
                )));
            }
        }
        self.durable();
        self.check_all(&format!("after {r:?} restart"))
    }
}

/// The WAL position recorded in `<dir>/CHECKPOINT` (layout in `docs/FORMAT.md`).
fn checkpoint_wal_position(dir: &Path) -> Result<(u64, u64), String> {
    let b = fs::read(dir.join("CHECKPOINT")).map_err(|e| format!("CHECKPOINT: {e}"))?;
    let field = |at: usize| -> Result<u64, String> {
        let bytes = b.get(at..at + 8).ok_or("CHECKPOINT too short")?;
        Ok(u64::from_le_bytes(
            bytes.try_into().map_err(|_| "CHECKPOINT field")?,
        ))
    };
    Ok((field(20)?, field(28)?))
}

/// WAL segments of a database (`<dir>/wal/*.wal`), by number.
fn wal_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir.join("wal"))? {
        let p = e?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(n) = name
            .strip_suffix(".wal")
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, p));
        }
    }
    out.sort();
    Ok(out)
}

fn run_case(cfg: &CaseConfig, ops: &[Op]) -> Result<Coverage, String> {
    let mut h = Harness::new(cfg.config())?;
    for (step, op) in ops.iter().enumerate() {
        h.step = step;
        h.run(op)?;
        if step % 25 == 24 {
            h.check_all("periodic check")?;
        }
    }
    h.step = ops.len();
    h.check_all("at the end")?;
    h.restart(Restart::Clean)?;
    h.note_files();
    Ok(h.cov)
}

fn cases() -> u32 {
    std::env::var("DOCDB_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

fn model_config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Shrinking replays whole database runs: bound it.
        max_shrink_time: 180_000,
        // No regression files: they would land next to this file in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn engine_matches_the_model() {
    let mut runner = TestRunner::new(model_config());
    let result = runner.run(&case_strategy(), |(cfg, ops)| {
        run_case(&cfg, &ops)
            .map(|_| ())
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Guards the generator itself: across a few fixed cases with small files the harness
/// must actually rotate, checkpoint, trim and compact on its own, lose commits to
/// simulated crashes, and take both sides of every branch the model predicts.
#[test]
fn the_generator_reaches_the_interesting_paths() {
    let mut runner = TestRunner::deterministic();
    let mut total = Coverage::default();
    for calm in [true, true, false, false] {
        let cfg = CaseConfig {
            calm,
            small_wal: true,
            small_checkpoint: true,
            small_compaction: true,
            keep_segments: 0,
            mode: 0,
        };
        let len = if calm { 500 } else { 300 };
        let ops = match prop::collection::vec(op_strategy(calm), len).new_tree(&mut runner) {
            Ok(tree) => proptest::strategy::ValueTree::current(&tree),
            Err(e) => panic!("generator: {e}"),
        };
        let c = match run_case(&cfg, &ops) {
            Ok(c) => c,
            Err(e) => panic!("fixed case failed: {e}"),
        };
        total.max_segment = total.max_segment.max(c.max_segment);
        total.trimmed |= c.trimmed;
        total.auto_checkpoints += c.auto_checkpoints;
        total.auto_compactions += c.auto_compactions;
        total.crashes += c.crashes;
        total.crashes_that_lost_commits += c.crashes_that_lost_commits;
        total.crashes_reporting_drops += c.crashes_reporting_drops;
        total.patches_ok += c.patches_ok;
        total.patches_failed += c.patches_failed;
        total.tx_committed += c.tx_committed;
        total.tx_rolled_back += c.tx_rolled_back;
        total.tx_ops_failed += c.tx_ops_failed;
        total.tx_conflicts += c.tx_conflicts;
        total.not_empty_refused += c.not_empty_refused;
        total.colls_deleted += c.colls_deleted;
    }
    eprintln!("coverage of 4 fixed cases: {total:?}");
    let t = &total;
    assert!(t.max_segment >= 2, "the WAL never rotated: {t:?}");
    assert!(t.trimmed, "no WAL segment was ever trimmed: {t:?}");
    assert!(t.auto_checkpoints > 0, "no automatic checkpoint: {t:?}");
    assert!(t.auto_compactions > 0, "no automatic compaction: {t:?}");
    assert!(
        t.crashes_that_lost_commits > 0,
        "no simulated crash lost a commit: {t:?}"
    );
    assert!(
        t.crashes_reporting_drops > 0,
        "no simulated crash tore a record: {t:?}"
    );
    assert!(t.patches_ok > 0 && t.patches_failed > 0, "{t:?}");
    assert!(
        t.tx_committed > 0 && t.tx_rolled_back > 0 && t.tx_ops_failed > 0,
        "{t:?}"
    );
    assert!(t.tx_conflicts > 0, "no transaction ever conflicted: {t:?}");
    assert!(t.not_empty_refused > 0 && t.colls_deleted > 0, "{t:?}");
}

// ---------------------------------------------------------------------------------------
// Decoders never panic
// ---------------------------------------------------------------------------------------

/// Frames `body` as a WAL record with a correct length and CRC (the format of
/// `docs/FORMAT.md`), so decoding gets past the checksum to the structure.
fn wal_frame(body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), body);
    [&len[..], &crc.to_le_bytes(), body].concat()
}

type WalOpSpec = (u8, String, u64, Vec<u8>);

fn wal_body(seq: u64, ops: &[WalOpSpec]) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for (op, coll, id, payload) in ops {
        b.push(*op);
        b.extend_from_slice(&(coll.len() as u16).to_le_bytes());
        b.extend_from_slice(coll.as_bytes());
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(payload);
    }
    b
}

/// A data-file record header with a correct header CRC and arbitrary field values.
fn data_header(
    kind: u8,
    coll: &[u8],
    payload_len: u32,
    seq: u64,
    id: u64,
    payload_crc: u32,
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0x5242_4444u32.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.push(kind);
    b.extend_from_slice(&(coll.len() as u16).to_le_bytes());
    b.extend_from_slice(&payload_len.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&payload_crc.to_le_bytes());
    b.extend_from_slice(coll);
    let crc = crc32c::crc32c(&b[8..]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

fn wal_op_strategy() -> impl Strategy<Value = WalOpSpec> {
    let op = prop_oneof![Just(1u8), Just(3), Just(4), Just(8), Just(9)];
    (
        op,
        "[a-z_]{0,8}",
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
}

fn check_decode(buf: &[u8]) -> Result<(), TestCaseError> {
    if let Ok((rec, n)) = decode(buf) {
        prop_assert!(
            n >= 8 && n <= buf.len(),
            "decoded size {n} of a {}-byte buffer",
            buf.len()
        );
        let again = decode(&buf[..n]);
        prop_assert!(
            matches!(&again, Ok((r, m)) if *r == rec && *m == n),
            "decode is not stable on its own prefix"
        );
    }
    Ok(())
}

fn check_decode_header(buf: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(h) = decode_header(buf) {
        prop_assert!(h.header_len() <= buf.len());
        prop_assert!(h.collection.len() <= 64);
        prop_assert!(h.payload_len <= 16 * 1024 * 1024);
        let _ = payload_ok(&h, &buf[h.header_len()..]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn wal_decode_never_panics_on_arbitrary_bytes(buf in prop::collection::vec(any::<u8>(), 0..512)) {
        check_decode(&buf)?;
    }

    /// A correct frame around an arbitrary body reaches the structural checks.
    #[test]
    fn wal_decode_never_panics_on_well_framed_nonsense(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let framed = wal_frame(&body);
        check_decode(&framed)?;
        match decode(&framed) {
            // Whatever decodes must re-encode to exactly the body it came from.
            Ok((rec, n)) => {
                prop_assert_eq!(n, framed.len());
                let ops: Vec<WalOpSpec> = rec
                    .ops
                    .iter()
                    .map(|o| (o.op as u8, o.collection.to_string(), o.doc_id, o.payload.to_vec()))
                    .collect();
                prop_assert_eq!(wal_body(rec.seq, &ops), body);
            }
            Err(e) => prop_assert!(matches!(e, DecodeError::Corrupt(_)), "{:?}", e),
        }
    }

    /// Valid records round-trip; damaged ones (flips, cuts, lying counts) are errors,
    /// never panics or huge allocations.
    #[test]
    fn wal_decode_round_trips_and_survives_damage(
        seq in any::<u64>(),
        ops in prop::collection::vec(wal_op_strategy(), 0..5),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in any::<prop::sample::Index>(),
        count in any::<u32>(),
    ) {
        let body = wal_body(seq, &ops);
        let rec = wal_frame(&body);
        let (got, n) = decode(&rec).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(n, rec.len());
        prop_assert_eq!(got.seq, seq);
        prop_assert_eq!(got.ops.len(), ops.len());
        for (g, (op, coll, id, payload)) in got.ops.iter().zip(&ops) {
            prop_assert_eq!(g.op as u8, *op);
            prop_assert_eq!(g.collection, coll.as_str());
            prop_assert_eq!(g.doc_id, *id);
            prop_assert_eq!(g.payload, payload.as_slice());
        }
        prop_assert!(matches!(got.ops.first().map(|o| o.op), None | Some(WalOp::Create | WalOp::Update | WalOp::Delete | WalOp::CreateCollection | WalOp::DeleteCollection)));

        let mut damaged = rec.clone();
        for (at, x) in &flips {
            let i = at.index(damaged.len());
            damaged[i] ^= x;
        }
        check_decode(&damaged)?;
        if !flips.is_empty() && damaged != rec {
            prop_assert!(decode(&damaged).is_err(), "a damaged record decoded");
        }
        let short = &rec[..cut.index(rec.len())];
        prop_assert_eq!(decode(short).err(), Some(DecodeError::Truncated));
        // A lying op count behind a valid CRC.
        let mut lying = body.clone();
        lying[9..13].copy_from_slice(&count.to_le_bytes());
        check_decode(&wal_frame(&lying))?;
    }

    #[test]
    fn data_header_decode_never_panics_on_arbitrary_bytes(buf in prop::collection::vec(any::<u8>(), 0..256)) {
        check_decode_header(&buf)?;
        // The same bytes behind the record magic, so the magic check is passed.
        let mut magic = 0x5242_4444u32.to_le_bytes().to_vec();
        magic.extend_from_slice(&buf);
        check_decode_header(&magic)?;
    }

    /// Headers with a valid CRC but arbitrary fields: only sane ones decode, and they
    /// decode to exactly their fields.
    #[test]
    fn data_header_decode_checks_every_field(
        kind in any::<u8>(),
        coll in prop::collection::vec(any::<u8>(), 0..80),
        payload_len in prop_oneof![0u32..100, any::<u32>()],
        seq in any::<u64>(),
        id in any::<u64>(),
        payload_crc in any::<u32>(),
        tail in prop::collection::vec(any::<u8>(), 0..16),
        cut in any::<prop::sample::Index>(),
        flip in (any::<prop::sample::Index>(), 1u8..=255),
    ) {
        let mut buf = data_header(kind, &coll, payload_len, seq, id, payload_crc);
        let header_len = buf.len();
        buf.extend_from_slice(&tail);
        check_decode_header(&buf)?;
        let sane = (1..=4).contains(&kind)
            && coll.len() <= 64
            && payload_len <= 16 * 1024 * 1024
            && std::str::from_utf8(&coll).is_ok();
        match decode_header(&buf) {
            Ok(h) => {
                prop_assert!(sane);
                let want_kind = [Kind::Put, Kind::Tombstone, Kind::CreateCollection, Kind::DeleteCollection][kind as usize - 1];
                prop_assert_eq!(h.kind, want_kind);
                prop_assert_eq!(h.collection.as_bytes(), coll.as_slice());
                prop_assert_eq!((h.payload_len, h.seq, h.doc_id, h.payload_crc), (payload_len, seq, id, payload_crc));
                prop_assert_eq!(h.header_len(), header_len);
            }
            Err(_) => prop_assert!(!sane),
        }
        check_decode_header(&buf[..cut.index(buf.len())])?;
        let mut flipped = buf[..header_len].to_vec();
        let i = flip.0.index(header_len);
        flipped[i] ^= flip.1;
        check_decode_header(&flipped)?;
        prop_assert!(decode_header(&flipped).is_err(), "flip of header byte {} went unnoticed", i);
    }
}

// ---------------------------------------------------------------------------------------
// Regression tests: engine bugs found by this file, since fixed (described as found)
// ---------------------------------------------------------------------------------------

/// A crash (or a lying disk) leaves the checkpoint's WAL segment shorter than the
/// checkpoint position. Recovery is right about the data (the checkpoint covers it) and
/// reports the short segment, but it resumes appending at the segment's torn end: new
/// commits land behind the bytes of a half record. From then on `verify` reports the
/// WAL as corrupt, healing cannot find the new commits' copies (it stops reading a
/// segment at the first bad record), and a rebuild without `CHECKPOINT` would cut the
/// log there. The torn bytes should be cut (or the log continued in a fresh segment).
#[test]
fn a_wal_cut_behind_the_checkpoint_leaves_no_torn_bytes_mid_log() {
    let d = tempfile::tempdir().expect("tempdir");
    let db = Database::open(d.path(), Config::default()).expect("open");
    for id in 1..=5u64 {
        db.create("", id, br#"{"a":1}"#).expect("create");
    }
    db.checkpoint().expect("checkpoint");
    db.create("", 6, br#"{"a":2}"#).expect("create");
    drop(db);
    let (_, seg) = wal_segments(d.path())
        .expect("segments")
        .pop()
        .expect("a segment");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open segment");
    f.set_len(60)
        .expect("cut inside the second record, before the checkpoint position");
    drop(f);

    let db = Database::open(d.path(), Config::default()).expect("reopen");
    assert!(
        !db.recovery_report().dropped.is_empty(),
        "the short segment is reported"
    );
    db.create("", 10, br#"{"ten":10}"#)
        .expect("create after recovery");
    let mut wrong = Vec::new();
    let v = db.verify().expect("verify");
    if !v.is_ok() {
        wrong.push(format!(
            "verify after recovery and one new commit: {:?}",
            v.problems
        ));
    }
    db.close().expect("close");

    // Healing needs the WAL copy of document 10: damage its data-file payload.
    let data = fs::read_dir(d.path().join("data"))
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "data"))
        .expect("data file");
    let mut bytes = fs::read(&data).expect("read data file");
    let mut pos = 24;
    while pos < bytes.len() {
        let h = decode_header(&bytes[pos..]).expect("undamaged data file");
        if h.doc_id == 10 && h.kind == Kind::Put {
            let at = pos + h.header_len() + 2;
            bytes[at] ^= 0x01;
            break;
        }
        pos += h.total_len();
    }
    fs::write(&data, bytes).expect("write data file");
    let db = Database::open(d.path(), Config::default()).expect("reopen");
    let got = db.read("", 10);
    if !matches!(&got, Ok(b) if b == br#"{"ten":10}"#) {
        wrong.push(format!(
            "healing could not find the intact WAL copy of document 10: {got:?}"
        ));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
