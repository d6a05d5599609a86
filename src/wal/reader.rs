//! Readers: records in offset order from any offset, across segments.
//!
//! A reader is a cursor: it holds its own file handle and buffer and nothing it does
//! reaches the writer. A *live* reader (from `Log::reader`) never returns a
//! record at or beyond the committed offset, so it never shows data that could still be
//! lost. A *directory* reader ([`Reader::open_dir`], used by `ringstash cat` in another
//! process) returns what is on disk and valid; it stops at a record still being written
//! and picks it up on a later call.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
};

use super::{
    Inner,
    config::DirReadConfig,
    format::{RecordRef, SEGMENT_HEADER_BYTES},
    segment::{self, DamagedRange, Scan, Scanner},
};
use crate::error::{Corruption, ReadError};

/// An owned record, for callers that keep records past the next read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's offset.
    pub offset: u64,
    /// Receive time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// The payload as received.
    pub payload: Vec<u8>,
}

impl From<RecordRef<'_>> for Record {
    fn from(r: RecordRef<'_>) -> Self {
        Record {
            offset: r.offset,
            timestamp_ns: r.timestamp_ns,
            payload: r.payload.to_vec(),
        }
    }
}

#[derive(Debug)]
enum Bound {
    /// In-process: stop at the writer's committed offset.
    Live(Arc<Inner>),
    /// Another process: stop at the first record that is not (yet) valid; wait this
    /// long (`damage_settle_ms`), once per bad record, before taking it as damage while
    /// a server writes the directory (see [`Reader::open_dir_with`]).
    OnDisk { settle_ms: u64 },
}

/// A cursor over the log.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    bound: Bound,
    /// Offset of the next record to return.
    next_offset: u64,
    /// Records below this are skipped (the requested start inside an index interval).
    skip_below: u64,
    /// The open segment, if positioned.
    scanner: Option<Scanner>,
    /// Base offset of the open segment while the scanner sits where a sparse-index entry
    /// pointed and no record has been read there yet: if that position holds no valid
    /// record, the index is damaged (the records may be fine), and the reader scans the
    /// segment from its start instead of reporting the data as corrupt.
    unverified_seek: Option<u64>,
    /// Live readers: the log's truncation epoch when this reader last looked. A failed
    /// write truncates the active segment and the offsets it covered are given to other
    /// records, so bytes the scanner buffered past the committed offset before that may
    /// be stale; a change in the epoch makes the reader drop them.
    truncation_epoch_seen: u64,
    /// The offset at which the scanner's buffer was last dropped and the file read
    /// again because the bytes there did not decode (see `next`).
    reread_at: Option<u64>,
    /// Base offset of the open segment.
    segment_base: u64,
    /// Damaged ranges skipped since the caller last took them (see
    /// [`Reader::take_damaged`]); empty unless the log is damaged.
    damaged: Vec<DamagedRange>,
    /// The offset at which a directory reader last waited `damage_settle_ms` for
    /// writes in flight before taking a bad record as damage.
    settled_at: Option<u64>,
    /// The waits for writes in flight since the caller last took them (see
    /// [`Reader::take_settle_waits`]); one per bad record at most.
    settle_waits: Vec<SettleWait>,
    /// Bytes read at a time while searching past damage (`damage_resync_window_bytes`).
    resync_window_bytes: usize,
    /// Latest receive time among the records `next` and `next_frame` returned (not
    /// `next_run`'s): how far a reader with an `until` has come in time.
    ts_max_seen: u64,
}

/// A directory reader's wait, before taking a bad record in the newest segment as
/// damage, for writes a server may still have in flight: a group written after it may
/// have reached the file first (`groups_in_flight_max`), and the bad bytes are then an
/// earlier group still being written, valid a moment later. A group's write takes
/// well under the default `damage_settle_ms`; a wait is paid only where a bad record
/// has valid ones after it, once per bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleWait {
    /// The segment file.
    pub path: PathBuf,
    /// Byte position of the bad record.
    pub position: u64,
    /// The offset it should have had.
    pub offset: u64,
    /// How long the reader waited, in ms (`damage_settle_ms`).
    pub waited_ms: u64,
}

/// Times a failed write truncated the active segment back since the log opened.
/// Relaxed: called after an Acquire load of committed_end, which makes visible every
/// bump made before the records that load lets the reader read (see
/// `Inner::truncation_epoch`).
fn truncation_epoch(inner: &Inner) -> u64 {
    inner.truncation_epoch.load(Ordering::Relaxed)
}

