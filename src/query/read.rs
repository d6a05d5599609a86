//! The read API, `GET /v1/logs?from=&limit=&service=&level=&q=`: committed records as
//! JSON, in the message format of the WebSocket (`{"records":[...],"next":N,
//! "committed_end":E}`). `from` defaults to `earliest`.

use super::{
    filter::{self, QueryError, Start},
    render::MessageBuilder,
    scan,
};
use crate::{error::ReadError, wal::LogView};

/// Records `GET /v1/logs` returns when no `limit` is given.
pub const READ_LIMIT_DEFAULT: usize = 100;
/// Largest response body of `GET /v1/logs`, in bytes (at least one record is sent).
pub const READ_RESPONSE_BYTES_MAX: usize = 8 << 20;
/// Records one `GET /v1/logs` may scan past its filter before it answers with what it
/// has (and `next` to continue from): the reactor is blocked while it reads.
pub const READ_SCAN_RECORDS_MAX: u64 = 100_000;

/// The read API's bounds, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Largest `limit` a request may ask for (`read_records_max`).
    pub records_max: usize,
    /// Longest filter, decoded (`filter_bytes_max`).
    pub filter_bytes_max: usize,
}

/// Why a read was refused or failed; the HTTP side maps it to a status.
#[derive(Debug, thiserror::Error)]
pub enum ReadApiError {
    /// The query string is malformed, or its filter too long (the code says which).
    #[error("{}: {}", .0.code, .0.detail)]
    BadQuery(QueryError),
    /// Reading the segment files failed.
    #[error("read failed: {0}")]
    ReadFailed(#[from] ReadError),
}

/// Answers one read: the JSON body.
///
/// This reads segment files (normally from the page cache) on the caller's thread,
/// which blocks that reactor meanwhile; `limit` (at most `records_max`) and
/// [`READ_SCAN_RECORDS_MAX`] bound how long.
///
/// # Errors
/// [`ReadApiError::BadQuery`] for a bad query string, [`ReadApiError::ReadFailed`]
/// when the log cannot be read.
pub fn read_logs(
    log: &LogView,
    limits: ReadLimits,
    query_string: &str,
) -> Result<Vec<u8>, ReadApiError> {
    let q = filter::parse(
        query_string,
        true,
        limits.records_max,
        limits.filter_bytes_max,
    )
    .map_err(ReadApiError::BadQuery)?;
    let end = log.committed_end();
    let from = match q.start.unwrap_or(Start::Earliest) {
        Start::Earliest => log.start_offset(),
        Start::Latest => end,
        Start::Offset(n) => n,
    };
    let limit = q
        .limit
        .unwrap_or(READ_LIMIT_DEFAULT.min(limits.records_max));
    let mut m = MessageBuilder::new(4096);
    let mut reader = log.reader(from)?;
    scan::read_into(
        &mut reader,
        &q.filter,
        &mut m,
        end,
        limit,
        READ_RESPONSE_BYTES_MAX,
        READ_SCAN_RECORDS_MAX,
    )?;
    m.gaps(&reader.take_damaged());
    let next = reader.next_offset().max(from.min(end));
    Ok(m.finish(next, end))
}
