//! RELP, the Reliable Event Logging Protocol of rsyslog's `omrelp` and `imrelp`, as a
//! server speaks it, without I/O: frames parsed out of the caller's buffer
//! ([`parse`]), the session's rules ([`Session::step`]) and the answers
//! ([`write_rsp`], [`write_ok`], [`write_open_ok`], [`SERVERCLOSE`]).
//!
//! The wire, as the specification (librelp's `doc/relp.md`) and librelp itself have it:
//!
//! ```text
//! FRAME   = TXNR SP COMMAND SP DATALEN [SP DATA] LF
//! TXNR    = 1*9DIGIT        ; 1, 2, ... 999999999, then 1 again; 0 = a hint, unanswered
//! COMMAND = 1*32ALPHA       ; open, syslog, close (rsp and serverclose go to the client)
//! DATALEN = 1*9DIGIT        ; bytes of DATA; when 0, no SP and no DATA: LF follows
//! rsp DATA = STATUS SP TEXT [LF CMDDATA]   ; STATUS 200 = ok, 500 = error
//! ```
//!
//! Why a frame is parsed only once it is whole: DATA is bounded (`relp_frame_bytes_max`,
//! checked as soon as DATALEN is read, before any of DATA is buffered), so keeping the
//! incomplete frame in the connection's buffer and parsing again after the next read
//! costs a re-read of a header of at most 53 bytes, and the parser needs no state.
//! Everything is checked byte by byte as it arrives, so garbage is refused at its first
//! wrong byte, not after a buffer fills.

use std::io::Write;

/// Digits of a TXNR or a DATALEN at most (`NUMBER = 1*9DIGIT`).
const NUMBER_DIGITS_MAX: usize = 9;

/// Letters of a command at most.
const COMMAND_BYTES_MAX: usize = 32;

/// The largest TXNR; the one after it is 1.
pub const TXNR_MAX: u32 = 999_999_999;

/// Longest human-readable text of a `rsp` (the specification's `HUMAN-TEXT`: librelp
/// reads at most 80 bytes of it).
const RSP_TEXT_BYTES_MAX: usize = 80;

/// The hint a server sends before it closes a session itself (TXNR 0, never
/// answered): a client that reads it reconnects at once instead of at its next write.
pub const SERVERCLOSE: &[u8] = b"0 serverclose 0\n";

/// The protocol version answered: librelp's (`RELP_CURR_PROTOCOL_VERSION`, 0). A client
/// offering a higher one is answered with this one, as librelp's server does; librelp's
/// client refuses a server that answers higher than its own.
pub const RELP_VERSION: u32 = 0;

/// One complete frame, slices of the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The transaction number; 0 for a hint.
    pub txnr: u32,
    /// The command's letters.
    pub command: &'a [u8],
    /// DATA (empty when DATALEN is 0).
    pub data: &'a [u8],
}

/// What [`parse`] found at the start of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete frame, and the bytes it took (trailer included).
    Frame(Frame<'a>, usize),
    /// Nothing wrong so far, but the frame is not complete yet.
    Incomplete,
}

/// A malformed or refused frame. The session cannot continue past it (the next frame
/// cannot be found), so the connection is closed after the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame does not start with 1 to 9 digits and a space.
    #[error("malformed frame: TXNR is not 1 to 9 digits then a space")]
    BadTxnr,
    /// The command is not 1 to 32 letters followed by a space.
    #[error("malformed frame: command is not 1 to 32 letters then a space")]
    BadCommand {
        /// The frame's TXNR.
        txnr: u32,
    },
    /// DATALEN is not 1 to 9 digits followed by a space (or the LF when it is 0).
    #[error("malformed frame: DATALEN is not 1 to 9 digits then a space")]
    BadDatalen {
        /// The frame's TXNR.
        txnr: u32,
    },
    /// DATALEN is over `relp_frame_bytes_max`.
    #[error("frame too large: DATALEN {datalen} over relp_frame_bytes_max {max}")]
    TooLarge {
        /// The frame's TXNR.
        txnr: u32,
        /// The length announced.
        datalen: usize,
        /// The bound.
        max: usize,
    },
    /// The byte after DATA (or after a DATALEN of 0) is not the LF trailer.
    #[error("malformed frame: no LF after DATA")]
    BadTrailer {
        /// The frame's TXNR.
        txnr: u32,
    },
}

