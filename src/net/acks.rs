//! Cumulative TCP acknowledgements, as plain bookkeeping (no I/O).
//!
//! Batches of one connection complete in order (the writer retires groups in offset
//! order and a connection's batches enter the ring in order), so the state is two
//! numbers: records durable so far and the offset of the last one. The ack writer sends
//! the latest totals whenever they moved; intermediate values may be skipped, which
//! is what lets a client that never reads its acks cost the server nothing. The one
//! instant kept, the read of the oldest batch not yet acknowledged, is where the next
//! ack's delay (`tcp_ack_seconds`) counts from.

use std::{io::Write, time::Instant};

use crate::wal::Committed;

/// Per-connection acknowledgement state.
#[derive(Debug, Default)]
pub struct AckState {
    /// Records of this connection that are durable.
    count: u64,
    /// Offset of the last durable record, if any.
    last_offset: Option<u64>,
    /// The log it is in, and whether its batch was spread over several logs.
    last_log: (u32, bool),
    /// `count` as of the last ack written.
    sent: u64,
    /// The read that completed the oldest batch durable since the last ack written.
    oldest_unacked: Option<Instant>,
}

impl AckState {
    /// Records that a batch of this connection, completed by the read at `read_at`, is
    /// durable.
    ///
    /// # Panics
    /// If offsets go backwards within one log: a connection's batches must commit in
    /// order. (In a partitioned stream a connection's batches may go to different
    /// logs, whose offsets are unrelated; `last_offset` is then the last record's in
    /// its own partition.)
    pub fn committed(&mut self, c: Committed, read_at: Instant) {
        if let Some(prev) = self.last_offset
            && !c.spread
            && self.last_log == (c.log, false)
        {
            assert!(
                c.first_offset > prev,
                "a connection's batches committed out of order"
            );
        }
        self.last_log = (c.log, c.spread);
        self.count += u64::from(c.records);
        self.last_offset = Some(c.last_offset());
        self.oldest_unacked.get_or_insert(read_at);
    }

    /// Records acknowledged as durable so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends `ack <count> <last_offset>\n` to `out` if there is news and marks it
    /// sent; returns the read of the oldest batch it acknowledges (None: no news).
    pub fn take_ack(&mut self, out: &mut Vec<u8>) -> Option<Instant> {
        match self.last_offset {
            Some(last) if self.count > self.sent => {
                writeln!(out, "ack {} {}", self.count, last).expect("write to Vec");
                self.sent = self.count;
                let oldest = self.oldest_unacked.take();
                debug_assert!(oldest.is_some(), "news without a committed batch");
                oldest
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_to_the_latest_totals() {
        let mut a = AckState::default();
        let mut out = vec![];
        let (t0, t1, t2) = (Instant::now(), Instant::now(), Instant::now());
        assert_eq!(a.take_ack(&mut out), None);
        a.committed(Committed::new(10, 3), t0);
        a.committed(Committed::new(20, 2), t1);
        // One ack for both, its delay counted from the older batch's read.
        assert_eq!(a.take_ack(&mut out), Some(t0));
        assert_eq!(a.take_ack(&mut out), None);
        assert_eq!(out, b"ack 5 21\n");
        a.committed(Committed::new(30, 1), t2);
        assert_eq!(a.take_ack(&mut out), Some(t2));
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn out_of_order_is_a_bug() {
        let mut a = AckState::default();
        a.committed(Committed::new(10, 3), Instant::now());
        a.committed(Committed::new(5, 1), Instant::now());
    }
}
