//! Subscription and read parameters, and the record filter: sans-I/O, shared by the
//! WebSocket endpoint (`/v1/stream`) and the read API (`GET /v1/logs`).
//!
//! Query syntax (`application/x-www-form-urlencoded`, `+` is a space):
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `from` | `earliest`, `latest` or an offset | first record wanted |
//! | `limit` | 1..=`read_records_max` (read API only) | most records returned |
//! | `service` | comma-separated names | JSON records whose `"service"` is one of them |
//! | `level` | comma-separated levels | JSON records whose `"level"` is one of them (ASCII case-insensitive) |
//! | `q` | text | records whose payload contains it (bytes, case-sensitive) |
//! | `since` | RFC 3339 time or Unix seconds | records received at or after it |
//! | `until` | RFC 3339 time or Unix seconds | records received before it |
//!
//! Times (see [`parse_time`]): RFC 3339 with a fraction and an offset allowed
//! (`2026-12-06T11:00:00Z`, `2026-12-06T12:00:00.5+01:00`), or Unix time in seconds,
//! integer or fractional (`1765018800`, `1765018800.25`). A record's time is its
//! receive time (`ts`). `since` with `from`: both hold (the later start wins).
//!
//! Unknown keys, repeated keys, malformed values and empty pairs (`&&`, a leading or
//! trailing `&`, a pair with no name such as `=`) are refused; empty values are
//! ignored (a form's empty selector means "any").

use std::borrow::Cow;

/// Where a cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest stored record.
    Earliest,
    /// The committed end at subscription time: only records committed afterwards.
    Latest,
    /// This offset (clamped up to the oldest stored record).
    Offset(u64),
}

/// Which records a subscriber or reader wants. Empty = every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Accepted `"service"` values; empty = any.
    services: Vec<String>,
    /// Accepted `"level"` values, lower-cased; empty = any.
    levels: Vec<String>,
    /// Substring the payload must contain.
    q: Option<Vec<u8>>,
    /// Records received before this (ns since the epoch) are refused.
    since_ns: Option<u64>,
    /// Records received at or after this are refused.
    until_ns: Option<u64>,
    /// `time_skew_ms_max` in ns: a scan with `until` stops once a record was received
    /// this much after `until` (see [`Filter::until_stop_ns`]).
    skew_ns: u64,
}

impl Filter {
    /// True if the filter lets every record through.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.levels.is_empty()
            && self.q.is_none()
            && !self.has_time_range()
    }

    /// True if the filter bounds receive times (`since`, `until`).
    pub fn has_time_range(&self) -> bool {
        self.since_ns.is_some() || self.until_ns.is_some()
    }

    /// `since`, in ns since the epoch.
    pub fn since_ns(&self) -> Option<u64> {
        self.since_ns
    }

    /// `until`, in ns since the epoch.
    pub fn until_ns(&self) -> Option<u64> {
        self.until_ns
    }

    /// Sets the skew bound (`time_skew_ms_max`) that decides where an `until` scan stops.
    pub fn set_time_skew_ms(&mut self, ms: u64) {
        self.skew_ns = ms.saturating_mul(1_000_000);
    }

    /// Sets the time range (for `cat`, which has no query string).
    pub fn set_time_range(&mut self, since_ns: Option<u64>, until_ns: Option<u64>) {
        self.since_ns = since_ns;
        self.until_ns = until_ns;
    }

    /// Sets the substring filter (for `cat --grep`).
    pub fn set_substring(&mut self, q: Option<Vec<u8>>) {
        self.q = q;
    }

    /// Sets the service and level lists (for `cat --service`, `--level`).
    pub fn set_fields(&mut self, services: Vec<String>, levels: Vec<String>) {
        self.services = services;
        self.levels = levels.into_iter().map(|l| l.to_ascii_lowercase()).collect();
    }

    /// Where a scan with `until` stops: a record received after `until` +
    /// `time_skew_ms_max`. Receive times are only nearly monotonic in log order (each
    /// producer stamps its own), so records just after one past `until` may still be
    /// before it; past the skew bound none is expected (the writer counts any that
    /// is, `time_skew_exceeded_total`).
    pub fn until_stop_ns(&self) -> Option<u64> {
        self.until_ns.map(|u| u.saturating_add(self.skew_ns))
    }

    /// Whether a record received at `ts` is in the time range.
    pub fn matches_time(&self, ts: u64) -> bool {
        self.since_ns.is_none_or(|s| ts >= s) && self.until_ns.is_none_or(|u| ts < u)
    }

    /// True if the filter needs the record's `service`/`level` fields.
    pub fn needs_fields(&self) -> bool {
        !self.services.is_empty() || !self.levels.is_empty()
    }

    /// Whether a record with this payload and these JSON fields passes.
    pub fn matches(&self, payload: &[u8], service: Option<&str>, level: Option<&str>) -> bool {
        if !self.services.is_empty()
            && !service.is_some_and(|s| self.services.iter().any(|x| x == s))
        {
            return false;
        }
        if !self.levels.is_empty()
            && !level.is_some_and(|l| self.levels.iter().any(|x| x.eq_ignore_ascii_case(l)))
        {
            return false;
        }
        if let Some(q) = &self.q {
            return memchr::memmem::find(payload, q).is_some();
        }
        true
    }
}

