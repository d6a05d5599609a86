//! `serve` settings: one table, read from a TOML file (`--config`), then environment
//! variables, then flags; unknown keys are refused. Every bound has its unit in its
//! name, a documented default, and is checked once by [`Settings::validate`].
//!
//! The table is declared once (the `settings!` invocation below); the TOML struct, the
//! flags, their environment variables, their help text and the log's [`LogConfig`]
//! are generated from it, so they cannot drift apart.

use std::{net::SocketAddr, path::PathBuf, str::FromStr};

pub use crate::error::ConfigError;
use crate::wal::{FsyncPolicy, IoDriver, LogConfig, Prewrite, RecoveryMode, WriteMode};

/// A row's default: the one written in the table, or for a row of the log's
/// (`= @log`) the log's own.
macro_rules! row_default {
    ($name:ident; @log) => {
        log_default().$name
    };
    ($name:ident; $default:expr) => {
        $default
    };
}

/// A row of the log's, as its field of [`LogConfig`].
macro_rules! log_row {
    (log, $value:expr) => {
        $value.clone()
    };
}

/// A row reads `name: type = default, env "VAR"` with an optional `, range lo ..= hi`
/// that [`Settings::validate`] checks. A row written `= @log` instead of a default is
/// one of the log's own settings: its default is [`LogConfig::new`]'s and
/// [`Settings::log_config`] copies it into the field of the same name, so such a
/// setting is named once, here.
macro_rules! settings {
    ($( #[doc = $doc:literal] $name:ident : $ty:ty = $(@$of:ident)? $($default:expr)?, env $env:literal $(, range $lo:literal ..= $hi:literal)?; )*) => {
        /// Every `serve` setting, with its default.
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Settings {
            $( #[doc = $doc] pub $name: $ty, )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings { $( $name: row_default!($name; $(@$of)? $($default)?), )* }
            }
        }

        /// The same settings as flags; each overrides the file and the environment.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct SettingsArgs {
            $( #[doc = $doc] #[arg(long, env = $env)] pub $name: Option<$ty>, )*
        }

        impl SettingsArgs {
            /// Overrides `s` with every setting given as a flag or environment variable.
            pub fn apply(self, s: &mut Settings) {
                $( if let Some(v) = self.$name { s.$name = v; } )*
            }
        }

        impl Settings {
            /// The table itself, for the generated reference (`docs/settings.md`).
            pub fn rows() -> Vec<SettingRow> {
                vec![$( SettingRow {
                    name: stringify!($name),
                    doc: $doc.trim(),
                    env: $env,
                    range: None $( .or(Some((stringify!($lo), stringify!($hi)))) )?,
                }, )*]
            }

            /// Checks every setting whose row in the table carries a range.
            fn check_ranges(&self) -> Result<(), ConfigError> {
                $( $( check_range(stringify!($name), self.$name, $lo, $hi)?; )? )*
                Ok(())
            }

            /// The log's settings, with the writer pinned to `writer_core`.
            ///
            /// A struct literal, not `..LogConfig::new`: a field added to the log
            /// fails to compile here until it gets a row (or a value) of its own.
            pub fn log_config(&self, writer_core: Option<usize>) -> LogConfig {
                LogConfig {
                    dir: self.data_dir.clone(),
                    writer_core,
                    // The log keeps recent groups for the fan-out's readers: as much as
                    // one of its windows holds.
                    recent_bytes_max: self.fanout_window_bytes_max,
                    $( $( $name: log_row!($of, self.$name), )? )*
                }
            }
        }
    };
}

settings! {
    /// Directory holding the log's segments. [default: ./data]
    data_dir: PathBuf = PathBuf::from("./data"), env "RINGSTASH_DATA_DIR";
    /// Raw TCP listener, one-way: newline-delimited records, nothing written back (what logger, nc and forwarders expect). [default: 127.0.0.1:5140]
    tcp_addr: SocketAddr = "127.0.0.1:5140".parse().expect("literal"), env "RINGSTASH_TCP_ADDR";
    /// Raw TCP listener with cumulative acks (`ack <count> <last_offset>`) and error lines. [default: 127.0.0.1:5141]
    tcp_acked_addr: SocketAddr = "127.0.0.1:5141".parse().expect("literal"), env "RINGSTASH_TCP_ACKED_ADDR";
    /// Syslog over TCP: RFC 6587 framing (octet-counted or LF), RFC 5424 and RFC 3164 messages; nothing written back. [default: 127.0.0.1:5514]
    syslog_addr: SocketAddr = "127.0.0.1:5514".parse().expect("literal"), env "RINGSTASH_SYSLOG_ADDR";
    /// Syslog over UDP (RFC 5426), one message per datagram; NOT acknowledged, so datagrams the kernel drops when ringstash falls behind are lost (counted). Empty = off. [default: ""]
    syslog_udp_addr: OptionalAddr = OptionalAddr(None), env "RINGSTASH_SYSLOG_UDP_ADDR";
    /// Largest syslog message (one frame, framing excluded) in bytes; longer ones are refused whole and counted. [default: 65536]
    syslog_frame_bytes_max: usize = 64 << 10, env "RINGSTASH_SYSLOG_FRAME_BYTES_MAX", range 480 ..= 16_777_216;
    /// RELP listener (rsyslog's omrelp): syslog messages, each answered `rsp 200` only once durable. [default: 127.0.0.1:2514]
    relp_addr: SocketAddr = "127.0.0.1:2514".parse().expect("literal"), env "RINGSTASH_RELP_ADDR";
    /// Largest RELP frame DATA (DATALEN) in bytes; a larger frame is answered `rsp 500` and its connection closed. [default: 131072]
    relp_frame_bytes_max: usize = 128 << 10, env "RINGSTASH_RELP_FRAME_BYTES_MAX", range 480 ..= 16_777_216;
    /// RELP transactions one connection may have unanswered before it stops reading (omrelp's windowSize is 128 by default; larger client windows, which omrelp needs for throughput, are honoured up to this). [default: 1024]
    relp_window_max: usize = 1024, env "RINGSTASH_RELP_WINDOW_MAX", range 1 ..= 65_536;
    /// HTTP listener (/ingest, /v1/logs, /healthz, /stats, /metrics). [default: 127.0.0.1:8080]
    http_addr: SocketAddr = "127.0.0.1:8080".parse().expect("literal"), env "RINGSTASH_HTTP_ADDR";
    /// TLS on the one-way raw TCP listener (tcp_addr): TLS 1.2+ only, needs tls_cert_file and tls_key_file; a client that does not start TLS gets an error line and is closed. [default: false]
    tcp_tls: bool = false, env "RINGSTASH_TCP_TLS";
    /// TLS on the acked raw TCP listener (tcp_acked_addr). [default: false]
    tcp_acked_tls: bool = false, env "RINGSTASH_TCP_ACKED_TLS";
    /// TLS on the syslog listener (syslog_addr): syslog over TLS (RFC 5425), as rsyslog's gtls and syslog-ng's tls() send it. [default: false]
    syslog_tls: bool = false, env "RINGSTASH_SYSLOG_TLS";
    /// TLS on the RELP listener (relp_addr), as omrelp's tls="on" sends it. [default: false]
    relp_tls: bool = false, env "RINGSTASH_RELP_TLS";
    /// HTTPS on the HTTP listener (http_addr); a plain HTTP request there is answered 400. [default: false]
    http_tls: bool = false, env "RINGSTASH_HTTP_TLS";
    /// WSS on the WebSocket listener (ws_addr): each subscriber its own TLS session; a plain ws:// request there is answered 400. [default: false]
    ws_tls: bool = false, env "RINGSTASH_WS_TLS";
    /// PEM certificate chain the TLS listeners present (leaf first); reloaded on SIGHUP. Empty = none. [default: ""]
    tls_cert_file: PathBuf = PathBuf::new(), env "RINGSTASH_TLS_CERT_FILE";
    /// PEM private key of tls_cert_file (PKCS#8, PKCS#1 or SEC1); reloaded on SIGHUP. [default: ""]
    tls_key_file: PathBuf = PathBuf::new(), env "RINGSTASH_TLS_KEY_FILE";
    /// PEM CA certificates for mutual TLS: when set, the raw TCP, syslog and RELP TLS listeners require a client certificate signed by one of them, and HTTPS/WSS verify one if offered; reloaded on SIGHUP. Empty = no client certificates. [default: ""]
    tls_client_ca_file: PathBuf = PathBuf::new(), env "RINGSTASH_TLS_CLIENT_CA_FILE";
    /// Deadline for a TLS handshake, from the accept, in ms; past it the connection is closed and counted (tls_handshake_timeouts_total). [default: 10000]
    tls_handshake_timeout_ms: u64 = 10_000, env "RINGSTASH_TLS_HANDSHAKE_TIMEOUT_MS", range 1 ..= 600_000;
    /// Open connections (all listeners but the WebSocket one) from one client IP before new ones from it are refused (in the listener's own protocol, counted); 0 = no limit but connections_max. [default: 0]
    connections_per_ip_max: usize = 0, env "RINGSTASH_CONNECTIONS_PER_IP_MAX", range 0 ..= 1_000_000;
    /// Records per second one connection may store; over it a stream connection (raw TCP, syslog, RELP) is slowed (it stops reading) and an HTTP request answered 429 with Retry-After; 0 = no limit. [default: 0]
    conn_records_per_s_max: u64 = 0, env "RINGSTASH_CONN_RECORDS_PER_S_MAX";
    /// Bytes of records (payloads) per second one connection may store, enforced as conn_records_per_s_max is; 0 = no limit. [default: 0]
    conn_bytes_per_s_max: u64 = 0, env "RINGSTASH_CONN_BYTES_PER_S_MAX";
    /// Records per second all the connections from one client IP may store together, enforced as conn_records_per_s_max is; 0 = no limit. [default: 0]
    ip_records_per_s_max: u64 = 0, env "RINGSTASH_IP_RECORDS_PER_S_MAX";
    /// Bytes of records per second all the connections from one client IP may store together; 0 = no limit. [default: 0]
    ip_bytes_per_s_max: u64 = 0, env "RINGSTASH_IP_BYTES_PER_S_MAX";
    /// Records per second all the HTTP requests presenting one token may store together (with tokens on), enforced as for HTTP under conn_records_per_s_max (429 with Retry-After); 0 = no limit. [default: 0]
    token_records_per_s_max: u64 = 0, env "RINGSTASH_TOKEN_RECORDS_PER_S_MAX";
    /// Bytes of records per second all the HTTP requests presenting one token may store together; 0 = no limit. [default: 0]
    token_bytes_per_s_max: u64 = 0, env "RINGSTASH_TOKEN_BYTES_PER_S_MAX";
    /// How much a rate limit lets a source save up while quiet, in ms of its rate (the token bucket's depth). [default: 1000]
    rate_burst_ms: u64 = 1000, env "RINGSTASH_RATE_BURST_MS", range 1 ..= 3_600_000;
    /// Reactor threads, each pinned to a core with its own listeners; 0 = one per core. [default: 0]
    reactor_threads: usize = 0, env "RINGSTASH_REACTOR_THREADS", range 0 ..= 1024;
    /// Core for the group-commit writer: a core number or `auto` (see docs/architecture.md). [default: auto]
    writer_core: CoreChoice = CoreChoice::Auto, env "RINGSTASH_WRITER_CORE";
    /// Open connections (TCP, syslog, RELP, HTTP) before new ones are refused. [default: 1024]
    connections_max: usize = 1024, env "RINGSTASH_CONNECTIONS_MAX", range 1 ..= 1_000_000;
    /// Connections refused for connections_max that each reactor keeps open at once (for at most 1 s) until the client has read why; past this, the reason is written without waiting for the client, and a reset may destroy it (counted in refusals_unlingered_total). [default: 1024]
    refusals_in_flight_max: usize = 1024, env "RINGSTASH_REFUSALS_IN_FLIGHT_MAX", range 1 ..= 1_000_000;
    /// Largest record payload in bytes; longer lines are refused whole. [default: 1048576]
    record_bytes_max: usize = @log, env "RINGSTASH_RECORD_BYTES_MAX";
    /// Largest HTTP request body in bytes (413 beyond). [default: 4194304]
    http_body_bytes_max: usize = 4 << 20, env "RINGSTASH_HTTP_BODY_BYTES_MAX", range 1 ..= 1_073_741_824;
    /// Largest request body after undoing `Content-Encoding: gzip` (POST /v1/logs), in bytes (413 beyond). [default: 16777216]
    http_body_decompressed_bytes_max: usize = 16 << 20, env "RINGSTASH_HTTP_BODY_DECOMPRESSED_BYTES_MAX", range 1 ..= 1_073_741_824;
    /// Most bytes of JSON records one OTLP request may render (each record repeats its resource's attributes), refused ones included; 413 beyond. [default: 67108864]
    otlp_records_bytes_max: usize = 64 << 20, env "RINGSTASH_OTLP_RECORDS_BYTES_MAX", range 65_536 ..= 4_294_967_296;
    /// Most items one POST /v1/logs body may decode to, counted on its bytes before decoding: JSON objects, arrays and array elements, or OTLP protobuf fields that allocate (records, attributes, values, strings); 413 beyond. Bounds what a small body decodes to. [default: 1048576]
    logs_body_items_max: usize = 1 << 20, env "RINGSTASH_LOGS_BODY_ITEMS_MAX", range 1 ..= 1_073_741_824;
    /// Largest HTTP request head in bytes (431 beyond), on the HTTP port and in a WebSocket upgrade request. [default: 16384]
    http_header_bytes_max: usize = 16 << 10, env "RINGSTASH_HTTP_HEADER_BYTES_MAX", range 1024 ..= 1_048_576;
    /// Per-connection read buffer in bytes (grows only to hold one long line). [default: 65536]
    read_buffer_bytes: usize = 64 << 10, env "RINGSTASH_READ_BUFFER_BYTES", range 4096 ..= 67_108_864;
    /// Batches one connection may have queued for commit before it stops reading. [default: 64]
    connection_batches_max: usize = 64, env "RINGSTASH_CONNECTION_BATCHES_MAX", range 1 ..= 65_536;
    /// Close a raw TCP, syslog or RELP connection that sent nothing for this long, in ms. [default: 600000]
    tcp_idle_timeout_ms: u64 = 600_000, env "RINGSTASH_TCP_IDLE_TIMEOUT_MS", range 1 ..= 86_400_000;
    /// Close an HTTP connection that sent nothing for this long, in ms: silently between requests, with a 408 mid-request. [default: 30000]
    http_idle_timeout_ms: u64 = 30_000, env "RINGSTASH_HTTP_IDLE_TIMEOUT_MS", range 1 ..= 86_400_000;
    /// Deadline for a whole HTTP request head (request line and headers), from its first byte, in ms; past it the request is answered 408 and its connection closed, however steadily the bytes trickle in (slowloris). [default: 10000]
    http_head_timeout_ms: u64 = 10_000, env "RINGSTASH_HTTP_HEAD_TIMEOUT_MS", range 1 ..= 3_600_000;
    /// Slowest an HTTP request body may arrive, in bytes per second, measured over each http_body_rate_window_ms (a window needs no more than the body has left); slower is answered 408 and its connection closed. [default: 1024]
    http_body_rate_bytes_per_s_min: u64 = 1024, env "RINGSTASH_HTTP_BODY_RATE_BYTES_PER_S_MIN", range 1 ..= 1_073_741_824;
    /// The window over which http_body_rate_bytes_per_s_min is measured, in ms: a body may pause within a window as long as the window's total keeps the rate. [default: 10000]
    http_body_rate_window_ms: u64 = 10_000, env "RINGSTASH_HTTP_BODY_RATE_WINDOW_MS", range 100 ..= 3_600_000;
    /// How long an HTTP request waits for room in a full ring before 503, in ms. [default: 5000]
    enqueue_timeout_ms: u64 = 5_000, env "RINGSTASH_ENQUEUE_TIMEOUT_MS", range 1 ..= 3_600_000;
    /// On shutdown, how long connections get to drain before they are cut, in ms. [default: 10000]
    shutdown_timeout_ms: u64 = 10_000, env "RINGSTASH_SHUTDOWN_TIMEOUT_MS", range 1 ..= 3_600_000;
    /// `always` (acked = durable), or NOT DURABLE `interval:<ms>` / `never`. [default: always]
    fsync: FsyncPolicy = @log, env "RINGSTASH_FSYNC";
    /// Segment size at which the log rotates, in bytes. [default: 134217728]
    segment_bytes_max: u64 = @log, env "RINGSTASH_SEGMENT_BYTES_MAX";
    /// Most bytes per group commit (one write, made durable by an fdatasync). Groups reach it only at peak ingest; larger ones carried up to a quarter more syslog records per second there on a disk with slow flushes, at the cost of memory per partition (docs/benchmarks.md). [default: 4194304]
    group_bytes_max: usize = @log, env "RINGSTASH_GROUP_BYTES_MAX";
    /// Batches the reactors→writer ring holds; full = backpressure. [default: 1024]
    ring_batches_max: usize = @log, env "RINGSTASH_RING_BATCHES_MAX";
    /// Pre-write each next segment with zeros in the background, so group fdatasyncs overwrite instead of append (no journal commit per group): `auto` (on, except where data_dir is in memory, tmpfs or ramfs, where a sync costs nothing and a spare would hold a segment of memory; said at start), `true` (on any filesystem) or `false`. [default: auto]
    segment_prewrite: Prewrite = @log, env "RINGSTASH_SEGMENT_PREWRITE";
    /// `direct` (O_DIRECT group writes from aligned memory: no page-cache copy) or `buffered`; direct falls back to buffered, said at start, where the filesystem refuses O_DIRECT. [default: direct]
    write_mode: WriteMode = @log, env "RINGSTASH_WRITE_MODE";
    /// `auto` (io_uring where it can be set up, else epoll, said at start), `uring` (io_uring or fail, naming the cause: seccomp, sysctl, kernel, memlock) or `epoll` (reactors on epoll, the writer on pwrite + fdatasync threads). [default: auto]
    io_driver: IoDriver = @log, env "RINGSTASH_IO_DRIVER";
    /// Groups in flight in the writer (1..=8): written, synced, or gathered while the one before is written. At most two groups' fdatasyncs run at once; groups past them share the next. 4 carries about a fifth more syslog records per second at peak than 2 on this project's VM (docs/benchmarks.md); each group in flight is one group buffer per partition (streams_memory_bytes_max) and widens the end of the segments this server writes that recovery reads as writes in flight at a crash (recorded in each segment's header; a server whose window differs from the last segment's starts a new one). [default: 4]
    groups_in_flight_max: usize = @log, env "RINGSTASH_GROUPS_IN_FLIGHT_MAX";
    /// Bytes of log between sparse-index entries. [default: 4096]
    index_interval_bytes: u32 = @log, env "RINGSTASH_INDEX_INTERVAL_BYTES";
    /// How far below the running maximum of receive time (in log order) a record may arrive and still be found by an `until` read, in ms: such reads stop once records pass `until` by this much. Records that arrived more than this below the running maximum, or were written more than this after they were received, are counted (time_skew_exceeded_total): `until` reads may miss them. The default covers an HTTP batch waiting enqueue_timeout_ms for room in the ring after its receive time was stamped. [default: 5000]
    time_skew_ms_max: u64 = @log, env "RINGSTASH_TIME_SKEW_MS_MAX", range 0 ..= 86_400_000;
    /// `tolerate_torn_tail` (cut a crash's torn tail; keep and skip damage with valid records after it) or `strict` (refuse to start on either). [default: tolerate_torn_tail]
    recovery: RecoveryMode = @log, env "RINGSTASH_RECOVERY";
    /// Bytes read at a time while searching past a damaged range for the next valid record (recovery, time-index rebuilds and readers: read API, subscribers): the memory one search holds, and how many reads it takes to cross the range. A candidate record is read whole apart from the window, so the window need not hold one. `ringstash cat` and `check` take it as a flag of the same name. [default: 1048576]
    damage_resync_window_bytes: usize = @log, env "RINGSTASH_DAMAGE_RESYNC_WINDOW_BYTES", range 4096 ..= 67_108_864;
    /// Remove the oldest sealed segments while the log exceeds this many bytes; 0 = keep all. With streams, the bound of each partition's log (a stream's own retention_bytes_max overrides it). [default: 0]
    retention_bytes_max: u64 = @log, env "RINGSTASH_RETENTION_BYTES_MAX";
    /// Remove sealed segments whose newest record is older than this, in ms; 0 = keep all. [default: 0]
    retention_ms: u64 = @log, env "RINGSTASH_RETENTION_MS";
    /// POST /v1/logs: set received_at, client_ip and node_id on every object. [default: true]
    json_enrich: bool = true, env "RINGSTASH_JSON_ENRICH";
    /// POST /v1/logs: refuse objects without service/message, with an unknown level, or a bad timestamp. [default: false]
    json_validate: bool = false, env "RINGSTASH_JSON_VALIDATE";
    /// Under json_validate, largest distance of `timestamp` from the server's clock, in ms. [default: 604800000]
    json_timestamp_skew_ms_max: u64 = 7 * 86_400_000, env "RINGSTASH_JSON_TIMESTAMP_SKEW_MS_MAX";
    /// Streams besides the default one, each its own logs under `data_dir/<stream>/` (docs/streams.md): `name[:partitions=N,key=FIELD,retention_bytes_max=B,retention_ms=MS]` separated by `;`; `default:partitions=N` partitions the default stream. A record goes to partition fnv1a32(its key field, `service` by default) mod N; a stream's N is fixed once its directory exists. [default: ""]
    streams: crate::streams::StreamSpecs = crate::streams::StreamSpecs::default(), env "RINGSTASH_STREAMS";
    /// Most streams, the default one included. [default: 16]
    streams_max: usize = 16, env "RINGSTASH_STREAMS_MAX", range 1 ..= 1_024;
    /// Most partitions one stream may have. [default: 64]
    stream_partitions_max: u32 = 64, env "RINGSTASH_STREAM_PARTITIONS_MAX", range 1 ..= 4_096;
    /// Recent committed groups each partition other than the default stream's partition 0 keeps in memory for its live readers, in bytes (the default stream's partition 0 keeps fanout_window_bytes_max). [default: 4194304]
    partition_recent_bytes_max: usize = 4 << 20, env "RINGSTASH_PARTITION_RECENT_BYTES_MAX", range 65_536 ..= 1_073_741_824;
    /// Memory all partitions' logs may hold together, in bytes: the recent groups' bound, the buffers kept for reuse (as much again, or 4 group buffers where that is more) and (groups_in_flight_max + 1) group buffers each; start-up refuses settings past it (streams.memory_bytes in /stats). [default: 1073741824]
    streams_memory_bytes_max: u64 = 1 << 30, env "RINGSTASH_STREAMS_MEMORY_BYTES_MAX", range 1_048_576 ..= 1_099_511_627_776;
    /// The stream records of tcp_addr go to. [default: default]
    tcp_stream: String = crate::streams::DEFAULT_STREAM.to_owned(), env "RINGSTASH_TCP_STREAM";
    /// The stream records of tcp_acked_addr go to. [default: default]
    tcp_acked_stream: String = crate::streams::DEFAULT_STREAM.to_owned(), env "RINGSTASH_TCP_ACKED_STREAM";
    /// The stream records of syslog_addr and syslog_udp_addr go to, unless a syslog_stream_rules rule matches. [default: default]
    syslog_stream: String = crate::streams::DEFAULT_STREAM.to_owned(), env "RINGSTASH_SYSLOG_STREAM";
    /// The stream records of relp_addr go to, unless a syslog_stream_rules rule matches. [default: default]
    relp_stream: String = crate::streams::DEFAULT_STREAM.to_owned(), env "RINGSTASH_RELP_STREAM";
    /// The stream POST /v1/logs and /ingest records go to, unless the request names one in a `Ringstash-Stream` header. [default: default]
    http_stream: String = crate::streams::DEFAULT_STREAM.to_owned(), env "RINGSTASH_HTTP_STREAM";
    /// Syslog records (TCP, UDP, RELP) to other streams by field: `facility=NAME:STREAM` or `app=NAME:STREAM` separated by `;`, the first match wins; no match = the listener's stream. [default: ""]
    syslog_stream_rules: crate::streams::SyslogRules = crate::streams::SyslogRules::default(), env "RINGSTASH_SYSLOG_STREAM_RULES";
    /// This node's id for enrichment; empty = the host name. [default: ""]
    node_id: String = String::new(), env "RINGSTASH_NODE_ID";
    /// Token file for the HTTP and WebSocket listeners: one `sha256:<hex> <scopes> <name>` line per token (docs/security.md); reloaded on SIGHUP. Empty (and auth_tokens empty) = no tokens asked for. [default: ""]
    auth_token_file: PathBuf = PathBuf::new(), env "RINGSTASH_AUTH_TOKEN_FILE";
    /// Tokens in the configuration, as token file lines separated by `;` (hashes, never tokens); read at start only. [default: ""]
    auth_tokens: String = String::new(), env "RINGSTASH_AUTH_TOKENS";
    /// Most tokens auth_tokens and auth_token_file may hold together; more fails start-up (or the reload). [default: 1024]
    auth_tokens_max: usize = 1024, env "RINGSTASH_AUTH_TOKENS_MAX", range 1 ..= 65_536;
    /// WebSocket listener of the fan-out core (subscriptions at /v1/stream). [default: 127.0.0.1:8081]
    ws_addr: SocketAddr = "127.0.0.1:8081".parse().expect("literal"), env "RINGSTASH_WS_ADDR";
    /// WebSocket subscribers (handshakes included) before new ones get 503. [default: 256]
    subscribers_max: usize = 256, env "RINGSTASH_SUBSCRIBERS_MAX", range 1 ..= 100_000;
    /// Bytes queued for one subscriber: its largest message, and its socket's SO_SNDBUF. [default: 262144]
    subscriber_send_buffer_bytes: usize = 256 << 10, env "RINGSTASH_SUBSCRIBER_SEND_BUFFER_BYTES", range 4096 ..= 67_108_864;
    /// A subscriber whose socket stays unwritable this long is closed with code 4008, in ms. [default: 10000]
    subscriber_stall_ms_max: u64 = 10_000, env "RINGSTASH_SUBSCRIBER_STALL_MS_MAX", range 1 ..= 3_600_000;
    /// Longest filter (service + level + q, decoded) a subscription or read may carry, in bytes. [default: 1024]
    filter_bytes_max: usize = 1024, env "RINGSTASH_FILTER_BYTES_MAX", range 16 ..= 65_536;
    /// Deadline for a WebSocket upgrade request, from the connection's accept, in ms; past it the request is answered 408 and the connection closed, however steadily its bytes trickle in. [default: 30000]
    ws_handshake_timeout_ms: u64 = 30_000, env "RINGSTASH_WS_HANDSHAKE_TIMEOUT_MS", range 1 ..= 3_600_000;
    /// Largest WebSocket message (and frame) a subscriber may send, in bytes; beyond, it is closed with 1009. [default: 65536]
    ws_message_bytes_max: usize = 64 << 10, env "RINGSTASH_WS_MESSAGE_BYTES_MAX", range 125 ..= 16_777_216;
    /// How long a subscriber being closed gets to take its last data and the close frame, in ms. [default: 5000]
    ws_close_grace_ms: u64 = 5_000, env "RINGSTASH_WS_CLOSE_GRACE_MS", range 1 ..= 600_000;
    /// On shutdown, how long the fan-out keeps delivering committed records before closing subscribers with 1001, in ms. [default: 1000]
    fanout_stop_drain_ms: u64 = 1_000, env "RINGSTASH_FANOUT_STOP_DRAIN_MS", range 0 ..= 600_000;
    /// Origins allowed to open a WebSocket: `*` (any), empty (no Origin, or the Host's own host), or a comma-separated list. [default: ""]
    ws_allowed_origins: String = String::new(), env "RINGSTASH_WS_ALLOWED_ORIGINS";
    /// Committed records the fan-out core keeps in memory for live subscribers, in bytes, for each of its two windows (JSON, binary); also the bound of the recent committed groups the log keeps in memory for live readers. [default: 16777216]
    fanout_window_bytes_max: usize = 16 << 20, env "RINGSTASH_FANOUT_WINDOW_BYTES_MAX", range 65_536 ..= 1_073_741_824;
    /// Scheduling niceness of the fan-out thread, 0..=19: above 0 it runs on CPU time the reactors and the writer leave idle, so subscribers never slow producers even on a shared core; 0 gives subscribers lower latency under heavy ingest at that cost (docs/benchmarks.md). [default: 10]
    fanout_nice: i32 = 10, env "RINGSTASH_FANOUT_NICE", range 0 ..= 19;
    /// Per-second buckets of the dashboard's aggregates (GET /v1/aggregates?step=1s): how far back they reach, in seconds. Each bucket takes 660 bytes with 20 services (aggregates_memory_bytes in /stats). [default: 3600]
    aggregates_seconds: usize = 3_600, env "RINGSTASH_AGGREGATES_SECONDS", range 60 ..= 86_400;
    /// Per-minute buckets of the dashboard's aggregates (GET /v1/aggregates?step=1m): how far back they reach, in minutes. [default: 1440]
    aggregates_minutes: usize = 1_440, env "RINGSTASH_AGGREGATES_MINUTES", range 60 ..= 10_080;
    /// Services the aggregates count under their own name; later distinct services are counted as "other" (how many: aggregates_services_overflowed in /stats). [default: 20]
    aggregates_services_max: usize = 20, env "RINGSTASH_AGGREGATES_SERVICES_MAX", range 1 ..= 1_000;
    /// Longest service name, in bytes, the aggregates count under its own name; a longer one is counted as "other" (aggregates_service_names_too_long_total in /stats), so names cannot grow the aggregates or /v1/aggregates answers. [default: 128]
    aggregates_service_bytes_max: usize = 128, env "RINGSTASH_AGGREGATES_SERVICE_BYTES_MAX", range 1 ..= 4_096;
    /// Most buckets one GET /v1/aggregates answer holds; a longer range is cut there and the answer says so ("truncated": true, continue from its "until"; aggregates_responses_truncated_total in /stats). Bounds the copy under the lock the fan-out core merges into and the JSON a reactor builds. [default: 4096]
    aggregates_response_buckets_max: usize = 4_096, env "RINGSTASH_AGGREGATES_RESPONSE_BUCKETS_MAX", range 60 ..= 100_000;
    /// Records per second whose payload the dashboard's aggregates read and parse (a token bucket, refilled each fan-out turn, holding at most one second's worth). Past it, while the aggregates are behind, they read no further: they skip whole commit groups and count those from the writer's commit notes, exactly in records and bytes, under the level "unsampled" and services_unsampled, in the second the group was committed, with no ack-latency sample (aggregates_unsampled_records_total in /stats). Below it, everything is read. Bounds the fan-out core's CPU when ingest outruns it. [default: 250000]
    aggregates_records_per_s_max: u64 = 250_000, env "RINGSTASH_AGGREGATES_RECORDS_PER_S_MAX", range 1_000 ..= 100_000_000;
    /// Largest `limit` of GET /v1/logs (it reads segment files on a reactor). [default: 10000]
    read_records_max: usize = 10_000, env "RINGSTASH_READ_RECORDS_MAX", range 1 ..= 1_000_000;
    /// NATS server(s) to forward committed records to, as JetStream messages (docs/scale-out.md): `nats://host:port`, several separated by commas; empty = no forwarding. No TLS or credentials settings (yet): a plain connection. [default: ""]
    nats_url: String = String::new(), env "RINGSTASH_NATS_URL";
    /// First token(s) of the subjects records are forwarded on: `<prefix>.<node_id>.<stream>.<partition>`; also names the JetStream streams (`.` made `_`). Letters, digits, `-`, `_` and `.` between tokens. [default: ringstash]
    nats_subject_prefix: String = "ringstash".into(), env "RINGSTASH_NATS_SUBJECT_PREFIX";
    /// Replicas of each JetStream stream the forwarder creates (1 for a single server, 3 for a 3-node cluster); a stream that exists keeps its own. [default: 1]
    nats_replicas: usize = 1, env "RINGSTASH_NATS_REPLICAS", range 1 ..= 5;
    /// Duplicate window of each JetStream stream the forwarder creates, in ms: resends within it are dropped by their Nats-Msg-Id; a resend after it would be stored twice. [default: 120000]
    nats_duplicate_window_ms: u64 = 120_000, env "RINGSTASH_NATS_DUPLICATE_WINDOW_MS", range 1_000 ..= 604_800_000;
    /// Publishes one partition may have unacknowledged at once; also how many confirmed records at most between two writes of its cursor file. [default: 256]
    nats_publish_window_max: usize = 256, env "RINGSTASH_NATS_PUBLISH_WINDOW_MAX", range 1 ..= 65_536;
    /// How long a publish waits for JetStream's acknowledgment (and a connection attempt for the server), in ms; past it the partition rewinds and resends (forward_errors_total reason ack_timeout). [default: 5000]
    nats_ack_timeout_ms: u64 = 5_000, env "RINGSTASH_NATS_ACK_TIMEOUT_MS", range 100 ..= 600_000;
    /// Longest wait between two attempts (reconnects, and rounds after a failure), in ms; waits double from 50 ms up to this. [default: 5000]
    nats_retry_backoff_ms_max: u64 = 5_000, env "RINGSTASH_NATS_RETRY_BACKOFF_MS_MAX", range 50 ..= 600_000;
    /// On shutdown, after the log has drained, how long the forwarder gets to have what it has in flight confirmed, in ms; what is left is resent after the restart. [default: 5000]
    nats_stop_timeout_ms: u64 = 5_000, env "RINGSTASH_NATS_STOP_TIMEOUT_MS", range 0 ..= 600_000;
}

/// Declares a stage's own settings: a struct of the rows of the table that stage
/// reads, and the projection from [`Settings`] (generated, so no field is copied by
/// hand). The types are written again here; the compiler holds them to the table's.
macro_rules! stage_settings {
    ($( #[doc = $doc:literal] $stage:ident => $fn:ident { $( $name:ident : $ty:ty, )* } )*) => {
        $(
            #[doc = $doc]
            ///
            /// Each field is the setting of the same name in [`Settings`].
            #[derive(Debug, Clone)]
            #[allow(missing_docs)]
            pub struct $stage {
                $( pub $name: $ty, )*
            }

            impl Settings {
                #[doc = concat!("The [`", stringify!($stage), "`] of these settings.")]
                pub fn $fn(&self) -> $stage {
                    $stage { $( $name: self.$name.clone(), )* }
                }
            }
        )*
    };
}

stage_settings! {
    /// What the ingest stage (the reactors) reads.
    NetSettings => net {
        tcp_tls: bool,
        tcp_acked_tls: bool,
        syslog_tls: bool,
        relp_tls: bool,
        http_tls: bool,
        tls_handshake_timeout_ms: u64,
        connections_per_ip_max: usize,
        conn_records_per_s_max: u64,
        conn_bytes_per_s_max: u64,
        ip_records_per_s_max: u64,
        ip_bytes_per_s_max: u64,
        token_records_per_s_max: u64,
        token_bytes_per_s_max: u64,
        rate_burst_ms: u64,
        auth_tokens_max: usize,
        connections_max: usize,
        refusals_in_flight_max: usize,
        record_bytes_max: usize,
        http_body_bytes_max: usize,
        http_body_decompressed_bytes_max: usize,
        otlp_records_bytes_max: usize,
        logs_body_items_max: usize,
        http_header_bytes_max: usize,
        read_buffer_bytes: usize,
        connection_batches_max: usize,
        tcp_idle_timeout_ms: u64,
        syslog_frame_bytes_max: usize,
        relp_frame_bytes_max: usize,
        relp_window_max: usize,
        http_idle_timeout_ms: u64,
        http_head_timeout_ms: u64,
        http_body_rate_bytes_per_s_min: u64,
        http_body_rate_window_ms: u64,
        enqueue_timeout_ms: u64,
        shutdown_timeout_ms: u64,
        group_bytes_max: usize,
        filter_bytes_max: usize,
        read_records_max: usize,
        ws_tls: bool,
    }
    /// What the fan-out core reads.
    FanoutSettings => fanout {
        ws_tls: bool,
        tls_handshake_timeout_ms: u64,
        subscribers_max: usize,
        subscriber_send_buffer_bytes: usize,
        subscriber_stall_ms_max: u64,
        filter_bytes_max: usize,
        ws_allowed_origins: String,
        http_header_bytes_max: usize,
        ws_handshake_timeout_ms: u64,
        ws_message_bytes_max: usize,
        ws_close_grace_ms: u64,
        fanout_stop_drain_ms: u64,
        fanout_window_bytes_max: usize,
        fanout_nice: i32,
        aggregates_seconds: usize,
        aggregates_minutes: usize,
        aggregates_services_max: usize,
        aggregates_service_bytes_max: usize,
        aggregates_response_buckets_max: usize,
        aggregates_records_per_s_max: u64,
    }
    /// What the NATS forwarder reads.
    ForwardSettings => forward {
        nats_url: String,
        nats_subject_prefix: String,
        nats_replicas: usize,
        nats_duplicate_window_ms: u64,
        nats_publish_window_max: usize,
        nats_ack_timeout_ms: u64,
        nats_retry_backoff_ms_max: u64,
        nats_stop_timeout_ms: u64,
    }
}

/// The log's own defaults: the rows of the table that configure the log take theirs
/// from [`LogConfig::new`], so they are written once, in the log.
fn log_default() -> LogConfig {
    LogConfig::new(PathBuf::new())
}

/// A listener address, or none (the empty string: the listener is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl FromStr for OptionalAddr {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        if s.is_empty() {
            return Ok(OptionalAddr(None));
        }
        s.parse()
            .map(|a| OptionalAddr(Some(a)))
            .map_err(|_| ChoiceError {
                expected: "an address like 127.0.0.1:5514, or nothing (off)",
                given: s.to_owned(),
            })
    }
}

