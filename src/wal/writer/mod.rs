//! The group-commit writer: one thread, pinned, driving io_uring directly.
//!
//! Loop: gather whatever batches are queued (up to `group_bytes_max`) into a group
//! buffer, stamping offsets and noting index points as it copies; submit the group as
//! a write linked (`IOSQE_IO_LINK`) to an fdatasync; while that is in flight, gather and
//! submit the next group (up to `groups_in_flight_max`). Under direct writes the next
//! group shares a block with the one before: it is gathered once that write is back,
//! or, behind a full group that left a batch waiting, gathered during the write,
//! staged, and submitted the moment the write is back. At most
//! [`SYNCS_IN_FLIGHT_MAX`] fdatasyncs are out: a group submitted past them is written
//! alone and made durable by one covering fdatasync for every such group, issued once
//! their writes are back. Groups retire strictly in
//! order: only when group N is durable are its batches completed and the committed
//! offset moved past it, even if group N+1's sync finished first.
//!
//! Why the io-uring crate and not tokio-uring here: the writer needs linked SQEs
//! (write → fdatasync in one submission, so a group costs one `io_uring_enter`) and
//! several groups in flight on one thread, which tokio-uring 0.5 cannot express (no
//! linked SQEs). The writer has no sockets, so it gains nothing from an async runtime.
//!
//! Copying batches into a group buffer costs one memcpy per byte (about 0.1 ms per MiB)
//! and buys: one contiguous write per group whatever the batch sizes, no iovec limit,
//! and the producer's buffer returned at once for reuse (no allocation in steady state).
//!
//! # Pieces
//!
//! - this module: the loop ([`Writer::run`]), its [`Phase`], the wait, the SQEs that are
//!   not a group's, and the fatal path;
//! - `group`: a group's life: gather (pop, copy, stamp), submit, and its completions;
//! - `retire`: completing durable groups in order, and the rewind after a failed write;
//! - `rotate`: sealing the active segment and starting the next, and the clean finish.
//! - `direct`: `O_DIRECT` on the active segment, and the partial block each group
//!   writes again (`write_mode = "direct"`);
//! - `disk`: where the operations go: io_uring, or under the epoll driver a few I/O
//!   threads calling pwrite and fdatasync, with the same completions.

mod direct;
mod disk;
mod group;
mod retire;
mod rotate;

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use self::rotate::Sealing;
use self::{
    disk::{Disk, Op},
    group::Group,
};
use super::{
    Batch, FsyncPolicy, Inner, WriterFailure, WriterFailureKind, aligned,
    recovery::{ActiveSegment, Recovered},
    segment,
    spare::{self, Spares},
};
use crate::error::{AppendError, OpenError};

const UD_WAKE: u64 = u64::MAX;
const UD_TIMEOUT: u64 = u64::MAX - 1;
const UD_LONE_SYNC: u64 = u64::MAX - 2;
const UD_SEAL_INDEX: u64 = u64::MAX - 3;
const UD_SEAL_TIX: u64 = u64::MAX - 4;
const UD_SEAL_LOG: u64 = u64::MAX - 5;
const UD_COVER_SYNC: u64 = u64::MAX - 6;

/// Groups' fdatasyncs in flight at most, linked or covering (`group`); a sealed
/// segment's syncs and the `interval` policy's lone one are apart. Two keep the disk busy:
/// one group's flush runs while the next is written. A group gathered while two are
/// out is written alone and made durable by the next sync that starts after its write
/// is back, which covers every group written by then: at peak, with more than two
/// groups in flight, syncs carry several groups instead of one each.
const SYNCS_IN_FLIGHT_MAX: usize = 2;

