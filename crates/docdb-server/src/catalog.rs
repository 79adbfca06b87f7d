//! The catalog: logical database names ⇄ ids, with creation time and status. Ids start
//! at 1 and are never reused.
//!
//! On disk (docs/FORMAT.md "Catalog") it is a snapshot, `<data_dir>/catalog.json`
//! (replaced atomically: temp file, fsync, rename, fsync directory), plus an append-only
//! log, `<data_dir>/catalog.log`, of the databases created since, one checksummed
//! record each, fsynced before the create is acknowledged. Creating a database costs one
//! append and one fsync, not a rewrite of every entry; when the log holds more records
//! than the snapshot has entries (and at least [`COMPACT_MIN`]) it is folded into a new
//! snapshot and emptied, so a create costs O(1) amortised. A data directory of an older
//! version has only `catalog.json`: it loads as the snapshot with an empty log.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use docdb_core::fsutil::{private_file, replace_file, sync_dir};
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

/// Whether a database is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbStatus {
    Active,
    Deleted,
}

/// One database of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub id: u64,
    /// Creation time, RFC 3339.
    pub created_at: String,
    pub status: DbStatus,
}

/// Why a database could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// `limits.max_databases` active databases exist already.
    #[error("{}", docdb_protocol::text::TOO_MANY_DATABASES)]
    Full,
    /// An earlier append or fsync failed: what reached the disk is unknown, so the
    /// catalog takes no more creates until the server restarts.
    #[error("catalog is read-only after an I/O failure; restart the server")]
    ReadOnly,
    #[error("catalog: {0}")]
    Io(#[from] io::Error),
}

/// The snapshot file (the whole catalog before v0.4).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    next_id: u64,
    databases: Vec<Entry>,
}

const SNAPSHOT: &str = "catalog.json";
const LOG: &str = "catalog.log";
/// Record header: `u32 payload_len`, `u32 crc32c(payload)`.
const RECORD_HEADER: usize = 8;
/// The log is folded into the snapshot once it holds this many records and at least
/// as many as the snapshot has entries (so a create costs O(1) amortised).
const COMPACT_MIN: usize = 1024;
/// A record payload (one entry as JSON) is far smaller; a longer length is damage.
const MAX_RECORD: usize = 64 * 1024;

#[derive(Debug)]
struct State {
    next_id: u64,
    by_id: BTreeMap<u64, Entry>,
    /// Active entries only.
    by_name: HashMap<String, u64>,
}

impl State {
    fn apply(&mut self, e: Entry) {
        self.next_id = self.next_id.max(e.id + 1);
        if let Some(old) = self.by_id.get(&e.id) {
            if self.by_name.get(&old.name) == Some(&e.id) {
                self.by_name.remove(&old.name);
            }
        }
        if e.status == DbStatus::Active {
            self.by_name.insert(e.name.clone(), e.id);
        }
        self.by_id.insert(e.id, e);
    }
}

/// Group commit of `catalog.log`: creates are staged here; the first creator that
/// finds no syncer running becomes it, writes everything staged with one `write` and
/// one fsync (no lock held), publishes, and wakes the others. Concurrent OpenDBs of new
/// names thus share fsyncs.
#[derive(Debug, Default)]
struct Log {
    /// Encoded records not yet written.
    staged: Vec<u8>,
    /// Entries staged, not yet durable (a second OpenDB of the same name waits for
    /// the first's record instead of creating another).
    pending: Vec<(u64, Entry)>,
    /// Sequence numbers of staged and of durable records.
    staged_seq: u64,
    durable_seq: u64,
    syncing: bool,
    /// Records in the log (not yet in the snapshot).
    records: usize,
    failed: bool,
}

/// The catalog of one data directory.
///
/// Lock order: `log` before `state`. Neither is held across I/O: lookups never wait
/// for a create's fsync; `file` is written only by the one syncer of `log`.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    max_databases: usize,
    file: File,
    log: Mutex<Log>,
    synced: Condvar,
    state: Mutex<State>,
}

