//! One syslog message to one stored record: a JSON object whose `service` and `level`
//! are what filters, the read API and the dashboard select on.
//!
//! Parsing is `syslog_loose`'s (RFC 5424 first, then RFC 3164), the parser Vector
//! uses, but for the common RFC 3164 shape, which [`bsd`] recognises at a fraction of
//! the cost and exactly as syslog_loose would. A message it cannot parse is stored
//! whole with `"unparsed":true`, never dropped. Fields, in order (absent ones are left out):
//!
//! | field       | from                                                         |
//! |-------------|--------------------------------------------------------------|
//! | `service`   | APP-NAME (5424) or TAG (3164)                                |
//! | `level`     | severity: 0-2 `fatal`, 3 `error`, 4 `warn`, 5-6 `info`, 7 `debug` |
//! | `severity`  | the severity number, 0-7                                     |
//! | `facility`  | the facility's name (`kern`, `user`, ... `local7`)           |
//! | `host`      | HOSTNAME                                                     |
//! | `timestamp` | TIMESTAMP, RFC 3339 (3164's, without a year or zone: this year, UTC) |
//! | `procid`, `msgid` | PROCID, MSGID                                          |
//! | `sd`        | structured data: `{"id@n": {"name": "value"}}`               |
//! | `message`   | MSG                                                          |
//! | `syslog`    | `rfc5424` or `rfc3164`                                       |
//!
//! then the enrichment fields the caller passes (`received_at`, `client_ip`,
//! `node_id`). Invalid UTF-8 is replaced (U+FFFD) and flagged `"utf8_lossy":true`.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, FixedOffset, Utc};
use syslog_loose::{
    Message, ProcId, Protocol, StructuredElement, SyslogFacility, SyslogSeverity, Variant,
};

use super::bsd;

/// A field's name as `Fields::key` takes it: quoted, with its colon.
macro_rules! key {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}

/// How a message was understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// RFC 5424 or RFC 3164; fields extracted.
    Syslog,
    /// Not syslog: stored whole, marked `unparsed`.
    Unparsed,
}

/// The record's `level` for a syslog severity.
pub fn level(severity: SyslogSeverity) -> &'static str {
    match severity as u8 {
        0..=2 => "fatal",
        3 => "error",
        4 => "warn",
        5 | 6 => "info",
        _ => "debug",
    }
}

/// Renders `msg` (one syslog frame, without its framing) as a JSON object into `out`
/// (cleared first), followed by the `extra` string fields. `year` is the year given to
/// an RFC 3164 timestamp (which has none). For one message at a time (tests, the fuzz
/// target); a listener keeps a [`Renderer`].
pub fn render(msg: &[u8], year: i32, extra: &[(&str, &str)], out: &mut Vec<u8>) -> Parsed {
    let mut r = Renderer::new(year);
    r.set_extra(extra);
    r.render(msg, out)
}

/// Renders a connection's messages, keeping what repeats from one message to the next
/// so that each message pays only for what is its own: the enrichment fields, escaped
/// and rendered once each time they change (once per read, not once per message), and
/// the last timestamp's text (the messages of a burst mostly share their second, and
/// formatting a date is a tenth of rendering a message).
#[derive(Debug)]
pub struct Renderer {
    /// The year RFC 3164 timestamps get; the caller's, so that the clock is read once
    /// per read, not once per message.
    year: i32,
    /// `,"key":"value"` for each enrichment field, in order, escaped.
    extra: Vec<u8>,
    /// The last timestamp rendered, and its RFC 3339 text.
    last_ts: Option<(DateTime<FixedOffset>, String)>,
    /// The last RFC 3164 timestamp of the common shape, the year it was given, and
    /// its RFC 3339 text (`None`: no such date, the message is syslog_loose's).
    last_stamp: Option<(bsd::Stamp, i32, Option<String>)>,
    /// Renders the common shape through the `Message` `bsd::common` makes of it, as
    /// every other message is ([`Renderer::by_message`]).
    by_message: bool,
}

impl Renderer {
    /// A renderer with no enrichment fields.
    pub fn new(year: i32) -> Renderer {
        Renderer {
            year,
            extra: Vec::new(),
            last_ts: None,
            last_stamp: None,
            by_message: false,
        }
    }

