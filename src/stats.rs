//! Every stage's counters and gauges, and their two renderings: `/stats` (JSON) and
//! `/metrics` (Prometheus text format). Every refusal the server makes has a counter.
//!
//! Each stage owns its own set ([`NetStats`], [`FanoutStats`], [`ReadStats`] and the
//! gauges beside them) and its context holds only that set, so a stage cannot move
//! another's counters. The renderers see all of them read-only, through [`Observed`],
//! and walk them once each in the same order ([`samples`]), so the two renderings
//! cannot disagree about what exists.
//!
//! The two namings differ on purpose. `/stats` is our own JSON: one flat key per
//! counter (the field's name), in raw units (`_ms`, `_ns`). `/metrics` follows the
//! Prometheus conventions: each series declares the [`Family`] it belongs to and its
//! labels, so that series which differ only by protocol, listener or reason are one
//! family with a label (`ringstash_records_received_total{protocol="tcp"}`), and times
//! are in seconds. The mapping is the declarations below; `docs/operations.md` lists
//! it, generated from them (`metrics_markdown`).

use std::{
    fmt::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use crate::{histogram::MicrosHistogram, wal::LogView};

/// What a family is to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets with a sum and a count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A Prometheus metric family: one name, one type, one HELP; its series differ only by
/// the values of its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The exposition name, prefix included (`ringstash_`, or `process_` for the
    /// families every Prometheus client exports).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// What one unit of the value is, for the reference (`seconds`, `bytes`,
    /// `records`...). Base units only where the name carries one.
    pub unit: &'static str,
    /// The label names every series of the family carries, in order.
    pub labels: &'static [&'static str],
    /// One sentence for `# HELP`.
    pub help: &'static str,
    /// Raw units the series count per unit of the family: 1, or 1000 where a counter
    /// keeps milliseconds and the family is in seconds.
    pub per_unit: u64,
}

impl Family {
    /// A counter family.
    pub const fn counter(
        name: &'static str,
        unit: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Family {
        Family {
            name,
            kind: Kind::Counter,
            unit,
            labels,
            help,
            per_unit: 1,
        }
    }

    /// A gauge family.
    pub const fn gauge(
        name: &'static str,
        unit: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Family {
        Family {
            kind: Kind::Gauge,
            ..Family::counter(name, unit, labels, help)
        }
    }

    /// The same family over series that count `per_unit` raw units per unit.
    pub const fn per(self, per_unit: u64) -> Family {
        Family { per_unit, ..self }
    }
}

/// A value as it is rendered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// A whole number.
    Int(u64),
    /// A fraction (seconds).
    Float(f64),
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::Int(v) => write!(f, "{v}"),
            // Display of an f64 never uses an exponent; the exposition format reads it.
            Num::Float(v) => write!(f, "{v}"),
        }
    }
}

/// One series as both renderings see it.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The `/stats` key (under `server`): the field's name, in raw units.
    pub key: &'static str,
    /// The `/metrics` family it is a series of.
    pub family: &'static Family,
    /// Its label values, in the family's label order.
    pub labels: &'static [(&'static str, &'static str)],
    /// What this one series counts (its doc comment).
    pub help: &'static str,
    /// The value now, in raw units.
    pub value: u64,
}

/// Declares one stage's set of series: a struct of atomics, each with its kind, its
/// help text (the doc comment) and where it goes in `/metrics`, and the walk over them
/// that the renderers use. A row is either
///
/// - `counter name ("unit")`: a family of its own, `ringstash_name`, whose HELP is the
///   doc comment; or
/// - `counter name => FAMILY { label: "value", ... }`: a series of a shared [`Family`]
///   constant (several series differing by label values, or a unit conversion).
macro_rules! series {
    ($( #[doc = $sdoc:literal] )* $vis:vis struct $set:ident {
        $( #[doc = $doc:literal] $kind:ident $name:ident
           $( ( $unit:literal ) )?
           $( => $fam:ident $( { $( $l:ident : $v:literal ),* } )? )?
        , )*
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
                    key: stringify!($name),
                    family: series!(@family $kind $name $doc [$($unit)?] [$($fam)?]),
                    labels: &[ $($( $( (stringify!($l), $v), )* )?)? ],
                    help: $doc.trim_ascii(),
                    value: self.$name.load(Ordering::Relaxed),
                }); )*
            }
        }
    };
    (@family $kind:ident $name:ident $doc:literal [$unit:literal] []) => {{
        const F: Family = Family {
            kind: series!(@kind $kind),
            ..Family::counter(
                concat!("ringstash_", stringify!($name)),
                $unit,
                &[],
                $doc.trim_ascii(),
            )
        };
        &F
    }};
    (@family $kind:ident $name:ident $doc:literal [] [$fam:ident]) => {{
        const _: () = assert!(matches!($fam.kind, series!(@kind $kind)));
        &$fam
    }};
    (@kind counter) => { Kind::Counter };
    (@kind gauge) => { Kind::Gauge };
}

/// Connections accepted, by listener protocol.
const CONNECTIONS_ACCEPTED: Family = Family::counter(
    "ringstash_connections_accepted_total",
    "connections",
    &["protocol"],
    "Connections accepted, by the listener's protocol.",
);
/// Connections refused at accept, by the bound that refused them.
const CONNECTIONS_REFUSED: Family = Family::counter(
    "ringstash_connections_refused_total",
    "connections",
    &["reason"],
    "Connections refused at accept, by the setting that refused them.",
);
/// Rate-limit hits, by the limit's scope.
const RATE_LIMITED: Family = Family::counter(
    "ringstash_rate_limited_total",
    "times",
    &["scope"],
    "Times a connection or request was over a rate limit (a stream connection waited, an HTTP request got 429), by the limit's scope.",
);
/// Time spent paced, in seconds from the counter's milliseconds.
const RATE_LIMITED_WAIT: Family = Family::counter(
    "ringstash_rate_limited_wait_seconds_total",
    "seconds",
    &[],
    "Time stream connections spent waiting for their rate limits.",
)
.per(1_000);
/// Records handed to the log, by protocol.
const RECORDS_RECEIVED: Family = Family::counter(
    "ringstash_records_received_total",
    "records",
    &["protocol"],
    "Records received and handed to the log, by protocol (http counts every record of POST /ingest and POST /v1/logs, OTLP's included).",
);
/// Size refusals, by protocol.
const FRAMES_TOO_LARGE: Family = Family::counter(
    "ringstash_frames_too_large_total",
    "frames",
    &["protocol"],
    "Lines or frames refused for their size (record_bytes_max, syslog_frame_bytes_max, relp_frame_bytes_max), by protocol.",
);
/// Idle closes, by listener kind.
const IDLE_CLOSED: Family = Family::counter(
    "ringstash_idle_closed_total",
    "connections",
    &["listener"],
    "Connections closed for idleness, by listener: stream (raw TCP, syslog, RELP; tcp_idle_timeout_ms) or http (http_idle_timeout_ms).",
);
/// HTTP responses, by status class.
const HTTP_RESPONSES: Family = Family::counter(
    "ringstash_http_responses_total",
    "responses",
    &["code"],
    "HTTP responses, by status class.",
);
/// WebSocket requests refused before or at the upgrade, by reason.
const WS_REFUSED: Family = Family::counter(
    "ringstash_ws_refused_total",
    "requests",
    &["reason"],
    "WebSocket requests refused before a subscription opened, by reason (token refusals are ringstash_auth_refused_total{listener=\"ws\"}).",
);
/// Subscribers the server closed, by reason.
const WS_CLOSED: Family = Family::counter(
    "ringstash_ws_closed_total",
    "subscribers",
    &["reason"],
    "Subscribers the server closed, by reason (the close code says which).",
);
/// TLS handshakes that did not complete, by reason.
const TLS_HANDSHAKE_FAILURES: Family = Family::counter(
    "ringstash_tls_handshake_failures_total",
    "handshakes",
    &["reason"],
    "Connections to a TLS listener whose handshake did not complete, by reason.",
);
/// SIGHUP reloads, by what was reloaded and whether it took effect.
const RELOADS: Family = Family::counter(
    "ringstash_reloads_total",
    "reloads",
    &["subject", "result"],
    "Reloads on SIGHUP, by what was reloaded (tls certificates, auth tokens) and their result (ok: took effect; failed: the previous ones stay in force).",
);
/// Token refusals, by listener and reason.
const AUTH_REFUSED: Family = Family::counter(
    "ringstash_auth_refused_total",
    "requests",
    &["listener", "reason"],
    "Requests refused for their bearer token, by listener (http, ws) and reason (missing: 401, no token; invalid: 401, not a token of the server's; forbidden: 403, without the scope the route needs).",
);

