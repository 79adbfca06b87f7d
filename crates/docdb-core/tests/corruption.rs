//! Damaged files: what opening a database does when its WAL, data file or checkpoint
//! was corrupted behind its back.
//!
//! Every scenario writes a known set of documents (in `_default` and a second
//! collection, single writes and small transactions, across at least three 1 MiB WAL
//! segments), closes the database or drops it without closing, damages one kind of file,
//! and reopens:
//!
//! * random bytes flipped in the active WAL segment;
//! * a WAL segment truncated at a random point;
//! * random bytes flipped in the data file;
//! * the data file truncated at a random point;
//! * garbage written over `CHECKPOINT` (the one case where open may fail, with a clear
//!   error; a missing `CHECKPOINT` must rebuild everything);
//! * a WAL segment header replaced with zeros.
//!
//! In every case opening must not panic; what recovery dropped must be in
//! `recovery_report().dropped`; a read returns exactly the bytes written or an error —
//! never other bytes; damage to the WAL loses exactly the transactions from the first
//! damaged record on (a prefix of the history survives, each transaction whole or not
//! at all); damage to a data-file record affects only that record's document (a damaged
//! payload is healed from the WAL on read, or with healing off reads as
//! `Error::Corrupt`; a damaged header loses the version); `verify()` reports the
//! damaged records. Each scenario then keeps writing, reopens and checks again.
//! A damaged header of the data file itself is refused with a clear error.
//!
//! Positions are derived from a seed by a tiny xorshift, so every run damages the same
//! bytes; a failure names its seed. `DOCDB_CORRUPTION_SEEDS=n` runs seeds `0..n` of every
//! scenario (a soak).
//!
//! Engine bugs this file found (since fixed) are at the end, as regression tests; each
//! doc comment there describes the bug as it was found. The scenarios above leave
//! those cases to them (each place says so).

use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use docdb_core::data::record::{decode_header, Kind};
use docdb_core::wal::record::{decode, DecodeError};
use docdb_core::{Config, Database, Error};

const SECOND: &str = "second";
const WAL_HEADER: u64 = 24;
const DATA_HEADER: u64 = 24;

/// The seeds a scenario runs: `0..n`, or `0..DOCDB_CORRUPTION_SEEDS` when set (a soak).
fn seeds(n: u64) -> std::ops::Range<u64> {
    let n = std::env::var("DOCDB_CORRUPTION_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    0..n
}

// ---------------------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that neighbouring seeds start far apart.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A byte to XOR with: never zero, so the byte really changes.
    fn flip(&mut self) -> u8 {
        1 + self.below(255) as u8
    }
}

// ---------------------------------------------------------------------------------------
// The known set of documents, and where it lies on disk
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Doc {
    coll: &'static str,
    id: u64,
    bytes: Vec<u8>,
}

/// A WAL record as found on disk before any damage.
#[derive(Debug, Clone, Copy)]
struct WalRec {
    segment: u64,
    start: u64,
    end: u64,
    seq: u64,
}

/// A data-file record as found on disk before any damage.
#[derive(Debug, Clone)]
struct DataRec {
    start: u64,
    payload_start: u64,
    end: u64,
    kind: Kind,
    coll: String,
    id: u64,
}

/// The fields of `CHECKPOINT` this file needs (layout in `docs/FORMAT.md`).
#[derive(Debug, Clone, Copy)]
struct Ckpt {
    wal_segment: u64,
    wal_offset: u64,
    data_len: u64,
}

/// How the writing session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// `close()`: everything checkpointed, the WAL is not replayed at the next open.
    Close,
    /// Dropped without `close()`; the last checkpoint is the one written at open, so
    /// the next open replays the whole WAL.
    Drop,
    /// `checkpoint()` about two thirds of the way, more writes, then dropped: the
    /// data file is authoritative up to the checkpoint, the WAL for the rest.
    CheckpointThenDrop,
}

struct Fixture {
    seed: u64,
    dir: tempfile::TempDir,
    config: Config,
    /// Commit `i` has sequence number `i + 1`. Commit 0 creates [`SECOND`] and has no
    /// documents.
    commits: Vec<Vec<Doc>>,
    wal: Vec<WalRec>,
    data: Vec<DataRec>,
    ckpt: Ckpt,
}

fn config() -> Config {
    let mut c = Config::default();
    c.wal.max_file_size_mb = 1;
    // Keep every segment, so the fixture knows where each transaction lies.
    c.wal.keep_segments = 1000;
    c
}

