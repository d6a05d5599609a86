//! One record: its fields drawn from the seeded generator (timestamp, weighted level,
//! service and message, request id, labels) and rendered as text or JSON into exactly
//! the size asked for.

use std::fmt::Write as _;

use super::{Format, RecordTooSmall, Rng, TAG_MARKER, TAG_VALUE_LEN};

/// Services and what they log (after the seeds' generators).
const SERVICES: &[(&str, &[&str])] = &[
    (
        "auth_service",
        &[
            "user login succeeded",
            "user login failed: bad password",
            "token refreshed",
            "session expired",
            "password reset requested",
            "mfa challenge sent",
            "api key rotated",
            "account locked after # failed attempts",
        ],
    ),
    (
        "event_creator",
        &[
            "event created",
            "event updated",
            "event deleted",
            "recurring series expanded to # instances",
            "invitation sent to # attendees",
            "calendar sync completed",
            "conflict detected with existing event",
            "reminder scheduled",
        ],
    ),
    (
        "focus_allocator",
        &[
            "focus block allocated",
            "focus block released",
            "allocation recomputed in # ms",
            "no free slot found this week",
            "priority queue rebalanced",
            "user preferences loaded",
            "allocation deferred: calendar busy",
            "daily plan published",
        ],
    ),
    (
        "notification_service",
        &[
            "push notification delivered",
            "email queued",
            "email delivered",
            "sms delivery failed: carrier timeout",
            "digest built with # items",
            "webhook returned 5xx, retrying",
            "unsubscribe processed",
            "template rendered",
        ],
    ),
    (
        "api_gateway",
        &[
            "request completed",
            "request rejected: rate limited",
            "upstream timeout after # ms",
            "tls handshake failed",
            "route table reloaded",
            "request completed with status 404",
            "circuit breaker opened",
            "health check ok",
        ],
    ),
    (
        "billing_worker",
        &[
            "invoice generated",
            "payment captured",
            "payment declined",
            "refund issued",
            "subscription renewed",
            "usage report exported with # rows",
            "currency rates refreshed",
            "dunning email scheduled",
        ],
    ),
];

/// Levels and their weights out of 100.
const LEVELS: &[(&str, u64)] = &[("DEBUG", 15), ("INFO", 60), ("WARN", 17), ("ERROR", 8)];

const LABELS: &[(&str, &[&str])] = &[
    ("region", &["eu-west-1", "us-east-1", "ap-south-1"]),
    ("env", &["prod", "staging"]),
    ("host", &["node-01", "node-02", "node-03", "node-04"]),
    ("version", &["1.4.2", "1.5.0"]),
];

const FILLER: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The parts of one record before rendering.
pub(super) struct Fields {
    ts: String,
    level: &'static str,
    service: &'static str,
    message: String,
    request_id: String,
    labels: Vec<(&'static str, &'static str)>,
    filler_seed: u64,
}

/// What a render includes; narrowed step by step until the record fits.
#[derive(Clone, Copy)]
struct Shape {
    /// The end-to-end tag field (never trimmed).
    tag: bool,
    labels: bool,
    request_id: bool,
    message_len: usize,
    /// Filler characters appended to the message (for small shortfalls).
    message_extra: usize,
    /// Length of the `pad` field's value, 0 for no pad field.
    pad: usize,
}

fn filler(seed: u64, n: usize, out: &mut Vec<u8>) {
    let mut r = Rng::new(seed);
    out.extend((0..n).map(|_| FILLER[r.below(FILLER.len() as u64) as usize]));
}

