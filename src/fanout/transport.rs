//! A subscriber's byte stream: the socket itself (`ws://`), or a rustls server session
//! over it (`wss://`, with `ws_tls`).
//!
//! tungstenite reads the upgrade request and the client's frames from a [`Transport`]
//! and writes everything the fan-out sends through it (the handshake response,
//! messages, close frames, refusals), so both kinds of subscriber go through the same
//! state machine ([`super::subscriber`]). The plain variant hands each call to the
//! socket: one match per read or write call, nothing per byte. The TLS variant
//! decrypts what it reads and encrypts what it is given, and keeps the ciphertext the
//! socket did not take until the socket is writable again.
//!
//! # Flow control under TLS
//!
//! The fan-out's bounds (one message in flight, `subscriber_stall_ms_max`) rest on
//! tungstenite seeing `WouldBlock` when the socket is full. The TLS variant keeps
//! that: it takes plaintext only when none of its ciphertext is waiting, and its
//! `flush` reports `WouldBlock` while some is. So a message is either still in
//! tungstenite's buffer or encrypted in rustls's (at most `subscriber_send_buffer_bytes`
//! of it: rustls's buffer limit), and the subscriber counts as blocked until the
//! socket took the last byte of it.

use std::{
    cell::RefCell,
    io::{self, Read, Write},
    rc::Rc,
    sync::{Arc, atomic::Ordering},
};

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use super::handshake::Shared;
use crate::stats::TlsStats;

/// The first byte of every TLS connection: a handshake record (RFC 8446 section 5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The byte stream tungstenite reads and writes: cloned handles on one connection.
#[derive(Clone)]
pub(super) enum Transport {
    /// `ws://`: the socket.
    Plain(Shared),
    /// `wss://`: a TLS session over the socket.
    Tls(Rc<RefCell<TlsStream>>),
}

/// What the first byte of a connection on a TLS listener says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opening {
    /// Nothing arrived yet.
    Pending,
    /// A TLS handshake (or a plain socket, where there is nothing to check): go on.
    Proceed,
    /// Something other than TLS, most likely a `ws://` client: refuse it in plain text.
    Plaintext,
    /// The peer closed (or the socket failed) before sending anything.
    Closed,
}

impl Transport {
    /// The socket as it is.
    pub(super) fn plain(stream: Rc<TcpStream>) -> Self {
        Transport::Plain(Shared(stream))
    }

    /// A TLS session over `stream` with the configuration in force at accept (a
    /// certificate reload affects new connections only). rustls holds at most
    /// `send_buffer_bytes` of ciphertext, the bound a plain subscriber's message has.
    ///
    /// # Errors
    /// rustls refusing the configuration (not expected of one that built).
    pub(super) fn tls(
        stream: Rc<TcpStream>,
        config: Arc<ServerConfig>,
        stats: Arc<TlsStats>,
        send_buffer_bytes: usize,
    ) -> Result<Self, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(send_buffer_bytes));
        Ok(Transport::Tls(Rc::new(RefCell::new(TlsStream {
            tcp: stream,
            conn,
            stats,
            sniffed: false,
            outcome_counted: false,
        }))))
    }

    /// On a TLS listener, checks the first byte before anything is read, so a
    /// plain-text client is told what the port speaks instead of failing in rustls.
    /// Nothing is consumed.
    pub(super) fn opening(&self) -> Opening {
        let Transport::Tls(t) = self else {
            return Opening::Proceed;
        };
        let mut t = t.borrow_mut();
        if t.sniffed {
            return Opening::Proceed;
        }
        let mut first = [0u8; 1];
        match t.tcp.peek(&mut first) {
            Ok(0) => Opening::Closed,
            Ok(_) if first[0] == TLS_HANDSHAKE_RECORD => {
                t.sniffed = true;
                Opening::Proceed
            }
            Ok(_) => Opening::Plaintext,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Opening::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Opening::Pending,
            Err(_) => Opening::Closed,
        }
    }

    /// True while a TLS handshake is unfinished (`tls_handshake_timeout_ms` applies,
    /// and nothing can be said to the peer in HTTP yet).
    pub(super) fn tls_handshaking(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.borrow().conn.is_handshaking(),
        }
    }

    /// Counts a TLS handshake that did not finish in time (once per connection).
    pub(super) fn tls_timed_out(&self) {
        if let Transport::Tls(t) = self {
            t.borrow_mut()
                .count_outcome(|s| &s.tls_handshake_timeouts_total);
        }
    }

    /// Ends a TLS session cleanly (close_notify) before the socket is closed, so the
    /// peer can tell the end from a truncation. Best effort: what the socket does not
    /// take at once is dropped with it. Nothing for a plain socket.
    pub(super) fn close_notify(&self) {
        if let Transport::Tls(t) = self {
            let mut t = t.borrow_mut();
            if !t.conn.is_handshaking() {
                t.conn.send_close_notify();
                let _ = t.push();
            }
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.borrow_mut().read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.borrow_mut().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(t) => t.borrow_mut().push(),
        }
    }
}

