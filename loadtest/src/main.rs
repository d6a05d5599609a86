//! The `loadtest` binary: argument parsing and dispatch only.

use std::{io::Write, process::ExitCode};

use clap::Parser;
use loadtest::{
    cli::{Cli, Command, GenArgs, KillLoopArgs, RunArgs},
    floor, killloop, runner,
    sink::Sink,
    workload::Corpus,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run_cmd(&args),
        Command::Gen(args) => gen_cmd(&args),
        Command::Floor(a) => {
            let report = floor::run(&floor::FloorConfig {
                dir: a.dir,
                rate: a.rate,
                batch: a.batch,
                record_size: a.record_size,
                duration: a.duration,
                warmup: a.warmup,
                file_bytes: a.file_bytes,
                overwrite: a.overwrite,
            })?;
            let text = if a.json {
                report.to_json() + "\n"
            } else {
                report.to_table()
            };
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        Command::KillLoop(a) => kill_loop(&a),
        Command::KillCheck(a) => {
            let ledger = killloop::read_ledger(&a.ledger)?;
            match killloop::check_dir(&a.ringstash, &a.data_dir, &ledger)? {
                Ok(c) => {
                    println!(
                        "kill-check: ok: {} acked records checked, {} stored, {} segments",
                        c.acked, c.stored, c.segments
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(what) => {
                    eprintln!("kill-check: FAILED: {what}");
                    Ok(ExitCode::from(3))
                }
            }
        }
        Command::Sink(args) => {
            let sink = Sink::start(args.addr, args.reply)?;
            println!("listening on {}", sink.addr);
            let _ = std::io::stdout().flush();
            loop {
                std::thread::park();
            }
        }
    }
}

/// `loadtest run`: the report on stdout; exit status 3 if a `ws-e2e` subscriber did
/// not get every record exactly once (what went wrong on stderr).
fn run_cmd(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let report = runner::run(args)?;
    let text = if args.json {
        report.to_json() + "\n"
    } else {
        report.to_table()
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    if let Some(e) = report.e2e.as_ref().filter(|e| !e.ok) {
        for (i, s) in e.per_subscriber.iter().enumerate() {
            if s.missed > 0 || s.duplicates > 0 || s.delivered != e.expected_records {
                if i >= 8 {
                    eprintln!("loadtest: ... and more subscribers");
                    break;
                }
                eprintln!(
                    "loadtest: ws-e2e subscriber {i} received {} of {} records ({} skipped, {} not received, {} duplicated){}",
                    s.delivered,
                    e.expected_records,
                    s.missed,
                    s.undelivered,
                    s.duplicates,
                    s.error
                        .as_deref()
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                );
            }
        }
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// `loadtest gen`: the records `run` would send, on stdout.
fn gen_cmd(args: &GenArgs) -> anyhow::Result<ExitCode> {
    let cfg = runner::gen_config(&args.gen_opts, None)?;
    let corpus = Corpus::generate(&cfg).map_err(|e| anyhow::anyhow!("--record-size: {e}"))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut cursor = 0;
    let mut buf = Vec::new();
    let mut left = args.count;
    while left > 0 {
        let n = left.min(4096);
        buf.clear();
        corpus.append_lines(&mut cursor, n as usize, &mut buf);
        if let Err(e) = out.write_all(&buf) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
        left -= n;
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

/// `loadtest kill-loop`: the seed first, a line per kill, the figures at the end;
/// exit status 3 on a mismatch (iteration, seed and what on stderr).
fn kill_loop(a: &KillLoopArgs) -> anyhow::Result<ExitCode> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let cfg = killloop::Config {
        ringstash: a.ringstash.clone(),
        work_dir: a.work_dir.clone(),
        iterations: a.iterations,
        seed,
        kill_min_ms: a.kill_min_ms,
        kill_max_ms: a.kill_max_ms,
        tcp_producers: a.tcp_producers,
        http_producers: a.http_producers,
        batch_max: a.batch_max.max(1),
        rate: a.rate,
        fresh_every: a.fresh_every,
        segment_bytes_max: a.segment_bytes_max,
        serve_args: a.serve_args.clone(),
        data_root: None,
    };
    println!(
        "kill-loop: seed {seed}, {} iterations, kill after {}..={} ms, {} tcp + {} http producers at {} records/s each, segments of {} bytes, fresh data dir every {}, in {}",
        cfg.iterations,
        cfg.kill_min_ms,
        cfg.kill_max_ms,
        cfg.tcp_producers,
        cfg.http_producers,
        cfg.rate,
        cfg.segment_bytes_max,
        cfg.fresh_every,
        cfg.work_dir.display()
    );
    let mut out = std::io::stdout();
    match killloop::run(&cfg, &mut out) {
        Ok(s) => {
            println!(
                "kill-loop: PASSED: seed {seed}: {} kills, {} acked records ({} acked-record checks), 0 lost, duplicated, reordered or corrupted; {} stored without an ack; {} rotations crossed in {} data dirs; {:.1} s",
                s.kills,
                s.acked_records,
                s.acked_checks,
                s.unacked_stored,
                s.rotations,
                s.data_dirs,
                s.seconds
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = out.flush();
            eprintln!("{e:#}");
            Ok(ExitCode::from(3))
        }
    }
}
