//! Which log each record goes to: its stream (the listener's, or a syslog rule's) and,
//! in a stream of N partitions, partition `fnv1a32(key) mod N` where the key is the
//! record's `key` field (`service` by default), so that one key's records stay
//! together and in order in one partition.
//!
//! A batch framed by a connection is split here, on the connection's core, into one
//! batch per destination log; a batch whose records all go to one log (a stream of
//! one partition without syslog rules: the default) is handed on as it is, unread.

use std::fmt;

use bytes::BytesMut;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::spec::{RuleField, StreamSpecs, SyslogRules};
use crate::wal::{Appender, format::RECORD_HEADER_BYTES};

/// FNV-1a, 32 bits (offset basis 2166136261, prime 16777619): the hash of a partition
/// key. Go's `hash/fnv` `New32a` computes the same, so a producer can predict a key's
/// partition.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The partition of `key` in a stream of `partitions`.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a stream has at least one partition");
    fnv1a32(key) % partitions
}

/// Where a listener's records go: its stream, and whether the syslog rules may send a
/// record elsewhere (syslog TCP, UDP and RELP listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest {
    /// Index of the stream (in the `streams` setting's order; 0 is the default).
    pub stream: usize,
    /// Apply `syslog_stream_rules`.
    pub syslog_rules: bool,
}

/// One destination's share of a batch.
#[derive(Debug)]
pub struct Part {
    /// The log: its index over all streams' partitions (`Router::log_index`).
    pub log: usize,
    /// Its framed records.
    pub frames: BytesMut,
    /// How many.
    pub records: u32,
}

#[derive(Debug)]
struct RouteStream {
    name: String,
    key: String,
    /// Index of its partition 0 among all logs.
    first_log: usize,
    partitions: u32,
}

/// Every stream's partitions' appenders, and the placement that chooses among them.
#[derive(Debug)]
pub struct Router {
    placement: Placement,
    appenders: Vec<Appender>,
}

impl Router {
    /// A router over `appenders`, one per partition, stream by stream in `specs`' order.
    ///
    /// # Panics
    /// If the appenders do not match the specs, or a rule names an unknown stream (the
    /// settings' check refuses both first).
    pub fn new(specs: &StreamSpecs, rules: &SyslogRules, appenders: Vec<Appender>) -> Router {
        let placement = Placement::new(specs, rules);
        assert_eq!(
            placement.logs(),
            appenders.len(),
            "one appender per partition"
        );
        Router {
            placement,
            appenders,
        }
    }

    /// Where records go, without the appenders.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The index of the stream named `name`.
    pub fn stream(&self, name: &str) -> Option<usize> {
        self.placement.stream(name)
    }

    /// The appender of log `log`.
    pub fn appender(&self, log: usize) -> &Appender {
        &self.appenders[log]
    }

    /// [`Placement::split`].
    pub fn split(&self, dest: Dest, frames: BytesMut, records: u32, hint: u64) -> Vec<Part> {
        self.placement.split(dest, frames, records, hint)
    }
}

/// Which log each record goes to: the streams' partition counts and keys, and the
/// syslog rules. Sans-I/O (no appenders), so it is tested and measured on its own.
#[derive(Debug)]
pub struct Placement {
    streams: Vec<RouteStream>,
    /// `(field, value, stream index)`, tried in order.
    rules: Vec<(RuleField, String, usize)>,
}

impl Placement {
    /// The placement `specs` and `rules` describe.
    ///
    /// # Panics
    /// If a rule names an unknown stream (the settings' check refuses that first).
    pub fn new(specs: &StreamSpecs, rules: &SyslogRules) -> Placement {
        let mut streams = Vec::new();
        let mut first_log = 0;
        for s in &specs.0 {
            streams.push(RouteStream {
                name: s.name.clone(),
                key: s.key.clone(),
                first_log,
                partitions: s.partitions,
            });
            first_log += s.partitions as usize;
        }
        let rules = rules
            .0
            .iter()
            .map(|r| {
                let (i, _) = specs.find(&r.stream).expect("rules name known streams");
                (r.field, r.value.clone(), i)
            })
            .collect();
        Placement { streams, rules }
    }

    /// Logs over all streams: the partitions, counted.
    pub fn logs(&self) -> usize {
        self.streams
            .last()
            .map_or(0, |s| s.first_log + s.partitions as usize)
    }

    /// The index of the stream named `name`.
    pub fn stream(&self, name: &str) -> Option<usize> {
        self.streams.iter().position(|s| s.name == name)
    }

    /// The name of stream `i`.
    pub fn stream_name(&self, i: usize) -> &str {
        &self.streams[i].name
    }

    /// The index over all logs of `stream`'s partition `partition`.
    pub fn log_index(&self, stream: usize, partition: u32) -> usize {
        let s = &self.streams[stream];
        assert!(partition < s.partitions);
        s.first_log + partition as usize
    }

