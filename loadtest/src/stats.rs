//! What a run measures, collected per worker thread and merged at the end.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Highest latency the histograms track: one hour, in microseconds. Larger values
/// are clamped to it (and a run that long has bigger problems).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

/// Significant decimal digits the histograms keep (0.1 % value resolution).
pub const LATENCY_SIGFIG: u8 = 3;

/// A latency histogram in microseconds, 1 µs .. 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGFIG).expect("static bounds are valid")
}

/// Counters and histograms of one worker (and, merged, of the run).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of each measured batch from its intended send time to its completion
    /// (ack, response, or last byte written for fire-and-forget), µs.
    pub latency_us: Histogram<u64>,
    /// Latency of each measured batch from when it was actually handed to the
    /// socket to its completion, µs (what an uncorrected tool would report).
    pub service_us: Histogram<u64>,
    /// Records completed successfully in the measurement window.
    pub records: u64,
    /// Payload bytes of those records (what the server stores, `\n` included).
    pub bytes: u64,
    /// Batches (TCP writes or HTTP requests) completed successfully in the window.
    pub batches: u64,
    /// Latest completion time of a measured batch, ns on the run clock.
    pub last_completion_ns: u64,
    /// Records handed to the socket, warm-up included.
    pub sent_records_total: u64,
    /// Records completed successfully, warm-up included.
    pub completed_records_total: u64,
    /// Record bytes completed successfully, warm-up included.
    pub bytes_total: u64,
    /// Records in batches that failed or were never completed.
    pub failed_records_total: u64,
    /// Highest cumulative ack count the server sent, summed over connections (TCP).
    pub server_acked_total: u64,
    /// Errors by kind (`connect`, `connection_reset`, `http_503`, `record_too_large`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Reconnections after a connection was lost.
    pub reconnects: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency_us: new_histogram(),
            service_us: new_histogram(),
            records: 0,
            bytes: 0,
            batches: 0,
            last_completion_ns: 0,
            sent_records_total: 0,
            completed_records_total: 0,
            bytes_total: 0,
            failed_records_total: 0,
            server_acked_total: 0,
            errors: BTreeMap::new(),
            reconnects: 0,
        }
    }
}

impl Stats {
    /// Counts one error of `kind`. Allocates the key the first time a kind is seen,
    /// which only happens on the error path.
    pub fn error(&mut self, kind: &str) {
        match self.errors.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(kind.to_owned(), 1);
            }
        }
    }

    /// Total errors of every kind.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share bounds");
        self.service_us
            .add(&other.service_us)
            .expect("histograms share bounds");
        self.records += other.records;
        self.bytes += other.bytes;
        self.batches += other.batches;
        self.last_completion_ns = self.last_completion_ns.max(other.last_completion_ns);
        self.sent_records_total += other.sent_records_total;
        self.completed_records_total += other.completed_records_total;
        self.bytes_total += other.bytes_total;
        self.failed_records_total += other.failed_records_total;
        self.server_acked_total += other.server_acked_total;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.reconnects += other.reconnects;
    }
}

/// Records `ns` into `hist` as microseconds (rounded up, at least 1, clamped).
pub fn record_ns(hist: &mut Histogram<u64>, ns: u64) {
    hist.saturating_record(ns.div_ceil(1000).clamp(1, LATENCY_US_MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        record_ns(&mut a.latency_us, 1_500);
        record_ns(&mut b.latency_us, 10_000_000);
        a.records = 3;
        b.records = 4;
        a.error("http_503");
        b.error("http_503");
        b.error("connection_reset");
        b.last_completion_ns = 7;
        a.merge(&b);
        assert_eq!(a.records, 7);
        assert_eq!(a.latency_us.len(), 2);
        assert!((10_000..=10_010).contains(&a.latency_us.max()));
        assert_eq!(a.errors["http_503"], 2);
        assert_eq!(a.errors_total(), 3);
        assert_eq!(a.last_completion_ns, 7);
    }

    #[test]
    fn recording_rounds_up_and_clamps() {
        let mut h = new_histogram();
        record_ns(&mut h, 0);
        record_ns(&mut h, u64::MAX);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= LATENCY_US_MAX);
    }
}
