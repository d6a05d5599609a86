//! `syslog_frame`: RFC 6587 framing ([`SyslogFramer`]) over a connection's reads, then
//! each message rendered to its JSON record ([`record::render`]).

use ringstash::syslog::{
    bsd,
    frame::{Finished, Split, SyslogFramer},
    record::{self, Parsed},
};

/// Parameters: `frame_bytes_max` 1..=256, the read size 1..=64. The buffer holds
/// `frame_bytes_max + 12` bytes, the least [`SyslogFramer::split`] asks of its caller
/// (`net::framing` keeps that much).
///
/// Asserts: `split` consumes within its input, something whenever it does not answer
/// `Incomplete`, and nothing when it does; a full buffer is never `Incomplete` (else
/// the connection would stall); no frame is over `frame_bytes_max`, at the end of the
/// stream either; every frame renders to one JSON object, marked `unparsed` exactly
/// when it was not understood as syslog.
pub fn syslog_frame(data: &[u8]) {
    let ([a, b], input) = crate::params::<2>(data);
    let frame_bytes_max = 1 + usize::from(a);
    let step = 1 + usize::from(b % 64);
    let capacity = frame_bytes_max + 12;
    let mut framer = SyslogFramer::new(frame_bytes_max);
    let mut buf: Vec<u8> = Vec::with_capacity(capacity);
    let mut out = Vec::new();
    let mut input = input;
    while !input.is_empty() {
        let room = capacity - buf.len();
        let n = step.min(room).min(input.len());
        buf.extend_from_slice(&input[..n]);
        input = &input[n..];
        let mut at = 0;
        loop {
            let (n, split) = framer.split(&buf[at..]);
            assert!(n <= buf.len() - at, "consumed past the input");
            match split {
                Split::Incomplete => {
                    assert_eq!(n, 0, "Incomplete consumed bytes");
                    break;
                }
                Split::Frame(m) => {
                    assert!(n > 0);
                    assert!(m.len() <= frame_bytes_max, "frame over frame_bytes_max");
                    render(m, &mut out);
                }
                Split::TooLarge | Split::Skipped => assert!(n > 0, "no progress"),
            }
            at += n;
        }
        buf.drain(..at);
        assert!(
            buf.len() < capacity,
            "a full buffer of {capacity} bytes is Incomplete: the connection would stall"
        );
    }
    match framer.finish(&buf) {
        Finished::Frame(m) => {
            assert!(
                m.len() <= frame_bytes_max,
                "last frame of {} bytes at the end of the stream, over frame_bytes_max ({frame_bytes_max})",
                m.len()
            );
            render(m, &mut out);
        }
        Finished::Clean | Finished::Truncated | Finished::TooLarge => {}
    }
}

thread_local! {
    static PERSISTENT: std::cell::RefCell<record::Renderer> = std::cell::RefCell::new({
        let mut r = record::Renderer::new(2026);
        r.set_extra(&[("client_ip", "192.0.2.1")]);
        r
    });
}

/// Renders one message as the syslog listener does and checks the record is a JSON
/// object carrying the enrichment field last, that a long-lived renderer writes the
/// same bytes as a fresh one, that the renderer's early choice of RFC 3164 parses
/// exactly as trying RFC 5424 first would, that where [`bsd::common`] recognises
/// a message by hand, syslog_loose parses it to the same fields, and that rendering
/// that shape from its parts writes what rendering its message does.
fn render(msg: &[u8], out: &mut Vec<u8>) {
    if let Ok(text) = std::str::from_utf8(msg) {
        let parse = |v| {
            syslog_loose::parse_message_with_year_exact_tz(text, |_| 2026, Some(chrono::Utc), v)
        };
        assert_eq!(
            parse(record::variant(text)),
            parse(syslog_loose::Variant::Either),
            "variant chosen for {text:?}"
        );
        if let Some(m) = bsd::common(text, 2026) {
            let loose = parse(syslog_loose::Variant::RFC3164);
            // chrono's equality compares instants; the rendered text has the offset.
            let offset =
                |m: &syslog_loose::Message<&str>| m.timestamp.map(|t| t.offset().local_minus_utc());
            assert_eq!(
                offset(&m),
                loose.as_ref().ok().and_then(offset),
                "the timestamp's offset differs on {text:?}"
            );
            assert_eq!(
                Ok(m),
                loose,
                "the common RFC 3164 shape, recognised by hand, differs on {text:?}"
            );
        }
    }
    let parsed = record::render(msg, 2026, &[("client_ip", "192.0.2.1")], out);
    // The common RFC 3164 shape is rendered from its parts: the same bytes as through
    // the message `bsd::common` makes (checked above against syslog_loose's).
    let mut by_message = record::Renderer::by_message(2026);
    by_message.set_extra(&[("client_ip", "192.0.2.1")]);
    let mut again = Vec::new();
    assert_eq!(by_message.render(msg, &mut again), parsed);
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(out),
        "the common shape's parts render otherwise than its message on {:?}",
        String::from_utf8_lossy(msg)
    );
    // A listener's renderer lives as long as its connection and keeps what repeats
    // (the last timestamp's text): it must write what a fresh one does, whatever came
    // before (in persistent mode, every earlier frame of every earlier input).
    PERSISTENT.with(|r| {
        let mut again = Vec::new();
        r.borrow_mut().render(msg, &mut again);
        assert_eq!(
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(out),
            "a long-lived renderer differs from a fresh one on {:?}",
            String::from_utf8_lossy(msg)
        );
    });
    let v: serde_json::Value = serde_json::from_slice(out).unwrap_or_else(|e| {
        panic!(
            "record is not JSON ({e}): {:?} from {:?}",
            String::from_utf8_lossy(out),
            String::from_utf8_lossy(msg)
        )
    });
    let obj = v.as_object().expect("record is a JSON object");
    assert_eq!(
        obj.get("unparsed").is_some(),
        parsed == Parsed::Unparsed,
        "unparsed flag"
    );
    assert_eq!(
        obj.keys().next_back().map(String::as_str),
        Some("client_ip")
    );
}
