//! RFC 6587 framing, recognised frame by frame as rsyslog's `imtcp` does: a frame
//! that starts with a non-zero digit followed by more digits and a space is
//! octet-counted (`MSG-LEN SP SYSLOG-MSG`); any other frame ends at LF (a CR before
//! it is dropped). Empty LF frames are skipped. No I/O, no allocation: frames are
//! slices of the caller's buffer.
//!
//! A frame over `frame_bytes_max` is refused whole: an octet-counted one is skipped by
//! its length, an LF one through its LF, without buffering it.

/// Digits of the longest MSG-LEN looked at; a longer run of digits is not a length.
const LEN_DIGITS_MAX: usize = 10;

/// What [`SyslogFramer::split`] found at the start of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split<'a> {
    /// A complete message (framing removed).
    Frame(&'a [u8]),
    /// A frame over the bound was refused (once per frame; what is left of it is
    /// skipped by later calls).
    TooLarge,
    /// Bytes were consumed with no frame (skipping, or an empty LF frame).
    Skipped,
    /// Nothing can be decided before more input arrives.
    Incomplete,
}

/// How a connection's last bytes ended, at a clean end of stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished<'a> {
    /// Nothing was pending.
    Clean,
    /// A last LF frame without its LF: a message.
    Frame(&'a [u8]),
    /// An octet-counted frame shorter than its length: cut off, not a message.
    Truncated,
    /// A last LF frame over `frame_bytes_max`: refused, as [`Split::TooLarge`] is
    /// (`split` keeps up to `frame_bytes_max + 1` bytes of an LF frame waiting for a
    /// possible CR before its LF, so the end of the stream can leave one byte too many).
    TooLarge,
}

/// Per-connection framing state.
#[derive(Debug)]
pub struct SyslogFramer {
    frame_bytes_max: usize,
    /// Bytes of a refused octet-counted frame still to skip.
    skip: u64,
    /// Inside a refused LF frame: skip through its LF.
    discard_line: bool,
}

/// How the frame at the start of the input is delimited.
enum Head {
    /// Octet-counted: the header's length (digits and space) and MSG-LEN.
    Counted(usize, u64),
    /// LF-terminated.
    Line,
    /// Only digits so far: could be either.
    Undecided,
}

fn head(input: &[u8]) -> Head {
    if !matches!(input.first(), Some(b'1'..=b'9')) {
        return Head::Line;
    }
    let digits = input.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > LEN_DIGITS_MAX {
        return Head::Line;
    }
    match input.get(digits) {
        None => Head::Undecided,
        Some(b' ') => {
            let len = std::str::from_utf8(&input[..digits])
                .ok()
                .and_then(|s| s.parse().ok())
                .expect("at most 10 ASCII digits");
            Head::Counted(digits + 1, len)
        }
        Some(_) => Head::Line,
    }
}

impl SyslogFramer {
    /// A framer refusing messages over `frame_bytes_max`.
    pub fn new(frame_bytes_max: usize) -> Self {
        SyslogFramer {
            frame_bytes_max,
            skip: 0,
            discard_line: false,
        }
    }

