//! Reactor threads: placement on cores, listeners, accept loops, shutdown.
//!
//! Shutdown is designed around tokio-uring issue 102 (a runtime dropped while an
//! `accept` is outstanding can hang): nothing is cancelled. The reactor shuts its
//! listening sockets down with shutdown(2), which completes the pending accepts with an
//! error; it shuts the read side of every connection, which completes pending reads
//! with EOF; connections then finish their work (commit, ack, respond) and end; only
//! then does the runtime return, with no operation in flight.

use std::{
    net::SocketAddr,
    os::fd::AsRawFd,
    rc::Rc,
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::Duration,
};

use socket2::{Domain, Socket, Type};

use tokio::sync::mpsc::UnboundedReceiver;

use super::{
    NetCtx,
    balance::{Admitted, Handoff, Load},
    conn, http,
    limits::SourceGuard,
    relp,
    socket::{Listener, Stream},
    tcp::{self, Mode},
};
use crate::{http_proto, syslog, wal::IoDriver};

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Raw lines, one-way (`tcp_addr`).
    Tcp,
    /// Raw lines with acks (`tcp_acked_addr`).
    TcpAcked,
    /// Syslog over TCP, one-way (`syslog_addr`).
    Syslog,
    /// RELP, syslog with an answer per message once it is durable (`relp_addr`).
    Relp,
    /// HTTP/1.1 (`http_addr`).
    Http,
}

impl Kind {
    /// Every stream listener a reactor has, in the order they are bound and printed.
    pub const ALL: [Kind; 5] = [
        Kind::Tcp,
        Kind::TcpAcked,
        Kind::Syslog,
        Kind::Relp,
        Kind::Http,
    ];

    /// The listener's name in the `listening` line and in errors.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::TcpAcked => "tcp_acked",
            Kind::Syslog => "syslog",
            Kind::Relp => "relp",
            Kind::Http => "http",
        }
    }

    /// The TLS configuration a new connection on this listener takes, if it has TLS.
    fn tls_config(self, ctx: &NetCtx) -> Option<(Arc<rustls::ServerConfig>, Arc<crate::tls::Tls>)> {
        let s = &ctx.settings;
        let on = match self {
            Kind::Tcp => s.tcp_tls,
            Kind::TcpAcked => s.tcp_acked_tls,
            Kind::Syslog => s.syslog_tls,
            Kind::Relp => s.relp_tls,
            Kind::Http => s.http_tls,
        };
        let auth = match self {
            Kind::Http => crate::tls::ClientAuth::Web,
            _ => crate::tls::ClientAuth::Stream,
        };
        let tls = ctx.tls.as_ref().filter(|_| on)?;
        Some((tls.config(auth), tls.clone()))
    }

    /// The listener as error messages name it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Tcp => "TCP",
            Kind::TcpAcked => "acked TCP",
            Kind::Syslog => "syslog",
            Kind::Relp => "RELP",
            Kind::Http => "HTTP",
        }
    }
}

/// A reactor's listening sockets, bound before the threads start so that errors are
/// reported at once: one per [`Kind::ALL`], in that order.
#[derive(Debug)]
pub struct Listeners(pub Vec<(Kind, std::net::TcpListener)>);

/// Binds a listening socket with `SO_REUSEPORT`, so every reactor can have its own.
///
/// # Errors
/// The OS error from socket, setsockopt, bind or listen.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Fails if anything listens on `addr` already, whatever its options.
///
/// Why: `SO_REUSEPORT` lets any socket of the same user that sets it too join the
/// group, and the kernel then splits the incoming connections between the members. A
/// second ringstash started by mistake on the same port would bind without an error
/// and silently take a share of the producers' connections into another data
/// directory (and a TCP and an HTTP listener on one port would take each other's).
/// A plain bind (no `SO_REUSEPORT`) is refused while anything listens there, so trying
/// one first turns that into an error at start. `SO_REUSEADDR` keeps a restart working
/// while the previous run's connections are in TIME_WAIT.
///
/// # Errors
/// `AddrInUse` (or another bind error) from the probing bind.
pub fn ensure_unused(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(()); // the kernel picks a port nobody holds
    }
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
}

