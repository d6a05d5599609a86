//! Latency histograms the server keeps for `/stats` (quantiles) and `/metrics` (a
//! Prometheus histogram): power-of-two microsecond buckets in relaxed atomics, so that
//! the hot path that records pays one add, and a reader needs no lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets per histogram: bucket `i` counts times below 2^i µs, the last one
/// everything longer (up to 2^31 µs, about 36 minutes).
pub const BUCKETS: usize = 32;

/// Times, by power-of-two microsecond bucket, with their exact sum.
///
/// Relaxed: each bucket and the sum are figures on their own; a reader may see an
/// observation in the sum before its bucket, which a scrape seconds apart never
/// notices.
#[derive(Debug, Default)]
pub struct MicrosHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl MicrosHistogram {
    /// Counts one time of `ns` nanoseconds.
    pub fn record_ns(&self, ns: u64) {
        let us = ns / 1000;
        let bucket = (u64::BITS - us.leading_zeros()) as usize;
        self.buckets[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Each bucket's count (not cumulative).
    pub fn counts(&self) -> [u64; BUCKETS] {
        // An array, not a Vec: /stats and /metrics ask often enough not to allocate.
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    /// The sum of every time counted, in nanoseconds.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns.load(Ordering::Relaxed)
    }

    /// The bucket upper bound (µs) at or below which `q` (0..=1) of the times fell; 0
    /// before the first.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return 1u64 << i;
            }
        }
        1u64 << (BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_fall_in_power_of_two_buckets_and_quantiles_read_them() {
        let h = MicrosHistogram::default();
        assert_eq!(h.quantile_us(0.99), 0);
        // 0.5 µs (bucket 0: below 1 µs), 3 µs (bucket 2: below 4), 1 ms (bucket 10).
        for ns in [500, 3_000, 3_500, 1_000_000] {
            h.record_ns(ns);
        }
        let c = h.counts();
        assert_eq!((c[0], c[2], c[10]), (1, 2, 1));
        assert_eq!(c.iter().sum::<u64>(), 4);
        assert_eq!(h.sum_ns(), 1_007_000);
        assert_eq!(h.quantile_us(0.25), 1);
        assert_eq!(h.quantile_us(0.50), 4);
        assert_eq!(h.quantile_us(0.99), 1024);
        h.record_ns(u64::MAX / 2);
        assert_eq!(h.counts()[BUCKETS - 1], 1);
    }
}
