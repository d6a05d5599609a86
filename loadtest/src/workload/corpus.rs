//! The corpus: records generated once, stored back to back, and copied out in
//! batches by the connections (one `memcpy` per run of records, no formatting).

use super::{
    CORPUS_BYTES_MAX, GenConfig, RecordTooSmall, Rng, TAG_MARKER, TAG_VALUE_LEN,
    record::{make_fields, render_sized},
};

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
    use crate::workload::{Format, SizeDist};

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
    fn fixed_size_is_exact_for_every_format() {
        for format in [Format::Text, Format::Json, Format::Syslog] {
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
    fn octet_counted_syslog_is_exact_and_counts_its_message() {
        for size in [128usize, 200, 1000] {
            let c = Corpus::generate(&cfg(Format::SyslogOctet, &size.to_string())).unwrap();
            for i in 0..c.len() {
                let r = std::str::from_utf8(c.record(i)).unwrap();
                assert_eq!(r.len(), size, "{r:?}");
                let (len, msg) = r.split_once(' ').unwrap();
                assert_eq!(len.parse::<usize>().unwrap(), msg.len(), "{r:?}");
                assert!(msg.starts_with('<') && !msg.contains('\n'), "{r:?}");
            }
        }
    }

    #[test]
    fn syslog_records_are_rfc3164_with_the_level_as_priority() {
        let c = Corpus::generate(&cfg(Format::Syslog, "200")).unwrap();
        for i in 0..c.len() {
            let r = std::str::from_utf8(c.record(i)).unwrap();
            let (pri, rest) = r[1..].split_once('>').unwrap();
            let level = rest.split(": ").nth(1).unwrap().split(' ').nth(1).unwrap();
            let want = match level {
                "ERROR" => "11",
                "WARN" => "12",
                "DEBUG" => "15",
                _ => "14",
            };
            assert_eq!(pri, want, "{r}");
            // `Mmm dd hh:mm:ss loadgen service: `
            assert_eq!(&rest[15..24], " loadgen ", "{r}");
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
}
