//! The durable segmented log: the storage contract every other stage relies on.
//!
//! # Contract
//!
//! - **append**: a producer frames records into a batch ([`BatchBuilder`]) and hands it
//!   to [`Appender::try_append`]. Batches from one producer are written in the order
//!   they were appended; each gets consecutive offsets. The returned [`Completion`]
//!   resolves to the batch's offsets once the batch is durable, or to an
//!   [`AppendError`]; never both, never twice.
//! - **sync**: with [`FsyncPolicy::Always`] (the default) a completion resolves only
//!   after an fdatasync that covered the batch, and after the directory entry of the
//!   segment holding it was synced. The other policies are named for what they give up.
//! - **rotate**: when the active segment would exceed `segment_bytes_max`, the writer
//!   syncs it and its index, creates the next segment named by its first offset (or
//!   renames a spare pre-written with zeros into place, see [`spare`]), syncs the new
//!   file and the directory, and only then writes to it.
//! - **read**: a [`Reader`] returns records in offset order from any offset, across
//!   segments, and never past the committed offset, while the writer appends.
//! - **recover**: [`Log::open`] cuts a torn tail of the last segment at the first
//!   record that fails its checks (and syncs the cut), and continues numbering after
//!   the last valid record. Damage inside sealed segments is reported, never skipped.
//! - **fail**: a failed write truncates back to the last good position and fails only
//!   the batches it covered (a full disk is [`AppendError::DiskFull`], and writing
//!   resumes when space returns). A failed fdatasync stops the writer for good: the
//!   records it covered are never acknowledged.

pub mod check;
pub mod completion;
#[cfg(feature = "failpoints")]
pub(crate) mod failpoints;
pub mod format;
pub mod reader;
pub mod recovery;
pub mod retention;
pub mod segment;
pub mod spare;
pub mod uring;
mod view;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use bytes::BytesMut;

pub use completion::{Committed, Completion};
pub use format::{BatchBuilder, RecordTooLarge};
pub use reader::{Reader, Record};
pub use recovery::{RecoveryMode, RecoveryReport};
pub use view::LogView;

use crate::{
    error::{AppendError, OpenError},
    ring::{BatchRing, PushError},
};

/// When the writer calls fdatasync, and so what an acknowledgement means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FsyncPolicy {
    /// Every group is fdatasync'ed before its batches complete. Acked means durable.
    Always,
    /// NOT DURABLE: batches complete once written to the page cache; the writer calls
    /// fdatasync at most every `interval_ms`. A power loss can lose the last interval.
    Interval {
        /// Longest time written data stays unsynced, in milliseconds.
        interval_ms: u64,
    },
    /// NOT DURABLE: batches complete once written to the page cache; only rotation and
    /// shutdown sync. A power loss can lose everything the kernel had not flushed.
    Never,
}

impl FsyncPolicy {
    /// Parses `always`, `never` or `interval:<ms>` (the flag syntax).
    ///
    /// # Errors
    /// A message naming the accepted forms.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(FsyncPolicy::Interval { interval_ms: ms }),
                _ => Err(format!(
                    "fsync must be `always`, `never` or `interval:<ms>` with ms > 0, not {s:?}"
                )),
            },
        }
    }

    /// True only for the policy under which an acknowledgement means durable.
    pub fn is_durable(&self) -> bool {
        matches!(self, FsyncPolicy::Always)
    }
}

impl TryFrom<String> for FsyncPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        FsyncPolicy::parse(&s)
    }
}

impl From<FsyncPolicy> for String {
    fn from(p: FsyncPolicy) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Interval { interval_ms } => write!(f, "interval:{interval_ms}"),
        }
    }
}

