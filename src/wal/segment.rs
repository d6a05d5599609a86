//! Segment files: naming, listing, the sparse index, and a buffered record scanner.
//!
//! A segment is `DIR/<base offset, 20 digits>.log`; its sparse index is the `.idx`
//! file of the same name. The scanner is shared by recovery, readers and `check`, so
//! all three apply the same checks to every record: length bound, checksum, and the
//! offset being exactly the one expected next.

use std::{
    fs::File,
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::Inner;
use super::format::{
    self, Decoded, INDEX_ENTRY_BYTES, RECORD_HEADER_BYTES, RecordRef, SEGMENT_HEADER_BYTES,
};

/// Digits in a segment file name: enough for any u64.
const NAME_DIGITS: usize = 20;

/// Path of the segment whose first record is `base`.
pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:0NAME_DIGITS$}.log"))
}

/// Syncs a directory so that entries created or removed in it survive power loss.
///
/// # Errors
/// The OS error from opening or syncing the directory.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Path of the sparse index of the segment whose first record is `base`.
pub fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:0NAME_DIGITS$}.idx"))
}

/// Base offsets of the segments in `dir`, ascending. Files that do not look like
/// segments are ignored.
///
/// # Errors
/// The OS error from reading the directory.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        if stem.len() == NAME_DIGITS
            && stem.bytes().all(|b| b.is_ascii_digit())
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Reads a sparse index: (relative offset, position) pairs in file order. A trailing
/// partial entry (a torn index write) is ignored; a missing file is an empty index.
///
/// # Errors
/// The OS error from reading the file.
pub fn read_index(path: &Path) -> io::Result<Vec<(u32, u32)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(bytes
        .chunks_exact(INDEX_ENTRY_BYTES)
        .map(format::decode_index_entry)
        .collect())
}

/// The index entry to start from when looking for `offset`: the last entry whose
/// offset is at or before it, as (offset, position); the segment's first record
/// otherwise. Entries must be ascending (recovery makes them so).
pub fn seek_point(entries: &[(u32, u32)], base: u64, offset: u64) -> (u64, u64) {
    let rel = offset.saturating_sub(base);
    let i = entries.partition_point(|&(r, _)| u64::from(r) <= rel);
    if i == 0 {
        (base, SEGMENT_HEADER_BYTES as u64)
    } else {
        let (r, p) = entries[i - 1];
        (base + u64::from(r), u64::from(p))
    }
}

/// What the scanner found at its position.
#[derive(Debug)]
pub enum Scan<'a> {
    /// A valid record with the expected offset, at `position`.
    Record {
        /// The record.
        record: RecordRef<'a>,
        /// Its byte position in the segment file.
        position: u64,
    },
    /// The file ends exactly at a record boundary.
    End,
    /// The bytes at `position` are not a valid next record: a torn tail, a damaged
    /// record, or zeros. `reason` says which check failed.
    Bad {
        /// Byte position of the bad frame.
        position: u64,
        /// What the check found.
        reason: String,
    },
}

/// Reads records sequentially from one segment file through a reusable buffer.
///
/// Lengths are bounded by the format's limit and by the file's size, not by the
/// current `record_bytes_max`: lowering that setting must never make older, valid
/// records look damaged.
#[derive(Debug)]
pub struct Scanner {
    /// The open segment.
    file: File,
    /// Its path, for error messages.
    path: PathBuf,
    /// Position of the next record in the file.
    pos: u64,
    /// Offset the next record must carry.
    next_offset: u64,
    /// Read buffer; grows only up to one maximal record.
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_file_pos: u64,
    /// Bytes of `buf` holding file data.
    buf_len: usize,
    /// The record the last `next` returned, while it is still in `buf`: its position,
    /// offset, timestamp and payload length, already verified, so that handing it out
    /// again (see [`Scanner::last_frame`]) does not compute its checksum a second time.
    last: Option<LastRecord>,
    /// The run of frames the last `next_run` returned, as `buf` indices, while still
    /// in `buf`.
    last_run: Option<(usize, usize)>,
    /// Bytes at and past this file position are not read (see [`Scanner::set_limit`]).
    limit: Option<u64>,
    /// A live reader's log and this segment's base: bytes the log still holds in memory
    /// (see `recent`) are copied from there instead of read from the file.
    memory: Option<(Arc<Inner>, u64)>,
}

