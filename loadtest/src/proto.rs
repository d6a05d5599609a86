//! Parsing what servers send back, without allocating: ringstash's TCP ack lines
//! (`docs/protocol.md`) and HTTP/1.1 responses.

/// One line a ringstash TCP listener sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerLine<'a> {
    /// `ack <count> <last_offset>`: `count` of this connection's records are durable.
    Ack {
        /// Cumulative number of this connection's records that are durable.
        count: u64,
        /// Offset of the `count`-th record.
        last_offset: u64,
    },
    /// `error <line_no> <code> ...`: one record was refused; the connection goes on.
    RecordError {
        /// 1-based line number on this connection.
        line_no: u64,
        /// Error code, e.g. `record_too_large`.
        code: &'a [u8],
    },
    /// `error - <code> ...`: the server closes the connection.
    ConnError {
        /// Error code, e.g. `disk_full`.
        code: &'a [u8],
    },
    /// Anything else (kept so it can be counted, never trusted).
    Unknown(&'a [u8]),
}

/// Parses a decimal `u64`; `None` on anything else (empty, sign, overflow).
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Parses one line (without its `\n`; a trailing `\r` is tolerated).
pub fn parse_server_line(line: &[u8]) -> ServerLine<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut it = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    match it.next() {
        Some(b"ack") => match (
            it.next().and_then(parse_u64),
            it.next().and_then(parse_u64),
            it.next(),
        ) {
            (Some(count), Some(last_offset), None) => ServerLine::Ack { count, last_offset },
            _ => ServerLine::Unknown(line),
        },
        Some(b"error") => match (it.next(), it.next()) {
            (Some(b"-"), Some(code)) => ServerLine::ConnError { code },
            (Some(n), Some(code)) => match parse_u64(n) {
                Some(line_no) => ServerLine::RecordError { line_no, code },
                None => ServerLine::Unknown(line),
            },
            _ => ServerLine::Unknown(line),
        },
        _ => ServerLine::Unknown(line),
    }
}

/// A fixed-capacity receive buffer: read into the spare tail, consume from the front.
///
/// Allocated once per connection; [`ReadBuf::compact`] moves the unconsumed bytes
/// (a partial line or response) to the front so the buffer never grows.
#[derive(Debug)]
pub struct ReadBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// A buffer of `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        ReadBuf {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The bytes received and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` bytes at the front as consumed.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Moves unconsumed bytes to the front and returns the free tail to read into
    /// (empty when the buffer is full of one unfinished message).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && self.end == self.buf.len() {
            self.compact();
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`ReadBuf::spare`].
    pub fn filled(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.buf.len());
        self.end += n;
    }

    /// Moves the unconsumed bytes to the front.
    pub fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// True if no free space is left even after compaction.
    pub fn is_full(&self) -> bool {
        self.end - self.start == self.buf.len()
    }
}

/// A complete HTTP response at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Bytes of head and body: how much to consume.
    pub len: usize,
    /// Where the body is inside the buffer (empty for a chunked body, which is
    /// skipped, not decoded).
    pub body: std::ops::Range<usize>,
    /// The server said `Connection: close` (or spoke HTTP/1.0 without keep-alive).
    pub close: bool,
}

/// A response the harness cannot follow; the connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpParseError(pub &'static str);

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

/// Parses one HTTP/1.x response at the start of `buf`.
///
/// `Ok(None)` means more bytes are needed.
///
/// # Errors
/// A malformed status line, header or chunk size.
pub fn parse_http_response(buf: &[u8]) -> Result<Option<HttpResponse>, HttpParseError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            return Err(HttpParseError("not an HTTP response"));
        }
        return Ok(None);
    };
    let head = parse_head(&buf[..head_end])?;
    let (status, close) = (head.status, head.close);
    let body_start = head_end + 4;
    let no_body = status < 200 || status == 204 || status == 304;
    if head.chunked && !no_body {
        return Ok(chunked_end(buf, body_start)?.map(|len| HttpResponse {
            status,
            len,
            body: body_start..body_start,
            close,
        }));
    }
    let body_len = if no_body {
        0
    } else {
        head.content_length.unwrap_or(0)
    };
    if buf.len() < body_start + body_len {
        return Ok(None);
    }
    Ok(Some(HttpResponse {
        status,
        len: body_start + body_len,
        body: body_start..body_start + body_len,
        close,
    }))
}

/// What a response head says about the response.
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

/// Parses a response head (status line and headers, without the blank line).
fn parse_head(head: &[u8]) -> Result<Head, HttpParseError> {
    let mut lines = head.split(|&b| b == b'\n');
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with(b"HTTP/1.") {
        return Err(HttpParseError("not an HTTP/1.x status line"));
    }
    let status = parts
        .next()
        .and_then(parse_u64)
        .filter(|s| (100..1000).contains(s))
        .ok_or(HttpParseError("bad status code"))? as u16;
    let mut h = Head {
        status,
        content_length: None,
        chunked: false,
        close: version == b"HTTP/1.0",
    };
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(HttpParseError("header without colon"));
        };
        let name = &line[..colon];
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            h.content_length =
                Some(parse_u64(value).ok_or(HttpParseError("bad content-length"))? as usize);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            h.chunked = value
                .split(|&b| b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value.eq_ignore_ascii_case(b"close") {
                h.close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                h.close = false;
            }
        }
    }
    Ok(h)
}

