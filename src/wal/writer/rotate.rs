//! Rotation: sealing the active segment and starting the next (from a pre-written
//! spare when one is ready), and the clean finish at shutdown. Both run with nothing in
//! flight.
//!
//! Why the sealed segment is synced after the next segment starts, while the writer
//! goes on: its `.log` (the cut of its unused zeros), `.idx` and `.tix` changed size,
//! so each fdatasync also writes metadata (the inode, or a journal commit on a
//! journaling filesystem), 0.1-0.4, 0.4 and 0.6 ms on this project's machines, and run
//! in parallel they took no less. Done in line they stalled the writer for about 1.2 ms
//! per rotation, three rotations a second at 2.6 M records/s, and every batch that
//! arrived meanwhile waited: most of the acked producers' p99 (docs/benchmarks.md).
//! They are sent one group later still ([`Writer::release_seal_syncs`]). No record
//! depends on them: every group was synced when it was written, and the indexes are
//! derived from the records. After a power cut before they came back, the segment
//! before the last may still end in the zeros the cut removed (recovery cuts them
//! again, `check` notes them), and its `.idx` and `.tix` may be short (recovery
//! writes the missing `.idx` entries again from its scan of the segment, a `.tix`
//! failing its checks is rebuilt, `check` notes it).

use std::{fs::File, io, path::PathBuf, sync::atomic::Ordering};

use super::{Inner, Phase, UD_SEAL_INDEX, UD_SEAL_LOG, UD_SEAL_TIX, Writer, direct, disk::Op};
use crate::{
    error::{AppendError, OpenError},
    wal::{
        WriterFailure, WriterFailureKind,
        format::{self, SEGMENT_HEADER_BYTES},
        recovery::{self, ActiveSegment},
        retention,
        segment::{self, sync_dir},
        timeindex,
    },
};

impl Writer {
    /// Seals the active segment and starts the next. Runs with nothing in flight.
    /// Leaves the writer `Gathering`: on success in the new segment; if the next
    /// segment cannot be created, on the sealed one with the batch that needed the new
    /// segment refused.
    pub(super) fn rotate(&mut self) -> Result<(), WriterFailure> {
        debug_assert!(self.in_flight.is_empty());
        debug_assert!(self.sealing.is_none(), "one seal at a time");
        let sync_failed = |w: &Self, source| WriterFailureKind::RotationSync {
            path: w.active_path(),
            source,
        };
        self.cut_log().map_err(|e| sync_failed(self, e))?;
        let next = self.next_segment();
        // The log is rotating: have the next spare built while this segment fills.
        if let Some(s) = self.spares.as_mut() {
            s.request();
        }
        match next {
            Ok(seg) => {
                let sealed = self.rotated(seg);
                self.sync_sealed(sealed);
            }
            Err(e) => {
                // Staying on this segment: its cut is synced now, as before.
                self.active
                    .file
                    .sync_data()
                    .map_err(|e| sync_failed(self, e))?;
                self.rotation_failed(e);
            }
        }
        self.phase = Phase::Gathering;
        Ok(())
    }

    /// Prepares the fdatasyncs of the sealed segment's `.log` (its cut), `.idx` and
    /// `.tix` (see the module docs), held until [`Writer::release_seal_syncs`]; their
    /// completions come to [`Writer::on_seal_cqe`].
    fn sync_sealed(&mut self, sealed: ActiveSegment) {
        let ActiveSegment {
            base,
            file,
            index,
            tindex,
            ..
        } = sealed;
        #[cfg(feature = "failpoints")]
        let tindex = tindex.filter(|_| match crate::wal::failpoints::tix_io() {
            Ok(()) => true,
            Err(e) => {
                self.sealed_time_index_failed(base, &e);
                false
            }
        });
        let fd = std::os::fd::AsRawFd::as_raw_fd;
        let mut held = vec![(fd(&file), UD_SEAL_LOG), (fd(&index), UD_SEAL_INDEX)];
        if let Some(t) = &tindex {
            held.push((fd(t), UD_SEAL_TIX));
        }
        self.sealing = Some(Sealing {
            base,
            left: held.len(),
            held,
            _files: (file, index, tindex),
        });
    }

