//! Error classification (SPEC §9) and retry of transient I/O errors with exponential
//! backoff and jitter (10 ms initial, 1 s max, 5 retries).

use std::io;
use std::time::Duration;

use docdb_core::Error;
use rand::Rng;

/// What kind of failure an error is, for metrics and for deciding on a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Worth retrying: interrupted, would block, too many open files, timed out.
    Transient,
    /// Will not go away by retrying (not found, permission denied, ...).
    Permanent,
    /// Data at risk: a failed fsync, corruption, a database gone read-only.
    Critical,
    /// The request was wrong.
    Validation,
    /// The client connection failed.
    Network,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Transient => "transient",
            Category::Permanent => "permanent",
            Category::Critical => "critical",
            Category::Validation => "validation",
            Category::Network => "network",
        }
    }
}

fn io_category(e: &io::Error) -> Category {
    use io::ErrorKind::*;
    match e.kind() {
        Interrupted | WouldBlock | TimedOut => Category::Transient,
        _ if matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
        ) =>
        {
            Category::Transient
        }
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof => Category::Network,
        _ => Category::Permanent,
    }
}

pub fn classify(e: &Error) -> Category {
    match e {
        Error::Io(io) => io_category(io),
        Error::ReadOnly
        | Error::OutcomeUnknown { .. }
        | Error::FailedEarlier { .. }
        | Error::Corrupt { .. }
        | Error::Format(_) => Category::Critical,
        Error::NotFound
        | Error::AlreadyExists
        | Error::Conflict
        | Error::DuplicateKey { .. }
        | Error::MemoryLimit
        | Error::Closed => Category::Permanent,
        _ => Category::Validation,
    }
}

/// Runs `f`, retrying transient failures up to 5 times with backoff and jitter.
pub fn retry_transient<T>(what: &str, mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let mut delay = Duration::from_millis(10);
    let mut attempt = 0;
    loop {
        match f() {
            Err(e) if classify(&e) == Category::Transient && attempt < 5 => {
                attempt += 1;
                let jitter = rand::rng().random_range(0..=delay.as_millis() as u64 / 2);
                let wait = delay + Duration::from_millis(jitter);
                tracing::warn!(what, attempt, error = %e, wait_ms = wait.as_millis() as u64, "transient error; retrying");
                std::thread::sleep(wait);
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// The text of an error as a client may see it: every absolute path in it replaced by
/// its last component (a database's directory is its name; files are named by kind:
/// `CHECKPOINT`, `LOCK`, `….wal`, `….data`). Clients of one tenant learn nothing of
/// the server's layout; the log gets the full text.
pub fn client_text(e: &dyn std::fmt::Display) -> String {
    let full = e.to_string();
    // Common errors (not found, conflict, ...) carry no path: no second string.
    if !full.contains('/') {
        return full;
    }
    let text = redact_paths(&full);
    if text != full {
        tracing::warn!(error = %full, "answered an error without its server paths");
    }
    text
}

fn redact_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lead = word.len() - word.trim_start_matches(['"', '\'', '(', '[']).len();
        let (open, rest) = word.split_at(lead);
        if !rest.starts_with('/') {
            out.push_str(word);
            continue;
        }
        let path = rest.trim_end_matches(['"', '\'', ')', ']', ':', ',', ';']);
        let close = &rest[path.len()..];
        let name = path.rsplit('/').find(|c| !c.is_empty()).unwrap_or("");
        out.push_str(open);
        out.push_str(name);
        out.push_str(close);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_texts_name_files_not_paths() {
        let cases = [
            (
                "/srv/data/dbs/x is in use by another process",
                "x is in use by another process",
            ),
            (
                "unusable database files: /srv/data/dbs/shop/CHECKPOINT is damaged",
                "unusable database files: CHECKPOINT is damaged",
            ),
            (
                "reading \"/a/b/00000001.wal\": denied",
                "reading \"00000001.wal\": denied",
            ),
            ("(/a/b/), at /x/y/data/1.data:", "(b), at 1.data:"),
            (
                "document is corrupt: damaged header of c/7",
                "document is corrupt: damaged header of c/7",
            ),
            ("document not found", "document not found"),
        ];
        for (full, want) in cases {
            assert_eq!(client_text(&full), want);
        }
    }

    #[test]
    fn transient_errors_are_retried_then_given_up() {
        let mut calls = 0;
        let r: Result<(), Error> = retry_transient("test", || {
            calls += 1;
            Err(Error::Io(io::Error::from(io::ErrorKind::Interrupted)))
        });
        assert!(r.is_err());
        assert_eq!(calls, 6);
        let mut calls = 0;
        let r = retry_transient("test", || {
            calls += 1;
            if calls < 3 {
                Err(Error::Io(io::Error::from_raw_os_error(libc::EMFILE)))
            } else {
                Ok(7)
            }
        });
        assert_eq!(r.unwrap(), 7);
        let mut calls = 0;
        let _ = retry_transient("test", || -> Result<(), Error> {
            calls += 1;
            Err(Error::NotFound)
        });
        assert_eq!(calls, 1, "permanent errors are not retried");
        assert_eq!(classify(&Error::ReadOnly), Category::Critical);
        assert_eq!(classify(&Error::InvalidJson), Category::Validation);
    }
}
