//! `loadtest floor`: the ack latency an ideal durable writer gets from this disk at a
//! given load, to judge a server's ack latency against in the same window.
//!
//! Why not fio's fdatasync percentiles: they are per operation, and a server's ack
//! latency is per batch. One slow fdatasync delays every batch that arrives while it
//! runs and the one after it, so the share of batches a stall touches is its share of
//! *time*, not of operations: 0.5 % of syncs taking 5 ms where the rest take 0.15 ms
//! is a per-sync p99 of 0.15 ms and yet about 14 % of batches waiting milliseconds. On
//! a disk whose flushes stall now and then, "two fdatasync times" read from a
//! per-operation p99 is a bar no durable server can meet, however it is built.
//!
//! So this runs the ideal writer itself: one thread, batches arrive on the same
//! open-loop schedule as `loadtest run --rate` (fixed intervals), and it writes
//! everything that has arrived in one `pwrite` and `fdatasync`s it, then counts those
//! batches acknowledged. Nothing else: no network, no framing, no other threads, one
//! sync in flight. Each batch's latency is from its intended arrival to the end of the
//! fdatasync that covered it: a wait for the sync in progress, then its own sync,
//! which is what "two fdatasync times" means when read per batch.
//!
//! `--overwrite` pre-writes the file with zeros before the clock starts and overwrites
//! it in place (wrapping at `--file-bytes`): the floor for a writer that never extends
//! its files (ringstash's `segment_prewrite`, without the cost of writing the zeros).
//! Without it, the writer appends and starts a new file every `--file-bytes`, like a
//! segmented log.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{
    report::{LatencySummary, thousands},
    stats::{new_histogram, record_ns},
};

/// Bytes the writer hands to one `pwrite` call at most; larger syncs take several.
const WRITE_CHUNK_BYTES: usize = 4 << 20;

/// What to run.
#[derive(Debug, Clone)]
pub struct FloorConfig {
    /// Directory for the data files (removed afterwards).
    pub dir: PathBuf,
    /// Target records per second.
    pub rate: f64,
    /// Records per batch (one latency sample per batch).
    pub batch: u32,
    /// Bytes per record.
    pub record_size: u32,
    /// Measured time.
    pub duration: Duration,
    /// Time before the measurement, run but not recorded.
    pub warmup: Duration,
    /// Size of one data file.
    pub file_bytes: u64,
    /// Overwrite a pre-written file instead of appending.
    pub overwrite: bool,
}

/// What it measured. Latencies in µs.
#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    /// `append` or `overwrite`.
    pub mode: &'static str,
    /// Target records per second.
    pub rate_target: f64,
    /// Records per batch.
    pub batch: u32,
    /// Bytes per record.
    pub record_size: u32,
    /// Measured seconds (the schedule's, not the wall clock's).
    pub seconds: f64,
    /// Records acknowledged in the window.
    pub records: u64,
    /// Records per second achieved.
    pub records_per_s: f64,
    /// Megabytes (10^6) per second achieved.
    pub mb_per_s: f64,
    /// fdatasync calls in the window.
    pub syncs: u64,
    /// Mean bytes written per fdatasync.
    pub bytes_per_sync_mean: f64,
    /// Per batch: intended arrival to the end of its fdatasync (the ack floor).
    pub latency_us: LatencySummary,
    /// Per call: fdatasync.
    pub fdatasync_us: LatencySummary,
    /// Per sync: the `pwrite` calls before it.
    pub write_us: LatencySummary,
}

/// The data files: the current one, where the next write goes, and all made so far.
struct Files {
    dir: PathBuf,
    file: File,
    pos: u64,
    made: Vec<PathBuf>,
    cfg_bytes: u64,
    overwrite: bool,
}

