//! The durable segment log read back: records across many rotations from any offset,
//! pre-written spare segments cut to their records, the non-durable fsync policies, and
//! a lowered `record_bytes_max` between runs. Real files, nothing mocked; the bytes on
//! disk are checked with the independent parser in `tests/common/wal.rs`.

use std::{
    fs::{self, OpenOptions},
    os::unix::fs::FileExt,
    path::PathBuf,
    time::Duration,
};

use ringstash::{
    error::{AppendError, OpenError},
    wal::{
        BatchBuilder, FsyncPolicy, Log, Prewrite, Reader, RecoveryMode,
        segment::{index_path, list_segments, segment_path},
    },
};

mod common;

use common::{wal::*, *};

// ---------------------------------------------------------------------------------------
// Round trips across many rotations, readers from any offset
// ---------------------------------------------------------------------------------------

#[test]
fn round_trip_across_many_rotations_from_any_offset() {
    let (_tmp, dir) = temp_data_dir("data");
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
    let (tmp, dir) = temp_data_dir("d");
    let mut config = small_config(&dir);
    assert_eq!(config.segment_prewrite, Prewrite::Auto, "auto by default");
    // Forced: `auto` would leave it off where the temp dir is a tmpfs.
    config.segment_prewrite = Prewrite::On;
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
            (Err(OpenError::Corrupt(_)), true) => {
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
// Non-durable policies
// ---------------------------------------------------------------------------------------

#[test]
fn non_durable_policies_round_trip_and_shut_down_cleanly() {
    for policy in [FsyncPolicy::Never, FsyncPolicy::Interval { interval_ms: 5 }] {
        let (_tmp, dir) = temp_data_dir("d");
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
// Lowering record_bytes_max between runs
// ---------------------------------------------------------------------------------------

#[test]
fn lowering_record_bytes_max_does_not_make_old_records_look_damaged() {
    let (_tmp, dir) = temp_data_dir("d");
    let mut config = default_config(&dir);
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

    // A torn large record is still cut exactly, under the lower bound. The second
    // open's window (smaller groups) differs from the first's, so its record went to a
    // segment of its own (docs/format.md, "Torn tail or damage"): removed, which leaves
    // the first writer's last segment last again.
    let bases = list_segments(&dir).unwrap();
    let newest = *bases.last().unwrap();
    assert_eq!(newest, n, "the second open wrote in a new segment");
    fs::remove_file(segment_path(&dir, newest)).unwrap();
    fs::remove_file(index_path(&dir, newest)).unwrap();
    fs::remove_file(ringstash::wal::timeindex::tix_path(&dir, newest)).unwrap();
    expected.pop();
    let seg = last_segment(&dir);
    let recs = parse_segment(&seg);
    let victim = *recs.last().unwrap();
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
