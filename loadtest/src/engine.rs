//! The load engine: worker threads, each driving its share of the connections with
//! one `mio` poll loop, a `timerfd` for the open-loop schedule, and no allocation per
//! record.
//!
//! # How a batch lives
//!
//! A connection copies `batch_records` records out of the [`Corpus`] into its write
//! buffer (framed as an HTTP request for the HTTP modes), writes as much as the socket
//! takes in one `write`, and queues a [`Pending`] entry: its intended send time,
//! when it was handed to the socket, how many records, and where it ends on this
//! connection (record count and byte count). The batch *completes* when
//!
//! - `tcp`: its last byte was accepted by the kernel (fire and forget);
//! - `tcp-acked`: the server's cumulative `ack <count> <last_offset>` reaches it;
//! - `http-*`: its response arrives (responses come back in request order).
//!
//! Completion records `now - intended` (coordinated-omission corrected) and
//! `now - sent` (service time) in the worker's histograms.
//!
//! # Adding a mode
//!
//! A mode is a [`Mode`] variant plus a [`Completion`] rule.
//!
//! # End to end (`ws-e2e`)
//!
//! The engine sends tagged records over TCP exactly as `tcp-acked` (or `tcp`, with
//! [`EngineConfig::e2e_acked`] off) does, and its own completions measure the
//! producer. Before a batch goes to the socket, [`crate::e2e::E2eShared::publish`]
//! records its intended and actual send times; subscriber threads
//! ([`crate::e2e`]) complete it a second time, when its last record arrives over
//! the WebSocket, so that latency covers send → durable → fan-out → subscriber.

use std::{
    collections::VecDeque,
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream as StdTcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc, Barrier,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use mio::{Events, Interest, Poll, Token, net::TcpStream, unix::SourceFd};

use crate::{
    pace::Schedule,
    proto::{
        ReadBuf, ServerLine, json_str_field, json_u64_field, parse_http_response, parse_server_line,
    },
    stats::{Stats, record_ns},
    workload::Corpus,
};

/// What the harness talks to and what completes a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Raw TCP, newline-delimited, fire and forget: a batch completes when the kernel
    /// took its last byte. Works with any newline-TCP receiver (rsyslog, syslog-ng...).
    Tcp,
    /// Raw TCP with ringstash's cumulative acks: a batch completes when
    /// `ack <count> <last_offset>` covers it (it is durable).
    TcpAcked,
    /// HTTP `POST /ingest` (or `--path`), body = lines; completes on the response.
    HttpIngest,
    /// HTTP `POST /v1/logs` (or `--path`), body = JSON array or NDJSON of JSON records.
    HttpLogs,
    /// End-to-end: send tagged records over TCP (acked, or fire and forget), and
    /// time each batch until WebSocket subscribers receive its last record.
    WsE2e,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::TcpAcked => "tcp-acked",
            Mode::HttpIngest => "http-ingest",
            Mode::HttpLogs => "http-logs",
            Mode::WsE2e => "ws-e2e",
        }
    }

    /// The HTTP path this mode posts to unless `--path` says otherwise.
    pub fn default_path(self) -> Option<&'static str> {
        match self {
            Mode::HttpIngest => Some("/ingest"),
            Mode::HttpLogs => Some("/v1/logs"),
            _ => None,
        }
    }

    /// True for the HTTP modes.
    pub fn is_http(self) -> bool {
        matches!(self, Mode::HttpIngest | Mode::HttpLogs)
    }
}

/// What completes a batch (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The kernel accepted the batch's last byte.
    Written,
    /// The server's cumulative ack covers the batch.
    Ack,
    /// The HTTP response for the batch's request arrived.
    Response,
}

/// Body layout of `http-logs` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogsBody {
    /// `[{...},{...}]`, `Content-Type: application/json`.
    JsonArray,
    /// One JSON object per line, `Content-Type: application/x-ndjson`.
    Ndjson,
}

/// Closed or open loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Each connection sends its next batch as soon as one of its `inflight` slots
    /// is free: finds the peak throughput.
    Closed,
    /// The connections together send `rate` records per second on a fixed schedule,
    /// whatever the server does; latency is measured from the schedule.
    Open {
        /// Records per second, all connections together.
        rate: f64,
    },
}

