//! Command-line interface: `loadtest run`, `loadtest gen`, `loadtest sink`, `loadtest floor`.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    engine::{LogsBody, Mode},
    sink::SinkReply,
    workload::{Format, SizeDist},
};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Load-test harness for ringstash and other newline-TCP / HTTP log receivers",
    long_about = "Load-test harness for ringstash and other newline-TCP / HTTP log receivers.\n\n\
Drives raw TCP (fire and forget, or waiting on ringstash's cumulative acks) and HTTP POST \
(/ingest lines, /v1/logs JSON) in closed loop (peak throughput) or open loop at --rate \
(latency measured from each batch's intended send time: coordinated omission corrected, \
as wrk2 does), and reports throughput and HdrHistogram latency percentiles."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive a server and report throughput and latency.
    Run(Box<RunArgs>),
    /// Print generated records to stdout (what `run` would send).
    Gen(GenArgs),
    /// Run a counting receiver (discard, ack or HTTP) for loopback bandwidth runs.
    Sink(SinkArgs),
    /// Measure the ack latency floor of a disk: an ideal writer (pwrite + fdatasync of
    /// everything arrived) on the open-loop schedule of `run --rate`.
    Floor(FloorArgs),
    /// Crash soak: SIGKILL `ringstash serve` at random moments under acked TCP and
    /// HTTP load and check every acked record exactly after every kill.
    KillLoop(KillLoopArgs),
    /// Check a kill loop's data directory against its ledger of acked records (what
    /// `kill-loop` does after every kill).
    KillCheck(KillCheckArgs),
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `250us` or a plain number of seconds.
///
/// # Errors
/// Anything else.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (want e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit {unit:?} in {s:?}")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Options of the workload generator, shared by `run` and `gen`.
#[derive(Debug, Clone, Args)]
pub struct GenOpts {
    /// Record size in bytes including the `\n`: `128` (exactly, padded) or `100-300`
    /// (uniform).
    #[arg(long, default_value = "128", value_parser = SizeDist::parse)]
    pub record_size: SizeDist,
    /// Record format [default: text; json for http-logs].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Probability that a record carries labels (region, env, host, version).
    #[arg(long, default_value_t = 0.3)]
    pub labels: f64,
    /// PRNG seed: the same seed (and base time) gives the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Timestamp of the first record, Unix seconds [default: now].
    #[arg(long)]
    pub base_time: Option<u64>,
    /// Distinct records generated before batches repeat them.
    #[arg(long, default_value_t = 1 << 16)]
    pub corpus_records: usize,
}

