//! The sparse time index (`.tix`): where in the log a receive time is, by binary search.
//!
//! Receive times (`timestamp_ns`) are stamped by producers on their own cores before
//! their batches reach the writer, so in log order they are only nearly monotonic. The
//! index therefore keys each entry on the **running maximum** of receive time in log
//! order, up to and including the entry's record: monotonic by construction, and never
//! below the receive time of any record at or before the entry. So every record with
//! `timestamp_ns >= since` lies after the last entry whose key is below `since`:
//! seeking there and filtering each record on its own time is exact.
//!
//! The running maximum is carried across segments (a segment's keys start from the
//! previous segment's end), so keys ascend over the whole log and the segment that
//! holds a time is found by a binary search over segments too.
//!
//! ## File (`DIR/<base>.tix`, beside `<base>.idx`)
//!
//! A 16-byte header, then 16-byte entries, little-endian:
//!
//! | pos | size | field |
//! |----:|-----:|-------|
//! | 0   | 8    | magic, ASCII `RSTASHTX` |
//! | 8   | 2    | version, `1` |
//! | 10  | 6    | reserved, written 0 |
//!
//! | pos | size | field |
//! |----:|-----:|-------|
//! | 0   | 8    | key: running maximum of `timestamp_ns` up to this record |
//! | 8   | 4    | relative offset of the record (offset - base_offset) |
//! | 12  | 4    | byte position of the record's frame in the `.log` file |
//!
//! Entries are written at the same records as the `.idx` entries. Like `.idx` it is a
//! hint: not synced per group, repaired or rebuilt by recovery, checked by `check`.

use std::{fs::File, io, os::unix::fs::FileExt, path::Path, path::PathBuf};

use super::{
    format::{self, SEGMENT_HEADER_BYTES},
    segment::{self, Scan, Scanner},
};

/// ASCII magic at the start of every `.tix` file.
pub const TIX_MAGIC: [u8; 8] = *b"RSTASHTX";
/// The `.tix` format version this code writes; any other is rebuilt at open.
pub const TIX_VERSION: u16 = 1;
/// Bytes of the `.tix` header.
pub const TIX_HEADER_BYTES: usize = 16;
/// Bytes of one `.tix` entry.
pub const TIX_ENTRY_BYTES: usize = 16;

const _: () = assert!(TIX_HEADER_BYTES == 8 + 2 + 6);
const _: () = assert!(TIX_ENTRY_BYTES == 8 + 4 + 4);

/// Path of the time index of the segment whose first record is `base`.
pub fn tix_path(dir: &Path, base: u64) -> PathBuf {
    let mut p = segment::index_path(dir, base);
    p.set_extension("tix");
    p
}

/// The 16-byte header.
pub fn encode_header() -> [u8; TIX_HEADER_BYTES] {
    let mut h = [0u8; TIX_HEADER_BYTES];
    h[0..8].copy_from_slice(&TIX_MAGIC);
    h[8..10].copy_from_slice(&TIX_VERSION.to_le_bytes());
    h
}

/// One entry of the time index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TixEntry {
    /// Running maximum of receive time (ns) in log order, up to this record.
    pub key_ns: u64,
    /// The record's offset minus the segment's base.
    pub rel_offset: u32,
    /// The record's byte position in the `.log` file.
    pub position: u32,
}

impl TixEntry {
    /// The 16 bytes of the entry.
    pub fn encode(&self) -> [u8; TIX_ENTRY_BYTES] {
        let mut e = [0u8; TIX_ENTRY_BYTES];
        e[0..8].copy_from_slice(&self.key_ns.to_le_bytes());
        e[8..12].copy_from_slice(&self.rel_offset.to_le_bytes());
        e[12..16].copy_from_slice(&self.position.to_le_bytes());
        e
    }

    /// Decodes 16 bytes.
    pub fn decode(e: &[u8]) -> Self {
        TixEntry {
            key_ns: u64::from_le_bytes(e[0..8].try_into().expect("8 bytes")),
            rel_offset: u32::from_le_bytes(e[8..12].try_into().expect("4 bytes")),
            position: u32::from_le_bytes(e[12..16].try_into().expect("4 bytes")),
        }
    }
}

/// Why a `.tix` file cannot be used as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TixError {
    /// No file (a segment written before time indexes existed, or a removed file).
    #[error("missing")]
    Missing,
    /// Shorter than its header, or a bad magic.
    #[error("bad header")]
    Header,
    /// Another format version.
    #[error("format version {0}, not {TIX_VERSION}")]
    Version(u16),
    /// No entries at all.
    #[error("no entries")]
    Empty,
}

