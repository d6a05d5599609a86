//! What the fan-out core may touch.

use std::sync::Arc;

use crate::{
    config::FanoutSettings,
    stats::{FanoutGauges, FanoutStats, ReadStats},
    streams::StreamViews,
    wal::LogView,
};

/// The fan-out stage's context: the log read-only (it cannot append or reach the
/// writer), its settings, and its own counters and gauges.
#[derive(Debug)]
pub struct FanoutCtx {
    /// The validated settings.
    pub settings: FanoutSettings,
    /// The default stream's partition 0, read-only: committed end, start offset,
    /// readers, the follower. The shared windows and the aggregates follow it alone.
    pub log: LogView,
    /// Every stream's partitions, read-only (the default stream's partition 0
    /// first, the same log as `log`): what a subscription to another partition, or a
    /// merged one, reads with its own readers.
    pub streams: StreamViews,
    /// The fan-out's counters.
    pub stats: Arc<FanoutStats>,
    /// The fan-out's gauges.
    pub gauges: Arc<FanoutGauges>,
    /// Filter refusals, counted with the read API's.
    pub reads: Arc<ReadStats>,
    /// The certificates, if any listener has TLS (the WebSocket one: `settings.ws_tls`).
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// The tokens a subscription must carry (read scope); `None` = auth off.
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// The dashboard's aggregates, which this core keeps and the reactors serve.
    pub aggregates: Arc<super::aggregates::Aggregates>,
}
