//! The one bounded, filtered scan of committed records into a JSON message, shared
//! by subscribers reading behind the window and by `GET /v1/logs`.

use super::{
    filter::{self as query, Filter},
    render::MessageBuilder,
};
use crate::{error::ReadError, wal::Reader};

/// What [`read_into`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Records read from the files (matching or not).
    pub scanned: u64,
    /// The reader has no more committed records below `stop` for now.
    pub caught_up: bool,
}

/// Reads committed records from `reader` into `m` until the reader reaches `stop`, `m`
/// holds `records_max` records or `bytes_max` bytes, or `scan_max` records were read.
/// For subscribers behind the window and for `GET /v1/logs`.
///
/// # Errors
/// The reader's error.
pub fn read_into(
    reader: &mut Reader,
    filter: &Filter,
    m: &mut MessageBuilder,
    stop: u64,
    records_max: usize,
    bytes_max: usize,
    scan_max: u64,
) -> Result<ReadOutcome, ReadError> {
    let mut scanned = 0u64;
    while reader.next_offset() < stop
        && m.records() < records_max
        && m.len() < bytes_max
        && scanned < scan_max
    {
        let Some(r) = reader.next()? else {
            return Ok(ReadOutcome {
                scanned,
                caught_up: true,
            });
        };
        scanned += 1;
        // The fields are parsed once: before the filter when it needs them (or there
        // is none, so the record is sent anyway), else only for a record it passes.
        let early = filter.is_empty() || filter.needs_fields();
        let (service, level) = if early {
            query::json_fields(r.payload)
        } else {
            (None, None)
        };
        if !filter.is_empty() && !filter.matches(r.payload, service.as_deref(), level.as_deref()) {
            continue;
        }
        let (service, level) = if early {
            (service, level)
        } else {
            query::json_fields(r.payload)
        };
        m.push_record(
            r.offset,
            r.timestamp_ns,
            r.payload,
            service.as_deref(),
            level.as_deref(),
        );
    }
    Ok(ReadOutcome {
        scanned,
        caught_up: reader.next_offset() >= stop,
    })
}
