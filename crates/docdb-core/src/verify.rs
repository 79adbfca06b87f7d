//! `verify`: read every byte of the WAL and the data file and check every checksum.

use std::fs;

use serde::Serialize;

use crate::data::record::Kind;
use crate::db::Inner;
use crate::error::Result;
use crate::wal::record::{decode, DecodeError};
use crate::wal::segment::{decode_header, list_segments, segment_path, HEADER_LEN};

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
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(crate) fn verify(db: &Inner) -> Result<VerifyReport> {
    let mut r = VerifyReport::default();
    // Hold the I/O lock only to learn how much is written.
    let (data, data_len, wal_pos) = {
        let io = db.io.lock();
        (io.data.clone(), io.data_len, io.wal.position())
    };
    for seg in list_segments(&db.wal_dir)? {
        let path = segment_path(&db.wal_dir, seg);
        let buf = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // trimmed meanwhile
            Err(e) => return Err(e.into()),
        };
        r.wal_segments += 1;
        if decode_header(&buf) != Some(seg) {
            r.problems
                .push(format!("{}: invalid segment header", path.display()));
            continue;
        }
        // The active segment may be growing: stop at the length known to be written.
        let end = if seg == wal_pos.segment {
            (wal_pos.offset as usize).min(buf.len())
        } else {
            buf.len()
        };
        let mut pos = HEADER_LEN as usize;
        while pos < end {
            match decode(&buf[pos..end]) {
                Ok((_, n)) => {
                    r.wal_records += 1;
                    pos += n;
                }
                Err(e) => {
                    let why = match e {
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
    let mut gaps = Vec::new();
    data.scan(
        data_len,
        true,
        |offset, h, payload| {
            r.data_records += 1;
            if let Some((_, false)) = payload {
                r.problems.push(format!(
                    "{}: payload checksum mismatch in record of {}/{} at offset {offset}",
                    data.path.display(),
                    h.collection,
                    h.doc_id
                ));
                if h.kind == Kind::Put {
                    r.corrupt_documents
                        .push((h.collection.to_owned(), h.doc_id));
                }
            }
            Ok(())
        },
        |from, to| gaps.push((from, to)),
    )?;
    for (from, to) in gaps {
        r.problems.push(format!(
            "{}: damaged record header(s), bytes {from}..{to} unreadable",
            data.path.display()
        ));
    }
    Ok(r)
}
