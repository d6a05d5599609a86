//! Time-range reads (`since`/`until`) over the sparse time index (`.tix`).
//!
//! Two halves. The log's own: records appended in-process with chosen receive times,
//! nearly but not quite monotonic in log order (as producers stamp them), in small
//! segments; every range is checked against the exact set of records whose own time is
//! in it, the seek is shown to be a binary search, and the index to be rebuilt,
//! checked, and purged with its segment. The server's: records sent in waves with
//! sleeps between them, their receive times read back, then ranges asked of
//! `GET /v1/logs`, of a subscription and of `ringstash cat`, at segment boundaries,
//! inside segments, around the whole log and after retention.

mod common;

use std::{
    collections::VecDeque,
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{BIN, Server, http, run_ok, small_segments_and, wal as cw, ws};
use ringstash::wal::{
    BatchBuilder, Completion, Log, LogConfig, Reader,
    segment::list_segments,
    timeindex::{self, TIX_ENTRY_BYTES, TIX_HEADER_BYTES, tix_path},
};
use tungstenite::{Message, protocol::frame::coding::CloseCode};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
/// 2026-09-21T...: any fixed time after 1970 will do.
const T0: u64 = 1_790_000_000 * S;

/// Appends `records` (receive time, payload) as one batch.
fn append_timed(log: &Log, records: &[(u64, Vec<u8>)]) -> Completion {
    let mut b = BatchBuilder::new(16 << 10, log.config().record_bytes_max);
    for (ts, p) in records {
        b.push(*ts, p).expect("payload fits");
    }
    let (frames, n) = b.take();
    log.appender().append(frames, n).expect("accepted")
}

/// Writes `count` records whose receive times advance 1 ms per record but come in
/// batches, some of which are stamped up to 400 ms late (a producer whose batch reached
/// the writer after others): nearly monotonic, as real receive times are. Returns each
/// record's time, indexed by offset.
fn fill_timed(log: &Log, rng: &mut cw::Rng, count: u64) -> Vec<u64> {
    let mut times = Vec::new();
    let mut pending: VecDeque<Completion> = VecDeque::new();
    while (times.len() as u64) < count {
        let first = times.len() as u64;
        let n = (1 + rng.below(30)).min(count - first);
        let lag = if rng.below(5) == 0 {
            rng.below(400) * MS
        } else {
            0
        };
        let batch: Vec<(u64, Vec<u8>)> = (first..first + n)
            .map(|i| {
                let ts = T0 + i * MS - lag + (i - first) * 1000;
                (ts, cw::payload(i, rng, 60))
            })
            .collect();
        times.extend(batch.iter().map(|r| r.0));
        pending.push_back(append_timed(log, &batch));
        while pending.len() > 16 {
            pending.pop_front().unwrap().wait().expect("durable");
        }
    }
    for c in pending {
        c.wait().expect("durable");
    }
    times
}

/// Reads `[since, until)` from the log in `dir` as the read paths do: seek with the
/// time index, filter each record on its own time, stop once a record passes `until`
/// by `skew`. Returns the offsets read and the offset the seek started at.
fn read_range(dir: &Path, since: Option<u64>, until: Option<u64>, skew: u64) -> (Vec<u64>, u64) {
    let start = since.map_or(0, |s| {
        timeindex::seek(dir, s)
            .expect("seek")
            .expect("segments")
            .offset
    });
    let mut r = Reader::open_dir(dir, start).expect("reader");
    let mut out = Vec::new();
    while let Some(rec) = r.next().expect("read") {
        if until.is_some_and(|u| rec.timestamp_ns > u + skew) {
            break;
        }
        if since.is_none_or(|s| rec.timestamp_ns >= s) && until.is_none_or(|u| rec.timestamp_ns < u)
        {
            out.push(rec.offset);
        }
    }
    (out, start)
}

/// The offsets whose own time is in `[since, until)`, from the written times.
fn expected(times: &[u64], since: Option<u64>, until: Option<u64>, from: u64) -> Vec<u64> {
    (from..times.len() as u64)
        .filter(|&i| {
            let t = times[i as usize];
            since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
        })
        .collect()
}

/// A small log: 64 KiB segments, an index entry every 512 bytes.
fn small_log(dir: &Path) -> LogConfig {
    let mut c = cw::small_config(dir);
    c.segment_prewrite = ringstash::wal::Prewrite::Off;
    c
}

#[test]
fn ranges_are_exact_at_segment_boundaries_inside_segments_and_around_the_log() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let config = small_log(&dir);
    let skew = config.time_skew_ms_max * MS;
    let log = Log::open(config).unwrap();
    let mut rng = cw::Rng(17);
    let times = fill_timed(&log, &mut rng, 10_000);
    drop(log);
    let bases = list_segments(&dir).unwrap();
    assert!(bases.len() >= 10, "only {} segments", bases.len());

    let mut cases: Vec<(Option<u64>, Option<u64>)> = vec![
        (Some(T0 - 10 * S), None),                  // before the first record
        (None, Some(T0 - 10 * S)),                  // ends before the first
        (Some(T0 + 3600 * S), None),                // after the last
        (Some(T0 - S), Some(T0 + 3600 * S)),        // the whole log
        (Some(times[4000]), Some(times[4000] + 1)), // one instant
        (Some(times[123] + 1), Some(times[7_777])), // inside segments
        (None, Some(times[5_000])),                 // until alone
    ];
    // Every segment boundary: the first and the last record of each segment, as
    // `since` and as `until`.
    for w in bases.windows(2) {
        let (first, last) = (times[w[0] as usize], times[w[1] as usize - 1]);
        cases.push((Some(first), Some(last)));
        cases.push((Some(last), Some(times[w[1] as usize])));
        cases.push((Some(times[w[1] as usize]), None));
    }
    // The running maximum of receive time at each record: what the index keys on.
    let running: Vec<u64> = times
        .iter()
        .scan(0u64, |m, &t| {
            *m = (*m).max(t);
            Some(*m)
        })
        .collect();
    // Records in one index interval (512 bytes of frames of at least 36 bytes), and one.
    let per_interval = 512 / 36 + 1;
    for (since, until) in cases {
        let (got, start) = read_range(&dir, since, until, skew);
        let want = expected(&times, since, until, 0);
        assert_eq!(got, want, "since {since:?} until {until:?}");
        if let (Some(s), Some(&first)) = (since, want.first()) {
            assert!(
                start <= first,
                "seek for {s} started at {start}, past {first}"
            );
            // The seek lands within one index interval before the first record at
            // which the running maximum reaches `since`: the scan before the range
            // is short. (The range itself may begin later, in a late batch.)
            let reach = running.partition_point(|&m| m < s) as u64;
            assert!(
                start <= reach && reach - start <= per_interval,
                "seek for {s} started at {start}; the running maximum reaches it at {reach}"
            );
        }
    }
}

