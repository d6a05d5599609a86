//! Integration tests for the durable segment log (issue "Durable segment log").
//!
//! Every test works on real files in a temporary directory and checks what a user can
//! see: the records read back, their offsets, the bytes on disk, and the exit codes and
//! messages of the `ringstash` binary. Process-level faults (SIGKILL, seccomp) run the
//! real binary as a child. Nothing is mocked.
//!
//! The on-disk format is parsed here independently of the library (see [`parse_segment`])
//! so that a bug shared by the writer and the reader cannot hide itself.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, OpenOptions},
    io::{BufRead, BufReader, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use ringstash::{
    error::{AppendError, OpenError, ReadError},
    wal::{
        BatchBuilder, Committed, Completion, FsyncPolicy, Log, LogConfig, Reader, Record,
        RecoveryMode, TryAppendError,
        segment::{index_path, list_segments, segment_path},
    },
};

const BIN: &str = env!("CARGO_BIN_EXE_ringstash");

/// Bytes of the segment header and of a record header (docs/format.md).
const SEGMENT_HEADER: u64 = 32;
const RECORD_HEADER: u64 = 24;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A small deterministic PRNG (splitmix64) so runs are reproducible without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A log configuration small enough that a few thousand records rotate many times.
fn small_config(dir: &Path) -> LogConfig {
    let mut c = LogConfig::new(dir);
    c.segment_bytes_max = 64 << 10;
    c.group_bytes_max = 16 << 10;
    c.record_bytes_max = 4 << 10;
    c.index_interval_bytes = 512;
    c.ring_batches_max = 64;
    c
}

/// The payload of record `i`: its number, then printable filler of a varying length, so
/// that a record read at the wrong offset never compares equal.
fn payload(i: u64, rng: &mut Rng, filler_max: u64) -> Vec<u8> {
    let mut p = format!("rec-{i:07}-").into_bytes();
    let n = rng.below(filler_max + 1) as usize;
    p.extend((0..n).map(|k| b'a' + ((i as usize + k) % 26) as u8));
    p
}

/// The timestamp stored with record `i`, so timestamps are checked too.
fn ts(i: u64) -> u64 {
    1_700_000_000_000_000_000 + i * 1_000
}

/// Frames `payloads` into one batch and appends it (waiting out a full ring).
fn append(log: &Log, first_ts: u64, payloads: &[Vec<u8>]) -> Result<Completion, AppendError> {
    let mut b = BatchBuilder::new(16 << 10, log.config().record_bytes_max);
    for (k, p) in payloads.iter().enumerate() {
        b.push(ts(first_ts + k as u64), p).expect("payload fits");
    }
    let (frames, n) = b.take();
    log.appender().append(frames, n)
}

/// Appends and waits until the batch is durable.
fn append_wait(log: &Log, first_ts: u64, payloads: &[Vec<u8>]) -> Committed {
    append(log, first_ts, payloads)
        .expect("append accepted")
        .wait()
        .expect("batch durable")
}

/// Reads every record a reader yields until it has caught up.
fn drain(mut r: Reader) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(rec) = r.next().expect("read") {
        out.push(Record::from(rec));
    }
    out
}

/// Reads every record a live reader yields until it has caught up, a run at a time
/// ([`Reader::next_run`]), with byte bounds that vary from run to run (down to one
/// byte, which must still yield one record), and checks each run's bounds: no record
/// at or past `stop`, and no more than `bytes_max` bytes unless the run is one record.
/// The frames are parsed here, independently of the library.
fn drain_runs(r: &mut Reader, stop: u64) -> Vec<Record> {
    let mut out = Vec::new();
    for bytes_max in [1usize, 100, 777, 4096, 1 << 20].into_iter().cycle() {
        let Some((n, frames)) = r.next_run(stop, bytes_max).expect("read") else {
            break;
        };
        assert!(n >= 1);
        assert!(
            n == 1 || frames.len() <= bytes_max,
            "{n} records in {} bytes, bound {bytes_max}",
            frames.len()
        );
        let mut pos = 0;
        for _ in 0..n {
            let h = &frames[pos..pos + RECORD_HEADER as usize];
            let crc = u32::from_le_bytes(h[8..12].try_into().unwrap());
            let len = u32::from_le_bytes(h[12..16].try_into().unwrap()) as usize;
            let end = pos + RECORD_HEADER as usize + len;
            assert_eq!(crc, crc32c::crc32c(&frames[pos + 12..end]), "crc at {pos}");
            let offset = u64::from_le_bytes(h[0..8].try_into().unwrap());
            assert!(offset < stop, "record {offset} at or past stop {stop}");
            out.push(Record {
                offset,
                timestamp_ns: u64::from_le_bytes(h[16..24].try_into().unwrap()),
                payload: frames[pos + RECORD_HEADER as usize..end].to_vec(),
            });
            pos = end;
        }
        assert_eq!(pos, frames.len(), "the run is exactly its {n} frames");
        assert_eq!(r.next_offset(), out.last().unwrap().offset + 1);
    }
    out
}

/// Asserts that `got` is exactly the records `from..` of `expected` (payload i at offset
/// i, timestamp `ts(i)`).
#[track_caller]
fn assert_records(got: &[Record], expected: &[Vec<u8>], from: u64, what: &str) {
    let from = from.min(expected.len() as u64);
    assert_eq!(
        got.len() as u64,
        expected.len() as u64 - from,
        "{what}: wrong number of records from offset {from} (first: {:?})",
        got.first().map(|r| r.offset)
    );
    for (k, r) in got.iter().enumerate() {
        let o = from + k as u64;
        assert_eq!(r.offset, o, "{what}: offsets not contiguous from {from}");
        assert_eq!(
            r.payload, expected[o as usize],
            "{what}: wrong payload at {o}"
        );
        assert_eq!(r.timestamp_ns, ts(o), "{what}: wrong timestamp at {o}");
    }
}

/// A record as found on disk by this file's own parser.
#[derive(Debug, Clone, Copy)]
struct OnDisk {
    offset: u64,
    position: u64,
    frame_bytes: u64,
}

/// Parses a segment file byte by byte, independently of the library: header, then
/// frames. Stops at the end of the file, or at a record header of zeros if every byte
/// after it is zero too (the unwritten rest of a pre-written active segment); panics on
/// anything malformed (use only on files the test knows to be intact).
fn parse_segment(path: &Path) -> Vec<OnDisk> {
    let bytes = fs::read(path).unwrap();
    assert!(
        bytes.len() >= SEGMENT_HEADER as usize,
        "{path:?}: short header"
    );
    assert_eq!(&bytes[0..8], b"RSTASHLG", "{path:?}: magic");
    assert_eq!(
        u16::from_le_bytes([bytes[8], bytes[9]]),
        1,
        "{path:?}: version"
    );
    let base = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    assert_eq!(crc, crc32c::crc32c(&bytes[0..24]), "{path:?}: header crc");
    let mut pos = SEGMENT_HEADER as usize;
    let mut out = Vec::new();
    while pos < bytes.len() {
        let h = &bytes[pos..pos + RECORD_HEADER as usize];
        if h.iter().all(|&b| b == 0) {
            assert!(
                bytes[pos..].iter().all(|&b| b == 0),
                "{path:?}: zeros at {pos} followed by data"
            );
            break;
        }
        let offset = u64::from_le_bytes(h[0..8].try_into().unwrap());
        let crc = u32::from_le_bytes(h[8..12].try_into().unwrap());
        let len = u32::from_le_bytes(h[12..16].try_into().unwrap()) as usize;
        let end = pos + RECORD_HEADER as usize + len;
        assert!(
            end <= bytes.len(),
            "{path:?}: frame at {pos} overruns the file"
        );
        assert_eq!(
            crc,
            crc32c::crc32c(&bytes[pos + 12..end]),
            "{path:?}: crc at {pos}"
        );
        assert_eq!(offset, base + out.len() as u64, "{path:?}: offset at {pos}");
        out.push(OnDisk {
            offset,
            position: pos as u64,
            frame_bytes: (end - pos) as u64,
        });
        pos = end;
    }
    out
}

/// Reads a sparse index file as (offset relative to base, position) pairs.
fn parse_index(path: &Path) -> Vec<(u32, u32)> {
    fs::read(path)
        .unwrap()
        .chunks_exact(8)
        .map(|e| {
            (
                u32::from_le_bytes(e[0..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..8].try_into().unwrap()),
            )
        })
        .collect()
}

/// Starts `ringstash append --print-offsets` on `dir`, stdin and stdout piped.
fn spawn_append_printing_offsets(dir: &Path) -> std::process::Child {
    Command::new(BIN)
        .args([
            "append",
            "--data-dir",
            dir.to_str().unwrap(),
            "--print-offsets",
        ])
        .env("RINGSTASH_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs the binary with `args` and returns its output.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RINGSTASH_LOG", "warn")
        .output()
        .expect("run ringstash")
}

