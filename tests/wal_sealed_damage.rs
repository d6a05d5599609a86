//! Damage in sealed segments (a flipped byte, a missing segment, a damaged index) is
//! reported by `ringstash check` and by readers. A damaged record with valid records
//! after it in its segment is skipped by readers with an explicit marker
//! (`Reader::take_damaged`); damage with nothing valid after it stops them.

use std::{
    fs::{self, OpenOptions},
    os::unix::fs::FileExt,
    path::Path,
};

use ringstash::{
    error::{Corruption, ReadError},
    wal::{
        DamagedRange, Log, LogConfig, Reader, Record,
        segment::{index_path, list_segments, segment_path},
    },
};

mod common;

use common::{wal::*, *};

// ---------------------------------------------------------------------------------------
// Damage in a sealed segment is reported, never skipped
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

/// Reads to the end; returns the records and the damaged ranges skipped.
fn read_with_gaps(mut r: Reader) -> (Vec<Record>, Vec<DamagedRange>) {
    let (mut got, mut gaps) = (Vec::new(), Vec::new());
    while let Some(rec) = r.next().expect("read") {
        got.push(Record::from(rec));
        gaps.extend(r.take_damaged());
    }
    gaps.extend(r.take_damaged());
    (got, gaps)
}

/// `got` (read from `from`) is every record but `rec`'s, and `gaps` is exactly `rec`'s
/// range in `seg`.
fn assert_skipped_one(
    got: &[Record],
    gaps: &[DamagedRange],
    expected: &[Vec<u8>],
    from: u64,
    seg: &Path,
    rec: OnDisk,
    what: &str,
) {
    let want: Vec<u64> = (from..expected.len() as u64)
        .filter(|&o| o != rec.offset)
        .collect();
    let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, want, "{what}: from {from}");
    for r in got {
        assert_eq!(r.payload, expected[r.offset as usize], "{what}: payload");
    }
    let ranges: Vec<_> = gaps
        .iter()
        .map(|g| (g.path.clone(), g.position, g.from_offset, g.to_offset))
        .collect();
    assert_eq!(
        ranges,
        vec![(seg.to_owned(), rec.position, rec.offset, rec.offset + 1)],
        "{what}: from {from}"
    );
}

#[test]
fn damaged_byte_in_a_sealed_segment_is_reported_by_check_and_the_reader() {
    let (tmp, pristine) = temp_data_dir("pristine");
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

        if what == "last byte of the segment" {
            // No valid record follows in the segment: readers stop there with Corrupt.
            for from in [0, base, rec.offset] {
                let (got, err) = read_until_error(Reader::open_dir(&dir, from).unwrap());
                assert_records(&got, &expected[..rec.offset as usize], from, what);
                match err {
                    ReadError::Corrupt(Corruption {
                        path,
                        position,
                        offset,
                        ..
                    }) => {
                        assert_eq!(
                            (path, position, offset),
                            (seg.clone(), rec.position, rec.offset),
                            "{what}"
                        );
                    }
                    other => panic!("{what}: expected Corrupt, got {other}"),
                }
            }
        } else {
            // Valid records follow the damaged one: the directory reader skips exactly
            // its offset, says so (take_damaged, with the segment and byte), and reads
            // every record after it, across the later segments.
            for from in [0, base, rec.offset] {
                let (got, gaps) = read_with_gaps(Reader::open_dir(&dir, from).unwrap());
                assert_skipped_one(&got, &gaps, &expected, from, &seg, rec, what);
            }
        }
        // So does a live reader of the reopened log; later segments still read.
        let mut config = config.clone();
        config.dir = dir.clone();
        let log = Log::open(config).unwrap();
        if what == "last byte of the segment" {
            let (got, err) = read_until_error(log.reader(base).unwrap());
            assert_records(&got, &expected[..rec.offset as usize], base, what);
            assert!(
                matches!(&err, ReadError::Corrupt(Corruption { position, .. }) if *position == rec.position),
                "{what}: {err}"
            );
        } else {
            let (got, gaps) = read_with_gaps(log.reader(base).unwrap());
            assert_skipped_one(&got, &gaps, &expected, base, &seg, rec, what);
        }
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
    let (_tmp, dir) = temp_data_dir("d");
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
        matches!(&err, ReadError::Corrupt(Corruption { offset, .. }) if *offset == bases[2]),
        "{err}"
    );
    let log = Log::open(config).unwrap();
    let problems = &log.recovery_report().sealed_problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains(&bases[3].to_string()), "{problems:?}");
    let (got, err) = read_until_error(log.reader(bases[1]).unwrap());
    assert_records(&got, &expected[..bases[2] as usize], bases[1], "live");
    assert!(matches!(err, ReadError::Corrupt(_)), "{err}");
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
    let (_tmp, dir) = temp_data_dir("d");
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
// A rotation's cut undone by a power cut
// ---------------------------------------------------------------------------------------

