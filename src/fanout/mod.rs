//! The fan-out core: committed records to WebSocket subscribers.
//!
//! One thread, pinned (see [`crate::serve::Placement`]), running a mio event loop with
//! its own WebSocket listener (`ws_addr`, path `/v1/stream`; tungstenite over
//! non-blocking sockets). Everything here lives on that thread: the types are not
//! `Send` on purpose (`Rc`), and nothing a subscriber does reaches the writer or the
//! reactors.
//!
//! # How committed records reach subscribers
//!
//! - **Wake-up**: the writer publishes the committed end in an atomic (as it always
//!   did) and, only when this core announced that it is about to sleep
//!   ([`crate::wal::CommitFollower::prepare_sleep`]), writes an eventfd that this loop
//!   polls. No lock on the commit path; a busy fan-out costs the writer one load.
//!   Each partition's log has its own eventfd; the loop announces its sleep on the
//!   default stream's partition 0 and on every partition a subscriber follows.
//! - **Other partitions, and merged subscriptions**: the windows below follow the
//!   default stream's partition 0 alone; a subscriber of another partition, or of a
//!   whole stream merged, reads that partition's log with its own reader (merged: one
//!   per partition, taking turns message by message: `Sub::rotate`).
//! - **Live, from memory**: one tail reader follows the committed end through the
//!   log's recent groups (the writer's own buffers, handed over at commit: see
//!   `wal::recent`; under direct writes the page cache does not hold them) and decodes and renders each record once into the [`window::Window`]
//!   (bounded by `fanout_window_bytes_max`). It reads ahead only when a subscriber
//!   that can take more waits at the window's end (the leader), so nothing is decoded
//!   for nobody. A subscriber whose cursor is in the window is served from it;
//!   unfiltered subscribers at a chunk boundary share one rendered message. Copying
//!   out of the recent groups costs this core, not the writer's.
//! - **Catch-up, from the files**: a subscriber whose cursor is below the window (it
//!   asked for old records, or fell behind) reads the segment files with a
//!   [`crate::wal::Reader`] of its own, at its own pace, until it reaches the window.
//! - **Binary, shared**: `format=binary` messages are the stored frames as they are,
//!   so nothing is rendered, and unfiltered ones are read once and shared from the
//!   binary window ([`frames::FrameWindow`]); a filtered binary subscriber, or one not
//!   yet on a shared message, reads with its own reader ([`frames::build`]).
//! - **Flow control**: a subscriber has at most one message in flight (at most
//!   `subscriber_send_buffer_bytes`, the size of its socket's send buffer too). The next
//!   is built only once the last was handed to the kernel, so a slow subscriber just
//!   falls behind; its lag is in `/stats`. One whose socket stays unwritable for
//!   `subscriber_stall_ms_max` is closed with code 4008 `stalled`; it may resume with
//!   `from=<next>`.
//! - **WSS** (`ws_tls`): each subscriber's bytes go through a rustls session
//!   (`transport::Transport`) made at accept from the certificates then in force;
//!   it keeps the flow control above (`WouldBlock` while ciphertext waits). Plain
//!   subscribers go through the same enum, one match per read or write call.

pub mod aggregates;
mod catchup;
mod ctx;
mod handshake;
mod lifecycle;
mod source;
mod subscriber;
mod tail;
mod transport;
mod wire;
pub use ctx::FanoutCtx;
pub mod frames;

#[doc(hidden)]
pub mod fuzzing;
pub mod window;

