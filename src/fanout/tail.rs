//! Keeping the two windows (JSON chunks, binary messages) filled from the tail while
//! someone subscribes.

use super::{Fanout, TAIL_CHUNKS_PER_TURN, frames::FrameWindow, query::Encoding, window::Window};

impl Fanout {
    /// Keeps the window filled while anyone subscribes. Returns true if the tail is
    /// still behind.
    pub(super) fn fill_window(&mut self, end: u64) -> bool {
        self.keep_binary_window(end);
        if self.open == 0 {
            self.window = None;
            self.tail = None;
            return false;
        }
        if self.tail.is_none() {
            match self.ctx.log.reader(end) {
                Ok(r) => {
                    self.window = Some(Window::new(
                        r.next_offset(),
                        self.ctx.settings.fanout_window_bytes_max,
                    ));
                    self.tail = Some(r);
                }
                Err(e) => {
                    tracing::error!(error = %e, "fan-out cannot open the log");
                    return false;
                }
            }
        }
        self.move_window_to_subscribers(end);
        let (Some(w), Some(tail)) = (self.window.as_mut(), self.tail.as_mut()) else {
            return false;
        };
        // Read ahead only for a subscriber that is waiting at the window's end and can
        // take more: the window is a read-ahead shared by whoever follows the leader,
        // and decoding records nobody is ready for would cost this core for nothing
        // (the leader would fall off the window's start and read them again).
        // A subscriber with a time range, or of another partition, reads on its own
        // (`Windows::source`): it is no demand for the window, nor a reason to move it.
        let demand = self.subs.iter().flatten().any(|s| {
            s.is_open()
                && s.shares_windows()
                && s.encoding == Encoding::Json
                && !s.filter.has_time_range()
                && s.blocked_since.is_none()
                && s.cursor >= w.end()
                && s.cursor < end
        });
        if !demand {
            return false;
        }
        match w.fill(tail, end, TAIL_CHUNKS_PER_TURN) {
            Ok(behind) => behind,
            Err(e) => {
                // Subscribers fall back to their own readers, which report it.
                tracing::error!(error = %e, "fan-out tail reader failed; restarting it");
                self.tail = None;
                self.window = None;
                false
            }
        }
    }

    /// Restarts the JSON window at the lowest JSON subscriber ahead of it when none is
    /// in it or at its end. The window reads ahead only for a subscriber waiting at its
    /// end, so once its last reader left (closed, or resubscribed further on, as the
    /// dashboard does when it skips to the newest records) it stays where that reader
    /// was; a subscriber that starts ahead would otherwise wait for the tail to decode
    /// everything in between, which under heavy ingest it never does. Subscribers
    /// below the new start read on their own, as below any window.
    fn move_window_to_subscribers(&mut self, end: u64) {
        let Some(w) = self.window.as_ref() else {
            return;
        };
        let (start, w_end) = (w.start(), w.end());
        let mut ahead: Option<u64> = None;
        for s in self.subs.iter().flatten() {
            if !s.is_open()
                || !s.shares_windows()
                || s.encoding != Encoding::Json
                || s.filter.has_time_range()
            {
                continue;
            }
            if s.cursor >= start && s.cursor <= w_end {
                return; // someone reads the window, or waits at its end
            }
            if s.cursor > w_end {
                ahead = Some(ahead.map_or(s.cursor, |a| a.min(s.cursor)));
            }
        }
        let Some(at) = ahead.filter(|&a| a <= end) else {
            return;
        };
        match self.ctx.log.reader(at) {
            Ok(r) => {
                self.window = Some(Window::new(
                    r.next_offset(),
                    self.ctx.settings.fanout_window_bytes_max,
                ));
                self.tail = Some(r);
            }
            Err(e) => tracing::error!(error = %e, "fan-out cannot open the log"),
        }
    }

    /// Keeps the binary window while an unfiltered binary subscriber is open, and
    /// moves it to them when all of them have got ahead of it (one that resumed
    /// further on would otherwise never meet it). Its messages are read on demand, in
    /// `pump`, when a subscriber reaches its end.
    pub(super) fn keep_binary_window(&mut self, end: u64) {
        let mut lowest_ahead: Option<u64> = None;
        let window_end = self.binary.as_ref().map(FrameWindow::end);
        for s in self.subs.iter().flatten() {
            if !s.is_open()
                || !s.shares_windows()
                || s.encoding != Encoding::Binary
                || !s.filter.is_empty()
            {
                continue;
            }
            if window_end.is_some_and(|e| s.cursor <= e) {
                return; // someone can use the window as it is
            }
            lowest_ahead = Some(lowest_ahead.map_or(s.cursor, |l| l.min(s.cursor)));
        }
        if lowest_ahead.is_none() {
            self.binary = None;
            return;
        }
        // None yet: start at the committed end (subscribers below it read on their
        // own up to there). Everyone past it: restart at the lowest of them, once
        // that is committed (a cursor may name an offset still to come).
        let at = match (&self.binary, lowest_ahead) {
            (None, _) => end,
            (Some(_), Some(l)) if l <= end => l,
            (Some(_), _) => return,
        };
        match self.ctx.log.reader(at) {
            Ok(r) => {
                self.binary = Some(FrameWindow::new(
                    r,
                    self.ctx.settings.fanout_window_bytes_max,
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "fan-out cannot open the log for the binary window");
                self.binary = None;
            }
        }
    }
}
