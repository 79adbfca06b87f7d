//! WAL records: one record is one committed transaction, so a record that is complete
//! and passes its CRC is a transaction that committed, and anything else at the tail
//! is a torn write to drop.
//!
//! ```text
//! record := len:u32  crc:u32  body[len]
//!     crc = crc32c(len bytes ++ body)       (a flipped length is caught too)
//! body   := kind:u8(=1 commit)  seq:u64  op_count:u32  op*
//! op     := op:u8  coll_len:u16  coll[coll_len]  doc_id:u64  payload_len:u32  payload
//!     op: 1 create, 3 update, 4 delete, 8 create collection, 9 delete collection
//!     (the wire protocol's op codes; a patch is logged as the update it produced)
//! ```

use crate::codec::{u32_at, Reader};

/// Bytes before the body: length and CRC.
pub(crate) const RECORD_HEADER: usize = 8;
/// A record body may not exceed this (a transaction of many large documents).
pub(crate) const MAX_BODY: usize = 256 * 1024 * 1024;

const KIND_COMMIT: u8 = 1;

/// What one logged operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WalOp {
    Create = 1,
    Update = 3,
    Delete = 4,
    CreateCollection = 8,
    DeleteCollection = 9,
}

impl WalOp {
    fn from_u8(b: u8) -> Option<WalOp> {
        Some(match b {
            1 => WalOp::Create,
            3 => WalOp::Update,
            4 => WalOp::Delete,
            8 => WalOp::CreateCollection,
            9 => WalOp::DeleteCollection,
            _ => return None,
        })
    }
}

/// One operation of a decoded commit record, borrowing from the record's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRef<'a> {
    pub op: WalOp,
    pub collection: &'a str,
    pub doc_id: u64,
    pub payload: &'a [u8],
}

/// A decoded commit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRef<'a> {
    pub seq: u64,
    pub ops: Vec<OpRef<'a>>,
}

/// Builds one commit record in place at the end of `out`.
pub(crate) struct CommitEncoder<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    count: u32,
}

impl<'a> CommitEncoder<'a> {
    pub(crate) fn begin(out: &'a mut Vec<u8>, seq: u64) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0u8; RECORD_HEADER]);
        out.push(KIND_COMMIT);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        CommitEncoder {
            out,
            start,
            count: 0,
        }
    }

    pub(crate) fn op(&mut self, op: WalOp, collection: &str, doc_id: u64, payload: &[u8]) {
        // INVARIANT: collection names are validated (≤ 64 bytes) and payloads are
        // ≤ 16 MiB before they reach the encoder, so these casts cannot truncate.
        self.out.push(op as u8);
        self.out
            .extend_from_slice(&(collection.len() as u16).to_le_bytes());
        self.out.extend_from_slice(collection.as_bytes());
        self.out.extend_from_slice(&doc_id.to_le_bytes());
        self.out
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.out.extend_from_slice(payload);
        self.count += 1;
    }

    /// Fills in count, length and CRC. Returns the record's encoded size.
    pub(crate) fn finish(self) -> usize {
        let s = self.start;
        let body_len = (self.out.len() - s - RECORD_HEADER) as u32;
        let count_at = s + RECORD_HEADER + 1 + 8;
        self.out[count_at..count_at + 4].copy_from_slice(&self.count.to_le_bytes());
        self.out[s..s + 4].copy_from_slice(&body_len.to_le_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&self.out[s..s + 4]),
            &self.out[s + RECORD_HEADER..],
        );
        self.out[s + 4..s + 8].copy_from_slice(&crc.to_le_bytes());
        self.out.len() - s
    }
}

/// Why decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not enough bytes for the record: a torn tail (or the clean end when 0 remain).
    Truncated,
    /// The bytes are all there but the CRC or the structure is wrong.
    Corrupt(&'static str),
    /// Only zero bytes remain: space the writer zeroed ahead of the log (see
    /// `writer.rs`). The log ends here, cleanly.
    Preallocated,
}

