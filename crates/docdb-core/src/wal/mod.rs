//! The write-ahead log: segment files of CRC-framed commit records, a writer that
//! appends and fsyncs batches, and single-pass replay.

pub(crate) mod find;
pub mod record;
pub(crate) mod replay;
pub(crate) mod segment;
pub(crate) mod writer;

pub use writer::WalPos;
