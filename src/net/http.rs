//! The HTTP/1.1 connection driver (tokio-uring) and the request handlers.
//!
//! One task per connection handles requests in order, which makes pipelining safe:
//! bytes after a request stay in the buffer for the next one. An ingest response is
//! written only after the request's records are durable.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use super::driver::*;
use super::{
    enrich::RequestInfo,
    framing::{Framing, Target},
    http_deadline::{self, Clock, Phase},
    lines::LineFramer,
    logs_body::{self, LogsBody, Media, json_records},
    otlp,
};
use crate::{
    auth,
    error::{AppendError, without_dir},
    http_proto::{self, BodyKind, ChunkedDecoder, HttpError, Method, RequestHead},
    query::read::{self, ReadApiError, ReadLimits},
    stats,
    wal::Committed,
};

/// A response ready to write.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    /// Answering HEAD: the headers (Content-Length included) without the body.
    head_only: bool,
}

impl Response {
    fn json(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
            head_only: false,
        }
    }

    fn error(e: &HttpError) -> Self {
        let mut r = Response::json(e.status, http_proto::error_body(e));
        if let Some(s) = e.retry_after_s {
            r.headers.push(("Retry-After", s.to_string()));
        }
        r
    }
}

/// Serves one HTTP connection until it closes, errs, times out, or the server stops.
pub async fn serve(
    stream: Stream,
    peer: SocketAddr,
    ctx: Arc<NetCtx>,
    registry: Rc<Registry>,
    source: SourceGuard,
) {
    let fd = stream.as_raw_fd();
    let guard = ConnGuard::new(registry, fd, ctx.clone(), true);
    ctx.stats
        .http_connections_total
        .fetch_add(1, Ordering::Relaxed);
    let clock = Clock::new();
    let limits = http_deadline::Limits::of(&ctx);
    http_deadline::spawn_watchdog(fd, clock.clone(), guard.closed.clone(), limits, ctx.clone());
    let mut conn = Conn {
        peer,
        source,
        token: None,
        dest: ctx.dests.http,
        stream,
        ctx,
        buf: Vec::new(),
        out: Vec::with_capacity(1024),
        clock,
        guard,
    };
    conn.buf
        .reserve(conn.ctx.settings.read_buffer_bytes.min(64 << 10));
    conn.run().await;
    if let Some(cut) = conn.clock.cut() {
        // Slowloris and stalled requests: say why before closing.
        conn.respond(Response::error(&cut.error(&limits)), false)
            .await;
    }
    let grace = Duration::from_millis(conn.ctx.settings.http_idle_timeout_ms);
    let _ = tokio::time::timeout(grace, conn.stream.finish()).await;
}

struct Conn {
    /// The connection's registration, which says when it is idle (for a drain).
    /// First, so that it drops first: the socket is unregistered before `stream`
    /// closes it, and shutdown never touches a reused fd.
    guard: ConnGuard,
    /// The client's address (for `client_ip` enrichment).
    peer: SocketAddr,
    /// Its IP's connection count and rates, and its own rates.
    source: SourceGuard,
    /// The name of the token the request being served presented (auth on only), for
    /// its per-token rates.
    token: Option<String>,
    /// Where the request being served stores its records (`http_stream`, or its
    /// `Ringstash-Stream` header).
    dest: crate::streams::Dest,
    stream: Stream,
    ctx: Arc<NetCtx>,
    /// Bytes read and not yet consumed (a head, a body, or pipelined requests).
    buf: Vec<u8>,
    /// The response being written; reused.
    out: Vec<u8>,
    /// What the connection waits for, shared with its watchdog (the deadlines).
    clock: Rc<Clock>,
}

/// How a request ended for the connection.
enum Next {
    KeepAlive,
    Close,
}