/// Runs `ringstash check` on `dir`; returns (exit code, stdout + stderr).
fn check(dir: &Path) -> (i32, String) {
    let out = run(&["check", "--data-dir", dir.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("check exited normally"), text)
}

#[track_caller]
fn assert_check_clean(dir: &Path) {
    let (code, text) = check(dir);
    assert_eq!(code, 0, "ringstash check failed:\n{text}");
    assert!(text.contains("errors 0"), "check output:\n{text}");
}

/// Copies the files of a data directory (not the lock) into a new directory.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != ".lock" {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Writes `count` records numbered from 0 (payload filler up to `filler_max` bytes) in
/// batches of 1..=`batch_max` records; returns the payloads, indexed by offset.
fn fill_log(log: &Log, rng: &mut Rng, count: u64, batch_max: u64, filler_max: u64) -> Vec<Vec<u8>> {
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut pending: VecDeque<(u64, Completion)> = VecDeque::new();
    while (expected.len() as u64) < count {
        let first = expected.len() as u64;
        let n = (1 + rng.below(batch_max)).min(count - first);
        let batch: Vec<Vec<u8>> = (first..first + n)
            .map(|i| payload(i, rng, filler_max))
            .collect();
        pending.push_back((first, append(log, first, &batch).expect("accepted")));
        expected.extend(batch);
        while pending.len() > 16 {
            let (first, c) = pending.pop_front().unwrap();
            assert_eq!(c.wait().expect("durable").first_offset, first);
        }
    }
    for (first, c) in pending {
        assert_eq!(c.wait().expect("durable").first_offset, first);
    }
    assert_eq!(log.committed_end(), count);
    expected
}

// ---------------------------------------------------------------------------------------
// 1. Round trips across many rotations, readers from any offset
// ---------------------------------------------------------------------------------------

#[test]
fn round_trip_across_many_rotations_from_any_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let config = small_config(&dir);
    let log = Log::open(config.clone()).unwrap();
    let mut rng = Rng(1);

    // Mostly small batches of small records, with some empty and some maximal records.
    let mut expected = fill_log(&log, &mut rng, 2500, 40, 300);
    for special in [Vec::new(), vec![b'x'; config.record_bytes_max], Vec::new()] {
        let i = expected.len() as u64;
        let c = append_wait(&log, i, std::slice::from_ref(&special));
        assert_eq!((c.first_offset, c.records), (i, 1));
        expected.push(special);
    }
    let n = expected.len() as u64;
    assert_eq!(log.committed_end(), n);

    // On disk: many segments, each named by its first offset, each within the size
    // bound, records contiguous within and across segments.
    let bases = list_segments(&dir).unwrap();
    assert!(bases.len() >= 8, "expected many rotations, got {bases:?}");
    let mut next = 0;
    for &base in &bases {
        let path = segment_path(&dir, base);
        assert!(fs::metadata(&path).unwrap().len() <= config.segment_bytes_max);
        let recs = parse_segment(&path);
        assert_eq!(
            base, next,
            "segment {path:?} is not named by its first offset"
        );
        assert!(!recs.is_empty());
        next = base + recs.len() as u64;
    }
    assert_eq!(next, n);

    // Starting points: every segment boundary and its neighbours, every index point and
    // its neighbours in two segments (so some fall mid-interval), and random offsets.
    let mut starts = vec![0, 1, n - 1, n, n + 7];
    for &base in &bases {
        starts.extend([base.saturating_sub(1), base, base + 1]);
    }
    for &base in &bases[1..3] {
        let idx = parse_index(&index_path(&dir, base));
        assert!(idx.len() > 10, "index of {base} is too sparse: {idx:?}");
        for &(rel, _) in &idx {
            let o = base + u64::from(rel);
            starts.extend([o - 1, o, o + 1]);
        }
    }
    starts.extend((0..15).map(|_| rng.below(n)));
    starts.sort_unstable();
    starts.dedup();
    for &from in &starts {
        let got = drain(log.reader(from).unwrap());
        assert_records(&got, &expected, from, "live reader");
        let got = drain_runs(&mut log.reader(from).unwrap(), u64::MAX);
        assert_records(&got, &expected, from, "live reader, by runs");
        // A stop short of the end: exactly the records before it.
        let stop = from.saturating_add(37).min(n);
        let got = drain_runs(&mut log.reader(from).unwrap(), stop);
        assert_records(&got, &expected[..stop as usize], from, "runs up to a stop");
        let got = drain(Reader::open_dir(&dir, from).unwrap());
        assert_records(&got, &expected, from, "directory reader");
    }

    // Followers at the end see new records once they are committed, and nothing before.
    let mut live = log.reader(n).unwrap();
    let mut runs = log.reader(n).unwrap();
    let mut on_disk = Reader::open_dir(&dir, n).unwrap();
    assert!(live.next().unwrap().is_none());
    assert!(runs.next_run(u64::MAX, 4096).unwrap().is_none());
    assert!(on_disk.next().unwrap().is_none());
    let more: Vec<Vec<u8>> = (n..n + 5).map(|i| payload(i, &mut rng, 50)).collect();
    let c = append_wait(&log, n, &more);
    assert_eq!((c.first_offset, c.last_offset()), (n, n + 4));
    expected.extend(more);
    assert_records(&drain(live), &expected, n, "live follower");
    assert_records(
        &drain_runs(&mut runs, u64::MAX),
        &expected,
        n,
        "live follower, by runs",
    );
    assert_records(&drain(on_disk), &expected, n, "directory follower");

    // Reopen: recovery finds everything and numbering continues.
    drop(log);
    assert_check_clean(&dir);
    let log = Log::open(config).unwrap();
    let report = log.recovery_report();
    assert_eq!(report.next_offset, n + 5);
    assert_eq!(report.torn_bytes_cut, 0);
    assert_eq!(report.segments, bases.len());
    assert!(report.sealed_problems.is_empty(), "{report:?}");
    let p = payload(n + 5, &mut rng, 10);
    assert_eq!(
        append_wait(&log, n + 5, std::slice::from_ref(&p)).first_offset,
        n + 5
    );
    expected.push(p);
    assert_records(&drain(log.reader(0).unwrap()), &expected, 0, "after reopen");
    drop(log);

    // `ringstash cat` prints the same records with their offsets.
    let from = bases[3] - 2;
    let out = run(&[
        "cat",
        "--data-dir",
        dir.to_str().unwrap(),
        "--from",
        &from.to_string(),
        "--meta",
        "--limit",
        "4",
    ]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&[u8]> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 4);
    for (k, line) in lines.iter().enumerate() {
        let o = from + k as u64;
        let mut fields = line.splitn(3, |&b| b == b'\t');
        assert_eq!(fields.next().unwrap(), o.to_string().as_bytes());
        assert!(fields.next().unwrap().starts_with(b"2023-11-14T"));
        assert_eq!(fields.next().unwrap(), &expected[o as usize][..]);
    }
}

