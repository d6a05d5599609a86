//! Opening a data directory: lock it, find the segments, verify the tail, cut what a
//! crash left half-written, and hand the writer a clean active segment.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::{fd::AsRawFd, unix::fs::FileExt},
    path::{Path, PathBuf},
};

use super::{
    LogConfig,
    format::{
        self, HeaderError, INDEX_ENTRY_BYTES, InFlightWindow, SEGMENT_HEADER_BYTES, SegmentHeader,
    },
    segment::{self, DamagedRange, Scan, Scanner, sync_dir},
    timeindex::{self, TIX_HEADER_BYTES, TixEntry},
};
use crate::error::{Corruption, OpenError};

/// What to do when the last segment holds bytes that are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryMode {
    /// Cut the tail at the first bad record (and sync the cut) when no valid record
    /// follows it. Correct after a crash: only records that were never acknowledged
    /// can be torn. A bad record with valid records after it is damage, not a torn
    /// tail: it is reported and skipped, never cut, so the acknowledged records after
    /// it stay readable.
    TolerateTornTail,
    /// Refuse to open on a torn tail (other than unwritten zeros) or on damage; for
    /// operators who want to inspect the segment first.
    Strict,
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecoveryReport {
    /// Segments in the directory after recovery.
    pub segments: usize,
    /// Offset of the oldest record stored.
    pub start_offset: u64,
    /// The offset the next record will get.
    pub next_offset: u64,
    /// Bytes cut from the end of the last segment.
    pub torn_bytes_cut: u64,
    /// Why the tail was cut, if it was.
    pub torn_reason: Option<String>,
    /// A segment whose header never reached the disk (a crash during rotation),
    /// removed.
    pub removed_segment: Option<PathBuf>,
    /// Sparse-index entries that pointed at no valid record and were dropped (the
    /// active segment's, and the segment before the last's: see `finish_seal`).
    pub index_entries_dropped: usize,
    /// Sparse-index entries appended to the segment before the last from the scan of
    /// its records: those its `.idx` lacked at its end (its sync, which a rotation
    /// leaves in flight, undone by a power cut; or the file missing), at the
    /// configured interval after its last entry (see `finish_seal`).
    pub index_entries_rebuilt: usize,
    /// Zeros cut from the end of the segment before the last: the cut its rotation
    /// made, undone by a power cut before it was synced (see `wal::writer::rotate`).
    pub seal_bytes_cut: u64,
    /// Problems found at the ends of sealed segments (reported, not repaired).
    pub sealed_problems: Vec<String>,
    /// Damaged ranges in the active segment: bad frames with valid records after them.
    /// Left in place (not cut) and skipped by readers; their offsets are lost.
    pub damaged_ranges: Vec<DamagedRange>,
    /// Sealed segments whose time index (`.tix`) was rebuilt: missing (written before
    /// time indexes existed), of another format version, or failing its checks. The
    /// active segment's is always rebuilt and not counted.
    pub time_indexes_rebuilt: usize,
    /// I/O errors on time indexes at open (reading, rebuilding or creating one): each
    /// was logged and the index left out (removed where possible, rebuilt at the next
    /// open); readers of such a segment start earlier, as for a missing index.
    pub time_index_errors: usize,
}

/// The segment the writer appends to.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    /// Offset of its first record.
    pub(crate) base: u64,
    /// The `.log` file, open for reading and writing.
    pub(crate) file: File,
    /// The `.idx` file, open for writing.
    pub(crate) index: File,
    /// Bytes of the index file in use.
    pub(crate) index_len: u64,
    /// End of the valid data: where the next record goes.
    pub(crate) end_pos: u64,
    /// Position of the record the last index entry points at.
    pub(crate) last_index_pos: u64,
    /// The `.tix` file (see [`timeindex`]), open for writing; `None` after an I/O
    /// error on it (derived data: the segment carries on without one, and the next
    /// open rebuilds it).
    pub(crate) tindex: Option<File>,
    /// Bytes of the `.tix` file in use (its header included).
    pub(crate) tindex_len: u64,
    /// Running maximum of receive time in log order after the last record written:
    /// the key of the next time-index entry is at least this. Carried across
    /// rotations by the writer.
    pub(crate) ts_max: u64,
    /// The file was a pre-written spare: it is longer than its data (zeros follow), and
    /// is truncated to its data when sealed or closed.
    pub(crate) prewritten: bool,
}

/// The outcome of recovery, handed to the writer.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) next_offset: u64,
    pub(crate) start_offset: u64,
    pub(crate) active: ActiveSegment,
    pub(crate) report: RecoveryReport,
    /// Holds the directory's `flock` for as long as the writer runs.
    pub(crate) lock: File,
}

/// How long `Log::open` waits for the directory lock before reporting it in use.
///
/// A process that forks holds copies of every descriptor, the lock file's included,
/// until the child execs (the lock file is close-on-exec). A log closed while a child
/// was between fork and exec stays locked for that moment, so a reopen right after a
/// close waits it out instead of reporting another owner.
pub const LOCK_WAIT_MS_MAX: u64 = 1000;

/// Takes an exclusive `flock` on `DIR/.lock`, so two servers never write one log.
fn lock_dir(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join(".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| OpenError::io("open lock file", &path, e))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_WAIT_MS_MAX);
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Some(libc::EWOULDBLOCK) => return Err(OpenError::Locked(dir.to_owned())),
            Some(libc::EINTR) => {}
            _ => return Err(OpenError::io("lock", &path, e)),
        }
    }
}

