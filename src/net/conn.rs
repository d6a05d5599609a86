//! What TCP and HTTP connections share: the per-reactor registry (for shutdown), the
//! idle watchdog, and pushing a batch into the ring with backoff.

use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, HashSet},
    os::fd::RawFd,
    rc::Rc,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use bytes::BytesMut;

use super::NetCtx;
use crate::{
    error::AppendError,
    wal::{Completion, TryAppendError},
};

/// The connections of one reactor. Lives on that reactor's thread only (`Rc`).
#[derive(Debug, Default)]
pub struct Registry {
    /// Open sockets by id: connections, and refused connections being told why.
    conns: RefCell<HashMap<u64, RawFd>>,
    next_id: Cell<u64>,
    /// Refused connections in `conns`.
    refusals: Cell<usize>,
    /// Connections in `conns` that answer for themselves during a drain (HTTP): the
    /// reactor does not shut their reading side, so that a request arriving on an
    /// idle keep-alive connection is read and answered 503 rather than met with EOF.
    answer_in_drain: RefCell<HashSet<u64>>,
    /// Connections in `conns` waiting between requests with nothing buffered: a drain
    /// is over when only these remain (they are then cut).
    idle: Cell<usize>,
    /// Woken whenever a connection ends or turns idle.
    pub ended: tokio::sync::Notify,
    /// A drain has begun (`shutdown_reads_for_drain`): a connection registered from now
    /// on has its reading side shut as it registers.
    draining: Cell<bool>,
}

impl Registry {
    /// Connections open on this reactor.
    pub fn len(&self) -> usize {
        self.conns.borrow().len()
    }

    /// True when no connection is open on this reactor.
    pub fn is_empty(&self) -> bool {
        self.conns.borrow().is_empty()
    }

    /// True when every connection of this reactor is idle between requests (or none is
    /// open). A drain waits for this on every reactor ([`drained`]).
    pub fn only_idle_left(&self) -> bool {
        self.conns.borrow().len() == self.idle.get()
    }

    /// Shuts down every open connection's socket in direction `how` (libc SHUT_*).
    /// A read pending on it completes (with 0 for SHUT_RD), which is how a reactor
    /// stops a connection without cancelling an io_uring operation.
    pub fn shutdown_all(&self, how: i32) {
        self.shutdown_where(how, |_| true);
    }

    /// Starts a drain: shuts the reading side of every connection but those that
    /// answer for themselves during one (see `answer_in_drain`).
    ///
    /// Connections registered afterwards are shut as they register: the last ones
    /// accepted or handed over before the drain began may not have registered yet
    /// (their tasks are spawned, not yet run).
    pub fn shutdown_reads_for_drain(&self) {
        self.draining.set(true);
        let keep = self.answer_in_drain.borrow();
        self.shutdown_where(libc::SHUT_RD, |id| !keep.contains(&id));
    }

    /// Adds `fd` under a new id; with `answers_in_drain` (HTTP) its reading side stays
    /// open in a drain, otherwise a drain already under way shuts it now.
    fn register(&self, fd: RawFd, answers_in_drain: bool) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.conns.borrow_mut().insert(id, fd);
        if answers_in_drain {
            self.answer_in_drain.borrow_mut().insert(id);
        } else if self.draining.get() {
            // SAFETY: the caller's guard holds `fd` open until it unregisters it.
            unsafe { libc::shutdown(fd, libc::SHUT_RD) };
        }
        id
    }

    fn shutdown_where(&self, how: i32, mut pick: impl FnMut(u64) -> bool) {
        for (&id, &fd) in self.conns.borrow().iter() {
            if pick(id) {
                // SAFETY: fds in the registry are open: a connection removes its
                // entry (in ConnGuard::drop) before its socket can be closed.
                unsafe { libc::shutdown(fd, how) };
            }
        }
    }
}

/// Registers a refused connection while its reason is written, so that shutdown
/// waits for (or cuts) it like any other; it does not count in `connections_open`.
#[derive(Debug)]
pub struct RefusalGuard {
    registry: Rc<Registry>,
    id: u64,
}

impl RefusalGuard {
    /// Registers `fd`, or returns None when `in_flight_max` refusals
    /// (`refusals_in_flight_max`) are being told why already.
    pub fn new(registry: Rc<Registry>, fd: RawFd, in_flight_max: usize) -> Option<Self> {
        if registry.refusals.get() >= in_flight_max {
            return None;
        }
        registry.refusals.set(registry.refusals.get() + 1);
        let id = registry.register(fd, false);
        Some(RefusalGuard { registry, id })
    }
}

impl Drop for RefusalGuard {
    fn drop(&mut self) {
        self.registry.refusals.set(self.registry.refusals.get() - 1);
        self.registry.conns.borrow_mut().remove(&self.id);
        self.registry.ended.notify_waiters();
    }
}