/// `segment_prewrite`: rotations move into spare segments pre-written with zeros; a
/// sealed or cleanly closed segment is exactly as long as its records; a crash image
/// taken while the active segment is pre-written recovers every committed record, cuts
/// the zeros, and the log carries on.
#[test]
fn pre_written_segments_are_cut_to_their_records_and_recovered_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let config = small_config(&dir);
    assert!(config.segment_prewrite, "on by default");
    let log = Log::open(config.clone()).unwrap();
    let mut rng = Rng(11);
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let active_is_prewritten = |expected: &[Vec<u8>]| {
        let base = *list_segments(&dir).unwrap().last().unwrap();
        let len = fs::metadata(segment_path(&dir, base)).unwrap().len();
        base < expected.len() as u64 && len == config.segment_bytes_max
    };
    // One batch at a time, so the preparer has time to build spares between rotations;
    // go on until several spares were used and the active segment is one of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // A follower reading runs after every batch, as binary subscribers do: it must read
    // up to the committed records in each pre-written segment and never into its zeros.
    let mut follower = log.reader(0).unwrap();
    let mut followed = Vec::new();
    while log
        .stats()
        .spares_used
        .load(std::sync::atomic::Ordering::Relaxed)
        < 3
        || !active_is_prewritten(&expected)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no spare was ever used"
        );
        let first = expected.len() as u64;
        let batch: Vec<Vec<u8>> = (first..first + 8)
            .map(|i| payload(i, &mut rng, 300))
            .collect();
        assert_eq!(append_wait(&log, first, &batch).first_offset, first);
        expected.extend(batch);
        followed.extend(drain_runs(&mut follower, u64::MAX));
        assert_eq!(followed.len(), expected.len(), "the follower lags");
    }
    assert_records(&followed, &expected, 0, "live follower, by runs");
    let bases = list_segments(&dir).unwrap();
    // Sealed segments hold their records and nothing after them.
    for &base in &bases[..bases.len() - 1] {
        let path = segment_path(&dir, base);
        let recs = parse_segment(&path);
        let last = recs.last().unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            last.position + last.frame_bytes,
            "{path:?}: a sealed segment ends at its last record"
        );
    }
    // A live follower and an on-disk reader both read through the zeros correctly.
    assert_records(&drain(log.reader(0).unwrap()), &expected, 0, "live");
    assert_records(
        &drain(Reader::open_dir(&dir, 0).unwrap()),
        &expected,
        0,
        "on disk",
    );
    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("unwritten (zero) space"), "{text}");

    // A crash image: the files as they are now, the active segment still pre-written.
    let crashed = tmp.path().join("crashed");
    copy_dir(&dir, &crashed);
    // `recovery = strict` opens it too (zeros to the end are unwritten space, not
    // damage), but refuses once anything but zeros follows.
    for (name, damage) in [("strict-zeros", false), ("strict-damaged", true)] {
        let copy = tmp.path().join(name);
        copy_dir(&dir, &copy);
        let active = segment_path(&copy, *bases.last().unwrap());
        if damage {
            let f = OpenOptions::new().write(true).open(&active).unwrap();
            f.write_all_at(b"x", config.segment_bytes_max - 1).unwrap();
        }
        let mut strict = config.clone();
        strict.dir = copy;
        strict.recovery = RecoveryMode::Strict;
        match (Log::open(strict), damage) {
            (Ok(log), false) => {
                assert_eq!(log.recovery_report().next_offset, expected.len() as u64);
            }
            (Err(OpenError::Corrupt { .. }), true) => {
                assert_eq!(
                    fs::metadata(&active).unwrap().len(),
                    config.segment_bytes_max
                );
            }
            (other, _) => panic!("{name}: {:?}", other.map(|_| "opened")),
        }
    }
    let active = segment_path(&crashed, *bases.last().unwrap());
    let data_end = parse_segment(&active)
        .last()
        .map_or(32, |r| r.position + r.frame_bytes);
    let mut c2 = config.clone();
    c2.dir = crashed.clone();
    let log2 = Log::open(c2).unwrap();
    let report = log2.recovery_report().clone();
    assert_eq!(report.next_offset, expected.len() as u64, "{report:?}");
    assert_eq!(
        report.torn_bytes_cut,
        config.segment_bytes_max - data_end,
        "{report:?}"
    );
    assert_eq!(fs::metadata(&active).unwrap().len(), data_end);
    let first = expected.len() as u64;
    let more: Vec<Vec<u8>> = (first..first + 5)
        .map(|i| payload(i, &mut rng, 300))
        .collect();
    assert_eq!(append_wait(&log2, first, &more).first_offset, first);
    let mut expected2 = expected.clone();
    expected2.extend(more);
    assert_records(
        &drain(log2.reader(0).unwrap()),
        &expected2,
        0,
        "after the crash",
    );
    drop(log2);
    assert_check_clean(&crashed);

    // A clean close cuts the active segment to its records.
    drop(log);
    let active = segment_path(&dir, *bases.last().unwrap());
    let recs = parse_segment(&active);
    let last = recs.last().unwrap();
    assert_eq!(
        fs::metadata(&active).unwrap().len(),
        last.position + last.frame_bytes
    );
    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("unwritten"), "{text}");
    assert!(text.contains("errors 0"), "{text}");
    // At most one spare is left, whole (no `.tmp`), all zeros.
    let spares: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("spare-")
        })
        .collect();
    assert!(spares.len() <= 1, "{spares:?}");
    for spare in &spares {
        assert_eq!(spare.extension().unwrap(), "seg", "{spare:?}");
        assert_eq!(fs::metadata(spare).unwrap().len(), config.segment_bytes_max);
        assert!(
            fs::read(spare).unwrap().iter().all(|&b| b == 0),
            "a spare is zeros"
        );
    }
    // Reopened, the log reads back the same and a spare left behind is reused.
    let log = Log::open(config.clone()).unwrap();
    assert_records(&drain(log.reader(0).unwrap()), &expected, 0, "reopened");
}

// ---------------------------------------------------------------------------------------
// 2. Recovery: torn tails at every byte, garbage and zeros, damaged index
// ---------------------------------------------------------------------------------------

/// A log of two segments whose last segment holds a few records, every record indexed
/// (index_interval_bytes at its minimum), so that a torn record also leaves an index
/// entry pointing at it. Returns the config (for `dir`), the payloads, and the position
/// and size of the last record.
fn two_segment_log(dir: &Path) -> (LogConfig, Vec<Vec<u8>>, OnDisk) {
    let mut config = small_config(dir);
    config.index_interval_bytes = 64;
    let log = Log::open(config.clone()).unwrap();
    let mut rng = Rng(2);
    let mut expected = fill_log(&log, &mut rng, 300, 8, 200);
    // Keep appending until the log rotates, then put a few records in the new segment.
    let mut after_rotation = 0;
    while after_rotation < 3 {
        let i = expected.len() as u64;
        let p = payload(i, &mut rng, 200);
        append_wait(&log, i, std::slice::from_ref(&p));
        expected.push(p);
        if list_segments(dir).unwrap().len() > 1 {
            after_rotation += 1;
        }
    }
    let n = expected.len() as u64;
    let last = b"the last record, which will be torn".to_vec();
    assert_eq!(
        append_wait(&log, n, std::slice::from_ref(&last)).first_offset,
        n
    );
    expected.push(last);
    drop(log);
    let bases = list_segments(dir).unwrap();
    assert_eq!(bases.len(), 2, "want exactly one rotation: {bases:?}");
    let recs = parse_segment(&segment_path(dir, bases[1]));
    assert!(recs.len() >= 3, "last segment should hold a few records");
    let tail = *recs.last().unwrap();
    assert_eq!(tail.offset, n);
    // Every record of the last segment is indexed, the last one included.
    let idx = parse_index(&index_path(dir, bases[1]));
    assert_eq!(idx.len(), recs.len());
    assert_eq!(
        *idx.last().unwrap(),
        ((n - bases[1]) as u32, tail.position as u32)
    );
    (config, expected, tail)
}

fn last_segment(dir: &Path) -> PathBuf {
    segment_path(dir, *list_segments(dir).unwrap().last().unwrap())
}