impl Files {
    fn open(cfg: &FloorConfig) -> anyhow::Result<Files> {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
        let mut f = Files {
            dir: cfg.dir.clone(),
            file: tempfile_in(&cfg.dir, 0)?.0,
            pos: 0,
            made: Vec::new(),
            cfg_bytes: cfg.file_bytes,
            overwrite: cfg.overwrite,
        };
        f.made.push(f.path(0));
        if cfg.overwrite {
            let zeros = vec![0u8; 1 << 20];
            let mut left = cfg.file_bytes;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.file.write_all(&zeros[..n]).context("pre-writing zeros")?;
                left -= n as u64;
            }
            f.file.sync_all().context("syncing the pre-written file")?;
            sync_dir(&cfg.dir)?;
        }
        Ok(f)
    }

    fn path(&self, n: usize) -> PathBuf {
        path_of(&self.dir, n)
    }

    /// Makes room for `len` bytes: wraps (overwrite) or starts the next file (append).
    fn room_for(&mut self, len: u64) -> anyhow::Result<()> {
        if self.pos == 0 || self.pos + len <= self.cfg_bytes {
            return Ok(());
        }
        if self.overwrite {
            self.pos = 0;
            return Ok(());
        }
        let n = self.made.len();
        let (file, path) = tempfile_in(&self.dir, n)?;
        // A new file's directory entry must be durable before its data counts.
        sync_dir(&self.dir)?;
        self.file = file;
        self.made.push(path);
        self.pos = 0;
        Ok(())
    }

    fn remove(self) {
        for p in &self.made {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Writes `len` bytes of records from `chunk` at the current position (which it
    /// does not advance), one `pwrite` per chunk.
    fn write_records(&self, chunk: &[u8], len: u64, record_size: usize) -> anyhow::Result<()> {
        let mut off = 0u64;
        while off < len {
            let n = (len - off).min(chunk.len() as u64) as usize;
            // Chunks start on a record boundary: the chunk holds whole records.
            let n = n - n % record_size;
            self.file
                .write_all_at(&chunk[..n], self.pos + off)
                .context("writing")?;
            off += n as u64;
        }
        Ok(())
    }
}

fn path_of(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("floor-{}-{n}.dat", std::process::id()))
}

fn tempfile_in(dir: &Path, n: usize) -> anyhow::Result<(File, PathBuf)> {
    let p = path_of(dir, n);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .with_context(|| format!("creating {}", p.display()))?;
    Ok((f, p))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Runs the ideal writer and removes its files.
///
/// # Errors
/// A bad setting, or a file operation that failed (named, with the path).
pub fn run(cfg: &FloorConfig) -> anyhow::Result<FloorReport> {
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        bail!("--rate must be a positive number of records per second");
    }
    if cfg.batch == 0 || cfg.record_size == 0 {
        bail!("--batch and --record-size must be at least 1");
    }
    if cfg.duration.is_zero() {
        bail!("-d/--duration must be more than zero");
    }
    let mut files = Files::open(cfg)?;
    let result = measure(cfg, &mut files);
    files.remove();
    result
}

/// A write buffer of records as they would be stored: printable bytes, one newline
/// each, `record_size` bytes apart.
fn record_chunk(record_size: usize) -> Vec<u8> {
    let mut chunk = vec![b'x'; WRITE_CHUNK_BYTES.max(record_size)];
    for i in (record_size - 1..chunk.len()).step_by(record_size) {
        chunk[i] = b'\n';
    }
    chunk
}

fn measure(cfg: &FloorConfig, files: &mut Files) -> anyhow::Result<FloorReport> {
    let batch_bytes = u64::from(cfg.batch) * u64::from(cfg.record_size);
    let interval_ns = f64::from(cfg.batch) / cfg.rate * 1e9;
    let warm_ns = cfg.warmup.as_nanos() as f64;
    let end_ns = warm_ns + cfg.duration.as_nanos() as f64;
    // Batches whose intended time falls in [0, end): the schedule, fixed in advance.
    let total = (end_ns / interval_ns).ceil() as u64;
    let intended = |k: u64| k as f64 * interval_ns;
    let measured = |k: u64| intended(k) >= warm_ns;

    let chunk = record_chunk(cfg.record_size as usize);

    let (mut latency, mut fsync, mut write): (Histogram<u64>, _, _) =
        (new_histogram(), new_histogram(), new_histogram());
    let (mut records, mut syncs, mut sync_bytes) = (0u64, 0u64, 0u64);
    let mut done = 0u64;
    let t0 = Instant::now();
    let ns = |at: Instant| at.duration_since(t0).as_nanos() as f64;
    while done < total {
        let now = ns(Instant::now());
        let arrived = ((now / interval_ns).floor() as u64 + 1).min(total);
        if arrived <= done {
            let next = Duration::from_nanos(intended(done) as u64);
            std::thread::sleep(next.saturating_sub(t0.elapsed()));
            continue;
        }
        let len = (arrived - done) * batch_bytes;
        files.room_for(len)?;
        let w0 = Instant::now();
        files.write_records(&chunk, len, cfg.record_size as usize)?;
        let w1 = Instant::now();
        files.file.sync_data().context("fdatasync")?;
        let s1 = Instant::now();
        files.pos += len;
        let acked = ns(s1);
        let mut counted = 0u64;
        for k in (done..arrived).filter(|&k| measured(k)) {
            record_ns(&mut latency, (acked - intended(k)).max(0.0) as u64);
            counted += 1;
        }
        if counted > 0 {
            records += counted * u64::from(cfg.batch);
            syncs += 1;
            sync_bytes += len;
            record_ns(&mut fsync, s1.duration_since(w1).as_nanos() as u64);
            record_ns(&mut write, w1.duration_since(w0).as_nanos() as u64);
        }
        done = arrived;
    }
    let seconds = cfg.duration.as_secs_f64();
    Ok(FloorReport {
        mode: if cfg.overwrite { "overwrite" } else { "append" },
        rate_target: cfg.rate,
        batch: cfg.batch,
        record_size: cfg.record_size,
        seconds,
        records,
        records_per_s: records as f64 / seconds,
        mb_per_s: (records * u64::from(cfg.record_size)) as f64 / seconds / 1e6,
        syncs,
        bytes_per_sync_mean: if syncs == 0 {
            0.0
        } else {
            sync_bytes as f64 / syncs as f64
        },
        latency_us: LatencySummary::of(&latency),
        fdatasync_us: LatencySummary::of(&fsync),
        write_us: LatencySummary::of(&write),
    })
}

impl FloorReport {
    /// The report as a readable table.
    pub fn to_table(&self) -> String {
        let row = |name: &str, s: &LatencySummary| {
            format!(
                "{name:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                thousands(s.p50),
                thousands(s.p90),
                thousands(s.p99),
                thousands(s.p99_9),
                thousands(s.max),
                thousands(s.count)
            )
        };
        format!(
            "ideal durable writer ({}), target {} records/s in {}-record batches of {} B\n\
             achieved {} records/s ({:.1} MB/s), {} fdatasync/s, {} B per fdatasync on average\n\n\
             {:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n{}{}{}",
            self.mode,
            thousands(self.rate_target as u64),
            self.batch,
            self.record_size,
            thousands(self.records_per_s as u64),
            self.mb_per_s,
            thousands((self.syncs as f64 / self.seconds) as u64),
            thousands(self.bytes_per_sync_mean as u64),
            "µs",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "count",
            row("ack floor (per batch)", &self.latency_us),
            row("fdatasync (per call)", &self.fdatasync_us),
            row("pwrite (per sync)", &self.write_us),
        )
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the report serialises")
    }
}
