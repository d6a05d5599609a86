//! The writer's counters, read by `/stats` and `/metrics`. All are Relaxed: each is a
//! figure on its own, and none orders any other memory access.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::histogram::MicrosHistogram;

/// Counters the writer keeps; read by `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Batches accepted into the ring.
    pub batches_appended: AtomicU64,
    /// Records made durable (or written, under a non-durable policy).
    pub records_committed: AtomicU64,
    /// Framed bytes made durable.
    pub bytes_committed: AtomicU64,
    /// Groups written (under `always`, each made durable by an fdatasync of its own or,
    /// past two fdatasyncs in flight, by one shared with the groups written beside it).
    pub groups_committed: AtomicU64,
    /// fdatasync calls completed.
    pub fsyncs: AtomicU64,
    /// Total time spent waiting for fdatasync, in nanoseconds.
    pub fsync_ns_total: AtomicU64,
    /// Longest fdatasync seen, in nanoseconds.
    pub fsync_ns_max: AtomicU64,
    /// fdatasync times, one per fdatasync (a group's write submitted → its fdatasync
    /// completed; a shared or lone sync from its own submission). For percentiles in
    /// /stats and a histogram in /metrics.
    pub commit: MicrosHistogram,
    /// Writes that failed with ENOSPC/EDQUOT (batches failed with DiskFull).
    pub disk_full_errors: AtomicU64,
    /// Writes that failed for other reasons.
    pub write_errors: AtomicU64,
    /// Segments sealed and replaced by a new one.
    pub segments_rotated: AtomicU64,
    /// Segments removed by retention.
    pub segments_purged: AtomicU64,
    /// Spare segments pre-written with zeros (see `segment_prewrite`).
    pub spares_prepared: AtomicU64,
    /// Rotations into a pre-written spare.
    pub spares_used: AtomicU64,
    /// Rotations that found no spare ready and created an empty segment.
    pub spares_missed: AtomicU64,
    /// Spares not prepared: under two segments of free space, or an I/O error.
    pub spares_skipped: AtomicU64,
    /// 1 while a spare is ready for the next rotation.
    pub spares_ready: AtomicU64,
    /// Damaged ranges recovery found in the active segment at open (bad frames with
    /// valid records after them): left in place, skipped by readers. Set once.
    pub recovery_damaged_ranges: AtomicU64,
    /// Damaged ranges live readers (read API, subscribers) skipped, each time one was
    /// met: a range read by three readers counts three.
    pub damaged_ranges_skipped: AtomicU64,
    /// Records that arrived more than `time_skew_ms_max` below the running maximum of
    /// receive time, or were written more than `time_skew_ms_max` after they were
    /// received: `until` reads may miss them (see `wal::timeindex`).
    pub time_skew_exceeded: AtomicU64,
    /// I/O errors on time indexes (`.tix`): at open, at rotation, on a write or a
    /// sync. Each was logged and the index dropped (rebuilt at the next open); never
    /// fatal, as the index is derived from the log.
    pub time_index_errors: AtomicU64,
}

impl WalStats {
    /// Counts one completed fdatasync that took `ns` nanoseconds (since its group's
    /// write was submitted, or since the lone sync was).
    pub(crate) fn record_sync(&self, ns: u64) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_ns_total.fetch_add(ns, Ordering::Relaxed);
        self.fsync_ns_max.fetch_max(ns, Ordering::Relaxed);
        self.commit.record_ns(ns);
    }
}