/// What the writer does with new batches: the writer's state machine. Transitions:
///
/// - `Gathering` → `RotateDue`: the batch at the head of the ring does not fit in the
///   active segment, even alone in a group (`group::gather`).
/// - `Gathering` or `RotateDue` → `Rewinding`: the oldest group in flight has a failed
///   write (`retire`); a due rotation is remembered.
/// - `Rewinding` → `Gathering` (or back to `RotateDue`): every group in flight came
///   back and the segment was cut back to where the failed group began (`rewind`).
/// - `RotateDue` → `Gathering`: nothing is in flight and the rotation ran, whether it
///   succeeded or failed the batch that needed it (`rotate`).
///
/// A fatal error leaves the loop from any phase ([`Writer::fail_everything`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking batches: groups are gathered while fewer than `groups_in_flight_max` are
    /// in flight.
    Gathering,
    /// The active segment is too full for the pending batch: take none, let the groups
    /// in flight retire, then rotate.
    RotateDue,
    /// A write failed: take none until every group in flight has come back (later
    /// groups were written past the failed one), then truncate and fail them all.
    Rewinding {
        /// A rotation was due when the write failure was found; it still is after.
        rotate_due: bool,
    },
}

/// The SQEs of which at most one of each kind is outstanding and that belong to no
/// group. Each flag is set when its SQE is pushed and cleared when its CQE is reaped;
/// the three are independent of each other and of the [`Phase`], hence flags.
#[derive(Debug, Default)]
struct Armed {
    /// A read of the ring's doorbell eventfd (`wake_buf`).
    wake: bool,
    /// The `interval` policy's timer (`timeout_spec`).
    timeout: bool,
    /// The `interval` policy's fdatasync not tied to a group.
    lone_sync: bool,
}

/// The writer thread's state. Lives on one thread; nothing here is shared.
struct Writer {
    inner: Arc<Inner>,
    disk: Disk,
    active: ActiveSegment,
    /// Where the next gathered group goes in the active segment.
    pos: u64,
    /// Offset the next gathered record gets.
    next_offset: u64,
    /// `groups_in_flight_max` groups, allocated once.
    groups: Vec<Group>,
    /// Indices into `groups` of the groups in flight, oldest first.
    in_flight: VecDeque<usize>,
    /// A batch popped from the ring that did not fit the group being gathered.
    pending: Option<Batch>,
    /// See [`Phase`].
    phase: Phase,
    /// See [`Armed`].
    armed: Armed,
    /// Target of the eventfd read; boxed so its address is stable.
    wake_buf: Box<u64>,
    /// Bytes written since the last fdatasync, under the non-durable policies.
    unsynced: bool,
    /// When the last lone fdatasync was submitted (the `interval` policy's clock).
    last_sync: Instant,
    /// The completions of one `reap`, copied off the CQ; capacity the CQ's, allocated
    /// once (the CQ is borrowed while it is iterated, the handlers need `&mut self`).
    cqes: Vec<(u64, i32)>,
    /// Groups of one `reap` whose short write is to be resubmitted; capacity
    /// `groups_in_flight_max`, allocated once.
    resubmit: Vec<usize>,
    /// fdatasyncs in flight, linked to a group's write or covering groups written alone
    /// (at most [`SYNCS_IN_FLIGHT_MAX`]).
    syncs_in_flight: usize,
    /// The groups the covering fdatasync in flight makes durable (empty: none is);
    /// capacity `groups_in_flight_max`, allocated once.
    cover: Vec<usize>,
    /// When that fdatasync was submitted, for the sync latency figure.
    cover_submitted: Instant,
    /// The pre-written spare segments' preparer, under `segment_prewrite`.
    spares: Option<Spares>,
    /// The last sealed segment's files while their syncs are in flight (see
    /// `rotate`); the next rotation waits for them.
    sealing: Option<Sealing>,
    /// Groups are written `O_DIRECT`: whole blocks from aligned memory (see `direct`).
    direct: bool,
    /// Under direct writes, the bytes of the active segment's block that `pos` falls
    /// in, before `pos`: the next group writes them again in front of its records.
    tail: Vec<u8>,
    /// The data directory's lock, held for the writer's life.
    _lock: std::fs::File,
}

/// Where the writer's operations go, chosen by the log at open.
pub(crate) enum DiskChoice {
    /// A ring created (and so known to work) by the caller.
    Uring(Box<io_uring::IoUring>),
    /// The epoll driver's I/O threads.
    Threads,
}