/// The log's settings. Every bound has its unit in its name; [`LogConfig::validate`]
/// checks them once, at open.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Directory holding the segments. Created if missing.
    pub dir: PathBuf,
    /// Size at which a segment is sealed and the next one begins. Default 128 MiB,
    /// minimum 64 KiB.
    pub segment_bytes_max: u64,
    /// Most bytes the writer gathers into one write + fdatasync. Default 4 MiB, minimum
    /// 4 KiB, at most `segment_bytes_max` - 32. A batch may not be larger.
    pub group_bytes_max: usize,
    /// Batches the ring holds before producers are refused. Default 1024.
    pub ring_batches_max: usize,
    /// Largest record payload. Default 1 MiB; at most `group_bytes_max` - 24.
    pub record_bytes_max: usize,
    /// Bytes of log between two sparse-index entries. Default 4 KiB.
    pub index_interval_bytes: u32,
    /// When to fdatasync (and so what an acknowledgement means).
    pub fsync: FsyncPolicy,
    /// Groups written and synced concurrently: 2 lets the next group's write overlap
    /// the previous group's fdatasync. Default 2, range 1..=8.
    pub groups_in_flight_max: usize,
    /// Core to pin the writer thread to; `None` leaves it to the scheduler.
    pub writer_core: Option<usize>,
    /// What to do with a damaged tail at open.
    pub recovery: RecoveryMode,
    /// Remove the oldest sealed segments while all segments together exceed this many
    /// bytes; 0 keeps everything. Checked at each rotation and at open.
    pub retention_bytes_max: u64,
    /// Remove sealed segments whose newest record is older than this, in ms; 0 keeps
    /// everything. Checked at each rotation and at open.
    pub retention_ms: u64,
    /// Pre-write each next segment with zeros (a thread of its own, once the active
    /// segment is a quarter full) so that group fdatasyncs overwrite allocated blocks
    /// instead of extending the file: no journal commit per group. Default true.
    pub segment_prewrite: bool,
}

impl LogConfig {
    /// Defaults for a log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            segment_bytes_max: 128 << 20,
            group_bytes_max: 4 << 20,
            ring_batches_max: 1024,
            record_bytes_max: 1 << 20,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Always,
            groups_in_flight_max: 2,
            writer_core: None,
            recovery: RecoveryMode::TolerateTornTail,
            retention_bytes_max: 0,
            retention_ms: 0,
            segment_prewrite: true,
        }
    }

    /// Checks every bound and their relations.
    ///
    /// # Errors
    /// [`OpenError::Setting`] naming the first setting out of range.
    pub fn validate(&self) -> Result<(), OpenError> {
        fn bad(name: &'static str, why: String) -> Result<(), OpenError> {
            Err(OpenError::Setting { name, why })
        }
        if self.segment_bytes_max < 64 << 10 || self.segment_bytes_max > u32::MAX as u64 {
            return bad(
                "segment_bytes_max",
                format!(
                    "{} is outside 64 KiB..4 GiB (positions are 32-bit in the index)",
                    self.segment_bytes_max
                ),
            );
        }
        if self.group_bytes_max < 4096
            || self.group_bytes_max as u64
                > self.segment_bytes_max - format::SEGMENT_HEADER_BYTES as u64
        {
            return bad(
                "group_bytes_max",
                format!(
                    "{} is outside 4096..segment_bytes_max-32",
                    self.group_bytes_max
                ),
            );
        }
        if self.record_bytes_max == 0
            || self.record_bytes_max > self.group_bytes_max - format::RECORD_HEADER_BYTES
        {
            return bad(
                "record_bytes_max",
                format!(
                    "{} is outside 1..=group_bytes_max-24 ({}); lower record_bytes_max or raise group_bytes_max",
                    self.record_bytes_max,
                    self.group_bytes_max
                        .saturating_sub(format::RECORD_HEADER_BYTES)
                ),
            );
        }
        if self.ring_batches_max == 0 || self.ring_batches_max > 1 << 20 {
            return bad(
                "ring_batches_max",
                format!("{} is outside 1..1048576", self.ring_batches_max),
            );
        }
        if self.index_interval_bytes < 64 {
            return bad(
                "index_interval_bytes",
                format!("{} is below 64", self.index_interval_bytes),
            );
        }
        if !(1..=8).contains(&self.groups_in_flight_max) {
            return bad(
                "groups_in_flight_max",
                format!("{} is outside 1..=8", self.groups_in_flight_max),
            );
        }
        Ok(())
    }
}