series! {
    /// The ingest stage's counters (raw TCP and HTTP reactors).
    pub struct NetStats {
        /// TCP connections accepted (tcp_addr, tcp_acked_addr).
        counter tcp_connections_total => CONNECTIONS_ACCEPTED { protocol: "tcp" },
        /// HTTP connections accepted.
        counter http_connections_total => CONNECTIONS_ACCEPTED { protocol: "http" },
        /// Connections the reactor that accepted them handed to the reactor serving the fewest connections (the kernel's choice among the reactors' SO_REUSEPORT listeners is a hash: uneven over a few connections).
        counter connections_handed_over_total ("connections"),
        /// Connections refused because connections_max was reached.
        counter connections_refused_total => CONNECTIONS_REFUSED { reason: "connections_max" },
        /// Connections refused because connections_per_ip_max were open from their client IP.
        counter connections_per_ip_refused_total => CONNECTIONS_REFUSED { reason: "connections_per_ip_max" },
        /// Times a connection was over its own rate (conn_records_per_s_max, conn_bytes_per_s_max): a stream connection waited, an HTTP request got 429.
        counter rate_limited_conn_total => RATE_LIMITED { scope: "conn" },
        /// Times a connection was over its client IP's rate (ip_records_per_s_max, ip_bytes_per_s_max): a stream connection waited, an HTTP request got 429.
        counter rate_limited_ip_total => RATE_LIMITED { scope: "ip" },
        /// HTTP requests answered 429 because their token was over its rate (token_records_per_s_max, token_bytes_per_s_max).
        counter rate_limited_token_total => RATE_LIMITED { scope: "token" },
        /// Time stream connections spent waiting for their rate limits, in ms.
        counter rate_limited_wait_ms_total => RATE_LIMITED_WAIT,
        /// Refused connections past refusals_in_flight_max: their reason was written without waiting for the client to read it.
        counter refusals_unlingered_total ("connections"),
        /// Records received over raw TCP and handed to the log.
        counter tcp_records_total => RECORDS_RECEIVED { protocol: "tcp" },
        /// Raw TCP lines refused for exceeding record_bytes_max.
        counter tcp_records_too_large_total => FRAMES_TOO_LARGE { protocol: "tcp" },
        /// Raw TCP, syslog and RELP connections closed for idleness (tcp_idle_timeout_ms).
        counter tcp_idle_closed_total => IDLE_CLOSED { listener: "stream" },
        /// Partial last lines or frames discarded because a stream connection ended by a reset, an error, an idle timeout or a shutdown rather than the producer's FIN.
        counter tcp_partial_discarded_total ("frames"),
        /// Syslog connections accepted (syslog_addr).
        counter syslog_connections_total => CONNECTIONS_ACCEPTED { protocol: "syslog" },
        /// Syslog messages stored (syslog_addr and syslog_udp_addr).
        counter syslog_records_total => RECORDS_RECEIVED { protocol: "syslog" },
        /// Syslog messages stored whole, marked unparsed: neither RFC 5424 nor RFC 3164.
        counter syslog_unparsed_total ("records"),
        /// Syslog frames refused whole: over syslog_frame_bytes_max, or rendered over record_bytes_max.
        counter syslog_frames_too_large_total => FRAMES_TOO_LARGE { protocol: "syslog" },
        /// Octet-counted syslog frames cut off by the end of their connection (not stored).
        counter syslog_truncated_total ("frames"),
        /// Syslog UDP datagrams received (syslog_udp_addr).
        counter syslog_udp_datagrams_total ("datagrams"),
        /// Syslog UDP datagrams the kernel dropped because the socket's receive buffer was full (SO_RXQ_OVFL): lost, never seen.
        counter syslog_udp_drops_total ("datagrams"),
        /// RELP connections accepted (relp_addr).
        counter relp_connections_total => CONNECTIONS_ACCEPTED { protocol: "relp" },
        /// RELP syslog messages stored (each answered rsp 200 once durable).
        counter relp_records_total => RECORDS_RECEIVED { protocol: "relp" },
        /// RELP refusals for size: a frame over relp_frame_bytes_max (rsp 500, connection closed), or a message rendered over record_bytes_max (rsp 500, session goes on).
        counter relp_frames_too_large_total => FRAMES_TOO_LARGE { protocol: "relp" },
        /// RELP connections refused for a protocol error: a malformed frame, a TXNR out of sequence, a command before open or unknown, bad offers (rsp 500, connection closed).
        counter relp_protocol_errors_total ("connections"),
        /// Times a RELP connection stopped reading because relp_window_max transactions were unanswered.
        counter relp_window_full_waits_total ("times"),
        /// HTTP requests received.
        counter http_requests_total ("requests"),
        /// HTTP records handed to the log (POST /ingest and POST /v1/logs, OTLP's included).
        counter http_records_total => RECORDS_RECEIVED { protocol: "http" },
        /// OTLP export requests (POST /v1/logs, protobuf or OTLP/JSON) decoded.
        counter otlp_requests_total ("requests"),
        /// OTLP log records stored (acknowledged durable); also counted in ringstash_records_received_total{protocol="http"}.
        counter otlp_records_total ("records"),
        /// OTLP log records refused alone and reported in a partial success (validation, record_bytes_max).
        counter otlp_rejected_records_total ("records"),
        /// POST /v1/logs bodies refused with 413 for holding more than logs_body_items_max items.
        counter logs_body_items_refused_total ("requests"),
        /// HTTP responses with a 2xx status.
        counter http_responses_2xx_total => HTTP_RESPONSES { code: "2xx" },
        /// HTTP responses with a 4xx status.
        counter http_responses_4xx_total => HTTP_RESPONSES { code: "4xx" },
        /// HTTP responses with a 5xx status.
        counter http_responses_5xx_total => HTTP_RESPONSES { code: "5xx" },
        /// HTTP requests refused with 503 because the ring stayed full (enqueue_timeout_ms).
        counter http_ring_full_total ("requests"),
        /// HTTP requests refused with 404 because they named no stream of this server (a POST's Ringstash-Stream header, a read's stream=).
        counter unknown_stream_total ("requests"),
        /// HTTP connections closed for idleness or a stalled request (http_idle_timeout_ms).
        counter http_idle_closed_total => IDLE_CLOSED { listener: "http" },
        /// HTTP requests answered 408 because their head was not complete within http_head_timeout_ms.
        counter http_head_timeouts_total ("requests"),
        /// HTTP requests answered 408 because their body arrived slower than http_body_rate_bytes_per_s_min.
        counter http_body_too_slow_total ("requests"),
        /// Times a reactor found the ring full and paused reading (backpressure).
        counter ring_full_waits_total ("times"),
        /// Batches that failed with disk full (their records were not acknowledged).
        counter disk_full_batches_total ("batches"),
    }
}

