//! The durable segmented log: the storage contract every other stage relies on.
//!
//! # Contract
//!
//! - **append**: a producer frames records into a batch ([`BatchBuilder`]) and hands it
//!   to [`Appender::try_append`]. Batches from one producer are written in the order
//!   they were appended; each gets consecutive offsets. The returned [`Completion`]
//!   resolves to the batch's offsets once the batch is durable, or to an
//!   [`AppendError`](crate::error::AppendError); never both, never twice.
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
//!   the batches it covered (a full disk is [`AppendError::DiskFull`](crate::error::AppendError::DiskFull), and writing
//!   resumes when space returns). A failed fdatasync stops the writer for good: the
//!   records it covered are never acknowledged, and [`LogView::failure`] says why
//!   ([`WriterFailure`]).
//!
//! # Map
//!
//! | piece | module | what it guarantees |
//! |-------|--------|--------------------|
//! | settings | `config` ([`LogConfig`]), `policy` ([`FsyncPolicy`]) | every bound checked once, at open; the policy names what an acknowledgement means |
//! | the open log | `log` ([`Log`]) | open = validate, recover, start the writer; drop = clean shutdown (drain, sync, stop) |
//! | produce | `appender` ([`Appender`]) | a batch is refused on the producer's core unless the writer can trust it; a full ring hands it back |
//! | commit | `writer` | groups retire in offset order; nothing completes or becomes readable before its group is durable |
//! | follow | `watch` ([`CommitFollower`]), [`LogView`] | read-only handles; waking followers takes no lock on the commit path |
//! | failure | `failure` ([`WriterFailure`]) | why the writer stopped, with operation, file and offsets |
//! | counters | `stats` ([`WalStats`]) | figures for `/stats` and `/metrics`, none on the ordering path |
//! | storage | [`format`](mod@format), [`segment`], [`recovery`], [`spare`], [`retention`] | the bytes on disk (see `docs/format.md`), recovery of a torn tail, pre-written segments, removal of old segments |
//! | read | [`reader`], [`check`] | cursors that never pass the committed offset; full verification |
//! | time | [`timeindex`] | the `.tix` file: where a receive time is, by binary search over segments and entries |
//! | recent | `recent`, `aligned` | committed groups' buffers kept for live readers, so what was just written is not read back from the disk; the block-aligned buffers direct writes need |

mod aligned;
mod appender;
pub mod check;
pub mod completion;
mod config;
mod crc;
#[cfg(feature = "failpoints")]
pub(crate) mod failpoints;
mod failure;
pub mod format;
mod log;
mod policy;
pub mod reader;
mod recent;
pub mod recovery;
pub mod retention;
pub mod segment;
pub mod spare;
mod stats;
pub mod timeindex;
pub mod uring;
mod view;
mod watch;
mod writer;

pub use appender::{Appender, TryAppendError};
pub use completion::{Committed, Completion};
pub use config::{
    DAMAGE_RESYNC_WINDOW_BYTES_DEFAULT, DAMAGE_RESYNC_WINDOW_BYTES_MAX,
    DAMAGE_RESYNC_WINDOW_BYTES_MIN, DAMAGE_SETTLE_MS_DEFAULT, DAMAGE_SETTLE_MS_MAX,
    DAMAGE_SETTLE_MS_MIN, DirReadConfig, IoDriver, LogConfig, Prewrite, WriteMode,
};
pub use failure::{WriterFailure, WriterFailureKind};
pub use format::{BatchBuilder, RecordTooLarge, now_ns};
pub use log::Log;
pub use policy::{FsyncPolicy, FsyncPolicyError};
pub use reader::{Reader, Record, SettleWait};
pub(crate) use recent::REUSABLE_MIN as REUSABLE_BUFFERS_MIN;
pub use recovery::{RecoveryMode, RecoveryReport};
pub use segment::DamagedRange;
pub use stats::WalStats;
pub use view::LogView;
pub use watch::{COMMIT_NOTES_MAX, CommitFollower};

pub(crate) use appender::Batch;
pub(crate) use log::Inner;