#[test]
fn a_time_seek_is_a_binary_search() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let log = Log::open(small_log(&dir)).unwrap();
    let mut rng = cw::Rng(5);
    let times = fill_timed(&log, &mut rng, 30_000);
    drop(log);
    let bases = list_segments(&dir).unwrap();
    let entries: Vec<u64> = bases
        .iter()
        .map(|&b| {
            (fs::metadata(tix_path(&dir, b)).unwrap().len() - TIX_HEADER_BYTES as u64)
                / TIX_ENTRY_BYTES as u64
        })
        .collect();
    let total: u64 = entries.iter().sum();
    let log2 = |n: u64| 64 - n.leading_zeros() as u64;
    let bound = log2(bases.len() as u64) + 1 + log2(*entries.iter().max().unwrap()) + 1;
    assert!(total > 1_000, "{total} entries");
    // Every entry's offset, over the whole log, in order.
    let at: Vec<u64> = bases
        .iter()
        .flat_map(|&b| {
            let f = timeindex::TixFile::open(&tix_path(&dir, b))
                .unwrap()
                .unwrap();
            f.all()
                .unwrap()
                .into_iter()
                .map(move |e| b + u64::from(e.rel_offset))
        })
        .collect();
    for i in [0usize, 1, 777, 15_000, 29_999] {
        let since = times[i];
        let seek = timeindex::seek(&dir, since).unwrap().unwrap();
        assert!(
            seek.probes <= bound,
            "{} probes for {} segments and {total} entries (bound {bound})",
            seek.probes,
            bases.len()
        );
        assert!(seek.offset <= i as u64);
        // Precise, not just safe: the seek starts no earlier than the last entry
        // before the record where the running maximum reaches `since` (so falling
        // back to the log's start would fail here).
        let mut max = 0;
        let reach = times
            .iter()
            .position(|&t| {
                max = max.max(t);
                max >= since
            })
            .unwrap() as u64;
        let entry_before = at.iter().copied().filter(|&e| e < reach).max().unwrap_or(0);
        assert!(
            seek.offset >= entry_before,
            "record {i}: seek at {}, entry before the running maximum reaches since at {entry_before}",
            seek.offset
        );
        if i > 1_000 {
            assert!(seek.offset > 0, "record {i}: a seek back to the start");
        }
    }
}

/// A segment whose `.tix` cannot be used costs the seek precision, not the whole log:
/// it is taken as starting at or after `since`, and the search goes on among the
/// segments before it, not back to the oldest record. So is a header-only last
/// segment (a new one before its first entries are written).
#[test]
fn a_seek_past_an_unusable_time_index_starts_just_before_it() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let log = Log::open(small_log(&dir)).unwrap();
    let times = fill_timed(&log, &mut cw::Rng(13), 8_000);
    drop(log);
    let bases = list_segments(&dir).unwrap();
    assert!(bases.len() >= 6, "{bases:?}");
    // The segment the search probes first.
    let mid = bases.len() / 2;
    fs::remove_file(tix_path(&dir, bases[mid])).unwrap();
    for i in [bases[mid] as usize + 5, 7_990] {
        let seek = timeindex::seek(&dir, times[i]).unwrap().unwrap();
        assert!(
            seek.offset <= i as u64,
            "record {i}: seek at {}",
            seek.offset
        );
        assert!(
            seek.offset >= bases[mid - 1],
            "record {i}: seek at {}, before the segment just before the unusable one",
            seek.offset
        );
    }
    let (got, _) = read_range(&dir, Some(times[7_000]), None, 5 * S);
    assert_eq!(got, expected(&times, Some(times[7_000]), None, 0));
    // A new, header-only last segment after the records.
    let next = 8_000u64;
    fs::write(
        ringstash::wal::segment::segment_path(&dir, next),
        ringstash::wal::format::encode_segment_header(
            next,
            ringstash::wal::format::InFlightWindow::bytes(16 << 20),
        ),
    )
    .unwrap();
    fs::write(ringstash::wal::segment::index_path(&dir, next), b"").unwrap();
    fs::write(tix_path(&dir, next), timeindex::encode_header()).unwrap();
    let last = *bases.last().unwrap();
    let seek = timeindex::seek(&dir, times[7_999] + 1).unwrap().unwrap();
    assert!(
        (last..=8_000).contains(&seek.offset),
        "a seek past the last record starts in the last written segment: {}",
        seek.offset
    );
}

