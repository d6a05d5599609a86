//! The common shape of an RFC 3164 (BSD) message, recognised without syslog_loose:
//! `<PRI>Mmm dd hh:mm:ss HOST TAG: MSG` or `... TAG[PID]: MSG`, what rsyslog's
//! `omfwd`, `logger --rfc3164` and most forwarders send.
//!
//! Why by hand: syslog_loose (the parser Vector uses, and ours for everything else)
//! tries its alternatives one nom combinator at a time, looks for structured data in
//! every BSD message, and lower-cases a copy of the month: about 60 % of rendering an
//! RFC 3164 message, and the CPU the syslog listener runs out of (`docs/benchmarks.md`,
//! issue 12's syslog bar). No well-kept crate parses RFC 3164 faster (`syslog_rfc3164`
//! is a 2017 fork of an RFC 5424 parser, `rsyslog` and `syslog_rfc5424` do RFC 5424
//! only). So this recognises one shape exactly, and gives up on anything else: every
//! byte it is unsure of (a space too many, a non-ASCII header byte, a `-`, a `[` where
//! structured data could start) sends the message to syslog_loose.
//!
//! The contract: where [`common`] answers, its message equals syslog_loose's
//! (`Variant::RFC3164`, the year given, UTC) field for field. Unit tests check it on
//! every shape near the edges, and the `syslog_frame` fuzz target on every input.

use chrono::{DateTime, FixedOffset, NaiveDate};
use syslog_loose::{Message, ProcId, Protocol, decompose_pri};

/// The common shape's parts, as found: everything [`common`] gives syslog_loose's
/// `Message`, the timestamp still as its numbers. A listener renders these directly
/// and makes a date of the timestamp only when it changes (`record::Renderer`):
/// building the `Message` and its `DateTime` for every message was a fifth of
/// rendering one (`cargo bench --bench syslog`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape<'a> {
    /// PRI, at most 191 (so its facility is a known one).
    pub pri: u8,
    /// The timestamp's numbers, not yet checked as a date.
    pub stamp: Stamp,
    /// HOSTNAME: printable ASCII, not `-`.
    pub host: &'a str,
    /// APP-NAME: the tag up to its `[PID]`, if it has one (may be empty).
    pub appname: &'a str,
    /// PID: what the tag's `[...]` held, if it ends the tag.
    pub procid: Option<&'a str>,
    /// MSG.
    pub msg: &'a str,
}

/// `Mmm dd hh:mm:ss` as numbers: month 1-12, the rest as written (a day or an hour
/// out of range is found when the date is made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// 1-12.
    pub month: u32,
    /// As written: 0-99.
    pub day: u32,
    /// Hours, minutes, seconds as written: 0-99 each.
    pub hms: [u32; 3],
}

impl Stamp {
    /// The instant syslog_loose gives this timestamp in `year`, UTC; `None` where
    /// there is no such date or time (then syslog_loose reads the message otherwise).
    pub fn at(&self, year: i32) -> Option<DateTime<FixedOffset>> {
        Some(
            NaiveDate::from_ymd_opt(year, self.month, self.day)?
                .and_hms_opt(self.hms[0], self.hms[1], self.hms[2])?
                .and_utc()
                .fixed_offset(),
        )
    }
}

impl<'a> Shape<'a> {
    /// syslog_loose's message for these parts in `year`; `None` if the timestamp is
    /// no date in that year.
    pub fn message(&self, year: i32) -> Option<Message<&'a str>> {
        let (facility, severity) = decompose_pri(self.pri);
        Some(Message {
            protocol: Protocol::RFC3164,
            facility,
            severity,
            timestamp: Some(self.stamp.at(year)?),
            hostname: Some(self.host),
            appname: Some(self.appname),
            procid: self.procid.map(ProcId::from),
            msgid: None,
            structured_data: Vec::new(),
            msg: self.msg,
        })
    }
}

/// `text` as syslog_loose would parse it with `Variant::RFC3164`, the year `year` and
/// the time zone UTC, if it has the common shape; `None` if it has not (then ask
/// syslog_loose).
pub fn common(text: &str, year: i32) -> Option<Message<&str>> {
    shape(text)?.message(year)
}

