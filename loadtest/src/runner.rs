//! `loadtest run`: turns the command line into an engine run, watches the server
//! and the output file while it goes, and builds the [`Report`].

use std::{
    io::{IsTerminal, Write},
    net::{SocketAddr, ToSocketAddrs},
    path::Path,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use crate::{
    cli::{E2eSend, GenOpts, RunArgs},
    clock::mono_ns,
    e2e::{self, E2eShared, Finish, SubResult},
    engine::{self, EngineConfig, Load, Mode, Observer, Progress, Stop},
    procstat::{self, ProcSample},
    report::{
        ClientInfo, E2eInfo, LandedInfo, LatencySummary, Report, RunInfo, SubscriberInfo, TlsInfo,
        plot_svg, thousands, write_hgrm,
    },
    series::{SeriesPoint, distribution},
    stats::new_histogram,
    tls::TlsClient,
    workload::{Corpus, Format, GenConfig, RECORD_BYTES_MAX},
};

/// Largest batch, bytes: bounds the write buffers.
pub const BATCH_BYTES_MAX: usize = 256 << 20;

/// The generator config for `opts` as used with `mode`.
///
/// # Errors
/// `--format text` with `http-logs` (which takes JSON objects only).
pub fn gen_config(opts: &GenOpts, mode: Option<Mode>) -> anyhow::Result<GenConfig> {
    let format = match (opts.format, mode) {
        (Some(Format::Text), Some(Mode::HttpLogs)) => {
            bail!("http-logs sends JSON records: use --format json (the default for it)")
        }
        (Some(f), _) => f,
        (None, Some(Mode::HttpLogs)) => Format::Json,
        (None, _) => Format::Text,
    };
    if !(0.0..=1.0).contains(&opts.labels) {
        bail!("--labels is a probability between 0 and 1");
    }
    let base_time_s = opts.base_time.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    Ok(GenConfig {
        seed: opts.seed,
        format,
        size: opts.record_size,
        labels_probability: opts.labels,
        base_time_s,
        corpus_records: opts.corpus_records,
        tag: mode == Some(Mode::WsE2e),
    })
}

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// Where a receiver that does not ack shows what it stored, in bytes of what was sent.
#[derive(Debug, Clone)]
enum Landed {
    /// Its output file (rsyslog, syslog-ng): bytes written.
    File(std::path::PathBuf),
    /// A counter of durable records in a ringstash's `/metrics`, times the workload's
    /// record size (so it compares with the bytes sent, as a file does).
    Metric {
        addr: SocketAddr,
        name: String,
        record_bytes: u64,
    },
}

impl Landed {
    fn from_args(args: &RunArgs) -> anyhow::Result<Option<Landed>> {
        if let Some(f) = &args.landed_file {
            return Ok(Some(Landed::File(f.clone())));
        }
        let Some(spec) = &args.landed_metric else {
            return Ok(None);
        };
        let Some((addr, name)) = spec.split_once('/') else {
            bail!("--landed-metric takes HOST:PORT/NAME, not {spec:?}");
        };
        let size = args.gen_opts.record_size;
        if size.min != size.max {
            bail!("--landed-metric needs a fixed --record-size");
        }
        Ok(Some(Landed::Metric {
            addr: resolve(addr)?,
            name: name.to_owned(),
            record_bytes: size.min as u64,
        }))
    }

    /// What has landed so far (0 if it cannot be read now).
    fn bytes(&self) -> u64 {
        match self {
            Landed::File(p) => file_len(p),
            Landed::Metric {
                addr,
                name,
                record_bytes,
            } => metric_value(*addr, name).unwrap_or(0) * record_bytes,
        }
    }

    /// How often to look: a file costs a stat, a metric an HTTP request to the server
    /// under test.
    fn poll_interval(&self) -> Duration {
        match self {
            Landed::File(_) => Duration::from_millis(2),
            Landed::Metric { .. } => Duration::from_millis(20),
        }
    }

    fn describe(&self) -> String {
        match self {
            Landed::File(p) => p.display().to_string(),
            Landed::Metric { addr, name, .. } => format!("http://{addr}/metrics {name}"),
        }
    }
}

/// One counter from a Prometheus text page at `http://addr/metrics`.
fn metric_value(addr: SocketAddr, name: &str) -> Option<u64> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut page = String::new();
    s.read_to_string(&mut page).ok()?;
    page.lines().find_map(|l| {
        l.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse::<f64>()
            .ok()
            .map(|v| v as u64)
    })
}

