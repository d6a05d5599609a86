//! Waking the threads that follow the committed offset, without a lock on the commit
//! path: a condition variable for followers that may block (`wait_committed_beyond`),
//! taken only when one is waiting, and a [`Doorbell`] for the one follower that runs
//! an event loop (the fan-out core), written only when it announced a sleep. Beside
//! them, [`CommitTimes`]: when each group was committed, for the aggregates' ack
//! latency, noted by the writer without a syscall.

use std::{
    os::fd::RawFd,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering, fence},
    },
    time::Duration,
};

use crossbeam_queue::ArrayQueue;

use super::{Inner, now_ns};
use crate::ring::Doorbell;

/// Commit notes `CommitTimes` holds before it merges the oldest into the next.
/// Enough for 2 s of groups at 4,000 groups a second (the fan-out core, with no
/// subscriber, takes them once a second); 24 bytes each: 192 KiB.
pub const COMMIT_NOTES_MAX: usize = 8192;

/// The writer's side of the followers' wake-ups; one per log, in [`Inner`].
#[derive(Debug, Default)]
pub(crate) struct CommitWatch {
    lock: Mutex<()>,
    cond: Condvar,
    /// Number of threads blocked in `wait_beyond`; the writer skips the notify when 0.
    waiters: AtomicU64,
    /// The event-loop follower's doorbell. Its eventfd is created by the first
    /// [`super::LogView::follower`]; until then ringing it writes nothing.
    follower: Doorbell,
    /// When each group was committed.
    pub(crate) times: CommitTimes,
}

/// `(committed end, Unix ns, framed bytes committed)` for each group, in commit order
/// (the bytes are the writer's running total, so the difference between two notes is
/// exact even when notes between them were merged): pushed by the writer
/// just before it stores the new committed end (a clock read and a few atomic
/// operations on a bounded lock-free queue, no syscall, nothing that waits), taken by
/// one follower (the aggregates, on the fan-out core). Full, the queue drops its
/// oldest note: that note's records then take the next note's time, a little later
/// than their own (an upper bound; `commit_notes_merged_total` counts them).
#[derive(Debug)]
pub(crate) struct CommitTimes {
    notes: ArrayQueue<(u64, u64, u64)>,
    /// Notes merged into the next one because the queue was full.
    merged: AtomicU64,
}

impl Default for CommitTimes {
    fn default() -> Self {
        CommitTimes {
            notes: ArrayQueue::new(COMMIT_NOTES_MAX),
            merged: AtomicU64::new(0),
        }
    }
}

impl CommitTimes {
    /// The writer: the group ending at `end` is durable, and `bytes_end` framed bytes
    /// are committed with it (since the process started); called before
    /// `committed_end` is stored, so a follower that sees the new end finds the note
    /// (the queue's push is a Release, the end's store another, after it).
    pub(crate) fn note(&self, end: u64, bytes_end: u64) {
        if self.notes.force_push((end, now_ns(), bytes_end)).is_some() {
            // Relaxed: a counter for /stats.
            self.merged.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The oldest note not taken yet.
    pub(crate) fn take(&self) -> Option<(u64, u64, u64)> {
        self.notes.pop()
    }

    /// Notes merged so far (see the type's docs).
    pub(crate) fn merged(&self) -> u64 {
        self.merged.load(Ordering::Relaxed)
    }
}

impl CommitWatch {
    /// Called by the writer after each store of `committed_end` (and once on failure).
    pub(crate) fn notify(&self) {
        // One SeqCst fence serves both wake-ups. Blocking waiters: a waiter increments
        // `waiters` (SeqCst) before re-checking committed_end under the lock; the writer
        // stored committed_end before this fence, so either the waiter sees the new end
        // or this Relaxed load sees the waiter. The doorbell: the fence is the ringer's
        // fence of its handshake (see `ring::doorbell`), the committed_end store its work.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _g = self.lock.lock().expect("commit watch lock");
            self.cond.notify_all();
        }
        self.follower.ring_after_fence();
    }

    /// Creates the follower's eventfd if it has none. Idempotent.
    pub(crate) fn open_follower(&self) -> std::io::Result<()> {
        self.follower.open()
    }
}

/// Blocks until the committed end passes `offset`, the writer failed, or `timeout`
/// elapses; returns the committed end.
pub(crate) fn wait_beyond(inner: &Inner, offset: u64, timeout: Duration) -> u64 {
    let w = &inner.commit_watch;
    let end = inner.committed_end.load(Ordering::Acquire);
    if end > offset || inner.failure.get().is_some() {
        return end;
    }
    let guard = w.lock.lock().expect("commit watch lock");
    // SeqCst: pairs with the writer's fence in `notify` (see there).
    w.waiters.fetch_add(1, Ordering::SeqCst);
    let end = inner.committed_end.load(Ordering::SeqCst);
    let end = if end > offset {
        end
    } else {
        let _ = w
            .cond
            .wait_timeout(guard, timeout)
            .expect("commit watch lock");
        inner.committed_end.load(Ordering::Acquire)
    };
    w.waiters.fetch_sub(1, Ordering::SeqCst);
    end
}

/// The wake-up of the one thread that follows the committed offset from an event loop
/// (the fan-out core): an eventfd to poll, written by the writer after a commit only
/// when the follower said it is about to sleep. No lock on the commit path.
#[derive(Debug, Clone)]
pub struct CommitFollower {
    pub(super) inner: Arc<Inner>,
}

impl CommitFollower {
    /// The eventfd to register with the event loop (readable after a wake-up).
    pub fn fd(&self) -> RawFd {
        self.inner.commit_watch.follower.fd()
    }

    /// Exclusive end of the committed records.
    pub fn committed_end(&self) -> u64 {
        self.inner.committed_end.load(Ordering::Acquire)
    }

    /// Announces a sleep. Returns false if the committed end already moved past `seen`
    /// (the caller must then not sleep).
    pub fn prepare_sleep(&self, seen: u64) -> bool {
        // Relaxed: the doorbell's fence orders this load after the announcement. A
        // failed writer is not a reason to stay awake: fail_everything notifies once.
        self.inner
            .commit_watch
            .follower
            .prepare_sleep(|| self.inner.committed_end.load(Ordering::Relaxed) != seen)
    }

    /// The sleep ended; resets the flag and the eventfd's counter.
    pub fn woke(&self) {
        self.inner.commit_watch.follower.woke();
    }
}
