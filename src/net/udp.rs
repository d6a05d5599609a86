//! Syslog over UDP (RFC 5426), on `syslog_udp_addr` when it is set: one message per
//! datagram, rendered as on the TCP syslog listener, on a thread of its own
//! (`rs-syslog-udp`, not pinned: UDP syslog is a trickle next to the stream
//! listeners, and a blocking `recvmsg` loop is the simplest thing that batches).
//!
//! Nothing is acknowledged: UDP has no way to say "stored". When the ring is full the
//! thread waits, datagrams queue in the socket's receive buffer, and what the kernel
//! drops past it is lost. Those drops are read from the socket itself (`SO_RXQ_OVFL`)
//! and published as `syslog_udp_drops_total`.

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::Duration,
};

use super::{
    NetCtx,
    framing::{Enrichment, SyslogRenderer},
};
use crate::wal::{self, BatchBuilder, TryAppendError};

/// Datagrams taken per batch at most, so a flood does not grow a batch forever.
const DATAGRAMS_PER_BATCH: usize = 1024;
/// How often the blocked receive looks at the shutdown flag.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Largest UDP payload over IPv4/IPv6 (without jumbograms).
const DATAGRAM_BYTES_MAX: usize = 65_535;

/// Binds the UDP socket, so that an error is reported before the threads start.
///
/// # Errors
/// The OS error from bind or setsockopt.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)?;
    s.set_read_timeout(Some(STOP_POLL))?;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s)
}

/// Starts the receiving thread; it ends once `ctx.shutting_down` is set.
///
/// # Errors
/// The OS error if the thread cannot be spawned.
pub fn spawn(socket: UdpSocket, ctx: Arc<NetCtx>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("rs-syslog-udp".into())
        .spawn(move || Receiver::new(&socket, &ctx).run())
}

/// One datagram received.
struct Datagram {
    len: usize,
    /// Longer than the buffer: cut by the kernel.
    truncated: bool,
    from: SocketAddr,
    /// The socket's drop counter, when the kernel attached it.
    drops: Option<u32>,
}

struct Receiver<'a> {
    socket: &'a UdpSocket,
    ctx: &'a NetCtx,
    buf: Vec<u8>,
    renderer: SyslogRenderer<'a>,
    batch: BatchBuilder,
    /// Batches pushed: places records without a partition key.
    batches: u64,
}

impl<'a> Receiver<'a> {
    fn new(socket: &'a UdpSocket, ctx: &'a NetCtx) -> Self {
        let s = &ctx.settings;
        let enrich = ctx.json_policy.enrich.then(|| Enrichment {
            client_ip: String::new(),
            node_id: ctx.json_policy.node_id.clone(),
        });
        Receiver {
            socket,
            ctx,
            buf: vec![0; DATAGRAM_BYTES_MAX.min(s.syslog_frame_bytes_max + 1)],
            renderer: SyslogRenderer::new(enrich, &ctx.stats),
            batch: BatchBuilder::new(2 * s.read_buffer_bytes, s.record_bytes_max),
            batches: 0,
        }
    }

    fn run(mut self) {
        while !self.ctx.shutting_down.load(Ordering::Relaxed) {
            // Block for the first datagram, then take what is queued behind it.
            match self.recv(0) {
                Ok(d) => self.take(&d),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "syslog UDP receive failed");
                    std::thread::sleep(STOP_POLL);
                    continue;
                }
            }
            for _ in 1..DATAGRAMS_PER_BATCH {
                match self.recv(libc::MSG_DONTWAIT) {
                    Ok(d) => self.take(&d),
                    Err(_) => break,
                }
            }
            self.push();
        }
        self.push();
    }

    /// Renders one datagram into the batch (or counts its refusal).
    fn take(&mut self, d: &Datagram) {
        let st = &self.ctx.stats;
        if let Some(n) = d.drops {
            st.syslog_udp_drops_total
                .store(u64::from(n), Ordering::Relaxed);
        }
        st.syslog_udp_datagrams_total
            .fetch_add(1, Ordering::Relaxed);
        let too_large = || {
            st.syslog_frames_too_large_total
                .fetch_add(1, Ordering::Relaxed);
        };
        if d.truncated || d.len > self.ctx.settings.syslog_frame_bytes_max {
            return too_large();
        }
        let msg = &self.buf[..d.len];
        let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
        if msg.is_empty() {
            return;
        }
        self.renderer.set_peer(d.from.ip());
        let record = self.renderer.render(msg, wal::now_ns());
        if self.batch.push(wal::now_ns(), record).is_err() {
            too_large();
        }
    }

    /// Hands the batch to the log, waiting while the ring is full. Nothing awaits the
    /// completion: there is nobody to tell.
    fn push(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let (frames, records) = self.batch.take();
        let st = &self.ctx.stats;
        // No connection: records without a partition key are spread batch by batch.
        self.batches += 1;
        let parts = self
            .ctx
            .router
            .split(self.ctx.dests.syslog, frames, records, self.batches);
        for part in parts {
            let appender = self.ctx.router.appender(part.log);
            let (mut frames, mut records) = (part.frames, part.records);
            loop {
                match appender.try_append(frames, records) {
                    Ok(_) => {
                        st.syslog_records_total
                            .fetch_add(u64::from(records), Ordering::Relaxed);
                        break;
                    }
                    Err(TryAppendError::Full(f, r)) => {
                        st.ring_full_waits_total.fetch_add(1, Ordering::Relaxed);
                        (frames, records) = (f, r);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(TryAppendError::Refused(e)) => {
                        tracing::warn!(error = %e, records, "syslog UDP records not stored");
                        break;
                    }
                }
            }
        }
    }

    /// One `recvmsg` into `buf`, with the drop counter's control message.
    fn recv(&mut self, flags: libc::c_int) -> io::Result<Datagram> {
        // SAFETY: zeroed sockaddr_storage and msghdr are valid initial values.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 8]; // 64 bytes, aligned for cmsghdr
        let mut iov = libc::iovec {
            iov_base: self.buf.as_mut_ptr().cast(),
            iov_len: self.buf.len(),
        };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut addr).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: every pointer in `msg` points into live buffers of the given sizes.
        let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &raw mut msg, flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Datagram {
            len: n as usize,
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
            from: sockaddr(&addr).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            drops: drops(&msg),
        })
    }
}

/// The `SO_RXQ_OVFL` counter in `msg`'s control messages.
fn drops(msg: &libc::msghdr) -> Option<u32> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer
    // within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// The sender's address from `recvmsg`'s name.
fn sockaddr(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let v4 = unsafe { &*(std::ptr::from_ref(a).cast::<libc::sockaddr_in>()) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let v6 = unsafe { &*(std::ptr::from_ref(a).cast::<libc::sockaddr_in6>()) };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(v6.sin6_port))))
        }
        _ => None,
    }
}
