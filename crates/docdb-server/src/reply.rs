//! A command's answer ([`Reply`]: status, data, and what it reports to the metrics),
//! how an engine error becomes one (the only mapping of `docdb_core::Error` onto wire
//! statuses and texts), a queued request, and the promise to answer it exactly once.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use docdb_core::Error;
use docdb_protocol::{text, Request, Response, Status};

use crate::errors::{classify, client_text, Category};

/// The answer to one request: a status and its data (for a non-OK status, UTF-8 error
/// text, as v0.3 clients read it), plus the [`Tally`] the dispatch wrapper records.
#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    pub data: Vec<u8>,
    pub(crate) tally: Tally,
}

/// What a reply reports to the metrics, recorded by the one dispatch wrapper
/// (`cmd::answer`), never by a handler.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Per-op outcomes, for a command counted by its ops (Execute).
    pub(crate) ops: Vec<(&'static str, Status)>,
    /// One category per engine error the reply reports.
    pub(crate) errors: Vec<Category>,
}

impl Tally {
    pub(crate) fn op(&mut self, name: &'static str, status: Status) {
        self.ops.push((name, status));
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.ops.extend(other.ops);
        self.errors.extend(other.errors);
    }
}

impl Reply {
    pub fn new(status: Status, data: Vec<u8>) -> Reply {
        Reply {
            status,
            data,
            tally: Tally::default(),
        }
    }

    /// OK with `data`.
    pub fn ok(data: Vec<u8>) -> Reply {
        Reply::new(Status::Ok, data)
    }

    /// OK with no data.
    pub fn empty() -> Reply {
        Reply::ok(Vec::new())
    }

    /// Status Error with `text`.
    pub fn error(text: impl Into<String>) -> Reply {
        Reply::new(Status::Error, text.into().into_bytes())
    }

    /// The status `text::NOT_FOUND` is sent with.
    pub fn not_found() -> Reply {
        Reply::from(&Error::NotFound)
    }

    pub(crate) fn with_tally(mut self, tally: Tally) -> Reply {
        self.tally.merge(tally);
        self
    }
}

/// The wire status of an engine error.
fn status_of(e: &Error) -> Status {
    match e {
        Error::NotFound => Status::NotFound,
        Error::AlreadyExists | Error::Conflict | Error::DuplicateKey { .. } => Status::Conflict,
        Error::IndexNotFound { .. } => Status::NotFound,
        Error::MemoryLimit => Status::MemoryLimit,
        _ => Status::Error,
    }
}

/// The client text of an engine error: a stable text of [`docdb_protocol::text`], or
/// for errors that describe files and names (I/O, format, corruption, names, config)
/// the engine's own message with its server paths removed ([`client_text`]).
fn text_of(e: &Error) -> Cow<'static, str> {
    use docdb_protocol::text as t;
    let fixed = match e {
        Error::NotFound => t::NOT_FOUND,
        Error::AlreadyExists => t::ALREADY_EXISTS,
        Error::Conflict => t::TX_CONFLICT,
        Error::MemoryLimit => t::MEMORY_LIMIT,
        Error::InvalidJson => t::INVALID_JSON,
        Error::PayloadTooLarge => t::PAYLOAD_TOO_LARGE,
        Error::TransactionTooLarge => t::TX_TOO_LARGE,
        Error::CollectionNotFound => t::COLLECTION_NOT_FOUND,
        Error::CollectionExists => t::COLLECTION_EXISTS,
        Error::CollectionNotEmpty => t::COLLECTION_NOT_EMPTY,
        Error::DefaultCollection => t::DEFAULT_COLLECTION,
        Error::InvalidPath => t::INVALID_PATH,
        Error::InvalidPatch => t::INVALID_PATCH,
        Error::NotAnObject => t::NOT_AN_OBJECT,
        Error::PatchTestFailed => t::PATCH_TEST_FAILED,
        Error::ReadOnly => t::READ_ONLY,
        Error::Closed => t::CLOSED,
        Error::TooDeep { max } => return t::too_deep(*max).into(),
        Error::TooManyPatchOps { max } => return t::too_many_patch_ops(*max).into(),
        Error::TooManyCollections { max } => return t::too_many_collections(*max).into(),
        // Names the query's own keys, operators and paths; no server path in it.
        Error::InvalidQuery(_) => return e.to_string().into(),
        Error::DuplicateKey { index } => return t::duplicate_key(index).into(),
        // The engine's detail names the failed operation and its OS error; a path in it
        // is removed like any other.
        Error::OutcomeUnknown { detail } => {
            return client_text(&format!("{} ({detail})", t::OUTCOME_UNKNOWN)).into()
        }
        Error::FailedEarlier { detail } => {
            return client_text(&format!(
                "{} ({detail}); restart the process, or reset it after `docdb check`",
                t::FAILED_EARLIER
            ))
            .into()
        }
        _ => return client_text(e).into(),
    };
    fixed.into()
}