fn doc_bytes(rng: &mut Rng, coll: &str, id: u64, seed: u64) -> Vec<u8> {
    let len = if rng.chance(20) {
        rng.range(0, 64)
    } else {
        rng.range(200, 12_000)
    };
    let salt = rng.next();
    let pad: String = (0..len)
        .map(|i| (b'a' + ((i ^ salt) % 26) as u8) as char)
        .collect();
    format!(r#"{{"coll":"{coll}","id":{id},"seed":{seed},"salt":{salt},"pad":"{pad}"}}"#)
        .into_bytes()
}

impl Fixture {
    /// Writes the known set: at least 2.3 MB of WAL (three segments or more).
    fn write(seed: u64, ending: Ending) -> Fixture {
        Fixture::write_with(seed, ending, config())
    }

    fn write_with(seed: u64, ending: Ending, config: Config) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng::new(seed);
        let db = Database::open(dir.path(), config.clone()).expect("open a new database");
        db.create_collection(SECOND)
            .expect("create the second collection");
        let mut commits: Vec<Vec<Doc>> = vec![Vec::new()];
        let mut next_id: BTreeMap<&str, u64> = BTreeMap::new();
        let mut written = 0usize;
        let mut checkpointed = false;
        while written < 2_300_000 {
            let n = if rng.chance(70) { 1 } else { rng.range(2, 6) };
            let mut docs = Vec::new();
            for _ in 0..n {
                let coll = if rng.chance(30) { SECOND } else { "_default" };
                let id = next_id.entry(coll).or_insert(1);
                let bytes = doc_bytes(&mut rng, coll, *id, seed);
                written += bytes.len();
                docs.push(Doc {
                    coll,
                    id: *id,
                    bytes,
                });
                *id += 1 + rng.below(3);
            }
            if docs.len() == 1 {
                let d = &docs[0];
                db.create(d.coll, d.id, &d.bytes).expect("create");
            } else {
                let mut tx = db.begin();
                for d in &docs {
                    tx.create(d.coll, d.id, &d.bytes)
                        .expect("create in a transaction");
                }
                tx.commit().expect("commit");
            }
            commits.push(docs);
            if ending == Ending::CheckpointThenDrop && !checkpointed && written > 1_600_000 {
                db.checkpoint().expect("checkpoint");
                checkpointed = true;
            }
        }
        match ending {
            Ending::Close => db.close().expect("close"),
            Ending::Drop | Ending::CheckpointThenDrop => drop(db),
        }
        let mut fx = Fixture {
            seed,
            dir,
            config,
            commits,
            wal: Vec::new(),
            data: Vec::new(),
            ckpt: Ckpt {
                wal_segment: 0,
                wal_offset: 0,
                data_len: 0,
            },
        };
        fx.wal = parse_wal(&fx.wal_dir());
        fx.data = parse_data(&fx.data_file());
        fx.ckpt = read_checkpoint(fx.dir.path());
        let seqs: Vec<u64> = fx.wal.iter().map(|r| r.seq).collect();
        let want: Vec<u64> = (1..=fx.commits.len() as u64).collect();
        assert_eq!(
            seqs, want,
            "seed {seed}: the WAL holds one record per commit, in order"
        );
        assert!(
            fx.segments().len() >= 3,
            "seed {seed}: the known set spans three WAL segments"
        );
        fx
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn wal_dir(&self) -> PathBuf {
        self.path().join("wal")
    }

    fn segments(&self) -> Vec<(u64, PathBuf)> {
        wal_segments(&self.wal_dir())
    }

    /// Where the records of `segment` end: the file may go on with zeros the writer
    /// wrote ahead, where a flip or a cut damages no record.
    fn records_end(&self, segment: u64) -> u64 {
        self.wal
            .iter()
            .filter(|r| r.segment == segment)
            .map(|r| r.end)
            .max()
            .unwrap_or(WAL_HEADER)
    }

    fn data_file(&self) -> PathBuf {
        let mut files: Vec<PathBuf> = fs::read_dir(self.path().join("data"))
            .expect("data dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "data"))
            .collect();
        files.sort();
        assert_eq!(
            files.len(),
            1,
            "seed {}: one data file generation",
            self.seed
        );
        files.pop().expect("a data file")
    }

    /// The commit that wrote `seq`.
    fn commit_of(seq: u64) -> usize {
        seq as usize - 1
    }

    /// Index of the first commit whose WAL record is in `segment` or later, or (when
    /// `from` is given) whose record in `segment` ends after `from`.
    fn first_commit_at(&self, segment: u64, from: u64) -> usize {
        self.wal
            .iter()
            .find(|r| r.segment > segment || (r.segment == segment && r.end > from))
            .map_or(self.commits.len(), |r| Fixture::commit_of(r.seq))
    }

    fn open(&self, what: &str) -> Result<Database, Error> {
        let path = self.path().to_path_buf();
        let config = self.config.clone();
        match catch_unwind(AssertUnwindSafe(|| Database::open(&path, config))) {
            Ok(r) => r,
            Err(_) => panic!("seed {}: opening panicked ({what})", self.seed),
        }
    }

    fn open_ok(&self, what: &str) -> Database {
        match self.open(what) {
            Ok(db) => db,
            Err(e) => panic!("seed {}: open failed ({what}): {e}", self.seed),
        }
    }
}

fn wal_segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("wal dir") {
        let p = e.expect("dir entry").path();
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
    out
}

fn parse_wal(dir: &Path) -> Vec<WalRec> {
    let mut out = Vec::new();
    for (segment, path) in wal_segments(dir) {
        let buf = fs::read(&path).expect("read segment");
        let mut pos = WAL_HEADER as usize;
        loop {
            match decode(&buf[pos..]) {
                Ok((rec, n)) => {
                    out.push(WalRec {
                        segment,
                        start: pos as u64,
                        end: (pos + n) as u64,
                        seq: rec.seq,
                    });
                    pos += n;
                }
                Err(DecodeError::Truncated) if pos == buf.len() => break,
                // Zeros written ahead of the log by the writer.
                Err(DecodeError::Preallocated) => break,
                Err(e) => panic!(
                    "{}: undamaged WAL does not parse at {pos}: {e:?}",
                    path.display()
                ),
            }
        }
    }
    out
}

fn parse_data(path: &Path) -> Vec<DataRec> {
    let buf = fs::read(path).expect("read data file");
    let mut out = Vec::new();
    let mut pos = DATA_HEADER as usize;
    while pos < buf.len() {
        let h = decode_header(&buf[pos..]).unwrap_or_else(|e| {
            panic!(
                "{}: undamaged data file does not parse at {pos}: {e:?}",
                path.display()
            )
        });
        out.push(DataRec {
            start: pos as u64,
            payload_start: (pos + h.header_len()) as u64,
            end: (pos + h.total_len()) as u64,
            kind: h.kind,
            coll: h.collection.to_string(),
            id: h.doc_id,
        });
        pos += h.total_len();
    }
    out
}

fn read_checkpoint(dir: &Path) -> Ckpt {
    let b = fs::read(dir.join("CHECKPOINT")).expect("read CHECKPOINT");
    assert_eq!(b.len(), 56, "CHECKPOINT is 56 bytes");
    let field = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    Ckpt {
        wal_segment: field(20),
        wal_offset: field(28),
        data_len: field(44),
    }
}

/// Whether a `verify` problem line reports unreadable bytes `from..to` covering `at`.
fn gap_covers(problem: &str, at: u64) -> bool {
    let Some(rest) = problem.split("bytes ").nth(1) else {
        return false;
    };
    let mut nums = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().unwrap_or(0));
    match (nums.next(), nums.next()) {
        (Some(from), Some(to)) => problem.contains("header") && from <= at && at < to,
        _ => false,
    }
}

fn xor_at(path: &Path, at: u64, x: u8) {
    let mut buf = fs::read(path).expect("read file to damage");
    buf[at as usize] ^= x;
    fs::write(path, buf).expect("write damaged file");
}

fn truncate(path: &Path, len: u64) {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open file to truncate");
    f.set_len(len).expect("truncate");
}

// ---------------------------------------------------------------------------------------
// What a read may return
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Exactly the written bytes.
    Exact,
    /// Gone: `NotFound` (or `CollectionNotFound` when the collection is gone too).
    Lost,
    /// The record is there but its payload is damaged: with healing on read, the read
    /// rebuilds it from the WAL and returns exactly the written bytes; without,
    /// `Error::Corrupt`.
    Damaged,
    /// The record's header is damaged, so the open skipped it: the document is gone
    /// (`NotFound`) — or, if the engine recovers it from the WAL, exactly the written
    /// bytes (see `a_damaged_record_header_neither_loses_nor_resurrects_documents`).
    LostOrExact,
}

