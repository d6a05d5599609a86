//! The one bounded, filtered scan of committed records out of the segment files,
//! shared by subscribers reading behind the window (JSON and binary) and by
//! `GET /v1/logs`. What a record that passes becomes is the [`Sink`]'s business: a
//! rendered JSON fragment ([`MessageBuilder`]) or its stored frame ([`Frames`]).
//!
//! (The fan-out's in-memory window scans its own chunks, already decoded and
//! rendered: [`crate::fanout::window::Window::build`]. That is a scan of memory, not of
//! the files, and shares only the filter.)

use super::{
    filter::{self as query, Filter},
    render::MessageBuilder,
};
use crate::{
    error::ReadError,
    wal::{Reader, format::RecordRef},
};

/// What [`read_into`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Records read from the files (matching or not).
    pub scanned: u64,
    /// The reader has no more committed records below `stop` for now.
    pub caught_up: bool,
    /// The filter has `until` and the scan met a record received after
    /// [`Filter::until_stop_ns`]: no record after it is in the range.
    pub until_passed: bool,
}

/// Where [`read_into`] puts the records that pass the filter.
pub trait Sink {
    /// True if the sink takes each record's `service` and `level` (rendering does),
    /// so the scan parses them even for a filter that does not need them.
    const TAKES_FIELDS: bool;
    /// Records taken.
    fn records(&self) -> usize;
    /// True once the sink holds `bytes_max` bytes (it always takes one record).
    fn full(&self, bytes_max: usize) -> bool;
    /// Takes one record; `frame` is its stored frame.
    fn push(&mut self, r: &RecordRef<'_>, frame: &[u8], service: Option<&str>, level: Option<&str>);
}

impl Sink for MessageBuilder {
    const TAKES_FIELDS: bool = true;

    fn records(&self) -> usize {
        MessageBuilder::records(self)
    }

    fn full(&self, bytes_max: usize) -> bool {
        self.len() >= bytes_max
    }

    fn push(&mut self, r: &RecordRef<'_>, _: &[u8], service: Option<&str>, level: Option<&str>) {
        self.push_record(r.offset, r.timestamp_ns, r.payload, service, level);
    }
}

/// Stored frames appended to a buffer that may already hold a header: a
/// `format=binary` message.
#[derive(Debug)]
pub struct Frames<'a> {
    out: &'a mut Vec<u8>,
    /// `out`'s length before the first frame.
    empty: usize,
    records: usize,
}

impl<'a> Frames<'a> {
    /// Frames appended after what `out` holds.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        let empty = out.len();
        Frames {
            out,
            empty,
            records: 0,
        }
    }
}

impl Sink for Frames<'_> {
    const TAKES_FIELDS: bool = false;

    fn records(&self) -> usize {
        self.records
    }

    fn full(&self, bytes_max: usize) -> bool {
        self.out.len() != self.empty && self.out.len() >= bytes_max
    }

    fn push(&mut self, _: &RecordRef<'_>, frame: &[u8], _: Option<&str>, _: Option<&str>) {
        self.out.extend_from_slice(frame);
        self.records += 1;
    }
}

/// Reads committed records from `reader` into `sink` until the reader reaches `stop`,
/// the sink holds `records_max` records or `bytes_max` bytes, or `scan_max` records
/// were read.
///
/// # Errors
/// The reader's error.
pub fn read_into<S: Sink>(
    reader: &mut Reader,
    filter: &Filter,
    sink: &mut S,
    stop: u64,
    records_max: usize,
    bytes_max: usize,
    scan_max: u64,
) -> Result<ReadOutcome, ReadError> {
    let mut scanned = 0u64;
    // The fields are parsed once: before the filter when it needs them (or there is
    // none and the sink takes them), else only for a record it passes.
    let early = filter.needs_fields() || S::TAKES_FIELDS && filter.is_empty();
    let late = S::TAKES_FIELDS && !early;
    while reader.next_offset() < stop
        && sink.records() < records_max
        && !sink.full(bytes_max)
        && scanned < scan_max
    {
        let Some((r, frame)) = reader.next_frame()? else {
            return Ok(ReadOutcome {
                scanned,
                caught_up: true,
                until_passed: false,
            });
        };
        scanned += 1;
        if !filter.matches_time(r.timestamp_ns) {
            if filter
                .until_stop_ns()
                .is_some_and(|stop| r.timestamp_ns > stop)
            {
                return Ok(ReadOutcome {
                    scanned,
                    caught_up: reader.next_offset() >= stop,
                    until_passed: true,
                });
            }
            continue;
        }
        let (service, level) = if early {
            query::json_fields(r.payload)
        } else {
            (None, None)
        };
        if !filter.is_empty() && !filter.matches(r.payload, service.as_deref(), level.as_deref()) {
            continue;
        }
        let (service, level) = if late {
            query::json_fields(r.payload)
        } else {
            (service, level)
        };
        sink.push(&r, frame, service.as_deref(), level.as_deref());
    }
    Ok(ReadOutcome {
        scanned,
        caught_up: reader.next_offset() >= stop,
        until_passed: false,
    })
}
