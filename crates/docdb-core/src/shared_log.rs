//! The shared commit log: one durability round (one fsync) for the commits of many
//! databases (issue 17; docs/ARCHITECTURE.md "The shared log", docs/FORMAT.md
//! "Shared log").
//!
//! An *accelerator*, not a second home for the data: each database's own WAL stays
//! complete and self-contained. With a shared log, a database's syncer writes its batch
//! to its own WAL (no fsync) and the data file as always, then appends one record
//! `{database id, WAL position, the WAL bytes}` here with a completion, and returns:
//! nobody waits in the log ([`SharedLog::commit_then`]). The log group-commits
//! *across* databases: a committer that finds no round running leads — writes every
//! record queued so far with one write, fsyncs once, then runs the round's completions
//! (each settles its database's batch, publishes it and answers its callbacks) and
//! leads again while records are queued and no other thread has started a round; a
//! committer that finds a round running only queues. The next round may start on
//! another thread while a leader runs completions. A batch is acknowledged only after
//! the fsync that covers its record (no timer, no polling).
//!
//! Crash safety: after a crash the database's WAL may lack bytes that were
//! acknowledged; [`drain`] (run before any database opens) writes every record back
//! into its database's WAL at its position and fsyncs it, then empties this log.
//! Records of a database that no longer exists (dropped, recreated under the same name:
//! its `DBID` differs) or of a WAL segment its checkpoint trimmed are skipped.
//!
//! Trim: the log is segmented (WAL segments, `<n:020>.wal`, in its own directory). A
//! sealed segment is removed only after every database with records in it fsynced its
//! own WAL past them: a background thread fsyncs each such database's current WAL
//! segment file, several at once (a database's WAL roll fsyncs the segment it leaves, and closing a
//! database checkpoints it, which covers its WAL), then removes the segment. The
//! leader waits for the trim when sealed segments exceed the size bound.
//!
//! Failure: a failed write or fsync of this log fails the round: its commits get
//! `write outcome unknown` and their databases are poisoned (DECISIONS 38); the log is
//! then disabled for the life of the process and every database falls back to fsyncing
//! its own WAL. Nothing is retried. A failed trim fsync also disables it (the segments
//! stay for the next start's drain).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::checkpoint::Checkpoint;
use crate::codec::Reader;
use crate::error::{Error, Result};
use crate::storage::{self, OpenMode, Storage, StorageFile};
use crate::wal::segment::{decode_header, list_segments, segment_path, HEADER_LEN};
use crate::wal::writer::WalWriter;
use crate::wal::WalPos;

// ---------------------------------------------------------------------------------
// Database identity: `<dir>/DBID`
//
//   magic "DOCDBDID" (8)  id u128 (16)  crc u32 = crc32c(the 24 bytes before)
//
// Written once (temp file, fsync, rename, fsync directory) by the first open with a
// shared log; random, so a database recreated under a dropped one's name has another.
// ---------------------------------------------------------------------------------

const ID_FILE: &str = "DBID";
const ID_MAGIC: &[u8; 8] = b"DOCDBDID";
const ID_LEN: usize = 28;