/// The expected outcome of every document of the fixture, plus documents written after
/// recovery.
struct Expected {
    /// Per commit, per document.
    docs: Vec<Vec<Want>>,
    second_exists: bool,
    extra: Vec<Doc>,
    /// Whether reads heal damaged payloads (`healing.on_read_corruption`).
    heals: bool,
}

impl Expected {
    fn from_fn(
        fx: &Fixture,
        second_exists: bool,
        mut f: impl FnMut(usize, &Doc) -> Want,
    ) -> Expected {
        let docs = fx
            .commits
            .iter()
            .enumerate()
            .map(|(i, c)| c.iter().map(|d| f(i, d)).collect())
            .collect();
        Expected {
            docs,
            second_exists,
            extra: Vec::new(),
            heals: fx.config.healing.on_read_corruption,
        }
    }

    /// The first `n` commits survive whole, the rest are gone.
    fn prefix(fx: &Fixture, n: usize) -> Expected {
        Expected::from_fn(
            fx,
            n >= 1,
            |i, _| if i < n { Want::Exact } else { Want::Lost },
        )
    }
}

/// Reads every document, pages through every collection, and checks the counts.
fn check(fx: &Fixture, db: &Database, exp: &Expected, when: &str) {
    let seed = fx.seed;
    let ctx = |what: String| format!("seed {seed}, {when}: {what}");
    let colls = db.list_collections();
    let mut want_colls = vec!["_default".to_string()];
    if exp.second_exists {
        want_colls.push(SECOND.to_string());
    }
    assert_eq!(colls, want_colls, "{}", ctx("collections".into()));

    let mut by_coll: BTreeMap<&str, BTreeMap<u64, (Want, &[u8])>> = BTreeMap::new();
    let all = fx
        .commits
        .iter()
        .zip(&exp.docs)
        .flat_map(|(c, w)| c.iter().zip(w.iter().copied()))
        .chain(exp.extra.iter().map(|d| (d, Want::Exact)));
    for (d, w) in all {
        by_coll
            .entry(d.coll)
            .or_default()
            .insert(d.id, (w, &d.bytes));
        let got = db.read(d.coll, d.id);
        let ok = match (&got, w) {
            (Ok(b), Want::Exact | Want::LostOrExact) => b == &d.bytes,
            (Ok(b), Want::Damaged) => exp.heals && b == &d.bytes,
            (Err(Error::NotFound), Want::Lost | Want::LostOrExact) => true,
            (Err(Error::CollectionNotFound), Want::Lost | Want::LostOrExact) => {
                !exp.second_exists && d.coll == SECOND
            }
            (Err(Error::Corrupt { .. }), Want::Damaged) => !exp.heals,
            _ => false,
        };
        if !ok {
            let got = match got {
                Ok(b) if b == d.bytes => "the written bytes".to_string(),
                Ok(b) => format!(
                    "OTHER BYTES ({} bytes: {:?}…)",
                    b.len(),
                    String::from_utf8_lossy(&b[..b.len().min(60)])
                ),
                Err(e) => format!("{e:?}"),
            };
            panic!(
                "{}",
                ctx(format!("read {}/{}: want {w:?}, got {got}", d.coll, d.id))
            );
        }
    }

    let mut live = 0;
    for (coll, docs) in &by_coll {
        if *coll == SECOND && !exp.second_exists {
            continue;
        }
        // What the scan returns: the documents that read back (a healed one included;
        // one found gone by the reads above is not).
        let has_corrupt = !exp.heals && docs.values().any(|(w, _)| *w == Want::Damaged);
        let present: Vec<(u64, &[u8])> = docs
            .iter()
            .filter(|(id, (w, _))| match w {
                Want::Exact => true,
                Want::Damaged => exp.heals,
                Want::LostOrExact => db.read(coll, **id).is_ok(),
                Want::Lost => false,
            })
            .map(|(id, (_, b))| (*id, *b))
            .collect();
        let live_here = present.len() as u64
            + if has_corrupt {
                docs.values().filter(|(w, _)| *w == Want::Damaged).count() as u64
            } else {
                0
            };
        let mut want_ids = present.into_iter();
        let mut after = 0;
        loop {
            let page = match db.scan(coll, after, 100) {
                Ok(p) => p,
                Err(Error::Corrupt { .. }) if has_corrupt => break,
                Err(e) => panic!("{}", ctx(format!("scan {coll} after {after}: {e:?}"))),
            };
            for (id, b) in &page {
                let want = want_ids.next();
                assert!(
                    want.is_some_and(|(wid, wb)| wid == *id && wb == b.as_slice()),
                    "{}",
                    ctx(format!(
                        "scan {coll}: got id {id} ({} bytes), want {:?}",
                        b.len(),
                        want.map(|w| w.0)
                    ))
                );
            }
            match page.last() {
                Some((id, _)) if page.len() == 100 => after = *id,
                _ => {
                    assert!(
                        has_corrupt || want_ids.next().is_none(),
                        "{}",
                        ctx(format!("scan {coll} ended early"))
                    );
                    break;
                }
            }
        }
        live += live_here;
    }
    assert_eq!(
        db.stats().live_docs,
        live,
        "{}",
        ctx("live documents".into())
    );
}

/// After recovery the database keeps working: write more documents, drop without
/// closing, reopen, check; close, reopen, check again.
fn keep_going(fx: &Fixture, db: Database, exp: &mut Expected, report_clean: bool) {
    let mut rng = Rng::new(fx.seed ^ 0xABCD);
    for k in 0..12u64 {
        let coll = if exp.second_exists && k % 3 == 0 {
            SECOND
        } else {
            "_default"
        };
        let id = 1_000_000 + k;
        let bytes = doc_bytes(&mut rng, coll, id, fx.seed);
        db.create(coll, id, &bytes)
            .unwrap_or_else(|e| panic!("seed {}: create after recovery: {e}", fx.seed));
        exp.extra.push(Doc { coll, id, bytes });
    }
    check(fx, &db, exp, "after writing more");
    drop(db);
    let db = fx.open_ok("reopen after more writes, without close");
    if report_clean {
        let dropped = db.recovery_report().dropped;
        assert!(
            dropped.is_empty(),
            "seed {}: a second reopen dropped {dropped:?}",
            fx.seed
        );
    }
    check(fx, &db, exp, "after a reopen without close");
    db.close()
        .unwrap_or_else(|e| panic!("seed {}: close: {e}", fx.seed));
    let db = fx.open_ok("reopen after close");
    check(fx, &db, exp, "after close and reopen");
}

