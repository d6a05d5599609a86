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
///
/// A batch a partitioned stream split over several logs (`streams::route`) completes
/// once every part is durable; its offsets are then those of different logs, so
/// `first_offset` is the first part's, [`Committed::last_offset`] the last part's,
/// and `spread` says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Offset of the batch's first record.
    pub first_offset: u64,
    /// Number of records in the batch.
    pub records: u32,
    /// Offset of the batch's last record (of its last part, when spread).
    last: u64,
    /// The log the batch's last part went to (`streams::Router::log_index`; 0 for a
    /// log on its own).
    pub log: u32,
    /// The batch was split over several logs.
    pub spread: bool,
}

impl Committed {
    /// The commit of `records` records from `first_offset`, in one log.
    pub fn new(first_offset: u64, records: u32) -> Committed {
        assert!(records > 0, "a batch holds at least one record");
        Committed {
            first_offset,
            records,
            last: first_offset + u64::from(records) - 1,
            log: 0,
            spread: false,
        }
    }

    /// Offset of the batch's last record. A batch always holds at least one record.
    pub fn last_offset(&self) -> u64 {
        self.last
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
            DONE => Some(Ok(Committed::new(
                self.first_offset.load(Ordering::Relaxed),
                self.records,
            ))),
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
    /// The batch's (last part's) slot.
    slot: Arc<Slot>,
    /// The earlier parts of a batch split over several logs, in record order.
    earlier: Vec<Arc<Slot>>,
    /// The log of `slot`, reported in [`Committed::log`].
    log: u32,
}

impl Completion {
    pub(crate) fn new(slot: Arc<Slot>) -> Self {
        Completion {
            slot,
            earlier: Vec::new(),
            log: 0,
        }
    }

    /// Marks the batch as gone to log `log` (`streams::Router::log_index`).
    pub fn in_log(mut self, log: u32) -> Self {
        self.log = log;
        self
    }

    /// One completion for the parts of a batch split over several logs, in record
    /// order: it resolves once every part is durable, or with the first part's error.
    ///
    /// # Panics
    /// If `parts` is empty.
    pub fn join(mut parts: Vec<Completion>) -> Completion {
        let mut last = parts.pop().expect("a batch has at least one part");
        let mut earlier = Vec::new();
        for p in parts {
            earlier.extend(p.earlier);
            earlier.push(p.slot);
        }
        earlier.append(&mut last.earlier);
        last.earlier = earlier;
        last
    }

    fn combine(&self) -> Option<Result<Committed, AppendError>> {
        let mut records = 0u32;
        let mut first = None;
        for s in &self.earlier {
            match s.poll_result()? {
                Ok(c) => {
                    records += c.records;
                    first.get_or_insert(c.first_offset);
                }
                Err(e) => return Some(Err(e)),
            }
        }
        Some(self.slot.poll_result()?.map(|c| Committed {
            first_offset: first.unwrap_or(c.first_offset),
            records: records + c.records,
            last: c.last_offset(),
            log: self.log,
            spread: !self.earlier.is_empty(),
        }))
    }

    /// The result if it is already known; never blocks.
    pub fn try_result(&self) -> Option<Result<Committed, AppendError>> {
        self.combine()
    }

    /// Blocks the calling thread until the batch is durable or has failed.
    ///
    /// # Errors
    /// The [`AppendError`] the writer reported for this batch.
    pub fn wait(&self) -> Result<Committed, AppendError> {
        for slot in self.earlier.iter().chain(std::iter::once(&self.slot)) {
            wait_slot(slot);
        }
        self.combine().expect("every part is done")
    }
}

/// Blocks until `slot` is done or failed.
fn wait_slot(slot: &Slot) {
    if slot.poll_result().is_some() {
        return;
    }
    let mut guard = slot.lock.lock().unwrap_or_else(|e| e.into_inner());
    slot.parked.fetch_add(1, Ordering::SeqCst);
    // SeqCst pairs with the writer's state store; see Slot::wake_all.
    while slot.state.load(Ordering::SeqCst) == PENDING {
        guard = slot.cond.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
    slot.parked.fetch_sub(1, Ordering::SeqCst);
}

impl Future for Completion {
    type Output = Result<Committed, AppendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        for slot in self.earlier.iter().chain(std::iter::once(&self.slot)) {
            if slot.poll_result().is_some() {
                continue;
            }
            slot.waker.register(cx.waker());
            if slot.poll_result().is_none() {
                return Poll::Pending;
            }
        }
        Poll::Ready(self.combine().expect("every part is done"))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::AtomicUsize,
        task::{Wake, Waker},
    };

    use super::*;

    /// Counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(c: &mut Completion, waker: &Waker) -> Poll<Result<Committed, AppendError>> {
        Pin::new(c).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_joined_completion_waits_for_every_part_completed_in_any_order() {
        let slots: Vec<Arc<Slot>> = [3, 2, 4].into_iter().map(Slot::new).collect();
        let parts = slots
            .iter()
            .enumerate()
            .map(|(i, s)| Completion::new(s.clone()).in_log(i as u32 + 1))
            .collect();
        let mut joined = Completion::join(parts);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        assert!(poll(&mut joined, &waker).is_pending());
        // The last part first, then the middle one: still pending, and woken each time
        // the part it waits on completes.
        slots[2].complete(100);
        assert!(poll(&mut joined, &waker).is_pending());
        assert!(joined.try_result().is_none());
        slots[0].complete(10);
        assert!(
            count.0.load(Ordering::SeqCst) >= 1,
            "woken by the part it waited on"
        );
        assert!(poll(&mut joined, &waker).is_pending());
        let before = count.0.load(Ordering::SeqCst);
        slots[1].complete(50);
        assert!(
            count.0.load(Ordering::SeqCst) > before,
            "woken by the last pending part"
        );
        let Poll::Ready(Ok(c)) = poll(&mut joined, &waker) else {
            panic!("every part is durable");
        };
        assert_eq!(c.records, 9);
        assert_eq!(c.first_offset, 10);
        assert_eq!(c.last_offset(), 103);
        assert_eq!(c.log, 3);
        assert!(c.spread);
        assert_eq!(joined.wait().unwrap(), c);
    }

    #[test]
    fn a_joined_completion_fails_with_a_failed_part() {
        let slots: Vec<Arc<Slot>> = [1, 1, 1].into_iter().map(Slot::new).collect();
        let joined = Completion::join(slots.iter().map(|s| Completion::new(s.clone())).collect());
        slots[0].complete(0);
        slots[1].fail(AppendError::Closed);
        slots[2].complete(5);
        assert!(matches!(
            joined.try_result(),
            Some(Err(AppendError::Closed))
        ));
        assert!(matches!(joined.wait(), Err(AppendError::Closed)));
        // One part alone is no spread.
        let one = Slot::new(2);
        let c = Completion::join(vec![Completion::new(one.clone())]);
        one.complete(7);
        let done = c.wait().unwrap();
        assert_eq!(
            (done.first_offset, done.last_offset(), done.spread),
            (7, 8, false)
        );
    }
}
