//! The producers' side of the log: an [`Appender`] offers framed batches to the writer
//! through the ring, and refuses on the producer's own core what the writer would
//! have to reject (an empty, oversized or malformed batch), so the writer may trust
//! every batch it pops.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bytes::BytesMut;

use super::{Completion, Inner, completion, format};
use crate::{error::AppendError, ring::PushError};

/// One batch on its way through the ring to the writer.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Framed records, offsets not yet stamped.
    pub(crate) frames: BytesMut,
    /// Number of records in `frames`.
    pub(crate) records: u32,
    /// Where the writer reports the outcome.
    pub(crate) slot: Arc<completion::Slot>,
}

/// A cloneable producer handle; cheap to clone, one per producer thread or core.
#[derive(Debug, Clone)]
pub struct Appender {
    pub(super) inner: Arc<Inner>,
}

/// A batch that was not taken; the buffer comes back so nothing is lost.
#[derive(Debug)]
pub enum TryAppendError {
    /// The ring is full: back off (stop reading from producers) and retry.
    Full(BytesMut, u32),
    /// The batch will never be taken; see the error.
    Refused(AppendError),
}

impl Appender {
    /// Offers a batch of `records` framed records to the writer without blocking.
    ///
    /// # Errors
    /// [`TryAppendError::Full`] with the batch when the ring is full;
    /// [`TryAppendError::Refused`] when the batch is empty-but-counted, too large, or the
    /// log is closing or has failed.
    pub fn try_append(&self, frames: BytesMut, records: u32) -> Result<Completion, TryAppendError> {
        assert!(records > 0 && !frames.is_empty(), "empty batch");
        let max = self.inner.config.group_bytes_max;
        if frames.len() > max {
            return Err(TryAppendError::Refused(AppendError::BatchTooLarge {
                bytes: frames.len(),
                max,
            }));
        }
        // The writer trusts batches (it stamps offsets by walking the frames), so a
        // malformed one is refused here, on the producer's core.
        match format::count_frames(&frames) {
            Ok(n) if n == records => {}
            Ok(n) => {
                return Err(TryAppendError::Refused(AppendError::MalformedBatch(
                    format!("{n} frames, {records} declared"),
                )));
            }
            Err(why) => return Err(TryAppendError::Refused(AppendError::MalformedBatch(why))),
        }
        let slot = completion::Slot::new(records);
        let batch = Batch {
            frames,
            records,
            slot: slot.clone(),
        };
        match self.inner.ring.push(batch) {
            Ok(()) => {
                self.inner
                    .stats
                    .batches_appended
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Completion::new(slot))
            }
            Err(PushError::Full(b)) => Err(TryAppendError::Full(b.frames, b.records)),
            Err(PushError::Closed(_)) => Err(TryAppendError::Refused(self.closed_error())),
        }
    }

    /// Appends a batch, waiting (with a short sleep) while the ring is full. For
    /// producer threads that may block; reactors use `try_append`.
    ///
    /// # Errors
    /// As [`Appender::try_append`], except that a full ring is waited out.
    pub fn append(
        &self,
        mut frames: BytesMut,
        mut records: u32,
    ) -> Result<Completion, AppendError> {
        let mut spins = 0u32;
        loop {
            match self.try_append(frames, records) {
                Ok(c) => return Ok(c),
                Err(TryAppendError::Refused(e)) => return Err(e),
                Err(TryAppendError::Full(f, r)) => {
                    frames = f;
                    records = r;
                    spins += 1;
                    if spins < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        }
    }

    /// Exclusive end of the committed records.
    pub fn committed_end(&self) -> u64 {
        self.inner.committed_end.load(Ordering::Acquire)
    }

    /// The largest record payload the log accepts.
    pub fn record_bytes_max(&self) -> usize {
        self.inner.config.record_bytes_max
    }

    fn closed_error(&self) -> AppendError {
        match self.inner.failure.get() {
            Some(why) => AppendError::Failed(why.message()),
            None => AppendError::Closed,
        }
    }
}