pub(crate) fn spawn(
    inner: Arc<Inner>,
    disk: DiskChoice,
    recovered: Recovered,
) -> Result<JoinHandle<()>, OpenError> {
    let core = inner.config.writer_core;
    let depth = inner.config.groups_in_flight_max;
    let cap = inner.config.group_bytes_max;
    let disk = match disk {
        DiskChoice::Uring(ring) => Disk::Uring(disk::UringDisk::new(*ring)),
        // One thread per group in flight, one for the interval policy's lone sync, and
        // three for a sealed segment's syncs.
        DiskChoice::Threads => Disk::Threads(
            disk::ThreadDisk::start(depth + 4)
                .map_err(|e| OpenError::io("start the writer's I/O threads", "", e))?,
        ),
    };
    let cq_entries = disk.completions_max();
    let mut active = recovered.active;
    let tail = direct::start(&inner, &mut active);
    let direct = tail.is_some();
    // After the write mode is known: spares are zeroed the same way.
    let spares = if spare::wanted(&inner) {
        match Spares::start(inner.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the spare segment preparer; segments will be created empty");
                None
            }
        }
    } else {
        None
    };
    inner.prewrite.store(spares.is_some(), Ordering::Relaxed);
    let mut w = Writer {
        pos: active.end_pos,
        next_offset: recovered.next_offset,
        active,
        // A lead of up to a block comes before the records, and the write is padded.
        groups: (0..depth)
            .map(|_| Group::new(cap + 2 * aligned::BLOCK_BYTES))
            .collect(),
        in_flight: VecDeque::with_capacity(depth),
        pending: None,
        phase: Phase::Gathering,
        armed: Armed::default(),
        wake_buf: Box::new(0),
        unsynced: false,
        last_sync: Instant::now(),
        cqes: Vec::with_capacity(cq_entries),
        resubmit: Vec::with_capacity(depth),
        syncs_in_flight: 0,
        cover: Vec::with_capacity(depth),
        cover_submitted: Instant::now(),
        spares,
        sealing: None,
        direct,
        tail: tail.unwrap_or_default(),
        _lock: recovered.lock,
        inner,
        disk,
    };
    std::thread::Builder::new()
        .name("rs-writer".into())
        .spawn(move || {
            if let Some(id) = core
                && !core_affinity::set_for_current(core_affinity::CoreId { id })
            {
                tracing::warn!(core = id, "could not pin the writer thread");
            }
            // A panic (a broken invariant) must not leave producers waiting forever on
            // completions nobody will resolve: catch it and fail everything like any
            // other fatal error. `fail_everything` leaks what the kernel may still own.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.run()));
            let why = match outcome {
                Ok(Ok(())) => return,
                Ok(Err(why)) => why,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("unknown panic");
                    WriterFailureKind::Panicked { what: what.into() }.into()
                }
            };
            w.fail_everything(why);
        })
        .map_err(|e| OpenError::io("spawn writer thread", "", e))
}

impl Writer {
    /// The main loop. Returns `Err` only for a fatal failure.
    fn run(&mut self) -> Result<(), WriterFailure> {
        loop {
            self.reap()?;
            let in_flight = self.in_flight.len();
            self.retire()?;
            if self.in_flight.len() < in_flight {
                self.release_seal_syncs()?;
            }
            // Failed groups were retired above; nothing else to do this turn.
            if let Phase::Rewinding { rotate_due } = self.phase
                && self.in_flight.is_empty()
            {
                self.phase = after_rewind(rotate_due);
            }
            // Not while the interval policy's lone fdatasync is out: under the epoll
            // driver an I/O thread syncs by descriptor, and rotation closes it.
            if self.phase == Phase::RotateDue
                && self.in_flight.is_empty()
                && !self.armed.lone_sync
                && self.sealing.is_none()
            {
                self.rotate()?;
            }
            self.maybe_lone_sync()?;
            while self.can_gather() {
                if !self.gather_and_submit()? {
                    break;
                }
            }
            if self.in_flight.is_empty() {
                // Never wait with a seal's syncs held and nothing to bring them out.
                self.release_seal_syncs()?;
            }
            let idle = self.in_flight.is_empty()
                && self.pending.is_none()
                && !self.armed.lone_sync
                && self.sealing.is_none();
            // Idle rules out Rewinding (it needs a group in flight); a due rotation must
            // run before the writer stops.
            if idle
                && self.phase == Phase::Gathering
                && self.inner.ring.is_empty()
                && !self.inner.ring.is_open()
            {
                // Closed and drained: the ring's close() waited out every producer.
                return self.finish();
            }
            self.wait(idle)?;
        }
    }