/// Decodes the record at the start of `buf`; returns it and its encoded size.
pub fn decode(buf: &[u8]) -> Result<(CommitRef<'_>, usize), DecodeError> {
    let head = &buf[..buf.len().min(RECORD_HEADER)];
    if !head.is_empty() && head.iter().all(|&b| b == 0) {
        // No record has length 0 (a body holds at least kind, seq and count), so
        // zeros here are space written ahead, unless data follows them.
        return Err(if buf.iter().all(|&b| b == 0) {
            DecodeError::Preallocated
        } else {
            DecodeError::Corrupt("zeroed record header")
        });
    }
    let len = u32_at(buf, 0).ok_or(DecodeError::Truncated)? as usize;
    let crc = u32_at(buf, 4).ok_or(DecodeError::Truncated)?;
    if len > MAX_BODY {
        return Err(DecodeError::Corrupt("record length out of range"));
    }
    let total = RECORD_HEADER + len;
    let body = buf
        .get(RECORD_HEADER..total)
        .ok_or(DecodeError::Truncated)?;
    if crc32c::crc32c_append(crc32c::crc32c(&buf[0..4]), body) != crc {
        return Err(DecodeError::Corrupt("checksum mismatch"));
    }
    let bad = DecodeError::Corrupt("malformed record body");
    let mut r = Reader::new(body);
    if r.u8() != Some(KIND_COMMIT) {
        return Err(DecodeError::Corrupt("unknown record kind"));
    }
    let seq = r.u64().ok_or(bad.clone())?;
    let count = r.u32().ok_or(bad.clone())? as usize;
    // Each op takes at least 15 bytes: never trust the count for an allocation.
    let mut ops = Vec::with_capacity(count.min(r.remaining() / 15));
    for _ in 0..count {
        let op = r.u8().and_then(WalOp::from_u8).ok_or(bad.clone())?;
        let clen = r.u16().ok_or(bad.clone())? as usize;
        let collection = r
            .bytes(clen)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or(bad.clone())?;
        let doc_id = r.u64().ok_or(bad.clone())?;
        let plen = r.u32().ok_or(bad.clone())? as usize;
        let payload = r.bytes(plen).ok_or(bad.clone())?;
        ops.push(OpRef {
            op,
            collection,
            doc_id,
            payload,
        });
    }
    if r.remaining() != 0 {
        return Err(bad);
    }
    Ok((CommitRef { seq, ops }, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut buf = Vec::new();
        let mut e = CommitEncoder::begin(&mut buf, 42);
        e.op(WalOp::Create, "_default", 7, br#"{"a":1}"#);
        e.op(WalOp::Delete, "users", 9, b"");
        e.op(WalOp::CreateCollection, "logs", 0, b"");
        let n = e.finish();
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn round_trip() {
        let buf = sample();
        let (rec, n) = decode(&buf).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(rec.seq, 42);
        assert_eq!(rec.ops.len(), 3);
        assert_eq!(rec.ops[0].op, WalOp::Create);
        assert_eq!(rec.ops[0].collection, "_default");
        assert_eq!(rec.ops[0].doc_id, 7);
        assert_eq!(rec.ops[0].payload, br#"{"a":1}"#);
        assert_eq!(rec.ops[1].op, WalOp::Delete);
        assert_eq!(rec.ops[2].collection, "logs");
    }

    #[test]
    fn zeroed_space_is_the_end_and_a_zeroed_header_before_data_is_not() {
        assert_eq!(decode(&[0u8; 4096]).unwrap_err(), DecodeError::Preallocated);
        assert_eq!(decode(&[0u8; 3]).unwrap_err(), DecodeError::Preallocated);
        let mut buf = vec![0u8; RECORD_HEADER];
        buf.extend_from_slice(&sample());
        assert_eq!(
            decode(&buf).unwrap_err(),
            DecodeError::Corrupt("zeroed record header")
        );
        // A record followed by zeroed space decodes, and the space after it is the end.
        let mut buf = sample();
        let n = buf.len();
        buf.resize(n + 1000, 0);
        assert_eq!(decode(&buf).unwrap().1, n);
        assert_eq!(decode(&buf[n..]).unwrap_err(), DecodeError::Preallocated);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let buf = sample();
        for i in 0..buf.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = buf.clone();
                b[i] ^= bit;
                assert!(decode(&b).is_err(), "flip of byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn every_truncation_is_a_torn_tail() {
        let buf = sample();
        for n in 0..buf.len() {
            assert_eq!(
                decode(&buf[..n]).unwrap_err(),
                DecodeError::Truncated,
                "{n}"
            );
        }
    }

    #[test]
    fn a_huge_length_is_corruption_not_an_allocation() {
        let mut b = sample();
        b[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&b), Err(DecodeError::Corrupt(_))));
    }
}