/// When the run stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many records past the warm-up (split evenly over connections).
    Count(u64),
    /// This long after the warm-up.
    Duration(Duration),
}

/// Everything the engine needs to run.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Protocol and completion rule.
    pub mode: Mode,
    /// Server address.
    pub addr: SocketAddr,
    /// `Host` header value for HTTP.
    pub host: String,
    /// HTTP request path.
    pub path: String,
    /// Body layout for `http-logs`.
    pub logs_body: LogsBody,
    /// Number of connections.
    pub connections: usize,
    /// Worker threads (each drives `connections / threads` connections).
    pub threads: usize,
    /// Records per batch.
    pub batch_records: usize,
    /// Batches in flight per connection at most.
    pub inflight: usize,
    /// Closed or open loop.
    pub load: Load,
    /// When to stop sending.
    pub stop: Stop,
    /// Time sent but not measured at the start.
    pub warmup: Duration,
    /// How long to wait for outstanding completions (and the server closing) after
    /// sending stops.
    pub drain_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// `ws-e2e`: where batches' send times are published for the subscribers.
    pub e2e: Option<Arc<crate::e2e::E2eShared>>,
    /// `ws-e2e`: the producer waits for ringstash's acks (else fire and forget).
    pub e2e_acked: bool,
}

/// Bytes of unsent data a connection buffers before it stops building batches.
pub const WBUF_BYTES_SOFT_MAX: usize = 4 << 20;

/// Size of each connection's receive buffer (acks and responses are small).
pub const RBUF_BYTES: usize = 64 << 10;

/// Monotonic clock in nanoseconds (`CLOCK_MONOTONIC`, the clock `timerfd` uses).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Counters the workers update as they go, for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records completed successfully (warm-up included).
    pub records: AtomicU64,
    /// Errors of any kind.
    pub errors: AtomicU64,
}

/// The times every worker shares, ns on the monotonic clock.
#[derive(Debug, Clone, Copy)]
struct Times {
    /// The run starts (t = 0 for schedules).
    start: u64,
    /// The warm-up ends and measurement begins.
    measure: u64,
    /// Duration mode: no batch is intended at or after this.
    send_end: Option<u64>,
}

/// One batch on the wire.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// When the schedule meant it to be sent (closed loop: when its slot freed).
    intended_ns: u64,
    /// When it was handed to the socket.
    sent_ns: u64,
    /// Records in it.
    records: u32,
    /// Record bytes in it (`\n` included, HTTP framing excluded).
    bytes: u32,
    /// Records sent on this socket up to and including this batch.
    rec_end: u64,
    /// Bytes queued on this socket up to and including this batch.
    byte_end: u64,
    /// Sent after the warm-up: counts in the report.
    measured: bool,
    /// Records of this batch the server refused (`error <line_no> ...`).
    refused: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Building and sending batches.
    Sending,
    /// Sending is over; waiting for outstanding completions until the deadline.
    Draining { deadline: u64 },
    /// Our write side is shut down; reading until the server closes or the deadline.
    Closing { deadline: u64 },
    /// Finished.
    Done,
}

/// One connection of a worker: owned by that worker's thread only.
struct Conn {
    /// Index among all connections of the run.
    index: usize,
    /// `ws-e2e`: records tagged on this connection so far (across reconnects).
    e2e_seq: u64,
    token: Token,
    sock: Option<TcpStream>,
    /// The socket accepted everything so far; cleared on `WouldBlock` until the
    /// next writable event.
    writable: bool,
    /// Bytes queued for the socket; `wpos` of them are written.
    wbuf: Vec<u8>,
    wpos: usize,
    rbuf: ReadBuf,
    /// Batches on the wire, oldest first; at most `inflight`.
    pending: VecDeque<Pending>,
    /// Next corpus record to send.
    cursor: usize,
    /// Open loop: the schedule; `batch_no` indexes it.
    sched: Option<Schedule>,
    batch_no: u64,
    /// Count mode: measured records this connection still has to send.
    quota: Option<u64>,
    /// Per-socket counters, reset on reconnect.
    sock_records: u64,
    sock_queued: u64,
    sock_written: u64,
    sock_acked: u64,
    sock_refused: u64,
    /// The server announced it is closing (`error - <code>`), so its EOF is no surprise.
    server_closing: bool,
    state: State,
    reconnect_at: Option<u64>,
    /// When the connection was lost and not yet re-established.
    lost_since: Option<u64>,
    /// HTTP request head up to the `Content-Length` value.
    http_head: Vec<u8>,
}

