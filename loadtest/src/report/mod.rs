//! The run's report: a readable table, JSON (`--json`), and the full latency
//! distribution in HdrHistogram's `.hgrm` percentile text format (`--hgrm`).
//!
//! The JSON fields are documented in `loadtest/README.md`; [`REPORT_VERSION`] changes
//! when a field changes meaning or goes away (new fields may be added at any time).
//!
//! This module holds the report's fields (what `--json` serialises); `table` renders
//! them for people, `hgrm` writes a histogram as `.hgrm`.

mod hgrm;
mod plot;
mod table;

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

pub use self::{hgrm::write_hgrm, plot::plot_svg};
use crate::{
    procstat::ProcDelta,
    series::{DistPoint, SeriesPoint, distribution},
    stats::Stats,
};

/// Version of the JSON report layout.
pub const REPORT_VERSION: u32 = 1;

/// Latency percentiles of one histogram, microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Number of batches measured.
    pub count: u64,
    /// Smallest, µs.
    pub min: u64,
    /// Median, µs.
    pub p50: u64,
    /// 90th percentile, µs.
    pub p90: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// 99.9th percentile, µs.
    pub p99_9: u64,
    /// 99.99th percentile, µs.
    pub p99_99: u64,
    /// Largest, µs.
    pub max: u64,
    /// Mean, µs.
    pub mean: f64,
    /// Standard deviation, µs.
    pub stdev: f64,
}

impl LatencySummary {
    /// Summarises `h` (µs). All zero for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary {
                count: 0,
                min: 0,
                p50: 0,
                p90: 0,
                p99: 0,
                p99_9: 0,
                p99_99: 0,
                max: 0,
                mean: 0.0,
                stdev: 0.0,
            };
        }
        LatencySummary {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: round3(h.mean()),
            stdev: round3(h.stdev()),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The run's settings, echoed in the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunInfo {
    /// `tcp`, `tcp-acked`, `http-ingest`, `http-logs`.
    pub mode: String,
    /// Address driven (`host:port`), with the HTTP path for HTTP modes.
    pub target: String,
    /// `closed` or `open`.
    pub load: String,
    /// Open loop: the target rate, records/s. `null` in closed loop.
    pub rate_target: Option<f64>,
    /// Number of connections.
    pub connections: usize,
    /// Worker threads driving them.
    pub threads: usize,
    /// Records per batch (one TCP write or one HTTP request).
    pub batch_records: usize,
    /// Batches in flight per connection at most.
    pub inflight: usize,
    /// Record size distribution, bytes including `\n`: `[min, max]`.
    pub record_bytes: [usize; 2],
    /// `text` or `json`.
    pub format: String,
    /// Generator seed.
    pub seed: u64,
    /// Warm-up, seconds (not measured).
    pub warmup_s: f64,
    /// TLS (`--tls-ca`): what was negotiated; `null` for plain TCP.
    pub tls: Option<TlsInfo>,
}

/// The TLS a run spoke.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TlsInfo {
    /// SNI sent and name checked in the server's certificate.
    pub server_name: String,
    /// A client certificate was offered (mutual TLS).
    pub client_cert: bool,
    /// Protocol version of the first connection, e.g. `TLSv1_3`.
    pub protocol: String,
    /// Cipher suite of the first connection, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// Median set-up (TCP connect and TLS handshake) of the first connections, µs:
    /// made before the clock started, so in no latency and no throughput figure.
    pub setup_us_median: u64,
    /// Longest of them, µs (the first connection also pays the process's one-time
    /// crypto initialisation).
    pub setup_us_max: u64,
}

/// Resource use of the server process over the measurement window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerInfo {
    /// Process id read.
    pub pid: u32,
    /// CPU time (user + system) used during the window, seconds.
    pub cpu_s: f64,
    /// `cpu_s` over the window's wall time, percent of one core.
    pub cpu_percent: f64,
    /// CPU time per completed record, µs.
    pub cpu_us_per_record: f64,
    /// Resident set size at the start of the window, bytes.
    pub rss_bytes_start: u64,
    /// Resident set size at the end, bytes.
    pub rss_bytes_end: u64,
    /// Largest resident set size sampled during the run (every 100 ms), bytes.
    pub rss_bytes_max: u64,
    /// The kernel's peak resident set size of the process (`VmHWM`), bytes.
    pub rss_bytes_peak: u64,
}

