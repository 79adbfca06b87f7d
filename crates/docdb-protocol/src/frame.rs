//! Request and response frames (the bytes after the `u32` length prefix).
//! Decoding never panics and never allocates more than the frame it was given.

use crate::codec::Reader;
use crate::types::{Command, OpType, Status};
use crate::{MAX_REPLY_DATA, REPLY_TOO_LARGE, RESPONSE_HEADER};

/// One operation of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Op {
    /// Raw op type: unknown codes are kept so the server can answer them per op with
    /// `unknown operation type` instead of dropping the connection.
    pub op_type: u8,
    /// Collection name bytes (validated by the server, not here).
    pub collection: Vec<u8>,
    pub doc_id: u64,
    /// Patch operations JSON; present only for op type 7.
    pub patch: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl Op {
    pub fn kind(&self) -> Option<OpType> {
        OpType::from_u8(self.op_type)
    }

    /// An op of a known type (convenience for clients).
    pub fn new(op_type: OpType, collection: &str, doc_id: u64, payload: Vec<u8>) -> Op {
        Op {
            op_type: op_type as u8,
            collection: collection.as_bytes().to_vec(),
            doc_id,
            patch: None,
            payload,
        }
    }

    /// A patch op carrying its operations JSON.
    pub fn patch(collection: &str, doc_id: u64, patch: Vec<u8>) -> Op {
        Op {
            op_type: OpType::Patch as u8,
            collection: collection.as_bytes().to_vec(),
            doc_id,
            patch: Some(patch),
            payload: Vec::new(),
        }
    }
}

/// A decoded request. `command` is raw so unknown commands can be answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub request_id: u64,
    pub db_id: u64,
    pub command: u8,
    pub ops: Vec<Op>,
}

impl Request {
    /// The request's command, the [`PER_OP_STATUS`](crate::types::PER_OP_STATUS) flag
    /// aside.
    pub fn command(&self) -> Option<Command> {
        Command::decode(self.command).map(|(c, _)| c)
    }

    /// Whether the request asks for the per-op status form of an Execute or
    /// Transaction reply.
    pub fn per_op_status(&self) -> bool {
        matches!(Command::decode(self.command), Some((_, true)))
    }
}

/// A decoded response. `status` is raw: newer servers may send codes ≥ 5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub request_id: u64,
    pub status: u8,
    pub data: Vec<u8>,
}

impl Response {
    pub fn new(request_id: u64, status: Status, data: Vec<u8>) -> Response {
        Response {
            request_id,
            status: status as u8,
            data,
        }
    }

    pub fn status(&self) -> Option<Status> {
        Status::from_u8(self.status)
    }
}

/// A frame that does not follow the layout. The connection cannot be trusted after
/// this: the server answers with an Error response (with `request_id` when the first 8
/// bytes were readable) and closes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed frame: {reason}")]
pub struct DecodeError {
    pub request_id: Option<u64>,
    pub reason: &'static str,
}

/// Smallest encoded op: type, collection length, doc id, payload length.
const MIN_OP: usize = 1 + 2 + 8 + 4;

/// The request id and op count of a request frame, read without decoding its ops, so a
/// server can refuse a request with too many ops before it spends memory on them.
/// `None` when the frame is shorter than a request header or claims more ops than it
/// could hold (malformed: [`decode_request`] says why).
pub fn request_header(frame: &[u8]) -> Option<(u64, u32)> {
    let mut c = Reader::new(frame);
    let request_id = c.u64()?;
    let _db_id = c.u64()?;
    let _command = c.u8()?;
    let count = c.u32()?;
    (count as usize <= c.remaining() / MIN_OP).then_some((request_id, count))
}

