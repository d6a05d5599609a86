//! The run's per-second time series: records sent and completed, bytes and latency
//! percentiles for each second of the measurement window.
//!
//! # How it is collected
//!
//! Each worker keeps a [`SecondRecorder`]: counters and a latency histogram for the
//! second it is in. Completions are recorded there only (one histogram record, as
//! before the series existed); when the worker's clock crosses into a later second,
//! the recorder adds that second's histogram into the worker's run total and ships it,
//! with the counters, as a [`Slice`] over a channel to the main thread, taking a reset
//! histogram from a shared pool in exchange. So the hot path allocates nothing and
//! takes no lock: once a second per worker, a channel send and a pool lock.
//!
//! The main thread's [`SeriesBuilder`] merges the workers' slices second by second
//! and summarises a second (percentiles, then its histogram back to the pool) once
//! every worker has shipped it, so memory stays a few histograms however long the run.
//!
//! # The last second
//!
//! The window ends at the last measured completion, rarely on a whole second. A
//! closed-loop run that stops sending at 3.000 s completes its in-flight batches a
//! few milliseconds later; as a second of its own, that tail would show thousands of
//! records in 2 ms as a spike of millions per second. So the series has
//! `round(duration_s)` entries (at least one), and the last one spans from its start
//! to the end of the window (`span_s`, 0.5 to 1.5 s; shorter only for runs under
//! half a second). To merge the tail, the builder never summarises a second that
//! could still be the last entry: a second is summarised only when completions have
//! been seen two seconds later.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, Sender},
    },
};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::{new_histogram, record_ns};

const NS_PER_S: u64 = 1_000_000_000;

/// Reset histograms waiting for reuse, shared by the workers and the builder.
pub type HistogramPool = Arc<Mutex<Vec<Histogram<u64>>>>;

/// One worker's second, shipped to the builder when the worker has left it.
#[derive(Debug)]
pub struct Slice {
    /// Index of the worker that shipped it.
    pub worker: usize,
    /// Second of the measurement window, from 0.
    pub second: u32,
    /// Records of measured batches queued for the socket in that second.
    pub sent: u64,
    /// Records completed successfully in that second.
    pub acked: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Batches completed successfully in that second.
    pub batches: u64,
    /// Corrected latency of those batches, µs; `None` if there were none.
    pub latency_us: Option<Histogram<u64>>,
    /// The worker's last slice: it has finished.
    pub last: bool,
}

/// A worker's counters for the second it is in. Lives on that worker's thread.
pub struct SecondRecorder {
    worker: usize,
    /// Start of the measurement window, monotonic ns.
    measure_ns: u64,
    /// The second being recorded and when it ends (monotonic ns).
    second: u32,
    second_end_ns: u64,
    sent: u64,
    acked: u64,
    bytes: u64,
    batches: u64,
    /// This second's corrected latencies, µs; added to the worker's total when the
    /// second is shipped.
    latency_us: Histogram<u64>,
    tx: Sender<Slice>,
    pool: HistogramPool,
}

impl SecondRecorder {
    /// A recorder for worker `worker`, whose window starts at `measure_ns`.
    pub fn new(worker: usize, measure_ns: u64, tx: Sender<Slice>, pool: HistogramPool) -> Self {
        let latency_us = take_spare(&pool);
        SecondRecorder {
            worker,
            measure_ns,
            second: 0,
            second_end_ns: measure_ns + NS_PER_S,
            sent: 0,
            acked: 0,
            bytes: 0,
            batches: 0,
            latency_us,
            tx,
            pool,
        }
    }

    /// Moves on to the second `now` is in if it is past the current one (shipping the
    /// current one, its latencies added into `total`). Called on every event, and
    /// from the poll loop so that an idle worker still ships its seconds.
    #[inline]
    pub fn tick(&mut self, now: u64, total: &mut Histogram<u64>) {
        if now >= self.second_end_ns {
            self.rotate(now, total);
        }
    }

    /// `records` of a measured batch were queued for the socket at `now`.
    #[inline]
    pub fn sent(&mut self, now: u64, records: u64, total: &mut Histogram<u64>) {
        self.tick(now, total);
        self.sent += records;
    }