/// The harness's own CPU use over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClientInfo {
    /// CPU time, seconds.
    pub cpu_s: f64,
    /// Percent of one core.
    pub cpu_percent: f64,
}

/// What reached a receiver's output file (`--landed-file`), for servers that do
/// not acknowledge.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LandedInfo {
    /// File watched.
    pub file: String,
    /// Bytes the harness sent (warm-up included) that should reach it.
    pub bytes_expected: u64,
    /// Bytes that reached it.
    pub bytes_landed: u64,
    /// From the start of the measurement until the last byte landed (or the wait
    /// gave up), seconds.
    pub elapsed_s: f64,
    /// Bytes landed after the measurement started, per second, in records.
    pub records_per_s: f64,
    /// The same in MB/s (10^6 bytes).
    pub mb_per_s: f64,
    /// True if every byte sent landed.
    pub complete: bool,
}

/// What one live `ws-e2e` subscriber received.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberInfo {
    /// Records received, each counted once.
    pub delivered: u64,
    /// Records skipped over: a later record of the same connection came first (lost).
    pub missed: u64,
    /// Records sent and not received by the end (still behind, or lost at the tail).
    pub undelivered: u64,
    /// Records received more than once (each extra copy).
    pub duplicates: u64,
    /// Tags not from this run's connections, or malformed.
    pub foreign: u64,
    /// Batch ends whose send times were overwritten before they arrived (no sample).
    pub lapped: u64,
    /// WebSocket messages read.
    pub messages: u64,
    /// Its own send → receipt latency (corrected), µs.
    pub latency_us: LatencySummary,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// The `ws-e2e` part of a report.
#[derive(Debug, Clone, Serialize)]
pub struct E2eInfo {
    /// The subscription URL.
    pub ws_target: String,
    /// `acked` or `unacked`: how the producer sent.
    pub send: String,
    /// Live subscribers.
    pub subscribers: usize,
    /// Subscribers that connected and never read.
    pub stalled_subscribers: usize,
    /// Records every live subscriber had to receive (all records sent, warm-up
    /// included).
    pub expected_records: u64,
    /// Every live subscriber received every record exactly once (with
    /// `allow_lag`: in order, without gaps or duplicates, up to where it got).
    pub ok: bool,
    /// `--allow-lag`: subscribers still behind at the end do not fail the run.
    pub allow_lag: bool,
    /// From the end of sending to the last record's receipt on the slowest live
    /// subscriber, seconds.
    pub drain_s: f64,
    /// The producer's own completion latency (ack, or write), corrected, µs.
    pub producer_latency_us: LatencySummary,
    /// The same from the actual send, µs.
    pub producer_service_time_us: LatencySummary,
    /// One entry per live subscriber.
    pub per_subscriber: Vec<SubscriberInfo>,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// Settings of the run.
    pub run: RunInfo,
    /// Measurement window: first measured send to last measured completion, seconds.
    pub duration_s: f64,
    /// Records completed successfully in the window.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Batches completed successfully in the window.
    pub batches: u64,
    /// `records / duration_s`.
    pub records_per_s: f64,
    /// `bytes / duration_s / 10^6`.
    pub mb_per_s: f64,
    /// From intended send time to completion (coordinated-omission corrected), µs.
    pub latency_us: LatencySummary,
    /// From actual send to completion (not corrected), µs.
    pub service_time_us: LatencySummary,
    /// Records handed to the sockets, warm-up included.
    pub sent_records_total: u64,
    /// Records completed successfully, warm-up included.
    pub completed_records_total: u64,
    /// Records in batches that failed or timed out.
    pub failed_records_total: u64,
    /// Sum over connections of the server's last cumulative ack count (TCP modes
    /// against ringstash; 0 for servers that do not ack).
    pub server_acked_total: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Sum of `errors`.
    pub errors_total: u64,
    /// Reconnections after a connection was lost.
    pub reconnects: u64,
    /// Server process resources (`--server-pid`), else `null`.
    pub server: Option<ServerInfo>,
    /// The harness's own CPU use.
    pub client: Option<ClientInfo>,
    /// Output file progress (`--landed-file`), else `null`.
    pub landed: Option<LandedInfo>,
    /// `ws-e2e`: subscribers and delivery, else `null`.
    pub e2e: Option<E2eInfo>,
    /// The window second by second: counts and the producer's corrected latency.
    pub series: Vec<SeriesPoint>,
    /// Percentile distribution of `latency_us` at HdrHistogram's standard ticks.
    pub distribution: Vec<DistPoint>,
}

