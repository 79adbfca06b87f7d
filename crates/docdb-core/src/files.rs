//! `Files`: the files a database writes and reads — the I/O state (WAL writer, the
//! data file being written and its length) and the data file generations readers may
//! use (two while a compaction swaps them).

use std::sync::Arc;

use crate::data::file::DataFile;
use crate::lock_order::{Level, OrderedGuard, OrderedMutex, OrderedRwLock};
use crate::wal::writer::WalWriter;
use parking_lot::Condvar;

/// State owned by whoever writes files: the syncer, a checkpoint, a compaction. A plain
/// record: it is only reachable through [`Files::io`]'s lock, which is its invariant.
pub(crate) struct Io {
    pub wal: WalWriter,
    pub data: Arc<DataFile>,
    /// End of what has been written to `data`.
    pub data_len: u64,
    /// Highest sequence number written to the WAL.
    pub last_written_seq: u64,
    /// Emptied buffers of the last batch written, swapped in for the next batch's WAL
    /// and data bytes so staging does not regrow them from nothing.
    pub spare: (Vec<u8>, Vec<u8>),
    /// The checkpoint last stored: a checkpoint that would store the same one has
    /// nothing to make durable and skips its fsyncs (closing an idle database is free).
    pub checkpointed: crate::checkpoint::Checkpoint,
    /// The `INDEX` file on disk, when it is true for the current data generation.
    pub index_snapshot: Option<crate::index_snapshot::OnDisk>,
    /// A batch is written but its durability is the shared log's to give: [`Files::io`]
    /// waits until its completion ([`Files::io_in_flight`]) ends, so nothing sees a
    /// written-but-not-durable state (a checkpoint would cover a batch that may fail).
    pub in_flight: bool,
}

/// Lock order: `io` ([`Level::Io`]) may be taken holding only the maintenance lock;
/// under it the commit lock, the collections, `docs`, the readable generations and the
/// sync state may be taken. The readable generations ([`Level::Files`]) may be taken
/// under anything but the sync state, and nothing is taken while they are held.
pub(crate) struct Files {
    io: OrderedMutex<Io>,
    /// Signalled when a batch in flight ends (`Io::in_flight` cleared).
    settled: Condvar,
    /// Readable data file generations (two while a compaction swaps them).
    readable: OrderedRwLock<Vec<Arc<DataFile>>>,
}

impl Files {
    pub(crate) fn new(io: Io) -> Files {
        let current = io.data.clone();
        Files {
            io: OrderedMutex::new(Level::Io, io),
            settled: Condvar::new(),
            readable: OrderedRwLock::new(Level::Files, vec![current]),
        }
    }

    /// The I/O state, locked, once no batch is in flight.
    pub(crate) fn io(&self) -> OrderedGuard<'_, Io> {
        let mut io = self.io.lock();
        while io.in_flight {
            io.wait(&self.settled);
        }
        io
    }

    /// The I/O state of the batch in flight, for its completion: locked without
    /// waiting; the batch is settled (and the waiters woken) when the guard drops,
    /// also if the completion unwinds.
    pub(crate) fn io_in_flight(&self) -> InFlight<'_> {
        InFlight {
            io: self.io.lock(),
            settled: &self.settled,
        }
    }

    /// The readable file of `generation`; `None` once a compaction retired it.
    pub(crate) fn readable(&self, generation: u64) -> Option<Arc<DataFile>> {
        self.readable
            .read()
            .iter()
            .find(|f| f.generation == generation)
            .cloned()
    }

    /// Makes a new generation readable (a compaction's switch).
    pub(crate) fn add_readable(&self, file: Arc<DataFile>) {
        self.readable.write().push(file);
    }

    /// Retires a generation: readers looking for it look their version up again.
    pub(crate) fn retire(&self, generation: u64) {
        self.readable.write().retain(|f| f.generation != generation);
    }
}

/// [`Files::io_in_flight`]'s guard: the I/O state, settled when dropped.
pub(crate) struct InFlight<'a> {
    io: OrderedGuard<'a, Io>,
    settled: &'a Condvar,
}

impl std::ops::Deref for InFlight<'_> {
    type Target = Io;
    fn deref(&self) -> &Io {
        &self.io
    }
}

impl std::ops::DerefMut for InFlight<'_> {
    fn deref_mut(&mut self) -> &mut Io {
        &mut self.io
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.io.in_flight = false;
        self.settled.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::wal::WalPos;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn files(dir: &std::path::Path) -> Files {
        let storage = crate::storage::default_storage();
        let wal = WalWriter::create(storage.clone(), dir, 1, 1 << 20).unwrap();
        let path = crate::data::file::data_path(dir, 1);
        let data = DataFile::create(&*storage, dir, 1, path).unwrap();
        Files::new(Io {
            wal,
            data: Arc::new(data),
            data_len: 0,
            last_written_seq: 0,
            spare: (Vec::new(), Vec::new()),
            checkpointed: Checkpoint {
                seq: 0,
                wal: WalPos {
                    segment: 1,
                    offset: 0,
                },
                data_generation: 1,
                data_len: 0,
            },
            index_snapshot: None,
            in_flight: false,
        })
    }

    /// While a batch is in flight, whoever takes the I/O state (a checkpoint, a
    /// compaction, the next batch) waits for its completion, which takes it at once;
    /// the completion settles it also when it unwinds.
    #[test]
    fn the_io_state_waits_for_the_batch_in_flight() {
        let d = tempfile::tempdir().unwrap();
        let f = files(d.path());
        f.io().in_flight = true;
        let got = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let io = f.io();
                assert!(!io.in_flight);
                got.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(!got.load(Ordering::SeqCst), "io() did not wait");
            let mut c = f.io_in_flight();
            c.last_written_seq = 7;
            drop(c);
        });
        assert!(got.load(Ordering::SeqCst));
        assert_eq!(f.io().last_written_seq, 7);
        // A completion that panics still settles.
        f.io().in_flight = true;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _c = f.io_in_flight();
            panic!("injected panic in a completion");
        }));
        assert!(r.is_err());
        assert!(!f.io().in_flight);
    }
}
