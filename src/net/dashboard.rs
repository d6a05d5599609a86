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
        // The stream picker's choices; `committed_end` and `start_offset` above are
        // the default stream's partition 0 (the first entry's partition 0).
        "streams": streams_json(ctx),
    }))
    .expect("json")
}

/// `[{"name":..,"partitions":N,"committed_end":[..],"start_offset":[..]}, ...]`: each
/// stream in the `streams` setting's order (the default stream first), with each
/// partition's committed end and oldest stored offset, so that the dashboard can
/// start a partition's tail a little before its end.
fn streams_json(ctx: &NetCtx) -> serde_json::Value {
    let specs = &ctx.streams.specs().0;
    specs
        .iter()
        .map(|spec| {
            let parts = ctx.streams.stream(&spec.name).unwrap_or(&[]);
            serde_json::json!({
                "name": spec.name,
                "partitions": spec.partitions,
                "committed_end": parts.iter().map(|p| p.log.committed_end()).collect::<Vec<_>>(),
                "start_offset": parts.iter().map(|p| p.log.start_offset()).collect::<Vec<_>>(),
            })
        })
        .collect()
}