impl Report {
    /// Builds the report from merged stats.
    pub fn new(run: RunInfo, stats: &Stats, duration_s: f64) -> Self {
        let secs = duration_s.max(1e-9);
        Report {
            version: REPORT_VERSION,
            run,
            duration_s: round3(duration_s * 1000.0) / 1000.0,
            records: stats.records,
            bytes: stats.bytes,
            batches: stats.batches,
            records_per_s: (stats.records as f64 / secs).round(),
            mb_per_s: round3(stats.bytes as f64 / secs / 1e6),
            latency_us: LatencySummary::of(&stats.latency_us),
            service_time_us: LatencySummary::of(&stats.service_us),
            sent_records_total: stats.sent_records_total,
            completed_records_total: stats.completed_records_total,
            failed_records_total: stats.failed_records_total,
            server_acked_total: stats.server_acked_total,
            errors: stats.errors.clone(),
            errors_total: stats.errors_total(),
            reconnects: stats.reconnects,
            server: None,
            client: None,
            landed: None,
            e2e: None,
            series: Vec::new(),
            distribution: distribution(&stats.latency_us),
        }
    }

    /// Fills `server` from a `/proc` delta over the window.
    pub fn set_server(&mut self, d: &ProcDelta, rss_bytes_max: u64) {
        let wall = d.wall_s.max(1e-9);
        self.server = Some(ServerInfo {
            pid: d.pid,
            cpu_s: round3(d.cpu_s),
            cpu_percent: round3(d.cpu_s / wall * 100.0),
            cpu_us_per_record: if self.records > 0 {
                round3(d.cpu_s * 1e6 / self.records as f64)
            } else {
                0.0
            },
            rss_bytes_start: d.rss_bytes_start,
            rss_bytes_end: d.rss_bytes_end,
            rss_bytes_max: rss_bytes_max.max(d.rss_bytes_end).max(d.rss_bytes_start),
            rss_bytes_peak: d.rss_bytes_peak,
        });
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    pub(super) fn run_info() -> RunInfo {
        RunInfo {
            mode: "tcp-acked".into(),
            target: "127.0.0.1:5141".into(),
            load: "closed".into(),
            rate_target: None,
            connections: 4,
            threads: 2,
            batch_records: 1024,
            inflight: 1,
            record_bytes: [128, 128],
            format: "text".into(),
            seed: 1,
            warmup_s: 0.0,
            tls: None,
        }
    }

    pub(super) fn stats() -> Stats {
        let mut st = Stats::default();
        for v in 1..=10_000u64 {
            st.latency_us.record(v).unwrap();
            st.service_us.record(v / 2 + 1).unwrap();
        }
        st.records = 1_000_000;
        st.bytes = 128_000_000;
        st.batches = 10_000;
        st.error("http_503");
        st
    }

    #[test]
    fn summary_percentiles() {
        let l = LatencySummary::of(&stats().latency_us);
        assert_eq!(l.count, 10_000);
        assert_eq!(l.min, 1);
        assert!((4990..=5010).contains(&l.p50), "{}", l.p50);
        assert!((8990..=9010).contains(&l.p90));
        assert!((9890..=9910).contains(&l.p99));
        assert!((9980..=10010).contains(&l.p99_9));
        assert!((9990..=10010).contains(&l.max));
        assert!((l.mean - 5000.5).abs() < 5.0);
        assert_eq!(LatencySummary::of(&new_histogram()).p99, 0);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let r = Report::new(run_info(), &stats(), 0.5);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["version"], REPORT_VERSION);
        assert_eq!(v["records_per_s"], 2_000_000.0);
        assert_eq!(v["mb_per_s"], 256.0);
        assert_eq!(v["errors"]["http_503"], 1);
        assert_eq!(v["errors_total"], 1);
        for k in [
            "count", "min", "p50", "p90", "p99", "p99_9", "p99_99", "max", "mean", "stdev",
        ] {
            assert!(v["latency_us"][k].is_number(), "latency_us.{k}");
            assert!(v["service_time_us"][k].is_number(), "service_time_us.{k}");
        }
        for k in [
            "mode",
            "target",
            "load",
            "connections",
            "batch_records",
            "inflight",
            "record_bytes",
            "seed",
        ] {
            assert!(!v["run"][k].is_null(), "run.{k}");
        }
        assert!(v["server"].is_null());
    }
}