struct Worker<'a> {
    cfg: &'a EngineConfig,
    corpus: &'a Corpus,
    progress: &'a Progress,
    times: Times,
    completion: Completion,
    stats: Stats,
    /// Unexpected server lines shown on stderr so far (see [`BAD_LINES_SHOWN_MAX`]).
    bad_lines_shown: u32,
}

/// Unexpected server lines a worker shows on stderr; the rest are only counted.
const BAD_LINES_SHOWN_MAX: u32 = 3;

fn error_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection_refused",
        io::ErrorKind::ConnectionReset => "connection_reset",
        io::ErrorKind::ConnectionAborted => "connection_aborted",
        io::ErrorKind::BrokenPipe => "broken_pipe",
        io::ErrorKind::TimedOut => "timed_out",
        _ => "io_error",
    }
}

/// Connects with a timeout and sets the socket up for the engine.
///
/// # Errors
/// The connect failed.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<StdTcpStream> {
    let s = StdTcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl Conn {
    fn new(
        index: usize,
        token: Token,
        sock: StdTcpStream,
        cfg: &EngineConfig,
        corpus: &Corpus,
        times: Times,
    ) -> Self {
        let sched = match cfg.load {
            Load::Open { rate } => Some(Schedule::open(
                rate,
                cfg.batch_records,
                cfg.connections,
                index,
                times.start,
            )),
            Load::Closed => None,
        };
        let quota = match cfg.stop {
            Stop::Count(n) => {
                let c = cfg.connections as u64;
                Some(n / c + u64::from((index as u64) < n % c))
            }
            Stop::Duration(_) => None,
        };
        let content_type = match (cfg.mode, cfg.logs_body) {
            (Mode::HttpLogs, LogsBody::JsonArray) => "application/json",
            (Mode::HttpLogs, LogsBody::Ndjson) => "application/x-ndjson",
            _ => "text/plain",
        };
        let http_head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: ",
            cfg.path, cfg.host
        )
        .into_bytes();
        let batch_bytes_max = cfg.batch_records * (corpus.record(0).len().max(1) * 2 + 1) + 512;
        Conn {
            index,
            e2e_seq: 0,
            token,
            sock: Some(TcpStream::from_std(sock)),
            writable: true,
            wbuf: Vec::with_capacity(batch_bytes_max.min(WBUF_BYTES_SOFT_MAX * 2)),
            wpos: 0,
            rbuf: ReadBuf::new(RBUF_BYTES),
            pending: VecDeque::with_capacity(cfg.inflight.min(1 << 16)),
            cursor: corpus.start_for(index),
            sched,
            batch_no: 0,
            quota,
            sock_records: 0,
            sock_queued: 0,
            sock_written: 0,
            sock_acked: 0,
            sock_refused: 0,
            server_closing: false,
            state: State::Sending,
            reconnect_at: None,
            lost_since: None,
            http_head,
        }
    }
}