    /// Looks at the start of `input`: returns the bytes consumed and what they were.
    /// Call again on the rest until it returns [`Split::Incomplete`] (with 0 consumed);
    /// the caller keeps the rest for the next read. The caller's buffer must hold at
    /// least `frame_bytes_max + 12` bytes, for a whole counted frame and its header.
    pub fn split<'a>(&mut self, input: &'a [u8]) -> (usize, Split<'a>) {
        if input.is_empty() {
            return (0, Split::Incomplete);
        }
        if self.skip > 0 {
            let n = self.skip.min(input.len() as u64);
            self.skip -= n;
            return (n as usize, Split::Skipped);
        }
        if self.discard_line {
            return match memchr::memchr(b'\n', input) {
                Some(nl) => {
                    self.discard_line = false;
                    (nl + 1, Split::Skipped)
                }
                None => (input.len(), Split::Skipped),
            };
        }
        match head(input) {
            Head::Counted(h, len) if len > self.frame_bytes_max as u64 => {
                self.skip = len;
                (h, Split::TooLarge)
            }
            Head::Counted(h, len) => {
                let end = h + len as usize;
                if input.len() < end {
                    (0, Split::Incomplete)
                } else {
                    (end, Split::Frame(&input[h..end]))
                }
            }
            Head::Undecided => (0, Split::Incomplete),
            Head::Line => self.line(input),
        }
    }

    fn line<'a>(&mut self, input: &'a [u8]) -> (usize, Split<'a>) {
        match memchr::memchr(b'\n', input) {
            Some(nl) => {
                let line = strip_cr(&input[..nl]);
                if line.len() > self.frame_bytes_max {
                    (nl + 1, Split::TooLarge)
                } else if line.is_empty() {
                    (nl + 1, Split::Skipped)
                } else {
                    (nl + 1, Split::Frame(line))
                }
            }
            // Longer than any acceptable frame (allowing for a CR): refused now, so
            // the buffer never grows past the bound.
            None if input.len() > self.frame_bytes_max + 1 => {
                self.discard_line = true;
                (input.len(), Split::TooLarge)
            }
            None => (0, Split::Incomplete),
        }
    }

    /// At a clean end of stream (FIN), what the unconsumed `rest` was.
    pub fn finish<'a>(&mut self, rest: &'a [u8]) -> Finished<'a> {
        let skipping = std::mem::take(&mut self.skip) > 0;
        let discarding = std::mem::take(&mut self.discard_line);
        if skipping {
            return Finished::Truncated;
        }
        if discarding || rest.is_empty() {
            return Finished::Clean;
        }
        match head(rest) {
            Head::Counted(..) => Finished::Truncated,
            Head::Line | Head::Undecided => match strip_cr(rest) {
                [] => Finished::Clean,
                line if line.len() > self.frame_bytes_max => Finished::TooLarge,
                line => Finished::Frame(line),
            },
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, as reads would, keeping the rest.
    fn frames(f: &mut SyslogFramer, input: &[u8], step: usize) -> (Vec<Vec<u8>>, usize) {
        let (mut out, mut refused, mut buf) = (vec![], 0, Vec::new());
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            let mut at = 0;
            loop {
                let (n, s) = f.split(&buf[at..]);
                at += n;
                match s {
                    Split::Frame(m) => out.push(m.to_vec()),
                    Split::TooLarge => refused += 1,
                    Split::Skipped => {}
                    Split::Incomplete => break,
                }
            }
            buf.drain(..at);
        }
        if let Finished::Frame(m) = f.finish(&buf) {
            out.push(m.to_vec());
        }
        (out, refused)
    }

    #[test]
    fn both_framings_mixed_frame_by_frame_in_any_pieces() {
        let input = b"11 <13>1 - a b\r\n<14>two\n\n12 <13>counted\n<15>last";
        for step in [1, 2, 3, 7, 100] {
            let (got, refused) = frames(&mut SyslogFramer::new(64), input, step);
            assert_eq!(refused, 0);
            assert_eq!(
                got,
                vec![
                    b"<13>1 - a b".to_vec(),
                    b"<14>two".to_vec(),
                    b"<13>counted\n".to_vec(),
                    b"<15>last".to_vec()
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn digits_without_a_space_are_a_line() {
        let (got, _) = frames(
            &mut SyslogFramer::new(64),
            b"2026-12-02 up\n123456789012 x\n",
            5,
        );
        assert_eq!(
            got,
            vec![b"2026-12-02 up".to_vec(), b"123456789012 x".to_vec()]
        );
    }

    #[test]
    fn oversized_frames_are_refused_whole_and_skipped() {
        let mut input = b"100 ".to_vec();
        input.extend_from_slice(&[b'x'; 100]);
        input.extend_from_slice(b"<1>ok\n");
        input.extend_from_slice(&[b'y'; 50]);
        input.extend_from_slice(b"\n3 abc");
        for step in [1, 9, 1000] {
            let (got, refused) = frames(&mut SyslogFramer::new(10), &input, step);
            assert_eq!(got, vec![b"<1>ok".to_vec(), b"abc".to_vec()], "step {step}");
            assert_eq!(refused, 2, "step {step}");
        }
    }

    #[test]
    fn a_counted_frame_cut_off_at_the_end_is_not_a_message() {
        let mut f = SyslogFramer::new(64);
        let (n, s) = f.split(b"20 <13>short");
        assert_eq!((n, s), (0, Split::Incomplete));
        assert_eq!(f.finish(b"20 <13>short"), Finished::Truncated);
        assert_eq!(
            f.finish(b"<13>no newline\r"),
            Finished::Frame(b"<13>no newline")
        );
        assert_eq!(f.finish(b""), Finished::Clean);
    }

    /// Found by the `syslog_frame` fuzz target (fuzz/regressions/syslog_frame/): `split`
    /// keeps an LF frame of `frame_bytes_max + 1` bytes waiting for its LF (the last
    /// byte may be a CR that is not part of the message), and `finish` used to take it
    /// whole as a message, one byte over the bound.
    #[test]
    fn a_last_lf_frame_over_the_bound_is_refused_at_the_end() {
        let mut f = SyslogFramer::new(4);
        assert_eq!(f.split(b"<1>ab"), (0, Split::Incomplete));
        assert_eq!(f.finish(b"<1>ab"), Finished::TooLarge);
        // At the bound, or one over only because of a CR: a message.
        assert_eq!(f.finish(b"<1>a"), Finished::Frame(b"<1>a"));
        assert_eq!(f.finish(b"<1>a\r"), Finished::Frame(b"<1>a"));
    }
}
