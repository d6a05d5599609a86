//! HTTP/1.1 request parsing and response encoding, as state machines over bytes.
//!
//! The request head is parsed by `httparse`; this module adds what an ingest server
//! must decide before reading a body: its framing (`Content-Length` or chunked, never
//! both: that is how requests are smuggled), keep-alive, `Expect: 100-continue`, the
//! media type, and bounds on head and body sizes.
//!
//! It sits below both stages that speak HTTP, the ingest reactors ([`crate::net`]) and
//! the fan-out core's WebSocket handshake ([`crate::fanout`]), so that neither imports
//! the other for it, and so that both word their refusals the same way ([`refusal`]).

use std::io::Write;

/// Request methods the server distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// Anything else.
    Other,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no Content-Length, no Transfer-Encoding).
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The path, without the query string.
    pub path: String,
    /// The query string (after `?`), possibly empty.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Body framing.
    pub body: BodyKind,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Media type of the body, lower-cased, parameters removed.
    pub content_type: Option<String>,
    /// `Content-Encoding` of the body, lower-cased (`gzip`); `None` = identity.
    pub content_encoding: Option<String>,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// `Upgrade: websocket` was asked for.
    pub upgrade_websocket: bool,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// The `Authorization` header, if any (a bearer token: `crate::auth`).
    pub authorization: Option<String>,
    /// The `Ringstash-Stream` header, if any: the stream a POST's records go to.
    pub stream: Option<String>,
}

/// A request the server refuses, with the status and the error code of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// HTTP status.
    pub status: u16,
    /// Error code for the JSON body (see docs/protocol.md).
    pub code: &'static str,
    /// Human-readable detail.
    pub detail: String,
    /// Seconds after which the client may retry (`Retry-After`), for a 429 or 503.
    pub retry_after_s: Option<u64>,
}

impl HttpError {
    /// Builds an error.
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Self {
        HttpError {
            status,
            code,
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    /// The same, telling the client to retry after `s` seconds.
    pub fn retry_after(mut self, s: u64) -> Self {
        self.retry_after_s = Some(s);
        self
    }
}

/// Most headers a request may carry.
const HEADERS_MAX: usize = 64;

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete.
///
/// # Errors
/// 431 when the head exceeds `header_bytes_max` or has too many headers; 400 for
/// malformed heads, conflicting or invalid framing headers.
pub fn parse_head(
    buf: &[u8],
    header_bytes_max: usize,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let Some(consumed) = parse_request(&mut req, buf, header_bytes_max)? else {
        return Ok(None);
    };
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let minor_version = req.version.unwrap_or(1);
    let fields = HeaderFields::read(req.headers, minor_version)?;
    let body = fields.body()?;
    Ok(Some((
        RequestHead {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            minor_version,
            body,
            keep_alive: fields.keep_alive,
            content_type: fields.content_type,
            content_encoding: fields.content_encoding,
            expect_continue: fields.expect_continue,
            upgrade_websocket: fields.upgrade_websocket,
            origin: fields.origin,
            authorization: fields.authorization,
            stream: fields.stream,
        },
        consumed,
    )))
}

/// Runs httparse over `buf`: the head's length, or `None` while it is incomplete.
fn parse_request<'b>(
    req: &mut httparse::Request<'_, 'b>,
    buf: &'b [u8],
    header_bytes_max: usize,
) -> Result<Option<usize>, HttpError> {
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > header_bytes_max {
                return Err(head_too_large(header_bytes_max));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(
                431,
                "headers_too_large",
                format!("more than {HEADERS_MAX} headers"),
            ));
        }
        Err(e) => {
            return Err(HttpError::new(
                400,
                "bad_request",
                format!("malformed request: {e}"),
            ));
        }
    };
    if consumed > header_bytes_max {
        return Err(head_too_large(header_bytes_max));
    }
    Ok(Some(consumed))
}

/// The 431 for a head over the bound, complete or not (the HTTP port's, and a
/// WebSocket upgrade request's).
pub fn head_too_large(header_bytes_max: usize) -> HttpError {
    HttpError::new(
        431,
        "headers_too_large",
        format!("request head exceeds http_header_bytes_max ({header_bytes_max} bytes)"),
    )
}

