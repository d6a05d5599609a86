//! The receiving side of a connection: reading into its fixed receive buffer and
//! turning what the server sends into completions, per protocol: HTTP responses
//! (one per request, in order) or ringstash's lines (cumulative `ack`, per-record
//! `error <line_no> <code>`, connection `error - <code>`).

use std::io::{self, Read};

use mio::Poll;

use super::{
    Completion, Conn, State,
    conn::error_kind,
    worker::{BAD_LINES_SHOWN_MAX, Worker},
};
use crate::proto::{
    HttpResponse, ServerLine, json_str_field, json_u64_field, parse_http_response,
    parse_server_line,
};
use crate::tls::read_plain;

impl Worker<'_> {
    /// Reads everything available and processes acks or responses.
    pub(super) fn on_readable(&mut self, c: &mut Conn, poll: &Poll, now: u64) {
        loop {
            let Some(sock) = c.sock.as_mut() else { return };
            if c.rbuf.is_full() {
                self.drop_socket(c, poll, now, Some("response_too_large"));
                return;
            }
            let read = match c.tls.as_deref_mut() {
                None => sock.read(c.rbuf.spare()),
                // Plaintext out of rustls, fed from the socket as needed; the same
                // three outcomes as a plain read (bytes, end, would block).
                Some(tls) => read_plain(tls, sock, c.rbuf.spare()),
            };
            match read {
                Ok(0) => {
                    self.process_input(c, poll, now);
                    let expected = matches!(c.state, State::Closing { .. }) || c.server_closing;
                    if matches!(c.state, State::Closing { .. }) {
                        // Everything was completed before we half-closed.
                        self.drop_socket(c, poll, now, None);
                        c.state = State::Done;
                    } else {
                        self.drop_socket(c, poll, now, (!expected).then_some("connection_closed"));
                    }
                    return;
                }
                Ok(n) => {
                    c.rbuf.filled(n);
                    if !self.process_input(c, poll, now) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if crate::tls::is_tls_error(&e) {
                        self.show_tls_error(c.index, "read", &e);
                    }
                    let closing = matches!(c.state, State::Closing { .. });
                    self.drop_socket(c, poll, now, (!closing).then(|| error_kind(&e)));
                    if closing {
                        c.state = State::Done;
                    }
                    return;
                }
            }
        }
    }

    /// Handles complete lines or responses in the receive buffer. Returns false if
    /// the connection was dropped.
    fn process_input(&mut self, c: &mut Conn, poll: &Poll, now: u64) -> bool {
        if self.cfg.mode.is_http() {
            self.process_responses(c, poll, now)
        } else {
            self.process_lines(c, now);
            true
        }
    }

    /// HTTP: completes the oldest batch for each whole response. Returns false if
    /// the connection was dropped (bad or unexpected response, `Connection: close`).
    fn process_responses(&mut self, c: &mut Conn, poll: &Poll, now: u64) -> bool {
        loop {
            match parse_http_response(c.rbuf.data()) {
                Ok(None) => return true,
                Err(_) => {
                    // The stream cannot be resynchronised: drop it, reconnect.
                    self.drop_socket(c, poll, now, Some("bad_http_response"));
                    return false;
                }
                Ok(Some(resp)) => {
                    let Some(front) = c.pending.front().copied() else {
                        self.drop_socket(c, poll, now, Some("unexpected_response"));
                        return false;
                    };
                    let ok =
                        self.response_ok(&resp, &c.rbuf.data()[resp.body.clone()], front.records);
                    self.complete_front(c, now, ok);
                    c.rbuf.consume(resp.len);
                    if resp.close {
                        self.drop_socket(c, poll, now, None);
                        return false;
                    }
                }
            }
        }
    }

    /// Whether `resp` (with `body`) completes a batch of `records` successfully; an
    /// error status or a `count` other than `records` is counted by kind.
    fn response_ok(&mut self, resp: &HttpResponse, body: &[u8], records: u32) -> bool {
        if (200..300).contains(&resp.status) {
            return match json_u64_field(body, "count") {
                Some(n) if n != u64::from(records) => {
                    self.err("count_mismatch");
                    false
                }
                _ => true,
            };
        }
        // Error path: the kind string is allocated here only.
        let kind = match json_str_field(body, "error") {
            Some(code) => format!("http_{}_{}", resp.status, String::from_utf8_lossy(code)),
            None => format!("http_{}", resp.status),
        };
        self.err(&kind);
        false
    }

    /// TCP: handles every whole line from the server (acks complete batches in
    /// `Ack` mode; refusals are counted against their batch).
    fn process_lines(&mut self, c: &mut Conn, now: u64) {
        loop {
            let data = c.rbuf.data();
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                return;
            };
            match parse_server_line(&data[..nl]) {
                ServerLine::Ack { count, .. } => {
                    c.sock_acked = c.sock_acked.max(count);
                    if self.completion == Completion::Ack {
                        while c
                            .pending
                            .front()
                            .is_some_and(|p| p.rec_end <= c.sock_acked + c.sock_refused)
                        {
                            self.complete_front(c, now, true);
                        }
                    }
                }
                ServerLine::RecordError { line_no, code } => {
                    c.sock_refused += 1;
                    // Line numbers count this socket's lines from 1, as our records.
                    if let Some(p) = c.pending.iter_mut().find(|p| {
                        line_no <= p.rec_end && line_no > p.rec_end - u64::from(p.records)
                    }) {
                        p.refused += 1;
                    }
                    let kind = String::from_utf8_lossy(code).into_owned();
                    self.err(&kind);
                }
                ServerLine::ConnError { code } => {
                    c.server_closing = true;
                    let kind = String::from_utf8_lossy(code).into_owned();
                    self.err(&kind);
                }
                ServerLine::Unknown(line) => self.unknown_line(c.token.0, line),
            }
            c.rbuf.consume(nl + 1);
        }
    }

    /// A line that is neither an ack nor an error.
    fn unknown_line(&mut self, conn: usize, line: &[u8]) {
        // Receivers other than ringstash may say anything; only count it where acks
        // are expected, and show the first few on stderr (a count alone cannot tell a
        // server bug from a harness one).
        if self.completion == Completion::Ack {
            self.err("bad_ack_line");
            if self.bad_lines_shown < BAD_LINES_SHOWN_MAX {
                self.bad_lines_shown += 1;
                eprintln!(
                    "loadtest: connection {conn}: unexpected line from the server ({} bytes): {:?}",
                    line.len(),
                    String::from_utf8_lossy(&line[..line.len().min(160)])
                );
            }
        }
    }
}