    /// A measured batch of `records` records (`bytes` bytes) completed at `now`,
    /// `latency_ns` after its intended send time.
    #[inline]
    pub fn completed(
        &mut self,
        now: u64,
        records: u64,
        bytes: u64,
        latency_ns: u64,
        total: &mut Histogram<u64>,
    ) {
        self.tick(now, total);
        self.acked += records;
        self.bytes += bytes;
        self.batches += 1;
        record_ns(&mut self.latency_us, latency_ns);
    }

    /// The worker has finished: ships the second it was in.
    pub fn finish(&mut self, total: &mut Histogram<u64>) {
        self.ship(total, true);
    }

    #[cold]
    fn rotate(&mut self, now: u64, total: &mut Histogram<u64>) {
        self.ship(total, false);
        let second = now.saturating_sub(self.measure_ns) / NS_PER_S;
        self.second = u32::try_from(second).unwrap_or(u32::MAX);
        self.second_end_ns = self.measure_ns + (second + 1) * NS_PER_S;
    }

    fn ship(&mut self, total: &mut Histogram<u64>, last: bool) {
        let latency_us = if self.latency_us.is_empty() {
            None
        } else {
            total
                .add(&self.latency_us)
                .expect("histograms share bounds");
            Some(std::mem::replace(
                &mut self.latency_us,
                take_spare(&self.pool),
            ))
        };
        let slice = Slice {
            worker: self.worker,
            second: self.second,
            sent: std::mem::take(&mut self.sent),
            acked: std::mem::take(&mut self.acked),
            bytes: std::mem::take(&mut self.bytes),
            batches: std::mem::take(&mut self.batches),
            latency_us,
            last,
        };
        // The builder outlives the workers (it is dropped after they are joined), so
        // the send only fails if the run is being torn down anyway.
        let _ = self.tx.send(slice);
    }
}

/// A reset histogram from `pool`, or a new one if it is empty.
fn take_spare(pool: &HistogramPool) -> Histogram<u64> {
    let spare = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
    spare.unwrap_or_else(new_histogram)
}

/// One second (the last: up to 1.5 s) of the series, as the JSON report carries it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeriesPoint {
    /// Start of the entry, whole seconds from the start of the measurement window.
    pub t_s: u32,
    /// Its length, seconds: 1 but for the last entry, which runs to the end of the
    /// window.
    pub span_s: f64,
    /// Records of measured batches queued for the socket.
    pub sent: u64,
    /// Records completed successfully (acked, answered or written, per mode).
    pub acked: u64,
    /// Their bytes (`\n` included).
    pub bytes: u64,
    /// Batches completed successfully: the latency samples.
    pub batches: u64,
    /// `--landed-file`, `--landed-metric`: records that reached the receiver's output
    /// in the entry, from samples the main thread takes at each whole second (up to
    /// 100 ms late); `null` without.
    pub landed: Option<u64>,
    /// Corrected latency percentiles of those batches, µs; `null` without any.
    pub p50_us: Option<u64>,
    /// 90th percentile, µs.
    pub p90_us: Option<u64>,
    /// 99th percentile, µs.
    pub p99_us: Option<u64>,
    /// 99.9th percentile, µs.
    pub p99_9_us: Option<u64>,
    /// Largest, µs.
    pub max_us: Option<u64>,
}

/// Counters and latencies of one second, merged over workers.
#[derive(Default)]
struct Acc {
    sent: u64,
    acked: u64,
    bytes: u64,
    batches: u64,
    latency_us: Option<Histogram<u64>>,
}

impl Acc {
    fn add(&mut self, s: Slice, pool: &HistogramPool) {
        self.sent += s.sent;
        self.acked += s.acked;
        self.bytes += s.bytes;
        self.batches += s.batches;
        if let Some(h) = s.latency_us {
            self.add_latency(h, pool);
        }
    }

    fn merge(&mut self, other: Acc, pool: &HistogramPool) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.bytes += other.bytes;
        self.batches += other.batches;
        if let Some(h) = other.latency_us {
            self.add_latency(h, pool);
        }
    }

    fn add_latency(&mut self, h: Histogram<u64>, pool: &HistogramPool) {
        match &mut self.latency_us {
            None => self.latency_us = Some(h),
            Some(mine) => {
                mine.add(&h).expect("histograms share bounds");
                recycle(h, pool);
            }
        }
    }

    fn point(self, t_s: u32, span_s: f64, pool: &HistogramPool) -> SeriesPoint {
        let q = |p: f64| self.latency_us.as_ref().map(|h| h.value_at_quantile(p));
        let point = SeriesPoint {
            t_s,
            span_s: (span_s * 1000.0).round() / 1000.0,
            sent: self.sent,
            acked: self.acked,
            bytes: self.bytes,
            batches: self.batches,
            landed: None,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p99_9_us: q(0.999),
            max_us: self.latency_us.as_ref().map(Histogram::max),
        };
        if let Some(h) = self.latency_us {
            recycle(h, pool);
        }
        point
    }
}