    /// Whether a batch for `dest` goes whole to one log without reading its records.
    fn whole(&self, dest: Dest) -> bool {
        self.streams[dest.stream].partitions == 1 && (!dest.syslog_rules || self.rules.is_empty())
    }

    /// Splits a batch of framed records for `dest` by destination log. `hint` places
    /// records without a key (a connection's number: its keyless records stay
    /// together, in order, in one partition). Parts keep the batch's record order.
    pub fn split(&self, dest: Dest, frames: BytesMut, records: u32, hint: u64) -> Vec<Part> {
        if self.whole(dest) {
            let log = self.streams[dest.stream].first_log;
            return vec![Part {
                log,
                frames,
                records,
            }];
        }
        if records == 0 {
            return Vec::new();
        }
        let mut logs = Vec::with_capacity(records as usize);
        let mut pos = 0;
        while pos < frames.len() {
            let len = u32::from_le_bytes(frames[pos + 12..pos + 16].try_into().expect("4 bytes"))
                as usize;
            let end = pos + RECORD_HEADER_BYTES + len;
            logs.push((
                self.log_of(dest, &frames[pos + RECORD_HEADER_BYTES..end], hint),
                end,
            ));
            pos = end;
        }
        debug_assert_eq!(logs.len(), records as usize);
        if logs.iter().all(|(l, _)| *l == logs[0].0) {
            return vec![Part {
                log: logs[0].0,
                frames,
                records,
            }];
        }
        // Each part's buffer holds exactly its records: the parts wait in their
        // partitions' rings, and a buffer the size of the whole batch per part would
        // multiply the memory a batch holds by the partitions it spans.
        let mut slot_of = vec![usize::MAX; self.logs()];
        let mut sizes: Vec<(usize, usize, u32)> = Vec::new(); // (log, bytes, records)
        let mut start = 0;
        for &(log, end) in &logs {
            if slot_of[log] == usize::MAX {
                slot_of[log] = sizes.len();
                sizes.push((log, 0, 0));
            }
            let s = &mut sizes[slot_of[log]];
            s.1 += end - start;
            s.2 += 1;
            start = end;
        }
        let mut parts: Vec<Part> = sizes
            .iter()
            .map(|&(log, bytes, records)| Part {
                log,
                frames: BytesMut::with_capacity(bytes),
                records,
            })
            .collect();
        let mut start = 0;
        for (log, end) in logs {
            parts[slot_of[log]]
                .frames
                .extend_from_slice(&frames[start..end]);
            start = end;
        }
        parts
    }

    /// The log one record goes to.
    fn log_of(&self, dest: Dest, payload: &[u8], hint: u64) -> usize {
        let mut stream = dest.stream;
        if dest.syslog_rules && !self.rules.is_empty() {
            let [facility, app, _] = fields_of(payload, &["facility", "service"]);
            if let Some((_, _, i)) = self.rules.iter().find(|(f, v, _)| {
                let got = match f {
                    RuleField::Facility => &facility,
                    RuleField::App => &app,
                };
                got.as_deref() == Some(v.as_str())
            }) {
                stream = *i;
            }
        }
        let s = &self.streams[stream];
        if s.partitions == 1 {
            return s.first_log;
        }
        let [key, _, _] = fields_of(payload, &[s.key.as_str()]);
        let p = match key {
            Some(k) => partition_of(k.as_bytes(), s.partitions),
            None => (hint % u64::from(s.partitions)) as u32,
        };
        s.first_log + p as usize
    }
}

/// The string values of the top-level fields `names` of a JSON object record (numbers
/// and booleans as their JSON text); `None` for a field that is absent, null, an object
/// or an array, and for every field of a record that is not a JSON object.
pub fn fields_of(payload: &[u8], names: &[&str]) -> [Option<String>; 3] {
    assert!(names.len() <= 3);
    let mut out = [None, None, None];
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return out;
    }
    let mut de = serde_json::Deserializer::from_slice(payload);
    let _ = serde::Deserializer::deserialize_map(
        &mut de,
        Fields {
            names,
            out: &mut out,
        },
    );
    out
}

struct Fields<'a, 'o> {
    names: &'a [&'a str],
    out: &'o mut [Option<String>; 3],
}

