//! The log's settings and their validation: every bound has its unit in its name and
//! is checked once, at open, so the stages may rely on it afterwards.

use std::path::PathBuf;

use super::{FsyncPolicy, RecoveryMode, format};
use crate::error::OpenError;

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
    /// How far below the running maximum of receive time a record may arrive and still
    /// be found by an `until` read, in ms (see `timeindex`); later ones are counted.
    /// Default 5000.
    pub time_skew_ms_max: u64,
    /// When to fdatasync (and so what an acknowledgement means).
    pub fsync: FsyncPolicy,
    /// Groups in flight: written, synced, or (direct writes) gathered while the one
    /// before is written. 2 lets the next group's write overlap the previous group's
    /// fdatasync; past 2, groups gathered while two fdatasyncs are out share the next
    /// one. Default 4, range 1..=8.
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
    /// instead of extending the file: no journal commit per group. Default `Auto`: on,
    /// except where the directory is in memory.
    pub segment_prewrite: Prewrite,
    /// How groups reach the disk: `direct` (`O_DIRECT`, no page-cache copy) or
    /// `buffered`. Default direct; buffered is used, and said at start, where the
    /// filesystem refuses `O_DIRECT`.
    pub write_mode: WriteMode,
    /// How the writer reaches the disk, and (in `serve`) how the reactors reach the
    /// network: `auto` (io_uring where it can be set up, else epoll, said at start),
    /// `uring` (io_uring or fail, naming the cause), `epoll`. Default auto.
    pub io_driver: IoDriver,
    /// Bytes of the most recent committed groups kept in memory for live readers (see
    /// `recent`); at least the newest group is kept whatever the bound. `serve` sets it
    /// to `fanout_window_bytes_max`. Default 16 MiB.
    pub recent_bytes_max: usize,
    /// Bytes read at a time while looking for the next valid record past damage (see
    /// `segment::resync`): memory each search holds, and how many reads it takes to
    /// cross a damaged range. Default 1 MiB, range
    /// [`DAMAGE_RESYNC_WINDOW_BYTES_MIN`]..=[`DAMAGE_RESYNC_WINDOW_BYTES_MAX`].
    pub damage_resync_window_bytes: usize,
}

/// The smallest `damage_resync_window_bytes`: one page. The window must hold a 24-byte
/// frame header; a candidate record is read whole into a buffer of its own, so the
/// window need not hold a record (`record_bytes_max` plays no part). Below a page the
/// search only issues more reads (up to a segment's worth) for no memory worth saving.
pub const DAMAGE_RESYNC_WINDOW_BYTES_MIN: usize = 4096;
/// The largest `damage_resync_window_bytes`: 64 MiB. Each reader that meets damage
/// (a read API request, a subscriber, `cat`) holds one window while it searches, so
/// the bound keeps that memory small; reads this large already stream at disk speed.
pub const DAMAGE_RESYNC_WINDOW_BYTES_MAX: usize = 64 << 20;
/// `damage_resync_window_bytes`' default.
pub const DAMAGE_RESYNC_WINDOW_BYTES_DEFAULT: usize = 1 << 20;

/// The smallest `damage_settle_ms`. 0 is refused: a reader of a running server's
/// files that never waited would report every earlier group still being written
/// behind a later one as lost (a `gap:` line and exit 3 from `cat` for records that
/// arrive a moment later); waiting at all is what tells the two apart.
pub const DAMAGE_SETTLE_MS_MIN: u64 = 1;
/// The largest `damage_settle_ms`: a minute. The wait is paid once per bad record.
pub const DAMAGE_SETTLE_MS_MAX: u64 = 60_000;
/// `damage_settle_ms`' default: a group's write takes well under this.
pub const DAMAGE_SETTLE_MS_DEFAULT: u64 = 250;

/// How a reader of another process's files ([`Reader::open_dir_with`], used by
/// `ringstash cat`) treats a bad record: those processes do not read `serve`'s
/// settings, so these come from their own flags, checked against the same ranges.
///
/// [`Reader::open_dir_with`]: super::Reader::open_dir_with
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirReadConfig {
    /// As [`LogConfig::damage_resync_window_bytes`].
    pub damage_resync_window_bytes: usize,
    /// How long the reader waits, once per bad record, before taking it as damage
    /// while a server holds the directory's lock: a later group may reach the file
    /// before an earlier one still being written (`groups_in_flight_max`), whose bytes
    /// are then valid a moment later. Default 250 ms, range
    /// [`DAMAGE_SETTLE_MS_MIN`]..=[`DAMAGE_SETTLE_MS_MAX`]. `serve` has no such
    /// setting: its readers are live ones, which read only committed records and so
    /// never wait.
    pub damage_settle_ms: u64,
}