    /// Blocks (in io_uring_enter, or ppoll under the epoll driver) until something
    /// completes or a producer wakes us.
    /// Never blocks unless a completion or a wake-up is sure to come.
    fn wait(&mut self, idle: bool) -> Result<(), WriterFailure> {
        self.arm_timeout()?;
        let outstanding = !self.in_flight.is_empty()
            || self.armed.lone_sync
            || self.armed.timeout
            || self.sealing.is_some();
        let can_take_more = self.can_gather() && self.pending.is_none();
        if can_take_more {
            // Ask producers to wake us: a new batch lets us start a group now.
            if !self.inner.ring.prepare_sleep() {
                return Ok(());
            }
            if !self.inner.ring.is_open() && idle {
                self.inner.ring.cancel_sleep();
                return Ok(());
            }
            self.arm_wake()?;
        } else if !outstanding {
            // E.g. a rotation became due with nothing in flight: go round again.
            return Ok(());
        }
        let r = self.disk.submit_and_wait();
        self.inner.ring.cancel_sleep();
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(()),
            Err(source) => Err(WriterFailureKind::Enter { source }.into()),
        }
    }

    /// Whether a new group may be gathered now: the writer is gathering, a group is
    /// free, and under direct writes the newest group is not staged: the next one
    /// writes the block they share again, and two writes of one block in flight could
    /// land in either order (a staged group waits for that write; the syncs may still
    /// overlap).
    fn can_gather(&self) -> bool {
        // Under direct writes the newest group's write must be all back first, except
        // that the next group is gathered (staged) while it runs if a full group left
        // a batch waiting: the writer is behind and the disk should not wait for the
        // copy. Otherwise the writer waits for that write, as the batches arriving
        // meanwhile join the next group: at low rates a group staged early would hold
        // fewer batches and leave the rest a write further back. Never behind a failed
        // write: the rewind would refuse what the staged group took.
        let g = |gi: usize| &self.groups[gi];
        self.phase == Phase::Gathering
            && self.in_flight.len() < self.groups.len()
            && !(self.direct
                && self.in_flight.back().is_some_and(|&gi| {
                    !g(gi).write_done()
                        && (g(gi).staged || g(gi).failed() || self.pending.is_none())
                }))
    }

    /// Under `interval` with unsynced data: a timer, so the wait ends in time for the
    /// next lone fdatasync.
    fn arm_timeout(&mut self) -> Result<(), WriterFailure> {
        if let FsyncPolicy::Interval { interval_ms } = self.inner.config.fsync
            && self.unsynced
            && !self.armed.timeout
        {
            let left = Duration::from_millis(interval_ms).saturating_sub(self.last_sync.elapsed());
            let after = left.max(Duration::from_micros(100));
            self.push(&[(Op::Timeout { after }, UD_TIMEOUT)])?;
            self.armed.timeout = true;
        }
        Ok(())
    }

    /// Queues the read of the doorbell that a producer's push wakes the wait with.
    /// A failure to queue it is fatal: sleeping without it could sleep for good.
    fn arm_wake(&mut self) -> Result<(), WriterFailure> {
        if self.armed.wake {
            return Ok(());
        }
        let read = Op::ReadEventfd {
            fd: self.inner.ring.wake_fd(),
            into: &mut *self.wake_buf,
        };
        self.push(&[(read, UD_WAKE)])?;
        self.armed.wake = true;
        Ok(())
    }

    /// Queues a chain of operations (see [`Disk::push`]).
    fn push(&mut self, chain: &[(Op, u64)]) -> Result<(), WriterFailure> {
        // SAFETY: every buffer an operation points at (group buffers, wake_buf) is
        // owned by self and neither moved nor freed until its completion is reaped.
        unsafe { self.disk.push(chain) }
            .map_err(|source| WriterFailureKind::Submit { source }.into())
    }

    /// Starts the queued operations without waiting.
    fn submit(&mut self) -> Result<(), WriterFailure> {
        match self.disk.submit() {
            Ok(_) => Ok(()),
            Err(source) => Err(WriterFailureKind::Submit { source }.into()),
        }
    }

    /// Takes every completion off the CQ and hands each to its owner.
    fn reap(&mut self) -> Result<(), WriterFailure> {
        self.cqes.clear();
        self.disk.reap(&mut self.cqes);
        self.resubmit.clear();
        for i in 0..self.cqes.len() {
            let (ud, res) = self.cqes[i];
            match ud {
                UD_WAKE => self.armed.wake = false,
                UD_TIMEOUT => self.armed.timeout = false,
                UD_LONE_SYNC => {
                    self.armed.lone_sync = false;
                    if res < 0 {
                        return Err(WriterFailureKind::IntervalSync {
                            path: self.active_path(),
                            source: std::io::Error::from_raw_os_error(-res),
                        }
                        .into());
                    }
                    self.note_sync(self.last_sync);
                }
                UD_SEAL_LOG | UD_SEAL_INDEX | UD_SEAL_TIX => self.on_seal_cqe(ud, res)?,
                UD_COVER_SYNC => self.on_cover_sync(res)?,
                _ => self.on_group_cqe(ud, res)?,
            }
        }
        for i in 0..self.resubmit.len() {
            let gi = self.resubmit[i];
            if !self.groups[gi].failed() {
                self.submit_write(gi)?;
            }
        }
        // The groups written alone are older than the staged one: a freed sync goes
        // to them first.
        self.maybe_cover_sync()?;
        self.submit_staged()
    }

    /// Under `interval`: an fdatasync not tied to any group, at most every interval.
    fn maybe_lone_sync(&mut self) -> Result<(), WriterFailure> {
        let FsyncPolicy::Interval { interval_ms } = self.inner.config.fsync else {
            return Ok(());
        };
        if self.unsynced
            && !self.armed.lone_sync
            && self.last_sync.elapsed() >= Duration::from_millis(interval_ms)
        {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&self.active.file);
            self.push(&[(Op::Datasync { fd }, UD_LONE_SYNC)])?;
            self.submit()?;
            self.armed.lone_sync = true;
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    fn note_sync(&mut self, since: Instant) {
        self.inner
            .stats
            .record_sync(since.elapsed().as_nanos() as u64);
    }

    /// The active segment's path, for error messages.
    fn active_path(&self) -> std::path::PathBuf {
        segment::segment_path(&self.inner.config.dir, self.active.base)
    }

    /// A fatal failure: record it, refuse new batches, fail everything not yet durable.
    fn fail_everything(&mut self, why: WriterFailure) {
        tracing::error!(reason = %why, "log writer stopped; nothing further is acknowledged");
        let err = AppendError::Failed(why.message());
        let _ = self.inner.failure.set(why);
        self.inner.ring.close();
        // Every group, not only those in flight: a panic may have struck while one was
        // being gathered.
        self.in_flight.clear();
        self.cover.clear();
        for g in &mut self.groups {
            g.fail_batches(&err);
        }
        if let Some(b) = self.pending.take() {
            b.slot.fail(err.clone());
        }
        while let Some(b) = self.inner.ring.pop() {
            b.slot.fail(err.clone());
        }
        self.inner.commit_watch.notify();
        // Operations still in flight may point into the group buffers and the wake
        // target. Rather than wait on a disk in an unknown state, leak them: this path
        // runs once, just before the process reports the failure and exits.
        std::mem::forget(std::mem::take(&mut self.groups));
        std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
        std::mem::forget(self.sealing.take());
        // Nor wait for I/O threads that may be stuck on the failing device.
        self.disk.detach();
    }
}

/// The phase a finished rewind leaves the writer in.
fn after_rewind(rotate_due: bool) -> Phase {
    if rotate_due {
        Phase::RotateDue
    } else {
        Phase::Gathering
    }
}
