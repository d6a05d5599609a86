//! Forwarding committed records into NATS JetStream (`docs/scale-out.md`).
//!
//! One thread, `rs-forward`, runs a current-thread tokio runtime of its own (never
//! the reactors'): one NATS client, and one task per forwarded `(stream, partition)`.
//! Each task is a cursor over its partition's log, like a subscriber: it only reads,
//! so nothing it does (NATS down, slow acknowledgments) reaches ingest; what it has
//! not confirmed is its lag.
//!
//! Delivery is at least once and in order per partition:
//! - each record is one message on `<prefix>.<node>.<stream>.<partition>`, with
//!   `Nats-Msg-Id: <node>.<stream>.<partition>.<offset>` (JetStream's duplicate
//!   window drops resends) and `Nats-Expected-Last-Msg-Id` naming the record before
//!   it: a pipelined publish that follows a lost one is refused rather than stored
//!   out of order;
//! - each partition has a JetStream stream of its own (created if absent), so that
//!   expectation is about that partition alone;
//! - after any failure the task asks the stream for its last message and resumes
//!   right after it (the stream's content is always an ordered prefix), sending the
//!   first record alone; the durable cursor (`nats.cursor`, [`cursor`]) is where it
//!   starts when the stream knows nothing newer.

pub mod cursor;
pub mod stats;

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishErrorKind, stream::LastRawMessageErrorKind};
use tokio::sync::watch;

pub use crate::config::ForwardSettings;
use crate::wal::LogView;
pub use stats::{ErrorReason, ForwardStats, PartitionStats};

/// One partition to forward.
#[derive(Debug, Clone)]
pub struct ForwardTarget {
    /// The stream's name (a subject token).
    pub stream: String,
    /// The partition's number within the stream.
    pub partition: u32,
    /// The partition's log, read only.
    pub log: LogView,
    /// The partition's directory, where the cursor file lives.
    pub dir: PathBuf,
}

