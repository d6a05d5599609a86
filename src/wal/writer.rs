//! The group-commit writer: one thread, pinned, driving io_uring directly.
//!
//! Loop: gather whatever batches are queued (up to `group_bytes_max`) into a group
//! buffer, stamping offsets and noting index points as it copies; submit the group as
//! a write linked (`IOSQE_IO_LINK`) to an fdatasync; while that is in flight, gather and
//! submit the next group (up to `groups_in_flight_max`). Groups retire strictly in
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

use std::{
    collections::VecDeque,
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use io_uring::{IoUring, opcode, squeue, types};

use super::{
    Batch, FsyncPolicy, Inner,
    completion::Slot,
    format::{self, SEGMENT_HEADER_BYTES},
    recovery::{self, ActiveSegment, Recovered},
    segment,
    spare::Spares,
    sync_dir,
};
use crate::error::{AppendError, OpenError};

const OP_WRITE: u64 = 1;
const OP_SYNC: u64 = 2;
const UD_WAKE: u64 = u64::MAX;
const UD_TIMEOUT: u64 = u64::MAX - 1;
const UD_LONE_SYNC: u64 = u64::MAX - 2;

fn user_data(group: usize, op: u64) -> u64 {
    ((group as u64) << 8) | op
}

/// One group: the unit of write + fdatasync.
#[derive(Debug)]
struct Group {
    /// Framed records, offsets stamped; capacity `group_bytes_max`, allocated once.
    buf: Vec<u8>,
    /// Completions of the batches in this group, with each batch's first offset.
    slots: Vec<(Arc<Slot>, u64)>,
    /// Sparse-index entries for records in this group, written once it is durable.
    index: Vec<u8>,
    /// Where `buf` goes in the active segment.
    file_pos: u64,
    /// Offset of the first record in the group.
    first_offset: u64,
    /// Exclusive end offset of the group.
    end_offset: u64,
    /// Bytes of `buf` the kernel confirmed written.
    written: usize,
    /// The last write came back short; the linked sync will be cancelled and the rest
    /// resubmitted.
    short: bool,
    /// The group is durable (or written, under a non-durable policy).
    done: bool,
    /// The write failed with this errno.
    write_errno: Option<i32>,
    /// When the write was submitted, for the sync latency figure.
    submitted: Instant,
    /// SQEs of this group whose CQE has not come back; the buffer is the kernel's
    /// while this is non-zero.
    ops: u8,
}

impl Group {
    fn new(capacity: usize) -> Self {
        Group {
            buf: Vec::with_capacity(capacity),
            slots: Vec::new(),
            index: Vec::new(),
            file_pos: 0,
            first_offset: 0,
            end_offset: 0,
            written: 0,
            short: false,
            done: false,
            write_errno: None,
            submitted: Instant::now(),
            ops: 0,
        }
    }

    fn reset(&mut self, file_pos: u64, first_offset: u64) {
        assert_eq!(self.ops, 0, "group reused while the kernel still owns it");
        self.buf.clear();
        self.slots.clear();
        self.index.clear();
        self.file_pos = file_pos;
        self.first_offset = first_offset;
        self.end_offset = first_offset;
        self.written = 0;
        self.short = false;
        self.done = false;
        self.write_errno = None;
    }
}

/// The writer thread's state. Lives on one thread; nothing here is shared.
struct Writer {
    inner: Arc<Inner>,
    ring: IoUring,
    active: ActiveSegment,
    /// Where the next gathered group goes in the active segment.
    pos: u64,
    /// Offset the next gathered record gets.
    next_offset: u64,
    groups: Vec<Group>,
    /// Indices into `groups` of the groups in flight, oldest first.
    in_flight: VecDeque<usize>,
    /// A batch popped from the ring that did not fit the group being gathered.
    pending: Option<Batch>,
    /// An eventfd read is pending in the ring.
    wake_armed: bool,
    /// Target of the eventfd read; boxed so its address is stable.
    wake_buf: Box<u64>,
    /// Target of the interval timer; boxed so its address is stable.
    timeout_spec: Box<types::Timespec>,
    timeout_armed: bool,
    /// Bytes written since the last fdatasync, under the non-durable policies.
    unsynced: bool,
    last_sync: Instant,
    lone_sync_in_flight: bool,
    /// The segment is too full for the pending batch: rotate when nothing is in flight.
    rotate_due: bool,
    /// A write failed: stop gathering until every group in flight has come back.
    rewinding: bool,
    /// The pre-written spare segments' preparer, under `segment_prewrite`.
    spares: Option<Spares>,
    _lock: std::fs::File,
}

pub(crate) fn spawn(
    inner: Arc<Inner>,
    ring: IoUring,
    recovered: Recovered,
) -> Result<JoinHandle<()>, OpenError> {
    let core = inner.config.writer_core;
    let depth = inner.config.groups_in_flight_max;
    let cap = inner.config.group_bytes_max;
    let spares = if inner.config.segment_prewrite {
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
    let mut w = Writer {
        pos: recovered.active.end_pos,
        next_offset: recovered.next_offset,
        active: recovered.active,
        groups: (0..depth).map(|_| Group::new(cap)).collect(),
        in_flight: VecDeque::with_capacity(depth),
        pending: None,
        wake_armed: false,
        wake_buf: Box::new(0),
        timeout_spec: Box::new(types::Timespec::new()),
        timeout_armed: false,
        unsynced: false,
        last_sync: Instant::now(),
        lone_sync_in_flight: false,
        rotate_due: false,
        rewinding: false,
        spares,
        _lock: recovered.lock,
        inner,
        ring,
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
            let why: Arc<str> = match outcome {
                Ok(Ok(())) => return,
                Ok(Err(why)) => why,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("unknown panic");
                    format!("the log writer panicked: {what}").into()
                }
            };
            w.fail_everything(why);
        })
        .map_err(|e| OpenError::io("spawn writer thread", "", e))
}