/// An open `.tix` file, read by probes (one `pread` of 16 bytes each).
#[derive(Debug)]
pub struct TixFile {
    file: File,
    /// Whole entries in the file when it was opened.
    entries: u64,
    /// Entries read so far (for tests that show the search is a binary search).
    pub probes: u64,
}

impl TixFile {
    /// Opens `path` and checks its header.
    ///
    /// # Errors
    /// `Ok(Err(_))` for a file that cannot be used (missing, bad header, other version,
    /// no entries); `Err` for an I/O error other than a missing file.
    pub fn open(path: &Path) -> io::Result<Result<TixFile, TixError>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(TixError::Missing)),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let len = meta.len();
        let mut h = [0u8; TIX_HEADER_BYTES];
        // Something other than a file in its place (a directory opens too) is as
        // unusable as a bad header.
        if !meta.is_file() || len < TIX_HEADER_BYTES as u64 {
            return Ok(Err(TixError::Header));
        }
        file.read_exact_at(&mut h, 0)?;
        if h[0..8] != TIX_MAGIC {
            return Ok(Err(TixError::Header));
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != TIX_VERSION {
            return Ok(Err(TixError::Version(version)));
        }
        // A trailing partial entry (a torn write) is ignored, as in `.idx`.
        let entries = (len - TIX_HEADER_BYTES as u64) / TIX_ENTRY_BYTES as u64;
        if entries == 0 {
            return Ok(Err(TixError::Empty));
        }
        Ok(Ok(TixFile {
            file,
            entries,
            probes: 0,
        }))
    }

    /// Entries in the file.
    pub fn len(&self) -> u64 {
        self.entries
    }

    /// Never true: an empty file is refused by `open`.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Entry `i` (< `len`).
    ///
    /// # Errors
    /// The OS error from reading the file.
    pub fn entry(&mut self, i: u64) -> io::Result<TixEntry> {
        debug_assert!(i < self.entries);
        let mut e = [0u8; TIX_ENTRY_BYTES];
        self.file
            .read_exact_at(&mut e, TIX_HEADER_BYTES as u64 + i * TIX_ENTRY_BYTES as u64)?;
        self.probes += 1;
        Ok(TixEntry::decode(&e))
    }

    /// Every entry, in file order.
    ///
    /// # Errors
    /// The OS error from reading the file.
    pub fn all(&self) -> io::Result<Vec<TixEntry>> {
        let mut bytes = vec![0u8; self.entries as usize * TIX_ENTRY_BYTES];
        self.file
            .read_exact_at(&mut bytes, TIX_HEADER_BYTES as u64)?;
        Ok(bytes
            .chunks_exact(TIX_ENTRY_BYTES)
            .map(TixEntry::decode)
            .collect())
    }

    /// The last entry whose key is below `ts`, by binary search: `None` if the first
    /// entry's key is not below it.
    ///
    /// # Errors
    /// The OS error from reading the file.
    pub fn last_below(&mut self, ts: u64) -> io::Result<Option<TixEntry>> {
        // Invariant: entries before `lo` are below `ts`, entries at or after `hi` not.
        let (mut lo, mut hi) = (0u64, self.entries);
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.entry(mid)?;
            if e.key_ns < ts {
                found = Some(e);
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(found)
    }
}

/// Where a read of the records received at or after `since_ns` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSeek {
    /// Offset to read from: every record before it was received before `since_ns`.
    pub offset: u64,
    /// Index entries read to find it (segments probed and entries within one).
    pub probes: u64,
}

