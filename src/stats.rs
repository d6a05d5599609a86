//! Every stage's counters and gauges, and their two renderings: `/stats` (JSON) and
//! `/metrics` (Prometheus text format). Every refusal the server makes has a counter.
//!
//! Each stage owns its own set ([`NetStats`], [`FanoutStats`], [`ReadStats`] and the
//! gauges beside them) and its context holds only that set, so a stage cannot move
//! another's counters. The renderers see all of them read-only, through [`Observed`],
//! and walk them once each in the same order ([`Observed::each`]), so the two
//! renderings cannot disagree about what exists.

use std::{
    fmt::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use crate::wal::LogView;

/// What a series is to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One series as both renderings see it: its name without the `ringstash_` prefix.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The name (the `/stats` key; `/metrics` adds the `ringstash_` prefix).
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// One sentence for `# HELP`.
    pub help: &'static str,
    /// The value now.
    pub value: u64,
}

/// Declares one stage's set of series: a struct of atomics, each with its kind and its
/// help text (the doc comment), and the walk over them that the renderers use.
macro_rules! series {
    ($( #[doc = $sdoc:literal] )* $vis:vis struct $set:ident {
        $( #[doc = $doc:literal] $kind:ident $name:ident, )*
    }) => {
        $( #[doc = $sdoc] )*
        ///
        /// Relaxed atomics: each is an independent statistic; nothing is derived from
        /// two of them at once.
        #[derive(Debug, Default)]
        $vis struct $set {
            $( #[doc = $doc] pub $name: AtomicU64, )*
        }

        impl $set {
            /// Every series of the set, in declaration order.
            pub fn each(&self, f: &mut dyn FnMut(Metric)) {
                $( f(Metric {
                    name: stringify!($name),
                    kind: series!(@kind $kind),
                    help: $doc.trim(),
                    value: self.$name.load(Ordering::Relaxed),
                }); )*
            }
        }
    };
    (@kind counter) => { Kind::Counter };
    (@kind gauge) => { Kind::Gauge };
}

series! {
    /// The ingest stage's counters (raw TCP and HTTP reactors).
    pub struct NetStats {
        /// TCP connections accepted.
        counter tcp_connections_total,
        /// HTTP connections accepted.
        counter http_connections_total,
        /// Connections refused because connections_max was reached.
        counter connections_refused_total,
        /// Connections refused because connections_per_ip_max were open from their client IP.
        counter connections_per_ip_refused_total,
        /// Times a connection was over its own rate (conn_records_per_s_max, conn_bytes_per_s_max): a stream connection waited, an HTTP request got 429.
        counter rate_limited_conn_total,
        /// Times a connection was over its client IP's rate (ip_records_per_s_max, ip_bytes_per_s_max): a stream connection waited, an HTTP request got 429.
        counter rate_limited_ip_total,
        /// HTTP requests answered 429 because their token was over its rate (token_records_per_s_max, token_bytes_per_s_max).
        counter rate_limited_token_total,
        /// Time stream connections spent waiting for their rate limits, in ms.
        counter rate_limited_wait_ms_total,
        /// Refused connections past refusals_in_flight_max: their reason was written without waiting for the client to read it.
        counter refusals_unlingered_total,
        /// Records received over raw TCP and handed to the log.
        counter tcp_records_total,
        /// Raw TCP lines refused for exceeding record_bytes_max.
        counter tcp_records_too_large_total,
        /// Raw TCP, syslog and RELP connections closed for idleness (tcp_idle_timeout_ms).
        counter tcp_idle_closed_total,
        /// Partial last lines or frames discarded because a stream connection ended by a reset, an error, an idle timeout or a shutdown rather than the producer's FIN.
        counter tcp_partial_discarded_total,
        /// Syslog connections accepted (syslog_addr).
        counter syslog_connections_total,
        /// Syslog messages stored (syslog_addr).
        counter syslog_records_total,
        /// Syslog messages stored whole, marked unparsed: neither RFC 5424 nor RFC 3164.
        counter syslog_unparsed_total,
        /// Syslog frames refused whole: over syslog_frame_bytes_max, or rendered over record_bytes_max.
        counter syslog_frames_too_large_total,
        /// Octet-counted syslog frames cut off by the end of their connection (not stored).
        counter syslog_truncated_total,
        /// Syslog UDP datagrams received (syslog_udp_addr).
        counter syslog_udp_datagrams_total,
        /// Syslog UDP datagrams the kernel dropped because the socket's receive buffer was full (SO_RXQ_OVFL): lost, never seen.
        counter syslog_udp_drops_total,
        /// RELP connections accepted (relp_addr).
        counter relp_connections_total,
        /// RELP syslog messages stored (each answered rsp 200 once durable).
        counter relp_records_total,
        /// RELP refusals for size: a frame over relp_frame_bytes_max (rsp 500, connection closed), or a message rendered over record_bytes_max (rsp 500, session goes on).
        counter relp_frames_too_large_total,
        /// RELP connections refused for a protocol error: a malformed frame, a TXNR out of sequence, a command before open or unknown, bad offers (rsp 500, connection closed).
        counter relp_protocol_errors_total,
        /// Times a RELP connection stopped reading because relp_window_max transactions were unanswered.
        counter relp_window_full_waits_total,
        /// HTTP requests received.
        counter http_requests_total,
        /// HTTP records handed to the log.
        counter http_records_total,
        /// OTLP export requests (POST /v1/logs, protobuf or OTLP/JSON) decoded.
        counter otlp_requests_total,
        /// OTLP log records stored (acknowledged durable).
        counter otlp_records_total,
        /// OTLP log records refused alone and reported in a partial success (validation, record_bytes_max).
        counter otlp_rejected_records_total,
        /// POST /v1/logs bodies refused with 413 for holding more than logs_body_items_max items.
        counter logs_body_items_refused_total,
        /// HTTP responses with a 2xx status.
        counter http_responses_2xx_total,
        /// HTTP responses with a 4xx status.
        counter http_responses_4xx_total,
        /// HTTP responses with a 5xx status.
        counter http_responses_5xx_total,
        /// HTTP requests refused with 503 because the ring stayed full (enqueue_timeout_ms).
        counter http_ring_full_total,
        /// HTTP connections closed for idleness or a stalled request (http_idle_timeout_ms).
        counter http_idle_closed_total,
        /// HTTP requests answered 408 because their head was not complete within http_head_timeout_ms.
        counter http_head_timeouts_total,
        /// HTTP requests answered 408 because their body arrived slower than http_body_rate_bytes_per_s_min.
        counter http_body_too_slow_total,
        /// Times a reactor found the ring full and paused reading (backpressure).
        counter ring_full_waits_total,
        /// Batches that failed with disk full (their records were not acknowledged).
        counter disk_full_batches_total,
    }
}

series! {
    /// The fan-out stage's counters (WebSocket subscribers).
    pub struct FanoutStats {
        /// WebSocket subscriptions opened (handshake completed).
        counter ws_subscribers_total,
        /// WebSocket connections refused with 503 because subscribers_max was reached.
        counter ws_subscribers_refused_total,
        /// WebSocket requests refused before the upgrade (bad path, parameters or handshake).
        counter ws_bad_requests_total,
        /// WebSocket requests refused with 403 by the ws_allowed_origins check.
        counter ws_origin_refused_total,
        /// Subscribers closed with 4008 after stalling past subscriber_stall_ms_max.
        counter ws_stalled_closed_total,
        /// Subscribers closed with 1009 for sending a message over ws_message_bytes_max.
        counter ws_message_too_large_total,
        /// Subscribers closed with 1002 (a frame breaking RFC 6455: unmasked, reserved bits or opcode, a control frame over 125 bytes) or 1007 (a text message not UTF-8).
        counter ws_protocol_errors_total,
        /// WebSocket upgrade requests answered 408 for not being complete within ws_handshake_timeout_ms.
        counter ws_handshake_timeouts_total,
        /// WebSocket messages sent to subscribers.
        counter ws_messages_sent_total,
        /// Records delivered to subscribers (each delivery counted).
        counter ws_records_sent_total,
        /// Records subscribers read from the segment files with readers of their own: below a window, on the way to the binary window's next message, or filtered binary.
        counter ws_catchup_records_total,
    }
}

series! {
    /// TLS on every listener that has it (the reactors' and the fan-out's).
    pub struct TlsStats {
        /// TLS handshakes completed.
        counter tls_handshakes_total,
        /// TLS handshakes that failed: a protocol error, a refused or missing client certificate, an unsupported version, or the peer closing mid-handshake (a connection closed before its first byte, such as a TCP health check, is not counted).
        counter tls_handshake_failures_total,
        /// TLS handshakes not complete within tls_handshake_timeout_ms (closed).
        counter tls_handshake_timeouts_total,
        /// Connections to a TLS listener that sent something other than a TLS handshake (plain text) and were refused in their own protocol.
        counter tls_plaintext_refused_total,
        /// Certificate reloads on SIGHUP that took effect.
        counter tls_reloads_total,
        /// Certificate reloads on SIGHUP that failed (the previous certificates stay in use).
        counter tls_reload_failures_total,
    }
}

series! {
    /// Bearer tokens (`auth_token_file`, `auth_tokens`): refusals by listener and
    /// reason, and reloads. All zero while auth is off.
    pub struct AuthStats {
        /// HTTP requests refused 401 for carrying no token.
        counter http_auth_missing_total,
        /// HTTP requests refused 401 for a token that is none of the server's, or an Authorization header that is not Bearer.
        counter http_auth_invalid_total,
        /// HTTP requests refused 403: a known token without the scope the route needs.
        counter http_auth_forbidden_total,
        /// WebSocket upgrades refused 401 for carrying no token (header or access_token).
        counter ws_auth_missing_total,
        /// WebSocket upgrades refused 401 for a token that is none of the server's.
        counter ws_auth_invalid_total,
        /// WebSocket upgrades refused 403: a known token without the read scope.
        counter ws_auth_forbidden_total,
        /// Token reloads on SIGHUP that took effect.
        counter auth_reloads_total,
        /// Token reloads on SIGHUP that failed (the previous tokens stay in force).
        counter auth_reload_failures_total,
        /// Tokens in force.
        gauge auth_tokens,
    }
}

series! {
    /// What the query layer's two users count together: the read API (on the
    /// reactors) and subscriptions (on the fan-out core) parse the same filters.
    pub struct ReadStats {
        /// Subscriptions and reads refused because the filter exceeded filter_bytes_max.
        counter filter_too_long_total,
        /// GET /v1/logs requests served.
        counter read_requests_total,
    }
}

series! {
    /// The ingest stage's gauge.
    pub struct NetGauges {
        /// Open connections, TCP and HTTP.
        gauge connections_open,
        /// Open HTTP connections waiting between requests with nothing buffered (keep-alive); a drain ends once only these are open.
        gauge connections_idle,
    }
}

series! {
    /// The fan-out core's gauges.
    pub struct FanoutGauges {
        /// WebSocket subscribers open (handshakes included).
        gauge ws_subscribers_open,
        /// Largest subscriber lag, in records behind the committed end.
        gauge ws_lag_records_max,
        /// Bytes of committed records the fan-out core holds in memory.
        gauge fanout_window_bytes,
        /// Oldest offset in the fan-out window.
        gauge fanout_window_start,
    }
}

/// Read-only handles on every stage's series, for `/stats` and `/metrics`.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The ingest stage's counters.
    pub net: Arc<NetStats>,
    /// The ingest stage's gauge.
    pub net_gauges: Arc<NetGauges>,
    /// The fan-out's counters.
    pub fanout: Arc<FanoutStats>,
    /// The fan-out's gauges.
    pub fanout_gauges: Arc<FanoutGauges>,
    /// The read API's and the filters' counters.
    pub reads: Arc<ReadStats>,
    /// TLS counters, every listener's.
    pub tls: Arc<TlsStats>,
    /// Token refusals and reloads.
    pub auth: Arc<AuthStats>,
    /// The log, for its own counters.
    pub log: LogView,
    /// When serving began.
    pub started: Instant,
}

impl Observed {
    /// Fresh series for every stage, over `log`.
    pub fn new(log: LogView) -> Self {
        Observed {
            net: Arc::default(),
            net_gauges: Arc::default(),
            fanout: Arc::default(),
            fanout_gauges: Arc::default(),
            reads: Arc::default(),
            tls: Arc::default(),
            auth: Arc::default(),
            log,
            started: Instant::now(),
        }
    }

    /// The servers' series (not the log's), counters first, then gauges.
    pub fn each(&self, f: &mut dyn FnMut(Metric)) {
        self.net.each(f);
        self.fanout.each(f);
        self.reads.each(f);
        self.tls.each(f);
        self.auth.each(f);
        self.net_gauges.each(f);
        self.fanout_gauges.each(f);
    }
}

/// One of the log's series: its `/stats` key and its `/metrics` name (either may be
/// absent: some are only meaningful in one rendering), and how to read it.
struct LogSeries {
    json: Option<&'static str>,
    prom: Option<(&'static str, Kind, &'static str)>,
    value: fn(&LogView) -> serde_json::Value,
}

const fn both(
    json: &'static str,
    prom: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&LogView) -> serde_json::Value,
) -> LogSeries {
    LogSeries {
        json: Some(json),
        prom: Some((prom, kind, help)),
        value,
    }
}

const fn json_only(json: &'static str, value: fn(&LogView) -> serde_json::Value) -> LogSeries {
    LogSeries {
        json: Some(json),
        prom: None,
        value,
    }
}

/// A [`LOG_SERIES`] row for one of the writer's counters (`WalStats`), shown in both
/// renderings; its `/stats` key is the field's name.
macro_rules! wal_stat {
    ($field:ident, $prom:literal, $kind:ident, $help:literal) => {
        both(stringify!($field), $prom, $kind, $help, |l| {
            l.stats().$field.load(Ordering::Relaxed).into()
        })
    };
}

/// The log's series in `/stats` order; `/metrics` renders the ones with a name, in the
/// same order. Relaxed loads: independent statistics.
const LOG_SERIES: &[LogSeries] = {
    use Kind::{Counter, Gauge};
    const R: Ordering = Ordering::Relaxed;
    &[
        both(
            "committed_end",
            "committed_end",
            Gauge,
            "Exclusive end offset of the committed records.",
            |l| l.committed_end().into(),
        ),
        json_only("start_offset", |l| l.start_offset().into()),
        json_only("fsync", |l| l.config().fsync.to_string().into()),
        json_only("write_mode", |l| l.write_mode().0.as_str().into()),
        both(
            "write_direct",
            "write_direct",
            Gauge,
            "1 while groups are written O_DIRECT (write_mode direct, taken by the filesystem).",
            |l| u64::from(l.write_mode().0 == crate::wal::WriteMode::Direct).into(),
        ),
        json_only("io_driver", |l| l.io_driver().0.as_str().into()),
        both(
            "io_uring",
            "io_uring",
            Gauge,
            "1 when the io_uring driver runs, 0 under the epoll driver (io_driver; why is said at start).",
            |l| u64::from(l.io_driver().0 == crate::wal::IoDriver::Uring).into(),
        ),
        both(
            "reader_memory_bytes",
            "reader_memory_bytes_total",
            Counter,
            "Bytes live readers (fan-out, read API) copied from recent committed groups in memory.",
            |l| l.reader_sources().0.into(),
        ),
        both(
            "reader_file_bytes",
            "reader_file_bytes_total",
            Counter,
            "Bytes live readers read from segment files (older than the recent groups in memory).",
            |l| l.reader_sources().1.into(),
        ),
        both(
            "recent_groups_bytes",
            "recent_groups_bytes",
            Gauge,
            "Bytes of recent committed groups held in memory for live readers (bound: fanout_window_bytes_max).",
            |l| l.reader_sources().2.into(),
        ),
        wal_stat!(
            records_committed,
            "records_committed_total",
            Counter,
            "Records made durable."
        ),
        wal_stat!(
            bytes_committed,
            "bytes_committed_total",
            Counter,
            "Framed bytes made durable."
        ),
        json_only("batches_appended", |l| {
            l.stats().batches_appended.load(R).into()
        }),
        wal_stat!(
            groups_committed,
            "groups_committed_total",
            Counter,
            "Group commits (write + fdatasync)."
        ),
        wal_stat!(
            fsyncs,
            "fsyncs_total",
            Counter,
            "fdatasync calls completed."
        ),
        wal_stat!(
            fsync_ns_total,
            "fsync_ns_total",
            Counter,
            "Time spent in fdatasync, nanoseconds."
        ),
        wal_stat!(
            fsync_ns_max,
            "fsync_ns_max",
            Gauge,
            "Longest fdatasync seen, nanoseconds."
        ),
        json_only("group_commit_us_p50", |l| {
            l.stats().commit_us_quantile(0.50).into()
        }),
        json_only("group_commit_us_p99", |l| {
            l.stats().commit_us_quantile(0.99).into()
        }),
        wal_stat!(
            disk_full_errors,
            "disk_full_errors_total",
            Counter,
            "Writes that failed with ENOSPC/EDQUOT."
        ),
        wal_stat!(
            write_errors,
            "write_errors_total",
            Counter,
            "Writes that failed otherwise."
        ),
        wal_stat!(
            segments_rotated,
            "segments_rotated_total",
            Counter,
            "Segments sealed."
        ),
        wal_stat!(
            segments_purged,
            "segments_purged_total",
            Counter,
            "Segments removed by retention."
        ),
        wal_stat!(
            spares_prepared,
            "spares_prepared_total",
            Counter,
            "Spare segments pre-written with zeros (segment_prewrite)."
        ),
        wal_stat!(
            spares_used,
            "spares_used_total",
            Counter,
            "Rotations into a pre-written spare segment."
        ),
        wal_stat!(
            spares_missed,
            "spares_missed_total",
            Counter,
            "Rotations that found no spare ready and created an empty segment."
        ),
        wal_stat!(
            spares_skipped,
            "spares_skipped_total",
            Counter,
            "Spares not prepared: under two segments of free space, or an I/O error."
        ),
        both(
            "spare_ready",
            "spare_ready",
            Gauge,
            "1 while a pre-written spare waits for the next rotation.",
            |l| l.stats().spares_ready.load(R).into(),
        ),
        both(
            "recovery_damaged_ranges",
            "recovery_damaged_ranges",
            Gauge,
            "Damaged ranges (bad frames with valid records after them) recovery found in the active segment at start; not cut, skipped by readers.",
            |l| l.stats().recovery_damaged_ranges.load(R).into(),
        ),
        wal_stat!(
            damaged_ranges_skipped,
            "damaged_ranges_skipped_total",
            Counter,
            "Damaged ranges live readers (read API, subscribers) skipped, once per reader."
        ),
        wal_stat!(
            time_skew_exceeded,
            "time_skew_exceeded_total",
            Counter,
            "Records written more than time_skew_ms_max below the running maximum of receive time; `until` reads may miss them."
        ),
        both(
            "ring_depth",
            "ring_depth",
            Gauge,
            "Batches waiting in the ring.",
            |l| l.ring_depth().0.into(),
        ),
        both(
            "ring_batches_max",
            "ring_batches_max",
            Gauge,
            "Ring capacity in batches.",
            |l| l.ring_depth().1.into(),
        ),
        both(
            "ring_full_refusals",
            "ring_full_total",
            Counter,
            "Pushes refused because the ring was full.",
            |l| l.ring_full_refusals().into(),
        ),
        both(
            "failure",
            "writer_failed",
            Gauge,
            "1 once the writer stopped on an error.",
            |l| l.failure().map(|f| f.to_string()).into(),
        ),
    ]
};

/// Renders the `/stats` JSON document.
pub fn stats_json(o: &Observed) -> String {
    let mut log = serde_json::Map::new();
    for s in LOG_SERIES {
        if let Some(key) = s.json {
            log.insert(key.into(), (s.value)(&o.log));
        }
    }
    let mut server = serde_json::Map::new();
    o.each(&mut |m| {
        server.insert(m.name.into(), m.value.into());
    });
    let doc = serde_json::json!({
        "uptime_s": o.started.elapsed().as_secs_f64(),
        "log": log,
        "server": server,
        "process": {
            "rss_bytes": rss_bytes(),
        },
    });
    doc.to_string()
}

/// Renders `/metrics` in the Prometheus text exposition format.
pub fn metrics_text(o: &Observed) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: Kind, help: &str, v: u64| {
        let kind = kind.as_str();
        let _ = writeln!(
            out,
            "# HELP ringstash_{name} {help}\n# TYPE ringstash_{name} {kind}\nringstash_{name} {v}"
        );
    };
    o.each(&mut |m| metric(m.name, m.kind, m.help, m.value));
    for s in LOG_SERIES {
        if let Some((name, kind, help)) = s.prom {
            // A text value (the writer's failure) is rendered as 1 when present.
            let v = match (s.value)(&o.log) {
                serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
                serde_json::Value::Null => 0,
                _ => 1,
            };
            metric(name, kind, help, v);
        }
    }
    metric(
        "resident_memory_bytes",
        Kind::Gauge,
        "Resident set size of the process.",
        rss_bytes(),
    );
    group_commit_histogram(&mut out, o.log.stats());
    out
}