/// The one mapping of an engine error onto the wire: its status, its client text, and
/// its error category (counted when the reply is sent).
impl From<&Error> for Reply {
    fn from(e: &Error) -> Reply {
        Reply {
            status: status_of(e),
            data: text_of(e).into_owned().into_bytes(),
            tally: Tally {
                ops: Vec::new(),
                errors: vec![classify(e)],
            },
        }
    }
}

impl From<Error> for Reply {
    fn from(e: Error) -> Reply {
        Reply::from(&e)
    }
}

/// An engine call's reply: OK with its data, or its error.
impl From<docdb_core::Result<Vec<u8>>> for Reply {
    fn from(r: docdb_core::Result<Vec<u8>>) -> Reply {
        match r {
            Ok(data) => Reply::ok(data),
            Err(e) => Reply::from(&e),
        }
    }
}

/// Where responses go: a connection's writer (or, in tests, a channel).
pub trait Sink: Send + Sync {
    /// Sends one response; a connection that is gone drops it.
    fn send(&self, resp: Response);
    /// One promised response was sent (or given up on); see [`ReplyTo`].
    fn settled(&self) {}
    /// [`Sink::send`] then [`Sink::settled`] (a connection does both under one lock).
    fn send_settled(&self, resp: Response) {
        self.send(resp);
        self.settled();
    }
}

impl Sink for tokio::sync::mpsc::UnboundedSender<Response> {
    fn send(&self, resp: Response) {
        let _ = tokio::sync::mpsc::UnboundedSender::send(self, resp);
    }
}

/// Where a request's response goes. Dropping an unanswered `ReplyTo` answers `internal
/// error`, so a client never waits forever — not even when the code serving it
/// panicked.
pub struct ReplyTo {
    sink: Option<Arc<dyn Sink>>,
    request_id: u64,
}

impl ReplyTo {
    /// A promise to answer `request_id` on `sink`. The sink learns when it is kept
    /// ([`Sink::settled`]), so a connection can wait for every answer it owes.
    pub fn new(sink: Arc<dyn Sink>, request_id: u64) -> Self {
        ReplyTo {
            sink: Some(sink),
            request_id,
        }
    }

    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// Sends the reply (its tally is the caller's to record: see `cmd::answer`). A
    /// closed connection is not an error: the client left.
    pub fn send(mut self, reply: Reply) {
        if let Some(sink) = self.sink.take() {
            sink.send_settled(Response::new(self.request_id, reply.status, reply.data));
        }
    }

    pub fn ok(self, data: Vec<u8>) {
        self.send(Reply::ok(data))
    }

    pub fn error(self, text: &str) {
        self.send(Reply::error(text))
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            sink.send_settled(Response::new(
                self.request_id,
                Status::Error,
                text::INTERNAL.as_bytes().to_vec(),
            ));
        }
    }
}

/// A request waiting in a database's queue.
pub struct Task {
    pub req: Request,
    pub reply: ReplyTo,
    pub enqueued: Instant,
}

impl Task {
    pub fn new(req: Request, reply: ReplyTo) -> Task {
        Task {
            req,
            reply,
            enqueued: Instant::now(),
        }
    }

