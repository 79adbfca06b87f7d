//! The index snapshot `INDEX`: the newest version of every document and collection
//! found in the first `data_len` bytes of data generation `data_generation`, so that
//! open reads this file and scans only the data file past `data_len` instead of all of
//! it (docs/FORMAT.md "Index snapshot").
//!
//! ```text
//! header  := magic "DOCDBIDX" (8)  version u32 = 1  data_generation u64  data_len u64
//!            seq u64  body_len u64  tail_crc u32  crc u32 (crc32c of the 48 bytes
//!            before it)
//!            tail_crc = crc32c of the data file's last 4 KiB before data_len (less
//!            in a shorter file): a snapshot of another file of the same generation
//!            (another database's, a rewritten one) does not match it
//! body    := collection*                       (sorted by name, names unique)
//! coll    := name_len u16  name[name_len]  state u8 (0: documents only, no create or
//!            delete record seen; 1: created; 2: deleted)  state_seq u64  doc_count u64
//!            doc*
//! doc     := id u64  seq u64  offset u64  len u32  tombstone u8   (29 bytes, sorted by
//!            id, ids unique)
//! trailer := crc u32 (crc32c of the body)
//! ```
//!
//! It is written after the CHECKPOINT it is checked against (temp file, fsync, rename,
//! fsync directory), from what the data file holds, never from the live index (whose
//! versions pruning removes). Open uses it only whole: every checksum holds, it names
//! the checkpoint's generation, it covers no more than the checkpoint's `data_len` and
//! `seq`, and every entry lies inside what it covers. Anything else is a full scan.
//!
//! INVARIANT: within one data generation the bytes below a checkpoint's `data_len`
//! never change, except when recovery cuts a damaged file, and recovery removes
//! `INDEX` before doing so. A snapshot of a prefix thus stays true for every later
//! checkpoint of the same generation.

use std::io;
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::data::file::{DataFile, HEADER_LEN as DATA_HEADER};
use crate::data::record::FIXED;
use crate::index::Version;
use crate::rebuild::{CollState, DocSet, Rebuild, RebuiltColl};
use crate::storage::{OpenMode, Storage};

const MAGIC: &[u8; 8] = b"DOCDBIDX";
const VERSION: u32 = 1;
const HEADER: usize = 52;
/// Bytes before `data_len` covered by `tail_crc`.
const TAIL: u64 = 4096;
const DOC: usize = 29;
/// Longest collection name a data record can carry.
const MAX_NAME: usize = 64;
pub(crate) const FILE_NAME: &str = "INDEX";

/// Which prefix of which data generation a snapshot describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotKey {
    pub generation: u64,
    /// The snapshot covers the records in `[HEADER_LEN, data_len)`.
    pub data_len: u64,
    /// The highest commit those records hold (the checkpoint's `seq`).
    pub seq: u64,
}

impl SnapshotKey {
    pub(crate) fn of(c: &Checkpoint) -> Self {
        SnapshotKey {
            generation: c.data_generation,
            data_len: c.data_len,
            seq: c.seq,
        }
    }

