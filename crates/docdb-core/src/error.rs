//! Errors of the engine.
//!
//! An engine error says precisely what went wrong; it carries no wire status. The
//! server maps each variant to a wire status and a client text in one place
//! (docdb-server's `Reply`, with the texts in `docdb_protocol::text`); today the
//! client-facing variants' `Display` is that same text, which a server test checks.

use std::io;

/// What can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("document not found")]
    NotFound,
    #[error("document already exists")]
    AlreadyExists,
    /// Another transaction committed a write to a document this transaction writes,
    /// after this transaction's snapshot.
    #[error("transaction conflict")]
    Conflict,
    #[error("memory limit exceeded")]
    MemoryLimit,
    /// A write would give a unique secondary index a second document with one key
    /// (the server answers Conflict).
    #[error("duplicate key for unique index {index}")]
    DuplicateKey { index: String },
    /// A bad index definition (name, fields, directions), with what is wrong.
    #[error("invalid index: {reason}")]
    InvalidIndex { reason: String },
    #[error("index not found: {name}")]
    IndexNotFound { name: String },
    #[error("index already exists: {name}")]
    IndexExists { name: String },
    /// An index scan at a snapshot older than the index's build (the caller scans the
    /// collection instead).
    #[error("index {name} is not readable at this snapshot (it was built after it)")]
    IndexNotReady { name: String },
    /// An index build stopped before it finished because its caller cancelled it
    /// (the database is being dropped, the server is stopping); nothing of it is left.
    #[error("index build cancelled: {name}")]
    IndexBuildCancelled { name: String },
    /// The index was dropped (DropIndex) while it was building: the build stopped and
    /// nothing of it is left; creating it again starts a new build.
    #[error("index {name} was dropped while it was building")]
    IndexDroppedWhileBuilding { name: String },
    /// Creating an index would pass `limits.max_indexes` on the collection.
    #[error("collection already has {max} indexes, the most allowed (limits.max_indexes)")]
    TooManyIndexes { max: usize },
    #[error("payload must be valid JSON (forbidden prefixes: raw: hex:)")]
    InvalidJson,
    #[error("payload exceeds maximum size")]
    PayloadTooLarge,
    #[error("transaction exceeds maximum size")]
    TransactionTooLarge,
    #[error("collection not found")]
    CollectionNotFound,
    #[error("collection already exists")]
    CollectionExists,
    #[error("collection is not empty")]
    CollectionNotEmpty,
    #[error("cannot delete default collection")]
    DefaultCollection,
    /// A database or collection name outside the allowed alphabet or length.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("invalid JSON path")]
    InvalidPath,
    /// A query (SPEC §11) that cannot run: the text names the key, operator or path.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("invalid patch operations")]
    InvalidPatch,
    #[error("document is not a JSON object")]
    NotAnObject,
    #[error("patch test failed")]
    PatchTestFailed,
    /// A document (given, or the result of a patch) nests deeper than
    /// `limits.max_depth` arrays/objects.
    #[error("document nests deeper than {max} levels (limits.max_depth)")]
    TooDeep { max: usize },
    /// A patch carries more than `limits.max_patch_ops` operations.
    #[error("patch has more than {max} operations (limits.max_patch_ops)")]
    TooManyPatchOps { max: usize },
    /// Creating a collection would pass `limits.max_collections`.
    #[error("database already has {max} collections, the most allowed (limits.max_collections)")]
    TooManyCollections { max: usize },
    /// A stored record failed its checksum.
    #[error("document is corrupt: {detail}")]
    Corrupt { detail: String },
    /// An earlier write or fsync failed; the database refuses writes until the process
    /// restarts (or [`crate::failure::reset`]), because retrying an fsync can silently
    /// lose data (DECISIONS 38).
    #[error("database is read-only after a failed write or fsync; it accepts writes again only after a restart (check it first with `docdb check`)")]
    ReadOnly,
    /// The write was in a group commit whose WAL write or fsync failed: it may or may
    /// not be durable (a restart may show it or not). The database is read-only now.
    #[error(
        "write outcome unknown: the disk failed while making it durable, so it may or may \
         not have been saved; the database is now read-only ({detail})"
    )]
    OutcomeUnknown { detail: String },
    /// Opening a database whose write or fsync failed earlier in this process
    /// ([`crate::failure`]): refused until a restart or [`crate::failure::reset`].
    #[error(
        "database cannot be reopened in this process: a write or fsync failed ({detail}); \
         restart the process, or reset it after `docdb check`"
    )]
    FailedEarlier { detail: String },
    #[error("database is closed")]
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
    fn display_is_the_precise_text() {
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
    }
}
