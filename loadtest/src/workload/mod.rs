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
//!
//! This module holds the settings and the PRNG; `record` draws one record's fields
//! and renders them to an exact size; `corpus` holds the records and copies batches
//! out of them ([`Corpus`]).

mod corpus;
mod record;

pub use corpus::Corpus;
pub(crate) use record::civil_from_days;

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
    /// RFC 3164 syslog, as forwarders send it:
    /// `<14>Nov 22 14:27:01 loadgen auth_service: INFO req-3f2a9c1e user login ...`
    /// (the priority from the level: user.debug/info/warning/err).
    Syslog,
    /// The same RFC 3164 message in RFC 6587 octet-counting framing, as rsyslog's
    /// `TCP_Framing="octet-counted"` and syslog-ng's `syslog()` send it:
    /// `<LEN> <14>Nov 22 14:27:01 loadgen auth_service: ...` with no `\n` (the record's
    /// size counts the length prefix).
    #[value(name = "syslog-octet")]
    #[serde(rename = "syslog-octet")]
    SyslogOctet,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