/// The running forwarder; [`ForwardHandle::stop`] ends it.
#[derive(Debug)]
pub struct ForwardHandle {
    stop: watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl ForwardHandle {
    /// Stops forwarding: no new record is published; what is in flight gets
    /// `nats_stop_timeout_ms` to be confirmed; every partition's cursor is stored.
    /// Call after the log has drained, so that what was committed has been read.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

/// True if `s` can be one token of a NATS subject and part of a JetStream stream name:
/// letters, digits, `-` and `_` (no `.`, wildcards or spaces).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The subject a partition's records are published on.
pub fn subject(prefix: &str, node: &str, stream: &str, partition: u32) -> String {
    format!("{prefix}.{node}.{stream}.{partition}")
}

/// The JetStream stream that holds one partition's records: the subject with `.`
/// made `_` (stream names may not hold a `.`).
pub fn stream_name(prefix: &str, node: &str, stream: &str, partition: u32) -> String {
    subject(prefix, node, stream, partition).replace('.', "_")
}

/// The `Nats-Msg-Id` of a record.
pub fn msg_id(node: &str, stream: &str, partition: u32, offset: u64) -> String {
    format!("{node}.{stream}.{partition}.{offset}")
}

/// Header carrying the record's receive time, nanoseconds since the Unix epoch.
pub const RECEIVED_HEADER: &str = "Ringstash-Received-Ns";

/// A partition's task state that outlives a round.
struct Part {
    target: ForwardTarget,
    stats: Arc<PartitionStats>,
    subject: String,
    stream_name: String,
    /// `Nats-Msg-Id` without the offset.
    id_prefix: String,
    /// Offsets below this were published at least once (for `resent`).
    published_below: u64,
    /// The cursor last stored in the file.
    stored: u64,
}

/// Starts the forwarder thread for `targets`.
///
/// # Errors
/// A node or stream name that cannot be a subject token, a cursor file that cannot
/// be read or is damaged, or the thread or runtime not starting.
pub fn spawn(
    settings: ForwardSettings,
    node_id: String,
    targets: Vec<ForwardTarget>,
    stats: Arc<ForwardStats>,
) -> anyhow::Result<ForwardHandle> {
    anyhow::ensure!(
        is_token(&node_id),
        "node_id {node_id:?} cannot name NATS subjects: forwarding needs letters, digits, '-' and '_' only (set node_id)"
    );
    let mut parts = Vec::with_capacity(targets.len());
    for t in targets {
        anyhow::ensure!(
            is_token(&t.stream),
            "stream {:?} cannot name NATS subjects (letters, digits, '-' and '_' only)",
            t.stream
        );
        let start = cursor::load(&t.dir)?;
        let from = start.unwrap_or_else(|| t.log.start_offset());
        let p = stats.add(&t.stream, t.partition, t.log.clone());
        p.cursor.store(from, Ordering::Relaxed);
        let prefix = &settings.nats_subject_prefix;
        parts.push(Part {
            subject: subject(prefix, &node_id, &t.stream, t.partition),
            stream_name: stream_name(prefix, &node_id, &t.stream, t.partition),
            id_prefix: format!("{node_id}.{}.{}.", t.stream, t.partition),
            published_below: from,
            stored: start.unwrap_or(u64::MAX),
            target: t,
            stats: p,
        });
    }
    let servers = server_addrs(&settings.nats_url)?;
    stats.conn.forward_enabled.store(1, Ordering::Relaxed);
    let (stop_tx, stop_rx) = watch::channel(false);
    // The blocking pool holds the tasks' waits for the writer's next commit: one
    // thread per partition at most, named so they show in `top -H`.
    let rt = tokio::runtime::Builder::new_current_thread()
        .thread_name("rs-forward-wait")
        .max_blocking_threads(parts.len().max(1))
        .enable_all()
        .build()
        .context("building the forwarder's runtime")?;
    let thread = std::thread::Builder::new()
        .name("rs-forward".into())
        .spawn(move || {
            let cursors: Vec<(PathBuf, Arc<PartitionStats>)> = parts
                .iter()
                .map(|p| (p.target.dir.clone(), p.stats.clone()))
                .collect();
            rt.block_on(run(settings, servers, node_id, parts, stats, stop_rx));
            // Tasks cut by the stop deadline may not have stored their last confirmed
            // window; nothing runs on the runtime any more, so store it here.
            for (dir, p) in cursors {
                if let Err(e) = cursor::store(&dir, p.cursor.load(Ordering::Relaxed)) {
                    tracing::error!("forward: storing the cursor at stop: {e}");
                }
            }
        })
        .context("starting the forwarder thread")?;
    Ok(ForwardHandle {
        stop: stop_tx,
        thread,
    })
}

/// Delay before retry `n` (from 1): doubling from 50 ms, capped.
fn backoff(n: u32, max: Duration) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << n.min(20).saturating_sub(1))).min(max)
}

/// The servers `nats_url` names, comma-separated.
///
/// # Errors
/// One that is not a NATS URL (`nats://host:port`).
pub fn server_addrs(urls: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .with_context(|| format!("nats_url: {u:?} is not a NATS server URL"))
        })
        .collect()
}

