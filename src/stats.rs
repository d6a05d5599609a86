//! Server counters, and their two renderings: `/stats` (JSON) and `/metrics`
//! (Prometheus text format). Every refusal the server makes has a counter here.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::wal::Log;

macro_rules! counters {
    ($( #[doc = $doc:literal] $name:ident, )*) => {
        /// Counters shared by all reactors. Relaxed atomics: each is an independent
        /// statistic; nothing is derived from two of them at once.
        #[derive(Debug, Default)]
        pub struct ServerStats {
            $( #[doc = $doc] pub $name: AtomicU64, )*
        }

        impl ServerStats {
            fn each(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$( (stringify!($name), $doc.trim(), self.$name.load(Ordering::Relaxed)), )*]
            }
        }
    };
}

counters! {
    /// TCP connections accepted.
    tcp_connections_total,
    /// HTTP connections accepted.
    http_connections_total,
    /// Connections refused because connections_max was reached.
    connections_refused_total,
    /// Records received over raw TCP and handed to the log.
    tcp_records_total,
    /// Raw TCP lines refused for exceeding record_bytes_max.
    tcp_records_too_large_total,
    /// Raw TCP connections closed for idleness (tcp_idle_timeout_ms).
    tcp_idle_closed_total,
    /// HTTP requests received.
    http_requests_total,
    /// HTTP records handed to the log.
    http_records_total,
    /// HTTP responses with a 2xx status.
    http_responses_2xx_total,
    /// HTTP responses with a 4xx status.
    http_responses_4xx_total,
    /// HTTP responses with a 5xx status.
    http_responses_5xx_total,
    /// HTTP requests refused with 503 because the ring stayed full (enqueue_timeout_ms).
    http_ring_full_total,
    /// HTTP connections closed for idleness or a stalled request (http_idle_timeout_ms).
    http_idle_closed_total,
    /// Times a reactor found the ring full and paused reading (backpressure).
    ring_full_waits_total,
    /// Batches that failed with disk full (their records were not acknowledged).
    disk_full_batches_total,
    /// WebSocket subscriptions opened (handshake completed).
    ws_subscribers_total,
    /// WebSocket connections refused with 503 because subscribers_max was reached.
    ws_subscribers_refused_total,
    /// WebSocket requests refused before the upgrade (bad path, parameters or handshake).
    ws_bad_requests_total,
    /// WebSocket requests refused with 403 by the ws_allowed_origins check.
    ws_origin_refused_total,
    /// Subscriptions and reads refused because the filter exceeded filter_bytes_max.
    filter_too_long_total,
    /// Subscribers closed with 4008 after stalling past subscriber_stall_ms_max.
    ws_stalled_closed_total,
    /// WebSocket messages sent to subscribers.
    ws_messages_sent_total,
    /// Records delivered to subscribers (each delivery counted).
    ws_records_sent_total,
    /// Records subscribers read from the segment files with readers of their own: below a window, on the way to the binary window's next message, or filtered binary.
    ws_catchup_records_total,
    /// GET /v1/logs requests served.
    read_requests_total,
}

/// Connections open right now (a gauge, kept apart from the counters).
#[derive(Debug, Default)]
pub struct Gauges {
    /// Open connections, TCP and HTTP.
    pub connections_open: AtomicU64,
    /// WebSocket subscribers open (handshakes included).
    pub ws_subscribers_open: AtomicU64,
    /// Largest lag of any subscriber, in records behind the committed end.
    pub ws_lag_records_max: AtomicU64,
    /// Bytes of committed records the fan-out core holds in memory.
    pub fanout_window_bytes: AtomicU64,
    /// Oldest offset the fan-out window holds (subscribers below it read the files).
    pub fanout_window_start: AtomicU64,
}

impl Gauges {
    /// The fan-out core's gauges, with their help text.
    fn fanout(&self) -> [(&'static str, &'static str, u64); 4] {
        let r = Ordering::Relaxed;
        [
            (
                "ws_subscribers_open",
                "WebSocket subscribers open (handshakes included).",
                self.ws_subscribers_open.load(r),
            ),
            (
                "ws_lag_records_max",
                "Largest subscriber lag, in records behind the committed end.",
                self.ws_lag_records_max.load(r),
            ),
            (
                "fanout_window_bytes",
                "Bytes of committed records the fan-out core holds in memory.",
                self.fanout_window_bytes.load(r),
            ),
            (
                "fanout_window_start",
                "Oldest offset in the fan-out window.",
                self.fanout_window_start.load(r),
            ),
        ]
    }
}

/// Renders the `/stats` JSON document.
pub fn stats_json(
    stats: &ServerStats,
    gauges: &Gauges,
    log: &Log,
    started: std::time::Instant,
) -> String {
    let w = log.stats();
    let (depth, cap) = log.ring_depth();
    let mut server = serde_json::Map::new();
    for (name, _, v) in stats.each() {
        server.insert(name.into(), v.into());
    }
    server.insert(
        "connections_open".into(),
        gauges.connections_open.load(Ordering::Relaxed).into(),
    );
    for (name, _, v) in gauges.fanout() {
        server.insert(name.into(), v.into());
    }
    let doc = serde_json::json!({
        "uptime_s": started.elapsed().as_secs_f64(),
        "log": {
            "committed_end": log.committed_end(),
            "start_offset": log.start_offset(),
            "fsync": log.config().fsync.to_string(),
            "records_committed": w.records_committed.load(Ordering::Relaxed),
            "bytes_committed": w.bytes_committed.load(Ordering::Relaxed),
            "batches_appended": w.batches_appended.load(Ordering::Relaxed),
            "groups_committed": w.groups_committed.load(Ordering::Relaxed),
            "fsyncs": w.fsyncs.load(Ordering::Relaxed),
            "fsync_ns_total": w.fsync_ns_total.load(Ordering::Relaxed),
            "fsync_ns_max": w.fsync_ns_max.load(Ordering::Relaxed),
            "group_commit_us_p50": w.commit_us_quantile(0.50),
            "group_commit_us_p99": w.commit_us_quantile(0.99),
            "disk_full_errors": w.disk_full_errors.load(Ordering::Relaxed),
            "write_errors": w.write_errors.load(Ordering::Relaxed),
            "segments_rotated": w.segments_rotated.load(Ordering::Relaxed),
            "segments_purged": w.segments_purged.load(Ordering::Relaxed),
            "spares_prepared": w.spares_prepared.load(Ordering::Relaxed),
            "spares_used": w.spares_used.load(Ordering::Relaxed),
            "spares_missed": w.spares_missed.load(Ordering::Relaxed),
            "spares_skipped": w.spares_skipped.load(Ordering::Relaxed),
            "spare_ready": w.spares_ready.load(Ordering::Relaxed),
            "ring_depth": depth,
            "ring_batches_max": cap,
            "ring_full_refusals": log.ring_full_refusals(),
            "failure": log.failure().map(|f| f.to_string()),
        },
        "server": server,
        "process": {
            "rss_bytes": rss_bytes(),
        },
    });
    doc.to_string()
}

/// Renders `/metrics` in the Prometheus text exposition format.
pub fn metrics_text(stats: &ServerStats, gauges: &Gauges, log: &Log) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP ringstash_{name} {help}\n# TYPE ringstash_{name} {kind}\nringstash_{name} {v}"
        );
    };
    for (name, help, v) in stats.each() {
        metric(name, "counter", help, v);
    }
    metric(
        "connections_open",
        "gauge",
        "Open connections, TCP and HTTP.",
        gauges.connections_open.load(Ordering::Relaxed),
    );
    for (name, help, v) in gauges.fanout() {
        metric(name, "gauge", help, v);
    }
    let w = log.stats();
    let (depth, cap) = log.ring_depth();
    let r = Ordering::Relaxed;
    metric(
        "committed_end",
        "gauge",
        "Exclusive end offset of the committed records.",
        log.committed_end(),
    );
    metric(
        "records_committed_total",
        "counter",
        "Records made durable.",
        w.records_committed.load(r),
    );
    metric(
        "bytes_committed_total",
        "counter",
        "Framed bytes made durable.",
        w.bytes_committed.load(r),
    );
    metric(
        "groups_committed_total",
        "counter",
        "Group commits (write + fdatasync).",
        w.groups_committed.load(r),
    );
    metric(
        "fsyncs_total",
        "counter",
        "fdatasync calls completed.",
        w.fsyncs.load(r),
    );
    metric(
        "fsync_ns_total",
        "counter",
        "Time spent in fdatasync, nanoseconds.",
        w.fsync_ns_total.load(r),
    );
    metric(
        "fsync_ns_max",
        "gauge",
        "Longest fdatasync seen, nanoseconds.",
        w.fsync_ns_max.load(r),
    );
    metric(
        "disk_full_errors_total",
        "counter",
        "Writes that failed with ENOSPC/EDQUOT.",
        w.disk_full_errors.load(r),
    );
    metric(
        "write_errors_total",
        "counter",
        "Writes that failed otherwise.",
        w.write_errors.load(r),
    );
    metric(
        "segments_rotated_total",
        "counter",
        "Segments sealed.",
        w.segments_rotated.load(r),
    );
    metric(
        "segments_purged_total",
        "counter",
        "Segments removed by retention.",
        w.segments_purged.load(r),
    );
    metric(
        "spares_prepared_total",
        "counter",
        "Spare segments pre-written with zeros (segment_prewrite).",
        w.spares_prepared.load(r),
    );
    metric(
        "spares_used_total",
        "counter",
        "Rotations into a pre-written spare segment.",
        w.spares_used.load(r),
    );
    metric(
        "spares_missed_total",
        "counter",
        "Rotations that found no spare ready and created an empty segment.",
        w.spares_missed.load(r),
    );
    metric(
        "spares_skipped_total",
        "counter",
        "Spares not prepared: under two segments of free space, or an I/O error.",
        w.spares_skipped.load(r),
    );
    metric(
        "spare_ready",
        "gauge",
        "1 while a pre-written spare waits for the next rotation.",
        w.spares_ready.load(r),
    );
    metric(
        "ring_depth",
        "gauge",
        "Batches waiting in the ring.",
        depth as u64,
    );
    metric(
        "ring_batches_max",
        "gauge",
        "Ring capacity in batches.",
        cap as u64,
    );
    metric(
        "ring_full_total",
        "counter",
        "Pushes refused because the ring was full.",
        log.ring_full_refusals(),
    );
    metric(
        "writer_failed",
        "gauge",
        "1 once the writer stopped on an error.",
        log.failure().is_some() as u64,
    );
    metric(
        "resident_memory_bytes",
        "gauge",
        "Resident set size of the process.",
        rss_bytes(),
    );
    // Group commit time as a Prometheus histogram (cumulative buckets, seconds).
    let _ = writeln!(
        out,
        "# HELP ringstash_group_commit_seconds Time from a group's write submission to its fdatasync's completion.\n# TYPE ringstash_group_commit_seconds histogram"
    );
    let mut cumulative = 0u64;
    for (i, c) in w.commit_us_buckets.iter().enumerate() {
        cumulative += c.load(r);
        if i + 1 < w.commit_us_buckets.len() {
            let le = (1u64 << i) as f64 / 1e6;
            let _ = writeln!(
                out,
                "ringstash_group_commit_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
    }
    let _ = writeln!(
        out,
        "ringstash_group_commit_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "ringstash_group_commit_seconds_sum {}\nringstash_group_commit_seconds_count {}",
        w.fsync_ns_total.load(r) as f64 / 1e9,
        w.fsyncs.load(r)
    );
    out
}

/// The process's resident set size, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/metrics` as a fresh server renders it, with the one value that differs from
    /// run to run (the resident size) blanked.
    fn fresh_metrics() -> String {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(crate::wal::LogConfig::new(dir.path())).unwrap();
        let text = metrics_text(&ServerStats::default(), &Gauges::default(), &log);
        text.lines()
            .map(|l| match l.strip_prefix("ringstash_resident_memory_bytes ") {
                Some(_) => "ringstash_resident_memory_bytes RSS".to_string(),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    /// The Prometheus exposition is an interface: dashboards and alerts name these
    /// series. Any change to a name, a type, a help text or the order shows here.
    /// `RINGSTASH_BLESS=1` rewrites the golden file after an intended change.
    #[test]
    fn metrics_text_matches_the_golden_file() {
        let got = fresh_metrics();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/stats/metrics.golden");
        if std::env::var_os("RINGSTASH_BLESS").is_some() {
            std::fs::write(path, &got).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap();
        assert_eq!(got, want, "/metrics changed; see {path}");
    }

    /// The same for `/stats`: every key, in order, with a fresh server's values (the
    /// uptime and the resident size blanked).
    #[test]
    fn stats_json_matches_the_golden_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(crate::wal::LogConfig::new(dir.path())).unwrap();
        let started = std::time::Instant::now();
        let text = stats_json(&ServerStats::default(), &Gauges::default(), &log, started);
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["uptime_s"] = 0.into();
        doc["process"]["rss_bytes"] = 0.into();
        let got = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/stats/stats.golden.json");
        if std::env::var_os("RINGSTASH_BLESS").is_some() {
            std::fs::write(path, &got).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap();
        assert_eq!(got, want, "/stats changed; see {path}");
    }
}
