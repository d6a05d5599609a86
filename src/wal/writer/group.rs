//! A group's life up to durability: gather batches into it (copy, stamp offsets, note
//! index points), submit its write (linked to an fdatasync under `always`), and take
//! its completions, resubmitting the rest of a short write.

use std::{os::fd::AsRawFd, sync::Arc, time::Instant};

use super::{Phase, SYNCS_IN_FLIGHT_MAX, UD_COVER_SYNC, Writer, disk::Op};
use crate::{
    error::AppendError,
    wal::{
        Batch, FsyncPolicy, WriterFailure, WriterFailureKind,
        aligned::{self, AlignedBuf},
        completion::Slot,
        format::{self, SEGMENT_HEADER_BYTES},
        recent::Recent,
        timeindex::TixEntry,
    },
};

const OP_WRITE: u64 = 1;
const OP_SYNC: u64 = 2;

fn user_data(group: usize, op: u64) -> u64 {
    ((group as u64) << 8) | op
}

/// Where a group stands. `Writing` → `Done` when the write is complete (and, under
/// `always`, its linked sync succeeded); `Writing` → `Failed` when a write fails. A
/// short write stays `Writing` and is resubmitted from `written`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupState {
    /// Not all of the buffer is confirmed written, or its sync has not come back.
    Writing,
    /// Durable (or written, under a non-durable policy): retires once `ops` is 0.
    Done,
    /// The write failed with this errno: the writer rewinds.
    Failed(i32),
}

/// One group: the unit of write + fdatasync.
#[derive(Debug)]
pub(super) struct Group {
    /// What the group writes, starting at file position `file_pos - lead`: under direct
    /// writes the `lead` bytes of the block before `file_pos` (already written, written
    /// again) then the framed records, offsets stamped; buffered, the records alone.
    /// Shared with [`Recent`](crate::wal::recent) once committed; replaced before reuse
    /// if it still is. Capacity `group_bytes_max` plus a block.
    pub(super) buf: Arc<AlignedBuf>,
    /// Bytes at the front of `buf` from before `file_pos` (direct writes only).
    pub(super) lead: usize,
    /// Completions of the batches in this group, with each batch's first offset.
    pub(super) slots: Vec<(Arc<Slot>, u64)>,
    /// Sparse-index entries for records in this group, written once it is durable.
    pub(super) index: Vec<u8>,
    /// Time-index entries at the same records (see `wal::timeindex`), written with
    /// `index`.
    pub(super) tindex: Vec<u8>,
    /// Where the group's records go in the active segment.
    pub(super) file_pos: u64,
    /// Offset of the first record in the group.
    pub(super) first_offset: u64,
    /// Exclusive end offset of the group.
    pub(super) end_offset: u64,
    /// Bytes the write covers: `buf.len()`, rounded up to whole blocks under direct
    /// writes (the padding is zeros, cut when the segment is sealed).
    write_len: usize,
    /// Bytes of the write the kernel confirmed.
    written: usize,
    /// See [`GroupState`].
    pub(super) state: GroupState,
    /// When the write was submitted, for the sync latency figure.
    submitted: Instant,
    /// SQEs of this group whose CQE has not come back (a covering sync counts for each
    /// group it covers); the buffer is the kernel's while this is non-zero.
    pub(super) ops: u8,
    /// Written without a linked sync (two syncs were in flight when it was gathered):
    /// durable once a covering sync, submitted after its write came back, returns.
    awaits_cover: bool,
    /// Gathered while the group before it was being written (direct writes: the two
    /// share a block): submitted once that write is back.
    pub(super) staged: bool,
}

impl Group {
    pub(super) fn new(capacity: usize) -> Self {
        Group {
            buf: Arc::new(AlignedBuf::new(capacity)),
            lead: 0,
            slots: Vec::new(),
            index: Vec::new(),
            tindex: Vec::new(),
            file_pos: 0,
            first_offset: 0,
            end_offset: 0,
            write_len: 0,
            written: 0,
            state: GroupState::Writing,
            submitted: Instant::now(),
            ops: 0,
            awaits_cover: false,
            staged: false,
        }
    }

