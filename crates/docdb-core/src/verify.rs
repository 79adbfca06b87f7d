//! `verify`: read every byte of the WAL and the data file and check every checksum.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::data::file::{list_generations, DataFile};
use crate::data::record::Kind;
use crate::db::Inner;
use crate::error::{Error, Result};
use crate::storage::{self, Storage};
use crate::wal::record::{decode, DecodeError};
use crate::wal::segment::{decode_header, list_segments, segment_path, HEADER_LEN};
use crate::wal::WalPos;

/// What verification read and what it found wrong.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub wal_segments: u64,
    pub wal_records: u64,
    pub data_records: u64,
    /// Documents whose record failed a checksum: (collection, id).
    pub corrupt_documents: Vec<(String, u64)>,
    /// One line per problem found.
    pub problems: Vec<String>,
    /// Things worth knowing that are not damage (a torn WAL tail after a crash).
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(crate) fn verify(db: &Inner) -> Result<VerifyReport> {
    // Hold the I/O lock only to learn how much is written.
    let (data, data_len, wal_pos) = {
        let io = db.files.io();
        (io.data.clone(), io.data_len, io.wal.position())
    };
    let mut r = VerifyReport::default();
    verify_wal(&*db.storage, &db.wal_dir, Some(wal_pos), &mut r)?;
    verify_data(&data, data_len, &mut r)?;
    // Secondary indexes: every entry against the documents at one snapshot.
    r.problems.extend(crate::secondary::build::verify(db)?);
    Ok(r)
}

/// Verifies a database that is not open, without changing a byte: the checkpoint,
/// every WAL segment, the current data file. Fails if a process has it open.
pub fn verify_offline(dir: &Path, wal_dir: Option<&Path>) -> Result<VerifyReport> {
    verify_offline_with(&*storage::default_storage(), dir, wal_dir)
}

/// [`verify_offline`] through `s` instead of the real file system. Holds the
/// database's `LOCK` (when it has one) while it reads, so no process opens it
/// meanwhile.
pub fn verify_offline_with(
    s: &dyn Storage,
    dir: &Path,
    wal_dir: Option<&Path>,
) -> Result<VerifyReport> {
    let lock_path = dir.join("LOCK");
    // Only an existing LOCK is taken: verifying must not create files.
    let _lock = match s.exists(&lock_path).then(|| s.lock(&lock_path)) {
        Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
            return Err(Error::Format(format!(
                "{} is open in a running server; stop it first (or run the shell's .heal-all online)",
                dir.display()
            )));
        }
        Some(r) => r.ok(),
        None => None,
    };
    let mut r = VerifyReport::default();
    let wal_dir = wal_dir.map_or_else(|| dir.join("wal"), Path::to_path_buf);
    let ckpt = match Checkpoint::load(s, dir) {
        Ok(c) => c,
        Err(e) => {
            r.problems.push(e.to_string());
            None
        }
    };
    verify_wal(s, &wal_dir, None, &mut r)?;
    let data_dir = dir.join("data");
    let generation = match ckpt {
        Some(c) => Some(c.data_generation),
        None => list_generations(s, &data_dir)
            .ok()
            .and_then(|g| g.last().copied()),
    };
    if let Some(g) = generation {
        match DataFile::open(s, &data_dir, g) {
            Ok(f) => {
                let len = f.len()?;
                verify_data(&f, len, &mut r)?;
            }
            Err(e) => r.problems.push(format!("data generation {g}: {e}")),
        }
    }
    // Index entries are not stored (they are rebuilt from the documents at open, so
    // they cannot disagree with them on disk); their definitions are.
    match crate::secondary::defs::load(s, dir) {
        Ok(defs) if !defs.is_empty() => r.notes.push(format!(
            "{} secondary index definition(s), rebuilt from the documents at open",
            defs.len()
        )),
        Ok(_) => {}
        Err(e) => r.problems.push(e.to_string()),
    }
    Ok(r)
}