/// The writer writes a group's `.tix` entries after it acknowledges the group: a seek
/// racing the writer may miss the newest entries, and must then start earlier, never
/// past a committed record received at or after `since`.
#[test]
fn a_seek_racing_the_writer_never_starts_past_a_committed_record() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let log = Log::open(small_log(&dir)).unwrap();
    let view = log.view();
    let total = 20_000u64;
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut pending = VecDeque::new();
            let mut rng = cw::Rng(21);
            for first in (0..total).step_by(20) {
                let batch: Vec<(u64, Vec<u8>)> = (first..first + 20)
                    .map(|i| (T0 + i * MS, cw::payload(i, &mut rng, 60)))
                    .collect();
                pending.push_back(append_timed(&log, &batch));
                while pending.len() > 4 {
                    pending.pop_front().unwrap().wait().expect("durable");
                }
            }
            for c in pending {
                c.wait().expect("durable");
            }
        });
        let mut seeks = 0u64;
        while !writer.is_finished() {
            let end = view.committed_end();
            if end == 0 {
                continue;
            }
            // The newest committed record, received at T0 + k ms: a seek for its time
            // starts at or before it.
            let k = end - 1;
            let seek = timeindex::seek(&dir, T0 + k * MS).unwrap().unwrap();
            assert!(
                seek.offset <= k,
                "seek for record {k} started at {}",
                seek.offset
            );
            seeks += 1;
        }
        writer.join().unwrap();
        assert!(seeks > 10, "{seeks} seeks");
    });
}

#[test]
fn recovery_rebuilds_missing_older_and_damaged_time_indexes_identically() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let config = small_log(&dir);
    let log = Log::open(config.clone()).unwrap();
    let mut rng = cw::Rng(99);
    let times = fill_timed(&log, &mut rng, 6_000);
    drop(log);
    let bases = list_segments(&dir).unwrap();
    let before: Vec<Vec<u8>> = bases
        .iter()
        .map(|&b| fs::read(tix_path(&dir, b)).unwrap())
        .collect();
    common::assert_check_clean(&dir);

    // A segment written before time indexes existed, one of another format version,
    // one whose last entry is damaged (not the segment before the last: its index may
    // lack a crash's last writes, a note), and the active segment's gone too.
    fs::remove_file(tix_path(&dir, bases[1])).unwrap();
    let mut older = before[3].clone();
    older[8] = 9;
    fs::write(tix_path(&dir, bases[3]), &older).unwrap();
    let mut damaged = before[4].clone();
    let at = damaged.len() - TIX_ENTRY_BYTES;
    damaged[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
    fs::write(tix_path(&dir, bases[4]), &damaged).unwrap();
    fs::remove_file(tix_path(&dir, *bases.last().unwrap())).unwrap();
    let (code, text) = common::check(&dir);
    assert_eq!(code, 1, "{text}");
    common::assert_contains(&text, "missing or of another format version");
    common::assert_contains(&text, &format!("{}", tix_path(&dir, bases[4]).display()));

    // A rebuild a crash interrupted: its temporary file is removed at open.
    let leftover = tix_path(&dir, bases[2]).with_extension("tix.tmp");
    fs::write(&leftover, b"half").unwrap();
    let log = Log::open(config).unwrap();
    assert_eq!(log.recovery_report().time_indexes_rebuilt, 3);
    assert!(!leftover.exists());
    drop(log);
    for (i, &b) in bases.iter().enumerate() {
        assert_eq!(
            fs::read(tix_path(&dir, b)).unwrap(),
            before[i],
            "segment {i}"
        );
    }
    common::assert_check_clean(&dir);
    let (got, _) = read_range(&dir, Some(times[2_500]), Some(times[4_000]), 5 * S);
    assert_eq!(
        got,
        expected(&times, Some(times[2_500]), Some(times[4_000]), 0)
    );
}

/// A `.tix` that cannot be read or written (here a directory stands in its place, for
/// a sealed segment and for the active one) never stops the start: it is counted,
/// the records stay readable, time reads start earlier and stay exact, and the log
/// takes more records.
#[test]
fn an_unwritable_time_index_never_stops_the_start() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let config = small_log(&dir);
    let log = Log::open(config.clone()).unwrap();
    let times = fill_timed(&log, &mut cw::Rng(17), 3_000);
    drop(log);
    let bases = list_segments(&dir).unwrap();
    assert!(bases.len() > 3);
    for b in [bases[1], *bases.last().unwrap()] {
        fs::remove_file(tix_path(&dir, b)).unwrap();
        fs::create_dir(tix_path(&dir, b)).unwrap();
        fs::write(tix_path(&dir, b).join("x"), b"in the way").unwrap();
    }
    let log = Log::open(config).unwrap();
    let errors = || {
        log.view()
            .stats()
            .time_index_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // The sealed segment's rebuild and the active segment's rewrite.
    assert_eq!(log.recovery_report().time_index_errors, 2);
    assert_eq!(errors(), 2);
    let more = append_timed(&log, &[(T0 + 10 * S, b"after".to_vec())])
        .wait()
        .expect("acked");
    assert_eq!(more.first_offset, 3_000);
    for (since, until) in [
        (Some(times[100]), Some(times[bases[2] as usize + 10])),
        (Some(times[2_900]), None),
    ] {
        let (got, _) = read_range(&dir, since, until, 5 * S);
        let mut want = expected(&times, since, until, 0);
        if until.is_none() {
            want.push(3_000);
        }
        assert_eq!(got, want, "since {since:?} until {until:?}");
    }
}

