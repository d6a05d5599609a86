//! The on-disk format: segment header, record frame, index entry.
//!
//! Everything is little-endian. `docs/format.md` repeats this byte by byte.
//!
//! ## Segment header (32 bytes, at position 0 of every `.log` file)
//!
//! | pos | size | field | meaning |
//! |----:|-----:|-------|---------|
//! | 0   | 8    | magic | ASCII `RSTASHLG` |
//! | 8   | 2    | version | format version, currently 1 |
//! | 10  | 2    | flags | reserved, 0 |
//! | 12  | 4    | in_flight_window | what the writer may have had in flight at a crash: KiB, or `u32::MAX` (any unsynced write), 0 = not recorded ([`InFlightWindow`]) |
//! | 16  | 8    | base_offset | offset of the segment's first record |
//! | 24  | 4    | header_crc | CRC32C of bytes 0..24 |
//! | 28  | 4    | reserved | 0 |
//!
//! ## Record frame (24-byte header + payload, no padding)
//!
//! | pos | size | field | meaning |
//! |----:|-----:|-------|---------|
//! | 0   | 8    | offset | the record's offset in the log |
//! | 8   | 4    | crc | CRC32C (Castagnoli) of bytes 12..24+len |
//! | 12  | 4    | len | payload length in bytes |
//! | 16  | 8    | timestamp_ns | receive time, nanoseconds since the Unix epoch |
//! | 24  | len  | payload | the record as received |
//!
//! The checksum does not cover the offset on purpose: producers frame and checksum
//! records on their own cores, and the writer only stamps offsets in. The offset is
//! verified instead by contiguity: a segment's records carry `base_offset`,
//! `base_offset + 1`, ... in file order, so a damaged offset field is a mismatch
//! against the expected value, which readers and recovery check on every record.
//!
//! ## Index entry (8 bytes, in the segment's `.idx` file)
//!
//! | pos | size | field |
//! |----:|-----:|-------|
//! | 0   | 4    | relative offset (record offset - base_offset) |
//! | 4   | 4    | byte position of that record in the `.log` file |

use bytes::{BufMut, Bytes, BytesMut};

/// ASCII magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RSTASHLG";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Size of a record frame's header in bytes (everything before the payload).
pub const RECORD_HEADER_BYTES: usize = 24;
/// Size of one sparse-index entry in bytes.
pub const INDEX_ENTRY_BYTES: usize = 8;
/// The largest payload the format can express; settings are checked against it.
pub const RECORD_BYTES_LIMIT: usize = u32::MAX as usize - RECORD_HEADER_BYTES;

const _: () = assert!(SEGMENT_HEADER_BYTES == 32);
const _: () = assert!(RECORD_HEADER_BYTES == 8 + 4 + 4 + 8);
const _: () = assert!(INDEX_ENTRY_BYTES == 4 + 4);

/// How far from the end of a segment's data the writes its writer had in flight at a
/// crash can reach: within it, zeros followed by valid records are a write that never
/// landed while a later one did (unacknowledged, cut as a torn tail); beyond it, they
/// are damage to acknowledged records (kept, reported).
///
/// Recorded in the segment's header (bytes 12..16) by the writer that wrote it, so that
/// recovery judges a crash by the window of the server that crashed, not by the
/// settings of the one starting: a log written with a small window and opened with a
/// larger one would otherwise have real damage near its end taken for a crash, and the
/// acknowledged records after it cut. A segment is written by one window only: a
/// server whose window differs from its last segment's starts a new segment
/// (`wal::recovery::recover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlightWindow {
    /// Written by a version that did not record it (the field is 0): recovery assumes
    /// the smaller of its own window and the old default's (docs/format.md).
    NotRecorded,
    /// This many bytes under a durable fsync policy: a non-zero multiple of 1 KiB
    /// below 4 TiB (build it with [`InFlightWindow::bytes`]).
    Bytes(u64),
    /// A non-durable fsync policy: any write not yet synced may be lost whatever follows
    /// it, so zeros followed by records anywhere are unacknowledged writes.
    Unsynced,
}

impl InFlightWindow {
    /// The field's value for "any unsynced write".
    const UNSYNCED: u32 = u32::MAX;