/// What [`Scanner::next`] verified of the record it returned last.
#[derive(Debug, Clone, Copy)]
struct LastRecord {
    position: u64,
    offset: u64,
    timestamp_ns: u64,
    payload_len: usize,
}

/// Default read buffer size: large enough that a scan issues few system calls.
const SCAN_BUFFER_BYTES: usize = 256 * 1024;

impl Scanner {
    /// Opens `path` for scanning from byte `pos`, where the record with offset
    /// `next_offset` must start.
    ///
    /// # Errors
    /// The OS error from opening the file.
    pub fn open(path: PathBuf, pos: u64, next_offset: u64) -> io::Result<Self> {
        let file = File::open(&path)?;
        Ok(Scanner {
            file,
            path,
            pos,
            next_offset,
            buf: vec![0; SCAN_BUFFER_BYTES],
            buf_file_pos: pos,
            buf_len: 0,
            last: None,
            last_run: None,
            limit: None,
            memory: None,
        })
    }

    /// Reads bytes the log holds in memory from there (a live reader of segment
    /// `base` of the open log).
    pub(crate) fn with_memory(mut self, inner: Arc<Inner>, base: u64) -> Self {
        self.memory = Some((inner, base));
        self
    }

    /// Reads stop at file position `limit` (none: at the end of the file). A live
    /// reader sets it to where the committed records end in the active segment.
    pub fn set_limit(&mut self, limit: Option<u64>) {
        self.limit = limit;
    }

    /// The segment's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Position of the next record.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Offset the next record must carry.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Makes at least `need` bytes from `self.pos` available in the buffer if the file
    /// has them; returns how many are available.
    fn fill(&mut self, mut need: usize) -> io::Result<usize> {
        self.last = None;
        self.last_run = None;
        let start = (self.pos - self.buf_file_pos) as usize;
        let avail = self.buf_len.saturating_sub(start);
        if avail >= need {
            return Ok(avail);
        }
        // Slide the unread bytes to the front, grow if one record needs more, then read.
        self.buf.copy_within(start..start + avail, 0);
        self.buf_file_pos = self.pos;
        self.buf_len = avail;
        if self.buf.len() < need {
            // Grow only for a frame the file can actually hold, so that a damaged length
            // field cannot make us allocate gigabytes.
            if self.pos + need as u64 > self.file.metadata()?.len() {
                need = self.buf.len();
            } else {
                self.buf.resize(need, 0);
            }
        }
        while self.buf_len < need {
            let at = self.buf_file_pos + self.buf_len as u64;
            let room = self.buf.len() - self.buf_len;
            let room = self
                .limit
                .map_or(room, |l| room.min(l.saturating_sub(at) as usize));
            if room == 0 {
                break;
            }
            let dst = &mut self.buf[self.buf_len..self.buf_len + room];
            let n = match &self.memory {
                Some((inner, base)) => match inner.recent.read_at(*base, at, dst) {
                    0 => {
                        let n = self.file.read_at(dst, at)?;
                        inner
                            .recent
                            .bytes_from_files
                            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        n
                    }
                    n => n,
                },
                None => self.file.read_at(dst, at)?,
            };
            if n == 0 {
                break;
            }
            self.buf_len += n;
        }
        Ok(self.buf_len)
    }