/// Parses a time parameter: RFC 3339 (`2026-12-06T11:00:00Z`, a fraction and an
/// offset allowed) or Unix time in seconds (`1765018800`, `1765018800.25`), to ns since
/// the epoch. `name` names the parameter in the error.
///
/// # Errors
/// A [`QueryError`] naming the parameter, for anything else, and for times before 1970
/// or after 2554-07-21T23:34:33.709551615Z (beyond a u64 of ns), in either form.
pub fn parse_time(name: &str, v: &str) -> Result<u64, QueryError> {
    let refuse = || {
        bad(format!(
            "{name} must be an RFC 3339 time (2026-12-06T11:00:00Z) or Unix seconds (1765018800.5), not {v:?}"
        ))
    };
    if v.bytes().next().is_some_and(|b| b.is_ascii_digit()) && !v.contains(['-', ':']) {
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (v.contains('.') && frac.is_empty())
        {
            return Err(refuse());
        }
        let secs: u64 = int.parse().map_err(|_| refuse())?;
        // Nanoseconds: the first nine digits of the fraction, the rest dropped.
        let mut ns = 0u64;
        for i in 0..9 {
            ns = ns * 10 + frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        }
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(ns))
            .ok_or_else(refuse);
    }
    let t = chrono::DateTime::parse_from_rfc3339(v).map_err(|_| refuse())?;
    // Through seconds and nanoseconds into u64, not chrono's i64 of ns (which ends in
    // 2262): both forms reach the same limit, 2554 (the last u64 of ns).
    u64::try_from(t.timestamp())
        .ok()
        .and_then(|s| s.checked_mul(1_000_000_000))
        .and_then(|s| s.checked_add(u64::from(t.timestamp_subsec_nanos())))
        .ok_or_else(refuse)
}

/// Parsed query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Where to start; `None` if not given (the caller picks its default).
    pub start: Option<Start>,
    /// `limit`, if given (read API only).
    pub limit: Option<usize>,
    /// The filter.
    pub filter: Filter,
    /// How a subscription's messages are encoded (stream only).
    pub encoding: Encoding,
    /// The stream read (`stream=`); `None` = the default stream.
    pub stream: Option<String>,
    /// The partition read (`partition=`); `None` = partition 0 of a stream of one, or
    /// (subscriptions) every partition of the stream, merged.
    pub partition: Option<u32>,
    /// `from=<partition>:<offset>,...` (subscriptions only): where each named
    /// partition starts, in the order given; `start` is then `None`. How a merged
    /// subscription resumes, since each partition has its own offsets.
    pub start_partitions: Option<Vec<(u32, Start)>>,
}

/// The encoding of a subscription's messages (`format=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Text messages of JSON (`format=json`, the default): for browsers and scripts.
    #[default]
    Json,
    /// Binary messages carrying the record frames exactly as stored in the segments
    /// (`format=binary`): nothing is rendered or escaped, for consumers that want
    /// every record at high rates (`docs/protocol.md`).
    Binary,
}

/// A refused query: the error code and a detail for the 400 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// `bad_request` or `filter_too_long`.
    pub code: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

fn bad(detail: impl Into<String>) -> QueryError {
    QueryError {
        code: "bad_request",
        detail: detail.into(),
    }
}

/// Decodes `%XX` escapes and `+` (form encoding). Invalid escapes are refused.
///
/// # Errors
/// A malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Result<Cow<'_, str>, QueryError> {
    if !s.contains(['%', '+']) {
        return Ok(Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad(format!("malformed percent escape in {s:?}")))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| bad(format!("{s:?} does not decode to UTF-8")))
}

