//! The `streams` and `syslog_stream_rules` settings: which streams exist, how many
//! partitions each has and what keys them, and which syslog messages go to which
//! stream. Both are strings (one grammar for the file, the environment and the flag),
//! parsed once at start and checked by `StreamSpecs::check`.

use std::{fmt, str::FromStr};

use crate::config::ChoiceError;

/// The stream every listener writes to unless told otherwise; it always exists, and
/// its partition 0 is the data directory itself (the layout of a single-log server).
pub const DEFAULT_STREAM: &str = "default";

/// The record field whose value keys a stream's partitions unless `key=` says otherwise.
pub const DEFAULT_PARTITION_KEY: &str = "service";

/// Longest stream name, in bytes: names are directory names and parts of NATS subjects.
pub const STREAM_NAME_BYTES_MAX: usize = 64;

/// One stream: its name, partitions, key and retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// `[a-z][a-z0-9_-]*`, at most [`STREAM_NAME_BYTES_MAX`] bytes.
    pub name: String,
    /// Partitions, each its own log; fixed for the life of the stream's directory.
    pub partitions: u32,
    /// Top-level field of a JSON record whose string value is the partition key.
    pub key: String,
    /// The stream's own `retention_bytes_max` (per partition); `None` = the global one.
    pub retention_bytes_max: Option<u64>,
    /// The stream's own `retention_ms`; `None` = the global one.
    pub retention_ms: Option<u64>,
}

impl StreamSpec {
    fn named(name: &str) -> StreamSpec {
        StreamSpec {
            name: name.to_owned(),
            partitions: 1,
            key: DEFAULT_PARTITION_KEY.to_owned(),
            retention_bytes_max: None,
            retention_ms: None,
        }
    }
}

/// The `streams` setting: `name[:opt=value[,opt=value]...]` entries separated by `;`,
/// options `partitions`, `key`, `retention_bytes_max`, `retention_ms`. The default
/// stream is always first, whether it is written or not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamSpecs(pub Vec<StreamSpec>);

impl Default for StreamSpecs {
    fn default() -> Self {
        StreamSpecs(vec![StreamSpec::named(DEFAULT_STREAM)])
    }
}

/// Whether `name` may name a stream. Names beginning with `spare` are kept for the
/// default stream's pre-written segments (`spare-<n>.seg` in `data_dir`, beside the
/// streams' directories).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && !name.starts_with("spare")
        && b.len() <= STREAM_NAME_BYTES_MAX
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn bad(given: &str, expected: &'static str) -> ChoiceError {
    ChoiceError {
        expected,
        given: given.to_owned(),
    }
}

const GRAMMAR: &str = "streams as `name[:partitions=N,key=FIELD,retention_bytes_max=B,retention_ms=MS]` separated by `;`, names [a-z][a-z0-9_-]* of at most 64 bytes not beginning with `spare`, each once";

impl FromStr for StreamSpecs {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        let mut specs = StreamSpecs::default();
        for entry in s.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, opts) = entry.split_once(':').unwrap_or((entry, ""));
            let name = name.trim();
            if !valid_name(name) {
                return Err(bad(entry, GRAMMAR));
            }
            let mut spec = StreamSpec::named(name);
            for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                let (k, v) = opt.split_once('=').ok_or_else(|| bad(opt, GRAMMAR))?;
                let (k, v) = (k.trim(), v.trim());
                let num = |v: &str| v.parse::<u64>().map_err(|_| bad(opt, GRAMMAR));
                match k {
                    "partitions" => {
                        spec.partitions = u32::try_from(num(v)?).map_err(|_| bad(opt, GRAMMAR))?
                    }
                    "key" if !v.is_empty() => spec.key = v.to_owned(),
                    "retention_bytes_max" => spec.retention_bytes_max = Some(num(v)?),
                    "retention_ms" => spec.retention_ms = Some(num(v)?),
                    _ => return Err(bad(opt, GRAMMAR)),
                }
            }
            if spec.partitions == 0 {
                return Err(bad(entry, "streams with at least 1 partition"));
            }
            if name == DEFAULT_STREAM {
                specs.0[0] = spec;
            } else if specs.0.iter().any(|s| s.name == name) {
                return Err(bad(entry, GRAMMAR));
            } else {
                specs.0.push(spec);
            }
        }
        Ok(specs)
    }
}

impl TryFrom<String> for StreamSpecs {
    type Error = ChoiceError;
    fn try_from(s: String) -> Result<Self, ChoiceError> {
        s.parse()
    }
}

impl fmt::Display for StreamSpecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            let plain = s.partitions == 1
                && s.key == DEFAULT_PARTITION_KEY
                && s.retention_bytes_max.is_none()
                && s.retention_ms.is_none();
            if s.name == DEFAULT_STREAM && plain {
                continue;
            }
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}:partitions={}", s.name, s.partitions)?;
            if s.key != DEFAULT_PARTITION_KEY {
                write!(f, ",key={}", s.key)?;
            }
            if let Some(b) = s.retention_bytes_max {
                write!(f, ",retention_bytes_max={b}")?;
            }
            if let Some(ms) = s.retention_ms {
                write!(f, ",retention_ms={ms}")?;
            }
        }
        Ok(())
    }
}

