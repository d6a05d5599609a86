//! What the HTTP port serves for the fan-out: the read API (`GET /v1/logs`), the
//! dashboard page (`GET /`) and its settings (`GET /v1/config`). The reactors call
//! these; they share the query syntax and the JSON of the WebSocket messages.

use super::{
    STREAM_PATH,
    query::{self, Start},
    render::MessageBuilder,
    window,
};
use crate::net::{
    NetCtx,
    http_proto::{self, HttpError},
};

/// The dashboard: one self-contained page, no external resources.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Records `GET /v1/logs` returns when no `limit` is given.
pub const READ_LIMIT_DEFAULT: usize = 100;
/// Largest response body of `GET /v1/logs`, in bytes (at least one record is sent).
pub const READ_RESPONSE_BYTES_MAX: usize = 8 << 20;
/// Records one `GET /v1/logs` may scan past its filter before it answers with what it
/// has (and `next` to continue from): the reactor is blocked while it reads.
pub const READ_SCAN_RECORDS_MAX: u64 = 100_000;

/// `GET /v1/logs?from=&limit=&service=&level=&q=`: committed records as JSON, in the
/// message format of the WebSocket (`{"records":[...],"next":N,"committed_end":E}`).
/// `from` defaults to `earliest`.
///
/// This reads segment files (normally from the page cache) on the reactor's thread,
/// which blocks that reactor meanwhile; `limit` (at most `read_records_max`) and
/// [`READ_SCAN_RECORDS_MAX`] bound how long.
///
/// Returns the status and the JSON body.
pub fn read_logs(ctx: &NetCtx, query_string: &str) -> (u16, Vec<u8>) {
    use std::sync::atomic::Ordering;
    let s = &ctx.settings;
    let q = match query::parse(query_string, true, s.read_records_max, s.filter_bytes_max) {
        Ok(q) => q,
        Err(e) => {
            if e.code == "filter_too_long" {
                ctx.reads
                    .filter_too_long_total
                    .fetch_add(1, Ordering::Relaxed);
            }
            return (
                400,
                http_proto::error_body(&HttpError::new(400, e.code, e.detail)),
            );
        }
    };
    ctx.reads
        .read_requests_total
        .fetch_add(1, Ordering::Relaxed);
    let end = ctx.log.committed_end();
    let from = match q.start.unwrap_or(Start::Earliest) {
        Start::Earliest => ctx.log.start_offset(),
        Start::Latest => end,
        Start::Offset(n) => n,
    };
    let limit = q
        .limit
        .unwrap_or(READ_LIMIT_DEFAULT.min(s.read_records_max));
    let mut m = MessageBuilder::new(4096);
    let mut reader = match ctx.log.reader(from) {
        Ok(r) => r,
        Err(e) => {
            return (
                500,
                http_proto::error_body(&HttpError::new(500, "read_failed", e.to_string())),
            );
        }
    };
    if let Err(e) = window::read_into(
        &mut reader,
        &q.filter,
        &mut m,
        end,
        limit,
        READ_RESPONSE_BYTES_MAX,
        READ_SCAN_RECORDS_MAX,
    ) {
        return (
            500,
            http_proto::error_body(&HttpError::new(500, "read_failed", e.to_string())),
        );
    }
    let next = reader.next_offset().max(from.min(end));
    (200, m.finish(next, end))
}

/// `GET /v1/config`: what the dashboard needs to subscribe.
pub fn config_json(ctx: &NetCtx) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ws_port": ctx.ws_addr.port(),
        "ws_addr": ctx.ws_addr.to_string(),
        "ws_path": STREAM_PATH,
        "committed_end": ctx.log.committed_end(),
        "start_offset": ctx.log.start_offset(),
        "read_records_max": ctx.settings.read_records_max,
        "filter_bytes_max": ctx.settings.filter_bytes_max,
    }))
    .expect("json")
}