use std::{
    io::{self, Write},
    net::SocketAddr,
    os::fd::AsRawFd,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use mio::{Events, Interest, Poll, Token, Waker, net::TcpStream, unix::SourceFd};
use tungstenite::protocol::WebSocketConfig;

use crate::query::{filter as query, render};

use self::{
    frames::FrameWindow,
    source::Windows,
    subscriber::{Limits, Ready, SendError, Sent, Sub},
    transport::Transport,
    window::Window,
    wire::Violation,
};
use crate::{
    http_proto,
    wal::{CommitFollower, Reader},
};

pub use crate::query::STREAM_PATH;
/// Close code for a subscriber that stalled past `subscriber_stall_ms_max`.
pub const CLOSE_STALLED: u16 = 4008;
/// Close code when the log could not be read for a subscriber.
pub const CLOSE_READ_ERROR: u16 = 1011;
/// Close code of a subscription whose `until` was reached: every record in its range
/// was sent (a normal closure).
pub const CLOSE_UNTIL_REACHED: u16 = 1000;
/// Close code for a subscriber that sent a message over `ws_message_bytes_max`.
pub const CLOSE_TOO_LARGE: u16 = 1009;
/// Messages one subscriber may be sent per loop turn, so that one fast reader does not
/// hold up the others.
const MESSAGES_PER_TURN: usize = 4;
/// Records scanned per message for a filtered subscriber, so that a filter matching
/// nothing cannot hold the loop.
const SCAN_PER_MESSAGE: usize = 50_000;
/// Chunks the tail reader decodes per loop turn.
const TAIL_CHUNKS_PER_TURN: usize = 8;
/// How long a refused connection is kept for its peer to read the refusal.
const REFUSED_LINGER: Duration = Duration::from_secs(2);

/// The limits tungstenite applies to every subscriber: messages and frames within
/// `ws_message_bytes_max`; nothing buffered for writing beyond what the loop queues.
fn ws_config(s: &crate::config::FanoutSettings) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(s.ws_message_bytes_max))
        .max_frame_size(Some(s.ws_message_bytes_max))
}

const LISTENER: Token = Token(0);
const COMMIT: Token = Token(1);
const STOP: Token = Token(2);
const FIRST_SUB: usize = 16;

/// The running fan-out thread.
#[derive(Debug)]
pub struct FanoutHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl FanoutHandle {
    /// Delivers what is committed (for at most `fanout_stop_drain_ms`), closes every subscriber with
    /// 1001 "server shutting down", and joins the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds the WebSocket listener (non-blocking), so that errors are reported before
/// the threads start.
///
/// # Errors
/// The OS error from bind or listen.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Starts the fan-out thread on `core` (if given).
///
/// # Errors
/// The OS error creating the poller, the eventfd or the thread.
pub fn spawn(
    listener: std::net::TcpListener,
    core: Option<usize>,
    ctx: Arc<FanoutCtx>,
) -> io::Result<FanoutHandle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
    // One eventfd per partition, all on the COMMIT token: whichever followed
    // partition commits wakes the loop, which then looks at every committed end.
    let followers = ctx
        .streams
        .all()
        .iter()
        .map(|p| p.log.follower())
        .collect::<io::Result<Vec<_>>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut listener = mio::net::TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    for f in &followers {
        poll.registry()
            .register(&mut SourceFd(&f.fd()), COMMIT, Interest::READABLE)?;
    }
    let stop2 = stop.clone();
    // Before the thread starts, so that the aggregates count every record committed
    // once `serve` says it listens.
    let aggregator = aggregates::Aggregator::new(ctx.aggregates.clone(), ctx.log.clone());
    let thread = std::thread::Builder::new()
        .name("rs-fanout".into())
        .spawn(move || {
            if let Some(c) = core
                && !core_affinity::set_for_current(core_affinity::CoreId { id: c })
            {
                tracing::warn!(core = c, "could not pin the fan-out thread");
            }
            set_nice(ctx.settings.fanout_nice);
            let mut f = Fanout::new(ctx, poll, listener, followers, stop2, aggregator);
            f.run();
        })?;
    Ok(FanoutHandle {
        stop,
        waker,
        thread: Some(thread),
    })
}

/// Lowers this thread's scheduling priority (Linux nice values are per thread), so
/// that under CFS the fan-out gets only the CPU time the reactors and the writer leave
/// idle: at nice 10 it weighs about a tenth of a data-path thread on a shared core.
fn set_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: gettid and setpriority have no memory-safety preconditions.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if r != 0 {
        tracing::warn!(nice, error = %io::Error::last_os_error(), "could not lower the fan-out thread's priority");
    }
}