series! {
    /// The fan-out stage's counters (WebSocket subscribers).
    pub struct FanoutStats {
        /// WebSocket subscriptions opened (handshake completed).
        counter ws_subscribers_total ("subscribers"),
        /// WebSocket connections refused with 503 because subscribers_max was reached.
        counter ws_subscribers_refused_total => WS_REFUSED { reason: "subscribers_max" },
        /// WebSocket requests refused before the upgrade (bad path, parameters or handshake).
        counter ws_bad_requests_total => WS_REFUSED { reason: "bad_request" },
        /// WebSocket requests refused with 403 by the ws_allowed_origins check.
        counter ws_origin_refused_total => WS_REFUSED { reason: "origin" },
        /// Subscribers closed with 4008 after stalling past subscriber_stall_ms_max.
        counter ws_stalled_closed_total => WS_CLOSED { reason: "stalled" },
        /// Subscribers closed with 1009 for sending a message over ws_message_bytes_max.
        counter ws_message_too_large_total => WS_CLOSED { reason: "message_too_large" },
        /// Subscribers closed with 1002 (a frame breaking RFC 6455: unmasked, reserved bits or opcode, a control frame over 125 bytes) or 1007 (a text message not UTF-8).
        counter ws_protocol_errors_total => WS_CLOSED { reason: "protocol_error" },
        /// WebSocket upgrade requests answered 408 for not being complete within ws_handshake_timeout_ms.
        counter ws_handshake_timeouts_total => WS_REFUSED { reason: "handshake_timeout" },
        /// WebSocket messages sent to subscribers.
        counter ws_messages_sent_total ("messages"),
        /// Records delivered to subscribers (each delivery counted).
        counter ws_records_sent_total ("records"),
        /// Records subscribers read from the segment files with readers of their own: below a window, on the way to the binary window's next message, or filtered binary.
        counter ws_catchup_records_total ("records"),
    }
}

series! {
    /// TLS on every listener that has it (the reactors' and the fan-out's).
    pub struct TlsStats {
        /// TLS handshakes completed.
        counter tls_handshakes_total ("handshakes"),
        /// TLS handshakes that failed: a protocol error, a refused or missing client certificate, an unsupported version, or the peer closing mid-handshake (a connection closed before its first byte, such as a TCP health check, is not counted).
        counter tls_handshake_failures_total => TLS_HANDSHAKE_FAILURES { reason: "error" },
        /// TLS handshakes not complete within tls_handshake_timeout_ms (closed).
        counter tls_handshake_timeouts_total => TLS_HANDSHAKE_FAILURES { reason: "timeout" },
        /// Connections to a TLS listener that sent something other than a TLS handshake (plain text) and were refused in their own protocol.
        counter tls_plaintext_refused_total => TLS_HANDSHAKE_FAILURES { reason: "plaintext" },
        /// Certificate reloads on SIGHUP that took effect.
        counter tls_reloads_total => RELOADS { subject: "tls", result: "ok" },
        /// Certificate reloads on SIGHUP that failed (the previous certificates stay in use).
        counter tls_reload_failures_total => RELOADS { subject: "tls", result: "failed" },
    }
}

series! {
    /// Bearer tokens (`auth_token_file`, `auth_tokens`): refusals by listener and
    /// reason, and reloads. All zero while auth is off.
    pub struct AuthStats {
        /// HTTP requests refused 401 for carrying no token.
        counter http_auth_missing_total => AUTH_REFUSED { listener: "http", reason: "missing" },
        /// HTTP requests refused 401 for a token that is none of the server's, or an Authorization header that is not Bearer.
        counter http_auth_invalid_total => AUTH_REFUSED { listener: "http", reason: "invalid" },
        /// HTTP requests refused 403: a known token without the scope the route needs.
        counter http_auth_forbidden_total => AUTH_REFUSED { listener: "http", reason: "forbidden" },
        /// WebSocket upgrades refused 401 for carrying no token (header or access_token).
        counter ws_auth_missing_total => AUTH_REFUSED { listener: "ws", reason: "missing" },
        /// WebSocket upgrades refused 401 for a token that is none of the server's.
        counter ws_auth_invalid_total => AUTH_REFUSED { listener: "ws", reason: "invalid" },
        /// WebSocket upgrades refused 403: a known token without the read scope.
        counter ws_auth_forbidden_total => AUTH_REFUSED { listener: "ws", reason: "forbidden" },
        /// Token reloads on SIGHUP that took effect.
        counter auth_reloads_total => RELOADS { subject: "auth", result: "ok" },
        /// Token reloads on SIGHUP that failed (the previous tokens stay in force).
        counter auth_reload_failures_total => RELOADS { subject: "auth", result: "failed" },
        /// Tokens in force.
        gauge auth_tokens ("tokens"),
    }
}

series! {
    /// What the query layer's two users count together: the read API (on the
    /// reactors) and subscriptions (on the fan-out core) parse the same filters.
    pub struct ReadStats {
        /// Subscriptions and reads refused because the filter exceeded filter_bytes_max.
        counter filter_too_long_total ("requests"),
        /// GET /v1/logs requests served.
        counter read_requests_total ("requests"),
    }
}

series! {
    /// The ingest stage's gauge.
    pub struct NetGauges {
        /// Open connections, TCP and HTTP.
        gauge connections_open ("connections"),
        /// Open HTTP connections waiting between requests with nothing buffered (keep-alive); a drain ends once only these are open.
        gauge connections_idle ("connections"),
    }
}

series! {
    /// The fan-out core's gauges.
    pub struct FanoutGauges {
        /// WebSocket subscribers open (handshakes included).
        gauge ws_subscribers_open ("subscribers"),
        /// Largest subscriber lag, in records behind the committed end.
        gauge ws_lag_records_max ("records"),
        /// Bytes of committed records the fan-out core holds in memory.
        gauge fanout_window_bytes ("bytes"),
        /// Oldest offset in the fan-out window.
        gauge fanout_window_start ("offset"),
    }
}

series! {
    /// The dashboard's aggregates (`GET /v1/aggregates`, kept by the fan-out core).
    pub struct AggregateStats {
        /// Records received before the oldest second the aggregates hold when they were counted (the fan-out core was that far behind): left out of the per-second counts.
        counter aggregates_late_records_total ("records"),
        /// Commit notes merged into the next one because the fan-out core fell too far behind to take them: the ack latency of their records is then an upper bound (the next group's commit time).
        counter aggregates_commit_notes_merged_total ("notes"),
        /// Records the aggregates counted from the writer's commit notes without reading them, past aggregates_records_per_s_max: in the totals, under the level unsampled, with no level, service or ack latency of their own.
        counter aggregates_unsampled_records_total ("records"),
        /// Committed records the aggregates have not counted yet.
        gauge aggregates_lag_records ("records"),
        /// Services with a series of their own (at most aggregates_services_max).
        gauge aggregates_services ("services"),
        /// Distinct services counted as other because aggregates_services_max were taken (exact up to 64 x aggregates_services_max).
        gauge aggregates_services_overflowed ("services"),
        /// Records whose service name was longer than aggregates_service_bytes_max: counted as other.
        counter aggregates_service_names_too_long_total ("records"),
        /// GET /v1/aggregates answers cut at aggregates_response_buckets_max buckets (the client continues from the answer's until).
        counter aggregates_responses_truncated_total ("responses"),
        /// Records committed, by the writer's clock, before their receive time (the wall clock stepped back in between): their ack latency is counted as 0.
        counter aggregates_ack_clock_back_records_total ("records"),
        /// Times the aggregates started afresh because the wall clock stepped back by more than their span.
        counter aggregates_clock_resets_total ("resets"),
        /// Memory the aggregates' buckets take, in bytes (both rings, allocated at start).
        gauge aggregates_memory_bytes ("bytes"),
    }
}

series! {
    /// The NATS forwarder's connection (`src/forward/`); its per-partition series are
    /// rendered by `forward_metrics`, labelled with the stream and partition.
    pub struct ForwardConnStats {
        /// 1 when forwarding into NATS JetStream is configured (nats_url set), else 0.
        gauge forward_enabled ("boolean"),
        /// 1 while the forwarder's client is connected to a NATS server, else 0.
        gauge forward_connected ("boolean"),
        /// Connections to a NATS server the forwarder established (the first and each reconnect).
        counter forward_connects_total ("connections"),
    }
}

