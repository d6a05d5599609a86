//! `ringstash serve`: placement, start-up, signals, shutdown.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context;
use tokio::sync::watch;

use crate::{
    config::{CoreChoice, Settings},
    fanout::FanoutCtx,
    net::{NetCtx, reactor},
    stats::Observed,
    streams::Streams,
    wal::{IoDriver, Log},
};

/// Where each role runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Cores available to the process.
    pub cores: usize,
    /// Core of each reactor.
    pub reactors: Vec<usize>,
    /// Core of the group-commit writer.
    pub writer: usize,
    /// Core of the fan-out thread (WebSocket subscribers).
    pub fanout: usize,
}

impl Placement {
    /// The placement rule (docs/architecture.md):
    /// - reactors: `reactor_threads` (0 = one per core), reactor i on core i mod cores;
    /// - writer: the given core, else the first core no reactor uses, else the last
    ///   core (shared with the reactor there: on a small machine the writer mostly
    ///   sleeps in io_uring_enter waiting for fdatasync, so it costs that reactor
    ///   little);
    /// - fan-out: the first core that neither a reactor nor the writer uses (so its own
    ///   core when cores > reactors + 1), else core 0, shared with reactor 0: it works
    ///   only while someone subscribes, and then mostly waits in epoll.
    pub fn compute(cores: usize, reactor_threads: usize, writer: CoreChoice) -> Placement {
        let cores = cores.max(1);
        let n = if reactor_threads == 0 {
            cores
        } else {
            reactor_threads
        };
        let reactors: Vec<usize> = (0..n).map(|i| i % cores).collect();
        let writer = match writer {
            CoreChoice::Core(c) => c,
            CoreChoice::Auto if n < cores => n,
            CoreChoice::Auto => cores - 1,
        };
        let fanout = (0..cores)
            .find(|c| *c != writer && !reactors.contains(c))
            .unwrap_or(0);
        Placement {
            cores,
            reactors,
            writer,
            fanout,
        }
    }

    /// One line for the start-up banner.
    pub fn describe(&self) -> String {
        let shared: Vec<usize> = self
            .reactors
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == self.writer)
            .map(|(i, _)| i)
            .collect();
        let writer = if shared.is_empty() {
            format!("writer core {} (own core)", self.writer)
        } else {
            format!(
                "writer core {} (shared with reactor {:?})",
                self.writer, shared
            )
        };
        let reactors: Vec<String> = self
            .reactors
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{i}->core {c}"))
            .collect();
        let mut fanout_shares: Vec<String> = self
            .reactors
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == self.fanout)
            .map(|(i, _)| format!("reactor {i}"))
            .collect();
        if self.writer == self.fanout {
            fanout_shares.push("writer".into());
        }
        let fanout = if fanout_shares.is_empty() {
            format!("fan-out core {} (own core)", self.fanout)
        } else {
            format!(
                "fan-out core {} (shared with {})",
                self.fanout,
                fanout_shares.join(", ")
            )
        };
        format!(
            "placement: {} cores; reactors {}; {writer}; {fanout}",
            self.cores,
            reactors.join(", ")
        )
    }
}

/// Runs the appliance until SIGINT/SIGTERM (or a writer failure). Returns an error if
/// the writer failed, so the process exits non-zero and a supervisor restarts it.
///
/// The steps run in the order their doc comments give reasons for: the log, then the
/// listeners, then the threads, and on the way out the reverse.
///
/// # Errors
/// A bad setting, an unusable data directory, io_uring unavailable, a bind failure,
/// or the writer failing while serving.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    settings.validate()?;
    let cores = core_affinity::get_core_ids().map(|c| c.len()).unwrap_or(1);
    let placement = Placement::compute(cores, settings.reactor_threads, settings.writer_core);
    // Certificates before the log: a bad file fails start-up before anything opens.
    let tls_stats = Arc::new(crate::stats::TlsStats::default());
    let tls = crate::tls::Tls::from_settings(&settings, tls_stats)
        .context("loading the TLS certificates")?
        .map(Arc::new);
    // Tokens too: a bad token file fails start-up before anything opens.
    let auth_stats = Arc::new(crate::stats::AuthStats::default());
    let auth = crate::auth::Auth::from_settings(&settings, auth_stats)
        .context("loading the tokens")?
        .map(Arc::new);
    let streams = open_streams(&settings, placement.writer)?;
    eprintln!("{}", placement.describe());
    let bound = Bound::bind(&settings, placement.reactors.len())?;
    let running = Running::start(&settings, &placement, &streams, bound, tls, auth)?;
    running.serve(&streams);
    running.stop(&streams)
}