    /// At least `bytes`, rounded up to the KiB the header counts in.
    pub fn bytes(bytes: u64) -> Self {
        let kib = bytes.div_ceil(1024);
        assert!(
            kib > 0 && kib < u64::from(Self::UNSYNCED),
            "in-flight window of {bytes} bytes does not fit the header"
        );
        Self::Bytes(kib * 1024)
    }

    fn encode(self) -> u32 {
        match self {
            Self::NotRecorded => 0,
            Self::Bytes(b) => {
                // Built by `bytes`, or decoded: a non-zero multiple of 1 KiB that fits.
                assert!(
                    b > 0 && b % 1024 == 0 && b / 1024 < u64::from(Self::UNSYNCED),
                    "in-flight window of {b} bytes is not a header's"
                );
                (b / 1024) as u32
            }
            Self::Unsynced => Self::UNSYNCED,
        }
    }

    fn decode(v: u32) -> Self {
        match v {
            0 => Self::NotRecorded,
            Self::UNSYNCED => Self::Unsynced,
            kib => Self::Bytes(u64::from(kib) * 1024),
        }
    }
}

/// What a segment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Offset of the segment's first record; must equal the file name.
    pub base_offset: u64,
    /// The window of the writer that wrote the segment.
    pub window: InFlightWindow,
}

/// Encodes the 32-byte header of the segment whose first record is `base_offset`,
/// written by a writer with `window` in flight at most.
pub fn encode_segment_header(
    base_offset: u64,
    window: InFlightWindow,
) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&window.encode().to_le_bytes());
    h[16..24].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than 32 bytes: the file was created but its header never reached the disk.
    #[error("segment header is short ({0} of 32 bytes)")]
    Short(usize),
    /// Not a ringstash segment at all.
    #[error("bad segment magic {0:?}")]
    Magic([u8; 8]),
    /// Written by a newer (or unknown) format version.
    #[error("unsupported segment format version {0}")]
    Version(u16),
    /// The header's own checksum does not match.
    #[error("segment header checksum mismatch")]
    Checksum,
}

/// Decodes and verifies a segment header.
///
/// # Errors
/// A [`HeaderError`] saying which check failed.
pub fn decode_segment_header(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
    if buf.len() < SEGMENT_HEADER_BYTES {
        return Err(HeaderError::Short(buf.len()));
    }
    let magic: [u8; 8] = buf[0..8].try_into().expect("8 bytes");
    if magic != SEGMENT_MAGIC {
        return Err(HeaderError::Magic(magic));
    }
    let version = u16::from_le_bytes([buf[8], buf[9]]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let crc = u32::from_le_bytes(buf[24..28].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&buf[0..24]) {
        return Err(HeaderError::Checksum);
    }
    Ok(SegmentHeader {
        base_offset: u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes")),
        window: InFlightWindow::decode(u32::from_le_bytes(
            buf[12..16].try_into().expect("4 bytes"),
        )),
    })
}

/// A record decoded from a buffer, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's offset in the log.
    pub offset: u64,
    /// Receive time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// The payload as received.
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Bytes the record occupies on disk, header included.
    pub fn frame_bytes(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload.len()
    }
}

/// What lies at a position in a segment: the expected outcome of a decode, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete record whose checksum holds.
    Record(RecordRef<'a>),
    /// The buffer ends before the frame does (`need` bytes are needed in all).
    Incomplete {
        /// Total frame size needed, when the length field could be read.
        need: Option<usize>,
    },
    /// The frame is complete but its checksum or length is wrong: a torn or damaged
    /// record, or the zeros of space never written.
    Invalid {
        /// Human-readable reason, for reports.
        reason: &'static str,
    },
}

/// [`Decoded::Invalid`]'s reason for a record header of 24 zero bytes: space never
/// written (a pre-written segment's rest, or blocks a crash left unwritten), as told
/// apart from a damaged record by recovery and `check`. Never a valid frame: its CRC
/// field would have to equal the CRC-32C of 12 zero bytes, which is not 0.
pub const UNWRITTEN: &str = "zeros (space never written)";

