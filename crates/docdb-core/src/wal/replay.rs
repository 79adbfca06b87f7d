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
        let want_from = if seg == from.segment { from.offset } else { 0 };
        let (header, buf) = read_segment(storage, &path, want_from)?;
        if header != Some(seg) {
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
            // (`read_segment` read the whole segment: the position is past its end.)
            // Bytes the checkpoint counted on are gone: the commits after it in this
            // segment are lost. Keep the intact prefix, so new records never land
            // behind torn bytes, and replay nothing after the hole.
            let mut valid = HEADER_LEN as usize;
            while let Ok((_, n)) = decode(buf.at(valid)) {
                valid += n;
            }
            out.dropped.push(format!(
                "{}: shorter ({} bytes) than the checkpoint position {pos}; commits after it are lost",
                path.display(),
                buf.len()
            ));
            cut(storage, dir, &segments, i, buf.at(valid), valid, &mut out)?;
            return Ok(out);
        }
        loop {
            match decode(buf.at(pos)) {
                Ok((rec, n)) => {
                    if let Some(e) = expect.filter(|&e| e != rec.seq) {
                        out.dropped.push(format!(
                            "{}: commit {} at offset {pos} where {e} was expected: commits are missing before it",
                            path.display(),
                            rec.seq
                        ));
                        cut(storage, dir, &segments, i, buf.at(pos), pos, &mut out)?;
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
                    cut(storage, dir, &segments, i, buf.at(pos), pos, &mut out)?;
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

/// The bytes of a segment from `start` on (all of them when `start` is 0).
struct SegBytes {
    start: usize,
    bytes: Vec<u8>,
}

impl SegBytes {
    /// The segment's length.
    fn len(&self) -> usize {
        self.start + self.bytes.len()
    }

    /// The bytes from `pos` (`start <= pos <= len`) to the end.
    fn at(&self, pos: usize) -> &[u8] {
        &self.bytes[pos - self.start..]
    }
}

/// Reads segment `path`'s header (the segment number it names, `None` if invalid) and
/// its bytes from `from` on when `from` lies inside it past the header, else all of
/// them: replay from a checkpoint near the end of a big segment reads only what
/// follows the checkpoint (docs/PERFORMANCE.md "Open after a clean stop").
fn read_segment(
    storage: &dyn Storage,
    path: &Path,
    from: u64,
) -> std::io::Result<(Option<u64>, SegBytes)> {
    let f = storage.open(path, OpenMode::Read)?;
    let len = f.len()?;
    let size = |n: u64| usize::try_from(n).map_err(std::io::Error::other);
    if from <= HEADER_LEN || from > len {
        let mut bytes = vec![0u8; size(len)?];
        f.read_exact_at(&mut bytes, 0)?;
        return Ok((decode_header(&bytes), SegBytes { start: 0, bytes }));
    }
    let mut head = [0u8; HEADER_LEN as usize];
    f.read_exact_at(&mut head, 0)?;
    let mut bytes = vec![0u8; size(len - from)?];
    f.read_exact_at(&mut bytes, from)?;
    Ok((
        decode_header(&head),
        SegBytes {
            start: size(from)?,
            bytes,
        },
    ))
}

/// Ends the log at `pos` of `segments[i]`: the bytes after it (`tail`) are saved to
/// `<segment>.wal.tail-<pos>.dropped` (for an operator; never replayed), the segment is
/// truncated there, and later segments are renamed `*.dropped`.
fn cut(
    storage: &dyn Storage,
    dir: &Path,
    segments: &[u64],
    i: usize,
    tail: &[u8],
    pos: usize,
    out: &mut ReplayOutcome,
) -> Result<()> {
    let seg = segments[i];
    let path = segment_path(dir, seg);
    if !tail.is_empty() {
        let mut keep = path.clone().into_os_string();
        keep.push(format!(".tail-{pos}.dropped"));
        storage::write_new(storage, Path::new(&keep), tail)?;
        out.dropped.push(format!(
            "{}: {} bytes after offset {pos} cut; saved to {}",
            path.display(),
            tail.len(),
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