/// Opens a damaged copy, checks that exactly `expected[..keep]` survived and that
/// numbering continues at `keep`, then checks the directory with the binary.
#[track_caller]
fn assert_recovers(config: &LogConfig, expected: &[Vec<u8>], keep: usize, cut: u64, what: &str) {
    let dir = &config.dir;
    let log = Log::open(config.clone()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    let report = log.recovery_report().clone();
    assert_eq!(report.next_offset, keep as u64, "{what}: {report:?}");
    assert_eq!(report.torn_bytes_cut, cut, "{what}: {report:?}");
    assert_eq!(report.torn_reason.is_some(), cut > 0, "{what}: {report:?}");
    assert!(report.sealed_problems.is_empty(), "{what}: {report:?}");
    let mut expected = expected[..keep].to_vec();
    assert_records(&drain(log.reader(0).unwrap()), &expected, 0, what);
    let p = format!("appended after: {what}").into_bytes();
    let c = append_wait(&log, keep as u64, std::slice::from_ref(&p));
    assert_eq!(
        c.first_offset, keep as u64,
        "{what}: numbering must continue"
    );
    expected.push(p);
    // A reader from an index point near the end sees the new record in place.
    let from = keep.saturating_sub(2) as u64;
    assert_records(&drain(log.reader(from).unwrap()), &expected, from, what);
    drop(log);
    assert_check_clean(dir);
    assert_records(
        &drain(Reader::open_dir(dir, 0).unwrap()),
        &expected,
        0,
        what,
    );
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let (config, expected, tail) = two_segment_log(&pristine);
    let n = expected.len();
    for cut_at in 0..=tail.frame_bytes {
        let dir = tmp.path().join(format!("cut-{cut_at}"));
        copy_dir(&pristine, &dir);
        let seg = last_segment(&dir);
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(tail.position + cut_at)
            .unwrap();
        let mut config = config.clone();
        config.dir = dir.clone();
        let (keep, cut) = if cut_at == tail.frame_bytes {
            (n, 0) // intact
        } else {
            (n - 1, cut_at)
        };
        assert_recovers(
            &config,
            &expected,
            keep,
            cut,
            &format!("cut at byte {cut_at}"),
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn strict_recovery_refuses_a_torn_tail_and_leaves_it_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let (mut config, _, tail) = two_segment_log(&dir);
    let seg = last_segment(&dir);
    let len = tail.position + tail.frame_bytes / 2;
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len)
        .unwrap();
    config.recovery = RecoveryMode::Strict;
    match Log::open(config) {
        Err(OpenError::Corrupt {
            path,
            position,
            offset,
            ..
        }) => {
            assert_eq!(
                (path, position, offset),
                (seg.clone(), tail.position, tail.offset)
            );
        }
        other => panic!("strict recovery should refuse a torn tail, got {other:?}"),
    }
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        len,
        "strict mode must not cut"
    );
}

#[test]
fn garbage_and_zeros_after_the_last_record_are_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let (config, expected, _) = two_segment_log(&pristine);
    let mut rng = Rng(3);
    let mut huge_len = vec![0u8; 24];
    huge_len[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("1 zero", vec![0]),
        ("23 zeros", vec![0; 23]),
        ("24 zeros", vec![0; 24]),
        ("a page of zeros", vec![0; 4096]),
        ("1 random byte", rng.bytes(1)),
        ("random header", rng.bytes(24)),
        ("random 5000", rng.bytes(5000)),
        ("length field of 4 GiB", huge_len),
    ];
    for (what, garbage) in cases {
        let dir = tmp.path().join(what.replace(' ', "-"));
        copy_dir(&pristine, &dir);
        let seg = last_segment(&dir);
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(&garbage)
            .unwrap();
        // Before recovery, check reports the tail as torn, but not as an error.
        let (code, text) = check(&dir);
        assert_eq!(code, 0, "{what}: {text}");
        assert!(text.contains("torn tail"), "{what}: {text}");
        assert!(text.contains(&format!("byte {len}")), "{what}: {text}");
        let mut config = config.clone();
        config.dir = dir.clone();
        assert_recovers(
            &config,
            &expected,
            expected.len(),
            garbage.len() as u64,
            what,
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn damaged_index_of_the_last_segment_is_recovered_from() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let (config, expected, tail) = two_segment_log(&pristine);
    let base = *list_segments(&pristine).unwrap().last().unwrap();
    let good = fs::read(index_path(&pristine, base)).unwrap();
    assert!(good.len() >= 24);
    let mut rng = Rng(4);
    let entry = |rel: u32, pos: u32| -> Vec<u8> {
        let mut e = rel.to_le_bytes().to_vec();
        e.extend(pos.to_le_bytes());
        e
    };
    let mut cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("index missing", None),
        ("index empty", Some(Vec::new())),
        ("index all random", Some(rng.bytes(good.len()))),
        (
            "index partial last entry",
            Some(good[..good.len() - 3].to_vec()),
        ),
        ("index entry past the end", {
            let mut i = good.clone();
            i.extend(entry(1000, 60_000));
            Some(i)
        }),
    ];
    // Entries that are ascending and in range but point at the wrong place.
    let mut shifted = good.clone();
    let k = good.len() / 8 / 2 * 8;
    shifted[k + 4] ^= 0x01; // position of a middle entry off by one
    cases.push(("index middle entry off by one", Some(shifted)));
    let mut wrong_offset = good.clone();
    wrong_offset[8] ^= 0x01; // relative offset of the second entry
    cases.push(("index entry with the wrong offset", Some(wrong_offset)));
    let mut zeroed = good.clone();
    for b in &mut zeroed[8..16] {
        *b = 0;
    }
    cases.push(("index entry zeroed", Some(zeroed)));

    for (what, index) in cases {
        let dir = tmp.path().join(what.replace(' ', "-"));
        copy_dir(&pristine, &dir);
        let ipath = index_path(&dir, base);
        match index {
            None => fs::remove_file(&ipath).unwrap(),
            Some(bytes) => fs::write(&ipath, bytes).unwrap(),
        }
        let mut config = config.clone();
        config.dir = dir.clone();
        {
            // Every start in the last segment reads correctly after recovery.
            let log = Log::open(config.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                log.recovery_report().next_offset,
                expected.len() as u64,
                "{what}"
            );
            for from in base..=tail.offset + 1 {
                let got = drain(log.reader(from).unwrap());
                assert_records(&got, &expected, from, what);
                let got = drain(Reader::open_dir(&dir, from).unwrap());
                assert_records(&got, &expected, from, what);
            }
        }
        // The repaired index points only at real records.
        let recs = parse_segment(&last_segment(&dir));
        for (rel, pos) in parse_index(&ipath) {
            let r = recs.iter().find(|r| r.position == u64::from(pos));
            assert_eq!(
                r.map(|r| r.offset),
                Some(base + u64::from(rel)),
                "{what}: index entry ({rel}, {pos}) points at no such record"
            );
        }
        assert_recovers(&config, &expected, expected.len(), 0, what);
        fs::remove_dir_all(&dir).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// 3. Damage in a sealed segment is reported, never skipped
// ---------------------------------------------------------------------------------------

/// A log of at least four segments; returns its config and payloads.
fn many_segment_log(dir: &Path, seed: u64) -> (LogConfig, Vec<Vec<u8>>) {
    let config = small_config(dir);
    let log = Log::open(config.clone()).unwrap();
    let expected = fill_log(&log, &mut Rng(seed), 1400, 20, 300);
    drop(log);
    assert!(list_segments(dir).unwrap().len() >= 4);
    (config, expected)
}

/// Reads from `from` until the reader fails; returns what it read and the error.
fn read_until_error(mut r: Reader) -> (Vec<Record>, ReadError) {
    let mut got = Vec::new();
    loop {
        match r.next() {
            Ok(Some(rec)) => got.push(Record::from(rec)),
            Ok(None) => panic!("reader reached the end without reporting the damage"),
            Err(e) => return (got, e),
        }
    }
}

#[test]
fn damaged_byte_in_a_sealed_segment_is_reported_by_check_and_the_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let (config, expected) = many_segment_log(&pristine, 5);
    let bases = list_segments(&pristine).unwrap();
    let base = bases[1];
    let recs = parse_segment(&segment_path(&pristine, base));
    let victim = recs[recs.len() / 2];
    let last_of_segment = *recs.last().unwrap();

    // One byte of each field of a record in the middle, and of the segment's last record.
    let cases = [
        ("offset field", victim, 3),
        ("checksum field", victim, 9),
        ("length field", victim, 12),
        ("timestamp field", victim, 20),
        ("payload", victim, RECORD_HEADER + 5),
        (
            "last byte of the segment",
            last_of_segment,
            last_of_segment.frame_bytes - 1,
        ),
    ];
    for (what, rec, byte) in cases {
        let dir = tmp.path().join(what.replace(' ', "-"));
        copy_dir(&pristine, &dir);
        let seg = segment_path(&dir, base);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, rec.position + byte).unwrap();
        f.write_all_at(&[b[0] ^ 0x24], rec.position + byte).unwrap();
        drop(f);

        let (code, text) = check(&dir);
        assert_eq!(code, 1, "{what}: check must fail:\n{text}");
        let name = seg.file_name().unwrap().to_str().unwrap();
        assert!(
            text.contains(name) && text.contains(&format!("byte {}", rec.position)),
            "{what}: check must name {name} and byte {}:\n{text}",
            rec.position
        );

        // The directory reader, from the start and from inside the damaged segment,
        // stops at the damaged record with Corrupt instead of skipping it.
        for from in [0, base, rec.offset] {
            let (got, err) = read_until_error(Reader::open_dir(&dir, from).unwrap());
            assert_records(&got, &expected[..rec.offset as usize], from, what);
            match err {
                ReadError::Corrupt {
                    path,
                    position,
                    offset,
                    ..
                } => {
                    assert_eq!(
                        (path, position, offset),
                        (seg.clone(), rec.position, rec.offset),
                        "{what}"
                    );
                }
                other => panic!("{what}: expected Corrupt, got {other}"),
            }
        }
        // So does a live reader of the reopened log; later segments still read.
        let mut config = config.clone();
        config.dir = dir.clone();
        let log = Log::open(config).unwrap();
        let (got, err) = read_until_error(log.reader(base).unwrap());
        assert_records(&got, &expected[..rec.offset as usize], base, what);
        assert!(
            matches!(&err, ReadError::Corrupt { position, .. } if *position == rec.position),
            "{what}: {err}"
        );
        assert_records(
            &drain(log.reader(bases[2]).unwrap()),
            &expected,
            bases[2],
            what,
        );
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_missing_segment_is_a_gap_that_check_and_readers_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let (config, expected) = many_segment_log(&dir, 7);
    let bases = list_segments(&dir).unwrap();
    fs::remove_file(segment_path(&dir, bases[2])).unwrap();
    fs::remove_file(index_path(&dir, bases[2])).unwrap();

    let (code, text) = check(&dir);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("gap") && text.contains(&bases[3].to_string()),
        "check must name the gap: {text}"
    );
    let (got, err) = read_until_error(Reader::open_dir(&dir, 0).unwrap());
    assert_records(&got, &expected[..bases[2] as usize], 0, "before the gap");
    assert!(
        matches!(&err, ReadError::Corrupt { offset, .. } if *offset == bases[2]),
        "{err}"
    );
    let log = Log::open(config).unwrap();
    let problems = &log.recovery_report().sealed_problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains(&bases[3].to_string()), "{problems:?}");
    let (got, err) = read_until_error(log.reader(bases[1]).unwrap());
    assert_records(&got, &expected[..bases[2] as usize], bases[1], "live");
    assert!(matches!(err, ReadError::Corrupt { .. }), "{err}");
    // What lies after the gap is still served to readers that start there.
    assert_records(
        &drain(log.reader(bases[3]).unwrap()),
        &expected,
        bases[3],
        "after",
    );
}

