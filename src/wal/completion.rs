//! Completion handles: how a producer learns that its batch is durable.
//!
//! One handle per batch (never per record). The writer fills in the batch's first
//! offset or an error, then wakes whoever waits: the async task awaiting the handle (a
//! `Future`; polling needs `&mut`, so there is one) and any number of threads blocked
//! in `wait` (it takes `&self`). Waking costs the writer an atomic store, `Waker::wake`
//! and one load; it takes a lock only when a thread is blocked in `wait`.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Condvar, Mutex, OnceLock,
        atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use atomic_waker::AtomicWaker;

use crate::error::AppendError;

const PENDING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;

/// The offsets a durable batch received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Offset of the batch's first record.
    pub first_offset: u64,
    /// Number of records in the batch.
    pub records: u32,
}

impl Committed {
    /// Offset of the batch's last record. A batch always holds at least one record.
    pub fn last_offset(&self) -> u64 {
        self.first_offset + u64::from(self.records) - 1
    }
}

/// State shared between the writer and the producer's handle.
#[derive(Debug)]
pub(crate) struct Slot {
    state: AtomicU8,
    first_offset: AtomicU64,
    records: u32,
    error: OnceLock<AppendError>,
    /// The task awaiting the completion as a future.
    waker: AtomicWaker,
    /// Threads blocked in `Completion::wait` sleep on `cond` under `lock`; `parked`
    /// counts them so that the writer skips the lock when there are none.
    lock: Mutex<()>,
    cond: Condvar,
    parked: AtomicU32,
}

impl Slot {
    pub(crate) fn new(records: u32) -> Arc<Slot> {
        Arc::new(Slot {
            state: AtomicU8::new(PENDING),
            first_offset: AtomicU64::new(0),
            records,
            error: OnceLock::new(),
            waker: AtomicWaker::new(),
            lock: Mutex::new(()),
            cond: Condvar::new(),
            parked: AtomicU32::new(0),
        })
    }

    /// Called by the writer once the batch is durable (or written, in a non-durable
    /// fsync mode).
    pub(crate) fn complete(&self, first_offset: u64) {
        self.first_offset.store(first_offset, Ordering::Relaxed);
        // SeqCst (it includes Release: a waiter that sees DONE also sees first_offset)
        // orders this store before the load of `parked` in wake_all; see there.
        let prev = self.state.swap(DONE, Ordering::SeqCst);
        debug_assert_eq!(prev, PENDING, "batch completed twice");
        self.wake_all();
    }

    /// Called by the writer when the batch will never be durable.
    pub(crate) fn fail(&self, err: AppendError) {
        let _ = self.error.set(err);
        let prev = self.state.swap(FAILED, Ordering::SeqCst);
        debug_assert_eq!(prev, PENDING, "batch completed twice");
        self.wake_all();
    }

    fn wake_all(&self) {
        self.waker.wake();
        // The state store (SeqCst) precedes this load (SeqCst); a waiting thread
        // increments `parked` (SeqCst) before it re-checks the state (SeqCst). In the
        // single order of SeqCst operations one of the two sees the other: either we see
        // parked > 0 and notify under the lock the waiter holds until it sleeps, or it
        // sees the new state and does not sleep.
        if self.parked.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cond.notify_all();
        }
    }

    fn poll_result(&self) -> Option<Result<Committed, AppendError>> {
        // Acquire pairs with the Release in complete/fail.
        match self.state.load(Ordering::Acquire) {
            PENDING => None,
            DONE => Some(Ok(Committed {
                first_offset: self.first_offset.load(Ordering::Relaxed),
                records: self.records,
            })),
            _ => Some(Err(self
                .error
                .get()
                .cloned()
                .unwrap_or(AppendError::Closed))),
        }
    }
}

/// A producer's handle on one appended batch.
///
/// Await it, or call [`Completion::wait`] from a thread that may block; several threads
/// may wait on one `&Completion`. It is not `Clone`: a second handle awaited from
/// another task would not be woken. Dropping it does not cancel the batch: the records
/// are still written.
#[derive(Debug)]
pub struct Completion {
    slot: Arc<Slot>,
}

impl Completion {
    pub(crate) fn new(slot: Arc<Slot>) -> Self {
        Completion { slot }
    }

    /// The result if it is already known; never blocks.
    pub fn try_result(&self) -> Option<Result<Committed, AppendError>> {
        self.slot.poll_result()
    }

    /// Blocks the calling thread until the batch is durable or has failed.
    ///
    /// # Errors
    /// The [`AppendError`] the writer reported for this batch.
    pub fn wait(&self) -> Result<Committed, AppendError> {
        if let Some(r) = self.slot.poll_result() {
            return r;
        }
        let slot = &*self.slot;
        let mut guard = slot.lock.lock().unwrap_or_else(|e| e.into_inner());
        slot.parked.fetch_add(1, Ordering::SeqCst);
        let r = loop {
            // SeqCst pairs with the writer's state store; see Slot::wake_all.
            if slot.state.load(Ordering::SeqCst) != PENDING
                && let Some(r) = slot.poll_result()
            {
                break r;
            }
            guard = slot.cond.wait(guard).unwrap_or_else(|e| e.into_inner());
        };
        slot.parked.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

impl Future for Completion {
    type Output = Result<Committed, AppendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.slot.poll_result() {
            return Poll::Ready(r);
        }
        self.slot.waker.register(cx.waker());
        match self.slot.poll_result() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}