impl FrameError {
    /// The TXNR of the refused frame, when it could be read.
    pub fn txnr(&self) -> Option<u32> {
        match *self {
            FrameError::BadTxnr => None,
            FrameError::BadCommand { txnr }
            | FrameError::BadDatalen { txnr }
            | FrameError::TooLarge { txnr, .. }
            | FrameError::BadTrailer { txnr } => Some(txnr),
        }
    }
}

/// A number's digits starting at `at`, and where they end (the terminator's index).
enum Number {
    Done(usize, usize),
    Incomplete,
    Bad,
}

fn number(input: &[u8], at: usize) -> Number {
    let digits = input[at..]
        .iter()
        .take(NUMBER_DIGITS_MAX + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits > NUMBER_DIGITS_MAX {
        return Number::Bad;
    }
    let end = at + digits;
    if end == input.len() {
        return Number::Incomplete; // more digits, or the terminator, may follow
    }
    if digits == 0 {
        return Number::Bad;
    }
    let value = input[at..end]
        .iter()
        .fold(0usize, |v, d| v * 10 + usize::from(d - b'0'));
    Number::Done(value, end)
}

/// Parses the frame at the start of `input`, refusing a DATALEN over `data_bytes_max`.
///
/// # Errors
/// A [`FrameError`] at the first byte that cannot belong to a well-formed frame.
pub fn parse(input: &[u8], data_bytes_max: usize) -> Result<Parsed<'_>, FrameError> {
    use Parsed::Incomplete;
    let (txnr, at) = match number(input, 0) {
        Number::Incomplete => return Ok(Incomplete),
        Number::Bad => return Err(FrameError::BadTxnr),
        Number::Done(t, end) if input[end] == b' ' => (t as u32, end + 1),
        Number::Done(..) => return Err(FrameError::BadTxnr),
    };
    let letters = input[at..]
        .iter()
        .take(COMMAND_BYTES_MAX + 1)
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    let cmd_end = at + letters;
    if letters > COMMAND_BYTES_MAX {
        return Err(FrameError::BadCommand { txnr });
    }
    match input.get(cmd_end) {
        None => return Ok(Incomplete),
        Some(b' ') if letters > 0 => {}
        Some(_) => return Err(FrameError::BadCommand { txnr }),
    }
    let command = &input[at..cmd_end];
    let (datalen, end) = match number(input, cmd_end + 1) {
        Number::Incomplete => return Ok(Incomplete),
        Number::Bad => return Err(FrameError::BadDatalen { txnr }),
        Number::Done(n, end) => (n, end),
    };
    if datalen == 0 {
        // librelp: no SP and no DATA; the LF follows the digits.
        return match input[end] {
            b'\n' => Ok(Parsed::Frame(
                Frame {
                    txnr,
                    command,
                    data: &[],
                },
                end + 1,
            )),
            _ => Err(FrameError::BadTrailer { txnr }),
        };
    }
    if input[end] != b' ' {
        return Err(FrameError::BadDatalen { txnr });
    }
    if datalen > data_bytes_max {
        return Err(FrameError::TooLarge {
            txnr,
            datalen,
            max: data_bytes_max,
        });
    }
    let data_start = end + 1;
    let trailer = data_start + datalen;
    match input.get(trailer) {
        None => Ok(Incomplete),
        Some(b'\n') => Ok(Parsed::Frame(
            Frame {
                txnr,
                command,
                data: &input[data_start..trailer],
            },
            trailer + 1,
        )),
        Some(_) => Err(FrameError::BadTrailer { txnr }),
    }
}

/// The TXNR after `txnr`: they wrap from [`TXNR_MAX`] to 1.
pub fn next_txnr(txnr: u32) -> u32 {
    if txnr >= TXNR_MAX { 1 } else { txnr + 1 }
}