    /// Sends the sealed segment's syncs, held since the rotation, once the first group
    /// in the new segment has come back or nothing is in flight (`run` asks after every
    /// retirement and before every wait).
    ///
    /// Why held: that first group carries every batch that waited through the rotation,
    /// and the three syncs, sent beside it, slowed it from 0.7-0.95 ms to 1.3-2.1 ms
    /// (docs/benchmarks.md); sent after it, they share the device with a group of the
    /// ordinary size instead.
    pub(super) fn release_seal_syncs(&mut self) -> Result<(), WriterFailure> {
        let Some(held) = self.sealing.as_mut().map(|s| std::mem::take(&mut s.held)) else {
            return Ok(());
        };
        // Each alone, not chained: one failed sync must not cancel the others.
        for (fd, ud) in held {
            self.push(&[(Op::Datasync { fd }, ud)])?;
        }
        Ok(())
    }

    /// A completion of one of the sealed segment's syncs. A failed `.log` or `.idx`
    /// sync is fatal, as any failed sync of the log's files; a failed `.tix` sync drops
    /// that time index (the next start rebuilds it), as a failed write of it does.
    pub(super) fn on_seal_cqe(&mut self, ud: u64, res: i32) -> Result<(), WriterFailure> {
        let s = self
            .sealing
            .as_mut()
            .expect("a seal's sync came back with no seal in progress");
        s.left -= 1;
        let (base, left) = (s.base, s.left);
        if left == 0 {
            // Closes the files: nothing of theirs is in flight any more.
            self.sealing = None;
        }
        if res < 0 {
            let e = io::Error::from_raw_os_error(-res);
            let dir = &self.inner.config.dir;
            let path = match ud {
                UD_SEAL_LOG => segment::segment_path(dir, base),
                UD_SEAL_INDEX => segment::index_path(dir, base),
                _ => {
                    self.sealed_time_index_failed(base, &e);
                    return Ok(());
                }
            };
            return Err(WriterFailureKind::RotationSync { path, source: e }.into());
        }
        Ok(())
    }

    /// The sealed segment `base`'s `.tix` could not be synced: removed and counted,
    /// like an active segment's ([`drop_time_index`]).
    fn sealed_time_index_failed(&self, base: u64, e: &io::Error) {
        timeindex::warn_and_remove(
            &timeindex::tix_path(&self.inner.config.dir, base),
            "sync",
            e,
        );
        self.inner
            .stats
            .time_index_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The next segment, at `next_offset`: the spare renamed into place if one is
    /// ready, else a new empty file.
    fn next_segment(&mut self) -> Result<ActiveSegment, OpenError> {
        let dir = &self.inner.config.dir;
        let stats = &self.inner.stats;
        let window = recovery::in_flight_window(&self.inner.config);
        match self.spares.as_mut().map(|s| s.take(stats)) {
            Some(Some((file, spare_path))) => {
                match recovery::activate_spare(dir, file, &spare_path, self.next_offset, window) {
                    Ok(seg) => {
                        stats.spares_used.fetch_add(1, Ordering::Relaxed);
                        Ok(seg)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not use the pre-written spare; creating the segment empty");
                        let _ = std::fs::remove_file(&spare_path);
                        recovery::create_segment(dir, self.next_offset, window)
                    }
                }
            }
            Some(None) => {
                stats.spares_missed.fetch_add(1, Ordering::Relaxed);
                recovery::create_segment(dir, self.next_offset, window)
            }
            None => recovery::create_segment(dir, self.next_offset, window),
        }
    }

    /// Makes `seg` the active segment and publishes it to readers; returns the sealed
    /// one.
    fn rotated(&mut self, seg: ActiveSegment) -> ActiveSegment {
        // The running maximum of receive time carries across segments, so that time
        // index keys ascend over the whole log.
        let ts_max = self.active.ts_max;
        if seg.tindex.is_none() {
            // Logged where it failed (`recovery::with_new_index`).
            self.inner
                .stats
                .time_index_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        let sealed = std::mem::replace(&mut self.active, seg);
        self.active.ts_max = ts_max;
        self.pos = SEGMENT_HEADER_BYTES as u64;
        if self.direct {
            match direct::enable(&self.active.file) {
                // The first group writes the header's block again, header first.
                Ok(()) => {
                    let window = recovery::in_flight_window(&self.inner.config);
                    self.tail = format::encode_segment_header(self.active.base, window).to_vec();
                }
                Err(e) => {
                    // Same filesystem as at start, so not expected; writing on is.
                    tracing::warn!(error = %e, "cannot turn O_DIRECT on for the new segment; writing through the page cache from now on");
                    self.direct = false;
                    self.tail.clear();
                    self.inner.direct_writes.store(false, Ordering::Relaxed);
                }
            }
        }
        // Base first (Relaxed), then the position (Release): a reader that sees the new
        // position sees the new base.
        self.inner
            .active_base
            .store(self.active.base, Ordering::Relaxed);
        self.inner.active_written.store(self.pos, Ordering::Release);
        self.unsynced = false;
        self.inner
            .stats
            .segments_rotated
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(base = self.next_offset, "rotated to a new segment");
        retention::apply(&self.inner, self.active.base);
        sealed
    }

    /// The next segment could not be created, most likely for a full disk. Refuses the
    /// batch that needed it and stays on the sealed segment; the next batch tries again.
    fn rotation_failed(&mut self, e: OpenError) {
        let text = e.to_string().into();
        tracing::error!(error = %text, "could not create the next segment");
        let disk_full = matches!(&e, OpenError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)));
        let dir = &self.inner.config.dir;
        let _ = std::fs::remove_file(segment::segment_path(dir, self.next_offset));
        let _ = std::fs::remove_file(segment::index_path(dir, self.next_offset));
        let _ = std::fs::remove_file(timeindex::tix_path(dir, self.next_offset));
        let _ = sync_dir(dir);
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
    }

