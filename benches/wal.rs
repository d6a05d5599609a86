//! Storage-engine benchmarks: framing, the MPSC ring, and the group-commit writer.
//!
//! Run all of them with `cargo bench --bench wal` (a few minutes on 2 cores), or one
//! group with a filter: `cargo bench --bench wal -- writer`.
//!
//! | group | what one iteration is | throughput unit |
//! |-------|-----------------------|-----------------|
//! | `framing` | `BatchBuilder::push` of one 128-byte payload (frame + CRC32C) | records, and payload bytes |
//! | `ring` | one batch pushed by one of P producer threads and popped by the consumer | batches |
//! | `writer` | one batch of N 128-byte records appended and, eventually, made durable | records |
//!
//! The writer benches use real files on the real disk: a temporary directory under the
//! cargo target directory (override with `RINGSTASH_BENCH_DIR`), never `/tmp`, which
//! may be tmpfs. The bench refuses to run on tmpfs, because an fdatasync there costs
//! nothing and the figure would mean nothing.
//!
//! The producer keeps a bounded window of batches in flight (it waits for the oldest
//! completion only when the window is full), as a reactor with many connections would,
//! so the writer always has the next group ready. The window persists across samples:
//! each sample measures the steady state, not the filling and draining of the pipe.
//! After each writer bench a `SUMMARY` line gives the median over the measured samples
//! of records/s and MB/s (1 MB = 1e6 bytes, framed bytes as written to disk), and the
//! writer's own counters: mean group size and mean fdatasync latency (measured from
//! the group's write submission to its fdatasync completion, so it includes the
//! write), and the process's CPU time per record while measuring.