    /// Why a snapshot with this key cannot stand for checkpoint `c`, if it cannot.
    fn mismatch(&self, c: &Checkpoint) -> Option<String> {
        if self.generation != c.data_generation {
            return Some(format!(
                "it describes data generation {}, the checkpoint names {}",
                self.generation, c.data_generation
            ));
        }
        if self.data_len > c.data_len || self.seq > c.seq {
            return Some(format!(
                "it covers {} bytes up to commit {}, past the checkpoint's {} bytes and commit {}",
                self.data_len, self.seq, c.data_len, c.seq
            ));
        }
        if self.data_len < DATA_HEADER {
            return Some(format!("its data length {} is impossible", self.data_len));
        }
        None
    }
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Encodes a snapshot of `colls` (a finished [`Rebuild`] of the prefix `key` names).
/// The `tail_crc` of `data` for a snapshot covering `data_len` bytes.
pub(crate) fn tail_crc(data: &DataFile, data_len: u64) -> io::Result<u32> {
    let from = data_len.saturating_sub(TAIL);
    Ok(crc32c::crc32c(
        &data.read_raw(from, (data_len - from) as usize)?,
    ))
}

pub(crate) fn encode(key: SnapshotKey, tail: u32, colls: &[RebuiltColl]) -> Vec<u8> {
    let body_len: usize = colls
        .iter()
        .map(|c| 2 + c.name.len() + 1 + 8 + 8 + DOC * c.docs.len())
        .sum();
    let mut b = Vec::with_capacity(HEADER + body_len + 4);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&key.generation.to_le_bytes());
    b.extend_from_slice(&key.data_len.to_le_bytes());
    b.extend_from_slice(&key.seq.to_le_bytes());
    b.extend_from_slice(&(body_len as u64).to_le_bytes());
    b.extend_from_slice(&tail.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    for c in colls {
        b.extend_from_slice(&(c.name.len() as u16).to_le_bytes());
        b.extend_from_slice(c.name.as_bytes());
        let (state, seq) = match c.state {
            None => (0u8, 0u64),
            Some(CollState { seq, exists: true }) => (1, seq),
            Some(CollState { seq, exists: false }) => (2, seq),
        };
        b.push(state);
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&(c.docs.len() as u64).to_le_bytes());
        for (id, v) in &c.docs {
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&v.seq.to_le_bytes());
            b.extend_from_slice(&v.offset.to_le_bytes());
            b.extend_from_slice(&v.len.to_le_bytes());
            b.push(u8::from(v.tombstone));
        }
    }
    let crc = crc32c::crc32c(&b[HEADER..]);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode_header(b: &[u8]) -> Result<(SnapshotKey, u64, u32), String> {
    let h = b.get(..HEADER).ok_or("it is shorter than its header")?;
    if &h[0..8] != MAGIC {
        return Err("bad magic".into());
    }
    let crc = u32::from_le_bytes(arr(&h[48..52]));
    if crc32c::crc32c(&h[..48]) != crc {
        return Err("header checksum mismatch".into());
    }
    let version = u32::from_le_bytes(arr(&h[8..12]));
    if version != VERSION {
        return Err(format!("unknown version {version}"));
    }
    let key = SnapshotKey {
        generation: u64::from_le_bytes(arr(&h[12..20])),
        data_len: u64::from_le_bytes(arr(&h[20..28])),
        seq: u64::from_le_bytes(arr(&h[28..36])),
    };
    Ok((
        key,
        u64::from_le_bytes(arr(&h[36..44])),
        u32::from_le_bytes(arr(&h[44..48])),
    ))
}

fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&s[..N]);
    a
}

/// Reads a snapshot's bytes at an offset (exactly `buf.len()` of them).
type ReadAt<'a> = dyn FnMut(&mut [u8], u64) -> io::Result<()> + 'a;

/// Bytes read per refill: open decodes the body as it reads it, through one buffer of
/// this size, instead of reading the whole file into memory first (which cost a page
/// fault per 4 KiB of a fresh buffer, and its unmapping).
/// (Unit tests use a tiny odd size, so that fields and entries straddle refills.)
const CHUNK: usize = if cfg!(test) { 61 } else { 1 << 20 };

/// The body, read in chunks and checksummed as it is read.
struct Body<'r, 'a> {
    read: &'r mut ReadAt<'a>,
    buf: Vec<u8>,
    /// Next unread byte of `buf`.
    pos: usize,
    /// File offset of the byte after `buf`'s end.
    next: u64,
    /// File offset where the body ends.
    end: u64,
    /// crc32c of the body bytes read so far.
    crc: u32,
}

/// Why decoding stopped: the file could not be read, or a field is wrong.
enum Stop {
    Io(io::Error),
    Bad(String),
}

impl From<String> for Stop {
    fn from(s: String) -> Self {
        Stop::Bad(s)
    }
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Io(e)
    }
}

impl<'r, 'a> Body<'r, 'a> {
    fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Body bytes not consumed yet.
    fn remaining(&self) -> u64 {
        (self.end - self.next) + self.buffered() as u64
    }

