//! The workload generator: realistic log records, built once into a corpus.
//!
//! Records look like the ones the seeds' generators produce: a timestamp, a weighted
//! level (`DEBUG` 15 %, `INFO` 60 %, `WARN` 17 %, `ERROR` 8 %), a service such as
//! `auth_service` or `event_creator`, a message from a per-service list, a request id,
//! and sometimes labels. They are rendered as plain text or as one-line JSON, padded
//! or trimmed to the size the size distribution picks, and end with `\n`.
//!
//! The corpus is generated up front (a few MiB) and the connections copy batches out
//! of it, so the send path costs one `memcpy` per batch and no formatting: this is
//! what lets one client thread push millions of records per second. Everything is a
//! pure function of [`GenConfig`] (seed, base time, sizes), so a run is repeatable.

use std::fmt::Write as _;

/// A small, fast, seeded PRNG (SplitMix64). Good enough for workloads; not for crypto.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (Lemire's multiply-shift; the tiny bias is irrelevant here).
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p` (0.0 ..= 1.0).
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64) < p
    }
}

/// How records are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `2026-11-22T14:27:01.123456Z INFO auth_service req-3f2a9c1e user login succeeded ...`
    Text,
    /// `{"timestamp":"...","level":"INFO","service":"auth_service","message":"...",...}`
    Json,
}

/// Record sizes in bytes, counting the trailing `\n`: fixed, or uniform in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SizeDist {
    /// Smallest record, bytes including `\n`.
    pub min: usize,
    /// Largest record, bytes including `\n`.
    pub max: usize,
}

impl SizeDist {
    /// Parses `128` (every record exactly 128 bytes) or `100-300` (uniform).
    ///
    /// # Errors
    /// Not a number or range, `min > max`, or a size under 2 bytes.
    pub fn parse(s: &str) -> Result<Self, String> {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad record size {t:?} (want N or MIN-MAX)"))
        };
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(s)?;
                (n, n)
            }
        };
        if min > max {
            return Err(format!("record size range {min}-{max} is empty"));
        }
        if min < 2 {
            return Err("records must be at least 2 bytes (one byte and \\n)".into());
        }
        if max > RECORD_BYTES_MAX {
            return Err(format!(
                "records over {RECORD_BYTES_MAX} bytes are not supported"
            ));
        }
        Ok(SizeDist { min, max })
    }

    /// The mean size in bytes.
    pub fn mean(&self) -> f64 {
        (self.min + self.max) as f64 / 2.0
    }
}

/// The largest record the generator builds (1 MiB, ringstash's default `record_bytes_max`).
pub const RECORD_BYTES_MAX: usize = 1 << 20;

/// The most bytes a corpus may hold, whatever `corpus_records` asks for.
pub const CORPUS_BYTES_MAX: usize = 64 << 20;

/// What the generator makes. Same config, same bytes.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// PRNG seed.
    pub seed: u64,
    /// Text or JSON.
    pub format: Format,
    /// Record size distribution (bytes, `\n` included).
    pub size: SizeDist,
    /// Probability that a record carries labels.
    pub labels_probability: f64,
    /// Timestamp of the first record, seconds since the Unix epoch.
    pub base_time_s: u64,
    /// How many distinct records the corpus holds before batches wrap around.
    pub corpus_records: usize,
    /// Give every record an end-to-end tag field ([`TAG_MARKER`] + [`TAG_VALUE_LEN`]
    /// placeholder characters) that the sender fills in with the connection, the
    /// record's sequence number and an end-of-batch flag (`ws-e2e` mode).
    pub tag: bool,
}

/// What precedes the tag value in a tagged record (text: ` e2e=<value>`; JSON:
/// `"tag":"e2e=<value>"`), so a subscriber finds it the same way in both formats.
pub const TAG_MARKER: &[u8] = b"e2e=";

/// Length of the tag value: 16 lowercase hex digits of `connection << 48 | seq`,
/// then `L` on the last record of a batch, `-` on the others.
pub const TAG_VALUE_LEN: usize = 17;

/// Bits of the tag value's sequence number; the connection index is above them.
pub const TAG_SEQ_BITS: u32 = 48;

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 1,
            format: Format::Text,
            size: SizeDist { min: 128, max: 128 },
            labels_probability: 0.3,
            base_time_s: 1_795_000_000,
            corpus_records: 1 << 16,
            tag: false,
        }
    }
}

/// The generator could not build a record of the requested size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTooSmall {
    /// The size asked for, bytes.
    pub wanted: usize,
    /// The smallest record of this format that fits, bytes.
    pub needed: usize,
}

impl std::fmt::Display for RecordTooSmall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a record of {} bytes is too small for this format: the record needs {} bytes",
            self.wanted, self.needed
        )
    }
}

impl std::error::Error for RecordTooSmall {}

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
struct Fields {
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

fn render(f: &Fields, s: Shape, format: Format, out: &mut Vec<u8>) {
    let msg = &f.message.as_bytes()[..s.message_len];
    match format {
        Format::Text => {
            out.extend_from_slice(f.ts.as_bytes());
            out.push(b' ');
            out.extend_from_slice(f.level.as_bytes());
            out.push(b' ');
            out.extend_from_slice(f.service.as_bytes());
            if s.tag {
                out.push(b' ');
                out.extend_from_slice(TAG_MARKER);
                out.extend_from_slice(&TAG_PLACEHOLDER);
            }
            if s.request_id {
                out.push(b' ');
                out.extend_from_slice(f.request_id.as_bytes());
            }
            out.push(b' ');
            out.extend_from_slice(msg);
            filler(f.filler_seed, s.message_extra, out);
            if s.labels {
                for (k, v) in &f.labels {
                    out.push(b' ');
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(v.as_bytes());
                }
            }
            if s.pad > 0 {
                out.extend_from_slice(b" pad=");
                filler(f.filler_seed ^ 1, s.pad, out);
            }
        }
        Format::Json => {
            out.extend_from_slice(b"{\"timestamp\":\"");
            out.extend_from_slice(f.ts.as_bytes());
            out.extend_from_slice(b"\",\"level\":\"");
            out.extend_from_slice(f.level.as_bytes());
            out.extend_from_slice(b"\",\"service\":\"");
            out.extend_from_slice(f.service.as_bytes());
            if s.tag {
                out.extend_from_slice(b"\",\"tag\":\"");
                out.extend_from_slice(TAG_MARKER);
                out.extend_from_slice(&TAG_PLACEHOLDER);
            }
            out.extend_from_slice(b"\",\"message\":\"");
            out.extend_from_slice(msg);
            filler(f.filler_seed, s.message_extra, out);
            out.push(b'"');
            if s.request_id {
                out.extend_from_slice(b",\"request_id\":\"");
                out.extend_from_slice(f.request_id.as_bytes());
                out.push(b'"');
            }
            if s.labels && !f.labels.is_empty() {
                out.extend_from_slice(b",\"labels\":{");
                for (i, (k, v)) in f.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    out.extend_from_slice(k.as_bytes());
                    out.extend_from_slice(b"\":\"");
                    out.extend_from_slice(v.as_bytes());
                    out.push(b'"');
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
    }
    out.push(b'\n');
}

/// The tag value in the corpus, overwritten on every send.
const TAG_PLACEHOLDER: [u8; TAG_VALUE_LEN] = *b"0000000000000000-";

/// Bytes a pad field costs beyond its value: ` pad=` (text) or `,"pad":""` (JSON).
fn pad_overhead(format: Format) -> usize {
    match format {
        Format::Text => 5,
        Format::Json => 9,
    }
}

/// Renders `f` into exactly `target` bytes (including `\n`), appending to `out`.
fn render_sized(
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
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
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

fn make_fields(rng: &mut Rng, micros: u64, labels_probability: f64) -> Fields {
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

/// A fixed set of generated records, stored back to back, each ending with `\n`.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// All records, concatenated.
    data: Vec<u8>,
    /// `starts[i]` is where record `i` begins; `starts[len]` is `data.len()`.
    starts: Vec<usize>,
    /// Tagged corpora: where the tag value starts inside record `i`; else empty.
    tag_at: Vec<u32>,
}

impl Corpus {
    /// Generates the corpus `cfg` describes.
    ///
    /// # Errors
    /// A record size too small for the format (the smallest JSON record is about
    /// 110 bytes, the smallest text record about 60).
    pub fn generate(cfg: &GenConfig) -> Result<Self, RecordTooSmall> {
        let per_record_max = cfg.size.max.max(1);
        let n = cfg
            .corpus_records
            .clamp(1, (CORPUS_BYTES_MAX / per_record_max).max(1));
        let mut rng = Rng::new(cfg.seed);
        let mut data = Vec::with_capacity((cfg.size.mean() as usize + 1) * n);
        let mut starts = Vec::with_capacity(n + 1);
        let mut tag_at = Vec::with_capacity(if cfg.tag { n } else { 0 });
        let mut scratch = Vec::with_capacity(per_record_max + 256);
        let mut micros = cfg.base_time_s * 1_000_000;
        for _ in 0..n {
            micros += rng.below(200);
            let fields = make_fields(&mut rng, micros, cfg.labels_probability);
            let target = rng.range(cfg.size.min as u64, cfg.size.max as u64) as usize;
            starts.push(data.len());
            render_sized(
                &fields,
                target,
                cfg.format,
                cfg.tag,
                &mut scratch,
                &mut data,
            )?;
            if cfg.tag {
                let r = &data[starts[starts.len() - 1]..];
                let at = r
                    .windows(TAG_MARKER.len())
                    .position(|w| w == TAG_MARKER)
                    .expect("a tagged record holds its marker")
                    + TAG_MARKER.len();
                tag_at.push(at as u32);
            }
        }
        starts.push(data.len());
        Ok(Corpus {
            data,
            starts,
            tag_at,
        })
    }

    /// Number of distinct records.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// True if the corpus has no records (never, once generated).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `i`, including its `\n`.
    pub fn record(&self, i: usize) -> &[u8] {
        &self.data[self.starts[i]..self.starts[i + 1]]
    }

    /// Appends `n` records starting at `*cursor` (wrapping) to `out`, newline
    /// terminated, and advances the cursor. Returns the bytes appended.
    ///
    /// Whole runs of records are copied with one `memcpy` each.
    pub fn append_lines(&self, cursor: &mut usize, mut n: usize, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        while n > 0 {
            let i = *cursor;
            let take = n.min(self.len() - i);
            out.extend_from_slice(&self.data[self.starts[i]..self.starts[i + take]]);
            n -= take;
            *cursor = (i + take) % self.len();
        }
        out.len() - before
    }

    /// [`Corpus::append_lines`], then fills in each record's tag (tagged corpora
    /// only): `id0 + k` for the `k`-th record as 16 hex digits, and `L` on the last
    /// one, `-` on the others. `id0` is `connection << TAG_SEQ_BITS | first seq`.
    ///
    /// # Panics
    /// If the corpus was generated without `tag`.
    pub fn append_lines_tagged(
        &self,
        cursor: &mut usize,
        n: usize,
        id0: u64,
        out: &mut Vec<u8>,
    ) -> usize {
        assert!(!self.tag_at.is_empty(), "corpus generated without tags");
        let mut i = *cursor;
        let mut pos = out.len();
        let appended = self.append_lines(cursor, n, out);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for k in 0..n {
            let at = pos + self.tag_at[i] as usize;
            let id = id0 + k as u64;
            let v = &mut out[at..at + TAG_VALUE_LEN];
            for (d, b) in v[..16].iter_mut().enumerate() {
                *b = HEX[((id >> (60 - 4 * d)) & 0xf) as usize];
            }
            v[16] = if k + 1 == n { b'L' } else { b'-' };
            pos += self.starts[i + 1] - self.starts[i];
            i = (i + 1) % self.len();
        }
        appended
    }

    /// Bytes of the `n` records starting at `cursor` (wrapping), `\n` included,
    /// without copying them.
    pub fn lines_len(&self, cursor: usize, n: usize) -> usize {
        let len = self.len();
        let (full, rem) = (n / len, n % len);
        let span = if cursor + rem <= len {
            self.starts[cursor + rem] - self.starts[cursor]
        } else {
            let wrap = cursor + rem - len;
            self.data.len() - self.starts[cursor] + self.starts[wrap]
        };
        full * self.data.len() + span
    }

    /// Appends `n` records as a JSON array (`[r1,r2,...]`, each record without its
    /// `\n`), advancing the cursor. Returns the bytes appended.
    pub fn append_json_array(&self, cursor: &mut usize, n: usize, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        out.push(b'[');
        for k in 0..n {
            if k > 0 {
                out.push(b',');
            }
            let r = self.record(*cursor);
            out.extend_from_slice(&r[..r.len() - 1]);
            *cursor = (*cursor + 1) % self.len();
        }
        out.push(b']');
        out.len() - before
    }

    /// The corpus position connection `conn` starts from, so that connections send
    /// different records.
    pub fn start_for(&self, conn: usize) -> usize {
        conn.wrapping_mul(7919) % self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(format: Format, size: &str) -> GenConfig {
        GenConfig {
            format,
            size: SizeDist::parse(size).unwrap(),
            corpus_records: 2000,
            ..GenConfig::default()
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = Corpus::generate(&cfg(Format::Text, "128")).unwrap();
        let b = Corpus::generate(&cfg(Format::Text, "128")).unwrap();
        assert_eq!(a.data, b.data);
        let c = Corpus::generate(&GenConfig {
            seed: 2,
            ..cfg(Format::Text, "128")
        })
        .unwrap();
        assert_ne!(a.data, c.data);
    }

    #[test]
    fn fixed_size_is_exact_for_both_formats() {
        for format in [Format::Text, Format::Json] {
            for size in [128usize, 200, 1000] {
                let c = Corpus::generate(&cfg(format, &size.to_string())).unwrap();
                for i in 0..c.len() {
                    let r = c.record(i);
                    assert_eq!(r.len(), size, "{format:?} {:?}", String::from_utf8_lossy(r));
                    assert_eq!(r[size - 1], b'\n');
                    assert!(!r[..size - 1].contains(&b'\n'));
                }
            }
        }
    }

    #[test]
    fn json_records_parse_and_carry_the_fields() {
        let c = Corpus::generate(&cfg(Format::Json, "128-400")).unwrap();
        let mut with_rid = 0;
        for i in 0..c.len() {
            let r = c.record(i);
            assert!((128..=400).contains(&r.len()));
            let v: serde_json::Value = serde_json::from_slice(r).unwrap();
            for k in ["timestamp", "level", "service", "message"] {
                assert!(v[k].as_str().is_some_and(|s| !s.is_empty()), "{v}");
            }
            assert!(["DEBUG", "INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap()));
            with_rid += usize::from(v.get("request_id").is_some());
        }
        assert!(with_rid > c.len() / 2);
    }

    #[test]
    fn levels_are_weighted() {
        let c = Corpus::generate(&cfg(Format::Text, "200")).unwrap();
        let count = |lvl: &str| {
            (0..c.len())
                .filter(|&i| String::from_utf8_lossy(c.record(i)).contains(&format!(" {lvl} ")))
                .count()
        };
        let info = count("INFO");
        let error = count("ERROR");
        assert!(info > c.len() / 2 && info < c.len() * 7 / 10, "{info}");
        assert!(error > c.len() / 25 && error < c.len() / 8, "{error}");
    }

    #[test]
    fn too_small_is_an_error() {
        let e = Corpus::generate(&cfg(Format::Json, "60")).unwrap_err();
        assert!(e.needed > 60);
        assert!(Corpus::generate(&cfg(Format::Text, "60")).is_ok());
    }

    #[test]
    fn batches_wrap_and_json_arrays_parse() {
        let c = Corpus::generate(&cfg(Format::Json, "128")).unwrap();
        let mut cur = c.len() - 3;
        let mut out = Vec::new();
        assert_eq!(c.lines_len(cur, 10), 1280);
        assert_eq!(c.lines_len(cur, 2 * c.len() + 10), 1280 + 2 * 128 * c.len());
        assert_eq!(c.append_lines(&mut cur, 10, &mut out), 1280);
        assert_eq!(cur, 7);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 10);
        out.clear();
        c.append_json_array(&mut cur, 5, &mut out);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(cur, 12);
    }

    #[test]
    fn size_parse() {
        assert_eq!(
            SizeDist::parse("128").unwrap(),
            SizeDist { min: 128, max: 128 }
        );
        assert_eq!(
            SizeDist::parse("64-256").unwrap(),
            SizeDist { min: 64, max: 256 }
        );
        assert!(SizeDist::parse("256-64").is_err());
        assert!(SizeDist::parse("x").is_err());
        assert!(SizeDist::parse("1").is_err());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let mut s = String::new();
        format_ts(1_795_000_000_123_456, &mut s);
        assert_eq!(s, "2026-11-18T11:06:40.123456Z");
    }
}