/// The forwarder's per-partition families: (family, `/stats` key, value).
type ForwardSeries = (
    &'static Family,
    &'static str,
    fn(&crate::forward::PartitionStats) -> u64,
);

const FORWARD_LABELS: &[&str] = &["stream", "partition"];

/// Every per-partition family of the forwarder, in rendering order (the errors, which
/// carry a reason too, come last).
const FORWARD_SERIES: &[ForwardSeries] = {
    use crate::forward::PartitionStats as P;
    const CURSOR: Family = Family::gauge(
        "ringstash_forward_cursor_offset",
        "offset",
        FORWARD_LABELS,
        "Next offset the forwarder publishes: every record below it is confirmed stored in JetStream (what nats.cursor holds once written).",
    );
    const LAG: Family = Family::gauge(
        "ringstash_forward_lag_records",
        "records",
        FORWARD_LABELS,
        "Committed records not yet confirmed by JetStream (committed end minus the cursor).",
    );
    const PUBLISHED: Family = Family::counter(
        "ringstash_forward_published_records_total",
        "records",
        FORWARD_LABELS,
        "Records published to JetStream, resends included.",
    );
    const CONFIRMED: Family = Family::counter(
        "ringstash_forward_confirmed_records_total",
        "records",
        FORWARD_LABELS,
        "Publishes JetStream acknowledged, duplicates included.",
    );
    const DUPLICATES: Family = Family::counter(
        "ringstash_forward_duplicate_records_total",
        "records",
        FORWARD_LABELS,
        "Acknowledgments that said duplicate: a resend JetStream already held (dropped by its Nats-Msg-Id).",
    );
    const RESENT: Family = Family::counter(
        "ringstash_forward_resent_records_total",
        "records",
        FORWARD_LABELS,
        "Records published again after a failed round (since this process started).",
    );
    const SKIPPED: Family = Family::counter(
        "ringstash_forward_skipped_records_total",
        "records",
        FORWARD_LABELS,
        "Records retention removed from the log before they were forwarded (never in JetStream).",
    );
    &[
        (&CURSOR, "cursor_offset", |p: &P| {
            p.cursor.load(Ordering::Relaxed)
        }),
        (&LAG, "lag_records", |p: &P| p.lag_records()),
        (&PUBLISHED, "published_records_total", |p: &P| {
            p.published.load(Ordering::Relaxed)
        }),
        (&CONFIRMED, "confirmed_records_total", |p: &P| {
            p.confirmed.load(Ordering::Relaxed)
        }),
        (&DUPLICATES, "duplicate_records_total", |p: &P| {
            p.duplicates.load(Ordering::Relaxed)
        }),
        (&RESENT, "resent_records_total", |p: &P| {
            p.resent.load(Ordering::Relaxed)
        }),
        (&SKIPPED, "skipped_records_total", |p: &P| {
            p.skipped.load(Ordering::Relaxed)
        }),
    ]
};

/// Failed forwarding rounds, by reason.
const FORWARD_ERRORS: Family = Family::counter(
    "ringstash_forward_errors_total",
    "errors",
    &["stream", "partition", "reason"],
    "Forwarding rounds that failed, by reason (stream, publish, ack_timeout, out_of_order, nack, read, cursor); each is followed by a backoff and a resend from the first unconfirmed record.",
);

/// The forwarder's per-partition families, labelled `{stream,partition}` (and
/// `reason`): each family's HELP and TYPE even with no partition (forwarding off), so
/// the exposition names them always.
fn forward_metrics(out: &mut String, f: &crate::forward::ForwardStats) {
    let parts = f.partitions();
    for (family, _, value) in FORWARD_SERIES.iter().copied().chain([(
        &FORWARD_ERRORS,
        "",
        (|_: &crate::forward::PartitionStats| 0) as fn(&crate::forward::PartitionStats) -> u64,
    )]) {
        family_header(out, family);
        for p in &parts {
            let stream = escape_label_value(&p.stream);
            if family.name == FORWARD_ERRORS.name {
                for (i, why) in crate::forward::ErrorReason::ALL.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{}{{stream=\"{stream}\",partition=\"{}\",reason=\"{}\"}} {}",
                        family.name,
                        p.partition,
                        why.as_str(),
                        p.errors[i].load(Ordering::Relaxed)
                    );
                }
            } else {
                let _ = writeln!(
                    out,
                    "{}{{stream=\"{stream}\",partition=\"{}\"}} {}",
                    family.name,
                    p.partition,
                    value(p)
                );
            }
        }
    }
}

/// The forwarder's partitions for `/stats`: one object each, keys as the families'
/// names without `ringstash_forward_`.
fn forward_json(f: &crate::forward::ForwardStats) -> serde_json::Value {
    let parts: Vec<serde_json::Value> = f
        .partitions()
        .iter()
        .map(|p| {
            let mut m = serde_json::Map::new();
            m.insert("stream".into(), p.stream.clone().into());
            m.insert("partition".into(), p.partition.into());
            for (_, key, value) in FORWARD_SERIES {
                m.insert((*key).into(), value(p).into());
            }
            let errors: serde_json::Map<String, serde_json::Value> =
                crate::forward::ErrorReason::ALL
                    .iter()
                    .enumerate()
                    .map(|(i, why)| {
                        (
                            why.as_str().to_string(),
                            p.errors[i].load(Ordering::Relaxed).into(),
                        )
                    })
                    .collect();
            m.insert("errors_total".into(), errors.into());
            serde_json::Value::Object(m)
        })
        .collect();
    serde_json::json!({ "partitions": parts })
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
    /// The aggregates' series.
    pub aggregates: Arc<AggregateStats>,
    /// The NATS forwarder's series.
    pub forward: Arc<crate::forward::ForwardStats>,
    /// The log, for its own counters: the default stream's partition 0.
    pub log: LogView,
    /// Every stream's partitions (the default stream's partition 0 first), for the
    /// per-partition series; empty where only `log` exists.
    pub partitions: Vec<crate::streams::PartitionView>,
    /// What the partitions' logs may hold in memory, in bytes (the figure
    /// `streams_memory_bytes_max` bounds).
    pub streams_memory_bytes: u64,
    /// Connections each reactor serves (`net::balance`); empty until the reactors start.
    pub reactor_connections: crate::net::balance::Loads,
    /// Acked TCP's ack delays (`net::tcp`: read of the oldest batch an ack covers to
    /// the ack written).
    pub tcp_acks: Arc<MicrosHistogram>,
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
            aggregates: Arc::default(),
            forward: Arc::default(),
            log,
            partitions: Vec::new(),
            streams_memory_bytes: 0,
            reactor_connections: Arc::new([]),
            tcp_acks: Arc::default(),
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
        self.aggregates.each(f);
        self.forward.conn.each(f);
    }
}

/// One of the log's series: its `/stats` key and its `/metrics` series (either may be
/// absent: some are only meaningful in one rendering), and how to read it.
struct LogSeries {
    json: Option<&'static str>,
    prom: Option<Prom>,
    value: fn(&LogView) -> serde_json::Value,
}

/// Where one of the log's series goes in `/metrics`.
#[derive(Clone, Copy)]
struct Prom {
    family: &'static Family,
    labels: &'static [(&'static str, &'static str)],
    help: &'static str,
}

/// A series that is a family of its own.
const fn both(
    json: &'static str,
    family: &'static Family,
    value: fn(&LogView) -> serde_json::Value,
) -> LogSeries {
    member(json, family, &[], family.help, value)
}