/// Where a chunked body starting at `pos` ends (after its last chunk, trailers and
/// the empty line), or `None` if it is not all in `buf` yet. The chunks are skipped,
/// not decoded.
fn chunked_end(buf: &[u8], mut pos: usize) -> Result<Option<usize>, HttpParseError> {
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let size_field = &buf[pos..pos + eol];
        let size_hex = size_field
            .split(|&b| b == b';')
            .next()
            .map(trim)
            .unwrap_or_default();
        let size = std::str::from_utf8(size_hex)
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or(HttpParseError("bad chunk size"))?;
        pos += eol + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(eol) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

/// What follows the first `"key":` in a small JSON body, spaces after the colon
/// skipped; `None` if the key is missing or not followed by a colon. Found by
/// scanning (no JSON parser, no allocation), so only for flat bodies we know.
fn json_value_after<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let k = key.as_bytes();
    let mut i = 0;
    while let Some(p) = find(&body[i..], k) {
        let at = i + p;
        i = at + k.len();
        if at == 0 || body[at - 1] != b'"' || body.get(i) != Some(&b'"') {
            continue;
        }
        return Some(trim(trim(&body[i + 1..]).strip_prefix(b":")?));
    }
    None
}

/// The value of a top-level string field `"key":"value"` in a small JSON body,
/// found by scanning (no JSON parser, no allocation).
pub fn json_str_field<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let rest = json_value_after(body, key)?.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..end])
}

/// The value of a top-level unsigned number field `"key":123` in a small JSON body.
pub fn json_u64_field(body: &[u8], key: &str) -> Option<u64> {
    let rest = json_value_after(body, key)?;
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    parse_u64(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_lines() {
        assert_eq!(
            parse_server_line(b"ack 2 1"),
            ServerLine::Ack {
                count: 2,
                last_offset: 1
            }
        );
        assert_eq!(
            parse_server_line(b"ack 18446744073709551615 7\r"),
            ServerLine::Ack {
                count: u64::MAX,
                last_offset: 7
            }
        );
        assert_eq!(
            parse_server_line(b"error 3 record_too_large line of 2000000 bytes"),
            ServerLine::RecordError {
                line_no: 3,
                code: b"record_too_large"
            }
        );
        assert_eq!(
            parse_server_line(b"error - disk_full no space"),
            ServerLine::ConnError { code: b"disk_full" }
        );
        for bad in [
            &b"ack"[..],
            b"ack 1",
            b"ack 1 2 3",
            b"ack -1 2",
            b"ack 99999999999999999999 1",
            b"hello",
            b"",
            b"error x",
        ] {
            assert!(
                matches!(parse_server_line(bad), ServerLine::Unknown(_)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn read_buf_compacts() {
        let mut b = ReadBuf::new(8);
        b.spare()[..8].copy_from_slice(b"ack 1 0\n");
        b.filled(8);
        assert!(b.is_full());
        b.consume(4);
        assert_eq!(b.data(), b"1 0\n");
        assert_eq!(b.spare().len(), 4);
        assert_eq!(b.data(), b"1 0\n");
        b.consume(4);
        assert_eq!(b.spare().len(), 8);
    }

    #[test]
    fn http_content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 46\r\n\r\n{\"count\":2,\"first_offset\":10,\"last_offset\":11}HTTP/1.1";
        let resp = parse_http_response(r).unwrap().unwrap();
        assert_eq!(resp.status, 200);
        assert!(!resp.close);
        assert_eq!(resp.len, r.len() - 8);
        let body = &r[resp.body.clone()];
        assert_eq!(json_u64_field(body, "count"), Some(2));
        assert_eq!(json_u64_field(body, "last_offset"), Some(11));
        assert_eq!(parse_http_response(&r[..60]).unwrap(), None);
        assert_eq!(parse_http_response(&r[..resp.len - 1]).unwrap(), None);
    }

    #[test]
    fn http_chunked_and_close() {
        let r = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let resp = parse_http_response(r).unwrap().unwrap();
        assert_eq!((resp.status, resp.len, resp.close), (503, r.len(), true));
        assert_eq!(parse_http_response(&r[..r.len() - 2]).unwrap(), None);
        let r10 = b"HTTP/1.0 204 No Content\r\n\r\n";
        let resp = parse_http_response(r10).unwrap().unwrap();
        assert!(resp.close);
        assert!(parse_http_response(b"ack 1 0\n").is_err());
        assert!(parse_http_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[test]
    fn json_fields() {
        let b = br#"{"error":"ring_full","detail":"the ring stayed full"}"#;
        assert_eq!(json_str_field(b, "error"), Some(&b"ring_full"[..]));
        assert_eq!(
            json_str_field(b, "detail"),
            Some(&b"the ring stayed full"[..])
        );
        assert_eq!(json_str_field(b, "nope"), None);
        assert_eq!(json_u64_field(br#"{"count": 17 }"#, "count"), Some(17));
        assert_eq!(
            json_u64_field(br#"{"first_count":1,"count":0}"#, "count"),
            Some(0)
        );
    }
}