/// Opens (and recovers) every stream's partitions, the default stream's partition 0
/// first, and prints the start-up banner.
fn open_streams(settings: &Settings, writer_core: usize) -> anyhow::Result<Streams> {
    let streams = Streams::open(settings, Some(writer_core))?;
    describe_log(settings, streams.default_log());
    if streams.partitions().len() > 1 {
        let mut line = String::from("streams:");
        for spec in &settings.streams.0 {
            line.push_str(&format!(
                " {} ({} partition{}, key {}, in {})",
                spec.name,
                spec.partitions,
                if spec.partitions == 1 { "" } else { "s" },
                spec.key,
                crate::streams::layout::partition_dir(&settings.data_dir, &spec.name, 0)
                    .parent()
                    .filter(|_| spec.name != crate::streams::DEFAULT_STREAM)
                    .unwrap_or(&settings.data_dir)
                    .display(),
            ));
        }
        eprintln!("{line}");
    }
    for p in &streams.partitions()[1..] {
        let report = p.log.recovery_report();
        for range in &report.damaged_ranges {
            eprintln!(
                "recovery: stream {} partition {}: {range}; not cut (valid records follow), readers skip it",
                p.stream, p.partition
            );
        }
        if report.torn_bytes_cut > 0 {
            eprintln!(
                "recovery: stream {} partition {}: cut {} bytes of torn tail ({})",
                p.stream,
                p.partition,
                report.torn_bytes_cut,
                report.torn_reason.as_deref().unwrap_or("")
            );
        }
        if report.seal_bytes_cut > 0 {
            eprintln!(
                "recovery: stream {} partition {}: {}",
                p.stream,
                p.partition,
                seal_cut_line(report.seal_bytes_cut)
            );
        }
    }
    Ok(streams)
}

/// Prints the start-up banner of the default stream's partition 0 (the data directory).
///
/// The logs open first of all the steps: recovery finishes and the data directory's
/// lock is held before any listener exists, so a producer never connects to a server
/// whose log then fails to open, and a second server on the same directory stops at
/// the lock before it touches a port.
fn describe_log(settings: &Settings, log: &Log) {
    let report = log.recovery_report();
    let (write_mode, refused) = log.write_mode();
    let (driver, why_epoll) = log.io_driver();
    eprintln!(
        "ringstash {}: data_dir={} segments={} next_offset={} fsync={}{} write_mode={} io_driver={}",
        env!("CARGO_PKG_VERSION"),
        settings.data_dir.display(),
        report.segments,
        report.next_offset,
        settings.fsync,
        if settings.fsync.is_durable() {
            ""
        } else {
            " (NOT DURABLE: acks before fdatasync)"
        },
        write_mode.as_str(),
        driver.as_str(),
    );
    // One line that says which driver runs and why.
    match (settings.io_driver, why_epoll) {
        (_, Some(why)) => eprintln!(
            "io_driver: epoll, because io_uring is unavailable: {why} (io_driver = \"auto\"; \"uring\" would refuse to start)"
        ),
        (IoDriver::Auto, None) => {
            eprintln!("io_driver: uring (io_uring set up; io_driver = \"auto\")")
        }
        (asked, None) => eprintln!(
            "io_driver: {} (io_driver = \"{}\")",
            driver.as_str(),
            asked.as_str()
        ),
    }
    if let Some(why) = refused {
        eprintln!("write_mode: direct was asked for, but {why}");
    }
    if let (false, Some(why)) = log.segment_prewrite() {
        eprintln!(
            "segment_prewrite: off, because {why} (segment_prewrite = \"auto\"; true pre-writes anyway)"
        );
    }
    for range in &report.damaged_ranges {
        eprintln!("recovery: {range}; not cut (valid records follow), readers skip it");
    }
    if report.torn_bytes_cut > 0 {
        eprintln!(
            "recovery: cut {} bytes of torn tail ({})",
            report.torn_bytes_cut,
            report.torn_reason.as_deref().unwrap_or("")
        );
    }
    if report.seal_bytes_cut > 0 {
        eprintln!("recovery: {}", seal_cut_line(report.seal_bytes_cut));
    }
}