fn encode_id(id: u128) -> [u8; ID_LEN] {
    let mut b = [0u8; ID_LEN];
    b[0..8].copy_from_slice(ID_MAGIC);
    b[8..24].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_id(b: &[u8]) -> Option<u128> {
    if b.len() != ID_LEN || &b[0..8] != ID_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(b[24..28].try_into().ok()?);
    if crc32c::crc32c(&b[0..24]) != crc {
        return None;
    }
    Some(u128::from_le_bytes(b[8..24].try_into().ok()?))
}

/// The id in `<dir>/DBID`: `None` when absent or unreadable.
fn read_id(storage: &dyn Storage, dir: &Path) -> Option<u128> {
    storage
        .read(&dir.join(ID_FILE))
        .ok()
        .and_then(|b| decode_id(&b))
}

/// The database's id, creating `<dir>/DBID` when absent. A damaged one is an error:
/// replacing it would orphan the records the shared log holds for the database.
pub(crate) fn load_or_create_id(storage: &dyn Storage, dir: &Path) -> Result<u128> {
    let path = dir.join(ID_FILE);
    match storage.read(&path) {
        Ok(b) => decode_id(&b).ok_or_else(|| {
            Error::Format(format!(
                "{} is damaged (bad length, magic or checksum)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id: u128 = rand::random::<u128>().max(1);
            storage::replace_file(storage, &path, &encode_id(id))?;
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------
// Records
//
//   record := len u32  crc u32  body[len]        crc = crc32c(len bytes ++ body)
//   body   := db_id u128  wal_segment u64  wal_offset u64  wal_bytes[len - 32]
//
// in segments with the WAL's header ("DOCDBWAL", version, segment number, crc) and the
// WAL's zero-fill ahead.
// ---------------------------------------------------------------------------------

const REC_HEADER: usize = 8;
const BODY_FIXED: usize = 32;

fn encode_record(out: &mut Vec<u8>, id: u128, pos: WalPos, bytes: &[u8]) {
    let len = (BODY_FIXED + bytes.len()) as u32;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&pos.segment.to_le_bytes());
    out.extend_from_slice(&pos.offset.to_le_bytes());
    out.extend_from_slice(bytes);
    let mut h = crc32c::crc32c(&out[start..start + 4]);
    h = crc32c::crc32c_append(h, &out[start + REC_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&h.to_le_bytes());
}

/// One decoded record, borrowing its WAL bytes.
#[derive(Debug, PartialEq, Eq)]
struct Record<'a> {
    id: u128,
    pos: WalPos,
    bytes: &'a [u8],
}

/// Decodes the record at the start of `buf` and its length; `None` for the end of the
/// log: zeros (written ahead), a torn or a corrupt record.
fn decode_record(buf: &[u8]) -> Option<(Record<'_>, usize)> {
    let mut r = Reader::new(buf);
    let len = r.u32()? as usize;
    let crc = r.u32()?;
    if len < BODY_FIXED {
        return None;
    }
    let body = r.bytes(len)?;
    let c = crc32c::crc32c_append(crc32c::crc32c(&buf[0..4]), body);
    if c != crc {
        return None;
    }
    let mut b = Reader::new(body);
    let id = u128::from_le_bytes(b.bytes(16)?.try_into().ok()?);
    let segment = b.u64()?;
    let offset = b.u64()?;
    Some((
        Record {
            id,
            pos: WalPos { segment, offset },
            bytes: &body[BODY_FIXED..],
        },
        REC_HEADER + len,
    ))
}

// ---------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------

/// One database's part in the trim: its WAL file with bytes the log covers and the
/// WAL has not fsynced. The database swaps in its new segment after a roll (which
/// fsynced the old one) and clears it once a checkpoint covers everything it wrote.
#[derive(Debug, Default)]
pub(crate) struct WalDep {
    file: Mutex<Option<Arc<dyn StorageFile>>>,
}

impl WalDep {
    pub(crate) fn set(&self, file: Option<Arc<dyn StorageFile>>) {
        *self.file.lock() = file;
    }

    fn sync(&self) -> io::Result<()> {
        let f = self.file.lock().clone();
        match f {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

/// A database's membership of a shared log: the log, its id, its trim dependency.
pub(crate) struct Member {
    pub log: SharedLog,
    pub id: u128,
    pub dep: Arc<WalDep>,
}

/// Why a record did not become durable through the log.
#[derive(Debug)]
pub(crate) enum NotLogged {
    /// The log is off (an earlier failure): fsync the database's own WAL instead.
    Fallback,
    /// The round holding the record failed: its outcome is unknown.
    Failed(io::Error),
}

/// Counters of the shared log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedLogStats {
    /// fsyncs of the shared log (each covers every record of its round).
    pub fsyncs: u64,
    /// Records (one database's group-commit batch each) made durable by the log.
    pub records: u64,
    /// Bytes appended.
    pub bytes: u64,
    /// Sealed segments removed after their databases fsynced their WALs.
    pub trimmed_segments: u64,
    /// fsyncs of databases' WALs made by the trim.
    pub trim_wal_syncs: u64,
    /// Rounds whose leader had to wait for the trim (the log was at its size bound).
    pub trim_waits: u64,
    /// Time leaders spent waiting for the trim, nanoseconds: commits of every
    /// database stall meanwhile.
    pub trim_wait_ns: u64,
    /// False once a failure turned the log off (databases fsync their own WALs).
    pub enabled: bool,
}

/// Told how a logged record ended, once: `Ok` when the log is fsynced past it; given
/// back the bytes it logged (the caller's buffer, for reuse). May return more work (a
/// database driving its next batch, which can block on an fsync of its own), run only
/// after every completion of the round: one database's next batch does not delay the
/// acknowledgements of the others.
pub(crate) type Logged =
    Box<dyn FnOnce(std::result::Result<(), NotLogged>, Vec<u8>) -> Option<Then> + Send>;

/// Work a completion leaves for after its round's completions.
pub(crate) type Then = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    buf: Vec<u8>,
    deps: Vec<(u128, Arc<WalDep>)>,
    /// The completions of the records in `buf`, in order, with their bytes to give
    /// back.
    done: Vec<(Logged, Vec<u8>)>,
    /// A leader is writing and fsyncing a round (the next one waits for it).
    syncing: bool,
}

thread_local! {
    /// This thread is a leader (in its round or running its completions): a record it
    /// logs meanwhile is queued for the leader's next round, never led from inside.
    static LEADING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct Writer {
    wal: WalWriter,
    /// Databases with records in the active segment.
    active: HashMap<u128, Arc<WalDep>>,
}

struct Sealed {
    segment: u64,
    deps: HashMap<u128, Arc<WalDep>>,
}

#[derive(Default)]
struct TrimState {
    sealed: Vec<Sealed>,
}

#[derive(Default)]
struct Counters {
    fsyncs: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    trimmed: AtomicU64,
    trim_syncs: AtomicU64,
    trim_waits: AtomicU64,
    trim_wait_ns: AtomicU64,
}

struct Shared {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    segment_bytes: u64,
    max_sealed: usize,
    enabled: AtomicBool,
    queue: Mutex<Queue>,
    writer: Mutex<Writer>,
    trim: Mutex<TrimState>,
    trim_cv: Condvar,
    /// Held by whoever trims (the thread or [`SharedLog::trim_now`]): one at a time.
    trimming: Mutex<()>,
    counters: Counters,
}

/// A server-wide commit log shared by many databases (see the module doc). Cheap to
/// clone; pass it in [`crate::OpenOptions::shared_log`].
///
/// Lock order: a database's syncer calls in holding no lock of any database (its
/// completion, run by a leader, takes them); inside, the queue lock, then (released)
/// the writer lock, then the trim lock, are taken one at a time or in that order, and
/// no database lock is taken under any of them (completions run with none held).
#[derive(Clone)]
pub struct SharedLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLog")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl SharedLog {
    /// Starts a log in `dir` (created private), which must hold no segment: [`drain`]
    /// it first. `max_bytes` bounds the log on disk (segments of a quarter of it).
    pub fn open(storage: Arc<dyn Storage>, dir: &Path, max_bytes: u64) -> Result<SharedLog> {
        storage.create_dir(dir)?;
        let old = list_segments(&*storage, dir)?;
        for &seg in &old {
            // What a drain leaves when it found no record: headers and zeros (or a torn
            // record). Anything that decodes must be drained first.
            let path = segment_path(dir, seg);
            let bytes = storage.read(&path)?;
            if bytes.len() > HEADER_LEN as usize
                && decode_record(&bytes[HEADER_LEN as usize..]).is_some()
            {
                return Err(Error::Format(format!(
                    "{} holds records: drain it before opening databases",
                    path.display()
                )));
            }
        }
        for &seg in &old {
            storage.remove_file(&segment_path(dir, seg))?;
        }
        if !old.is_empty() {
            storage.sync_dir(dir)?;
        }
        let segment_bytes = (max_bytes / 4).max(1 << 20);
        let wal = WalWriter::create(storage.clone(), dir, 1, segment_bytes)?;
        let shared = Arc::new(Shared {
            storage,
            dir: dir.to_path_buf(),
            segment_bytes,
            max_sealed: 3,
            enabled: AtomicBool::new(true),
            queue: Mutex::new(Queue::default()),
            writer: Mutex::new(Writer {
                wal,
                active: HashMap::new(),
            }),
            trim: Mutex::new(TrimState::default()),
            trim_cv: Condvar::new(),
            trimming: Mutex::new(()),
            counters: Counters::default(),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("docdb-shared-log-trim".into())
            .spawn(move || trim_loop(weak))
            .map_err(Error::from)?;
        Ok(SharedLog { shared })
    }

    /// Whether commits still go through the log.
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> SharedLogStats {
        let c = &self.shared.counters;
        SharedLogStats {
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            trimmed_segments: c.trimmed.load(Ordering::Relaxed),
            trim_wal_syncs: c.trim_syncs.load(Ordering::Relaxed),
            trim_waits: c.trim_waits.load(Ordering::Relaxed),
            trim_wait_ns: c.trim_wait_ns.load(Ordering::Relaxed),
            enabled: self.is_enabled(),
        }
    }

    /// Whether a batch of `len` WAL bytes should go through the log; a larger one
    /// fsyncs its own WAL (one fsync either way, and it keeps segments small).
    pub(crate) fn takes(&self, len: usize) -> bool {
        self.is_enabled() && (len as u64) <= self.shared.segment_bytes / 2
    }

    /// Logs `bytes`, just written to database `id`'s WAL at `pos` (its file is
    /// `dep`'s), and calls `done` once the log is fsynced past them (or could not be;
    /// see [`NotLogged`]). Never waits for another thread's round: if one is running,
    /// the record joins the next and `done` runs on that round's leader; otherwise this
    /// thread leads, runs the completions of its round (its own among them) and leads
    /// again while records are queued and nobody else does. The caller holds no lock
    /// of any database (completions take their database's locks).
    pub(crate) fn commit_then(
        &self,
        id: u128,
        dep: &Arc<WalDep>,
        pos: WalPos,
        bytes: Vec<u8>,
        done: Logged,
    ) {
        let sh = &*self.shared;
        let mut q = sh.queue.lock();
        if !self.is_enabled() {
            drop(q);
            if let Some(then) = complete((done, bytes), Err(NotLogged::Fallback)) {
                run_then(then);
            }
            return;
        }
        encode_record(&mut q.buf, id, pos, &bytes);
        q.deps.push((id, dep.clone()));
        q.done.push((done, bytes));
        if q.syncing || LEADING.with(|l| l.get()) {
            return;
        }
        LEADING.with(|l| l.set(true));
        let _leading = Leading;
        loop {
            q.syncing = true;
            let buf = std::mem::take(&mut q.buf);
            let deps = std::mem::take(&mut q.deps);
            let done = std::mem::take(&mut q.done);
            drop(q);
            // A panic in the round fails it like an I/O error (what reached the disk
            // is unknown): its records are told so and the log turns off.
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.round(&buf, deps)))
                    .unwrap_or_else(|_| Err(io::Error::other("the round panicked")));
            q = sh.queue.lock();
            // The next round may start (on another thread) while this one's
            // completions run.
            q.syncing = false;
            let (outcome, never_written) = match r {
                Ok(()) => {
                    sh.counters
                        .records
                        .fetch_add(done.len() as u64, Ordering::Relaxed);
                    sh.counters
                        .bytes
                        .fetch_add(buf.len() as u64, Ordering::Relaxed);
                    if q.buf.capacity() == 0 && buf.capacity() <= 1 << 20 {
                        let mut buf = buf;
                        buf.clear();
                        q.buf = buf;
                    }
                    (None, Vec::new())
                }
                Err(e) => {
                    let what = format!("shared log write or fsync: {e}");
                    self.disable(&what);
                    // Queued after the round: never written, their WALs hold them.
                    q.buf = Vec::new();
                    q.deps = Vec::new();
                    (Some(what), std::mem::take(&mut q.done))
                }
            };
            drop(q);
            let mut then = Vec::new();
            for d in done {
                let r = match &outcome {
                    None => Ok(()),
                    Some(what) => Err(NotLogged::Failed(io::Error::other(what.clone()))),
                };
                then.extend(complete(d, r));
            }
            for d in never_written {
                then.extend(complete(d, Err(NotLogged::Fallback)));
            }
            then.into_iter().for_each(run_then);
            q = sh.queue.lock();
            if q.done.is_empty() || q.syncing {
                return;
            }
        }
    }

    /// One round: append `buf` (whole records) and fsync, noting which databases
    /// have records in which segment.
    fn round(&self, buf: &[u8], deps: Vec<(u128, Arc<WalDep>)>) -> io::Result<()> {
        let sh = &*self.shared;
        let mut w = sh.writer.lock();
        // The bound: wait for the trim while too many segments are sealed.
        if w.wal.position().offset >= sh.segment_bytes {
            let mut t = sh.trim.lock();
            if t.sealed.len() >= sh.max_sealed {
                let started = std::time::Instant::now();
                while t.sealed.len() >= sh.max_sealed && self.is_enabled() {
                    sh.trim_cv.notify_all();
                    sh.trim_cv.wait_for(&mut t, Duration::from_millis(100));
                }
                let c = &sh.counters;
                c.trim_waits.fetch_add(1, Ordering::Relaxed);
                c.trim_wait_ns.fetch_add(
                    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
            }
            if !self.is_enabled() {
                return Err(io::Error::other("the shared log's trim failed"));
            }
        }
        let before = w.wal.position().segment;
        let at = w.wal.append(buf)?;
        if at.segment != before {
            let active = std::mem::take(&mut w.active);
            self.seal(before, active);
        }
        for (id, dep) in deps {
            w.active.entry(id).or_insert(dep);
        }
        w.wal.sync()?;
        sh.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn seal(&self, segment: u64, deps: HashMap<u128, Arc<WalDep>>) {
        let mut t = self.shared.trim.lock();
        t.sealed.push(Sealed { segment, deps });
        self.shared.trim_cv.notify_all();
    }

    fn disable(&self, what: &str) {
        self.shared.disable(what);
    }

    /// Seals the active segment (if it holds records) and trims every sealed segment
    /// now, on this thread. Tests use it to put a trim round at a chosen point.
    #[doc(hidden)]
    pub fn trim_now(&self) -> io::Result<()> {
        let sh = &*self.shared;
        {
            let mut w = sh.writer.lock();
            if !w.active.is_empty() {
                let seg = w.wal.position().segment;
                w.wal.roll()?;
                let active = std::mem::take(&mut w.active);
                self.seal(seg, active);
            }
        }
        trim_sealed(sh)
    }
}

/// Runs one completion; a panic in it is a bug of its database's code and must not
/// take the leader (and the completions after it) down: contained and logged.
fn complete(
    (done, bytes): (Logged, Vec<u8>),
    r: std::result::Result<(), NotLogged>,
) -> Option<Then> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(r, bytes))).unwrap_or_else(|_| {
        tracing::error!("a shared log completion panicked");
        None
    })
}

/// Runs a completion's further work, contained like the completion itself.
fn run_then(then: Then) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(then)).is_err() {
        tracing::error!("a shared log completion's further work panicked");
    }
}

/// Clears [`LEADING`] when the leader returns or unwinds.
struct Leading;

impl Drop for Leading {
    fn drop(&mut self) {
        LEADING.with(|l| l.set(false));
    }
}

impl Shared {
    fn disable(&self, what: &str) {
        if self.enabled.swap(false, Ordering::AcqRel) {
            tracing::error!(dir = %self.dir.display(), failure = what,
                "the shared commit log failed; it is off until restart and every \
                 database fsyncs its own WAL (records kept for the next start's drain)");
        }
        self.trim_cv.notify_all();
    }
}

/// The trim thread: trims sealed segments as they appear; ends with the log.
fn trim_loop(weak: std::sync::Weak<Shared>) {
    loop {
        let Some(sh) = weak.upgrade() else { return };
        {
            let mut t = sh.trim.lock();
            if t.sealed.is_empty() {
                sh.trim_cv.wait_for(&mut t, Duration::from_secs(1));
            }
        }
        if !sh.enabled.load(Ordering::Acquire) {
            // Off: the segments stay for the next start's drain.
            if Arc::strong_count(&sh) == 1 {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        // A failure has disabled the log already (inside `trim_sealed`).
        let _ = trim_sealed(&sh);
    }
}

/// Removes sealed segments oldest first, each after fsyncing the WALs of the databases
/// with records in it. Stops at the first failure and disables the log before another
/// trim can start: an fsync that failed once may succeed on a retry with the dirty
/// pages already dropped, so a segment whose WALs failed to sync is never trimmed by a
/// later round; it stays for the next start's drain.
fn trim_sealed(sh: &Shared) -> io::Result<()> {
    let _one = sh.trimming.lock();
    let r = trim_sealed_locked(sh);
    if let Err(e) = &r {
        sh.disable(&format!("trim: {e}"));
    }
    r
}

fn trim_sealed_locked(sh: &Shared) -> io::Result<()> {
    loop {
        if !sh.enabled.load(Ordering::Acquire) {
            return Err(io::Error::other(
                "the shared commit log is off after a failure; its segments stay for \
                 the next start's drain",
            ));
        }
        let next = {
            let t = sh.trim.lock();
            t.sealed
                .first()
                .map(|s| (s.segment, s.deps.values().cloned().collect::<Vec<_>>()))
        };
        let Some((segment, deps)) = next else {
            return Ok(());
        };
        sync_all(&deps)?;
        sh.counters
            .trim_syncs
            .fetch_add(deps.len() as u64, Ordering::Relaxed);
        storage::remove_if_exists(&*sh.storage, &segment_path(&sh.dir, segment))?;
        sh.storage.sync_dir(&sh.dir)?;
        sh.counters.trimmed.fetch_add(1, Ordering::Relaxed);
        let mut t = sh.trim.lock();
        t.sealed.retain(|s| s.segment != segment);
        sh.trim_cv.notify_all();
    }
}

/// Most WAL fsyncs one trim has in flight at once.
const TRIM_PARALLEL_SYNCS: usize = 16;

/// fsyncs every file of `deps`, [`TRIM_PARALLEL_SYNCS`] at a time: a file system
/// with a journal commits concurrent fsyncs together, so a segment of hundreds of
/// databases is trimmed in a few device flushes rather than one per database (one at a
/// time, a trim of 200 databases took most of a second, during which the log stayed
/// at its bound and every commit waited). The first failure is returned, after the
/// other syncs in flight end.
fn sync_all(deps: &[Arc<WalDep>]) -> io::Result<()> {
    if deps.len() <= 1 {
        return deps.iter().try_for_each(|d| d.sync());
    }
    let next = AtomicU64::new(0);
    let failed = Mutex::new(None::<io::Error>);
    let threads = deps.len().min(TRIM_PARALLEL_SYNCS);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                if failed.lock().is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(dep) = deps.get(i) else { return };
                if let Err(e) = dep.sync() {
                    failed.lock().get_or_insert(e);
                    return;
                }
            });
        }
    });
    match failed.into_inner() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------
// Drain
// ---------------------------------------------------------------------------------

/// Where one database's files are, for [`drain`].
#[derive(Debug, Clone)]
pub struct DbDirs {
    pub dir: PathBuf,
    pub wal_dir: PathBuf,
}

/// What [`drain`] did.
#[derive(Debug, Default, Clone)]
pub struct DrainReport {
    pub segments: u64,
    pub records: u64,
    /// Records whose bytes were missing from their WAL and were written back.
    pub written: u64,
    /// Records of databases not among the ones given (dropped, recreated, moved).
    pub unknown_db: u64,
    /// Records in a WAL segment gone since (trimmed after a checkpoint).
    pub obsolete: u64,
    /// Records before their database's checkpoint (written back all the same when
    /// their segment is still there).
    pub before_checkpoint: u64,
    /// Torn or corrupt tails cut, one line each.
    pub cut: Vec<String>,
}

/// Replays the shared log in `log_dir` into the databases' WALs, then empties it (see
/// the module doc). `dbs` are the databases that exist; records of others are skipped.
/// Run it before any of them opens.
pub fn drain(storage: &dyn Storage, log_dir: &Path, dbs: &[DbDirs]) -> Result<DrainReport> {
    let mut report = DrainReport::default();
    let segments = match list_segments(storage, log_dir) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(e.into()),
    };
    if segments.is_empty() {
        return Ok(report);
    }
    report.segments = segments.len() as u64;
    let mut contents = Vec::new();
    for &seg in &segments {
        let path = segment_path(log_dir, seg);
        let bytes = storage.read(&path)?;
        if decode_header(&bytes) != Some(seg) {
            report
                .cut
                .push(format!("{}: invalid header", path.display()));
            continue;
        }
        contents.push((path, bytes));
    }
    let mut by_id: Option<HashMap<u128, DbDirs>> = None;
    let mut ckpts: HashMap<u128, Option<WalPos>> = HashMap::new();
    let mut files: HashMap<(u128, u64), Option<Arc<dyn StorageFile>>> = HashMap::new();
    let mut touched: HashMap<(u128, u64), Arc<dyn StorageFile>> = HashMap::new();
    for (path, bytes) in &contents {
        let mut at = HEADER_LEN as usize;
        while at < bytes.len() {
            let Some((rec, n)) = decode_record(&bytes[at..]) else {
                if bytes[at..].iter().any(|&b| b != 0) {
                    report.cut.push(format!(
                        "{}: torn or corrupt record at offset {at}; {} bytes after it ignored",
                        path.display(),
                        bytes.len() - at
                    ));
                }
                break;
            };
            at += n;
            report.records += 1;
            let map = by_id.get_or_insert_with(|| {
                dbs.iter()
                    .filter_map(|d| read_id(storage, &d.dir).map(|id| (id, d.clone())))
                    .collect()
            });
            let Some(db) = map.get(&rec.id) else {
                report.unknown_db += 1;
                continue;
            };
            // A record before the database's checkpoint is written back too when its
            // segment is still there: the same bytes the WAL held, so the WAL stays
            // whole for `verify` and healing (replay starts at the checkpoint anyway).
            if ckpts
                .entry(rec.id)
                .or_insert_with(|| {
                    Checkpoint::load(storage, &db.dir)
                        .ok()
                        .flatten()
                        .map(|c| c.wal)
                })
                .is_some_and(|c| rec.pos < c)
            {
                report.before_checkpoint += 1;
            }
            let key = (rec.id, rec.pos.segment);
            let file = match files.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let p = segment_path(&db.wal_dir, rec.pos.segment);
                    let f = match storage.open(&p, OpenMode::ReadWrite) {
                        Ok(f) => Some(f),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                        Err(e) => return Err(e.into()),
                    };
                    files.insert(key, f.clone());
                    f
                }
            };
            let Some(file) = file else {
                report.obsolete += 1;
                continue;
            };
            let mut have = vec![0u8; rec.bytes.len()];
            let got = read_up_to(&*file, &mut have, rec.pos.offset)?;
            if got < have.len() || have != rec.bytes {
                file.write_all_at(rec.bytes, rec.pos.offset)?;
                touched.insert(key, file);
                report.written += 1;
            }
        }
    }
    if report.records == 0 && report.cut.is_empty() {
        // Nothing to replay (a clean stop leaves an empty segment): change nothing, so
        // `docdb check` after a clean stop writes no file. `SharedLog::open` clears it.
        return Ok(report);
    }
    for file in touched.values() {
        file.sync_data()?;
    }
    for &seg in &segments {
        storage::remove_if_exists(storage, &segment_path(log_dir, seg))?;
    }
    storage.sync_dir(log_dir)?;
    if report.records > 0 {
        tracing::info!(dir = %log_dir.display(), records = report.records,
            written = report.written, unknown_db = report.unknown_db,
            obsolete = report.obsolete, "drained the shared log into the databases' WALs");
    }
    for c in &report.cut {
        tracing::warn!(cut = %c, "shared log: cut a torn or corrupt tail");
    }
    Ok(report)
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns the count.
fn read_up_to(f: &dyn StorageFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = f.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_flip_detection() {
        let mut b = Vec::new();
        let pos = WalPos {
            segment: 3,
            offset: 4096,
        };
        encode_record(&mut b, 0xfeed_beef, pos, b"wal bytes");
        let (r, n) = decode_record(&b).unwrap();
        assert_eq!(n, b.len());
        assert_eq!(
            r,
            Record {
                id: 0xfeed_beef,
                pos,
                bytes: b"wal bytes"
            }
        );
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x04;
            assert!(decode_record(&x).is_none(), "byte {i}");
        }
        assert!(decode_record(&b[..b.len() - 1]).is_none());
        assert!(decode_record(&[0u8; 64]).is_none());
    }

    #[test]
    fn id_round_trip_and_flip_detection() {
        let b = encode_id(77 << 90 | 5);
        assert_eq!(decode_id(&b), Some(77 << 90 | 5));
        for i in 0..b.len() {
            let mut x = b;
            x[i] ^= 0x01;
            assert_eq!(decode_id(&x), None, "byte {i}");
        }
    }
}
