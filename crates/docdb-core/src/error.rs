//! Errors of the engine, and the stable texts clients compare.
//!
//! Every text a client can see lives in [`msg`]; the wire protocol sends these bytes
//! verbatim, so changing one is a breaking change for every client.

use std::io;

/// The stable error texts of SPEC §2, plus the ones DocDB added since. Clients compare
/// these strings; never change one, only add new ones.
pub mod msg {
    pub const INVALID_JSON: &str = "payload must be valid JSON (forbidden prefixes: raw: hex:)";
    pub const ALREADY_EXISTS: &str = "document already exists";
    pub const NOT_FOUND: &str = "document not found";
    pub const DB_NOT_OPEN: &str = "database not open";
    pub const MEMORY_LIMIT: &str = "memory limit exceeded";
    pub const PAYLOAD_TOO_LARGE: &str = "payload exceeds maximum size";
    pub const POOL_STOPPED: &str = "pool is stopped";
    pub const QUEUE_FULL: &str = "request queue is full";
    pub const FRAME_TOO_LARGE: &str = "frame size exceeds maximum";
    pub const UNKNOWN_OP: &str = "unknown operation type";
    pub const COLLECTION_NOT_FOUND: &str = "collection not found";
    pub const COLLECTION_EXISTS: &str = "collection already exists";
    pub const COLLECTION_NOT_EMPTY: &str = "collection is not empty";
    pub const INVALID_PATH: &str = "invalid JSON path";
    pub const NOT_AN_OBJECT: &str = "document is not a JSON object";
    pub const INVALID_PATCH: &str = "invalid patch operations";
    // Added by the Rust rewrite.
    pub const PATCH_TEST_FAILED: &str = "patch test failed";
    pub const TX_CONFLICT: &str = "transaction conflict";
    pub const DEFAULT_COLLECTION: &str = "the default collection cannot be deleted";
    pub const TX_TOO_LARGE: &str = "transaction exceeds maximum size";
    pub const READ_ONLY: &str = "database is read-only after a failed write or fsync; it accepts writes again only after a restart (check it first with `docdb check`)";
    /// Prefix of the error of a write whose own WAL write or fsync failed.
    pub const OUTCOME_UNKNOWN: &str = "write outcome unknown: the disk failed while making it durable, so it may or may not have been saved; the database is now read-only";
    /// Prefix of the error of opening a database that failed earlier in this process.
    pub const FAILED_EARLIER: &str =
        "database cannot be reopened in this process: a write or fsync failed";
    pub const CLOSED: &str = "database is closed";
    pub const CORRUPT: &str = "document is corrupt";
    pub const INTERNAL: &str = "internal error";
    // Limits of `[limits]` (docs/SECURITY.md); each text names its config key.
    /// Prefix of "document nests deeper than N levels (limits.max_depth)".
    pub const TOO_DEEP: &str = "document nests deeper than";
    /// Prefix of "patch has more than N operations (limits.max_patch_ops)".
    pub const TOO_MANY_PATCH_OPS: &str = "patch has more than";
    /// Prefix of "database already has N collections, the most allowed (limits.max_collections)".
    pub const TOO_MANY_COLLECTIONS: &str = "database already has";
    // Server-level texts (docdb-server).
    pub const UNKNOWN_COMMAND: &str = "unknown command";
    pub const MISSING_OP: &str = "request has no operation";
    pub const INVALID_SCAN: &str = "scan options must be JSON like {\"limit\":100}";
    pub const TOO_MANY_CONNECTIONS: &str = "too many connections";
    pub const LOW_ON_FDS: &str =
        "server is low on file descriptors; connection refused, try again later";
    pub const SHUTTING_DOWN: &str = "server is shutting down";
    /// A reply that would pass the frame limit (Execute and Transaction add what was
    /// applied: see docs/PROTOCOL.md).
    pub const REPLY_TOO_LARGE: &str = docdb_protocol::REPLY_TOO_LARGE;
    pub const TOO_MANY_DATABASES: &str =
        "too many databases: limits.max_databases reached; existing databases still open";
}

/// Outcome class of an operation: the wire protocol's status byte, which the engine's
/// errors map onto (one definition, in `docdb-protocol`).
pub use docdb_protocol::Status;