impl Default for DirReadConfig {
    fn default() -> Self {
        DirReadConfig {
            damage_resync_window_bytes: DAMAGE_RESYNC_WINDOW_BYTES_DEFAULT,
            damage_settle_ms: DAMAGE_SETTLE_MS_DEFAULT,
        }
    }
}

impl DirReadConfig {
    /// Checks both bounds.
    ///
    /// # Errors
    /// [`OpenError::Setting`] naming the first setting out of range.
    pub fn validate(&self) -> Result<(), OpenError> {
        check_resync_window(self.damage_resync_window_bytes)?;
        if !(DAMAGE_SETTLE_MS_MIN..=DAMAGE_SETTLE_MS_MAX).contains(&self.damage_settle_ms) {
            return Err(OpenError::Setting {
                name: "damage_settle_ms",
                why: format!(
                    "{} is outside {DAMAGE_SETTLE_MS_MIN}..={DAMAGE_SETTLE_MS_MAX}",
                    self.damage_settle_ms
                ),
            });
        }
        Ok(())
    }
}

/// `damage_resync_window_bytes` within its range.
fn check_resync_window(bytes: usize) -> Result<(), OpenError> {
    if !(DAMAGE_RESYNC_WINDOW_BYTES_MIN..=DAMAGE_RESYNC_WINDOW_BYTES_MAX).contains(&bytes) {
        return Err(OpenError::Setting {
            name: "damage_resync_window_bytes",
            why: format!(
                "{bytes} is outside {DAMAGE_RESYNC_WINDOW_BYTES_MIN}..={DAMAGE_RESYNC_WINDOW_BYTES_MAX}"
            ),
        });
    }
    Ok(())
}

/// Whether the next segment is pre-written with zeros (`wal::spare`).
///
/// Why `Auto` leaves it off on tmpfs and ramfs: there an fdatasync costs nothing, so
/// there is no journal commit or block allocation to take off the group's sync, and a
/// spare is a whole segment of memory, written by a thread that takes CPU from the
/// data path (on tmpfs on this project's VM, ack p99 0.35-0.46 ms without it against
/// 1.7-2.3 ms with it while the vCPUs were kept from halting; 1.1-3.0 against 2.7-41
/// ms as booted: docs/benchmarks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prewrite {
    /// On, except where the data directory is on tmpfs or ramfs (said at start).
    Auto,
    /// On, on any filesystem.
    On,
    /// Off: every segment is created empty and grows with its groups.
    Off,
}

/// In the settings file: `"auto"`, or a boolean (the setting was a boolean before
/// `auto`; both spellings of on and off are kept).
impl serde::Serialize for Prewrite {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Prewrite::Auto => s.serialize_str("auto"),
            Prewrite::On => s.serialize_bool(true),
            Prewrite::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Prewrite {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Given {
            Flag(bool),
            Word(String),
        }
        match Given::deserialize(d)? {
            Given::Flag(true) => Ok(Prewrite::On),
            Given::Flag(false) => Ok(Prewrite::Off),
            Given::Word(w) => match w.as_str() {
                "auto" => Ok(Prewrite::Auto),
                "true" => Ok(Prewrite::On),
                "false" => Ok(Prewrite::Off),
                _ => Err(serde::de::Error::custom(format!(
                    "expected `\"auto\"`, `true` or `false`, got {w:?}"
                ))),
            },
        }
    }
}

/// How the writer writes groups. See `docs/architecture.md` ("Direct I/O").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// `O_DIRECT` writes of whole blocks from aligned memory; the partial last block is
    /// kept in memory and written again, completed, with the next group.
    Direct,
    /// Writes through the page cache.
    Buffered,
}

impl WriteMode {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Direct => "direct",
            WriteMode::Buffered => "buffered",
        }
    }
}

/// The I/O driver. See `docs/architecture.md` ("Two drivers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoDriver {
    /// io_uring where `io_uring_setup` works, else epoll.
    Auto,
    /// io_uring: the writer's group commit with linked SQEs, the reactors on
    /// tokio-uring.
    Uring,
    /// No io_uring: the reactors on tokio's epoll reactor (mio), the writer's
    /// operations on threads calling pwrite and fdatasync.
    Epoll,
}

impl IoDriver {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IoDriver::Auto => "auto",
            IoDriver::Uring => "uring",
            IoDriver::Epoll => "epoll",
        }
    }
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
            time_skew_ms_max: 5_000,
            fsync: FsyncPolicy::Always,
            groups_in_flight_max: 4,
            writer_core: None,
            recovery: RecoveryMode::TolerateTornTail,
            retention_bytes_max: 0,
            retention_ms: 0,
            segment_prewrite: Prewrite::Auto,
            write_mode: WriteMode::Direct,
            io_driver: IoDriver::Auto,
            recent_bytes_max: 16 << 20,
            damage_resync_window_bytes: DAMAGE_RESYNC_WINDOW_BYTES_DEFAULT,
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
        check_resync_window(self.damage_resync_window_bytes)
    }
}
