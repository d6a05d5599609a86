//! `ringstash check`: verify every record of every segment.

use std::path::{Path, PathBuf};

use super::{
    format::{self, InFlightWindow, SEGMENT_HEADER_BYTES},
    segment::{self, DamagedRange, Scan, Scanner},
    timeindex::{self, TixError, TixFile},
};
use crate::error::ReadError;

/// What `check` found in one segment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SegmentCheck {
    /// The segment file.
    pub path: PathBuf,
    /// Offset of its first record (from its name).
    pub base_offset: u64,
    /// Valid records found.
    pub records: u64,
    /// Bytes of valid records, headers included (the segment header excluded).
    pub bytes: u64,
    /// The file's size.
    pub file_bytes: u64,
    /// Damage found, if any.
    pub problem: Option<String>,
}

/// What `check` found in the directory.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Per segment, oldest first.
    pub segments: Vec<SegmentCheck>,
    /// Valid records in all segments.
    pub records: u64,
    /// Bytes of valid records in all segments.
    pub bytes: u64,
    /// Damage in any segment (a bad record with valid records after it, the last
    /// segment's included), damage at a sealed segment's end, gaps between segments,
    /// or bad index entries: data that should be there and is not.
    pub errors: Vec<String>,
    /// The damaged ranges among `errors` that have valid records after them: readers
    /// skip them, so they are given apart, with their positions and lost offsets.
    pub damaged_ranges: Vec<DamagedRange>,
    /// Bytes after the last valid record of the last segment with no valid record
    /// after them: a torn tail that the next start will cut (or a record being
    /// written, if a server is running).
    pub torn_tail: Option<String>,
    /// Zeros after the last record of the segment before the last, to the end of its
    /// file: the cut of its unused rest at rotation, synced while the writer went on
    /// in the last segment and undone by a power cut (see `wal::writer::rotate`);
    /// recovery cuts them again at the next start. (If its records do not end where
    /// the last segment begins, that gap is an error of its own.)
    pub unsynced_cut: Option<String>,
    /// Sparse-index (`.idx`) entries of the segment before the last that point at no
    /// record: its index is synced after the last segment starts, so a power cut can
    /// leave it as it was before the writer's last start rewrote it; the next start
    /// drops them.
    pub index_notes: Vec<String>,
    /// Time indexes (`.tix`) that are missing or of another format version: not
    /// damage (a directory written before time indexes existed), rebuilt at the next
    /// start; time reads scan those segments meanwhile.
    pub time_index_notes: Vec<String>,
}

/// Reads up to the first 32 bytes of a segment (fewer if the file is shorter).
fn read_header(path: &Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES);
    std::fs::File::open(path)
        .and_then(|f| f.take(SEGMENT_HEADER_BYTES as u64).read_to_end(&mut header))
        .map_err(|e| ReadError::io("read segment header", path, e))?;
    Ok(header)
}

