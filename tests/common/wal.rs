//! Shared harness of the `wal_*` tests: a deterministic PRNG, a small log
//! configuration, payloads that cannot compare equal at the wrong offset, and helpers to
//! append, read back and check records.
//!
//! The on-disk format is parsed here independently of the library (see [`parse_segment`])
//! so that a bug shared by the writer and the reader cannot hide itself.

use std::{
    collections::VecDeque,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use ringstash::{
    error::AppendError,
    wal::{
        BatchBuilder, Committed, Completion, Log, LogConfig, Reader, Record,
        segment::{list_segments, segment_path},
    },
};

use super::BIN;

/// Bytes of the segment header and of a record header (docs/format.md).
pub const SEGMENT_HEADER: u64 = 32;
pub const RECORD_HEADER: u64 = 24;

/// A small deterministic PRNG (splitmix64) so runs are reproducible without a crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A new temp dir and the path of a data directory `name` in it (not created: the log
/// creates it). Keep the dir alive as long as the path is used.
pub fn temp_data_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    (tmp, dir)
}

/// The log's defaults for `dir`, with `write_mode` from `RINGSTASH_WRITE_MODE` and
/// `io_driver` from `RINGSTASH_IO_DRIVER` when they are set, as `serve` and `append`
/// take them: `.ci/run` runs the suite once per write mode and driver.
pub fn default_config(dir: &Path) -> LogConfig {
    let mut c = LogConfig::new(dir);
    if let Ok(mode) = std::env::var("RINGSTASH_WRITE_MODE") {
        c.write_mode = mode
            .parse()
            .expect("RINGSTASH_WRITE_MODE: direct or buffered");
    }
    if let Ok(driver) = std::env::var("RINGSTASH_IO_DRIVER") {
        c.io_driver = driver
            .parse()
            .expect("RINGSTASH_IO_DRIVER: auto, uring or epoll");
    }
    c
}

/// A log configuration small enough that a few thousand records rotate many times.
pub fn small_config(dir: &Path) -> LogConfig {
    let mut c = default_config(dir);
    c.segment_bytes_max = 64 << 10;
    c.group_bytes_max = 16 << 10;
    c.record_bytes_max = 4 << 10;
    c.index_interval_bytes = 512;
    c.ring_batches_max = 64;
    c
}

/// The payload of record `i`: its number, then printable filler of a varying length, so
/// that a record read at the wrong offset never compares equal.
pub fn payload(i: u64, rng: &mut Rng, filler_max: u64) -> Vec<u8> {
    let mut p = format!("rec-{i:07}-").into_bytes();
    let n = rng.below(filler_max + 1) as usize;
    p.extend((0..n).map(|k| b'a' + ((i as usize + k) % 26) as u8));
    p
}

/// The timestamp stored with record `i`, so timestamps are checked too.
pub fn ts(i: u64) -> u64 {
    1_700_000_000_000_000_000 + i * 1_000
}

/// Frames `payloads` into one batch and appends it (waiting out a full ring).
pub fn append(log: &Log, first_ts: u64, payloads: &[Vec<u8>]) -> Result<Completion, AppendError> {
    let mut b = BatchBuilder::new(16 << 10, log.config().record_bytes_max);
    for (k, p) in payloads.iter().enumerate() {
        b.push(ts(first_ts + k as u64), p).expect("payload fits");
    }
    let (frames, n) = b.take();
    log.appender().append(frames, n)
}

/// Appends and waits until the batch is durable.
pub fn append_wait(log: &Log, first_ts: u64, payloads: &[Vec<u8>]) -> Committed {
    append(log, first_ts, payloads)
        .expect("append accepted")
        .wait()
        .expect("batch durable")
}

/// Reads every record a reader yields until it has caught up.
pub fn drain(mut r: Reader) -> Vec<Record> {
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
pub fn drain_runs(r: &mut Reader, stop: u64) -> Vec<Record> {
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
pub fn assert_records(got: &[Record], expected: &[Vec<u8>], from: u64, what: &str) {
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
pub struct OnDisk {
    pub offset: u64,
    pub position: u64,
    pub frame_bytes: u64,
}

/// Parses a segment file byte by byte, independently of the library: header, then
/// frames. Stops at the end of the file, or at a record header of zeros if every byte
/// after it is zero too (the unwritten rest of a pre-written active segment); panics on
/// anything malformed (use only on files the test knows to be intact).
pub fn parse_segment(path: &Path) -> Vec<OnDisk> {
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
        // Direct writes pad the active segment to a whole block: fewer zeros than a
        // header may follow the last record.
        let h = &bytes[pos..(pos + RECORD_HEADER as usize).min(bytes.len())];
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

/// Where the records of the segment at `path` end, by [`parse_segment`]: not its length,
/// which direct writes pad to a whole block (and a pre-written segment holds zeros past
/// it).
pub fn data_end(path: &Path) -> u64 {
    parse_segment(path)
        .last()
        .map_or(SEGMENT_HEADER, |r| r.position + r.frame_bytes)
}

/// Reads a sparse index file as (offset relative to base, position) pairs.
pub fn parse_index(path: &Path) -> Vec<(u32, u32)> {
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

/// Starts `ringstash append --print-offsets` on `dir` with `extra` flags and `env`,
/// stdin, stdout and stderr piped.
pub fn spawn_append_printing_offsets(
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    Command::new(BIN)
        .args([
            "append",
            "--data-dir",
            dir.to_str().unwrap(),
            "--print-offsets",
        ])
        .args(extra)
        .env("RINGSTASH_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Copies the files of a data directory (not the lock, nor the streams' directories)
/// into a new directory.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != ".lock" && !e.file_type().unwrap().is_dir() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Writes `count` records numbered from 0 (payload filler up to `filler_max` bytes) in
/// batches of 1..=`batch_max` records; returns the payloads, indexed by offset.
pub fn fill_log(
    log: &Log,
    rng: &mut Rng,
    count: u64,
    batch_max: u64,
    filler_max: u64,
) -> Vec<Vec<u8>> {
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

/// The newest segment file of `dir`.
pub fn last_segment(dir: &Path) -> PathBuf {
    segment_path(dir, *list_segments(dir).unwrap().last().unwrap())
}