fn recycle(mut h: Histogram<u64>, pool: &HistogramPool) {
    h.reset();
    pool.lock().unwrap_or_else(|e| e.into_inner()).push(h);
}

/// The main thread's side: merges the workers' slices into the series.
pub struct SeriesBuilder {
    rx: Receiver<Slice>,
    pool: HistogramPool,
    /// Per worker: the highest second it has shipped (`None`: none yet), and whether
    /// it has finished.
    shipped: Vec<(Option<u32>, bool)>,
    /// Seconds not summarised yet.
    open: BTreeMap<u32, Acc>,
    /// Summarised seconds, `0..points.len()`.
    points: Vec<SeriesPoint>,
    /// The latest second with a completion.
    last_completion_second: Option<u32>,
}

impl SeriesBuilder {
    /// A builder for `workers` workers shipping over `rx`.
    pub fn new(workers: usize, rx: Receiver<Slice>, pool: HistogramPool) -> Self {
        SeriesBuilder {
            rx,
            pool,
            shipped: vec![(None, false); workers],
            open: BTreeMap::new(),
            points: Vec::new(),
            last_completion_second: None,
        }
    }

    /// Takes what the workers shipped so far and summarises the seconds that are
    /// complete (every worker is past them) and cannot be the last entry.
    pub fn poll(&mut self) {
        while let Ok(s) = self.rx.try_recv() {
            self.absorb(s);
        }
        let Some(last) = self.last_completion_second else {
            return;
        };
        loop {
            let next = self.points.len() as u32;
            let everyone_past = self
                .shipped
                .iter()
                .all(|&(upto, done)| done || upto.is_some_and(|u| u >= next));
            if next.saturating_add(2) > last || !everyone_past {
                return;
            }
            let acc = self.open.remove(&next).unwrap_or_default();
            self.points.push(acc.point(next, 1.0, &self.pool));
        }
    }

    fn absorb(&mut self, s: Slice) {
        let w = &mut self.shipped[s.worker];
        w.0 = Some(w.0.map_or(s.second, |u| u.max(s.second)));
        w.1 |= s.last;
        if s.batches > 0 {
            self.last_completion_second = Some(
                self.last_completion_second
                    .map_or(s.second, |l| l.max(s.second)),
            );
        }
        let second = s.second;
        self.open.entry(second).or_default().add(s, &self.pool);
    }

    /// The series of a window of `duration_s` seconds, once every worker has
    /// finished: `round(duration_s)` entries (at least one), everything at or after
    /// the last entry's start folded into it.
    pub fn finish(mut self, duration_s: f64) -> Vec<SeriesPoint> {
        self.poll();
        let n = (duration_s.round() as u32).max(1);
        debug_assert!(self.points.len() < n as usize, "the last entry stays open");
        while (self.points.len() as u32) < n - 1 {
            let t = self.points.len() as u32;
            let acc = self.open.remove(&t).unwrap_or_default();
            self.points.push(acc.point(t, 1.0, &self.pool));
        }
        let mut tail = Acc::default();
        for (_, acc) in std::mem::take(&mut self.open) {
            tail.merge(acc, &self.pool);
        }
        let t = n - 1;
        let span = (duration_s - f64::from(t)).max(0.0);
        self.points.push(tail.point(t, span, &self.pool));
        self.points
    }
}

/// One point of the latency percentile distribution.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DistPoint {
    /// Percentile, 0 to 100.
    pub percentile: f64,
    /// Latency at it, µs.
    pub latency_us: u64,
}

