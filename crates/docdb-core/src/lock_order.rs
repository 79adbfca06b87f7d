//! The engine's lock order, stated once and checked in debug builds.
//!
//! A database's locks are taken in this order (a thread holding one may take only
//! locks of a higher [`Level`]):
//!
//! ```text
//! Maintenance → Io → Commit → (collections → a collection's docs) → Files → Sync
//! ```
//!
//! The collections map and a collection's `docs` sit between `Commit` and `Files` but
//! are plain `parking_lot` locks (not checked here). Leaf locks — the snapshot
//! registry, the document cache's shards, the healing counters, the failure registry —
//! take nothing while held and may be taken under any of these.
//!
//! [`OrderedMutex`] and [`OrderedRwLock`] wrap `parking_lot` locks with their level.
//! In debug builds (and the crate's unit tests) each thread keeps a bit set of the
//! levels it holds, and taking a lock whose level is not above every level held
//! panics, naming both: an order violation shows up in any test that takes that path,
//! not only in the rare run that deadlocks. In release builds the check compiles to
//! nothing and the guards are the `parking_lot` guards plus a zero-sized token.

use std::ops::{Deref, DerefMut};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A lock's place in the order: lower levels are taken first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Level {
    /// `Maintenance`'s lock: serialises checkpoints and compactions.
    Maintenance = 0,
    /// `Files`' I/O state: the WAL writer and the data file being written.
    Io = 1,
    /// `GroupCommit`'s commit state: staging.
    Commit = 2,
    /// `Files`' readable data file generations.
    Files = 3,
    /// `GroupCommit`'s syncer hand-off state.
    Sync = 4,
}

#[cfg(any(debug_assertions, test))]
mod check {
    use super::Level;
    use std::cell::Cell;

    thread_local! {
        /// Bit `n` set: this thread holds a lock of level `n`.
        static HELD: Cell<u8> = const { Cell::new(0) };
    }

    pub(super) fn enter(level: Level) {
        HELD.with(|h| {
            let held = h.get();
            let bit = 1u8 << level as u8;
            // Every level at or above the new one must be free.
            let at_or_above = held & !(bit - 1);
            if at_or_above != 0 {
                const NAMES: [&str; 5] = ["Maintenance", "Io", "Commit", "Files", "Sync"];
                let highest = 7 - at_or_above.leading_zeros() as usize;
                let held = NAMES.get(highest).copied().unwrap_or("?");
                panic!(
                    "lock order violated: taking {level:?} while holding {held} \
                     (see lock_order.rs)"
                );
            }
            h.set(held | bit);
        });
    }

    pub(super) fn exit(level: Level) {
        // `try_with`: a guard dropped while the thread's locals are torn down.
        let _ = HELD.try_with(|h| h.set(h.get() & !(1u8 << level as u8)));
    }
}

/// Marks its level held from creation to drop (debug builds; zero-sized otherwise).
struct Token {
    #[cfg(any(debug_assertions, test))]
    level: Level,
}

impl Token {
    #[inline]
    fn enter(level: Level) -> Token {
        #[cfg(any(debug_assertions, test))]
        {
            check::enter(level);
            Token { level }
        }
        #[cfg(not(any(debug_assertions, test)))]
        {
            let _ = level;
            Token {}
        }
    }
}

impl Drop for Token {
    #[inline]
    fn drop(&mut self) {
        #[cfg(any(debug_assertions, test))]
        check::exit(self.level);
    }
}

/// A mutex with a place in the lock order.
pub(crate) struct OrderedMutex<T> {
    level: Level,
    lock: Mutex<T>,
}

/// A held [`OrderedMutex`].
pub(crate) struct OrderedGuard<'a, T> {
    // Unlocked before the token marks the level free.
    guard: MutexGuard<'a, T>,
    _token: Token,
}

impl<T> OrderedMutex<T> {
    pub(crate) fn new(level: Level, value: T) -> Self {
        OrderedMutex {
            level,
            lock: Mutex::new(value),
        }
    }

    /// Takes the lock; in debug builds, panics if a lock of this level or above is
    /// held by this thread.
    #[inline]
    pub(crate) fn lock(&self) -> OrderedGuard<'_, T> {
        let token = Token::enter(self.level);
        OrderedGuard {
            guard: self.lock.lock(),
            _token: token,
        }
    }
}

impl<T> OrderedGuard<'_, T> {
    /// Waits on `cv`, releasing the lock meanwhile. The level stays marked: the thread
    /// takes nothing while it waits.
    #[inline]
    pub(crate) fn wait(&mut self, cv: &Condvar) {
        cv.wait(&mut self.guard);
    }
}

impl<T> Deref for OrderedGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for OrderedGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A reader-writer lock with a place in the lock order.
pub(crate) struct OrderedRwLock<T> {
    level: Level,
    lock: RwLock<T>,
}

/// A held [`OrderedRwLock`], shared.
pub(crate) struct OrderedReadGuard<'a, T> {
    guard: RwLockReadGuard<'a, T>,
    _token: Token,
}

/// A held [`OrderedRwLock`], exclusive.
pub(crate) struct OrderedWriteGuard<'a, T> {
    guard: RwLockWriteGuard<'a, T>,
    _token: Token,
}

impl<T> OrderedRwLock<T> {
    pub(crate) fn new(level: Level, value: T) -> Self {
        OrderedRwLock {
            level,
            lock: RwLock::new(value),
        }
    }

    #[inline]
    pub(crate) fn read(&self) -> OrderedReadGuard<'_, T> {
        let token = Token::enter(self.level);
        OrderedReadGuard {
            guard: self.lock.read(),
            _token: token,
        }
    }

    #[inline]
    pub(crate) fn write(&self) -> OrderedWriteGuard<'_, T> {
        let token = Token::enter(self.level);
        OrderedWriteGuard {
            guard: self.lock.write(),
            _token: token,
        }
    }
}

impl<T> Deref for OrderedReadGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> Deref for OrderedWriteGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for OrderedWriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_taken_in_order_pass_and_release_their_levels() {
        let io = OrderedMutex::new(Level::Io, ());
        let commit = OrderedMutex::new(Level::Commit, ());
        let sync = OrderedMutex::new(Level::Sync, ());
        {
            let _i = io.lock();
            let _c = commit.lock();
            let _s = sync.lock();
        }
        // Released out of order, then taken again: no level stays marked.
        let i = io.lock();
        let c = commit.lock();
        drop(i);
        drop(c);
        let _s = sync.lock();
    }

    #[test]
    fn taking_a_lower_level_under_a_higher_one_panics() {
        let io = OrderedMutex::new(Level::Io, ());
        let sync = OrderedMutex::new(Level::Sync, ());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _s = sync.lock();
            let _i = io.lock();
        }));
        let msg = r.expect_err("Io under Sync must panic");
        let text = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(text.contains("lock order violated: taking Io"), "{text}");
        // The unwind released Sync: Io is fine now.
        drop(io.lock());
    }

    #[test]
    fn the_same_lock_twice_panics_instead_of_deadlocking() {
        let files = OrderedRwLock::new(Level::Files, ());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _a = files.read();
            let _b = files.read();
        }));
        assert!(r.is_err());
        drop(files.write());
    }
}