impl Conn {
    /// Reads more bytes into `buf`; false on EOF or error, or once the watchdog cut
    /// the request (its reading side is shut then; `serve` answers 408).
    async fn read_more(&mut self) -> bool {
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve(self.buf.capacity().max(4096));
        }
        let (res, buf) = self.stream.read_spare(std::mem::take(&mut self.buf)).await;
        self.buf = buf;
        match res {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.clock.read(n);
                self.clock.cut().is_none()
            }
        }
    }

    async fn write_out(&mut self) -> bool {
        let (res, back) = self.stream.write_all(std::mem::take(&mut self.out)).await;
        self.out = back;
        self.out.clear();
        res.is_ok()
    }

    async fn respond(&mut self, r: Response, keep_alive: bool) -> bool {
        let class = match r.status {
            200..=299 => &self.ctx.stats.http_responses_2xx_total,
            400..=499 => &self.ctx.stats.http_responses_4xx_total,
            _ => &self.ctx.stats.http_responses_5xx_total,
        };
        class.fetch_add(1, Ordering::Relaxed);
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http_proto::write_response(
            &mut self.out,
            r.status,
            r.content_type,
            &r.body,
            keep_alive,
            &headers,
        );
        if r.head_only {
            self.out.truncate(self.out.len() - r.body.len());
        }
        self.write_out().await
    }

    async fn run(&mut self) {
        loop {
            let head = loop {
                match http_proto::parse_head(&self.buf, self.ctx.settings.http_header_bytes_max) {
                    Ok(Some((head, n))) => {
                        self.buf.drain(..n);
                        self.clock.set(Phase::Busy);
                        break head;
                    }
                    Ok(None) => {
                        // Idle until a byte comes; from then on the head's deadline runs.
                        let idle = self.buf.is_empty();
                        if idle {
                            self.clock.set(Phase::Idle);
                        } else if !matches!(self.clock.phase(), Phase::Head { .. }) {
                            self.clock.set(Phase::Head {
                                since: Instant::now(),
                            });
                        }
                        self.guard.set_idle(idle);
                        let more = self.read_more().await;
                        self.guard.set_idle(false);
                        if !more {
                            return;
                        }
                    }
                    Err(e) => {
                        self.respond(Response::error(&e), false).await;
                        return;
                    }
                }
            };
            self.ctx
                .stats
                .http_requests_total
                .fetch_add(1, Ordering::Relaxed);
            if self.ctx.shutting_down.load(Ordering::Relaxed) {
                // A request that arrives during a drain (on a keep-alive connection the
                // drain left open for this) is refused in words, not with EOF.
                let e = append_error(&self.ctx, &AppendError::Closed);
                self.respond(Response::error(&e), false).await;
                return;
            }
            match self.request(head).await {
                Next::KeepAlive => {}
                Next::Close => return,
            }
        }
    }

    async fn request(&mut self, head: RequestHead) -> Next {
        self.token = match self.authorize(&head) {
            Ok(name) => name,
            Err(refused) => return self.refuse_unauthorized(&head, &refused).await,
        };
        let is_ingest = matches!(head.path.as_str(), "/ingest" | "/v1/logs");
        let mut response = match (head.method, head.path.as_str()) {
            (Method::Post, "/ingest") | (Method::Post, "/v1/logs") => {
                match self.post_ingest(&head).await {
                    Some(r) => r,
                    None => return Next::Close,
                }
            }
            _ => self.route(&head),
        };
        // A request we did not read the body of leaves the stream out of step.
        let unread_body =
            !(matches!(head.body, BodyKind::None) || head.method == Method::Post && is_ingest);
        // Checked at the answer, not at the request: a drain that began meanwhile
        // closes the connection rather than leave it to be cut while idle.
        let keep =
            head.keep_alive && !unread_body && !self.ctx.shutting_down.load(Ordering::Relaxed);
        response.head_only = head.method == Method::Head;
        if !self.respond(response, keep).await || !keep {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// Checks the request's token against the scope its route needs (auth on only).
    /// Routes without a scope serve no records: `/` (a static page), `/healthz`,
    /// and the 404s and 405s.
    fn authorize(&self, head: &RequestHead) -> Result<Option<String>, auth::Refusal> {
        let Some(auth) = &self.ctx.auth else {
            return Ok(None);
        };
        let Some(needed) = scope_of(head.method, &head.path) else {
            return Ok(None);
        };
        let presented = auth::Presented::from_header(head.authorization.as_deref());
        auth.check(auth::Listener::Http, presented, needed)
            .map(Some)
    }

    /// Answers a refused token: 401 or 403 with `WWW-Authenticate`, in the JSON error
    /// shape (an OTLP `Status` for an OTLP/protobuf export). A body is left unread, so
    /// a request that has one closes its connection, as other refusals before the body
    /// do; nothing of it is stored.
    async fn refuse_unauthorized(&mut self, head: &RequestHead, refused: &auth::Refusal) -> Next {
        let e = refused.http_error();
        let otlp = head.method == Method::Post
            && head.path == "/v1/logs"
            && Media::of(head.content_type.as_deref()) == Ok(Media::Protobuf);
        let mut r = if otlp {
            otlp_error(otlp::Encoding::Protobuf, &e)
        } else {
            Response::error(&e)
        };
        r.headers.push(("WWW-Authenticate", refused.challenge()));
        r.head_only = head.method == Method::Head;
        let keep = head.keep_alive
            && matches!(head.body, BodyKind::None)
            && !self.ctx.shutting_down.load(Ordering::Relaxed);
        if !self.respond(r, keep).await || !keep {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// `POST /ingest` and `POST /v1/logs`: reads the body and stores its records.
    /// `None` when the connection must close: the client went away, or its body was
    /// refused (that refusal is already written).
    async fn post_ingest(&mut self, head: &RequestHead) -> Option<Response> {
        self.dest = match head.stream.as_deref() {
            None => self.ctx.dests.http,
            Some(name) => match self.ctx.router.stream(name) {
                Some(stream) => crate::streams::Dest {
                    stream,
                    syslog_rules: false,
                },
                None => {
                    // Refused before the body is read: the connection closes.
                    self.ctx
                        .stats
                        .unknown_stream_total
                        .fetch_add(1, Ordering::Relaxed);
                    let e = HttpError::new(
                        404,
                        "unknown_stream",
                        format!(
                            "Ringstash-Stream names {name:?}, which is not a stream of this server (the streams setting); nothing was stored"
                        ),
                    );
                    self.respond(Response::error(&e), false).await;
                    return None;
                }
            },
        };
        let body = self.read_body(head).await;
        self.clock.set(Phase::Busy);
        let body = match body {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                // The stream is out of step with request boundaries: close.
                let otlp = head.path == "/v1/logs"
                    && Media::of(head.content_type.as_deref()) == Ok(Media::Protobuf);
                let r = if otlp {
                    otlp_error(otlp::Encoding::Protobuf, &e)
                } else {
                    Response::error(&e)
                };
                self.respond(r, false).await;
                return None;
            }
        };
        Some(if head.path == "/ingest" {
            match self.ingest_lines(&body).await {
                Ok(stored) => stored.response(),
                Err(e) => plain_error(&e),
            }
        } else {
            self.post_logs(head, body).await
        })
    }

    /// `POST /v1/logs`: an OTLP export (protobuf, or JSON carrying `resourceLogs`), or
    /// plain JSON log objects (an array, one object, NDJSON). Each is answered in its
    /// own protocol's words.
    async fn post_logs(&mut self, head: &RequestHead, body: Vec<u8>) -> Response {
        let media = match Media::of(head.content_type.as_deref()) {
            Ok(m) => m,
            Err(e) => return plain_error(&e),
        };
        let max = self.ctx.settings.http_body_decompressed_bytes_max;
        let body = match http_proto::decode_body(head.content_encoding.as_deref(), body, max) {
            Ok(b) => b,
            Err(e) if media == Media::Protobuf => return otlp_error(otlp::Encoding::Protobuf, &e),
            Err(e) => return plain_error(&e),
        };
        let info = RequestInfo {
            received_at: crate::query::render::format_ts(wal::now_ns()),
            client_ip: self.peer.ip().to_string(),
            now: std::time::SystemTime::now(),
        };
        let items_max = self.ctx.settings.logs_body_items_max;
        let read = LogsBody::read(media, &body, items_max);
        if logs_body::refused_for_items(&read) {
            self.ctx
                .stats
                .logs_body_items_refused_total
                .fetch_add(1, Ordering::Relaxed);
        }
        let values = match read {
            Ok(LogsBody::Otlp(enc, req)) => return self.ingest_otlp(enc, req, &info).await,
            Ok(LogsBody::Objects(values)) => values,
            Err(e) => return plain_error(&e),
        };
        let stored = match json_records(values, &self.ctx.json_policy, &info) {
            Ok(records) => self.ingest_records(records.iter().map(Vec::as_slice)).await,
            Err(e) => Err(e),
        };
        match stored {
            Ok(stored) => stored.response(),
            Err(e) => plain_error(&e),
        }
    }

    /// Stores an OTLP export: the records that map, a partial success for those that
    /// do not (`otlp::map_request`), a `Status` for a body that does not decode.
    async fn ingest_otlp(
        &mut self,
        enc: otlp::Encoding,
        req: Result<ExportLogsServiceRequest, otlp::OtlpError>,
        info: &RequestInfo,
    ) -> Response {
        let req = match req {
            Ok(r) => r,
            Err(e) => return otlp_error(enc, &otlp_refusal(&e)),
        };
        let stats = &self.ctx.stats;
        stats.otlp_requests_total.fetch_add(1, Ordering::Relaxed);
        let policy = &self.ctx.json_policy;
        let bounds = otlp::Bounds {
            record_bytes_max: self.ctx.settings.record_bytes_max,
            rendered_bytes_max: self.ctx.settings.otlp_records_bytes_max,
        };
        let mapped = match otlp::map_request(req, policy, info, bounds) {
            Ok(m) => m,
            Err(e) => return otlp_error(enc, &otlp_refusal(&e)),
        };
        stats
            .otlp_rejected_records_total
            .fetch_add(mapped.rejected, Ordering::Relaxed);
        match self
            .ingest_records(mapped.records.iter().map(Vec::as_slice))
            .await
        {
            Ok(stored) => {
                self.ctx
                    .stats
                    .otlp_records_total
                    .fetch_add(stored.count, Ordering::Relaxed);
                Response {
                    status: 200,
                    content_type: enc.content_type(),
                    body: otlp::response_body(enc, mapped.rejected, &mapped.error_message()),
                    headers: Vec::new(),
                    head_only: false,
                }
            }
            Err(e) => otlp_error(enc, &e),
        }
    }

    /// Every request but an ingest POST: answered without reading a body.
    fn route(&self, head: &RequestHead) -> Response {
        match (head.method, head.path.as_str()) {
            (Method::Get | Method::Head, "/v1/logs") => self.read_logs(&head.query),
            (_, "/ingest") | (_, "/v1/logs") => {
                let allow = if head.path == "/ingest" {
                    "POST"
                } else {
                    "GET, HEAD, POST"
                };
                let mut r = Response::error(&HttpError::new(
                    405,
                    "method_not_allowed",
                    format!("use {allow}"),
                ));
                r.headers.push(("Allow", allow.into()));
                r
            }
            (Method::Get | Method::Head, "/") => Response {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: super::dashboard::DASHBOARD_HTML.as_bytes().to_vec(),
                headers: vec![("Cache-Control", "no-cache".into())],
                head_only: false,
            },
            (Method::Get | Method::Head, "/v1/config") => {
                Response::json(200, super::dashboard::config_json(&self.ctx))
            }
            (Method::Get | Method::Head, "/v1/aggregates") => {
                match self
                    .ctx
                    .aggregates
                    .query_json(&head.query, self.ctx.log.committed_end())
                {
                    Ok(body) => Response::json(200, body),
                    Err(e) => Response::error(&HttpError::new(400, "bad_request", e.0)),
                }
            }
            (Method::Get | Method::Head, "/healthz") => self.healthz(),
            (Method::Get | Method::Head, "/stats") => {
                Response::json(200, stats::stats_json(&self.ctx.observed).into_bytes())
            }
            (Method::Get | Method::Head, "/metrics") => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: stats::metrics_text(&self.ctx.observed).into_bytes(),
                headers: Vec::new(),
                head_only: false,
            },
            (_, "/healthz" | "/stats" | "/metrics" | "/" | "/v1/config" | "/v1/aggregates") => {
                let mut r = Response::error(&HttpError::new(405, "method_not_allowed", "use GET"));
                r.headers.push(("Allow", "GET, HEAD".into()));
                r
            }
            _ => Response::error(&HttpError::new(
                404,
                "not_found",
                format!("no such path {}", head.path),
            )),
        }
    }

    fn healthz(&self) -> Response {
        match self.ctx.log.failure() {
            None => Response::json(200, br#"{"status":"ok"}"#.to_vec()),
            Some(why) => Response::json(
                503,
                serde_json::to_vec(&serde_json::json!({
                    "status": "failed",
                    "reason": without_dir(&why.to_string(), &self.ctx.log.config().dir),
                }))
                .expect("json"),
            ),
        }
    }

    /// Reads the request body; `Ok(None)` if the client went away.
    async fn read_body(&mut self, head: &RequestHead) -> Result<Option<Vec<u8>>, HttpError> {
        let max = self.ctx.settings.http_body_bytes_max;
        match head.body {
            BodyKind::None => Err(HttpError::new(
                411,
                "length_required",
                "POST needs Content-Length or Transfer-Encoding: chunked",
            )),
            BodyKind::Length(n) if n > max as u64 => Err(http_proto::too_large(max)),
            BodyKind::Length(n) => {
                let n = n as usize;
                if head.expect_continue && self.buf.len() < n {
                    self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    if !self.write_out().await {
                        return Ok(None);
                    }
                }
                if self.buf.capacity() < n {
                    self.buf.reserve(n - self.buf.len());
                }
                let left = n.saturating_sub(self.buf.len());
                self.clock.start_body(Some(left as u64));
                while self.buf.len() < n {
                    if !self.read_more().await {
                        return Ok(None);
                    }
                }
                let rest = self.buf.split_off(n);
                let body = std::mem::replace(&mut self.buf, rest);
                Ok(Some(body))
            }
            BodyKind::Chunked => {
                if head.expect_continue {
                    self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    if !self.write_out().await {
                        return Ok(None);
                    }
                }
                let mut dec = ChunkedDecoder::default();
                let mut body = Vec::new();
                self.clock.start_body(None);
                loop {
                    let used = dec.decode(&self.buf, &mut body, max)?;
                    self.buf.drain(..used);
                    if dec.is_done() {
                        return Ok(Some(body));
                    }
                    if !self.read_more().await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// `POST /ingest`: each body line a record, framed exactly as on raw TCP.
    async fn ingest_lines(&mut self, body: &[u8]) -> Result<Stored, HttpError> {
        let s = &self.ctx.settings;
        let batch_max = super::batch_bytes_max(s);
        let mut framer = LineFramer::new(s.record_bytes_max);
        let mut builder = BatchBuilder::new(batch_max.min(body.len() * 2 + 64), s.record_bytes_max);
        let mut batches = Vec::new();
        let mut refused: Option<u64> = None;
        let ts = wal::now_ns();
        let mut start = 0;
        let mut refuse = |line| {
            refused.get_or_insert(line);
        };
        loop {
            let mut to = Target::new(&mut builder, ts, batch_max, &mut refuse);
            let f = framer.frame(&body[start..], &mut to);
            start += f.consumed;
            if f.batch_full {
                batches.push(builder.take());
                continue;
            }
            break;
        }
        let mut to = Target::new(&mut builder, ts, batch_max, &mut refuse);
        // A body's end is the request's: its last line without '\n' is a record.
        framer.finish(&body[start..], &mut to);
        if let Some(line) = refused {
            // Validate the whole request before storing any of it.
            return Err(HttpError::new(
                413,
                "payload_too_large",
                format!(
                    "line {line} exceeds record_bytes_max ({} bytes); nothing was stored",
                    s.record_bytes_max
                ),
            ));
        }
        if !builder.is_empty() {
            batches.push(builder.take());
        }
        self.commit(batches).await
    }

    /// Stores pre-encoded records (`/v1/logs`).
    async fn ingest_records<'a>(
        &mut self,
        records: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Stored, HttpError> {
        let s = &self.ctx.settings;
        let batch_max = super::batch_bytes_max(s);
        let mut builder = BatchBuilder::new(batch_max, s.record_bytes_max);
        let mut batches = Vec::new();
        let ts = wal::now_ns();
        for (i, r) in records.enumerate() {
            if !builder.is_empty()
                && builder.bytes() + r.len() + wal::format::RECORD_HEADER_BYTES > batch_max
            {
                batches.push(builder.take());
            }
            builder.push(ts, r).map_err(|e| {
                HttpError::new(
                    413,
                    "payload_too_large",
                    format!("log object {i}: {e}; nothing was stored"),
                )
            })?;
        }
        if !builder.is_empty() {
            batches.push(builder.take());
        }
        self.commit(batches).await
    }

    /// Pushes the request's batches and waits until all are durable.
    async fn commit(&mut self, batches: Vec<(bytes::BytesMut, u32)>) -> Result<Stored, HttpError> {
        let records: u64 = batches.iter().map(|(_, n)| u64::from(*n)).sum();
        let bytes = batches
            .iter()
            .map(|(f, n)| super::limits::payload_bytes(f.len(), *n))
            .sum();
        if let Err(wait) = self
            .source
            .admit_request(records, bytes, self.token.as_deref())
        {
            let after = wait.as_secs_f64().ceil().max(1.0) as u64;
            return Err(HttpError::new(
                429,
                "rate_limited",
                format!(
                    "this connection, its client IP or its token is over its rate \
                     (conn_/ip_/token_records_per_s_max, conn_/ip_/token_bytes_per_s_max); \
                     nothing was stored; retry in {after} s"
                ),
            )
            .retry_after(after));
        }
        let deadline = Instant::now() + Duration::from_millis(self.ctx.settings.enqueue_timeout_ms);
        let mut completions = Vec::with_capacity(batches.len());
        let mut records = 0u64;
        for (frames, n) in batches {
            let hint = self.guard.id();
            match conn::push_batch(&self.ctx, self.dest, hint, frames, n, Some(deadline)).await {
                Ok(c) => {
                    completions.push(c);
                    records += u64::from(n);
                }
                Err(PushFail::TimedOut) => {
                    self.ctx
                        .stats
                        .http_ring_full_total
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(HttpError::new(
                        503,
                        "ring_full",
                        format!(
                            "the log's ring stayed full for enqueue_timeout_ms ({} ms); retry",
                            self.ctx.settings.enqueue_timeout_ms
                        ),
                    )
                    .retry_after(1));
                }
                Err(PushFail::Refused(e)) => return Err(append_error(&self.ctx, &e)),
            }
        }
        self.ctx
            .stats
            .http_records_total
            .fetch_add(records, Ordering::Relaxed);
        let mut first: Option<Committed> = None;
        let mut last: Option<Committed> = None;
        for c in completions {
            match c.await {
                Ok(done) => {
                    first.get_or_insert(done);
                    last = Some(done);
                }
                Err(e) => return Err(append_error(&self.ctx, &e)),
            }
        }
        Ok(Stored {
            count: records,
            first,
            last,
        })
    }
}

/// The scope a route needs when auth is on (`docs/security.md`); `None` for the routes
/// that serve no records and stay open: the dashboard page, `/healthz`, and the
/// refusals of unknown paths and methods.
fn scope_of(method: Method, path: &str) -> Option<auth::Scope> {
    match (method, path) {
        (Method::Post, "/ingest" | "/v1/logs") => Some(auth::Scope::Write),
        (Method::Get | Method::Head, "/v1/logs" | "/v1/config" | "/v1/aggregates") => {
            Some(auth::Scope::Read)
        }
        (Method::Get | Method::Head, "/stats" | "/metrics") => Some(auth::Scope::Metrics),
        _ => None,
    }
}

/// What a request stored, once durable.
struct Stored {
    /// Records stored.
    count: u64,
    /// The first batch's commit, if any was stored.
    first: Option<Committed>,
    /// The last batch's commit.
    last: Option<Committed>,
}

impl Stored {
    /// The `200` of `/ingest` and of plain `/v1/logs` requests.
    fn response(self) -> Response {
        let body = serde_json::json!({
            "count": self.count,
            "first_offset": self.first.map(|c| c.first_offset),
            "last_offset": self.last.map(|c| c.last_offset()),
        });
        Response::json(200, serde_json::to_vec(&body).expect("json"))
    }
}

/// A refusal of `/ingest` or of a plain `/v1/logs` request: the JSON error body, and
/// `Retry-After` when the ring was full.
fn plain_error(e: &HttpError) -> Response {
    Response::error(e)
}

/// The status and code of a request `net::otlp` refused.
fn otlp_refusal(e: &otlp::OtlpError) -> HttpError {
    let (status, code) = match e {
        otlp::OtlpError::Protobuf(_) | otlp::OtlpError::Json(_) => (400, "bad_request"),
        otlp::OtlpError::RecordsTooLarge { .. } => (413, "payload_too_large"),
        otlp::OtlpError::TooManyItems { .. } => (413, "too_many_items"),
    };
    HttpError::new(status, code, e.to_string())
}

/// A refusal of an OTLP request: a `google.rpc.Status` in its encoding. OTLP exporters
/// retry only 429, 502, 503 and 504, so every refusal a retry can cure is a 503 with
/// `Retry-After`: a full ring or a draining server (1 s), a full disk (10 s: retention
/// or an operator must free room first); a rate limit is the 429 it is, with its own
/// `Retry-After`. The rest keep their status and are dropped by the exporter.
fn otlp_error(enc: otlp::Encoding, e: &HttpError) -> Response {
    let (status, retry_after) = match (e.status, e.retry_after_s) {
        (507, _) => (503, Some("10".to_owned())),
        (503, None) => (503, Some("1".to_owned())),
        (s, after) => (s, after.map(|a| a.to_string())),
    };
    let message = format!("{}: {}", e.code, e.detail);
    Response {
        status,
        content_type: enc.content_type(),
        body: otlp::status_body(enc, status, &message),
        headers: retry_after
            .map(|s| ("Retry-After", s))
            .into_iter()
            .collect(),
        head_only: false,
    }
}

impl Conn {
    /// `GET /v1/logs`: the query layer reads; this side counts and maps its errors.
    fn read_logs(&self, query_string: &str) -> Response {
        let ctx = &self.ctx;
        let limits = ReadLimits {
            records_max: ctx.settings.read_records_max,
            filter_bytes_max: ctx.settings.filter_bytes_max,
        };
        let result = read::read_logs(&ctx.streams, limits, query_string);
        match &result {
            Err(ReadApiError::BadQuery(e)) if e.code == "filter_too_long" => {
                ctx.reads
                    .filter_too_long_total
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(ReadApiError::BadQuery(_)) => {}
            Err(ReadApiError::UnknownStream(_)) => {
                ctx.stats
                    .unknown_stream_total
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) | Err(ReadApiError::ReadFailed(_)) => {
                ctx.reads
                    .read_requests_total
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        match result {
            Ok(body) => Response::json(200, body),
            Err(ReadApiError::BadQuery(e)) => {
                Response::error(&HttpError::new(400, e.code, e.detail))
            }
            Err(ReadApiError::UnknownStream(name)) => Response::error(&HttpError::new(
                404,
                "unknown_stream",
                format!("{name:?} is not a stream of this server (the streams setting)"),
            )),
            Err(ReadApiError::ReadFailed(e)) => {
                tracing::error!(error = %e, "GET /v1/logs: reading the log failed");
                let detail = without_dir(&e.to_string(), &ctx.log.config().dir);
                Response::error(&HttpError::new(500, "read_failed", detail))
            }
        }
    }
}

/// The HTTP refusal of a batch the log refused. Its detail never shows the server's
/// paths ([`AppendError::detail`]).
fn append_error(ctx: &NetCtx, e: &AppendError) -> HttpError {
    let dir = &ctx.log.config().dir;
    let status = match e {
        AppendError::DiskFull(_) => {
            ctx.stats
                .disk_full_batches_total
                .fetch_add(1, Ordering::Relaxed);
            return HttpError::new(
                507,
                e.code(),
                format!("{}; the request was not acknowledged", e.detail(dir)),
            );
        }
        AppendError::Closed => 503,
        AppendError::BatchTooLarge { .. } => 413,
        AppendError::Write(_) | AppendError::MalformedBatch(_) | AppendError::Failed(_) => 500,
    };
    HttpError::new(status, e.code(), e.detail(dir))
}