/// A series of a shared family, with its label values.
const fn member(
    json: &'static str,
    family: &'static Family,
    labels: &'static [(&'static str, &'static str)],
    help: &'static str,
    value: fn(&LogView) -> serde_json::Value,
) -> LogSeries {
    LogSeries {
        json: Some(json),
        prom: Some(Prom {
            family,
            labels,
            help,
        }),
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

/// A family of its own for one of the log's series (`&'static`, for [`LogSeries`]).
macro_rules! own {
    ($kind:ident $name:literal $unit:literal $help:literal) => {{
        const F: Family = Family {
            kind: Kind::$kind,
            ..Family::counter($name, $unit, &[], $help)
        };
        &F
    }};
}

/// A [`LOG_SERIES`] row for one of the writer's counters (`WalStats`); its `/stats` key
/// is the field's name.
macro_rules! wal_stat {
    ($field:ident, $family:expr) => {
        both(stringify!($field), $family, |l| {
            l.stats().$field.load(Ordering::Relaxed).into()
        })
    };
    ($field:ident, $family:expr, $labels:expr, $help:literal) => {
        member(stringify!($field), $family, $labels, $help, |l| {
            l.stats().$field.load(Ordering::Relaxed).into()
        })
    };
}

/// Bytes live readers got, by where from.
const READER_BYTES: Family = Family::counter(
    "ringstash_reader_bytes_total",
    "bytes",
    &["source"],
    "Bytes live readers (fan-out, read API) read, by source: memory (recent committed groups) or file (segment files).",
);
/// fdatasync time, in seconds from the writer's nanoseconds.
const FSYNC_SECONDS: Family = Family::counter(
    "ringstash_fsync_seconds_total",
    "seconds",
    &[],
    "Time from each group's write submission (or a lone sync's) to its fdatasync's completion: the group commit histogram's sum.",
)
.per(1_000_000_000);
/// The longest fdatasync, in seconds from the writer's nanoseconds.
const FSYNC_SECONDS_MAX: Family = Family::gauge(
    "ringstash_fsync_seconds_max",
    "seconds",
    &[],
    "Longest group commit (write submission to fdatasync completion) since start.",
)
.per(1_000_000_000);
/// Failed writes, by cause.
const WRITE_ERRORS: Family = Family::counter(
    "ringstash_write_errors_total",
    "writes",
    &["reason"],
    "Writes to the log that failed, by reason: disk_full (ENOSPC, EDQUOT) or other.",
);

/// The log's series in `/stats` order; `/metrics` renders the ones with a series, in
/// the same order. Relaxed loads: independent statistics.
const LOG_SERIES: &[LogSeries] = {
    const R: Ordering = Ordering::Relaxed;
    &[
        both(
            "committed_end",
            own!(Gauge "ringstash_committed_end" "offset" "Exclusive end offset of the committed records."),
            |l| l.committed_end().into(),
        ),
        json_only("start_offset", |l| l.start_offset().into()),
        json_only("fsync", |l| l.config().fsync.to_string().into()),
        json_only("write_mode", |l| l.write_mode().0.as_str().into()),
        both(
            "write_direct",
            own!(Gauge "ringstash_write_direct" "boolean" "1 while groups are written O_DIRECT (write_mode direct, taken by the filesystem)."),
            |l| u64::from(l.write_mode().0 == crate::wal::WriteMode::Direct).into(),
        ),
        both(
            "segment_prewrite",
            own!(Gauge "ringstash_segment_prewrite" "boolean" "1 while the next segment is pre-written with zeros (segment_prewrite; why auto left it off is said at start)."),
            |l| u64::from(l.segment_prewrite().0).into(),
        ),
        // In /metrics: the io_driver label of ringstash_build_info.
        json_only("io_driver", |l| l.io_driver().0.as_str().into()),
        both(
            "io_uring",
            own!(Gauge "ringstash_io_uring" "boolean" "1 when the io_uring driver runs, 0 under the epoll driver (io_driver; why is said at start)."),
            |l| u64::from(l.io_driver().0 == crate::wal::IoDriver::Uring).into(),
        ),
        member(
            "reader_memory_bytes",
            &READER_BYTES,
            &[("source", "memory")],
            "Bytes live readers (fan-out, read API) copied from recent committed groups in memory.",
            |l| l.reader_sources().0.into(),
        ),
        member(
            "reader_file_bytes",
            &READER_BYTES,
            &[("source", "file")],
            "Bytes live readers read from segment files (older than the recent groups in memory).",
            |l| l.reader_sources().1.into(),
        ),
        both(
            "recent_groups_bytes",
            own!(Gauge "ringstash_recent_groups_bytes" "bytes" "Bytes of recent committed groups held in memory for live readers (bound: fanout_window_bytes_max)."),
            |l| l.reader_sources().2.into(),
        ),
        both(
            "group_buffers_mapped",
            own!(Counter "ringstash_group_buffers_mapped_total" "buffers" "Group buffers the writer mapped because none that left the recent groups was free to reuse (steady ingest maps none)."),
            |l| l.group_buffers_mapped().into(),
        ),
        wal_stat!(
            records_committed,
            own!(Counter "ringstash_records_committed_total" "records" "Records made durable.")
        ),
        wal_stat!(
            bytes_committed,
            own!(Counter "ringstash_bytes_committed_total" "bytes" "Framed bytes made durable.")
        ),
        json_only("batches_appended", |l| {
            l.stats().batches_appended.load(R).into()
        }),
        wal_stat!(
            groups_committed,
            own!(Counter "ringstash_groups_committed_total" "groups" "Groups committed: each written, then made durable by an fdatasync of its own or, past two fdatasyncs in flight, by one shared with the groups written beside it.")
        ),
        wal_stat!(
            fsyncs,
            own!(Counter "ringstash_fsyncs_total" "calls" "fdatasync calls completed.")
        ),
        wal_stat!(fsync_ns_total, &FSYNC_SECONDS),
        wal_stat!(fsync_ns_max, &FSYNC_SECONDS_MAX),
        // In /metrics: the ringstash_group_commit_seconds histogram, from the same buckets.
        json_only("group_commit_us_p50", |l| {
            l.stats().commit.quantile_us(0.50).into()
        }),
        json_only("group_commit_us_p99", |l| {
            l.stats().commit.quantile_us(0.99).into()
        }),
        wal_stat!(
            disk_full_errors,
            &WRITE_ERRORS,
            &[("reason", "disk_full")],
            "Writes that failed with ENOSPC/EDQUOT."
        ),
        wal_stat!(
            write_errors,
            &WRITE_ERRORS,
            &[("reason", "other")],
            "Writes that failed otherwise."
        ),
        wal_stat!(
            segments_rotated,
            own!(Counter "ringstash_segments_rotated_total" "segments" "Segments sealed.")
        ),
        wal_stat!(
            segments_purged,
            own!(Counter "ringstash_segments_purged_total" "segments" "Segments removed by retention.")
        ),
        wal_stat!(
            spares_prepared,
            own!(Counter "ringstash_spares_prepared_total" "segments" "Spare segments pre-written with zeros (segment_prewrite).")
        ),
        wal_stat!(
            spares_used,
            own!(Counter "ringstash_spares_used_total" "rotations" "Rotations into a pre-written spare segment.")
        ),
        wal_stat!(
            spares_missed,
            own!(Counter "ringstash_spares_missed_total" "rotations" "Rotations that found no spare ready and created an empty segment.")
        ),
        wal_stat!(
            spares_skipped,
            own!(Counter "ringstash_spares_skipped_total" "segments" "Spares not prepared: under two segments of free space, or an I/O error.")
        ),
        both(
            "spare_ready",
            own!(Gauge "ringstash_spare_ready" "boolean" "1 while a pre-written spare waits for the next rotation."),
            |l| l.stats().spares_ready.load(R).into(),
        ),
        both(
            "recovery_damaged_ranges",
            own!(Gauge "ringstash_recovery_damaged_ranges" "ranges" "Damaged ranges (bad frames with valid records after them) recovery found in the active segment at start; not cut, skipped by readers."),
            |l| l.stats().recovery_damaged_ranges.load(R).into(),
        ),
        wal_stat!(
            damaged_ranges_skipped,
            own!(Counter "ringstash_damaged_ranges_skipped_total" "ranges" "Damaged ranges live readers (read API, subscribers) skipped, once per reader.")
        ),
        wal_stat!(
            time_skew_exceeded,
            own!(Counter "ringstash_time_skew_exceeded_total" "records" "Records that arrived more than time_skew_ms_max below the running maximum of receive time, or were written more than time_skew_ms_max after they were received; `until` reads may miss them.")
        ),
        wal_stat!(
            time_index_errors,
            own!(Counter "ringstash_time_index_errors_total" "errors" "I/O errors on time indexes (.tix), at start or while writing: each logged, the index dropped and rebuilt at the next start; time reads of that segment start earlier.")
        ),
        both(
            "ring_depth",
            own!(Gauge "ringstash_ring_depth" "batches" "Batches waiting in the ring."),
            |l| l.ring_depth().0.into(),
        ),
        both(
            "ring_batches_max",
            own!(Gauge "ringstash_ring_batches_max" "batches" "Ring capacity in batches."),
            |l| l.ring_depth().1.into(),
        ),
        both(
            "ring_full_refusals",
            own!(Counter "ringstash_ring_full_total" "pushes" "Pushes refused because the ring was full."),
            |l| l.ring_full_refusals().into(),
        ),
        both(
            "failure",
            own!(Gauge "ringstash_writer_failed" "boolean" "1 once the writer stopped on an error (the error is the failure key of /stats)."),
            |l| l.failure().map(|f| f.to_string()).into(),
        ),
    ]
};

/// Group commit time, rendered as a histogram from the writer's buckets.
const GROUP_COMMIT: Family = Family {
    kind: Kind::Histogram,
    ..Family::counter(
        "ringstash_group_commit_seconds",
        "seconds",
        &[],
        "Per fdatasync, from its group's write submission (a sync shared by several groups, or a lone one: from its own submission) to its completion; one observation per fdatasync, so `_count` is `ringstash_fsyncs_total`.",
    )
};

/// Acked TCP's ack delay, rendered as a histogram from `net::tcp`'s buckets.
const TCP_ACK: Family = Family {
    kind: Kind::Histogram,
    ..Family::counter(
        "ringstash_tcp_ack_seconds",
        "seconds",
        &[],
        "Acked TCP: for each ack line written, the time from the read that completed the oldest batch it acknowledges to the ack's write completing (the server's share of the ack latency a client sees).",
    )
};

/// What every Prometheus client exports about its process, from /proc/self.
const PROCESS_CPU: Family = Family::counter(
    "process_cpu_seconds_total",
    "seconds",
    &[],
    "Total user and system CPU time spent.",
);
const PROCESS_RESIDENT: Family = Family::gauge(
    "process_resident_memory_bytes",
    "bytes",
    &[],
    "Resident memory size.",
);
const PROCESS_VIRTUAL: Family = Family::gauge(
    "process_virtual_memory_bytes",
    "bytes",
    &[],
    "Virtual memory size.",
);
const PROCESS_START: Family = Family::gauge(
    "process_start_time_seconds",
    "seconds",
    &[],
    "Start time of the process since the Unix epoch.",
);
const PROCESS_OPEN_FDS: Family = Family::gauge(
    "process_open_fds",
    "file descriptors",
    &[],
    "Open file descriptors.",
);
const PROCESS_MAX_FDS: Family = Family::gauge(
    "process_max_fds",
    "file descriptors",
    &[],
    "Maximum number of open file descriptors (the soft RLIMIT_NOFILE).",
);

/// What was built and what runs: always 1, the facts are its labels.
const BUILD_INFO: Family = Family::gauge(
    "ringstash_build_info",
    "1",
    &["version", "revision", "io_driver"],
    "Always 1; labels: the version, the git commit built (unknown when built without git), the I/O driver running.",
);
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Set by build.rs: `git rev-parse` at build time, or `unknown`.
const REVISION: &str = env!("RINGSTASH_REVISION");

/// One `/metrics` series and its `/stats` counterpart, as both the renderer and the
/// reference in docs/operations.md see it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The family it is a series of.
    pub family: &'static Family,
    /// Its label values, in the family's label order.
    pub labels: &'static [(&'static str, &'static str)],
    /// What this one series counts.
    pub help: &'static str,
    /// Its `/stats` key as (section, key), `("server", "tcp_records_total")`, if it has one.
    pub stats_key: Option<(&'static str, &'static str)>,
    /// The value now, in the family's unit.
    pub value: Num,
}

/// A raw value in the family's unit.
fn scaled(family: &Family, raw: u64) -> Num {
    if family.per_unit == 1 {
        Num::Int(raw)
    } else {
        Num::Float(raw as f64 / family.per_unit as f64)
    }
}

/// Every series `/metrics` has but the histogram, in order: the servers', the log's,
/// the process's, the build's. `/stats` walks the first two the same way.
pub fn samples(o: &Observed, f: &mut dyn FnMut(Sample)) {
    o.each(&mut |m| {
        f(Sample {
            family: m.family,
            labels: m.labels,
            help: m.help,
            stats_key: Some(("server", m.key)),
            value: scaled(m.family, m.value),
        })
    });
    for s in LOG_SERIES {
        if let Some(p) = s.prom {
            // A text value (the writer's failure) is rendered as 1 when present.
            let raw = match (s.value)(&o.log) {
                serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
                serde_json::Value::Null => 0,
                _ => 1,
            };
            f(Sample {
                family: p.family,
                labels: p.labels,
                help: p.help,
                stats_key: s.json.map(|k| ("log", k)),
                value: scaled(p.family, raw),
            });
        }
    }
    let p = ProcessStats::read();
    let process = [
        (&PROCESS_CPU, None, Num::Float(p.cpu_seconds)),
        (
            &PROCESS_RESIDENT,
            Some(("process", "rss_bytes")),
            Num::Int(p.resident_bytes),
        ),
        (&PROCESS_VIRTUAL, None, Num::Int(p.virtual_bytes)),
        (&PROCESS_START, None, Num::Float(p.start_time_seconds)),
        (&PROCESS_OPEN_FDS, None, Num::Int(p.open_fds)),
        (&PROCESS_MAX_FDS, None, Num::Int(p.max_fds)),
    ];
    for (family, stats_key, value) in process {
        f(Sample {
            family,
            labels: &[],
            help: family.help,
            stats_key,
            value,
        });
    }
    use crate::wal::IoDriver;
    let labels: &'static [(&str, &str)] = match o.log.io_driver().0 {
        IoDriver::Uring => &[
            ("version", VERSION),
            ("revision", REVISION),
            ("io_driver", "uring"),
        ],
        IoDriver::Epoll => &[
            ("version", VERSION),
            ("revision", REVISION),
            ("io_driver", "epoll"),
        ],
        IoDriver::Auto => &[
            ("version", VERSION),
            ("revision", REVISION),
            ("io_driver", "auto"),
        ],
    };
    f(Sample {
        family: &BUILD_INFO,
        labels,
        help: BUILD_INFO.help,
        stats_key: Some(("log", "io_driver")),
        value: Num::Int(1),
    });
}

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
        server.insert(m.key.into(), m.value.into());
    });
    // In /metrics: the ringstash_tcp_ack_seconds histogram, from the same buckets.
    server.insert("tcp_ack_us_p50".into(), o.tcp_acks.quantile_us(0.50).into());
    server.insert("tcp_ack_us_p99".into(), o.tcp_acks.quantile_us(0.99).into());
    let partitions: Vec<serde_json::Value> = o
        .partitions
        .iter()
        .map(|p| {
            let mut v = serde_json::Map::new();
            v.insert("stream".into(), p.stream.clone().into());
            v.insert("partition".into(), p.partition.into());
            for (key, _, value) in PARTITION_SERIES {
                v.insert((*key).into(), value(&p.log).into());
            }
            v.insert(
                "dir".into(),
                p.log.config().dir.display().to_string().into(),
            );
            serde_json::Value::Object(v)
        })
        .collect();
    let doc = serde_json::json!({
        "uptime_s": o.started.elapsed().as_secs_f64(),
        "log": log,
        "server": server,
        "streams": {
            "memory_bytes": o.streams_memory_bytes,
            "partitions": partitions,
        },
        "process": {
            "rss_bytes": rss_bytes(),
        },
        "reactors": {
            "connections": o
                .reactor_connections
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect::<Vec<_>>(),
        },
        "forward": forward_json(&o.forward),
    });
    doc.to_string()
}