/// A rustls server session on a non-blocking socket. Lives on the fan-out thread.
pub(super) struct TlsStream {
    tcp: Rc<TcpStream>,
    conn: ServerConnection,
    /// The TLS counters, shared with the reactors' listeners.
    stats: Arc<TlsStats>,
    /// Whether the first byte was seen to start a TLS handshake ([`Transport::opening`]).
    sniffed: bool,
    /// Whether the handshake's outcome (completed, failed, timed out) was counted, so
    /// that each connection counts once.
    outcome_counted: bool,
}

impl TlsStream {
    fn count_outcome(&mut self, counter: impl FnOnce(&TlsStats) -> &std::sync::atomic::AtomicU64) {
        if !self.outcome_counted {
            self.outcome_counted = true;
            // Relaxed: a statistic, read on its own by /stats.
            counter(&self.stats).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands pending ciphertext (handshake messages, records, alerts) to the socket.
    /// `WouldBlock` while some is left: the caller is blocked until the socket is
    /// writable again.
    fn push(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut &*self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Plaintext the peer sent: decrypted records, read from the socket as needed.
    /// `Ok(0)` after the peer's close_notify; `UnexpectedEof` if the socket closed
    /// without one; `WouldBlock` once the socket is drained (so an edge-triggered
    /// poll signals again when more arrives).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // What the socket did not take when it was last full goes first: readiness
        // calls here whether it was a read or a write that woke the subscriber.
        match self.push() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        loop {
            match self.conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    if self.conn.is_handshaking() {
                        // The peer closed in the middle of the handshake.
                        self.count_outcome(|s| &s.tls_handshake_failures_total);
                    }
                    return Err(e);
                }
                done => return done,
            }
            match self.conn.read_tls(&mut &*self.tcp) {
                // EOF: rustls records it, and its reader says which kind on the next
                // pass (clean after close_notify, else UnexpectedEof).
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let was_handshaking = self.conn.is_handshaking();
            if let Err(e) = self.conn.process_new_packets() {
                // rustls queued an alert saying why; it is the last thing sent.
                let _ = self.push();
                if was_handshaking {
                    self.count_outcome(|s| &s.tls_handshake_failures_total);
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if was_handshaking && !self.conn.is_handshaking() {
                self.count_outcome(|s| &s.tls_handshakes_total);
            }
            // Handshake messages go out as they are produced; the rest when writable.
            match self.push() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes plaintext to encrypt only when no ciphertext waits for the socket, so
    /// that a full socket shows as `WouldBlock` to tungstenite as it would in plain.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.push()?;
        let n = self.conn.writer().write(buf)?;
        if n == 0 {
            // rustls's buffer is full (only possible before the handshake finishes):
            // never report a zero-length write, which tungstenite takes for a reset.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.push() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(n)
    }
}