    /// A renderer that takes the common RFC 3164 shape through syslog_loose's
    /// `Message` (made by `bsd::common`), like every other message, instead of from
    /// its parts: what the parts' rendering must equal byte for byte. For tests and
    /// the `syslog_frame` fuzz target.
    pub fn by_message(year: i32) -> Renderer {
        Renderer {
            by_message: true,
            ..Renderer::new(year)
        }
    }

    /// The year RFC 3164 timestamps get from now on.
    pub fn set_year(&mut self, year: i32) {
        self.year = year;
    }

    /// The string fields every record ends with from now on (`received_at`,
    /// `client_ip`, `node_id`). Keys are this crate's own names: plain ASCII.
    pub fn set_extra(&mut self, fields: &[(&str, &str)]) {
        self.extra.clear();
        for (k, v) in fields {
            self.extra.push(b',');
            json_str(&mut self.extra, k);
            self.extra.push(b':');
            json_str(&mut self.extra, v);
        }
    }

    /// Renders `msg` (one syslog frame, without its framing) as a JSON object into
    /// `out` (cleared first), followed by the enrichment fields.
    pub fn render(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Parsed {
        out.clear();
        // The strict check first: it is fast, and almost every message is valid UTF-8.
        let text = match std::str::from_utf8(msg) {
            Ok(t) => Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(msg),
        };
        let lossy = matches!(text, Cow::Owned(_));
        let year = self.year;
        let variant = variant(&text);
        out.push(b'{');
        let mut w = Fields { out, first: true };
        // The common RFC 3164 shape, rendered from its parts; its timestamp made a
        // date (and text) only when it differs from the last message's.
        let common = match variant {
            Variant::RFC3164 if !self.by_message => bsd::shape(&text).and_then(|s| {
                let last = &mut self.last_stamp;
                if !matches!(last, Some((stamp, y, _)) if *stamp == s.stamp && *y == year) {
                    *last = Some((s.stamp, year, s.stamp.at(year).map(|t| t.to_rfc3339())));
                }
                Some((s, last.as_ref()?.2.as_deref()?))
            }),
            _ => None,
        };
        let outcome = if let Some((s, at)) = common {
            w.shape(&s, at);
            Parsed::Syslog
        } else {
            let by_hand = match variant {
                Variant::RFC3164 if self.by_message => bsd::common(&text, year),
                _ => None,
            };
            let parsed = match by_hand {
                Some(m) => Ok(m),
                None => syslog_loose::parse_message_with_year_exact_tz(
                    &text,
                    |_| year,
                    Some(Utc),
                    variant,
                ),
            };
            match parsed {
                Ok(m) => {
                    w.message(&m, &mut self.last_ts);
                    Parsed::Syslog
                }
                // `<PRI>` and then nothing RFC 3164 recognises (no timestamp, no
                // host): as rsyslog does, the priority still counts and the rest is
                // the message.
                Err(_) => match pri_prefix(&text) {
                    Some((pri, rest)) => {
                        w.pri(pri);
                        w.str(key!("message"), rest);
                        w.lit(key!("syslog"), "rfc3164");
                        Parsed::Syslog
                    }
                    None => {
                        w.raw(key!("unparsed"), b"true");
                        w.str(key!("message"), &text);
                        Parsed::Unparsed
                    }
                },
            }
        };
        if lossy {
            w.raw(key!("utf8_lossy"), b"true");
        }
        // Every branch above wrote at least `message`: each field here starts with its
        // comma.
        out.extend_from_slice(&self.extra);
        out.push(b'}');
        outcome
    }
}

/// Which parsers to try: RFC 5424 only where it can match. Its VERSION is digits right
/// after the (optional) `<PRI>`; where something else follows, syslog_loose's RFC 5424
/// parser fails there and `Either` falls back to RFC 3164, so asking for RFC 3164
/// at once gives the same message without the failed attempt. Public for the
/// `syslog_frame` fuzz target, which checks that claim on every input.
pub fn variant(text: &str) -> Variant {
    let t = text.trim().as_bytes();
    let after_pri = match t.strip_prefix(b"<") {
        Some(rest) => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            match rest.get(digits) {
                Some(b'>') if digits > 0 => &rest[digits + 1..],
                _ => t,
            }
        }
        None => t,
    };
    if after_pri.first().is_some_and(u8::is_ascii_digit) {
        Variant::Either
    } else {
        Variant::RFC3164
    }
}