/// Creates segment `base` (header written and synced, recording `window`, empty index)
/// and syncs the directory so both entries survive power loss. An existing file of that
/// name (left by a failed earlier attempt) is replaced.
pub(crate) fn create_segment(
    dir: &Path,
    base: u64,
    window: InFlightWindow,
) -> Result<ActiveSegment, OpenError> {
    let path = segment::segment_path(dir, base);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| OpenError::io("create segment", &path, e))?;
    file.write_all_at(&format::encode_segment_header(base, window), 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| OpenError::io("write segment header", &path, e))?;
    with_new_index(dir, base, file, false)
}

/// Turns the pre-written spare `file` (at `spare_path`) into segment `base`: header
/// written and synced first, then renamed into place, then an empty index, then the
/// directory synced, so that no crash leaves a segment file without a valid header.
pub(crate) fn activate_spare(
    dir: &Path,
    file: File,
    spare_path: &Path,
    base: u64,
    window: InFlightWindow,
) -> Result<ActiveSegment, OpenError> {
    let path = segment::segment_path(dir, base);
    file.write_all_at(&format::encode_segment_header(base, window), 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| OpenError::io("write segment header", spare_path, e))?;
    std::fs::rename(spare_path, &path).map_err(|e| OpenError::io("rename spare", &path, e))?;
    with_new_index(dir, base, file, true)
}

/// The rest of a new segment once its `.log` has its synced header: an empty index,
/// then a directory sync so both entries survive power loss.
fn with_new_index(
    dir: &Path,
    base: u64,
    file: File,
    prewritten: bool,
) -> Result<ActiveSegment, OpenError> {
    let ipath = segment::index_path(dir, base);
    let index = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&ipath)
        .map_err(|e| OpenError::io("create index", &ipath, e))?;
    let tpath = timeindex::tix_path(dir, base);
    // A `.tix` is derived data: failing to create it (a full disk can refuse its
    // 16-byte header even when a pre-written spare holds the `.log`) must not stop a
    // rotation. The caller counts a `None`.
    let tindex = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tpath)
        .and_then(|f| {
            #[cfg(feature = "failpoints")]
            crate::wal::failpoints::tix_io()?;
            f.write_all_at(&timeindex::encode_header(), 0).map(|()| f)
        })
        .map_err(|e| timeindex::warn_and_remove(&tpath, "create", &e))
        .ok();
    sync_dir(dir).map_err(|e| OpenError::io("sync directory", dir, e))?;
    Ok(ActiveSegment {
        base,
        file,
        index,
        index_len: 0,
        end_pos: SEGMENT_HEADER_BYTES as u64,
        last_index_pos: 0,
        tindex,
        tindex_len: TIX_HEADER_BYTES as u64,
        ts_max: 0,
        prewritten,
    })
}