/// The start-up line for `RecoveryReport::seal_bytes_cut`.
fn seal_cut_line(bytes: u64) -> String {
    format!(
        "cut {bytes} bytes of unwritten zeros after the last record of the segment before the last (its rotation's cut, undone by a power cut; no record lost)"
    )
}

/// Every listening socket, bound before any thread starts: a port in use fails
/// start-up at once, naming the address, and the addresses printed are the bound
/// ones (a port 0 resolved).
struct Bound {
    /// Each reactor's stream listeners (TCP, acked TCP, syslog, RELP, HTTP).
    reactors: Vec<reactor::Listeners>,
    /// Their bound addresses, in [`reactor::Kind::ALL`]'s order.
    addrs: [SocketAddr; reactor::Kind::ALL.len()],
    /// The fan-out core's WebSocket listener.
    ws: std::net::TcpListener,
    ws_addr: SocketAddr,
    /// Syslog over UDP, if `syslog_udp_addr` is set.
    syslog_udp: Option<std::net::UdpSocket>,
}

impl Bound {
    fn bind(settings: &Settings, reactors: usize) -> anyhow::Result<Bound> {
        let wanted = [
            settings.tcp_addr,
            settings.tcp_acked_addr,
            settings.syslog_addr,
            settings.relp_addr,
            settings.http_addr,
        ];
        let (listeners, addrs) = reactor::bind_all(wanted, reactors)?;
        let ws = crate::fanout::bind(settings.ws_addr)
            .with_context(|| format!("binding the WebSocket listener on {}", settings.ws_addr))?;
        let ws_addr = ws.local_addr()?;
        let syslog_udp = match settings.syslog_udp_addr.0 {
            Some(a) => Some(
                crate::net::udp::bind(a)
                    .with_context(|| format!("binding the syslog UDP socket on {a}"))?,
            ),
            None => None,
        };
        Ok(Bound {
            reactors: listeners,
            addrs,
            ws,
            ws_addr,
            syslog_udp,
        })
    }
}

