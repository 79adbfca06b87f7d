//! Single-pass WAL replay: reads every segment from a position on, hands each intact
//! commit record to the caller, and cuts the log at the first torn or corrupt record.
//!
//! The cut is safe because a record is a whole transaction and batches are appended in
//! commit order: everything before the first bad byte committed, nothing after it can
//! be trusted to be a complete, ordered history. Segments after the cut are renamed to
//! `*.wal.dropped` (kept for an operator, never replayed) and reported.

use std::fs::{self, OpenOptions};
use std::path::Path;

use super::record::{decode, CommitRef, DecodeError};
use super::segment::{decode_header, list_segments, segment_path, HEADER_LEN};
use super::writer::WalPos;
use crate::error::Result;
use crate::fsutil::sync_dir;

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct ReplayOutcome {
    /// Where appending continues; `None` when no usable segment remains.
    pub end: Option<WalPos>,
    pub last_segment_seen: u64,
    pub records: u64,
    pub bytes: u64,
    /// Human-readable notes on what was dropped.
    pub dropped: Vec<String>,
}

pub(crate) fn replay(
    dir: &Path,
    from: WalPos,
    mut apply: impl FnMut(CommitRef<'_>) -> Result<()>,
) -> Result<ReplayOutcome> {
    let mut out = ReplayOutcome::default();
    let segments: Vec<u64> = list_segments(dir)?
        .into_iter()
        .filter(|&s| s >= from.segment)
        .collect();
    out.last_segment_seen = segments.last().copied().unwrap_or(0);
    for (i, &seg) in segments.iter().enumerate() {
        let path = segment_path(dir, seg);
        let buf = fs::read(&path)?;
        if decode_header(&buf) != Some(seg) {
            out.dropped.push(format!(
                "{}: invalid segment header, segment dropped",
                path.display()
            ));
            drop_segments(dir, &segments[i..], &mut out)?;
            return Ok(out);
        }
        let mut pos = if seg == from.segment {
            from.offset
        } else {
            HEADER_LEN
        } as usize;
        if pos > buf.len() {
            out.dropped.push(format!(
                "{}: shorter ({} bytes) than the checkpoint position {pos}; records after it are lost",
                path.display(),
                buf.len()
            ));
            pos = buf.len();
        }
        loop {
            match decode(&buf[pos..]) {
                Ok((rec, n)) => {
                    apply(rec)?;
                    pos += n;
                    out.records += 1;
                    out.bytes += n as u64;
                }
                Err(DecodeError::Truncated) if pos == buf.len() => break,
                Err(e) => {
                    let why = match e {
                        DecodeError::Truncated => "torn record",
                        DecodeError::Corrupt(why) => why,
                    };
                    out.dropped.push(format!(
                        "{}: {why} at offset {pos}; dropped {} bytes",
                        path.display(),
                        buf.len() - pos
                    ));
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(pos as u64)?;
                    f.sync_all()?;
                    out.end = Some(WalPos {
                        segment: seg,
                        offset: pos as u64,
                    });
                    drop_segments(dir, &segments[i + 1..], &mut out)?;
                    return Ok(out);
                }
            }
        }
        out.end = Some(WalPos {
            segment: seg,
            offset: pos as u64,
        });
    }
    Ok(out)
}

fn drop_segments(dir: &Path, segs: &[u64], out: &mut ReplayOutcome) -> Result<()> {
    for &s in segs {
        let p = segment_path(dir, s);
        let mut to = p.clone().into_os_string();
        to.push(".dropped");
        fs::rename(&p, &to)?;
        out.dropped.push(format!(
            "{}: after the cut, renamed to {}",
            p.display(),
            Path::new(&to).display()
        ));
    }
    if !segs.is_empty() {
        sync_dir(dir)?;
    }
    Ok(())
}
