//! `Files`: the files a database writes and reads — the I/O state (WAL writer, the
//! data file being written and its length) and the data file generations readers may
//! use (two while a compaction swaps them).

use std::sync::Arc;

use crate::data::file::DataFile;
use crate::lock_order::{Level, OrderedGuard, OrderedMutex, OrderedRwLock};
use crate::wal::writer::WalWriter;

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
}

/// Lock order: `io` ([`Level::Io`]) may be taken holding only the maintenance lock;
/// under it the commit lock, the collections, `docs`, the readable generations and the
/// sync state may be taken. The readable generations ([`Level::Files`]) may be taken
/// under anything but the sync state, and nothing is taken while they are held.
pub(crate) struct Files {
    io: OrderedMutex<Io>,
    /// Readable data file generations (two while a compaction swaps them).
    readable: OrderedRwLock<Vec<Arc<DataFile>>>,
}

impl Files {
    pub(crate) fn new(io: Io) -> Files {
        let current = io.data.clone();
        Files {
            io: OrderedMutex::new(Level::Io, io),
            readable: OrderedRwLock::new(Level::Files, vec![current]),
        }
    }

    /// The I/O state, locked.
    pub(crate) fn io(&self) -> OrderedGuard<'_, Io> {
        self.io.lock()
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
