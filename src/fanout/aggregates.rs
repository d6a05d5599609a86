//! Server-side aggregates for the dashboard and `GET /v1/aggregates`: per-second and
//! per-minute counts of committed records by level and by service, payload bytes,
//! ack latency histograms, fdatasync time and disk use, over a bounded window.
//!
//! The fan-out core keeps them ([`Aggregator`], on its thread): a reader of its own
//! follows the committed end, as the window's tail does, and counts each record into
//! the bucket of its receive time. So nothing runs on the ingest path: a busy core
//! falls behind (`aggregates_lag_records` in `/stats`) and catches up later, and the
//! counts land in the seconds the records were received, not the seconds they were
//! counted. The buckets are shared with the reactors ([`Aggregates`], a mutex taken
//! once per loop turn by the fan-out core to merge what the turn counted, and once per
//! request by `/v1/aggregates` to copy the buckets asked for).
//!
//! # Bounds
//!
//! - Two rings of buckets, allocated at start: `aggregates_seconds` of one second and
//!   `aggregates_minutes` of one minute. A bucket is [`Bucket::bytes`] bytes (about
//!   660 with the default 20 services): 3.3 MB with the defaults.
//! - Services: the first `aggregates_services_max` distinct `service` values seen get a
//!   series each; later ones are counted as `other`, and how many distinct names
//!   overflowed is in `/stats` (`aggregates_services_overflowed`, exact up to
//!   64 x `aggregates_services_max`, then it stays there). A service unseen for the
//!   whole retained window gives its slot up. A name longer than
//!   `aggregates_service_bytes_max` is counted as `other` too
//!   (`aggregates_service_names_too_long_total`), so names take at most
//!   `aggregates_services_max` x `aggregates_service_bytes_max` bytes (twice: the
//!   fan-out core's map and the shared copy), and an answer names each slot once.
//! - Levels: normalised to [`LEVELS`]; unknown values are `other`, records without a
//!   level (or not JSON) `none`.
//!
//! # What counting may cost
//!
//! Reading and parsing every record costs the fan-out core more than ingest itself at
//! peak (the reader falls past the recent groups in memory and reads the segment files
//! back). So it reads and parses at most `aggregates_records_per_s_max` records a
//! second: a token bucket, refilled each turn by the time elapsed at that rate, holding
//! at most one second's worth. With more committed than its tokens cover, the
//! aggregator does not read the rest: from a commit-note boundary, it skips whole
//! groups up to the newest ones its tokens cover, and no more than half of what the
//! recent groups in memory hold (the reader reopened past them, a seek through the
//! sparse index; the records it then reads are the newest, copied from memory rather
//! than read back from the files, and keep `read_ts_ns` current) and counts them from the writer's notes, exactly: records = the offsets between two notes,
//! payload bytes = the framed bytes between them less [`RECORD_HEADER_BYTES`] a record.
//! They are counted in the second of their group's commit time (their receive times
//! are unread), under the level `unsampled` and `services_unsampled`, with no ack
//! latency sample (`ack_us.count` is the records read). Below the bound, and whenever
//! the reader keeps up within it, every record is read as before.
//!
//! # Ack latency
//!
//! For each record, the time from its receipt (the batch header's receive time) to
//! when the committed end passed it. The writer notes (committed end, time) for each
//! group just before it publishes the new end (`wal::LogView::take_commit_note`: a
//! clock read and a lock-free push, no syscall); the fan-out core, which runs at
//! `fanout_nice` and may be starved under heavy ingest, only reads those notes, so its
//! own lag does not inflate the figure. Every counted record gets a sample: when notes
//! were merged (the core fell [`crate::wal::COMMIT_NOTES_MAX`] groups behind,
//! `aggregates_commit_notes_merged_total`), or dropped here past [`COMMITS_MAX`], a
//! record takes the time of the next note (later than its own commit: an upper bound),
//! and a record no note covers takes the time the core saw it committed (later too).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use crate::{
    config::FanoutSettings,
    query::filter::json_fields,
    stats::AggregateStats,
    wal::{LogView, Reader, format::RECORD_HEADER_BYTES},
};

/// The levels records are counted under, in the order of the `levels` arrays of
/// `/v1/aggregates`.
/// `unsampled`: records counted from the writer's commit notes, unread (past
/// `aggregates_records_per_s_max`).
pub const LEVELS: [&str; 9] = [
    "trace",
    "debug",
    "info",
    "warn",
    "error",
    "fatal",
    "other",
    "none",
    "unsampled",
];
const LEVEL_OTHER: usize = 6;
const LEVEL_NONE: usize = 7;
const LEVEL_UNSAMPLED: usize = 8;

/// Latency buckets: 0-3 µs exactly, then four per power of two up to 2^27 µs (about
/// 134 s); a value is within 25 % of its bucket's upper bound.
pub const LATENCY_BUCKETS: usize = 108;

/// Commit notes the fan-out core keeps while its reader has not passed them. Past
/// it, the oldest is dropped: its records take the next note's time (an upper bound).
/// Twice the log's queue: a turn takes all of it, and the reader may be a queue behind.
pub const COMMITS_MAX: usize = 2 * crate::wal::COMMIT_NOTES_MAX;

/// Records counted per loop turn, so that subscribers are served between turns.
/// Small enough that the loop observes the committed end often (the ack latency's
/// resolution) while it catches up.
const RECORDS_PER_TURN: usize = 5_000;
/// Records counted per loop turn while subscribers can take more.
const RECORDS_PER_BUSY_TURN: usize = 1_000;