impl From<OptionalAddr> for String {
    fn from(a: OptionalAddr) -> String {
        a.0.map(|a| a.to_string()).unwrap_or_default()
    }
}

/// A core number, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CoreChoice {
    /// Chosen by the placement rule.
    Auto,
    /// This core.
    Core(usize),
}

/// A string that names none of a setting's values ([`CoreChoice`], and
/// [`RecoveryMode`] as a flag; the file reads the latter through serde's names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, not {given:?}")]
pub struct ChoiceError {
    /// The forms accepted, as the message names them.
    pub expected: &'static str,
    /// The string as given.
    pub given: String,
}

impl FromStr for CoreChoice {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        if s == "auto" {
            return Ok(CoreChoice::Auto);
        }
        s.parse().map(CoreChoice::Core).map_err(|_| ChoiceError {
            expected: "a core number or `auto`",
            given: s.to_owned(),
        })
    }
}

/// serde reads these settings as strings (`try_from = "String"`) through their
/// [`FromStr`], so the file, the flags and the environment accept the same forms.
macro_rules! try_from_string {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = ChoiceError;
            fn try_from(s: String) -> Result<Self, ChoiceError> {
                s.parse()
            }
        }
    )*};
}
try_from_string!(OptionalAddr, CoreChoice);

impl From<CoreChoice> for String {
    fn from(c: CoreChoice) -> String {
        match c {
            CoreChoice::Auto => "auto".into(),
            CoreChoice::Core(n) => n.to_string(),
        }
    }
}