#[test]
fn damaged_index_of_a_sealed_segment_is_reported_and_readers_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let (config, expected) = many_segment_log(&dir, 6);
    let bases = list_segments(&dir).unwrap();
    let (base, next_base) = (bases[1], bases[2]);
    let ipath = index_path(&dir, base);
    let mut idx = fs::read(&ipath).unwrap();
    assert!(idx.len() >= 40);
    // Shift the position of every entry from the third on by 8 bytes.
    for e in idx.chunks_exact_mut(8).skip(2) {
        let p = u32::from_le_bytes(e[4..8].try_into().unwrap()) + 8;
        e[4..8].copy_from_slice(&p.to_le_bytes());
    }
    fs::write(&ipath, &idx).unwrap();

    let (code, text) = check(&dir);
    assert_eq!(code, 1, "check must report the damaged index:\n{text}");
    assert!(
        text.contains(ipath.file_name().unwrap().to_str().unwrap()),
        "{text}"
    );

    // The records themselves are intact: recovery blames the index, not the segment,
    // and every reader still returns the records.
    let log = Log::open(config).unwrap();
    let problems = &log.recovery_report().sealed_problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains(ipath.to_str().unwrap()),
        "{problems:?}"
    );
    for from in (base..next_base).step_by(7).chain([next_base - 1]) {
        assert_records(
            &drain(log.reader(from).unwrap()),
            &expected,
            from,
            "live reader",
        );
        assert_records(
            &drain(Reader::open_dir(&dir, from).unwrap()),
            &expected,
            from,
            "dir reader",
        );
    }
}

// ---------------------------------------------------------------------------------------
// 4. Concurrent producers
// ---------------------------------------------------------------------------------------

#[test]
fn concurrent_producers_get_exactly_the_offsets_that_read_back() {
    // One group at a time, the default overlap of write and sync, and the most.
    for groups_in_flight_max in [1, 2, 8] {
        concurrent_producers(groups_in_flight_max);
    }
}

fn concurrent_producers(groups_in_flight_max: usize) {
    const PRODUCERS: u64 = 4;
    const BATCHES: u64 = 100;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let mut config = small_config(&dir);
    config.ring_batches_max = 8; // small, so producers also meet a full ring
    config.groups_in_flight_max = groups_in_flight_max;
    let log = Log::open(config).unwrap();

    // A follower reads while the producers write: it must see every committed record in
    // order, and never one beyond the committed offset.
    let total_records = std::sync::atomic::AtomicU64::new(u64::MAX);
    let (acks, followed) = std::thread::scope(|s| {
        let follower = s.spawn(|| {
            let mut r = log.reader(0).unwrap();
            let mut seen: Vec<Record> = Vec::new();
            loop {
                let end = log.committed_end();
                while let Some(rec) = r.next().unwrap() {
                    assert!(
                        rec.offset < log.committed_end(),
                        "read past the committed offset"
                    );
                    assert_eq!(
                        rec.offset,
                        seen.len() as u64,
                        "follower skipped or repeated"
                    );
                    seen.push(rec.into());
                }
                let total = total_records.load(std::sync::atomic::Ordering::Acquire);
                if seen.len() as u64 == total {
                    return seen;
                }
                log.wait_committed_beyond(end.max(seen.len() as u64), Duration::from_millis(20));
            }
        });
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let app = log.appender();
                let max = log.config().record_bytes_max;
                s.spawn(move || {
                    let mut rng = Rng(100 + p);
                    let mut builder = BatchBuilder::new(8 << 10, max);
                    let mut seq = 0u64;
                    let mut in_flight: VecDeque<(Completion, Vec<Vec<u8>>)> = VecDeque::new();
                    let mut acked: Vec<(Committed, Vec<Vec<u8>>)> = Vec::new();
                    for _ in 0..BATCHES {
                        let n = 1 + rng.below(12);
                        let mut batch = Vec::new();
                        for _ in 0..n {
                            let mut pl = format!("p{p}-s{seq:06}-").into_bytes();
                            pl.extend(std::iter::repeat_n(b'a' + p as u8, rng.below(200) as usize));
                            builder.push(seq, &pl).unwrap();
                            batch.push(pl);
                            seq += 1;
                        }
                        let (frames, records) = builder.take();
                        in_flight.push_back((app.append(frames, records).unwrap(), batch));
                        if in_flight.len() > 4 {
                            let (c, b) = in_flight.pop_front().unwrap();
                            acked.push((c.wait().unwrap(), b));
                        }
                    }
                    for (c, b) in in_flight {
                        acked.push((c.wait().unwrap(), b));
                    }
                    acked
                })
            })
            .collect();
        let acks: Vec<Vec<(Committed, Vec<Vec<u8>>)>> =
            producers.into_iter().map(|h| h.join().unwrap()).collect();
        let total: u64 = acks
            .iter()
            .flatten()
            .map(|(c, _)| u64::from(c.records))
            .sum();
        total_records.store(total, std::sync::atomic::Ordering::Release);
        (acks, follower.join().unwrap())
    });

    let all = drain(log.reader(0).unwrap());
    assert_eq!(all.len() as u64, log.committed_end());
    assert_eq!(
        all, followed,
        "the follower saw something else than the log holds"
    );
    let mut owner: BTreeMap<u64, u64> = BTreeMap::new();
    for (p, producer_acks) in acks.iter().enumerate() {
        let mut last_offset = None;
        let mut seq = 0u64;
        for (c, batch) in producer_acks {
            assert_eq!(c.records as usize, batch.len());
            // Per-producer order: each batch lands after the previous one.
            assert!(
                last_offset.is_none_or(|l| c.first_offset > l),
                "producer {p} reordered"
            );
            last_offset = Some(c.last_offset());
            for (k, pl) in batch.iter().enumerate() {
                let o = c.first_offset + k as u64;
                let rec = &all[o as usize];
                assert_eq!(
                    &rec.payload, pl,
                    "offset {o} holds another record than producer {p} was told"
                );
                assert_eq!(rec.timestamp_ns, seq);
                seq += 1;
                assert!(
                    owner.insert(o, p as u64).is_none(),
                    "offset {o} given twice"
                );
            }
        }
    }
    // No gaps, no duplicates: the acknowledged offsets are exactly 0..end.
    assert_eq!(owner.len(), all.len());
    assert_eq!(
        owner.keys().copied().collect::<Vec<_>>(),
        (0..all.len() as u64).collect::<Vec<_>>()
    );
    assert!(
        list_segments(&dir).unwrap().len() > 1,
        "the run should rotate"
    );
}

// ---------------------------------------------------------------------------------------
// 5. SIGKILL while appending
// ---------------------------------------------------------------------------------------

/// Runs `ringstash append --print-offsets` on `dir`, feeding it lines `{tag}-{i}` as fast
/// as it takes them, and SIGKILLs it `delay` after it has acknowledged `kill_after`
/// batches. Returns the acknowledged (first, last) offsets it printed.
fn append_and_kill(dir: &Path, tag: &str, kill_after: usize, delay: Duration) -> Vec<(u64, u64)> {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(BIN)
        .args(["append", "--data-dir", dir.to_str().unwrap()])
        .args([
            "--print-offsets",
            "--batch-records",
            "16",
            "--segment-bytes-max",
            "65536",
        ])
        .env("RINGSTASH_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let tag_owned = tag.to_owned();
    let feeder = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(4096, stdin);
        // Far more than the child can take before it is killed; the pipe blocks us.
        for i in 0..50_000_000u64 {
            if writeln!(w, "{tag_owned}-{i}").is_err() {
                return;
            }
        }
        panic!("the child took every line; it was not killed mid-stream");
    });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut acks = Vec::new();
    let mut killed = false;
    let mut line = String::new();
    loop {
        if !killed && acks.len() >= kill_after {
            std::thread::sleep(delay);
            child.kill().unwrap();
            killed = true;
        }
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let Some(l) = line.strip_suffix('\n') else {
            break; // cut off mid-line by the kill: not an acknowledgement
        };
        let (a, b) = l
            .split_once(' ')
            .unwrap_or_else(|| panic!("bad ack line {l:?}"));
        acks.push((a.parse().unwrap(), b.parse().unwrap()));
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child should have died of SIGKILL mid-stream ({status}, {} acks): {stderr}",
        acks.len()
    );
    feeder.join().unwrap();
    acks
}