/// Appends `parts` to `out`, one after the other.
fn put(out: &mut Vec<u8>, parts: &[&[u8]]) {
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Renders `f` as narrowed by `s`, framing included (`\n`, or an octet count),
/// appending to `out`.
fn render(f: &Fields, s: Shape, format: Format, out: &mut Vec<u8>) {
    match format {
        Format::Text => render_text(f, s, out),
        Format::Json => render_json(f, s, out),
        Format::Syslog => render_syslog(f, s, out),
        Format::SyslogOctet => {
            let start = out.len();
            render_syslog(f, s, out);
            let prefix = format!("{} ", out.len() - start);
            out.splice(start..start, prefix.bytes());
            return;
        }
    }
    out.push(b'\n');
}

/// `<PRI>Mmm dd hh:mm:ss loadgen <service>: ` then the text record.
fn render_syslog(f: &Fields, s: Shape, out: &mut Vec<u8>) {
    let pri: &[u8] = match f.level {
        "ERROR" => b"<11>",
        "WARN" => b"<12>",
        "DEBUG" => b"<15>",
        _ => b"<14>",
    };
    put(out, &[pri, bsd_timestamp(&f.ts).as_bytes(), b" loadgen "]);
    put(out, &[f.service.as_bytes(), b": "]);
    render_text(f, s, out);
}

/// `2026-11-22T14:27:01.123456Z` as RFC 3164's `Nov 22 14:27:01`.
fn bsd_timestamp(ts: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month: usize = ts.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let day: u32 = ts.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    let time = ts.get(11..19).unwrap_or("00:00:00");
    format!("{} {day:>2} {time}", MONTHS[month.clamp(1, 12) - 1])
}

/// `<ts> <level> <service>[ e2e=<tag>][ <request id>] <message>[ k=v...][ pad=...]`
fn render_text(f: &Fields, s: Shape, out: &mut Vec<u8>) {
    let msg = &f.message.as_bytes()[..s.message_len];
    put(out, &[f.ts.as_bytes(), b" ", f.level.as_bytes(), b" "]);
    out.extend_from_slice(f.service.as_bytes());
    if s.tag {
        put(out, &[b" ", TAG_MARKER, &TAG_PLACEHOLDER]);
    }
    if s.request_id {
        put(out, &[b" ", f.request_id.as_bytes()]);
    }
    put(out, &[b" ", msg]);
    filler(f.filler_seed, s.message_extra, out);
    if s.labels {
        for (k, v) in &f.labels {
            put(out, &[b" ", k.as_bytes(), b"=", v.as_bytes()]);
        }
    }
    if s.pad > 0 {
        out.extend_from_slice(b" pad=");
        filler(f.filler_seed ^ 1, s.pad, out);
    }
}

/// One JSON object: `timestamp`, `level`, `service`, [`tag`], `message`,
/// [`request_id`], [`labels`], [`pad`], in that order.
fn render_json(f: &Fields, s: Shape, out: &mut Vec<u8>) {
    let msg = &f.message.as_bytes()[..s.message_len];
    put(out, &[b"{\"timestamp\":\"", f.ts.as_bytes()]);
    put(out, &[b"\",\"level\":\"", f.level.as_bytes()]);
    put(out, &[b"\",\"service\":\"", f.service.as_bytes()]);
    if s.tag {
        put(out, &[b"\",\"tag\":\"", TAG_MARKER, &TAG_PLACEHOLDER]);
    }
    put(out, &[b"\",\"message\":\"", msg]);
    filler(f.filler_seed, s.message_extra, out);
    out.push(b'"');
    if s.request_id {
        put(
            out,
            &[b",\"request_id\":\"", f.request_id.as_bytes(), b"\""],
        );
    }
    if s.labels && !f.labels.is_empty() {
        out.extend_from_slice(b",\"labels\":{");
        for (i, (k, v)) in f.labels.iter().enumerate() {
            let sep: &[u8] = if i > 0 { b"," } else { b"" };
            put(
                out,
                &[sep, b"\"", k.as_bytes(), b"\":\"", v.as_bytes(), b"\""],
            );
        }
        out.push(b'}');
    }
    if s.pad > 0 {
        out.extend_from_slice(b",\"pad\":\"");
        filler(f.filler_seed ^ 1, s.pad, out);
        out.push(b'"');
    }
    out.push(b'}');
}

/// The tag value in the corpus, overwritten on every send.
const TAG_PLACEHOLDER: [u8; TAG_VALUE_LEN] = *b"0000000000000000-";

/// Bytes a pad field costs beyond its value: ` pad=` (text) or `,"pad":""` (JSON).
fn pad_overhead(format: Format) -> usize {
    match format {
        Format::Text | Format::Syslog | Format::SyslogOctet => 5,
        Format::Json => 9,
    }
}

/// Renders `f` into exactly `target` bytes (including `\n`), appending to `out`.
pub(super) fn render_sized(
    f: &Fields,
    target: usize,
    format: Format,
    tag: bool,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), RecordTooSmall> {
    let mut shape = Shape {
        tag,
        labels: !f.labels.is_empty(),
        request_id: true,
        message_len: f.message.len(),
        message_extra: 0,
        pad: 0,
    };
    let measure = |shape: Shape, scratch: &mut Vec<u8>| {
        scratch.clear();
        render(f, shape, format, scratch);
        scratch.len()
    };
    // Too long: drop labels, shorten the message to 12 bytes, drop the request id,
    // shorten the message to one byte, in that order, until it fits.
    let mut len = measure(shape, scratch);
    let steps: [fn(&mut Shape, usize); 4] = [
        |s, _| s.labels = false,
        |s, over| {
            s.message_len = s
                .message_len
                .saturating_sub(over)
                .max(12.min(s.message_len))
        },
        |s, _| s.request_id = false,
        |s, over| s.message_len = s.message_len.saturating_sub(over).max(1),
    ];
    for step in steps {
        if len <= target {
            break;
        }
        step(&mut shape, len - target);
        len = measure(shape, scratch);
    }
    if len > target {
        return Err(RecordTooSmall {
            wanted: target,
            needed: len,
        });
    }
    let need = target - len;
    if need > pad_overhead(format) {
        shape.pad = need - pad_overhead(format);
    } else {
        shape.message_extra = need;
    }
    let start = out.len();
    render(f, shape, format, out);
    debug_assert_eq!(out.len() - start, target);
    Ok(())
}

/// Formats seconds + microseconds since the epoch as RFC 3339 UTC.
fn format_ts(micros: u64, out: &mut String) {
    let secs = (micros / 1_000_000) as i64;
    let frac = micros % 1_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
}

/// Year, month and day of `days` since 1970-01-01, by Howard Hinnant's days-to-civil
/// algorithm (proleptic Gregorian), to need no date crate.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn pick_level(rng: &mut Rng) -> &'static str {
    let total: u64 = LEVELS.iter().map(|l| l.1).sum();
    let mut x = rng.below(total);
    for (name, w) in LEVELS {
        if x < *w {
            return name;
        }
        x -= w;
    }
    unreachable!("weights cover the range")
}

pub(super) fn make_fields(rng: &mut Rng, micros: u64, labels_probability: f64) -> Fields {
    let mut ts = String::with_capacity(32);
    format_ts(micros, &mut ts);
    let level = pick_level(rng);
    let (service, messages) = SERVICES[rng.below(SERVICES.len() as u64) as usize];
    let template = messages[rng.below(messages.len() as u64) as usize];
    let message = template.replace('#', &rng.range(2, 999).to_string());
    let request_id = format!("req-{:08x}", rng.next_u64() as u32);
    let mut labels = Vec::new();
    if rng.chance(labels_probability) {
        let n = 1 + rng.below(2) as usize;
        let first = rng.below(LABELS.len() as u64) as usize;
        for i in 0..n {
            let (k, vs) = LABELS[(first + i) % LABELS.len()];
            labels.push((k, vs[rng.below(vs.len() as u64) as usize]));
        }
    }
    Fields {
        ts,
        level,
        service,
        message,
        request_id,
        labels,
        filler_seed: rng.next_u64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let mut s = String::new();
        format_ts(1_795_000_000_123_456, &mut s);
        assert_eq!(s, "2026-11-18T11:06:40.123456Z");
    }
}
