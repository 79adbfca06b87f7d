//! The error texts a client can see: the data of a non-OK reply (v0.3 clients read it
//! as UTF-8 text) and the per-op results of a failed op. Clients compare these strings,
//! so changing one is a breaking change for every client: never change one, only add.
//!
//! The first block is SPEC §2's; the rest were added by the Rust rewrite. A server maps
//! its engine's errors onto these texts and onto a [`Status`](crate::Status) in one
//! place (docdb-server's `Reply`).

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
/// v0.3's text (SPEC §8); the rewrite said "the default collection cannot be deleted"
/// before the v0.3 error contract was restored.
pub const DEFAULT_COLLECTION: &str = "cannot delete default collection";
// Added by the Rust rewrite.
pub const PATCH_TEST_FAILED: &str = "patch test failed";
pub const TX_CONFLICT: &str = "transaction conflict";
pub const TX_TOO_LARGE: &str = "transaction exceeds maximum size";
pub const READ_ONLY: &str = "database is read-only after a failed write or fsync; it accepts writes again only after a restart (check it first with `docdb check`)";
/// Prefix of the error of a write whose own group commit's WAL write or fsync failed:
/// it may or may not be durable (DECISIONS 38). The engine's detail follows.
pub const OUTCOME_UNKNOWN: &str = "write outcome unknown: the disk failed while making it durable, so it may or may not have been saved; the database is now read-only";
/// Prefix of the error of opening a database whose write or fsync failed earlier in
/// this server's life.
pub const FAILED_EARLIER: &str =
    "database cannot be reopened in this process: a write or fsync failed";
pub const CLOSED: &str = "database is closed";
/// A request for a database id that DropDB removed (also answered to its queued requests).
pub const DB_DROPPED: &str = "database was dropped";
/// DropDB of a name with no active database (status NotFound).
pub const DB_NOT_FOUND: &str = "database not found";
/// DropDB while requests keep holding the database past the wait (status Error; retry).
pub const DB_BUSY: &str =
    "database is busy; DropDB gave up waiting for its requests to finish, try again";
/// Prefix of "document is corrupt: <what>".
pub const CORRUPT: &str = "document is corrupt";
pub const INTERNAL: &str = "internal error";
// Limits of `[limits]` (docs/SECURITY.md); each text names its config key.
/// Prefix of "document nests deeper than N levels (limits.max_depth)".
pub const TOO_DEEP: &str = "document nests deeper than";
/// Prefix of "patch has more than N operations (limits.max_patch_ops)".
pub const TOO_MANY_PATCH_OPS: &str = "patch has more than";
/// Prefix of "database already has N collections, the most allowed (limits.max_collections)".
pub const TOO_MANY_COLLECTIONS: &str = "database already has";
pub const TOO_MANY_DATABASES: &str =
    "too many databases: limits.max_databases reached; existing databases still open";
// Server-level texts.
pub const UNKNOWN_COMMAND: &str = "unknown command";
pub const MISSING_OP: &str = "request has no operation";
pub const INVALID_SCAN: &str = "scan options must be JSON like {\"limit\":100}";
/// Prefix of "duplicate key for unique index NAME" (SPEC §11), status Conflict.
pub const DUPLICATE_KEY: &str = "duplicate key for unique index";
pub const INVALID_CREATE_INDEX: &str =
    "create index payload must be JSON like {\"name\":\"by_x\",\"fields\":[[\"x\",1]],\"unique\":false}";
pub const INVALID_DROP_INDEX: &str = "drop index payload must be JSON like {\"name\":\"by_x\"}";
pub const TOO_MANY_CONNECTIONS: &str = "too many connections";
pub const LOW_ON_FDS: &str =
    "server is low on file descriptors; connection refused, try again later";
pub const SHUTTING_DOWN: &str = "server is shutting down";
// Access control (status Denied, SPEC §8.1).
pub const AUTH_REQUIRED: &str = "authentication required";
/// Followed by `: <detail>`.
pub const PERMISSION_DENIED: &str = "permission denied";
/// A reply that would pass the frame limit; what a server sends instead of such a reply
/// (never a truncated or oversize frame). Execute and Transaction add what was applied
/// (docs/PROTOCOL.md, "Replies and the frame limit").
pub const REPLY_TOO_LARGE: &str = "reply exceeds the frame limit (16 MiB)";

/// Prefix of the per-op text, in the per-op status form of a failed Transaction, of
/// every op other than the one that failed: "transaction not applied: op N failed"
/// (N counted from 0).
pub const TX_NOT_APPLIED: &str = "transaction not applied";

/// "transaction not applied: op N failed".
pub fn tx_not_applied(failed_op: usize) -> String {
    format!("{TX_NOT_APPLIED}: op {failed_op} failed")
}

/// "document nests deeper than N levels (limits.max_depth)".
pub fn too_deep(max: usize) -> String {
    format!("{TOO_DEEP} {max} levels (limits.max_depth)")
}

/// "patch has more than N operations (limits.max_patch_ops)".
pub fn too_many_patch_ops(max: usize) -> String {
    format!("{TOO_MANY_PATCH_OPS} {max} operations (limits.max_patch_ops)")
}

/// "database already has N collections, the most allowed (limits.max_collections)".
pub fn too_many_collections(max: usize) -> String {
    format!("{TOO_MANY_COLLECTIONS} {max} collections, the most allowed (limits.max_collections)")
}

/// "request has N ops; at most M are allowed (limits.max_ops_per_request)".
pub fn too_many_ops(n: u32, max: usize) -> String {
    format!("request has {n} ops; at most {max} are allowed (limits.max_ops_per_request)")
}

/// A CreateIndex whose build was cancelled because its database was dropped
/// (nothing of the index is left).
pub const INDEX_BUILD_DB_DROPPED: &str = "index build cancelled: the database was dropped";
/// A CreateIndex whose build was cancelled by the server's shutdown (nothing of the
/// index is left; create it again after the restart).
pub const INDEX_BUILD_STOPPING: &str =
    "index build cancelled: server is shutting down; create the index again after the restart";
/// Prefix of "N index builds are running, the most allowed (limits.max_index_builds); ...".
pub const INDEX_BUILDS_BUSY: &str = "index builds are running";

/// "N index builds are running, the most allowed (limits.max_index_builds); retry when
/// one has finished".
pub fn index_builds_busy(max: usize) -> String {
    format!(
        "{max} {INDEX_BUILDS_BUSY}, the most allowed (limits.max_index_builds); retry when \
         one has finished"
    )
}

/// "duplicate key for unique index NAME".
pub fn duplicate_key(index: &str) -> String {
    format!("{DUPLICATE_KEY} {index}")
}