fn ending(seed: u64) -> Ending {
    [Ending::Drop, Ending::Close, Ending::CheckpointThenDrop][seed as usize % 3]
}

// ---------------------------------------------------------------------------------------
// (a) flipped bytes in the active WAL segment
// ---------------------------------------------------------------------------------------

#[test]
fn a_log_that_ends_in_zeros_written_ahead_is_clean_to_the_offline_check() {
    for seed in seeds(2) {
        // Dropped without a close, as a crash leaves it: the zeros are still there.
        let fx = Fixture::write(seed, Ending::Drop);
        let (segment, path) = fx.segments().pop().expect("a segment");
        assert!(
            fs::metadata(&path).expect("metadata").len() > fx.records_end(segment),
            "seed {seed}: no zeros written ahead of the log"
        );
        let v = docdb_core::verify_offline(fx.path(), None).expect("offline verify");
        assert!(
            v.is_ok() && v.notes.is_empty(),
            "seed {seed}: problems {:?}, notes {:?}",
            v.problems,
            v.notes
        );
        assert_eq!(v.wal_records, fx.wal.len() as u64, "seed {seed}");
        let db = fx.open_ok("with zeros after the log");
        assert!(
            db.recovery_report().dropped.is_empty(),
            "seed {seed}: zeros reported as dropped: {:?}",
            db.recovery_report().dropped
        );
        check(
            &fx,
            &db,
            &Expected::prefix(&fx, fx.commits.len()),
            "after reopening a log that ends in zeros",
        );
    }
}

#[test]
fn damage_in_the_space_written_ahead_of_the_log_loses_nothing() {
    for seed in seeds(3) {
        let fx = Fixture::write(seed, Ending::Drop);
        let (segment, path) = fx.segments().pop().expect("a segment");
        let end = fx.records_end(segment);
        let len = fs::metadata(&path).expect("metadata").len();
        assert!(
            len > end + 8,
            "seed {seed}: no zeros written ahead of the log (records end at {end}, file {len})"
        );
        let mut rng = Rng::new(seed + 700);
        xor_at(&path, rng.range(end + 8, len), rng.flip());
        let db = fx.open_ok("after damaging the zeros ahead of the log");
        assert!(
            !db.recovery_report().dropped.is_empty(),
            "seed {seed}: bytes after the log's end were not zero, nothing reported"
        );
        check(
            &fx,
            &db,
            &Expected::prefix(&fx, fx.commits.len()),
            "after damaging the zeros ahead of the log",
        );
        let v = db.verify().expect("verify");
        assert!(v.is_ok(), "seed {seed}: verify finds {:?}", v.problems);
        // Closing leaves the segment exactly its records.
        let (segment, path) = fx.segments().pop().expect("a segment");
        db.close().expect("close");
        let records = parse_wal(&fx.wal_dir())
            .iter()
            .filter(|r| r.segment == segment)
            .map(|r| r.end)
            .max()
            .unwrap_or(WAL_HEADER);
        assert_eq!(
            fs::metadata(&path).expect("metadata").len(),
            records,
            "seed {seed}: zeros left after close"
        );
    }
}

#[test]
fn flipped_bytes_in_the_active_wal_segment_cut_the_log_there() {
    for seed in seeds(6) {
        let end = if seed % 3 == 1 {
            Ending::Close
        } else {
            Ending::Drop
        };
        let fx = Fixture::write(seed, end);
        let mut rng = Rng::new(seed + 100);
        let (segment, path) = fx.segments().pop().expect("a segment");
        let len = fx.records_end(segment);
        let mut first = u64::MAX;
        for _ in 0..1 + rng.below(4) {
            // Mostly in records, sometimes in the header.
            let at = if rng.chance(10) {
                rng.below(WAL_HEADER)
            } else {
                rng.range(WAL_HEADER, len)
            };
            xor_at(&path, at, rng.flip());
            first = first.min(at);
        }
        let cut_at = if first < WAL_HEADER { 0 } else { first };
        let lost_from = fx.first_commit_at(segment, cut_at);
        let replayed = end == Ending::Drop;
        let n = if replayed {
            lost_from
        } else {
            fx.commits.len()
        };

        let db = fx.open_ok("after flipping WAL bytes");
        let report = db.recovery_report();
        if replayed {
            assert!(
                !report.dropped.is_empty(),
                "seed {seed}: damaged WAL, nothing reported dropped"
            );
        }
        check(
            &fx,
            &db,
            &Expected::prefix(&fx, n),
            "after flipping WAL bytes",
        );
        let v = db.verify().expect("verify");
        if replayed {
            assert!(
                v.is_ok(),
                "seed {seed}: the damaged tail was cut, yet verify finds {:?}",
                v.problems
            );
        } else if first >= WAL_HEADER {
            // Not replayed (behind the checkpoint), but still damaged on disk.
            assert!(
                v.problems
                    .iter()
                    .any(|p| p.contains(&format!("{segment:020}.wal"))),
                "seed {seed}: verify misses the flipped WAL bytes: {:?}",
                v.problems
            );
        }
        let mut exp = Expected::prefix(&fx, n);
        keep_going(&fx, db, &mut exp, true);
    }
}

// ---------------------------------------------------------------------------------------
// (b) the WAL truncated at random points
// ---------------------------------------------------------------------------------------