/// Each stage's context: its own settings and the handles it may use
/// (docs/architecture.md, the stage boundaries).
fn contexts(
    settings: &Settings,
    streams: &Streams,
    ws_addr: SocketAddr,
    tls: Option<Arc<crate::tls::Tls>>,
    auth: Option<Arc<crate::auth::Auth>>,
    reactors: usize,
) -> (
    Arc<NetCtx>,
    Arc<FanoutCtx>,
    Vec<tokio::sync::mpsc::UnboundedReceiver<crate::net::balance::Handoff>>,
) {
    let json_policy = crate::net::enrich::JsonPolicy {
        enrich: settings.json_enrich,
        validate: settings.json_validate,
        timestamp_skew_max: Duration::from_millis(settings.json_timestamp_skew_ms_max),
        node_id: if settings.node_id.is_empty() {
            crate::net::enrich::hostname()
        } else {
            settings.node_id.clone()
        },
    };
    let log = streams.default_log();
    let mut observed = Observed::new(log.view());
    let (balance, handoffs) = crate::net::balance::Balance::new(reactors);
    observed.reactor_connections = balance.loads();
    observed.partitions = streams.views();
    observed.streams_memory_bytes = streams
        .partitions()
        .iter()
        .map(|p| crate::streams::partition_memory_bytes(p.log.config()))
        .sum();
    let router = streams.router(&settings.syslog_stream_rules);
    let dests = crate::net::Dests::new(settings, &router);
    if let Some(t) = &tls {
        observed.tls = t.stats.clone();
    }
    if let Some(a) = &auth {
        observed.auth = a.stats.clone();
    }
    let fanout_settings = settings.fanout();
    let aggregates = Arc::new(crate::fanout::aggregates::Aggregates::new(
        &fanout_settings,
        observed.aggregates.clone(),
    ));
    let fanout_ctx = Arc::new(FanoutCtx {
        settings: fanout_settings,
        log: log.view(),
        streams: crate::streams::StreamViews::of(streams),
        stats: observed.fanout.clone(),
        gauges: observed.fanout_gauges.clone(),
        reads: observed.reads.clone(),
        tls: tls.clone(),
        auth: auth.clone(),
        aggregates: aggregates.clone(),
    });
    let ctx = Arc::new(NetCtx {
        tls,
        auth,
        sources: Default::default(),
        driver: log.io_driver().0,
        ws_addr,
        router,
        dests,
        streams: crate::streams::StreamViews::of(streams),
        log: log.view(),
        settings: settings.net(),
        stats: observed.net.clone(),
        gauges: observed.net_gauges.clone(),
        reads: observed.reads.clone(),
        observed,
        shutting_down: AtomicBool::new(false),
        json_policy,
        aggregates,
        balance,
    });
    (ctx, fanout_ctx, handoffs)
}

/// The running stages, in the order [`Running::stop`] stops them.
struct Running {
    reactors: Vec<JoinHandle<()>>,
    /// The syslog UDP thread, if any; it ends with the reactors (`shutting_down`).
    udp: Option<JoinHandle<()>>,
    fanout: crate::fanout::FanoutHandle,
    /// The NATS forwarder, if `nats_url` is set.
    forward: Option<crate::forward::ForwardHandle>,
    ctx: Arc<NetCtx>,
    stop_tx: Arc<watch::Sender<bool>>,
    /// Held while serving: a watch channel without receivers drops what is sent, so
    /// this one keeps the stop signal stored whatever the reactors hold.
    _stop_rx: watch::Receiver<bool>,
}