/// Parses a query string. `allow_limit` is true for the read API; `limit_max` bounds
/// `limit`; `filter_bytes_max` bounds the decoded service + level + q.
///
/// # Errors
/// A [`QueryError`] naming the parameter.
pub fn parse(
    query: &str,
    allow_limit: bool,
    limit_max: usize,
    filter_bytes_max: usize,
) -> Result<Query, QueryError> {
    let mut q = Query {
        start: None,
        limit: None,
        filter: Filter::default(),
        encoding: Encoding::Json,
        stream: None,
        partition: None,
        start_partitions: None,
    };
    let mut seen: Vec<String> = Vec::new();
    let mut filter_bytes = 0usize;
    if query.len() > filter_bytes_max.saturating_mul(3) + 256 {
        return Err(QueryError {
            code: "filter_too_long",
            detail: format!("query string exceeds filter_bytes_max ({filter_bytes_max} bytes)"),
        });
    }
    // An empty query string has no pairs; a non-empty one has no empty pair.
    for pair in query.split('&').filter(|_| !query.is_empty()) {
        if pair.is_empty() || pair.starts_with('=') {
            return Err(bad(format!(
                "empty query pair {pair:?} (from `&&`, a leading or trailing `&`, or a pair with no name)"
            )));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k)?;
        let v = percent_decode(v)?;
        if seen.iter().any(|s| *s == k) {
            return Err(bad(format!("parameter {k:?} given twice")));
        }
        seen.push(k.to_string());
        if v.is_empty() {
            continue;
        }
        filter_bytes += set(&mut q, &k, &v, allow_limit, limit_max)?;
    }
    if filter_bytes > filter_bytes_max {
        return Err(QueryError {
            code: "filter_too_long",
            detail: format!(
                "service + level + q are {filter_bytes} bytes, over filter_bytes_max ({filter_bytes_max})"
            ),
        });
    }
    Ok(q)
}

/// Parses `from=<partition>:<start>,...`, each start an offset, `earliest` or
/// `latest`: each partition once.
fn partition_starts(v: &str) -> Result<Vec<(u32, Start)>, QueryError> {
    let mut out: Vec<(u32, Start)> = Vec::new();
    for item in v.split(',') {
        let parsed = item.split_once(':').and_then(|(p, o)| {
            let start = match o {
                "earliest" => Start::Earliest,
                "latest" => Start::Latest,
                n => Start::Offset(n.parse::<u64>().ok()?),
            };
            Some((p.parse::<u32>().ok()?, start))
        });
        let Some((p, o)) = parsed else {
            return Err(bad(format!(
                "from must be `earliest`, `latest`, an offset, or <partition>:<offset|earliest|latest>,... (e.g. 0:120,3:7,5:latest), not {v:?}"
            )));
        };
        if out.iter().any(|&(q, _)| q == p) {
            return Err(bad(format!("from names partition {p} twice")));
        }
        out.push((p, o));
    }
    Ok(out)
}

/// Sets one parameter (its value not empty) on `q`; returns the bytes it adds to the
/// filter, which `filter_bytes_max` bounds.
fn set(
    q: &mut Query,
    k: &str,
    v: &str,
    allow_limit: bool,
    limit_max: usize,
) -> Result<usize, QueryError> {
    match k {
        "from" if !allow_limit && v.contains(':') => {
            q.start_partitions = Some(partition_starts(v)?);
        }
        "from" => {
            q.start = Some(match v {
                "earliest" => Start::Earliest,
                "latest" => Start::Latest,
                n => Start::Offset(n.parse().map_err(|_| {
                    bad(format!(
                        "from must be `earliest`, `latest` or an offset, not {n:?}"
                    ))
                })?),
            });
        }
        "limit" if allow_limit => {
            let n: usize = v
                .parse()
                .ok()
                .filter(|&n| (1..=limit_max).contains(&n))
                .ok_or_else(|| bad(format!("limit must be 1..={limit_max}, not {v:?}")))?;
            q.limit = Some(n);
        }
        "service" | "level" => {
            let list: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if k == "service" {
                q.filter.services = list;
            } else {
                q.filter.levels = list.into_iter().map(|l| l.to_ascii_lowercase()).collect();
            }
            return Ok(v.len());
        }
        "format" if !allow_limit => {
            q.encoding = match v {
                "json" => Encoding::Json,
                "binary" => Encoding::Binary,
                other => {
                    return Err(bad(format!(
                        "format must be `json` or `binary`, not {other:?}"
                    )));
                }
            };
        }
        "q" => {
            q.filter.q = Some(v.as_bytes().to_vec());
            return Ok(v.len());
        }
        "since" => q.filter.since_ns = Some(parse_time("since", v)?),
        "until" => q.filter.until_ns = Some(parse_time("until", v)?),
        "stream" => {
            if !crate::streams::spec::valid_name(v) {
                return Err(bad(format!(
                    "stream must be a stream name ([a-z][a-z0-9_-]*, at most 64 bytes), not {v:?}"
                )));
            }
            q.stream = Some(v.to_owned());
        }
        "partition" => {
            q.partition =
                Some(v.parse().map_err(|_| {
                    bad(format!("partition must be a partition number, not {v:?}"))
                })?);
        }
        other => {
            let known = if allow_limit {
                "from, limit, service, level, q, since, until, stream, partition"
            } else {
                "from, service, level, q, since, until, format, stream, partition"
            };
            return Err(bad(format!("unknown parameter {other:?} (known: {known})")));
        }
    }
    Ok(0)
}