/// What the headers say, gathered before the body's framing is decided (which needs
/// all of them: Content-Length and chunked may come in either order).
#[derive(Debug, Default)]
struct HeaderFields {
    content_length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
    content_type: Option<String>,
    content_encoding: Option<String>,
    expect_continue: bool,
    upgrade_websocket: bool,
    origin: Option<String>,
    authorization: Option<String>,
    stream: Option<String>,
}

impl HeaderFields {
    /// Reads the headers in order; the first bad one is the error.
    fn read(headers: &[httparse::Header<'_>], minor_version: u8) -> Result<Self, HttpError> {
        let mut fields = HeaderFields {
            keep_alive: minor_version >= 1,
            ..HeaderFields::default()
        };
        for h in headers {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| {
                    HttpError::new(
                        400,
                        "bad_request",
                        format!("header {} is not UTF-8", h.name),
                    )
                })?
                .trim();
            fields.take(h.name, value)?;
        }
        Ok(fields)
    }

    /// Records one header; the ones this server does not read are ignored.
    fn take(&mut self, name: &str, value: &str) -> Result<(), HttpError> {
        if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(value)?;
            if self.content_length.is_some_and(|c| c != n) {
                return Err(HttpError::new(
                    400,
                    "bad_request",
                    "conflicting Content-Length headers",
                ));
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(HttpError::new(
                    400,
                    "bad_request",
                    format!("unsupported Transfer-Encoding {value:?} (only chunked)"),
                ));
            }
            self.chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    self.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    self.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            let media = value.split(';').next().unwrap_or("").trim();
            self.content_type = Some(media.to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("content-encoding") {
            let coding = value.trim().to_ascii_lowercase();
            self.content_encoding = (coding != "identity").then_some(coding);
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("upgrade") {
            self.upgrade_websocket = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("origin") {
            self.origin = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            // Two credentials are refused rather than one picked (RFC 6750 section 2).
            if self.authorization.is_some() {
                return Err(HttpError::new(
                    400,
                    "bad_request",
                    "more than one Authorization header",
                ));
            }
            self.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("ringstash-stream") {
            if self.stream.is_some() {
                return Err(HttpError::new(
                    400,
                    "bad_request",
                    "more than one Ringstash-Stream header",
                ));
            }
            self.stream = Some(value.to_owned());
        }
        Ok(())
    }

    /// The body's framing: Content-Length or chunked, never both.
    fn body(&self) -> Result<BodyKind, HttpError> {
        match (self.content_length, self.chunked) {
            (Some(_), true) => Err(HttpError::new(
                400,
                "bad_request",
                "both Content-Length and Transfer-Encoding: chunked",
            )),
            (Some(n), false) => Ok(BodyKind::Length(n)),
            (None, true) => Ok(BodyKind::Chunked),
            (None, false) => Ok(BodyKind::None),
        }
    }
}

/// A Content-Length value.
fn content_length(value: &str) -> Result<u64, HttpError> {
    // Digits only: Rust's parser also takes a leading `+`, which proxies read
    // differently, and framing disagreements are how requests are smuggled.
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    value.parse().ok().filter(|_| digits).ok_or_else(|| {
        HttpError::new(
            400,
            "bad_request",
            format!("invalid Content-Length {value:?}"),
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data,
    DataEnd,
    Trailer,
    Done,
}

/// Decodes a chunked body incrementally.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Bytes left in the current chunk.
    remaining: u64,
    /// Bytes of trailer lines seen (bounded by CHUNK_LINE_MAX in all).
    trailer_bytes: usize,
}

/// Longest chunk-size or trailer line accepted.
const CHUNK_LINE_MAX: usize = 4096;

/// A chunk-size line (extensions included) over [`CHUNK_LINE_MAX`].
fn size_line_too_long() -> HttpError {
    HttpError::new(400, "bad_request", "chunk size line too long")
}

/// Trailer lines over [`CHUNK_LINE_MAX`] in all.
fn trailers_too_long() -> HttpError {
    HttpError::new(
        400,
        "bad_request",
        format!("chunked trailers over {CHUNK_LINE_MAX} bytes"),
    )
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            remaining: 0,
            trailer_bytes: 0,
        }
    }
}

impl ChunkedDecoder {
    /// True once the final chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending body bytes to `out`; returns bytes consumed.
    ///
    /// # Errors
    /// 400 for malformed framing; 413 once `out` would exceed `body_bytes_max`.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        body_bytes_max: usize,
    ) -> Result<usize, HttpError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            // Each step consumes from `rest`, or returns None for more input.
            let step = match self.state {
                ChunkState::Done => return Ok(pos),
                ChunkState::Size | ChunkState::Trailer => {
                    self.line(rest, out.len(), body_bytes_max)?
                }
                ChunkState::Data => self.data(rest, out),
                ChunkState::DataEnd => self.data_end(rest)?,
            };
            match step {
                Some(n) => pos += n,
                None => return Ok(pos),
            }
        }
    }

    /// A chunk-size line or a trailer line, with its CRLF.
    fn line(
        &mut self,
        rest: &[u8],
        body_len: usize,
        body_bytes_max: usize,
    ) -> Result<Option<usize>, HttpError> {
        // The same refusal whether the line arrives whole or in pieces (the fuzz
        // target `http_head` checks that): without its CRLF yet, a line is refused only
        // once it is certainly over the bound, whatever the CRLF adds (`rest` may end
        // in the CR).
        let Some(eol) = memchr::memmem::find(rest, b"\r\n") else {
            if self.state == ChunkState::Trailer {
                if self.trailer_bytes + rest.len() + 1 > CHUNK_LINE_MAX {
                    return Err(trailers_too_long());
                }
            } else if rest.len() - usize::from(rest.ends_with(b"\r")) > CHUNK_LINE_MAX {
                return Err(size_line_too_long());
            }
            return Ok(None);
        };
        let line = &rest[..eol];
        if self.state != ChunkState::Trailer && eol > CHUNK_LINE_MAX {
            return Err(size_line_too_long());
        }
        if self.state == ChunkState::Trailer {
            self.trailer_bytes += eol + 2;
            if self.trailer_bytes > CHUNK_LINE_MAX {
                return Err(trailers_too_long());
            }
            if line.is_empty() {
                self.state = ChunkState::Done;
            }
        } else {
            self.size_line(line, body_len, body_bytes_max)?;
        }
        Ok(Some(eol + 2))
    }

    /// The chunk size (hex digits only, extensions ignored); 0 starts the trailers.
    fn size_line(
        &mut self,
        line: &[u8],
        body_len: usize,
        body_bytes_max: usize,
    ) -> Result<(), HttpError> {
        let size_text = line.split(|&b| b == b';').next().unwrap_or(b"");
        let size_text = std::str::from_utf8(size_text).unwrap_or("").trim();
        let hex = !size_text.is_empty() && size_text.bytes().all(|b| b.is_ascii_hexdigit());
        let size = u64::from_str_radix(size_text, 16)
            .ok()
            .filter(|_| hex)
            .ok_or_else(|| {
                HttpError::new(
                    400,
                    "bad_request",
                    format!("invalid chunk size {size_text:?}"),
                )
            })?;
        if size == 0 {
            self.state = ChunkState::Trailer;
        } else {
            // Saturating: a size near 2^64 after an earlier chunk would wrap past the
            // bound and then be read without one (found by the http_head fuzz target).
            if (body_len as u64).saturating_add(size) > body_bytes_max as u64 {
                return Err(too_large(body_bytes_max));
            }
            self.remaining = size;
            self.state = ChunkState::Data;
        }
        Ok(())
    }

    /// As much of the current chunk's data as `rest` holds.
    fn data(&mut self, rest: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let take = rest.len().min(self.remaining as usize);
        if take == 0 {
            return None;
        }
        out.extend_from_slice(&rest[..take]);
        self.remaining -= take as u64;
        if self.remaining == 0 {
            self.state = ChunkState::DataEnd;
        }
        Some(take)
    }

    /// The CRLF after a chunk's data.
    fn data_end(&mut self, rest: &[u8]) -> Result<Option<usize>, HttpError> {
        if rest.len() < 2 {
            return Ok(None);
        }
        if &rest[..2] != b"\r\n" {
            return Err(HttpError::new(
                400,
                "bad_request",
                "chunk data not followed by CRLF",
            ));
        }
        self.state = ChunkState::Size;
        Ok(Some(2))
    }
}

/// The 413 for a body over the bound.
pub fn too_large(body_bytes_max: usize) -> HttpError {
    HttpError::new(
        413,
        "payload_too_large",
        format!("request body exceeds http_body_bytes_max ({body_bytes_max} bytes)"),
    )
}

/// Undoes a body's `Content-Encoding`: none, or `gzip` (RFC 1952, concatenated members
/// too), decoded into at most `decoded_bytes_max` bytes. The bound is checked while
/// decoding, so a small body that inflates without end costs only that much memory.
///
/// # Errors
/// 415 for another coding; 400 for a body that is not gzip; 413 past the bound.
pub fn decode_body(
    coding: Option<&str>,
    body: Vec<u8>,
    decoded_bytes_max: usize,
) -> Result<Vec<u8>, HttpError> {
    use std::io::Read;
    match coding {
        None => Ok(body),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(decoded_bytes_max));
            flate2::read::MultiGzDecoder::new(body.as_slice())
                .take(decoded_bytes_max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    HttpError::new(400, "bad_request", format!("invalid gzip body: {e}"))
                })?;
            if out.len() > decoded_bytes_max {
                return Err(HttpError::new(
                    413,
                    "payload_too_large",
                    format!(
                        "decompressed body exceeds http_body_decompressed_bytes_max ({decoded_bytes_max} bytes)"
                    ),
                ));
            }
            Ok(out)
        }
        Some(other) => Err(HttpError::new(
            415,
            "unsupported_media_type",
            format!("Content-Encoding {other:?} is not supported (gzip or identity)"),
        )),
    }
}