/// Percentiles reported for ack latency.
const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

/// The bucket of a latency of `us` microseconds.
pub fn latency_bucket(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize; // >= 2
    let sub = ((us >> (octave - 2)) - 4) as usize;
    (4 + (octave - 2) * 4 + sub).min(LATENCY_BUCKETS - 1)
}

/// The largest latency (µs) bucket `i` holds.
pub fn latency_upper_us(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let octave = (i - 4) / 4 + 2;
    let sub = ((i - 4) % 4) as u64;
    ((4 + sub + 1) << (octave - 2)) - 1
}

/// The index in [`LEVELS`] of a record's `level` value.
pub fn level_index(level: Option<&str>) -> usize {
    let Some(l) = level else {
        return LEVEL_NONE;
    };
    let mut buf = [0u8; 16];
    if l.len() > buf.len() {
        return LEVEL_OTHER;
    }
    buf[..l.len()].copy_from_slice(l.as_bytes());
    buf[..l.len()].make_ascii_lowercase();
    match &buf[..l.len()] {
        b"trace" | b"verbose" => 0,
        b"debug" | b"dbg" => 1,
        b"info" | b"information" | b"informational" | b"notice" => 2,
        b"warn" | b"warning" => 3,
        b"error" | b"err" => 4,
        b"fatal" | b"critical" | b"crit" | b"alert" | b"emerg" | b"emergency" | b"panic" => 5,
        _ => LEVEL_OTHER,
    }
}

/// One period's counts.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Start of the period, Unix seconds; `u64::MAX` for a bucket never used.
    pub t: u64,
    /// Records received in the period (counted once committed).
    pub records: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Records by level, indexed as [`LEVELS`].
    pub levels: [u64; LEVELS.len()],
    /// Records by service slot; the last is `other`.
    pub services: Box<[u32]>,
    /// Records counted unread (their service unknown; `levels[LEVEL_UNSAMPLED]`).
    pub services_unsampled: u64,
    /// Ack latency histogram (see [`latency_bucket`]).
    pub ack_us: [u32; LATENCY_BUCKETS],
    /// fdatasync calls completed in the period (sampled once a second).
    pub fsyncs: u64,
    /// Time those took, ns.
    pub fsync_ns: u64,
    /// Bytes the data directory used at the last sample in the period; 0 if none.
    pub disk_bytes: u64,
}

impl Bucket {
    fn new(services: usize) -> Self {
        Bucket {
            t: u64::MAX,
            records: 0,
            bytes: 0,
            levels: [0; LEVELS.len()],
            services: vec![0; services + 1].into_boxed_slice(),
            services_unsampled: 0,
            ack_us: [0; LATENCY_BUCKETS],
            fsyncs: 0,
            fsync_ns: 0,
            disk_bytes: 0,
        }
    }

    fn reset(&mut self, t: u64) {
        self.t = t;
        self.records = 0;
        self.bytes = 0;
        self.levels = [0; LEVELS.len()];
        self.services.fill(0);
        self.services_unsampled = 0;
        self.ack_us = [0; LATENCY_BUCKETS];
        self.fsyncs = 0;
        self.fsync_ns = 0;
        self.disk_bytes = 0;
    }

    /// Memory one bucket takes with `services` service slots.
    pub fn bytes(services: usize) -> usize {
        std::mem::size_of::<Bucket>() + (services + 1) * std::mem::size_of::<u32>()
    }

    fn add(&mut self, o: &Bucket) {
        self.records += o.records;
        self.bytes += o.bytes;
        for (a, b) in self.levels.iter_mut().zip(o.levels.iter()) {
            *a += b;
        }
        for (a, b) in self.services.iter_mut().zip(o.services.iter()) {
            *a = a.saturating_add(*b);
        }
        self.services_unsampled += o.services_unsampled;
        for (a, b) in self.ack_us.iter_mut().zip(o.ack_us.iter()) {
            *a = a.saturating_add(*b);
        }
        self.fsyncs += o.fsyncs;
        self.fsync_ns += o.fsync_ns;
        if o.disk_bytes != 0 {
            self.disk_bytes = o.disk_bytes;
        }
    }
}

/// A ring of buckets of `step` seconds.
#[derive(Debug)]
struct Ring {
    step: u64,
    buckets: Vec<Bucket>,
    /// The newest period reached (its start, Unix seconds), or 0 before the first.
    head: u64,
}

impl Ring {
    fn new(step: u64, len: usize, services: usize) -> Self {
        Ring {
            step,
            buckets: vec![Bucket::new(services); len],
            head: 0,
        }
    }

    fn span(&self) -> u64 {
        self.step * self.buckets.len() as u64
    }

    /// The oldest period the ring holds.
    fn tail(&self) -> u64 {
        (self.head + self.step).saturating_sub(self.span())
    }

    /// The bucket of the period holding Unix second `s`, reset if it held an older
    /// period; `None` if `s` is older than the ring.
    fn at(&mut self, s: u64) -> Option<&mut Bucket> {
        let p = s - s % self.step;
        if p > self.head {
            self.head = p;
        } else if p < self.tail() {
            return None;
        }
        let i = ((p / self.step) % self.buckets.len() as u64) as usize;
        let b = &mut self.buckets[i];
        if b.t != p {
            b.reset(p);
        }
        Some(b)
    }

