//! The sending side of a connection: when its next batch is due (closed loop: as
//! soon as an in-flight slot is free; open loop: from the [`Schedule`]), how a batch
//! is framed for the protocol (newline-delimited lines, tagged lines for `ws-e2e`,
//! an HTTP request), and writing the buffer out.
//!
//! [`Schedule`]: crate::pace::Schedule

use std::{
    io::{self, Write},
    ops::ControlFlow,
};

use mio::Poll;

use super::{
    Completion, Conn, LogsBody, Mode, Pending, State, WBUF_BYTES_SOFT_MAX, conn::error_kind,
    worker::Worker,
};
use crate::tls::{Sealed, write_sealed};

/// Rounds of build-and-write one connection gets per poll-loop pass, so that one
/// fast connection cannot starve the others.
const SEND_ROUNDS_MAX: usize = 16;

impl Worker<'_> {
    /// Builds and writes until the socket or the in-flight window is full, at most
    /// [`SEND_ROUNDS_MAX`] rounds. `Continue(wake)`: when the next batch is due (or
    /// `Some(now)` if there is more to do right away); `Break(Some(now))`: the
    /// connection broke.
    pub(super) fn send_rounds(
        &mut self,
        c: &mut Conn,
        poll: &Poll,
        now: u64,
    ) -> ControlFlow<Option<u64>, Option<u64>> {
        let mut wake = None;
        for round in 0..SEND_ROUNDS_MAX {
            let built = if c.state == State::Sending {
                self.build_due(c, now, &mut wake)
            } else {
                0
            };
            let pending_before = c.pending.len();
            if !self.flush(c, poll, now) {
                return ControlFlow::Break(Some(now));
            }
            // Go round again if this round built something, or if the write completed
            // batches (fire and forget) and so freed in-flight slots.
            let freed = c.pending.len() < pending_before;
            if (built == 0 && !freed) || !c.writable {
                break;
            }
            if round == SEND_ROUNDS_MAX - 1 {
                // More to do: come back right after polling the other sockets.
                wake = Some(now);
            }
        }
        ControlFlow::Continue(wake)
    }

    /// Builds every batch that is due while the in-flight window and the write
    /// buffer have room; moves the connection to draining when it has nothing more
    /// to send. Sets `wake` to when the next batch is due (or sending ends, in
    /// closed loop). Returns the batches built.
    fn build_due(&mut self, c: &mut Conn, now: u64, wake: &mut Option<u64>) -> usize {
        let mut built = 0;
        loop {
            let Some(intended) = self.next_intended(c, now) else {
                c.state = State::Draining {
                    deadline: now + self.cfg.drain_timeout.as_nanos() as u64,
                };
                break;
            };
            if c.pending.len() >= self.cfg.inflight || c.wbuf.len() - c.wpos >= WBUF_BYTES_SOFT_MAX
            {
                break;
            }
            if intended > now {
                *wake = Some(intended);
                break;
            }
            self.build_batch(c, intended, now);
            built += 1;
        }
        if let (None, Some(end)) = (c.sched, self.times.send_end) {
            *wake = Some(wake.map_or(end, |w: u64| w.min(end)));
        }
        built
    }

    /// The intended time of the connection's next batch, or `None` if it has
    /// nothing more to send.
    fn next_intended(&self, c: &Conn, now: u64) -> Option<u64> {
        let t = match &c.sched {
            Some(s) => s.intended_ns(c.batch_no),
            None => now,
        };
        let measured = t >= self.times.measure;
        if measured && c.quota == Some(0) {
            return None;
        }
        if self.times.send_end.is_some_and(|end| t >= end) {
            return None;
        }
        Some(t)
    }

    /// Appends one batch to the write buffer and queues its [`Pending`].
    fn build_batch(&mut self, c: &mut Conn, intended: u64, now: u64) {
        let measured = intended >= self.times.measure;
        let mut n = self.cfg.batch_records as u64;
        if measured && let Some(q) = c.quota.as_mut() {
            n = n.min(*q);
            *q -= n;
        }
        let n = n as usize;
        let before = c.wbuf.len();
        let bytes = if self.cfg.mode.is_http() {
            self.append_http_request(c, n)
        } else if let Some(e2e) = &self.cfg.e2e {
            let id0 = e2e.publish(c.index, c.e2e_seq, n as u64, intended, now, measured);
            c.e2e_seq += n as u64;
            self.corpus
                .append_lines_tagged(&mut c.cursor, n, id0, &mut c.wbuf)
        } else {
            self.corpus.append_lines(&mut c.cursor, n, &mut c.wbuf)
        };
        c.sock_records += n as u64;
        c.sock_queued += (c.wbuf.len() - before) as u64;
        c.batch_no += 1;
        self.stats.sent_records_total += n as u64;
        if measured {
            self.series.sent(now, n as u64, &mut self.stats.latency_us);
        }
        c.pending.push_back(Pending {
            intended_ns: intended,
            sent_ns: now,
            records: n as u32,
            bytes: bytes as u32,
            rec_end: c.sock_records,
            byte_end: c.sock_queued,
            measured,
            refused: 0,
        });
    }

    /// Appends one HTTP request of `n` records to the write buffer: the head up to
    /// `Content-Length`, the length, and the body (lines, or a JSON array for
    /// `http-logs --body json-array`). Returns the record bytes (`\n` included).
    fn append_http_request(&mut self, c: &mut Conn, n: usize) -> usize {
        let array = self.cfg.mode == Mode::HttpLogs && self.cfg.logs_body == LogsBody::JsonArray;
        let lines = self.corpus.lines_len(c.cursor, n);
        let body_len = if array {
            // Each record loses its `\n`; commas between them; brackets around.
            lines - n + n.saturating_sub(1) + 2
        } else {
            lines
        };
        c.wbuf.extend_from_slice(&c.http_head);
        let _ = write!(c.wbuf, "{body_len}\r\n\r\n");
        let appended = if array {
            self.corpus.append_json_array(&mut c.cursor, n, &mut c.wbuf)
        } else {
            self.corpus.append_lines(&mut c.cursor, n, &mut c.wbuf)
        };
        debug_assert_eq!(appended, body_len);
        lines
    }

    /// Writes what the socket takes (over TLS: what rustls takes, and its ciphertext
    /// while the socket takes it). Returns false if the connection broke.
    pub(super) fn flush(&mut self, c: &mut Conn, poll: &Poll, now: u64) -> bool {
        let Some(sock) = c.sock.as_mut() else {
            return false;
        };
        if let Some(tls) = c.tls.as_deref_mut() {
            let sealed = Sealed {
                buf: &c.wbuf,
                pos: &mut c.wpos,
                writable: &mut c.writable,
                taken: &mut c.sock_sealed,
                written: &mut c.sock_written,
            };
            if let Err(e) = write_sealed(tls, sock, sealed) {
                let kind = if e.kind() == io::ErrorKind::WriteZero {
                    "write_zero"
                } else {
                    error_kind(&e)
                };
                self.drop_socket(c, poll, now, Some(kind));
                return false;
            }
        } else {
            while c.writable && c.wpos < c.wbuf.len() {
                match sock.write(&c.wbuf[c.wpos..]) {
                    Ok(0) => {
                        self.drop_socket(c, poll, now, Some("write_zero"));
                        return false;
                    }
                    Ok(n) => {
                        c.wpos += n;
                        c.sock_written += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.drop_socket(c, poll, now, Some(error_kind(&e)));
                        return false;
                    }
                }
            }
        }
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
        }
        if self.completion == Completion::Written {
            while c
                .pending
                .front()
                .is_some_and(|p| p.byte_end <= c.sock_written)
            {
                self.complete_front(c, now, true);
            }
        }
        true
    }
}