/// `[u32 len][u32 crc32c][payload]`.
fn encode_record(e: &Entry) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(e).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The entries of a log, and the length of its valid prefix. A torn last record (a
/// create that was never acknowledged) ends the prefix; damage before the last record
/// is an error.
fn decode_log(buf: &[u8]) -> Result<(Vec<Entry>, usize), String> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < RECORD_HEADER {
            break; // torn header
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let end = RECORD_HEADER + len;
        if len > MAX_RECORD {
            return Err(format!("record at offset {pos} claims {len} bytes"));
        }
        if rest.len() < end {
            break; // torn payload
        }
        let payload = &rest[RECORD_HEADER..end];
        let parsed = (crc32c::crc32c(payload) == crc)
            .then(|| serde_json::from_slice::<Entry>(payload).ok())
            .flatten();
        match parsed {
            Some(e) => entries.push(e),
            None if rest.len() == end => break, // torn last record
            None => return Err(format!("record at offset {pos} fails its checksum")),
        }
        pos += end;
    }
    Ok((entries, pos))
}

impl Catalog {
    /// Loads the catalog of `data_dir` (snapshot + log), or starts an empty one, with no
    /// limit on the number of databases.
    pub fn open(data_dir: &Path) -> anyhow::Result<Catalog> {
        Self::open_with_limit(data_dir, usize::MAX)
    }

    /// As [`Catalog::open`]; creates past `max_databases` active ones fail.
    pub fn open_with_limit(data_dir: &Path, max_databases: usize) -> anyhow::Result<Catalog> {
        Self::load(data_dir, max_databases, true)
    }

    /// Loads the catalog changing no file (no log created, no torn tail cut), for
    /// `docdb check`. Creates on it fail.
    pub fn open_read_only(data_dir: &Path) -> anyhow::Result<Catalog> {
        Self::load(data_dir, 0, false)
    }