/// Registers a connection during its TLS handshake, before its driver takes it: so
/// that a drain waits for (or cuts) it, and, if the handshake fails, releases the
/// connection slot `admit` took (once handed over, the driver's [`ConnGuard`] does).
#[derive(Debug)]
pub struct HandshakeGuard {
    registry: Rc<Registry>,
    id: u64,
    ctx: Arc<NetCtx>,
    handed_over: bool,
}

impl HandshakeGuard {
    /// Registers `fd`, admitted (counted in `connections_open`) by the caller.
    pub fn new(registry: Rc<Registry>, fd: RawFd, ctx: Arc<NetCtx>) -> Self {
        let id = registry.register(fd, false);
        HandshakeGuard {
            registry,
            id,
            ctx,
            handed_over: false,
        }
    }

    /// The handshake succeeded: the driver's [`ConnGuard`] now holds the slot.
    pub fn hand_over(mut self) {
        self.handed_over = true;
    }
}

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.registry.conns.borrow_mut().remove(&self.id);
        if !self.handed_over {
            self.ctx
                .gauges
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.registry.ended.notify_waiters();
    }
}

/// Registers a connection for its lifetime: counts it open, and unregisters it and
/// marks it closed on drop (before the socket itself is closed).
#[derive(Debug)]
pub struct ConnGuard {
    registry: Rc<Registry>,
    id: u64,
    ctx: Arc<NetCtx>,
    /// Set when the connection ends; the watchdog checks it before touching the fd.
    pub closed: Rc<Cell<bool>>,
    /// Counted in the registry's `idle`.
    idle: bool,
}

impl ConnGuard {
    /// The connection's number in its reactor's registry.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Registers `fd`. The caller already counted it in `connections_open`. With
    /// `answers_in_drain` (HTTP) the connection answers for itself during a drain: its
    /// reading side stays open until only idle connections are left, so that a request
    /// on a keep-alive connection is answered 503 rather than met with EOF.
    pub fn new(
        registry: Rc<Registry>,
        fd: RawFd,
        ctx: Arc<NetCtx>,
        answers_in_drain: bool,
    ) -> Self {
        let id = registry.register(fd, answers_in_drain);
        ConnGuard {
            registry,
            id,
            ctx,
            closed: Rc::new(Cell::new(false)),
            idle: false,
        }
    }