async fn run(
    settings: ForwardSettings,
    servers: Vec<async_nats::ServerAddr>,
    node_id: String,
    parts: Vec<Part>,
    stats: Arc<ForwardStats>,
    mut stop: watch::Receiver<bool>,
) {
    let backoff_max = Duration::from_millis(settings.nats_retry_backoff_ms_max);
    let ev_stats = stats.clone();
    let connect = async_nats::ConnectOptions::new()
        .name(format!("ringstash {node_id}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_millis(settings.nats_ack_timeout_ms))
        .reconnect_delay_callback(move |n| backoff(n as u32, backoff_max))
        .event_callback(move |ev| {
            let s = ev_stats.clone();
            async move {
                match ev {
                    async_nats::Event::Connected => {
                        s.conn.forward_connected.store(1, Ordering::Relaxed);
                        s.conn
                            .forward_connects_total
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    async_nats::Event::Disconnected | async_nats::Event::Closed => {
                        s.conn.forward_connected.store(0, Ordering::Relaxed);
                    }
                    other => tracing::warn!("forward: NATS: {other}"),
                }
            }
        })
        .connect(servers)
        .await;
    let client = match connect {
        Ok(c) => c,
        Err(e) => {
            // Connecting is retried in the background and the URLs were checked at
            // start: this is not expected.
            tracing::error!("forward: NATS client for {}: {e}", settings.nats_url);
            return;
        }
    };
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_millis(settings.nats_ack_timeout_ms));
    let settings = Arc::new(settings);
    let tasks: Vec<_> = parts
        .into_iter()
        .map(|p| tokio::spawn(forward(p, js.clone(), settings.clone(), stop.clone())))
        .collect();
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    let deadline = tokio::time::sleep(Duration::from_millis(settings.nats_stop_timeout_ms));
    tokio::pin!(deadline);
    for t in tasks {
        tokio::select! {
            _ = t => {}
            _ = &mut deadline => {
                tracing::warn!("forward: nats_stop_timeout_ms passed with publishes unconfirmed; they are resent after the restart");
                break;
            }
        }
    }
}

/// A round ended by a failure: the task rewinds and retries after a backoff.
struct Failed(ErrorReason, String);

/// One partition's task: rounds of (stream, resync, pipelined publishes) until stop.
async fn forward(
    mut p: Part,
    js: jetstream::Context,
    s: Arc<ForwardSettings>,
    mut stop: watch::Receiver<bool>,
) {
    let backoff_max = Duration::from_millis(s.nats_retry_backoff_ms_max);
    let mut failures = 0u32;
    while !*stop.borrow() {
        let Err(Failed(why, msg)) = round(&mut p, &js, &s, &stop, &mut failures).await else {
            break;
        };
        p.stats.error(why);
        store_cursor(&mut p);
        failures += 1;
        let d = backoff(failures, backoff_max);
        tracing::warn!(
            "forward {}: {} ({msg}); retrying from offset {} in {} ms",
            p.subject,
            why.as_str(),
            p.stats.cursor.load(Ordering::Relaxed),
            d.as_millis()
        );
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Stores the cursor if it moved since the last store.
fn store_cursor(p: &mut Part) {
    let c = p.stats.cursor.load(Ordering::Relaxed);
    if c == p.stored {
        return;
    }
    match cursor::store(&p.target.dir, c) {
        Ok(()) => p.stored = c,
        Err(e) => {
            p.stats.error(ErrorReason::Cursor);
            tracing::error!("forward {}: {e}", p.subject);
        }
    }
}

/// One round: returns `Ok` at stop once nothing is in flight, else the failure.
async fn round(
    p: &mut Part,
    js: &jetstream::Context,
    s: &ForwardSettings,
    stop: &watch::Receiver<bool>,
    failures: &mut u32,
) -> Result<(), Failed> {
    let config = jetstream::stream::Config {
        name: p.stream_name.clone(),
        subjects: vec![p.subject.clone()],
        storage: jetstream::stream::StorageType::File,
        num_replicas: s.nats_replicas,
        duplicate_window: Duration::from_millis(s.nats_duplicate_window_ms),
        ..Default::default()
    };
    let stream = match js.get_or_create_stream(config).await {
        Ok(st) => st,
        Err(e) => {
            return Err(Failed(
                ErrorReason::Stream,
                format!("stream {}: {e}", p.stream_name),
            ));
        }
    };
    // Resync: the stream holds an ordered prefix of the partition; resume after it.
    let mut next = p.stats.cursor.load(Ordering::Relaxed);
    match stream.get_last_raw_message_by_subject(&p.subject).await {
        Ok(m) => {
            let last = m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .and_then(|v| v.as_str().strip_prefix(p.id_prefix.as_str()))
                .and_then(|o| o.parse::<u64>().ok());
            if let Some(last) = last
                && last + 1 > next
            {
                next = last + 1;
            }
        }
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
        Err(e) => {
            return Err(Failed(
                ErrorReason::Stream,
                format!("last message of {}: {e}", p.stream_name),
            ));
        }
    }
    let end = p.target.log.committed_end();
    if next > end {
        // Only committed records are ever published, so the stream (or the cursor)
        // being ahead of the log means this is not the log they came from: a reset
        // data directory, or two nodes with one node_id. Publishing would have
        // JetStream drop the new records as duplicates; refuse, loudly, until fixed.
        return Err(Failed(
            ErrorReason::Stream,
            format!(
                "{} (or nats.cursor) is at offset {next}, beyond this log's committed end {end}: the data directory was reset, or another node uses this node_id; forwarding waits (delete the stream or change node_id)",
                p.stream_name
            ),
        ));
    }
    let start = p.target.log.start_offset();
    if next < start {
        p.stats.skipped.fetch_add(start - next, Ordering::Relaxed);
        tracing::warn!(
            "forward {}: records {next}..{start} were removed by retention before they were forwarded; skipped",
            p.subject
        );
        next = start;
    }
    p.stats.cursor.store(next, Ordering::Relaxed);
    store_cursor(p);
    let mut reader = match p.target.log.reader(next) {
        Ok(r) => r,
        Err(e) => return Err(Failed(ErrorReason::Read, e.to_string())),
    };
    let window = s.nats_publish_window_max;
    let ack_timeout = Duration::from_millis(s.nats_ack_timeout_ms);
    let mut in_flight: VecDeque<(u64, jetstream::context::PublishAckFuture)> =
        VecDeque::with_capacity(window);
    // None until the first record after the resync is confirmed: that one goes alone
    // and without an expectation (the stream's last id may be gone from its memory
    // past the duplicate window); the ones after it each expect their predecessor.
    let mut prev: Option<u64> = None;
    let mut first_confirmed = false;
    loop {
        let stopping = *stop.borrow();
        while !stopping && in_flight.len() < window && (first_confirmed || in_flight.is_empty()) {
            let r = match reader.next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return Err(Failed(ErrorReason::Read, e.to_string())),
            };
            let mut h = async_nats::HeaderMap::new();
            h.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{}{}", p.id_prefix, r.offset).as_str(),
            );
            if let Some(prev) = prev {
                h.insert(
                    async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID,
                    format!("{}{prev}", p.id_prefix).as_str(),
                );
            }
            h.insert(RECEIVED_HEADER, r.timestamp_ns.to_string().as_str());
            // One copy per record: the client owns what it sends until it is written
            // (the reader's buffer is reused for the next record).
            let payload = bytes::Bytes::copy_from_slice(r.payload);
            let offset = r.offset;
            match js.publish_with_headers(p.subject.clone(), h, payload).await {
                Ok(ack) => in_flight.push_back((offset, ack)),
                Err(e) => return Err(Failed(ErrorReason::Publish, e.to_string())),
            }
            p.stats.published.fetch_add(1, Ordering::Relaxed);
            if offset < p.published_below {
                p.stats.resent.fetch_add(1, Ordering::Relaxed);
            } else {
                p.published_below = offset + 1;
            }
            prev = Some(offset);
        }
        let Some((offset, ack)) = in_flight.pop_front() else {
            if stopping {
                store_cursor(p);
                return Ok(());
            }
            store_cursor(p);
            // Caught up: wait for the writer to commit more. The wait blocks a thread,
            // so it runs on the blocking pool, bounded so that a stop is seen soon.
            let log = p.target.log.clone();
            let at = reader.next_offset();
            let end = tokio::task::spawn_blocking(move || {
                log.wait_committed_beyond(at, Duration::from_millis(100))
            })
            .await
            .unwrap_or(0);
            if end <= at {
                // A stopped writer returns at once: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            continue;
        };
        match tokio::time::timeout(ack_timeout, ack.into_future()).await {
            Ok(Ok(a)) => {
                p.stats.confirmed.fetch_add(1, Ordering::Relaxed);
                if a.duplicate {
                    p.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                p.stats.cursor.store(offset + 1, Ordering::Relaxed);
                first_confirmed = true;
                *failures = 0;
            }
            Ok(Err(e)) => {
                let why = match e.kind() {
                    PublishErrorKind::WrongLastMessageId => ErrorReason::OutOfOrder,
                    PublishErrorKind::TimedOut => ErrorReason::AckTimeout,
                    PublishErrorKind::BrokenPipe => ErrorReason::Publish,
                    _ => ErrorReason::Nack,
                };
                return Err(Failed(why, format!("offset {offset}: {e}")));
            }
            Err(_) => {
                return Err(Failed(
                    ErrorReason::AckTimeout,
                    format!(
                        "offset {offset}: no acknowledgment in {} ms",
                        s.nats_ack_timeout_ms
                    ),
                ));
            }
        }
        let c = p.stats.cursor.load(Ordering::Relaxed);
        if in_flight.is_empty() || c.saturating_sub(p.stored) >= window as u64 {
            store_cursor(p);
        }
    }
}
