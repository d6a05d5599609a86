//! A connection's socket and a listener under either I/O driver: tokio-uring's
//! (io_uring) or tokio's (epoll, through mio). The drivers ([`tcp`](super::tcp),
//! [`http`](super::http), [`relp`](super::relp)) and the protocol code under them are
//! written once against these; only the few calls here differ.
//!
//! The interface is tokio-uring's, owned buffers in and out, because io_uring needs
//! it (the kernel holds the buffer while the read is in flight) and epoll does not
//! mind: a read fills the spare capacity of the `Vec` it is given and returns it.

use std::{
    io,
    net::{Shutdown, SocketAddr},
    os::fd::{AsRawFd, RawFd},
};

use tokio_uring::buf::BoundedBuf;

use crate::wal::IoDriver;

/// A connected TCP socket.
pub enum Stream {
    /// io_uring: reads and writes are SQEs.
    Uring(tokio_uring::net::TcpStream),
    /// epoll: readiness, then a non-blocking read or write.
    Epoll(tokio::net::TcpStream),
    /// TLS over either of the above, once its handshake is done.
    Tls(Box<super::tls::TlsStream>),
}

impl Stream {
    /// Takes a plain accepted socket out of this reactor's runtime, to be served by
    /// another ([`Stream::from_std`]); on failure, gives it back with the error.
    ///
    /// The descriptor is duplicated and the original closed with its stream: tokio-uring
    /// 0.5 has no other way out of its runtime, and under epoll the drop deregisters
    /// the original from this reactor's epoll. Nothing is in flight on a socket just
    /// accepted, and the duplicate shares its options (TCP_NODELAY).
    pub fn into_std(self) -> Result<std::net::TcpStream, (io::Error, Stream)> {
        use std::os::fd::FromRawFd;
        assert!(
            !matches!(self, Stream::Tls(_)),
            "connections are handed over before their TLS handshake"
        );
        // SAFETY: fcntl(2) duplicating a descriptor `self` keeps open, close-on-exec
        // as every socket the process makes; the result is checked.
        let fd = unsafe { libc::fcntl(self.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err((io::Error::last_os_error(), self));
        }
        drop(self);
        // SAFETY: `fd` was just returned by dup(2) and nothing else owns it.
        Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
    }

    /// A socket handed over by another reactor, in this reactor's runtime (`driver`).
    ///
    /// # Errors
    /// Registering the socket with the epoll reactor failed.
    pub fn from_std(driver: IoDriver, s: std::net::TcpStream) -> io::Result<Stream> {
        match driver {
            IoDriver::Uring => Ok(Stream::Uring(tokio_uring::net::TcpStream::from_std(s))),
            IoDriver::Epoll => {
                s.set_nonblocking(true)?;
                tokio::net::TcpStream::from_std(s).map(Stream::Epoll)
            }
            IoDriver::Auto => unreachable!("the log resolves auto before the reactors start"),
        }
    }

    /// Sets TCP_NODELAY: acks and responses are small and must not wait for Nagle.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Uring(s) => s.set_nodelay(on),
            Stream::Epoll(s) => s.set_nodelay(on),
            Stream::Tls(s) => s.socket().set_nodelay(on),
        }
    }

    /// Reads into the spare capacity of `buf` (which must have some) and returns it
    /// with the count; 0 at EOF (or after a shutdown of the reading side).
    pub async fn read_spare(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Stream::Tls(s) => s.read_spare(buf).await,
            _ => self.plain_read_spare(buf).await,
        }
    }

    /// [`Stream::read_spare`] on the socket itself (what TLS reads ciphertext with).
    pub(super) async fn plain_read_spare(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        debug_assert!(buf.len() < buf.capacity(), "a read needs room");
        match self {
            Stream::Uring(s) => {
                let len = buf.len();
                let (res, slice) = s.read(buf.slice(len..)).await;
                (res, slice.into_inner())
            }
            Stream::Epoll(s) => {
                let mut buf = buf;
                loop {
                    // Optimistic first: data is often there already.
                    match s.try_read_buf(&mut buf) {
                        Ok(n) => return (Ok(n), buf),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return (Err(e), buf),
                    }
                    if let Err(e) = s.readable().await {
                        return (Err(e), buf);
                    }
                }
            }
            Stream::Tls(_) => unreachable!("a TLS stream's socket is a plain one"),
        }
    }

    /// Writes all of `buf` and returns it.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Stream::Tls(s) => s.write_all(buf).await,
            _ => self.plain_write_all(buf).await,
        }
    }

    /// [`Stream::write_all`] on the socket itself (what TLS writes ciphertext with).
    pub(super) async fn plain_write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Stream::Uring(s) => s.write_all(buf).await,
            Stream::Epoll(s) => {
                let mut at = 0;
                while at < buf.len() {
                    match s.try_write(&buf[at..]) {
                        Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                        Ok(n) => at += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if let Err(e) = s.writable().await {
                                return (Err(e), buf);
                            }
                        }
                        Err(e) => return (Err(e), buf),
                    }
                }
                (Ok(()), buf)
            }
            Stream::Tls(_) => unreachable!("a TLS stream's socket is a plain one"),
        }
    }

    /// Ends our side cleanly before the socket closes: over TLS a close_notify, sent in
    /// order after what was written (a client reading its last acks or response then
    /// sees a clean end, not a truncation); nothing for a plain socket, whose close
    /// sends the FIN. Errors are the peer's problem: it is being closed anyway.
    pub async fn finish(&self) {
        if let Stream::Tls(s) = self {
            s.close_notify().await;
        }
    }

    /// shutdown(2) in direction `how`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Uring(s) => s.shutdown(how),
            Stream::Epoll(s) => socket2::SockRef::from(s).shutdown(how),
            Stream::Tls(s) => s.shutdown(how),
        }
    }
}