/// The recovery mode as a flag or environment variable (the file reads it through
/// its serde names, which are the same).
impl FromStr for RecoveryMode {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        match s {
            "tolerate_torn_tail" => Ok(RecoveryMode::TolerateTornTail),
            "strict" => Ok(RecoveryMode::Strict),
            _ => Err(ChoiceError {
                expected: "`tolerate_torn_tail` or `strict`",
                given: s.to_owned(),
            }),
        }
    }
}

/// The write mode as a flag or environment variable (the file reads it through its
/// serde names, which are the same).
impl FromStr for WriteMode {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        match s {
            "direct" => Ok(WriteMode::Direct),
            "buffered" => Ok(WriteMode::Buffered),
            _ => Err(ChoiceError {
                expected: "`direct` or `buffered`",
                given: s.to_owned(),
            }),
        }
    }
}

/// Pre-writing as a flag or environment variable.
impl FromStr for Prewrite {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        match s {
            "auto" => Ok(Prewrite::Auto),
            "true" => Ok(Prewrite::On),
            "false" => Ok(Prewrite::Off),
            _ => Err(ChoiceError {
                expected: "`auto`, `true` or `false`",
                given: s.to_owned(),
            }),
        }
    }
}

/// The I/O driver as a flag or environment variable.
impl FromStr for IoDriver {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        match s {
            "auto" => Ok(IoDriver::Auto),
            "uring" => Ok(IoDriver::Uring),
            "epoll" => Ok(IoDriver::Epoll),
            _ => Err(ChoiceError {
                expected: "`auto`, `uring` or `epoll`",
                given: s.to_owned(),
            }),
        }
    }
}

