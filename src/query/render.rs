//! The JSON the fan-out core and the read API send (docs/protocol.md, "WebSocket").
//!
//! A record renders once to a fragment:
//!
//! ```text
//! {"offset":12,"ts":1732291200123456789,"service":"api","level":"error","data":"..."}
//! ```
//!
//! `service` and `level` appear only for JSON object records that carry them as
//! strings. `data` is the payload as a JSON string (invalid UTF-8 replaced by U+FFFD).
//! A message wraps fragments:
//!
//! ```text
//! {"records":[<fragment>,...],"next":13,"committed_end":20}
//! ```
//!
//! `next` is the offset to resume from (`from=next`); `committed_end` is the committed
//! end when the message was built, so `committed_end - next` is the subscriber's lag.
//!
//! A subscription to any partition but the default stream's 0, or a merged one, names
//! the partition in each record, after `offset`, and once before `next` (a message
//! holds one partition's records; `next` and `committed_end` are that partition's):
//!
//! ```text
//! {"records":[{"offset":12,"partition":2,"ts":...,"data":"..."}],"partition":2,"next":13,"committed_end":20}
//! ```
//!
//! When the reader skipped damaged ranges to build the message (bad records with valid
//! records after them, see `docs/format.md`), a `gaps` array names the lost offsets,
//! `to` exclusive, after `records`:
//!
//! ```text
//! {"records":[...],"gaps":[{"from":7,"to":9}],"next":13,"committed_end":20}
//! ```

/// Appends one record's fragment to `out`.
pub fn fragment(
    out: &mut Vec<u8>,
    offset: u64,
    ts: u64,
    payload: &[u8],
    service: Option<&str>,
    level: Option<&str>,
) {
    fragment_in(out, offset, None, ts, payload, service, level);
}

/// [`fragment`], with `"partition":k` after the offset when `partition` is given
/// (subscriptions to any partition but the default stream's 0: offsets are per
/// partition, so a record is named by both).
fn fragment_in(
    out: &mut Vec<u8>,
    offset: u64,
    partition: Option<u32>,
    ts: u64,
    payload: &[u8],
    service: Option<&str>,
    level: Option<&str>,
) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"{\"offset\":");
    out.extend_from_slice(num.format(offset).as_bytes());
    if let Some(p) = partition {
        out.extend_from_slice(b",\"partition\":");
        out.extend_from_slice(num.format(p).as_bytes());
    }
    out.extend_from_slice(b",\"ts\":");
    out.extend_from_slice(num.format(ts).as_bytes());
    if let Some(s) = service {
        out.extend_from_slice(b",\"service\":");
        serde_json::to_writer(&mut *out, s).expect("write to Vec");
    }
    if let Some(l) = level {
        out.extend_from_slice(b",\"level\":");
        serde_json::to_writer(&mut *out, l).expect("write to Vec");
    }
    out.extend_from_slice(b",\"data\":");
    push_json_string(out, payload);
    out.push(b'}');
}

/// Appends `payload` as a JSON string. Log lines are mostly printable ASCII with
/// nothing to escape: one pass proves that (it also proves valid UTF-8) and the bytes
/// are copied as they are; anything else goes through lossy UTF-8 decoding and
/// serde_json's escaper. Profiling the fan-out showed those two passes taking a third
/// of its time on such lines.
fn push_json_string(out: &mut Vec<u8>, payload: &[u8]) {
    // Branch-free so that it vectorises: no early exit, one OR per byte.
    let special = payload.iter().fold(0u8, |acc, &b| {
        acc | u8::from(b < 0x20) | u8::from(b >= 0x7f) | u8::from(b == b'"') | u8::from(b == b'\\')
    });
    let plain = special == 0;
    if plain {
        out.reserve(payload.len() + 2);
        out.push(b'"');
        out.extend_from_slice(payload);
        out.push(b'"');
    } else {
        let text = String::from_utf8_lossy(payload);
        serde_json::to_writer(&mut *out, &*text).expect("write to Vec");
    }
}

/// Builds one message from fragments.
#[derive(Debug)]
pub struct MessageBuilder {
    /// The message so far; starts with the `records` array opened.
    buf: Vec<u8>,
    /// Records in the message.
    records: usize,
    /// Lost offset ranges to mark (`from`, `to` exclusive); empty unless the log is
    /// damaged, so it never allocates on the ordinary path.
    gaps: Vec<(u64, u64)>,
    /// A read with `until` is complete (`"until_reached":true`).
    until_reached: bool,
    /// The partition the records come from, rendered in each record and before
    /// `next` (whose offset is that partition's); `None` for the default stream's
    /// partition 0, whose messages stay as they were before streams.
    partition: Option<u32>,
}

const HEAD: &[u8] = b"{\"records\":[";

