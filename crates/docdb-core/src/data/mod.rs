//! The append-only data file: self-describing, checksummed records holding every
//! document version's JSON bytes, read by position.

pub(crate) mod file;
pub mod record;
