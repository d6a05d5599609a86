//! Cumulative TCP acknowledgements, as plain bookkeeping (no I/O).
//!
//! Batches of one connection complete in order (the writer retires groups in offset
//! order and a connection's batches enter the ring in order), so the state is two
//! numbers: records durable so far and the offset of the last one. The ack writer sends
//! the latest totals whenever they moved; intermediate values may be skipped, which
//! is what lets a client that never reads its acks cost the server nothing.

use std::io::Write;

use crate::wal::Committed;

/// Per-connection acknowledgement state.
#[derive(Debug, Default)]
pub struct AckState {
    /// Records of this connection that are durable.
    count: u64,
    /// Offset of the last durable record, if any.
    last_offset: Option<u64>,
    /// `count` as of the last ack written.
    sent: u64,
}

impl AckState {
    /// Records that a batch of this connection is durable.
    ///
    /// # Panics
    /// If offsets go backwards: a connection's batches must commit in order.
    pub fn committed(&mut self, c: Committed) {
        if let Some(prev) = self.last_offset {
            assert!(
                c.first_offset > prev,
                "a connection's batches committed out of order"
            );
        }
        self.count += u64::from(c.records);
        self.last_offset = Some(c.last_offset());
    }

    /// Records acknowledged as durable so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends `ack <count> <last_offset>\n` to `out` if there is news; marks it sent.
    pub fn take_ack(&mut self, out: &mut Vec<u8>) -> bool {
        match self.last_offset {
            Some(last) if self.count > self.sent => {
                writeln!(out, "ack {} {}", self.count, last).expect("write to Vec");
                self.sent = self.count;
                true
            }
            _ => false,
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
        assert!(!a.take_ack(&mut out));
        a.committed(Committed {
            first_offset: 10,
            records: 3,
        });
        a.committed(Committed {
            first_offset: 20,
            records: 2,
        });
        assert!(a.take_ack(&mut out));
        assert!(!a.take_ack(&mut out));
        assert_eq!(out, b"ack 5 21\n");
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn out_of_order_is_a_bug() {
        let mut a = AckState::default();
        a.committed(Committed {
            first_offset: 10,
            records: 3,
        });
        a.committed(Committed {
            first_offset: 5,
            records: 1,
        });
    }
}