    /// Starts the group at `file_pos` with `lead`, the bytes of the block before it
    /// (empty for buffered writes). A buffer still shared with readers is replaced by
    /// one that is not.
    fn reset(&mut self, file_pos: u64, first_offset: u64, lead: &[u8], recent: &Recent) {
        assert_eq!(self.ops, 0, "group reused while the kernel still owns it");
        if Arc::get_mut(&mut self.buf).is_none() {
            let capacity = self.buf.capacity();
            self.buf = Arc::new(recent.buffer(capacity));
        }
        let buf = self.buf_mut();
        buf.clear();
        buf.extend_from_slice(lead);
        self.lead = lead.len();
        self.slots.clear();
        self.index.clear();
        self.tindex.clear();
        self.file_pos = file_pos;
        self.first_offset = first_offset;
        self.end_offset = first_offset;
        self.write_len = 0;
        self.written = 0;
        self.state = GroupState::Writing;
        self.awaits_cover = false;
        self.staged = false;
    }

    /// The buffer, while the group is being gathered (nobody else holds it then).
    fn buf_mut(&mut self) -> &mut AlignedBuf {
        Arc::get_mut(&mut self.buf).expect("a group's buffer is unshared until it commits")
    }

    /// Bytes of records in the group.
    pub(super) fn data_len(&self) -> usize {
        self.buf.len() - self.lead
    }

    /// File position of `buf[0]`.
    pub(super) fn buf_pos(&self) -> u64 {
        self.file_pos - self.lead as u64
    }

    /// The kernel confirmed the whole write (the sync may still be running).
    pub(super) fn write_done(&self) -> bool {
        self.written >= self.write_len
    }

    /// Gathering is over: fixes what the write covers. Under direct writes that is whole
    /// blocks, the padding after the records zeroed.
    fn seal(&mut self, direct: bool) {
        debug_assert!(!direct || self.buf_pos().is_multiple_of(aligned::BLOCK_BYTES as u64));
        self.write_len = if direct {
            self.buf_mut().padded().len()
        } else {
            self.buf.len()
        };
    }

    /// The write failed; the group waits for the rewind.
    pub(super) fn failed(&self) -> bool {
        matches!(self.state, GroupState::Failed(_))
    }

    /// Fails every batch in the group with `err`.
    pub(super) fn fail_batches(&mut self, err: &AppendError) {
        for (slot, _) in self.slots.drain(..) {
            slot.fail(err.clone());
        }
    }

    /// Appends `batch`: copies its frames, stamps their offsets from `first` and notes
    /// sparse-index points. Returns the number of records.
    fn push_batch(&mut self, batch: Batch, first: u64, cursor: &mut IndexCursor) -> u64 {
        // The slot goes into the group first, so that if a check below panics the
        // batch is failed with the rest rather than dropped unanswered.
        self.slots.push((batch.slot, first));
        let start = self.buf.len();
        let file_start = self.buf_pos() + start as u64;
        let buf = Arc::get_mut(&mut self.buf).expect("unshared while gathered");
        buf.extend_from_slice(&batch.frames);
        let (index, tindex) = (&mut self.index, &mut self.tindex);
        let n = format::stamp_offsets_timed(&mut buf[start..], first, |offset, rel, ts| {
            cursor.note(offset, file_start + rel as u64, ts, index, tindex);
        });
        assert_eq!(
            n,
            u64::from(batch.records),
            "batch record count disagrees with its frames"
        );
        n
        // batch.frames drops here: the producer's builder can reuse the memory.
    }

    /// A write's completion. Returns true if the group is now written under a
    /// non-durable policy (it is done, and the file has unsynced data).
    fn on_write(&mut self, res: i32, durable: bool) -> bool {
        if res < 0 {
            self.state = GroupState::Failed(-res);
        } else if res == 0 && !self.write_done() {
            self.state = GroupState::Failed(libc::EIO);
        } else {
            self.written += res as usize;
            // Short: stays Writing; resubmitted once every completion is in.
            if self.write_done() && !durable {
                self.state = GroupState::Done;
                return true;
            }
        }
        false
    }

    /// A linked sync's completion. `Ok(true)` if the group is now durable; `Err` with
    /// the errno if the sync itself failed.
    fn on_sync(&mut self, res: i32) -> Result<bool, i32> {
        if res == -libc::ECANCELED {
            // The linked write failed or came back short: handled once both completions
            // are in, whichever order they arrived in.
            Ok(false)
        } else if res < 0 {
            Err(-res)
        } else if !self.write_done() {
            // A short write whose linked sync ran anyway: the rest is written again.
            Ok(false)
        } else {
            self.state = GroupState::Done;
            Ok(true)
        }
    }

