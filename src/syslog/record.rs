//! One syslog message to one stored record: a JSON object whose `service` and `level`
//! are what filters, the read API and the dashboard select on.
//!
//! Parsing is `syslog_loose`'s (RFC 5424 first, then RFC 3164), the parser Vector
//! uses. A message it cannot parse is stored whole with `"unparsed":true`, never
//! dropped. Fields, in order (absent ones are left out):
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

use std::{borrow::Cow, io::Write};

use chrono::{Datelike, Utc};
use syslog_loose::{Message, ProcId, Protocol, SyslogSeverity, Variant};

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
/// an RFC 3164 timestamp (which has none): the caller's, so the clock is read once per
/// read, not once per message.
pub fn render(msg: &[u8], year: i32, extra: &[(&str, &str)], out: &mut Vec<u8>) -> Parsed {
    out.clear();
    // The strict check first: it is fast, and almost every message is valid UTF-8.
    let text = match std::str::from_utf8(msg) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(msg),
    };
    let lossy = matches!(text, Cow::Owned(_));
    let parsed =
        syslog_loose::parse_message_with_year_exact_tz(&text, |_| year, Some(Utc), Variant::Either);
    out.push(b'{');
    let mut w = Fields { out, first: true };
    let outcome = match parsed {
        Ok(m) => {
            w.message(&m);
            Parsed::Syslog
        }
        // `<PRI>` and then nothing RFC 3164 recognises (no timestamp, no host): as
        // rsyslog does, the priority still counts and the rest is the message.
        Err(_) => match pri_prefix(&text) {
            Some((pri, rest)) => {
                w.pri(pri);
                w.str("message", rest);
                w.str("syslog", "rfc3164");
                Parsed::Syslog
            }
            None => {
                w.raw("unparsed", b"true");
                w.str("message", &text);
                Parsed::Unparsed
            }
        },
    };
    if lossy {
        w.raw("utf8_lossy", b"true");
    }
    for (k, v) in extra {
        w.str(k, v);
    }
    out.push(b'}');
    outcome
}

/// A JSON object being written, field by field.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Fields<'_> {
    /// `k` is one of this module's own field names (or an enrichment field's): plain
    /// ASCII that needs no escaping, so it is copied as it is.
    fn key(&mut self, k: &str) {
        debug_assert!(
            k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{k}"
        );
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.reserve(k.len() + 3);
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        json_str(self.out, v);
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
        self.opt("facility", facility.map(|f| f.as_str()));
    }

    fn severity(&mut self, severity: Option<SyslogSeverity>) {
        if let Some(sev) = severity {
            self.str("level", level(sev));
            let _ = write!(self.out, ",\"severity\":{}", sev as u8);
        }
    }

    fn message(&mut self, m: &Message<&str>) {
        self.opt("service", m.appname);
        self.severity(m.severity);
        self.opt("facility", m.facility.map(|f| f.as_str()));
        self.opt("host", m.hostname);
        if let Some(ts) = m.timestamp {
            self.str("timestamp", &ts.to_rfc3339());
        }
        match &m.procid {
            Some(ProcId::PID(pid)) => {
                self.key("procid");
                let _ = write!(self.out, "{pid}");
            }
            Some(ProcId::Name(name)) => self.opt("procid", Some(name)),
            None => {}
        }
        self.opt("msgid", m.msgid);
        if !m.structured_data.is_empty() {
            self.key("sd");
            self.out.push(b'{');
            for (i, e) in m.structured_data.iter().enumerate() {
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
        self.str("message", m.msg);
        let protocol = match m.protocol {
            Protocol::RFC5424(_) => "rfc5424",
            Protocol::RFC3164 => "rfc3164",
        };
        self.str("syslog", protocol);
    }
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
    fn what_does_not_parse_is_kept_whole() {
        let (v, p) = json(b"\xffnot syslog \"at\" all");
        assert_eq!(p, Parsed::Unparsed);
        assert_eq!(v["unparsed"], true);
        assert_eq!(v["utf8_lossy"], true);
        assert_eq!(v["message"], "\u{fffd}not syslog \"at\" all");
        assert_eq!(v["node_id"], "n1");
    }
}