#[test]
fn a_truncated_wal_keeps_a_prefix_of_the_transactions() {
    for seed in seeds(9) {
        let end = ending(seed);
        let fx = Fixture::write(seed, end);
        let mut rng = Rng::new(seed + 200);
        let segs = fx.segments();
        // Which segment, and where: the seed walks through every combination of
        // ending and kind of cut. The newest segment is where a crash tears.
        let newest = segs.len() - 1;
        let mode = seed / 3 % 3;
        let which = if mode == 2 {
            rng.below(newest as u64) as usize
        } else {
            newest
        };
        let (segment, path) = segs[which].clone();
        let len = fx.records_end(segment);
        let recs: Vec<&WalRec> = fx.wal.iter().filter(|r| r.segment == segment).collect();
        let cut = match mode {
            0 => rng.range(WAL_HEADER, len),
            // Inside the segment header, or exactly between two records of the newest
            // segment (indistinguishable from a log that simply ended there).
            1 if rng.chance(50) || recs.is_empty() => rng.below(WAL_HEADER),
            1 => recs[rng.below(recs.len() as u64) as usize].start,
            // An older segment, torn inside a record where replay reads. (A clean cut
            // between records, or one behind the checkpoint position, leaves a gap
            // between commits: the regression tests at the end cover it.)
            _ => {
                let lo = if segment == fx.ckpt.wal_segment {
                    fx.ckpt.wal_offset.max(WAL_HEADER)
                } else {
                    WAL_HEADER
                };
                if lo >= len {
                    len
                } else {
                    let c = rng.range(lo, len);
                    c + u64::from(recs.iter().any(|r| r.start == c))
                }
            }
        };
        truncate(&path, cut);

        // Commits before the checkpoint position are in the data file; replay reads
        // from there on and must stop at the cut: a later segment cannot be applied
        // on top of a hole.
        let ckpt_commits = fx.first_commit_at(fx.ckpt.wal_segment, fx.ckpt.wal_offset);
        let lost_from = if cut < WAL_HEADER {
            fx.first_commit_at(segment, 0)
        } else {
            fx.first_commit_at(segment, cut)
        };
        let n = if segment < fx.ckpt.wal_segment {
            fx.commits.len()
        } else {
            lost_from.max(ckpt_commits)
        };

        let db = fx.open_ok("after truncating the WAL");
        let report = db.recovery_report();
        let torn = cut < WAL_HEADER || !recs.iter().any(|r| r.start == cut || r.end == cut);
        if n < fx.commits.len() && torn {
            assert!(
                !report.dropped.is_empty(),
                "seed {seed}: segment {segment} cut to {cut}, commits lost, nothing reported"
            );
        }
        check(
            &fx,
            &db,
            &Expected::prefix(&fx, n),
            &format!("after cutting segment {segment} to {cut} bytes"),
        );
        let mut exp = Expected::prefix(&fx, n);
        keep_going(&fx, db, &mut exp, true);
    }
}

// ---------------------------------------------------------------------------------------
// (c) flipped bytes in the data file
// ---------------------------------------------------------------------------------------

#[test]
fn flipped_bytes_in_the_data_file_affect_only_their_documents() {
    for seed in seeds(6) {
        // Drop alone would rebuild the data file from the WAL; only these two leave
        // the data file authoritative for (some of) the documents.
        let end = if seed % 2 == 0 {
            Ending::Close
        } else {
            Ending::CheckpointThenDrop
        };
        // Healing on read (the default) in most runs, off in some.
        let mut cfg = config();
        cfg.healing.on_read_corruption = seed % 3 != 2;
        let fx = Fixture::write_with(seed, end, cfg);
        let mut rng = Rng::new(seed + 300);
        let path = fx.data_file();
        let len = fs::metadata(&path).expect("metadata").len();
        // Damaged records: index into fx.data -> header damaged?
        let mut damaged: BTreeMap<usize, bool> = BTreeMap::new();
        let doc_recs: Vec<usize> = (0..fx.data.len())
            .filter(|&i| fx.data[i].kind == Kind::Put)
            .collect();
        for _ in 0..rng.range(2, 9) {
            // Half the flips land in a record header, half anywhere in a document
            // record. (Collection records: see
            // `a_damaged_collection_record_does_not_hide_its_documents`.)
            let (i, at) = if rng.chance(50) {
                let i = doc_recs[rng.below(doc_recs.len() as u64) as usize];
                (i, rng.range(fx.data[i].start, fx.data[i].payload_start))
            } else {
                loop {
                    let at = rng.range(DATA_HEADER, len);
                    let i = fx.data.partition_point(|r| r.end <= at);
                    if fx.data[i].kind == Kind::Put {
                        break (i, at);
                    }
                }
            };
            let r = &fx.data[i];
            xor_at(&path, at, rng.flip());
            *damaged.entry(i).or_insert(false) |= at < r.payload_start;
        }
        // Records past the checkpoint's data_len are rebuilt from the WAL at open.
        let effective: BTreeMap<usize, bool> = damaged
            .iter()
            .filter(|(&i, _)| fx.data[i].end <= fx.ckpt.data_len)
            .map(|(&i, &h)| (i, h))
            .collect();
        let want_of = |d: &Doc| -> Want {
            let hit = effective
                .iter()
                .find(|(&i, _)| fx.data[i].coll == d.coll && fx.data[i].id == d.id);
            match hit {
                None => Want::Exact,
                Some((_, true)) => Want::LostOrExact,
                Some((_, false)) => Want::Damaged,
            }
        };
        let exp = Expected::from_fn(&fx, true, |_, d| want_of(d));

        // This test is about the full scan of the data file: without the index
        // snapshot, open reads every header and must notice each damaged one. (With
        // it, open reads no header below the snapshot; reads find the damage: see
        // tests/index_snapshot.rs.)
        fs::remove_file(fx.dir.path().join("INDEX")).expect("remove INDEX");
        let db = fx.open_ok("after flipping data-file bytes");
        let report = db.recovery_report();
        if effective.values().any(|&h| h) {
            assert!(
                report.dropped.iter().any(|l| l.contains(".data")),
                "seed {seed}: a damaged record header was skipped without a word: {:?}",
                report.dropped
            );
        }
        check(&fx, &db, &exp, "after flipping data-file bytes");

        let v = db.verify().expect("verify");
        for (&i, &header) in &effective {
            let r = &fx.data[i];
            if header {
                assert!(
                    v.problems.iter().any(|p| gap_covers(p, r.start)),
                    "seed {seed}: verify misses the damaged header of {}/{}: {:?}",
                    r.coll,
                    r.id,
                    v.problems
                );
            } else {
                // Still the current version: a corrupt document. Healed on read (a
                // newer version supersedes the damaged record): a note.
                let note = format!("{}/{} at offset {}", r.coll, r.id, r.start);
                assert!(
                    v.corrupt_documents.contains(&(r.coll.clone(), r.id))
                        || v.notes.iter().any(|n| n.contains(&note)),
                    "seed {seed}: verify misses the damaged payload of {}/{}: {:?} {:?}",
                    r.coll,
                    r.id,
                    v.corrupt_documents,
                    v.notes
                );
            }
        }
        let damaged_docs: Vec<(String, u64)> = effective
            .iter()
            .filter(|(_, &h)| !h)
            .map(|(&i, _)| (fx.data[i].coll.clone(), fx.data[i].id))
            .collect();
        for d in &v.corrupt_documents {
            assert!(
                damaged_docs.contains(d),
                "seed {seed}: verify calls {d:?} corrupt, it is not"
            );
        }
        let mut exp = exp;
        keep_going(&fx, db, &mut exp, false);
    }
}

