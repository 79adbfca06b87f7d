//! DocDB's wire protocol (SPEC §8), shared by the server, the Rust client and the load
//! tester. Compatible with DocDB v0.3 clients.
//!
//! Every message on the socket is `u32 length` (little-endian) followed by a frame of
//! that many bytes. Requests and responses on one connection are matched by request id,
//! so a client may keep many requests in flight (pipelining).
//!
//! ```text
//! request  := request_id u64  db_id u64  command u8  op_count u32  op*
//! op       := op_type u8  coll_len u16  coll[coll_len ≤ 64]  doc_id u64
//!             [patch_len u32  patch[patch_len]]      -- only when op_type == 7 (Patch)
//!             payload_len u32  payload[payload_len]
//! response := request_id u64  status u8  data_len u32  data[data_len]
//! ```
//!
//! The data of a non-OK response is always UTF-8 error text (what every v0.3 client
//! reads). An Execute or Transaction sent with [`PER_OP_STATUS`] on its command byte
//! gets each op's own status instead ([`frame::decode_status_results`]).
//!
//! # Layout
//! - [`codec`]: the bounds-checked little-endian reader every decoder uses.
//! - [`frame`]: request and response encoding and decoding.
//! - [`types`]: command, op type and status codes.
//! - [`text`]: the error texts a client can see (the data of a non-OK reply).
//! - [`io`]: reading a length-prefixed frame with the size check first.

pub mod codec;
pub mod frame;
pub mod io;
pub mod text;
pub mod types;

pub use frame::{
    decode_request, decode_response, encode_request, encode_response, request_header, DecodeError,
    Op, Request, Response,
};
pub use types::{Command, OpType, Status, PER_OP_STATUS};

/// Largest frame accepted. A document may be up to 16 MiB; the frame limit leaves room
/// for one such document plus its request header.
pub const MAX_FRAME: usize = 16 * 1024 * 1024 + 4096;

/// Bytes of a response frame before its data: request id, status, data length.
pub const RESPONSE_HEADER: usize = 8 + 1 + 4;

/// Most data one response can carry: a response frame is never larger than
/// [`MAX_FRAME`], the limit every client enforces on what it reads.
pub const MAX_REPLY_DATA: usize = MAX_FRAME - RESPONSE_HEADER;

/// Error text of a reply whose data would not fit in [`MAX_REPLY_DATA`]; what a server
/// sends instead of such a reply (never a truncated or oversize frame). Commands that
/// stop before the limit add what happened after this text.
pub use text::REPLY_TOO_LARGE;

/// Longest collection name.
pub const MAX_COLLECTION_LEN: usize = 64;
