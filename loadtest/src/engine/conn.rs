//! One connection of a worker: its batches on the wire, its per-socket counters and
//! its life cycle (connect, lose the socket, reconnect 10 ms later, give up).

use std::{
    collections::VecDeque,
    io,
    net::{SocketAddr, TcpStream as StdTcpStream},
    time::Duration,
};

use mio::{Interest, Poll, Token, net::TcpStream};

use super::{
    EngineConfig, Load, LogsBody, Mode, RBUF_BYTES, Stop, WBUF_BYTES_SOFT_MAX, worker::Worker,
};
use crate::{pace::Schedule, proto::ReadBuf, workload::Corpus};

/// The times every worker shares, ns on the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Times {
    /// The run starts (t = 0 for schedules).
    pub(super) start: u64,
    /// The warm-up ends and measurement begins.
    pub(super) measure: u64,
    /// Duration mode: no batch is intended at or after this.
    pub(super) send_end: Option<u64>,
}

impl Times {
    /// The times of a run that starts at `start` (monotonic ns) under `cfg`.
    pub(super) fn of(cfg: &EngineConfig, start: u64) -> Self {
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
}

/// One batch on the wire.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    /// When the schedule meant it to be sent (closed loop: when its slot freed).
    pub(super) intended_ns: u64,
    /// When it was handed to the socket.
    pub(super) sent_ns: u64,
    /// Records in it.
    pub(super) records: u32,
    /// Record bytes in it (`\n` included, HTTP framing excluded).
    pub(super) bytes: u32,
    /// Records sent on this socket up to and including this batch.
    pub(super) rec_end: u64,
    /// Bytes queued on this socket up to and including this batch.
    pub(super) byte_end: u64,
    /// Sent after the warm-up: counts in the report.
    pub(super) measured: bool,
    /// Records of this batch the server refused (`error <line_no> ...`).
    pub(super) refused: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
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
pub(super) struct Conn {
    /// Index among all connections of the run.
    pub(super) index: usize,
    /// `ws-e2e`: records tagged on this connection so far (across reconnects).
    pub(super) e2e_seq: u64,
    pub(super) token: Token,
    pub(super) sock: Option<TcpStream>,
    /// The socket accepted everything so far; cleared on `WouldBlock` until the
    /// next writable event.
    pub(super) writable: bool,
    /// Bytes queued for the socket; `wpos` of them are written.
    pub(super) wbuf: Vec<u8>,
    pub(super) wpos: usize,
    pub(super) rbuf: ReadBuf,
    /// Batches on the wire, oldest first; at most `inflight`.
    pub(super) pending: VecDeque<Pending>,
    /// Next corpus record to send.
    pub(super) cursor: usize,
    /// Open loop: the schedule; `batch_no` indexes it.
    pub(super) sched: Option<Schedule>,
    pub(super) batch_no: u64,
    /// Count mode: measured records this connection still has to send.
    pub(super) quota: Option<u64>,
    /// Per-socket counters, reset on reconnect.
    pub(super) sock_records: u64,
    pub(super) sock_queued: u64,
    pub(super) sock_written: u64,
    pub(super) sock_acked: u64,
    pub(super) sock_refused: u64,
    /// The server announced it is closing (`error - <code>`), so its EOF is no surprise.
    pub(super) server_closing: bool,
    pub(super) state: State,
    pub(super) reconnect_at: Option<u64>,
    /// When the connection was lost and not yet re-established.
    pub(super) lost_since: Option<u64>,
    /// HTTP request head up to the `Content-Length` value.
    pub(super) http_head: Vec<u8>,
}

/// The error kind counted in the report for a socket error.
pub(super) fn error_kind(e: &io::Error) -> &'static str {
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
    pub(super) fn new(
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
    /// The connection is gone (error, EOF, or `Connection: close`): fail what is
    /// outstanding and plan a reconnect if it is still sending.
    pub(super) fn drop_socket(&mut self, c: &mut Conn, poll: &Poll, now: u64, kind: Option<&str>) {
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

    pub(super) fn reconnect(&mut self, c: &mut Conn, poll: &Poll, now: u64) {
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
}
