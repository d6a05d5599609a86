//! The network front end: thread-per-core reactors, raw TCP and HTTP ingest.
//!
//! Each reactor is a thread pinned to a core running its own tokio-uring runtime with
//! its own `SO_REUSEPORT` listeners, so the kernel spreads connections across cores
//! with no shared accept lock. Protocol logic lives in sans-I/O modules ([`lines`],
//! [`acks`], [`http_proto`]) that the drivers ([`tcp`], [`http`]) feed with bytes.

pub mod acks;
pub mod conn;
pub mod enrich;
pub mod http;
pub mod http_proto;
pub mod lines;
pub mod reactor;
pub mod tcp;

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Instant,
};

use crate::{
    config::Settings,
    stats::{Gauges, ServerStats},
    wal::{Appender, Log},
};

/// What every reactor shares. Read-mostly; counters are atomics.
#[derive(Debug)]
pub struct ServerCtx {
    /// The validated settings.
    pub settings: Settings,
    /// The log (for stats and health).
    pub log: Arc<Log>,
    /// The producer handle the reactors clone.
    pub appender: Appender,
    /// Counters.
    pub stats: ServerStats,
    /// Gauges.
    pub gauges: Gauges,
    /// When serving began.
    pub started: Instant,
    /// The fan-out core's bound WebSocket address (for `/v1/config` and the dashboard).
    pub ws_addr: std::net::SocketAddr,
    /// What `/v1/logs` does to each JSON object.
    pub json_policy: enrich::JsonPolicy,
    /// Set once on the first SIGINT/SIGTERM (or a writer failure): stop accepting,
    /// drain, close. Relaxed is enough: it is a hint polled at safe points, and the
    /// reactors are also told through a channel that wakes them.
    pub shutting_down: AtomicBool,
}

/// Bytes per batch a connection hands to the ring: big enough to amortise the ring
/// and the completion, small enough that many connections share a group.
pub fn batch_bytes_max(settings: &Settings) -> usize {
    (settings.group_bytes_max / 2).clamp(4096, 1 << 20)
}
