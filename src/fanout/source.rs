//! Where a subscriber's next message comes from: the JSON window, the binary
//! window, or the subscriber's own reader, decided per message from its cursor,
//! encoding and filter and where the windows stand.
//!
//! | subscriber                          | cursor                       | source                         |
//! |-------------------------------------|------------------------------|--------------------------------|
//! | JSON                                | in the window                | [`Source::Window`]             |
//! | JSON                                | at or past the window's end  | [`Source::Wait`] (tail brings it) |
//! | JSON                                | below the window, or none    | [`Source::Own`] up to its start |
//! | binary, unfiltered                  | on a shared message          | [`Source::Shared`]             |
//! | binary, unfiltered                  | off a message boundary       | [`Source::Own`] up to the next |
//! | binary, filtered                    | anywhere                     | [`Source::Own`] up to the end  |
//! | any, with `since`/`until`           | anywhere                     | [`Source::Own`] up to the end  |
//! | any, of another partition, or merged | anywhere                    | [`Source::Own`] up to its partition's end |

use super::{
    FanoutCtx,
    catchup::{Span, own_read},
    frames::FrameWindow,
    query::Encoding,
    subscriber::{SendError, Sub},
    window::{Built, Window},
};

/// What to send a subscriber next.
#[derive(Debug)]
pub(super) enum Source {
    /// The JSON window holds the cursor.
    Window,
    /// A message of the binary window, shared (a handle, not a copy).
    Shared(Built),
    /// The subscriber's own reader, up to `stop`, where it can join a window (or the
    /// committed end).
    Own { stop: u64 },
    /// Nothing before the tail reads further.
    Wait,
}

/// The windows and bounds a subscriber's message is built from, this turn.
pub(super) struct Windows<'a> {
    pub(super) json: Option<&'a mut Window>,
    pub(super) binary: &'a mut Option<FrameWindow>,
    pub(super) committed_end: u64,
    /// Per-message bytes (the subscriber's send budget).
    pub(super) budget: usize,
    /// Records scanned per message for a filtered subscriber.
    pub(super) scan_max: usize,
}

impl Windows<'_> {
    /// Where `sub`'s next message comes from.
    pub(super) fn source(&mut self, sub: &Sub) -> Source {
        // A time range is checked on each record's receive time, which the windows do
        // not keep: such a subscriber reads on its own (a cursor, as catch-up does).
        // So does one of another partition than the windows' (and `committed_end` is
        // then that partition's).
        if sub.filter.has_time_range() || !sub.shares_windows() {
            return own(sub.cursor, self.committed_end);
        }
        if sub.encoding == Encoding::Binary {
            return self.binary_source(sub);
        }
        match self.json.as_deref() {
            Some(w) if w.holds(sub.cursor) => Source::Window,
            Some(w) if sub.cursor >= w.end() => Source::Wait,
            // Below the window (or no window): read the files up to it.
            w => own(
                sub.cursor,
                w.map_or(self.committed_end, |w| w.start().max(sub.cursor)),
            ),
        }
    }

    fn binary_source(&mut self, sub: &Sub) -> Source {
        if !sub.filter.is_empty() {
            return own(sub.cursor, self.committed_end);
        }
        let Some(b) = self.binary.as_mut() else {
            return own(sub.cursor, self.committed_end);
        };
        match b.serve(sub.cursor, self.committed_end, self.budget) {
            Ok(Some((m, next, records))) => Source::Shared(Built::Frames(m, next, records)),
            // Not on one of the window's messages: read on its own up to where it can
            // join the window.
            Ok(None) => own(
                sub.cursor,
                b.stop_for(sub.cursor)
                    .map_or(self.committed_end, |s| s.min(self.committed_end)),
            ),
            Err(e) => {
                // Subscribers read on their own, and report it.
                tracing::error!(error = %e, "fan-out binary tail reader failed; restarting it");
                *self.binary = None;
                own(sub.cursor, self.committed_end)
            }
        }
    }

    /// Builds `sub`'s next message from `source`; `None` for [`Source::Wait`].
    ///
    /// # Errors
    /// [`SendError::Read`] if its own reader failed.
    pub(super) fn build(
        &mut self,
        ctx: &FanoutCtx,
        sub: &mut Sub,
        source: Source,
    ) -> Result<Option<Built>, SendError> {
        let built = match source {
            Source::Wait => return Ok(None),
            Source::Window => {
                let w = self
                    .json
                    .as_deref_mut()
                    .expect("Source::Window needs the window");
                w.build(sub.cursor, &sub.filter, self.budget, self.scan_max)
            }
            Source::Shared(built) => built,
            Source::Own { stop } => {
                let span = Span {
                    part: sub.part,
                    tag: sub.tag,
                    stop,
                    committed_end: self.committed_end,
                    budget: self.budget,
                };
                return Ok(Some(own_read(
                    ctx,
                    &mut sub.reader,
                    sub.cursor,
                    &sub.filter,
                    sub.encoding,
                    span,
                )?));
            }
        };
        // On a window now: its own reader is no longer needed.
        sub.reader = None;
        Ok(Some(built))
    }
}

/// Read on its own up to `stop`, unless there is nothing below it to read.
fn own(cursor: u64, stop: u64) -> Source {
    if stop <= cursor {
        Source::Wait
    } else {
        Source::Own { stop }
    }
}
