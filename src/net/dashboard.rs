//! What the HTTP port serves for browsers: the dashboard page (`GET /`) and the
//! settings it subscribes with (`GET /v1/config`).

use super::NetCtx;
use crate::query::STREAM_PATH;

/// The dashboard: one self-contained page, no external resources.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// `GET /v1/config`: what the dashboard needs to subscribe.
pub fn config_json(ctx: &NetCtx) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ws_port": ctx.ws_addr.port(),
        "ws_addr": ctx.ws_addr.to_string(),
        "ws_path": STREAM_PATH,
        // The dashboard's subscription URL: wss:// when the fan-out speaks TLS.
        "ws_scheme": if ctx.settings.ws_tls { "wss" } else { "ws" },
        "committed_end": ctx.log.committed_end(),
        "start_offset": ctx.log.start_offset(),
        "read_records_max": ctx.settings.read_records_max,
        "filter_bytes_max": ctx.settings.filter_bytes_max,
    }))
    .expect("json")
}