/// The writer syncs a sealed segment's cut (its unused zeros removed), `.idx` and
/// `.tix` while it goes on in the next segment. A power cut before those syncs leaves
/// the segment before the last ending in zeros, with its indexes as they were before
/// the writer last wrote them: `check` notes it (exit 0), and the next start cuts the
/// zeros again, drops the stale index entry and rebuilds the time index; every record
/// reads back. The same zeros after an older segment are damage.
#[test]
fn zeros_after_the_segment_before_the_last_are_an_undone_cut_that_the_next_start_redoes() {
    let (_tmp, dir) = temp_data_dir("d");
    let (config, expected) = many_segment_log(&dir, 11);
    let bases = list_segments(&dir).unwrap();
    let before_last = bases[bases.len() - 2];
    let path = segment_path(&dir, before_last);
    let len = fs::metadata(&path).unwrap().len();
    // As a pre-written segment is before its cut, and as a power cut leaves the
    // indexes when neither was synced: `.idx` with an entry from before the writer's
    // last start (at a record a torn-tail cut removed), `.tix` without its header.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len + 10_000)
        .unwrap();
    let ipath = index_path(&dir, before_last);
    let mut idx = fs::read(&ipath).unwrap();
    let kept = idx.len() / 8;
    assert!(kept >= 2, "{kept} index entries");
    let (last_rel, last_pos) = (
        u32::from_le_bytes(idx[idx.len() - 8..idx.len() - 4].try_into().unwrap()),
        u32::from_le_bytes(idx[idx.len() - 4..].try_into().unwrap()),
    );
    idx.extend_from_slice(&(last_rel + 1).to_le_bytes());
    idx.extend_from_slice(&(last_pos + 3).to_le_bytes());
    fs::write(&ipath, &idx).unwrap();
    let tix = ringstash::wal::timeindex::tix_path(&dir, before_last);
    fs::write(&tix, b"").unwrap();

    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("errors 0"), "{text}");
    assert!(
        text.contains(&format!(
            "unsynced cut (no record lost; cut again at next start): {}: unwritten (zero) space after the last record, at byte {len}, 10000 bytes",
            path.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}: bad header (one of the last two segments",
            tix.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "index: {}: entry (offset {}, byte {}) points at no such record (the segment before the last",
            ipath.display(),
            before_last + u64::from(last_rel) + 1,
            last_pos + 3
        )),
        "{text}"
    );

    let log = Log::open(config.clone()).unwrap();
    let report = log.recovery_report();
    assert_eq!(report.seal_bytes_cut, 10_000, "{report:?}");
    assert!(report.sealed_problems.is_empty(), "{report:?}");
    assert_eq!(report.time_indexes_rebuilt, 1, "{report:?}");
    assert_eq!(report.index_entries_dropped, 1, "{report:?}");
    assert_eq!(fs::metadata(&path).unwrap().len(), len);
    assert_eq!(fs::read(&ipath).unwrap().len(), kept * 8);
    assert_records(&drain(log.reader(0).unwrap()), &expected, 0, "live reader");
    drop(log);
    assert_check_clean(&dir);

    // Zeros after an older segment: not a rotation's cut (that segment's was synced
    // before the next rotation), so damage, reported and left.
    let older = segment_path(&dir, bases[0]);
    let older_len = fs::metadata(&older).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&older)
        .unwrap()
        .set_len(older_len + 10_000)
        .unwrap();
    let (code, text) = check(&dir);
    assert_eq!(code, 1, "{text}");
    let log = Log::open(config).unwrap();
    assert_eq!(log.recovery_report().seal_bytes_cut, 0);
    assert_eq!(log.recovery_report().sealed_problems.len(), 1);
    assert_eq!(fs::metadata(&older).unwrap().len(), older_len + 10_000);
}

/// The same power cut can leave the segment before the last with its `.idx` short:
/// entries the writer appended, never synced (or half an entry, or an entry from
/// before a torn-tail cut after a valid prefix); and retention removes an `.idx`
/// before its `.log`. The next start appends what is missing from its scan of the
/// segment, the very bytes the writer wrote, so that reads starting in that part of
/// the segment do not scan to it from the last entry there is; a start after that
/// finds nothing missing.
#[test]
fn short_index_of_the_segment_before_the_last_is_written_again_at_the_next_start() {
    // (entries kept whole, bytes of a next entry left, a stale entry after them, no file)
    for (keep, partial, stale, missing) in [
        (0usize, 0usize, false, false),
        (1, 0, false, false),
        (3, 5, false, false),
        (2, 0, true, false),
        (0, 0, false, true),
    ] {
        let what = format!("keep {keep}, partial {partial}, stale {stale}, missing {missing}");
        let (_tmp, dir) = temp_data_dir("d");
        let (config, expected) = many_segment_log(&dir, 13);
        let bases = list_segments(&dir).unwrap();
        let before_last = bases[bases.len() - 2];
        let ipath = index_path(&dir, before_last);
        let whole = fs::read(&ipath).unwrap();
        let entries = whole.len() / 8;
        assert!(entries > keep + 2, "{entries} index entries");
        let mut short = whole[..keep * 8 + partial].to_vec();
        if stale {
            // An entry past the last kept one, at no record's start.
            let last_pos = u32::from_le_bytes(short[short.len() - 4..].try_into().unwrap());
            let last_rel =
                u32::from_le_bytes(short[short.len() - 8..short.len() - 4].try_into().unwrap());
            short.extend_from_slice(&(last_rel + 1).to_le_bytes());
            short.extend_from_slice(&(last_pos + 3).to_le_bytes());
        }
        if missing {
            fs::remove_file(&ipath).unwrap();
        } else {
            fs::write(&ipath, &short).unwrap();
        }

        let log = Log::open(config.clone()).unwrap();
        let report = log.recovery_report();
        assert_eq!(
            report.index_entries_rebuilt,
            entries - keep,
            "{what}: {report:?}"
        );
        assert_eq!(
            report.index_entries_dropped,
            usize::from(stale),
            "{what}: {report:?}"
        );
        assert!(report.sealed_problems.is_empty(), "{what}: {report:?}");
        assert_eq!(fs::read(&ipath).unwrap(), whole, "{what}");
        assert_records(&drain(log.reader(0).unwrap()), &expected, 0, &what);
        drop(log);
        assert_check_clean(&dir);

        let log = Log::open(config).unwrap();
        assert_eq!(log.recovery_report().index_entries_rebuilt, 0, "{what}");
    }
}
