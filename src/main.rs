//! The `ringstash` binary: argument parsing and dispatch only.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ringstash",
    version,
    about = "Durable, io_uring log-ingest appliance"
)]
struct Cli {
    /// Diagnostic log format on stderr: `text` or `json` (one object per line).
    #[arg(long, global = true, default_value = "text", env = "RINGSTASH_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance: raw TCP and HTTP ingest into the durable log.
    Serve {
        /// TOML file with settings (same names as the flags, with underscores).
        #[arg(long, env = "RINGSTASH_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<ringstash::config::SettingsArgs>,
    },
    /// Print stored records, one per line, payload as stored. A damaged range is skipped
    /// with a `gap:` line on stderr, and the exit status is then 3.
    Cat {
        /// Data directory.
        #[arg(long, default_value = "./data", env = "RINGSTASH_DATA_DIR")]
        data_dir: PathBuf,
        /// First offset to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Keep printing records as they are written.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Prefix each line with the offset and receive time (tab-separated).
        #[arg(long)]
        meta: bool,
        /// Stop after this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// Only records received at or after this time: RFC 3339
        /// (2026-12-06T11:00:00Z) or Unix seconds (1765018800.5). Found by the time
        /// index, not a scan. With --from, both hold.
        #[arg(long, value_parser = |v: &str| ringstash::cli::parse_time_flag("--since", v))]
        since: Option<u64>,
        /// Only records received before this time (as --since); ends --follow once
        /// records pass it.
        #[arg(long, value_parser = |v: &str| ringstash::cli::parse_time_flag("--until", v))]
        until: Option<u64>,
        /// How far past --until (in ms of receive time, and of the clock under
        /// --follow) to read before stopping: set it to the server's
        /// time_skew_ms_max when that is larger than the default.
        #[arg(
            long,
            default_value_t = ringstash::wal::LogConfig::new("").time_skew_ms_max,
            value_parser = clap::value_parser!(u64).range(0..=86_400_000)
        )]
        time_skew_ms: u64,
        /// Only JSON records whose "level" is one of these (comma-separated,
        /// case-insensitive).
        #[arg(long, value_delimiter = ',')]
        level: Vec<String>,
        /// Only JSON records whose "service" is one of these (comma-separated).
        #[arg(long, value_delimiter = ',')]
        service: Vec<String>,
        /// Only records containing this text (a plain substring, case-sensitive).
        #[arg(long)]
        grep: Option<String>,
        /// The stream to read (docs/streams.md).
        #[arg(long, default_value = "default")]
        stream: String,
        /// The partition to read, in a stream of several (each has its own offsets).
        #[arg(long, default_value_t = 0)]
        partition: u32,
        #[command(flatten)]
        resync: ResyncWindow,
        /// While a server holds the directory, how long to wait (once per bad record
        /// in the newest segment) for its writes in flight before taking the record
        /// as damage, in ms; each wait is said on stderr (`settle:`).
        #[arg(
            long,
            env = "RINGSTASH_DAMAGE_SETTLE_MS",
            default_value_t = ringstash::wal::DAMAGE_SETTLE_MS_DEFAULT,
            value_parser = clap::value_parser!(u64)
                .range(ringstash::wal::DAMAGE_SETTLE_MS_MIN..=ringstash::wal::DAMAGE_SETTLE_MS_MAX)
        )]
        damage_settle_ms: u64,
    },
    /// Append stdin's lines to the log (one record per line), durably.
    Append {
        /// Data directory.
        #[arg(long, default_value = "./data", env = "RINGSTASH_DATA_DIR")]
        data_dir: PathBuf,
        /// Records per batch.
        #[arg(long, default_value_t = 1024)]
        batch_records: usize,
        /// Print "<first> <last>" offsets of each batch once it is durable.
        #[arg(long)]
        print_offsets: bool,
        /// Segment size at which to rotate, in bytes. [default: the log's, as for serve]
        #[arg(long)]
        segment_bytes_max: Option<u64>,
        /// `always` (acked = durable), `never`, or `interval:<ms>` (not durable).
        /// [default: the log's, as for serve]
        #[arg(long, value_parser = ringstash::wal::FsyncPolicy::parse)]
        fsync: Option<ringstash::wal::FsyncPolicy>,
        /// `direct` or `buffered`, as serve's `write_mode`. [default: direct]
        #[arg(long, env = "RINGSTASH_WRITE_MODE")]
        write_mode: Option<ringstash::wal::WriteMode>,
        /// `auto`, `uring` or `epoll`, as serve's `io_driver`. [default: auto]
        #[arg(long, env = "RINGSTASH_IO_DRIVER")]
        io_driver: Option<ringstash::wal::IoDriver>,
    },
    /// Make a token for the HTTP and WebSocket listeners. Prints `token: <token>` (shown
    /// once: the server keeps only its hash) and `line: <entry>`, the line to add to
    /// auth_token_file (docs/security.md).
    Token {
        /// What the token may do: one or more of write, read, metrics, comma-separated.
        #[arg(long)]
        scopes: String,
        /// Its name in refusals and on stderr (A-Z a-z 0-9 . _ -, at most 64 bytes).
        /// [default: token- and the first 8 hex digits of its hash]
        #[arg(long)]
        name: Option<String>,
    },
    /// Verify every checksum; report segments, records and bytes. Exit 1 on damage.
    Check {
        /// Data directory.
        #[arg(long, default_value = "./data", env = "RINGSTASH_DATA_DIR")]
        data_dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        resync: ResyncWindow,
    },
}

