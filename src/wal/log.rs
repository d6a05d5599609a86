//! The open log: the state shared by every handle ([`Inner`]) and the handle that owns
//! the writer thread ([`Log`]). Opening validates the settings, recovers the directory
//! and starts the writer; dropping the log shuts the writer down cleanly.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64},
    },
    thread::JoinHandle,
};

use super::{
    Appender, Batch, LogConfig, LogView, RecoveryReport, WalStats, WriterFailure, recent::Recent,
    recovery, retention, uring, watch::CommitWatch, writer,
};
use crate::{error::OpenError, ring::BatchRing};

/// Shared between the [`Log`] handle, its views, its appenders, its readers and the writer.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: LogConfig,
    pub(crate) ring: BatchRing<Batch>,
    /// Exclusive end of the committed records: every offset below it is durable and
    /// readable. Written only by the writer, with Release; read with Acquire.
    pub(crate) committed_end: AtomicU64,
    /// Offset of the oldest record still on disk.
    pub(crate) start_offset: AtomicU64,
    /// Base offset of the active segment. Stored (Relaxed) before `active_written`.
    pub(crate) active_base: AtomicU64,
    /// Byte position in the active segment up to which committed records are written:
    /// live readers read no further. Past it lie groups still in flight or, in a
    /// pre-written segment, zeros; reading those costs a copy of up to a buffer per
    /// wake-up, and reading zeros the page cache does not hold costs disk reads that
    /// queue with the writer's. Stored with Release before `committed_end`.
    pub(crate) active_written: AtomicU64,
    /// Bumped by the writer each time a failed write truncates the active segment
    /// back. The offsets past the cut are given to other records, so a live reader
    /// that sees the epoch change drops what it buffered past the committed offset.
    /// The writer bumps it (Relaxed) after the cut and before it commits anything
    /// written after the cut; that commit's Release store of `committed_end` publishes
    /// it, so a reader that loads the epoch (Relaxed) after an Acquire load of
    /// `committed_end` sees every truncation made before the records it may read.
    pub(crate) truncation_epoch: AtomicU64,
    /// Set once, when the writer stops for good.
    pub(crate) failure: OnceLock<WriterFailure>,
    pub(crate) stats: WalStats,
    /// The most recent committed groups, for live readers (see `recent`).
    pub(crate) recent: Recent,
    /// The writer writes `O_DIRECT` (set once, by the writer at start, before it
    /// commits anything): `write_mode = "direct"` and the filesystem took it.
    pub(crate) direct_writes: AtomicBool,
    /// Why `write_mode = "direct"` fell back to buffered writes, if it did.
    pub(crate) direct_refused: OnceLock<String>,
    /// Spare segments are pre-written (set once, by the writer at start, beside
    /// `direct_writes`): `segment_prewrite` on, or `auto` on a filesystem not in memory.
    pub(crate) prewrite: AtomicBool,
    /// Why `segment_prewrite = "auto"` left pre-writing off, if it did.
    pub(crate) prewrite_off: OnceLock<String>,
    /// The driver `io_driver` resolved to: `Uring` or `Epoll`.
    pub(crate) io_driver: super::IoDriver,
    /// Why `auto` resolved to epoll (io_uring_setup's failure, explained).
    pub(crate) why_epoll: Option<String>,
    /// Wakes threads that follow the log (fan-out, `cat --follow` in-process).
    pub(crate) commit_watch: CommitWatch,
}

/// The open log. Owns the writer thread; dropping it shuts the writer down cleanly.
#[derive(Debug)]
pub struct Log {
    /// The read side, which the log hands out as [`Log::view`]; [`Log`] derefs to it.
    view: LogView,
    /// The writer thread, joined (and taken) by the first [`Log::shutdown`].
    writer: Mutex<Option<JoinHandle<()>>>,
    /// What recovery found at open; kept for the life of the log.
    report: RecoveryReport,
}

impl Log {
    /// Opens (creating if needed) and recovers the log in `config.dir`, then starts the
    /// writer thread.
    ///
    /// # Errors
    /// An invalid setting, a locked directory, io_uring unavailable (with its cause),
    /// an I/O error with its path, or corruption that recovery refuses to cut.
    pub fn open(config: LogConfig) -> Result<Log, OpenError> {
        config.validate()?;
        let chosen = uring::choose(config.io_driver)?;
        let recovered = recovery::recover(&config)?;
        let ring = BatchRing::new(config.ring_batches_max)
            .map_err(|e| OpenError::io("create eventfd", "", e))?;
        let inner = Arc::new(Inner {
            committed_end: AtomicU64::new(recovered.next_offset),
            start_offset: AtomicU64::new(recovered.start_offset),
            active_base: AtomicU64::new(recovered.active.base),
            active_written: AtomicU64::new(recovered.active.end_pos),
            config: config.clone(),
            ring,
            truncation_epoch: AtomicU64::new(0),
            failure: OnceLock::new(),
            stats: WalStats::default(),
            recent: Recent::new(config.recent_bytes_max),
            direct_writes: AtomicBool::new(false),
            direct_refused: OnceLock::new(),
            prewrite: AtomicBool::new(false),
            prewrite_off: OnceLock::new(),
            io_driver: chosen.driver,
            why_epoll: chosen.why_epoll,
            commit_watch: CommitWatch::default(),
        });
        let report = recovered.report.clone();
        // Relaxed: a figure for /stats, ordered with nothing.
        inner.stats.recovery_damaged_ranges.store(
            report.damaged_ranges.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        inner.stats.time_index_errors.store(
            report.time_index_errors as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        retention::apply(&inner, recovered.active.base);
        let disk = match chosen.ring {
            Some(ring) => writer::DiskChoice::Uring(Box::new(ring)),
            None => writer::DiskChoice::Threads,
        };
        let handle = writer::spawn(inner.clone(), disk, recovered)?;
        Ok(Log {
            view: LogView { inner },
            writer: Mutex::new(Some(handle)),
            report,
        })
    }

    /// A producer handle.
    pub fn appender(&self) -> Appender {
        Appender {
            inner: self.view.inner.clone(),
        }
    }

    /// The read-only side of the log, for the stages that only read (the fan-out, the
    /// read API, `/stats`): it cannot append or stop the writer.
    pub fn view(&self) -> LogView {
        self.view.clone()
    }

    /// What recovery found and did at open.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Stops taking batches, writes and syncs everything already taken, completes it,
    /// and stops the writer. Idempotent.
    pub fn shutdown(&self) {
        self.view.inner.ring.close();
        // Whether or not the writer announced a sleep: it must see the ring closed.
        self.view.inner.ring.wake_consumer();
        if let Some(h) = self.writer.lock().expect("writer handle lock").take() {
            let _ = h.join();
        }
    }
}

impl std::ops::Deref for Log {
    type Target = LogView;
    fn deref(&self) -> &LogView {
        &self.view
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}