#[test]
fn sigkill_while_appending_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    // Every run continues the same log, so later runs also recover earlier crashes.
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let runs = [
        (0, Duration::from_millis(15)),
        (1, Duration::ZERO),
        (8, Duration::from_millis(2)),
        (40, Duration::ZERO),
        (3, Duration::from_millis(25)),
    ];
    for (run, (kill_after, delay)) in runs.into_iter().enumerate() {
        let start = expected.len() as u64;
        let tag = format!("run{run}");
        let acks = append_and_kill(&dir, &tag, kill_after, delay);
        assert!(acks.len() >= kill_after);

        // Acks are printed in order and cover consecutive offsets from where the log
        // stood when the run began.
        let mut next = start;
        for &(first, last) in &acks {
            assert_eq!(first, next, "run {run}: acks not contiguous: {acks:?}");
            assert!(last >= first);
            next = last + 1;
        }

        let log = Log::open(LogConfig::new(&dir)).unwrap();
        let end = log.committed_end();
        assert!(
            end >= next,
            "run {run}: acked up to {next} but only {end} survived"
        );
        let all = drain(log.reader(0).unwrap());
        drop(log);
        assert_eq!(all.len() as u64, end);
        // Earlier runs' records are untouched; this run's records are its lines in
        // order, each exactly once, the acknowledged ones included.
        for (o, rec) in all.iter().enumerate() {
            assert_eq!(rec.offset, o as u64);
            if (o as u64) < start {
                assert_eq!(
                    rec.payload, expected[o],
                    "run {run}: earlier record {o} changed"
                );
            } else {
                let want = format!("{tag}-{}", o as u64 - start).into_bytes();
                assert_eq!(rec.payload, want, "run {run}: offset {o}");
            }
        }
        expected = all.into_iter().map(|r| r.payload).collect();
        assert_check_clean(&dir);
    }
    assert!(
        list_segments(&dir).unwrap().len() > 1,
        "the runs should have rotated"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Full disk
// ---------------------------------------------------------------------------------------

/// A tmpfs mounted for the life of the guard; unmounted on drop, also when a test fails.
struct Tmpfs {
    target: std::ffi::CString,
}

impl Tmpfs {
    fn mount(target: &Path, size: &str) -> Result<Tmpfs, String> {
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let (source, fstype, options) = (c("tmpfs"), c("tmpfs"), c(&format!("size={size}")));
        let target = c(target.to_str().unwrap());
        // SAFETY: all arguments are valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Tmpfs { target })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: a valid path; MNT_DETACH so that a failing test cannot leave it behind.
        unsafe { libc::umount2(self.target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn full_disk_refuses_batches_keeps_the_log_clean_and_recovers_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let _tmpfs = match Tmpfs::mount(&mnt, "2m") {
        Ok(g) => g,
        Err(why) => {
            println!("SKIP: {why}");
            return;
        }
    };
    // A file to delete later, to give space back.
    let filler = mnt.join("filler");
    fs::write(&filler, vec![7u8; 512 << 10]).unwrap();
    let dir = mnt.join("data");
    let log = Log::open(small_config(&dir)).unwrap();
    let mut rng = Rng(7);

    // Append with several batches in flight until the disk is full, then more: on a
    // full disk, failed writes leave partial data in the last page until they are cut
    // back, and small batches still fit in its slack and succeed. A live follower reads
    // all the while; it must see exactly the committed records, never bytes of a write
    // that failed (which a reader could have buffered before the cut).
    let mut succeeded: Vec<(Committed, Vec<Vec<u8>>)> = Vec::new();
    let mut seq = 0u64;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let followed = std::thread::scope(|s| {
        let follower = s.spawn(|| {
            let mut r = log.reader(0).unwrap();
            let mut seen: Vec<Record> = Vec::new();
            loop {
                let stopping = stop.load(std::sync::atomic::Ordering::Acquire);
                while let Some(rec) = r.next().unwrap() {
                    seen.push(rec.into());
                }
                if stopping {
                    return seen;
                }
                log.wait_committed_beyond(seen.len() as u64, Duration::from_millis(5));
            }
        });
        let mut disk_full = 0;
        let mut in_flight: VecDeque<(Completion, Vec<Vec<u8>>)> = VecDeque::new();
        let mut batches = 0;
        let mut settle = |c: Completion, batch: Vec<Vec<u8>>, disk_full: &mut u32| match c.wait() {
            Ok(done) => succeeded.push((done, batch)),
            Err(AppendError::DiskFull(why)) => {
                assert!(why.contains("No space left"), "{why}");
                *disk_full += 1;
            }
            Err(other) => panic!("expected success or DiskFull, got {other}"),
        };
        while disk_full < 300 {
            batches += 1;
            assert!(batches < 20_000, "the disk never filled up");
            let n = 1 + rng.below(if disk_full > 0 && batches % 2 == 0 {
                2
            } else {
                20
            });
            let batch: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    seq += 1;
                    payload(seq, &mut rng, 300)
                })
                .collect();
            // Timestamps are not checked here: ts(0) for all.
            in_flight.push_back((
                append(&log, 0, &batch).expect("accepted while the disk is full"),
                batch,
            ));
            if in_flight.len() >= 8 {
                let (c, b) = in_flight.pop_front().unwrap();
                settle(c, b, &mut disk_full);
            }
        }
        for (c, b) in in_flight.drain(..) {
            settle(c, b, &mut disk_full);
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        follower.join().unwrap()
    });
    assert_eq!(
        followed,
        drain(log.reader(0).unwrap()),
        "the live follower saw records that are not in the log"
    );
    assert!(
        log.failure().is_none(),
        "a full disk must not stop the writer: {:?}",
        log.failure()
    );
    assert!(
        log.stats()
            .disk_full_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );

    // Every batch that succeeded is in the log, contiguous, and nothing else is: not in
    // the live view, and not on disk either (failed writes were cut back).
    let verify = |log: &Log, succeeded: &[(Committed, Vec<Vec<u8>>)]| {
        let mut acked: Vec<&(Committed, Vec<Vec<u8>>)> = succeeded.iter().collect();
        acked.sort_by_key(|(c, _)| c.first_offset);
        let mut flat: Vec<&[u8]> = Vec::new();
        for (c, batch) in acked {
            assert_eq!(
                c.first_offset,
                flat.len() as u64,
                "gap or overlap in acked offsets"
            );
            flat.extend(batch.iter().map(|p| &p[..]));
        }
        assert_eq!(log.committed_end(), flat.len() as u64);
        let live = drain(log.reader(0).unwrap());
        let on_disk = drain(Reader::open_dir(&log.config().dir, 0).unwrap());
        for got in [&live, &on_disk] {
            assert_eq!(got.len(), flat.len());
            for (r, want) in got.iter().zip(&flat) {
                assert_eq!(&r.payload[..], *want, "offset {}", r.offset);
            }
        }
    };
    verify(&log, &succeeded);
    assert!(!succeeded.is_empty());
    assert_check_clean(&dir);

    // Space returns: appends succeed again and continue the numbering. Fill the active
    // segment until a large batch no longer fits in it.
    fs::remove_file(&filler).unwrap();
    let segment_bytes_max = log.config().segment_bytes_max;
    let big: Vec<Vec<u8>> = (0..50).map(|i| vec![b'A' + (i % 26) as u8; 280]).collect();
    let big_bytes: u64 = big.iter().map(|p| RECORD_HEADER + p.len() as u64).sum();
    loop {
        let active = segment_path(&dir, *list_segments(&dir).unwrap().last().unwrap());
        if segment_bytes_max - fs::metadata(&active).unwrap().len() < big_bytes {
            break;
        }
        let batch = vec![payload(seq, &mut rng, 200)];
        seq += 1;
        let done = append(&log, 0, &batch)
            .unwrap()
            .wait()
            .expect("space is back");
        succeeded.push((done, batch));
    }
    verify(&log, &succeeded);

    // Now fill the disk from outside, so that the rotation the large batch needs cannot
    // create the next segment: the batch is refused with DiskFull, no half-made segment
    // is left behind, and the writer keeps going.
    let segments = list_segments(&dir).unwrap();
    let filler = mnt.join("filler2");
    {
        let mut f = fs::File::create(&filler).unwrap();
        let chunk = vec![9u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }
    match append(&log, 0, &big).unwrap().wait() {
        Err(AppendError::DiskFull(_)) => {}
        other => panic!("a rotation on a full disk must fail with DiskFull, got {other:?}"),
    }
    assert_eq!(
        list_segments(&dir).unwrap(),
        segments,
        "half-made segment left behind"
    );
    assert!(log.failure().is_none());
    verify(&log, &succeeded);
    assert_check_clean(&dir);

    fs::remove_file(&filler).unwrap();
    let done = append(&log, 0, &big)
        .unwrap()
        .wait()
        .expect("space is back");
    assert_eq!(done.first_offset, log.committed_end() - big.len() as u64);
    succeeded.push((done, big.clone()));
    assert_eq!(
        list_segments(&dir).unwrap().len(),
        segments.len() + 1,
        "should have rotated"
    );
    assert_eq!(
        *list_segments(&dir).unwrap().last().unwrap(),
        done.first_offset
    );
    verify(&log, &succeeded);
    drop(log);
    assert_check_clean(&dir);
    let log = Log::open(small_config(&dir)).unwrap();
    assert_eq!(log.recovery_report().torn_bytes_cut, 0);
    verify(&log, &succeeded);
}

// ---------------------------------------------------------------------------------------
// 7. io_uring unavailable
// ---------------------------------------------------------------------------------------

/// `AUDIT_ARCH_X86_64` from linux/audit.h (EM_X86_64 | 64-bit | little-endian); libc
/// does not export it.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// Installs a seccomp filter in the calling process that makes `io_uring_setup` fail
/// with EPERM and allows everything else. Meant for `Command::pre_exec`: it only makes
/// async-signal-safe system calls and does not allocate.
#[cfg(target_arch = "x86_64")]
fn deny_io_uring_setup() -> std::io::Result<()> {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, sock_filter, sock_fprog,
    };
    const ARCH_AT: u32 = 4; // offsetof(struct seccomp_data, arch)
    const NR_AT: u32 = 0; // offsetof(struct seccomp_data, nr)
    const IO_URING_SETUP: u32 = 425; // x86_64
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let mut program = [
        stmt(BPF_LD | BPF_W | BPF_ABS, ARCH_AT),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), // another ABI: leave it alone
        stmt(BPF_LD | BPF_W | BPF_ABS, NR_AT),
        jeq(IO_URING_SETUP, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl with valid arguments; `prog` and `program` outlive the calls.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[test]
fn io_uring_blocked_by_seccomp_is_a_clear_error() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let mut cmd = Command::new(BIN);
    cmd.args(["append", "--data-dir", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .env("RINGSTASH_LOG", "warn");
    // SAFETY: the closure only calls prctl (async-signal-safe) and allocates nothing.
    unsafe { cmd.pre_exec(deny_io_uring_setup) };
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "must fail without io_uring: {stderr}"
    );
    assert!(stderr.contains("io_uring is unavailable"), "{stderr}");
    assert!(
        stderr.contains("seccomp"),
        "must name seccomp as the cause: {stderr}"
    );
    assert!(
        stderr.contains("io_uring_setup"),
        "must name the blocked call: {stderr}"
    );

    // The same binary and directory work once the filter is gone: the failure was the
    // filter's doing, and the refused start left nothing that gets in the way.
    let mut child = spawn_append_printing_offsets(&dir);
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0 0\n");
}

#[cfg(not(target_arch = "x86_64"))]
#[test]
fn io_uring_blocked_by_seccomp_is_a_clear_error() {
    println!("SKIP: the seccomp filter in this test is written for x86_64");
}

// ---------------------------------------------------------------------------------------
// 8. Non-durable policies
// ---------------------------------------------------------------------------------------

#[test]
fn non_durable_policies_round_trip_and_shut_down_cleanly() {
    for policy in [FsyncPolicy::Never, FsyncPolicy::Interval { interval_ms: 5 }] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let mut config = small_config(&dir);
        config.fsync = policy;
        let log = Log::open(config.clone()).unwrap();
        let mut expected = fill_log(&log, &mut Rng(8), 700, 20, 250);
        assert!(
            list_segments(&dir).unwrap().len() > 1,
            "{policy}: should rotate"
        );
        assert_records(
            &drain(log.reader(0).unwrap()),
            &expected,
            0,
            "before shutdown",
        );
        if let FsyncPolicy::Interval { .. } = policy {
            // The interval timer syncs what was written without anyone asking.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while log
                .stats()
                .fsyncs
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{policy}: never synced"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // A last batch just before shutdown is still written and completed.
        let last = vec![b"the last one".to_vec()];
        let c = append(&log, expected.len() as u64, &last).unwrap();
        expected.extend(last);
        log.shutdown();
        assert_eq!(c.wait().unwrap().first_offset, expected.len() as u64 - 1);
        assert!(log.failure().is_none());
        assert_eq!(
            append(&log, 0, &[b"late".to_vec()]).unwrap_err(),
            AppendError::Closed,
            "{policy}: a closed log takes nothing"
        );
        drop(log);
        assert_check_clean(&dir);
        let log = Log::open(config).unwrap();
        assert_eq!(log.recovery_report().torn_bytes_cut, 0, "{policy}");
        assert_records(&drain(log.reader(0).unwrap()), &expected, 0, "after reopen");
    }
}

// ---------------------------------------------------------------------------------------
// 9. Lowering record_bytes_max between runs
// ---------------------------------------------------------------------------------------

#[test]
fn lowering_record_bytes_max_does_not_make_old_records_look_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let mut config = LogConfig::new(&dir);
    config.segment_bytes_max = 2 << 20;
    config.group_bytes_max = 1 << 20;
    config.record_bytes_max = (1 << 20) - 24;
    let log = Log::open(config.clone()).unwrap();
    // Records larger than the readers' 256 KiB buffer, and small ones between them.
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut rng = Rng(9);
    for size in [10, 700_000, 20, 300_000, 1 << 19, 5, 900_000, 40, 250_000] {
        let i = expected.len() as u64;
        let mut p = format!("big-{i}-").into_bytes();
        p.extend(rng.bytes(size));
        assert_eq!(
            append_wait(&log, i, std::slice::from_ref(&p)).first_offset,
            i
        );
        expected.push(p);
    }
    drop(log);
    assert!(list_segments(&dir).unwrap().len() > 1);

    config.record_bytes_max = 64;
    config.group_bytes_max = 4096;
    let log = Log::open(config.clone()).unwrap();
    let report = log.recovery_report().clone();
    assert_eq!(
        (report.torn_bytes_cut, report.next_offset),
        (0, expected.len() as u64),
        "{report:?}"
    );
    assert!(report.sealed_problems.is_empty(), "{report:?}");
    for from in 0..expected.len() as u64 {
        assert_records(
            &drain(log.reader(from).unwrap()),
            &expected,
            from,
            "live reader",
        );
    }
    // New records obey the new bound; old ones stay readable after them.
    let mut b = BatchBuilder::new(4096, log.appender().record_bytes_max());
    assert!(b.push(0, &[0u8; 65]).is_err());
    let small = b"small".to_vec();
    let n = expected.len() as u64;
    assert_eq!(
        append_wait(&log, n, std::slice::from_ref(&small)).first_offset,
        n
    );
    expected.push(small);
    drop(log);
    assert_records(
        &drain(Reader::open_dir(&dir, 0).unwrap()),
        &expected,
        0,
        "dir reader",
    );
    assert_check_clean(&dir);

    // A torn large record is still cut exactly, under the lower bound.
    let seg = last_segment(&dir);
    let recs = parse_segment(&seg);
    let victim = recs[recs.len() - 2];
    assert!(victim.frame_bytes > 200_000, "{recs:?}");
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(victim.position + victim.frame_bytes - 1000)
        .unwrap();
    let log = Log::open(config).unwrap();
    assert_eq!(log.recovery_report().next_offset, victim.offset);
    assert_eq!(
        log.recovery_report().torn_bytes_cut,
        victim.frame_bytes - 1000
    );
    assert_records(
        &drain(log.reader(0).unwrap()),
        &expected[..victim.offset as usize],
        0,
        "cut",
    );
}

// ---------------------------------------------------------------------------------------
// Bounds and exclusivity
// ---------------------------------------------------------------------------------------

#[test]
fn a_directory_is_written_by_one_log_only_and_oversized_batches_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let config = small_config(&dir);
    let log = Log::open(config.clone()).unwrap();
    assert!(matches!(Log::open(config.clone()), Err(OpenError::Locked(d)) if d == dir));
    let out = run(&["append", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{out:?}"
    );

    // A batch over group_bytes_max is refused whole, and the log goes on.
    let mut b = BatchBuilder::new(32 << 10, config.record_bytes_max);
    while b.bytes() <= config.group_bytes_max {
        b.push(0, &[1u8; 1000]).unwrap();
    }
    let (frames, n) = b.take();
    match log.appender().try_append(frames, n) {
        Err(ringstash::wal::TryAppendError::Refused(AppendError::BatchTooLarge {
            max, ..
        })) => {
            assert_eq!(max, config.group_bytes_max);
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    let p = vec![b"fine".to_vec()];
    assert_eq!(append_wait(&log, 0, &p).first_offset, 0);
    assert_records(&drain(log.reader(0).unwrap()), &p, 0, "after refusal");
    drop(log);
    // Released on drop.
    drop(Log::open(config).unwrap());
}

#[test]
fn a_directory_reopens_right_after_close_even_if_a_child_was_forked_meanwhile() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let config = small_config(&dir);
    let log = Log::open(config.clone()).unwrap();
    // A child forked while the log is open holds copies of every descriptor, the lock
    // file's included, until it execs (the lock file is close-on-exec). Here the gap
    // between fork and exec is stretched to 300 ms; in a busy process that spawns
    // children it is short but real.
    let mut cmd = Command::new("true");
    // SAFETY: nanosleep is async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            let t = libc::timespec {
                tv_sec: 0,
                tv_nsec: 300_000_000,
            };
            libc::nanosleep(&t, std::ptr::null_mut());
            Ok(())
        })
    };
    let child = std::thread::spawn(move || cmd.status().unwrap());
    std::thread::sleep(Duration::from_millis(50)); // let the fork happen
    drop(log);
    // The lock is released by this process; the child's copy goes away at its exec.
    let log = Log::open(config).expect("reopen after close must not report Locked");
    assert!(child.join().unwrap().success());
    drop(log);
}

// ---------------------------------------------------------------------------------------
// Crash during rotation
// ---------------------------------------------------------------------------------------

#[test]
fn a_segment_whose_header_never_reached_the_disk_is_removed_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let (config, expected, _) = two_segment_log(&pristine);
    let n = expected.len() as u64;
    let mut header = vec![0u8; 32];
    header[..8].copy_from_slice(b"RSTASHLG");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty file", Vec::new()),
        ("part of a header", header[..10].to_vec()),
        ("32 zeros", vec![0; 32]),
        ("header with a bad checksum", header),
    ];
    for (what, bytes) in cases {
        let dir = tmp.path().join(what.replace(' ', "-"));
        copy_dir(&pristine, &dir);
        let stray = segment_path(&dir, n);
        fs::write(&stray, &bytes).unwrap();
        fs::write(index_path(&dir, n), b"").unwrap();
        // Not damage: nothing was ever acknowledged in it.
        let (code, text) = check(&dir);
        assert_eq!(code, 0, "{what}: {text}");
        assert!(text.contains("torn tail"), "{what}: {text}");
        let mut config = config.clone();
        config.dir = dir.clone();
        {
            let log = Log::open(config.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                log.recovery_report().removed_segment.as_deref(),
                Some(&*stray),
                "{what}"
            );
            assert!(!stray.exists(), "{what}: the stray segment must be gone");
        }
        assert_recovers(&config, &expected, expected.len(), 0, what);
        fs::remove_dir_all(&dir).unwrap();
    }

    // A header-only segment that is not the last one is damage, and is reported.
    let dir = tmp.path().join("middle");
    copy_dir(&pristine, &dir);
    let bases = list_segments(&dir).unwrap();
    OpenOptions::new()
        .write(true)
        .open(segment_path(&dir, bases[0]))
        .unwrap()
        .write_all_at(&[0u8; 32], 0)
        .unwrap();
    let (code, text) = check(&dir);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("bad segment header"), "{text}");
}