use std::{
    collections::VecDeque,
    hint::black_box,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use ringstash::{
    ring::{BatchRing, PushError},
    wal::{
        Appender, BatchBuilder, Completion, FsyncPolicy, Log, LogConfig,
        format::RECORD_HEADER_BYTES,
    },
};

/// Payload size of every record in these benches, in bytes.
const PAYLOAD_BYTES: usize = 128;
/// Bytes one record occupies on disk.
const FRAME_BYTES: usize = RECORD_HEADER_BYTES + PAYLOAD_BYTES;

/// A 128-byte log line (JSON-ish, printable), the shape the bars are stated for.
fn payload() -> [u8; PAYLOAD_BYTES] {
    let text = br#"{"ts":"2026-11-22T14:13:00.123Z","level":"info","service":"checkout","msg":"order placed","order":"A-123456789","user":"u-42"}"#;
    let mut p = [b' '; PAYLOAD_BYTES];
    let n = text.len().min(PAYLOAD_BYTES);
    p[..n].copy_from_slice(&text[..n]);
    p[PAYLOAD_BYTES - 1] = b'\n';
    p
}

/// CPU time used by this process so far, all threads, user and system.
fn process_cpu() -> Duration {
    // SAFETY: getrusage fills a zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The 1-, 5- and 15-minute load averages, for the record.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------
// framing

fn framing(c: &mut Criterion) {
    const RECORDS_PER_BATCH: usize = 1024;
    let p = payload();
    let mut g = c.benchmark_group("framing");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    // One iteration frames a whole batch and takes it, as a reactor does; the two ids
    // differ only in the unit criterion reports.
    for (id, tp) in [
        (
            "push_128B/records",
            Throughput::Elements(RECORDS_PER_BATCH as u64),
        ),
        (
            "push_128B/payload_bytes",
            Throughput::Bytes((RECORDS_PER_BATCH * PAYLOAD_BYTES) as u64),
        ),
    ] {
        g.throughput(tp);
        g.bench_function(id, |b| {
            let mut builder = BatchBuilder::new(RECORDS_PER_BATCH * FRAME_BYTES, 1 << 20);
            let mut ts = 1_700_000_000_000_000_000u64;
            b.iter(|| {
                for _ in 0..RECORDS_PER_BATCH {
                    ts += 1;
                    builder.push(ts, black_box(&p)).expect("fits");
                }
                black_box(builder.take())
            });
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------
// ring

/// Stand-in for the writer's batch entry (a `BytesMut`, a count and an `Arc`): the
/// same size, 48 bytes, without the allocations, so the bench measures the ring.
#[derive(Debug, Clone, Copy)]
struct FakeBatch {
    producer: u64,
    seq: u64,
    _rest: [u64; 4],
}

/// Pops `total` items (from at most 8 producers) the way the writer does: spin briefly on an empty ring, then
/// announce the sleep and block on the ring's eventfd until a producer writes it.
fn consume(ring: &BatchRing<FakeBatch>, total: u64) {
    let mut got = 0u64;
    let mut idle_spins = 0u32;
    // Next sequence number expected from each producer: the ring keeps each
    // producer's order, and checking it costs the consumer one compare.
    let mut next = [0u64; 8];
    while got < total {
        if let Some(b) = ring.pop() {
            let expected = &mut next[b.producer as usize];
            assert_eq!(b.seq, *expected, "per-producer order broken");
            *expected += 1;
            black_box(b);
            got += 1;
            idle_spins = 0;
            continue;
        }
        idle_spins += 1;
        if idle_spins < 256 {
            std::hint::spin_loop();
            continue;
        }
        idle_spins = 0;
        if ring.prepare_sleep() {
            let mut pfd = libc::pollfd {
                fd: ring.wake_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a 10 ms timeout only guards against a lost
            // wake-up hanging the bench (the ring's protocol should prevent it).
            unsafe { libc::poll(&mut pfd, 1, 10) };
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into a live u64 from the ring's non-blocking eventfd.
            unsafe { libc::read(ring.wake_fd(), (&mut v as *mut u64).cast(), 8) };
        }
        ring.cancel_sleep();
    }
}

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for producers in [1usize, 2, 4] {
        g.bench_with_input(
            BenchmarkId::new("push_pop_cap1024", format!("{producers}p1c")),
            &producers,
            |b, &producers| {
                b.iter_custom(|iters| {
                    let ring = Arc::new(BatchRing::new(1024).expect("eventfd"));
                    let start = Instant::now();
                    let handles: Vec<_> = (0..producers as u64)
                        .map(|p| {
                            let ring = ring.clone();
                            let n =
                                iters / producers as u64 + u64::from(p < iters % producers as u64);
                            std::thread::spawn(move || {
                                for seq in 0..n {
                                    let mut item = FakeBatch {
                                        producer: p,
                                        seq,
                                        _rest: [0; 4],
                                    };
                                    let mut tries = 0u32;
                                    loop {
                                        match ring.push(item) {
                                            Ok(()) => break,
                                            Err(PushError::Full(back)) => {
                                                item = back;
                                                tries += 1;
                                                if tries < 16 {
                                                    std::hint::spin_loop();
                                                } else {
                                                    std::thread::yield_now();
                                                }
                                            }
                                            Err(PushError::Closed(_)) => unreachable!(),
                                        }
                                    }
                                }
                            })
                        })
                        .collect();
                    consume(&ring, iters);
                    for h in handles {
                        h.join().expect("producer");
                    }
                    start.elapsed()
                });
            },
        );
    }
    g.finish();
}

// ---------------------------------------------------------------------------------
// writer

/// Where the writer benches put their logs: on the disk, not in tmpfs.
fn bench_root() -> PathBuf {
    let root = std::env::var_os("RINGSTASH_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("bench-wal"))
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-wal"));
    std::fs::create_dir_all(&root).expect("create bench directory");
    // SAFETY: statfs fills a zeroed struct from a NUL-terminated path we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let cpath = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).expect("path");
    if unsafe { libc::statfs(cpath.as_ptr(), &mut st) } == 0 {
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        assert!(
            st.f_type as i64 != TMPFS_MAGIC,
            "{} is on tmpfs: fdatasync is free there, set RINGSTASH_BENCH_DIR to a directory on the disk",
            root.display()
        );
    }
    root
}

/// One open log and the producer state that persists across criterion's samples.
struct WriterRun {
    log: Log,
    appender: Appender,
    builder: BatchBuilder,
    /// Completions not yet waited for, oldest first; at most `window_max`.
    window: VecDeque<Completion>,
    window_max: usize,
    records_per_batch: usize,
    payload: [u8; PAYLOAD_BYTES],
    /// (batches, elapsed, process CPU time) of every call from criterion, warm-up
    /// included.
    samples: Vec<(u64, Duration, Duration)>,
    _dir: tempfile::TempDir,
}

impl WriterRun {
    fn open(config: impl FnOnce(LogConfig) -> LogConfig, records_per_batch: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(bench_root())
            .expect("temp dir");
        let log = Log::open(config(LogConfig::new(dir.path()))).expect("open log");
        let batch_bytes = records_per_batch * FRAME_BYTES;
        // Enough batches in flight to fill every group in flight and the ring behind
        // them several times over (24 MiB), bounded by 4096 completions.
        let window_max = ((24 << 20) / batch_bytes).clamp(8, 4096);
        WriterRun {
            appender: log.appender(),
            log,
            builder: BatchBuilder::new(batch_bytes, 1 << 20),
            window: VecDeque::with_capacity(window_max),
            window_max,
            records_per_batch,
            payload: payload(),
            samples: Vec::new(),
            _dir: dir,
        }
    }

    /// Appends `batches` batches, waiting for the oldest completion whenever the
    /// window is full; returns the time taken.
    fn run(&mut self, batches: u64) -> Duration {
        let cpu_start = process_cpu();
        let start = Instant::now();
        for _ in 0..batches {
            let ts = ringstash::wal::now_ns();
            for _ in 0..self.records_per_batch {
                self.builder.push(ts, &self.payload).expect("fits");
            }
            let (frames, n) = self.builder.take();
            if self.window.len() == self.window_max {
                let c = self.window.pop_front().expect("non-empty");
                c.wait().expect("batch durable");
            }
            let c = self.appender.append(frames, n).expect("appended");
            self.window.push_back(c);
        }
        let elapsed = start.elapsed();
        self.samples
            .push((batches, elapsed, process_cpu().saturating_sub(cpu_start)));
        elapsed
    }

    /// Waits for everything in flight, prints the summary, closes the log.
    fn finish(mut self, name: &str, measured_samples: usize) {
        for c in self.window.drain(..) {
            c.wait().expect("batch durable");
        }
        if self.samples.is_empty() {
            // Filtered out on the command line: nothing to report.
            return;
        }
        let measured = &self.samples[self.samples.len().saturating_sub(measured_samples)..];
        let mut rates: Vec<f64> = measured
            .iter()
            .map(|&(b, d, _)| (b * self.records_per_batch as u64) as f64 / d.as_secs_f64())
            .collect();
        // CPU of the whole process (producer, writer, and the kernel's io_uring workers,
        // which are threads of this process) per record appended while measuring.
        let (cpu, records) = measured.iter().fold((0.0, 0u64), |(c, r), &(b, _, cpu)| {
            (c + cpu.as_secs_f64(), r + b * self.records_per_batch as u64)
        });
        let cpu_us_per_record = cpu * 1e6 / records.max(1) as f64;
        let cpu_busy = cpu / measured.iter().map(|s| s.1.as_secs_f64()).sum::<f64>();
        rates.sort_by(f64::total_cmp);
        let median = if rates.is_empty() {
            0.0
        } else if rates.len() % 2 == 1 {
            rates[rates.len() / 2]
        } else {
            (rates[rates.len() / 2 - 1] + rates[rates.len() / 2]) / 2.0
        };
        let (lo, hi) = (
            rates.first().copied().unwrap_or(0.0),
            rates.last().copied().unwrap_or(0.0),
        );
        let st = self.log.stats();
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let groups = ld(&st.groups_committed).max(1);
        let fsyncs = ld(&st.fsyncs).max(1);
        let mb = |records: f64| records * FRAME_BYTES as f64 / 1e6;
        println!(
            "SUMMARY {name}: median {:.0} records/s = {:.1} MB/s framed ({:.1} MB/s payload); \
             samples {} min {:.0} max {:.0} records/s; window {} batches; \
             groups {} mean {:.0} B/group; fdatasync mean {:.2} ms max {:.2} ms; \
             rotations {}; cpu {:.3} us/record ({:.2} cores busy); load {}",
            median,
            mb(median),
            median * PAYLOAD_BYTES as f64 / 1e6,
            rates.len(),
            lo,
            hi,
            self.window_max,
            ld(&st.groups_committed),
            ld(&st.bytes_committed) as f64 / groups as f64,
            ld(&st.fsync_ns_total) as f64 / fsyncs as f64 / 1e6,
            ld(&st.fsync_ns_max) as f64 / 1e6,
            ld(&st.segments_rotated),
            cpu_us_per_record,
            cpu_busy,
            loadavg(),
        );
        self.log.shutdown();
    }
}

fn writer(c: &mut Criterion) {
    const SAMPLES: usize = 10;
    println!(
        "writer benches in {} (load {})",
        bench_root().display(),
        loadavg()
    );
    let mut g = c.benchmark_group("writer");
    g.sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    type Tweak = fn(LogConfig) -> LogConfig;
    // (bench id, records per batch, config).
    let cases: [(&str, usize, Tweak); 7] = [
        ("always/batch1/inflight2_group4M", 1, |c| c),
        ("always/batch64/inflight2_group4M", 64, |c| c),
        ("always/batch4096/inflight2_group4M", 4096, |c| c),
        ("always/batch4096/inflight1_group4M", 4096, |c| LogConfig {
            groups_in_flight_max: 1,
            ..c
        }),
        ("always/batch4096/inflight2_group1M", 4096, |c| LogConfig {
            group_bytes_max: 1 << 20,
            record_bytes_max: 64 << 10, // must stay below group_bytes_max - 24
            ..c
        }),
        ("always/batch4096/inflight1_group1M", 4096, |c| LogConfig {
            groups_in_flight_max: 1,
            group_bytes_max: 1 << 20,
            record_bytes_max: 64 << 10,
            ..c
        }),
        // Not durable: the ceiling the writer reaches when fdatasync costs nothing, to
        // tell the disk's share of the durable figures from the CPU's.
        ("never/batch4096/inflight2_group4M", 4096, |c| LogConfig {
            fsync: FsyncPolicy::Never,
            ..c
        }),
    ];
    for (id, records_per_batch, tweak) in cases {
        g.throughput(Throughput::Elements(records_per_batch as u64));
        let mut run = WriterRun::open(tweak, records_per_batch);
        g.bench_function(id, |b| b.iter_custom(|batches| run.run(batches)));
        run.finish(&format!("writer/{id}"), SAMPLES);
    }
    g.finish();
}

criterion_group!(benches, framing, ring, writer);
criterion_main!(benches);
