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
        Error::ReadOnly | Error::Corrupt { .. } | Error::Format(_) => Category::Critical,
        Error::NotFound
        | Error::AlreadyExists
        | Error::Conflict
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

#[cfg(test)]
mod tests {
    use super::*;

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