/// Wakes the writer from another thread (used by shutdown).
pub(crate) fn wake(inner: &Inner) {
    let one: u64 = 1;
    // SAFETY: an 8-byte write from a live u64 to the ring's eventfd.
    unsafe { libc::write(inner.ring.wake_fd(), (&one as *const u64).cast(), 8) };
}

fn errno_text(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

impl Writer {
    /// The main loop. Returns `Err` only for a fatal failure, with its description.
    fn run(&mut self) -> Result<(), Arc<str>> {
        loop {
            self.reap()?;
            self.retire()?;
            // Failed groups were retired above; nothing else to do this turn.
            if self.rewinding && self.in_flight.is_empty() {
                self.rewinding = false;
            }
            if self.rotate_due && self.in_flight.is_empty() {
                self.rotate()?;
            }
            self.maybe_lone_sync()?;
            while !self.rewinding && !self.rotate_due && self.in_flight.len() < self.groups.len() {
                if !self.gather_and_submit()? {
                    break;
                }
            }
            let idle =
                self.in_flight.is_empty() && self.pending.is_none() && !self.lone_sync_in_flight;
            if idle && !self.rotate_due && self.inner.ring.is_empty() && !self.inner.ring.is_open()
            {
                // Closed and drained: the ring's close() waited out every producer.
                return self.finish();
            }
            self.wait(idle)?;
        }
    }

    /// Blocks in io_uring_enter until something completes or a producer wakes us.
    /// Never blocks unless a completion or a wake-up is sure to come.
    fn wait(&mut self, idle: bool) -> Result<(), Arc<str>> {
        if let FsyncPolicy::Interval { interval_ms } = self.inner.config.fsync
            && self.unsynced
            && !self.timeout_armed
        {
            let left = Duration::from_millis(interval_ms).saturating_sub(self.last_sync.elapsed());
            *self.timeout_spec = types::Timespec::from(left.max(Duration::from_micros(100)));
            let sqe = opcode::Timeout::new(&*self.timeout_spec as *const _)
                .build()
                .user_data(UD_TIMEOUT);
            self.push_sqe(&sqe)?;
            self.timeout_armed = true;
        }
        let outstanding =
            !self.in_flight.is_empty() || self.lone_sync_in_flight || self.timeout_armed;
        let can_take_more = self.in_flight.len() < self.groups.len()
            && !self.rotate_due
            && !self.rewinding
            && self.pending.is_none();
        if can_take_more {
            // Ask producers to wake us: a new batch lets us start a group now.
            if !self.inner.ring.prepare_sleep() {
                return Ok(());
            }
            if !self.inner.ring.is_open() && idle {
                self.inner.ring.cancel_sleep();
                return Ok(());
            }
            self.arm_wake();
        } else if !outstanding {
            // E.g. a rotation became due with nothing in flight: go round again.
            return Ok(());
        }
        let r = self.ring.submit_and_wait(1);
        self.inner.ring.cancel_sleep();
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(()),
            Err(e) => Err(format!("io_uring_enter failed: {e}").into()),
        }
    }

    fn arm_wake(&mut self) {
        if self.wake_armed {
            return;
        }
        let sqe = opcode::Read::new(
            types::Fd(self.inner.ring.wake_fd()),
            (&mut *self.wake_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(UD_WAKE);
        // The SQ has room: at most 2 entries per group plus three singles are queued.
        if self.push_sqe(&sqe).is_ok() {
            self.wake_armed = true;
        }
    }

    fn push_sqe(&mut self, sqe: &squeue::Entry) -> Result<(), Arc<str>> {
        // SAFETY: every buffer an SQE points at (group buffers, wake_buf, timeout_spec)
        // is owned by self and neither moved nor freed until its CQE has been reaped.
        if unsafe { self.ring.submission().push(sqe) }.is_err() {
            self.ring
                .submit()
                .map_err(|e| Arc::<str>::from(format!("io_uring submit failed: {e}")))?;
            // SAFETY: as above.
            unsafe { self.ring.submission().push(sqe) }
                .map_err(|_| Arc::<str>::from("io_uring submission queue full"))?;
        }
        Ok(())
    }

    /// Pops batches into a free group and submits it. Returns false if there was
    /// nothing to gather.
    fn gather_and_submit(&mut self) -> Result<bool, Arc<str>> {
        let gi = (0..self.groups.len())
            .find(|i| !self.in_flight.contains(i))
            .expect("a free group exists when fewer than depth are in flight");
        let segment_max = self.inner.config.segment_bytes_max;
        let empty_segment = self.pos == SEGMENT_HEADER_BYTES as u64;
        let room = if empty_segment {
            self.inner.config.group_bytes_max
        } else {
            (segment_max.saturating_sub(self.pos) as usize).min(self.inner.config.group_bytes_max)
        };
        let interval = u64::from(self.inner.config.index_interval_bytes);
        let base = self.active.base;
        let g = &mut self.groups[gi];
        g.reset(self.pos, self.next_offset);
        let mut next = self.next_offset;
        let mut last_index_pos = self.active.last_index_pos;
        while let Some(batch) = self.pending.take().or_else(|| self.inner.ring.pop()) {
            if g.buf.len() + batch.frames.len() > room {
                if g.buf.is_empty() && !empty_segment {
                    self.rotate_due = true;
                }
                self.pending = Some(batch);
                break;
            }
            // The slot goes into the group first, so that if a check below panics the
            // batch is failed with the rest rather than dropped unanswered.
            g.slots.push((batch.slot, next));
            let start = g.buf.len();
            g.buf.extend_from_slice(&batch.frames);
            let file_start = g.file_pos + start as u64;
            let index = &mut g.index;
            let n = format::stamp_offsets(&mut g.buf[start..], next, |offset, rel| {
                let position = file_start + rel as u64;
                if last_index_pos == 0 || position >= last_index_pos + interval {
                    index.extend_from_slice(&format::encode_index_entry(
                        (offset - base) as u32,
                        position as u32,
                    ));
                    last_index_pos = position;
                }
            });
            assert_eq!(
                n,
                u64::from(batch.records),
                "batch record count disagrees with its frames"
            );
            next += n;
            // batch.frames drops here: the producer's builder can reuse the memory.
        }
        if g.slots.is_empty() {
            return Ok(false);
        }
        g.end_offset = next;
        self.active.last_index_pos = last_index_pos;
        self.pos += g.buf.len() as u64;
        self.next_offset = next;
        self.in_flight.push_back(gi);
        self.submit_write(gi)?;
        if self.pos >= segment_max / 4
            && let Some(s) = self.spares.as_mut()
        {
            s.request();
        }
        Ok(true)
    }

    /// Submits the unwritten part of group `gi`, linked to an fdatasync under `always`.
    fn submit_write(&mut self, gi: usize) -> Result<(), Arc<str>> {
        #[cfg(feature = "failpoints")]
        super::failpoints::before_group();
        let fd = types::Fd(self.active.file.as_raw_fd());
        let durable = self.inner.config.fsync == FsyncPolicy::Always;
        let g = &mut self.groups[gi];
        g.short = false;
        g.submitted = Instant::now();
        let rest = &g.buf[g.written..];
        #[cfg(feature = "failpoints")]
        let rest = &rest[..super::failpoints::write_len(rest.len())];
        let write = opcode::Write::new(fd, rest.as_ptr(), rest.len() as u32)
            .offset(g.file_pos + g.written as u64)
            .build()
            .user_data(user_data(gi, OP_WRITE));
        if durable {
            let sync = opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(user_data(gi, OP_SYNC));
            // Make room for both so the link is never split across submissions.
            let free = {
                let sq = self.ring.submission();
                sq.capacity() - sq.len()
            };
            if free < 2 {
                self.ring
                    .submit()
                    .map_err(|e| Arc::<str>::from(format!("io_uring submit failed: {e}")))?;
            }
            self.push_sqe(&write.flags(squeue::Flags::IO_LINK))?;
            self.push_sqe(&sync)?;
            self.groups[gi].ops += 2;
        } else {
            self.push_sqe(&write)?;
            self.groups[gi].ops += 1;
        }
        self.ring
            .submit()
            .map_err(|e| Arc::<str>::from(format!("io_uring submit failed: {e}")))?;
        Ok(())
    }

    /// Takes every completion off the CQ and updates the groups.
    fn reap(&mut self) -> Result<(), Arc<str>> {
        let durable = self.inner.config.fsync == FsyncPolicy::Always;
        let mut resubmit: Vec<usize> = Vec::new();
        let cqes: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (ud, res) in cqes {
            match ud {
                UD_WAKE => self.wake_armed = false,
                UD_TIMEOUT => self.timeout_armed = false,
                UD_LONE_SYNC => {
                    self.lone_sync_in_flight = false;
                    if res < 0 {
                        return Err(format!(
                            "fdatasync of {} failed: {}",
                            segment::segment_path(&self.inner.config.dir, self.active.base)
                                .display(),
                            errno_text(-res)
                        )
                        .into());
                    }
                    self.note_sync(self.last_sync);
                }
                _ => {
                    let gi = (ud >> 8) as usize;
                    let op = ud & 0xff;
                    #[cfg(feature = "failpoints")]
                    let res = if op == OP_SYNC {
                        super::failpoints::fsync_result(res)
                    } else {
                        res
                    };
                    let g = &mut self.groups[gi];
                    g.ops -= 1;
                    if op == OP_WRITE {
                        if res < 0 {
                            g.write_errno = Some(-res);
                        } else if res == 0 && g.written < g.buf.len() {
                            g.write_errno = Some(libc::EIO);
                        } else {
                            g.written += res as usize;
                            if g.written < g.buf.len() {
                                g.short = true;
                            } else if !durable {
                                g.done = true;
                                self.unsynced = true;
                            }
                        }
                    } else if res == -libc::ECANCELED {
                        // The linked write failed or came back short: handled below, once
                        // both completions are in, whichever order they arrived in.
                    } else if res < 0 {
                        return Err(format!(
                            "fdatasync of {} failed: {}; the records it covered (offsets {}..{}) are not acknowledged",
                            segment::segment_path(&self.inner.config.dir, self.active.base).display(),
                            errno_text(-res),
                            g.first_offset,
                            g.end_offset
                        )
                        .into());
                    } else if g.written < g.buf.len() {
                        // A short write whose linked sync ran anyway: written below.
                        g.short = true;
                    } else {
                        g.done = true;
                        let submitted = g.submitted;
                        self.note_sync(submitted);
                    }
                    // A short write is resubmitted once every completion of its last
                    // submission is in (the write's and, under `always`, the cancelled or
                    // completed sync's), in whatever order the kernel posted them.
                    let g = &self.groups[gi];
                    if g.ops == 0 && !g.done && g.write_errno.is_none() && g.written < g.buf.len() {
                        resubmit.push(gi);
                    }
                }
            }
        }
        for gi in resubmit {
            if self.groups[gi].write_errno.is_none() {
                self.submit_write(gi)?;
            }
        }
        Ok(())
    }

    fn note_sync(&mut self, since: Instant) {
        let ns = since.elapsed().as_nanos() as u64;
        let st = &self.inner.stats;
        st.fsyncs.fetch_add(1, Ordering::Relaxed);
        st.fsync_ns_total.fetch_add(ns, Ordering::Relaxed);
        st.fsync_ns_max.fetch_max(ns, Ordering::Relaxed);
        let us = ns / 1000;
        let bucket = (u64::BITS - us.leading_zeros()) as usize;
        st.commit_us_buckets[bucket.min(super::COMMIT_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Completes finished groups in order; handles a failed write.
    fn retire(&mut self) -> Result<(), Arc<str>> {
        while let Some(&gi) = self.in_flight.front() {
            let g = &self.groups[gi];
            if let Some(errno) = g.write_errno {
                // Later groups were written past the failed one: wait for all of them,
                // then cut the file back to where this group began and fail them all.
                self.rewinding = true;
                let all_back = self.in_flight.iter().all(|&i| self.groups[i].ops == 0);
                if !all_back {
                    return Ok(());
                }
                return self.rewind(errno);
            }
            if !g.done || g.ops != 0 {
                return Ok(());
            }
            self.in_flight.pop_front();
            let g = &mut self.groups[gi];
            if !g.index.is_empty() {
                // Not synced on purpose: recovery validates index entries against the log.
                if let Err(e) = self
                    .active
                    .index
                    .write_all_at(&g.index, self.active.index_len)
                {
                    tracing::warn!(error = %e, "index write failed; readers will scan further");
                } else {
                    self.active.index_len += g.index.len() as u64;
                }
            }
            let prev = self.inner.committed_end.load(Ordering::Relaxed);
            assert_eq!(prev, g.first_offset, "groups must retire in offset order");
            // Groups never span a rotation (it waits for none in flight): g is in the
            // active segment. Before committed_end, so readers that see the new end see
            // a written position covering it.
            self.inner
                .active_written
                .store(g.file_pos + g.buf.len() as u64, Ordering::Release);
            // Release: readers that see the new end also see the bytes in the page cache.
            self.inner
                .committed_end
                .store(g.end_offset, Ordering::Release);
            let st = &self.inner.stats;
            st.records_committed
                .fetch_add(g.end_offset - g.first_offset, Ordering::Relaxed);
            st.bytes_committed
                .fetch_add(g.buf.len() as u64, Ordering::Relaxed);
            st.groups_committed.fetch_add(1, Ordering::Relaxed);
            for (slot, first) in g.slots.drain(..) {
                slot.complete(first);
            }
            self.inner.commit_watch.notify();
        }
        Ok(())
    }

    /// After a failed write: truncate the segment back to where the first failed group
    /// began, fail every batch in flight, and carry on from there.
    fn rewind(&mut self, errno: i32) -> Result<(), Arc<str>> {
        let first = self.in_flight[0];
        let (file_pos, first_offset) =
            (self.groups[first].file_pos, self.groups[first].first_offset);
        let path = segment::segment_path(&self.inner.config.dir, self.active.base);
        // A pre-written segment is cut here too: stale bytes past the cut must never be
        // read as records, and the segment carries on as an ordinary, appended one.
        self.active.prewritten = false;
        if let Err(e) = self.active.file.set_len(file_pos) {
            return Err(format!(
                "write to {} failed ({}) and truncating back to byte {file_pos} failed too ({e})",
                path.display(),
                errno_text(errno)
            )
            .into());
        }
        let text: Arc<str> = format!("writing {}: {}", path.display(), errno_text(errno)).into();
        let disk_full = errno == libc::ENOSPC || errno == libc::EDQUOT;
        let err = if disk_full {
            AppendError::DiskFull(text)
        } else {
            AppendError::Write(text)
        };
        let counter = if disk_full {
            &self.inner.stats.disk_full_errors
        } else {
            &self.inner.stats.write_errors
        };
        // Live readers compare this count to drop bytes they buffered past the committed
        // offset (now cut, and soon rewritten with other records). Relaxed suffices: the
        // count is bumped before anything written after the cut is committed, and
        // readers load it after an Acquire load of committed_end.
        self.inner.active_written.store(file_pos, Ordering::Release);
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %err, offset = first_offset, "write failed; batches refused, log truncated back");
        for gi in self.in_flight.drain(..) {
            for (slot, _) in self.groups[gi].slots.drain(..) {
                slot.fail(err.clone());
            }
        }
        self.pos = file_pos;
        self.next_offset = first_offset;
        // Index points past the cut are dropped from memory; none were written yet.
        self.active.last_index_pos = self.active.last_index_pos.min(file_pos.saturating_sub(1));
        if self.active.last_index_pos < SEGMENT_HEADER_BYTES as u64 {
            self.active.last_index_pos = 0;
        }
        self.rewinding = false;
        Ok(())
    }

    /// Under `interval`: an fdatasync not tied to any group, at most every interval.
    fn maybe_lone_sync(&mut self) -> Result<(), Arc<str>> {
        let FsyncPolicy::Interval { interval_ms } = self.inner.config.fsync else {
            return Ok(());
        };
        if self.unsynced
            && !self.lone_sync_in_flight
            && self.last_sync.elapsed() >= Duration::from_millis(interval_ms)
        {
            let sqe = opcode::Fsync::new(types::Fd(self.active.file.as_raw_fd()))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(UD_LONE_SYNC);
            self.push_sqe(&sqe)?;
            self.ring
                .submit()
                .map_err(|e| Arc::<str>::from(format!("io_uring submit failed: {e}")))?;
            self.lone_sync_in_flight = true;
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Seals the active segment and starts the next. Runs with nothing in flight.
    fn rotate(&mut self) -> Result<(), Arc<str>> {
        debug_assert!(self.in_flight.is_empty());
        let dir = self.inner.config.dir.clone();
        let old = segment::segment_path(&dir, self.active.base);
        self.seal_length()
            .and_then(|()| self.active.file.sync_data())
            .and_then(|()| self.active.index.sync_data())
            .map_err(|e| {
                Arc::<str>::from(format!(
                    "syncing {} before rotation failed: {e}",
                    old.display()
                ))
            })?;
        let next = match self.spares.as_mut().map(|s| s.take(&self.inner.stats)) {
            Some(Some((file, spare_path))) => {
                match recovery::activate_spare(&dir, file, &spare_path, self.next_offset) {
                    Ok(seg) => {
                        self.inner.stats.spares_used.fetch_add(1, Ordering::Relaxed);
                        Ok(seg)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not use the pre-written spare; creating the segment empty");
                        let _ = std::fs::remove_file(&spare_path);
                        recovery::create_segment(&dir, self.next_offset)
                    }
                }
            }
            Some(None) => {
                self.inner
                    .stats
                    .spares_missed
                    .fetch_add(1, Ordering::Relaxed);
                recovery::create_segment(&dir, self.next_offset)
            }
            None => recovery::create_segment(&dir, self.next_offset),
        };
        // The log is rotating: have the next spare built while this segment fills.
        if let Some(s) = self.spares.as_mut() {
            s.request();
        }
        match next {
            Ok(seg) => {
                self.active = seg;
                self.pos = SEGMENT_HEADER_BYTES as u64;
                // Base first: a reader that sees the new position sees the new base.
                self.inner
                    .active_base
                    .store(self.active.base, Ordering::Relaxed);
                self.inner.active_written.store(self.pos, Ordering::Release);
                self.rotate_due = false;
                self.unsynced = false;
                self.inner
                    .stats
                    .segments_rotated
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(base = self.next_offset, "rotated to a new segment");
                super::apply_retention(&self.inner, self.active.base);
                Ok(())
            }
            Err(e) => {
                // Most likely a full disk. Refuse the batch that needed the new segment
                // and stay on the sealed one; the next batch tries again.
                let text: Arc<str> = e.to_string().into();
                tracing::error!(error = %text, "could not create the next segment");
                let disk_full = matches!(&e, OpenError::Io { source, .. }
                    if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)));
                let _ = std::fs::remove_file(segment::segment_path(&dir, self.next_offset));
                let _ = std::fs::remove_file(segment::index_path(&dir, self.next_offset));
                let _ = sync_dir(&dir);
                if let Some(b) = self.pending.take() {
                    b.slot.fail(if disk_full {
                        AppendError::DiskFull(text)
                    } else {
                        AppendError::Write(text)
                    });
                }
                self.inner
                    .stats
                    .disk_full_errors
                    .fetch_add(disk_full as u64, Ordering::Relaxed);
                self.rotate_due = false;
                Ok(())
            }
        }
    }

    /// Cuts a pre-written active segment's unused zeros, so that a sealed or cleanly
    /// closed segment is exactly as long as its records.
    fn seal_length(&mut self) -> io::Result<()> {
        if self.active.prewritten {
            self.active.file.set_len(self.pos)?;
            self.active.prewritten = false;
        }
        Ok(())
    }

    /// Clean shutdown: sync what a non-durable policy left unsynced.
    fn finish(&mut self) -> Result<(), Arc<str>> {
        if let Some(mut s) = self.spares.take() {
            s.stop();
        }
        let path = segment::segment_path(&self.inner.config.dir, self.active.base);
        self.seal_length()
            .and_then(|()| self.active.file.sync_data())
            .and_then(|()| self.active.index.sync_data())
            .map_err(|e| {
                Arc::<str>::from(format!("final sync of {} failed: {e}", path.display()))
            })?;
        tracing::debug!(committed_end = self.next_offset, "writer stopped cleanly");
        Ok(())
    }

    /// A fatal failure: record it, refuse new batches, fail everything not yet durable.
    fn fail_everything(&mut self, why: Arc<str>) {
        tracing::error!(reason = %why, "log writer stopped; nothing further is acknowledged");
        let _ = self.inner.failure.set(why.clone());
        self.inner.ring.close();
        let err = AppendError::Failed(why);
        // Every group, not only those in flight: a panic may have struck while one was
        // being gathered.
        self.in_flight.clear();
        for g in &mut self.groups {
            for (slot, _) in g.slots.drain(..) {
                slot.fail(err.clone());
            }
        }
        if let Some(b) = self.pending.take() {
            b.slot.fail(err.clone());
        }
        while let Some(b) = self.inner.ring.pop() {
            b.slot.fail(err.clone());
        }
        self.inner.commit_watch.notify();
        // SQEs still in flight may point into the group buffers and the wake/timeout
        // targets. Rather than wait on a ring in an unknown state, leak them: this path
        // runs once, just before the process reports the failure and exits.
        std::mem::forget(std::mem::take(&mut self.groups));
        std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
        std::mem::forget(std::mem::replace(
            &mut self.timeout_spec,
            Box::new(types::Timespec::new()),
        ));
    }
}