/// Binds `n` sets of listeners on the same addresses (`addrs`, one per
/// [`Kind::ALL`]). A port of 0 is resolved by the first bind and reused by the others.
/// Returns them with the bound addresses.
///
/// # Errors
/// The first bind error, with the address; an address something already listens on.
pub fn bind_all(
    addrs: [SocketAddr; Kind::ALL.len()],
    n: usize,
) -> anyhow::Result<(Vec<Listeners>, [SocketAddr; Kind::ALL.len()])> {
    use anyhow::Context;
    let mut out = Vec::with_capacity(n);
    let mut bound = addrs;
    let in_use = |what: &'static str, addr: SocketAddr| {
        move |e: std::io::Error| {
            let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                " (another process, another ringstash or another of its listeners holds it; \
                 ringstash does not share its ports)"
            } else {
                ""
            };
            anyhow::Error::new(e).context(format!("binding the {what} listener on {addr}{why}"))
        }
    };
    for i in 0..n {
        let mut set = Vec::with_capacity(Kind::ALL.len());
        for (k, kind) in Kind::ALL.into_iter().enumerate() {
            let addr = bound[k];
            if i == 0 {
                ensure_unused(addr).map_err(in_use(kind.label(), addr))?;
            }
            let l = bind_reuseport(addr)
                .with_context(|| format!("binding the {} listener on {addr}", kind.label()))?;
            if i == 0 {
                bound[k] = l.local_addr()?;
            }
            set.push((kind, l));
        }
        out.push(Listeners(set));
    }
    Ok((out, bound))
}

/// Starts reactor `id` on its own thread, pinned to `core` if given.
///
/// # Errors
/// The OS error if the thread cannot be spawned.
pub fn spawn(
    id: usize,
    core: Option<usize>,
    listeners: Listeners,
    handoffs: UnboundedReceiver<Handoff>,
    ctx: Arc<NetCtx>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("rs-reactor-{id}"))
        .spawn(move || {
            if let Some(c) = core
                && !core_affinity::set_for_current(core_affinity::CoreId { id: c })
            {
                tracing::warn!(reactor = id, core = c, "could not pin reactor thread");
            }
            match ctx.driver {
                IoDriver::Uring => tokio_uring::start(run(id, listeners, handoffs, ctx, shutdown)),
                _ => {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a current-thread tokio runtime");
                    tokio::task::LocalSet::new()
                        .block_on(&rt, run(id, listeners, handoffs, ctx, shutdown));
                }
            }
        })
}

async fn run(
    id: usize,
    listeners: Listeners,
    handoffs: UnboundedReceiver<Handoff>,
    ctx: Arc<NetCtx>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let registry = Rc::new(conn::Registry::default());
    let adopting = tokio::task::spawn_local(adopt_loop(
        handoffs,
        ctx.clone(),
        registry.clone(),
        shutdown.clone(),
    ));
    let mut accepting = Vec::new();
    for (kind, l) in listeners.0 {
        let fd = l.as_raw_fd();
        let l = match Listener::from_std(ctx.driver, l) {
            Ok(l) => l,
            Err(e) => {
                // Only the epoll reactor's registration can fail here (ENOMEM, the fd
                // limit): the other listeners still serve.
                tracing::error!(listener = kind.name(), error = %e, "cannot register the listener");
                continue;
            }
        };
        let task =
            tokio::task::spawn_local(accept_loop(id, l, kind, ctx.clone(), registry.clone()));
        accepting.push((fd, task));
    }

    let _ = shutdown.wait_for(|stop| *stop).await;
    // Stop accepting: completes the pending accepts (see the module doc).
    for (fd, _) in &accepting {
        // SAFETY: the listeners are open until their accept loops end, awaited below.
        unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
    }
    for (_, task) in accepting {
        let _ = task.await;
    }
    let _ = adopting.await;

    // Drain: stream connections stop reading, finish what they received, and end.
    // HTTP connections keep reading: a request that arrives meanwhile on a keep-alive
    // connection is answered 503 `shutting_down` instead of meeting EOF. Once only
    // idle connections are left (or at shutdown_timeout_ms) the rest are cut.
    registry.shutdown_reads_for_drain();
    let grace = Duration::from_millis(ctx.settings.shutdown_timeout_ms);
    if !wait_until(&registry, grace, || conn::drained(&ctx, &registry)).await {
        tracing::warn!(
            open = registry.len(),
            "connections still open after shutdown_timeout_ms; cutting them"
        );
    }
    registry.shutdown_all(libc::SHUT_RDWR);
    wait_until(&registry, Duration::from_secs(5), || registry.is_empty()).await;
}

