//! Recovery of the active segment at open: torn tails at every byte, garbage and zeros
//! after the last record, a damaged index, a crash during rotation, and a hole that the
//! index points past under `fsync = never`. Each case works on a damaged copy of a real
//! log and checks what survives and that numbering carries on.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::FileExt,
    path::Path,
};

use ringstash::{
    error::{Corruption, OpenError},
    wal::{
        FsyncPolicy, Log, LogConfig, Reader, RecoveryMode,
        segment::{index_path, list_segments, segment_path},
    },
};

mod common;

use common::{wal::*, *};

// ---------------------------------------------------------------------------------------
// Recovery: torn tails at every byte, garbage and zeros, damaged index
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
    let (tmp, pristine) = temp_data_dir("pristine");
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
    let (_tmp, dir) = temp_data_dir("d");
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
        Err(OpenError::Corrupt(Corruption {
            path,
            position,
            offset,
            ..
        })) => {
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
    let (tmp, pristine) = temp_data_dir("pristine");
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
    let (tmp, pristine) = temp_data_dir("pristine");
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
// Crash during rotation
// ---------------------------------------------------------------------------------------

#[test]
fn a_segment_whose_header_never_reached_the_disk_is_removed_at_start() {
    let (tmp, pristine) = temp_data_dir("pristine");
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

/// Under `fsync = never` a power loss can keep a later group and lose an earlier one,
/// with index entries pointing past the hole. Recovery must find the hole (it scans the
/// whole active segment) and cut there, so readers never hit it: zeros with records
/// after them that were in flight (here: not synced) are a torn tail, not damage.
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