// ---------------------------------------------------------------------------------------
// (d) the data file truncated
// ---------------------------------------------------------------------------------------

#[test]
fn a_truncated_data_file_loses_only_what_lay_past_the_cut() {
    for seed in seeds(6) {
        let end = if seed % 2 == 0 {
            Ending::Close
        } else {
            Ending::CheckpointThenDrop
        };
        let fx = Fixture::write(seed, end);
        let mut rng = Rng::new(seed + 400);
        let path = fx.data_file();
        let len = fs::metadata(&path).expect("metadata").len();
        // Mostly inside a record; every third seed exactly between two records.
        let cut = if seed % 3 == 0 {
            fx.data[rng.range(1, fx.data.len() as u64) as usize].start
        } else {
            rng.range(DATA_HEADER, len)
        };
        truncate(&path, cut);
        // Lost: versions wholly or partly past the cut, unless the WAL replays them
        // (those past the checkpoint's data_len). A data file shorter than its
        // checkpoint makes recovery replay every WAL segment still on disk, so a lost
        // version may come back (exactly) from the log.
        let lost = |r: &DataRec| r.end > cut && r.end <= fx.ckpt.data_len;
        let second_lost = fx
            .data
            .iter()
            .any(|r| r.kind == Kind::CreateCollection && lost(r));
        let exp = Expected::from_fn(&fx, !second_lost, |_, d| {
            let r = fx
                .data
                .iter()
                .find(|r| r.coll == d.coll && r.id == d.id && r.kind == Kind::Put);
            match r {
                Some(r) if lost(r) => Want::LostOrExact,
                _ if second_lost && d.coll == SECOND => Want::LostOrExact,
                _ => Want::Exact,
            }
        });

        let db = fx.open_ok("after truncating the data file");
        let mut exp = exp;
        if second_lost {
            // Its creation may have been replayed from the WAL.
            exp.second_exists = db.list_collections().iter().any(|c| c == SECOND);
        }
        if cut < fx.ckpt.data_len {
            assert!(
                !db.recovery_report().dropped.is_empty(),
                "seed {seed}: data file cut from {len} to {cut} (checkpoint says {}), nothing reported",
                fx.ckpt.data_len
            );
        }
        check(
            &fx,
            &db,
            &exp,
            &format!("after cutting the data file from {len} to {cut} bytes"),
        );
        // Writing on after a cut inside a record loses acknowledged writes at the next
        // open (see `writes_after_a_data_file_cut_inside_a_record_survive_a_reopen`).
        let clean_cut = cut >= fx.ckpt.data_len || fx.data.iter().any(|r| r.start == cut);
        if clean_cut {
            let mut exp = exp;
            keep_going(&fx, db, &mut exp, true);
        }
    }
}

// ---------------------------------------------------------------------------------------
// (e) garbage over CHECKPOINT
// ---------------------------------------------------------------------------------------

#[test]
fn a_damaged_checkpoint_fails_the_open_clearly_and_harms_nothing() {
    for seed in seeds(6) {
        let fx = Fixture::write(seed, ending(seed));
        let mut rng = Rng::new(seed + 500);
        let ckpt_path = fx.path().join("CHECKPOINT");
        let good = fs::read(&ckpt_path).expect("read CHECKPOINT");
        let garbage: Vec<u8> = match seed % 4 {
            0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
            1 => (0..good.len()).map(|_| rng.next() as u8).collect(),
            2 => {
                let mut g = good.clone();
                let at = rng.below(g.len() as u64) as usize;
                g[at] ^= rng.flip();
                g
            }
            _ => good[..rng.below(good.len() as u64) as usize].to_vec(),
        };
        fs::write(&ckpt_path, &garbage).expect("write garbage");
        match fx.open("over a damaged CHECKPOINT") {
            Ok(db) => panic!(
                "seed {seed}: opened over a damaged CHECKPOINT (recovery report {:?})",
                db.recovery_report().dropped
            ),
            Err(Error::Format(msg)) => assert!(
                msg.contains("CHECKPOINT"),
                "seed {seed}: unclear error {msg:?}"
            ),
            Err(e) => panic!("seed {seed}: unexpected error for a damaged CHECKPOINT: {e:?}"),
        }
        // The failed open changed nothing: with the checkpoint restored, all is there.
        fs::write(&ckpt_path, &good).expect("restore CHECKPOINT");
        let db = fx.open_ok("with the CHECKPOINT restored");
        check(
            &fx,
            &db,
            &Expected::prefix(&fx, fx.commits.len()),
            "with the CHECKPOINT restored",
        );
        drop(db);

        // Without any CHECKPOINT the database is rebuilt from the data file and the WAL.
        fs::remove_file(&ckpt_path).expect("remove CHECKPOINT");
        let db = fx.open_ok("without a CHECKPOINT");
        assert!(
            db.recovery_report()
                .dropped
                .iter()
                .any(|l| l.contains("CHECKPOINT")),
            "seed {seed}: a missing CHECKPOINT went unreported"
        );
        let mut exp = Expected::prefix(&fx, fx.commits.len());
        check(&fx, &db, &exp, "without a CHECKPOINT");
        keep_going(&fx, db, &mut exp, true);
    }
}

// ---------------------------------------------------------------------------------------
// (f) a WAL segment header replaced with zeros
// ---------------------------------------------------------------------------------------