/// Whether every byte of `file` from `from` to `len` is zero (read 1 MiB at a time).
fn zero_from(file: &File, from: u64, len: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = from;
    while at < len {
        let n = ((len - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Opens the log directory and recovers it.
pub(crate) fn recover(config: &LogConfig) -> Result<Recovered, OpenError> {
    let dir = &config.dir;
    create_dir_durably(dir)?;
    let lock = lock_dir(dir)?;
    let mut bases =
        segment::list_segments(dir).map_err(|e| OpenError::io("list segments", dir, e))?;
    let mut report = RecoveryReport::default();
    let window = in_flight_window(config);
    let fresh = |base: u64, mut report: RecoveryReport, lock: File| {
        let active = create_segment(dir, base, window)?;
        report.time_index_errors += usize::from(active.tindex.is_none());
        report.segments = 1;
        report.start_offset = base;
        report.next_offset = base;
        Ok(Recovered {
            next_offset: base,
            start_offset: base,
            active,
            report,
            lock,
        })
    };
    if bases.is_empty() {
        return fresh(0, report, lock);
    }
    if let LastSegment::NeverWritten(base) = drop_unwritten_last(dir, &mut bases, &mut report)? {
        return fresh(base, report, lock);
    }
    // Sealed segments: check only their ends (cheap), so that a gap or a damaged last
    // record is reported at start. `ringstash check` verifies every record.
    for (i, w) in bases.windows(2).enumerate() {
        if i + 2 == bases.len() {
            finish_seal(dir, w[0], w[1], config.index_interval_bytes, &mut report)?;
        } else {
            check_sealed_end(dir, w[0], w[1], &mut report)?;
        }
    }
    // Their time indexes, oldest first: each one's keys start from the running maximum
    // at the end of the one before.
    if let Err(e) = timeindex::remove_leftovers(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove leftover *.tix.tmp files");
        report.time_index_errors += 1;
    }
    let mut seed = 0u64;
    for &b in &bases[..bases.len() - 1] {
        seed = sealed_time_index(config, b, seed, &mut report)?;
    }
    let base = *bases.last().expect("non-empty");
    let (mut active, written_with) = recover_active(config, base, seed, &mut report)?;
    if written_with != window {
        // One window per segment: this server's writes go to a segment of their own,
        // so that the next recovery judges a crash by the window of the writer that
        // crashed, and a hole left by an earlier one (already judged, above) is never
        // judged again with a wider window.
        let next = report.next_offset;
        let ts_max = active.ts_max;
        let empty = active.end_pos == SEGMENT_HEADER_BYTES as u64;
        if !empty {
            seal_at_open(dir, active)?;
        } else {
            drop(active);
        }
        active = create_segment(dir, next, window)?;
        active.ts_max = ts_max;
        report.time_index_errors += usize::from(active.tindex.is_none());
        if !empty {
            bases.push(next);
        }
        tracing::info!(
            segment = next,
            was = ?written_with,
            now = ?window,
            "the last segment was written with another in-flight window; writing on in a new segment"
        );
    }
    report.segments = bases.len();
    report.start_offset = bases[0];
    Ok(Recovered {
        next_offset: report.next_offset,
        start_offset: bases[0],
        active,
        report,
        lock,
    })
}

/// Seals the recovered active segment when the writer will not write on in it: its
/// records (recovered from the page cache after a process crash, perhaps never synced),
/// its `.idx` and its `.tix` (both rewritten by the recovery, unsynced) are synced, and
/// the directory (the `.tix` was renamed into place), as a rotation's seal does, so
/// that the segment ends where the next one begins after any later power cut.
fn seal_at_open(dir: &Path, active: ActiveSegment) -> Result<(), OpenError> {
    let path = segment::segment_path(dir, active.base);
    active
        .file
        .sync_data()
        .map_err(|e| OpenError::io("sync segment", &path, e))?;
    let ipath = segment::index_path(dir, active.base);
    active
        .index
        .sync_data()
        .map_err(|e| OpenError::io("sync index", &ipath, e))?;
    if let Some(t) = &active.tindex {
        // Derived data, as everywhere: a failure leaves a time index the next start
        // checks and rebuilds.
        if let Err(e) = t.sync_data() {
            tracing::warn!(base = active.base, error = %e, "could not sync the time index of the segment sealed at start");
        }
    }
    sync_dir(dir).map_err(|e| OpenError::io("sync directory", dir, e))
}

/// What [`drop_unwritten_last`] left as the last segment.
enum LastSegment {
    /// A segment with a valid header: recover it.
    Valid,
    /// The only segment never got its header: start it again at this base.
    NeverWritten(u64),
}

/// A last segment that holds nothing but a short or invalid header (after power loss
/// the file's size can reach the disk before its data, leaving zeros) is a rotation
/// that crashed before the header was synced: it never held a record, so nothing in
/// it was acknowledged. Removes it (and so uses the one before), repeatedly.
fn drop_unwritten_last(
    dir: &Path,
    bases: &mut Vec<u64>,
    report: &mut RecoveryReport,
) -> Result<LastSegment, OpenError> {
    loop {
        let base = *bases.last().expect("non-empty");
        let path = segment::segment_path(dir, base);
        let header_only = std::fs::metadata(&path)
            .map_err(|e| OpenError::io("stat segment", &path, e))?
            .len()
            <= SEGMENT_HEADER_BYTES as u64;
        let corrupt = |reason: String| {
            OpenError::Corrupt(Corruption {
                path: path.clone(),
                position: 0,
                offset: base,
                reason,
            })
        };
        match read_header(&path)? {
            Err(e) if header_only && bases.len() > 1 => {
                tracing::warn!(path = %path.display(), error = %e, "removing segment with incomplete header (crash during rotation)");
                remove_segment(dir, base)?;
                report.removed_segment = Some(path);
                bases.pop();
            }
            Err(_) if header_only => return Ok(LastSegment::NeverWritten(base)),
            Err(e) => return Err(corrupt(e.to_string())),
            Ok(h) if h.base_offset != base => {
                return Err(corrupt(format!(
                    "header says base offset {}, file name says {base}",
                    h.base_offset
                )));
            }
            Ok(_) => return Ok(LastSegment::Valid),
        }
    }
}

/// The segment before the last has its cut (its unused zeros removed at rotation) and
/// its `.idx` synced while the writer goes on in the last (see `wal::writer::rotate`),
/// so a power cut can leave it ending in zeros, and its index as it was before the
/// writer's last start rewrote it (entries at records a torn-tail cut removed, whose
/// places later records took). Finishes that seal: drops index entries past the
/// longest valid prefix (as for the active segment; one small read per entry,
/// counted in `index_entries_dropped`), and if the records end exactly where
/// `next_base` begins with nothing but zeros after them, cuts the zeros
/// (`seal_bytes_cut`); both synced. When its records end exactly at `next_base`,
/// appends the index entries the same scan places after the last one kept, at
/// `interval` by the writer's rule (the writer's own, unless the setting changed or a
/// failed write moved its count) (`index_entries_rebuilt`): without them,
/// every read that starts in that part of the segment would scan to it from the last
/// entry there is, up to the whole segment. Anything else is reported as
/// [`check_sealed_end`] reports it, from the same scan.
fn finish_seal(
    dir: &Path,
    base: u64,
    next_base: u64,
    interval: u32,
    report: &mut RecoveryReport,
) -> Result<(), OpenError> {
    let path = segment::segment_path(dir, base);
    let ipath = segment::index_path(dir, base);
    let (file, len, entries, keep) = open_checking_index(&path, &ipath, base)?;
    if keep < entries.len() {
        OpenOptions::new()
            .write(true)
            .open(&ipath)
            .and_then(|f| {
                f.set_len((keep * INDEX_ENTRY_BYTES) as u64)?;
                f.sync_data()
            })
            .map_err(|e| OpenError::io("cut index", &ipath, e))?;
        tracing::info!(path = %ipath.display(), dropped = entries.len() - keep, "index entries of the segment before the last pointing at no valid record dropped");
        report.index_entries_dropped += entries.len() - keep;
    }
    let (from, pos) = entries[..keep]
        .last()
        .map(|&(r, p)| (base + u64::from(r), u64::from(p)))
        .unwrap_or((base, SEGMENT_HEADER_BYTES as u64));
    // The last kept entry's record is the first scanned; an empty index starts at the
    // first record, which always has an entry (`last_index_pos` 0, as in the writer).
    let last_index_pos = if keep == 0 { 0 } else { pos };
    let indexing = Indexing {
        base,
        last_index_pos,
        interval,
    };
    let (scanned, missing) = scan_to_end_indexing(&path, pos, from, Some(indexing))?;
    if scanned.0 == next_base && !missing.is_empty() {
        let n = missing.len() / INDEX_ENTRY_BYTES;
        // A missing `.idx` reads as empty (retention removes it before its `.log`):
        // made again, with the directory synced so that its entry lasts.
        let existed = ipath.exists();
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&ipath)
            .and_then(|f| {
                f.write_all_at(&missing, (keep * INDEX_ENTRY_BYTES) as u64)?;
                f.sync_data()
            })
            .and_then(|()| if existed { Ok(()) } else { sync_dir(dir) })
            .map_err(|e| OpenError::io("extend index", &ipath, e))?;
        tracing::info!(path = %ipath.display(), entries = n, "index entries appended to the segment before the last, at the configured interval after its last one");
        report.index_entries_rebuilt += n;
    }
    let (end, at, bad) = &scanned;
    if *end != next_base
        || bad.is_none()
        || !zero_from(&file, *at, len).map_err(|e| OpenError::io("read segment", &path, e))?
    {
        report_sealed_end(&path, next_base, scanned, report);
        return Ok(());
    }
    let at = *at;
    file.set_len(at)
        .and_then(|()| file.sync_data())
        .map_err(|e| OpenError::io("cut segment", &path, e))?;
    tracing::info!(path = %path.display(), bytes = len - at, "cut the unwritten (zero) rest a power cut left after the last record of the segment before the last");
    report.seal_bytes_cut = len - at;
    Ok(())
}

/// Checks that sealed segment `base` ends in a valid record right before `next_base`,
/// from its last index entry on; what is wrong goes into `report` (reported, not
/// repaired: the data may still be read up to the damage).
fn check_sealed_end(
    dir: &Path,
    base: u64,
    next_base: u64,
    report: &mut RecoveryReport,
) -> Result<(), OpenError> {
    let path = segment::segment_path(dir, base);
    let entries = segment::read_index(&segment::index_path(dir, base))
        .map_err(|e| OpenError::io("read index", &path, e))?;
    let (from, pos) = entries
        .last()
        .map(|&(r, p)| (base + u64::from(r), u64::from(p)))
        .unwrap_or((base, SEGMENT_HEADER_BYTES as u64));
    let mut scanned = scan_to_end(&path, pos, from)?;
    if matches!(&scanned, (_, at, Some(_)) if *at == pos && pos != SEGMENT_HEADER_BYTES as u64) {
        // The last index entry points at no valid record: the index is damaged, not
        // necessarily the data. Scan the whole segment to find out.
        let p = format!(
            "{}: entry (offset {from}, byte {pos}) points at no valid record",
            segment::index_path(dir, base).display()
        );
        tracing::error!("{p}; readers scan this segment from its start");
        report.sealed_problems.push(p);
        scanned = scan_to_end(&path, SEGMENT_HEADER_BYTES as u64, base)?;
    }
    report_sealed_end(&path, next_base, scanned, report);
    Ok(())
}

/// Reports what is wrong, if anything, with how sealed segment `path` ends, from a
/// [`scan_to_end`] of its last records: damage, or an end other than `next_base`.
fn report_sealed_end(
    path: &Path,
    next_base: u64,
    scanned: (u64, u64, Option<String>),
    report: &mut RecoveryReport,
) {
    let problem = match scanned {
        (end, _, None) if end == next_base => None,
        (end, _, None) => Some(format!(
            "{} ends at offset {end} but the next segment starts at {next_base}",
            path.display()
        )),
        (_, at, Some(reason)) => Some(format!(
            "{} is damaged at byte {at}: {reason}",
            path.display()
        )),
    };
    if let Some(p) = problem {
        tracing::error!("{p}; run `ringstash check` for a full report");
        report.sealed_problems.push(p);
    }
}

/// The running maximum at the end of sealed segment `base`, from its time index if
/// that passes the cheap check ([`timeindex::sealed_end_key`]), else from a rebuild of
/// the index (a read of the whole segment, counted in the report).
fn sealed_time_index(
    config: &LogConfig,
    base: u64,
    seed: u64,
    report: &mut RecoveryReport,
) -> Result<u64, OpenError> {
    let dir = &config.dir;
    let tpath = timeindex::tix_path(dir, base);
    match timeindex::sealed_end_key(dir, base, seed, config.damage_resync_window_bytes) {
        Ok(Some(end)) => return Ok(end),
        Ok(None) => {}
        // Rebuilt below; if the error was the log's, the rebuild meets it too.
        Err(e) => {
            timeindex::warn_and_remove(&tpath, "read", &e);
            report.time_index_errors += 1;
        }
    }
    let why = match timeindex::TixFile::open(&tpath) {
        Ok(Err(e)) => e.to_string(),
        _ => "failing its checks".to_owned(),
    };
    let (built, written) = timeindex::rebuild(
        dir,
        base,
        seed,
        u64::from(config.index_interval_bytes),
        config.damage_resync_window_bytes,
    )
    .map_err(|e| OpenError::io("read segment", segment::segment_path(dir, base), e))?;
    match written {
        Ok(()) => {
            tracing::info!(path = %tpath.display(), why = %why, entries = built.entries, "time index rebuilt");
            report.time_indexes_rebuilt += 1;
        }
        // The scan's running maximum still seeds the next segment's keys.
        Err(e) => {
            timeindex::warn_and_remove(&tpath, "rebuild", &e);
            report.time_index_errors += 1;
        }
    }
    Ok(built.end_key)
}

/// Creates `dir` and any missing parents, syncing each parent that gained an entry, so
/// that a new data directory (and so the first acknowledged records) survives power
/// loss. Does nothing to a directory that exists.
pub(crate) fn create_dir_durably(dir: &Path) -> Result<(), OpenError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_owned());
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| OpenError::io("create data directory", dir, e))?;
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent).map_err(|e| OpenError::io("sync directory", parent, e))?;
    }
    Ok(())
}