/// `loadtest run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Protocol, and what completes a batch: tcp (fire and forget: written), tcp-acked
    /// (ringstash ack), http-ingest / http-logs (HTTP response), ws-e2e (records sent
    /// over TCP, batch latency until WebSocket subscribers receive its last record).
    #[arg(long, value_enum, default_value = "tcp-acked")]
    pub mode: Mode,
    /// Server address [default: 127.0.0.1:5140 for tcp (ringstash's one-way listener), 127.0.0.1:5141 for tcp-acked and ws-e2e (its acked listener), 127.0.0.1:8080 for HTTP].
    #[arg(long)]
    pub addr: Option<String>,
    /// HTTP path [default: /ingest for http-ingest, /v1/logs for http-logs].
    #[arg(long)]
    pub path: Option<String>,
    /// Body of http-logs requests.
    #[arg(long, value_enum, default_value = "json-array")]
    pub body: LogsBody,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 4)]
    pub connections: usize,
    /// Worker threads driving the connections [default: min(connections, cores)].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Records per batch (one TCP write or one HTTP request).
    #[arg(short = 'b', long, default_value_t = 1024)]
    pub batch: usize,
    /// Batches in flight per connection [default: 1 in closed loop, 1024 in open loop].
    #[arg(long)]
    pub inflight: Option<usize>,
    /// Open loop: records per second, all connections together. Without it the run is
    /// closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many records (after the warm-up).
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Stop after this long (after the warm-up) [default: 10s unless --count].
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Send for this long before measuring.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// After sending stops, wait this long for outstanding acks or responses.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub drain_timeout: Duration,
    /// Connect timeout.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub connect_timeout: Duration,
    /// ws-e2e: the server's WebSocket address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub ws_addr: String,
    /// ws-e2e: path and query of the subscription.
    #[arg(long, default_value = "/v1/stream?from=latest")]
    pub ws_path: String,
    /// ws-e2e: live subscribers; each must receive every record exactly once, and
    /// the latency covers all of them (0: producer only).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// ws-e2e: extra subscribers that connect and never read.
    #[arg(long, default_value_t = 0)]
    pub stalled_subscribers: usize,
    /// ws-e2e: subscribers still behind when sending ends stop there and do not fail
    /// the run (what they did receive must still be in order, without gaps or
    /// duplicates). For throughput runs where many subscribers cannot keep up.
    #[arg(long)]
    pub allow_lag: bool,
    /// ws-e2e: how the producer sends: acked (waits on ringstash's acks, like
    /// tcp-acked) or unacked (fire and forget, like tcp).
    #[arg(long, value_enum, default_value = "acked")]
    pub e2e_send: E2eSend,
    /// Speak TLS (rustls; TLS 1.2 and 1.3) on every connection, trusting the CA
    /// certificates in this PEM file. Modes tcp, tcp-acked, http-ingest, http-logs.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// TLS: the name sent as SNI and checked against the server's certificate (a DNS
    /// name or an IP address) [default: localhost].
    #[arg(long, requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// TLS: a client certificate chain (PEM, leaf first) for mutual TLS; with --tls-key.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Workload generator.
    #[command(flatten)]
    pub gen_opts: GenOpts,
    /// Report the CPU time and resident memory of this process (the server).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// For receivers that do not ack: wait until this output file has grown by every
    /// byte sent and report the rate at which it did.
    #[arg(long)]
    pub landed_file: Option<PathBuf>,
    /// For ringstash's one-way listeners: wait until this counter of durable records in
    /// its `/metrics` (`HOST:PORT/NAME`, e.g.
    /// `127.0.0.1:8080/ringstash_records_committed_total`) has grown by every record
    /// sent, and report the rate at which it did (as --landed-file does for a file).
    #[arg(long, conflicts_with = "landed_file")]
    pub landed_metric: Option<String>,
    /// Give up waiting on --landed-file or --landed-metric after it has not grown for this long.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub landed_idle_timeout: Duration,
    /// Print the report as JSON on stdout (instead of the table).
    #[arg(long)]
    pub json: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json_file: Option<PathBuf>,
    /// Write the corrected latency distribution in HdrHistogram's .hgrm text format
    /// (milliseconds) to this file.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write an SVG plot to this file: throughput and latency percentiles second by
    /// second, and the latency percentile distribution.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress line (it is shown only when stderr is a terminal anyway).
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// How `ws-e2e` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum E2eSend {
    /// Wait on ringstash's cumulative acks (as `tcp-acked`).
    Acked,
    /// Fire and forget (as `tcp`).
    Unacked,
}

/// `loadtest gen`.
#[derive(Debug, Clone, Args)]
pub struct GenArgs {
    /// Records to print.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub count: u64,
    /// Workload generator.
    #[command(flatten)]
    pub gen_opts: GenOpts,
}

/// `loadtest sink`.
#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: std::net::SocketAddr,
    /// What to answer.
    #[arg(long, value_enum, default_value = "none")]
    pub reply: SinkReply,
}