    /// Every completion of the last submission is in and part of the buffer is still
    /// unwritten (a short write, in whatever order the kernel posted the CQEs).
    fn needs_resubmit(&self) -> bool {
        self.ops == 0 && self.state == GroupState::Writing && !self.write_done()
    }
}

/// The sparse indexes' progress while a group is gathered: an entry at most every
/// `interval` bytes of the active segment, in `.idx` and `.tix` alike, and the running
/// maximum of receive time the time index is keyed on.
struct IndexCursor {
    /// Base offset of the active segment (entries hold offsets relative to it).
    base: u64,
    /// `index_interval_bytes`.
    interval: u64,
    /// Position of the last entry; 0 when the segment has none.
    last_pos: u64,
    /// Running maximum of receive time in log order, so far.
    ts_max: u64,
    /// `time_skew_ms_max`, in ns.
    skew_ns: u64,
    /// Records that arrived more than `skew_ns` below the running maximum, or are
    /// gathered more than `skew_ns` after they were received.
    skewed: u64,
    /// The clock (ns since the epoch) when the group began to be gathered: read once
    /// per group, compared with each record's receive time.
    now_ns: u64,
}

impl IndexCursor {
    /// Notes the record at `offset`, stored at byte `position`, received at `ts`: an
    /// entry in each index if one is due.
    ///
    /// A record received more than `time_skew_ms_max` before the running maximum is
    /// counted: `until` reads stop once the running maximum passes `until` by that
    /// much, so such a record may be missed by them, and the counter says so. So is
    /// a record written more than `time_skew_ms_max` after it was received (a batch
    /// held up by backpressure): a caught-up `until` read stops once the clock passes
    /// `until` by that much, assuming no record received before `until` is still to
    /// come. The clock is the one read when the group began to be gathered; the write
    /// and sync after it (`group_commit_seconds`) are not included.
    fn note(
        &mut self,
        offset: u64,
        position: u64,
        ts: u64,
        entries: &mut Vec<u8>,
        tentries: &mut Vec<u8>,
    ) {
        let late = ts.saturating_add(self.skew_ns);
        if late < self.ts_max || late < self.now_ns {
            self.skewed += 1;
        }
        self.ts_max = self.ts_max.max(ts);
        if format::index_entry_due(self.last_pos, position, self.interval) {
            let rel = (offset - self.base) as u32;
            entries.extend_from_slice(&format::encode_index_entry(rel, position as u32));
            tentries.extend_from_slice(
                &TixEntry {
                    key_ns: self.ts_max,
                    rel_offset: rel,
                    position: position as u32,
                }
                .encode(),
            );
            self.last_pos = position;
        }
    }
}

impl Writer {
    /// Pops batches into a free group and submits it. Returns false if there was
    /// nothing to gather.
    pub(super) fn gather_and_submit(&mut self) -> Result<bool, WriterFailure> {
        let gi = (0..self.groups.len())
            .find(|i| !self.in_flight.contains(i))
            .expect("a free group exists when fewer than depth are in flight");
        if !self.gather(gi) {
            return Ok(false);
        }
        // Under direct writes the group rewrites the block the one before it ends in:
        // gathered now, while that one is written, it is staged and submitted the
        // moment that write is back (`submit_staged`), so that the disk does not wait
        // for the copy.
        let staged = self.direct
            && self
                .in_flight
                .back()
                .is_some_and(|&prev| !self.groups[prev].write_done());
        self.in_flight.push_back(gi);
        if staged {
            self.groups[gi].staged = true;
        } else {
            self.submit_write(gi)?;
        }
        if self.pos >= self.inner.config.segment_bytes_max / 4
            && let Some(s) = self.spares.as_mut()
        {
            s.request();
        }
        Ok(true)
    }