fn read_header(path: &Path) -> Result<Result<SegmentHeader, HeaderError>, OpenError> {
    let f = File::open(path).map_err(|e| OpenError::io("open segment", path, e))?;
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    let mut got = 0;
    while got < h.len() {
        let n = f
            .read_at(&mut h[got..], got as u64)
            .map_err(|e| OpenError::io("read segment header", path, e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(format::decode_segment_header(&h[..got]))
}

fn remove_segment(dir: &Path, base: u64) -> Result<(), OpenError> {
    for p in [
        segment::segment_path(dir, base),
        segment::index_path(dir, base),
        timeindex::tix_path(dir, base),
    ] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(OpenError::io("remove segment", &p, e)),
        }
    }
    sync_dir(dir).map_err(|e| OpenError::io("sync directory", dir, e))
}

/// Where a scan of a segment stopped: the offset after its last valid record, the byte
/// it stopped at, and why it stopped there if not at the end of the file.
type ScanEnd = (u64, u64, Option<String>);

/// Scans from (`pos`, `offset`) to the first record that fails; returns the offset and
/// position where valid data ends, and the failure (None for a clean end of file).
fn scan_to_end(path: &Path, pos: u64, offset: u64) -> Result<ScanEnd, OpenError> {
    scan_to_end_indexing(path, pos, offset, None).map(|(end, _)| end)
}

/// Where [`scan_to_end_indexing`] places index entries: segment `base`'s, after an
/// entry at `last_index_pos` (0 for none), every `interval` bytes.
struct Indexing {
    base: u64,
    last_index_pos: u64,
    interval: u32,
}

/// [`scan_to_end`], also returning the index entries (encoded) that the writer's rule
/// (an entry at a record `interval` or more bytes past the last entry's, or at the
/// segment's first) places among the records scanned.
fn scan_to_end_indexing(
    path: &Path,
    pos: u64,
    offset: u64,
    mut indexing: Option<Indexing>,
) -> Result<(ScanEnd, Vec<u8>), OpenError> {
    let mut entries = Vec::new();
    let mut s = Scanner::open(path.to_owned(), pos, offset)
        .map_err(|e| OpenError::io("open segment", path, e))?;
    loop {
        match s
            .next()
            .map_err(|e| OpenError::io("read segment", path, e))?
        {
            Scan::Record { record, position } => {
                if let Some(ix) = indexing.as_mut()
                    && format::index_entry_due(ix.last_index_pos, position, u64::from(ix.interval))
                {
                    entries.extend_from_slice(&format::encode_index_entry(
                        (record.offset - ix.base) as u32,
                        position as u32,
                    ));
                    ix.last_index_pos = position;
                }
            }
            Scan::End => return Ok(((s.next_offset(), s.position(), None), entries)),
            Scan::Bad { position, reason } => {
                return Ok(((s.next_offset(), position, Some(reason)), entries));
            }
        }
    }
}

/// True if a record that passes its checksum and carries `offset` starts at byte `pos`
/// of `file` (whose length is `len`). `frame` is a reusable buffer.
///
/// # Errors
/// The OS error from reading the file.
pub(crate) fn record_at(
    file: &File,
    len: u64,
    pos: u64,
    offset: u64,
    frame: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let header = format::RECORD_HEADER_BYTES as u64;
    if pos.saturating_add(header) > len {
        return Ok(false);
    }
    frame.resize(format::RECORD_HEADER_BYTES, 0);
    file.read_exact_at(frame, pos)?;
    let payload = u64::from(u32::from_le_bytes(
        frame[12..16].try_into().expect("4 bytes"),
    ));
    // Bounded by the file's length, so a damaged length cannot make us allocate more.
    if pos + header + payload > len {
        return Ok(false);
    }
    frame.resize((header + payload) as usize, 0);
    file.read_exact_at(frame, pos)?;
    Ok(matches!(
        format::decode_record(frame, format::RECORD_BYTES_LIMIT),
        format::Decoded::Record(r) if r.offset == offset
    ))
}

/// Recovers the last segment: validates its index, scans from the last good index
/// point, cuts a bad tail, extends the index over the scanned records. Returns it with
/// the in-flight window its header records.
fn recover_active(
    config: &LogConfig,
    base: u64,
    seed: u64,
    report: &mut RecoveryReport,
) -> Result<(ActiveSegment, InFlightWindow), OpenError> {
    let dir = &config.dir;
    let path = segment::segment_path(dir, base);
    let ipath = segment::index_path(dir, base);
    // Valid: `drop_unwritten_last` read it just before.
    let written_with = read_header(&path)?
        .map_err(|e| OpenError::io("read segment header", &path, std::io::Error::other(e)))?
        .window;
    let (file, len, entries, keep) = open_checking_index(&path, &ipath, base)?;
    let read_entries = entries.len();
    report.index_entries_dropped += read_entries - keep;
    // Every record of the active segment is verified, from its first, and its index
    // rebuilt: bit rot before the last index entry would otherwise go unseen until a
    // reader met it, and under a non-durable fsync policy a power loss can keep a later
    // group while losing an earlier one, a hole only a scan from the start finds. The
    // cost is one read of at most `segment_bytes_max` bytes at start.
    if read_entries > keep {
        tracing::info!(
            path = %ipath.display(),
            dropped = read_entries - keep,
            "index entries pointing at no valid record dropped; rebuilding them"
        );
    }

    let tail = scan_tail(config, &path, base, seed, written_with)?;
    report.damaged_ranges = tail.damaged;
    if let Some((position, reason)) = tail.bad {
        debug_assert_eq!(position, tail.pos);
        cut_tail(
            config.recovery,
            &file,
            len,
            &path,
            tail.offset,
            position,
            reason,
            report,
        )?;
    }
    let (index, index_len) = rewrite_index(&ipath, 0, &tail.new_entries)?;
    // The time index is rebuilt whole from the same scan, whatever it held (a missing
    // or older file included): the active segment is read in full anyway.
    let tpath = timeindex::tix_path(dir, base);
    let mut tix = timeindex::encode_header().to_vec();
    tix.extend_from_slice(&tail.new_tix);
    // Derived data: a full disk or a bad file here leaves the segment without a time
    // index (its readers start earlier), never stops the start.
    let tindex = timeindex::write_whole(&tpath, &tix)
        .and_then(|()| OpenOptions::new().write(true).open(&tpath))
        .map_err(|e| {
            timeindex::warn_and_remove(&tpath, "write", &e);
            report.time_index_errors += 1;
        })
        .ok();
    report.next_offset = tail.offset;
    let active = ActiveSegment {
        base,
        file,
        index,
        index_len,
        end_pos: tail.pos,
        last_index_pos: tail.last_index_pos,
        tindex,
        tindex_len: tix.len() as u64,
        ts_max: tail.ts_max,
        prewritten: false,
    };
    Ok((active, written_with))
}

/// Opens segment `base` (at `path`, index at `ipath`) to read and write; returns it,
/// its length, its index entries and how many of them lead a valid prefix
/// ([`valid_index_prefix`]).
#[allow(clippy::type_complexity)] // four results, named in the doc
fn open_checking_index(
    path: &Path,
    ipath: &Path,
    base: u64,
) -> Result<(File, u64, Vec<(u32, u32)>, usize), OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| OpenError::io("open segment", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| OpenError::io("stat segment", path, e))?
        .len();
    let entries = segment::read_index(ipath).map_err(|e| OpenError::io("read index", ipath, e))?;
    let keep = valid_index_prefix(&file, len, base, &entries)
        .map_err(|e| OpenError::io("read segment", path, e))?;
    Ok((file, len, entries, keep))
}

