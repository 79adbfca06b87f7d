//! Index builds running off their database's queue (CreateIndex).
//!
//! A CreateIndex is taken from its database's queue like any request, but the build
//! (which reads every document of the collection) runs on a thread of its own, so the
//! database's later requests are served while it runs; the CreateIndex is answered
//! from that thread when the index is built and its definition durable, or failed.
//!
//! - At most `limits.max_index_builds` run at once, server-wide; one more is answered
//!   at once with an error naming the key (nothing queued, nothing started).
//! - A build holds its database's handle, so idle close, CloseDB and eviction leave
//!   that database open until the build ends (then idle close closes it).
//! - DropDB cancels the builds of its database (the pool asks, see
//!   [`crate::pool::Pool::set_drop_hook`]); shutdown cancels every build and refuses
//!   new ones. A cancelled build stops within 1024 documents and leaves nothing: its
//!   definition is written only once it is complete, and entries are never stored.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use docdb_protocol::text;
use parking_lot::Mutex;

/// Why a build was cancelled.
const GO: u8 = 0;
const DROPPED: u8 = 1;
const STOPPING: u8 = 2;

struct Running {
    key: u64,
    db: u64,
    cancel: Arc<AtomicU8>,
}

#[derive(Default)]
struct State {
    stopping: bool,
    next: u64,
    running: Vec<Running>,
}

/// The builds running now (cheap to clone: a shared handle).
#[derive(Clone)]
pub struct IndexBuilds {
    max: usize,
    state: Arc<Mutex<State>>,
    /// Test hook: each cancel check sleeps this long (slows a build down).
    #[cfg(feature = "test-hooks")]
    delay: std::time::Duration,
}

/// One running build's place; dropping it frees the place.
pub struct Permit {
    state: Arc<Mutex<State>>,
    key: u64,
    cancel: Arc<AtomicU8>,
    #[cfg(feature = "test-hooks")]
    delay: std::time::Duration,
}

impl IndexBuilds {
    /// Allows `max` builds at once.
    pub fn new(max: usize) -> IndexBuilds {
        IndexBuilds {
            max,
            state: Arc::default(),
            #[cfg(feature = "test-hooks")]
            delay: std::env::var("DOCDB_TEST_INDEX_BUILD_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_millis)
                .unwrap_or_default(),
        }
    }

    /// A place for a build of database `db`, or the error text to answer.
    pub fn start(&self, db: u64) -> Result<Permit, String> {
        let mut st = self.state.lock();
        if st.stopping {
            return Err(text::SHUTTING_DOWN.to_owned());
        }
        if st.running.len() >= self.max {
            return Err(text::index_builds_busy(self.max));
        }
        st.next += 1;
        let key = st.next;
        let cancel = Arc::new(AtomicU8::new(GO));
        st.running.push(Running {
            key,
            db,
            cancel: cancel.clone(),
        });
        Ok(Permit {
            state: self.state.clone(),
            key,
            cancel,
            #[cfg(feature = "test-hooks")]
            delay: self.delay,
        })
    }

    /// Cancels the builds of database `db` (it is being dropped).
    pub fn cancel_db(&self, db: u64) {
        for r in self.state.lock().running.iter().filter(|r| r.db == db) {
            let _ = r
                .cancel
                .compare_exchange(GO, DROPPED, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Cancels every build and refuses new ones (the server is stopping).
    pub fn stop_all(&self) {
        let mut st = self.state.lock();
        st.stopping = true;
        for r in &st.running {
            let _ = r
                .cancel
                .compare_exchange(GO, STOPPING, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Builds running now.
    pub fn running(&self) -> usize {
        self.state.lock().running.len()
    }
}

impl Permit {
    /// Whether the build should stop (asked by the engine every 1024 documents).
    pub fn cancelled(&self) -> bool {
        #[cfg(feature = "test-hooks")]
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        self.cancel.load(Ordering::Acquire) != GO
    }

    /// The text to answer a cancelled build with.
    pub fn cancel_text(&self) -> &'static str {
        match self.cancel.load(Ordering::Acquire) {
            DROPPED => text::INDEX_BUILD_DB_DROPPED,
            _ => text::INDEX_BUILD_STOPPING,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.state.lock().running.retain(|r| r.key != self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_are_bounded_and_cancelled_by_database_or_all() {
        let b = IndexBuilds::new(2);
        let p1 = b.start(1).unwrap();
        let p2 = b.start(2).unwrap();
        let e = b.start(3).err().unwrap();
        assert!(e.contains("limits.max_index_builds"), "{e}");
        assert_eq!(b.running(), 2);
        b.cancel_db(1);
        assert!(p1.cancelled());
        assert_eq!(p1.cancel_text(), text::INDEX_BUILD_DB_DROPPED);
        assert!(!p2.cancelled());
        drop(p1);
        let p3 = b.start(3).unwrap();
        b.stop_all();
        assert!(p2.cancelled() && p3.cancelled());
        assert_eq!(p2.cancel_text(), text::INDEX_BUILD_STOPPING);
        assert_eq!(b.start(4).err().unwrap(), text::SHUTTING_DOWN);
        drop((p2, p3));
        assert_eq!(b.running(), 0);
    }
}
