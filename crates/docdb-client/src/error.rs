//! Typed errors: one variant per response status, plus transport and decoding failures.
//!
//! The server's error texts are stable strings (SPEC §2) and are kept verbatim in the
//! variants, so callers can match on the status (`is_not_found()`) and still compare
//! or show the exact text.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use docdb_protocol::Status;

/// Stable server texts the client needs to recognise (SPEC §2).
pub(crate) mod text {
    pub use docdb_protocol::text::FRAME_TOO_LARGE;
}

/// Everything a DocDB call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Status 2: the document does not exist (`document not found`).
    #[error("{0}")]
    NotFound(String),
    /// Status 3: `document already exists`, or a transaction lost a write-write race
    /// (`transaction conflict`).
    #[error("{0}")]
    Conflict(String),
    /// Status 4: the write would exceed a memory budget (`memory limit exceeded`);
    /// nothing was changed.
    #[error("{0}")]
    MemoryLimit(String),
    /// Status 5: refused by the server's access control: `authentication required`
    /// or `permission denied: <why>` (a bad, expired or other-key token, a database
    /// outside the token's scope, or rights the token lacks).
    #[error("{0}")]
    Denied(String),
    /// Status 1 (or a status this client does not know) with the server's text, e.g.
    /// `collection is not empty`, `invalid JSON path`, `database not open`,
    /// `request queue is full`.
    #[error("{0}")]
    Server(String),
    /// The connection failed: could not connect, or it broke while the request was in
    /// flight (the request may or may not have been applied). The next call
    /// reconnects.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The first connection to `path` could not be made ([`Client::connect`]): the
    /// text says why and what to do (`is the server running? start it with ...`,
    /// `... is not a socket`). [`Error::is_io`] is true for it too.
    ///
    /// [`Client::connect`]: crate::Client::connect
    #[error("{}", connect_text(path, source))]
    Connect { path: PathBuf, source: io::Error },
    /// The first connection to `addr` over TCP could not be made
    /// ([`Client::connect_tcp`]): unreachable, refused, or the TLS handshake failed
    /// (the text says why: a certificate the CA did not sign, one that does not name
    /// the host, ...). [`Error::is_io`] is true for it too.
    ///
    /// [`Client::connect_tcp`]: crate::Client::connect_tcp
    #[error("{}", connect_tcp_text(addr, source))]
    ConnectTcp { addr: String, source: io::Error },
    /// The server's reply does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A value could not be converted to or from JSON by the serde helpers (for
    /// example a stored document that does not fit the requested type).
    #[error("JSON conversion failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result of a DocDB call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Status 2, `document not found`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// Status 3: the document exists already, or a transaction conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// Status 4, a memory budget would be exceeded.
    pub fn is_memory_limit(&self) -> bool {
        matches!(self, Error::MemoryLimit(_))
    }

    /// Any other error the server reported (status 1).
    pub fn is_server(&self) -> bool {
        matches!(self, Error::Server(_))
    }

    /// The connection failed (including the first connect, [`Error::Connect`]).
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            Error::Io(_) | Error::Connect { .. } | Error::ConnectTcp { .. }
        )
    }

    /// Status 5: refused by access control.
    pub fn is_denied(&self) -> bool {
        matches!(self, Error::Denied(_))
    }

    /// The server's reply was malformed.
    pub fn is_protocol(&self) -> bool {
        matches!(self, Error::Protocol(_))
    }

    /// The server's error text, for errors the server reported.
    pub fn server_text(&self) -> Option<&str> {
        match self {
            Error::NotFound(t)
            | Error::Conflict(t)
            | Error::MemoryLimit(t)
            | Error::Denied(t)
            | Error::Server(t) => Some(t),
            _ => None,
        }
    }

    /// The error a response with `status` and error text `data` stands for.
    pub(crate) fn from_status(status: u8, data: &[u8]) -> Error {
        let text = String::from_utf8_lossy(data).into_owned();
        match Status::from_u8(status) {
            Some(Status::NotFound) => Error::NotFound(text),
            Some(Status::Conflict) => Error::Conflict(text),
            Some(Status::MemoryLimit) => Error::MemoryLimit(text),
            Some(Status::Denied) => Error::Denied(text),
            // Status 0 never reaches here; unknown codes (≥ 5) are reported as server
            // errors with their text.
            _ => Error::Server(text),
        }
    }

    pub(crate) fn protocol(what: impl Into<String>) -> Error {
        Error::Protocol(what.into())
    }
}

/// What a user reads when `path` cannot be connected to: the reason in plain words and
/// the next step.
fn connect_text(path: &Path, e: &io::Error) -> String {
    let p = path.display();
    let start = format!("is the server running? start it with `docdb serve --socket {p}`");
    let kind = std::fs::symlink_metadata(path).ok().map(|m| m.file_type());
    match kind {
        None if e.kind() == io::ErrorKind::NotFound => {
            format!("cannot connect to {p}: no such socket; {start}")
        }
        Some(ft) if !ft.is_socket() && !ft.is_symlink() => {
            let what = if ft.is_dir() {
                "a directory"
            } else if ft.is_file() {
                "a regular file"
            } else {
                "another kind of file"
            };
            format!("cannot connect to {p}: {p} is not a socket (it is {what}); is --socket the server's?")
        }
        _ if e.kind() == io::ErrorKind::ConnectionRefused => format!(
            "cannot connect to {p}: connection refused (a socket file with no server behind it); {start}"
        ),
        _ => format!("cannot connect to {p}: {e}"),
    }
}

/// What a user reads when `addr` cannot be reached over TCP.
fn connect_tcp_text(addr: &str, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        format!("cannot connect to {addr}: connection refused; is the server running with `docdb serve --listen {addr}`?")
    } else {
        format!("cannot connect to {addr}: {e}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statuses_map_to_variants_with_their_text() {
        let e = Error::from_status(2, b"document not found");
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "document not found");
        assert!(Error::from_status(3, b"document already exists").is_conflict());
        assert!(Error::from_status(4, b"memory limit exceeded").is_memory_limit());
        let e = Error::from_status(1, b"collection is not empty");
        assert_eq!(e.server_text(), Some("collection is not empty"));
        assert!(Error::from_status(9, b"from the future").is_server());
        assert!(Error::from_status(1, &[0xff, b'x']).is_server());
    }

    #[test]
    fn connect_errors_say_why_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.sock");
        let e = crate::Client::connect(&missing).unwrap_err();
        assert!(e.is_io());
        let t = e.to_string();
        assert!(
            t.starts_with(&format!("cannot connect to {}: ", missing.display())),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "is the server running? start it with `docdb serve --socket {}`",
                missing.display()
            )),
            "{t}"
        );
        let file = dir.path().join("file.sock");
        std::fs::write(&file, b"x").unwrap();
        let t = crate::Client::connect(&file).unwrap_err().to_string();
        assert!(
            t.contains(&format!(
                "{} is not a socket (it is a regular file)",
                file.display()
            )),
            "{t}"
        );
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let t = crate::Client::connect(&stale).unwrap_err().to_string();
        assert!(
            t.contains("connection refused") && t.contains("is the server running?"),
            "{t}"
        );
    }
}
