//! The command-line tools that work on a data directory: `cat` and `check`.

use std::{
    io::{self, BufRead, Write},
    path::Path,
    time::Duration,
};

use crate::{
    error::ReadError,
    query::filter::{Filter, json_fields},
    wal,
};

/// Options of `ringstash cat`.
#[derive(Debug, Clone)]
pub struct CatOptions {
    /// First offset to print.
    pub from: u64,
    /// Keep printing new records as they are written.
    pub follow: bool,
    /// Prefix each record with its offset and receive time.
    pub show_meta: bool,
    /// Stop after this many records.
    pub limit: Option<u64>,
    /// Only records received at or after this (ns since the epoch); the read starts
    /// where the time index puts it.
    pub since_ns: Option<u64>,
    /// Only records received before this; the read stops once records pass it by
    /// `time_skew_ms`.
    pub until_ns: Option<u64>,
    /// The skew bound of `until` in ms: `time_skew_ms_max`'s default unless set (`cat`
    /// does not read the server's settings, so `--time-skew-ms` matches a server run
    /// with a larger one).
    pub time_skew_ms: u64,
    /// Only JSON records whose `"level"` is one of these (ASCII case-insensitive).
    pub levels: Vec<String>,
    /// Only JSON records whose `"service"` is one of these.
    pub services: Vec<String>,
    /// Only records whose payload contains this (bytes, case-sensitive: a substring,
    /// not a regex; the crate has no regex engine).
    pub grep: Option<Vec<u8>>,
    /// How the reader searches past damage and how long it waits for a running
    /// server's writes in flight before calling a bad record damage
    /// (`--damage-resync-window-bytes`, `--damage-settle-ms`; checked by the caller).
    pub damage: wal::DirReadConfig,
}

impl CatOptions {
    /// Everything from `from`, no filter.
    pub fn from(from: u64) -> Self {
        CatOptions {
            from,
            follow: false,
            show_meta: false,
            limit: None,
            since_ns: None,
            until_ns: None,
            time_skew_ms: wal::LogConfig::new("").time_skew_ms_max,
            levels: Vec::new(),
            services: Vec::new(),
            grep: None,
            damage: wal::DirReadConfig::default(),
        }
    }

    /// The record filter the options ask for.
    fn filter(&self) -> Filter {
        let mut f = Filter::default();
        f.set_fields(self.services.clone(), self.levels.clone());
        f.set_substring(self.grep.clone());
        f.set_time_range(self.since_ns, self.until_ns);
        f.set_time_skew_ms(self.time_skew_ms);
        f
    }
}

/// Parses `--since`/`--until` (RFC 3339 or Unix seconds, as the read API's `since`).
///
/// # Errors
/// The reason, naming the flag.
pub fn parse_time_flag(flag: &str, v: &str) -> Result<u64, String> {
    crate::query::filter::parse_time(flag, v).map_err(|e| e.detail)
}