/// Verifies every segment in `dir`: headers, every record's checksum and offset,
/// contiguity across segments, that index entries point at the right records, and that
/// time-index keys ascend and never fall below the receive times they cover. Damage
/// is searched past through a window of `damage_resync_window_bytes` (the server's
/// setting of that name; `check` takes it as a flag).
///
/// # Errors
/// An I/O error reading the directory or a file. Damage is reported in the result.
pub fn check_dir(dir: &Path, damage_resync_window_bytes: usize) -> Result<CheckReport, ReadError> {
    let bases = segment::list_segments(dir).map_err(|e| ReadError::io("list segments", dir, e))?;
    let mut report = CheckReport::default();
    let mut expected: Option<u64> = None;
    // Running maximum of receive time in log order, over the segments checked so far
    // (from 0 at the oldest kept one: keys written before retention may be higher,
    // never lower).
    let mut ts_max = 0u64;
    // The last time-index key seen: keys ascend over the whole log.
    let mut key_max = 0u64;
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let path = segment::segment_path(dir, base);
        let file_bytes = std::fs::metadata(&path)
            .map_err(|e| ReadError::io("stat segment", &path, e))?
            .len();
        let mut seg = SegmentCheck {
            path: path.clone(),
            base_offset: base,
            records: 0,
            bytes: 0,
            file_bytes,
            problem: None,
        };
        if let Some(exp) = expected
            && exp != base
        {
            report.errors.push(format!(
                "gap: previous segment ends at offset {exp}, {} starts at {base}",
                path.display()
            ));
        }
        if let Some(written_with) = check_header(&mut seg, last, &mut report)? {
            let before_last = i + 2 == bases.len();
            let (positions, times) = check_records(
                &mut seg,
                (last, before_last),
                written_with,
                damage_resync_window_bytes,
                &mut report,
            )?;
            check_index(dir, base, last, before_last, &positions, &mut report)?;
            let t = TimeCheck {
                positions: &positions,
                times: &times,
                seed: ts_max,
                key_max,
            };
            // The segment before the last has its `.tix` synced after the last one
            // starts (see `wal::writer::rotate`): a crash can leave it short too.
            key_max = check_time_index(dir, base, last, last || before_last, &t, &mut report)?;
            ts_max = times.iter().copied().fold(ts_max, u64::max);
            // Not `base + records`: a damaged range is a gap in the offsets.
            expected = Some(positions.last().map_or(base, |&(o, _)| o + 1));
        } else if seg.problem.is_some() {
            expected = None;
        }
        if let Some(p) = &seg.problem {
            report.errors.push(format!("{}: {p}", path.display()));
        }
        report.records += seg.records;
        report.bytes += seg.bytes;
        report.segments.push(seg);
    }
    Ok(report)
}

/// The in-flight window the segment's header records, if the header is valid and
/// names its base offset; a bad one is the segment's problem, or the torn tail of a
/// rotation that crashed.
fn check_header(
    seg: &mut SegmentCheck,
    last: bool,
    report: &mut CheckReport,
) -> Result<Option<InFlightWindow>, ReadError> {
    let header = read_header(&seg.path)?;
    match format::decode_segment_header(&header) {
        Ok(h) if h.base_offset == seg.base_offset => return Ok(Some(h.window)),
        Ok(h) => {
            seg.problem = Some(format!(
                "header base offset {} does not match the file name",
                h.base_offset
            ))
        }
        // A last segment holding no more than a bad header is a rotation that crashed
        // before the header was synced: it never held a record, and recovery removes
        // it at the next start. Like a torn tail, it is not damage.
        Err(e) if last && seg.file_bytes <= SEGMENT_HEADER_BYTES as u64 => {
            report.torn_tail = Some(format!(
                "{}: {e}: a rotation that crashed before its header was synced; no records; removed at next start",
                seg.path.display()
            ));
        }
        Err(e) => seg.problem = Some(format!("bad segment header: {e}")),
    }
    Ok(None)
}

