//! One connection's life cycle: set up ([`Conn::new`]), connect, lose the socket
//! (failing what was on the wire), reconnect 10 ms later. The types themselves are
//! in the parent module, so that every part of the engine reads their fields.

use std::{
    collections::VecDeque,
    io,
    net::{SocketAddr, TcpStream as StdTcpStream},
    time::Duration,
};

use mio::{Interest, Poll, Token, net::TcpStream};
use rustls::ClientConnection;

use super::{
    Conn, EngineConfig, Load, LogsBody, Mode, RBUF_BYTES, State, Stop, Times, WBUF_BYTES_SOFT_MAX,
    worker::Worker,
};
use crate::{pace::Schedule, proto::ReadBuf, tls::TlsClient, workload::Corpus};

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

/// The error kind counted in the report for a socket error.
pub(super) fn error_kind(e: &io::Error) -> &'static str {
    if crate::tls::is_tls_error(e) {
        return "tls_error";
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection_refused",
        io::ErrorKind::ConnectionReset => "connection_reset",
        io::ErrorKind::ConnectionAborted => "connection_aborted",
        io::ErrorKind::BrokenPipe => "broken_pipe",
        io::ErrorKind::TimedOut => "timed_out",
        _ => "io_error",
    }
}

/// A connected socket, ready for a worker: non-blocking, and past its TLS handshake
/// if the run speaks TLS.
#[derive(Debug)]
pub struct Connected {
    /// The socket, non-blocking, `TCP_NODELAY`.
    pub sock: StdTcpStream,
    /// The TLS session over it, handshake done; `None` for plain TCP.
    pub tls: Option<Box<ClientConnection>>,
}

/// Connects with a timeout, makes the TLS handshake if `tls` (within the same
/// timeout per read or write, see [`TlsClient::handshake`]), and sets the socket up
/// for the engine.
///
/// # Errors
/// The connect or the handshake failed.
pub fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&TlsClient>,
) -> io::Result<Connected> {
    let mut s = StdTcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    let tls = match tls {
        Some(t) => Some(Box::new(t.handshake(&mut s, timeout)?)),
        None => None,
    };
    s.set_nonblocking(true)?;
    Ok(Connected { sock: s, tls })
}

impl Conn {
    pub(super) fn new(
        index: usize,
        token: Token,
        sock: Connected,
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
            sock: Some(TcpStream::from_std(sock.sock)),
            tls: sock.tls,
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
            sock_sealed: 0,
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
        c.tls = None;
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
            c.sock_sealed,
        ) = (0, 0, 0, 0, 0, 0);
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
        match connect(
            self.cfg.addr,
            self.cfg.connect_timeout,
            self.cfg.tls.as_ref(),
        ) {
            Ok(Connected { sock, tls }) => {
                let mut s = TcpStream::from_std(sock);
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
                c.tls = tls;
                c.writable = true;
                c.lost_since = None;
                self.stats.reconnects += 1;
            }
            Err(e) => {
                let kind = if e.kind() == io::ErrorKind::ConnectionRefused {
                    "connect_refused"
                } else if crate::tls::is_tls_error(&e) {
                    self.show_tls_error(c.index, "handshake", &e);
                    "tls_handshake_failed"
                } else {
                    "connect_failed"
                };
                self.err(kind);
                c.reconnect_at = Some(now + 100_000_000);
            }
        }
    }
}