    fn load(data_dir: &Path, max_databases: usize, writable: bool) -> anyhow::Result<Catalog> {
        let snap_path = data_dir.join(SNAPSHOT);
        let damaged = |what: &str, e: &dyn std::fmt::Display| {
            anyhow::anyhow!("{what} is damaged ({e}); restore it from a backup")
        };
        let stored: Stored = match fs::read(&snap_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| damaged(SNAPSHOT, &e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(anyhow::anyhow!("reading {SNAPSHOT}: {e}")),
        };
        let mut state = State {
            next_id: stored.next_id.max(1),
            by_id: BTreeMap::new(),
            by_name: HashMap::new(),
        };
        for e in stored.databases {
            state.apply(e);
        }

        let log_path = data_dir.join(LOG);
        let existed = log_path.exists();
        if !writable && !existed {
            return Ok(Catalog::new(
                data_dir,
                max_databases,
                File::open(data_dir)?,
                0,
                state,
            ));
        }
        let mut file = private_file()
            .read(true)
            .append(writable)
            .create(writable)
            .open(&log_path)
            .map_err(|e| anyhow::anyhow!("opening {LOG}: {e}"))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| anyhow::anyhow!("reading {LOG}: {e}"))?;
        let (entries, valid) = decode_log(&buf).map_err(|e| damaged(LOG, &e))?;
        let records = entries.len();
        for e in entries {
            state.apply(e);
        }
        if valid < buf.len() && writable {
            tracing::warn!(
                bytes = buf.len() - valid,
                "catalog.log ends in a torn record (a create never acknowledged); cut"
            );
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        if !existed {
            sync_dir(data_dir)?;
        }
        Ok(Catalog::new(data_dir, max_databases, file, records, state))
    }

    fn new(dir: &Path, max_databases: usize, file: File, records: usize, state: State) -> Catalog {
        Catalog {
            dir: dir.to_path_buf(),
            max_databases,
            file,
            log: Mutex::new(Log {
                records,
                ..Log::default()
            }),
            synced: Condvar::new(),
            state: Mutex::new(state),
        }
    }

    /// Writes the whole catalog as the snapshot, then empties the log. A crash between
    /// the two leaves log records the snapshot already holds: replaying them is
    /// harmless (an entry is keyed by its id).
    fn compact(&self) -> io::Result<()> {
        let stored = {
            let s = self.state.lock();
            Stored {
                next_id: s.next_id,
                databases: s.by_id.values().cloned().collect(),
            }
        };
        let bytes = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        replace_file(&self.dir.join(SNAPSHOT), &bytes)?;
        self.file.set_len(0)?;
        self.file.sync_all()
    }

    /// The active database called `name`, creating it (durably) if needed. Returns the
    /// entry and whether it was created.
    pub fn get_or_create(&self, name: &str) -> Result<(Entry, bool), CatalogError> {
        if let Some(e) = self.find(name) {
            return Ok((e, false));
        }
        let mut log = self.log.lock();
        let (entry, seq, created) = {
            let mut s = self.state.lock();
            if let Some(e) = s.by_name.get(name).and_then(|id| s.by_id.get(id)) {
                return Ok((e.clone(), false));
            }
            let pending_create = log
                .pending
                .iter()
                .find(|(_, e)| e.name == name && e.status == DbStatus::Active);
            if let Some((seq, e)) = pending_create {
                (e.clone(), *seq, false)
            } else {
                if log.failed {
                    return Err(CatalogError::ReadOnly);
                }
                let pending_creates = log
                    .pending
                    .iter()
                    .filter(|(_, e)| e.status == DbStatus::Active)
                    .count();
                if s.by_name.len() + pending_creates >= self.max_databases {
                    return Err(CatalogError::Full);
                }
                // The id is burnt even if the append fails: ids are never reused.
                let id = s.next_id;
                s.next_id += 1;
                let entry = Entry {
                    name: name.to_owned(),
                    id,
                    created_at: now_rfc3339(),
                    status: DbStatus::Active,
                };
                let record = encode_record(&entry)?;
                log.staged.extend_from_slice(&record);
                log.staged_seq += 1;
                let seq = log.staged_seq;
                log.pending.push((seq, entry.clone()));
                (entry, seq, true)
            }
        };
        self.wait_durable(log, seq)?;
        Ok((entry, created))
    }

    /// Marks database `id` deleted, durably (DropDB): its name is free for a new
    /// database (with a new id) once this returns; the id is never reused. Returns the
    /// entry as it was; `None` if `id` is unknown or already deleted.
    pub fn mark_deleted(&self, id: u64) -> Result<Option<Entry>, CatalogError> {
        let mut log = self.log.lock();
        if log.failed {
            return Err(CatalogError::ReadOnly);
        }
        let (old, seq) = {
            let s = self.state.lock();
            let Some(old) = s.by_id.get(&id).filter(|e| e.status == DbStatus::Active) else {
                return Ok(None);
            };
            let deleted = Entry {
                status: DbStatus::Deleted,
                ..old.clone()
            };
            let record = encode_record(&deleted)?;
            log.staged.extend_from_slice(&record);
            log.staged_seq += 1;
            let seq = log.staged_seq;
            log.pending.push((seq, deleted));
            (old.clone(), seq)
        };
        self.wait_durable(log, seq)?;
        Ok(Some(old))
    }

    /// Waits until record `seq` is durable, becoming the syncer (one write and one
    /// fsync for everything staged) when none is running.
    fn wait_durable(
        &self,
        mut log: parking_lot::MutexGuard<'_, Log>,
        seq: u64,
    ) -> Result<(), CatalogError> {
        loop {
            if log.durable_seq >= seq {
                return Ok(());
            }
            if log.failed {
                return Err(CatalogError::ReadOnly);
            }
            if log.syncing {
                self.synced.wait(&mut log);
                continue;
            }
            // Become the syncer for everything staged so far.
            log.syncing = true;
            let bytes = std::mem::take(&mut log.staged);
            let upto = log.staged_seq;
            let written = parking_lot::MutexGuard::unlocked(&mut log, || {
                (&self.file)
                    .write_all(&bytes)
                    .and_then(|()| self.file.sync_data())
            });
            log.syncing = false;
            match written {
                Ok(()) => {
                    let done: Vec<(u64, Entry)> = {
                        let (done, rest) = log.pending.drain(..).partition(|(s, _)| *s <= upto);
                        log.pending = rest;
                        done
                    };
                    log.records += done.len();
                    let live = {
                        let mut s = self.state.lock();
                        for (_, e) in done {
                            s.apply(e);
                        }
                        s.by_id.len()
                    };
                    log.durable_seq = upto;
                    if log.records >= COMPACT_MIN.max(live.saturating_sub(log.records)) {
                        // `syncing` keeps this the only writer of the file; records
                        // staged meanwhile are not in the snapshot and are appended
                        // to the emptied log by the next syncer.
                        log.syncing = true;
                        let r = parking_lot::MutexGuard::unlocked(&mut log, || self.compact());
                        log.syncing = false;
                        match r {
                            Ok(()) => log.records = 0,
                            // The log still holds every record: nothing is lost.
                            Err(e) => {
                                tracing::warn!(error = %e, "compacting the catalog failed; will retry")
                            }
                        }
                    }
                }
                Err(e) => {
                    // Not durable, so not created; the bytes may or may not be on disk.
                    log.failed = true;
                    log.pending.clear();
                    tracing::error!(error = %e, "appending to catalog.log failed; no more databases can be created until restart");
                }
            }
            self.synced.notify_all();
        }
    }

    /// The active database called `name`.
    pub fn find(&self, name: &str) -> Option<Entry> {
        let s = self.state.lock();
        let id = s.by_name.get(name)?;
        s.by_id.get(id).cloned()
    }

    pub fn get(&self, id: u64) -> Option<Entry> {
        self.state
            .lock()
            .by_id
            .get(&id)
            .filter(|e| e.status == DbStatus::Active)
            .cloned()
    }

    /// Whether `id` was a database that is now deleted.
    pub fn was_deleted(&self, id: u64) -> bool {
        self.state
            .lock()
            .by_id
            .get(&id)
            .is_some_and(|e| e.status == DbStatus::Deleted)
    }

    /// Every database ever created, deleted ones included, by id.
    pub fn all(&self) -> Vec<Entry> {
        self.state.lock().by_id.values().cloned().collect()
    }

    /// Active databases, by id.
    pub fn list(&self) -> Vec<Entry> {
        self.state
            .lock()
            .by_id
            .values()
            .filter(|e| e.status == DbStatus::Active)
            .cloned()
            .collect()
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_reopen_and_are_never_reused() {
        let d = tempfile::tempdir().unwrap();
        let c = Catalog::open(d.path()).unwrap();
        let (a, created) = c.get_or_create("alpha").unwrap();
        assert!(created);
        assert_eq!(a.id, 1);
        let (b, _) = c.get_or_create("beta").unwrap();
        assert_eq!(b.id, 2);
        assert_eq!(c.get_or_create("alpha").unwrap(), (a.clone(), false));
        drop(c);
        let c = Catalog::open(d.path()).unwrap();
        assert_eq!(c.get(1), Some(a));
        assert_eq!(c.get_or_create("gamma").unwrap().0.id, 3);
        assert!(c.list().iter().all(|e| e.created_at.ends_with('Z')));
    }

    #[test]
    fn a_damaged_catalog_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("catalog.json"), b"{not json").unwrap();
        let e = Catalog::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("catalog.json") && e.contains("damaged"), "{e}");
    }

    #[test]
    fn an_old_catalog_json_loads_and_keeps_its_ids() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("catalog.json"),
            br#"{"next_id": 7, "databases": [
                {"name":"a","id":1,"created_at":"2024-01-01T00:00:00Z","status":"active"},
                {"name":"b","id":5,"created_at":"2024-01-01T00:00:00Z","status":"deleted"}]}"#,
        )
        .unwrap();
        let c = Catalog::open(d.path()).unwrap();
        assert_eq!(c.find("a").unwrap().id, 1);
        assert!(c.find("b").is_none());
        assert_eq!(c.get_or_create("b").unwrap().0.id, 7);
        drop(c);
        let c = Catalog::open(d.path()).unwrap();
        assert_eq!(c.find("b").unwrap().id, 7);
        assert_eq!(c.list().len(), 2);
    }

    #[test]
    fn record_round_trip_and_flip_detection() {
        let e = Entry {
            name: "x".into(),
            id: 3,
            created_at: "2024-01-01T00:00:00Z".into(),
            status: DbStatus::Active,
        };
        let mut two = encode_record(&e).unwrap();
        let one = two.len();
        two.extend(encode_record(&e).unwrap());
        assert_eq!(
            decode_log(&two).unwrap(),
            (vec![e.clone(), e.clone()], two.len())
        );
        for i in 0..one {
            let mut x = two.clone();
            x[i] ^= 0x20;
            // Damage to the first of two records is never silently skipped.
            match decode_log(&x) {
                Err(_) => {}
                Ok((got, _)) => assert!(got.is_empty() || got[0] == e, "byte {i}"),
            }
            assert_ne!(
                decode_log(&x).ok(),
                Some((vec![e.clone(), e.clone()], x.len())),
                "byte {i}"
            );
        }
        // A torn tail is cut, not an error.
        assert_eq!(
            decode_log(&two[..two.len() - 3]).unwrap(),
            (vec![e.clone()], one)
        );
        let mut last = two.clone();
        let n = last.len();
        last[n - 2] ^= 1;
        assert_eq!(decode_log(&last).unwrap(), (vec![e], one));
    }

    #[test]
    fn a_torn_log_tail_is_cut_and_compaction_keeps_everything() {
        let d = tempfile::tempdir().unwrap();
        let c = Catalog::open(d.path()).unwrap();
        for i in 0..(COMPACT_MIN + 10) {
            c.get_or_create(&format!("db{i}")).unwrap();
        }
        drop(c);
        let log = d.path().join(LOG);
        let len = fs::metadata(&log).unwrap().len();
        assert!(len > 0 && len < 10 * 200, "compacted: {len}");
        let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let c = Catalog::open(d.path()).unwrap();
        assert_eq!(c.list().len(), COMPACT_MIN + 10);
        assert_eq!(fs::metadata(&log).unwrap().len(), len);
        assert_eq!(
            c.get_or_create("new").unwrap().0.id,
            COMPACT_MIN as u64 + 11
        );
    }

    #[test]
    fn a_deleted_database_stays_deleted_and_its_name_gets_a_new_id() {
        let d = tempfile::tempdir().unwrap();
        let c = Catalog::open_with_limit(d.path(), 2).unwrap();
        let a = c.get_or_create("a").unwrap().0;
        c.get_or_create("ab").unwrap();
        assert_eq!(c.mark_deleted(a.id).unwrap(), Some(a.clone()));
        assert_eq!(c.mark_deleted(a.id).unwrap(), None);
        assert_eq!(c.mark_deleted(99).unwrap(), None);
        assert!(c.find("a").is_none() && c.get(a.id).is_none());
        // A deleted database does not count against the limit.
        let a2 = c.get_or_create("a").unwrap().0;
        assert_eq!(a2.id, 3);
        drop(c);
        let c = Catalog::open(d.path()).unwrap();
        assert_eq!(c.find("a").unwrap().id, 3);
        assert_eq!(c.list().len(), 2);
        let all = c.all();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].status, DbStatus::Deleted);
        // Many creates and deletes fold into a snapshot that keeps every status.
        for i in 0..COMPACT_MIN {
            let e = c.get_or_create(&format!("t{i}")).unwrap().0;
            c.mark_deleted(e.id).unwrap();
        }
        drop(c);
        let c = Catalog::open(d.path()).unwrap();
        assert_eq!(c.list().len(), 2);
        assert_eq!(c.all().len(), 3 + COMPACT_MIN);
        assert!(fs::metadata(d.path().join(LOG)).unwrap().len() < 200 * 1024);
    }

    #[test]
    fn the_limit_refuses_new_names_only() {
        let d = tempfile::tempdir().unwrap();
        let c = Catalog::open_with_limit(d.path(), 2).unwrap();
        c.get_or_create("a").unwrap();
        c.get_or_create("b").unwrap();
        assert!(matches!(c.get_or_create("c"), Err(CatalogError::Full)));
        assert!(!c.get_or_create("a").unwrap().1);
    }
}