    /// Whether a batch should end with this request ([`crate::cmd::runs_late`]).
    pub fn ends_batch(&self) -> bool {
        crate::cmd::runs_late(&self.req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Reply) -> &str {
        std::str::from_utf8(&r.data).unwrap_or("<not UTF-8>")
    }

    /// Every engine error a client can see, with the status and text v0.3 clients
    /// and the docdb tests expect (the same bytes as before the texts moved into
    /// docdb-protocol).
    #[test]
    fn engine_errors_map_to_their_stable_status_and_text() {
        use std::io;
        let cases: Vec<(Error, Status, &str)> = vec![
            (Error::NotFound, Status::NotFound, "document not found"),
            (
                Error::AlreadyExists,
                Status::Conflict,
                "document already exists",
            ),
            (Error::Conflict, Status::Conflict, "transaction conflict"),
            (
                Error::MemoryLimit,
                Status::MemoryLimit,
                "memory limit exceeded",
            ),
            (
                Error::InvalidJson,
                Status::Error,
                "payload must be valid JSON (forbidden prefixes: raw: hex:)",
            ),
            (
                Error::PayloadTooLarge,
                Status::Error,
                "payload exceeds maximum size",
            ),
            (
                Error::TransactionTooLarge,
                Status::Error,
                "transaction exceeds maximum size",
            ),
            (
                Error::CollectionNotFound,
                Status::Error,
                "collection not found",
            ),
            (
                Error::CollectionExists,
                Status::Error,
                "collection already exists",
            ),
            (
                Error::CollectionNotEmpty,
                Status::Error,
                "collection is not empty",
            ),
            (
                Error::DefaultCollection,
                Status::Error,
                "cannot delete default collection",
            ),
            (Error::InvalidPath, Status::Error, "invalid JSON path"),
            (
                Error::InvalidPatch,
                Status::Error,
                "invalid patch operations",
            ),
            (
                Error::NotAnObject,
                Status::Error,
                "document is not a JSON object",
            ),
            (Error::PatchTestFailed, Status::Error, "patch test failed"),
            (
                Error::TooDeep { max: 64 },
                Status::Error,
                "document nests deeper than 64 levels (limits.max_depth)",
            ),
            (
                Error::TooManyPatchOps { max: 1000 },
                Status::Error,
                "patch has more than 1000 operations (limits.max_patch_ops)",
            ),
            (
                Error::TooManyCollections { max: 3 },
                Status::Error,
                "database already has 3 collections, the most allowed (limits.max_collections)",
            ),
            (
                Error::ReadOnly,
                Status::Error,
                "database is read-only after a failed write or fsync; it accepts writes again only after a restart (check it first with `docdb check`)",
            ),
            (
                Error::OutcomeUnknown {
                    detail: "WAL fsync: I/O error: Input/output error (os error 5)".into(),
                },
                Status::Error,
                "write outcome unknown: the disk failed while making it durable, so it may or may not have been saved; the database is now read-only (WAL fsync: I/O error: Input/output error (os error 5))",
            ),
            (
                Error::FailedEarlier {
                    detail: "WAL fsync: I/O error: Input/output error (os error 5)".into(),
                },
                Status::Error,
                "database cannot be reopened in this process: a write or fsync failed (WAL fsync: I/O error: Input/output error (os error 5)); restart the process, or reset it after `docdb check`",
            ),
            (Error::Closed, Status::Error, "database is closed"),
            (
                Error::Corrupt {
                    detail: "damaged header of c/7".into(),
                },
                Status::Error,
                "document is corrupt: damaged header of c/7",
            ),
            (
                Error::InvalidName {
                    kind: "collection",
                    name: "a b".into(),
                    reason: "bad",
                },
                Status::Error,
                "invalid collection name \"a b\": bad",
            ),
            (
                Error::Format("/srv/dbs/x/CHECKPOINT is damaged".into()),
                Status::Error,
                "unusable database files: CHECKPOINT is damaged",
            ),
            (
                Error::Io(io::Error::other("no space")),
                Status::Error,
                "I/O error: no space",
            ),
        ];
        for (e, status, want) in cases {
            let r = Reply::from(&e);
            assert_eq!((r.status, text(&r)), (status, want), "{e:?}");
            assert_eq!(r.tally.errors, [classify(&e)], "{e:?}");
            // Today the engine's own message is the client text (paths aside).
            assert_eq!(client_text(&e), want, "{e:?}");
        }
    }

    #[test]
    fn constructors_and_results() {
        let r = Reply::from(Ok::<_, Error>(b"x".to_vec()));
        assert_eq!((r.status, r.data.as_slice()), (Status::Ok, &b"x"[..]));
        assert!(r.tally.errors.is_empty());
        let r = Reply::from(Err::<Vec<u8>, _>(Error::NotFound));
        assert_eq!(r.status, Status::NotFound);
        assert_eq!(Reply::not_found().data, b"document not found");
        assert_eq!(Reply::empty().status, Status::Ok);
        let r = Reply::error(docdb_protocol::text::UNKNOWN_COMMAND);
        assert_eq!((r.status, text(&r)), (Status::Error, "unknown command"));
        assert!(r.tally.errors.is_empty());
    }
}