/// The percentile distribution of `h` at HdrHistogram's standard ticks (5 per half
/// distance to 100 %, as `outputPercentileDistribution` and `--hgrm` write it).
pub fn distribution(h: &Histogram<u64>) -> Vec<DistPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| DistPoint {
            percentile: v.quantile_iterated_to() * 100.0,
            latency_us: v.value_iterated_to(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(workers: usize) -> (Vec<SecondRecorder>, SeriesBuilder) {
        let (tx, rx) = std::sync::mpsc::channel();
        let pool = HistogramPool::default();
        let recs = (0..workers)
            .map(|w| SecondRecorder::new(w, 1_000, tx.clone(), pool.clone()))
            .collect();
        (recs, SeriesBuilder::new(workers, rx, pool))
    }

    const S: u64 = NS_PER_S;

    #[test]
    fn seconds_merge_over_workers_and_the_tail_folds_into_the_last() {
        let (mut recs, mut b) = setup(2);
        let mut totals = [new_histogram(), new_histogram()];
        // Worker 0: seconds 0, 1, 2 and a tail at 3.01 s; worker 1 idle in second 1.
        for (sec, lat) in [(0, 100_000), (1, 200_000), (2, 300_000)] {
            let t = 1_000 + sec * S + 10;
            recs[0].sent(t, 10, &mut totals[0]);
            recs[0].completed(t + 5, 10, 1280, lat, &mut totals[0]);
            if sec != 1 {
                recs[1].completed(t + 7, 5, 640, lat * 2, &mut totals[1]);
            }
        }
        let end = 1_000 + 3 * S + 10_000_000;
        recs[0].completed(end, 3, 384, 50_000, &mut totals[0]);
        b.poll();
        // Second 1 could still be the last entry (completions seen up to second 3).
        assert!(b.points.len() <= 1);
        for (r, t) in recs.iter_mut().zip(totals.iter_mut()) {
            r.finish(t);
        }
        let pts = b.finish(3.01);
        assert_eq!(pts.len(), 3);
        assert_eq!(pts.iter().map(|p| p.t_s).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(pts[0].acked, 15);
        assert_eq!(pts[1].acked, 10);
        assert_eq!(pts[2].acked, 18, "the tail folded in");
        assert_eq!(pts[2].span_s, 1.01);
        assert_eq!(pts.iter().map(|p| p.sent).sum::<u64>(), 30);
        assert_eq!(
            pts.iter().map(|p| p.bytes).sum::<u64>(),
            3 * 1280 + 2 * 640 + 384
        );
        assert_eq!(pts[1].p50_us, Some(200));
        assert!((199..=201).contains(&pts[0].max_us.unwrap()));
        // Every completion is in the workers' totals too.
        assert_eq!(totals[0].len() + totals[1].len(), 6);
    }

    #[test]
    fn idle_seconds_are_empty_entries() {
        let (mut recs, b) = setup(1);
        let mut total = new_histogram();
        recs[0].completed(1_000 + 10, 1, 10, 1_000, &mut total);
        recs[0].tick(1_000 + 2 * S, &mut total);
        recs[0].completed(1_000 + 4 * S + 1, 1, 10, 1_000, &mut total);
        recs[0].finish(&mut total);
        let pts = b.finish(4.9);
        assert_eq!(pts.len(), 5);
        assert_eq!(pts[1].acked, 0);
        assert_eq!(pts[1].p99_us, None);
        assert_eq!(pts[4].acked, 1);
        assert_eq!(pts[4].span_s, 0.9);
    }

    #[test]
    fn long_runs_summarise_as_they_go() {
        let (mut recs, mut b) = setup(1);
        let mut total = new_histogram();
        for sec in 0..100 {
            recs[0].completed(1_000 + sec * S + 1, 1, 10, 1_000, &mut total);
            b.poll();
        }
        // Second 99 is still the worker's current one; everything up to two seconds
        // before the latest shipped completion (98) is summarised.
        assert_eq!(b.points.len(), 97);
        assert!(b.open.len() <= 2);
        recs[0].finish(&mut total);
        assert_eq!(b.finish(99.5).len(), 100);
    }

    #[test]
    fn distribution_is_monotone_and_ends_at_100() {
        let mut h = new_histogram();
        for v in 1..=10_000 {
            h.record(v).unwrap();
        }
        let d = distribution(&h);
        assert!(d.len() > 50);
        assert!(
            d.windows(2)
                .all(|w| w[0].percentile < w[1].percentile && w[0].latency_us <= w[1].latency_us)
        );
        assert_eq!(d.last().unwrap().percentile, 100.0);
        assert!(distribution(&new_histogram()).is_empty());
    }
}