/// One batch on its way through the ring to the writer.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Framed records, offsets not yet stamped.
    pub(crate) frames: BytesMut,
    /// Number of records in `frames`.
    pub(crate) records: u32,
    /// Where the writer reports the outcome.
    pub(crate) slot: Arc<completion::Slot>,
}

/// Counters the writer keeps; read by `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Batches accepted into the ring.
    pub batches_appended: AtomicU64,
    /// Records made durable (or written, under a non-durable policy).
    pub records_committed: AtomicU64,
    /// Framed bytes made durable.
    pub bytes_committed: AtomicU64,
    /// Groups written (one write + one fdatasync each under `always`).
    pub groups_committed: AtomicU64,
    /// fdatasync calls completed.
    pub fsyncs: AtomicU64,
    /// Total time spent waiting for fdatasync, in nanoseconds.
    pub fsync_ns_total: AtomicU64,
    /// Longest fdatasync seen, in nanoseconds.
    pub fsync_ns_max: AtomicU64,
    /// Group commit times (a group's write submitted → its fdatasync completed) by
    /// power-of-two microsecond bucket: bucket i counts times below 2^i µs (the last
    /// one everything longer). For percentiles in /stats and a histogram in /metrics.
    pub commit_us_buckets: [AtomicU64; COMMIT_BUCKETS],
    /// Writes that failed with ENOSPC/EDQUOT (batches failed with DiskFull).
    pub disk_full_errors: AtomicU64,
    /// Writes that failed for other reasons.
    pub write_errors: AtomicU64,
    /// Segments sealed and replaced by a new one.
    pub segments_rotated: AtomicU64,
    /// Segments removed by retention.
    pub segments_purged: AtomicU64,
    /// Spare segments pre-written with zeros (see `segment_prewrite`).
    pub spares_prepared: AtomicU64,
    /// Rotations into a pre-written spare.
    pub spares_used: AtomicU64,
    /// Rotations that found no spare ready and created an empty segment.
    pub spares_missed: AtomicU64,
    /// Spares not prepared: under two segments of free space, or an I/O error.
    pub spares_skipped: AtomicU64,
    /// 1 while a spare is ready for the next rotation.
    pub spares_ready: AtomicU64,
}

/// Buckets of [`WalStats::commit_us_buckets`]: up to 2^31 µs (about 36 minutes).
pub const COMMIT_BUCKETS: usize = 32;

impl WalStats {
    /// The bucket upper bound (µs) at or below which `q` (0..=1) of the group commits
    /// completed; 0 before the first commit.
    pub fn commit_us_quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .commit_us_buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return 1u64 << i;
            }
        }
        1u64 << (COMMIT_BUCKETS - 1)
    }
}

/// Shared between the [`Log`] handle, its appenders, its readers and the writer.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: LogConfig,
    pub(crate) ring: BatchRing<Batch>,
    /// Exclusive end of the committed records: every offset below it is durable and
    /// readable. Written only by the writer, with Release; read with Acquire.
    pub(crate) committed_end: AtomicU64,
    /// Offset of the oldest record still on disk.
    pub(crate) start_offset: AtomicU64,
    /// Base offset of the active segment. Stored (Relaxed) before `active_written`.
    pub(crate) active_base: AtomicU64,
    /// Byte position in the active segment up to which committed records are written:
    /// live readers read no further. Past it lie groups still in flight or, in a
    /// pre-written segment, zeros; reading those costs a copy of up to a buffer per
    /// wake-up, and reading zeros the page cache does not hold costs disk reads that
    /// queue with the writer's. Stored with Release before `committed_end`.
    pub(crate) active_written: AtomicU64,
    /// Set once, when the writer stops for good.
    pub(crate) failure: OnceLock<Arc<str>>,
    pub(crate) stats: WalStats,
    /// Wakes threads that follow the log (fan-out, `cat --follow` in-process).
    pub(crate) commit_watch: CommitWatch,
}

