//! Closing subscribers, their stall timers, the gauges, and refused connections
//! lingering until they read their refusal.

use std::{
    io::{self, Read, Write},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use mio::{Events, net::TcpStream};

use crate::http_proto::{self, HttpError};

use super::{
    CLOSE_STALLED, FIRST_SUB, Fanout, REFUSED_LINGER, STREAM_PATH,
    frames::FrameWindow,
    subscriber::{Due, Sub},
    window::Window,
};

impl Fanout {
    /// Queues a close frame and gives the peer `ws_close_grace_ms` to take it.
    pub(super) fn begin_close(&mut self, i: usize, code: u16, reason: &str) {
        let Some(sub) = self.subs[i].as_mut() else {
            return;
        };
        let grace = Duration::from_millis(self.ctx.settings.ws_close_grace_ms);
        if !sub.begin_close(code, reason, grace) {
            self.remove(i);
        }
    }

    /// Closes subscriber `i` with `code` after input that cannot be parsed any further
    /// (tungstenite stops at a bad frame and would meet it again on every read, so
    /// the peer's answering close frame can never be read): the close frame, then a
    /// FIN, and the socket lingers like a refused one, its input discarded, until the
    /// peer closes. Closing without reading what the peer sent would reset the
    /// connection, which can destroy the close frame before the peer reads it. If the
    /// frame cannot be written at once, the ordinary close with its grace applies.
    pub(super) fn close_unreadable(&mut self, i: usize, code: u16, reason: &str) {
        self.begin_close(i, code, reason);
        let written = self.subs[i]
            .as_ref()
            .is_some_and(|s| s.blocked_since.is_none());
        if written && let Some(stream) = self.take(i).and_then(Sub::into_stream) {
            self.linger(stream);
        }
    }

    /// Stalled subscribers, slow handshakes, closes past their grace.
    pub(super) fn timers(&mut self) {
        let now = Instant::now();
        for i in 0..self.subs.len() {
            let Some(sub) = self.subs[i].as_ref() else {
                continue;
            };
            match sub.due(now, self.limits) {
                Due::Nothing => {}
                Due::Drop => self.remove(i),
                Due::HandshakeTimeout => {
                    self.ctx
                        .stats
                        .ws_handshake_timeouts_total
                        .fetch_add(1, Ordering::Relaxed);
                    let e = HttpError::new(
                        408,
                        "request_timeout",
                        format!(
                            "the upgrade request was not complete within ws_handshake_timeout_ms ({} ms)",
                            self.limits.handshake.as_millis()
                        ),
                    );
                    self.refuse_handshake(i, &e);
                }
                Due::TlsHandshakeTimeout => {
                    sub.tls_timed_out();
                    self.remove(i);
                }
                Due::Stalled => {
                    self.ctx
                        .stats
                        .ws_stalled_closed_total
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        cursor = sub.cursor,
                        "closing a subscriber that stalled past subscriber_stall_ms_max"
                    );
                    self.begin_close(i, CLOSE_STALLED, "stalled");
                }
            }
        }
    }

    pub(super) fn publish_gauges(&self) {
        let end = self.followers[0].committed_end();
        // Each subscriber's lag in each partition it follows (each its own offsets).
        let lag = self
            .subs
            .iter()
            .flatten()
            .filter(|s| s.is_open())
            .flat_map(Sub::cursors)
            .map(|(part, cursor)| self.followers[part].committed_end().saturating_sub(cursor))
            .max()
            .unwrap_or(0);
        let g = &self.ctx.gauges;
        g.ws_subscribers_open
            .store(self.open as u64, Ordering::Relaxed);
        g.ws_lag_records_max.store(lag, Ordering::Relaxed);
        g.fanout_window_bytes.store(
            (self.window.as_ref().map_or(0, Window::bytes)
                + self.binary.as_ref().map_or(0, FrameWindow::bytes)) as u64,
            Ordering::Relaxed,
        );
        g.fanout_window_start.store(
            self.window.as_ref().map_or(end, Window::start),
            Ordering::Relaxed,
        );
    }

    /// Answers subscriber `i`, whose handshake is unfinished, with `e`, closes it, and
    /// lets it linger until its peer has read why.
    pub(super) fn refuse_handshake(&mut self, i: usize, e: &HttpError) {
        let Some(sub) = self.take(i) else {
            return;
        };
        let mut out = Vec::new();
        http_proto::refusal(&mut out, e, &[]);
        sub.write_refusal(&out);
        if let Some(stream) = sub.into_stream() {
            self.linger(stream);
        }
    }

    /// Answers subscriber `i`, which sent plain text to the TLS listener (most likely
    /// a `ws://` URL for a `wss://` port), with a 400 in plain text saying so, and
    /// lets it linger until it has read it. Its request is left unread: it is
    /// drained while lingering.
    pub(super) fn refuse_plaintext(&mut self, i: usize) {
        let Some(sub) = self.take(i) else {
            return;
        };
        self.ctx
            .tls
            .as_ref()
            .expect("a plain-text refusal comes from a TLS listener")
            .stats
            .tls_plaintext_refused_total
            .fetch_add(1, Ordering::Relaxed);
        let e = HttpError::new(
            400,
            "tls_required",
            format!(
                "this port speaks TLS: subscribe with wss://, not ws:// (e.g. wss://<host>:<port>{STREAM_PATH})"
            ),
        );
        let mut out = Vec::new();
        http_proto::refusal(&mut out, &e, &[]);
        // Not through the TLS session, which has seen nothing: on the socket, in
        // plain text. Best effort: nothing was written on this socket yet.
        let _ = (&*sub.stream).write(&out);
        if let Some(stream) = sub.into_stream() {
            self.linger(stream);
        }
    }

    /// Keeps a refused connection (its refusal written) until the peer has read and
    /// closed, so the refusal is not lost to a reset.
    pub(super) fn linger(&mut self, stream: TcpStream) {
        if self.refused.len() >= self.ctx.settings.subscribers_max {
            return; // dropped: under a flood, a reset is the answer
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
        self.refused.push((stream, Instant::now() + REFUSED_LINGER));
    }

    /// Reads and discards what refused peers send; closes them at EOF or deadline.
    pub(super) fn drain_refused(&mut self) {
        let now = Instant::now();
        let mut buf = [0u8; 1024];
        self.refused.retain(|(s, deadline)| {
            if now >= *deadline {
                return false;
            }
            // At most 64 KiB per socket per turn, so a refused peer that sends faster
            // than we read cannot hold the fan-out thread; the rest waits a turn.
            for _ in 0..64 {
                match (&*s).read(&mut buf) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
            true
        });
    }

    /// Shutdown: close everyone with 1001 and give the close frames a moment.
    pub(super) fn close_all(&mut self) {
        for i in 0..self.subs.len() {
            self.begin_close(i, 1001, "server shutting down");
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut events = Events::with_capacity(256);
        while self.open > 0 && Instant::now() < deadline {
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(50)));
            let ready: Vec<usize> = events
                .iter()
                .filter_map(|e| e.token().0.checked_sub(FIRST_SUB))
                .collect();
            for i in ready {
                self.on_event(i);
            }
        }
    }
}