/// One row of the settings table, as the generated reference shows it.
#[derive(Debug, Clone, Copy)]
pub struct SettingRow {
    /// The TOML key; the flag is the same with dashes.
    pub name: &'static str,
    /// The help text (ends with the default).
    pub doc: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The inclusive range `validate` checks, as written in the table.
    pub range: Option<(&'static str, &'static str)>,
}

/// The reference of every `serve` setting as a Markdown table, from the table itself
/// (`docs/settings.md` is this; a test keeps it current).
pub fn settings_markdown() -> String {
    let defaults = toml::Value::try_from(Settings::default()).expect("settings serialize");
    let mut out = String::from(
        "# Settings\n\nGenerated from the settings table in `src/config.rs` (a test keeps this file\n\
         current: `RINGSTASH_BLESS=1 cargo test --lib config::` rewrites it). A TOML key is the\n\
         name; the flag is `--` and the name with dashes; the environment variable is given.\n\n\
         | setting | default | range | environment | what it is |\n|---|---|---|---|---|\n",
    );
    for r in Settings::rows() {
        let default = match defaults.get(r.name) {
            Some(toml::Value::String(s)) => format!("`{s:?}`"),
            Some(v) => format!("`{v}`"),
            None => "-".into(),
        };
        let range = r
            .range
            .map(|(lo, hi)| format!("{lo}..={hi}"))
            .unwrap_or_else(|| "-".into());
        let doc = r
            .doc
            .split(" [default:")
            .next()
            .unwrap_or(r.doc)
            .replace('|', "\\|");
        out += &format!(
            "| `{}` | {default} | {range} | `{}` | {doc} |\n",
            r.name, r.env
        );
    }
    out
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::OutOfRange {
            key,
            value: v.to_string(),
            lo: lo.to_string(),
            hi: hi.to_string(),
        });
    }
    Ok(())
}

