//! Retiring groups: completing durable groups strictly in offset order and publishing
//! the committed offset, and, after a failed write, cutting the segment back and
//! failing every group in flight.

use std::{os::unix::fs::FileExt, sync::atomic::Ordering};

use super::{Phase, Writer, after_rewind, group::GroupState};
use crate::{
    error::AppendError,
    wal::{WriterFailure, WriterFailureKind, format::SEGMENT_HEADER_BYTES},
};

impl Writer {
    /// Completes finished groups in order; handles a failed write.
    pub(super) fn retire(&mut self) -> Result<(), WriterFailure> {
        while let Some(&gi) = self.in_flight.front() {
            let g = &self.groups[gi];
            match g.state {
                GroupState::Failed(errno) => {
                    // Later groups were written past the failed one: wait for all of
                    // them, then cut the file back to where this group began and fail
                    // them all.
                    self.phase = match self.phase {
                        Phase::Gathering => Phase::Rewinding { rotate_due: false },
                        Phase::RotateDue => Phase::Rewinding { rotate_due: true },
                        rewinding @ Phase::Rewinding { .. } => rewinding,
                    };
                    let all_back = self.in_flight.iter().all(|&i| self.groups[i].ops == 0);
                    if !all_back {
                        return Ok(());
                    }
                    return self.rewind(errno);
                }
                GroupState::Done if g.ops == 0 => {
                    self.in_flight.pop_front();
                    self.commit(gi);
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// Group `gi` is durable and the oldest: write its `.idx` entries, publish it to
    /// readers, complete its batches, wake the followers, then write its `.tix`
    /// entries.
    fn commit(&mut self, gi: usize) {
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
        // Relaxed: only this thread stores committed_end.
        let prev = self.inner.committed_end.load(Ordering::Relaxed);
        assert_eq!(prev, g.first_offset, "groups must retire in offset order");
        // Groups never span a rotation (it waits for none in flight): g is in the
        // active segment. Before committed_end, so readers that see the new end see
        // a written position covering it.
        self.inner
            .active_written
            .store(g.file_pos + g.data_len() as u64, Ordering::Release);
        // Before committed_end too: a reader that sees the new end finds the group in
        // memory (or, if it is already gone from there, in the file).
        let evicted = self
            .inner
            .recent
            .push(self.active.base, g.buf_pos(), &g.buf);
        // Before committed_end too: a follower that sees the new end finds its time,
        // and the framed bytes committed up to it (Relaxed: only this thread adds to
        // bytes_committed).
        let bytes_end =
            self.inner.stats.bytes_committed.load(Ordering::Relaxed) + g.data_len() as u64;
        self.inner.commit_watch.times.note(g.end_offset, bytes_end);
        // Release: readers that see the new end also see the bytes in the page cache
        // (and every truncation epoch bumped before, see `Inner::truncation_epoch`).
        self.inner
            .committed_end
            .store(g.end_offset, Ordering::Release);
        let st = &self.inner.stats;
        st.records_committed
            .fetch_add(g.end_offset - g.first_offset, Ordering::Relaxed);
        st.bytes_committed
            .fetch_add(g.data_len() as u64, Ordering::Relaxed);
        st.groups_committed.fetch_add(1, Ordering::Relaxed);
        for (slot, first) in g.slots.drain(..) {
            slot.complete(first);
        }
        self.inner.commit_watch.notify();
        // After the acks: unmapping what the window let go of takes a while.
        drop(evicted);
        if !g.tindex.is_empty()
            && let Some(t) = &self.active.tindex
        {
            // Not synced either, for the same reason; recovery rebuilds it. Written
            // after the group is published and its batches acknowledged, off the ack
            // path: nothing needs the entries first. A seek that runs before they land
            // misses the newest entries and starts at an earlier one (every key is the
            // running maximum at its record, so any earlier entry is a safe start);
            // rotation waits for no group in flight, so a segment is sealed (and its
            // `.tix` synced) only with every entry written; and recovery rebuilds the
            // active segment's `.tix` whole, so a crash between the two loses nothing.
            #[cfg(feature = "failpoints")]
            let written = crate::wal::failpoints::tix_io()
                .and_then(|()| t.write_all_at(&g.tindex, self.active.tindex_len));
            #[cfg(not(feature = "failpoints"))]
            let written = t.write_all_at(&g.tindex, self.active.tindex_len);
            match written {
                Ok(()) => self.active.tindex_len += g.tindex.len() as u64,
                // A part written before the error could leave entries out of order
                // once later ones land at the same place: drop the whole index.
                Err(e) => {
                    super::rotate::drop_time_index(&mut self.active, &self.inner, "write", &e)
                }
            }
        }
    }

    /// After a failed write: truncate the segment back to where the first failed group
    /// began, fail every batch in flight, and carry on from there.
    fn rewind(&mut self, errno: i32) -> Result<(), WriterFailure> {
        let first = self.in_flight[0];
        let (file_pos, first_offset) =
            (self.groups[first].file_pos, self.groups[first].first_offset);
        // The block the cut falls in begins, in memory, as the failed group began.
        let g = &self.groups[first];
        self.tail.clear();
        self.tail.extend_from_slice(&g.buf[..g.lead]);
        let path = self.active_path();
        let write = std::io::Error::from_raw_os_error(errno);
        // A pre-written segment is cut here too: stale bytes past the cut must never be
        // read as records, and the segment carries on as an ordinary, appended one.
        self.active.prewritten = false;
        if let Err(source) = self.active.file.set_len(file_pos) {
            return Err(WriterFailureKind::TruncateBack {
                path,
                write,
                position: file_pos,
                first_offset,
                source,
            }
            .into());
        }
        let text = format!("writing {}: {write}", path.display()).into();
        let disk_full = errno == libc::ENOSPC || errno == libc::EDQUOT;
        let (err, counter) = if disk_full {
            (
                AppendError::DiskFull(text),
                &self.inner.stats.disk_full_errors,
            )
        } else {
            (AppendError::Write(text), &self.inner.stats.write_errors)
        };
        self.inner.active_written.store(file_pos, Ordering::Release);
        // Live readers compare the epoch to drop bytes they buffered past the committed
        // offset (now cut, and soon rewritten with other records). Relaxed suffices:
        // the bump comes before anything written after the cut is committed, and that
        // commit's Release store of committed_end publishes it (see the field's docs).
        self.inner.truncation_epoch.fetch_add(1, Ordering::Relaxed);
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %err, offset = first_offset, "write failed; batches refused, log truncated back");
        for gi in self.in_flight.drain(..) {
            self.groups[gi].fail_batches(&err);
        }
        self.pos = file_pos;
        self.next_offset = first_offset;
        // Index points past the cut are dropped from memory; none were written yet. The
        // running maximum of receive time keeps the cut records' times: a key above
        // the true maximum only makes a time seek start a little earlier.
        self.active.last_index_pos = self.active.last_index_pos.min(file_pos.saturating_sub(1));
        if self.active.last_index_pos < SEGMENT_HEADER_BYTES as u64 {
            self.active.last_index_pos = 0;
        }
        if let Phase::Rewinding { rotate_due } = self.phase {
            self.phase = after_rewind(rotate_due);
        }
        Ok(())
    }
}