/// An empty last segment whose `.tix` is missing (a data directory from before time
/// indexes, or a crash or a check between the `.log`'s creation and the `.tix`'s) or
/// still without its header is a note for `check`, not an error.
#[test]
fn check_notes_a_missing_time_index_on_an_empty_last_segment() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let log = Log::open(small_log(&dir)).unwrap();
    fill_timed(&log, &mut cw::Rng(8), 500);
    drop(log);
    let next = 500u64;
    fs::write(
        ringstash::wal::segment::segment_path(&dir, next),
        ringstash::wal::format::encode_segment_header(
            next,
            ringstash::wal::format::InFlightWindow::bytes(16 << 20),
        ),
    )
    .unwrap();
    fs::write(ringstash::wal::segment::index_path(&dir, next), b"").unwrap();
    let tix = tix_path(&dir, next);
    let (code, text) = common::check(&dir);
    assert_eq!(code, 0, "{text}");
    common::assert_contains(&text, "errors 0");
    common::assert_contains(&text, &format!("{}: missing", tix.display()));
    fs::write(&tix, b"").unwrap();
    let (code, text) = common::check(&dir);
    assert_eq!(code, 0, "{text}");
    common::assert_contains(&text, &format!("{}: header not written yet", tix.display()));
    // The next start writes it.
    drop(Log::open(small_log(&dir)).unwrap());
    common::assert_check_clean(&dir);
}

/// The last segment's index is synced only after its seal, while the writer goes on
/// in the next segment: after a power cut any part of it, or of the one before it,
/// may be missing, and every start rewrites it. `check` notes that (the power-cut
/// loop runs `check` straight after a cut); the same damage to an older segment's
/// index is an error.
#[test]
fn check_notes_a_damaged_time_index_of_the_last_two_segments_only() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let log = Log::open(small_log(&dir)).unwrap();
    fill_timed(&log, &mut cw::Rng(5), 3_000);
    drop(log);
    let bases = list_segments(&dir).unwrap();
    assert!(bases.len() >= 4, "{bases:?}");
    let last = tix_path(&dir, *bases.last().unwrap());
    // A header lost to the cut (zeros), on a last segment that holds records.
    let mut tix = fs::read(&last).unwrap();
    tix[..TIX_HEADER_BYTES].fill(0);
    fs::write(&last, &tix).unwrap();
    let (code, text) = common::check(&dir);
    assert_eq!(code, 0, "{text}");
    common::assert_contains(&text, "errors 0");
    common::assert_contains(&text, &format!("{}: bad header", last.display()));
    common::assert_contains(&text, "rewritten at the next start");
    // The segment before the last, whose `.tix` a cut can leave empty.
    let before = tix_path(&dir, bases[bases.len() - 2]);
    fs::write(&before, b"").unwrap();
    let (code, text) = common::check(&dir);
    assert_eq!(code, 0, "{text}");
    common::assert_contains(&text, "errors 0");
    common::assert_contains(
        &text,
        &format!(
            "{}: bad header (one of the last two segments",
            before.display()
        ),
    );
    // The same on an older segment is damage.
    let sealed = tix_path(&dir, bases[0]);
    let mut tix = fs::read(&sealed).unwrap();
    tix[..TIX_HEADER_BYTES].fill(0);
    fs::write(&sealed, &tix).unwrap();
    let (code, text) = common::check(&dir);
    assert_eq!(code, 1, "{text}");
    common::assert_contains(&text, &format!("{}: damaged time index", sealed.display()));
    // The next start rewrites both.
    drop(Log::open(small_log(&dir)).unwrap());
    common::assert_check_clean(&dir);
}

#[test]
fn check_reports_a_key_that_would_make_a_seek_skip_records() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let log = Log::open(small_log(&dir)).unwrap();
    fill_timed(&log, &mut cw::Rng(3), 3_000);
    drop(log);
    let bases = list_segments(&dir).unwrap();
    let path = tix_path(&dir, bases[1]);
    let mut tix = fs::read(&path).unwrap();
    // The third entry's key, far below the receive times before it.
    let at = TIX_HEADER_BYTES + 2 * TIX_ENTRY_BYTES;
    tix[at..at + 8].copy_from_slice(&(T0 / 2).to_le_bytes());
    fs::write(&path, &tix).unwrap();
    let (code, text) = common::check(&dir);
    assert_eq!(code, 1, "{text}");
    common::assert_contains(&text, &format!("{}: entry 2", path.display()));
    common::assert_contains(&text, "keys must ascend");
    // The cheap check at open looks at the first and last entries only: the damage in
    // the middle is `check`'s to find, and it matters. A key too low in the middle of
    // the index can make a seek skip records: for a `since` above that key but not
    // above the true running maximum at its record, the binary search can take this
    // entry (k) as the last one below `since` and start at its record, past the
    // records between entries k-1 and k received at or after `since`. So `check`
    // reports it as an error, not a note.
}

