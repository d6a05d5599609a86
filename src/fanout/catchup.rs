//! A subscriber's own reader: positioned at its cursor and read up to a bound, for
//! catch-up below the window and filtered or off-boundary binary subscribers.

use super::{
    FanoutCtx, SCAN_PER_MESSAGE, frames,
    query::{Encoding, Filter},
    render::MessageBuilder,
    window::Built,
};
use crate::{
    error::ReadError,
    wal::{LogView, Reader},
};
use std::sync::atomic::Ordering;

/// The subscriber's own reader of `log`, opened (again) unless it already stands at
/// `cursor`.
pub(super) fn positioned<'a>(
    log: &LogView,
    reader: &'a mut Option<Reader>,
    cursor: u64,
) -> Result<&'a mut Reader, ReadError> {
    if reader.as_ref().is_none_or(|r| r.next_offset() != cursor) {
        *reader = Some(log.reader(cursor)?);
    }
    Ok(reader.as_mut().expect("just set"))
}

/// How far a subscriber's own read may go: up to offset `stop`, about `budget` bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    /// The partition read: its index in [`crate::streams::StreamViews::all`] (0 is
    /// the default stream's partition 0).
    pub(super) part: usize,
    /// The partition number JSON messages name (`None`: they name none).
    pub(super) tag: Option<u32>,
    pub(super) stop: u64,
    /// For the message header.
    pub(super) committed_end: u64,
    pub(super) budget: usize,
}

/// Builds the next message for a subscriber at `cursor` with its own reader: JSON
/// below the window, binary when filtered or on its way to the binary window.
pub(super) fn own_read(
    ctx: &FanoutCtx,
    reader: &mut Option<Reader>,
    cursor: u64,
    filter: &Filter,
    encoding: Encoding,
    span: Span,
) -> Result<Built, ReadError> {
    let reader = positioned(&ctx.streams.all()[span.part].log, reader, cursor)?;
    let built = match encoding {
        Encoding::Binary => {
            let built = frames::build(reader, filter, span.stop, span.committed_end, span.budget)?;
            // Damaged ranges this read passed: marked with gap frames among the records.
            let gaps = reader.take_damaged();
            let next = reader.next_offset();
            frames::with_gaps(built, &gaps, next, span.committed_end)
                .map(|(m, _, next, records)| Built::Frames(m, next, records))
        }
        Encoding::Json => {
            let mut m = MessageBuilder::new(span.budget.min(256 << 10)).in_partition(span.tag);
            crate::query::scan::read_into(
                reader,
                filter,
                &mut m,
                span.stop,
                usize::MAX,
                span.budget,
                SCAN_PER_MESSAGE as u64,
            )?;
            m.gaps(&reader.take_damaged());
            let next = reader.next_offset();
            (!m.is_empty() || m.has_gaps()).then(|| {
                let records = m.records() as u64;
                let msg = tungstenite::Utf8Bytes::try_from(m.finish(next, span.committed_end))
                    .expect("rendered JSON is UTF-8");
                Built::Message(msg, next, records)
            })
        }
    };
    let next = reader.next_offset();
    ctx.stats
        .ws_catchup_records_total
        .fetch_add(next.saturating_sub(cursor), Ordering::Relaxed);
    // Nothing matched, or nothing to read yet (the reader may be at the end).
    Ok(built.unwrap_or(Built::Skipped(next.max(cursor))))
}
