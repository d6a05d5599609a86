//! The read-only side of the log: what the stages that only read may touch.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use super::{
    CommitFollower, Inner, LogConfig, Reader, WalStats, WriterFailure, watch::wait_beyond,
};

/// A read-only handle on the open log: the committed end, the start offset, readers,
/// the follower's wake-up, the counters and the writer's failure. The fan-out, the read
/// API and `/stats` hold this, never a [`super::Log`] or an [`super::Appender`], so
/// nothing in their types can append to the log or stop its writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogView {
    pub(super) inner: Arc<Inner>,
}

impl LogView {
    /// Exclusive end of the committed records (the next offset to be assigned once
    /// everything queued is committed is at least this).
    pub fn committed_end(&self) -> u64 {
        self.inner.committed_end.load(Ordering::Acquire)
    }

    /// Offset of the oldest record still stored.
    pub fn start_offset(&self) -> u64 {
        self.inner.start_offset.load(Ordering::Acquire)
    }

    /// The settings the log runs with.
    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WalStats {
        &self.inner.stats
    }

    /// How the writer writes groups: `direct` where the setting asked for it and the
    /// filesystem took it, else `buffered`, with the reason a `direct` setting fell
    /// back.
    pub fn write_mode(&self) -> (super::WriteMode, Option<&str>) {
        let mode = if self.inner.direct_writes.load(Ordering::Relaxed) {
            super::WriteMode::Direct
        } else {
            super::WriteMode::Buffered
        };
        (mode, self.inner.direct_refused.get().map(String::as_str))
    }

    /// Whether spare segments are pre-written, and why `segment_prewrite = "auto"`
    /// left that off, if it did.
    pub fn segment_prewrite(&self) -> (bool, Option<&str>) {
        (
            self.inner.prewrite.load(Ordering::Relaxed),
            self.inner.prewrite_off.get().map(String::as_str),
        )
    }

    /// The I/O driver the log runs (`Uring` or `Epoll`; the reactors follow it), and
    /// why `auto` took epoll.
    pub fn io_driver(&self) -> (super::IoDriver, Option<&str>) {
        (self.inner.io_driver, self.inner.why_epoll.as_deref())
    }

    /// Bytes live readers copied from the recent groups in memory, bytes they read from
    /// segment files, and the bytes the recent groups hold now.
    pub fn reader_sources(&self) -> (u64, u64, u64) {
        let r = &self.inner.recent;
        (
            r.bytes_from_memory.load(Ordering::Relaxed),
            r.bytes_from_files.load(Ordering::Relaxed),
            r.bytes_held.load(Ordering::Relaxed),
        )
    }

    /// Group buffers the writer mapped because none was free to reuse, since open.
    pub fn group_buffers_mapped(&self) -> u64 {
        self.inner.recent.buffers_mapped.load(Ordering::Relaxed)
    }

    /// Batches waiting in the ring now, and its capacity.
    pub fn ring_depth(&self) -> (usize, usize) {
        (self.inner.ring.len(), self.inner.ring.capacity())
    }

    /// Pushes refused because the ring was full, since open.
    pub fn ring_full_refusals(&self) -> u64 {
        self.inner.ring.full_refusals()
    }

    /// Why the writer stopped, if it stopped on an error.
    pub fn failure(&self) -> Option<WriterFailure> {
        self.inner.failure.get().cloned()
    }

    /// A reader positioned at `from` (clamped to the oldest stored record) that never
    /// reads past the committed offset.
    ///
    /// # Errors
    /// An I/O error locating the segment.
    pub fn reader(&self, from: u64) -> Result<Reader, crate::error::ReadError> {
        Reader::open_live(self.inner.clone(), from)
    }

    /// The wake-up for the one event-loop follower of the committed offset (the
    /// fan-out core). Creates its eventfd on first call.
    ///
    /// # Errors
    /// The OS error if the eventfd cannot be created.
    pub fn follower(&self) -> std::io::Result<CommitFollower> {
        self.inner.commit_watch.open_follower()?;
        Ok(CommitFollower {
            inner: self.inner.clone(),
        })
    }

    /// Takes the oldest commit note not taken yet: `(committed end, Unix ns, framed
    /// bytes)`: when a group ending there was committed, and the framed bytes (record
    /// headers and payloads) the writer had committed with it since it started, in
    /// commit order. For the one follower that
    /// times commits (the aggregates); a note dropped because nobody took it is merged
    /// into the next one (see [`LogView::commit_notes_merged`]).
    pub fn take_commit_note(&self) -> Option<(u64, u64, u64)> {
        self.inner.commit_watch.times.take()
    }

    /// Commit notes merged into the next one because the queue was full (the follower
    /// fell more than [`crate::wal::COMMIT_NOTES_MAX`] groups behind).
    pub fn commit_notes_merged(&self) -> u64 {
        self.inner.commit_watch.times.merged()
    }

    /// Blocks until the committed end passes `offset` or `timeout` elapses; returns the
    /// committed end. For followers that run on their own thread.
    pub fn wait_committed_beyond(&self, offset: u64, timeout: Duration) -> u64 {
        wait_beyond(&self.inner, offset, timeout)
    }
}
