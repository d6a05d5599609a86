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
//! `now - sent` (service time) in the worker's histograms; the corrected latency goes
//! first into the worker's histogram of the current second, which is added into the
//! run's total and shipped to the main thread for the time series once the second is
//! over ([`crate::series`]).
//!
//! # TLS
//!
//! With [`EngineConfig::tls`], [`connect`] makes the TLS handshake right after the TCP
//! connect, on the still blocking socket: before the run's clock starts for the first
//! connections, inside the reconnect for later ones, exactly where the TCP connect
//! already is. A connection then carries its rustls `ClientConnection`; the write
//! path hands the write buffer to rustls instead of the socket
//! ([`crate::tls::write_sealed`]) and the read path takes plaintext out of rustls
//! into the same receive buffer ([`crate::tls::read_plain`]), so batches, framing and
//! parsing are the same. Without TLS the only difference is one `Option` test per
//! read and per write.
//!
//! # Layout
//!
//! | module | what |
//! |--------|------|
//! | this one | settings ([`EngineConfig`], [`Mode`], [`Load`], [`Stop`]); the state a worker keeps per connection ([`Conn`], [`Pending`]), here so that every part below reads its fields; [`run`]: connect, spawn the workers, watch them |
//! | [`conn`] | a connection's life cycle: set-up, connecting and reconnecting, losing a socket |
//! | [`send`] | open- and closed-loop scheduling, building batches (per protocol), writing them |
//! | [`recv`] | reading: ringstash's ack and error lines, HTTP responses |
//! | [`worker`] | the poll loop, each connection's state machine, recording completions |
//! | [`progress`] | counters for the progress line and the [`Observer`] hooks |
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

mod conn;
mod progress;
mod recv;
mod send;
mod worker;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Barrier,
        atomic::{AtomicU64, Ordering},
        mpsc::Sender,
    },
    thread::JoinHandle,
    time::Duration,
};

use self::worker::Worker;
pub use self::{
    conn::{Connected, connect},
    progress::{NoObserver, Observer, Progress},
};
use mio::{Token, net::TcpStream};
use rustls::ClientConnection;

use crate::{
    clock::mono_ns,
    pace::Schedule,
    proto::ReadBuf,
    series::{HistogramPool, SecondRecorder, SeriesBuilder, SeriesPoint, Slice},
    stats::Stats,
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
    /// Speak TLS on every connection (`--tls-ca`); plain TCP if `None`.
    pub tls: Option<crate::tls::TlsClient>,
}

/// Bytes of unsent data a connection buffers before it stops building batches.
pub const WBUF_BYTES_SOFT_MAX: usize = 4 << 20;

/// Size of each connection's receive buffer (acks and responses are small).
pub const RBUF_BYTES: usize = 64 << 10;

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
    /// TLS: the session over `sock`, made with it and dropped with it. Boxed: rustls's
    /// state is large and only TLS runs carry it.
    tls: Option<Box<ClientConnection>>,
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
    /// TLS: plaintext bytes rustls has taken (encrypted) on this socket; they count in
    /// `sock_written` once rustls holds none of their ciphertext.
    sock_sealed: u64,
    /// The server announced it is closing (`error - <code>`), so its EOF is no surprise.
    server_closing: bool,
    state: State,
    reconnect_at: Option<u64>,
    /// When the connection was lost and not yet re-established.
    lost_since: Option<u64>,
    /// HTTP request head up to the `Content-Length` value.
    http_head: Vec<u8>,
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
    /// The window second by second (see [`crate::series`]).
    pub series: Vec<SeriesPoint>,
    /// TLS: what the first connection negotiated, and how long the first
    /// connections' set-ups took (before the clock started).
    pub tls: Option<crate::tls::TlsRun>,
}

/// A worker thread's handle; it returns the stats of its connections.
type WorkerHandle = JoinHandle<std::io::Result<Stats>>;

