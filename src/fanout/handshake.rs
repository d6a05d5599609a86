//! The WebSocket handshake: the shared socket, the upgrade callback that checks the
//! path, the Origin, the token and the query, and the refusal responses it sends
//! before the upgrade.

use std::{
    cell::RefCell,
    io::{self, Read, Write},
    rc::Rc,
    sync::{Arc, atomic::Ordering},
};

use mio::net::TcpStream;
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response};

use super::{
    FanoutCtx, STREAM_PATH,
    query::{self, Encoding, Start},
    subscriber::{Lane, Subscription},
};
use crate::{
    auth::{self, Presented},
    http_proto::{self, HttpError},
};

/// The socket, shared between the WebSocket (which reads and writes it) and the loop
/// (which registers it and may write a refusal after a failed handshake).
#[derive(Debug, Clone)]
pub(super) struct Shared(pub(super) Rc<TcpStream>);

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The subscription a handshake asked for, filled in by [`Upgrade`].
pub(super) type Asked = Rc<RefCell<Option<Subscription>>>;

/// Validates the upgrade request: path, Origin, token, parameters. Anything wrong
/// gets an HTTP error response before the upgrade. Public for the fuzz target
/// ([`super::fuzzing`]), which hands it to tungstenite as the loop does.
pub struct Upgrade {
    ctx: Arc<FanoutCtx>,
    asked: Asked,
}

impl Upgrade {
    /// The callback for one connection's handshake over `ctx`, and where it puts the
    /// subscription it accepted.
    pub(super) fn new(ctx: &Arc<FanoutCtx>) -> (Upgrade, Asked) {
        let asked: Asked = Rc::new(RefCell::new(None));
        let upgrade = Upgrade {
            ctx: ctx.clone(),
            asked: asked.clone(),
        };
        (upgrade, asked)
    }
}

pub(super) fn error_response(status: u16, code: &'static str, detail: String) -> ErrorResponse {
    refusal(&HttpError::new(status, code, detail))
}

/// The response refusing an upgrade with `e`, in the HTTP port's words.
fn refusal(e: &HttpError) -> ErrorResponse {
    refusal_with(e, None)
}

/// [`refusal`], with a `WWW-Authenticate` challenge when a token was refused.
fn refusal_with(e: &HttpError, challenge: Option<String>) -> ErrorResponse {
    let body = String::from_utf8(http_proto::error_body(e)).expect("JSON is UTF-8");
    let mut b = tungstenite::http::Response::builder()
        .status(e.status)
        .header("Content-Type", "application/json")
        .header("Content-Length", body.len())
        .header("Connection", "close");
    if let Some(c) = challenge {
        b = b.header("WWW-Authenticate", c);
    }
    b.body(Some(body)).expect("valid response")
}

/// The token a subscription carries: the `Authorization` header or, for browsers
/// (which cannot set headers on a WebSocket), the `access_token` parameter; both at
/// once is refused, as RFC 6750 section 2 asks.
fn presented<'a>(req: &'a Request, query_token: Option<&'a str>) -> Presented<'a> {
    let mut headers = req.headers().get_all("authorization").iter();
    let header = match (headers.next(), headers.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => return Presented::Malformed("more than one Authorization header"),
        (Some(v), None) => match v.to_str() {
            Ok(s) => Some(s),
            Err(_) => return Presented::Malformed("the Authorization header is not ASCII"),
        },
    };
    match (header, query_token) {
        (Some(_), Some(_)) => {
            Presented::Malformed("a token in both the Authorization header and access_token")
        }
        (Some(h), None) => Presented::from_header(Some(h)),
        (None, Some(t)) => Presented::Token(t),
        (None, None) => Presented::None,
    }
}

/// The size of the request head as parsed: request line, headers, blank line.
/// tungstenite reads up to 64 KiB of head; the HTTP port's bound applies here too.
fn head_bytes(req: &Request) -> usize {
    let line =
        req.method().as_str().len() + 1 + req.uri().to_string().len() + " HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + ": \r\n".len() + v.len())
        .sum();
    line + headers + 2
}