/// The parts of `text` if it has the common shape (its timestamp not yet checked as
/// a date: see [`Shape::message`]); `None` if it has not.
pub fn shape(text: &str) -> Option<Shape<'_>> {
    // syslog_loose parses the trimmed text; a leading space is not the shape.
    let text = text.trim_end();
    let b = text.as_bytes();
    let mut at = 0;

    // <PRI>: 1-3 digits, a known facility (so at most 191).
    if b.first() != Some(&b'<') {
        return None;
    }
    at += 1;
    let pri_digits = digits(b, at, 3)?;
    let pri = number(&b[at..at + pri_digits]);
    at += pri_digits;
    if pri > 191 || b.get(at) != Some(&b'>') {
        return None;
    }
    at += 1;

    // Mmm: one of the twelve, in any ASCII case (syslog_loose lower-cases).
    let month = month(b.get(at..at + 3)?)?;
    at += 3;
    // One or more spaces or tabs, the day (1-2 digits), one or more spaces or tabs.
    at = blanks(b, at)?;
    let n = digits(b, at, 2)?;
    let day = number(&b[at..at + n]);
    at = blanks(b, at + n)?;
    // hh:mm:ss, 1-2 digits each, then exactly one space (a `:` after the seconds, or
    // a year, is a shape syslog_loose reads otherwise).
    let mut hms = [0u32; 3];
    for (i, v) in hms.iter_mut().enumerate() {
        let n = digits(b, at, 2)?;
        *v = number(&b[at..at + n]);
        at += n;
        let sep = if i < 2 { b':' } else { b' ' };
        if b.get(at) != Some(&sep) {
            return None;
        }
        at += 1;
    }

    // HOST: printable ASCII up to one space; not `-` (syslog_loose's empty value), not
    // ending in `:` (then it could be the tag).
    // (One pass: the printable bytes, then the space; a byte that is neither ends
    // the shape.)
    let host_len = b[at..].iter().take_while(|&&c| printable(c)).count();
    let host = &text[at..at + host_len];
    if host_len == 0 || host == "-" || host.ends_with(':') || b.get(at + host_len) != Some(&b' ') {
        return None;
    }
    at += host_len + 1;

    // TAG, then `:` right after it: printable ASCII, no `:`, not `-`.
    let tag_len = b[at..]
        .iter()
        .take_while(|&&c| c != b':' && printable(c))
        .count();
    let tag = &text[at..at + tag_len];
    if tag_len == 0 || tag == "-" || b.get(at + tag_len) != Some(&b':') {
        return None;
    }
    at += tag_len + 1;
    let (appname, procid) = split_tag(tag);

    // Spaces or tabs, then MSG. A message starting with `-` or `[` is where
    // syslog_loose looks for structured data.
    while matches!(b.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    if matches!(b.get(at), Some(b'-' | b'[')) {
        return None;
    }

    Some(Shape {
        pri: pri as u8,
        stamp: Stamp { month, day, hms },
        host,
        appname,
        procid,
        msg: &text[at..],
    })
}

/// How many ASCII digits start `b[at..]`: 1 to `max`, and not followed by another.
fn digits(b: &[u8], at: usize, max: usize) -> Option<usize> {
    let n = b
        .get(at..)?
        .iter()
        .take(max + 1)
        .take_while(|c| c.is_ascii_digit())
        .count();
    (1..=max).contains(&n).then_some(n)
}

/// The value of 1-3 ASCII digits.
fn number(d: &[u8]) -> u32 {
    debug_assert!((1..=3).contains(&d.len()) && d.iter().all(u8::is_ascii_digit));
    d.iter().fold(0, |v, c| v * 10 + u32::from(c - b'0'))
}

/// Past one or more spaces or tabs at `at`.
fn blanks(b: &[u8], at: usize) -> Option<usize> {
    let n = b
        .get(at..)?
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count();
    (n > 0).then_some(at + n)
}

/// A month's number from its three letters.
fn month(m: &[u8]) -> Option<u32> {
    const NAMES: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let lower = [
        m[0].to_ascii_lowercase(),
        m[1].to_ascii_lowercase(),
        m[2].to_ascii_lowercase(),
    ];
    NAMES
        .iter()
        .position(|n| **n == lower)
        .map(|i| i as u32 + 1)
}

/// Printable ASCII, no space: the bytes whose whitespace-ness syslog_loose's `char`
/// tests and ours agree on.
fn printable(c: u8) -> bool {
    (0x21..=0x7e).contains(&c)
}