/// A condition variable on the committed offset, for followers that may block, and an
/// eventfd for the one follower that runs an event loop (the fan-out core).
#[derive(Debug, Default)]
pub(crate) struct CommitWatch {
    lock: Mutex<()>,
    cond: std::sync::Condvar,
    /// Number of threads blocked in `wait_beyond`; the writer skips the notify when 0.
    waiters: AtomicU64,
    /// The event-loop follower's eventfd, created by [`Log::follower`]; lives as long as
    /// the log.
    follower_fd: OnceLock<std::os::fd::OwnedFd>,
    /// Set by the event-loop follower just before it sleeps; the writer clears it and
    /// writes `follower_fd`. While it is clear, a commit costs the writer one load.
    follower_sleeping: std::sync::atomic::AtomicBool,
}

impl CommitWatch {
    pub(crate) fn notify(&self) {
        // Relaxed suffices: a waiter increments before re-checking committed_end under
        // the lock, and the writer stores committed_end before this load (SeqCst fence).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _g = self.lock.lock().expect("commit watch lock");
            self.cond.notify_all();
        }
        // The same fence orders the committed_end store before this load, as the
        // follower's fence orders its flag store before its re-check of committed_end
        // (Dekker): either it sees the new end and does not sleep, or we see the flag.
        if self.follower_sleeping.load(Ordering::Relaxed)
            && self.follower_sleeping.swap(false, Ordering::AcqRel)
            && let Some(fd) = self.follower_fd.get()
        {
            let one: u64 = 1;
            // SAFETY: an 8-byte write from a live u64 to our own eventfd. EAGAIN (the
            // counter saturated) still leaves the follower woken.
            unsafe {
                libc::write(
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    (&one as *const u64).cast(),
                    8,
                )
            };
        }
    }
}

/// The wake-up of the one thread that follows the committed offset from an event loop
/// (the fan-out core): an eventfd to poll, written by the writer after a commit only
/// when the follower said it is about to sleep. No lock on the commit path.
#[derive(Debug, Clone)]
pub struct CommitFollower {
    inner: Arc<Inner>,
}