/// What a frame asks of the server, once the session's rules allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// `open` with acceptable offers: answer [`write_open_ok`].
    Open {
        /// The frame's TXNR.
        txnr: u32,
    },
    /// `syslog`: store the message, answer `200 OK` once it is durable.
    Syslog {
        /// The frame's TXNR.
        txnr: u32,
        /// The syslog message (one trailing LF removed).
        message: &'a [u8],
    },
    /// `close`: answer `200 OK` after every earlier answer, then close.
    Close {
        /// The frame's TXNR.
        txnr: u32,
    },
    /// A hint (TXNR 0): nothing to do, nothing answered.
    Hint,
}

/// A well-formed frame the session refuses; answered with `rsp 500`, then the
/// connection is closed (as librelp's server does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The TXNR is not the one after the previous frame's.
    #[error("txnr {txnr} out of sequence, expected {expected}")]
    OutOfSequence {
        /// The frame's TXNR.
        txnr: u32,
        /// The TXNR expected.
        expected: u32,
    },
    /// A command before `open`.
    #[error("session not open")]
    NotOpen {
        /// The frame's TXNR.
        txnr: u32,
    },
    /// A second `open`.
    #[error("protocol error: connection already open")]
    AlreadyOpen {
        /// The frame's TXNR.
        txnr: u32,
    },
    /// A command this server does not take (only open, syslog and close).
    #[error("command not supported: {command}")]
    Unsupported {
        /// The frame's TXNR.
        txnr: u32,
        /// The command, as sent (letters only).
        command: String,
    },
    /// The `open` offers lack `relp_version`, or `commands` lacks `syslog`.
    #[error("invalid offers: {why}")]
    BadOffers {
        /// The frame's TXNR.
        txnr: u32,
        /// What is missing.
        why: &'static str,
    },
}

impl SessionError {
    /// The refused frame's TXNR.
    pub fn txnr(&self) -> u32 {
        match *self {
            SessionError::OutOfSequence { txnr, .. }
            | SessionError::NotOpen { txnr }
            | SessionError::AlreadyOpen { txnr }
            | SessionError::Unsupported { txnr, .. }
            | SessionError::BadOffers { txnr, .. } => txnr,
        }
    }
}

/// One connection's session state: the TXNR expected next and whether `open` was
/// answered.
#[derive(Debug)]
pub struct Session {
    expected: u32,
    open: bool,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            expected: 1,
            open: false,
        }
    }
}

impl Session {
    /// A session before its `open`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The TXNR the next command must carry.
    pub fn expected_txnr(&self) -> u32 {
        self.expected
    }

    /// Applies the session's rules to `frame`: TXNRs in sequence (librelp's server
    /// checks this too, and an answer is matched to its command by it), `open` first
    /// and once, then `syslog` and `close`.
    ///
    /// # Errors
    /// A [`SessionError`]; the caller answers `rsp 500` and closes.
    pub fn step<'a>(&mut self, frame: Frame<'a>) -> Result<Step<'a>, SessionError> {
        let txnr = frame.txnr;
        if txnr == 0 {
            return Ok(Step::Hint);
        }
        if txnr != self.expected {
            return Err(SessionError::OutOfSequence {
                txnr,
                expected: self.expected,
            });
        }
        self.expected = next_txnr(txnr);
        match frame.command {
            b"syslog" if self.open => {
                let message = frame.data.strip_suffix(b"\n").unwrap_or(frame.data);
                Ok(Step::Syslog { txnr, message })
            }
            b"close" if self.open => Ok(Step::Close { txnr }),
            b"syslog" | b"close" => Err(SessionError::NotOpen { txnr }),
            b"open" if self.open => Err(SessionError::AlreadyOpen { txnr }),
            b"open" => {
                check_offers(frame.data).map_err(|why| SessionError::BadOffers { txnr, why })?;
                self.open = true;
                Ok(Step::Open { txnr })
            }
            other => Err(SessionError::Unsupported {
                txnr,
                command: String::from_utf8_lossy(other).into_owned(),
            }),
        }
    }
}