    /// Decodes the record at the current position and, if valid, moves past it.
    ///
    /// # Errors
    /// The OS error from reading the file. Bad data is a [`Scan::Bad`], not an error.
    // Not an Iterator: the record borrows the scanner's buffer (a lending iterator).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> io::Result<Scan<'_>> {
        self.last_run = None;
        let avail = self.fill(RECORD_HEADER_BYTES)?;
        if avail == 0 {
            return Ok(Scan::End);
        }
        let mut need = RECORD_HEADER_BYTES;
        loop {
            let start = (self.pos - self.buf_file_pos) as usize;
            let decoded =
                format::decode_record(&self.buf[start..self.buf_len], format::RECORD_BYTES_LIMIT);
            match decoded {
                Decoded::Incomplete { need: Some(n) } if n > need => {
                    need = n;
                    if self.fill(n)? < n {
                        return Ok(Scan::Bad {
                            position: self.pos,
                            reason: format!("incomplete record: file ends inside a {n}-byte frame"),
                        });
                    }
                }
                Decoded::Incomplete { .. } => {
                    return Ok(Scan::Bad {
                        position: self.pos,
                        reason: "incomplete record header at end of file".into(),
                    });
                }
                Decoded::Invalid { reason } => {
                    return Ok(Scan::Bad {
                        position: self.pos,
                        reason: reason.into(),
                    });
                }
                Decoded::Record(r) => {
                    if r.offset != self.next_offset {
                        return Ok(Scan::Bad {
                            position: self.pos,
                            reason: format!(
                                "offset {} where {} was expected",
                                r.offset, self.next_offset
                            ),
                        });
                    }
                    let position = self.pos;
                    self.last = Some(LastRecord {
                        position,
                        offset: r.offset,
                        timestamp_ns: r.timestamp_ns,
                        payload_len: r.payload.len(),
                    });
                    self.pos += r.frame_bytes() as u64;
                    self.next_offset += 1;
                    // Re-borrow from the buffer so the result's lifetime is tied to self.
                    let start = (position - self.buf_file_pos) as usize;
                    let payload_start = start + RECORD_HEADER_BYTES;
                    let payload = &self.buf[payload_start..payload_start + r.payload.len()];
                    return Ok(Scan::Record {
                        record: RecordRef {
                            offset: r.offset,
                            timestamp_ns: r.timestamp_ns,
                            payload,
                        },
                        position,
                    });
                }
            }
        }
    }

    /// The record the last call to `next` returned, with its whole frame as stored
    /// (header and payload), for callers that forward frames without re-encoding them.
    ///
    /// # Panics
    /// If the last call did not return a record.
    pub fn last_frame(&self) -> (RecordRef<'_>, &[u8]) {
        let last = self
            .last
            .expect("last_frame after a call that returned no record");
        // `fill` clears `last` before it moves or replaces buffered bytes, so the frame
        // `next` verified is still where it was.
        let start = (last.position - self.buf_file_pos) as usize;
        let frame = &self.buf[start..start + RECORD_HEADER_BYTES + last.payload_len];
        debug_assert_eq!(frame[0..8], last.offset.to_le_bytes());
        let record = RecordRef {
            offset: last.offset,
            timestamp_ns: last.timestamp_ns,
            payload: &frame[RECORD_HEADER_BYTES..],
        };
        (record, frame)
    }

    /// Moves past the longest run of valid, consecutive records from the current
    /// position that is already buffered or fits in the buffer after one read, ending
    /// before offset `stop` and, after its first record, within `bytes_max` bytes.
    /// Returns how many records the run holds; [`Scanner::last_run`] has their frames.
    ///
    /// Each record gets the same checks as in [`Scanner::next`]. The run ends silently
    /// at the first record that fails one, or is incomplete: zero records means "use
    /// `next`", which reports why (or grows the buffer for a large record).
    ///
    /// # Errors
    /// The OS error from reading the file.
    pub fn next_run(&mut self, stop: u64, bytes_max: usize) -> io::Result<u64> {
        let want = bytes_max.clamp(RECORD_HEADER_BYTES, self.buf.len());
        self.fill(want)?;
        let start = (self.pos - self.buf_file_pos) as usize;
        let (mut end, mut n) = (start, 0u64);
        while self.next_offset + n < stop {
            match format::decode_record(&self.buf[end..self.buf_len], format::RECORD_BYTES_LIMIT) {
                Decoded::Record(r) if r.offset == self.next_offset + n => {
                    let frame = r.frame_bytes();
                    if n > 0 && end - start + frame > bytes_max {
                        break;
                    }
                    end += frame;
                    n += 1;
                }
                _ => break,
            }
        }
        self.pos += (end - start) as u64;
        self.next_offset += n;
        self.last_run = Some((start, end));
        Ok(n)
    }

    /// The frames of the run the last call to `next_run` moved past, as stored.
    ///
    /// # Panics
    /// If the buffer changed since (another call).
    pub fn last_run(&self) -> &[u8] {
        let (start, end) = self
            .last_run
            .expect("last_run after a call other than next_run");
        &self.buf[start..end]
    }

    /// Forgets buffered bytes past the current position, so that the next call reads
    /// the file again (used when following a file that is still being written).
    pub fn forget_tail(&mut self) {
        self.last = None;
        self.last_run = None;
        self.buf_file_pos = self.pos;
        self.buf_len = 0;
    }
}