/// How many leading index entries to keep: the longest prefix whose entries ascend
/// and each point at a valid record carrying the entry's offset. The index is written
/// without fdatasync, so after power loss it may be ahead of, or behind, the log; and a
/// damaged entry in the middle would send readers to a wrong position. Checking every
/// entry costs one read per index interval of the active segment, once, at start; the
/// tail scan rebuilds the entries after the kept prefix.
fn valid_index_prefix(
    file: &File,
    len: u64,
    base: u64,
    entries: &[(u32, u32)],
) -> std::io::Result<usize> {
    let mut prev: Option<(u32, u32)> = None;
    let mut frame = Vec::new();
    for (keep, &(r, p)) in entries.iter().enumerate() {
        let ascending = prev.is_none_or(|(pr, pp)| r > pr && p > pp);
        if !ascending
            || u64::from(p) < SEGMENT_HEADER_BYTES as u64
            || !record_at(file, len, u64::from(p), base + u64::from(r), &mut frame)?
        {
            return Ok(keep);
        }
        prev = Some((r, p));
    }
    Ok(entries.len())
}

/// What the scan of the active segment's tail found.
struct Tail {
    /// The offset the next record gets.
    offset: u64,
    /// Where valid data ends.
    pos: u64,
    /// Position of the record the last index entry (kept or new) points at.
    last_index_pos: u64,
    /// Index entries for the scanned records, encoded, to append after the kept ones.
    new_entries: Vec<u8>,
    /// Time-index entries at the same records, encoded.
    new_tix: Vec<u8>,
    /// Running maximum of receive time after the last kept record.
    ts_max: u64,
    /// Where and why the scan stopped before the end of the file: a torn tail.
    bad: Option<(u64, String)>,
    /// Damage with valid records after it, skipped (see [`segment::resync`]).
    damaged: Vec<DamagedRange>,
}

