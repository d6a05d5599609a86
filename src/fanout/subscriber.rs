//! One subscriber: a cursor into the log and its connection's state machine.
//!
//! ```text
//!   accepted ──handshake done──▶ Open ──begin_close──▶ Closing ──written, or deadline──▶ dropped
//!      │                          │                       ▲
//!      └──refused, failed, or ────┴──socket failed────────┘ (dropped at once)
//!         ws_handshake_timeout_ms
//! ```
//!
//! On a `wss://` listener the TLS handshake runs inside `Handshake`, under the HTTP
//! upgrade: the [`Transport`] decrypts, and tungstenite waits for the request as it
//! waits for a slow client. Until TLS is done only `tls_handshake_timeout_ms`
//! applies, since nothing can be said to the peer in HTTP before it; a first byte
//! that is not TLS is refused in plain text ([`Ready::Plaintext`]).
//!
//! The transitions live here; the event loop ([`super::Fanout`]) owns the slots, the
//! registrations and the windows, and decides what to send next
//! ([`super::source`]). Nothing here reads the log.

use std::{
    io::{self, Write},
    rc::Rc,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use mio::net::TcpStream;
use tungstenite::{
    Message, WebSocket,
    handshake::{HandshakeError, MidHandshake, server::ServerHandshake},
    protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode},
};

use super::{
    FanoutCtx, STREAM_PATH,
    handshake::{Asked, Upgrade},
    query::{Encoding, Filter},
    transport::{Opening, Transport},
    window::Built,
    wire::{Incoming, Violation, flush, read_incoming},
};
use crate::{
    error::ReadError,
    http_proto::{self, HttpError},
    stats::FanoutStats,
    wal::Reader,
};

/// Where a subscriber's connection stands.
pub(super) enum State {
    Handshake {
        mid: Box<MidHandshake<ServerHandshake<Transport, Upgrade>>>,
        asked: Asked,
    },
    Open(Box<WebSocket<Transport>>),
    /// A close frame is queued; the connection is dropped once it is written and the
    /// peer answered, or at the deadline.
    Closing(Box<WebSocket<Transport>>, Instant),
    /// Transient, while a state is being replaced.
    Gone,
}

/// A partition a merged subscription follows while another is its current one: where
/// it stands there.
pub(super) struct Lane {
    /// The partition: its index in [`crate::streams::StreamViews::all`].
    pub(super) part: usize,
    /// Its number, named in the JSON messages read from it.
    pub(super) tag: Option<u32>,
    /// Offset of its next record to consider.
    pub(super) cursor: u64,
    /// Its own reader, kept between turns so that it is not reopened.
    pub(super) reader: Option<Reader>,
}

/// What the handshake asked for: the partitions followed (the first one current), the
/// filter and the encoding.
pub(super) struct Subscription {
    pub(super) lanes: Vec<Lane>,
    pub(super) filter: Filter,
    pub(super) encoding: Encoding,
}

/// One subscriber: a cursor into a partition's log and its connection. A merged
/// subscription follows several partitions: `cursor`, `reader`, `part` and `tag`
/// are those of the one it reads now, the others wait in `others`, and they take
/// turns message by message ([`Sub::rotate`]).
pub(super) struct Sub {
    /// The socket: registered with the loop, and kept after a refusal to linger.
    pub(super) stream: Rc<TcpStream>,
    /// The byte stream over it (the socket, or TLS), for what is written outside the
    /// WebSocket: refusals, close_notify.
    transport: Transport,
    state: State,
    /// When the connection was accepted (bounds the handshake).
    accepted: Instant,
    /// Offset of the next record to consider, in partition `part`.
    pub(super) cursor: u64,
    /// The partition read now: its index in [`crate::streams::StreamViews::all`]; 0
    /// is the default stream's partition 0, the one the shared windows follow.
    pub(super) part: usize,
    /// The partition number its JSON messages name; `None` for the default stream's
    /// partition 0 (its messages stay as they were before streams).
    pub(super) tag: Option<u32>,
    /// The other partitions of a merged subscription; empty otherwise.
    pub(super) others: std::collections::VecDeque<Lane>,
    pub(super) filter: Filter,
    pub(super) encoding: Encoding,
    /// The subscriber's own reader, while its cursor is below the window (JSON), or
    /// always (binary).
    pub(super) reader: Option<Reader>,
    /// Since when the socket has refused bytes of the last message; `None` when
    /// everything queued was handed to the kernel.
    pub(super) blocked_since: Option<Instant>,
}