/// Where valid records resume after damage: the first record found, at or after byte
/// `bad + 1` and before `end`, that passes its checksum and carries a plausible offset
/// (see below), as (position, offset). `None` if there is none: the damage runs to
/// `end`, as a torn tail does.
///
/// Why this tells damage from a torn tail: the writer only ever appends, so a crash can
/// leave bytes that fail their checks only at the end of what was written. Valid
/// records after a bad one were written (and, under a durable policy, acknowledged)
/// after it; the bad one was damaged in place.
///
/// Plausible means greater than `expected` (the offset the bad record should have had)
/// and no greater than `expected` plus the number of 24-byte frame headers that fit
/// between `bad` and the candidate, plus one: every lost record took at least a
/// header's worth of bytes. With the CRC-32C this makes a false match in random bytes
/// vanishingly rare, and it lets the search skip zeros and most garbage without
/// computing a checksum. The search is bounded by `end` (at most one segment,
/// `segment_bytes_max`), read through a window of `window_bytes`
/// (`damage_resync_window_bytes`, or what is left to `end` if less). A candidate
/// record is read whole into a buffer of its own, so the window need only hold a
/// frame header.
///
/// # Errors
/// The OS error from reading the file.
///
/// # Panics
/// If `window_bytes` cannot hold a frame header (the settings' check keeps it at
/// least a page).
pub fn resync(
    file: &File,
    bad: u64,
    end: u64,
    expected: u64,
    window_bytes: usize,
) -> io::Result<Option<(u64, u64)>> {
    assert!(
        window_bytes >= RECORD_HEADER_BYTES,
        "resync window {window_bytes} below a frame header"
    );
    let header = RECORD_HEADER_BYTES as u64;
    // No larger than the bytes the search may read.
    let mut window = vec![
        0u8;
        window_bytes
            .min(end.saturating_sub(bad) as usize)
            .max(RECORD_HEADER_BYTES)
    ];
    let mut frame = Vec::new();
    // File position of window[0], and bytes of it holding file data.
    let (mut wpos, mut wlen) = (0u64, 0usize);
    let mut pos = bad + 1;
    while pos + header <= end {
        if pos + header > wpos + wlen as u64 {
            wpos = pos;
            wlen = ((end - pos) as usize).min(window.len());
            file.read_exact_at(&mut window[..wlen], wpos)?;
        }
        let at = (pos - wpos) as usize;
        let h = &window[at..at + RECORD_HEADER_BYTES];
        let offset = u64::from_le_bytes(h[0..8].try_into().expect("8 bytes"));
        let len = u64::from(u32::from_le_bytes(h[12..16].try_into().expect("4 bytes")));
        if offset == 0 {
            // No frame starts where its 8 offset bytes are zero (offsets past `expected`
            // are not 0), nor within 7 bytes before the next non-zero byte: skip runs of
            // zeros (a pre-written segment's unused rest) without looking at each byte.
            let wend = wpos + wlen as u64;
            let next = window[at + 8..wlen]
                .iter()
                .position(|&b| b != 0)
                .map_or(wend, |i| pos + 8 + i as u64);
            pos = (pos + 1).max(next.saturating_sub(7));
            continue;
        }
        let lost_max = (pos - bad) / header + 1;
        if offset > expected && offset - expected <= lost_max && pos + header + len <= end {
            frame.resize((header + len) as usize, 0);
            file.read_exact_at(&mut frame, pos)?;
            if matches!(
                format::decode_record(&frame, format::RECORD_BYTES_LIMIT),
                Decoded::Record(r) if r.offset == offset
            ) {
                return Ok(Some((pos, offset)));
            }
        }
        pos += 1;
    }
    Ok(None)
}

/// A range of a segment that failed its checks with valid records after it (see
/// [`resync`]): damage, not a torn tail. Its records are lost; the records after it
/// keep their offsets, so the range is a gap in the offsets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DamagedRange {
    /// The segment file.
    pub path: PathBuf,
    /// Byte position of the first bad frame.
    pub position: u64,
    /// Byte position of the first valid record after it.
    pub end_position: u64,
    /// Offset the first bad frame should have had: the first offset lost.
    pub from_offset: u64,
    /// Offset of the first valid record after the damage: the lost offsets are
    /// `from_offset..to_offset`.
    pub to_offset: u64,
    /// What the check of the first bad frame found.
    pub reason: String,
}