/// `cat`'s and `check`'s `--damage-resync-window-bytes`: `serve`'s setting of that
/// name (these commands do not read the server's settings), with its range.
#[derive(clap::Args)]
struct ResyncWindow {
    /// Bytes read at a time while searching past a damaged range for the next valid
    /// record, as serve's damage_resync_window_bytes.
    #[arg(
        long,
        env = "RINGSTASH_DAMAGE_RESYNC_WINDOW_BYTES",
        default_value_t = ringstash::wal::DAMAGE_RESYNC_WINDOW_BYTES_DEFAULT as u64,
        value_parser = clap::value_parser!(u64).range(
            ringstash::wal::DAMAGE_RESYNC_WINDOW_BYTES_MIN as u64
                ..=ringstash::wal::DAMAGE_RESYNC_WINDOW_BYTES_MAX as u64
        )
    )]
    damage_resync_window_bytes: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGSTASH_LOG")
        .unwrap_or_else(|_| "info".into());
    // Colours only for a person at a terminal: a journal, a file or a pipe would
    // get escape codes in every line.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringstash: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Dispatches a subcommand; each returns the exit code it decided on, or an error that
/// `main` prints and exits 1 with.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, settings } => serve(config.as_deref(), *settings),
        Command::Cat {
            data_dir,
            from,
            follow,
            meta,
            limit,
            since,
            until,
            time_skew_ms,
            level,
            service,
            grep,
            stream,
            partition,
            resync,
            damage_settle_ms,
        } => cat(
            &partition_dir(&data_dir, &stream, partition)?,
            &ringstash::cli::CatOptions {
                from,
                follow,
                show_meta: meta,
                limit,
                since_ns: since,
                until_ns: until,
                time_skew_ms,
                levels: level,
                services: service,
                grep: grep.map(String::into_bytes),
                damage: ringstash::wal::DirReadConfig {
                    damage_resync_window_bytes: resync.damage_resync_window_bytes as usize,
                    damage_settle_ms,
                },
            },
        ),
        Command::Append {
            data_dir,
            batch_records,
            print_offsets,
            segment_bytes_max,
            fsync,
            write_mode,
            io_driver,
        } => append(
            append_log_config(data_dir, segment_bytes_max, fsync, write_mode, io_driver),
            &ringstash::cli::AppendOptions {
                batch_records: batch_records.max(1),
                print_offsets,
            },
        ),
        Command::Check {
            data_dir,
            json,
            resync,
        } => check(&data_dir, json, resync.damage_resync_window_bytes as usize),
        Command::Token { scopes, name } => {
            let scopes = ringstash::auth::Scopes::parse(&scopes).map_err(anyhow::Error::msg)?;
            let t =
                ringstash::auth::generate(scopes, name.as_deref()).map_err(anyhow::Error::msg)?;
            println!("token: {}\nline: {}", t.token, t.line);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The settings file first, then the environment and the flags over it.
fn serve(
    config: Option<&Path>,
    settings: ringstash::config::SettingsArgs,
) -> anyhow::Result<ExitCode> {
    let mut s = match config {
        Some(path) => ringstash::config::Settings::from_file(path)?,
        None => ringstash::config::Settings::default(),
    };
    settings.apply(&mut s);
    ringstash::serve::run(s)?;
    Ok(ExitCode::SUCCESS)
}

/// `cat` and `check` only read: a missing directory is refused with its name, never
/// created.
fn existing_dir(data_dir: &Path) -> anyhow::Result<()> {
    if !data_dir.is_dir() {
        anyhow::bail!("data directory {} does not exist", data_dir.display());
    }
    Ok(())
}

fn cat(data_dir: &Path, opts: &ringstash::cli::CatOptions) -> anyhow::Result<ExitCode> {
    existing_dir(data_dir)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    let damaged = ringstash::cli::cat(data_dir, opts, &mut out, &mut std::io::stderr())?;
    Ok(if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(ringstash::cli::CAT_EXIT_DAMAGED)
    })
}

/// The log's defaults, with groups and records shrunk to fit a small
/// `--segment-bytes-max`, so that any segment size the log accepts also validates.
/// The log's own defaults ([`LogConfig::new`](ringstash::wal::LogConfig::new), the same
/// as `serve`'s), with the flags given over them.
fn append_log_config(
    data_dir: PathBuf,
    segment_bytes_max: Option<u64>,
    fsync: Option<ringstash::wal::FsyncPolicy>,
    write_mode: Option<ringstash::wal::WriteMode>,
    io_driver: Option<ringstash::wal::IoDriver>,
) -> ringstash::wal::LogConfig {
    let mut config = ringstash::wal::LogConfig::new(data_dir);
    if let Some(mode) = write_mode {
        config.write_mode = mode;
    }
    if let Some(driver) = io_driver {
        config.io_driver = driver;
    }
    if let Some(max) = segment_bytes_max {
        config.segment_bytes_max = max;
    }
    config.group_bytes_max = config
        .group_bytes_max
        .min((config.segment_bytes_max / 4) as usize);
    config.record_bytes_max = config
        .record_bytes_max
        .min(config.group_bytes_max - ringstash::wal::format::RECORD_HEADER_BYTES);
    if let Some(fsync) = fsync {
        config.fsync = fsync;
    }
    config
}