/// Watches the server process, the harness itself and the landed file while the
/// engine runs, and prints the progress line.
struct Watch<'a> {
    server_pid: Option<u32>,
    server_start: Option<ProcSample>,
    server_end: Option<ProcSample>,
    server_rss_max: u64,
    client_start: Option<ProcSample>,
    client_end: Option<ProcSample>,
    landed: Option<&'a Landed>,
    landed_at_measure: u64,
    /// When the measurement started, monotonic ns (`None` before).
    measure_ns: Option<u64>,
    /// What had landed at the start of the measurement and at each whole second of it
    /// (sampled at the first tick after: up to 100 ms late), for the series.
    landed_marks: Vec<u64>,
    /// What had landed when the workers finished.
    landed_end: u64,
    show_progress: bool,
    last_print: Option<(Instant, u64)>,
}

impl<'a> Watch<'a> {
    fn new(args: &'a RunArgs, landed: Option<&'a Landed>) -> Self {
        Watch {
            server_pid: args.server_pid,
            server_start: None,
            server_end: None,
            server_rss_max: 0,
            client_start: None,
            client_end: None,
            landed,
            landed_at_measure: 0,
            measure_ns: None,
            landed_marks: Vec::new(),
            landed_end: 0,
            show_progress: !args.quiet && std::io::stderr().is_terminal(),
            last_print: None,
        }
    }

    /// `--landed-*`: fills each series entry's `landed`, in records of
    /// `bytes_per_record`, from the samples taken at whole seconds; the last entry
    /// runs to when the workers finished.
    fn add_landed(&self, series: &mut [SeriesPoint], bytes_per_record: f64) {
        if self.landed.is_none() {
            return;
        }
        let end = self.landed_end;
        let n = series.len();
        for (i, p) in series.iter_mut().enumerate() {
            let from = self.landed_marks.get(i).copied().unwrap_or(end);
            let to = if i + 1 < n {
                self.landed_marks.get(i + 1).copied().unwrap_or(end)
            } else {
                end
            };
            p.landed = Some((to.saturating_sub(from) as f64 / bytes_per_record).round() as u64);
        }
    }

    /// Fills the report's server and client resource use over the window.
    fn add_resources(&self, report: &mut Report) {
        if let (Some(a), Some(b)) = (&self.server_start, &self.server_end) {
            report.set_server(&a.delta(b), self.server_rss_max);
        }
        if let (Some(a), Some(b)) = (&self.client_start, &self.client_end) {
            let d = a.delta(b);
            report.client = Some(ClientInfo {
                cpu_s: (d.cpu_s * 1000.0).round() / 1000.0,
                cpu_percent: (d.cpu_s / d.wall_s.max(1e-9) * 1000.0).round() / 10.0,
            });
        }
    }
}