/// The event loop's state. Lives on the fan-out thread.
struct Fanout {
    ctx: Arc<FanoutCtx>,
    poll: Poll,
    listener: mio::net::TcpListener,
    /// The wake-ups of every partition's commits, indexed as
    /// [`crate::streams::StreamViews::all`] (the default stream's partition 0 first).
    followers: Vec<CommitFollower>,
    /// Every partition's committed end, read once per turn, indexed the same way.
    ends: Vec<u64>,
    /// The followers announced asleep this turn (`prepare_sleep` said yes).
    prepared: Vec<usize>,
    /// Which partitions an open subscriber follows, found before each sleep (indexed
    /// as `followers`; kept to not allocate per turn).
    followed: Vec<bool>,
    stop: Arc<AtomicBool>,
    /// Subscribers by token - FIRST_SUB; `None` slots are free.
    subs: Vec<Option<Sub>>,
    free: Vec<usize>,
    open: usize,
    /// Recent committed records, while anyone subscribes.
    window: Option<Window>,
    /// Refused connections kept until the peer closes (or [`REFUSED_LINGER`]), so that
    /// closing with its request unread does not reset the connection before it reads
    /// the refusal. At most `subscribers_max`.
    refused: Vec<(TcpStream, Instant)>,
    /// Subscribers whose input was left unread by the per-turn bound.
    more_input: Vec<usize>,
    /// The reader that fills the window.
    tail: Option<Reader>,
    /// Recent unfiltered binary messages, while an unfiltered binary subscriber is
    /// open.
    binary: Option<FrameWindow>,
    /// The certificates, when the listener speaks TLS (`ws_tls`): each accepted
    /// connection takes the configuration in force then.
    tls: Option<Arc<crate::tls::Tls>>,
    /// Per-subscriber message budget and SO_SNDBUF.
    budget: usize,
    limits: Limits,
    ws_config: WebSocketConfig,
    /// Counts every committed record into the dashboard's aggregates.
    aggregator: aggregates::Aggregator,
}