pub fn decode_request(frame: &[u8]) -> Result<Request, DecodeError> {
    let mut c = Reader::new(frame);
    let err = |request_id, reason| DecodeError { request_id, reason };
    let request_id = c
        .u64()
        .ok_or(err(None, "frame shorter than a request header"))?;
    let id = Some(request_id);
    let db_id = c
        .u64()
        .ok_or(err(id, "frame shorter than a request header"))?;
    let command = c
        .u8()
        .ok_or(err(id, "frame shorter than a request header"))?;
    let count = c
        .u32()
        .ok_or(err(id, "frame shorter than a request header"))? as usize;
    if count > c.remaining() / MIN_OP {
        return Err(err(id, "op count exceeds what the frame holds"));
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let op_type = c.u8().ok_or(err(id, "truncated op"))?;
        // A name over 64 bytes is decoded like any other: the server answers it with
        // the engine's name error and the connection stays open (SPEC §8.2).
        let clen = c.u16().ok_or(err(id, "truncated op"))? as usize;
        let collection = c
            .bytes(clen)
            .ok_or(err(id, "truncated collection name"))?
            .to_vec();
        let doc_id = c.u64().ok_or(err(id, "truncated op"))?;
        let patch = if op_type == OpType::Patch as u8 {
            let plen = c.u32().ok_or(err(id, "truncated patch length"))? as usize;
            Some(
                c.bytes(plen)
                    .ok_or(err(id, "patch length exceeds the frame"))?
                    .to_vec(),
            )
        } else {
            None
        };
        let len = c.u32().ok_or(err(id, "truncated payload length"))? as usize;
        let payload = c
            .bytes(len)
            .ok_or(err(id, "payload length exceeds the frame"))?
            .to_vec();
        ops.push(Op {
            op_type,
            collection,
            doc_id,
            patch,
            payload,
        });
    }
    if c.remaining() != 0 {
        return Err(err(id, "trailing bytes after the last op"));
    }
    Ok(Request {
        request_id,
        db_id,
        command,
        ops,
    })
}