/// Finds where records received at or after `since_ns` start in the log in `dir`:
/// a binary search over the segments (on each one's first entry), then over the
/// entries of the one segment, as the last entry whose key is below `since_ns`. Every
/// record before that entry has a receive time below its key, so below `since_ns`.
///
/// A segment whose `.tix` cannot be used (missing in a directory that no server has
/// opened since, damaged, or holding only its header, as the newest segment does until
/// its first entries are written) costs precision, not correctness: the search takes
/// it as starting at or after `since` and goes on among the segments before it, so the
/// read starts earlier (at worst at the oldest record) and the caller's per-record
/// filter does the rest. `None` if the directory holds no segment.
///
/// # Errors
/// The OS error from listing the directory (an index that cannot be read is treated as
/// missing).
pub fn seek(dir: &Path, since_ns: u64) -> io::Result<Option<TimeSeek>> {
    let bases = segment::list_segments(dir)?;
    let Some(&oldest) = bases.first() else {
        return Ok(None);
    };
    let mut probes = 0u64;
    // First entry of segment i, if its index is usable (and the segment still there).
    let first = |base: u64, probes: &mut u64| -> io::Result<Option<(TixFile, TixEntry)>> {
        // An index that cannot be read (an I/O error, or something other than a file
        // in its place) is as unusable as a missing one: it never fails a read.
        let Ok(Ok(mut f)) = TixFile::open(&tix_path(dir, base)) else {
            return Ok(None);
        };
        let Ok(e) = f.entry(0) else {
            return Ok(None);
        };
        *probes += 1;
        Ok(Some((f, e)))
    };
    // Binary search for the last segment whose first key is below `since_ns`.
    // Invariant: segments before `lo` start below it, segments at or after `hi` not.
    let (mut lo, mut hi) = (0usize, bases.len());
    let mut chosen: Option<(usize, TixFile)> = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let Some((f, e)) = first(bases[mid], &mut probes)? else {
            // Not searchable (no index, a damaged one, or a header-only one: the new
            // last segment before its first entries are written): taken as starting
            // at or after `since`. Safe whatever it holds: the search goes on among
            // the segments before it, and a start in one of those is before
            // everything in this one.
            hi = mid;
            continue;
        };
        if e.key_ns < since_ns {
            chosen = Some((mid, f));
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let Some((i, mut f)) = chosen else {
        // Every segment starts at or after `since_ns`: read from the oldest record.
        return Ok(Some(TimeSeek {
            offset: oldest,
            probes,
        }));
    };
    let base = bases[i];
    // An unreadable entry: the segment's base is still a safe start.
    let e = f.last_below(since_ns).unwrap_or(None);
    // Its first entry was counted above.
    probes += f.probes.saturating_sub(1);
    let offset = e.map_or(base, |e| base + u64::from(e.rel_offset));
    Ok(Some(TimeSeek { offset, probes }))
}

/// What a scan of a segment gives to build its time index.
#[derive(Debug, Default)]
pub(crate) struct Built {
    /// The running maximum after the segment's last record.
    pub(crate) end_key: u64,
    /// Entries rebuilt.
    pub(crate) entries: usize,
}

/// Rebuilds the `.tix` of segment `base` from a scan of the whole segment (skipping
/// damaged ranges), with `seed` the running maximum before its first record, an entry
/// at each record that `.idx` would index (`interval` bytes apart, and the first
/// record after damage). The file is written whole and synced
/// ([`write_whole_durably`]). Damage is
/// searched past through a window of `window_bytes` (`damage_resync_window_bytes`).
///
/// Returns what was built with the outcome of writing the index: a failed write still
/// gives the scan's running maximum, which the next segment's keys start from.
///
/// # Errors
/// The OS error from reading the segment.
pub(crate) fn rebuild(
    dir: &Path,
    base: u64,
    seed: u64,
    interval: u64,
    window_bytes: usize,
) -> io::Result<(Built, io::Result<()>)> {
    let path = segment::segment_path(dir, base);
    let mut s = Scanner::open(path, SEGMENT_HEADER_BYTES as u64, base)?;
    let mut out = encode_header().to_vec();
    let mut key = seed;
    let mut last_pos = 0u64;
    let mut after_damage = false;
    let mut built = Built::default();
    loop {
        match s.next()? {
            Scan::Record { record, position } => {
                key = key.max(record.timestamp_ns);
                if after_damage || format::index_entry_due(last_pos, position, interval) {
                    after_damage = false;
                    out.extend_from_slice(
                        &TixEntry {
                            key_ns: key,
                            rel_offset: (record.offset - base) as u32,
                            position: position as u32,
                        }
                        .encode(),
                    );
                    last_pos = position;
                    built.entries += 1;
                }
            }
            Scan::End => break,
            Scan::Bad { position, reason } => {
                if s.skip_damage(position, &reason, window_bytes)?.is_none() {
                    break;
                }
                after_damage = true;
            }
        }
    }
    built.end_key = key;
    let written = write_whole_durably(dir, &tix_path(dir, base), &out);
    Ok((built, written))
}

/// After an I/O error on the `.tix` at `path` (`what` the operation): logs a warning
/// and removes the file and any temporary one beside it, where possible, so that the
/// next open rebuilds it and no reader trusts a half-written one. The caller counts the
/// error (`time_index_errors_total`).
pub(crate) fn warn_and_remove(path: &Path, what: &str, e: &io::Error) {
    tracing::warn!(path = %path.display(), error = %e, "time index {what} failed; carrying on without it (time reads of this segment start earlier; rebuilt at the next start)");
    let _ = std::fs::remove_file(path);
    let mut tmp = path.to_owned();
    tmp.set_extension("tix.tmp");
    let _ = std::fs::remove_file(tmp);
}

/// Removes `*.tix.tmp` files a crash left during a rebuild (called at open, before
/// anything is rebuilt).
///
/// # Errors
/// The OS error from listing the directory or removing a file.
pub(crate) fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".tix.tmp") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Writes a whole `.tix` under a temporary name and renames it into place, so that a
/// crash never leaves a half-written one where a whole one stood (not synced: a lost
/// or older file is rebuilt at the next open).
///
/// # Errors
/// The OS error from writing or renaming.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_whole_in(path, bytes, None)
}