/// Checks every WAL record. `active`: the open database's write position (the active
/// segment is read up to it); offline, a torn tail of the last segment is a note (it is
/// what a crash leaves, and the next open cuts it), any other damage a problem.
fn verify_wal(
    s: &dyn Storage,
    wal_dir: &Path,
    active: Option<WalPos>,
    r: &mut VerifyReport,
) -> Result<()> {
    let segments = list_segments(s, wal_dir)?;
    let last = segments.last().copied();
    for seg in segments {
        let path = segment_path(wal_dir, seg);
        let buf = match s.read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // trimmed meanwhile
            Err(e) => return Err(e.into()),
        };
        r.wal_segments += 1;
        if decode_header(&buf) != Some(seg) {
            // A roll creates the segment, then writes and syncs its header: a crash in
            // between leaves the newest segment shorter than a header, or zeros. No
            // record was ever written to it; the next open drops it.
            let interrupted_roll = active.is_none()
                && Some(seg) == last
                && (buf.len() < HEADER_LEN as usize || buf.iter().all(|&b| b == 0));
            if interrupted_roll {
                r.notes.push(format!(
                    "{}: a new segment without its header (an interrupted WAL roll; dropped at the next open)",
                    path.display()
                ));
            } else {
                r.problems
                    .push(format!("{}: invalid segment header", path.display()));
            }
            continue;
        }
        // The active segment may be growing: stop at the length known to be written.
        let end = match active {
            Some(pos) if seg == pos.segment => (pos.offset as usize).min(buf.len()),
            _ => buf.len(),
        };
        let mut pos = HEADER_LEN as usize;
        while pos < end {
            match decode(&buf[pos..end]) {
                Ok((_, n)) => {
                    r.wal_records += 1;
                    pos += n;
                }
                Err(DecodeError::Truncated) if active.is_none() && Some(seg) == last => {
                    r.notes.push(format!(
                        "{}: torn record at offset {pos} (an interrupted write; cut at the next open)",
                        path.display()
                    ));
                    break;
                }
                Err(e) => {
                    let why = match e {
                        // Zeroed space the writer wrote ahead: the log ends here.
                        DecodeError::Preallocated => break,
                        DecodeError::Truncated => "truncated record",
                        DecodeError::Corrupt(w) => w,
                    };
                    r.problems
                        .push(format!("{}: {why} at offset {pos}", path.display()));
                    break;
                }
            }
        }
    }
    Ok(())
}

fn verify_data(data: &DataFile, data_len: u64, r: &mut VerifyReport) -> Result<()> {
    let mut gaps = Vec::new();
    // Newest seq per document, to tell a damaged record that still matters from one
    // that a newer version (a repair, an update, a delete) already superseded.
    let mut newest: HashMap<(String, u64), u64> = HashMap::new();
    let mut damaged: Vec<(u64, String, u64, u64)> = Vec::new();
    data.scan(
        data_len,
        true,
        |offset, h, payload| {
            r.data_records += 1;
            if matches!(h.kind, Kind::Put | Kind::Tombstone) {
                let e = newest
                    .entry((h.collection.to_owned(), h.doc_id))
                    .or_insert(h.seq);
                *e = (*e).max(h.seq);
            }
            if let Some((_, false)) = payload {
                damaged.push((offset, h.collection.to_owned(), h.doc_id, h.seq));
            }
            Ok(())
        },
        |from, to| gaps.push((from, to)),
    )?;
    for (offset, coll, id, seq) in damaged {
        let superseded = newest.get(&(coll.clone(), id)).is_some_and(|&n| n > seq);
        if superseded {
            r.notes.push(format!(
                "{}: damaged payload of an old version of {coll}/{id} at offset {offset}; a newer version supersedes it (dropped at the next compaction)",
                data.path.display()
            ));
        } else {
            r.problems.push(format!(
                "{}: payload checksum mismatch in record of {coll}/{id} at offset {offset}",
                data.path.display()
            ));
            r.corrupt_documents.push((coll, id));
        }
    }
    for (from, to) in gaps {
        r.problems.push(format!(
            "{}: damaged record header(s), bytes {from}..{to} unreadable",
            data.path.display()
        ));
    }
    Ok(())
}