    /// Forgets everything if the wall clock stepped back more than the ring's span
    /// below its head (otherwise the head, the largest time ever seen, would keep
    /// every new period "too old" and the charts blank until the clock caught up).
    /// Returns whether it did.
    fn reset_if_ahead_of(&mut self, now: u64) -> bool {
        if now.saturating_add(self.span()) >= self.head {
            return false;
        }
        self.head = 0;
        for b in &mut self.buckets {
            b.t = u64::MAX;
        }
        true
    }

    /// The bucket of period `p` if the ring holds it.
    fn get(&self, p: u64) -> Option<&Bucket> {
        let i = ((p / self.step) % self.buckets.len() as u64) as usize;
        let b = &self.buckets[i];
        (b.t == p && p >= self.tail()).then_some(b)
    }
}

/// (committed end, Unix ns when the group ending there was committed, framed bytes
/// the writer had committed with it), from the writer
/// (`wal::LogView::take_commit_note`).
type Commit = (u64, u64, u64);

/// What `/v1/aggregates` reads, shared between the fan-out core and the reactors.
#[derive(Debug)]
struct State {
    seconds: Ring,
    minutes: Ring,
    /// Names of the service slots; `None` for a free slot.
    services: Vec<Option<String>>,
    /// Offset up to which records are counted.
    read_end: u64,
    /// Receive time of the last record counted, or the commit time of the last group
    /// counted unread if later, ns (0 before the first).
    read_ts_ns: u64,
    /// Bytes the data directory uses, last sampled.
    disk_bytes: u64,
    /// Receive time of the oldest record in the log (the retention horizon), ns.
    oldest_ts_ns: Option<u64>,
}

/// The aggregates, shared: written by the fan-out core, read by `/v1/aggregates`.
#[derive(Debug)]
pub struct Aggregates {
    state: Mutex<State>,
    services_max: usize,
    /// Longest service name counted under its own name (`aggregates_service_bytes_max`).
    service_bytes_max: usize,
    /// Most buckets in one answer (`aggregates_response_buckets_max`).
    response_buckets_max: usize,
    /// Records a second the aggregator reads (`aggregates_records_per_s_max`).
    records_per_s_max: u64,
    /// The series `/stats` shows for the aggregates (written here only).
    stats: Arc<AggregateStats>,
}

/// A refused `/v1/aggregates` query: the HTTP side answers 400 with the detail.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AggregatesQueryError(pub String);