/// Decodes the record frame at the start of `buf`.
///
/// `record_bytes_max` bounds the length field, so that garbage cannot make a reader
/// wait for gigabytes that will never come.
pub fn decode_record(buf: &[u8], record_bytes_max: usize) -> Decoded<'_> {
    if buf.len() < RECORD_HEADER_BYTES {
        return Decoded::Incomplete { need: None };
    }
    let len = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes")) as usize;
    if len > record_bytes_max {
        return Decoded::Invalid {
            reason: "length field exceeds record_bytes_max",
        };
    }
    let total = RECORD_HEADER_BYTES + len;
    if buf.len() < total {
        return Decoded::Incomplete { need: Some(total) };
    }
    let crc = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&buf[12..total]) {
        // Only on the failure path: nothing is added to a valid record's decode.
        let zeros = buf[..RECORD_HEADER_BYTES].iter().all(|&b| b == 0);
        return Decoded::Invalid {
            reason: if zeros {
                UNWRITTEN
            } else {
                "checksum mismatch"
            },
        };
    }
    Decoded::Record(RecordRef {
        offset: u64::from_le_bytes(buf[0..8].try_into().expect("8 bytes")),
        timestamp_ns: u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes")),
        payload: &buf[RECORD_HEADER_BYTES..total],
    })
}