/// The `"service"` and `"level"` string fields of a JSON object record, if it is one.
/// Non-JSON records, and fields that are not strings, give `None`.
pub fn json_fields(payload: &[u8]) -> (Option<Cow<'_, str>>, Option<Cow<'_, str>>) {
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        #[serde(borrow, default)]
        service: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        level: Option<Cow<'a, str>>,
    }
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return (None, None);
    }
    match serde_json::from_slice::<Fields<'_>>(payload) {
        Ok(f) => (f.service, f.level),
        Err(_) => (None, None),
    }
}

/// Checks an `Origin` header against `ws_allowed_origins`: `*` allows any; an empty
/// setting allows requests without `Origin` (not from a browser) and origins whose host
/// is the request's `Host` host (the dashboard on the HTTP port of the same server);
/// otherwise the origin must be one of the comma-separated entries exactly.
pub fn origin_allowed(allowed: &str, origin: Option<&str>, host: Option<&str>) -> bool {
    let allowed = allowed.trim();
    if allowed == "*" {
        return true;
    }
    let Some(origin) = origin else {
        return true;
    };
    if allowed.is_empty() {
        let origin_host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        return host.is_some_and(|h| strip_port(origin_host) == strip_port(h));
    }
    allowed
        .split(',')
        .map(str::trim)
        .any(|a| a.trim_end_matches('/') == origin.trim_end_matches('/'))
}