impl<'de> Visitor<'de> for Fields<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = 0;
        while let Some(which) = map.next_key_seed(KeySeed(self.names))? {
            match which {
                Some(i) if self.out[i].is_none() => {
                    self.out[i] = match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::String(s) => Some(s),
                        v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                            Some(v.to_string())
                        }
                        _ => None,
                    };
                    found += 1;
                    if found == self.names.len() {
                        // Everything wanted is found: the rest need not be read.
                        return Ok(());
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key compared with the wanted names without allocating.
struct KeySeed<'a>(&'a [&'a str]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|n| *n == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a32_matches_the_published_vectors() {
        // From the FNV reference test suite (Landon Curt Noll, fnv/test_fnv.c) and
        // Go's hash/fnv tests.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
        assert_eq!(fnv1a32(b"hello"), 0x4f9f_2cab);
        assert_eq!(partition_of(b"foobar", 4), 0xbf9c_f968 % 4);
    }

    fn batch(payloads: &[&str]) -> (BytesMut, u32) {
        let mut b = crate::wal::BatchBuilder::new(1 << 16, 1 << 16);
        for (i, p) in payloads.iter().enumerate() {
            b.push(i as u64, p.as_bytes()).unwrap();
        }
        b.take()
    }

    fn payloads(part: &Part) -> Vec<String> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < part.frames.len() {
            let crate::wal::format::Decoded::Record(r) =
                crate::wal::format::decode_record(&part.frames[pos..], 1 << 16)
            else {
                panic!("a frame copied whole decodes");
            };
            out.push(String::from_utf8(r.payload.to_vec()).unwrap());
            pos += r.frame_bytes();
        }
        assert_eq!(out.len(), part.records as usize);
        out
    }

    #[test]
    fn batches_split_by_key_keep_each_partitions_order() {
        let specs: StreamSpecs = "audit:partitions=4".parse().unwrap();
        let p = Placement::new(&specs, &SyslogRules::default());
        assert_eq!(p.logs(), 5);
        let dest = Dest {
            stream: 1,
            syslog_rules: false,
        };
        let recs: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"service":"s{}","i":{i}}}"#, i % 9))
            .collect();
        let refs: Vec<&str> = recs.iter().map(String::as_str).collect();
        let (frames, n) = batch(&refs);
        let parts = p.split(dest, frames, n, 7);
        let mut total = 0;
        for part in &parts {
            let got = payloads(part);
            total += got.len();
            for r in &got {
                let v: serde_json::Value = serde_json::from_str(r).unwrap();
                let key = v["service"].as_str().unwrap();
                assert_eq!(part.log, 1 + partition_of(key.as_bytes(), 4) as usize);
            }
            let is: Vec<u64> = got
                .iter()
                .map(|r| {
                    serde_json::from_str::<serde_json::Value>(r).unwrap()["i"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            assert!(is.windows(2).all(|w| w[0] < w[1]), "order kept: {is:?}");
        }
        assert_eq!(total, 40);
        // Keyless records follow the hint; one destination keeps the batch's buffer.
        let (frames, n) = batch(&["a", "b", "c"]);
        let parts = p.split(dest, frames, n, 6);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].log, 1 + 6 % 4);
        assert_eq!(payloads(&parts[0]), ["a", "b", "c"]);
        // The default stream of one partition: whole, unread.
        let (frames, n) = batch(&["x"]);
        let parts = p.split(
            Dest {
                stream: 0,
                syslog_rules: true,
            },
            frames,
            n,
            3,
        );
        assert_eq!((parts.len(), parts[0].log), (1, 0));
    }

    #[test]
    fn syslog_rules_move_records_to_their_stream() {
        let specs: StreamSpecs = "audit; web:partitions=2,key=host".parse().unwrap();
        let rules: SyslogRules = "facility=local0:audit; app=nginx:web".parse().unwrap();
        let p = Placement::new(&specs, &rules);
        let dest = Dest {
            stream: 0,
            syslog_rules: true,
        };
        let (frames, n) = batch(&[
            r#"{"service":"x","facility":"local0"}"#,
            r#"{"service":"nginx","facility":"user","host":"h1"}"#,
            r#"{"service":"sshd","facility":"user"}"#,
        ]);
        let parts = p.split(dest, frames, n, 0);
        let logs: Vec<usize> = parts.iter().map(|p| p.log).collect();
        let web = 2 + partition_of(b"h1", 2) as usize;
        assert_eq!(logs, [1, web, 0]);
        // Without rules in play (a non-syslog listener), the rules are not applied.
        let (frames, n) = batch(&[r#"{"facility":"local0"}"#]);
        let parts = p.split(
            Dest {
                stream: 0,
                syslog_rules: false,
            },
            frames,
            n,
            0,
        );
        assert_eq!(parts[0].log, 0);
    }

    #[test]
    fn fields_are_found_in_objects_only() {
        let f = fields_of(
            br#"{"a":{"service":"x"},"service":"api","n":7,"facility":"local0"}"#,
            &["service", "facility", "n"],
        );
        assert_eq!(f[0].as_deref(), Some("api"));
        assert_eq!(f[1].as_deref(), Some("local0"));
        assert_eq!(f[2].as_deref(), Some("7"));
        let f = fields_of(br#"{"service":"a\"b"}"#, &["service"]);
        assert_eq!(f[0].as_deref(), Some("a\"b"));
        assert_eq!(fields_of(b"plain line", &["service"])[0], None);
        assert_eq!(fields_of(br#"{"service":null}"#, &["service"])[0], None);
        assert_eq!(
            fields_of(br#"{"service":"x""#, &["service"])[0].as_deref(),
            Some("x")
        );
        assert_eq!(fields_of(b"{broken", &["service"])[0], None);
    }
}