impl Running {
    /// Starts the reactors, the fan-out thread and the signal thread, then says so.
    ///
    /// The `listening` line and READY=1 come last: a supervisor (and the tests) may
    /// signal as soon as it sees them, and by then the handler is installed and every
    /// stage is there to drain.
    fn start(
        settings: &Settings,
        placement: &Placement,
        streams: &Streams,
        bound: Bound,
        tls: Option<Arc<crate::tls::Tls>>,
        auth: Option<Arc<crate::auth::Auth>>,
    ) -> anyhow::Result<Running> {
        let (ctx, fanout_ctx, handoffs) = contexts(
            settings,
            streams,
            bound.ws_addr,
            tls,
            auth,
            bound.reactors.len(),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let mut reactors = Vec::new();
        for (i, (l, h)) in bound.reactors.into_iter().zip(handoffs).enumerate() {
            reactors.push(reactor::spawn(
                i,
                Some(placement.reactors[i]),
                l,
                h,
                ctx.clone(),
                stop_rx.clone(),
            )?);
        }
        let fanout = crate::fanout::spawn(bound.ws, Some(placement.fanout), fanout_ctx)
            .context("starting the fan-out thread")?;
        let forward = start_forward(settings, streams, &ctx)?;
        spawn_signal_thread(ctx.clone(), stop_tx.clone())?;
        let mut line = String::from("listening");
        for (kind, addr) in reactor::Kind::ALL.iter().zip(bound.addrs) {
            line.push_str(&format!(" {}={addr}", kind.name()));
        }
        let mut udp = None;
        if let Some(sock) = bound.syslog_udp {
            line.push_str(&format!(" syslog_udp={}", sock.local_addr()?));
            udp = Some(
                crate::net::udp::spawn(sock, ctx.clone())
                    .context("starting the syslog UDP thread")?,
            );
        }
        if let Some(t) = &ctx.tls {
            eprintln!("{}", describe_tls(settings, t));
        }
        if let Some(a) = &ctx.auth {
            eprintln!("{}", describe_auth(settings, a));
        }
        for warning in exposure_warnings(settings, ctx.auth.is_some()) {
            eprintln!("{warning}");
        }
        eprintln!("{line} ws={}", bound.ws_addr);
        notify_systemd("READY=1");
        Ok(Running {
            reactors,
            udp,
            fanout,
            forward,
            ctx,
            stop_tx,
            _stop_rx: stop_rx,
        })
    }

    /// Serves until every reactor has stopped (they stop on a signal). Watches the
    /// writer meanwhile: a failed fdatasync stops it for good, and then the reactors
    /// are told to drain so that the process exits non-zero.
    fn serve(&self, streams: &Streams) {
        while !self.reactors.iter().all(|t| t.is_finished()) {
            let failed = streams
                .partitions()
                .iter()
                .any(|p| p.log.failure().is_some());
            if failed && !self.ctx.shutting_down.swap(true, Ordering::Relaxed) {
                tracing::error!("the log writer failed; shutting down");
                let _ = self.stop_tx.send(true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops in the order that loses nothing: the reactors first (they have drained
    /// their connections, so nothing more is appended), then the log (every queued
    /// batch committed or failed), then the fan-out.
    ///
    /// # Errors
    /// The writer failed: the process must exit non-zero.
    fn stop(self, streams: &Streams) -> anyhow::Result<()> {
        notify_systemd("STOPPING=1");
        for t in self.reactors.into_iter().chain(self.udp) {
            let _ = t.join();
        }
        streams.shutdown();
        // After the logs: subscribers get what was committed while draining, then 1001.
        self.fanout.stop();
        // After the logs too: the forwarder has read everything committed; it gets
        // nats_stop_timeout_ms to have its publishes confirmed.
        if let Some(f) = self.forward {
            f.stop();
        }
        for p in streams.partitions() {
            if let Some(why) = p.log.failure() {
                if p.stream == crate::streams::DEFAULT_STREAM && p.partition == 0 {
                    anyhow::bail!("the log writer failed: {why}");
                }
                anyhow::bail!(
                    "the log writer of stream {} partition {} failed: {why}",
                    p.stream,
                    p.partition
                );
            }
        }
        let log = streams.default_log();
        eprintln!(
            "ringstash: stopped cleanly; committed_end={}",
            log.committed_end()
        );
        Ok(())
    }
}

/// Starts the NATS forwarder if `nats_url` is set: one target per partition of every
/// stream, each with its cursor in the partition's own directory.
fn start_forward(
    settings: &Settings,
    streams: &Streams,
    ctx: &NetCtx,
) -> anyhow::Result<Option<crate::forward::ForwardHandle>> {
    if settings.nats_url.is_empty() {
        return Ok(None);
    }
    let node_id = ctx.json_policy.node_id.clone();
    // Every partition of every stream: each its own JetStream stream, cursor and task.
    let targets = streams
        .partitions()
        .iter()
        .map(|p| crate::forward::ForwardTarget {
            stream: p.stream.clone(),
            partition: p.partition,
            log: p.log.view(),
            dir: p.log.config().dir.clone(),
        })
        .collect();
    let handle = crate::forward::spawn(
        settings.forward(),
        node_id.clone(),
        targets,
        ctx.observed.forward.clone(),
    )
    .context("starting the NATS forwarder")?;
    eprintln!(
        "forward: NATS JetStream at {}, subjects {}",
        settings.nats_url,
        crate::forward::subject(&settings.nats_subject_prefix, &node_id, "<stream>", 0)
            .replace(".0", ".<partition>")
    );
    Ok(Some(handle))
}

/// The start-up line naming the TLS listeners and how each authenticates clients.
fn describe_tls(s: &Settings, tls: &crate::tls::Tls) -> String {
    let on: Vec<&str> = [
        ("tcp", s.tcp_tls),
        ("tcp_acked", s.tcp_acked_tls),
        ("syslog", s.syslog_tls),
        ("relp", s.relp_tls),
        ("http", s.http_tls),
        ("ws", s.ws_tls),
    ]
    .into_iter()
    .filter_map(|(n, on)| on.then_some(n))
    .collect();
    let clients = if tls.requires_client_certificates() {
        "client certificates required on raw TCP, syslog and RELP, verified if offered on HTTP and WebSocket"
    } else {
        "no client certificates"
    };
    format!(
        "tls: {} (TLS 1.2+; {}; certificates reloaded on SIGHUP)",
        on.join(" "),
        clients
    )
}

/// The start-up line saying that tokens are asked for, how many, and from where.
fn describe_auth(s: &Settings, a: &crate::auth::Auth) -> String {
    let mut from = Vec::new();
    if let Some(f) = a.file() {
        from.push(format!("{} (reloaded on SIGHUP)", f.display()));
    }
    if !s.auth_tokens.trim().is_empty() {
        from.push("auth_tokens".into());
    }
    let from = from.join(" and ");
    format!(
        "auth: {} tokens from {from}; HTTP and WebSocket requests need one, except GET / and /healthz",
        a.tokens().len()
    )
}

/// One warning per listener that anyone able to reach it may use: bound beyond
/// loopback with nothing to tell clients apart. Raw TCP, syslog and RELP can only
/// authenticate by client certificate (their TLS with `tls_client_ca_file`); syslog
/// over UDP cannot at all; HTTP and WebSocket by TLS or tokens (tokens without TLS
/// cross the network readable, which is said too).
fn exposure_warnings(s: &Settings, tokens: bool) -> Vec<String> {
    let client_ca = !s.tls_client_ca_file.as_os_str().is_empty();
    let mut out = Vec::new();
    for (name, addr, tls, tls_name) in [
        ("tcp_addr", s.tcp_addr, s.tcp_tls, "tcp_tls"),
        (
            "tcp_acked_addr",
            s.tcp_acked_addr,
            s.tcp_acked_tls,
            "tcp_acked_tls",
        ),
        ("syslog_addr", s.syslog_addr, s.syslog_tls, "syslog_tls"),
        ("relp_addr", s.relp_addr, s.relp_tls, "relp_tls"),
    ] {
        if addr.ip().is_loopback() || tls && client_ca {
            continue;
        }
        let why = if tls {
            "tls_client_ca_file is not set (no client certificates)".to_string()
        } else {
            format!("{tls_name} is off")
        };
        out.push(format!(
            "warning: {name} = {addr} is reachable beyond this host and {why}: anyone who can connect can write records"
        ));
    }
    if let Some(addr) = s.syslog_udp_addr.0.filter(|a| !a.ip().is_loopback()) {
        out.push(format!(
            "warning: syslog_udp_addr = {addr} is reachable beyond this host: UDP has neither TLS nor tokens, anyone who can send a datagram can write records"
        ));
    }
    for (name, addr, tls, tls_name, what) in [
        (
            "http_addr",
            s.http_addr,
            s.http_tls,
            "http_tls",
            "write records, read them and the stats",
        ),
        (
            "ws_addr",
            s.ws_addr,
            s.ws_tls,
            "ws_tls",
            "subscribe to every record",
        ),
    ] {
        if addr.ip().is_loopback() {
            continue;
        }
        match (tls, tokens) {
            (false, false) => out.push(format!(
                "warning: {name} = {addr} is reachable beyond this host with neither {tls_name} nor tokens (auth_token_file, auth_tokens): anyone who can connect can {what}"
            )),
            (false, true) => out.push(format!(
                "warning: {name} = {addr} is reachable beyond this host and {tls_name} is off: tokens and records cross the network readable"
            )),
            (true, _) => {}
        }
    }
    if s.http_tls && !s.ws_tls {
        out.push(
            "warning: http_tls is on and ws_tls is off: the dashboard, served over HTTPS, cannot open its ws:// live tail (browsers block mixed content); turn ws_tls on too".into(),
        );
    }
    out
}

/// SIGHUP: what the configuration names in files is read again (the certificates, the
/// tokens).
fn reload(ctx: &NetCtx) {
    if let Some(a) = &ctx.auth {
        match a.file() {
            None => eprintln!(
                "ringstash: SIGHUP: no auth_token_file; auth_tokens is read at start only"
            ),
            Some(f) => match a.reload() {
                Ok(n) => eprintln!(
                    "ringstash: SIGHUP: tokens reloaded from {}: {n} tokens",
                    f.display()
                ),
                Err(e) => eprintln!(
                    "ringstash: SIGHUP: tokens NOT reloaded, the previous ones stay in force: {e}"
                ),
            },
        }
    }
    if let Some(t) = &ctx.tls {
        match t.reload() {
            Ok(()) => eprintln!("ringstash: SIGHUP: TLS certificates reloaded"),
            Err(e) => eprintln!(
                "ringstash: SIGHUP: TLS certificates NOT reloaded, the previous ones stay in use: {e}"
            ),
        }
    }
}

/// First SIGINT/SIGTERM: drain and stop. Second: exit at once. SIGHUP: reload.
fn spawn_signal_thread(ctx: Arc<NetCtx>, stop: Arc<watch::Sender<bool>>) -> anyhow::Result<()> {
    use signal_hook::{consts::*, iterator::Signals};
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("rs-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    reload(&ctx);
                    continue;
                }
                if ctx.shutting_down.swap(true, Ordering::Relaxed) {
                    eprintln!("ringstash: second signal {sig}; exiting at once");
                    std::process::exit(130);
                }
                eprintln!("ringstash: signal {sig}; draining (send again to exit at once)");
                let _ = stop.send(true);
            }
        })?;
    Ok(())
}

/// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if set.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let r = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TLS cases (the plain ones are tested on the binary, `tests/auth.rs`).
    #[test]
    fn exposure_warnings_weigh_tls_client_certificates_and_tokens() {
        let wide: SocketAddr = "0.0.0.0:1".parse().unwrap();
        let mut s = Settings {
            tcp_addr: wide,
            http_addr: wide,
            ws_addr: "[::]:2".parse().unwrap(),
            tcp_tls: true,
            http_tls: true,
            ..Settings::default()
        };
        let w = exposure_warnings(&s, false);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("tcp_addr = 0.0.0.0:1") && w[0].contains("tls_client_ca_file is not set")
        );
        assert!(w[1].contains("ws_addr = [::]:2") && w[1].contains("neither ws_tls nor tokens"));
        assert!(w[2].contains("mixed content"), "{}", w[2]);
        s.tls_client_ca_file = "ca.pem".into();
        s.ws_tls = true;
        assert!(exposure_warnings(&s, false).is_empty());
        s.syslog_udp_addr = crate::config::OptionalAddr(Some(wide));
        let w = exposure_warnings(&s, true);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("syslog_udp_addr"));
    }

    #[test]
    fn placement_rule() {
        let p = Placement::compute(2, 0, CoreChoice::Auto);
        assert_eq!((p.reactors.clone(), p.writer), (vec![0, 1], 1));
        assert!(p.describe().contains("shared with reactor [1]"));
        assert_eq!(p.fanout, 0);
        assert!(
            p.describe()
                .contains("fan-out core 0 (shared with reactor 0)"),
            "{}",
            p.describe()
        );
        let p = Placement::compute(8, 6, CoreChoice::Auto);
        assert_eq!((p.writer, p.fanout), (6, 7));
        assert!(p.describe().contains("fan-out core 7 (own core)"));
        assert!(p.describe().contains("own core"));
        let p = Placement::compute(2, 1, CoreChoice::Auto);
        assert_eq!((p.reactors.clone(), p.writer, p.fanout), (vec![0], 1, 0));
        let p = Placement::compute(4, 0, CoreChoice::Core(2));
        assert_eq!(p.writer, 2);
    }
}