impl Stream {
    /// Whether the read that returned 0 was the producer ending its stream: its FIN
    /// (or, over TLS, its close_notify, which may come before the FIN), and not a
    /// reset, nor our own shutdown of the reading side (idle, a failed batch, a drain).
    pub fn ended_by_peer(&self) -> bool {
        match self {
            Stream::Tls(s) => s.peer_closed() || fin_received(s.raw_fd()),
            _ => fin_received(self.as_raw_fd()),
        }
    }
}

/// True if the peer ended its stream with a FIN: the socket is in CLOSE_WAIT. After
/// a reset it is CLOSED (and a read may return 0 once a write has taken the reset's
/// error); after our own `shutdown(SHUT_RD)` it is still ESTABLISHED.
fn fin_received(fd: i32) -> bool {
    /// `TCP_CLOSE_WAIT` in the kernel's `enum tcp_state`.
    const TCP_CLOSE_WAIT: u8 = 8;
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: fd is this connection's open socket (the caller holds its guard), and
    // `info`/`len` are valid for writes.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    r == 0 && info.tcpi_state == TCP_CLOSE_WAIT
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let driver = match self {
            Stream::Uring(_) => "uring",
            Stream::Epoll(_) => "epoll",
            Stream::Tls(_) => "tls",
        };
        write!(f, "Stream({driver}, fd {})", self.as_raw_fd())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Uring(s) => s.as_raw_fd(),
            Stream::Epoll(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.raw_fd(),
        }
    }
}

/// A listening socket, bound before the reactor's runtime existed.
pub enum Listener {
    /// io_uring: accept is an SQE.
    Uring(tokio_uring::net::TcpListener),
    /// epoll: readiness, then accept4.
    Epoll(tokio::net::TcpListener),
}

impl Listener {
    /// Takes a bound, listening, non-blocking socket into the current runtime, which
    /// must be `driver`'s (`Uring` or `Epoll`).
    ///
    /// # Errors
    /// Registering the socket with the epoll reactor failed.
    pub fn from_std(driver: IoDriver, l: std::net::TcpListener) -> io::Result<Listener> {
        match driver {
            IoDriver::Uring => Ok(Listener::Uring(tokio_uring::net::TcpListener::from_std(l))),
            IoDriver::Epoll => tokio::net::TcpListener::from_std(l).map(Listener::Epoll),
            IoDriver::Auto => unreachable!("the log resolves auto before the reactors start"),
        }
    }

    /// The next connection. After shutdown(2) of the listening socket, an error.
    pub async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        match self {
            Listener::Uring(l) => l.accept().await.map(|(s, a)| (Stream::Uring(s), a)),
            Listener::Epoll(l) => l.accept().await.map(|(s, a)| (Stream::Epoll(s), a)),
        }
    }
}