// ---------------------------------------------------------------------------------------
// `ringstash append` acknowledges without waiting for more input
// ---------------------------------------------------------------------------------------

#[test]
fn append_acknowledges_a_line_before_the_next_one_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let mut child = spawn_append_printing_offsets(&dir);
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // A producer that writes a line and waits for its ack before writing the next one
    // (a slow source, or a person at a terminal) must get each ack while it waits. The
    // timeout is only there so that a hang fails instead of blocking the suite.
    let mut acked = Vec::new();
    for (i, line) in ["first\n", "second\n", "third\n"].iter().enumerate() {
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(ack) => assert_eq!(ack, format!("{i} {i}")),
            Err(e) => {
                let _ = child.kill();
                panic!("no ack for line {i} while the producer waits for it ({e})");
            }
        }
        acked.push(line.trim_end().as_bytes().to_vec());
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    // Timestamps are the receive time here, so compare offsets and payloads only.
    let got = drain(Reader::open_dir(&dir, 0).unwrap());
    assert_eq!(
        got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        acked
    );
}

// ---------------------------------------------------------------------------------------
// A writer that cannot go on stops loudly
// ---------------------------------------------------------------------------------------

#[test]
fn a_malformed_batch_is_refused_by_the_producer_and_the_log_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let log = Log::open(small_config(&dir)).unwrap();
    let good = vec![b"good".to_vec()];
    assert_eq!(append_wait(&log, 0, &good).first_offset, 0);

    // A batch whose record count disagrees with its frames, and one with a frame that
    // runs past the buffer: a producer's bug. Refused on the producer's side, before the
    // writer sees it; the log keeps serving everyone else.
    let mut b = BatchBuilder::new(1024, 64);
    b.push(ts(1), b"one").unwrap();
    b.push(ts(2), b"two").unwrap();
    let (frames, _) = b.take();
    let mut cut = frames.clone();
    cut.truncate(frames.len() - 1);
    for (bad, records, want) in [
        (frames, 3, "2 frames, 3 declared"),
        (cut, 2, "past the end"),
    ] {
        match log.appender().try_append(bad, records) {
            Err(TryAppendError::Refused(AppendError::MalformedBatch(why))) => {
                assert!(why.contains(want), "{why}")
            }
            other => panic!("a malformed batch was not refused: {other:?}"),
        }
    }
    assert_eq!(
        append_wait(&log, 1, &good).first_offset,
        1,
        "the log still serves"
    );
    assert!(log.failure().is_none());
    let outcome = "malformed batches refused";
    let good = vec![good[0].clone(), good[0].clone()];
    drop(log);
    // The good record is still there, the bad ones are not, and the directory reopens.
    let log = Log::open(small_config(&dir)).unwrap();
    assert_records(&drain(log.reader(0).unwrap()), &good, 0, outcome);
}