/// A JSON object being written, field by field.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Fields<'_> {
    /// `k` is a field's name quoted and followed by its colon (`"name":`, see [`key!`]):
    /// one copy for the separator-less part of a field.
    fn key(&mut self, k: &str) {
        debug_assert!(k.starts_with('"') && k.contains("\":"), "{k}");
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.extend_from_slice(k.as_bytes());
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        json_str(self.out, v);
    }

    /// A value of this module's own making (a constant, an RFC 3339 timestamp): needs
    /// no escaping.
    fn lit(&mut self, k: &str, v: &str) {
        self.key(k);
        self.out.reserve(v.len() + 2);
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
    }

    fn raw(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.out.extend_from_slice(v);
    }

    fn opt(&mut self, k: &str, v: Option<&str>) {
        if let Some(v) = v.filter(|v| !v.is_empty() && *v != "-") {
            self.str(k, v);
        }
    }

    /// `level`, `severity` and `facility` from a PRI value.
    fn pri(&mut self, pri: u8) {
        let (facility, severity) = syslog_loose::decompose_pri(pri);
        self.severity(severity);
        if let Some(f) = facility {
            self.lit(key!("facility"), f.as_str());
        }
    }

    fn severity(&mut self, severity: Option<SyslogSeverity>) {
        /// `level` and `severity` for each severity, as [`level`] maps them.
        const FIELDS: [&str; 8] = [
            r#""level":"fatal","severity":0"#,
            r#""level":"fatal","severity":1"#,
            r#""level":"fatal","severity":2"#,
            r#""level":"error","severity":3"#,
            r#""level":"warn","severity":4"#,
            r#""level":"info","severity":5"#,
            r#""level":"info","severity":6"#,
            r#""level":"debug","severity":7"#,
        ];
        if let Some(sev) = severity {
            debug_assert!(FIELDS[sev as usize].contains(level(sev)));
            self.key(FIELDS[sev as usize]);
        }
    }

    /// `last_ts` is the last timestamp rendered and its text, reused when `m`'s is the
    /// same.
    fn message(
        &mut self,
        m: &Message<&str>,
        last_ts: &mut Option<(DateTime<FixedOffset>, String)>,
    ) {
        let timestamp = m.timestamp.map(|ts| {
            // chrono's equality compares instants only: the same instant at another
            // offset is written with that offset.
            if !matches!(last_ts, Some((at, _)) if *at == ts && at.offset() == ts.offset()) {
                *last_ts = Some((ts, ts.to_rfc3339()));
            }
            last_ts.as_ref().map_or("", |l| l.1.as_str())
        });
        self.parts(&Parts {
            appname: m.appname,
            severity: m.severity,
            facility: m.facility,
            host: m.hostname,
            timestamp,
            procid: m.procid.clone(),
            msgid: m.msgid,
            sd: &m.structured_data,
            msg: m.msg,
            protocol: match m.protocol {
                Protocol::RFC5424(_) => "rfc5424",
                Protocol::RFC3164 => "rfc3164",
            },
        });
    }

    /// The common RFC 3164 shape's parts, with `timestamp` its RFC 3339 text: the
    /// very fields [`Fields::message`] writes for the message `bsd::common` makes of
    /// them (the `syslog_frame` fuzz target checks it).
    fn shape(&mut self, s: &bsd::Shape<'_>, timestamp: &str) {
        let (facility, severity) = syslog_loose::decompose_pri(s.pri);
        self.parts(&Parts {
            appname: Some(s.appname),
            severity,
            facility,
            host: Some(s.host),
            timestamp: Some(timestamp),
            procid: s.procid.map(ProcId::from),
            msgid: None,
            sd: &[],
            msg: s.msg,
            protocol: "rfc3164",
        });
    }

    fn parts(&mut self, p: &Parts<'_, '_>) {
        self.opt(key!("service"), p.appname);
        self.severity(p.severity);
        if let Some(f) = p.facility {
            self.lit(key!("facility"), f.as_str());
        }
        self.opt(key!("host"), p.host);
        if let Some(text) = p.timestamp {
            // RFC 3339 text of chrono's making: digits, `-`, `:`, `.`, `T`, `+`.
            self.lit(key!("timestamp"), text);
        }
        match &p.procid {
            Some(ProcId::PID(pid)) => {
                self.key(key!("procid"));
                self.out
                    .extend_from_slice(itoa::Buffer::new().format(*pid).as_bytes());
            }
            Some(ProcId::Name(name)) => self.opt(key!("procid"), Some(name)),
            None => {}
        }
        self.opt(key!("msgid"), p.msgid);
        if !p.sd.is_empty() {
            self.key(key!("sd"));
            self.out.push(b'{');
            for (i, e) in p.sd.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                json_str(self.out, e.id);
                self.out.extend_from_slice(b":{");
                for (j, (k, v)) in e.params.iter().enumerate() {
                    if j > 0 {
                        self.out.push(b',');
                    }
                    json_str(self.out, k);
                    self.out.push(b':');
                    json_str(self.out, v);
                }
                self.out.push(b'}');
            }
            self.out.push(b'}');
        }
        self.str(key!("message"), p.msg);
        self.lit(key!("syslog"), p.protocol);
    }
}