    /// Cuts a pre-written or `O_DIRECT` active segment's unused zeros, so that a sealed
    /// or cleanly closed segment is exactly as long as its records. Not synced here.
    fn cut_log(&mut self) -> io::Result<()> {
        // Direct writes leave zeros up to the end of the last block.
        if self.active.prewritten || self.direct {
            self.active.file.set_len(self.pos)?;
            self.active.prewritten = false;
        }
        Ok(())
    }

    /// At a clean finish: [`Writer::cut_log`], then the segment, its index and time
    /// index synced in line (nothing waits on the writer any more).
    fn seal_and_sync(&mut self) -> io::Result<()> {
        self.cut_log()?;
        self.active.file.sync_data()?;
        self.active.index.sync_data()?;
        // Derived data, not synced for durability of any record: a failed sync loses
        // no acknowledged record, so it must not stop the writer.
        if let Some(t) = &self.active.tindex
            && let Err(e) = tix_sync(t)
        {
            self.time_index_failed("sync", &e);
        }
        Ok(())
    }

    /// An I/O error (`what`) on the active segment's `.tix`: see [`drop_time_index`].
    fn time_index_failed(&mut self, what: &str, e: &io::Error) {
        drop_time_index(&mut self.active, &self.inner, what, e);
    }

    /// Clean shutdown: sync what a non-durable policy left unsynced.
    pub(super) fn finish(&mut self) -> Result<(), WriterFailure> {
        if let Some(mut s) = self.spares.take() {
            s.stop();
        }
        let path: PathBuf = self.active_path();
        self.seal_and_sync()
            .map_err(|source| WriterFailureKind::FinalSync { path, source })?;
        tracing::debug!(committed_end = self.next_offset, "writer stopped cleanly");
        Ok(())
    }
}

/// A sealed segment's files while their fdatasyncs are in flight (kept open until
/// then).
pub(super) struct Sealing {
    /// The sealed segment's base offset (for error messages).
    base: u64,
    /// Syncs not yet come back.
    left: usize,
    /// Syncs not yet sent ([`Writer::release_seal_syncs`]): the descriptor to
    /// fdatasync, and its completion's user data.
    held: Vec<(std::os::fd::RawFd, u64)>,
    /// `.log`, `.idx`, `.tix`.
    _files: (File, File, Option<File>),
}

/// An I/O error (`what`) on `active`'s `.tix`: logged, counted, the file removed (the
/// next open rebuilds it) and no longer written. Readers of the segment fall back to an
/// earlier start, as for any missing time index. A free function so that the writer can
/// call it while it holds a group.
pub(super) fn drop_time_index(
    active: &mut ActiveSegment,
    inner: &Inner,
    what: &str,
    e: &io::Error,
) {
    active.tindex = None;
    let path = timeindex::tix_path(&inner.config.dir, active.base);
    timeindex::warn_and_remove(&path, what, e);
    inner
        .stats
        .time_index_errors
        .fetch_add(1, Ordering::Relaxed);
}

/// fdatasync of a time index (through the `tix_enospc` failpoint when compiled in).
fn tix_sync(t: &std::fs::File) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    crate::wal::failpoints::tix_io()?;
    t.sync_data()
}