/// Appends stdin; the log is shut down (its last group synced) before the exit code
/// is decided, so a writer failure at any point exits 1.
fn append(
    config: ringstash::wal::LogConfig,
    opts: &ringstash::cli::AppendOptions,
) -> anyhow::Result<ExitCode> {
    let log = ringstash::wal::Log::open(config)?;
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(1 << 20, stdin.lock());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let n = ringstash::cli::append(&log, opts, &mut input, &mut out)?;
    log.shutdown();
    if let Some(why) = log.failure() {
        anyhow::bail!("log failed: {why}");
    }
    tracing::info!(records = n, committed_end = log.committed_end(), "appended");
    Ok(ExitCode::SUCCESS)
}

/// The directory of `stream`'s partition `partition` in `data_dir`, checked against
/// the streams the directory holds.
fn partition_dir(data_dir: &Path, stream: &str, partition: u32) -> anyhow::Result<PathBuf> {
    use ringstash::streams::layout;
    existing_dir(data_dir)?;
    let streams = layout::on_disk(data_dir)?;
    let Some((_, n)) = streams.iter().find(|(s, _)| s == stream) else {
        let names: Vec<&str> = streams.iter().map(|(s, _)| s.as_str()).collect();
        anyhow::bail!(
            "{} holds no stream {stream:?} (it holds: {})",
            data_dir.display(),
            names.join(", ")
        );
    };
    if partition >= *n {
        anyhow::bail!("stream {stream:?} has {n} partition(s), 0..={}", n - 1);
    }
    Ok(layout::partition_dir(data_dir, stream, partition))
}

/// Checks every partition of every stream the data directory holds: the default
/// stream's partition 0 (the directory itself) at the top of the report, the others
/// after it, each named. Prints the reports (text or JSON); exits 1 if any segment is
/// damaged, so scripts need not parse them. `window_bytes`: `--damage-resync-window-bytes`.
fn check(data_dir: &Path, json: bool, window_bytes: usize) -> anyhow::Result<ExitCode> {
    use ringstash::streams::layout;
    existing_dir(data_dir)?;
    let mut reports = Vec::new();
    for (stream, n) in layout::on_disk(data_dir)? {
        for p in 0..n {
            let dir = layout::partition_dir(data_dir, &stream, p);
            if !dir.is_dir() {
                // Counted but never opened (a start that stopped before it): nothing
                // was written there, so nothing can be damaged.
                eprintln!("stream {stream} partition {p}: no directory yet (nothing written)");
                continue;
            }
            let report = ringstash::wal::check::check_dir(&dir, window_bytes)?;
            let first = stream == ringstash::streams::DEFAULT_STREAM && p == 0;
            reports.insert(
                if first { 0 } else { reports.len() },
                (stream.clone(), p, report),
            );
        }
    }
    let clean = reports.iter().all(|(_, _, r)| r.errors.is_empty());
    if json {
        let mut doc = serde_json::to_value(&reports[0].2)?;
        if reports.len() > 1 {
            let others: Vec<serde_json::Value> = reports[1..]
                .iter()
                .map(|(stream, p, r)| {
                    serde_json::json!({ "stream": stream, "partition": p, "report": r })
                })
                .collect();
            doc["partitions"] = others.into();
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let several = reports.len() > 1;
        for (stream, p, r) in &reports {
            if several {
                println!("stream {stream} partition {p}:");
            }
            print_check(r);
        }
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One partition's `check` report as text.
fn print_check(r: &ringstash::wal::check::CheckReport) {
    {
        for s in &r.segments {
            println!(
                "{}  base {}  records {}  bytes {}{}",
                s.path.display(),
                s.base_offset,
                s.records,
                s.bytes,
                s.problem
                    .as_deref()
                    .map(|p| format!("  DAMAGED: {p}"))
                    .unwrap_or_default()
            );
        }
        println!(
            "segments {}  records {}  bytes {}  errors {}",
            r.segments.len(),
            r.records,
            r.bytes,
            r.errors.len()
        );
        if let Some(t) = &r.torn_tail {
            println!("torn tail (unacknowledged; cut at next start): {t}");
        }
        if let Some(t) = &r.unsynced_cut {
            println!("unsynced cut (no record lost; cut again at next start): {t}");
        }
        for n in &r.index_notes {
            println!("index: {n}");
        }
        for n in &r.time_index_notes {
            println!("time index: {n}");
        }
        for e in &r.errors {
            println!("ERROR: {e}");
        }
    }
}