/// What the main thread shares with the workers.
#[derive(Clone)]
struct Shared {
    corpus: Arc<Corpus>,
    progress: Arc<Progress>,
    /// Every worker and the main thread meet here before the clock starts.
    barrier: Arc<Barrier>,
    /// The run's start on the monotonic clock, stored before the barrier.
    start_ns: Arc<AtomicU64>,
    /// Where workers ship their seconds for the time series (see [`crate::series`]).
    series_tx: Sender<Slice>,
    /// Reset per-second histograms, reused between workers and the series builder.
    histograms: HistogramPool,
}

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
    let completion = completion_of(cfg);
    anyhow::ensure!(
        cfg.mode != Mode::WsE2e || cfg.e2e.is_some(),
        "ws-e2e needs the subscribers' shared state"
    );
    anyhow::ensure!(cfg.connections > 0, "need at least one connection");
    anyhow::ensure!(cfg.batch_records > 0, "need at least one record per batch");
    anyhow::ensure!(cfg.inflight > 0, "need at least one batch in flight");
    let threads = cfg.threads.clamp(1, cfg.connections);
    // Connect everything first (TLS handshakes included), so connection set-up is
    // not measured and a server that is not there fails fast.
    let mut socks = Vec::with_capacity(cfg.connections);
    let mut setup_ns = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let t0 = mono_ns();
        let s = connect(cfg.addr, cfg.connect_timeout, cfg.tls.as_ref()).map_err(|e| {
            let what = if cfg.tls.is_some() { "TLS " } else { "" };
            anyhow::anyhow!("{what}connection {i} to {}: {e}", cfg.addr)
        })?;
        setup_ns.push(mono_ns() - t0);
        socks.push(s);
    }
    setup_ns.sort_unstable();
    let tls = socks[0].tls.as_deref().map(|c| crate::tls::TlsRun {
        session: crate::tls::TlsSession::of(c),
        setup_us_median: setup_ns[setup_ns.len() / 2] / 1000,
        setup_us_max: setup_ns[setup_ns.len() - 1] / 1000,
    });
    let (series_tx, series_rx) = std::sync::mpsc::channel();
    let histograms = HistogramPool::default();
    let mut series = SeriesBuilder::new(threads, series_rx, histograms.clone());
    let shared = Shared {
        corpus,
        progress: Arc::new(Progress::default()),
        barrier: Arc::new(Barrier::new(threads + 1)),
        start_ns: Arc::new(AtomicU64::new(0)),
        series_tx,
        histograms,
    };
    let handles = spawn_workers(cfg, &shared, socks, threads, completion)?;
    let start = mono_ns();
    shared.start_ns.store(start, Ordering::Release);
    shared.barrier.wait();
    let times = Times::of(cfg, start);
    watch(&handles, times, &shared.progress, observer, &mut series);
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
        series: series.finish(duration_s),
        tls,
    })
}

/// What completes a batch in `cfg`'s mode.
fn completion_of(cfg: &EngineConfig) -> Completion {
    match cfg.mode {
        Mode::Tcp => Completion::Written,
        Mode::TcpAcked => Completion::Ack,
        Mode::HttpIngest | Mode::HttpLogs => Completion::Response,
        Mode::WsE2e if cfg.e2e_acked => Completion::Ack,
        Mode::WsE2e => Completion::Written,
    }
}

/// Starts `threads` workers over the connected sockets; each waits on the barrier,
/// then drives its share until every connection is done.
fn spawn_workers(
    cfg: &EngineConfig,
    shared: &Shared,
    socks: Vec<Connected>,
    threads: usize,
    completion: Completion,
) -> std::io::Result<Vec<WorkerHandle>> {
    let mut handles = Vec::with_capacity(threads);
    let mut socks = socks.into_iter().enumerate();
    for t in 0..threads {
        // Contiguous, near-equal shares; every thread gets at least one connection
        // because threads <= connections.
        let share = cfg.connections / threads + usize::from(t < cfg.connections % threads);
        let mine: Vec<(usize, Connected)> = socks.by_ref().take(share).collect();
        let (cfg, shared) = (cfg.clone(), shared.clone());
        handles.push(
            std::thread::Builder::new()
                .name("loadtest-worker".into())
                .spawn(move || worker_main(t, &cfg, &shared, mine, completion))?,
        );
    }
    Ok(handles)
}

/// A worker thread's body: its connections from the start of the run to the end.
fn worker_main(
    worker: usize,
    cfg: &EngineConfig,
    shared: &Shared,
    mine: Vec<(usize, Connected)>,
    completion: Completion,
) -> std::io::Result<Stats> {
    shared.barrier.wait();
    // Acquire pairs with the main thread's Release store, made before it reached the
    // barrier (which orders them on its own too).
    let start = shared.start_ns.load(Ordering::Acquire);
    let times = Times::of(cfg, start);
    let corpus = &*shared.corpus;
    let mut conns: Vec<Conn> = mine
        .into_iter()
        .enumerate()
        .map(|(local, (i, s))| Conn::new(i, mio::Token(local), s, cfg, corpus, times))
        .collect();
    let series = SecondRecorder::new(
        worker,
        times.measure,
        shared.series_tx.clone(),
        shared.histograms.clone(),
    );
    let mut w = Worker::new(cfg, corpus, &shared.progress, times, completion, series);
    let res = w.run(&mut conns);
    // Ships the last second (and adds its latencies into the total) even if the
    // poll loop failed, so the builder learns this worker is done.
    w.series.finish(&mut w.stats.latency_us);
    res?;
    Ok(w.stats)
}

/// The main thread while the workers run: tells `observer` when the warm-up ends
/// and ticks it (every 100 ms once measuring; every 5 ms before, so the measurement
/// start is caught closely) until every worker has finished; meanwhile it summarises
/// the seconds of the time series the workers have shipped.
fn watch(
    handles: &[WorkerHandle],
    times: Times,
    progress: &Progress,
    observer: &mut dyn Observer,
    series: &mut SeriesBuilder,
) {
    let mut measure_started = times.measure == times.start;
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
        observer.tick(progress, Duration::from_nanos(now - times.start));
        series.poll();
    }
    if !measure_started {
        observer.measure_start();
    }
    observer.finished();
}