    /// Fills group `gi` with as many queued batches as fit the group and the segment.
    /// Returns false (leaving the writer as it was) if none was taken. A batch that
    /// does not fit stays `pending`; if it does not fit even alone, a rotation is due.
    fn gather(&mut self, gi: usize) -> bool {
        let config = &self.inner.config;
        let empty_segment = self.pos == SEGMENT_HEADER_BYTES as u64;
        let room = if empty_segment {
            config.group_bytes_max
        } else {
            (config.segment_bytes_max.saturating_sub(self.pos) as usize).min(config.group_bytes_max)
        };
        let mut cursor = IndexCursor {
            base: self.active.base,
            interval: u64::from(config.index_interval_bytes),
            last_pos: self.active.last_index_pos,
            ts_max: self.active.ts_max,
            skew_ns: config.time_skew_ms_max.saturating_mul(1_000_000),
            skewed: 0,
            now_ns: format::now_ns(),
        };
        let g = &mut self.groups[gi];
        g.reset(self.pos, self.next_offset, &self.tail, &self.inner.recent);
        let mut next = self.next_offset;
        while let Some(batch) = self.pending.take().or_else(|| self.inner.ring.pop()) {
            if g.data_len() + batch.frames.len() > room {
                if g.slots.is_empty() && !empty_segment {
                    self.phase = Phase::RotateDue;
                }
                self.pending = Some(batch);
                break;
            }
            next += g.push_batch(batch, next, &mut cursor);
        }
        if g.slots.is_empty() {
            return false;
        }
        g.end_offset = next;
        g.seal(self.direct);
        if self.direct {
            // The block the next group begins in: what this group leaves of it.
            let from = aligned::round_down(g.buf.len() as u64) as usize;
            self.tail.clear();
            self.tail.extend_from_slice(&g.buf[from..]);
        }
        self.active.last_index_pos = cursor.last_pos;
        self.active.ts_max = cursor.ts_max;
        if cursor.skewed > 0 {
            self.inner
                .stats
                .time_skew_exceeded
                .fetch_add(cursor.skewed, std::sync::atomic::Ordering::Relaxed);
        }
        self.pos += g.data_len() as u64;
        self.next_offset = next;
        true
    }

    /// Submits the unwritten part of group `gi`, linked to an fdatasync under `always`.
    pub(super) fn submit_write(&mut self, gi: usize) -> Result<(), WriterFailure> {
        #[cfg(feature = "failpoints")]
        crate::wal::failpoints::before_group();
        let fd = self.active.file.as_raw_fd();
        let durable = self.inner.config.fsync == FsyncPolicy::Always;
        let g = &mut self.groups[gi];
        g.submitted = Instant::now();
        let len = g.write_len - g.written;
        #[cfg(feature = "failpoints")]
        let len = crate::wal::failpoints::write_len(
            len,
            if self.direct { aligned::BLOCK_BYTES } else { 1 },
        );
        // SAFETY (of the pointer's use by the kernel or an I/O thread): the buffer is
        // not touched, moved or freed until this group's completions are reaped
        // (`ops`); `write_len` is within its allocation (`seal`).
        let write = Op::Write {
            fd,
            ptr: g.buf.as_ptr().wrapping_add(g.written),
            len: len as u32,
            offset: g.buf_pos() + g.written as u64,
        };
        let write = (write, user_data(gi, OP_WRITE));
        // A first submission takes a linked sync if fewer than the most are out; a
        // group written alone stays so when the rest of a short write goes again.
        if durable && g.written == 0 && self.syncs_in_flight >= SYNCS_IN_FLIGHT_MAX {
            g.awaits_cover = true;
        }
        if durable && !self.groups[gi].awaits_cover {
            self.push(&[write, (Op::Datasync { fd }, user_data(gi, OP_SYNC))])?;
            self.groups[gi].ops += 2;
            self.syncs_in_flight += 1;
        } else {
            self.push(&[write])?;
            self.groups[gi].ops += 1;
        }
        self.submit()
    }