impl Aggregates {
    /// Empty aggregates, their buckets allocated, with the bounds of `settings`.
    pub fn new(settings: &FanoutSettings, stats: Arc<AggregateStats>) -> Self {
        let n = settings.aggregates_services_max;
        let (secs, mins) = (settings.aggregates_seconds, settings.aggregates_minutes);
        stats
            .aggregates_memory_bytes
            .store(((secs + mins) * Bucket::bytes(n)) as u64, Ordering::Relaxed);
        Aggregates {
            state: Mutex::new(State {
                seconds: Ring::new(1, secs, n),
                minutes: Ring::new(60, mins, n),
                services: vec![None; n],
                read_end: 0,
                read_ts_ns: 0,
                disk_bytes: 0,
                oldest_ts_ns: None,
            }),
            services_max: n,
            service_bytes_max: settings.aggregates_service_bytes_max,
            response_buckets_max: settings.aggregates_response_buckets_max,
            records_per_s_max: settings.aggregates_records_per_s_max,
            stats,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while merging leaves counts, not broken invariants: keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `GET /v1/aggregates?step=1s|1m&since=&until=`: the JSON document
    /// (`docs/protocol.md`). `since` and `until` are Unix seconds (`until` exclusive);
    /// by default the last 60 steps up to now. At most `aggregates_response_buckets_max`
    /// buckets: a longer range is cut there (`"truncated": true`, the rest from `until`).
    ///
    /// # Errors
    /// A parameter that is unknown or malformed.
    pub fn query_json(
        &self,
        query: &str,
        committed_end: u64,
    ) -> Result<Vec<u8>, AggregatesQueryError> {
        let now = unix_now().as_secs();
        let (mut step, mut since, mut until) = (1u64, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let num = |v: &str| {
                v.parse::<u64>().map_err(|_| {
                    AggregatesQueryError(format!("{k} must be Unix seconds, got {v:?}"))
                })
            };
            match k {
                "step" => {
                    step = match v {
                        "1s" => 1,
                        "1m" => 60,
                        _ => {
                            return Err(AggregatesQueryError(format!(
                                "step must be 1s or 1m, got {v:?}"
                            )));
                        }
                    }
                }
                "since" => since = Some(num(v)?),
                "until" => until = Some(num(v)?),
                _ => return Err(AggregatesQueryError(format!("unknown parameter {k:?}"))),
            }
        }
        let until = until.unwrap_or(now + 1);
        let since = since.unwrap_or(until.saturating_sub(60 * step));
        if since > until {
            return Err(AggregatesQueryError(format!(
                "since ({since}) is after until ({until})"
            )));
        }
        let st = self.lock();
        let ring = if step == 1 { &st.seconds } else { &st.minutes };
        // Periods from the one holding `since` up to before `until`, within the ring.
        let first = (since - since % step).max(ring.tail());
        let last = until.div_ceil(step).saturating_mul(step); // exclusive
        let last = last.min(ring.head.max(now - now % step) + step);
        let max_last = first.saturating_add(self.response_buckets_max as u64 * step);
        let truncated = last > max_last;
        let last = last.min(max_last);
        if truncated {
            self.stats
                .aggregates_responses_truncated_total
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut buckets = Vec::new();
        let mut p = first;
        while p < last {
            let mut b = ring
                .get(p)
                .cloned()
                .unwrap_or_else(|| Bucket::new(self.services_max));
            b.t = p;
            buckets.push(b);
            p += step;
        }
        let names = st.services.clone();
        let (read_end, read_ts_ns) = (st.read_end, st.read_ts_ns);
        let (disk_bytes, oldest) = (st.disk_bytes, st.oldest_ts_ns);
        drop(st);
        let mut totals = Bucket::new(self.services_max);
        for b in &buckets {
            totals.add(b);
        }
        let doc = serde_json::json!({
            "step_s": step,
            "since": first,
            "until": last.max(first),
            "truncated": truncated,
            "now": now,
            "levels": LEVELS,
            "quantiles_us": QUANTILES.map(|(k, _)| k),
            "services": names,
            "buckets": buckets.iter().map(|b| bucket_json(b, true)).collect::<Vec<_>>(),
            "totals": bucket_json(&totals, false),
            "read_end": read_end,
            "read_ts_ns": read_ts_ns,
            "committed_end": committed_end,
            "services_max": self.services_max,
            "services_overflowed": self.stats.aggregates_services_overflowed.load(Ordering::Relaxed),
            "late_records": self.stats.aggregates_late_records_total.load(Ordering::Relaxed),
            "disk_bytes": disk_bytes,
            "oldest_ts_ns": oldest,
        });
        Ok(serde_json::to_vec(&doc).expect("json"))
    }
}

/// A bucket as JSON: services by slot index (only those with records; the names are
/// once at the top of the answer), the rest as `services_other`, latency percentiles.
fn bucket_json(b: &Bucket, with_t: bool) -> serde_json::Value {
    let (other, slots) = b.services.split_last().expect("the other slot");
    let mut services = serde_json::Map::new();
    for (i, &n) in slots.iter().enumerate() {
        if n != 0 {
            services.insert(i.to_string(), n.into());
        }
    }
    let count: u64 = b.ack_us.iter().map(|&c| u64::from(c)).sum();
    let mut ack = serde_json::Map::new();
    ack.insert("count".into(), count.into());
    for (k, q) in QUANTILES {
        ack.insert(k.into(), quantile(&b.ack_us, count, q).into());
    }
    let max = b.ack_us.iter().rposition(|&c| c > 0).map(latency_upper_us);
    ack.insert("max".into(), max.unwrap_or(0).into());
    let mut v = serde_json::json!({
        "records": b.records,
        "bytes": b.bytes,
        "levels": b.levels,
        "services": services,
        "services_other": other,
        "services_unsampled": b.services_unsampled,
        "unsampled": b.levels[LEVEL_UNSAMPLED],
        "ack_us": ack,
        "fsyncs": b.fsyncs,
        "fsync_ns": b.fsync_ns,
    });
    if with_t {
        v["t"] = b.t.into();
        v["disk_bytes"] = b.disk_bytes.into();
    }
    v
}

/// The upper bound (µs) of the bucket at or below which `q` of `count` samples lie.
fn quantile(h: &[u32; LATENCY_BUCKETS], count: u64, q: f64) -> u64 {
    if count == 0 {
        return 0;
    }
    let want = ((count as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (i, &c) in h.iter().enumerate() {
        seen += u64::from(c);
        if seen >= want {
            return latency_upper_us(i);
        }
    }
    latency_upper_us(LATENCY_BUCKETS - 1)
}

/// The clock records are stamped with ([`crate::wal::format::now_ns`]), so ack
/// latencies and bucket seconds compare like with like.
fn unix_now() -> Duration {
    Duration::from_nanos(crate::wal::format::now_ns())
}

/// The service slots, kept by the fan-out core; names are published to [`State`] when
/// a slot changes hands.
#[derive(Debug)]
struct Services {
    slots: HashMap<String, usize>,
    /// Per slot: its name and the last minute (Unix seconds / 60) it had a record.
    names: Vec<Option<(String, u64)>>,
    /// Hashes of the distinct names that found no slot, up to 64 x the slots.
    overflowed: HashSet<u64>,
    hasher: RandomState,
    /// No slot can free up while `unused_before` is at most this: the least minute
    /// seen of the slots when a scan last found none free (those minutes only grow),
    /// so a record counted as other costs no scan of the slots.
    full_until: Option<u64>,
}

impl Services {
    /// The slot of `name` at minute `minute`; the last slot (`other`) when none is
    /// free. Returns whether the names changed.
    fn slot(
        &mut self,
        name: &str,
        minute: u64,
        unused_before: u64,
        stats: &AggregateStats,
    ) -> (usize, bool) {
        if let Some(&i) = self.slots.get(name) {
            if let Some((_, seen)) = self.names[i].as_mut() {
                *seen = (*seen).max(minute);
            }
            return (i, false);
        }
        let free = if self.full_until.is_some_and(|m| unused_before <= m) {
            None
        } else {
            let free = self.names.iter().position(|n| match n {
                None => true,
                Some((_, seen)) => *seen < unused_before,
            });
            if free.is_none() {
                self.full_until = self.names.iter().flatten().map(|(_, seen)| *seen).min();
            }
            free
        };
        let Some(i) = free else {
            if self.overflowed.len() < self.names.len() * 64
                && self.overflowed.insert(self.hasher.hash_one(name))
            {
                stats
                    .aggregates_services_overflowed
                    .store(self.overflowed.len() as u64, Ordering::Relaxed);
            }
            return (self.names.len(), false);
        };
        if let Some((old, _)) = self.names[i].take() {
            self.slots.remove(&old);
        }
        self.names[i] = Some((name.to_owned(), minute));
        self.slots.insert(name.to_owned(), i);
        stats
            .aggregates_services
            .store(self.slots.len() as u64, Ordering::Relaxed);
        (i, true)
    }
}

/// The fan-out core's side: follows the committed records and counts them. Lives on
/// the fan-out thread.
#[derive(Debug)]
pub struct Aggregator {
    shared: Arc<Aggregates>,
    log: LogView,
    reader: Option<Reader>,
    /// Commit notes the reader has not passed yet.
    commits: VecDeque<Commit>,
    /// The last note passed: where a skip can start if the reader is at its end.
    passed: Option<Commit>,
    /// Records that may still be read and parsed (`aggregates_records_per_s_max`).
    tokens: f64,
    /// When `tokens` was last refilled.
    refilled: Instant,
    /// Notes dropped from `commits` when it was full.
    commits_dropped: u64,
    services: Services,
    /// What this turn counted, by second, merged under the lock at the end of a turn.
    pending: Vec<Bucket>,
    /// Receive time of the last record counted, ns (or the commit time of the last
    /// group skipped, if later).
    last_ts_ns: u64,
    /// The writer's fsync counters at the last sample, and that sample's second.
    fsync_sample: (u64, u64, u64),
    /// When the disk and the retention horizon were last sampled.
    disk_sampled: Option<Instant>,
    /// The start offset whose record's time is `oldest_ts_ns`.
    oldest_for: Option<u64>,
}

impl Aggregator {
    /// Starts counting at the committed end (records before it were stored before
    /// this process served: not counted).
    pub fn new(shared: Arc<Aggregates>, log: LogView) -> Self {
        let n = shared.services_max;
        let ws = log.stats();
        let fsync_sample = (
            ws.fsyncs.load(Ordering::Relaxed),
            ws.fsync_ns_total.load(Ordering::Relaxed),
            unix_now().as_secs(),
        );
        // Opened now, before anything is served: records committed before the loop's
        // first turn are counted too.
        let reader = match log.reader(log.committed_end()) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "aggregates cannot open the log; retrying each turn");
                None
            }
        };
        if let Some(r) = &reader {
            shared.lock().read_end = r.next_offset();
        }
        let tokens = shared.records_per_s_max as f64;
        // Nothing is served yet, so the writer is idle: its byte total is the one it
        // notes with the group ending where the reader starts (a skip can start there).
        let passed = reader.as_ref().map(|r| {
            (
                r.next_offset(),
                0,
                ws.bytes_committed.load(Ordering::Relaxed),
            )
        });
        Aggregator {
            shared,
            log,
            reader,
            commits: VecDeque::with_capacity(COMMITS_MAX),
            passed,
            tokens,
            refilled: Instant::now(),
            commits_dropped: 0,
            services: Services {
                slots: HashMap::with_capacity(n),
                names: vec![None; n],
                overflowed: HashSet::new(),
                hasher: RandomState::new(),
                full_until: None,
            },
            pending: Vec::new(),
            last_ts_ns: 0,
            fsync_sample,
            disk_sampled: None,
            oldest_for: None,
        }
    }

    /// One loop turn: takes the writer's commit notes, counts up to
    /// `RECORDS_PER_TURN` records (`RECORDS_PER_BUSY_TURN` if `yield_to_subscribers`),
    /// samples the writer's counters and the disk once a second. Returns true if there
    /// are committed records left to count.
    pub fn turn(&mut self, end: u64, yield_to_subscribers: bool) -> bool {
        // After `end` was read: a commit the notes miss happened before this.
        let now = unix_now();
        if self.reader.is_none() {
            match self.log.reader(end) {
                Ok(r) => {
                    self.shared.lock().read_end = r.next_offset();
                    self.reader = Some(r);
                }
                Err(e) => {
                    tracing::error!(error = %e, "aggregates cannot open the log");
                    return false;
                }
            }
        }
        self.take_commits();
        let quota = if yield_to_subscribers {
            RECORDS_PER_BUSY_TURN
        } else {
            RECORDS_PER_TURN
        };
        let behind = self.count(end, now, quota);
        self.sample(now);
        self.merge();
        let read_end = self.reader.as_ref().map_or(end, Reader::next_offset);
        self.shared
            .stats
            .aggregates_lag_records
            .store(end.saturating_sub(read_end), Ordering::Relaxed);
        behind
    }

    /// Moves the writer's commit notes here (all of them: the writer's queue is
    /// bounded too, and its oldest note would be merged anyway).
    fn take_commits(&mut self) {
        while let Some(c) = self.log.take_commit_note() {
            if self.commits.len() == COMMITS_MAX {
                // The oldest's records take the next note's time: an upper bound.
                self.commits.pop_front();
                self.commits_dropped += 1;
            }
            self.commits.push_back(c);
        }
        self.shared
            .stats
            .aggregates_commit_notes_merged_total
            .store(
                self.log.commit_notes_merged() + self.commits_dropped,
                Ordering::Relaxed,
            );
    }

    /// Counts committed records into `pending`. Returns true if more are committed.
    fn count(&mut self, end: u64, now: Duration, quota: usize) -> bool {
        if self.reader.is_none() {
            return false;
        }
        let now_s = now.as_secs();
        let now_ns = now.as_nanos() as u64;
        let unused_before = (now_s / 60).saturating_sub(self.shared.span_minutes());
        let mut names_changed = false;
        let mut n = 0;
        self.refill();
        while n < quota
            && let Some(next) = self.reader.as_ref().map(Reader::next_offset)
            && next < end
        {
            // More committed than the tokens left: skip to the newest records the
            // tokens cover (cheaper to read, still in memory, and current).
            let tokens = self.tokens.max(0.0) as u64;
            if end - next > tokens && self.skip(end, tokens) {
                continue;
            }
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            let r = match reader.next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "aggregates reader failed; restarting at the committed end");
                    self.reader = None;
                    self.commits.clear();
                    self.passed = None;
                    return false;
                }
            };
            n += 1;
            self.tokens -= 1.0;
            let (offset, ts_ns, bytes) = (r.offset, r.timestamp_ns, r.payload.len() as u64);
            self.last_ts_ns = ts_ns;
            let (service, level) = json_fields(r.payload);
            let second = ts_ns / 1_000_000_000;
            let slot = service.as_deref().map(|s| {
                if s.len() > self.shared.service_bytes_max {
                    self.shared
                        .stats
                        .aggregates_service_names_too_long_total
                        .fetch_add(1, Ordering::Relaxed);
                    return self.services.names.len(); // other
                }
                let (i, changed) =
                    self.services
                        .slot(s, second / 60, unused_before, &self.shared.stats);
                names_changed |= changed;
                i
            });
            let level = level_index(level.as_deref());
            self.pass_notes(offset);
            // The writer notes every group before publishing it, so a note covers
            // every record below `end`; should none (a restarted reader), the time
            // this turn began, after `end` was read, bounds the commit from above.
            let at = self.commits.front().map_or(now_ns, |c| c.1);
            if at < ts_ns {
                // Committed before it was received: the wall clock stepped back in
                // between. Counted as 0, and here.
                self.shared
                    .stats
                    .aggregates_ack_clock_back_records_total
                    .fetch_add(1, Ordering::Relaxed);
            }
            let ack_us = at.saturating_sub(ts_ns) / 1000;
            let b = pending_at(&mut self.pending, self.shared.services_max, second);
            b.records += 1;
            b.bytes += bytes;
            b.levels[level] += 1;
            if let Some(i) = slot {
                b.services[i] = b.services[i].saturating_add(1);
            }
            let h = &mut b.ack_us[latency_bucket(ack_us)];
            *h = h.saturating_add(1);
        }
        if let Some(reader) = self.reader.as_mut() {
            drop(reader.take_damaged()); // lost offsets are not records: nothing to count
        }
        if names_changed {
            let names = self
                .services
                .names
                .iter()
                .map(|n| n.as_ref().map(|(s, _)| s.clone()))
                .collect();
            self.shared.lock().services = names;
        }
        self.reader.as_ref().is_some_and(|r| r.next_offset() < end)
    }

    /// Adds the tokens the time since the last refill earned, up to one second's worth.
    fn refill(&mut self) {
        let rate = self.shared.records_per_s_max as f64;
        let now = Instant::now();
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + dt * rate).min(rate);
    }

    /// Drops the notes of groups that end at or before `offset` (the reader is past
    /// them), keeping the last as `passed`.
    fn pass_notes(&mut self, offset: u64) {
        while let Some(&c) = self.commits.front()
            && c.0 <= offset
        {
            self.commits.pop_front();
            self.passed = Some(c);
        }
    }

    /// More committed than the tokens left: if the reader sits at a note's end, counts
    /// whole groups unread (see the module's docs), up to the first note that leaves at
    /// most `keep` records before `end` (fewer if the recent groups in memory hold
    /// fewer; all of them up to `end` if none does), and
    /// reopens the reader past them. Returns whether it skipped any record; false if
    /// the reader is inside a group (it reads on to the group's end: at most one group
    /// over the budget, repaid from later tokens).
    fn skip(&mut self, end: u64, mut keep: u64) -> bool {
        let Some(next) = self.reader.as_ref().map(Reader::next_offset) else {
            return false;
        };
        self.pass_notes(next);
        let Some(mut last) = self.passed.filter(|c| c.0 == next) else {
            return false;
        };
        // Keep no more than half the recent groups in memory hold (at the framed
        // bytes a record these notes average): what is read after a skip is then
        // copied from memory, not read back from the files (or, under direct writes,
        // the disk the writer syncs to).
        if let Some(newest) = self.commits.iter().rev().find(|c| c.0 <= end)
            && newest.0 > last.0
        {
            let per_record = ((newest.2 - last.2) / (newest.0 - last.0)).max(1);
            keep = keep.min(self.log.config().recent_bytes_max as u64 / 2 / per_record);
        }
        let mut skipped = 0;
        while let Some(&c) = self.commits.front()
            && c.0 <= end
        {
            self.commits.pop_front();
            // Offsets and the writer's byte total only grow; a note's framed bytes
            // hold a header per record.
            let records = c.0 - last.0;
            let framed = c.2.saturating_sub(last.2);
            let headers = records * RECORD_HEADER_BYTES as u64;
            debug_assert!(framed >= headers, "{c:?} after {last:?}");
            let b = pending_at(
                &mut self.pending,
                self.shared.services_max,
                c.1 / 1_000_000_000,
            );
            b.records += records;
            b.bytes += framed.saturating_sub(headers);
            b.levels[LEVEL_UNSAMPLED] += records;
            b.services_unsampled += records;
            skipped += records;
            last = c;
            if end - c.0 <= keep {
                break;
            }
        }
        if skipped == 0 {
            return false;
        }
        self.passed = Some(last);
        // Every record up to there is counted: the dashboard may draw up to its second.
        self.last_ts_ns = self.last_ts_ns.max(last.1);
        self.shared
            .stats
            .aggregates_unsampled_records_total
            .fetch_add(skipped, Ordering::Relaxed);
        match self.log.reader(last.0) {
            Ok(r) => self.reader = Some(r),
            Err(e) => {
                tracing::error!(error = %e, "aggregates cannot reopen the log; restarting at the committed end");
                self.reader = None;
                self.commits.clear();
                self.passed = None;
            }
        }
        true
    }

    /// Once a new second starts: the writer's fsync counters since the last sample
    /// into that second, and (every few seconds) the disk and the retention horizon.
    fn sample(&mut self, now: Duration) {
        let s = now.as_secs();
        if s == self.fsync_sample.2 {
            return;
        }
        let ws = self.log.stats();
        let (fsyncs, ns) = (
            ws.fsyncs.load(Ordering::Relaxed),
            ws.fsync_ns_total.load(Ordering::Relaxed),
        );
        let mut b = Bucket::new(self.shared.services_max);
        // The delta ran up to now, mostly in the second that just ended.
        b.reset(s - 1);
        b.fsyncs = fsyncs - self.fsync_sample.0;
        b.fsync_ns = ns - self.fsync_sample.1;
        self.fsync_sample = (fsyncs, ns, s);
        if self
            .disk_sampled
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(DISK_SAMPLE_S))
        {
            self.disk_sampled = Some(Instant::now());
            let disk = dir_bytes(&self.log.config().dir);
            b.disk_bytes = disk.max(1);
            let start = self.log.start_offset();
            let oldest = if self.oldest_for == Some(start) {
                None
            } else {
                self.oldest_for = Some(start);
                Some(self.oldest_ts(start))
            };
            let mut st = self.shared.lock();
            st.disk_bytes = disk;
            if let Some(o) = oldest {
                st.oldest_ts_ns = o;
            }
        }
        self.pending.push(b);
    }

    /// Receive time of the record at `start` (the oldest the log holds), if any.
    fn oldest_ts(&self, start: u64) -> Option<u64> {
        if self.log.committed_end() <= start {
            return None;
        }
        let mut r = self.log.reader(start).ok()?;
        r.next().ok().flatten().map(|r| r.timestamp_ns)
    }

    /// Adds this turn's counts to both rings.
    fn merge(&mut self) {
        let read_end = self.reader.as_ref().map(Reader::next_offset);
        let mut late = 0;
        let mut stepped_back = false;
        {
            let mut st = self.shared.lock();
            let now = unix_now().as_secs();
            stepped_back |= st.seconds.reset_if_ahead_of(now);
            stepped_back |= st.minutes.reset_if_ahead_of(now);
            for b in &self.pending {
                match st.seconds.at(b.t) {
                    Some(s) => s.add(b),
                    None => late += b.records,
                }
                if let Some(m) = st.minutes.at(b.t) {
                    m.add(b);
                }
            }
            // Keep the heads moving when nothing is received, so old buckets age out.
            st.seconds.at(now);
            st.minutes.at(now);
            if let Some(e) = read_end {
                st.read_end = e;
            }
            st.read_ts_ns = self.last_ts_ns;
        }
        if late > 0 {
            self.shared
                .stats
                .aggregates_late_records_total
                .fetch_add(late, Ordering::Relaxed);
        }
        if stepped_back {
            tracing::warn!(
                "the wall clock stepped back beyond the aggregates' span: they start afresh"
            );
            self.shared
                .stats
                .aggregates_clock_resets_total
                .fetch_add(1, Ordering::Relaxed);
        }
        self.pending.clear();
    }
}