    /// Says whether the connection waits between requests with nothing buffered; a
    /// drain ends (and cuts these) once only such connections are left.
    pub fn set_idle(&mut self, idle: bool) {
        if idle == self.idle {
            return;
        }
        self.idle = idle;
        let (r, all) = (&self.registry, &self.ctx.gauges.connections_idle);
        if idle {
            r.idle.set(r.idle.get() + 1);
            all.fetch_add(1, Ordering::Relaxed);
            r.ended.notify_waiters();
        } else {
            r.idle.set(r.idle.get() - 1);
            all.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.set_idle(false);
        self.registry.answer_in_drain.borrow_mut().remove(&self.id);
        self.closed.set(true);
        self.registry.conns.borrow_mut().remove(&self.id);
        self.ctx
            .gauges
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        self.registry.ended.notify_waiters();
    }
}

/// A stream connection ended other than by the producer's FIN (a reset, an error, an
/// idle timeout, a shutdown) with `buf` still holding an incomplete line or frame:
/// that is not a record; it is counted (`tcp_partial_discarded_total`), not stored.
pub fn discard_partial(ctx: &NetCtx, buf: &[u8]) {
    if !buf.is_empty() {
        ctx.stats
            .tcp_partial_discarded_total
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// True when a drain is over as far as this reactor can tell: its own connections are
/// all idle between requests, and so are every reactor's open connections (an idle
/// keep-alive connection here must stay open while a request on another reactor is
/// still under way, so that its client, which may send its next request meanwhile,
/// gets 503 rather than EOF). Relaxed loads: the reactor polls this.
pub fn drained(ctx: &NetCtx, registry: &Registry) -> bool {
    let g = &ctx.gauges;
    registry.only_idle_left()
        && g.connections_open.load(Ordering::Relaxed) <= g.connections_idle.load(Ordering::Relaxed)
}

/// Takes a connection slot, or refuses when `connections_max` are open.
pub fn admit(ctx: &NetCtx) -> bool {
    let open = ctx.gauges.connections_open.fetch_add(1, Ordering::Relaxed);
    if open as usize >= ctx.settings.connections_max {
        ctx.gauges.connections_open.fetch_sub(1, Ordering::Relaxed);
        ctx.stats
            .connections_refused_total
            .fetch_add(1, Ordering::Relaxed);
        return false;
    }
    true
}

/// Shuts `fd` down in direction `how` once nothing happened on it for `timeout`,
/// calling `on_fire` first. Ends quietly when the connection closes first.
pub fn spawn_idle_watchdog(
    fd: RawFd,
    last_activity: Rc<Cell<Instant>>,
    closed: Rc<Cell<bool>>,
    timeout: Duration,
    how: i32,
    on_fire: impl FnOnce() + 'static,
) {
    tokio::task::spawn_local(async move {
        loop {
            let deadline = last_activity.get() + timeout;
            tokio::time::sleep_until(deadline.into()).await;
            if closed.get() {
                return;
            }
            if last_activity.get().elapsed() >= timeout {
                on_fire();
                // SAFETY: not closed (checked just above, on this same thread, with no
                // await in between), so fd is still this connection's socket.
                unsafe { libc::shutdown(fd, how) };
                return;
            }
        }
    });
}

/// The idle watchdog of a stream connection (raw TCP, syslog, RELP): after
/// `tcp_idle_timeout_ms` without input, counts it in `tcp_idle_closed_total`, calls
/// `on_fire` (which tells the connection why) and shuts its reading side, so that its
/// pending read returns 0.
pub fn spawn_stream_idle_watchdog(
    fd: RawFd,
    ctx: &Arc<NetCtx>,
    last_activity: &Rc<Cell<Instant>>,
    guard: &ConnGuard,
    on_fire: impl FnOnce() + 'static,
) {
    let ctx = ctx.clone();
    let timeout = Duration::from_millis(ctx.settings.tcp_idle_timeout_ms);
    spawn_idle_watchdog(
        fd,
        last_activity.clone(),
        guard.closed.clone(),
        timeout,
        libc::SHUT_RD,
        move || {
            ctx.stats
                .tcp_idle_closed_total
                .fetch_add(1, Ordering::Relaxed);
            on_fire();
        },
    );
}

/// Why a batch could not be pushed.
#[derive(Debug)]
pub enum PushFail {
    /// The ring stayed full until the deadline.
    TimedOut,
    /// The log refused the batch for good.
    Refused(AppendError),
}

/// Pushes a batch for `dest`, waiting while a ring is full: a connection that waits
/// here is not reading, which is what pushes back on its producer. With a deadline,
/// gives up then. A batch for a partitioned stream (or under syslog rules) is split by
/// destination log first (`streams::route`; `hint`, the connection's number, places its
/// records without a key) and completes once every part is durable.
///
/// # Errors
/// [`PushFail::TimedOut`] past the deadline; [`PushFail::Refused`] when a log refuses
/// the batch (closing, failed, too large). Parts of a split batch pushed before the
/// failure are still written: a client told to retry may store those records twice
/// (at least once, as for any unanswered request).
pub async fn push_batch(
    ctx: &NetCtx,
    dest: crate::streams::Dest,
    hint: u64,
    frames: BytesMut,
    records: u32,
    deadline: Option<Instant>,
) -> Result<Completion, PushFail> {
    let parts = ctx.router.split(dest, frames, records, hint);
    let mut done = Vec::with_capacity(parts.len());
    for p in parts {
        let appender = ctx.router.appender(p.log);
        let c = push_to(ctx, appender, p.frames, p.records, deadline).await?;
        done.push(c.in_log(p.log as u32));
    }
    Ok(Completion::join(done))
}

/// Pushes one log's batch, waiting while its ring is full.
async fn push_to(
    ctx: &NetCtx,
    appender: &crate::wal::Appender,
    mut frames: BytesMut,
    mut records: u32,
    deadline: Option<Instant>,
) -> Result<Completion, PushFail> {
    let mut tries = 0u32;
    loop {
        match appender.try_append(frames, records) {
            Ok(c) => return Ok(c),
            Err(TryAppendError::Refused(e)) => return Err(PushFail::Refused(e)),
            Err(TryAppendError::Full(f, r)) => {
                frames = f;
                records = r;
                if tries == 0 {
                    ctx.stats
                        .ring_full_waits_total
                        .fetch_add(1, Ordering::Relaxed);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(PushFail::TimedOut);
                }
                tries += 1;
                if tries < 16 {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{ErrorKind, Read},
        net::{TcpListener, TcpStream},
        os::fd::AsRawFd,
    };

    use super::*;

    /// A connected pair: (the server's side, the client's side).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        (server, client)
    }

    /// True if a read on `s` ends at once with EOF (its reading side was shut), false
    /// if it waits (still open).
    fn reads_shut(s: &mut TcpStream) -> bool {
        match s.read(&mut [0u8; 16]) {
            Ok(0) => true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            other => panic!("unexpected read: {other:?}"),
        }
    }

    #[test]
    fn a_drain_shuts_the_reads_of_connections_registered_before_and_after_it_began() {
        let r = Registry::default();
        let (mut before, _c1) = pair();
        let (mut http_before, _c2) = pair();
        r.register(before.as_raw_fd(), false);
        r.register(http_before.as_raw_fd(), true);
        assert!(!reads_shut(&mut before), "shut before any drain");
        r.shutdown_reads_for_drain();
        assert!(reads_shut(&mut before));
        assert!(!reads_shut(&mut http_before), "HTTP answers for itself");
        // Accepted (or handed over) just before the drain, registered just after it.
        let (mut after, _c3) = pair();
        let (mut http_after, _c4) = pair();
        r.register(after.as_raw_fd(), false);
        r.register(http_after.as_raw_fd(), true);
        assert!(
            reads_shut(&mut after),
            "registered during the drain, not shut"
        );
        assert!(!reads_shut(&mut http_after));
    }
}