#[test]
fn retention_removes_time_indexes_with_their_segments_and_ranges_stay_exact() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let mut config = small_log(&dir);
    config.retention_bytes_max = 5 * config.segment_bytes_max;
    let skew = config.time_skew_ms_max * MS;
    let log = Log::open(config).unwrap();
    let times = fill_timed(&log, &mut cw::Rng(11), 12_000);
    drop(log);
    let bases = list_segments(&dir).unwrap();
    let start = bases[0];
    assert!(start > 0, "nothing purged");
    let tix: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tix"))
        .collect();
    assert_eq!(tix.len(), bases.len(), "{tix:?}");
    for (since, until) in [
        (Some(T0 - S), None), // before all written
        (
            Some(times[start as usize - 1]),
            Some(times[start as usize + 50]),
        ), // the purged edge
        (Some(times[start as usize]), Some(times[bases[2] as usize])),
        (Some(times[11_000]), None),
    ] {
        let (got, _) = read_range(&dir, since, until, skew);
        assert_eq!(
            got,
            expected(&times, since, until, start),
            "since {since:?} until {until:?}"
        );
    }
}

/// A time index retention cannot remove (a directory in its place) does not keep its
/// segment from being purged.
#[test]
fn retention_purges_a_segment_whose_time_index_cannot_be_removed() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let log = Log::open(small_log(&dir)).unwrap();
    fill_timed(&log, &mut cw::Rng(4), 3_000);
    drop(log);
    let bases = list_segments(&dir).unwrap();
    let stuck = tix_path(&dir, bases[0]);
    fs::remove_file(&stuck).unwrap();
    fs::create_dir(&stuck).unwrap();
    fs::write(stuck.join("x"), b"in the way").unwrap();
    let mut config = small_log(&dir);
    config.retention_bytes_max = 2 * config.segment_bytes_max;
    let log = Log::open(config).unwrap();
    assert!(log.recovery_report().time_index_errors >= 1);
    drop(log);
    let kept = list_segments(&dir).unwrap();
    assert!(!kept.contains(&bases[0]), "{kept:?}");
}

#[test]
fn records_later_than_the_skew_bound_are_counted() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let mut config = small_log(&dir);
    config.time_skew_ms_max = 100;
    let log = Log::open(config).unwrap();
    let skewed = || {
        log.view()
            .stats()
            .time_skew_exceeded
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let p = |s: &str| s.as_bytes().to_vec();
    // Receive times a minute ahead of the clock, so that none is written late.
    let t = ringstash::wal::format::now_ns() + 60 * S;
    append_timed(&log, &[(t, p("a")), (t + S, p("b"))])
        .wait()
        .unwrap();
    // 50 ms below the running maximum: within the bound. 300 ms: beyond it, twice.
    append_timed(&log, &[(t + S - 50 * MS, p("c"))])
        .wait()
        .unwrap();
    append_timed(
        &log,
        &[(t + S - 300 * MS, p("d")), (t + S - 301 * MS, p("e"))],
    )
    .wait()
    .unwrap();
    assert_eq!(skewed(), 2);
    // Written more than the bound after they were received (as a batch held up by
    // backpressure would be): above the running maximum, yet counted, each once.
    let (_tmp2, dir2) = cw::temp_data_dir("late");
    let mut config2 = small_log(&dir2);
    config2.time_skew_ms_max = 1_000;
    let log2 = Log::open(config2).unwrap();
    let now = ringstash::wal::format::now_ns();
    append_timed(&log2, &[(now - 10 * S, p("f")), (now - 5 * S, p("g"))])
        .wait()
        .unwrap();
    // Received 6 s ago and 1 s below the running maximum: one record, counted once.
    append_timed(&log2, &[(now - 6 * S, p("h"))])
        .wait()
        .unwrap();
    // Received just now (the bound is 1 s): not late.
    append_timed(&log2, &[(ringstash::wal::format::now_ns(), p("i"))])
        .wait()
        .unwrap();
    let counted = log2
        .view()
        .stats()
        .time_skew_exceeded
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(counted, 3);
    assert_eq!(skewed(), 2, "another log's counter");
}