/// Writes the frame of one record (offset still zero) at the end of `out`: the
/// one-frame reference encoding, which [`BatchBuilder`] (the producers' path, three
/// checksums at a time) must match byte for byte.
///
/// The offset is stamped later by the writer with [`stamp_offsets`]; everything the
/// checksum covers is final here, so the checksum is computed on the producer's core.
/// It runs once over the frame as written (length, timestamp, payload are contiguous),
/// not over the 12 header bytes and then the payload: each call of the crate costs
/// about 7 ns before its first byte, a third of a 128-byte record's CRC (an
/// interleaved best-of-30 loop, docs/benchmarks.md: 44.7 against 31.7 ns per record).
pub fn encode_record(out: &mut BytesMut, timestamp_ns: u64, payload: &[u8]) {
    let start = out.len();
    encode_unsummed(out, timestamp_ns, payload);
    let crc = crc32c::crc32c(summed(out, start));
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// [`encode_record`] with the checksum field left 0, for [`BatchBuilder`] to fill.
fn encode_unsummed(out: &mut BytesMut, timestamp_ns: u64, payload: &[u8]) {
    let len =
        u32::try_from(payload.len()).expect("payload length checked against record_bytes_max");
    out.reserve(RECORD_HEADER_BYTES + payload.len());
    out.put_u64_le(0);
    out.put_u32_le(0); // the checksum
    out.put_u32_le(len);
    out.put_u64_le(timestamp_ns);
    out.put_slice(payload);
}

/// The bytes the checksum of the frame at `start` of `frames` covers: from its `len`
/// field to the end of its payload.
fn summed(frames: &[u8], start: usize) -> &[u8] {
    let len = u32::from_le_bytes(frames[start + 12..start + 16].try_into().expect("4 bytes"));
    &frames[start + 12..start + RECORD_HEADER_BYTES + len as usize]
}

/// Fills in the checksums of the frames at `starts` in `frames`.
fn sum_frames(frames: &mut [u8], starts: &[usize]) {
    let crcs = match *starts {
        [a, b, c] => super::crc::crc32c_3(summed(frames, a), summed(frames, b), summed(frames, c)),
        _ => {
            for &at in starts {
                let crc = crc32c::crc32c(summed(frames, at));
                frames[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
            }
            return;
        }
    };
    for (&at, crc) in starts.iter().zip(crcs) {
        frames[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Stamps consecutive offsets, starting at `first`, into the framed records of `frames`,
/// calling `on_record(offset, position)` for each (position relative to `frames`).
///
/// Returns the number of records stamped.
///
/// # Panics
/// If `frames` is not a whole number of well-formed frames: batches are built only by
/// [`BatchBuilder`], so a malformed one is a programming error.
pub fn stamp_offsets(frames: &mut [u8], first: u64, mut on_record: impl FnMut(u64, usize)) -> u64 {
    stamp_offsets_timed(frames, first, |offset, pos, _| on_record(offset, pos))
}

/// [`stamp_offsets`], handing `on_record` each record's receive time as well (the
/// writer keys the time index on it).
pub fn stamp_offsets_timed(
    frames: &mut [u8],
    first: u64,
    mut on_record: impl FnMut(u64, usize, u64),
) -> u64 {
    let mut pos = 0usize;
    let mut n = 0u64;
    while pos < frames.len() {
        assert!(
            frames.len() - pos >= RECORD_HEADER_BYTES,
            "truncated frame in batch"
        );
        frames[pos..pos + 8].copy_from_slice(&(first + n).to_le_bytes());
        let ts = u64::from_le_bytes(frames[pos + 16..pos + 24].try_into().expect("8 bytes"));
        on_record(first + n, pos, ts);
        let len =
            u32::from_le_bytes(frames[pos + 12..pos + 16].try_into().expect("4 bytes")) as usize;
        pos += RECORD_HEADER_BYTES + len;
        n += 1;
    }
    assert_eq!(pos, frames.len(), "frame overruns batch");
    n
}

/// Counts the frames in a batch buffer, checking that each header's length fits and
/// that the frames end exactly at the end of the buffer. Reads only the headers.
///
/// # Errors
/// A description of the first inconsistency.
pub fn count_frames(frames: &[u8]) -> Result<u32, String> {
    let mut pos = 0usize;
    let mut n = 0u32;
    while pos < frames.len() {
        if frames.len() - pos < RECORD_HEADER_BYTES {
            return Err(format!(
                "{} stray bytes after frame {n}",
                frames.len() - pos
            ));
        }
        let len =
            u32::from_le_bytes(frames[pos + 12..pos + 16].try_into().expect("4 bytes")) as usize;
        pos = pos
            .checked_add(RECORD_HEADER_BYTES + len)
            .filter(|&end| end <= frames.len())
            .ok_or_else(|| format!("frame {n} claims {len} bytes past the end of the batch"))?;
        n += 1;
    }
    Ok(n)
}

/// Builds a batch of framed records in one contiguous buffer.
///
/// The buffer is reused between batches: `take` splits the framed bytes off and keeps
/// the spare capacity, so a producer that builds batches of a steady size allocates
/// only when a previous batch's buffer is still held elsewhere (by the writer, or by the
/// fan-out for live subscribers).
#[derive(Debug)]
pub struct BatchBuilder {
    /// Framed records not yet taken.
    buf: BytesMut,
    /// Records in `buf`.
    records: u32,
    /// Capacity to keep in reserve, in bytes.
    capacity_bytes: usize,
    /// Largest payload accepted, in bytes.
    record_bytes_max: usize,
    /// Where the last frames pushed start, their checksums not yet computed: three at
    /// a time is about three times the checksum throughput of one at a time
    /// (`wal::crc`); [`BatchBuilder::take`] computes the rest.
    unsummed: [usize; 2],
    /// How many of `unsummed` are in use.
    unsummed_n: usize,
}

/// A payload too large for the configured `record_bytes_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("record of {len} bytes exceeds record_bytes_max ({max} bytes)")]
pub struct RecordTooLarge {
    /// The payload's length.
    pub len: usize,
    /// The configured maximum.
    pub max: usize,
}

impl BatchBuilder {
    /// A builder that keeps `capacity_bytes` of buffer ready and refuses payloads over
    /// `record_bytes_max`.
    pub fn new(capacity_bytes: usize, record_bytes_max: usize) -> Self {
        assert!(record_bytes_max <= RECORD_BYTES_LIMIT);
        BatchBuilder {
            buf: BytesMut::with_capacity(capacity_bytes),
            records: 0,
            capacity_bytes,
            record_bytes_max,
            unsummed: [0; 2],
            unsummed_n: 0,
        }
    }

    /// Frames one record.
    ///
    /// # Errors
    /// [`RecordTooLarge`] if the payload exceeds `record_bytes_max`; nothing is added.
    pub fn push(&mut self, timestamp_ns: u64, payload: &[u8]) -> Result<(), RecordTooLarge> {
        if payload.len() > self.record_bytes_max {
            return Err(RecordTooLarge {
                len: payload.len(),
                max: self.record_bytes_max,
            });
        }
        let start = self.buf.len();
        encode_unsummed(&mut self.buf, timestamp_ns, payload);
        if self.unsummed_n == 2 {
            let [a, b] = self.unsummed;
            sum_frames(&mut self.buf, &[a, b, start]);
            self.unsummed_n = 0;
        } else {
            self.unsummed[self.unsummed_n] = start;
            self.unsummed_n += 1;
        }
        self.records += 1;
        Ok(())
    }

    /// Records framed and not yet taken.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Bytes framed and not yet taken.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing has been framed since the last take.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Takes the framed records out as one buffer, and the record count.
    ///
    /// The buffer left for the next batch has room for one like this one (and a quarter
    /// more), and at least half of `capacity_bytes`: a batch that outgrew its buffer
    /// was copied whole at each reallocation, over half of a syslog reactor's copying
    /// (its records are nearly three times the bytes read; `docs/benchmarks.md`).
    pub fn take(&mut self) -> (BytesMut, u32) {
        let left = std::mem::take(&mut self.unsummed_n);
        sum_frames(&mut self.buf, &self.unsummed[..left]);
        let frames = self.buf.split();
        let n = std::mem::take(&mut self.records);
        let like_this = frames.len() + frames.len() / 4;
        if self.buf.capacity() < like_this.max(self.capacity_bytes / 2) {
            self.buf.reserve(like_this.max(self.capacity_bytes));
        }
        (frames, n)
    }
}

/// Whether the record at byte `position` gets an index entry (and a time-index entry),
/// the last entry being at `last_index_pos` (0 for none yet in the segment): the
/// segment's first record, then one at least `interval` bytes past the last. One rule
/// for the writer and for every rebuild, so that a rebuilt index is the writer's.
#[inline]
pub fn index_entry_due(last_index_pos: u64, position: u64, interval: u64) -> bool {
    last_index_pos == 0 || position >= last_index_pos + interval
}

/// Encodes an index entry.
pub fn encode_index_entry(relative_offset: u32, position: u32) -> [u8; INDEX_ENTRY_BYTES] {
    let mut e = [0u8; INDEX_ENTRY_BYTES];
    e[0..4].copy_from_slice(&relative_offset.to_le_bytes());
    e[4..8].copy_from_slice(&position.to_le_bytes());
    e
}

/// Decodes an index entry into (relative offset, position).
pub fn decode_index_entry(e: &[u8]) -> (u32, u32) {
    (
        u32::from_le_bytes(e[0..4].try_into().expect("4 bytes")),
        u32::from_le_bytes(e[4..8].try_into().expect("4 bytes")),
    )
}

/// Returns an owned copy of a payload; used where a record leaves the log's buffers.
pub fn payload_bytes(r: &RecordRef<'_>) -> Bytes {
    Bytes::copy_from_slice(r.payload)
}

/// Current time in nanoseconds since the Unix epoch, the records' timestamp.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a batch larger than the builder's starting capacity, the next one is
    /// framed into a buffer already big enough for it: no reallocation copies it.
    #[test]
    fn the_next_batch_has_room_for_one_like_the_last() {
        let mut b = BatchBuilder::new(1024, 4096);
        let payload = [b'x'; 300];
        for _ in 0..20 {
            b.push(1, &payload).unwrap();
        }
        let (frames, n) = b.take();
        assert_eq!((n, frames.len()), (20, 20 * (RECORD_HEADER_BYTES + 300)));
        assert!(b.buf.capacity() >= frames.len() + frames.len() / 4);
        let before = b.buf.as_ptr();
        for _ in 0..20 {
            b.push(1, &payload).unwrap();
        }
        assert_eq!(b.buf.as_ptr(), before, "the second batch was reallocated");
        // Small batches keep the starting capacity's behaviour.
        let mut b = BatchBuilder::new(1024, 4096);
        b.push(1, b"y").unwrap();
        drop(b.take());
        assert!(b.buf.capacity() >= 512);
    }

    /// The frame's checksum is CRC-32C over its length, timestamp and payload, as
    /// docs/format.md says: pinned against a value computed apart from the crate (a
    /// bitwise CRC-32C in Python), so that a faster way of computing it cannot change
    /// what is stored.
    #[test]
    fn the_checksum_covers_length_timestamp_and_payload() {
        let mut out = BytesMut::new();
        out.put_slice(b"xyz"); // a frame need not start aligned
        encode_record(&mut out, 1_700_000_000_000_000_000, b"hello, ringstash");
        let frame = &out[3..];
        assert_eq!(frame.len(), RECORD_HEADER_BYTES + 16);
        assert_eq!(
            u32::from_le_bytes(frame[8..12].try_into().unwrap()),
            0xd016_0937
        );
        assert_eq!(&frame[12..16], &16u32.to_le_bytes());
        assert_eq!(&frame[16..24], &1_700_000_000_000_000_000u64.to_le_bytes());
        match decode_record(frame, 1 << 20) {
            Decoded::Record(r) => assert_eq!(r.payload, b"hello, ringstash"),
            _ => panic!("the frame decodes"),
        }
    }

    #[test]
    fn record_round_trip_and_offset_stamping() {
        let mut b = BatchBuilder::new(1024, 100);
        b.push(7, b"hello").unwrap();
        b.push(8, b"").unwrap();
        b.push(9, b"world!").unwrap();
        assert_eq!(
            b.push(1, &[0u8; 101]),
            Err(RecordTooLarge { len: 101, max: 100 })
        );
        let (mut frames, n) = b.take();
        assert_eq!(n, 3);
        assert_eq!(stamp_offsets(&mut frames, 40, |_, _| {}), 3);
        let mut pos = 0;
        let mut got = vec![];
        while pos < frames.len() {
            match decode_record(&frames[pos..], 100) {
                Decoded::Record(r) => {
                    got.push((r.offset, r.timestamp_ns, r.payload.to_vec()));
                    pos += r.frame_bytes();
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            got,
            vec![
                (40, 7, b"hello".to_vec()),
                (41, 8, vec![]),
                (42, 9, b"world!".to_vec())
            ]
        );
    }

    #[test]
    fn damage_is_detected_and_zeros_are_invalid() {
        let mut b = BatchBuilder::new(64, 100);
        b.push(1, b"abc").unwrap();
        let (frames, _) = b.take();
        for i in 8..frames.len() {
            let mut bad = frames.to_vec();
            bad[i] ^= 0x40;
            assert!(
                !matches!(decode_record(&bad, 100), Decoded::Record(_)),
                "flip at byte {i} went unnoticed"
            );
        }
        for cut in 0..frames.len() {
            assert!(matches!(
                decode_record(&frames[..cut], 100),
                Decoded::Incomplete { .. }
            ));
        }
        assert_eq!(
            decode_record(&[0u8; 64], 100),
            Decoded::Invalid { reason: UNWRITTEN }
        );
        let mut torn = [0u8; 64];
        torn[20] = 1; // in the timestamp field
        assert_eq!(
            decode_record(&torn, 100),
            Decoded::Invalid {
                reason: "checksum mismatch"
            },
            "a header with a non-zero byte is not unwritten space"
        );
    }

    #[test]
    fn a_batch_is_its_records_encoded_one_at_a_time() {
        // Checksums three at a time, and the one or two left at each take.
        let mut b = BatchBuilder::new(64, 1000);
        for n in [0usize, 1, 2, 3, 4, 5, 6, 7, 10, 1, 2] {
            let mut want = BytesMut::new();
            for i in 0..n {
                let p: Vec<u8> = (0..(i * 37 + n) % 300).map(|j| (i + j) as u8).collect();
                b.push(i as u64, &p).unwrap();
                encode_record(&mut want, i as u64, &p);
            }
            let (got, count) = b.take();
            assert_eq!((&got[..], count), (&want[..], n as u32), "{n} records");
        }
    }

    #[test]
    fn segment_header_round_trip() {
        for window in [
            InFlightWindow::bytes(16_810_000),
            InFlightWindow::bytes(1),
            InFlightWindow::Unsynced,
            InFlightWindow::NotRecorded,
        ] {
            let h = encode_segment_header(123_456, window);
            let got = decode_segment_header(&h).unwrap();
            assert_eq!((got.base_offset, got.window), (123_456, window));
        }
        // Rounded up to whole KiB: never narrower than the writer's.
        assert_eq!(
            InFlightWindow::bytes(16_810_000),
            InFlightWindow::Bytes(16_811_008)
        );
        // A header from before the field: zeros there, "not recorded".
        let mut old = [0u8; SEGMENT_HEADER_BYTES];
        old[0..8].copy_from_slice(&SEGMENT_MAGIC);
        old[8..10].copy_from_slice(&1u16.to_le_bytes());
        old[16..24].copy_from_slice(&7u64.to_le_bytes());
        let crc = crc32c::crc32c(&old[0..24]);
        old[24..28].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_segment_header(&old),
            Ok(SegmentHeader {
                base_offset: 7,
                window: InFlightWindow::NotRecorded
            })
        );
        let h = encode_segment_header(123_456, InFlightWindow::bytes(4096));
        let mut bad = h;
        bad[17] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::Checksum));
        assert_eq!(decode_segment_header(&h[..10]), Err(HeaderError::Short(10)));
    }
}