impl std::fmt::Display for DamagedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: damaged at byte {} ({}); bytes {}..{} and offsets {}..{} lost, valid records resume at offset {}",
            self.path.display(),
            self.position,
            self.reason,
            self.position,
            self.end_position,
            self.from_offset,
            self.to_offset,
            self.to_offset
        )
    }
}

impl Scanner {
    /// After a [`Scan::Bad`] at `bad`: where valid records resume (see [`resync`])
    /// before the scanner's limit or the end of the file, as the damaged range to
    /// skip; the scanner does not move. `window_bytes` is `damage_resync_window_bytes`.
    ///
    /// # Errors
    /// The OS error from reading the file.
    pub fn find_damage(
        &self,
        bad: u64,
        reason: &str,
        window_bytes: usize,
    ) -> io::Result<Option<DamagedRange>> {
        let len = self.file.metadata()?.len();
        let end = self.limit.map_or(len, |l| l.min(len));
        let Some((position, offset)) =
            resync(&self.file, bad, end, self.next_offset, window_bytes)?
        else {
            return Ok(None);
        };
        Ok(Some(DamagedRange {
            path: self.path.clone(),
            position: bad,
            end_position: position,
            from_offset: self.next_offset,
            to_offset: offset,
            reason: reason.to_owned(),
        }))
    }

    /// Moves past `range` (from [`Scanner::find_damage`]), to the first valid record
    /// after it.
    pub fn skip(&mut self, range: &DamagedRange) {
        debug_assert_eq!(range.from_offset, self.next_offset);
        self.pos = range.end_position;
        self.next_offset = range.to_offset;
        self.forget_tail();
    }

    /// [`Scanner::find_damage`], then [`Scanner::skip`] past what it found.
    ///
    /// # Errors
    /// The OS error from reading the file.
    pub fn skip_damage(
        &mut self,
        bad: u64,
        reason: &str,
        window_bytes: usize,
    ) -> io::Result<Option<DamagedRange>> {
        let range = self.find_damage(bad, reason, window_bytes)?;
        if let Some(r) = &range {
            self.skip(r);
        }
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    /// A segment file of `n` records (offsets 0..n, payloads of 40 bytes) in `dir`;
    /// returns the path and each record's position.
    fn segment_of(dir: &Path, n: u64) -> (PathBuf, Vec<u64>) {
        let mut frames = BytesMut::new();
        for i in 0..n {
            format::encode_record(&mut frames, i, format!("{i:040}").as_bytes());
        }
        let mut positions = Vec::new();
        let header = SEGMENT_HEADER_BYTES as u64;
        format::stamp_offsets(&mut frames, 0, |_, pos| positions.push(header + pos as u64));
        let mut bytes =
            format::encode_segment_header(0, format::InFlightWindow::NotRecorded).to_vec();
        bytes.extend_from_slice(&frames);
        let path = segment_path(dir, 0);
        std::fs::write(&path, bytes).unwrap();
        (path, positions)
    }

    /// Damage longer than several windows is crossed window by window: the smallest
    /// window the settings allow finds the same record as the default one, and so
    /// does a window that holds no more than a frame header.
    #[test]
    fn resync_crosses_damage_longer_than_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let (path, positions) = segment_of(dir.path(), 1000);
        // Records 100..400 (64 bytes each: 19,200 bytes, over four 4 KiB windows)
        // overwritten with garbage.
        let (bad, good) = (positions[100], positions[400]);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        f.write_all_at(&vec![0x5a; (good - bad) as usize], bad)
            .unwrap();
        let end = f.metadata().unwrap().len();
        for window in [1 << 20, 4096, RECORD_HEADER_BYTES, 100] {
            assert_eq!(
                resync(&f, bad, end, 100, window).unwrap(),
                Some((good, 400)),
                "window {window}"
            );
        }
        // Zeros instead (a pre-written segment's look) are skipped the same way.
        f.write_all_at(&vec![0; (good - bad) as usize], bad)
            .unwrap();
        assert_eq!(resync(&f, bad, end, 100, 4096).unwrap(), Some((good, 400)));
        // Nothing valid after the damage: none, whatever the window.
        assert_eq!(resync(&f, bad, good, 100, 4096).unwrap(), None);
    }
}