impl Fanout {
    fn new(
        ctx: Arc<FanoutCtx>,
        poll: Poll,
        listener: mio::net::TcpListener,
        followers: Vec<CommitFollower>,
        stop: Arc<AtomicBool>,
        aggregator: aggregates::Aggregator,
    ) -> Self {
        let s = &ctx.settings;
        let budget = s.subscriber_send_buffer_bytes;
        let ws_config = ws_config(s);
        Fanout {
            budget,
            limits: Limits {
                stall: Duration::from_millis(s.subscriber_stall_ms_max),
                handshake: Duration::from_millis(s.ws_handshake_timeout_ms),
                tls_handshake: Duration::from_millis(s.tls_handshake_timeout_ms),
            },
            tls: ctx.tls.clone().filter(|_| s.ws_tls),
            ws_config,
            aggregator,
            ctx,
            poll,
            listener,
            ends: followers
                .iter()
                .map(CommitFollower::committed_end)
                .collect(),
            prepared: Vec::with_capacity(followers.len()),
            followed: vec![false; followers.len()],
            followers,
            stop,
            subs: Vec::new(),
            free: Vec::new(),
            open: 0,
            window: None,
            tail: None,
            binary: None,
            refused: Vec::new(),
            more_input: Vec::new(),
        }
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut busy = false;
        let mut stop_deadline: Option<Instant> = None;
        loop {
            let mut timeout = if self.open == 0 && self.refused.is_empty() {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(100)
            };
            #[cfg(feature = "failpoints")]
            if self.open > 0 {
                timeout = crate::wal::failpoints::fanout_poll(timeout);
            }
            // Ask the writers for a wake-up only while someone waits for records.
            if busy || (self.open > 0 && !self.prepare_sleep()) {
                timeout = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "fan-out poll failed; subscribers are dropped");
                return;
            }
            for &k in &self.prepared {
                self.followers[k].woke();
            }
            self.prepared.clear();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    COMMIT | STOP => {}
                    Token(t) => self.on_event(t - FIRST_SUB),
                }
            }
            let more = std::mem::take(&mut self.more_input);
            for &i in &more {
                self.on_event(i);
            }
            let stopping = self.stop.load(Ordering::Acquire);
            if stopping && stop_deadline.is_none() {
                stop_deadline = Some(
                    Instant::now() + Duration::from_millis(self.ctx.settings.fanout_stop_drain_ms),
                );
                let _ = self.poll.registry().deregister(&mut self.listener);
            }
            // Before the committed end, for subscriptions with `until` (see `Sub::until_reached`).
            let clock = crate::wal::now_ns();
            for (e, f) in self.ends.iter_mut().zip(&self.followers) {
                *e = f.committed_end();
            }
            let end = self.ends[0];
            busy = self.fill_window(end);
            let subscribers_want_more = self.pump(clock);
            busy |= subscribers_want_more;
            // Subscribers first: while they can take more, the aggregates count less
            // per turn (they catch up, into the right seconds, when the load eases).
            busy |= self.aggregator.turn(end, subscribers_want_more);
            busy |= !self.more_input.is_empty() || !more.is_empty();
            self.timers();
            self.drain_refused();
            self.publish_gauges();
            if let Some(d) = stop_deadline
                && (!busy || Instant::now() >= d)
            {
                self.close_all();
                return;
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "WebSocket accept failed");
                    return;
                }
            };
            if self.open >= self.ctx.settings.subscribers_max {
                self.refuse_full(stream);
                continue;
            }
            let stream = Rc::new(stream);
            let transport = match &self.tls {
                None => Transport::plain(stream.clone()),
                Some(tls) => match Transport::tls(
                    stream.clone(),
                    tls.config(crate::tls::ClientAuth::Web),
                    tls.stats.clone(),
                    self.budget,
                ) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, %peer, "could not start a TLS session");
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(self.budget);
            let i = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.subs.push(None);
                    self.subs.len() - 1
                }
            };
            let fd = stream.as_raw_fd();
            if let Err(e) = self.poll.registry().register(
                &mut SourceFd(&fd),
                Token(i + FIRST_SUB),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!(error = %e, %peer, "could not register a subscriber");
                self.free.push(i);
                continue;
            }
            self.subs[i] = Some(Sub::accept(stream, transport, &self.ctx, self.ws_config));
            self.open += 1;
            // The request may already be there.
            self.on_event(i);
        }
    }

    /// Answers a connection past `subscribers_max` with 503 and lets it linger.
    fn refuse_full(&mut self, stream: TcpStream) {
        self.ctx
            .stats
            .ws_subscribers_refused_total
            .fetch_add(1, Ordering::Relaxed);
        // Under TLS the 503 could only be read after a full TLS handshake, which is what
        // a flood of connections would make this thread spend: the connection is just
        // closed (FIN after its input is drained, not a reset).
        if self.tls.is_none() {
            let max = self.ctx.settings.subscribers_max;
            let out = http_proto::limit_refusal("too_many_subscribers", "subscribers_max", max);
            // Best effort: a fresh socket's buffer takes a small response whole.
            let _ = (&stream).write(&out);
        }
        self.linger(stream);
    }

    /// Readiness on subscriber `i`: progress its handshake, read what it sent (pings,
    /// close), write what is queued.
    fn on_event(&mut self, i: usize) {
        let Some(sub) = self.subs.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        match sub.on_ready(&self.ctx.stats) {
            Ready::Keep => {}
            Ready::MoreInput => self.more_input.push(i),
            Ready::Violation(v) => {
                let st = &self.ctx.stats;
                let counter = match v {
                    Violation::TooLarge => &st.ws_message_too_large_total,
                    Violation::Protocol | Violation::NotUtf8 => &st.ws_protocol_errors_total,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let (code, reason) = v.close();
                self.close_unreadable(i, code, reason);
            }
            Ready::Drop => self.remove(i),
            Ready::Plaintext => self.refuse_plaintext(i),
        }
    }

    /// Drops subscriber `i`; a TLS session is ended with close_notify first.
    fn remove(&mut self, i: usize) {
        if let Some(sub) = self.take(i) {
            sub.close_notify();
        }
    }

    /// Takes subscriber `i` out of the loop (its slot freed, its socket deregistered)
    /// and hands it over.
    fn take(&mut self, i: usize) -> Option<Sub> {
        let sub = self.subs[i].take()?;
        let fd = sub.stream.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        self.free.push(i);
        self.open -= 1;
        Some(sub)
    }

    /// Asks the writers of the partitions someone follows for a wake-up at their next
    /// commit (the default stream's partition 0 whenever anyone subscribes, as before
    /// streams; the others only while a subscriber follows them). The aggregates need
    /// none: the writer notes each commit's time itself
    /// (`wal::LogView::take_commit_note`), and with no subscriber they are counted on
    /// the 1 s timeout. Returns false if a followed partition committed past what this
    /// turn delivered against (`ends`): the loop must not sleep.
    fn prepare_sleep(&mut self) -> bool {
        self.followed.fill(false);
        self.followed[0] = true;
        for s in self.subs.iter().flatten().filter(|s| s.is_open()) {
            for (part, _) in s.cursors() {
                self.followed[part] = true;
            }
        }
        for k in 0..self.followers.len() {
            if !self.followed[k] {
                continue;
            }
            if !self.followers[k].prepare_sleep(self.ends[k]) {
                return false;
            }
            self.prepared.push(k);
        }
        true
    }

    /// Sends every open subscriber what it can take. Returns true if some subscriber
    /// has more to take right now.
    fn pump(&mut self, clock_ns: u64) -> bool {
        let mut more = false;
        for i in 0..self.subs.len() {
            match self.pump_one(i) {
                Ok(m) => {
                    more |= m;
                    if self.subs[i]
                        .as_ref()
                        .is_some_and(|s| s.is_open() && s.until_reached(&self.ends, clock_ns))
                    {
                        self.begin_close(i, CLOSE_UNTIL_REACHED, "until reached");
                    }
                }
                Err(SendError::Connection) => self.remove(i),
                Err(SendError::Read(e)) => {
                    tracing::error!(error = %e, "closing a subscriber: the log could not be read");
                    self.begin_close(i, CLOSE_READ_ERROR, "log read error");
                }
            }
        }
        more
    }

    /// Sends subscriber `i` up to [`MESSAGES_PER_TURN`] messages. Returns true if it
    /// could take more right now.
    fn pump_one(&mut self, i: usize) -> Result<bool, SendError> {
        let Some(sub) = self.subs[i].as_mut().filter(|s| s.is_open()) else {
            return Ok(false);
        };
        if !sub.shares_windows() {
            return pump_own(&self.ctx, sub, &self.ends, self.budget);
        }
        let end = self.ends[0];
        let mut windows = Windows {
            json: self.window.as_mut(),
            binary: &mut self.binary,
            committed_end: end,
            budget: self.budget,
            scan_max: SCAN_PER_MESSAGE,
        };
        for _ in 0..MESSAGES_PER_TURN {
            if sub.blocked_since.is_some() || sub.cursor >= end {
                return Ok(false);
            }
            let source = windows.source(sub);
            let Some(built) = windows.build(&self.ctx, sub, source)? else {
                return Ok(false); // the tail will bring it
            };
            match sub.send(built)? {
                Sent::Message(records) => count_sent(&self.ctx, records),
                Sent::Skipped => {}
                Sent::Nothing => return Ok(false), // nothing readable yet
            }
        }
        Ok(sub.blocked_since.is_none() && sub.cursor < end)
    }
}

