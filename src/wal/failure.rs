//! Why the writer stopped for good: a typed error carrying the operation, the file and
//! the offsets, so that `/stats`, `/healthz` and the exit message name what failed and
//! where. Its text is fixed (logs and `/stats` `failure` are matched on it), so each
//! kind's message is written once, here.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

/// What failed, with where. One variant per way the writer can stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriterFailureKind {
    /// The writer's wait (`io_uring_enter`, or ppoll under the epoll driver) failed
    /// with something other than EINTR.
    #[error("the writer's wait failed: {source}")]
    Enter {
        /// The OS error.
        source: io::Error,
    },
    /// Submitting queued operations failed (io_uring_enter, or the I/O threads gone).
    #[error("submitting writes failed: {source}")]
    Submit {
        /// The OS error.
        source: io::Error,
    },
    /// A group's fdatasync failed, or a covering one shared by the groups written
    /// while two syncs were out: their records are not acknowledged.
    #[error(
        "fdatasync of {} failed: {source}; the records it covered (offsets {first_offset}..{end_offset}{}) are not acknowledged",
        path.display(),
        shared_by(*groups)
    )]
    GroupSync {
        /// The active segment.
        path: PathBuf,
        /// The error the sync completed with.
        source: io::Error,
        /// First offset of the (first) group.
        first_offset: u64,
        /// Exclusive end offset of the (last) group.
        end_offset: u64,
        /// Groups the sync covered: 1 for a group's own, more for a covering sync.
        groups: usize,
    },
    /// The periodic fdatasync of the `interval` policy failed.
    #[error("fdatasync of {} failed: {source}", path.display())]
    IntervalSync {
        /// The active segment.
        path: PathBuf,
        /// The error the sync completed with.
        source: io::Error,
    },
    /// A write failed, and cutting the segment back to its last good position failed
    /// too: what the file holds past that position is unknown.
    #[error(
        "write to {} failed ({write}) and truncating back to byte {position} failed too ({source})",
        path.display()
    )]
    TruncateBack {
        /// The active segment.
        path: PathBuf,
        /// The error the write completed with.
        write: io::Error,
        /// Byte position the segment was to be cut back to.
        position: u64,
        /// Offset of the first record of the failed write.
        first_offset: u64,
        /// The truncate's error.
        source: io::Error,
    },
    /// Sealing a segment at a rotation failed: the cut and sync of its records before
    /// the next segment is made, or its index's sync after.
    #[error("syncing {} at rotation failed: {source}", path.display())]
    RotationSync {
        /// The segment being sealed, or its index.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The sync at clean shutdown failed.
    #[error("final sync of {} failed: {source}", path.display())]
    FinalSync {
        /// The active segment.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The writer thread panicked (a broken invariant).
    #[error("the log writer panicked: {what}")]
    Panicked {
        /// The panic's message.
        what: String,
    },
}

/// Why the writer stopped for good. Cheap to clone (two reference counts); displays as
/// the message logged when the writer stopped.
#[derive(Debug, Clone)]
pub struct WriterFailure {
    kind: Arc<WriterFailureKind>,
    /// The message, rendered once: every batch refused after the failure carries it
    /// ([`crate::error::AppendError::Failed`]) without an allocation each.
    text: Arc<str>,
}

impl WriterFailure {
    /// What failed, with its details.
    pub fn kind(&self) -> &WriterFailureKind {
        &self.kind
    }

    /// The operation that failed, in a word or two (for logs and metrics labels).
    pub fn op(&self) -> &'static str {
        match &*self.kind {
            WriterFailureKind::Enter { .. } => "wait",
            WriterFailureKind::Submit { .. } => "submit",
            WriterFailureKind::GroupSync { .. } => "group fdatasync",
            WriterFailureKind::IntervalSync { .. } => "interval fdatasync",
            WriterFailureKind::TruncateBack { .. } => "truncate after failed write",
            WriterFailureKind::RotationSync { .. } => "sync at rotation",
            WriterFailureKind::FinalSync { .. } => "final sync",
            WriterFailureKind::Panicked { .. } => "writer thread",
        }
    }

    /// The file the failed operation was on, if any.
    pub fn path(&self) -> Option<&Path> {
        match &*self.kind {
            WriterFailureKind::GroupSync { path, .. }
            | WriterFailureKind::IntervalSync { path, .. }
            | WriterFailureKind::TruncateBack { path, .. }
            | WriterFailureKind::RotationSync { path, .. }
            | WriterFailureKind::FinalSync { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The first record offset the failure covers, if it covers known records.
    pub fn offset(&self) -> Option<u64> {
        match &*self.kind {
            WriterFailureKind::GroupSync { first_offset, .. }
            | WriterFailureKind::TruncateBack { first_offset, .. } => Some(*first_offset),
            _ => None,
        }
    }

    /// The message as a shared string (what [`crate::error::AppendError::Failed`]
    /// carries).
    pub fn message(&self) -> Arc<str> {
        self.text.clone()
    }
}

impl From<WriterFailureKind> for WriterFailure {
    fn from(kind: WriterFailureKind) -> Self {
        WriterFailure {
            text: kind.to_string().into(),
            kind: Arc::new(kind),
        }
    }
}

impl std::fmt::Display for WriterFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for WriterFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.kind)
    }
}

/// How a failed sync's message names a covering sync.
fn shared_by(groups: usize) -> String {
    if groups > 1 {
        format!(", a sync shared by {groups} groups")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_ones_logged_before_the_type() {
        let f = WriterFailure::from(WriterFailureKind::GroupSync {
            path: "/d/00000000000000000000.seg".into(),
            source: io::Error::from_raw_os_error(libc::EIO),
            first_offset: 3,
            end_offset: 7,
            groups: 1,
        });
        assert_eq!(
            f.to_string(),
            format!(
                "fdatasync of /d/00000000000000000000.seg failed: {}; the records it covered (offsets 3..7) are not acknowledged",
                io::Error::from_raw_os_error(libc::EIO)
            )
        );
        assert_eq!(f.offset(), Some(3));
        assert_eq!(f.op(), "group fdatasync");
        assert_eq!(&*f.clone().message(), f.to_string());
        let shared = WriterFailure::from(WriterFailureKind::GroupSync {
            path: "/d/00000000000000000000.seg".into(),
            source: io::Error::from_raw_os_error(libc::EIO),
            first_offset: 3,
            end_offset: 9,
            groups: 2,
        });
        assert!(
            shared
                .to_string()
                .ends_with("(offsets 3..9, a sync shared by 2 groups) are not acknowledged"),
            "{shared}"
        );
        let p = WriterFailure::from(WriterFailureKind::Panicked {
            what: "boom".into(),
        });
        assert_eq!(p.to_string(), "the log writer panicked: boom");
        assert_eq!(p.path(), None);
    }
}
