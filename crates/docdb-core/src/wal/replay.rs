//! Single-pass WAL replay: reads every segment from a position on, hands each intact
//! commit record to the caller, and cuts the log at the first torn or corrupt record.
//!
//! The cut is safe because a record is a whole transaction and batches are appended in
//! commit order: everything before the first bad byte committed, nothing after it can
//! be trusted to be a complete, ordered history. Segments after the cut are renamed to
//! `*.wal.dropped` (kept for an operator, never replayed) and reported.

use std::path::Path;

use super::record::{decode, CommitRef, DecodeError};
use super::segment::{decode_header, list_segments, segment_path, HEADER_LEN};
use super::writer::WalPos;
use crate::error::Result;
use crate::storage::{self, OpenMode, Storage};

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
    storage: &dyn Storage,
    dir: &Path,
    from: WalPos,
    first_seq: Option<u64>,
    mut apply: impl FnMut(CommitRef<'_>) -> Result<()>,
) -> Result<ReplayOutcome> {
    let mut out = ReplayOutcome::default();
    let segments: Vec<u64> = list_segments(storage, dir)?
        .into_iter()
        .filter(|&s| s >= from.segment)
        .collect();
    out.last_segment_seen = segments.last().copied().unwrap_or(0);
    // INVARIANT: commits are numbered consecutively in log order, so the next record
    // must carry `expect`; anything else means the log lost bytes in between.
    let mut expect = first_seq;
    for (i, &seg) in segments.iter().enumerate() {
        let path = segment_path(dir, seg);
        let buf = storage.read(&path)?;
        if decode_header(&buf) != Some(seg) {
            out.dropped.push(format!(
                "{}: invalid segment header, segment dropped",
                path.display()
            ));
            drop_segments(storage, dir, &segments[i..], &mut out)?;
            return Ok(out);
        }
        let mut pos = if seg == from.segment {
            from.offset
        } else {
            HEADER_LEN
        } as usize;
        if pos > buf.len() {
            // Bytes the checkpoint counted on are gone: the commits after it in this
            // segment are lost. Keep the intact prefix, so new records never land
            // behind torn bytes, and replay nothing after the hole.
            let mut valid = HEADER_LEN as usize;
            while let Ok((_, n)) = decode(&buf[valid..]) {
                valid += n;
            }
            out.dropped.push(format!(
                "{}: shorter ({} bytes) than the checkpoint position {pos}; commits after it are lost",
                path.display(),
                buf.len()
            ));
            cut(storage, dir, &segments, i, &buf, valid, &mut out)?;
            return Ok(out);
        }
        loop {
            match decode(&buf[pos..]) {
                Ok((rec, n)) => {
                    if let Some(e) = expect.filter(|&e| e != rec.seq) {
                        out.dropped.push(format!(
                            "{}: commit {} at offset {pos} where {e} was expected: commits are missing before it",
                            path.display(),
                            rec.seq
                        ));
                        cut(storage, dir, &segments, i, &buf, pos, &mut out)?;
                        return Ok(out);
                    }
                    expect = Some(rec.seq + 1);
                    apply(rec)?;
                    pos += n;
                    out.records += 1;
                    out.bytes += n as u64;
                }
                Err(DecodeError::Truncated) if pos == buf.len() => break,
                Err(e) => {
                    let why = match e {
                        // Zeroed space the writer wrote ahead: the log ends here.
                        DecodeError::Preallocated => break,
                        DecodeError::Truncated => "torn record",
                        DecodeError::Corrupt(why) => why,
                    };
                    out.dropped
                        .push(format!("{}: {why} at offset {pos}", path.display()));
                    cut(storage, dir, &segments, i, &buf, pos, &mut out)?;
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

/// Ends the log at `pos` of `segments[i]`: the bytes after it are saved to
/// `<segment>.wal.tail-<pos>.dropped` (for an operator; never replayed), the segment is
/// truncated there, and later segments are renamed `*.dropped`.
fn cut(
    storage: &dyn Storage,
    dir: &Path,
    segments: &[u64],
    i: usize,
    buf: &[u8],
    pos: usize,
    out: &mut ReplayOutcome,
) -> Result<()> {
    let seg = segments[i];
    let path = segment_path(dir, seg);
    if pos < buf.len() {
        let mut keep = path.clone().into_os_string();
        keep.push(format!(".tail-{pos}.dropped"));
        storage::write_new(storage, Path::new(&keep), &buf[pos..])?;
        out.dropped.push(format!(
            "{}: {} bytes after offset {pos} cut; saved to {}",
            path.display(),
            buf.len() - pos,
            Path::new(&keep).display()
        ));
    }
    let f = storage.open(&path, OpenMode::ReadWrite)?;
    f.set_len(pos as u64)?;
    f.sync_all()?;
    out.end = Some(WalPos {
        segment: seg,
        offset: pos as u64,
    });
    drop_segments(storage, dir, &segments[i + 1..], out)
}

fn drop_segments(
    storage: &dyn Storage,
    dir: &Path,
    segs: &[u64],
    out: &mut ReplayOutcome,
) -> Result<()> {
    for &s in segs {
        let p = segment_path(dir, s);
        let mut to = p.clone().into_os_string();
        to.push(".dropped");
        storage.rename(&p, Path::new(&to))?;
        out.dropped.push(format!(
            "{}: after the cut, renamed to {}",
            p.display(),
            Path::new(&to).display()
        ));
    }
    if !segs.is_empty() {
        storage.sync_dir(dir)?;
    }
    Ok(())
}