// ---------------------------------------------------------------------------------------
// Completions
// ---------------------------------------------------------------------------------------

#[test]
fn several_threads_waiting_on_one_completion_all_learn_the_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let log = Log::open(small_config(&dir)).unwrap();
    // Queue a lot of work ahead, so that the waiters below are all parked before the
    // batch they wait on becomes durable.
    let mut ahead = Vec::new();
    for i in 0..100u64 {
        let batch: Vec<Vec<u8>> = (0..40).map(|k| vec![b'a' + (k % 26) as u8; 300]).collect();
        ahead.push(append(&log, i, &batch).unwrap());
    }
    let c = std::sync::Arc::new(append(&log, 0, &[b"watched".to_vec()]).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..4 {
        let (c, tx) = (c.clone(), tx.clone());
        std::thread::spawn(move || tx.send(c.wait()));
    }
    for _ in 0..4 {
        // Only so that a hang fails the test instead of blocking the suite.
        let r = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a thread waiting on the completion was never woken");
        assert_eq!(r.unwrap().first_offset, 100 * 40);
    }
    for a in ahead {
        a.wait().unwrap();
    }
}

/// Under `fsync = never` a power loss can keep a later group and lose an earlier one,
/// with index entries pointing past the hole. Recovery must find the hole (it scans the
/// whole active segment in that mode) and cut there, so readers never hit it.
#[test]
fn non_durable_recovery_finds_a_hole_that_the_index_points_past() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(dir.path());
    config.fsync = FsyncPolicy::Never;
    config.index_interval_bytes = 64;
    let mut rng = Rng(7);
    let payloads: Vec<Vec<u8>> = (0..60).map(|i| payload(i, &mut rng, 40)).collect();
    {
        let log = Log::open(config.clone()).unwrap();
        for (k, chunk) in payloads.chunks(10).enumerate() {
            append_wait(&log, k as u64 * 10, chunk);
        }
    }
    let seg = last_segment(dir.path());
    let on_disk = parse_segment(&seg);
    assert_eq!(on_disk.len(), 60);
    let index_before = parse_index(&index_path(dir.path(), 0));
    let hole = &on_disk[25];
    assert!(
        index_before
            .iter()
            .any(|&(_, p)| u64::from(p) > hole.position),
        "the index points past the hole-to-be"
    );
    // The page holding record 25 "never reached the disk": zeros.
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&vec![0u8; hole.frame_bytes as usize], hole.position)
        .unwrap();
    drop(f);

    let log = Log::open(config.clone()).unwrap();
    let report = log.recovery_report().clone();
    assert_eq!(
        report.next_offset, 25,
        "numbering continues after the last record before the hole"
    );
    assert!(report.torn_bytes_cut > 0);
    assert_records(
        &drain(log.reader(0).unwrap()),
        &payloads[..25],
        0,
        "after the hole",
    );
    let c = append_wait(&log, 25, &payloads[25..26]);
    assert_eq!(c.first_offset, 25);
    drop(log);
    assert_check_clean(dir.path());
}