impl Observer for Watch<'_> {
    fn measure_start(&mut self) {
        if let Some(pid) = self.server_pid {
            self.server_start = procstat::sample(pid).ok();
        }
        self.client_start = procstat::sample(std::process::id()).ok();
        self.measure_ns = Some(mono_ns());
        if let Some(l) = self.landed {
            self.landed_at_measure = l.bytes();
            self.landed_marks.push(self.landed_at_measure);
        }
    }

    fn tick(&mut self, progress: &Progress, elapsed: Duration) {
        if let Some(pid) = self.server_pid
            && let Ok(s) = procstat::sample(pid)
        {
            self.server_rss_max = self.server_rss_max.max(s.rss_bytes);
        }
        if let (Some(l), Some(m)) = (self.landed, self.measure_ns) {
            let second = mono_ns().saturating_sub(m) / 1_000_000_000;
            if self.landed_marks.len() as u64 <= second {
                // A failed scrape reads 0: keep the last mark rather than drop to it.
                let now = l
                    .bytes()
                    .max(self.landed_marks.last().copied().unwrap_or(0));
                while self.landed_marks.len() as u64 <= second {
                    self.landed_marks.push(now);
                }
            }
        }
        if !self.show_progress {
            return;
        }
        // Relaxed: display only.
        let records = progress.records.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        let now = Instant::now();
        let (t0, r0) = *self.last_print.get_or_insert((now, 0));
        let dt = now.duration_since(t0).as_secs_f64();
        if dt >= 1.0 {
            let rate = (records - r0) as f64 / dt;
            eprint!(
                "\r\x1b[K  {:6.1} s  {:>12} records/s  {:>14} records  {} errors",
                elapsed.as_secs_f64(),
                thousands(rate as u64),
                thousands(records),
                errors
            );
            let _ = std::io::stderr().flush();
            self.last_print = Some((now, records));
        }
    }

    fn finished(&mut self) {
        if let Some(l) = self.landed {
            self.landed_end = l.bytes();
        }
        if let Some(pid) = self.server_pid {
            self.server_end = procstat::sample(pid).ok();
        }
        self.client_end = procstat::sample(std::process::id()).ok();
        if self.show_progress && self.last_print.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}

/// The `ws-e2e` subscribers of a run.
#[derive(Default)]
struct Subscribers {
    live: Vec<std::thread::JoinHandle<SubResult>>,
    stalled: Vec<tungstenite::WebSocket<std::net::TcpStream>>,
    finish: Arc<Finish>,
    ws_target: String,
}

impl Subscribers {
    /// Connects the stalled subscribers, then the live ones (each on its own
    /// thread); returns the state the engine publishes send times in.
    fn start(&mut self, args: &RunArgs) -> anyhow::Result<Arc<E2eShared>> {
        let ws_addr = resolve(&args.ws_addr)?;
        let shared = Arc::new(E2eShared::new(args.connections, args.batch));
        for i in 0..args.stalled_subscribers {
            let ws = e2e::connect(ws_addr, &args.ws_path, args.connect_timeout)
                .with_context(|| format!("stalled subscriber {i}"))?;
            self.stalled.push(ws);
        }
        for i in 0..args.subscribers {
            let ws = e2e::connect(ws_addr, &args.ws_path, args.connect_timeout)
                .with_context(|| format!("subscriber {i}"))?;
            self.live
                .push(e2e::spawn_live(i, ws, shared.clone(), self.finish.clone())?);
        }
        self.ws_target = format!("ws://{}{}", args.ws_addr, args.ws_path);
        Ok(shared)
    }

    /// Sending ended at `send_end_ns`: live subscribers get `--drain-timeout` more
    /// (if `drain`) to receive everything, then their results are collected and the
    /// stalled ones closed.
    fn stop(
        &mut self,
        send_end_ns: u64,
        drain: bool,
        args: &RunArgs,
    ) -> anyhow::Result<Vec<SubResult>> {
        self.finish.done_sending.store(true, Ordering::Release);
        let drain_ns = if drain {
            args.drain_timeout.as_nanos() as u64
        } else {
            0
        };
        self.finish
            .deadline_ns
            .store(send_end_ns + drain_ns.max(1), Ordering::Release);
        let results = std::mem::take(&mut self.live)
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a subscriber thread panicked"))
            })
            .collect::<anyhow::Result<_>>()?;
        // The stalled subscribers hung on until everything was delivered to the others.
        drop(std::mem::take(&mut self.stalled));
        Ok(results)
    }
}

impl Drop for Subscribers {
    /// On an early error, lets live subscribers stop at once.
    fn drop(&mut self) {
        self.finish.done_sending.store(true, Ordering::Release);
        self.finish.deadline_ns.store(1, Ordering::Release);
    }
}

