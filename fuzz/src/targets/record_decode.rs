//! `record_decode`: the on-disk decoders over arbitrary bytes, as recovery, `check` and
//! the readers meet them in a damaged or foreign file: record frames
//! ([`format::decode_record`]), segment headers, batch frame counts and index entries.

use bytes::BytesMut;
use ringstash::wal::format::{
    self, Decoded, INDEX_ENTRY_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, UNWRITTEN,
};

/// Parameter: `record_bytes_max`, 0..=65535 (two bytes, little-endian). Then the bytes
/// of a segment (its header, then frames), as read from a file.
///
/// Asserts: a decoded record lies within the buffer, within the bound, and encodes
/// back to exactly the bytes it was decoded from; `Incomplete` asks for more than the
/// buffer holds and no more than a frame at the bound; `Invalid` says `UNWRITTEN` only
/// for a header of zeros; a header that decodes has the magic, version and base
/// offset it was decoded as; `count_frames`
/// agrees with a walk by the length fields; index entries round-trip.
pub fn record_decode(data: &[u8]) {
    let ([a, b], buf) = crate::params::<2>(data);
    let record_bytes_max = usize::from(u16::from_le_bytes([a, b]));

    if let Ok(header) = format::decode_segment_header(buf) {
        // Only magic, version, the in-flight window and the base offset carry meaning:
        // the flags (10..12, under the CRC) and the reserved tail (28..32, outside it)
        // are not required to be 0 by the decoder (found by this target;
        // docs/reliability.md, "Fuzzing").
        let h = format::encode_segment_header(header.base_offset, header.window);
        assert_eq!(
            h[..10],
            buf[..10],
            "magic or version of a header that decodes"
        );
        assert_eq!(
            h[12..24],
            buf[12..24],
            "in-flight window and base offset of a header that decodes"
        );
    }
    // Walk the frames from the start and from just past a segment header.
    walk(buf, record_bytes_max);
    if buf.len() > SEGMENT_HEADER_BYTES {
        walk(&buf[SEGMENT_HEADER_BYTES..], record_bytes_max);
    }
    if let Ok(n) = format::count_frames(buf) {
        assert_eq!(
            n as usize,
            frames_by_length(buf).expect("count_frames accepted it")
        );
    }
    for e in buf.chunks_exact(INDEX_ENTRY_BYTES) {
        let (rel, pos) = format::decode_index_entry(e);
        assert_eq!(format::encode_index_entry(rel, pos)[..], e[..]);
    }
}

/// Decodes record after record, as a reader does, until one is not a record.
fn walk(buf: &[u8], record_bytes_max: usize) {
    let mut pos = 0;
    let mut frame = BytesMut::new();
    while pos < buf.len() {
        let rest = &buf[pos..];
        match format::decode_record(rest, record_bytes_max) {
            Decoded::Record(r) => {
                let n = r.frame_bytes();
                assert!(n <= rest.len(), "record past the buffer");
                assert!(r.payload.len() <= record_bytes_max, "record over the bound");
                frame.clear();
                format::encode_record(&mut frame, r.timestamp_ns, r.payload);
                frame[..8].copy_from_slice(&r.offset.to_le_bytes());
                assert_eq!(&frame[..], &rest[..n], "re-encoding differs");
                pos += n;
            }
            Decoded::Incomplete { need } => {
                match need {
                    None => assert!(rest.len() < RECORD_HEADER_BYTES),
                    Some(n) => {
                        assert!(n > rest.len(), "Incomplete with the frame in hand");
                        assert!(n <= RECORD_HEADER_BYTES + record_bytes_max);
                    }
                }
                return;
            }
            Decoded::Invalid { reason } => {
                if reason == UNWRITTEN {
                    assert!(rest[..RECORD_HEADER_BYTES].iter().all(|&b| b == 0));
                }
                return;
            }
        }
    }
}

/// Frames in `buf` by their length fields alone, if they end exactly at its end.
fn frames_by_length(buf: &[u8]) -> Option<usize> {
    let (mut pos, mut n) = (0usize, 0usize);
    while pos < buf.len() {
        if buf.len() - pos < RECORD_HEADER_BYTES {
            return None;
        }
        let len = u32::from_le_bytes(buf[pos + 12..pos + 16].try_into().expect("4 bytes")) as usize;
        pos = pos.checked_add(RECORD_HEADER_BYTES + len)?;
        n += 1;
    }
    (pos == buf.len()).then_some(n)
}