impl Reader {
    pub(crate) fn open_live(inner: Arc<Inner>, from: u64) -> Result<Reader, ReadError> {
        let start = inner.start_offset.load(Ordering::Acquire);
        let dir = inner.config.dir.clone();
        let truncation_epoch_seen = truncation_epoch(&inner);
        let resync_window_bytes = inner.config.damage_resync_window_bytes;
        Ok(Reader {
            dir,
            bound: Bound::Live(inner),
            next_offset: from.max(start),
            skip_below: from,
            scanner: None,
            unverified_seek: None,
            truncation_epoch_seen,
            reread_at: None,
            segment_base: 0,
            damaged: Vec::new(),
            settled_at: None,
            settle_waits: Vec::new(),
            resync_window_bytes,
            ts_max_seen: 0,
        })
    }

    /// A reader over the log in `dir`, from `from` (or the oldest record if older),
    /// for use outside the server process, with [`DirReadConfig`]'s defaults.
    ///
    /// # Errors
    /// An I/O error listing the directory.
    pub fn open_dir(dir: &Path, from: u64) -> Result<Reader, ReadError> {
        Reader::open_dir_with(dir, from, DirReadConfig::default())
    }

    /// As [`Reader::open_dir`], with the damage bounds of `config` (`cat`'s flags).
    ///
    /// # Errors
    /// An I/O error listing the directory.
    ///
    /// # Panics
    /// If `config` does not pass [`DirReadConfig::validate`] (the caller checks it
    /// once, at start).
    pub fn open_dir_with(
        dir: &Path,
        from: u64,
        config: DirReadConfig,
    ) -> Result<Reader, ReadError> {
        assert!(config.validate().is_ok(), "unchecked {config:?}");
        let bases =
            segment::list_segments(dir).map_err(|e| ReadError::io("list segments", dir, e))?;
        let start = bases.first().copied().unwrap_or(0);
        Ok(Reader {
            dir: dir.to_owned(),
            bound: Bound::OnDisk {
                settle_ms: config.damage_settle_ms,
            },
            next_offset: from.max(start),
            skip_below: from,
            scanner: None,
            unverified_seek: None,
            truncation_epoch_seen: 0,
            reread_at: None,
            segment_base: 0,
            damaged: Vec::new(),
            settled_at: None,
            settle_waits: Vec::new(),
            resync_window_bytes: config.damage_resync_window_bytes,
            ts_max_seen: 0,
        })
    }

    /// Offset of the next record this reader will return.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The latest receive time (ns) among the records [`Reader::next`] and
    /// [`Reader::next_frame`] returned so far; 0 before the first.
    pub fn ts_max_seen(&self) -> u64 {
        self.ts_max_seen
    }

    /// The damaged ranges the reader skipped since the last call, oldest first: bad
    /// frames with valid records after them (see `segment::resync`). Their offsets are
    /// lost; the reader went on with the first valid record after each. Callers show
    /// them as an explicit gap marker, so a reader never passes over lost records
    /// silently. Ranges wholly below the reader's start are not reported.
    pub fn take_damaged(&mut self) -> Vec<DamagedRange> {
        std::mem::take(&mut self.damaged)
    }

    /// The waits for writes in flight this directory reader made since the last call
    /// (see [`SettleWait`]), oldest first; always empty for a live reader, which never
    /// waits. `cat` shows each on stderr, so that the time is never spent unseen.
    pub fn take_settle_waits(&mut self) -> Vec<SettleWait> {
        std::mem::take(&mut self.settle_waits)
    }

    /// Opens the segment holding `self.next_offset`, positioned by its sparse index.
    /// Leaves `scanner` empty if there is no such segment yet.
    fn position(&mut self) -> Result<(), ReadError> {
        let bases = segment::list_segments(&self.dir)
            .map_err(|e| ReadError::io("list segments", &self.dir, e))?;
        let Some(i) = bases.iter().rposition(|&b| b <= self.next_offset) else {
            // Older than the oldest segment (purged): start at the oldest.
            if let Some(&first) = bases.first() {
                self.next_offset = first;
                return self.open_at(first, SEGMENT_HEADER_BYTES as u64, first);
            }
            return Ok(());
        };
        let base = bases[i];
        let entries = segment::read_index(&segment::index_path(&self.dir, base))
            .map_err(|e| ReadError::io("read index", segment::index_path(&self.dir, base), e))?;
        let (off, pos) = segment::seek_point(&entries, base, self.next_offset);
        self.open_at(base, pos, off)?;
        if pos != SEGMENT_HEADER_BYTES as u64 {
            self.unverified_seek = Some(base);
        }
        Ok(())
    }