/// Scans every record of the segment, counting them into `seg`; returns each
/// record's (offset, position), ascending. Where the scan stops early is the last
/// segment's torn tail, or the segment's problem.
#[allow(clippy::type_complexity)] // two parallel lists, named in the doc
fn check_records(
    seg: &mut SegmentCheck,
    (last, before_last): (bool, bool),
    written_with: InFlightWindow,
    window_bytes: usize,
    report: &mut CheckReport,
) -> Result<(Vec<(u64, u64)>, Vec<u64>), ReadError> {
    let path = &seg.path;
    let mut s = Scanner::open(path.clone(), SEGMENT_HEADER_BYTES as u64, seg.base_offset)
        .map_err(|e| ReadError::io("open segment", path, e))?;
    let mut positions: Vec<(u64, u64)> = Vec::new();
    // Each record's receive time, beside `positions`.
    let mut times: Vec<u64> = Vec::new();
    // Damaged ranges found, each with the segment's records, bytes and positions
    // counted before it; the end of the last valid record.
    let mut ranges: Vec<(DamagedRange, u64, u64, usize)> = Vec::new();
    let mut data_end = SEGMENT_HEADER_BYTES as u64;
    loop {
        match s
            .next()
            .map_err(|e| ReadError::io("read segment", path, e))?
        {
            Scan::Record { record, position } => {
                seg.records += 1;
                seg.bytes += record.frame_bytes() as u64;
                positions.push((record.offset, position));
                times.push(record.timestamp_ns);
                data_end = position + record.frame_bytes() as u64;
            }
            Scan::End => break,
            Scan::Bad { position, reason } => {
                // Valid records after the bad one: damage, in any segment. The scan goes
                // on after it, so that the records there are counted and checked.
                let skipped = s
                    .skip_damage(position, &reason, window_bytes)
                    .map_err(|e| ReadError::io("read segment", path, e))?;
                if let Some(range) = skipped {
                    ranges.push((range, seg.records, seg.bytes, positions.len()));
                    continue;
                }
                if (last || before_last) && reason == format::UNWRITTEN {
                    // The last segment: a pre-written active segment's unused rest (see
                    // `spare`). The one before: its rotation's cut, not yet synced.
                    let (why, note) = if last {
                        (
                            "a pre-written segment in use, or left by a crash; cut at next start",
                            &mut report.torn_tail,
                        )
                    } else {
                        (
                            "its rotation's cut, undone by a power cut before it was synced; cut again at next start",
                            &mut report.unsynced_cut,
                        )
                    };
                    *note = Some(format!(
                        "{}: unwritten (zero) space after the last record, at byte {position}, {} bytes to the end of the file: {why}",
                        path.display(),
                        seg.file_bytes - position
                    ));
                    break;
                }
                let text = format!(
                    "{}: bad record at byte {position} (expected offset {}): {reason}; {} bytes follow",
                    path.display(),
                    s.next_offset(),
                    seg.file_bytes - position
                );
                if last {
                    report.torn_tail = Some(text);
                } else {
                    seg.problem = Some(text);
                }
                break;
            }
        }
    }
    // As recovery decides (`recovery::settle_in_flight_hole`), by the window the
    // segment's writer recorded (for a segment from before it was recorded, with the
    // default settings: check does not read the server's): zeros near the end of the
    // last segment with records after them are writes in flight at a crash, a torn
    // tail cut at the next start.
    let window = super::recovery::judged_window(written_with, &super::LogConfig::new(""));
    if last
        && let Some(i) = ranges.iter().position(|(r, ..)| {
            r.reason == format::UNWRITTEN && window.is_none_or(|w| data_end - r.position <= w)
        })
    {
        let (hole, records, bytes, kept) = &ranges[i];
        let what = match window {
            Some(_) => "writes in flight at a crash (unacknowledged)",
            None => "writes not yet synced at a crash (written under a non-durable fsync policy)",
        };
        report.torn_tail = Some(format!(
            "{}: zeros at byte {} with records after them up to byte {data_end}: {what}; cut at next start",
            path.display(),
            hole.position
        ));
        (seg.records, seg.bytes) = (*records, *bytes);
        positions.truncate(*kept);
        times.truncate(*kept);
        ranges.truncate(i);
    }
    for (range, ..) in ranges {
        report.errors.push(range.to_string());
        report.damaged_ranges.push(range);
    }
    Ok((positions, times))
}

/// What [`check_time_index`] checks a segment's `.tix` against.
struct TimeCheck<'a> {
    /// The segment's records, (offset, position), ascending.
    positions: &'a [(u64, u64)],
    /// Their receive times.
    times: &'a [u64],
    /// Running maximum of receive time before the segment's first record.
    seed: u64,
    /// The last key of the time indexes before this one.
    key_max: u64,
}