/// Where the rebuilt indexes stood when a damaged range was met.
struct Mark {
    entries: usize,
    tix: usize,
    last_index_pos: u64,
    ts_max: u64,
}

/// [`Tail::bad`]'s reason for zeros with records after them that were in flight at a
/// crash (see [`settle_in_flight_hole`]).
const IN_FLIGHT_HOLE: &str =
    "zeros (space never written) with records after them that were in flight at a crash";

/// Scans the active segment from its first record to its end, adding an index entry
/// every `index_interval_bytes`. A bad record with valid records after it is skipped
/// as a damaged range (refused under `strict`), and the first record after it always
/// gets an index entry, so that a reader asking for an offset past the damage is sent
/// past it; a bad record with none after it ends the scan as the torn tail.
///
/// The offsets of a damaged range are lost for good: the records after it keep their
/// own offsets, the next record gets the last valid record's offset + 1, and the
/// offsets in the range are a gap that readers skip.
fn scan_tail(
    config: &LogConfig,
    path: &Path,
    base: u64,
    seed: u64,
    written_with: InFlightWindow,
) -> Result<Tail, OpenError> {
    let (offset, pos) = (base, SEGMENT_HEADER_BYTES as u64);
    let mut tail = Tail {
        offset,
        pos,
        last_index_pos: 0,
        new_entries: Vec::new(),
        new_tix: Vec::new(),
        ts_max: seed,
        bad: None,
        damaged: Vec::new(),
    };
    let interval = u64::from(config.index_interval_bytes);
    let mut scanner = Scanner::open(path.to_owned(), pos, offset)
        .map_err(|e| OpenError::io("open segment", path, e))?;
    let mut after_damage = false;
    // Where `new_entries`, `new_tix`, `last_index_pos` and `ts_max` stood when each
    // damaged range was met, so that a range found to be a crash's hole can be cut with
    // what follows it.
    let mut marks: Vec<Mark> = Vec::new();
    loop {
        match scanner
            .next()
            .map_err(|e| OpenError::io("read segment", path, e))?
        {
            Scan::Record { record, position } => {
                tail.ts_max = tail.ts_max.max(record.timestamp_ns);
                if after_damage || format::index_entry_due(tail.last_index_pos, position, interval)
                {
                    after_damage = false;
                    tail.new_entries
                        .extend_from_slice(&format::encode_index_entry(
                            (record.offset - base) as u32,
                            position as u32,
                        ));
                    tail.new_tix.extend_from_slice(
                        &TixEntry {
                            key_ns: tail.ts_max,
                            rel_offset: (record.offset - base) as u32,
                            position: position as u32,
                        }
                        .encode(),
                    );
                    tail.last_index_pos = position;
                }
                tail.offset = record.offset + 1;
                tail.pos = position + record.frame_bytes() as u64;
            }
            Scan::End => break,
            Scan::Bad { position, reason } => {
                let skipped = scanner
                    .skip_damage(position, &reason, config.damage_resync_window_bytes)
                    .map_err(|e| OpenError::io("read segment", path, e))?;
                let Some(range) = skipped else {
                    tail.bad = Some((position, reason));
                    break;
                };
                debug_assert_eq!((range.position, range.from_offset), (tail.pos, tail.offset));
                marks.push(Mark {
                    entries: tail.new_entries.len(),
                    tix: tail.new_tix.len(),
                    last_index_pos: tail.last_index_pos,
                    ts_max: tail.ts_max,
                });
                after_damage = true;
                tail.damaged.push(range);
            }
        }
    }
    settle_in_flight_hole(judged_window(written_with, config), &mut tail, &marks);
    if let Some(range) = tail.damaged.first()
        && config.recovery == RecoveryMode::Strict
    {
        return Err(OpenError::Corrupt(Corruption {
            path: path.to_owned(),
            position: range.position,
            offset: range.from_offset,
            reason: format!(
                "{}, with valid records after it from byte {} (offset {}): damage, not a torn tail (recovery = strict)",
                range.reason, range.end_position, range.to_offset
            ),
        }));
    }
    for range in &tail.damaged {
        tracing::error!(
            path = %path.display(),
            position = range.position,
            end_position = range.end_position,
            lost_offsets = %format_args!("{}..{}", range.from_offset, range.to_offset),
            reason = %range.reason,
            "damaged range in the last segment, with valid records after it: not cut; readers skip it"
        );
    }
    Ok(tail)
}

