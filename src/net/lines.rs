//! Newline framing for raw TCP, as a state machine over bytes (no I/O).
//!
//! The reactor reads into a connection buffer and hands the bytes here; complete lines
//! are framed straight into the connection's `BatchBuilder` (no allocation per
//! record). What is left (a partial line) stays in the caller's buffer for the next read.

use super::framing::{Framed, Framing, Target};
use crate::wal::format::RECORD_HEADER_BYTES;

/// Per-connection framing state.
#[derive(Debug)]
pub struct LineFramer {
    /// Lines seen on this connection, empty ones included (for error reports).
    line_no: u64,
    /// Inside a line already refused as too long: skip through its newline.
    discarding: bool,
    /// Largest payload accepted.
    record_bytes_max: usize,
}

impl LineFramer {
    /// A framer refusing payloads over `record_bytes_max`.
    pub fn new(record_bytes_max: usize) -> Self {
        LineFramer {
            line_no: 0,
            discarding: false,
            record_bytes_max,
        }
    }

    /// Lines seen so far.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }
}

impl Framing for LineFramer {
    /// Frames the complete lines at the start of `input` into `batch`, stopping early
    /// once `batch` holds `to.batch_bytes_max` bytes. Refused lines' numbers go to
    /// `rejected`.
    fn frame(&mut self, input: &[u8], to: &mut Target<'_>) -> Framed {
        let mut out = Framed::default();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', input) {
            let line = strip_cr(&input[start..nl]);
            // End the batch before a record that would take it past its bound, so a
            // batch never exceeds to.batch_bytes_max unless it holds a single record (which
            // record_bytes_max keeps within group_bytes_max).
            if !to.batch.is_empty()
                && !self.discarding
                && line.len() <= self.record_bytes_max
                && to.batch.bytes() + RECORD_HEADER_BYTES + line.len() > to.batch_bytes_max
            {
                out.batch_full = true;
                out.consumed = start;
                return out;
            }
            start = nl + 1;
            self.line_no += 1;
            if std::mem::take(&mut self.discarding) || line.is_empty() {
                continue;
            }
            if to.batch.push(to.timestamp_ns, line).is_err() {
                (to.rejected)(self.line_no);
            } else {
                out.records += 1;
            }
        }
        out.consumed = start;
        // A partial line already longer than any acceptable record (allowing for a
        // trailing \r) is refused now, so the buffer never grows past the bound.
        let partial = input.len() - start;
        if self.discarding {
            out.consumed = input.len();
        } else if partial > self.record_bytes_max + 1 {
            (to.rejected)(self.line_no + 1);
            self.discarding = true;
            out.consumed = input.len();
        }
        out
    }

    /// At end of input: frames a last line that had no newline.
    fn finish(&mut self, rest: &[u8], to: &mut Target<'_>) -> u32 {
        if std::mem::take(&mut self.discarding) || rest.is_empty() {
            return 0;
        }
        // Only a `\r` before a `\n` ends a line: a last line's own `\r` is data.
        let line = rest;
        self.line_no += 1;
        if line.is_empty() {
            return 0;
        }
        match to.batch.push(to.timestamp_ns, line) {
            Ok(()) => 1,
            Err(_) => {
                (to.rejected)(self.line_no);
                0
            }
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{
        BatchBuilder,
        format::{Decoded, decode_record, stamp_offsets},
    };

    /// [`Framing::frame`] into `b`, refusals into `rej`, every read at time 1.
    fn go(
        f: &mut LineFramer,
        input: &[u8],
        b: &mut BatchBuilder,
        max: usize,
        rej: &mut Vec<u64>,
    ) -> Framed {
        let mut push = |n| rej.push(n);
        let mut to = Target::new(b, 1, max, &mut push);
        f.frame(input, &mut to)
    }

    /// [`Framing::finish`], likewise.
    fn end(f: &mut LineFramer, rest: &[u8], b: &mut BatchBuilder, rej: &mut Vec<u64>) -> u32 {
        let mut push = |n| rej.push(n);
        let mut to = Target::new(b, 1, usize::MAX, &mut push);
        f.finish(rest, &mut to)
    }

    fn payloads(b: &mut BatchBuilder) -> Vec<Vec<u8>> {
        let (mut frames, _) = b.take();
        stamp_offsets(&mut frames, 0, |_, _| {});
        let mut pos = 0;
        let mut v = vec![];
        while pos < frames.len() {
            let Decoded::Record(r) = decode_record(&frames[pos..], 1 << 20) else {
                panic!()
            };
            v.push(r.payload.to_vec());
            pos += r.frame_bytes();
        }
        v
    }

    #[test]
    fn lines_crlf_empty_and_partial() {
        let mut f = LineFramer::new(10);
        let mut b = BatchBuilder::new(1024, 10);
        let mut rej = vec![];
        let input = b"one\r\ntwo\n\n\r\nthree\npart";
        let r = go(&mut f, input, &mut b, 1 << 20, &mut rej);
        assert_eq!(r.records, 3);
        assert_eq!(&input[r.consumed..], b"part");
        // A last line without `\n` keeps its `\r`: only `\r\n` is a line end.
        assert_eq!(end(&mut f, b"part\r", &mut b, &mut rej), 1);
        assert_eq!(
            payloads(&mut b),
            vec![
                b"one".to_vec(),
                b"two".to_vec(),
                b"three".to_vec(),
                b"part\r".to_vec()
            ]
        );
        assert!(rej.is_empty());
        assert_eq!(f.line_no(), 6);
    }

    #[test]
    fn too_long_lines_are_refused_whole_and_numbered() {
        let mut f = LineFramer::new(4);
        let mut b = BatchBuilder::new(1024, 4);
        let mut rej = vec![];
        // Line 2 is too long but complete in one read.
        let r = go(&mut f, b"ok\ntoolong\nfine\n", &mut b, 1 << 20, &mut rej);
        assert_eq!(r.records, 2);
        assert_eq!(rej, vec![2]);
        // Line 4 arrives in pieces longer than the bound: refused early, then skipped.
        let r = go(&mut f, b"abcdefgh", &mut b, 1 << 20, &mut rej);
        assert_eq!(r.consumed, 8);
        let r = go(&mut f, b"ijk\nlast\n", &mut b, 1 << 20, &mut rej);
        assert_eq!(r.records, 1);
        assert_eq!(rej, vec![2, 4]);
        assert_eq!(
            payloads(&mut b),
            vec![b"ok".to_vec(), b"fine".to_vec(), b"last".to_vec()]
        );
        // Exactly record_bytes_max with a \r is accepted.
        let r = go(&mut f, b"abcd\r\n", &mut b, 1 << 20, &mut rej);
        assert_eq!(r.records, 1);
    }

    #[test]
    fn stops_before_a_record_that_would_overflow_the_batch() {
        let mut f = LineFramer::new(100);
        let mut b = BatchBuilder::new(1024, 100);
        // Each frame is 28 bytes: one fits in 60, two fit (56), the third would not.
        let r = go(&mut f, b"aaaa\nbbbb\ncccc\n", &mut b, 60, &mut vec![]);
        assert!(r.batch_full);
        assert_eq!((r.records, r.consumed, b.bytes()), (2, 10, 56));
        // A long line after short ones starts a batch of its own instead of overflowing.
        let (_, _) = b.take();
        let long = [b"x\n".as_slice(), &[b'y'; 90], b"\n"].concat();
        let r = go(&mut f, &long, &mut b, 60, &mut vec![]);
        assert_eq!((r.records, r.consumed, r.batch_full), (1, 2, true));
        let (_, _) = b.take();
        let r = go(&mut f, &long[2..], &mut b, 60, &mut vec![]);
        assert_eq!(
            (r.records, b.bytes()),
            (1, 24 + 90),
            "alone, it may exceed the batch bound"
        );
        // aaaa, bbbb, x, the long line: cccc was left for the caller to feed again.
        assert_eq!(f.line_no(), 4);
    }
}