/// `cat --until` stops once records pass `until` by the skew bound: the default
/// `time_skew_ms_max`, or `--time-skew-ms` to match a server run with a larger one.
#[test]
fn cat_until_takes_the_skew_bound_of_the_server() {
    let (_tmp, dir) = cw::temp_data_dir("log");
    let log = Log::open(small_log(&dir)).unwrap();
    let p = |s: &str| s.as_bytes().to_vec();
    // "late" arrives 19 s below the running maximum: past the default 5 s bound.
    append_timed(&log, &[(T0, p("early")), (T0 + 20 * S, p("after"))])
        .wait()
        .unwrap();
    append_timed(&log, &[(T0 + S, p("late"))]).wait().unwrap();
    drop(log);
    let until = format!("{}", T0 / S + 2);
    let cat = |extra: &[&str]| -> String {
        let out = run_ok(
            Command::new(BIN)
                .args(["cat", "--until", &until, "--data-dir"])
                .arg(&dir)
                .args(extra),
            "cat --until",
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(cat(&[]), "early\n");
    assert_eq!(cat(&["--time-skew-ms", "30000"]), "early\nlate\n");
    // A far-future `until`, past 2262 (where an i64 of ns ends), takes every record.
    let out = run_ok(
        Command::new(BIN)
            .args(["cat", "--until", "2300-01-01T00:00:00Z", "--data-dir"])
            .arg(&dir),
        "cat --until 2300",
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "early\nafter\nlate\n"
    );
    let out = Command::new(BIN)
        .args(["cat", "--time-skew-ms", "86400001", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a skew above the setting's range");
}

// ---- the server -------------------------------------------------------------------

/// One stored record as the read API returns it.
#[derive(Debug, Clone, PartialEq)]
struct Got {
    offset: u64,
    ts: u64,
    data: String,
}

/// Every record `GET /v1/logs?<query>` gives, paging on `next` until a page is empty
/// or says `until_reached`; returns them and whether `until_reached` was said.
fn get_all(s: &Server, query: &str, limit: usize) -> (Vec<Got>, bool) {
    let mut out = Vec::new();
    let mut from: Option<u64> = None;
    loop {
        let mut parts: Vec<String> = Vec::new();
        if !query.is_empty() {
            parts.push(query.to_owned());
        }
        if let Some(f) = from {
            parts.push(format!("from={f}"));
        }
        parts.push(format!("limit={limit}"));
        let q = parts.join("&");
        let r = http(s.http, "GET", &format!("/v1/logs?{q}"), &[], b"");
        assert_eq!(r.status, 200, "{q}: {}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        let recs = v["records"].as_array().unwrap();
        for r in recs {
            out.push(Got {
                offset: r["offset"].as_u64().unwrap(),
                ts: r["ts"].as_u64().unwrap(),
                data: r["data"].as_str().unwrap().to_owned(),
            });
        }
        if v["until_reached"] == true {
            return (out, true);
        }
        let next = v["next"].as_u64().unwrap();
        if recs.is_empty() && next >= v["committed_end"].as_u64().unwrap() {
            return (out, false);
        }
        from = Some(next);
    }
}

/// Sends `waves` waves of `per_wave` JSON records over the acked listener, `gap`
/// apart; returns every stored record, read back with its receive time.
fn send_waves(s: &Server, waves: usize, per_wave: usize, gap: Duration) -> Vec<Got> {
    let services = ["api", "db", "web"];
    let levels = ["info", "warn", "error"];
    for w in 0..waves {
        let lines: Vec<String> = (0..per_wave)
            .map(|i| {
                format!(
                    r#"{{"service":"{}","level":"{}","msg":"wave {w} record {i} {}"}}"#,
                    services[i % 3],
                    levels[(i / 3) % 3],
                    "x".repeat(i % 40)
                )
            })
            .collect();
        ws::ingest_lines(s, &lines);
        std::thread::sleep(gap);
    }
    let (all, _) = get_all(s, "", 10_000);
    assert_eq!(all.len(), waves * per_wave);
    all
}

fn in_range(all: &[Got], since: Option<u64>, until: Option<u64>) -> Vec<Got> {
    all.iter()
        .filter(|r| since.is_none_or(|s| r.ts >= s) && until.is_none_or(|u| r.ts < u))
        .cloned()
        .collect()
}

/// `ns` as Unix seconds with nine decimals.
fn unix(ns: u64) -> String {
    format!("{}.{:09}", ns / S, ns % S)
}

/// `ns` as RFC 3339 in UTC+01:00, with nanoseconds, percent-encoded for a query.
fn rfc3339(ns: u64) -> String {
    let t = chrono::DateTime::from_timestamp((ns / S) as i64, (ns % S) as u32).unwrap();
    let t = t.with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap());
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, false)
        .replace('+', "%2B")
}

#[test]
fn read_api_ranges_match_the_receive_times_of_stored_records() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(
        tmp.path(),
        &small_segments_and(&["--time-skew-ms-max", "100"]),
    );
    let all = send_waves(&s, 6, 400, Duration::from_millis(120));
    let bases = list_segments(tmp.path()).unwrap();
    assert!(bases.len() >= 4, "{} segments", bases.len());
    let first_of = |w: usize| {
        let p = format!("wave {w} record 0 ");
        all.iter().find(|r| r.data.contains(&p)).unwrap().ts
    };
    let at = |offset: u64| all[offset as usize].ts;
    let (t_first, t_last) = (all[0].ts, all.last().unwrap().ts);

    let mut cases: Vec<(Option<u64>, Option<u64>)> = vec![
        (Some(first_of(2)), Some(first_of(4))), // waves 2 and 3, exactly
        (Some(t_first - S), Some(t_last + S)),  // around the whole log
        (Some(t_first - S), Some(t_first)),     // before the first record: none
        (Some(t_last + 1), None),               // after the last: none
        (Some(at(1_111)), Some(at(1_999) + 1)), // inside segments
        (None, Some(first_of(1))),              // until alone: wave 0
    ];
    for &b in &bases[1..] {
        cases.push((Some(at(b)), Some(at(b + 1))));
        cases.push((Some(at(b - 1)), Some(at(b))));
    }
    for (since, until) in cases {
        let want = in_range(&all, since, until);
        let mut q = String::new();
        let mut parts = Vec::new();
        if let Some(v) = since {
            parts.push(format!("since={}", unix(v)));
        }
        if let Some(v) = until {
            parts.push(format!("until={}", rfc3339(v)));
        }
        q.push_str(&parts.join("&"));
        let clock_before = ringstash::wal::now_ns();
        let (got, reached) = get_all(&s, &q, 97);
        let clock_after = ringstash::wal::now_ns();
        assert_eq!(got, want, "{q}");
        // `until_reached` once a record passed `until` + the skew bound (100 ms here),
        // or the read reached the end with the clock past it.
        if let Some(u) = until {
            let stop = u + 100 * MS;
            if all.iter().any(|r| r.ts > stop) || clock_before > stop {
                assert!(reached, "{q}: until_reached missing");
            } else if clock_after <= stop {
                assert!(!reached, "{q}: until_reached too early");
            }
        } else {
            assert!(!reached, "{q}");
        }
    }
    // Waves are whole: the receive time is taken per read, and the reads of one wave
    // come before the sleep.
    let waves23 = in_range(&all, Some(first_of(2)), Some(first_of(4)));
    assert_eq!(waves23.len(), 800);
    assert!(
        waves23
            .iter()
            .all(|r| r.data.contains("wave 2 ") || r.data.contains("wave 3 "))
    );

    // `from` and `since` together: both hold.
    let one = |q: &str| -> Vec<u64> {
        let v = http(
            s.http,
            "GET",
            &format!("/v1/logs?{q}&limit=10000"),
            &[],
            b"",
        )
        .json();
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["offset"].as_u64().unwrap())
            .collect()
    };
    let since2 = unix(first_of(2));
    assert_eq!(
        one(&format!("since={since2}")),
        (800..2400).collect::<Vec<_>>()
    );
    assert_eq!(
        one(&format!("since={since2}&from=1000")),
        (1000..2400).collect::<Vec<_>>()
    );
    assert_eq!(
        one(&format!("since={since2}&from=10")),
        (800..2400).collect::<Vec<_>>()
    );

    // A bad time: 400, naming the parameter.
    for (q, name) in [
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
    ] {
        let r = http(s.http, "GET", &format!("/v1/logs?{q}"), &[], b"");
        assert_eq!(r.status, 400, "{q}");
        let v = r.json();
        assert_eq!(v["error"], "bad_request");
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{name} must be")),
            "{v}"
        );
    }
    let m = common::metrics(s.http);
    assert!(m.contains("\nringstash_time_skew_exceeded_total "), "{m}");
    assert_eq!(s.stop().code(), Some(0));

    // `cat`, on the same directory: the range and the filters combined.
    let cat = |args: &[&str]| -> Vec<String> {
        let out = run_ok(
            Command::new(BIN)
                .args(["cat", "--data-dir"])
                .arg(tmp.path())
                .args(args),
            "cat",
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let since = unix(first_of(1));
    let until = rfc3339(first_of(3)).replace("%2B", "+");
    let want: Vec<String> = in_range(&all, Some(first_of(1)), Some(first_of(3)))
        .into_iter()
        .map(|r| r.data)
        .collect();
    assert_eq!(cat(&["--since", &since, "--until", &until]), want);
    let filtered: Vec<String> = want
        .iter()
        .filter(|d| {
            d.contains(r#""service":"db""#)
                && d.contains(r#""level":"error""#)
                && d.contains("record 1")
        })
        .cloned()
        .collect();
    assert!(!filtered.is_empty());
    assert_eq!(
        cat(&[
            "--since",
            &since,
            "--until",
            &until,
            "--service",
            "db",
            "--level",
            "ERROR",
            "--grep",
            "record 1"
        ]),
        filtered
    );
    let out = Command::new(BIN)
        .args(["cat", "--since", "noon", "--data-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    common::assert_contains(&String::from_utf8_lossy(&out.stderr), "--since must be");
}

/// Reads a subscription's JSON messages until it is closed; returns the records and
/// the close frame.
fn read_to_close(
    sub: &mut ws::Ws,
    within: Duration,
) -> (Vec<ws::Rec>, Option<(CloseCode, String)>) {
    let deadline = Instant::now() + within;
    let mut recs = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "not closed; {} records",
            recs.len()
        );
        match sub.read() {
            Ok(Message::Text(t)) => recs.extend(ws::parse_message(&t).0),
            Ok(Message::Close(f)) => return (recs, f.map(|f| (f.code, f.reason.to_string()))),
            Ok(_) => {}
            Err(e) => panic!("subscription failed after {} records: {e}", recs.len()),
        }
    }
}

#[test]
fn subscriptions_with_a_range_send_it_exactly_then_close_normally() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(
        tmp.path(),
        &small_segments_and(&["--time-skew-ms-max", "200"]),
    );
    let all = send_waves(&s, 4, 300, Duration::from_millis(120));
    let first_of = |w: usize| {
        let p = format!("wave {w} record 0 ");
        all.iter().find(|r| r.data.contains(&p)).unwrap().ts
    };
    let addr = ws::ws_addr(&s);

    // In the past: waves 1 and 2, then a normal close.
    let (since, until) = (first_of(1), first_of(3));
    for format in ["json", "binary"] {
        let mut sub = ws::subscribe(
            addr,
            &format!(
                "since={}&until={}&format={format}",
                unix(since),
                unix(until)
            ),
        );
        let want = in_range(&all, Some(since), Some(until));
        if format == "json" {
            let (recs, close) = read_to_close(&mut sub, Duration::from_secs(20));
            let got: Vec<(u64, String)> = recs.into_iter().map(|r| (r.offset, r.data)).collect();
            let want: Vec<(u64, String)> = want.into_iter().map(|r| (r.offset, r.data)).collect();
            assert_eq!(got, want);
            assert_eq!(close, Some((CloseCode::Normal, "until reached".to_owned())));
        } else {
            // Binary messages: 16-byte header, then stored frames (offset first).
            let mut offsets = Vec::new();
            let close = loop {
                match sub.read().expect("read") {
                    Message::Binary(b) => {
                        let mut at = 16;
                        while at < b.len() {
                            offsets.push(u64::from_le_bytes(b[at..at + 8].try_into().unwrap()));
                            let len = u32::from_le_bytes(b[at + 12..at + 16].try_into().unwrap())
                                as usize;
                            at += 24 + len;
                        }
                    }
                    Message::Close(f) => break f.map(|f| f.code),
                    _ => {}
                }
            };
            assert_eq!(offsets, want.iter().map(|r| r.offset).collect::<Vec<_>>());
            assert_eq!(close, Some(CloseCode::Normal));
        }
    }

    // `until` in the future: what arrives before it is sent, then the subscription
    // ends by itself, without what arrives after it.
    let now = ringstash::wal::now_ns();
    // Far enough ahead for the subscription and the acked ingest below on a slow,
    // busy machine.
    let until = now + 4_000 * MS;
    let mut sub = ws::subscribe(addr, &format!("since={}&until={}", unix(now), unix(until)));
    let before: Vec<String> = (0..50).map(|i| format!("before {i}")).collect();
    ws::ingest_lines(&s, &before);
    while ringstash::wal::now_ns() < until + 300 * MS {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after: Vec<String> = (0..50).map(|i| format!("after {i}")).collect();
    ws::ingest_lines(&s, &after);
    let (recs, close) = read_to_close(&mut sub, Duration::from_secs(20));
    assert_eq!(
        recs.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
        before
    );
    assert_eq!(close, Some((CloseCode::Normal, "until reached".to_owned())));

    // A bad time refuses the subscription, naming the parameter.
    let (status, body) = ws::refused(addr, "/v1/stream?until=later", None);
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("until must be"),
        "{body}"
    );
    assert_eq!(s.stop().code(), Some(0));
}

#[test]
fn ranges_after_retention_purged_the_oldest_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(
        tmp.path(),
        &small_segments_and(&["--retention-bytes-max", "196608"]),
    );
    // Written, then partly purged: read back only what is kept.
    for _ in 0..3 {
        send_some(&s);
    }
    let (kept, _) = get_all(&s, "", 10_000);
    let bases = list_segments(tmp.path()).unwrap();
    assert!(bases[0] > 0, "nothing purged");
    assert!(bases.len() >= 3, "{bases:?}");
    assert_eq!(kept[0].offset, bases[0]);
    let tix = fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tix")
        })
        .count();
    assert_eq!(tix, bases.len());
    let at = |o: u64| kept[(o - bases[0]) as usize].ts;
    let cases = [
        (Some(kept[0].ts - 60 * S), None), // before everything ever written
        (Some(kept[0].ts), Some(at(bases[1]))), // the oldest kept segment
        (Some(at(bases[1] + 7)), Some(at(bases[2] + 7))),
    ];
    let ask = |s: &Server| {
        for (since, until) in cases {
            let mut q = vec![];
            if let Some(v) = since {
                q.push(format!("since={}", unix(v)));
            }
            if let Some(v) = until {
                q.push(format!("until={}", unix(v)));
            }
            let (got, _) = get_all(s, &q.join("&"), 500);
            assert_eq!(got, in_range(&kept, since, until), "{q:?}");
        }
    };
    ask(&s);
    assert_eq!(s.stop().code(), Some(0));

    // Every time index deleted: the next start rebuilds them, and the answers stay.
    let before: Vec<Vec<u8>> = bases
        .iter()
        .map(|&b| fs::read(tix_path(tmp.path(), b)).unwrap())
        .collect();
    for &b in &bases {
        fs::remove_file(tix_path(tmp.path(), b)).unwrap();
    }
    let s = Server::start(
        tmp.path(),
        &small_segments_and(&["--retention-bytes-max", "196608"]),
    );
    ask(&s);
    assert_eq!(s.stop().code(), Some(0));
    for (i, &b) in bases.iter().enumerate() {
        let after = fs::read(tix_path(tmp.path(), b)).unwrap();
        // Rebuilt from the oldest kept record, the keys may only be lower than the
        // writer's (which carried the purged segments' times), never higher.
        assert_eq!(after.len(), before[i].len(), "segment {i}");
        for (a, w) in after[TIX_HEADER_BYTES..]
            .chunks(TIX_ENTRY_BYTES)
            .zip(before[i][TIX_HEADER_BYTES..].chunks(TIX_ENTRY_BYTES))
        {
            assert_eq!(a[8..], w[8..], "segment {i}: entry positions");
            let key = |e: &[u8]| u64::from_le_bytes(e[..8].try_into().unwrap());
            assert!(
                key(a) <= key(w),
                "segment {i}: rebuilt key above the written one"
            );
        }
    }
    common::assert_check_clean(tmp.path());
}

/// Sends 2,000 records in a few waves.
fn send_some(s: &Server) {
    for w in 0..4 {
        let lines: Vec<String> = (0..500)
            .map(|i| format!("w{w} r{i} {}", "y".repeat(60)))
            .collect();
        ws::ingest_lines(s, &lines);
        std::thread::sleep(Duration::from_millis(30));
    }
}
