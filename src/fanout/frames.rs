//! The binary window: recent `format=binary` messages, read once and shared.
//!
//! A binary message is the stored frames of consecutive records behind a 16-byte
//! header (`docs/protocol.md`), so an unfiltered one is the same bytes for every
//! subscriber that asks for the same records. One tail reader builds these messages
//! at the end of the log, on demand, and keeps the recent ones; a subscriber whose
//! cursor stands at a message's start gets that message as a `Bytes` handle (a
//! reference count, not a copy). With N subscribers following the log that is one read
//! and one checksum per record instead of N.
//!
//! Subscribers move from message to message, so once on a boundary they stay on one.
//! A subscriber whose cursor is not on one (it resumed from an offset of its own, or
//! fell below the window's start) reads with its own reader up to the next boundary,
//! or up to the window's start, and joins there. Filtered binary subscribers always
//! read on their own: their messages are theirs alone.

use std::collections::VecDeque;

use tungstenite::Bytes;

use super::query::Filter;
use crate::{
    error::ReadError,
    query::scan,
    wal::{Reader, format::RECORD_HEADER_BYTES},
};

/// A binary message's header: `next` then `committed_end`, u64 little-endian each.
pub const HEADER_BYTES: usize = 16;

/// The `crc32c` and `length` fields of a gap marker: a frame header that no stored
/// record can have (a record's length is at most `RECORD_BYTES_LIMIT`, below this), naming
/// lost offsets instead of a record (`docs/protocol.md`, binary messages).
pub const GAP_MARK: u32 = u32::MAX;