/// Bytes at the end of the active segment that writes in flight at a crash can span:
/// `groups_in_flight_max` groups of at most `group_bytes_max`, each rounded out to
/// whole blocks when written direct.
pub(crate) fn in_flight_bytes_max(config: &LogConfig) -> u64 {
    config.groups_in_flight_max as u64
        * (config.group_bytes_max as u64 + 2 * super::aligned::BLOCK_BYTES as u64)
}

/// The window a writer with `config` records in the headers of the segments it
/// creates.
pub(crate) fn in_flight_window(config: &LogConfig) -> InFlightWindow {
    if config.fsync.is_durable() {
        InFlightWindow::bytes(in_flight_bytes_max(config))
    } else {
        InFlightWindow::Unsynced
    }
}

/// `groups_in_flight_max`'s default before it became 4: what a segment whose header
/// does not record its window is assumed to have been written with, at most.
const NOT_RECORDED_GROUPS_IN_FLIGHT: u64 = 2;

/// How far from the end of a segment written with `recorded` zeros followed by records
/// are a crash's unlanded writes (`None`: anywhere). For a segment that does not record
/// its window, the narrower of `config`'s and the old default's: a window too narrow
/// keeps unacknowledged records after a crash's hole (reported as damage, readers skip
/// the hole); one too wide cuts acknowledged records, which nothing may do.
pub(crate) fn judged_window(recorded: InFlightWindow, config: &LogConfig) -> Option<u64> {
    match recorded {
        InFlightWindow::Bytes(b) => Some(b),
        InFlightWindow::Unsynced => None,
        InFlightWindow::NotRecorded => {
            let old = NOT_RECORDED_GROUPS_IN_FLIGHT
                * (config.group_bytes_max as u64 + 2 * super::aligned::BLOCK_BYTES as u64);
            Some(match in_flight_window(config) {
                InFlightWindow::Bytes(b) => b.min(old),
                _ => old,
            })
        }
    }
}

