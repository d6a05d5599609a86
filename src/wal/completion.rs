//! Completion handles: how a producer learns that its batch is durable.
//!
//! One handle per batch (never per record). The writer fills in the batch's first
//! offset or an error, then wakes whoever waits: a blocked thread (`wait`) or an async
//! task on another core (the handle is a `Future`). Waking never blocks the writer: it
//! is an atomic store plus `Waker::wake`.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    thread::Thread,
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
    waker: AtomicWaker,
}

impl Slot {
    pub(crate) fn new(records: u32) -> Arc<Slot> {
        Arc::new(Slot {
            state: AtomicU8::new(PENDING),
            first_offset: AtomicU64::new(0),
            records,
            error: OnceLock::new(),
            waker: AtomicWaker::new(),
        })
    }

    /// Called by the writer once the batch is durable (or written, in a non-durable
    /// fsync mode).
    pub(crate) fn complete(&self, first_offset: u64) {
        self.first_offset.store(first_offset, Ordering::Relaxed);
        // Release: a waiter that sees DONE also sees first_offset.
        let prev = self.state.swap(DONE, Ordering::Release);
        debug_assert_eq!(prev, PENDING, "batch completed twice");
        self.waker.wake();
    }

    /// Called by the writer when the batch will never be durable.
    pub(crate) fn fail(&self, err: AppendError) {
        let _ = self.error.set(err);
        let prev = self.state.swap(FAILED, Ordering::Release);
        debug_assert_eq!(prev, PENDING, "batch completed twice");
        self.waker.wake();
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
/// Await it, or call [`Completion::wait`] from a thread that may block. Dropping it does
/// not cancel the batch: the records are still written.
#[derive(Debug, Clone)]
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
        loop {
            if let Some(r) = self.slot.poll_result() {
                return r;
            }
            let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
            self.slot.waker.register(&waker);
            if let Some(r) = self.slot.poll_result() {
                return r;
            }
            std::thread::park();
        }
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

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}