    /// A completion of one of group `ud >> 8`'s SQEs. Notes the group for `resubmit`
    /// once a short write's completions are all in.
    pub(super) fn on_group_cqe(&mut self, ud: u64, res: i32) -> Result<(), WriterFailure> {
        let gi = (ud >> 8) as usize;
        let op = ud & 0xff;
        #[cfg(feature = "failpoints")]
        let res = if op == OP_SYNC {
            crate::wal::failpoints::fsync_result(res)
        } else {
            res
        };
        let durable = self.inner.config.fsync == FsyncPolicy::Always;
        let g = &mut self.groups[gi];
        g.ops -= 1;
        if op == OP_SYNC {
            self.syncs_in_flight -= 1;
        }
        if op == OP_WRITE {
            if g.on_write(res, durable) {
                self.unsynced = true;
            }
            #[cfg(feature = "failpoints")]
            if g.awaits_cover && g.write_done() {
                crate::wal::failpoints::written_alone();
            }
        } else {
            match g.on_sync(res) {
                Ok(true) => {
                    let submitted = g.submitted;
                    self.note_sync(submitted);
                }
                Ok(false) => {}
                Err(errno) => {
                    let (first_offset, end_offset) = (g.first_offset, g.end_offset);
                    return Err(WriterFailureKind::GroupSync {
                        path: self.active_path(),
                        source: std::io::Error::from_raw_os_error(errno),
                        first_offset,
                        end_offset,
                        groups: 1,
                    }
                    .into());
                }
            }
        }
        if self.groups[gi].needs_resubmit() {
            self.resubmit.push(gi);
        }
        Ok(())
    }

    /// Under `always`, with a sync to spare: one fdatasync for every group in flight
    /// whose write (all of it) came back without a linked sync. Each is durable when it
    /// returns: it started after their writes were complete.
    pub(super) fn maybe_cover_sync(&mut self) -> Result<(), WriterFailure> {
        if !self.cover.is_empty()
            || self.syncs_in_flight >= SYNCS_IN_FLIGHT_MAX
            || matches!(self.phase, Phase::Rewinding { .. })
        {
            // (Rewinding: every group in flight is about to be failed.)
            return Ok(());
        }
        for &gi in &self.in_flight {
            let g = &self.groups[gi];
            if g.awaits_cover && g.state == GroupState::Writing && g.ops == 0 && g.write_done() {
                self.cover.push(gi);
            }
        }
        if self.cover.is_empty() {
            return Ok(());
        }
        let fd = self.active.file.as_raw_fd();
        self.push(&[(Op::Datasync { fd }, UD_COVER_SYNC)])?;
        for i in 0..self.cover.len() {
            self.groups[self.cover[i]].ops += 1;
        }
        self.syncs_in_flight += 1;
        self.cover_submitted = Instant::now();
        self.submit()
    }

    /// The covering fdatasync came back: its groups are durable, or the log has failed.
    pub(super) fn on_cover_sync(&mut self, res: i32) -> Result<(), WriterFailure> {
        #[cfg(feature = "failpoints")]
        let res = crate::wal::failpoints::cover_result(crate::wal::failpoints::fsync_result(res));
        assert!(!self.cover.is_empty(), "a covering sync without groups");
        self.syncs_in_flight -= 1;
        let (first, last) = (self.cover[0], self.cover[self.cover.len() - 1]);
        if res < 0 {
            return Err(WriterFailureKind::GroupSync {
                path: self.active_path(),
                source: std::io::Error::from_raw_os_error(-res),
                first_offset: self.groups[first].first_offset,
                end_offset: self.groups[last].end_offset,
                groups: self.cover.len(),
            }
            .into());
        }
        for i in 0..self.cover.len() {
            let g = &mut self.groups[self.cover[i]];
            g.ops -= 1;
            g.state = GroupState::Done;
        }
        self.cover.clear();
        // The sync's own time: its groups' writes were back before it started.
        self.note_sync(self.cover_submitted);
        Ok(())
    }

    /// Submits the staged group once the write of the group before it is all back. Not
    /// after a failed write: the rewind fails the staged group with the rest.
    pub(super) fn submit_staged(&mut self) -> Result<(), WriterFailure> {
        let n = self.in_flight.len();
        let Some(&gi) = self.in_flight.back() else {
            return Ok(());
        };
        // A due rotation waits for it to be written like any group in flight.
        if !self.groups[gi].staged || matches!(self.phase, Phase::Rewinding { .. }) {
            return Ok(());
        }
        let prev_written = n < 2 || {
            let prev = &self.groups[self.in_flight[n - 2]];
            prev.write_done() && !prev.failed()
        };
        if prev_written {
            self.groups[gi].staged = false;
            self.submit_write(gi)?;
        }
        Ok(())
    }
}
