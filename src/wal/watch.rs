//! Waking the threads that follow the committed offset, without a lock on the commit
//! path: a condition variable for followers that may block (`wait_committed_beyond`),
//! taken only when one is waiting, and a [`Doorbell`] for the one follower that runs
//! an event loop (the fan-out core), written only when it announced a sleep.

use std::{
    os::fd::RawFd,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering, fence},
    },
    time::Duration,
};

use super::Inner;
use crate::ring::Doorbell;

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
