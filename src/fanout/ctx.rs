//! What the fan-out core may touch.

use std::sync::Arc;

use crate::{
    config::FanoutSettings,
    stats::{FanoutGauges, FanoutStats, ReadStats},
    wal::LogView,
};

/// The fan-out stage's context: the log read-only (it cannot append or reach the
/// writer), its settings, and its own counters and gauges.
#[derive(Debug)]
pub struct FanoutCtx {
    /// The validated settings.
    pub settings: FanoutSettings,
    /// The log, read-only: committed end, start offset, readers, the follower.
    pub log: LogView,
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
