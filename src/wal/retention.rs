//! Retention: removing the oldest sealed segments by total size and by age.
//!
//! Whole segments only, oldest first, never the active one. Runs on the writer thread
//! after each rotation, and once at open. Age is the time since a segment was last
//! written (its modification time, which is when its newest record arrived), so a
//! sealed segment is removed once even its newest record is older than `retention_ms`.
//! A reader already inside a removed segment keeps reading it through its open file
//! handle; one that asks for an offset below the new start begins at the oldest kept
//! record.

use std::{
    path::Path,
    sync::atomic::Ordering,
    time::{Duration, SystemTime},
};

use super::{Inner, segment, segment::sync_dir};

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Segments removed.
    pub segments: u64,
    /// Bytes of segment files removed.
    pub bytes: u64,
    /// Base offset of the oldest segment kept (the log's new start offset).
    pub start_offset: u64,
}

/// Applies the retention settings; a failure is logged, not fatal: it endangers no
/// acknowledged record, only disk space.
pub(crate) fn apply(inner: &Inner, active_base: u64) {
    let c = &inner.config;
    if c.retention_bytes_max == 0 && c.retention_ms == 0 {
        return;
    }
    let age = (c.retention_ms > 0).then(|| Duration::from_millis(c.retention_ms));
    match purge(&c.dir, active_base, c.retention_bytes_max, age) {
        Ok(p) if p.segments > 0 => {
            // Release: a reader that sees the new start finds the older files gone.
            inner.start_offset.store(p.start_offset, Ordering::Release);
            inner
                .stats
                .segments_purged
                .fetch_add(p.segments, Ordering::Relaxed);
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, dir = %c.dir.display(), "retention could not remove old segments")
        }
    }
}

/// Removes sealed segments of `dir` beyond `bytes_max` in total (0 = no limit) or last
/// written more than `age_max` ago (`None` = no limit). `active_base` is never removed.
///
/// # Errors
/// The OS error from listing, stating or removing a file, or syncing the directory.
pub fn purge(
    dir: &Path,
    active_base: u64,
    bytes_max: u64,
    age_max: Option<Duration>,
) -> std::io::Result<Purged> {
    let bases = segment::list_segments(dir)?;
    let mut sizes = Vec::with_capacity(bases.len());
    for &b in &bases {
        let m = std::fs::metadata(segment::segment_path(dir, b))?;
        sizes.push((b, m.len(), m.modified().unwrap_or(SystemTime::now())));
    }
    let mut total: u64 = sizes.iter().map(|s| s.1).sum();
    let now = SystemTime::now();
    let mut purged = Purged {
        start_offset: bases.first().copied().unwrap_or(active_base),
        ..Purged::default()
    };
    for &(base, len, modified) in &sizes {
        if base >= active_base {
            break;
        }
        let over_size = bytes_max > 0 && total > bytes_max;
        let too_old =
            age_max.is_some_and(|max| now.duration_since(modified).unwrap_or_default() > max);
        if !over_size && !too_old {
            break;
        }
        // The index first: a segment without an index is still readable (by scanning),
        // an index without its segment is ignored.
        // A time index that cannot be removed must not keep its segment: it is derived
        // data, and one left behind is ignored (no `.log` lists its base).
        let tpath = super::timeindex::tix_path(dir, base);
        if let Err(e) = remove_if_present(&tpath) {
            tracing::warn!(path = %tpath.display(), error = %e, "retention could not remove a time index; removing its segment anyway");
        }
        remove_if_present(&segment::index_path(dir, base))?;
        remove_if_present(&segment::segment_path(dir, base))?;
        total -= len;
        purged.segments += 1;
        purged.bytes += len;
        purged.start_offset = sizes
            .iter()
            .map(|s| s.0)
            .find(|&b| b > base)
            .unwrap_or(active_base);
        tracing::info!(
            base,
            bytes = len,
            over_size,
            too_old,
            "retention removed a segment"
        );
    }
    if purged.segments > 0 {
        sync_dir(dir)?;
    }
    Ok(purged)
}

fn remove_if_present(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