/// [`write_whole`], then the file and the directory synced: for a sealed segment's
/// `.tix` (see [`rebuild`]), which nothing syncs later. Not synced, a rebuild after a
/// power cut could itself be lost to the next one, and `check` would then find that
/// segment's `.tix` damaged once it is no longer among the last two (the power-cut
/// soak found exactly that).
///
/// # Errors
/// The OS error from writing, syncing or renaming.
fn write_whole_durably(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_whole_in(path, bytes, Some(dir))
}

/// Both of the above: the temporary file synced before the rename, and `dir` after
/// it, when `sync_dir_of` is given.
fn write_whole_in(path: &Path, bytes: &[u8], sync_dir_of: Option<&Path>) -> io::Result<()> {
    let mut tmp = path.to_owned();
    tmp.set_extension("tix.tmp");
    let f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut &f, bytes)?;
    if sync_dir_of.is_some() {
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    match sync_dir_of {
        Some(dir) => segment::sync_dir(dir),
        None => Ok(()),
    }
}

/// The running maximum at the end of sealed segment `base`, from its `.tix` (last
/// entry, checked against the record it names) and a scan of the records after that
/// entry; `None` if the `.tix` cannot be used that way (rebuild it). The cheap check
/// recovery makes of each sealed segment at open; `check` verifies every entry.
/// Damage is searched past as in [`rebuild`].
///
/// # Errors
/// The OS error from reading the files.
pub(crate) fn sealed_end_key(
    dir: &Path,
    base: u64,
    seed: u64,
    window_bytes: usize,
) -> io::Result<Option<u64>> {
    let mut f = match TixFile::open(&tix_path(dir, base))? {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    let first = f.entry(0)?;
    let last = f.entry(f.len() - 1)?;
    if first.rel_offset != 0
        || u64::from(first.position) != SEGMENT_HEADER_BYTES as u64
        || first.key_ns < seed
        || last.key_ns < first.key_ns
    {
        return Ok(None);
    }
    let path = segment::segment_path(dir, base);
    let mut s = Scanner::open(
        path,
        u64::from(last.position),
        base + u64::from(last.rel_offset),
    )?;
    let mut key = last.key_ns;
    let mut first_record = true;
    loop {
        match s.next()? {
            Scan::Record { record, .. } => {
                if first_record && record.timestamp_ns > last.key_ns {
                    // The key is below its own record's time: not this index's entry.
                    return Ok(None);
                }
                first_record = false;
                key = key.max(record.timestamp_ns);
            }
            Scan::End => break,
            Scan::Bad { position, reason } => {
                if first_record {
                    return Ok(None);
                }
                if s.skip_damage(position, &reason, window_bytes)?.is_none() {
                    break;
                }
            }
        }
    }
    if first_record {
        return Ok(None);
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let e = TixEntry {
            key_ns: 1_765_000_000_123_456_789,
            rel_offset: 77,
            position: 4096,
        };
        let b = e.encode();
        assert_eq!(&b[0..8], &e.key_ns.to_le_bytes());
        assert_eq!(TixEntry::decode(&b), e);
        let h = encode_header();
        assert_eq!(&h[0..8], b"RSTASHTX");
        assert_eq!(u16::from_le_bytes([h[8], h[9]]), 1);
    }
}