/// The reason phrase of the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// Appends a complete response to `out`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra_headers: &[(&str, &str)],
) {
    write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    )
    .expect("write to Vec");
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    for (k, v) in extra_headers {
        write!(out, "{k}: {v}\r\n").expect("write to Vec");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// The JSON body of an error response.
pub fn error_body(e: &HttpError) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": e.code, "detail": e.detail })).expect("json")
}

/// Appends the response that refuses a connection before (or instead of) serving it:
/// `err`'s status and JSON body, then `Connection: close`. One writer, so that every
/// listener refuses in the same words (`extra_headers` such as `Retry-After`).
pub fn refusal(out: &mut Vec<u8>, err: &HttpError, extra_headers: &[(&str, &str)]) {
    write_response(
        out,
        err.status,
        "application/json",
        &error_body(err),
        false,
        extra_headers,
    );
}

/// The refusal of a connection over a count bound (`setting` at `max`): 503 with
/// `Retry-After: 1`, since a slot frees as soon as another client leaves.
pub fn limit_refusal(code: &'static str, setting: &str, max: usize) -> Vec<u8> {
    let e = HttpError::new(503, code, format!("{setting} ({max}) reached"));
    let mut out = Vec::new();
    refusal(&mut out, &e, &[("Retry-After", "1")]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_framing_and_flags() {
        let req = b"POST /ingest?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: Application/JSON; charset=utf-8\r\nExpect: 100-continue\r\n\r\nhello";
        let (h, n) = parse_head(req, 8192).unwrap().unwrap();
        assert_eq!(&req[n..], b"hello");
        assert_eq!(h.method, Method::Post);
        assert_eq!((h.path.as_str(), h.query.as_str()), ("/ingest", "x=1"));
        assert_eq!(h.body, BodyKind::Length(5));
        assert!(h.keep_alive && h.expect_continue);
        assert_eq!(h.content_type.as_deref(), Some("application/json"));
        let (h, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert!(
            parse_head(b"GET / HTTP/1.1\r\nHost:", 8192)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn refusal_is_the_error_then_close() {
        let e = HttpError::new(503, "too_many_connections", "connections_max (1) reached");
        let mut out = Vec::new();
        refusal(&mut out, &e, &[("Retry-After", "1")]);
        let body = error_body(&e);
        let mut want = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n",
            body.len()
        )
        .into_bytes();
        want.extend_from_slice(&body);
        assert_eq!(out, want);
    }

    #[test]
    fn refuses_smuggling_and_oversized_heads() {
        let both = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(both, 8192).unwrap_err().status, 400);
        let dup = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(parse_head(dup, 8192).unwrap_err().status, 400);
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 200]].concat();
        assert_eq!(parse_head(&big, 100).unwrap_err().status, 431);
        assert_eq!(
            parse_head(b"\x01\x02 nonsense\r\n\r\n", 8192)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn gzip_bodies_decode_within_their_bound() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[b'a'; 1000]).unwrap();
        let packed = gz.finish().unwrap();
        assert_eq!(
            decode_body(Some("gzip"), packed.clone(), 1000).unwrap(),
            [b'a'; 1000]
        );
        assert_eq!(
            decode_body(Some("gzip"), packed, 999).unwrap_err().status,
            413
        );
        assert_eq!(
            decode_body(Some("gzip"), b"plain".to_vec(), 99)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            decode_body(Some("br"), Vec::new(), 99).unwrap_err().status,
            415
        );
        assert_eq!(decode_body(None, b"x".to_vec(), 0).unwrap(), b"x");
    }

    #[test]
    fn chunked_decodes_in_pieces_and_bounds_the_body() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut d = ChunkedDecoder::default();
            let mut out = vec![];
            let mut buf = body[..split].to_vec();
            let n = d.decode(&buf, &mut out, 100).unwrap();
            buf.drain(..n);
            buf.extend_from_slice(&body[split..]);
            let n = d.decode(&buf, &mut out, 100).unwrap();
            assert!(d.is_done());
            assert_eq!(out, b"hello world");
            assert_eq!(&buf[n..], b"NEXT");
        }
        let mut d = ChunkedDecoder::default();
        assert_eq!(
            d.decode(b"ff\r\n", &mut vec![], 100).unwrap_err().status,
            413
        );
        let mut d = ChunkedDecoder::default();
        assert_eq!(
            d.decode(b"zz\r\n", &mut vec![], 100).unwrap_err().status,
            400
        );
        let mut d = ChunkedDecoder::default();
        assert_eq!(
            d.decode(b"+a\r\n", &mut vec![], 100).unwrap_err().status,
            400
        );
        let mut d = ChunkedDecoder::default();
        let many = [b"0\r\n".as_slice(), &b"X: y\r\n".repeat(1000)].concat();
        assert_eq!(d.decode(&many, &mut vec![], 100).unwrap_err().status, 400);
        let plus = b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n";
        assert_eq!(parse_head(plus, 8192).unwrap_err().status, 400);
    }

    /// Decodes `body` fed `step` bytes at a time, keeping what was not consumed.
    fn decode_in_steps(body: &[u8], step: usize) -> Result<Vec<u8>, HttpError> {
        let (mut d, mut out, mut buf) = (ChunkedDecoder::default(), vec![], vec![]);
        for piece in body.chunks(step) {
            buf.extend_from_slice(piece);
            let n = d.decode(&buf, &mut out, 1 << 20)?;
            buf.drain(..n);
        }
        Ok(out)
    }

    #[test]
    fn an_overlong_line_gets_one_refusal_however_it_is_split() {
        // Found by the `http_head` fuzz target: a size line or trailers over the bound
        // were refused with one reason when they came whole and another when they came
        // in pieces (fuzz/regressions/http_head/).
        let long = |n: usize| {
            let mut b = b"1".to_vec();
            b.extend(std::iter::repeat_n(b'0', n - 1));
            b
        };
        for n in [
            CHUNK_LINE_MAX - 1,
            CHUNK_LINE_MAX,
            CHUNK_LINE_MAX + 1,
            CHUNK_LINE_MAX + 2,
        ] {
            let size_line = [long(n).as_slice(), b"\r\n"].concat();
            let trailer = [b"0\r\nX: ".as_slice(), &vec![b'y'; n - 5], b"\r\n\r\n"].concat();
            for (what, input) in [("size line", size_line), ("trailer", trailer)] {
                let whole = decode_in_steps(&input, input.len());
                for step in [1, 7, 4096] {
                    assert_eq!(
                        decode_in_steps(&input, step),
                        whole,
                        "{what} of {n}, step {step}"
                    );
                }
            }
        }
        let body = [long(CHUNK_LINE_MAX + 1).as_slice(), b"\r\n"].concat();
        assert_eq!(
            decode_in_steps(&body, 1).unwrap_err().detail,
            "chunk size line too long"
        );
    }

    #[test]
    fn a_chunk_size_that_would_wrap_past_the_bound_is_refused() {
        // After a 3-byte chunk, a size of 2^64 - 2: body length + size wraps to 1.
        let body = b"3\r\nabc\r\nfffffffffffffffe\r\nxyz";
        let mut d = ChunkedDecoder::default();
        let e = d.decode(body, &mut vec![], 100).unwrap_err();
        assert_eq!(e.status, 413);
    }
}