/// Prints records, one per line, payload as stored. Returns how many damaged ranges
/// it skipped (see [`wal::Reader::take_damaged`]): each is announced on `marks` (stderr)
/// with a line starting `gap:` that names the lost offsets, the segment and the byte
/// position, and the binary exits [`CAT_EXIT_DAMAGED`] after printing every record it
/// could, so that `cat` never exits 0 having passed over lost records. Each wait for a
/// running server's writes in flight (`damage_settle_ms`) is announced on `marks` too,
/// with a line starting `settle:`, so that the time is never spent unseen.
///
/// # Errors
/// A read error (I/O or corruption), or a write error on `out` other than a closed
/// pipe (which ends the command quietly, as `head` expects).
pub fn cat(
    dir: &Path,
    opts: &CatOptions,
    out: &mut dyn Write,
    marks: &mut dyn Write,
) -> Result<u64, ReadError> {
    let filter = opts.filter();
    let from = match opts.since_ns {
        Some(since) => wal::timeindex::seek(dir, since)
            .map_err(|e| ReadError::io("read time index", dir, e))?
            .map_or(opts.from, |s| s.offset.max(opts.from)),
        None => opts.from,
    };
    let mut reader = wal::Reader::open_dir_with(dir, from, opts.damage)?;
    let mut printed = 0u64;
    let mut damaged = 0u64;
    let stdout_err = |e: io::Error| ReadError::io("write output", "<stdout>", e);
    // The record is copied out of the reader (into one reused buffer) so that the
    // reader can be asked, before the record is printed, what it skipped to reach it.
    let mut payload = Vec::new();
    loop {
        // Before the reader looks: records written after this were received after it
        // (within the skew bound), so an `until` before it is reached once caught up.
        let clock = wal::now_ns();
        loop {
            let next = reader.next()?.map(|r| {
                payload.clear();
                payload.extend_from_slice(r.payload);
                (r.offset, r.timestamp_ns)
            });
            for w in reader.take_settle_waits() {
                let _ = writeln!(
                    marks,
                    "settle: waited {} ms at offset {} ({}, byte {}) for a running server's writes in flight before taking a bad record as damage",
                    w.waited_ms,
                    w.offset,
                    w.path.display(),
                    w.position
                );
            }
            let Some((offset, timestamp_ns)) = next else {
                break;
            };
            for range in reader.take_damaged() {
                // Flushed first, so that the marker falls between the records around it
                // when both streams go to one terminal or file.
                if let Err(e) = out.flush()
                    && e.kind() != io::ErrorKind::BrokenPipe
                {
                    return Err(stdout_err(e));
                }
                damaged += 1;
                let _ = writeln!(
                    marks,
                    "gap: offsets {}..{} lost: {range}",
                    range.from_offset, range.to_offset
                );
            }
            if opts.limit.is_some_and(|l| printed >= l) {
                return Ok(damaged);
            }
            if !filter.matches_time(timestamp_ns) {
                if filter
                    .until_stop_ns()
                    .is_some_and(|stop| timestamp_ns > stop)
                {
                    return Ok(damaged);
                }
                continue;
            }
            if !filter.is_empty() {
                let (service, level) = if filter.needs_fields() {
                    json_fields(&payload)
                } else {
                    (None, None)
                };
                if !filter.matches(&payload, service.as_deref(), level.as_deref()) {
                    continue;
                }
            }
            let res = if opts.show_meta {
                write!(out, "{offset}\t{}\t", format_ts(timestamp_ns))
                    .and_then(|()| out.write_all(&payload))
                    .and_then(|()| out.write_all(b"\n"))
            } else {
                out.write_all(&payload).and_then(|()| out.write_all(b"\n"))
            };
            match res {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(damaged),
                Err(e) => return Err(stdout_err(e)),
            }
            printed += 1;
        }
        match out.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(damaged),
            Err(e) => return Err(stdout_err(e)),
        }
        if !opts.follow || opts.limit.is_some_and(|l| printed >= l) {
            return Ok(damaged);
        }
        if filter.until_stop_ns().is_some_and(|stop| clock > stop) {
            // Caught up, and the clock was past `until` (and the skew) before this pass:
            // a record received before `until` and written later than that is missed,
            // and counted by the server (`time_skew_exceeded_total`).
            return Ok(damaged);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub use crate::query::render::format_ts;

/// `cat`'s exit status when it skipped damaged ranges (announced by `gap:` lines on
/// stderr) and printed every intact record: not 0, because records were lost, and not
/// 1, which means `cat` failed and may have stopped early.
pub const CAT_EXIT_DAMAGED: u8 = 3;

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(super::format_ts(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            super::format_ts(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}

/// Options of `ringstash append`.
#[derive(Debug, Clone)]
pub struct AppendOptions {
    /// Records per batch.
    pub batch_records: usize,
    /// Print `<first> <last>` for every batch once it is durable.
    pub print_offsets: bool,
}

/// Appends stdin's lines (a trailing `\r` stripped) to the log, in batches, keeping
/// many batches in flight; prints offsets as batches become durable if asked. Returns
/// the number of records appended.
///
/// Whenever no more input is ready, the records read so far are appended and every
/// pending batch is reported before the next (blocking) read, so a slow producer gets
/// its acknowledgement without sending more.
///
/// # Errors
/// An I/O error on input or output, or the first append error.
pub fn append<R: io::Read + std::os::fd::AsFd>(
    log: &wal::Log,
    opts: &AppendOptions,
    input: &mut io::BufReader<R>,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let appender = log.appender();
    let mut builder = wal::BatchBuilder::new(
        log.config().group_bytes_max.min(4 << 20),
        appender.record_bytes_max(),
    );
    let mut pending: std::collections::VecDeque<wal::Completion> = Default::default();
    let mut line = Vec::new();
    let mut total = 0u64;
    let batch_bytes_max = log.config().group_bytes_max / 2;
    let report = |c: wal::Completion, out: &mut dyn Write| -> anyhow::Result<()> {
        let done = c.wait()?;
        if opts.print_offsets {
            writeln!(out, "{} {}", done.first_offset, done.last_offset())?;
            out.flush()?;
        }
        Ok(())
    };
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line)?;
        if n > 0 {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            builder.push(wal::now_ns(), &line)?;
            total += 1;
        }
        // Nothing buffered and nothing ready: the next read would block.
        let idle = n > 0 && input.buffer().is_empty() && !readable(input.get_ref())?;
        let flush = n == 0
            || idle
            || builder.records() as usize >= opts.batch_records
            || builder.bytes() >= batch_bytes_max;
        if flush && !builder.is_empty() {
            let (frames, records) = builder.take();
            pending.push_back(appender.append(frames, records)?);
        }
        while let Some(c) = pending.front() {
            if c.try_result().is_none() && pending.len() < 64 && n > 0 && !idle {
                break;
            }
            let c = pending.pop_front().expect("front exists");
            report(c, out)?;
        }
        if n == 0 && pending.is_empty() {
            return Ok(total);
        }
    }
}

/// True if a read from `fd` would not block (data, end of file, or an error is ready).
fn readable(fd: &impl std::os::fd::AsFd) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, a zero timeout.
        match unsafe { libc::poll(&mut p, 1, 0) } {
            0 => return Ok(false),
            n if n > 0 => return Ok(true),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