/// `app[pid]` as syslog_loose's `systag` splits it: the part before the first `[`,
/// and a non-empty part up to the first `]`, which must end the tag. Anything else is
/// an app name with no PID.
fn split_tag(tag: &str) -> (&str, Option<&str>) {
    // The `]` must end the tag: most tags have no PID, and need no search.
    if tag.ends_with(']')
        && let Some(open) = tag.find('[')
        && let Some(close) = tag[open + 1..].find(']')
        && close > 0
        && open + 1 + close + 1 == tag.len()
    {
        return (&tag[..open], Some(&tag[open + 1..open + 1 + close]));
    }
    (tag, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use syslog_loose::Variant;

    fn loose(text: &str) -> Option<Message<&str>> {
        syslog_loose::parse_message_with_year_exact_tz(text, |_| 2026, Some(Utc), Variant::RFC3164)
            .ok()
    }

    /// Where `common` answers, syslog_loose says the same.
    #[track_caller]
    fn agrees(text: &str) -> bool {
        match common(text, 2026) {
            Some(m) => {
                let l = loose(text);
                // chrono's equality compares instants; the rendered text has the offset.
                let offset = |m: &Message<&str>| m.timestamp.map(|t| t.offset().local_minus_utc());
                assert_eq!(offset(&m), l.as_ref().and_then(offset), "{text:?}");
                assert_eq!(Some(m), l, "{text:?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_common_shapes_are_recognised_as_syslog_loose_parses_them() {
        for text in [
            "<14>Nov 22 14:27:01 loadgen auth_service: INFO req-3f2a9c1e user login",
            "<13>Dec  6 04:27:01 vm root: hello world",
            "<30>Jan  1 00:00:00 h sshd[1234]: Accepted publickey",
            "<0>feb 28 23:59:59 h a: x",
            "<191>DEC 31 1:2:3 2001:db8::1 cron[+7]: y",
            "<38>Mar 3 10:00:00 h a[b[c]: z",
            "<38>Mar 3 10:00:00 h [12]: z",
            "<38>Mar 3 10:00:00 h app:",
            "<38>Mar 3 10:00:00 h app:\t  msg with trailing   ",
            "<38>Mar 3 10:00:00 h app: msg ends in a \"quote\" and \\",
            "<38>Mar 3 10:00:00 h app: ünïcödé message",
            "<38>Mar 3 10:00:00 h app[x]: pid is a name",
            "<38>Mar 3 10:00:00 h app[99999999999]: pid too big for i32",
        ] {
            assert!(agrees(text), "not recognised: {text:?}");
        }
    }

    #[test]
    fn other_shapes_are_left_to_syslog_loose() {
        for text in [
            " <14>Nov 22 14:27:01 h a: x",
            "<14> Nov 22 14:27:01 h a: x",
            "<192>Nov 22 14:27:01 h a: x",
            "<1234>Nov 22 14:27:01 h a: x",
            "<14>Nov 22 2026 14:27:01 h a: x",
            "<14>Nov 22 14:27:01: h a: x",
            "<14>Nov 22 14:27:01  h a: x",
            "<14>Nov 31 14:27:01 h a: x",
            "<14>Nov 22 24:00:00 h a: x",
            "<14>Nov 022 14:27:01 h a: x",
            "<14>Foo 22 14:27:01 h a: x",
            "<14>Nov 22 14:27:01 - a: x",
            "<14>Nov 22 14:27:01 h: a: x",
            "<14>Nov 22 14:27:01 h - : x",
            "<14>Nov 22 14:27:01 h a : x",
            "<14>Nov 22 14:27:01 h a x",
            "<14>Nov 22 14:27:01 h a: - x",
            "<14>Nov 22 14:27:01 h a: [id k=\"v\"] x",
            "<14>Nov 22 14:27:01 hö a: x",
            "<14>Nov 22 14:27:01 h\u{85}a: x",
            "<14>Nov 22 14:27:01 h a",
            "<14>Nov 22 14:27:01 h",
            "<14>Nov 22 14:27:01",
            "<14>2026-11-22T14:27:01Z h a: x",
            "<14>1 2026-11-22T14:27:01Z h a - - - x",
        ] {
            assert!(!agrees(text), "recognised: {text:?}");
        }
    }

    #[test]
    fn every_cut_of_a_message_either_agrees_or_is_left() {
        // Prefixes and one-byte edits of a typical message: wherever `common` answers,
        // it agrees (the fuzz target does this over arbitrary inputs).
        let base = "<30>Jan  1 00:00:00 host-1 sshd[1234]: Accepted publickey for root";
        let mut recognised = 0;
        for end in 0..=base.len() {
            if base.is_char_boundary(end) {
                recognised += usize::from(agrees(&base[..end]));
            }
        }
        for i in 0..base.len() {
            for c in [b' ', b'\t', b':', b'[', b']', b'-', b'0', b'a', b'<', b'>'] {
                let mut v = base.as_bytes().to_vec();
                v[i] = c;
                recognised += usize::from(agrees(std::str::from_utf8(&v).unwrap()));
            }
        }
        assert!(recognised > 100, "{recognised}");
    }
}