impl Worker<'_> {
    fn err(&mut self, kind: &str) {
        self.stats.error(kind);
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn complete_front(&mut self, c: &mut Conn, now: u64, ok: bool) {
        let Some(p) = c.pending.pop_front() else {
            return;
        };
        let n = u64::from(p.records);
        if ok {
            // Records the server refused inside a completed batch are failures; their
            // bytes are estimated from the batch's mean record size.
            let refused = u64::from(p.refused.min(p.records));
            let ok_n = n - refused;
            let ok_bytes = u64::from(p.bytes) * ok_n / n.max(1);
            self.stats.failed_records_total += refused;
            self.stats.completed_records_total += ok_n;
            self.stats.bytes_total += ok_bytes;
            // Relaxed: a progress counter, read for display only.
            self.progress.records.fetch_add(ok_n, Ordering::Relaxed);
            if p.measured {
                record_ns(
                    &mut self.stats.latency_us,
                    now.saturating_sub(p.intended_ns),
                );
                record_ns(&mut self.stats.service_us, now.saturating_sub(p.sent_ns));
                self.stats.records += ok_n;
                self.stats.bytes += ok_bytes;
                self.stats.batches += 1;
                self.stats.last_completion_ns = self.stats.last_completion_ns.max(now);
            }
        } else {
            self.stats.failed_records_total += n;
        }
    }

    /// The connection is gone (error, EOF, or `Connection: close`): fail what is
    /// outstanding and plan a reconnect if it is still sending.
    fn drop_socket(&mut self, c: &mut Conn, poll: &Poll, now: u64, kind: Option<&str>) {
        if let Some(kind) = kind {
            self.err(kind);
        }
        while !c.pending.is_empty() {
            self.complete_front(c, now, false);
        }
        if let Some(mut s) = c.sock.take() {
            let _ = poll.registry().deregister(&mut s);
        }
        self.stats.server_acked_total += c.sock_acked;
        c.wbuf.clear();
        c.wpos = 0;
        c.rbuf = ReadBuf::new(RBUF_BYTES);
        (
            c.sock_records,
            c.sock_queued,
            c.sock_written,
            c.sock_acked,
            c.sock_refused,
        ) = (0, 0, 0, 0, 0);
        c.server_closing = false;
        match c.state {
            State::Sending => {
                c.reconnect_at = Some(now + 10_000_000);
                c.lost_since.get_or_insert(now);
            }
            _ => c.state = State::Done,
        }
    }

    fn reconnect(&mut self, c: &mut Conn, poll: &Poll, now: u64) {
        c.reconnect_at = None;
        match connect(self.cfg.addr, self.cfg.connect_timeout) {
            Ok(s) => {
                let mut s = TcpStream::from_std(s);
                if let Err(e) = poll.registry().register(
                    &mut s,
                    c.token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    self.err(error_kind(&e));
                    c.reconnect_at = Some(now + 100_000_000);
                    return;
                }
                c.sock = Some(s);
                c.writable = true;
                c.lost_since = None;
                self.stats.reconnects += 1;
            }
            Err(e) => {
                self.err(if e.kind() == io::ErrorKind::ConnectionRefused {
                    "connect_refused"
                } else {
                    "connect_failed"
                });
                c.reconnect_at = Some(now + 100_000_000);
            }
        }
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
            let array =
                self.cfg.mode == Mode::HttpLogs && self.cfg.logs_body == LogsBody::JsonArray;
            let (body_len, bytes) = if array {
                let lines = self.corpus.lines_len(c.cursor, n);
                // Each record loses its `\n`; commas between them; brackets around.
                (lines - n + n.saturating_sub(1) + 2, lines)
            } else {
                let lines = self.corpus.lines_len(c.cursor, n);
                (lines, lines)
            };
            c.wbuf.extend_from_slice(&c.http_head);
            let _ = write!(c.wbuf, "{body_len}\r\n\r\n");
            let appended = if array {
                self.corpus.append_json_array(&mut c.cursor, n, &mut c.wbuf)
            } else {
                self.corpus.append_lines(&mut c.cursor, n, &mut c.wbuf)
            };
            debug_assert_eq!(appended, body_len);
            bytes
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

    /// Writes what the socket takes. Returns false if the connection broke.
    fn flush(&mut self, c: &mut Conn, poll: &Poll, now: u64) -> bool {
        let Some(sock) = c.sock.as_mut() else {
            return false;
        };
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

    /// Advances one connection; returns when it next needs waking up by time.
    fn step(&mut self, c: &mut Conn, poll: &Poll, now: u64) -> Option<u64> {
        if c.state == State::Done {
            return None;
        }
        if c.sock.is_none() {
            // Give up on a server that stays unreachable for the drain timeout, or
            // once the run's time is over: a count-mode run must end too.
            let gone_too_long = c
                .lost_since
                .is_some_and(|t| now - t > self.cfg.drain_timeout.as_nanos() as u64);
            if gone_too_long || self.times.send_end.is_some_and(|end| now >= end) {
                if gone_too_long {
                    self.err("gave_up_reconnecting");
                }
                c.state = State::Done;
                return None;
            }
            match c.reconnect_at {
                Some(t) if t <= now => self.reconnect(c, poll, now),
                Some(t) => return Some(t),
                None => {
                    c.state = State::Done;
                    return None;
                }
            }
            if c.sock.is_none() {
                return c.reconnect_at;
            }
        }
        let mut wake = None;
        // Build and write until the socket or the in-flight window is full, a bounded
        // number of rounds so one fast connection cannot starve the others.
        for round in 0..16 {
            let mut built = 0;
            if c.state == State::Sending {
                loop {
                    let Some(intended) = self.next_intended(c, now) else {
                        c.state = State::Draining {
                            deadline: now + self.cfg.drain_timeout.as_nanos() as u64,
                        };
                        break;
                    };
                    if c.pending.len() >= self.cfg.inflight
                        || c.wbuf.len() - c.wpos >= WBUF_BYTES_SOFT_MAX
                    {
                        break;
                    }
                    if intended > now {
                        wake = Some(intended);
                        break;
                    }
                    self.build_batch(c, intended, now);
                    built += 1;
                }
                if let (None, Some(end)) = (c.sched, self.times.send_end) {
                    wake = Some(wake.map_or(end, |w: u64| w.min(end)));
                }
            }
            let pending_before = c.pending.len();
            if !self.flush(c, poll, now) {
                return Some(now);
            }
            // Go round again if this round built something, or if the write completed
            // batches (fire and forget) and so freed in-flight slots.
            let freed = c.pending.len() < pending_before;
            if (built == 0 && !freed) || !c.writable {
                break;
            }
            if round == 15 {
                // More to do: come back right after polling the other sockets.
                wake = Some(now);
            }
        }
        match c.state {
            State::Draining { deadline } => {
                if c.pending.is_empty() && c.wbuf.is_empty() {
                    let sock = c.sock.as_ref().expect("checked above");
                    if self.cfg.mode.is_http() {
                        self.drop_socket(c, poll, now, None);
                        c.state = State::Done;
                        return None;
                    }
                    // Half-close: ringstash answers with its final ack and closes;
                    // other receivers close too.
                    let _ = sock.shutdown(Shutdown::Write);
                    c.state = State::Closing { deadline };
                    return Some(deadline);
                }
                if now >= deadline {
                    let n = c.pending.len() as u64;
                    for _ in 0..n {
                        self.err("drain_timeout");
                    }
                    self.drop_socket(c, poll, now, None);
                    c.state = State::Done;
                    return None;
                }
                Some(deadline)
            }
            State::Closing { deadline } => {
                if now >= deadline {
                    self.drop_socket(c, poll, now, None);
                    c.state = State::Done;
                    return None;
                }
                Some(deadline)
            }
            _ => wake,
        }
    }

    /// Reads everything available and processes acks or responses.
    fn on_readable(&mut self, c: &mut Conn, poll: &Poll, now: u64) {
        loop {
            let Some(sock) = c.sock.as_mut() else { return };
            if c.rbuf.is_full() {
                self.drop_socket(c, poll, now, Some("response_too_large"));
                return;
            }
            match sock.read(c.rbuf.spare()) {
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
                        let body = &c.rbuf.data()[resp.body.clone()];
                        let ok = if (200..300).contains(&resp.status) {
                            match json_u64_field(body, "count") {
                                Some(n) if n != u64::from(front.records) => {
                                    self.err("count_mismatch");
                                    false
                                }
                                _ => true,
                            }
                        } else {
                            // Error path: the kind string is allocated here only.
                            let kind = match json_str_field(body, "error") {
                                Some(code) => format!(
                                    "http_{}_{}",
                                    resp.status,
                                    String::from_utf8_lossy(code)
                                ),
                                None => format!("http_{}", resp.status),
                            };
                            self.err(&kind);
                            false
                        };
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
        loop {
            let data = c.rbuf.data();
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                return true;
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
                ServerLine::Unknown(line) => {
                    // Receivers other than ringstash may say anything; only count it
                    // where acks are expected, and show the first few on stderr (a
                    // count alone cannot tell a server bug from a harness one).
                    if self.completion == Completion::Ack {
                        self.err("bad_ack_line");
                        if self.bad_lines_shown < BAD_LINES_SHOWN_MAX {
                            self.bad_lines_shown += 1;
                            eprintln!(
                                "loadtest: connection {}: unexpected line from the server ({} bytes): {:?}",
                                c.token.0,
                                line.len(),
                                String::from_utf8_lossy(&line[..line.len().min(160)])
                            );
                        }
                    }
                }
            }
            c.rbuf.consume(nl + 1);
        }
    }
}

/// A `timerfd` armed at absolute monotonic times: sub-millisecond wake-ups for the
/// open-loop schedule (epoll's own timeout has millisecond resolution).
struct Timer {
    fd: OwnedFd,
    armed_at: u64,
}

impl Timer {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Timer {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            armed_at: 0,
        })
    }

    fn arm(&mut self, at_ns: u64) {
        if self.armed_at == at_ns {
            return;
        }
        self.armed_at = at_ns;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid fd and pointers.
        unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into an 8-byte buffer from our own fd.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        self.armed_at = 0;
    }
}

const TIMER: Token = Token(usize::MAX);

fn worker_loop(w: &mut Worker<'_>, conns: &mut [Conn]) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut timer = Timer::new()?;
    poll.registry().register(
        &mut SourceFd(&timer.fd.as_raw_fd()),
        TIMER,
        Interest::READABLE,
    )?;
    for c in conns.iter_mut() {
        if let Some(s) = c.sock.as_mut() {
            poll.registry()
                .register(s, c.token, Interest::READABLE | Interest::WRITABLE)?;
        }
    }
    let mut events = Events::with_capacity(1024);
    loop {
        let now = mono_ns();
        let mut wake = u64::MAX;
        let mut all_done = true;
        for c in conns.iter_mut() {
            if let Some(t) = w.step(c, &poll, now) {
                wake = wake.min(t);
            }
            all_done &= c.state == State::Done;
        }
        if all_done {
            return Ok(());
        }
        let timeout = if wake <= now {
            Some(Duration::ZERO)
        } else {
            if wake != u64::MAX {
                timer.arm(wake);
            }
            Some(Duration::from_millis(200))
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let now = mono_ns();
        for ev in events.iter() {
            if ev.token() == TIMER {
                timer.drain();
                continue;
            }
            let c = &mut conns[ev.token().0];
            if ev.is_writable() {
                c.writable = true;
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                w.on_readable(c, &poll, now);
            }
        }
    }
}

/// The result of [`run`].
#[derive(Debug)]
pub struct EngineResult {
    /// Merged stats of all workers.
    pub stats: Stats,
    /// When the measurement started, monotonic ns.
    pub measure_start_ns: u64,
    /// Measurement window, seconds: from its start to the last measured completion.
    pub duration_s: f64,
}

/// Hooks the caller gets while the engine runs (server sampling, progress).
pub trait Observer {
    /// The warm-up is over; measurement starts now.
    fn measure_start(&mut self) {}
    /// Called about every 100 ms while the workers run.
    fn tick(&mut self, _progress: &Progress, _elapsed: Duration) {}
    /// All workers finished.
    fn finished(&mut self) {}
}

/// An [`Observer`] that does nothing.
pub struct NoObserver;
impl Observer for NoObserver {}

/// Runs the load described by `cfg` over records from `corpus`.
///
/// # Errors
/// The mode is not available, a first connection failed, or a worker could not set
/// up its poll loop.
pub fn run(
    cfg: &EngineConfig,
    corpus: Arc<Corpus>,
    observer: &mut dyn Observer,
) -> anyhow::Result<EngineResult> {
    let completion = match cfg.mode {
        Mode::Tcp => Completion::Written,
        Mode::TcpAcked => Completion::Ack,
        Mode::HttpIngest | Mode::HttpLogs => Completion::Response,
        Mode::WsE2e if cfg.e2e_acked => Completion::Ack,
        Mode::WsE2e => Completion::Written,
    };
    anyhow::ensure!(
        cfg.mode != Mode::WsE2e || cfg.e2e.is_some(),
        "ws-e2e needs the subscribers' shared state"
    );
    anyhow::ensure!(cfg.connections > 0, "need at least one connection");
    anyhow::ensure!(cfg.batch_records > 0, "need at least one record per batch");
    anyhow::ensure!(cfg.inflight > 0, "need at least one batch in flight");
    let threads = cfg.threads.clamp(1, cfg.connections);
    // Connect everything first, so connection set-up is not measured and a server
    // that is not there fails fast.
    let mut socks = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let s = connect(cfg.addr, cfg.connect_timeout)
            .map_err(|e| anyhow::anyhow!("connection {i} to {}: {e}", cfg.addr))?;
        socks.push(s);
    }
    let progress = Arc::new(Progress::default());
    let barrier = Arc::new(Barrier::new(threads + 1));
    let start_ns = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(threads);
    let mut socks = socks.into_iter().enumerate();
    for t in 0..threads {
        // Contiguous, near-equal shares; every thread gets at least one connection
        // because threads <= connections.
        let share = cfg.connections / threads + usize::from(t < cfg.connections % threads);
        let mine: Vec<(usize, StdTcpStream)> = socks.by_ref().take(share).collect();
        let (cfg, corpus, progress, barrier, start_ns) = (
            cfg.clone(),
            corpus.clone(),
            progress.clone(),
            barrier.clone(),
            start_ns.clone(),
        );
        handles.push(
            std::thread::Builder::new()
                .name("loadtest-worker".into())
                .spawn(move || -> io::Result<Stats> {
                    barrier.wait();
                    // Acquire pairs with the main thread's Release store, made before it
                    // reached the barrier (which orders them on its own too).
                    let start = start_ns.load(Ordering::Acquire);
                    let times = times_for(&cfg, start);
                    let mut conns: Vec<Conn> = mine
                        .into_iter()
                        .enumerate()
                        .map(|(local, (i, s))| Conn::new(i, Token(local), s, &cfg, &corpus, times))
                        .collect();
                    let mut w = Worker {
                        cfg: &cfg,
                        corpus: &corpus,
                        progress: &progress,
                        times,
                        completion,
                        stats: Stats::default(),
                        bad_lines_shown: 0,
                    };
                    worker_loop(&mut w, &mut conns)?;
                    Ok(w.stats)
                })?,
        );
    }
    let start = mono_ns();
    start_ns.store(start, Ordering::Release);
    barrier.wait();
    let times = times_for(cfg, start);
    let mut measure_started = times.measure == start;
    if measure_started {
        observer.measure_start();
    }
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(if measure_started { 100 } else { 5 }));
        let now = mono_ns();
        if !measure_started && now >= times.measure {
            measure_started = true;
            observer.measure_start();
        }
        observer.tick(&progress, Duration::from_nanos(now - start));
    }
    if !measure_started {
        observer.measure_start();
    }
    observer.finished();
    let mut stats = Stats::default();
    for h in handles {
        let s = h
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        stats.merge(&s);
    }
    let end = if stats.last_completion_ns > 0 {
        stats.last_completion_ns
    } else {
        mono_ns()
    };
    let duration_s = end.saturating_sub(times.measure) as f64 / 1e9;
    Ok(EngineResult {
        stats,
        measure_start_ns: times.measure,
        duration_s,
    })
}

fn times_for(cfg: &EngineConfig, start: u64) -> Times {
    let measure = start + cfg.warmup.as_nanos() as u64;
    Times {
        start,
        measure,
        send_end: match cfg.stop {
            Stop::Duration(d) => Some(measure + d.as_nanos() as u64),
            Stop::Count(_) => None,
        },
    }
}