/// True if `key` is what RFC 6455 section 4.1 asks for: the base64 encoding (with
/// padding) of 16 bytes, 24 characters ending in `==`.
fn key_well_formed(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b.ends_with(b"==")
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

impl Callback for Upgrade {
    fn on_request(self, req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
        let ctx = &self.ctx;
        let s = &ctx.settings;
        let bad = |c: &std::sync::atomic::AtomicU64| c.fetch_add(1, Ordering::Relaxed);
        if head_bytes(req) > s.http_header_bytes_max {
            bad(&ctx.stats.ws_bad_requests_total);
            return Err(refusal(&http_proto::head_too_large(
                s.http_header_bytes_max,
            )));
        }
        let key = req.headers().get("sec-websocket-key");
        if !key
            .and_then(|k| k.to_str().ok())
            .is_some_and(key_well_formed)
        {
            bad(&ctx.stats.ws_bad_requests_total);
            return Err(error_response(
                400,
                "bad_request",
                "Sec-WebSocket-Key must be the base64 encoding of 16 bytes (RFC 6455 section 4.1)"
                    .into(),
            ));
        }
        if req.uri().path() != STREAM_PATH {
            bad(&ctx.stats.ws_bad_requests_total);
            return Err(error_response(
                404,
                "not_found",
                format!("subscribe at {STREAM_PATH}, not {}", req.uri().path()),
            ));
        }
        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
        if !query::origin_allowed(&s.ws_allowed_origins, header("origin"), header("host")) {
            bad(&ctx.stats.ws_origin_refused_total);
            return Err(error_response(
                403,
                "origin_not_allowed",
                format!(
                    "Origin {:?} is not in ws_allowed_origins",
                    header("origin").unwrap_or("")
                ),
            ));
        }
        // The token is no filter parameter: taken out before the query is parsed,
        // whether or not tokens are asked for.
        let (query_token, query) = match auth::take_access_token(req.uri().query().unwrap_or("")) {
            Ok(t) => t,
            Err(why) => {
                bad(&ctx.stats.ws_bad_requests_total);
                return Err(error_response(400, "bad_request", why.into()));
            }
        };
        if let Some(a) = &ctx.auth {
            let token = query_token.as_deref().filter(|t| !t.is_empty());
            if let Err(r) = a
                .check(auth::Listener::Ws, presented(req, token), auth::Scope::Read)
                .map(drop)
            {
                return Err(refusal_with(&r.http_error(), Some(r.challenge())));
            }
        }
        let mut q = match query::parse(&query, false, 0, s.filter_bytes_max) {
            Ok(q) => q,
            Err(e) => {
                if e.code == "filter_too_long" {
                    bad(&ctx.reads.filter_too_long_total);
                }
                bad(&ctx.stats.ws_bad_requests_total);
                return Err(error_response(400, e.code, e.detail));
            }
        };
        let lanes = match lanes(ctx, &mut q) {
            Ok(l) => l,
            Err(e) => {
                bad(&ctx.stats.ws_bad_requests_total);
                return Err(refusal(&e));
            }
        };
        *self.asked.borrow_mut() = Some(Subscription {
            lanes,
            filter: q.filter,
            encoding: q.encoding,
        });
        Ok(resp)
    }
}

/// The partitions a subscription follows and where it starts in each: `stream=` (the
/// default stream if absent) and `partition=` (every partition, merged, if absent),
/// `from` and `since`.
///
/// # Errors
/// The refusal: 404 `unknown_stream`; 400 for a partition the stream does not have,
/// `from` naming one, a single offset or `format=binary` on a merged subscription.
fn lanes(ctx: &FanoutCtx, q: &mut query::Query) -> Result<Vec<Lane>, HttpError> {
    use crate::query::read::{ReadApiError, partitions_of};
    let parts = match partitions_of(&ctx.streams, q) {
        Ok(p) => p,
        Err(ReadApiError::UnknownStream(name)) => {
            let known: Vec<&str> = ctx
                .streams
                .specs()
                .0
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            return Err(HttpError::new(
                404,
                "unknown_stream",
                format!(
                    "{name:?} is not a stream of this server (streams: {})",
                    known.join(", ")
                ),
            ));
        }
        Err(ReadApiError::BadQuery(e)) => return Err(HttpError::new(400, e.code, e.detail)),
        Err(e) => return Err(HttpError::new(400, "bad_request", e.to_string())),
    };
    let merged = parts.len() > 1;
    let stream = &parts[0].stream;
    if merged && q.encoding == Encoding::Binary {
        return Err(HttpError::new(
            400,
            "bad_request",
            format!(
                "format=binary follows one partition (its frames carry offsets, not partitions): name one with partition=0..={} of stream {stream:?}",
                parts.len() - 1
            ),
        ));
    }
    if merged && let Some(Start::Offset(n)) = q.start {
        return Err(HttpError::new(
            400,
            "bad_request",
            format!(
                "stream {stream:?} has {} partitions, each with its own offsets: resume a merged subscription with from=<partition>:<offset>,... (e.g. from=0:{n},1:...), not from={n}",
                parts.len()
            ),
        ));
    }
    if let Some(list) = &q.start_partitions
        && let Some(&(p, _)) = list
            .iter()
            .find(|&&(p, _)| !parts.iter().any(|v| v.partition == p))
    {
        let all = ctx.streams.stream(stream).map_or(1, <[_]>::len);
        let why = if parts.len() == 1 && all > 1 {
            format!(
                "from names partition {p}, but the subscription follows partition {} of stream {stream:?} alone",
                parts[0].partition
            )
        } else {
            format!(
                "from names partition {p}; stream {stream:?} has {all} partition(s), 0..={}",
                all - 1
            )
        };
        return Err(HttpError::new(400, "bad_request", why));
    }
    let all = ctx.streams.all();
    let mut lanes = Vec::with_capacity(parts.len());
    for v in parts {
        let part = all
            .iter()
            .position(|a| a.stream == v.stream && a.partition == v.partition)
            .expect("partitions_of answers partitions of the same views");
        let log = &v.log;
        q.filter.set_time_skew_ms(log.config().time_skew_ms_max);
        // With `since` and no `from`, the subscription starts at `since`; with both,
        // at the later of the two. A partition a `from` list leaves out starts at its
        // oldest record: a resuming client that had nothing from it loses nothing.
        let default_start = if q.filter.since_ns().is_some() || q.start_partitions.is_some() {
            Start::Earliest
        } else {
            Start::Latest
        };
        let listed = q
            .start_partitions
            .as_ref()
            .and_then(|l| l.iter().find(|&&(p, _)| p == v.partition))
            .map(|&(_, start)| start);
        let cursor = match listed.or(q.start).unwrap_or(default_start) {
            Start::Earliest => log.start_offset(),
            Start::Latest => log.committed_end(),
            Start::Offset(n) => n.max(log.start_offset()),
        };
        let cursor = match q.filter.since_ns() {
            Some(since) => match crate::query::read::since_offset(log, since) {
                Ok(at) => cursor.max(at),
                Err(e) => {
                    tracing::error!(error = %e, "time index unreadable; the subscription reads from its cursor");
                    cursor
                }
            },
            None => cursor,
        };
        lanes.push(Lane {
            part,
            tag: (merged || part != 0).then_some(v.partition),
            cursor,
            reader: None,
        });
    }
    Ok(lanes)
}