/// What can go wrong in the engine. `Display` of the client-facing variants is exactly
/// the stable text of [`msg`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{}", msg::NOT_FOUND)]
    NotFound,
    #[error("{}", msg::ALREADY_EXISTS)]
    AlreadyExists,
    /// Another transaction committed a write to a document this transaction writes,
    /// after this transaction's snapshot.
    #[error("{}", msg::TX_CONFLICT)]
    Conflict,
    #[error("{}", msg::MEMORY_LIMIT)]
    MemoryLimit,
    #[error("{}", msg::INVALID_JSON)]
    InvalidJson,
    #[error("{}", msg::PAYLOAD_TOO_LARGE)]
    PayloadTooLarge,
    #[error("{}", msg::TX_TOO_LARGE)]
    TransactionTooLarge,
    #[error("{}", msg::COLLECTION_NOT_FOUND)]
    CollectionNotFound,
    #[error("{}", msg::COLLECTION_EXISTS)]
    CollectionExists,
    #[error("{}", msg::COLLECTION_NOT_EMPTY)]
    CollectionNotEmpty,
    #[error("{}", msg::DEFAULT_COLLECTION)]
    DefaultCollection,
    /// A database or collection name outside the allowed alphabet or length.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("{}", msg::INVALID_PATH)]
    InvalidPath,
    #[error("{}", msg::INVALID_PATCH)]
    InvalidPatch,
    #[error("{}", msg::NOT_AN_OBJECT)]
    NotAnObject,
    #[error("{}", msg::PATCH_TEST_FAILED)]
    PatchTestFailed,
    /// A document (given, or the result of a patch) nests deeper than
    /// `limits.max_depth` arrays/objects.
    #[error("{} {max} levels (limits.max_depth)", msg::TOO_DEEP)]
    TooDeep { max: usize },
    /// A patch carries more than `limits.max_patch_ops` operations.
    #[error("{} {max} operations (limits.max_patch_ops)", msg::TOO_MANY_PATCH_OPS)]
    TooManyPatchOps { max: usize },
    /// Creating a collection would pass `limits.max_collections`.
    #[error(
        "{} {max} collections, the most allowed (limits.max_collections)",
        msg::TOO_MANY_COLLECTIONS
    )]
    TooManyCollections { max: usize },
    /// A stored record failed its checksum.
    #[error("{}: {detail}", msg::CORRUPT)]
    Corrupt { detail: String },
    /// An earlier write or fsync failed; the database refuses writes until reopened,
    /// because retrying an fsync can silently lose data.
    #[error("{}", msg::READ_ONLY)]
    ReadOnly,
    /// The write was in a group commit whose WAL write or fsync failed: it may or may
    /// not be durable (a restart may show it or not). The database is read-only now.
    #[error("{} ({detail})", msg::OUTCOME_UNKNOWN)]
    OutcomeUnknown { detail: String },
    /// Opening a database whose write or fsync failed earlier in this process
    /// ([`crate::failure`]): refused until a restart or [`crate::failure::reset`].
    #[error(
        "{} ({detail}); restart the process, or reset it after `docdb check`",
        msg::FAILED_EARLIER
    )]
    FailedEarlier { detail: String },
    #[error("{}", msg::CLOSED)]
    Closed,
    /// A configuration value out of range; names the key.
    #[error("invalid configuration: {key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// Files on disk that the engine cannot use (wrong magic, unknown version, ...).
    #[error("unusable database files: {0}")]
    Format(String),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// An I/O error from running out of file descriptors (EMFILE/ENFILE): transient,
    /// so the operation is retried later and the database stays writable.
    pub fn is_out_of_fds(&self) -> bool {
        matches!(self, Error::Io(e) if crate::fsutil::out_of_fds(e))
    }

    /// The wire status for this error.
    pub fn status(&self) -> Status {
        match self {
            Error::NotFound => Status::NotFound,
            Error::AlreadyExists | Error::Conflict => Status::Conflict,
            Error::MemoryLimit => Status::MemoryLimit,
            _ => Status::Error,
        }
    }
}

impl From<crate::patch::PatchError> for Error {
    fn from(e: crate::patch::PatchError) -> Self {
        use crate::patch::PatchError as P;
        match e {
            P::InvalidPath => Error::InvalidPath,
            P::InvalidOps => Error::InvalidPatch,
            P::NotAnObject => Error::NotAnObject,
            P::TestFailed => Error::PatchTestFailed,
            P::TooLarge => Error::PayloadTooLarge,
            P::TooDeep { max } => Error::TooDeep { max },
            P::TooManyOps { max } => Error::TooManyPatchOps { max },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_visible_texts_are_the_stable_ones() {
        assert_eq!(Error::NotFound.to_string(), "document not found");
        assert_eq!(Error::AlreadyExists.to_string(), "document already exists");
        assert_eq!(Error::MemoryLimit.to_string(), "memory limit exceeded");
        assert_eq!(
            Error::InvalidJson.to_string(),
            "payload must be valid JSON (forbidden prefixes: raw: hex:)"
        );
        assert_eq!(
            Error::CollectionNotEmpty.to_string(),
            "collection is not empty"
        );
        assert_eq!(Error::AlreadyExists.status(), Status::Conflict);
        assert_eq!(Error::Conflict.status(), Status::Conflict);
        assert_eq!(Error::NotFound.status(), Status::NotFound);
        assert_eq!(Error::MemoryLimit.status(), Status::MemoryLimit);
        assert_eq!(Error::InvalidPath.status(), Status::Error);
    }
}
