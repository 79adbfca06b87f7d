//! A queued request and the promise to answer it exactly once.

use std::sync::Arc;
use std::time::Instant;

use docdb_core::error::msg;
use docdb_protocol::{Request, Response, Status};

/// Where responses go: a connection's writer (or, in tests, a channel).
pub trait Sink: Send + Sync {
    /// Sends one response; a connection that is gone drops it.
    fn send(&self, resp: Response);
    /// One promised response was sent (or given up on); see [`ReplyTo`].
    fn settled(&self) {}
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

    /// Sends the response. A closed connection is not an error: the client left.
    pub fn send(mut self, status: Status, data: Vec<u8>) {
        if let Some(sink) = self.sink.take() {
            sink.send(Response::new(self.request_id, status, data));
            sink.settled();
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
        if let Some(sink) = self.sink.take() {
            sink.send(Response::new(
                self.request_id,
                Status::Error,
                msg::INTERNAL.as_bytes().to_vec(),
            ));
            sink.settled();
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
