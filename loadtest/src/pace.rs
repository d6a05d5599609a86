//! The open-loop schedule: when each batch is *meant* to be sent.
//!
//! Open-loop latency is measured from these intended times, not from when the batch
//! actually went out. If the server stalls, the batches that should have been sent
//! during the stall still count their wait from the time they were due, so the
//! stall shows up in every one of them and not just in the one batch that happened
//! to be on the wire (coordinated omission, as wrk2 corrects it).

/// The intended send times of one connection's batches, in nanoseconds on the run's
/// clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// When batch 0 is due.
    first_ns: f64,
    /// Time between two batches of this connection.
    interval_ns: f64,
}

impl Schedule {
    /// The schedule of connection `conn` out of `connections` when all of them
    /// together send `rate` records per second in batches of `batch_records`.
    ///
    /// Each connection sends every `batch_records * connections / rate` seconds; the
    /// connections are staggered evenly inside that interval so that the load on the
    /// server is smooth, not a burst of `connections` batches at once.
    ///
    /// # Panics
    /// If `rate` is not positive or `conn >= connections`.
    pub fn open(
        rate: f64,
        batch_records: usize,
        connections: usize,
        conn: usize,
        start_ns: u64,
    ) -> Self {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        assert!(conn < connections, "connection index out of range");
        let interval_ns = batch_records as f64 * connections as f64 / rate * 1e9;
        Schedule {
            first_ns: start_ns as f64 + interval_ns * conn as f64 / connections as f64,
            interval_ns,
        }
    }

    /// When batch `i` is due (ns on the run's clock).
    pub fn intended_ns(&self, i: u64) -> u64 {
        (self.first_ns + self.interval_ns * i as f64).round() as u64
    }

    /// Time between two batches of this connection, ns.
    pub fn interval_ns(&self) -> f64 {
        self.interval_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_split_and_staggered() {
        // 100k records/s in batches of 100 over 4 connections: each connection sends
        // 250 batches/s, one every 4 ms, the four offset by 1 ms.
        let s: Vec<_> = (0..4)
            .map(|c| Schedule::open(100_000.0, 100, 4, c, 1_000))
            .collect();
        assert_eq!(s[0].interval_ns(), 4_000_000.0);
        assert_eq!(s[0].intended_ns(0), 1_000);
        assert_eq!(s[1].intended_ns(0), 1_001_000);
        assert_eq!(s[3].intended_ns(0), 3_001_000);
        assert_eq!(s[2].intended_ns(10), 40_000_000 + 2_001_000);
        // Over one second all connections together intend exactly the rate.
        let due: u64 = s
            .iter()
            .map(|s| {
                (0..)
                    .take_while(|&i| s.intended_ns(i) < 1_000_000_000 + 1_000)
                    .count() as u64
            })
            .sum();
        assert_eq!(due * 100, 100_000);
    }

    #[test]
    fn no_drift_over_long_runs() {
        let s = Schedule::open(3_000_000.0, 7, 3, 0, 0);
        // 7 µs per batch: after 10^9 batches we are still exact to the nanosecond.
        assert_eq!(s.intended_ns(1_000_000_000), 7_000_000_000_000);
    }
}