/// What a record is made of, whichever parser found it ([`Fields::parts`]).
struct Parts<'a, 't> {
    appname: Option<&'a str>,
    severity: Option<SyslogSeverity>,
    facility: Option<SyslogFacility>,
    host: Option<&'a str>,
    /// RFC 3339 text.
    timestamp: Option<&'t str>,
    procid: Option<ProcId<&'a str>>,
    msgid: Option<&'a str>,
    sd: &'t [StructuredElement<&'a str>],
    msg: &'a str,
    /// `rfc5424` or `rfc3164`.
    protocol: &'static str,
}

/// `<PRI>` at the start of `text` (1-3 digits, at most 191), and what follows it.
fn pri_prefix(text: &str) -> Option<(u8, &str)> {
    let rest = text.strip_prefix('<')?;
    let end = rest.find('>')?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pri: u8 = digits.parse().ok().filter(|p| *p <= 191)?;
    Some((pri, rest[end + 1..].trim_start()))
}

/// A JSON string, escaped by serde_json.
///
/// Most strings need no escaping at all; those are copied as they are, which costs a
/// fraction of serde_json's byte-by-byte escaper on this path. The test has no early
/// exit so that it vectorises: with one (`all`) it was a fifth of the time of
/// rendering an RFC 3164 message (`cargo bench --bench syslog`).
fn json_str(out: &mut Vec<u8>, s: &str) {
    let special = s.as_bytes().iter().fold(0u8, |acc, &b| {
        acc | u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\')
    });
    if special == 0 {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
}

/// The current year in UTC, for [`render`].
pub fn this_year() -> i32 {
    Utc::now().year()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(msg: &[u8]) -> (serde_json::Value, Parsed) {
        let mut out = Vec::new();
        let p = render(msg, this_year(), &[("node_id", "n1")], &mut out);
        (serde_json::from_slice(&out).expect("valid JSON"), p)
    }

    #[test]
    fn rfc5424_fields() {
        let (v, p) = json(
            br#"<11>1 2026-12-02T10:00:00.123Z web01 nginx 4242 ID47 [exampleSDID@32473 iut="3" eventSource="App"] upstream timed out"#,
        );
        assert_eq!(p, Parsed::Syslog);
        assert_eq!(v["service"], "nginx");
        assert_eq!(v["level"], "error");
        assert_eq!(v["severity"], 3);
        assert_eq!(v["facility"], "user");
        assert_eq!(v["host"], "web01");
        assert_eq!(v["procid"], 4242);
        assert_eq!(v["msgid"], "ID47");
        assert_eq!(v["sd"]["exampleSDID@32473"]["iut"], "3");
        assert_eq!(v["message"], "upstream timed out");
        assert_eq!(v["syslog"], "rfc5424");
        assert_eq!(v["node_id"], "n1");
        assert!(
            v["timestamp"]
                .as_str()
                .unwrap()
                .starts_with("2026-12-02T10:00:00.123")
        );
    }

    #[test]
    fn rfc3164_fields() {
        let (v, p) = json(b"<28>Dec  2 10:00:00 db01 postgres[77]: checkpoint starting");
        assert_eq!(p, Parsed::Syslog);
        assert_eq!(v["service"], "postgres");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["facility"], "daemon");
        assert_eq!(v["host"], "db01");
        assert_eq!(v["procid"], 77);
        assert_eq!(v["message"], "checkpoint starting");
        assert_eq!(v["syslog"], "rfc3164");
    }

    /// The common RFC 3164 shape rendered from its parts writes the very bytes the
    /// `Message` path writes, message after message on one renderer (its cached
    /// timestamp text included) and across a change of year.
    #[test]
    fn the_common_shape_renders_as_its_message_does() {
        let messages = [
            "<14>Nov 22 14:27:01 loadgen auth_service: INFO req-3f2a9c1e user login",
            "<14>Nov 22 14:27:01 loadgen auth_service: the same second again",
            "<14>Nov 22 14:27:02 loadgen auth_service: the next second",
            "<30>Jan  1 00:00:00 h sshd[1234]: Accepted publickey",
            "<30>Jan  1 00:00:00 h sshd[007]: a PID with leading zeros",
            "<191>DEC 31 1:2:3 2001:db8::1 cron[+7]: y",
            "<38>Mar 3 10:00:00 h a[b[c]: z",
            "<38>Mar 3 10:00:00 h [12]: an empty app name",
            "<38>Mar 3 10:00:00 h -[12]: an app name that is a dash",
            "<38>Mar 3 10:00:00 h app:",
            "<38>Mar 3 10:00:00 h app[x]: pid is a name",
            "<38>Mar 3 10:00:00 h app[99999999999]: pid too big for i32",
            "<38>Mar 3 10:00:00 h app: msg ends in a \"quote\" and \\ and a \u{1}",
            "<38>Mar 3 10:00:00 h app: ünïcödé message",
            "<38>Feb 29 10:00:00 h app: no such day in 2026, a day in 2028",
            "<38>Feb 29 10:00:00 h app: the same again",
            "<38>Nov 31 10:00:00 h app: no such day in any year",
            "<14>Nov 22 14:27:01 loadgen auth_service: back to the first stamp",
        ];
        let extra = [
            ("received_at", "2026-12-06T04:27:01.123456Z"),
            ("node_id", "n1"),
        ];
        let mut fast = Renderer::new(2026);
        let mut slow = Renderer::by_message(2026);
        fast.set_extra(&extra);
        slow.set_extra(&extra);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for year in [2026, 2028, 2026] {
            fast.set_year(year);
            slow.set_year(year);
            for m in messages {
                let pa = fast.render(m.as_bytes(), &mut a);
                let pb = slow.render(m.as_bytes(), &mut b);
                assert_eq!(
                    (pa, String::from_utf8_lossy(&a)),
                    (pb, String::from_utf8_lossy(&b)),
                    "{m:?} in {year}"
                );
            }
        }
        // The shape was taken where it could be: the parts' timestamp cache holds the
        // last message's stamp.
        assert!(fast.last_stamp.is_some() && slow.last_stamp.is_none());
        // Every prefix and one-byte edit of a typical message, on the same two
        // renderers (the `syslog_frame` fuzz target does this over arbitrary inputs).
        let base = "<30>Jan  1 00:00:00 host-1 sshd[1234]: Accepted publickey for root";
        let mut inputs: Vec<Vec<u8>> = (0..=base.len())
            .map(|end| base.as_bytes()[..end].to_vec())
            .collect();
        for i in 0..base.len() {
            for c in [
                b' ', b'\t', b':', b'[', b']', b'-', b'0', b'9', b'a', b'<', b'"', 0xff,
            ] {
                let mut v = base.as_bytes().to_vec();
                v[i] = c;
                inputs.push(v);
            }
        }
        for m in &inputs {
            let pa = fast.render(m, &mut a);
            let pb = slow.render(m, &mut b);
            assert_eq!(
                (pa, String::from_utf8_lossy(&a)),
                (pb, String::from_utf8_lossy(&b)),
                "{:?}",
                String::from_utf8_lossy(m)
            );
        }
    }

    #[test]
    fn severities_map_to_levels() {
        for (pri, lvl) in [
            (0, "fatal"),
            (2, "fatal"),
            (3, "error"),
            (4, "warn"),
            (5, "info"),
            (6, "info"),
            (7, "debug"),
        ] {
            let (v, _) = json(format!("<{pri}>1 - h app - - - m").as_bytes());
            assert_eq!(
                (v["level"].as_str(), v["severity"].as_u64()),
                (Some(lvl), Some(pri))
            );
        }
    }

    #[test]
    fn a_bare_priority_still_counts() {
        let (v, p) = json(b"<11>cut short");
        assert_eq!(p, Parsed::Syslog);
        assert_eq!(
            (v["level"].as_str(), v["facility"].as_str()),
            (Some("error"), Some("user"))
        );
        assert_eq!(v["message"], "cut short");
        let (v, p) = json(b"<999>no");
        assert_eq!(
            (p, &v["message"]),
            (Parsed::Unparsed, &serde_json::json!("<999>no"))
        );
    }

    #[test]
    fn choosing_rfc3164_early_parses_as_either_would() {
        for text in [
            "<14>Dec  6 04:27:01 web-03 auth_service[4211]: INFO req-3f2a9c1e ok",
            "<14>1 2026-12-06T04:27:01.123456Z web-03 auth 4211 LOGIN - ok",
            "<14>2026-12-06T04:27:01.123456Z web-03 auth[1]: rsyslog's high-precision 3164",
            "  <14>1 2026-12-06T04:27:01Z h a - - - leading blanks",
            "<999>1 2026-12-06T04:27:01Z h a - - - priority out of range",
            "<14>  Dec  6 04:27:01 h a: blanks after the priority",
            "<>1 x",
            "<14",
            "<14>",
            "",
            "1 2026-12-06T04:27:01Z h a - - - no priority",
            "Dec  6 04:27:01 h a: no priority",
            "plain text",
        ] {
            let parse =
                |v| syslog_loose::parse_message_with_year_exact_tz(text, |_| 2026, Some(Utc), v);
            assert_eq!(parse(variant(text)), parse(Variant::Either), "{text:?}");
        }
    }

    #[test]
    fn a_renderer_reuses_a_timestamp_only_while_it_is_the_same() {
        let mut r = Renderer::new(2026);
        let mut out = Vec::new();
        let mut ts = |msg: &str| {
            r.render(msg.as_bytes(), &mut out);
            let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
            v["timestamp"].as_str().expect("timestamp").to_owned()
        };
        assert_eq!(
            ts("<14>Dec  6 04:27:01 h a: one"),
            "2026-12-06T04:27:01+00:00"
        );
        assert_eq!(
            ts("<14>Dec  6 04:27:01 h a: two"),
            "2026-12-06T04:27:01+00:00"
        );
        assert_eq!(
            ts("<14>Dec  6 04:27:02 h a: three"),
            "2026-12-06T04:27:02+00:00"
        );
        assert_eq!(
            ts("<14>1 2026-12-06T04:27:02+01:00 h a - - - four"),
            "2026-12-06T04:27:02+01:00"
        );
        // The same instant as the one before, at another offset.
        assert_eq!(
            ts("<14>1 2026-12-06T03:27:02Z h a - - - five"),
            "2026-12-06T03:27:02+00:00"
        );
    }

    #[test]
    fn enrichment_fields_are_escaped_and_follow_every_kind_of_record() {
        let mut r = Renderer::new(2026);
        r.set_extra(&[("node_id", "rack \"7\"\n"), ("client_ip", "::1")]);
        let mut out = Vec::new();
        for msg in ["<14>Dec  6 04:27:01 h a: m", "<11>cut short", "not syslog"] {
            r.render(msg.as_bytes(), &mut out);
            let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
            assert_eq!(v["node_id"], "rack \"7\"\n", "{msg}");
            assert_eq!(v["client_ip"], "::1", "{msg}");
        }
        r.set_extra(&[]);
        r.render(b"<14>Dec  6 04:27:01 h a: m", &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert!(v.get("node_id").is_none());
    }

    #[test]
    fn what_does_not_parse_is_kept_whole() {
        let (v, p) = json(b"\xffnot syslog \"at\" all");
        assert_eq!(p, Parsed::Unparsed);
        assert_eq!(v["unparsed"], true);
        assert_eq!(v["utf8_lossy"], true);
        assert_eq!(v["message"], "\u{fffd}not syslog \"at\" all");
        assert_eq!(v["node_id"], "n1");
    }
}