fn count_sent(ctx: &FanoutCtx, records: u64) {
    let st = &ctx.stats;
    st.ws_messages_sent_total.fetch_add(1, Ordering::Relaxed);
    st.ws_records_sent_total
        .fetch_add(records, Ordering::Relaxed);
}

/// [`Fanout::pump_one`] for a subscriber the shared windows do not serve (another
/// partition than the default stream's 0, or a merged subscription): up to
/// [`MESSAGES_PER_TURN`] messages read with its own reader. A merged subscription
/// moves on to its next partition after each message and past each partition that
/// has nothing to read, so that a busy partition cannot starve the others; each
/// message holds records of one partition, in that partition's order.
fn pump_own(
    ctx: &FanoutCtx,
    sub: &mut Sub,
    ends: &[u64],
    budget: usize,
) -> Result<bool, SendError> {
    let mut binary = None;
    // At most MESSAGES_PER_TURN reads (sent or filtered out), as for any subscriber,
    // however many partitions it follows; the turn ends early after a round of its
    // partitions with nothing to read (a look at a committed end, or a read finding
    // nothing new, is cheap).
    let (mut reads, mut idle) = (0, 0);
    while reads < MESSAGES_PER_TURN && idle < sub.lanes() {
        if sub.blocked_since.is_some() {
            break;
        }
        let end = ends[sub.part];
        let mut outcome = Sent::Nothing;
        if sub.cursor < end {
            let mut windows = Windows {
                json: None,
                binary: &mut binary,
                committed_end: end,
                budget,
                scan_max: SCAN_PER_MESSAGE,
            };
            let source = windows.source(sub);
            if let Some(built) = windows.build(ctx, sub, source)? {
                outcome = sub.send(built)?;
            }
        }
        match outcome {
            Sent::Message(records) => {
                count_sent(ctx, records);
                (reads, idle) = (reads + 1, 0);
            }
            // Filtered out: the cursor moved on.
            Sent::Skipped => (reads, idle) = (reads + 1, 0),
            Sent::Nothing => idle += 1,
        }
        sub.rotate();
    }
    let behind = sub.cursor < ends[sub.part] || sub.others.iter().any(|l| l.cursor < ends[l.part]);
    Ok(sub.blocked_since.is_none() && behind)
}
