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

/// Appends one record's fragment to `out`.
pub fn fragment(
    out: &mut Vec<u8>,
    offset: u64,
    ts: u64,
    payload: &[u8],
    service: Option<&str>,
    level: Option<&str>,
) {
    use std::io::Write;
    write!(out, "{{\"offset\":{offset},\"ts\":{ts}").expect("write to Vec");
    if let Some(s) = service {
        out.extend_from_slice(b",\"service\":");
        serde_json::to_writer(&mut *out, s).expect("write to Vec");
    }
    if let Some(l) = level {
        out.extend_from_slice(b",\"level\":");
        serde_json::to_writer(&mut *out, l).expect("write to Vec");
    }
    out.extend_from_slice(b",\"data\":");
    let text = String::from_utf8_lossy(payload);
    serde_json::to_writer(&mut *out, &*text).expect("write to Vec");
    out.push(b'}');
}

/// Builds one message from fragments.
#[derive(Debug)]
pub struct MessageBuilder {
    /// The message so far; starts with the `records` array opened.
    buf: Vec<u8>,
    /// Records in the message.
    records: usize,
}

const HEAD: &[u8] = b"{\"records\":[";

impl MessageBuilder {
    /// An empty message with room for `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(HEAD);
        MessageBuilder { buf, records: 0 }
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
        fragment(&mut self.buf, offset, ts, payload, service, level);
        self.records += 1;
    }

    /// Closes the message; the result is UTF-8 JSON.
    pub fn finish(mut self, next: u64, committed_end: u64) -> Vec<u8> {
        use std::io::Write;
        write!(
            self.buf,
            "],\"next\":{next},\"committed_end\":{committed_end}}}"
        )
        .expect("write to Vec");
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