impl Sub {
    /// True once a subscription with `until` has had every record in its range, in
    /// every partition it follows: its reader there passed a record received after
    /// `until` + `time_skew_ms_max`, or its cursor reached the committed end
    /// (`ends[part]`, read after the clock said `clock_ns`) past that moment (records
    /// committed later were received later, within the skew bound: the writer counts
    /// any written later than that after their receive time,
    /// `time_skew_exceeded_total`).
    pub(super) fn until_reached(&self, ends: &[u64], clock_ns: u64) -> bool {
        let Some(stop) = self.filter.until_stop_ns() else {
            return false;
        };
        let done = |reader: &Option<Reader>, cursor: u64, part: usize| {
            reader.as_ref().is_some_and(|r| r.ts_max_seen() > stop)
                || cursor >= ends[part] && clock_ns > stop
        };
        self.blocked_since.is_none()
            && done(&self.reader, self.cursor, self.part)
            && self
                .others
                .iter()
                .all(|l| done(&l.reader, l.cursor, l.part))
    }

    /// True if the shared windows may serve it: a subscription to the default
    /// stream's partition 0 alone. Any other reads with its own reader.
    pub(super) fn shares_windows(&self) -> bool {
        self.part == 0 && self.others.is_empty()
    }

    /// Every partition it follows (now or in a later turn), with its cursor there.
    pub(super) fn cursors(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        std::iter::once((self.part, self.cursor))
            .chain(self.others.iter().map(|l| (l.part, l.cursor)))
    }

    /// A merged subscription's next partition becomes the current one; the current
    /// one waits behind the others. Nothing for a single partition.
    pub(super) fn rotate(&mut self) {
        let Some(next) = self.others.pop_front() else {
            return;
        };
        let parked = Lane {
            part: std::mem::replace(&mut self.part, next.part),
            tag: std::mem::replace(&mut self.tag, next.tag),
            cursor: std::mem::replace(&mut self.cursor, next.cursor),
            reader: std::mem::replace(&mut self.reader, next.reader),
        };
        self.others.push_back(parked);
    }

    /// The number of partitions it follows.
    pub(super) fn lanes(&self) -> usize {
        1 + self.others.len()
    }
}

/// Why a subscriber cannot be sent any more.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// The connection failed or is finished: it is dropped, with no close frame.
    #[error("the subscriber's connection failed")]
    Connection,
    /// Its records could not be read: it is closed with 1011.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// What readiness did to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ready {
    Keep,
    /// Input may be left unread (by the per-turn bound, or by a handshake, which stops
    /// reading at the end of the request): call again (mio is edge-triggered and will
    /// not signal it again).
    MoreInput,
    /// It broke the protocol or sent a message over `ws_message_bytes_max`: close it
    /// with the violation's code.
    Violation(Violation),
    /// Refused, failed or finished: remove it.
    Drop,
    /// It spoke plain text to a TLS listener: refuse it in plain text.
    Plaintext,
}

/// What one built message did to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// A message was queued; it carried this many records.
    Message(u64),
    /// No record passed the filter; the cursor moved on.
    Skipped,
    /// Nothing readable yet; the cursor stayed.
    Nothing,
}

/// What a subscriber's timers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    Nothing,
    /// Its close took too long: drop it.
    Drop,
    /// Its upgrade request was not complete within `ws_handshake_timeout_ms`: answer
    /// 408 and close.
    HandshakeTimeout,
    /// Its TLS handshake was not complete within `tls_handshake_timeout_ms`: close
    /// (there is no HTTP to answer in yet).
    TlsHandshakeTimeout,
    /// Its socket stayed unwritable past `subscriber_stall_ms_max`: close it (4008).
    Stalled,
}

/// The time limits [`Sub::due`] checks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) handshake: Duration,
    /// The TLS handshake's part of it (from the accept too), on a `wss://` listener.
    pub(super) tls_handshake: Duration,
    pub(super) stall: Duration,
}