/// Checks a segment's time index: every entry points at one of its records (in the
/// active segment, entries past the valid records are a crash's and rebuilt at the
/// next start), keys never descend (over the whole log) and no key is below the
/// running maximum of receive time at its record, which a time seek relies on.
/// `unsynced`: the index may not have been synced before a crash (the last segment's,
/// and the one before it, synced after the last starts), so what is wrong with it is
/// a note: the next start rebuilds it. Returns the last key, for the next segment's
/// check.
fn check_time_index(
    dir: &Path,
    base: u64,
    last: bool,
    unsynced: bool,
    t: &TimeCheck<'_>,
    report: &mut CheckReport,
) -> Result<u64, ReadError> {
    let tpath = timeindex::tix_path(dir, base);
    let f = match TixFile::open(&tpath).map_err(|e| ReadError::io("read time index", &tpath, e))? {
        Ok(f) => f,
        // A segment written before time indexes existed, or whose index an I/O error
        // removed: the next start rebuilds it, and readers start earlier meanwhile.
        Err(TixError::Missing | TixError::Version(_)) => {
            report.time_index_notes.push(format!(
                "{}: missing or of another format version: rebuilt at the next start",
                tpath.display()
            ));
            return Ok(t.key_max);
        }
        Err(TixError::Empty) if t.positions.is_empty() => return Ok(t.key_max),
        // An empty last segment whose `.tix` never got its header (a crash, or a check
        // during rotation, between the `.log`'s creation and the `.tix` header's
        // write): nothing is indexed, and the next start rewrites it.
        Err(TixError::Header) if last && t.positions.is_empty() => {
            report.time_index_notes.push(format!(
                "{}: header not written yet (new last segment): rewritten at the next start",
                tpath.display()
            ));
            return Ok(t.key_max);
        }
        // The last segment's index is written per group but synced only after its
        // seal, so a power cut can leave any part of it (or of the one before)
        // unwritten; every start rewrites it from the records (recovery), so it is a
        // note, like the torn tail beside it.
        Err(e) if unsynced => {
            report.time_index_notes.push(format!(
                "{}: {e} (one of the last two segments, not synced before a crash): rewritten at the next start",
                tpath.display()
            ));
            return Ok(t.key_max);
        }
        Err(e) => {
            report
                .errors
                .push(format!("{}: damaged time index: {e}", tpath.display()));
            return Ok(t.key_max);
        }
    };
    let entries = f
        .all()
        .map_err(|e| ReadError::io("read time index", &tpath, e))?;
    let mut key_max = t.key_max;
    // The running maximum up to each record, computed once.
    let mut running = Vec::with_capacity(t.times.len());
    let mut m = t.seed;
    for &ts in t.times {
        m = m.max(ts);
        running.push(m);
    }
    for (i, e) in entries.iter().enumerate() {
        let want = (base + u64::from(e.rel_offset), u64::from(e.position));
        let problem = match t.positions.binary_search(&want) {
            Err(_) if last && t.positions.last().is_none_or(|&p| want > p) => break,
            Err(_) => Some("points at no such record".to_owned()),
            Ok(_) if e.key_ns < key_max => Some(format!(
                "key {} is below the key before it ({key_max}): keys must ascend",
                e.key_ns
            )),
            Ok(r) if e.key_ns < running[r] => Some(format!(
                "key {} is below the latest receive time up to its record ({}): a time seek would skip records",
                e.key_ns, running[r]
            )),
            Ok(_) => None,
        };
        if let Some(p) = problem {
            let line = format!(
                "{}: entry {i} (offset {}, byte {}): {p}",
                tpath.display(),
                want.0,
                want.1
            );
            if unsynced {
                // Maybe not synced before a crash (see above): rewritten at the next
                // start.
                report.time_index_notes.push(format!(
                    "{line} (one of the last two segments: rewritten at the next start)"
                ));
            } else {
                report.errors.push(line);
            }
            break;
        }
        key_max = e.key_ns;
    }
    Ok(key_max)
}

/// Checks that a sealed segment's index entries each point at one of its records
/// (`positions`); the active segment's index may be ahead of its data, and the one
/// before it (`before_last`), synced after the active one starts, may be as a power
/// cut left it: a note, since the next start drops what is wrong
/// (`recovery::finish_seal`).
fn check_index(
    dir: &Path,
    base: u64,
    last: bool,
    before_last: bool,
    positions: &[(u64, u64)],
    report: &mut CheckReport,
) -> Result<(), ReadError> {
    let ipath = segment::index_path(dir, base);
    let entries =
        segment::read_index(&ipath).map_err(|e| ReadError::io("read index", &ipath, e))?;
    for (r, p) in entries {
        let want = (base + u64::from(r), u64::from(p));
        if positions.binary_search(&want).is_err() && !last {
            let line = format!(
                "{}: entry (offset {}, byte {}) points at no such record",
                ipath.display(),
                want.0,
                want.1
            );
            if before_last {
                report.index_notes.push(format!(
                    "{line} (the segment before the last, its index not synced before a crash): it and the entries after it are dropped at the next start"
                ));
            } else {
                report.errors.push(line);
            }
            break;
        }
    }
    Ok(())
}
