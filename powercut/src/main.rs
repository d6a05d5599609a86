//! `powercut`: `loadtest kill-loop` on a power-cut filesystem. After every SIGKILL the
//! mount is cut (what the server had not made durable is dropped) before the check
//! of every acked record. Same flags as `loadtest kill-loop`; `--work-dir` holds the
//! ledgers, `backing/` (the real bytes), `trash/` and `mnt/` (the mount, where the data
//! directories are). Exit status 3 when an acked record was lost (or any check failed).

use std::{io::Write, process::ExitCode};

use clap::Parser;
use loadtest::{cli::KillLoopArgs, killloop};
use powercut::Mount;

/// A power cut after every kill of `ringstash serve` under acked load.
#[derive(Parser, Debug)]
#[command(name = "powercut")]
struct Args {
    #[command(flatten)]
    kill: KillLoopArgs,
}

fn main() -> anyhow::Result<ExitCode> {
    let a = Args::parse().kill;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut mount = Mount::new(
        &a.work_dir.join("backing"),
        &a.work_dir.join("mnt"),
        &a.work_dir.join("trash"),
    )?;
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
        data_root: Some(mount.mountpoint().to_owned()),
    };
    println!(
        "power-cut: seed {seed}, {} cuts, kill after {}..={} ms, {} tcp + {} http producers at {} records/s each, segments of {} bytes, fresh data dir every {}, serve {:?}, in {}",
        cfg.iterations,
        cfg.kill_min_ms,
        cfg.kill_max_ms,
        cfg.tcp_producers,
        cfg.http_producers,
        cfg.rate,
        cfg.segment_bytes_max,
        cfg.fresh_every,
        cfg.serve_args,
        cfg.work_dir.display()
    );
    let mut out = std::io::stdout();
    let mut totals = powercut::CutReport::default();
    let r = killloop::run_with_cut(&cfg, &mut out, &mut |_data| {
        let c = mount.cut()?;
        totals.files_rolled_back += c.files_rolled_back;
        totals.bytes_restored += c.bytes_restored;
        totals.names_reverted += c.names_reverted;
        totals.names_kept += c.names_kept;
        Ok(format!(
            ", cut: {} files rolled back ({} bytes), {} names reverted",
            c.files_rolled_back, c.bytes_restored, c.names_reverted
        ))
    });
    let direct = mount.direct_opens();
    drop(mount);
    match r {
        Ok(s) => {
            println!(
                "power-cut: PASSED: seed {seed}: {} cuts, {} acked records ({} acked-record checks), 0 lost, duplicated, reordered or corrupted; {} stored without an ack; {} rotations crossed in {} data dirs; dropped {} volatile bytes in {} files and reverted {} directory operations; {direct} O_DIRECT opens; {:.1} s",
                s.kills,
                s.acked_records,
                s.acked_checks,
                s.unacked_stored,
                s.rotations,
                s.data_dirs,
                totals.bytes_restored,
                totals.files_rolled_back,
                totals.names_reverted,
                s.seconds
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = out.flush();
            eprintln!("power-cut: {e:#}");
            Ok(ExitCode::from(3))
        }
    }
}
