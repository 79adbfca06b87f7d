//! A queued request and the promise to answer it exactly once.

use std::time::Instant;

use docdb_core::error::msg;
use docdb_protocol::{Request, Response, Status};
use tokio::sync::mpsc::UnboundedSender;

/// Where a request's response goes: the connection's writer. Dropping an unanswered
/// `ReplyTo` answers `internal error`, so a client never waits forever — not even when
/// the code serving it panicked.
pub struct ReplyTo {
    tx: Option<UnboundedSender<Response>>,
    request_id: u64,
}

impl ReplyTo {
    pub fn new(tx: UnboundedSender<Response>, request_id: u64) -> Self {
        ReplyTo {
            tx: Some(tx),
            request_id,
        }
    }

    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// Sends the response. A closed connection is not an error: the client left.
    pub fn send(mut self, status: Status, data: Vec<u8>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Response::new(self.request_id, status, data));
        }
    }

    pub fn ok(self, data: Vec<u8>) {
        self.send(Status::Ok, data)
    }

    pub fn error(self, text: &str) {
        self.send(Status::Error, text.as_bytes().to_vec())
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Response::new(
                self.request_id,
                Status::Error,
                msg::INTERNAL.as_bytes().to_vec(),
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
}