/// Turns the first damaged range that a crash explains back into the torn tail, cut
/// with everything after it.
///
/// The writer has up to `groups_in_flight_max` groups written concurrently, and a
/// crash (or a power loss, for data not yet synced) can keep a later group's blocks
/// and lose an earlier one's: zeros with valid records after them. Those records were
/// never acknowledged (acknowledgements go in order, after each group's fdatasync), so
/// this is a torn tail, not damage, when the bad frame is zeros and the valid data
/// after it ends within `window` ([`judged_window`] of the window the segment's writer
/// recorded). Under a non-durable fsync policy (`None`) any unsynced group can be lost,
/// so any zeros with records after them are cut, as before. Bytes that are not zeros
/// (bit rot) are damage wherever they lie.
fn settle_in_flight_hole(window: Option<u64>, tail: &mut Tail, marks: &[Mark]) {
    let end = tail.pos;
    let Some(i) = tail.damaged.iter().position(|r| {
        r.reason == format::UNWRITTEN && window.is_none_or(|w| end - r.position <= w)
    }) else {
        return;
    };
    let hole = &tail.damaged[i];
    tail.offset = hole.from_offset;
    tail.pos = hole.position;
    tail.bad = Some((hole.position, IN_FLIGHT_HOLE.to_owned()));
    let m = &marks[i];
    tail.new_entries.truncate(m.entries);
    tail.new_tix.truncate(m.tix);
    tail.last_index_pos = m.last_index_pos;
    tail.ts_max = m.ts_max;
    tail.damaged.truncate(i);
}

/// Cuts the active segment at `position` (record `offset` failed there for `reason`)
/// and syncs the cut, unless `strict` recovery refuses to.
#[allow(clippy::too_many_arguments)] // one cut, described whole: file, place and cause
fn cut_tail(
    recovery: RecoveryMode,
    file: &File,
    len: u64,
    path: &Path,
    offset: u64,
    position: u64,
    reason: String,
    report: &mut RecoveryReport,
) -> Result<(), OpenError> {
    // A pre-written segment (see `spare`) ends in zeros after a crash: its unused
    // rest, not damage. Said apart from a torn record so operators are not alarmed,
    // and not refused under `strict` when every byte to the end is zero.
    let zeros = reason == format::UNWRITTEN;
    if recovery == RecoveryMode::Strict
        && !(zeros
            && zero_from(file, position, len)
                .map_err(|e| OpenError::io("read segment", path, e))?)
    {
        return Err(OpenError::Corrupt(Corruption {
            path: path.to_owned(),
            position,
            offset,
            reason: format!(
                "{reason} (recovery = strict; {} bytes follow)",
                len - position
            ),
        }));
    }
    if zeros {
        tracing::info!(
            path = %path.display(), position, offset, cut_bytes = len - position,
            "cutting the unwritten (zero) rest of the last segment"
        );
    } else {
        tracing::warn!(
            path = %path.display(), position, offset, cut_bytes = len - position, %reason,
            "cutting torn tail of the last segment"
        );
    }
    file.set_len(position)
        .and_then(|()| file.sync_all())
        .map_err(|e| OpenError::io("truncate torn tail", path, e))?;
    report.torn_bytes_cut = len - position;
    report.torn_reason = Some(reason);
    Ok(())
}

/// Opens the active segment's index, keeps its first `kept` entries and appends
/// `new_entries`; returns it with its length in bytes.
fn rewrite_index(ipath: &Path, kept: usize, new_entries: &[u8]) -> Result<(File, u64), OpenError> {
    let mut index = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(ipath)
        .map_err(|e| OpenError::io("open index", ipath, e))?;
    let mut index_len = (kept * INDEX_ENTRY_BYTES) as u64;
    index
        .set_len(index_len)
        .map_err(|e| OpenError::io("truncate index", ipath, e))?;
    if !new_entries.is_empty() {
        index
            .write_all_at(new_entries, index_len)
            .and_then(|()| index.flush())
            .map_err(|e| OpenError::io("write index", ipath, e))?;
        index_len += new_entries.len() as u64;
    }
    Ok((index, index_len))
}
