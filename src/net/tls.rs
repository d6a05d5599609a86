//! TLS on a reactor's connection: the handshake under its deadline, the refusal of a
//! client that speaks plain text to a TLS port, and the encrypted stream the
//! connection drivers then read and write like any other [`Stream`].
//!
//! rustls is sans-I/O: it takes ciphertext in (`read_tls`), gives plaintext out
//! (`reader`), takes plaintext in (`writer`) and gives ciphertext out (`write_tls`).
//! [`TlsStream`] moves those bytes over the socket with the socket's own owned-buffer
//! reads and writes, so TLS works the same under both I/O drivers.
//!
//! A connection's reader and its ack writer are separate tasks sharing the stream:
//! the rustls state sits in a `RefCell` borrowed only between awaits, and whatever
//! puts ciphertext on the socket (the writer's records, the reader's handshake
//! replies and key updates) holds one async lock from taking the bytes out of rustls
//! to the end of the socket write, so TLS records reach the socket in the order
//! rustls made them.

use std::{
    cell::{Cell, RefCell},
    io::{self, Read, Write},
    net::Shutdown,
    os::fd::AsRawFd,
    rc::Rc,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use rustls::{ServerConfig, ServerConnection};

use super::{NetCtx, socket::Stream};
use crate::stats::TlsStats;

/// The first byte of every TLS record carrying a handshake (RFC 8446 §5.1): a client
/// that sends anything else first is not speaking TLS.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Ciphertext read from the socket per read: one TLS record's worth and its framing.
const CIPHER_READ_BYTES: usize = 18 << 10;

/// How a TLS connection's start went.
pub enum Accepted {
    /// The handshake completed: the encrypted stream.
    Tls(Stream),
    /// The client's first bytes were not a TLS handshake: the socket, to be told.
    Plaintext(Stream),
    /// The handshake failed or timed out (counted); the socket is closed.
    Failed,
    /// The client closed before sending a byte (a TCP health check): not counted.
    Gone,
}

/// Runs the server side of the handshake on `stream` with `config`, within
/// `tls_handshake_timeout_ms` from now. Counts the outcome in `stats`.
pub async fn accept(
    stream: Stream,
    config: Arc<ServerConfig>,
    ctx: &NetCtx,
    stats: &TlsStats,
) -> Accepted {
    let fd = stream.as_raw_fd();
    // The deadline does not cancel the handshake's read (an io_uring read must not be
    // dropped in flight with its socket closed under it): it shuts the socket, the
    // read returns, and the handshake ends as failed. `done` is set before the stream
    // can be dropped, on this thread, so a late watchdog never touches a reused fd.
    let done = Rc::new(Cell::new(false));
    let timed_out = Rc::new(Cell::new(false));
    let timeout = Duration::from_millis(ctx.settings.tls_handshake_timeout_ms);
    {
        let (done, timed_out) = (done.clone(), timed_out.clone());
        tokio::task::spawn_local(async move {
            tokio::time::sleep(timeout).await;
            if !done.get() {
                timed_out.set(true);
                // SAFETY: not done, so the handshake still owns the open socket (see above).
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
        });
    }
    let outcome = handshake(stream, config).await;
    done.set(true);
    match outcome {
        Ok(Handshake::Done(s)) => {
            stats.tls_handshakes_total.fetch_add(1, Ordering::Relaxed);
            Accepted::Tls(s)
        }
        Ok(Handshake::Plaintext(s)) => {
            stats
                .tls_plaintext_refused_total
                .fetch_add(1, Ordering::Relaxed);
            Accepted::Plaintext(s)
        }
        Ok(Handshake::Gone) if !timed_out.get() => Accepted::Gone,
        Ok(Handshake::Gone) => {
            stats
                .tls_handshake_timeouts_total
                .fetch_add(1, Ordering::Relaxed);
            Accepted::Failed
        }
        Err(e) => {
            let counter = if timed_out.get() {
                &stats.tls_handshake_timeouts_total
            } else {
                &stats.tls_handshake_failures_total
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, timed_out = timed_out.get(), "TLS handshake failed");
            Accepted::Failed
        }
    }
}

enum Handshake {
    Done(Stream),
    Plaintext(Stream),
    /// Closed before its first byte.
    Gone,
}

async fn handshake(stream: Stream, config: Arc<ServerConfig>) -> io::Result<Handshake> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let tls = TlsStream {
        inner: stream,
        conn: RefCell::new(conn),
        cipher: RefCell::new(Vec::with_capacity(CIPHER_READ_BYTES)),
        out: RefCell::new(Vec::new()),
        write_lock: tokio::sync::Mutex::new(()),
    };
    let mut first = true;
    while tls.conn.borrow().is_handshaking() {
        let buf = std::mem::take(&mut *tls.cipher.borrow_mut());
        let (res, mut buf) = tls.inner.plain_read_spare(buf).await;
        let n = res?;
        if n == 0 && first {
            return Ok(Handshake::Gone);
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if first && buf[0] != TLS_HANDSHAKE_RECORD {
            return Ok(Handshake::Plaintext(tls.inner));
        }
        first = false;
        let fed = tls.feed(&buf);
        buf.clear();
        *tls.cipher.borrow_mut() = buf;
        // The handshake's replies (or the alert of a failure) go out either way.
        tls.flush().await?;
        fed?;
    }
    Ok(Handshake::Done(Stream::Tls(Box::new(tls))))
}

/// An established TLS connection over a socket.
pub struct TlsStream {
    inner: Stream,
    conn: RefCell<ServerConnection>,
    /// The buffer ciphertext is read into; lent to the socket during a read.
    cipher: RefCell<Vec<u8>>,
    /// Ciphertext taken out of rustls and being written; lent to the socket.
    out: RefCell<Vec<u8>>,
    /// Held from taking ciphertext out of rustls to the end of its socket write.
    write_lock: tokio::sync::Mutex<()>,
}

impl TlsStream {
    /// The socket's descriptor (for the registry, the watchdogs and TCP_INFO).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }

    /// The socket itself (TCP_NODELAY).
    pub fn socket(&self) -> &Stream {
        &self.inner
    }

    /// Gives rustls the ciphertext in `bytes` and processes it. After the client's
    /// close_notify rustls takes nothing more (`read_tls` answers 0): what follows it
    /// is dropped, as TLS says, rather than offered again forever.
    fn feed(&self, mut bytes: &[u8]) -> io::Result<()> {
        let mut c = self.conn.borrow_mut();
        while !bytes.is_empty() {
            if c.read_tls(&mut bytes)? == 0 {
                break;
            }
            if let Err(e) = c.process_new_packets() {
                // rustls queued an alert saying why; the caller flushes it.
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        Ok(())
    }

    /// Whether the client ended its stream with a close_notify.
    pub fn peer_closed(&self) -> bool {
        self.conn
            .borrow_mut()
            .process_new_packets()
            .is_ok_and(|st| st.peer_has_closed())
    }

    /// After a read: sends what rustls queued (key updates, session tickets, an alert)
    /// unless a writer holds the socket, whose own flush loop then sends it. Never
    /// waits for that writer: an ack writer blocked on a client that reads nothing
    /// until it has sent everything must not stop this connection's reading too.
    async fn flush_after_read(&self) -> io::Result<()> {
        if !self.conn.borrow().wants_write() || self.write_lock.try_lock().is_err() {
            return Ok(());
        }
        self.flush().await
    }

    /// Writes whatever ciphertext rustls has queued.
    async fn flush(&self) -> io::Result<()> {
        let _order = self.write_lock.lock().await;
        loop {
            let mut out = std::mem::take(&mut *self.out.borrow_mut());
            {
                let mut c = self.conn.borrow_mut();
                while c.wants_write() {
                    c.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                *self.out.borrow_mut() = out;
                return Ok(());
            }
            let (res, mut back) = self.inner.plain_write_all(out).await;
            back.clear();
            *self.out.borrow_mut() = back;
            res?;
        }
    }

    /// As [`Stream::read_spare`]: plaintext into the spare capacity of `buf`; 0 at the
    /// end (the client's close_notify, or its FIN without one, which producers that
    /// just close their socket send).
    pub async fn read_spare(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            let ready = {
                let mut c = self.conn.borrow_mut();
                let want = buf.capacity() - buf.len();
                let len = buf.len();
                // Zero only what rustls holds (the read needs an initialised slice): the
                // whole spare capacity per read cost as much as the decryption. With
                // nothing held, one byte: rustls answers an empty slice with Ok(0),
                // which would read as the end.
                let held = c
                    .process_new_packets()
                    .map_or(0, |st| st.plaintext_bytes_to_read());
                buf.resize(len + want.min(held.max(1)), 0);
                let r = c.reader().read(&mut buf[len..]);
                match r {
                    Ok(n) => {
                        buf.truncate(len + n);
                        Some(Ok(n))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        buf.truncate(len);
                        None
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        buf.truncate(len);
                        Some(Ok(0))
                    }
                    Err(e) => {
                        buf.truncate(len);
                        Some(Err(e))
                    }
                }
            };
            if let Some(r) = ready {
                return (r, buf);
            }
            let cipher = std::mem::take(&mut *self.cipher.borrow_mut());
            let (res, mut cipher) = self.inner.plain_read_spare(cipher).await;
            let fed = match res {
                // The client's FIN (with or without close_notify): the end.
                Ok(0) => None,
                Ok(_) => Some(self.feed(&cipher)),
                Err(e) => Some(Err(e)),
            };
            cipher.clear();
            *self.cipher.borrow_mut() = cipher;
            let Some(fed) = fed else {
                return (Ok(0), buf);
            };
            // Key updates, session tickets, or the alert of a failure.
            let flushed = self.flush_after_read().await;
            if let Err(e) = fed.and(flushed) {
                return (Err(e), buf);
            }
        }
    }

    /// As [`Stream::write_all`], encrypted.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut at = 0;
        while at < buf.len() {
            let n = match self.conn.borrow_mut().writer().write(&buf[at..]) {
                Ok(n) => n,
                Err(e) => return (Err(e), buf),
            };
            at += n;
            if let Err(e) = self.flush().await {
                return (Err(e), buf);
            }
        }
        (Ok(()), buf)
    }

    /// Queues a close_notify and sends it, in order after anything being written.
    pub async fn close_notify(&self) {
        self.conn.borrow_mut().send_close_notify();
        let _ = self.flush().await;
    }

    /// As shutdown(2): the writing side first says close_notify (best effort, without
    /// waiting: the socket is being shut).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            let mut c = self.conn.borrow_mut();
            c.send_close_notify();
            let mut alert = Vec::new();
            while c.wants_write() {
                if c.write_tls(&mut alert).is_err() {
                    break;
                }
            }
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            // SAFETY: the socket is open (self owns it); the buffer is valid.
            unsafe { libc::send(self.raw_fd(), alert.as_ptr().cast(), alert.len(), flags) };
        }
        self.inner.shutdown(how)
    }
}