/// Appends `u32 length` + the request frame to `out`.
pub fn encode_request(req: &Request, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&req.request_id.to_le_bytes());
    out.extend_from_slice(&req.db_id.to_le_bytes());
    out.push(req.command);
    out.extend_from_slice(&(req.ops.len() as u32).to_le_bytes());
    for op in &req.ops {
        out.push(op.op_type);
        out.extend_from_slice(&(op.collection.len() as u16).to_le_bytes());
        out.extend_from_slice(&op.collection);
        out.extend_from_slice(&op.doc_id.to_le_bytes());
        if op.op_type == OpType::Patch as u8 {
            let p = op.patch.as_deref().unwrap_or(&[]);
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(p);
        }
        out.extend_from_slice(&(op.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&op.payload);
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

pub fn decode_response(frame: &[u8]) -> Result<Response, DecodeError> {
    let mut c = Reader::new(frame);
    let err = |request_id, reason| DecodeError { request_id, reason };
    let request_id = c
        .u64()
        .ok_or(err(None, "frame shorter than a response header"))?;
    let id = Some(request_id);
    let status = c
        .u8()
        .ok_or(err(id, "frame shorter than a response header"))?;
    let len = c
        .u32()
        .ok_or(err(id, "frame shorter than a response header"))? as usize;
    let data = c
        .bytes(len)
        .ok_or(err(id, "data length exceeds the frame"))?
        .to_vec();
    if c.remaining() != 0 {
        return Err(err(id, "trailing bytes after the data"));
    }
    Ok(Response {
        request_id,
        status,
        data,
    })
}

/// Appends `u32 length` + the response frame to `out`. A response whose data would
/// make the frame larger than [`crate::MAX_FRAME`] (which every client refuses, and which a
/// `u32` length might not even express) is sent as an Error with the text
/// [`REPLY_TOO_LARGE`] instead: never truncated, never oversize.
pub fn encode_response(resp: &Response, out: &mut Vec<u8>) {
    if resp.data.len() > MAX_REPLY_DATA {
        let refused = Response::new(
            resp.request_id,
            Status::Error,
            REPLY_TOO_LARGE.as_bytes().to_vec(),
        );
        return encode_response(&refused, out);
    }
    let frame_len = RESPONSE_HEADER + resp.data.len();
    out.reserve(4 + frame_len);
    out.extend_from_slice(&(frame_len as u32).to_le_bytes());
    out.extend_from_slice(&resp.request_id.to_le_bytes());
    out.push(resp.status);
    out.extend_from_slice(&(resp.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&resp.data);
}

/// Execute/Transaction reply data: `u32 n`, then per op `u32 len, bytes`.
pub fn encode_results(results: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + results.iter().map(|r| 4 + r.len()).sum::<usize>());
    out.extend_from_slice(&(results.len() as u32).to_le_bytes());
    for r in results {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// Parses Execute/Transaction reply data.
pub fn decode_results(data: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut c = Reader::new(data);
    let err = |reason| DecodeError {
        request_id: None,
        reason,
    };
    let n = c.u32().ok_or(err("truncated result count"))? as usize;
    if n > c.remaining() / 4 {
        return Err(err("result count exceeds the data"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = c.u32().ok_or(err("truncated result"))? as usize;
        out.push(
            c.bytes(len)
                .ok_or(err("result length exceeds the data"))?
                .to_vec(),
        );
    }
    if c.remaining() != 0 {
        return Err(err("trailing bytes after the results"));
    }
    Ok(out)
}

/// Reply data of the per-op status form (an OK reply to a flagged Execute or
/// Transaction): `u32 n`, then per op `u8 status, u32 len, bytes`.
pub fn encode_status_results(results: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + results.iter().map(|r| 5 + r.1.len()).sum::<usize>());
    out.extend_from_slice(&(results.len() as u32).to_le_bytes());
    for (status, r) in results {
        out.push(*status);
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// Parses reply data of the per-op status form: per op its raw status and bytes (a
/// read's document, a failed op's error text, else empty).
pub fn decode_status_results(data: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, DecodeError> {
    let mut c = Reader::new(data);
    let err = |reason| DecodeError {
        request_id: None,
        reason,
    };
    let n = c.u32().ok_or(err("truncated result count"))? as usize;
    if n > c.remaining() / 5 {
        return Err(err("result count exceeds the data"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let status = c.u8().ok_or(err("truncated result"))?;
        let len = c.u32().ok_or(err("truncated result"))? as usize;
        let bytes = c
            .bytes(len)
            .ok_or(err("result length exceeds the data"))?
            .to_vec();
        out.push((status, bytes));
    }
    if c.remaining() != 0 {
        return Err(err("trailing bytes after the results"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_FRAME;
    use proptest::prelude::*;

    fn sample() -> Request {
        Request {
            request_id: 7,
            db_id: 3,
            command: Command::Execute as u8,
            ops: vec![
                Op::new(OpType::Create, "users", 1, br#"{"a":1}"#.to_vec()),
                Op::patch("", 1, br#"[{"op":"set","path":"/b","value":2}]"#.to_vec()),
                Op::new(OpType::Read, "users", 1, vec![]),
            ],
        }
    }

    fn frame_of(req: &Request) -> Vec<u8> {
        let mut v = Vec::new();
        encode_request(req, &mut v);
        assert_eq!(
            u32::from_le_bytes(v[0..4].try_into().unwrap()) as usize,
            v.len() - 4
        );
        v.split_off(4)
    }

    #[test]
    fn request_round_trip_with_the_v03_layout() {
        let req = sample();
        let f = frame_of(&req);
        assert_eq!(decode_request(&f).unwrap(), req);
        // Pin the layout of the first op: type, coll_len, coll, doc_id, payload_len.
        assert_eq!(&f[0..8], &7u64.to_le_bytes());
        assert_eq!(&f[8..16], &3u64.to_le_bytes());
        assert_eq!(f[16], 3);
        assert_eq!(&f[17..21], &3u32.to_le_bytes());
        assert_eq!(f[21], 1);
        assert_eq!(&f[22..24], &5u16.to_le_bytes());
        assert_eq!(&f[24..29], b"users");
        assert_eq!(&f[29..37], &1u64.to_le_bytes());
        assert_eq!(&f[37..41], &7u32.to_le_bytes());
    }

    #[test]
    fn every_truncation_is_an_error_with_the_id_when_readable() {
        let f = frame_of(&sample());
        for n in 0..f.len() {
            let e = decode_request(&f[..n]).unwrap_err();
            assert_eq!(e.request_id, (n >= 8).then_some(7), "at {n}");
        }
    }

    #[test]
    fn lying_lengths_are_errors() {
        let mut f = frame_of(&sample());
        f[17..21].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_request(&f).unwrap_err().reason.contains("op count"));
        let mut f = frame_of(&sample());
        f[22..24].copy_from_slice(&300u16.to_le_bytes());
        assert!(decode_request(&f)
            .unwrap_err()
            .reason
            .contains("collection"));
        let mut f = frame_of(&sample());
        f[37..41].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_request(&f).is_err());
        let mut f = frame_of(&sample());
        f.push(0);
        assert!(decode_request(&f).unwrap_err().reason.contains("trailing"));
    }

    #[test]
    fn long_collection_names_decode_for_the_server_to_refuse() {
        let mut req = sample();
        req.ops[0].collection = vec![b'c'; 65];
        assert_eq!(decode_request(&frame_of(&req)).unwrap(), req);
    }

    #[test]
    fn unknown_ops_and_commands_decode_for_a_per_op_answer() {
        let req = Request {
            request_id: 1,
            db_id: 1,
            command: 99,
            ops: vec![Op {
                op_type: 5,
                ..Op::default()
            }],
        };
        let got = decode_request(&frame_of(&req)).unwrap();
        assert_eq!(got.command(), None);
        assert_eq!(got.ops[0].kind(), None);
    }

    #[test]
    fn response_and_results_round_trip() {
        let r = Response::new(9, Status::NotFound, b"document not found".to_vec());
        let mut v = Vec::new();
        encode_response(&r, &mut v);
        assert_eq!(decode_response(&v[4..]).unwrap(), r);
        let results = vec![b"x".to_vec(), vec![], b"yz".to_vec()];
        assert_eq!(decode_results(&encode_results(&results)).unwrap(), results);
        assert!(decode_results(&[255, 255, 255, 255]).is_err());
        let statused = vec![(0, b"{}".to_vec()), (2, b"document not found".to_vec())];
        let data = encode_status_results(&statused);
        assert_eq!(&data[..9], &[2, 0, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(decode_status_results(&data).unwrap(), statused);
        assert!(decode_status_results(&data[..data.len() - 1]).is_err());
        assert!(decode_status_results(&[1, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn the_per_op_status_flag_keeps_the_command() {
        let mut req = sample();
        req.command = Command::Transaction as u8 | crate::types::PER_OP_STATUS;
        let got = decode_request(&frame_of(&req)).unwrap();
        assert_eq!(got.command(), Some(Command::Transaction));
        assert!(got.per_op_status());
        assert!(!sample().per_op_status());
    }

    #[test]
    fn the_header_is_read_without_the_ops() {
        let req = sample();
        let mut v = Vec::new();
        encode_request(&req, &mut v);
        assert_eq!(
            request_header(&v[4..]),
            Some((req.request_id, req.ops.len() as u32))
        );
        // A header that claims more ops than the frame could hold is malformed:
        // no header to act on, and decoding says why.
        let mut claimed = v[4..].to_vec();
        claimed[17..21].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(request_header(&claimed), None);
        assert!(decode_request(&claimed).is_err());
        assert_eq!(request_header(&v[4..4 + 20]), None);
    }

    #[test]
    fn an_oversize_response_is_replaced_by_an_error_not_truncated() {
        let fits = Response::new(4, Status::Ok, vec![b'x'; MAX_REPLY_DATA]);
        let mut v = Vec::new();
        encode_response(&fits, &mut v);
        assert_eq!(v.len(), 4 + MAX_FRAME);
        assert_eq!(decode_response(&v[4..]).unwrap(), fits);

        let over = Response::new(5, Status::Ok, vec![b'x'; MAX_REPLY_DATA + 1]);
        let mut v = Vec::new();
        encode_response(&over, &mut v);
        let got = decode_response(&v[4..]).unwrap();
        assert_eq!(got.request_id, 5);
        assert_eq!(got.status(), Some(Status::Error));
        assert_eq!(got.data, REPLY_TOO_LARGE.as_bytes());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
            let _ = decode_results(&bytes);
            let _ = decode_status_results(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic(pos in 0usize..60, val in any::<u8>()) {
            let mut f = frame_of(&sample());
            let i = pos % f.len();
            f[i] = val;
            let _ = decode_request(&f);
        }
    }
}