impl MessageBuilder {
    /// An empty message with room for `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(HEAD);
        MessageBuilder {
            buf,
            records: 0,
            gaps: Vec::new(),
            until_reached: false,
            partition: None,
        }
    }

    /// Names the partition the records come from (see the field).
    pub fn in_partition(mut self, partition: Option<u32>) -> Self {
        self.partition = partition;
        self
    }

    /// Records added so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if no record was added.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Appends a rendered fragment.
    pub fn push_fragment(&mut self, frag: &[u8]) {
        if self.records > 0 {
            self.buf.push(b',');
        }
        self.buf.extend_from_slice(frag);
        self.records += 1;
    }

    /// Renders and appends a record.
    pub fn push_record(
        &mut self,
        offset: u64,
        ts: u64,
        payload: &[u8],
        service: Option<&str>,
        level: Option<&str>,
    ) {
        if self.records > 0 {
            self.buf.push(b',');
        }
        fragment_in(
            &mut self.buf,
            offset,
            self.partition,
            ts,
            payload,
            service,
            level,
        );
        self.records += 1;
    }

    /// Marks the damaged ranges a reader skipped (offsets `from..to` lost), so the
    /// message says so in its `gaps` array.
    pub fn gaps(&mut self, skipped: &[crate::wal::DamagedRange]) {
        self.gaps
            .extend(skipped.iter().map(|g| (g.from_offset, g.to_offset)));
    }

    /// Marks the message as the last of a read with `until`: no record after `next`
    /// is in the range.
    pub fn until_reached(&mut self) {
        self.until_reached = true;
    }

    /// True if the message marks lost ranges: worth sending without records.
    pub fn has_gaps(&self) -> bool {
        !self.gaps.is_empty()
    }

    /// Closes the message; the result is UTF-8 JSON.
    pub fn finish(mut self, next: u64, committed_end: u64) -> Vec<u8> {
        use std::io::Write;
        self.buf.push(b']');
        if !self.gaps.is_empty() {
            self.buf.extend_from_slice(b",\"gaps\":[");
            for (i, (from, to)) in self.gaps.iter().enumerate() {
                let sep = if i > 0 { "," } else { "" };
                write!(self.buf, "{sep}{{\"from\":{from},\"to\":{to}}}").expect("write to Vec");
            }
            self.buf.push(b']');
        }
        if self.until_reached {
            self.buf.extend_from_slice(b",\"until_reached\":true");
        }
        if let Some(p) = self.partition {
            write!(self.buf, ",\"partition\":{p}").expect("write to Vec");
        }
        write!(
            self.buf,
            ",\"next\":{next},\"committed_end\":{committed_end}}}"
        )
        .expect("write to Vec");
        self.buf
    }
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with microseconds.
pub fn format_ts(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let micros = (ns % 1_000_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_strings_equal_serde_json() {
        for p in [
            &b"plain line 123 ~!@#$%^&*()"[..],
            b"",
            b"tab\there",
            b"q\"uote",
            b"back\\slash",
            b"\x7f del",
            "\u{e9}t\u{e9}".as_bytes(),
            b"\xff\xfe",
        ] {
            let mut out = Vec::new();
            push_json_string(&mut out, p);
            let want = serde_json::to_vec(&*String::from_utf8_lossy(p)).unwrap();
            assert_eq!(out, want, "{:?}", String::from_utf8_lossy(p));
        }
    }

    #[test]
    fn message_is_valid_json_with_escapes() {
        let mut m = MessageBuilder::new(64);
        m.push_record(7, 9, b"a \"quoted\"\n\xff line", None, None);
        m.push_record(8, 10, br#"{"service":"api"}"#, Some("api"), Some("warn"));
        let v: serde_json::Value = serde_json::from_slice(&m.finish(9, 12)).unwrap();
        assert_eq!(v["records"][0]["offset"], 7);
        assert_eq!(v["records"][0]["data"], "a \"quoted\"\n\u{fffd} line");
        assert_eq!(v["records"][1]["service"], "api");
        assert_eq!(v["records"][1]["level"], "warn");
        assert_eq!(
            (v["next"].as_u64(), v["committed_end"].as_u64()),
            (Some(9), Some(12))
        );
        let empty = MessageBuilder::new(8).finish(3, 3);
        let v: serde_json::Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(v["records"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn a_partitions_message_names_it_in_each_record_and_before_next() {
        let mut m = MessageBuilder::new(64).in_partition(Some(3));
        m.push_record(7, 1, b"x", Some("api"), None);
        assert_eq!(
            String::from_utf8(m.finish(8, 9)).unwrap(),
            r#"{"records":[{"offset":7,"partition":3,"ts":1,"service":"api","data":"x"}],"partition":3,"next":8,"committed_end":9}"#
        );
    }
}