#[test]
fn a_zeroed_wal_segment_header_drops_that_segment_and_the_rest() {
    for seed in seeds(6) {
        let end = ending(seed);
        let fx = Fixture::write(seed, end);
        let mut rng = Rng::new(seed + 600);
        let segs = fx.segments();
        let (segment, path) = segs[rng.below(segs.len() as u64) as usize].clone();
        let mut buf = fs::read(&path).expect("read segment");
        buf[..WAL_HEADER as usize].fill(0);
        fs::write(&path, &buf).expect("write segment");

        let replayed = segment >= fx.ckpt.wal_segment;
        let ckpt_commits = fx.first_commit_at(fx.ckpt.wal_segment, fx.ckpt.wal_offset);
        let n = if replayed {
            fx.first_commit_at(segment, 0).max(ckpt_commits)
        } else {
            fx.commits.len()
        };
        let db = fx.open_ok("after zeroing a WAL segment header");
        let report = db.recovery_report();
        if replayed {
            assert!(
                report.dropped.iter().any(|l| l.contains(&format!("{segment:020}.wal"))),
                "seed {seed}: segment {segment} with a zeroed header was dropped without a word: {:?}",
                report.dropped
            );
        }
        check(
            &fx,
            &db,
            &Expected::prefix(&fx, n),
            &format!("after zeroing the header of segment {segment}"),
        );
        if !replayed {
            let v = db.verify().expect("verify");
            assert!(
                v.problems
                    .iter()
                    .any(|p| p.contains(&format!("{segment:020}.wal"))),
                "seed {seed}: verify misses the zeroed header of segment {segment}: {:?}",
                v.problems
            );
        }
        let mut exp = Expected::prefix(&fx, n);
        keep_going(&fx, db, &mut exp, true);
    }
}

// ---------------------------------------------------------------------------------------
// The data file's own header
// ---------------------------------------------------------------------------------------

/// A data file whose 24-byte file header is damaged or cut off: the engine refuses to
/// open (clearly, naming the file) rather than guess. It must not panic, and the
/// refusal must not touch anything: with the header restored, everything is there.
#[test]
fn a_damaged_data_file_header_is_refused_clearly() {
    for seed in seeds(3) {
        let fx = Fixture::write(seed, Ending::Close);
        let mut rng = Rng::new(seed + 700);
        let path = fx.data_file();
        let original = fs::read(&path).expect("read data file");
        if seed == 0 {
            truncate(&path, rng.below(DATA_HEADER));
        } else {
            xor_at(&path, rng.below(DATA_HEADER), rng.flip());
        }
        match fx.open("with a damaged data file header") {
            Ok(db) => check(
                &fx,
                &db,
                &Expected::prefix(&fx, fx.commits.len()),
                "with a damaged data file header",
            ),
            Err(Error::Format(msg)) => {
                assert!(msg.contains(".data"), "seed {seed}: unclear error {msg:?}")
            }
            Err(e) => panic!("seed {seed}: unexpected error: {e:?}"),
        }
        fs::write(&path, &original).expect("restore the data file");
        let db = fx.open_ok("with the data file header restored");
        check(
            &fx,
            &db,
            &Expected::prefix(&fx, fx.commits.len()),
            "with the data file header restored",
        );
    }
}

// ---------------------------------------------------------------------------------------
// Regression tests: engine bugs found by this file, since fixed (described as found)
// ---------------------------------------------------------------------------------------

fn open_default(dir: &Path) -> Database {
    Database::open(dir, Config::default()).expect("open")
}

fn the_data_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("data"))
        .expect("data dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    files.pop().expect("a data file")
}