    /// Makes `n` (at most [`CHUNK`]) bytes available at `pos`; false when the body
    /// has fewer left.
    fn want(&mut self, n: usize) -> io::Result<bool> {
        if self.buffered() >= n {
            return Ok(true);
        }
        if self.remaining() < n as u64 {
            return Ok(false);
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        let add = (CHUNK.max(n) as u64).min(self.end - self.next) as usize;
        let old = self.buf.len();
        self.buf.resize(old + add, 0);
        (self.read)(&mut self.buf[old..], self.next)?;
        self.crc = crc32c::crc32c_append(self.crc, &self.buf[old..]);
        self.next += add as u64;
        Ok(true)
    }

    fn take(&mut self, n: usize) -> Result<Option<&[u8]>, Stop> {
        if !self.want(n)? {
            return Ok(None);
        }
        self.pos += n;
        Ok(Some(&self.buf[self.pos - n..self.pos]))
    }
    fn u8(&mut self) -> Result<Option<u8>, Stop> {
        Ok(self.take(1)?.map(|s| s[0]))
    }
    fn u16(&mut self) -> Result<Option<u16>, Stop> {
        Ok(self.take(2)?.map(|s| u16::from_le_bytes(arr(s))))
    }
    fn u64(&mut self) -> Result<Option<u64>, Stop> {
        Ok(self.take(8)?.map(|s| u64::from_le_bytes(arr(s))))
    }

    /// Reads (and checksums) what is left of the body.
    fn drain(&mut self) -> io::Result<()> {
        while self.next < self.end {
            self.pos = self.buf.len();
            self.want(1)?;
        }
        Ok(())
    }
}

/// Decodes a whole snapshot file into the state it describes (documents in the
/// generation it names). Every field is checked; the first problem is the error.
#[cfg(test)]
pub(crate) fn decode(b: &[u8]) -> Result<(SnapshotKey, u32, Rebuild), String> {
    let mut read = |buf: &mut [u8], at: u64| -> io::Result<()> {
        let from = usize::try_from(at).map_err(io::Error::other)?;
        let src = b
            .get(from..from + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    };
    decode_from(b.len() as u64, &mut read)
}

/// [`decode`] of a file of `len` bytes that `read` reads.
fn decode_from(len: u64, read: &mut ReadAt<'_>) -> Result<(SnapshotKey, u32, Rebuild), String> {
    if len < HEADER as u64 {
        return Err("it is shorter than its header".into());
    }
    let mut head = [0u8; HEADER];
    read(&mut head, 0).map_err(|e| e.to_string())?;
    let (key, body_len, tail) = decode_header(&head)?;
    let want = (HEADER as u64)
        .checked_add(body_len)
        .and_then(|n| n.checked_add(4))
        .ok_or("impossible body length")?;
    if len != want {
        return Err(format!(
            "{len} bytes, its header says {want} (truncated or extended)"
        ));
    }
    let mut trailer = [0u8; 4];
    read(&mut trailer, len - 4).map_err(|e| e.to_string())?;
    let mut body = Body {
        read,
        buf: Vec::with_capacity(CHUNK.min(body_len as usize)),
        pos: 0,
        next: HEADER as u64,
        end: len - 4,
        crc: 0,
    };
    let parsed = decode_body(key, &mut body);
    // A checksum mismatch is the reason whenever there is one (a field is wrong
    // because a byte is): read the rest of the body to know.
    let parsed = match parsed {
        Err(Stop::Io(e)) => return Err(e.to_string()),
        Err(Stop::Bad(why)) => {
            body.drain().map_err(|e| e.to_string())?;
            Err(why)
        }
        Ok(rb) => Ok(rb),
    };
    if body.crc != u32::from_le_bytes(trailer) {
        return Err("body checksum mismatch".into());
    }
    Ok((key, tail, parsed?))
}

fn decode_body(key: SnapshotKey, r: &mut Body<'_, '_>) -> Result<Rebuild, Stop> {
    let mut rb = Rebuild {
        max_seq: key.seq,
        ..Rebuild::default()
    };
    let short = || Stop::Bad("body ends inside an entry".to_string());
    let mut last_name: Option<String> = None;
    while r.remaining() > 0 {
        let name_len = r.u16()?.ok_or_else(short)? as usize;
        if name_len == 0 || name_len > MAX_NAME {
            return Err(format!("collection name of {name_len} bytes").into());
        }
        let name = std::str::from_utf8(r.take(name_len)?.ok_or_else(short)?)
            .map_err(|_| "collection name is not UTF-8".to_string())?
            .to_owned();
        if last_name.as_ref().is_some_and(|l| *l >= name) {
            return Err(format!("collection {name} out of order or repeated").into());
        }
        let state = r.u8()?.ok_or_else(short)?;
        let state_seq = r.u64()?.ok_or_else(short)?;
        if state_seq > key.seq {
            return Err(
                format!("collection {name}: commit {state_seq} is past the snapshot").into(),
            );
        }
        match state {
            0 => {}
            1 | 2 => {
                rb.colls.insert(
                    name.clone(),
                    CollState {
                        seq: state_seq,
                        exists: state == 1,
                    },
                );
            }
            s => return Err(format!("collection {name}: unknown state {s}").into()),
        }
        let count = r.u64()?.ok_or_else(short)?;
        count
            .checked_mul(DOC as u64)
            .filter(|&n| n <= r.remaining())
            .ok_or_else(|| format!("collection {name}: {count} documents do not fit"))?;
        // Bounded by the file's length just above.
        let mut docs = Vec::with_capacity(count as usize);
        let mut last_id = None;
        let mut left = count as usize;
        while left > 0 {
            if !r.want(DOC)? {
                return Err(short());
            }
            let n = (r.buffered() / DOC).min(left);
            let run = &r.buf[r.pos..r.pos + n * DOC];
            for e in run.chunks_exact(DOC) {
                let id = u64::from_le_bytes(arr(&e[0..8]));
                let v = Version {
                    seq: u64::from_le_bytes(arr(&e[8..16])),
                    generation: key.generation,
                    offset: u64::from_le_bytes(arr(&e[16..24])),
                    len: u32::from_le_bytes(arr(&e[24..28])),
                    tombstone: match e[28] {
                        0 => false,
                        1 => true,
                        t => return Err(format!("{name}/{id}: tombstone flag {t}").into()),
                    },
                };
                if last_id.is_some_and(|l| l >= id) {
                    return Err(format!("{name}/{id}: ids out of order or repeated").into());
                }
                last_id = Some(id);
                let end = v
                    .offset
                    .saturating_add((FIXED + name_len) as u64 + u64::from(v.len));
                if v.offset < DATA_HEADER || end > key.data_len {
                    return Err(format!(
                        "{name}/{id}: record at {} is outside the {} bytes covered",
                        v.offset, key.data_len
                    )
                    .into());
                }
                if v.seq > key.seq || (v.tombstone && v.len != 0) {
                    return Err(format!("{name}/{id}: impossible version").into());
                }
                docs.push((id, v));
            }
            r.pos += n * DOC;
            left -= n;
        }
        if !docs.is_empty() || state == 0 {
            rb.docs.insert(name.clone(), DocSet::from_sorted(docs));
        }
        last_name = Some(name);
    }
    Ok(rb)
}

/// The `INDEX` file on disk, known whole and true for the current generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OnDisk {
    pub key: SnapshotKey,
    pub file_len: u64,
}

/// Below this much new data past the snapshot, a checkpoint does not rewrite it (open
/// scans that much instead); above it, once the new data exceeds the snapshot's own
/// size. So snapshot writes never add more bytes than the data file grows by, and open
/// scans at most about as much data as the snapshot it reads. Closing always rewrites.
const REWRITE_MIN: u64 = 4 << 20;

/// Whether a checkpoint covering `new` should write a fresh snapshot, given the one on
/// disk.
pub(crate) fn worth_rewriting(on_disk: Option<OnDisk>, new: SnapshotKey, closing: bool) -> bool {
    match on_disk {
        Some(d) if d.key == new => false,
        Some(d) if d.key.generation == new.generation && !closing => {
            new.data_len.saturating_sub(d.key.data_len) >= d.file_len.max(REWRITE_MIN)
        }
        _ => new.data_len > DATA_HEADER || closing,
    }
}

/// A snapshot usable for a checkpoint.
pub(crate) struct Loaded {
    pub on_disk: OnDisk,
    pub rebuild: Rebuild,
    /// Documents it held (tombstones included).
    pub entries: u64,
}

/// Loads `<dir>/INDEX` if it can stand for checkpoint `c`: `Ok(None)` when there is
/// none, `Err(why)` when there is one that must not be used.
pub(crate) fn load(
    storage: &dyn Storage,
    dir: &Path,
    c: &Checkpoint,
    data: &DataFile,
) -> Result<Option<Loaded>, String> {
    let p = path(dir);
    let f = match storage.open(&p, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    let fail = |why: String| format!("{}: {why}", p.display());
    let len = f.len().map_err(|e| fail(e.to_string()))?;
    // The header alone tells a stale snapshot: do not read the rest for nothing.
    let mut head = [0u8; HEADER];
    let mut checked = None;
    if len >= HEADER as u64 {
        f.read_exact_at(&mut head, 0)
            .map_err(|e| fail(e.to_string()))?;
        let (key, _, tail) = decode_header(&head).map_err(fail)?;
        if let Some(why) = key.mismatch(c) {
            return Err(fail(why));
        }
        if tail_crc(data, key.data_len).map_err(|e| fail(e.to_string()))? != tail {
            return Err(fail(
                "it describes other bytes than the data file holds (another database's?)".into(),
            ));
        }
        checked = Some((key, tail));
    }
    let mut read = |buf: &mut [u8], at: u64| f.read_exact_at(buf, at);
    let (key, tail, rebuild) = decode_from(len, &mut read).map_err(fail)?;
    // A whole file has a header, so it was checked above (the same bytes: `LOCK` keeps
    // other writers out; a difference is reported rather than trusted).
    if checked != Some((key, tail)) {
        return Err(fail("its header changed while it was read".into()));
    }
    let entries = rebuild.docs.values().map(DocSet::len).sum::<usize>() as u64;
    Ok(Some(Loaded {
        on_disk: OnDisk { key, file_len: len },
        rebuild,
        entries,
    }))
}

/// Replaces `<dir>/INDEX` with `bytes`: temp file, fsync, rename, fsync directory.
pub(crate) fn store(storage: &dyn Storage, dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let target = path(dir);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let f = storage.open(&tmp, OpenMode::CreateTruncate)?;
    f.write_all_at(bytes, 0)?;
    f.sync_data()?;
    drop(f);
    storage.rename(&tmp, &target)?;
    storage.sync_dir(dir)
}

/// Removes `<dir>/INDEX` (and a leftover temp file), durably.
pub(crate) fn remove(storage: &dyn Storage, dir: &Path) -> io::Result<()> {
    let mut removed = false;
    for name in [FILE_NAME.to_string(), format!("{FILE_NAME}.tmp")] {
        match storage.remove_file(&dir.join(name)) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if removed {
        storage.sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::WalPos;

    fn sample() -> (SnapshotKey, Vec<u8>) {
        let mut rb = Rebuild::default();
        rb.coll("users", 2, true);
        rb.coll("gone", 3, false);
        let mut off = DATA_HEADER;
        for (coll, id, seq, tomb) in [
            ("users", 7, 4, false),
            ("users", 1, 5, false),
            ("_default", 9, 6, true),
            ("users", 7, 8, true),
        ] {
            let len = if tomb { 0 } else { 10 };
            let v = Version {
                seq,
                generation: 4,
                offset: off,
                len,
                tombstone: tomb,
            };
            rb.apply_if_newer(coll, id, seq, || v);
            off += (FIXED + coll.len()) as u64 + u64::from(len);
        }
        let key = SnapshotKey {
            generation: 4,
            data_len: off,
            seq: 8,
        };
        let (colls, _) = rb.finish();
        (key, encode(key, 77, &colls))
    }

    type Summary = Vec<(String, Option<CollState>, Vec<(u64, Version)>)>;

    fn summary(rb: Rebuild) -> Summary {
        rb.finish()
            .0
            .into_iter()
            .map(|c| (c.name, c.state, c.docs))
            .collect()
    }

    #[test]
    fn round_trip() {
        let (key, b) = sample();
        let (k, tail, rb) = decode(&b).unwrap();
        assert_eq!((k, tail), (key, 77));
        let got = summary(rb);
        let names: Vec<&str> = got.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(names, ["_default", "gone", "users"]);
        assert_eq!(got[0].1, None);
        assert_eq!(
            got[1].1,
            Some(CollState {
                seq: 3,
                exists: false
            })
        );
        let users: Vec<(u64, u64, bool)> = got[2]
            .2
            .iter()
            .map(|(id, v)| (*id, v.seq, v.tombstone))
            .collect();
        assert_eq!(users, [(1, 5, false), (7, 8, true)]);
        // Encoding what was decoded gives the same bytes.
        let (k, tail, rb) = decode(&b).unwrap();
        assert_eq!(encode(k, tail, &rb.finish().0), b);
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_detected() {
        let (_, b) = sample();
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x10;
            assert!(decode(&x).is_err(), "byte {i}");
        }
        for n in 0..b.len() {
            assert!(decode(&b[..n]).is_err(), "cut at {n}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn a_snapshot_stands_only_for_a_checkpoint_of_its_generation_that_covers_it() {
        let (key, _) = sample();
        let ckpt = |generation, data_len, seq| Checkpoint {
            seq,
            wal: WalPos {
                segment: 1,
                offset: 20,
            },
            data_generation: generation,
            data_len,
        };
        assert_eq!(key.mismatch(&ckpt(4, key.data_len, 8)), None);
        assert_eq!(key.mismatch(&ckpt(4, key.data_len + 100, 12)), None);
        assert!(key.mismatch(&ckpt(5, key.data_len, 8)).is_some());
        assert!(key.mismatch(&ckpt(4, key.data_len - 1, 8)).is_some());
        assert!(key.mismatch(&ckpt(4, key.data_len, 7)).is_some());
    }
}