impl Sub {
    /// A subscriber whose handshake starts on `stream`, through `transport` (over the
    /// same socket).
    pub(super) fn accept(
        stream: Rc<TcpStream>,
        transport: Transport,
        ctx: &Arc<FanoutCtx>,
        ws_config: WebSocketConfig,
    ) -> Self {
        let (upgrade, asked) = Upgrade::new(ctx);
        let mid = ServerHandshake::start(transport.clone(), upgrade, Some(ws_config));
        Sub {
            stream,
            transport,
            state: State::Handshake {
                mid: Box::new(mid),
                asked,
            },
            accepted: Instant::now(),
            cursor: 0,
            part: 0,
            tag: None,
            others: std::collections::VecDeque::new(),
            filter: Filter::default(),
            encoding: Encoding::Json,
            reader: None,
            blocked_since: None,
        }
    }

    /// True once the handshake is done and until a close begins: the subscriber is
    /// sent records.
    pub(super) fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Readiness: progress the handshake, read what the peer sent (pings, close),
    /// write what is queued.
    pub(super) fn on_ready(&mut self, stats: &FanoutStats) -> Ready {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Handshake { mid, asked } => self.handshake(*mid, asked, stats),
            State::Open(mut ws) => {
                let ready = self.exchange(&mut ws);
                self.state = State::Open(ws);
                ready
            }
            State::Closing(mut ws, deadline) => {
                // Being closed already: more bad input changes nothing, and the close
                // frame queued must not be cut short.
                let ready = match self.exchange(&mut ws) {
                    Ready::Violation(_) => Ready::Keep,
                    other => other,
                };
                self.state = State::Closing(ws, deadline);
                ready
            }
            State::Gone => Ready::Drop,
        }
    }

    fn exchange(&mut self, ws: &mut WebSocket<Transport>) -> Ready {
        let input = read_incoming(ws);
        if input == Incoming::Failed || !flush(ws, &mut self.blocked_since) {
            Ready::Drop
        } else {
            match input {
                Incoming::More => Ready::MoreInput,
                Incoming::Violation(v) => Ready::Violation(v),
                Incoming::Drained | Incoming::Failed => Ready::Keep,
            }
        }
    }

    fn handshake(
        &mut self,
        mid: MidHandshake<ServerHandshake<Transport, Upgrade>>,
        asked: Asked,
        stats: &FanoutStats,
    ) -> Ready {
        match self.transport.opening() {
            Opening::Proceed => {}
            Opening::Pending => {
                self.state = State::Handshake {
                    mid: Box::new(mid),
                    asked,
                };
                return Ready::Keep;
            }
            Opening::Plaintext => return Ready::Plaintext,
            Opening::Closed => return Ready::Drop,
        }
        match mid.handshake() {
            Ok(ws) => {
                let asked = asked.borrow_mut().take().expect("set by Upgrade");
                let mut lanes = asked.lanes.into_iter();
                let first = lanes.next().expect("a subscription follows a partition");
                self.cursor = first.cursor;
                self.part = first.part;
                self.tag = first.tag;
                self.reader = first.reader;
                self.others = lanes.collect();
                self.filter = asked.filter;
                self.encoding = asked.encoding;
                self.state = State::Open(Box::new(ws));
                stats.ws_subscribers_total.fetch_add(1, Ordering::Relaxed);
                // The handshake read up to the request's end: what came with it (the
                // peer's FIN, a frame sent early) was signalled with the request and
                // will not be again. Read it now, or a subscriber that half-closed at
                // once would stay open.
                Ready::MoreInput
            }
            Err(HandshakeError::Interrupted(mid)) => {
                self.state = State::Handshake {
                    mid: Box::new(mid),
                    asked,
                };
                Ready::Keep
            }
            // Our refusal (400/403/404) was written by the handshake.
            Err(HandshakeError::Failure(tungstenite::Error::Http(_))) => {
                self.transport.close_notify();
                Ready::Drop
            }
            // The TLS handshake failed (counted with the TLS counters): no HTTP to
            // answer in.
            Err(HandshakeError::Failure(_)) if self.transport.tls_handshaking() => Ready::Drop,
            Err(HandshakeError::Failure(e)) => {
                stats.ws_bad_requests_total.fetch_add(1, Ordering::Relaxed);
                if !matches!(
                    e,
                    tungstenite::Error::Io(_) | tungstenite::Error::ConnectionClosed
                ) {
                    self.refuse_upgrade(&e);
                }
                Ready::Drop
            }
        }
    }

    /// Its socket, once nothing else holds it (the handshake, the WebSocket, the TLS
    /// session): for a refused subscriber to linger on until its peer has read why. A
    /// TLS session is ended with close_notify first.
    pub(super) fn into_stream(self) -> Option<TcpStream> {
        let Sub {
            stream,
            transport,
            state,
            ..
        } = self;
        transport.close_notify();
        drop(state);
        drop(transport);
        Rc::try_unwrap(stream).ok()
    }

    /// Writes a refusal outside the WebSocket (a 400 or 408 before the upgrade): on
    /// the socket, or through TLS. Best effort: nothing else was written on this
    /// connection yet but the TLS handshake, so the socket's buffer takes a small
    /// response whole.
    pub(super) fn write_refusal(&self, out: &[u8]) {
        let _ = self.transport.clone().write(out);
    }

    /// Ends a TLS session with close_notify before the subscriber is dropped.
    pub(super) fn close_notify(&self) {
        self.transport.close_notify();
    }

    /// Counts a TLS handshake that did not finish within `tls_handshake_timeout_ms`.
    pub(super) fn tls_timed_out(&self) {
        self.transport.tls_timed_out();
    }

    /// Answers a request that is not a WebSocket upgrade at all with 400.
    fn refuse_upgrade(&self, e: &tungstenite::Error) {
        let err = HttpError::new(
            400,
            "bad_request",
            format!("not a valid WebSocket upgrade to {STREAM_PATH}: {e}"),
        );
        let mut out = Vec::new();
        http_proto::refusal(&mut out, &err, &[]);
        self.write_refusal(&out);
    }

    /// Queues `built` and hands what the socket takes to the kernel. The frame is
    /// queued even when the socket takes none of it (WouldBlock); `blocked_since` then
    /// says since when.
    ///
    /// # Errors
    /// [`SendError::Connection`] if the connection failed.
    pub(super) fn send(&mut self, built: Built) -> Result<Sent, SendError> {
        let State::Open(ws) = &mut self.state else {
            return Ok(Sent::Nothing);
        };
        let (msg, next, records) = match built {
            Built::Skipped(next) if next <= self.cursor => return Ok(Sent::Nothing),
            Built::Skipped(next) => {
                self.cursor = next;
                return Ok(Sent::Skipped);
            }
            Built::Message(m, next, records) => (Message::Text(m), next, records),
            Built::Frames(m, next, records) => (Message::Binary(m), next, records),
        };
        self.cursor = next;
        let queued = match ws.write(msg) {
            Ok(()) => true,
            Err(tungstenite::Error::Io(e)) => e.kind() == io::ErrorKind::WouldBlock,
            Err(_) => false,
        };
        if queued && flush(ws, &mut self.blocked_since) {
            Ok(Sent::Message(records))
        } else {
            Err(SendError::Connection)
        }
    }

    /// Queues a close frame and gives the peer until `grace` from now to take it.
    /// Returns false if the subscriber should be dropped at once (it was not open, or
    /// its socket failed).
    pub(super) fn begin_close(&mut self, code: u16, reason: &str, grace: Duration) -> bool {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Open(mut ws) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.to_owned().into(),
                };
                let _ = ws.close(Some(frame));
                self.blocked_since = None;
                let ok = flush(&mut ws, &mut self.blocked_since);
                self.state = State::Closing(ws, Instant::now() + grace);
                ok
            }
            other => {
                self.state = other;
                false
            }
        }
    }

    /// What the subscriber's timers say at `now`.
    pub(super) fn due(&self, now: Instant, limits: Limits) -> Due {
        match &self.state {
            State::Handshake { .. } if self.transport.tls_handshaking() => {
                if now - self.accepted > limits.tls_handshake {
                    Due::TlsHandshakeTimeout
                } else {
                    Due::Nothing
                }
            }
            State::Handshake { .. } if now - self.accepted > limits.handshake => {
                Due::HandshakeTimeout
            }
            State::Open(_) if self.blocked_since.is_some_and(|t| now - t > limits.stall) => {
                Due::Stalled
            }
            State::Closing(_, deadline) if now >= *deadline => Due::Drop,
            State::Gone => Due::Drop,
            _ => Due::Nothing,
        }
    }
}
