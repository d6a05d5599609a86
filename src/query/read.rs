//! The read API, `GET /v1/logs?from=&limit=&service=&level=&q=&since=&until=`:
//! committed records as JSON, in the message format of the WebSocket
//! (`{"records":[...],"next":N,"committed_end":E}`). `from` defaults to `earliest`.
//!
//! `since` starts the read where the time index puts that time (see
//! `wal::timeindex`): a binary search, not a scan. With `from` too, the later of the
//! two starts. `until` ends it: once the read passes a record received after
//! `until` + `time_skew_ms_max`, or reaches the committed end after that moment by the
//! clock, the answer says `"until_reached":true` and paging on from `next` would find
//! nothing more in the range.

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
    /// `stream=` names no stream of this server.
    #[error("unknown_stream: {0:?} is not a stream of this server")]
    UnknownStream(String),
}

/// The partition a read or a subscription names: `stream=` (default: the default
/// stream) and `partition=`, which a stream of one partition may leave out. `Ok(None)`
/// for a stream of several partitions without `partition=` (a subscription merges
/// them; the read API refuses).
///
/// # Errors
/// [`ReadApiError::UnknownStream`]; [`ReadApiError::BadQuery`] for a partition the
/// stream does not have.
pub fn partitions_of<'a>(
    streams: &'a crate::streams::StreamViews,
    q: &filter::Query,
) -> Result<&'a [crate::streams::PartitionView], ReadApiError> {
    let name = q
        .stream
        .as_deref()
        .unwrap_or(crate::streams::DEFAULT_STREAM);
    let all = streams
        .stream(name)
        .ok_or_else(|| ReadApiError::UnknownStream(name.to_owned()))?;
    match q.partition {
        None => Ok(all),
        Some(p) if (p as usize) < all.len() => Ok(&all[p as usize..=p as usize]),
        Some(p) => Err(ReadApiError::BadQuery(QueryError {
            code: "bad_query",
            detail: format!(
                "stream {name:?} has {} partition(s), 0..={}; there is no partition {p}",
                all.len(),
                all.len() - 1
            ),
        })),
    }
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
    streams: &crate::streams::StreamViews,
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
    let log = match partitions_of(streams, &q)? {
        [one] => &one.log,
        several => {
            return Err(ReadApiError::BadQuery(QueryError {
                code: "bad_query",
                detail: format!(
                    "stream {:?} has {} partitions, each with its own offsets: name one with partition=0..={}",
                    several[0].stream,
                    several.len(),
                    several.len() - 1
                ),
            }));
        }
    };
    let mut q = q;
    q.filter.set_time_skew_ms(log.config().time_skew_ms_max);
    // Before the committed end: records committed after `end` were received after
    // (about) this moment, which `until_reached` relies on.
    let clock = crate::wal::now_ns();
    let end = log.committed_end();
    let from = match q.start.unwrap_or(Start::Earliest) {
        Start::Earliest => log.start_offset(),
        Start::Latest => end,
        Start::Offset(n) => n,
    };
    let from = match q.filter.since_ns() {
        Some(since) => from.max(since_offset(log, since)?),
        None => from,
    };
    let limit = q
        .limit
        .unwrap_or(READ_LIMIT_DEFAULT.min(limits.records_max));
    let mut m = MessageBuilder::new(4096);
    let mut reader = log.reader(from)?;
    let outcome = scan::read_into(
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
    if until_reached(&q.filter, outcome.until_passed, next, end, clock) {
        m.until_reached();
    }
    Ok(m.finish(next, end))
}

/// Where a read from `since` (ns) starts: the time index's answer, or the log's start;
/// never past the committed end. The writer writes a group's time-index entries just
/// after it publishes the group, so an entry is never past the committed end when
/// read; the bound is kept as a guard (every record before an entry the seek returns
/// was received before `since`, so starting at the committed end would lose nothing).
///
/// # Errors
/// A read error from the index files.
pub fn since_offset(log: &LogView, since: u64) -> Result<u64, ReadError> {
    let dir = &log.config().dir;
    let seek = crate::wal::timeindex::seek(dir, since)
        .map_err(|e| ReadError::io("read time index", dir, e))?;
    Ok(seek
        .map_or(log.start_offset(), |s| s.offset)
        .min(log.committed_end()))
}

/// True once no record in the filter's `until` range can follow `next`: the scan
/// passed a record received after `until` + the skew bound, or it has read to the
/// committed end `end`, read after the clock said `clock_ns`, and that is past the
/// stop: every record committed after `end` was received after `clock_ns`, within the
/// skew bound. That assumes no record is written more than `time_skew_ms_max` after
/// it was received; the writer counts those that are (`time_skew_exceeded_total`).
pub fn until_reached(
    filter: &filter::Filter,
    until_passed: bool,
    next: u64,
    end: u64,
    clock_ns: u64,
) -> bool {
    let Some(stop) = filter.until_stop_ns() else {
        return false;
    };
    until_passed || next >= end && clock_ns > stop
}