/// How often a drain re-checks what other reactors' connections are doing (their
/// ends wake only their own reactor).
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Waits until `done()` holds, re-checking whenever a connection of this reactor ends
/// or turns idle, and every [`DRAIN_POLL`]; false if it still does not hold after
/// `within`.
async fn wait_until(registry: &conn::Registry, within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        let ended = registry.ended.notified();
        let _ = tokio::time::timeout_at(deadline.min(now + DRAIN_POLL), ended).await;
    }
    true
}

async fn accept_loop(
    id: usize,
    listener: Listener,
    kind: Kind,
    ctx: Arc<NetCtx>,
    registry: Rc<conn::Registry>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                if ctx.shutting_down.load(Ordering::Relaxed) {
                    return;
                }
                tracing::warn!(error = %e, "accept failed");
                // EMFILE and friends: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if ctx.shutting_down.load(Ordering::Relaxed) {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let Some(source) = SourceGuard::admit(&ctx, peer.ip()) else {
            let msg = refusal_message(
                kind,
                "too_many_connections_from_ip",
                "connections_per_ip_max",
                ctx.settings.connections_per_ip_max,
            );
            refuse_over_limit(kind, stream, msg, &ctx, &registry);
            continue;
        };
        if !conn::admit(&ctx) {
            let msg = refusal_message(
                kind,
                "too_many_connections",
                "connections_max",
                ctx.settings.connections_max,
            );
            refuse_over_limit(kind, stream, msg, &ctx, &registry);
            continue;
        }
        let admitted = Admitted::new(&ctx.gauges);
        let load = ctx.balance.place(id);
        if load.reactor() == id {
            start(kind, stream, peer, &ctx, &registry, source, load, admitted);
            continue;
        }
        // Another reactor serves fewer connections: it serves this one (see `balance`).
        let failed = match stream.into_std() {
            Ok(stream) => {
                let h = Handoff {
                    kind,
                    stream,
                    peer,
                    source,
                    load,
                    admitted,
                };
                match ctx.balance.hand_over(h) {
                    Ok(()) => {
                        ctx.stats
                            .connections_handed_over_total
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    // That reactor is stopping: this one serves it, or drains it.
                    Err(h) => {
                        let Handoff {
                            stream,
                            source,
                            admitted,
                            ..
                        } = *h;
                        Stream::from_std(ctx.driver, stream).map(|s| (s, source, admitted))
                    }
                }
            }
            Err((e, stream)) => {
                tracing::debug!(error = %e, "cannot hand a connection over; serving it here");
                Ok((stream, source, admitted))
            }
        };
        match failed {
            Ok((stream, source, admitted)) => {
                let load = ctx.balance.keep(id);
                start(kind, stream, peer, &ctx, &registry, source, load, admitted);
            }
            Err(e) => {
                tracing::warn!(error = %e, "lost a connection handed back by a stopping reactor")
            }
        }
    }
}