impl CommitFollower {
    /// The eventfd to register with the event loop (readable after a wake-up).
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(
            self.inner
                .commit_watch
                .follower_fd
                .get()
                .expect("created by Log::follower"),
        )
    }

    /// Exclusive end of the committed records.
    pub fn committed_end(&self) -> u64 {
        self.inner.committed_end.load(Ordering::Acquire)
    }

    /// Announces a sleep. Returns false if the committed end already moved past `seen`
    /// (the caller must then not sleep).
    pub fn prepare_sleep(&self, seen: u64) -> bool {
        let w = &self.inner.commit_watch;
        w.follower_sleeping.store(true, Ordering::Relaxed);
        // Pairs with the fence in CommitWatch::notify (see there).
        std::sync::atomic::fence(Ordering::SeqCst);
        // A failed writer is not a reason to stay awake: fail_everything notifies once.
        if self.inner.committed_end.load(Ordering::Relaxed) != seen {
            w.follower_sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The sleep ended; resets the flag and the eventfd's counter.
    pub fn woke(&self) {
        self.inner
            .commit_watch
            .follower_sleeping
            .store(false, Ordering::Relaxed);
        let mut buf = 0u64;
        // SAFETY: an 8-byte read into a live u64 from our own non-blocking eventfd;
        // EAGAIN (nothing written) is expected and ignored.
        unsafe { libc::read(self.fd(), (&mut buf as *mut u64).cast(), 8) };
    }
}

/// The open log. Owns the writer thread; dropping it shuts the writer down cleanly.
#[derive(Debug)]
pub struct Log {
    /// The read side, which the log hands out as [`Log::view`]; [`Log`] derefs to it.
    view: LogView,
    writer: Mutex<Option<JoinHandle<()>>>,
    report: RecoveryReport,
}

/// A cloneable producer handle; cheap to clone, one per producer thread or core.
#[derive(Debug, Clone)]
pub struct Appender {
    inner: Arc<Inner>,
}

/// A batch that was not taken; the buffer comes back so nothing is lost.
#[derive(Debug)]
pub enum TryAppendError {
    /// The ring is full: back off (stop reading from producers) and retry.
    Full(BytesMut, u32),
    /// The batch will never be taken; see the error.
    Refused(AppendError),
}

impl Log {
    /// Opens (creating if needed) and recovers the log in `config.dir`, then starts the
    /// writer thread.
    ///
    /// # Errors
    /// An invalid setting, a locked directory, io_uring unavailable (with its cause),
    /// an I/O error with its path, or corruption that recovery refuses to cut.
    pub fn open(config: LogConfig) -> Result<Log, OpenError> {
        config.validate()?;
        let uring = uring::new_ring(64)?;
        let recovered = recovery::recover(&config)?;
        let ring = BatchRing::new(config.ring_batches_max)
            .map_err(|e| OpenError::io("create eventfd", "", e))?;
        let inner = Arc::new(Inner {
            committed_end: AtomicU64::new(recovered.next_offset),
            start_offset: AtomicU64::new(recovered.start_offset),
            active_base: AtomicU64::new(recovered.active.base),
            active_written: AtomicU64::new(recovered.active.end_pos),
            config: config.clone(),
            ring,
            failure: OnceLock::new(),
            stats: WalStats::default(),
            commit_watch: CommitWatch::default(),
        });
        let report = recovered.report.clone();
        apply_retention(&inner, recovered.active.base);
        let handle = writer::spawn(inner.clone(), uring, recovered)?;
        Ok(Log {
            view: LogView { inner },
            writer: Mutex::new(Some(handle)),
            report,
        })
    }

    /// A producer handle.
    pub fn appender(&self) -> Appender {
        Appender {
            inner: self.view.inner.clone(),
        }
    }

    /// The read-only side of the log, for the stages that only read (the fan-out, the
    /// read API, `/stats`): it cannot append or stop the writer.
    pub fn view(&self) -> LogView {
        self.view.clone()
    }

    /// What recovery found and did at open.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Stops taking batches, writes and syncs everything already taken, completes it,
    /// and stops the writer. Idempotent.
    pub fn shutdown(&self) {
        self.view.inner.ring.close();
        writer::wake(&self.view.inner);
        if let Some(h) = self.writer.lock().expect("writer handle lock").take() {
            let _ = h.join();
        }
    }
}

impl std::ops::Deref for Log {
    type Target = LogView;
    fn deref(&self) -> &LogView {
        &self.view
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Applies the retention settings; a failure is logged, not fatal: it endangers no
/// acknowledged record, only disk space.
pub(crate) fn apply_retention(inner: &Inner, active_base: u64) {
    let c = &inner.config;
    if c.retention_bytes_max == 0 && c.retention_ms == 0 {
        return;
    }
    let age = (c.retention_ms > 0).then(|| Duration::from_millis(c.retention_ms));
    match retention::purge(&c.dir, active_base, c.retention_bytes_max, age) {
        Ok(p) if p.segments > 0 => {
            // Release: a reader that sees the new start finds the older files gone.
            inner.start_offset.store(p.start_offset, Ordering::Release);
            inner
                .stats
                .segments_purged
                .fetch_add(p.segments, Ordering::Relaxed);
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, dir = %c.dir.display(), "retention could not remove old segments")
        }
    }
}

pub(crate) fn wait_beyond(inner: &Inner, offset: u64, timeout: Duration) -> u64 {
    let w = &inner.commit_watch;
    let end = inner.committed_end.load(Ordering::Acquire);
    if end > offset || inner.failure.get().is_some() {
        return end;
    }
    let guard = w.lock.lock().expect("commit watch lock");
    w.waiters.fetch_add(1, Ordering::SeqCst);
    let end = inner.committed_end.load(Ordering::SeqCst);
    let end = if end > offset {
        end
    } else {
        let _ = w
            .cond
            .wait_timeout(guard, timeout)
            .expect("commit watch lock");
        inner.committed_end.load(Ordering::Acquire)
    };
    w.waiters.fetch_sub(1, Ordering::SeqCst);
    end
}

impl Appender {
    /// Offers a batch of `records` framed records to the writer without blocking.
    ///
    /// # Errors
    /// [`TryAppendError::Full`] with the batch when the ring is full;
    /// [`TryAppendError::Refused`] when the batch is empty-but-counted, too large, or the
    /// log is closing or has failed.
    pub fn try_append(&self, frames: BytesMut, records: u32) -> Result<Completion, TryAppendError> {
        assert!(records > 0 && !frames.is_empty(), "empty batch");
        let max = self.inner.config.group_bytes_max;
        if frames.len() > max {
            return Err(TryAppendError::Refused(AppendError::BatchTooLarge {
                bytes: frames.len(),
                max,
            }));
        }
        // The writer trusts batches (it stamps offsets by walking the frames), so a
        // malformed one is refused here, on the producer's core.
        match format::count_frames(&frames) {
            Ok(n) if n == records => {}
            Ok(n) => {
                return Err(TryAppendError::Refused(AppendError::MalformedBatch(
                    format!("{n} frames, {records} declared"),
                )));
            }
            Err(why) => return Err(TryAppendError::Refused(AppendError::MalformedBatch(why))),
        }
        let slot = completion::Slot::new(records);
        let batch = Batch {
            frames,
            records,
            slot: slot.clone(),
        };
        match self.inner.ring.push(batch) {
            Ok(()) => {
                self.inner
                    .stats
                    .batches_appended
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Completion::new(slot))
            }
            Err(PushError::Full(b)) => Err(TryAppendError::Full(b.frames, b.records)),
            Err(PushError::Closed(_)) => Err(TryAppendError::Refused(self.closed_error())),
        }
    }

    /// Appends a batch, waiting (with a short sleep) while the ring is full. For
    /// producer threads that may block; reactors use `try_append`.
    ///
    /// # Errors
    /// As [`Appender::try_append`], except that a full ring is waited out.
    pub fn append(
        &self,
        mut frames: BytesMut,
        mut records: u32,
    ) -> Result<Completion, AppendError> {
        let mut spins = 0u32;
        loop {
            match self.try_append(frames, records) {
                Ok(c) => return Ok(c),
                Err(TryAppendError::Refused(e)) => return Err(e),
                Err(TryAppendError::Full(f, r)) => {
                    frames = f;
                    records = r;
                    spins += 1;
                    if spins < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        }
    }

    /// Exclusive end of the committed records.
    pub fn committed_end(&self) -> u64 {
        self.inner.committed_end.load(Ordering::Acquire)
    }

    /// The largest record payload the log accepts.
    pub fn record_bytes_max(&self) -> usize {
        self.inner.config.record_bytes_max
    }

    fn closed_error(&self) -> AppendError {
        match self.inner.failure.get() {
            Some(why) => AppendError::Failed(why.clone()),
            None => AppendError::Closed,
        }
    }
}

/// Current time in nanoseconds since the Unix epoch, the records' timestamp.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Syncs a directory so that entries created or removed in it survive power loss.
///
/// # Errors
/// The OS error from opening or syncing the directory.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