impl Aggregates {
    /// Minutes the rings cover together: a service unseen for longer has no count
    /// in any bucket still served.
    fn span_minutes(&self) -> u64 {
        let st = self.lock();
        (st.seconds.span() / 60).max(st.minutes.span() / 60) + 1
    }
}

/// The bucket of Unix second `second` in a turn's `pending` counts, added if new.
fn pending_at(pending: &mut Vec<Bucket>, services: usize, second: u64) -> &mut Bucket {
    match pending.iter().position(|b| b.t == second) {
        Some(i) => &mut pending[i],
        None => {
            let mut b = Bucket::new(services);
            b.reset(second);
            pending.push(b);
            pending.last_mut().expect("pushed")
        }
    }
}

/// How often the data directory's size is sampled, in seconds (a directory listing
/// and a stat per file).
const DISK_SAMPLE_S: u64 = 5;

/// Bytes the files of `dir` take on disk (allocated blocks: pre-written spares count).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.blocks() * 512)
        .sum()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    #[test]
    fn latency_buckets_are_monotonic_and_within_a_quarter() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            9,
            15,
            16,
            100,
            1000,
            12_345,
            1 << 20,
            1 << 26,
        ] {
            let i = latency_bucket(us);
            assert!(i >= last, "{us}");
            last = i;
            let up = latency_upper_us(i);
            assert!(
                up >= us && up as f64 <= us.max(1) as f64 * 1.25 + 1.0,
                "{us} -> {up}"
            );
        }
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        for i in 1..LATENCY_BUCKETS {
            assert_eq!(latency_bucket(latency_upper_us(i - 1) + 1), i);
        }
    }

    #[test]
    fn a_bucket_takes_what_the_docs_say() {
        // docs/architecture.md and the aggregates_seconds setting name this figure.
        assert_eq!(Bucket::bytes(20), 660);
    }

    #[test]
    fn levels_are_normalised() {
        assert_eq!(LEVELS[level_index(Some("ERROR"))], "error");
        assert_eq!(LEVELS[level_index(Some("Warning"))], "warn");
        assert_eq!(LEVELS[level_index(Some("notice"))], "info");
        assert_eq!(LEVELS[level_index(Some("crit"))], "fatal");
        assert_eq!(LEVELS[level_index(Some("loud"))], "other");
        assert_eq!(LEVELS[level_index(Some("a-very-long-level-name"))], "other");
        assert_eq!(LEVELS[level_index(None)], "none");
    }

    #[test]
    fn services_past_the_bound_are_other_and_idle_slots_are_given_up() {
        let stats = AggregateStats::default();
        let mut s = Services {
            slots: HashMap::new(),
            names: vec![None; 2],
            overflowed: HashSet::new(),
            hasher: RandomState::new(),
            full_until: None,
        };
        assert_eq!(s.slot("a", 10, 0, &stats), (0, true));
        assert_eq!(s.slot("b", 10, 0, &stats), (1, true));
        assert_eq!(s.slot("a", 11, 0, &stats), (0, false));
        assert_eq!(s.slot("c", 11, 0, &stats), (2, false), "other");
        assert_eq!(s.slot("c", 11, 0, &stats), (2, false));
        assert_eq!(s.slot("d", 11, 0, &stats), (2, false));
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(load(&stats.aggregates_services_overflowed), 2, "distinct");
        assert_eq!(load(&stats.aggregates_services), 2);
        // Full, and no slot can free up before minute 11: "d" again costs no scan.
        assert_eq!(s.full_until, Some(10));
        // "b" was last seen in minute 10: once nothing retained is that old, "c" takes
        // its slot ("a", seen in minute 11, keeps its own).
        assert_eq!(s.slot("c", 20, 11, &stats), (1, true));
        assert_eq!(s.slot("a", 20, 11, &stats), (0, false));
        assert_eq!(s.slot("b", 20, 11, &stats), (2, false));
    }

    #[test]
    fn queries_are_checked_and_answer_every_step_in_range() {
        let settings = crate::config::Settings::default().fanout();
        let a = Aggregates::new(&settings, Arc::default());
        let now = unix_now().as_secs();
        a.lock().seconds.at(now).unwrap().records = 7;
        let v: serde_json::Value = serde_json::from_slice(
            &a.query_json(&format!("since={}&until={}", now - 9, now + 1), 0)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v["buckets"].as_array().unwrap().len(), 10);
        assert_eq!(v["totals"]["records"], 7);
        assert_eq!(v["since"], now - 9);
        for bad in [
            "step=5m",
            "since=-1",
            "until=x",
            "since=5&until=4",
            "from=0",
        ] {
            assert!(a.query_json(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_ranges_are_cut_at_the_response_bound() {
        let mut settings = crate::config::Settings::default().fanout();
        settings.aggregates_response_buckets_max = 100;
        let stats = Arc::new(AggregateStats::default());
        let a = Aggregates::new(&settings, stats.clone());
        let now = unix_now().as_secs();
        let q = |since: u64| -> serde_json::Value {
            serde_json::from_slice(
                &a.query_json(&format!("since={since}&until={}", now + 1), 0)
                    .unwrap(),
            )
            .unwrap()
        };
        let v = q(now - 149);
        assert_eq!(v["buckets"].as_array().unwrap().len(), 100);
        assert_eq!(v["truncated"], true);
        assert_eq!(v["until"], now - 49, "where to continue");
        let rest = q(now - 49);
        assert_eq!(rest["buckets"].as_array().unwrap().len(), 50);
        assert_eq!(rest["truncated"], false);
        assert_eq!(
            stats
                .aggregates_responses_truncated_total
                .load(Ordering::Relaxed),
            1
        );
        // A huge `until` is not an overflow.
        assert!(
            a.query_json(&format!("step=1m&since={now}&until={}", u64::MAX), 0)
                .is_ok()
        );
    }

    #[test]
    fn the_ring_ages_out_old_periods() {
        let mut r = Ring::new(1, 10, 2);
        r.at(1000).unwrap().records = 5;
        assert_eq!(r.get(1000).unwrap().records, 5);
        r.at(1009).unwrap().records = 1;
        assert!(r.get(1000).is_some());
        r.at(1010);
        assert!(r.get(1000).is_none(), "out of the ring");
        assert!(r.at(1000).is_none(), "too old to count");
        assert_eq!(r.at(1005).unwrap().records, 0, "never counted: empty");
        let mut m = Ring::new(60, 3, 2);
        m.at(125).unwrap().records = 2;
        assert_eq!(m.get(120).unwrap().records, 2);
        // The clock steps back by more than the span: the ring starts afresh.
        assert!(!r.reset_if_ahead_of(1005), "within the span");
        assert!(r.reset_if_ahead_of(990));
        assert!(r.get(1009).is_none());
        r.at(990).unwrap().records = 3;
        assert_eq!(r.get(990).unwrap().records, 3);
    }
}