/// Puts a gap marker for each range in `gaps` into a binary message built from
/// `reader` (or makes a message of markers alone if no record was read), each before
/// the first frame past its range, so offsets stay in order: `offset` = the first
/// offset lost, `crc32c` = `length` = [`GAP_MARK`], `timestamp_ns` = the end of the
/// range (exclusive); no payload. Returns the message and its first offset.
pub fn with_gaps(
    built: Option<(Bytes, u64, u64, u64)>,
    gaps: &[crate::wal::DamagedRange],
    next: u64,
    committed_end: u64,
) -> Option<(Bytes, u64, u64, u64)> {
    if gaps.is_empty() {
        return built;
    }
    let (msg, records) = match &built {
        Some((m, _, _, records)) => (m.to_vec(), *records),
        None => {
            let mut m = Vec::with_capacity(HEADER_BYTES);
            m.extend_from_slice(&next.to_le_bytes());
            m.extend_from_slice(&committed_end.max(next).to_le_bytes());
            (m, 0)
        }
    };
    let mut out = Vec::with_capacity(msg.len() + gaps.len() * RECORD_HEADER_BYTES);
    out.extend_from_slice(&msg[..HEADER_BYTES]);
    let mut gaps = gaps.iter().peekable();
    let mut at = HEADER_BYTES;
    while at < msg.len() {
        let offset = u64::from_le_bytes(msg[at..at + 8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(msg[at + 12..at + 16].try_into().expect("4 bytes")) as usize;
        while let Some(g) = gaps.next_if(|g| g.to_offset <= offset) {
            push_gap(&mut out, g);
        }
        out.extend_from_slice(&msg[at..at + RECORD_HEADER_BYTES + len]);
        at += RECORD_HEADER_BYTES + len;
    }
    for g in gaps {
        push_gap(&mut out, g);
    }
    let first = u64::from_le_bytes(
        out[HEADER_BYTES..HEADER_BYTES + 8]
            .try_into()
            .expect("8 bytes"),
    );
    Some((out.into(), first, next, records))
}

fn push_gap(out: &mut Vec<u8>, g: &crate::wal::DamagedRange) {
    out.extend_from_slice(&g.from_offset.to_le_bytes());
    out.extend_from_slice(&GAP_MARK.to_le_bytes());
    out.extend_from_slice(&GAP_MARK.to_le_bytes());
    out.extend_from_slice(&g.to_offset.to_le_bytes());
}

/// One shared message: records `first..next`.
#[derive(Debug)]
struct Shared {
    first: u64,
    next: u64,
    records: u64,
    message: Bytes,
}

/// Recent binary messages, contiguous, bounded in bytes.
#[derive(Debug)]
pub struct FrameWindow {
    msgs: VecDeque<Shared>,
    /// Bytes of `msgs`' messages.
    bytes: usize,
    bytes_max: usize,
    tail: Reader,
}

impl FrameWindow {
    /// A window that begins where `tail` stands.
    pub fn new(tail: Reader, bytes_max: usize) -> Self {
        FrameWindow {
            msgs: VecDeque::new(),
            bytes: 0,
            bytes_max,
            tail,
        }
    }

    /// First offset held (the end while empty).
    pub fn start(&self) -> u64 {
        self.msgs.front().map_or(self.end(), |m| m.first)
    }

    /// Where the next message will start: where the tail reader stands.
    pub fn end(&self) -> u64 {
        self.tail.next_offset()
    }

    /// Bytes of messages held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The shared message for a subscriber at `cursor`: the held message starting
    /// there, or, if `cursor` is the window's end and records are committed past it,
    /// a new one of up to `bytes_max` bytes read at the tail. `None` if the window
    /// cannot serve `cursor` (see [`FrameWindow::stop_for`]) or nothing is committed
    /// past it yet. Returns the message, its `next`, and its record count.
    ///
    /// # Errors
    /// The tail reader's error; the window is then unusable (drop it).
    pub fn serve(
        &mut self,
        cursor: u64,
        committed_end: u64,
        bytes_max: usize,
    ) -> Result<Option<(Bytes, u64, u64)>, ReadError> {
        if cursor == self.end() {
            if cursor >= committed_end || !self.read_one(committed_end, bytes_max)? {
                return Ok(None);
            }
            let m = self.msgs.back().expect("just read");
            return Ok(Some((m.message.clone(), m.next, m.records)));
        }
        if cursor < self.start() || cursor > self.end() {
            return Ok(None);
        }
        let i = self.msgs.partition_point(|m| m.first < cursor);
        Ok(self
            .msgs
            .get(i)
            .filter(|m| m.first == cursor)
            .map(|m| (m.message.clone(), m.next, m.records)))
    }

    /// Where a subscriber at `cursor` that the window cannot serve should stop
    /// reading on its own to join it: the window's start from below it, the next
    /// boundary from between two. `None` from ahead of the window's end.
    pub fn stop_for(&self, cursor: u64) -> Option<u64> {
        if cursor < self.start() {
            return Some(self.start());
        }
        let i = self.msgs.partition_point(|m| m.first <= cursor);
        match self.msgs.get(i) {
            Some(m) => Some(m.first),
            None if cursor < self.end() => Some(self.end()),
            None => None,
        }
    }

    /// Reads one message at the tail; false if nothing was readable.
    fn read_one(&mut self, committed_end: u64, bytes_max: usize) -> Result<bool, ReadError> {
        let end = self.end();
        let Some((message, first, next, records)) = build(
            &mut self.tail,
            &Filter::default(),
            committed_end,
            committed_end,
            bytes_max,
        )?
        else {
            // Nothing readable yet (the tail may have skipped records purged by
            // retention; the next message starts past them).
            return Ok(false);
        };
        if first != end {
            // The tail skipped records purged by retention: what is held no longer
            // joins up with what follows, and is let go.
            assert!(first > end, "the tail reader went backwards");
            self.msgs.clear();
            self.bytes = 0;
        }
        debug_assert_eq!(next, self.end());
        self.bytes += message.len();
        self.msgs.push_back(Shared {
            first,
            next,
            records,
            message,
        });
        // The newest message always stays: it is what the leader was just sent.
        while self.bytes > self.bytes_max && self.msgs.len() > 1 {
            let old = self.msgs.pop_front().expect("non-empty");
            self.bytes -= old.message.len();
        }
        Ok(true)
    }
}

/// Builds a binary message from `reader`: the header (`next`, then `committed_end`),
/// then the stored frames of the records from the reader's position that pass
/// `filter`, up to offset `stop`, `bytes_max` bytes (one frame always fits), or
/// `SCAN_PER_MESSAGE` records scanned. `None` if no record passed; the reader
/// may still have moved (past records the filter refused). Returns the message, the
/// offset of its first record, `next` and the record count.
///
/// # Errors
/// The reader's error.
pub fn build(
    reader: &mut Reader,
    filter: &Filter,
    stop: u64,
    committed_end: u64,
    bytes_max: usize,
) -> Result<Option<(Bytes, u64, u64, u64)>, ReadError> {
    let mut buf = Vec::with_capacity(bytes_max.min(256 << 10) + HEADER_BYTES);
    buf.extend_from_slice(&[0; HEADER_BYTES]);
    let records = read_frames(
        reader,
        filter,
        &mut buf,
        stop,
        bytes_max,
        super::SCAN_PER_MESSAGE as u64,
    )?;
    if records == 0 {
        return Ok(None);
    }
    let first = u64::from_le_bytes(
        buf[HEADER_BYTES..HEADER_BYTES + 8]
            .try_into()
            .expect("8 bytes"),
    );
    let next = reader.next_offset();
    buf[0..8].copy_from_slice(&next.to_le_bytes());
    buf[8..16].copy_from_slice(&committed_end.max(next).to_le_bytes());
    Ok(Some((buf.into(), first, next, records)))
}

/// Appends the stored frames of committed records that pass `filter` to `out`, until
/// the reader reaches `stop`, `out` holds `bytes_max` bytes (one frame always fits), or
/// `scan_max` records were read. For `format=binary` subscribers: nothing rendered,
/// and without a filter one copy per run of frames out of the reader's buffer
/// ([`Reader::next_run`]), not per record; with one, the shared scan
/// ([`scan::read_into`]). Returns the frames appended.
///
/// # Errors
/// The reader's error.
pub fn read_frames(
    reader: &mut Reader,
    filter: &Filter,
    out: &mut Vec<u8>,
    stop: u64,
    bytes_max: usize,
    scan_max: u64,
) -> Result<u64, ReadError> {
    if !filter.is_empty() {
        let mut frames = scan::Frames::new(out);
        scan::read_into(
            reader,
            filter,
            &mut frames,
            stop,
            usize::MAX,
            bytes_max,
            scan_max,
        )?;
        return Ok(scan::Sink::records(&frames) as u64);
    }
    // Every record goes: copy whole runs of frames, not one record at a time.
    let (mut scanned, empty) = (0u64, out.len());
    while out.len() == empty || out.len() < bytes_max && scanned < scan_max {
        let room = bytes_max.saturating_sub(out.len());
        let Some((n, frames)) = reader.next_run(stop, room)? else {
            break;
        };
        out.extend_from_slice(frames);
        scanned += n;
    }
    Ok(scanned)
}