/// Checks a client's offers (`name=value,value` lines, separated by LF): a numeric
/// `relp_version`, and `syslog` among the `commands` when they are given (the only
/// command this server has; a client that does not offer it has nothing to send).
fn check_offers(data: &[u8]) -> Result<(), &'static str> {
    let mut version = false;
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let (name, values) = match line.iter().position(|&b| b == b'=') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let mut values = values.split(|&b| b == b',');
        match name {
            b"relp_version" => {
                let v = values.next().unwrap_or_default();
                if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                    return Err("relp_version is not a number");
                }
                version = true;
            }
            b"commands" if !values.any(|v| v == b"syslog") => {
                return Err("commands lacks syslog");
            }
            _ => {} // relp_software and offers unknown here are ignored, as librelp does
        }
    }
    if version {
        Ok(())
    } else {
        Err("relp_version missing")
    }
}

/// Appends `TXNR rsp DATALEN STATUS SP TEXT [LF data] LF` to `out`. The text is cut to
/// 80 bytes and any LF in it replaced, so that it stays one line.
pub fn write_rsp(out: &mut Vec<u8>, txnr: u32, status: u16, text: &str, data: &[u8]) {
    let mut end = text.len().min(RSP_TEXT_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    let datalen = 4 + text.len() + if data.is_empty() { 0 } else { 1 + data.len() };
    write!(out, "{txnr} rsp {datalen} {status} ").expect("write to Vec");
    out.extend(text.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
    if !data.is_empty() {
        out.push(b'\n');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// Appends `TXNR rsp 6 200 OK` and the LF: the answer to a `syslog` whose record is
/// durable, and to `close`.
pub fn write_ok(out: &mut Vec<u8>, txnr: u32) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(txnr).as_bytes());
    out.extend_from_slice(b" rsp 6 200 OK\n");
}

/// Appends the answer to an accepted `open`: `200 OK`, then this server's offers, in
/// librelp's order (`omrelp` requires `commands=syslog` in it).
pub fn write_open_ok(out: &mut Vec<u8>, txnr: u32) {
    let offers = format!(
        "relp_version={RELP_VERSION}\nrelp_software=ringstash,{}\ncommands=syslog",
        env!("CARGO_PKG_VERSION")
    );
    write_rsp(out, txnr, 200, "OK", offers.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    /// Every frame of `input` fed in pieces of `step` bytes, as reads would bring them
    /// into a buffer that keeps what is incomplete.
    fn frames_in_pieces(input: &[u8], step: usize) -> Vec<(u32, String, Vec<u8>)> {
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            let mut start = 0;
            while let Parsed::Frame(f, n) = parse(&buf[start..], MAX).unwrap() {
                out.push((
                    f.txnr,
                    String::from_utf8(f.command.to_vec()).unwrap(),
                    f.data.to_vec(),
                ));
                start += n;
            }
            buf.drain(..start);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn frames_split_anywhere_across_reads() {
        let mut input = Vec::new();
        for (txnr, cmd, data) in [
            (1, "open", OFFERS),
            (2, "syslog", &b"<13>1 - h app - - - hello\nx"[..]),
            (3, "syslog", b"a\nb c"),
        ] {
            write!(input, "{txnr} {cmd} {} ", data.len()).unwrap();
            input.extend_from_slice(data);
            input.push(b'\n');
        }
        input.extend_from_slice(b"4 close 0\n");
        let input = &input[..];
        let whole = frames_in_pieces(input, input.len());
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[0].1, "open");
        assert_eq!(&whole[1].2, b"<13>1 - h app - - - hello\nx");
        assert_eq!(&whole[2].2, b"a\nb c", "DATA may hold LF and spaces");
        assert_eq!(whole[3], (4, "close".into(), vec![]));
        for step in 1..input.len() {
            assert_eq!(frames_in_pieces(input, step), whole, "in pieces of {step}");
        }
    }

    /// Arbitrary bytes never panic the parser, never make it consume more than it was
    /// given, and a refusal is the same whatever follows the wrong byte.
    #[test]
    fn arbitrary_bytes_are_parsed_or_refused_without_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Mostly the frame's own alphabet, so that parsing gets past the header often.
        const ALPHABET: &[u8] = b"0123456789 syslogopenclose\nx";
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            match parse(&input, 16) {
                Ok(Parsed::Frame(f, n)) => {
                    assert!(n <= input.len());
                    assert_eq!(input[n - 1], b'\n');
                    assert!(f.data.len() <= 16);
                }
                Ok(Parsed::Incomplete) => {}
                Err(e) => {
                    let mut longer = input.clone();
                    longer.extend_from_slice(b"1 syslog 1 x\n");
                    assert_eq!(parse(&longer, 16), Err(e), "{input:?}");
                }
            }
        }
    }

    #[test]
    fn bad_txnr_is_refused_at_its_first_wrong_byte() {
        for bad in [
            &b"x"[..],
            b" 1 syslog 0\n",
            b"1x syslog 0\n",
            b"1234567890 syslog 0\n",
            b"1\n",
            b"-1 syslog 0\n",
        ] {
            assert_eq!(parse(bad, MAX), Err(FrameError::BadTxnr), "{bad:?}");
        }
        // Nine digits are a TXNR; so far it is only incomplete.
        assert_eq!(parse(b"123456789", MAX), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"", MAX), Ok(Parsed::Incomplete));
    }

    #[test]
    fn bad_command_and_datalen_and_trailer() {
        let cmd = |txnr| Err(FrameError::BadCommand { txnr });
        assert_eq!(parse(b"1  0\n", MAX), cmd(1));
        assert_eq!(parse(b"2 sys1og 0\n", MAX), cmd(2));
        assert_eq!(
            parse(&[b"3 ", &[b'a'; 33][..], b" 0\n"].concat(), MAX),
            cmd(3)
        );
        assert_eq!(parse(b"3 syslog", MAX), Ok(Parsed::Incomplete));
        let len = |txnr| Err(FrameError::BadDatalen { txnr });
        assert_eq!(parse(b"4 syslog x\n", MAX), len(4));
        assert_eq!(parse(b"4 syslog \n", MAX), len(4));
        assert_eq!(parse(b"4 syslog 1234567890 x", MAX), len(4));
        assert_eq!(parse(b"4 syslog 5x", MAX), len(4));
        assert_eq!(parse(b"4 syslog 5", MAX), Ok(Parsed::Incomplete));
        let trailer = |txnr| Err(FrameError::BadTrailer { txnr });
        assert_eq!(parse(b"5 syslog 2 abc\n", MAX), trailer(5));
        assert_eq!(
            parse(b"5 close 0 \n", MAX),
            trailer(5),
            "no SP after DATALEN 0"
        );
        assert_eq!(parse(b"5 syslog 3 abc", MAX), Ok(Parsed::Incomplete));
    }

    #[test]
    fn oversize_is_refused_before_its_data_arrives() {
        assert_eq!(
            parse(b"7 syslog 1025 ", MAX),
            Err(FrameError::TooLarge {
                txnr: 7,
                datalen: 1025,
                max: MAX
            })
        );
        let ok = [&b"7 syslog 1024 "[..], &[b'a'; 1024], b"\n"].concat();
        assert!(
            matches!(parse(&ok, MAX), Ok(Parsed::Frame(f, n)) if f.data.len() == 1024 && n == ok.len())
        );
        assert_eq!(
            FrameError::TooLarge {
                txnr: 7,
                datalen: 1025,
                max: MAX
            }
            .txnr(),
            Some(7)
        );
    }

    fn frame(txnr: u32, command: &'static [u8], data: &'static [u8]) -> Frame<'static> {
        Frame {
            txnr,
            command,
            data,
        }
    }

    const OFFERS: &[u8] =
        b"relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog";

    #[test]
    fn session_commands_in_order() {
        let mut s = Session::new();
        assert_eq!(
            s.step(frame(1, b"syslog", b"x")),
            Err(SessionError::NotOpen { txnr: 1 })
        );
        let mut s = Session::new();
        assert_eq!(
            s.step(frame(1, b"open", OFFERS)),
            Ok(Step::Open { txnr: 1 })
        );
        assert_eq!(
            s.step(frame(2, b"syslog", b"<13>hi\n")),
            Ok(Step::Syslog {
                txnr: 2,
                message: b"<13>hi"
            })
        );
        assert_eq!(s.step(frame(0, b"anything", b"")), Ok(Step::Hint));
        assert_eq!(
            s.step(frame(4, b"syslog", b"x")),
            Err(SessionError::OutOfSequence {
                txnr: 4,
                expected: 3
            })
        );
        let mut s = Session::new();
        s.step(frame(1, b"open", OFFERS)).unwrap();
        assert_eq!(
            s.step(frame(2, b"open", OFFERS)),
            Err(SessionError::AlreadyOpen { txnr: 2 })
        );
        let mut s = Session::new();
        s.step(frame(1, b"open", OFFERS)).unwrap();
        let e = s.step(frame(2, b"starttls", b"")).unwrap_err();
        assert_eq!(e.to_string(), "command not supported: starttls");
        let mut s = Session::new();
        s.step(frame(1, b"open", OFFERS)).unwrap();
        assert_eq!(s.step(frame(2, b"close", b"")), Ok(Step::Close { txnr: 2 }));
    }

    #[test]
    fn txnrs_wrap_after_999999999() {
        assert_eq!(next_txnr(TXNR_MAX), 1);
        let mut s = Session {
            expected: TXNR_MAX,
            open: true,
        };
        assert!(s.step(frame(TXNR_MAX, b"syslog", b"a")).is_ok());
        assert_eq!(s.expected_txnr(), 1);
        assert!(s.step(frame(1, b"syslog", b"b")).is_ok());
    }

    #[test]
    fn offers_need_a_version_and_syslog() {
        assert_eq!(check_offers(OFFERS), Ok(()));
        assert_eq!(check_offers(b"relp_version=1"), Ok(()));
        assert_eq!(
            check_offers(b"commands=syslog"),
            Err("relp_version missing")
        );
        assert_eq!(
            check_offers(b"relp_version=x\ncommands=syslog"),
            Err("relp_version is not a number")
        );
        assert_eq!(
            check_offers(b"relp_version=0\ncommands=eventlog"),
            Err("commands lacks syslog")
        );
        let mut s = Session::new();
        assert_eq!(
            s.step(frame(1, b"open", b"commands=syslog")),
            Err(SessionError::BadOffers {
                txnr: 1,
                why: "relp_version missing"
            })
        );
    }

    #[test]
    fn answers_byte_by_byte() {
        let mut out = Vec::new();
        write_ok(&mut out, 42);
        assert_eq!(out, b"42 rsp 6 200 OK\n");
        out.clear();
        write_rsp(&mut out, 3, 500, "bad\nthing", b"");
        assert_eq!(out, b"3 rsp 13 500 bad thing\n");
        out.clear();
        write_rsp(&mut out, 1, 500, &"x".repeat(200), b"");
        assert_eq!(out.len(), "1 rsp 84 500 ".len() + 80 + 1);
        out.clear();
        write_open_ok(&mut out, 1);
        let text = String::from_utf8(out.clone()).unwrap();
        let body = format!(
            "200 OK\nrelp_version=0\nrelp_software=ringstash,{}\ncommands=syslog",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(text, format!("1 rsp {} {body}\n", body.len()));
        // Our own answers parse as frames.
        let Ok(Parsed::Frame(f, n)) = parse(&out, MAX) else {
            panic!()
        };
        assert_eq!(
            (f.command, f.data, n),
            (&b"rsp"[..], body.as_bytes(), out.len())
        );
        assert!(
            matches!(parse(SERVERCLOSE, MAX), Ok(Parsed::Frame(f, _)) if f.txnr == 0 && f.command == b"serverclose")
        );
    }
}