/// The families in order of first appearance, each with its series: the exposition
/// format wants a family's series together under one HELP and one TYPE, and a family
/// may gather series from several stages (`ringstash_reloads_total`). A few small
/// vectors per scrape; scrapes are seconds apart.
fn by_family(all: &[Sample]) -> Vec<(&'static Family, Vec<&Sample>)> {
    let mut families: Vec<(&'static Family, Vec<&Sample>)> = Vec::new();
    for s in all {
        match families.iter_mut().find(|(f, _)| f.name == s.family.name) {
            Some((_, members)) => members.push(s),
            None => families.push((s.family, vec![s])),
        }
    }
    families
}

/// `# HELP` text with backslashes and line feeds escaped, as the format requires.
fn escape_help(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n")
}

/// A label value with backslashes, double quotes and line feeds escaped.
fn escape_label_value(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Renders `/metrics` in the Prometheus text exposition format (version 0.0.4).
pub fn metrics_text(o: &Observed) -> String {
    let mut all = Vec::with_capacity(160);
    samples(o, &mut |s| all.push(s));
    let mut out = String::with_capacity(24 * 1024);
    for (family, members) in by_family(&all) {
        family_header(&mut out, family);
        for s in members {
            out.push_str(family.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let _ = write!(out, "{sep}{k}=\"{}\"", escape_label_value(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", s.value);
        }
    }
    histogram_text(&mut out, &GROUP_COMMIT, &o.log.stats().commit);
    histogram_text(&mut out, &TCP_ACK, &o.tcp_acks);
    partition_metrics(&mut out, o);
    reactor_metrics(&mut out, o);
    forward_metrics(&mut out, &o.forward);
    out
}

/// Connections each reactor serves, labelled `reactor` (known only at start).
fn reactor_metrics(out: &mut String, o: &Observed) {
    const FAMILY: Family = Family::gauge(
        "ringstash_reactor_connections",
        "connections",
        &["reactor"],
        "Connections the reactor serves (net::balance keeps them even: a reactor hands a new connection to one serving fewer).",
    );
    family_header(out, &FAMILY);
    for (i, c) in o.reactor_connections.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}{{reactor=\"{i}\"}} {}",
            FAMILY.name,
            c.load(Ordering::Relaxed)
        );
    }
}

/// Each partition's series: `/stats` key, family, value. In `/metrics` they carry the
/// labels `stream` and `partition`, which are known only at start (the `streams`
/// setting), so they are rendered here rather than declared with the static series.
type PartitionSeries = (&'static str, &'static Family, fn(&LogView) -> u64);

const PARTITION_SERIES: &[PartitionSeries] = &[
    (
        "committed_end",
        &Family::gauge(
            "ringstash_partition_committed_end",
            "offset",
            &["stream", "partition"],
            "Exclusive end offset of the partition's committed records (its own offsets).",
        ),
        |l| l.committed_end(),
    ),
    (
        "start_offset",
        &Family::gauge(
            "ringstash_partition_start_offset",
            "offset",
            &["stream", "partition"],
            "Offset of the partition's oldest stored record (retention moves it).",
        ),
        |l| l.start_offset(),
    ),
    (
        "records_committed",
        &Family::counter(
            "ringstash_partition_records_committed_total",
            "records",
            &["stream", "partition"],
            "Records the partition's writer made durable since start.",
        ),
        |l| l.stats().records_committed.load(Ordering::Relaxed),
    ),
    (
        "bytes_committed",
        &Family::counter(
            "ringstash_partition_bytes_committed_total",
            "bytes",
            &["stream", "partition"],
            "Framed bytes the partition's writer made durable since start.",
        ),
        |l| l.stats().bytes_committed.load(Ordering::Relaxed),
    ),
    (
        "segments_purged",
        &Family::counter(
            "ringstash_partition_segments_purged_total",
            "segments",
            &["stream", "partition"],
            "Sealed segments the partition's retention removed since start.",
        ),
        |l| l.stats().segments_purged.load(Ordering::Relaxed),
    ),
    (
        "ring_batches",
        &Family::gauge(
            "ringstash_partition_ring_batches",
            "batches",
            &["stream", "partition"],
            "Batches waiting in the partition's ring now.",
        ),
        |l| l.ring_depth().0 as u64,
    ),
    (
        "writer_failed",
        &Family::gauge(
            "ringstash_partition_writer_failed",
            "boolean",
            &["stream", "partition"],
            "1 once the partition's writer stopped on an error (then every partition's server shuts down).",
        ),
        |l| u64::from(l.failure().is_some()),
    ),
];

/// A family's `# HELP` and `# TYPE` lines.
fn family_header(out: &mut String, family: &Family) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}",
        name = family.name,
        help = escape_help(family.help),
        kind = family.kind.as_str(),
    );
}

/// The per-partition families, each with one series per partition.
fn partition_metrics(out: &mut String, o: &Observed) {
    if o.partitions.is_empty() {
        return;
    }
    for (_, family, value) in PARTITION_SERIES {
        family_header(out, family);
        for p in &o.partitions {
            let _ = writeln!(
                out,
                "{}{{stream=\"{}\",partition=\"{}\"}} {}",
                family.name,
                escape_label_value(&p.stream),
                p.partition,
                value(&p.log)
            );
        }
    }
}

/// `h` as the Prometheus histogram `family` (cumulative buckets, seconds; `_sum`
/// exact, `_count` the `+Inf` bucket's, as the format requires).
fn histogram_text(out: &mut String, family: &Family, h: &MicrosHistogram) {
    let name = family.name;
    let _ = writeln!(
        *out,
        "# HELP {name} {help}\n# TYPE {name} histogram",
        help = family.help
    );
    let counts = h.counts();
    let mut cumulative = 0u64;
    for (i, c) in counts.iter().enumerate() {
        cumulative += c;
        if i + 1 < counts.len() {
            let le = (1u64 << i) as f64 / 1e6;
            let _ = writeln!(*out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
    }
    let _ = writeln!(*out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(
        *out,
        "{name}_sum {}\n{name}_count {cumulative}",
        h.sum_ns() as f64 / 1e9
    );
}

/// What /proc says about this process, for the `process_*` families.
#[derive(Debug, Default)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time_seconds: f64,
    open_fds: u64,
    max_fds: u64,
}

impl ProcessStats {
    /// Reads /proc/self/stat, /proc/stat (boot time), /proc/self/fd and the file
    /// limit; what cannot be read stays 0.
    fn read() -> ProcessStats {
        let mut p = ProcessStats::default();
        let tick = clock_ticks_per_s() as f64;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // The command name, in parentheses, may hold spaces: fields count from
            // after its closing parenthesis (field 3, the state, first).
            if let Some((_, rest)) = stat.rsplit_once(')') {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let field = |n: usize| {
                    fields
                        .get(n - 3)
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                p.cpu_seconds = (field(14) + field(15)) as f64 / tick;
                p.start_time_seconds = boot_time_s() as f64 + field(22) as f64 / tick;
                p.virtual_bytes = field(23);
                p.resident_bytes = field(24) * page_bytes();
            }
        }
        p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            p.max_fds = lim.rlim_cur;
        }
        p
    }
}

/// The kernel's clock tick (USER_HZ), the unit of /proc's CPU times.
fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// The page size, the unit of /proc's memory sizes.
fn page_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// When the system booted, in seconds since the Unix epoch (`btime` in /proc/stat).
fn boot_time_s() -> u64 {
    // Read once: /proc/stat is the whole CPU and interrupt table, and btime never changes.
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    })
}