/// Group commit time as a Prometheus histogram (cumulative buckets, seconds).
fn group_commit_histogram(out: &mut String, w: &crate::wal::WalStats) {
    let r = Ordering::Relaxed;
    let _ = writeln!(
        *out,
        "# HELP ringstash_group_commit_seconds Time from a group's write submission to its fdatasync's completion.\n# TYPE ringstash_group_commit_seconds histogram"
    );
    let mut cumulative = 0u64;
    for (i, c) in w.commit_us_buckets.iter().enumerate() {
        cumulative += c.load(r);
        if i + 1 < w.commit_us_buckets.len() {
            let le = (1u64 << i) as f64 / 1e6;
            let _ = writeln!(
                *out,
                "ringstash_group_commit_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
    }
    let _ = writeln!(
        *out,
        "ringstash_group_commit_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        *out,
        "ringstash_group_commit_seconds_sum {}\nringstash_group_commit_seconds_count {}",
        w.fsync_ns_total.load(r) as f64 / 1e9,
        w.fsyncs.load(r)
    );
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
    use crate::wal::Log;

    /// `/metrics` as a fresh server renders it, with the one value that differs from
    /// run to run (the resident size) blanked.
    fn fresh_metrics() -> String {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(crate::wal::LogConfig::new(dir.path())).unwrap();
        let text = metrics_text(&Observed::new(log.view()));
        text.lines()
            .map(
                |l| match l.strip_prefix("ringstash_resident_memory_bytes ") {
                    Some(_) => "ringstash_resident_memory_bytes RSS".to_string(),
                    None => l.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    /// The Prometheus exposition is an interface: dashboards and alerts name these
    /// series. Any change to a name, a type, a help text or the order shows here.
    /// `RINGSTASH_BLESS=1` rewrites the golden file after an intended change.
    #[test]
    fn metrics_text_matches_the_golden_file() {
        crate::assert_golden("src/stats/metrics.golden", &fresh_metrics());
    }

    /// The same for `/stats`: every key, in order, with a fresh server's values (the
    /// uptime and the resident size blanked).
    #[test]
    fn stats_json_matches_the_golden_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(crate::wal::LogConfig::new(dir.path())).unwrap();
        let text = stats_json(&Observed::new(log.view()));
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["uptime_s"] = 0.into();
        doc["process"]["rss_bytes"] = 0.into();
        let got = serde_json::to_string_pretty(&doc).unwrap()
            + "
";
        crate::assert_golden("src/stats/stats.golden.json", &got);
    }
}
