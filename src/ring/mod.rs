//! The bounded lock-free MPSC ring that carries batches from producers to the writer.
//!
//! It carries batches, not records: a producer (a reactor core, or a thread using the
//! library) frames many records into one buffer and pushes one entry. The queue is
//! crossbeam's `ArrayQueue` (a bounded array with head and tail on separate cache
//! lines); a full ring refuses the push and hands the batch back, which is the
//! backpressure signal: the producer stops reading from its sockets until there is room.
//!
//! The consumer (the writer) sleeps in `io_uring_enter` with a read pending on the
//! ring's [`Doorbell`]. Producers write its eventfd only when the consumer announced
//! that it is about to sleep, so a busy writer costs producers no system call.

pub mod doorbell;

use std::{
    io,
    os::fd::RawFd,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
};

use crossbeam_queue::ArrayQueue;

pub use doorbell::Doorbell;

/// Why a push was refused; the item comes back to the caller.
#[derive(Debug)]
pub enum PushError<T> {
    /// The ring holds `capacity` batches already: back off and retry.
    Full(T),
    /// The consumer is gone (shut down or failed); retrying will not help.
    Closed(T),
}

/// A bounded multi-producer single-consumer ring of batches with a consumer wake-up.
#[derive(Debug)]
pub struct BatchRing<T> {
    /// The queue itself; its capacity is `ring_batches_max`.
    queue: ArrayQueue<T>,
    /// Wakes the consumer out of `io_uring_enter`; rung after every successful push.
    doorbell: Doorbell,
    /// Producers between their check of `open` and the end of their push. The consumer
    /// drains only once this is zero after closing, so no batch is stranded.
    pushing: AtomicUsize,
    /// False once the consumer stops taking batches.
    open: AtomicBool,
    /// Pushes refused because the ring was full (a backpressure counter for /metrics).
    full_refusals: AtomicU64,
}

impl<T> BatchRing<T> {
    /// A ring holding at most `capacity` batches.
    ///
    /// # Errors
    /// The OS error if the eventfd cannot be created.
    pub fn new(capacity: usize) -> io::Result<Self> {
        assert!(capacity > 0, "ring capacity must be positive");
        Ok(BatchRing {
            queue: ArrayQueue::new(capacity),
            doorbell: Doorbell::new()?,
            pushing: AtomicUsize::new(0),
            open: AtomicBool::new(true),
            full_refusals: AtomicU64::new(0),
        })
    }

    /// Pushes a batch without blocking.
    ///
    /// # Errors
    /// [`PushError::Full`] when the ring is at capacity, [`PushError::Closed`] once the
    /// consumer has stopped; either way the batch is handed back untouched.
    pub fn push(&self, item: T) -> Result<(), PushError<T>> {
        // SeqCst on `pushing` and `open` orders this against the consumer's close():
        // either we see open == false, or the consumer sees pushing > 0 and waits.
        self.pushing.fetch_add(1, Ordering::SeqCst);
        if !self.open.load(Ordering::SeqCst) {
            self.pushing.fetch_sub(1, Ordering::SeqCst);
            return Err(PushError::Closed(item));
        }
        let r = self.queue.push(item);
        self.pushing.fetch_sub(1, Ordering::SeqCst);
        match r {
            Ok(()) => {
                // The push is the published work of the doorbell's handshake.
                self.doorbell.ring();
                Ok(())
            }
            Err(item) => {
                self.full_refusals.fetch_add(1, Ordering::Relaxed);
                Err(PushError::Full(item))
            }
        }
    }

    /// Consumer side: takes the next batch, if any.
    pub fn pop(&self) -> Option<T> {
        self.queue.pop()
    }

    /// Consumer side: announces an imminent sleep. Returns false if there is work
    /// after all (the caller must then not sleep).
    pub fn prepare_sleep(&self) -> bool {
        self.doorbell.prepare_sleep(|| !self.queue.is_empty())
    }

    /// Consumer side: the sleep ended (woken or not); producers need not write the fd.
    pub fn cancel_sleep(&self) {
        self.doorbell.cancel_sleep();
    }

    /// The eventfd the consumer waits on (read it to reset).
    pub fn wake_fd(&self) -> RawFd {
        self.doorbell.fd()
    }

    /// Wakes the consumer whether or not it announced a sleep (shutdown: the consumer
    /// must notice that the ring closed).
    pub fn wake_consumer(&self) {
        self.doorbell.force_ring();
    }

    /// Consumer side: refuse new pushes, then wait until no push is in progress. After
    /// this returns, `pop` until `None` sees every batch that was ever accepted.
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        while self.pushing.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }

    /// False once `close` was called.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Batches queued now (a snapshot, for stats).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True if no batch is queued now.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The ring's capacity in batches.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Pushes refused because the ring was full, since start.
    pub fn full_refusals(&self) -> u64 {
        self.full_refusals.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn full_ring_hands_the_batch_back_and_counts() {
        let r = BatchRing::new(2).unwrap();
        r.push(1).unwrap();
        r.push(2).unwrap();
        assert!(matches!(r.push(3), Err(PushError::Full(3))));
        assert_eq!(r.full_refusals(), 1);
        assert_eq!(r.pop(), Some(1));
        r.close();
        assert!(matches!(r.push(4), Err(PushError::Closed(4))));
        assert_eq!(r.pop(), Some(2));
        assert_eq!(r.pop(), None);
    }

    #[test]
    fn many_producers_lose_nothing() {
        let r = Arc::new(BatchRing::new(64).unwrap());
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let mut v = p << 32 | i;
                        loop {
                            match r.push(v) {
                                Ok(()) => break,
                                Err(PushError::Full(back)) => {
                                    v = back;
                                    std::thread::yield_now();
                                }
                                Err(PushError::Closed(_)) => unreachable!(),
                            }
                        }
                    }
                })
            })
            .collect();
        let mut next = [0u64; 4];
        let mut got = 0;
        while got < 40_000 {
            if let Some(v) = r.pop() {
                let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                assert_eq!(i, next[p], "per-producer order broken");
                next[p] += 1;
                got += 1;
            }
        }
        for p in producers {
            p.join().unwrap();
        }
    }
}
