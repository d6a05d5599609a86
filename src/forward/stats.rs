//! The forwarder's series: a connection gauge, and per `(stream, partition)` the
//! cursor, the lag and the counters. Rendered by [`crate::stats`] with the stream and
//! partition as labels (their values are only known at start, so these series are
//! not in the static tables there).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use crate::wal::LogView;

/// Why a publish round failed, as the `reason` label of
/// `ringstash_forward_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReason {
    /// The JetStream stream could not be created or looked up (no connection, no
    /// JetStream, a refused configuration).
    Stream,
    /// The publish could not be sent (the client's buffer is closed or full).
    Publish,
    /// No acknowledgment within `nats_ack_timeout_ms`.
    AckTimeout,
    /// Refused for `Nats-Expected-Last-Msg-Id`: a publish before it was lost; the
    /// forwarder rewinds so that order holds.
    OutOfOrder,
    /// Any other negative acknowledgment from JetStream.
    Nack,
    /// Reading the log failed.
    Read,
    /// Storing the cursor file failed (forwarding goes on; a restart resends more).
    Cursor,
}

impl ErrorReason {
    /// Every reason, in label order.
    pub const ALL: [ErrorReason; 7] = [
        ErrorReason::Stream,
        ErrorReason::Publish,
        ErrorReason::AckTimeout,
        ErrorReason::OutOfOrder,
        ErrorReason::Nack,
        ErrorReason::Read,
        ErrorReason::Cursor,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Stream => "stream",
            ErrorReason::Publish => "publish",
            ErrorReason::AckTimeout => "ack_timeout",
            ErrorReason::OutOfOrder => "out_of_order",
            ErrorReason::Nack => "nack",
            ErrorReason::Read => "read",
            ErrorReason::Cursor => "cursor",
        }
    }
}

/// One partition's forwarding counters. Relaxed atomics: each is an independent
/// statistic, read by the renderers; nothing is derived from two at once but the lag,
/// which is a gauge and may be momentarily off by the records of one window.
#[derive(Debug)]
pub struct PartitionStats {
    /// The stream's name.
    pub stream: String,
    /// The partition's number.
    pub partition: u32,
    /// The partition's log, for its committed end (the lag).
    pub log: LogView,
    /// Next offset to forward: every record below it is confirmed stored in JetStream.
    pub cursor: AtomicU64,
    /// Records published (first sends and resends).
    pub published: AtomicU64,
    /// Records whose publish JetStream acknowledged (duplicates included).
    pub confirmed: AtomicU64,
    /// Acknowledgments that said duplicate (a resend already stored).
    pub duplicates: AtomicU64,
    /// Records published again after a failed round.
    pub resent: AtomicU64,
    /// Records retention removed from the log before they were forwarded.
    pub skipped: AtomicU64,
    /// Failed rounds, by [`ErrorReason`] (index in [`ErrorReason::ALL`]).
    pub errors: [AtomicU64; ErrorReason::ALL.len()],
}

impl PartitionStats {
    /// Counts one failure.
    pub fn error(&self, why: ErrorReason) {
        let i = ErrorReason::ALL
            .iter()
            .position(|r| *r == why)
            .expect("listed");
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Committed records not yet confirmed in JetStream.
    pub fn lag_records(&self) -> u64 {
        self.log
            .committed_end()
            .saturating_sub(self.cursor.load(Ordering::Relaxed))
    }
}

/// The forwarder's series, shared with the renderers.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Enabled, connected, connections made.
    pub conn: crate::stats::ForwardConnStats,
    /// One entry per forwarded partition, added at start.
    pub partitions: Mutex<Vec<Arc<PartitionStats>>>,
}

impl ForwardStats {
    /// Registers a partition's series.
    pub fn add(&self, stream: &str, partition: u32, log: LogView) -> Arc<PartitionStats> {
        let p = Arc::new(PartitionStats {
            stream: stream.to_owned(),
            partition,
            log,
            cursor: AtomicU64::new(0),
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            errors: Default::default(),
        });
        self.partitions
            .lock()
            .expect("forward stats lock")
            .push(p.clone());
        p
    }

    /// A snapshot of the partitions, for a scrape.
    pub fn partitions(&self) -> Vec<Arc<PartitionStats>> {
        self.partitions.lock().expect("forward stats lock").clone()
    }
}
