//! `ws_handshake`: a WebSocket upgrade request through tungstenite's server handshake
//! with the checks of the fan-out's upgrade callback, then the client's frames read
//! with the fan-out's limits.
//!
//! The callback itself (`fanout::handshake::Upgrade`) needs a live log (its cursor is
//! the log's committed end or start) and the token set; what it checks without them is
//! reached through `ringstash::fanout::fuzzing` and the public parsers it calls, in
//! its order. Tokens are not checked here (`auth` has its own tests).

use std::io::{self, Read, Write};

use base64::{
    Engine, alphabet,
    engine::{GeneralPurpose, GeneralPurposeConfig},
};
use ringstash::{
    auth,
    fanout::fuzzing,
    query::{self, filter},
};
use tungstenite::{
    Message,
    handshake::server::{ErrorResponse, Request, Response},
    protocol::WebSocketConfig,
};

/// `http_header_bytes_max` and `ws_message_bytes_max` as small as the settings allow,
/// so that fuzz inputs reach them; `filter_bytes_max` at its default.
const HEADER_BYTES_MAX: usize = 1024;
const MESSAGE_BYTES_MAX: usize = 125;
const FILTER_BYTES_MAX: usize = 1024;

/// A connection in memory: reads the fuzz input, then `WouldBlock` (as the fan-out's
/// non-blocking sockets do); writes are kept and dropped.
struct Mem<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl Read for Mem<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Mem<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// No parameters: the whole input is the connection's bytes, the upgrade request and
/// then the client's frames.
///
/// Asserts: a key the check accepts is the base64 of 16 bytes; the query left for the
/// filter parser holds no `access_token`, and a stream query never carries a `limit`;
/// after an upgrade, no message read is over `ws_message_bytes_max`.
pub fn ws_handshake(data: &[u8]) {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(MESSAGE_BYTES_MAX))
        .max_frame_size(Some(MESSAGE_BYTES_MAX));
    let stream = Mem {
        input: data,
        output: Vec::new(),
    };
    let Ok(mut ws) = tungstenite::accept_hdr_with_config(stream, upgrade, Some(config)) else {
        return;
    };
    for _ in 0..64 {
        match ws.read() {
            Ok(m) => {
                let len = match &m {
                    Message::Text(t) => t.len(),
                    Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
                    Message::Close(_) | Message::Frame(_) => 0,
                };
                assert!(
                    len <= MESSAGE_BYTES_MAX,
                    "message over ws_message_bytes_max"
                );
            }
            Err(_) => return,
        }
    }
}

/// The fan-out's upgrade checks, in its order (`fanout::handshake::Upgrade`).
#[allow(clippy::result_large_err)] // tungstenite's callback type
fn upgrade(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    let refuse = |status: u16| {
        Err(tungstenite::http::Response::builder()
            .status(status)
            .body(None)
            .expect("valid response"))
    };
    if fuzzing::head_bytes(req) > HEADER_BYTES_MAX {
        return refuse(431);
    }
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|k| k.to_str().ok());
    match key {
        Some(k) if fuzzing::key_well_formed(k) => {
            // Lenient about the last character's unused bits, as the check is: the
            // server only hashes the key.
            let lenient = GeneralPurpose::new(
                &alphabet::STANDARD,
                GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
            );
            let raw = lenient.decode(k).expect("an accepted key is base64");
            assert_eq!(raw.len(), 16, "an accepted key is not 16 bytes");
        }
        _ => return refuse(400),
    }
    if req.uri().path() != query::STREAM_PATH {
        return refuse(404);
    }
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    if !filter::origin_allowed("", header("origin"), header("host")) {
        return refuse(403);
    }
    let Ok((_token, rest)) = auth::take_access_token(req.uri().query().unwrap_or("")) else {
        return refuse(400);
    };
    assert!(rest.split('&').all(|p| !p.starts_with("access_token=")));
    match filter::parse(&rest, false, 0, FILTER_BYTES_MAX) {
        Ok(q) => assert!(q.limit.is_none(), "a stream query took a limit"),
        Err(_) => return refuse(400),
    }
    Ok(resp)
}