/// One flipped bit in a data-file record *header* makes the open skip the record, and
/// nothing recovers the version it held (the WAL still has an intact copy; healing
/// only repairs payloads of records that are indexed). Depending on what else the
/// data file holds, the document silently disappears, an *older* version is served as
/// the current one, or a deleted document comes back. The recovery report only says
/// "damaged bytes a..b skipped".
#[test]
fn a_damaged_record_header_neither_loses_nor_resurrects_documents() {
    let d = tempfile::tempdir().expect("tempdir");
    let db = open_default(d.path());
    db.create("", 1, br#""v1""#).expect("create 1");
    db.update("", 1, br#""v2""#).expect("update 1");
    db.create("", 2, br#""two""#).expect("create 2");
    db.delete("", 2).expect("delete 2");
    db.create("", 3, br#""three""#).expect("create 3");
    db.close().expect("close");
    // Records: 1@v1, 1@v2, 2@two, 2@tombstone, 3@three. Damage the headers of the
    // second, fourth and fifth (one byte inside the header CRC's range each).
    let path = the_data_file(d.path());
    let recs = parse_data(&path);
    for i in [1, 3, 4] {
        xor_at(&path, recs[i].start + 20, 0x40);
    }
    let db = open_default(d.path());
    let dropped = db.recovery_report().dropped;
    let one = db.read("", 1);
    let two = db.read("", 2);
    let three = db.read("", 3);
    assert!(
        !matches!(&one, Ok(b) if b == br#""v1""#),
        "document 1 reads as its overwritten version v1 (dropped: {dropped:?})"
    );
    assert!(two.is_err(), "deleted document 2 is back: {two:?}");
    assert!(
        matches!(&three, Ok(b) if b == br#""three""#)
            || matches!(three, Err(Error::Corrupt { .. })),
        "document 3 (intact copy in the WAL) silently vanished: {three:?}"
    );
}

/// One flipped bit in the header of a *collection* record (the record of
/// `create_collection`) makes the whole collection disappear at the next open, with
/// every one of its intact documents: `list_collections` lacks it and every read fails
/// with `CollectionNotFound`.
#[test]
fn a_damaged_collection_record_does_not_hide_its_documents() {
    let d = tempfile::tempdir().expect("tempdir");
    let db = open_default(d.path());
    db.create_collection("users").expect("create collection");
    for id in 1..=20u64 {
        db.create("users", id, format!(r#"{{"id":{id}}}"#).as_bytes())
            .expect("create");
    }
    db.close().expect("close");
    let path = the_data_file(d.path());
    let recs = parse_data(&path);
    assert_eq!(recs[0].kind, Kind::CreateCollection);
    xor_at(&path, recs[0].start + 20, 0x40);
    let db = open_default(d.path());
    let dropped = db.recovery_report().dropped;
    assert_eq!(
        db.list_collections(),
        vec!["_default", "users"],
        "dropped: {dropped:?}"
    );
    for id in 1..=20u64 {
        let got = db.read("users", id);
        assert!(
            matches!(&got, Ok(b) if *b == format!(r#"{{"id":{id}}}"#).into_bytes()),
            "users/{id}: {got:?}"
        );
    }
}

/// After the data file lost its tail inside a record, the open keeps the torn record's
/// bytes and appends behind them. At the next open the torn record's header (intact)
/// claims its full length again, now covered by newer records, and the scan swallows
/// them: documents written and acknowledged after the first recovery are gone (and the
/// torn document comes back via healing).
#[test]
fn writes_after_a_data_file_cut_inside_a_record_survive_a_reopen() {
    let d = tempfile::tempdir().expect("tempdir");
    let db = open_default(d.path());
    let big = format!(r#""{}""#, "x".repeat(5000));
    for id in 1..=5u64 {
        db.create("", id, big.as_bytes()).expect("create");
    }
    db.close().expect("close");
    let path = the_data_file(d.path());
    let len = fs::metadata(&path).expect("metadata").len();
    truncate(&path, len - 2000); // inside the record of document 5
    let db = open_default(d.path());
    // The cut version is brought back from the WAL, which still holds it.
    assert_eq!(
        db.read("", 5).expect("restored from the WAL"),
        big.as_bytes()
    );
    for id in 10..=15u64 {
        db.create("", id, big.as_bytes())
            .expect("create after recovery");
    }
    db.close().expect("close");
    let db = open_default(d.path());
    for id in 10..=15u64 {
        let got = db.read("", id).map(|b| b.len());
        assert_eq!(
            got.ok(),
            Some(big.len()),
            "document {id}, acknowledged after recovery, is lost"
        );
    }
}

/// Writes one document per commit until the WAL has `segments` segments; returns the
/// ids in commit order.
fn fill_segments(db: &Database, dir: &Path, segments: usize, from: u64) -> Vec<u64> {
    let doc = format!(r#"{{"pad":"{}"}}"#, "p".repeat(8000));
    let mut ids = Vec::new();
    let mut id = from;
    let mut extra = 3;
    while extra > 0 {
        if wal_segments(&dir.join("wal")).len() >= segments {
            extra -= 1;
        }
        db.create("", id, doc.as_bytes()).expect("create");
        ids.push(id);
        id += 1;
    }
    ids
}

/// The ids whose commits a WAL segment holds (one document per commit, seq = id order).
fn ids_in_segment(dir: &Path, segment: u64, first_seq_id: &[(u64, u64)]) -> Vec<u64> {
    let seqs: Vec<u64> = parse_wal(&dir.join("wal"))
        .iter()
        .filter(|r| r.segment == segment)
        .map(|r| r.seq)
        .collect();
    first_seq_id
        .iter()
        .filter(|(seq, _)| seqs.contains(seq))
        .map(|(_, id)| *id)
        .collect()
}

fn small_segments() -> Config {
    let mut c = Config::default();
    c.wal.max_file_size_mb = 1;
    c.wal.keep_segments = 100;
    c
}

/// A WAL segment that is not the last one ends early, exactly between two records (a
/// lost tail that tears nothing). Replay finds no bad record in it, moves on to the
/// next segment and applies the later commits on top of the missing ones: the
/// recovered state is no prefix of the history. (Commit sequence numbers are
/// contiguous, so the gap is detectable.)
#[test]
fn replay_does_not_step_over_a_segment_that_ends_early() {
    let d = tempfile::tempdir().expect("tempdir");
    let db = Database::open(d.path(), small_segments()).expect("open");
    let ids = fill_segments(&db, d.path(), 2, 1);
    drop(db);
    // Commit seq k wrote id k (seq 1 is the first commit of a new database).
    let by_seq: Vec<(u64, u64)> = ids.iter().map(|&id| (id, id)).collect();
    let seg1 = ids_in_segment(d.path(), 1, &by_seq);
    let seg2 = ids_in_segment(d.path(), 2, &by_seq);
    let last = parse_wal(&d.path().join("wal"))
        .into_iter()
        .rfind(|r| r.segment == 1)
        .expect("a record in segment 1");
    truncate(&wal_segments(&d.path().join("wal"))[0].1, last.start);
    let db = Database::open(d.path(), small_segments()).expect("reopen");
    let lost = *seg1.last().expect("ids in segment 1");
    assert!(matches!(db.read("", lost), Err(Error::NotFound)));
    let later: Vec<u64> = seg2
        .iter()
        .copied()
        .filter(|&id| db.read("", id).is_ok())
        .collect();
    assert!(
        later.is_empty(),
        "commit of id {lost} is lost, yet {} later commits (ids {:?}…) were applied: dropped {:?}",
        later.len(),
        &later[..later.len().min(5)],
        db.recovery_report().dropped
    );
}

/// The same gap through the checkpoint: the checkpoint's segment is found shorter than
/// the checkpoint position (reported), replay skips the rest of that segment — and
/// then replays the next one anyway, on top of the commits it just lost.
#[test]
fn replay_stops_at_a_segment_shorter_than_the_checkpoint_position() {
    let d = tempfile::tempdir().expect("tempdir");
    let db = Database::open(d.path(), small_segments()).expect("open");
    db.create("", 1, b"1").expect("create");
    db.checkpoint().expect("checkpoint");
    let ids = fill_segments(&db, d.path(), 2, 100);
    drop(db);
    // Commit seq 1 wrote id 1; then seq 2.. wrote ids 100...
    let by_seq: Vec<(u64, u64)> = ids
        .iter()
        .enumerate()
        .map(|(k, &id)| (k as u64 + 2, id))
        .collect();
    let seg1 = ids_in_segment(d.path(), 1, &by_seq);
    let seg2 = ids_in_segment(d.path(), 2, &by_seq);
    // Lose segment 1's records after the checkpoint (the checkpoint is inside it).
    truncate(&wal_segments(&d.path().join("wal"))[0].1, WAL_HEADER + 10);
    let db = Database::open(d.path(), small_segments()).expect("reopen");
    let dropped = db.recovery_report().dropped;
    assert_eq!(
        db.read("", 1).ok(),
        Some(b"1".to_vec()),
        "checkpointed, in the data file"
    );
    assert!(
        seg1.iter().all(|&id| db.read("", id).is_err()),
        "records past the cut are gone"
    );
    let later: Vec<u64> = seg2
        .iter()
        .copied()
        .filter(|&id| db.read("", id).is_ok())
        .collect();
    assert!(
        later.is_empty(),
        "{} commits of segment 1 are lost, yet {} later commits of segment 2 were applied: dropped {dropped:?}",
        seg1.len(),
        later.len()
    );
}