fn strip_port(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cursor_filters_and_limits() {
        let q = parse(
            "from=42&service=api,web&level=ERROR&q=disk+full%21",
            false,
            0,
            1024,
        )
        .unwrap();
        assert_eq!(q.start, Some(Start::Offset(42)));
        assert!(
            q.filter
                .matches(b"x disk full! y", Some("api"), Some("error"))
        );
        assert!(
            !q.filter
                .matches(b"x disk full! y", Some("db"), Some("error"))
        );
        assert!(
            !q.filter
                .matches(b"x disk full! y", Some("api"), Some("info"))
        );
        assert!(!q.filter.matches(b"nothing", Some("web"), Some("Error")));
        assert!(!q.filter.matches(b"disk full!", None, Some("error")));
        let q = parse("from=latest&service=&level=", false, 0, 1024).unwrap();
        assert_eq!(q.start, Some(Start::Latest));
        assert!(q.filter.is_empty());
        assert_eq!(parse("limit=5", true, 10, 1024).unwrap().limit, Some(5));
        let q = parse("from=0:latest,2:earliest", false, 0, 1024).unwrap();
        assert_eq!(
            q.start_partitions,
            Some(vec![(0, Start::Latest), (2, Start::Earliest)])
        );
        assert!(parse("from=0:soon", false, 0, 1024).is_err());
        let q = parse("from=0:120,3:7", false, 0, 1024).unwrap();
        assert_eq!(q.start, None);
        assert_eq!(
            q.start_partitions,
            Some(vec![(0, Start::Offset(120)), (3, Start::Offset(7))])
        );
        // The read API reads one partition: an offset, not a list.
        assert!(parse("from=0:120", true, 10, 1024).is_err());
    }

    #[test]
    fn refuses_bad_parameters() {
        for bad_q in [
            "from=abc",
            "from=-1",
            "from=0:1,0:2",
            "from=0:",
            "from=0:1,",
            "from=x:1",
            "limit=5",
            "bogus=1",
            "from=1&from=2",
            "q=%zz",
            "q=%ff",
            "from=1&&q=x",
            "&from=1",
            "from=1&",
            "&",
            "=",
            "=1",
        ] {
            let e = parse(bad_q, false, 10, 1024).unwrap_err();
            assert_eq!(e.code, "bad_request", "{bad_q}: {e:?}");
        }
        assert_eq!(
            parse("limit=11", true, 10, 1024).unwrap_err().code,
            "bad_request"
        );
        assert_eq!(
            parse("limit=0", true, 10, 1024).unwrap_err().code,
            "bad_request"
        );
        let long = format!("q={}", "a".repeat(100));
        assert_eq!(
            parse(&long, false, 0, 64).unwrap_err().code,
            "filter_too_long"
        );
    }

    #[test]
    fn times_parse_as_rfc3339_or_unix_seconds() {
        let t = |v: &str| parse_time("since", v);
        assert_eq!(t("2026-12-06T11:00:00Z"), Ok(1_796_554_800_000_000_000));
        assert_eq!(
            t("2026-12-06T12:00:00.5+01:00"),
            Ok(1_796_554_800_500_000_000)
        );
        assert_eq!(
            t("2026-12-06t11:00:00.123456789z"),
            Ok(1_796_554_800_123_456_789)
        );
        assert_eq!(t("1796554800"), Ok(1_796_554_800_000_000_000));
        assert_eq!(t("1796554800.25"), Ok(1_796_554_800_250_000_000));
        assert_eq!(t("0.0000000019"), Ok(1));
        // Past chrono's i64 of ns (2262), up to the last u64 of ns, in both forms.
        assert_eq!(t("2300-01-01T00:00:00Z"), Ok(10_413_792_000_000_000_000));
        assert_eq!(t("2554-07-21T23:34:33.709551615Z"), Ok(u64::MAX));
        assert_eq!(t("18446744073.709551615"), Ok(u64::MAX));
        for bad_v in [
            "2554-07-21T23:34:33.709551616Z",
            "18446744073.709551616",
            "2600-01-01T00:00:00Z",
        ] {
            assert!(t(bad_v).is_err(), "{bad_v}");
        }
        for bad_v in [
            "yesterday",
            "2026-12-06",
            "2026-12-06T11:00:00",
            "1969-12-31T23:59:59Z",
            "-5",
            "1.",
            ".5",
            "1e9",
            "99999999999999999999",
            "1 ",
        ] {
            let e = t(bad_v).unwrap_err();
            assert_eq!(e.code, "bad_request");
            assert!(e.detail.starts_with("since must be"), "{bad_v}: {e:?}");
        }
        let q = parse("since=1000&until=2000.5", true, 10, 1024).unwrap();
        assert_eq!(q.filter.since_ns(), Some(1000 * 1_000_000_000));
        assert!(!q.filter.is_empty());
        assert!(q.filter.matches_time(1000 * 1_000_000_000));
        assert!(!q.filter.matches_time(1000 * 1_000_000_000 - 1));
        assert!(!q.filter.matches_time(2_000_500_000_000));
        assert!(q.filter.matches_time(2_000_499_999_999));
        let e = parse("until=noon", false, 0, 1024).unwrap_err();
        assert!(e.detail.starts_with("until must be"), "{e:?}");
    }

    #[test]
    fn json_fields_of_records() {
        let (s, l) = json_fields(br#"{"service":"api","level":"warn","msg":"x"}"#);
        assert_eq!((s.as_deref(), l.as_deref()), (Some("api"), Some("warn")));
        let (s, l) = json_fields(br#"{"service":"a\"b","level":3}"#);
        assert_eq!((s.as_deref(), l.as_deref()), (None, None));
        assert_eq!(json_fields(b"plain text"), (None, None));
    }

    #[test]
    fn origin_rule() {
        assert!(origin_allowed("", None, Some("127.0.0.1:8081")));
        assert!(origin_allowed(
            "",
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8081")
        ));
        assert!(!origin_allowed(
            "",
            Some("http://evil.example"),
            Some("127.0.0.1:8081")
        ));
        assert!(origin_allowed("*", Some("http://evil.example"), None));
        assert!(origin_allowed(
            "https://a.example, https://b.example",
            Some("https://b.example"),
            None
        ));
        assert!(!origin_allowed(
            "https://a.example",
            Some("https://c.example"),
            None
        ));
    }
}
