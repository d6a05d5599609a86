//! The network front end: thread-per-core reactors, raw TCP, syslog, RELP and HTTP
//! ingest.
//!
//! Each reactor is a thread pinned to a core running its own tokio-uring runtime with
//! its own `SO_REUSEPORT` listeners, so the kernel spreads connections across cores
//! with no shared accept lock. Protocol logic lives in sans-I/O modules ([`lines`],
//! [`acks`], [`logs_body`] and [`otlp`] for `POST /v1/logs`, the crate's
//! [`syslog`](crate::syslog) for syslog framing, RELP and rendering, and
//! [`http_proto`](crate::http_proto), shared with the fan-out) that the drivers
//! ([`tcp`], [`relp`], [`http`]) feed with bytes.

pub mod acks;
pub mod balance;
pub mod body_items;
pub mod conn;
pub mod dashboard;
mod driver;
pub mod enrich;
pub mod framing;
pub mod http;
pub mod http_deadline;
pub mod limits;
pub mod lines;
pub mod logs_body;
pub mod otlp;
pub mod reactor;
pub mod relp;
pub mod socket;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
};

use crate::{
    config::NetSettings,
    stats::{NetGauges, NetStats, Observed, ReadStats},
    wal::LogView,
};

/// What the ingest stage may touch, shared by every reactor: the producer handle, a
/// read-only view of the log (health, the read API), its own counters, and read-only
/// handles on everyone's counters for `/stats` and `/metrics`. Nothing here reaches the
/// fan-out core or the writer except through the [`Appender`](crate::wal::Appender), and the aggregates the
/// fan-out core keeps, which the reactors only read.
#[derive(Debug)]
pub struct NetCtx {
    /// The validated settings.
    pub settings: NetSettings,
    /// The certificates, if any listener has TLS (which ones: `settings.*_tls`).
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// The tokens HTTP requests must carry; `None` = auth off (no token asked for).
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// Every client IP with a connection open: its connections and its rates.
    pub sources: limits::Sources,
    /// The I/O driver the log resolved `io_driver` to (`Uring` or `Epoll`); the
    /// reactors run the same.
    pub driver: crate::wal::IoDriver,
    /// The producer handles of every stream's partitions, and the rules that choose
    /// among them; connections push batches through it (`conn::push_batch`).
    pub router: crate::streams::Router,
    /// Each listener's destination (`*_stream` settings).
    pub dests: Dests,
    /// Every partition, read-only: `GET /v1/logs?stream=&partition=`, `/stats`.
    pub streams: crate::streams::StreamViews,
    /// The default stream's partition 0, read-only: health, `/v1/config`, and
    /// `GET /v1/logs` without a stream.
    pub log: LogView,
    /// Where accepted connections are served, and the queues that hand them between
    /// reactors.
    pub balance: balance::Balance,
    /// The ingest stage's counters.
    pub stats: Arc<NetStats>,
    /// Open connections.
    pub gauges: Arc<NetGauges>,
    /// The read API's counters (shared with the fan-out's filter parsing).
    pub reads: Arc<ReadStats>,
    /// Every stage's series, read-only, for `/stats` and `/metrics`.
    pub observed: Observed,
    /// The fan-out core's bound WebSocket address (for `/v1/config` and the dashboard).
    pub ws_addr: SocketAddr,
    /// The aggregates the fan-out core keeps, for `GET /v1/aggregates`.
    pub aggregates: Arc<crate::fanout::aggregates::Aggregates>,
    /// What `/v1/logs` does to each JSON object.
    pub json_policy: enrich::JsonPolicy,
    /// Set once on the first SIGINT/SIGTERM (or a writer failure): stop accepting,
    /// drain, close. Relaxed is enough: it is a hint polled at safe points, and the
    /// reactors are also told through a channel that wakes them.
    pub shutting_down: AtomicBool,
}

/// Bytes per batch a connection hands to the ring: big enough to amortise the ring
/// and the completion, small enough that many connections share a group.
pub fn batch_bytes_max(settings: &NetSettings) -> usize {
    (settings.group_bytes_max / 2).clamp(4096, 1 << 20)
}

/// Where each listener's records go (`tcp_stream`, `tcp_acked_stream`, ...).
#[derive(Debug, Clone, Copy)]
pub struct Dests {
    /// `tcp_addr`.
    pub tcp: crate::streams::Dest,
    /// `tcp_acked_addr`.
    pub tcp_acked: crate::streams::Dest,
    /// `syslog_addr` and `syslog_udp_addr` (syslog rules apply).
    pub syslog: crate::streams::Dest,
    /// `relp_addr` (syslog rules apply).
    pub relp: crate::streams::Dest,
    /// `http_addr`, unless a request names its stream.
    pub http: crate::streams::Dest,
}

impl Dests {
    /// The destinations the settings name, resolved against `router`.
    ///
    /// # Panics
    /// If a setting names an unknown stream (the settings' check refuses that first).
    pub fn new(s: &crate::config::Settings, router: &crate::streams::Router) -> Dests {
        let d = |name: &str, syslog_rules| crate::streams::Dest {
            stream: router.stream(name).expect("checked by the settings"),
            syslog_rules,
        };
        Dests {
            tcp: d(&s.tcp_stream, false),
            tcp_acked: d(&s.tcp_acked_stream, false),
            syslog: d(&s.syslog_stream, true),
            relp: d(&s.relp_stream, true),
            http: d(&s.http_stream, false),
        }
    }
}