/// Takes the connections other reactors hand over (see `balance`) until shutdown, and
/// then those already queued, which are served and drained like any other.
async fn adopt_loop(
    mut handoffs: UnboundedReceiver<Handoff>,
    ctx: Arc<NetCtx>,
    registry: Rc<conn::Registry>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            h = handoffs.recv() => match h {
                Some(h) => adopt(h, &ctx, &registry),
                None => return,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    // `recv` after `close` ends only once no send is in flight (`try_recv` could miss
    // one that has passed the closed check and not yet queued its connection).
    handoffs.close();
    while let Some(h) = handoffs.recv().await {
        adopt(h, &ctx, &registry);
    }
}

fn adopt(h: Handoff, ctx: &Arc<NetCtx>, registry: &Rc<conn::Registry>) {
    match Stream::from_std(ctx.driver, h.stream) {
        Ok(stream) => start(
            h.kind, stream, h.peer, ctx, registry, h.source, h.load, h.admitted,
        ),
        // Only epoll's registration can fail (ENOMEM, the fd limit); the socket closes
        // and its slot is given back (`Admitted`).
        Err(e) => tracing::warn!(error = %e, "cannot take a connection handed over"),
    }
}

/// Serves an accepted, admitted connection on this reactor: at once, or after its TLS
/// handshake on a TLS listener. `load` counts it here until it ends; its slot under
/// `connections_max` passes from `admitted` to the guard of `conn` its task makes.
#[allow(clippy::too_many_arguments)]
fn start(
    kind: Kind,
    stream: Stream,
    peer: SocketAddr,
    ctx: &Arc<NetCtx>,
    registry: &Rc<conn::Registry>,
    source: SourceGuard,
    load: Load,
    admitted: Admitted,
) {
    admitted.served();
    let (ctx, registry) = (ctx.clone(), registry.clone());
    match kind.tls_config(&ctx) {
        None => {
            tokio::task::spawn_local(async move {
                serve(kind, stream, peer, ctx, registry, source).await;
                drop(load);
            });
        }
        Some((config, tls)) => {
            tokio::task::spawn_local(async move {
                let fd = stream.as_raw_fd();
                let guard = conn::HandshakeGuard::new(registry.clone(), fd, ctx.clone());
                match super::tls::accept(stream, config, &ctx, &tls.stats).await {
                    super::tls::Accepted::Tls(stream) => {
                        guard.hand_over();
                        serve(kind, stream, peer, ctx, registry, source).await;
                    }
                    super::tls::Accepted::Plaintext(stream) => {
                        refuse(stream, plaintext_refusal(kind), guard).await;
                    }
                    super::tls::Accepted::Failed | super::tls::Accepted::Gone => {}
                }
                drop(load);
            });
        }
    }
}

/// Serves an accepted connection (after its TLS handshake, on a TLS listener).
async fn serve(
    kind: Kind,
    stream: Stream,
    peer: SocketAddr,
    ctx: Arc<NetCtx>,
    registry: Rc<conn::Registry>,
    source: SourceGuard,
) {
    match kind {
        Kind::Tcp => tcp::serve(stream, peer, ctx, registry, Mode::OneWay, source).await,
        Kind::TcpAcked => tcp::serve(stream, peer, ctx, registry, Mode::Acked, source).await,
        Kind::Syslog => tcp::serve(stream, peer, ctx, registry, Mode::Syslog, source).await,
        Kind::Relp => relp::serve(stream, peer, ctx, registry, source).await,
        Kind::Http => http::serve(stream, peer, ctx, registry, source).await,
    }
}

/// Refuses a connection over `connections_max` or `connections_per_ip_max`, telling
/// it why (`msg`) within bounds: registered (so shutdown covers it) and capped by
/// `refusals_in_flight_max`. A TLS listener's client is told nothing (a plain-text
/// reason before its handshake would be noise to it): it is closed, and counted.
fn refuse_over_limit(
    kind: Kind,
    stream: Stream,
    msg: Vec<u8>,
    ctx: &Arc<NetCtx>,
    registry: &Rc<conn::Registry>,
) {
    let msg = if kind.tls_config(ctx).is_some() {
        Vec::new()
    } else {
        msg
    };
    let max = ctx.settings.refusals_in_flight_max;
    match conn::RefusalGuard::new(registry.clone(), stream.as_raw_fd(), max) {
        Some(guard) => {
            tokio::task::spawn_local(refuse(stream, msg, guard));
        }
        None => {
            ctx.stats
                .refusals_unlingered_total
                .fetch_add(1, Ordering::Relaxed);
            refuse_at_once(&stream, &msg);
        }
    }
}

/// What a client that speaks plain text to TLS listener `kind` is told, in that
/// listener's protocol.
fn plaintext_refusal(kind: Kind) -> Vec<u8> {
    const WHY: &str = "this listener speaks TLS; connect with TLS";
    match kind {
        // Syslog has no way to say it: the connection is closed (and counted).
        Kind::Syslog => Vec::new(),
        Kind::Relp => {
            let mut out = Vec::new();
            syslog::relp::write_rsp(&mut out, 1, 500, &format!("tls_required {WHY}"), b"");
            out.extend_from_slice(syslog::relp::SERVERCLOSE);
            out
        }
        Kind::Tcp | Kind::TcpAcked => format!("error - tls_required {WHY}\n").into_bytes(),
        Kind::Http => {
            let e = http_proto::HttpError::new(400, "tls_required", format!("{WHY} (https://)"));
            let mut out = Vec::new();
            http_proto::refusal(&mut out, &e, &[]);
            out
        }
    }
}

/// What a connection over a connection limit (`setting`, `max`) is told on listener `kind`.
fn refusal_message(kind: Kind, code: &'static str, setting: &str, max: usize) -> Vec<u8> {
    match kind {
        // Syslog has no way to say it: the connection is just closed (and counted).
        Kind::Syslog => Vec::new(),
        // A RELP client's first command is always `open` with TXNR 1: answer it now.
        Kind::Relp => {
            let mut out = Vec::new();
            let why = format!("{code} {setting} ({max}) reached");
            syslog::relp::write_rsp(&mut out, 1, 500, &why, b"");
            out.extend_from_slice(syslog::relp::SERVERCLOSE);
            out
        }
        Kind::Tcp | Kind::TcpAcked => {
            format!("error - {code} {setting} ({max}) reached\n").into_bytes()
        }
        Kind::Http => http_proto::limit_refusal(code, setting, max),
    }
}

/// Past `refusals_in_flight_max`: writes the reason without waiting (a fresh socket's
/// send buffer takes a few hundred bytes whole), half-closes, and reads what the client
/// already sent, so that closing does not reset the connection over unread bytes. The
/// client may still send more before the socket closes, and then a reset can destroy
/// the reason before it is read; that is why this is only the overflow path (counted
/// in `refusals_unlingered_total`).
fn refuse_at_once(stream: &Stream, msg: &[u8]) {
    let fd = stream.as_raw_fd();
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: `stream` is open for the whole function, so fd is its socket; the
    // buffers are valid for the lengths given.
    unsafe {
        libc::send(fd, msg.as_ptr().cast(), msg.len(), flags);
        libc::shutdown(fd, libc::SHUT_WR);
        let mut buf = [0u8; 4096];
        while libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) > 0 {}
    }
}

/// Tells a connection over `connections_max` why it is closed (`msg`), with a bounded
/// wait.
async fn refuse<G>(stream: Stream, msg: Vec<u8>, guard: G) {
    let fd = stream.as_raw_fd();
    // Write the reason, half-close, and read what the client already sent until it
    // closes too: closing with unread data would send a RST that can destroy the
    // reason before the client reads it. Bounded to one second in all.
    let polite = async {
        if !msg.is_empty() {
            let (res, _) = stream.write_all(msg).await;
            res?;
        }
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut buf = Vec::with_capacity(4096);
        loop {
            let (res, b) = stream.read_spare(buf).await;
            buf = b;
            buf.clear();
            if res? == 0 {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(1), polite)
        .await
        .is_err()
    {
        // SAFETY: `stream` is alive here, so fd is its socket.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
    // Unregistered before the socket closes, so shutdown never touches a reused fd.
    drop(guard);
}