impl Settings {
    /// Reads a TOML file; unknown keys are an error.
    ///
    /// # Errors
    /// [`ConfigError::Read`]: the file cannot be read; [`ConfigError::Toml`]: it is
    /// not a valid settings table (an unknown key, a bad value).
    pub fn from_file(path: &std::path::Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Toml {
            path: path.to_owned(),
            error,
        })
    }

    /// Every listener's address, by setting name, in the table's order.
    pub fn listener_addrs(&self) -> [(&'static str, SocketAddr); 6] {
        [
            ("tcp_addr", self.tcp_addr),
            ("tcp_acked_addr", self.tcp_acked_addr),
            ("syslog_addr", self.syslog_addr),
            ("relp_addr", self.relp_addr),
            ("http_addr", self.http_addr),
            ("ws_addr", self.ws_addr),
        ]
    }

    /// Checks every bound. The log's own bounds are checked again by the log.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] naming the setting and its allowed range, a
    /// listener address shared by two listeners, or [`ConfigError::Log`] for a bound
    /// of the log's.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_ranges()?;
        let listeners = self.listener_addrs();
        for (i, (first, a)) in listeners.iter().enumerate() {
            if let Some((second, _)) = listeners[i + 1..]
                .iter()
                .find(|(_, b)| b == a && a.port() != 0)
            {
                return Err(ConfigError::AddrShared {
                    first,
                    second,
                    addr: *a,
                });
            }
        }
        crate::streams::check(self)?;
        if !self.nats_url.is_empty() {
            self.check_nats()?;
        }
        Ok(self.log_config(None).validate()?)
    }

    /// The forwarding settings that name subjects: each must make valid subject tokens.
    fn check_nats(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, value: &str, why: &'static str| ConfigError::Invalid {
            key,
            value: value.to_owned(),
            why,
        };
        if crate::forward::server_addrs(&self.nats_url).is_err() {
            return Err(bad(
                "nats_url",
                &self.nats_url,
                "NATS server URLs (nats://host:port), separated by commas",
            ));
        }
        let prefix = &self.nats_subject_prefix;
        if !prefix.split('.').all(crate::forward::is_token) {
            return Err(bad(
                "nats_subject_prefix",
                prefix,
                "tokens of letters, digits, '-' and '_', separated by '.'",
            ));
        }
        if !self.node_id.is_empty() && !crate::forward::is_token(&self.node_id) {
            return Err(bad(
                "node_id",
                &self.node_id,
                "forwarding to NATS names subjects after it: letters, digits, '-' and '_' only",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forwarding names subjects after the prefix and the node id: a value that
    /// cannot be a subject token fails the check, naming the setting.
    #[test]
    fn nats_names_must_be_subject_tokens() {
        let mut s = Settings {
            node_id: "a.b".into(),
            ..Default::default()
        };
        s.validate().unwrap();
        s.nats_url = "nats://127.0.0.1:4222".into();
        let err = s.validate().unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { key: "node_id", .. }),
            "{err:?}"
        );
        s.node_id = "node-a".into();
        s.validate().unwrap();
        s.nats_subject_prefix = "logs.>".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.starts_with("nats_subject_prefix = \"logs.>\""), "{err}");
        s.nats_subject_prefix = "acme.logs".into();
        s.validate().unwrap();
        assert!(
            crate::forward::server_addrs("nats://a:4222, nats://b:4223")
                .unwrap()
                .len()
                == 2
        );
        s.nats_url = "nats://a:notaport".into();
        let err = s.validate().unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "nats_url",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn toml_defaults_unknown_keys_and_flags() {
        let s: Settings =
            toml::from_str("connections_max = 7\nfsync = \"interval:50\"\nwriter_core = \"1\"")
                .unwrap();
        assert_eq!(s.connections_max, 7);
        assert_eq!(s.fsync, FsyncPolicy::Interval { interval_ms: 50 });
        assert_eq!(s.writer_core, CoreChoice::Core(1));
        assert_eq!(s.record_bytes_max, 1 << 20);
        let err = toml::from_str::<Settings>("conections_max = 7")
            .unwrap_err()
            .to_string();
        assert!(err.contains("conections_max"), "{err}");
        let mut s = Settings::default();
        SettingsArgs {
            connections_max: Some(3),
            ..Default::default()
        }
        .apply(&mut s);
        assert_eq!(s.connections_max, 3);
        s.validate().unwrap();
        s.connections_max = 0;
        let err = s.validate().unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::OutOfRange {
                    key: "connections_max",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "connections_max = 0 is outside 1..=1000000"
        );
    }

    /// `segment_prewrite` takes `"auto"` (the default) and the booleans it was before,
    /// in the file, as a flag and from the environment; anything else is refused with
    /// what it takes.
    #[test]
    fn segment_prewrite_takes_auto_and_booleans() {
        assert_eq!(Settings::default().segment_prewrite, Prewrite::Auto);
        for (text, want) in [
            ("segment_prewrite = \"auto\"", Prewrite::Auto),
            ("segment_prewrite = true", Prewrite::On),
            ("segment_prewrite = false", Prewrite::Off),
            ("segment_prewrite = \"false\"", Prewrite::Off),
        ] {
            let s: Settings = toml::from_str(text).unwrap();
            assert_eq!(s.segment_prewrite, want, "{text}");
        }
        let err = toml::from_str::<Settings>("segment_prewrite = \"yes\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected `\"auto\"`, `true` or `false`"),
            "{err}"
        );
        assert_eq!("auto".parse::<Prewrite>().unwrap(), Prewrite::Auto);
        assert_eq!("true".parse::<Prewrite>().unwrap(), Prewrite::On);
        assert_eq!("false".parse::<Prewrite>().unwrap(), Prewrite::Off);
        let err = "on".parse::<Prewrite>().unwrap_err().to_string();
        assert!(err.contains("`auto`, `true` or `false`"), "{err}");
        // The defaults written out read back the same.
        let text = toml::to_string(&Settings::default()).unwrap();
        assert!(text.contains("segment_prewrite = \"auto\""), "{text}");
        let back: Settings = toml::from_str(&text).unwrap();
        assert_eq!(back.segment_prewrite, Prewrite::Auto);
    }

    /// The table's range for the resync window is the log's own (which `cat` and
    /// `check` check their flag against), and the log's check names the setting too.
    #[test]
    fn damage_resync_window_range_is_the_logs() {
        let row = Settings::rows()
            .into_iter()
            .find(|r| r.name == "damage_resync_window_bytes")
            .unwrap();
        let (lo, hi) = row.range.unwrap();
        let num = |t: &str| t.replace('_', "").parse::<usize>().unwrap();
        assert_eq!(
            (num(lo), num(hi)),
            (
                crate::wal::DAMAGE_RESYNC_WINDOW_BYTES_MIN,
                crate::wal::DAMAGE_RESYNC_WINDOW_BYTES_MAX
            )
        );
        let mut s = Settings::default();
        assert_eq!(s.damage_resync_window_bytes, 1 << 20);
        s.damage_resync_window_bytes = 4095;
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "damage_resync_window_bytes = 4095 is outside 4096..=67108864"
        );
        let mut c = s.log_config(None);
        c.damage_resync_window_bytes = 64 << 20 | 1;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("damage_resync_window_bytes"),
        );
    }

    /// RELP's address is checked against every other listener's, like theirs.
    #[test]
    fn relp_addr_may_not_share_another_listeners_address() {
        let mut s = Settings::default();
        s.relp_addr = s.syslog_addr;
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "syslog_addr and relp_addr are the same address (127.0.0.1:5514)"
        );
        s.relp_addr = "127.0.0.1:0".parse().unwrap();
        s.syslog_addr = s.relp_addr;
        s.validate().expect("port 0 is never shared");
    }

    /// The log's rows take their defaults from the log and are copied back by
    /// `log_config`: the default settings are the log's defaults, and a setting
    /// reaches the field of its name.
    #[test]
    fn log_config_is_the_logs_rows() {
        let s = Settings::default();
        assert_eq!(
            format!("{:?}", s.log_config(None)),
            format!("{:?}", LogConfig::new(s.data_dir.clone()))
        );
        let s = Settings {
            retention_ms: 7,
            recovery: RecoveryMode::Strict,
            fsync: FsyncPolicy::Never,
            ..Settings::default()
        };
        let c = s.log_config(Some(3));
        assert_eq!(c.retention_ms, 7);
        assert_eq!(c.recovery, RecoveryMode::Strict);
        assert_eq!(c.fsync, FsyncPolicy::Never);
        assert_eq!(c.writer_core, Some(3));
    }

    /// The reference in docs/settings.md is generated from the table; a new or changed
    /// row fails here until the file is blessed.
    #[test]
    fn docs_settings_md_is_generated_from_the_table() {
        crate::assert_golden("docs/settings.md", &settings_markdown());
    }

    /// Each row's help text names its default; it must be the table's default.
    #[test]
    fn help_text_defaults_match_the_table() {
        let defaults = toml::Value::try_from(Settings::default()).unwrap();
        for r in Settings::rows() {
            let shown = r
                .doc
                .rsplit("[default: ")
                .next()
                .unwrap()
                .trim_end_matches(']');
            let want = match defaults.get(r.name) {
                Some(toml::Value::String(s)) if s.is_empty() => "\"\"".to_string(),
                Some(toml::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => continue,
            };
            assert_eq!(
                shown, want,
                "{}: help says {shown}, table says {want}",
                r.name
            );
        }
    }
}