impl From<StreamSpecs> for String {
    fn from(s: StreamSpecs) -> String {
        s.to_string()
    }
}

impl StreamSpecs {
    /// The stream named `name`, with its index.
    pub fn find(&self, name: &str) -> Option<(usize, &StreamSpec)> {
        self.0.iter().enumerate().find(|(_, s)| s.name == name)
    }

    /// Partitions over all streams.
    pub fn partitions_total(&self) -> u64 {
        self.0.iter().map(|s| u64::from(s.partitions)).sum()
    }
}

/// What a syslog rule matches on: the rendered record's `facility` (a name such as
/// `local0`) or its `service` (APP-NAME, or the RFC 3164 TAG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleField {
    /// `facility=NAME`
    Facility,
    /// `app=NAME`
    App,
}

/// One rule: records whose field equals `value` go to `stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogRule {
    /// The field compared.
    pub field: RuleField,
    /// The value it must equal, exactly.
    pub value: String,
    /// Where matching records go.
    pub stream: String,
}

/// The `syslog_stream_rules` setting: `facility=NAME:STREAM` or `app=NAME:STREAM` rules
/// separated by `;`, tried in order; the first that matches a syslog record (TCP, UDP
/// or RELP) names its stream, and a record no rule matches goes to its listener's.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SyslogRules(pub Vec<SyslogRule>);

const RULES_GRAMMAR: &str = "rules as `facility=NAME:STREAM` or `app=NAME:STREAM` separated by `;`";

impl FromStr for SyslogRules {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        let mut rules = Vec::new();
        for entry in s.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (matcher, stream) = entry
                .rsplit_once(':')
                .ok_or_else(|| bad(entry, RULES_GRAMMAR))?;
            let (field, value) = matcher
                .split_once('=')
                .ok_or_else(|| bad(entry, RULES_GRAMMAR))?;
            let field = match field.trim() {
                "facility" => RuleField::Facility,
                "app" => RuleField::App,
                _ => return Err(bad(entry, RULES_GRAMMAR)),
            };
            let (value, stream) = (value.trim(), stream.trim());
            if value.is_empty() || !valid_name(stream) {
                return Err(bad(entry, RULES_GRAMMAR));
            }
            rules.push(SyslogRule {
                field,
                value: value.to_owned(),
                stream: stream.to_owned(),
            });
        }
        Ok(SyslogRules(rules))
    }
}

impl TryFrom<String> for SyslogRules {
    type Error = ChoiceError;
    fn try_from(s: String) -> Result<Self, ChoiceError> {
        s.parse()
    }
}

impl From<SyslogRules> for String {
    fn from(r: SyslogRules) -> String {
        r.0.iter()
            .map(|r| {
                let f = match r.field {
                    RuleField::Facility => "facility",
                    RuleField::App => "app",
                };
                format!("{f}={}:{}", r.value, r.stream)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_parse_print_and_refuse() {
        let s: StreamSpecs =
            "audit:partitions=4,retention_bytes_max=1048576; web:key=host,retention_ms=60000"
                .parse()
                .unwrap();
        assert_eq!(s.0.len(), 3);
        assert_eq!(s.0[0].name, "default");
        assert_eq!(s.0[1].partitions, 4);
        assert_eq!(s.0[1].retention_bytes_max, Some(1 << 20));
        assert_eq!(s.0[2].key, "host");
        assert_eq!(s.0[2].retention_ms, Some(60_000));
        assert_eq!(s.partitions_total(), 6);
        let again: StreamSpecs = s.to_string().parse().unwrap();
        assert_eq!(again, s);
        let d: StreamSpecs = "default:partitions=2".parse().unwrap();
        assert_eq!(d.0.len(), 1);
        assert_eq!(d.0[0].partitions, 2);
        assert_eq!(StreamSpecs::default().to_string(), "");
        for bad in [
            "Audit",
            "9x",
            "a:partitions=0",
            "a:partitions=x",
            "a:colour=red",
            "a;a",
            "a b",
            "spare-logs",
            &"x".repeat(65),
        ] {
            assert!(bad.parse::<StreamSpecs>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_parse_and_refuse() {
        let r: SyslogRules = "facility=local0:audit; app=nginx:web".parse().unwrap();
        assert_eq!(r.0.len(), 2);
        assert_eq!(r.0[0].field, RuleField::Facility);
        assert_eq!(r.0[1].value, "nginx");
        assert_eq!(r.0[1].stream, "web");
        assert_eq!(String::from(r.clone()).parse::<SyslogRules>().unwrap(), r);
        for bad in ["host=a:b", "app=:b", "app=a", "app=a:B"] {
            assert!(bad.parse::<SyslogRules>().is_err(), "{bad}");
        }
    }
}