/// `loadtest floor`.
#[derive(Debug, Clone, Args)]
pub struct FloorArgs {
    /// Directory on the disk to measure (its files are removed afterwards).
    #[arg(long)]
    pub dir: PathBuf,
    /// Target records per second.
    #[arg(long)]
    pub rate: f64,
    /// Records per batch: one latency sample per batch, as in `run`.
    #[arg(short = 'b', long, default_value_t = 1024)]
    pub batch: u32,
    /// Bytes per record, newline included.
    #[arg(long, default_value_t = 128)]
    pub record_size: u32,
    /// Measured time.
    #[arg(short = 'd', long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Time run before the measurement and not recorded.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// Bytes per data file before the next (append) or the wrap to 0 (overwrite).
    #[arg(long, default_value_t = 128 << 20)]
    pub file_bytes: u64,
    /// Pre-write the file with zeros and overwrite it instead of appending.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "loadtest",
            "run",
            "--mode",
            "http-logs",
            "--body",
            "ndjson",
            "--rate",
            "5000",
            "-n",
            "100",
            "--record-size",
            "200-300",
            "--seed",
            "7",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.mode, Mode::HttpLogs);
        assert_eq!(a.body, LogsBody::Ndjson);
        assert_eq!(a.rate, Some(5000.0));
        assert_eq!(a.gen_opts.record_size, SizeDist { min: 200, max: 300 });
        assert!(Cli::try_parse_from(["loadtest", "run", "-n", "1", "-d", "1s"]).is_err());
    }

    #[test]
    fn tls_flags_parse_and_depend_on_the_ca() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "run",
            "--tls-ca",
            "ca.pem",
            "--tls-server-name",
            "ringstash.test",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "c.key",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.tls_ca.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert_eq!(a.tls_server_name.as_deref(), Some("ringstash.test"));
        // A name, a certificate or a key without a CA is a mistake, as is half a pair.
        for bad in [
            &["--tls-server-name", "x"][..],
            &["--tls-cert", "c.pem", "--tls-key", "c.key"],
            &["--tls-ca", "ca.pem", "--tls-cert", "c.pem"],
            &["--tls-ca", "ca.pem", "--tls-key", "c.key"],
        ] {
            let args = ["loadtest", "run"].iter().chain(bad.iter());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}

/// `loadtest kill-loop`.
#[derive(Debug, Clone, Args)]
pub struct KillLoopArgs {
    /// The `ringstash` binary.
    #[arg(long, default_value = "target/release/ringstash")]
    pub ringstash: PathBuf,
    /// Work directory: data directories `data-<n>` and ledgers `ledger-<n>` (`<id>
    /// <lowest offset> <highest offset>` per acked record). Kept for a post-mortem.
    #[arg(long)]
    pub work_dir: PathBuf,
    /// Kills to make.
    #[arg(long, default_value_t = 100)]
    pub iterations: u64,
    /// Seed of every random choice [default: from the clock]; printed first.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shortest time from the server's "listening" line to SIGKILL, in ms.
    #[arg(long, default_value_t = 5)]
    pub kill_min_ms: u64,
    /// Longest time from the server's "listening" line to SIGKILL, in ms.
    #[arg(long, default_value_t = 400)]
    pub kill_max_ms: u64,
    /// Acked raw TCP producers (connections).
    #[arg(long, default_value_t = 2)]
    pub tcp_producers: u32,
    /// HTTP `POST /ingest` producers (keep-alive connections).
    #[arg(long, default_value_t = 2)]
    pub http_producers: u32,
    /// Largest batch: lines per write (TCP) or per request (HTTP); each is 1..=this.
    #[arg(long, default_value_t = 64)]
    pub batch_max: u64,
    /// Records per second per producer at most (0: as fast as the acks come). Bounds
    /// what each check reads.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Start a fresh data directory every this many iterations (keeps the disk
    /// bounded; no retention, so every check covers the whole log).
    #[arg(long, default_value_t = 50)]
    pub fresh_every: u64,
    /// `serve --segment-bytes-max`: small, so rotations and pre-written spares are
    /// crossed often.
    #[arg(long, default_value_t = 1_048_576)]
    pub segment_bytes_max: u64,
    /// More `serve` flags, after `--`.
    #[arg(last = true)]
    pub serve_args: Vec<String>,
}

/// `loadtest kill-check`.
#[derive(Debug, Clone, Args)]
pub struct KillCheckArgs {
    /// The `ringstash` binary.
    #[arg(long, default_value = "target/release/ringstash")]
    pub ringstash: PathBuf,
    /// The data directory.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The ledger of acked records (`<id> <lowest offset> <highest offset>` lines).
    #[arg(long)]
    pub ledger: PathBuf,
}