    fn open_at(&mut self, base: u64, pos: u64, offset: u64) -> Result<(), ReadError> {
        let path = segment::segment_path(&self.dir, base);
        let mut s = Scanner::open(path.clone(), pos, offset)
            .map_err(|e| ReadError::io("open segment", &path, e))?;
        if let Bound::Live(inner) = &self.bound {
            s = s.with_memory(inner.clone(), base);
        }
        self.next_offset = offset;
        self.scanner = Some(s);
        self.segment_base = base;
        self.unverified_seek = None;
        Ok(())
    }

    /// The next record, or `None` when the reader has caught up (call again later to
    /// follow the log).
    ///
    /// # Errors
    /// An I/O error, or [`ReadError::Corrupt`] when a record that must be valid (it is
    /// committed, or a later segment exists) fails its checks.
    // Not an Iterator: the record borrows the reader's buffer (a lending iterator).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<RecordRef<'_>>, ReadError> {
        Ok(self.next_frame()?.map(|(record, _)| record))
    }

    /// The next committed records, as one run of whole frames exactly as stored (see
    /// `docs/format.md`), checksums verified: at least one record, none at or past
    /// `stop` (as with `next_frame`, one past it if the reader skips records below its
    /// start), and at most `bytes_max` bytes after the first. `None` when the reader
    /// has caught up. Returns the number of records and their frames.
    ///
    /// For consumers that forward frames (binary subscribers): a run costs one bound
    /// check and at most one read, where [`Reader::next_frame`] costs them per record.
    /// Anything unusual (a segment's end, a bad record, a seek still unverified, the
    /// writer truncating after a failed write) goes through `next_frame`, one record at a time.
    ///
    /// # Errors
    /// As [`Reader::next`].
    pub fn next_run(
        &mut self,
        stop: u64,
        bytes_max: usize,
    ) -> Result<Option<(u64, &[u8])>, ReadError> {
        if self.next_offset >= stop {
            return Ok(None);
        }
        if let (Bound::Live(inner), Some(s)) = (&self.bound, self.scanner.as_mut())
            && self.unverified_seek.is_none()
            && self.next_offset >= self.skip_below
        {
            let end = inner.committed_end.load(Ordering::Acquire).min(stop);
            let pos = inner.active_written.load(Ordering::Acquire);
            let base = inner.active_base.load(Ordering::Relaxed);
            if truncation_epoch(inner) == self.truncation_epoch_seen && self.next_offset < end {
                debug_assert_eq!(s.next_offset(), self.next_offset);
                s.set_limit((base == self.segment_base).then_some(pos));
                let n = match s.next_run(end, bytes_max) {
                    Ok(n) => n,
                    Err(e) => return Err(ReadError::io("read segment", s.path(), e)),
                };
                if n > 0 {
                    self.next_offset += n;
                    self.reread_at = None;
                    let s = self.scanner.as_ref().expect("positioned");
                    return Ok(Some((n, s.last_run())));
                }
            }
        }
        Ok(self.next_frame()?.map(|(_, frame)| (1, frame)))
    }

    /// Like [`Reader::next`], with the record's whole frame as stored in the segment
    /// (see `docs/format.md`), checksum already verified.
    ///
    /// # Errors
    /// As [`Reader::next`].
    pub fn next_frame(&mut self) -> Result<Option<(RecordRef<'_>, &[u8])>, ReadError> {
        loop {
            let (committed_end, written) = self.observe_writer();
            if committed_end.is_some_and(|end| self.next_offset >= end) {
                return Ok(None);
            }
            if self.scanner.is_none() {
                self.position()?;
                if self.scanner.is_none() {
                    return Ok(None);
                }
            }
            let s = self.scanner.as_mut().expect("positioned");
            // In the active segment, read no further than the committed records; sealed
            // segments end at their last record.
            s.set_limit(written.and_then(|(base, pos)| (base == self.segment_base).then_some(pos)));
            let scanned = s.next().map(|scan| match scan {
                Scan::Record { record, .. } => Ok(record.offset),
                Scan::End => Err(None),
                Scan::Bad { position, reason } => Err(Some((position, reason))),
            });
            let outcome = match scanned {
                Ok(outcome) => outcome,
                Err(e) => return Err(ReadError::io("read segment", s.path(), e)),
            };
            match outcome {
                Ok(offset) => {
                    self.unverified_seek = None;
                    self.reread_at = None;
                    self.next_offset = offset + 1;
                    if offset < self.skip_below {
                        continue;
                    }
                    let s = self.scanner.as_ref().expect("positioned");
                    self.ts_max_seen = self.ts_max_seen.max(s.last_frame().0.timestamp_ns);
                    // Decode again from the scanner's buffer to hand out a borrow tied to
                    // &mut self; the scanner moved past it, so step back once.
                    return Ok(Some(
                        self.scanner.as_ref().expect("positioned").last_frame(),
                    ));
                }
                Err(bad) => match self.stopped(bad, committed_end.is_some())? {
                    Stopped::ReadOn => continue,
                    Stopped::CaughtUp => return Ok(None),
                },
            }
        }
    }

    /// Whether the bad record this directory reader just met in segment `path` may be
    /// a write still in flight, not yet waited for: the segment is the newest, and a
    /// server holds the directory's lock. Never for a live reader, which reads only
    /// committed records.
    fn may_be_in_flight(&self, path: &Path) -> Result<bool, ReadError> {
        if matches!(self.bound, Bound::Live(_)) || self.settled_at == Some(self.next_offset) {
            return Ok(false);
        }
        Ok(self.is_newest(path)? && writer_holds_lock(&self.dir))
    }

    /// Whether `path` is the directory's newest segment.
    fn is_newest(&self, path: &Path) -> Result<bool, ReadError> {
        Ok(segment::list_segments(&self.dir)
            .map_err(|e| ReadError::io("list segments", &self.dir, e))?
            .last()
            .is_some_and(|&b| segment::segment_path(&self.dir, b) == path))
    }

    /// Whether `range`, met by a reader of files on disk in segment `path`, is zeros
    /// that a crash left before records still in flight: the segment is the newest, no
    /// server holds the directory (none will write them), and the valid data after the
    /// zeros ends within the in-flight window the segment's header records
    /// (`recovery::judged_window`, with the default settings for a segment that records
    /// none, as `check` does). Recovery cuts such a hole with what follows it.
    fn is_crash_hole(&self, path: &Path, range: &DamagedRange) -> Result<bool, ReadError> {
        if !matches!(self.bound, Bound::OnDisk { .. })
            || range.reason != super::format::UNWRITTEN
            || writer_holds_lock(&self.dir)
        {
            return Ok(false);
        }
        if !self.is_newest(path)? {
            return Ok(false);
        }
        let io = |e| ReadError::io("read segment", path, e);
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        std::os::unix::fs::FileExt::read_exact_at(
            &std::fs::File::open(path).map_err(io)?,
            &mut header,
            0,
        )
        .map_err(io)?;
        let Ok(h) = super::format::decode_segment_header(&header) else {
            return Ok(false);
        };
        let Some(window) = super::recovery::judged_window(h.window, &super::LogConfig::new(""))
        else {
            return Ok(true);
        };
        // Where the valid data after the zeros ends; more damage after it is damage
        // (recovery would judge by the data's real end, farther).
        let mut s =
            Scanner::open(path.to_owned(), range.end_position, range.to_offset).map_err(io)?;
        loop {
            match s.next().map_err(io)? {
                Scan::Record { record, position } => {
                    let end = position + record.frame_bytes() as u64;
                    if end - range.position > window {
                        return Ok(false);
                    }
                }
                Scan::End => return Ok(true),
                Scan::Bad { position, reason } => {
                    let more = s
                        .find_damage(position, &reason, self.resync_window_bytes)
                        .map_err(io)?;
                    return Ok(more.is_none());
                }
            }
        }
    }

    /// A live reader's view of the writer: the committed end, and the active segment's
    /// base and written position. Notices a truncation (a new epoch) on the way and
    /// makes the scanner read again what lies past its position. `(None, None)` for a
    /// reader of files on disk.
    fn observe_writer(&mut self) -> (Option<u64>, Option<(u64, u64)>) {
        let Bound::Live(inner) = &self.bound else {
            return (None, None);
        };
        let end = inner.committed_end.load(Ordering::Acquire);
        // After the end: covers every committed record in the active segment; the base
        // is the written position's (stored before it).
        let pos = inner.active_written.load(Ordering::Acquire);
        let written = (inner.active_base.load(Ordering::Relaxed), pos);
        // Loaded after the committed end: a rewrite committed by then was preceded by
        // its epoch bump, made visible by the Acquire above.
        let epoch = truncation_epoch(inner);
        if epoch != self.truncation_epoch_seen {
            self.truncation_epoch_seen = epoch;
            if let Some(s) = self.scanner.as_mut() {
                // Everything before the scanner's position is committed and was already
                // returned; what lies beyond is read again.
                s.forget_tail();
            }
        }
        (Some(end), Some(written))
    }

    /// The scan stopped before a record (`bad`: where and why, None at the end of the
    /// file): decides whether that is a stale buffer, a bad index entry, the end of a
    /// segment, the end of what is written, or damage (`live`: the reader follows the
    /// writer, so every record below the committed end must exist).
    fn stopped(&mut self, bad: Option<(u64, String)>, live: bool) -> Result<Stopped, ReadError> {
        let path = self.scanner.as_ref().expect("positioned").path().to_owned();
        // The scanner may have buffered bytes past the data written at the time: the
        // zeros of a pre-written segment (see `spare`), which the writer has since
        // overwritten with committed records. Read the file again once before
        // concluding anything.
        if self.reread_at != Some(self.next_offset) {
            self.reread_at = Some(self.next_offset);
            self.scanner.as_mut().expect("positioned").forget_tail();
            return Ok(Stopped::ReadOn);
        }
        if let Some(base) = self.unverified_seek.take() {
            tracing::warn!(
                path = %path.display(),
                offset = self.next_offset,
                "sparse index entry points at no valid record; scanning the segment from its start"
            );
            self.open_at(base, SEGMENT_HEADER_BYTES as u64, base)?;
            return Ok(Stopped::ReadOn);
        }
        // A bad record with valid records after it (within what may be read) is damage:
        // skip it, and keep the range for the caller's marker.
        if let Some((position, reason)) = &bad {
            let s = self.scanner.as_mut().expect("positioned");
            let found = s
                .find_damage(*position, reason, self.resync_window_bytes)
                .map_err(|e| ReadError::io("read segment", &path, e))?;
            if let Bound::OnDisk { settle_ms } = self.bound
                && found.is_some()
                && self.may_be_in_flight(&path)?
            {
                // A reader of another process's files may see a later group's bytes
                // before an earlier group's (the writer has several in flight): let
                // the writes settle once, then look again.
                self.settled_at = Some(self.next_offset);
                self.settle_waits.push(SettleWait {
                    path: path.clone(),
                    position: *position,
                    offset: self.next_offset,
                    waited_ms: settle_ms,
                });
                std::thread::sleep(std::time::Duration::from_millis(settle_ms));
                self.scanner.as_mut().expect("positioned").forget_tail();
                return Ok(Stopped::ReadOn);
            }
            if let Some(range) = &found
                && self.is_crash_hole(&path, range)?
            {
                // As recovery and `check` judge it: unacknowledged writes past a
                // crash's hole, cut at the next start. The log ends here.
                return Ok(Stopped::CaughtUp);
            }
            if let Some(range) = found {
                self.scanner.as_mut().expect("positioned").skip(&range);
                tracing::warn!(%range, "reader skipping a damaged range");
                self.next_offset = range.to_offset;
                self.reread_at = None;
                if let Bound::Live(inner) = &self.bound {
                    // Relaxed: a figure for /stats, ordered with nothing.
                    inner
                        .stats
                        .damaged_ranges_skipped
                        .fetch_add(1, Ordering::Relaxed);
                }
                if range.to_offset > self.skip_below {
                    self.damaged.push(range);
                }
                return Ok(Stopped::ReadOn);
            }
        }
        // End of this segment's valid data: move on if the next segment starts right
        // here.
        let next_path = segment::segment_path(&self.dir, self.next_offset);
        if next_path.exists() && next_path != path {
            self.open_at(
                self.next_offset,
                SEGMENT_HEADER_BYTES as u64,
                self.next_offset,
            )?;
            return Ok(Stopped::ReadOn);
        }
        let later_segment = segment::list_segments(&self.dir)
            .map_err(|e| ReadError::io("list segments", &self.dir, e))?
            .into_iter()
            .any(|b| b > self.next_offset);
        if live || later_segment {
            let (position, reason) = bad.unwrap_or((
                self.scanner.as_ref().map_or(0, |s| s.position()),
                "segment ends before the next segment begins".into(),
            ));
            return Err(ReadError::Corrupt(Corruption {
                path,
                position,
                offset: self.next_offset,
                reason,
            }));
        }
        // Caught up with what is on disk; re-read the file next time.
        self.scanner.as_mut().expect("positioned").forget_tail();
        Ok(Stopped::CaughtUp)
    }
}

/// True if a process holds the exclusive lock on `dir/.lock` (a server or `append`
/// writing the log): a shared lock cannot be taken. Probed, and let go at once.
fn writer_holds_lock(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(dir.join(".lock")) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; closing it releases the lock.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

/// What [`Reader::stopped`] decided.
enum Stopped {
    /// Positioned anew (or to re-read): scan again.
    ReadOn,
    /// Nothing more on disk for now.
    CaughtUp,
}