/// Runs `loadtest run` and returns its report (it prints nothing itself).
///
/// # Errors
/// Bad options, an unreachable server, a mode not yet available.
pub fn run(args: &RunArgs) -> anyhow::Result<Report> {
    let gen_cfg = gen_config(&args.gen_opts, Some(args.mode))?;
    let mut cfg = engine_config(args)?;
    let corpus =
        Arc::new(Corpus::generate(&gen_cfg).map_err(|e| anyhow::anyhow!("--record-size: {e}"))?);
    // ws-e2e: subscribers connect (and live ones start reading) before anything is
    // sent, so `from=latest` starts them before the first record.
    let mut subs = Subscribers::default();
    if args.mode == Mode::WsE2e {
        cfg.e2e = Some(subs.start(args)?);
    }
    let landed = Landed::from_args(args)?;
    let landed_initial = landed.as_ref().map(Landed::bytes);
    let mut watch = Watch::new(args, landed.as_ref());
    if let Some(pid) = args.server_pid {
        procstat::sample(pid)
            .with_context(|| format!("--server-pid {pid}: cannot read /proc/{pid}"))?;
    }
    let res = engine::run(&cfg, corpus, &mut watch);
    let send_end_ns = mono_ns();
    let sub_results = subs.stop(send_end_ns, res.is_ok() && !args.allow_lag, args)?;
    let res = res?;
    let mut info = run_info(args, &cfg, &gen_cfg);
    if let (Some(tls), Some(seen)) = (&cfg.tls, &res.tls) {
        info.tls = Some(TlsInfo {
            server_name: server_name_str(tls),
            client_cert: tls.client_cert,
            protocol: seen.session.protocol.clone(),
            cipher_suite: seen.session.cipher_suite.clone(),
            setup_us_median: seen.setup_us_median,
            setup_us_max: seen.setup_us_max,
        });
    }
    let mut report = Report::new(info, &res.stats, res.duration_s);
    report.series = res.series;
    let bytes_per_record = if res.stats.completed_records_total > 0 {
        res.stats.bytes_total as f64 / res.stats.completed_records_total as f64
    } else {
        1.0
    };
    watch.add_landed(&mut report.series, bytes_per_record);
    let mut e2e_latency = None;
    if args.mode == Mode::WsE2e {
        let expected = res.stats.sent_records_total;
        e2e_latency = add_e2e(
            &mut report,
            args,
            &sub_results,
            &subs,
            expected,
            send_end_ns,
        );
    }
    watch.add_resources(&mut report);
    if let (Some(l), Some(initial)) = (&landed, landed_initial) {
        report.landed = Some(wait_landed(
            l,
            initial,
            watch.landed_at_measure,
            res.stats.bytes_total,
            res.stats.completed_records_total,
            res.measure_start_ns,
            args.landed_idle_timeout,
        ));
    }
    if let Some(p) = &args.hgrm {
        let mut f =
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
        write_hgrm(
            e2e_latency.as_ref().unwrap_or(&res.stats.latency_us),
            1000.0,
            &mut f,
        )?;
    }
    if let Some(p) = &args.plot {
        let unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        std::fs::write(p, plot_svg(&report, &command_line(), unix_s))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.json_file {
        std::fs::write(p, report.to_json() + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(report)
}

/// Checks the options and resolves the address: the engine's settings (without the
/// `ws-e2e` shared state, which the subscribers bring).
fn engine_config(args: &RunArgs) -> anyhow::Result<EngineConfig> {
    if args.mode == Mode::WsE2e && args.connections > e2e::CONNECTIONS_MAX {
        bail!("ws-e2e takes at most {} connections", e2e::CONNECTIONS_MAX);
    }
    if args.batch == 0 || args.connections == 0 {
        bail!("--batch and --connections must be at least 1");
    }
    if args.batch.saturating_mul(args.gen_opts.record_size.max) > BATCH_BYTES_MAX {
        bail!("a batch may hold at most {BATCH_BYTES_MAX} bytes: lower --batch or --record-size");
    }
    if args.gen_opts.record_size.max > RECORD_BYTES_MAX {
        bail!("records over {RECORD_BYTES_MAX} bytes are not supported");
    }
    let load = match args.rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => Load::Open { rate },
        Some(_) => bail!("--rate must be a positive number of records per second"),
        None => Load::Closed,
    };
    let stop = match (args.count, args.duration) {
        (Some(n), _) => Stop::Count(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    let addr_s = args.addr.clone().unwrap_or_else(|| {
        match args.mode {
            m if m.is_http() => "127.0.0.1:8080",
            Mode::Tcp => "127.0.0.1:5140",
            // ringstash's acked listener; ws-e2e sends acked by default.
            _ => "127.0.0.1:5141",
        }
        .to_owned()
    });
    let addr = resolve(&addr_s)?;
    let path = args
        .path
        .clone()
        .or_else(|| args.mode.default_path().map(str::to_owned))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tls = tls_client(args)?;
    Ok(EngineConfig {
        mode: args.mode,
        addr,
        host: addr_s,
        path,
        logs_body: args.body,
        connections: args.connections,
        threads: args.threads.unwrap_or(cores).clamp(1, args.connections),
        batch_records: args.batch,
        inflight: args.inflight.unwrap_or(match load {
            Load::Closed => 1,
            Load::Open { .. } => 1024,
        }),
        load,
        stop,
        warmup: args.warmup,
        drain_timeout: args.drain_timeout,
        connect_timeout: args.connect_timeout,
        e2e: None,
        e2e_acked: args.e2e_send == E2eSend::Acked,
        tls,
    })
}

/// The TLS client of `--tls-ca` and its companions, or `None` without `--tls-ca`.
///
/// # Errors
/// A mode that does not speak TLS here (`ws-e2e`: its subscribers are plain `ws://`
/// clients, so half of the run would be in clear), or unusable files.
fn tls_client(args: &RunArgs) -> anyhow::Result<Option<TlsClient>> {
    let Some(ca) = &args.tls_ca else {
        return Ok(None);
    };
    if args.mode == Mode::WsE2e {
        bail!(
            "--tls-ca: ws-e2e does not speak TLS (its WebSocket subscribers are plain ws:// \
             clients); TLS modes: tcp, tcp-acked, http-ingest, http-logs"
        );
    }
    let name = args.tls_server_name.as_deref().unwrap_or("localhost");
    let client = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        _ => None,
    };
    TlsClient::from_files(ca, name, client).map(Some)
}

/// The server name as given on the command line.
fn server_name_str(tls: &TlsClient) -> String {
    match &tls.server_name {
        rustls::pki_types::ServerName::DnsName(d) => d.as_ref().to_owned(),
        rustls::pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// The run's settings as the report echoes them.
fn run_info(args: &RunArgs, cfg: &EngineConfig, gen_cfg: &GenConfig) -> RunInfo {
    RunInfo {
        mode: args.mode.name().to_owned(),
        target: if args.mode.is_http() {
            format!("{}{}", cfg.host, cfg.path)
        } else {
            cfg.host.clone()
        },
        load: match cfg.load {
            Load::Closed => "closed",
            Load::Open { .. } => "open",
        }
        .to_owned(),
        rate_target: args.rate,
        connections: args.connections,
        threads: cfg.threads,
        batch_records: args.batch,
        inflight: cfg.inflight,
        record_bytes: [gen_cfg.size.min, gen_cfg.size.max],
        format: match gen_cfg.format {
            Format::Text => "text",
            Format::Json => "json",
            Format::Syslog => "syslog",
            Format::SyslogOctet => "syslog-octet",
        }
        .to_owned(),
        seed: gen_cfg.seed,
        warmup_s: args.warmup.as_secs_f64(),
        tls: None,
    }
}

/// `ws-e2e`: fills `report.e2e` from the subscribers' results and, with live
/// subscribers, replaces the report's latencies with theirs (send → receipt), which
/// it returns for `--hgrm`. `expected`: records each had to receive.
fn add_e2e(
    report: &mut Report,
    args: &RunArgs,
    sub_results: &[SubResult],
    subs: &Subscribers,
    expected: u64,
    send_end_ns: u64,
) -> Option<Histogram<u64>> {
    let mut lat = new_histogram();
    let mut svc = new_histogram();
    let mut last_receipt = 0;
    let per_subscriber: Vec<SubscriberInfo> = sub_results
        .iter()
        .map(|r| {
            lat.add(&r.latency_us).expect("same bounds");
            svc.add(&r.service_us).expect("same bounds");
            last_receipt = last_receipt.max(r.last_receipt_ns);
            SubscriberInfo {
                delivered: r.check.delivered,
                missed: r.check.missed,
                undelivered: r.check.undelivered,
                duplicates: r.check.duplicates,
                foreign: r.check.foreign,
                lapped: r.lapped,
                messages: r.messages,
                latency_us: LatencySummary::of(&r.latency_us),
                error: r.error.clone(),
            }
        })
        .collect();
    let ok = per_subscriber.iter().all(|s| {
        s.missed == 0
            && s.duplicates == 0
            && (args.allow_lag || (s.undelivered == 0 && s.delivered == expected))
    });
    let producer_latency_us = report.latency_us.clone();
    let producer_service_time_us = report.service_time_us.clone();
    let mut e2e_latency = None;
    if args.subscribers > 0 {
        report.latency_us = LatencySummary::of(&lat);
        report.distribution = distribution(&lat);
        report.service_time_us = LatencySummary::of(&svc);
        e2e_latency = Some(lat);
    }
    report.e2e = Some(E2eInfo {
        ws_target: subs.ws_target.clone(),
        send: match args.e2e_send {
            E2eSend::Acked => "acked",
            E2eSend::Unacked => "unacked",
        }
        .to_owned(),
        subscribers: args.subscribers,
        stalled_subscribers: args.stalled_subscribers,
        expected_records: expected,
        ok,
        allow_lag: args.allow_lag,
        drain_s: (last_receipt.saturating_sub(send_end_ns) as f64 / 1e6).round() / 1e3,
        producer_latency_us,
        producer_service_time_us,
        per_subscriber,
    });
    e2e_latency
}

/// Waits until `file` holds `initial + bytes_sent` bytes, or stops growing for
/// `idle`, and measures the rate it grew at since the measurement started.
fn wait_landed(
    landed: &Landed,
    initial: u64,
    at_measure: u64,
    bytes_sent: u64,
    records_sent: u64,
    measure_start_ns: u64,
    idle: Duration,
) -> LandedInfo {
    let expected = initial + bytes_sent;
    let mut last = landed.bytes();
    let mut last_change = mono_ns();
    let mut landed_ns = last_change;
    while last < expected {
        std::thread::sleep(landed.poll_interval());
        let len = landed.bytes();
        let now = mono_ns();
        if len != last {
            last = len;
            last_change = now;
            landed_ns = now;
        } else if now - last_change > idle.as_nanos() as u64 {
            break;
        }
    }
    let elapsed_s = landed_ns.saturating_sub(measure_start_ns) as f64 / 1e9;
    let grown = last.saturating_sub(at_measure) as f64;
    let bytes_per_record = if records_sent > 0 {
        bytes_sent as f64 / records_sent as f64
    } else {
        1.0
    };
    let secs = elapsed_s.max(1e-9);
    LandedInfo {
        file: landed.describe(),
        bytes_expected: bytes_sent,
        bytes_landed: last.saturating_sub(initial),
        elapsed_s: (elapsed_s * 1000.0).round() / 1000.0,
        records_per_s: (grown / bytes_per_record / secs).round(),
        mb_per_s: (grown / secs / 1e6 * 1000.0).round() / 1000.0,
        complete: last >= expected,
    }
}

/// This process's command line for the plot's caption: the program's file name and
/// its arguments, single-quoted where a shell would need it.
fn command_line() -> String {
    // Lossy: an argument that is not UTF-8 (a path) must not panic after the run.
    let mut args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let prog = args.next().unwrap_or_default();
    let prog = Path::new(&prog)
        .file_name()
        .map_or(prog.clone(), |f| f.to_string_lossy().into_owned());
    let mut out = prog;
    for a in args {
        out.push(' ');
        let plain = !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b));
        if plain {
            out.push_str(&a);
        } else {
            out.push('\'');
            out.push_str(&a.replace('\'', r"'\''"));
            out.push('\'');
        }
    }
    out
}