/// The process's resident set size, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page_bytes())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Log;

    fn fresh_observed(dir: &std::path::Path) -> (Log, Observed) {
        let log = Log::open(crate::wal::LogConfig::new(dir)).unwrap();
        let o = Observed::new(log.view());
        (log, o)
    }

    /// `/metrics` as a fresh server renders it, with what differs from run to run or
    /// commit to commit (the process's figures, the git revision) blanked.
    fn fresh_metrics() -> String {
        let dir = tempfile::tempdir().unwrap();
        let (_log, o) = fresh_observed(dir.path());
        let text = metrics_text(&o);
        text.lines()
            .map(|l| {
                if l.starts_with("process_") {
                    let name = l.split(' ').next().unwrap();
                    format!("{name} X")
                } else if l.starts_with("ringstash_build_info{") {
                    let (head, tail) = l.split_once("revision=\"").unwrap();
                    let (_, tail) = tail.split_once('"').unwrap();
                    format!("{head}revision=\"REV\"{tail}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    /// The Prometheus exposition is an interface: dashboards and alerts name these
    /// series. Any change to a name, a label, a type, a help text or the order shows
    /// here. `RINGSTASH_BLESS=1` rewrites the golden file after an intended change.
    #[test]
    fn metrics_text_matches_the_golden_file() {
        crate::assert_golden("src/stats/metrics.golden", &fresh_metrics());
    }

    /// The same for `/stats`: every key, in order, with a fresh server's values (the
    /// uptime and the resident size blanked).
    #[test]
    fn stats_json_matches_the_golden_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, o) = fresh_observed(dir.path());
        let mut doc: serde_json::Value = serde_json::from_str(&stats_json(&o)).unwrap();
        doc["uptime_s"] = 0.into();
        doc["process"]["rss_bytes"] = 0.into();
        let got = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        crate::assert_golden("src/stats/stats.golden.json", &got);
    }

    /// A family is one name with one type, unit, help and set of label names however
    /// many declarations name it; each series carries exactly the family's labels, and
    /// no two series of a family have the same label values (Prometheus would refuse
    /// the scrape). The names follow the conventions promtool checks: `_total` on
    /// counters and only there, base units only.
    #[test]
    fn families_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, o) = fresh_observed(dir.path());
        let mut all = Vec::new();
        samples(&o, &mut |s| all.push(s));
        let mut seen_keys = std::collections::HashSet::new();
        for (family, members) in by_family(&all) {
            let mut values = std::collections::HashSet::new();
            for s in &members {
                assert_eq!(s.family, family, "two declarations of {}", family.name);
                let names: Vec<&str> = s.labels.iter().map(|(k, _)| *k).collect();
                assert_eq!(names, family.labels, "{}: label names", family.name);
                assert!(
                    values.insert(s.labels),
                    "{}: {:?} twice",
                    family.name,
                    s.labels
                );
                if let Some(k) = s.stats_key {
                    assert!(seen_keys.insert(k) || k == ("log", "io_driver"), "{k:?}");
                }
            }
            assert!(family.name.starts_with("ringstash_") || family.name.starts_with("process_"));
            assert_eq!(
                family.kind == Kind::Counter,
                family.name.ends_with("_total"),
                "{}: _total on counters only",
                family.name
            );
            for word in family.name.split('_') {
                assert!(
                    !["ms", "ns", "us", "kb", "mb"].contains(&word),
                    "{}",
                    family.name
                );
            }
            if family.per_unit != 1 {
                assert_eq!(family.unit, "seconds", "{}", family.name);
            }
        }
        // Every server counter is a series of /metrics.
        let mut server = 0;
        o.each(&mut |_| server += 1);
        let with_server_key = all
            .iter()
            .filter(|s| matches!(s.stats_key, Some(("server", _))))
            .count();
        assert_eq!(server, with_server_key);
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label_value("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        assert_eq!(escape_help("a\\b\nc \"q\""), r#"a\\b\nc "q""#);
    }

    /// The reference of every family and series, for docs/operations.md.
    fn metrics_markdown() -> String {
        let dir = tempfile::tempdir().unwrap();
        let (_log, o) = fresh_observed(dir.path());
        let mut all = Vec::new();
        samples(&o, &mut |s| all.push(s));
        let cell = |s: &str| s.replace('|', "\\|");
        let mut md = String::new();
        md.push_str(
            "Generated from the declarations in `src/stats.rs` by a test \
             (`RINGSTASH_BLESS=1 cargo test --all-features --lib stats` rewrites it).\n\n\
             | family | type | unit | labels | meaning |\n|---|---|---|---|---|\n",
        );
        let families = by_family(&all);
        let mut row = |f: &Family| {
            let labels: Vec<String> = f.labels.iter().map(|l| format!("`{l}`")).collect();
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} |",
                f.name,
                f.kind.as_str(),
                f.unit,
                labels.join(", "),
                cell(f.help)
            );
        };
        for (f, _) in &families {
            row(f);
        }
        row(&GROUP_COMMIT);
        row(&TCP_ACK);
        for (f, _, _) in FORWARD_SERIES {
            row(f);
        }
        row(&FORWARD_ERRORS);
        md.push_str(
            "\nEach series, and where `/stats` has the same figure (in its own raw unit: \
             `_ms`, `_ns`, `_us` keys; `/metrics` is in seconds):\n\n\
             | series | `/stats` key | counts |\n|---|---|---|\n",
        );
        for (f, members) in &families {
            for s in members {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| match (f.name, *k) {
                        ("ringstash_build_info", "version" | "revision" | "io_driver") => {
                            format!("{k}=\"…\"")
                        }
                        _ => format!("{k}=\"{v}\""),
                    })
                    .collect();
                let series = if labels.is_empty() {
                    f.name.to_string()
                } else {
                    format!("{}{{{}}}", f.name, labels.join(","))
                };
                let key = s
                    .stats_key
                    .map_or("—".to_string(), |(a, b)| format!("`{a}.{b}`"));
                let _ = writeln!(md, "| `{series}` | {key} | {} |", cell(s.help));
            }
        }
        let _ = writeln!(
            md,
            "| `{}` (`_bucket{{le=…}}`, `_sum`, `_count`) | `log.group_commit_us_p50`, `log.group_commit_us_p99` (quantiles of the same buckets) | {} Buckets are powers of two from 1 µs; `_sum` is exact (each observation is added to `fsync_seconds_total` as it is counted). |",
            GROUP_COMMIT.name, GROUP_COMMIT.help
        );
        let _ = writeln!(
            md,
            "| `{}` (`_bucket{{le=…}}`, `_sum`, `_count`) | `server.tcp_ack_us_p50`, `server.tcp_ack_us_p99` (quantiles of the same buckets) | {} Buckets are powers of two from 1 µs. |",
            TCP_ACK.name, TCP_ACK.help
        );
        for (f, key, _) in FORWARD_SERIES {
            let _ = writeln!(
                md,
                "| `{}{{stream=\"…\",partition=\"…\"}}` (one per forwarded partition) | `forward.partitions[].{key}` | {} |",
                f.name,
                cell(f.help)
            );
        }
        let _ = writeln!(
            md,
            "| `{}{{stream=\"…\",partition=\"…\",reason=\"…\"}}` | `forward.partitions[].errors_total.<reason>` | {} |",
            FORWARD_ERRORS.name,
            cell(FORWARD_ERRORS.help)
        );
        md
    }

    /// docs/operations.md's metrics reference is generated from the declarations: a new
    /// or changed series fails here until the file is re-blessed. Only the part between
    /// the markers is generated; the rest of the file is written by hand.
    #[test]
    fn docs_operations_md_lists_every_family() {
        const BEGIN: &str = "<!-- metrics reference: generated, see src/stats.rs -->\n";
        const END: &str = "<!-- end of the metrics reference -->\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md");
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, rest) = text.split_once(BEGIN).expect("the begin marker");
        let (_, tail) = rest.split_once(END).expect("the end marker");
        let want = format!("{head}{BEGIN}{}{END}{tail}", metrics_markdown());
        if std::env::var_os("RINGSTASH_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        assert_eq!(
            text, want,
            "docs/operations.md is stale; bless an intended change with RINGSTASH_BLESS=1"
        );
    }
}
