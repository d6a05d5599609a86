//! The stream connection driver (tokio-uring): read → frame → push; acks back on the
//! acked listener only.
//!
//! Three listeners share it ([`Mode`]): raw lines one-way (`tcp_addr`), raw lines
//! with acks (`tcp_acked_addr`), syslog one-way (`syslog_addr`). One-way means the
//! server never writes to the connection: a producer that writes and closes without
//! reading (logger, nc, scripts, most forwarders' TCP outputs) would otherwise close
//! with unread acks in its receive buffer, which makes its kernel send a RST and drop
//! whatever it had not yet sent: the producer's tail would be lost.
//!
//! On every listener only a clean end of stream (a FIN: the socket is in CLOSE_WAIT)
//! makes a last line without `\n` a record; after a reset, an error, an idle timeout
//! or a shutdown the partial line is discarded and counted
//! (`tcp_partial_discarded_total`).
//!
//! Three tasks per connection (two when one-way), all on the reactor's thread:
//! - the reader: reads, frames complete lines into a batch, pushes it to the ring and
//!   hands the completion to the drainer (a bounded channel: `connection_batches_max`);
//! - the drainer: awaits completions in order and moves the connection's ack state;
//! - the ack writer: writes the latest cumulative ack whenever it moved. It is the only
//!   task that writes, so a client that never reads its acks stalls only this task,
//!   never ingest (acks coalesce meanwhile).

use std::cell::RefCell;

use super::driver::*;
use super::{
    acks::AckState,
    framing::{Enrichment, Framing, SyslogFraming, Target},
    lines::LineFramer,
};
use crate::{error::AppendError, wal::Completion};

/// Error lines queued for a client that is not reading are capped here; the rest are
/// counted and summarised.
const REJECTS_QUEUED_MAX: usize = 1024;

/// What a stream connection speaks, and whether anything is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Raw lines; nothing is ever written back (`tcp_addr`).
    OneWay,
    /// Raw lines; cumulative acks and error lines back (`tcp_acked_addr`).
    Acked,
    /// Syslog frames (RFC 6587) rendered to JSON records; nothing written back
    /// (`syslog_addr`).
    Syslog,
}

#[derive(Debug, Default)]
struct Shared {
    acks: RefCell<AckState>,
    /// Line numbers refused as too long, not yet reported.
    rejects: RefCell<Vec<u64>>,
    /// Refusals beyond REJECTS_QUEUED_MAX, reported as a count.
    rejects_dropped: Cell<u64>,
    /// A connection-level error: written last, then the connection closes.
    fatal: RefCell<Option<(&'static str, String)>>,
    /// The drainer has seen every completion: the ack writer may finish.
    drained: Cell<bool>,
    /// Wakes the ack writer.
    wake: tokio::sync::Notify,
}

impl Shared {
    /// A record refused as too long: counted, and queued for the ack writer to report
    /// (acked), or logged once per connection (one-way: nothing is written back).
    fn reject(&self, ctx: &NetCtx, mode: Mode, line: u64) {
        let counter = match mode {
            Mode::Syslog => &ctx.stats.syslog_frames_too_large_total,
            Mode::OneWay | Mode::Acked => &ctx.stats.tcp_records_too_large_total,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if mode != Mode::Acked {
            if self.rejects_dropped.replace(self.rejects_dropped.get() + 1) == 0 {
                tracing::warn!(
                    record = line,
                    "refused a record over its size bound on a one-way connection (not \
                     stored; the rest of this connection's refusals are counted, not logged)"
                );
            }
            return;
        }
        let mut r = self.rejects.borrow_mut();
        if r.len() < REJECTS_QUEUED_MAX {
            r.push(line);
        } else {
            self.rejects_dropped.set(self.rejects_dropped.get() + 1);
        }
        self.wake.notify_one();
    }

    fn set_fatal(&self, code: &'static str, detail: String) {
        let mut f = self.fatal.borrow_mut();
        if f.is_none() {
            *f = Some((code, detail));
        }
        self.wake.notify_one();
    }
}

/// A raw TCP client is told only three things: the disk is full, the server is
/// stopping, or the log failed (every other refusal, with its whole message); never
/// the server's paths (`data_dir` is taken out, see [`AppendError::detail`]).
fn fatal_of(e: &AppendError, data_dir: &std::path::Path) -> (&'static str, String) {
    match e {
        AppendError::DiskFull(_) | AppendError::Closed => (e.code(), e.detail(data_dir)),
        other => (
            "log_failed",
            crate::error::without_dir(&other.to_string(), data_dir),
        ),
    }
}

/// Serves one stream connection until EOF, error, idle timeout or shutdown.
pub async fn serve(
    stream: Stream,
    peer: SocketAddr,
    ctx: Arc<NetCtx>,
    registry: Rc<Registry>,
    mode: Mode,
    source: SourceGuard,
) {
    let fd = stream.as_raw_fd();
    let stream = Rc::new(stream);
    let guard = ConnGuard::new(registry, fd, ctx.clone(), false);
    let connections = match mode {
        Mode::Syslog => &ctx.stats.syslog_connections_total,
        Mode::OneWay | Mode::Acked => &ctx.stats.tcp_connections_total,
    };
    connections.fetch_add(1, Ordering::Relaxed);
    let shared = Rc::new(Shared::default());
    let last_activity = Rc::new(Cell::new(Instant::now()));
    {
        let shared = shared.clone();
        let idle_ms = ctx.settings.tcp_idle_timeout_ms;
        conn::spawn_stream_idle_watchdog(fd, &ctx, &last_activity, &guard, move || {
            shared.set_fatal("idle_timeout", format!("nothing received for {idle_ms} ms"));
        });
    }
    let (tx, rx) =
        tokio::sync::mpsc::channel::<(Completion, Instant)>(ctx.settings.connection_batches_max);
    let data_dir = ctx.log.config().dir.clone();
    let drainer = spawn_local(drain(rx, shared.clone(), fd, data_dir));
    let writer = (mode == Mode::Acked)
        .then(|| spawn_local(write_acks(stream.clone(), shared.clone(), ctx.clone())));

    let source = RefCell::new(source);
    let conn = Conn {
        stream: &stream,
        ctx: &ctx,
        shared: &shared,
        last_activity: &last_activity,
        mode,
        source: &source,
        hint: fd as u64,
    };
    if mode == Mode::Syslog {
        let enrich = ctx.json_policy.enrich.then(|| Enrichment {
            client_ip: peer.ip().to_string(),
            node_id: ctx.json_policy.node_id.clone(),
        });
        let framing = SyslogFraming::new(ctx.settings.syslog_frame_bytes_max, enrich, &ctx.stats);
        conn.read_loop(framing, tx).await;
    } else {
        conn.read_loop(LineFramer::new(ctx.settings.record_bytes_max), tx)
            .await;
    }

    let _ = drainer.await;
    // The client may never read its last ack: give it a bounded time, then cut.
    let grace = Duration::from_millis(
        ctx.settings
            .shutdown_timeout_ms
            .min(ctx.settings.tcp_idle_timeout_ms),
    );
    match writer {
        Some(writer) => {
            if tokio::time::timeout(grace, async {
                let _ = writer.await;
                stream.finish().await;
            })
            .await
            .is_err()
            {
                // SAFETY: the guard is alive, so fd is still this connection's socket.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
        }
        None => {
            // One-way: the producer is told nothing; the server's log says why.
            if let Some((code, detail)) = shared.fatal.borrow_mut().take() {
                tracing::info!(%peer, code, detail, "closed a one-way connection");
            }
            let _ = tokio::time::timeout(grace, stream.finish()).await;
        }
    }
    drop(guard);
}

/// The reading side of one connection.
struct Conn<'a> {
    stream: &'a Stream,
    ctx: &'a NetCtx,
    shared: &'a Shared,
    last_activity: &'a Cell<Instant>,
    mode: Mode,
    /// Its source's limits: a batch over them waits before it is pushed.
    source: &'a RefCell<SourceGuard>,
    /// Places its records without a partition key (`streams::Router::split`).
    hint: u64,
}

impl Conn<'_> {
    /// Reads, frames and pushes until EOF, a connection-level error or a refused push.
    async fn read_loop(
        &self,
        mut framer: impl Framing,
        tx: tokio::sync::mpsc::Sender<(Completion, Instant)>,
    ) {
        let (ctx, shared) = (self.ctx, self.shared);
        let s = &ctx.settings;
        let batch_max = super::batch_bytes_max(s);
        let mut buf: Vec<u8> = Vec::with_capacity(s.read_buffer_bytes);
        // Starts at two reads' worth and grows only under load, so idle connections stay small.
        let mut builder = BatchBuilder::new(2 * s.read_buffer_bytes, s.record_bytes_max);
        let mut reject = |line: u64| shared.reject(ctx, self.mode, line);
        loop {
            if shared.fatal.borrow().is_some() {
                return conn::discard_partial(self.ctx, &buf);
            }
            let Ok(n) = read_more(self.stream, &mut buf).await else {
                return conn::discard_partial(self.ctx, &buf); // a reset or an error
            };
            let eof = n == 0;
            if eof && ctx.shutting_down.load(Ordering::Relaxed) {
                // Stopped by the server, not by the client: a partial line is not a record.
                shared.set_fatal("shutting_down", "the server is shutting down".into());
                return conn::discard_partial(self.ctx, &buf);
            }
            if eof && !self.stream.ended_by_peer() {
                // Our own SHUT_RD (idle, a failed batch) or a reset whose error a
                // write already took: not the end the producer meant.
                return conn::discard_partial(self.ctx, &buf);
            }
            // The read's time: where its batches' ack delay starts (`tcp_ack_seconds`),
            // rate-limit waits included.
            let read_at = Instant::now();
            self.last_activity.set(read_at);
            let ts = wal::now_ns();
            let mut start = 0;
            loop {
                let mut to = Target::new(&mut builder, ts, batch_max, &mut reject);
                let f = framer.frame(&buf[start..], &mut to);
                start += f.consumed;
                if !f.batch_full {
                    break;
                }
                if !self.push(&mut builder, &tx, read_at).await {
                    return;
                }
            }
            if eof {
                let mut to = Target::new(&mut builder, ts, batch_max, &mut reject);
                framer.finish(&buf[start..], &mut to);
                start = buf.len();
            }
            if !builder.is_empty() && !self.push(&mut builder, &tx, read_at).await {
                return;
            }
            buf.drain(..start);
            if buf.capacity() > 4 * s.read_buffer_bytes && buf.len() < s.read_buffer_bytes {
                buf.shrink_to(s.read_buffer_bytes);
            }
            if eof {
                return;
            }
        }
    }

    /// Pushes the connection's batch; false if the connection must stop. The drainer
    /// gets its completion with `read_at`, the time of the read that completed it.
    async fn push(
        &self,
        builder: &mut BatchBuilder,
        tx: &tokio::sync::mpsc::Sender<(Completion, Instant)>,
        read_at: Instant,
    ) -> bool {
        let (ctx, shared) = (self.ctx, self.shared);
        let (frames, records) = builder.take();
        let bytes = super::limits::payload_bytes(frames.len(), records);
        super::limits::pace(self.source, self.last_activity, u64::from(records), bytes).await;
        let dest = match self.mode {
            Mode::OneWay => ctx.dests.tcp,
            Mode::Acked => ctx.dests.tcp_acked,
            Mode::Syslog => ctx.dests.syslog,
        };
        match conn::push_batch(ctx, dest, self.hint, frames, records, None).await {
            Ok(c) => {
                let counter = match self.mode {
                    Mode::Syslog => &ctx.stats.syslog_records_total,
                    Mode::OneWay | Mode::Acked => &ctx.stats.tcp_records_total,
                };
                counter.fetch_add(u64::from(records), Ordering::Relaxed);
                tx.send((c, read_at)).await.is_ok()
            }
            Err(PushFail::Refused(e)) => {
                let (code, detail) = fatal_of(&e, &ctx.log.config().dir);
                shared.set_fatal(code, detail);
                false
            }
            Err(PushFail::TimedOut) => unreachable!("no deadline given"),
        }
    }
}

/// Reads into the spare capacity of `buf` (growing it when full); 0 at EOF.
pub(super) async fn read_more(stream: &Stream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.len() == buf.capacity() {
        // Only a partial line fills the buffer; the framer refuses one longer than
        // record_bytes_max, so this growth is bounded by that.
        buf.reserve(buf.capacity());
    }
    // The buffer itself goes to the kernel and comes back: `take` leaves an empty Vec,
    // which does not allocate.
    let (res, back) = stream.read_spare(std::mem::take(buf)).await;
    *buf = back;
    res
}

/// Awaits the connection's completions in order and moves its ack state.
///
/// Every batch handed to the log is awaited and, if durable, acknowledged, even after a
/// connection-level error such as a shutdown or an idle timeout: a stored record the
/// client was never told about would be sent again. Only once a batch itself has failed
/// are later ones left unacknowledged (an ack means "all before it", and the failed
/// batch breaks that), which makes delivery at-least-once across such a failure.
/// `data_dir` is taken out of the error line's paths.
async fn drain(
    mut rx: tokio::sync::mpsc::Receiver<(Completion, Instant)>,
    shared: Rc<Shared>,
    fd: i32,
    data_dir: std::path::PathBuf,
) {
    let mut failed = false;
    while let Some((c, read_at)) = rx.recv().await {
        if failed {
            continue;
        }
        match c.await {
            Ok(done) => {
                shared.acks.borrow_mut().committed(done, read_at);
                shared.wake.notify_one();
            }
            Err(e) => {
                failed = true;
                let (code, detail) = fatal_of(&e, &data_dir);
                shared.set_fatal(code, detail);
                // Stop the reader: its pending read returns 0.
                // SAFETY: the connection (and so fd) outlives this task: serve() awaits it.
                unsafe { libc::shutdown(fd, libc::SHUT_RD) };
            }
        }
    }
    shared.drained.set(true);
    shared.wake.notify_one();
}

/// Writes acks and error lines; the only writer on the socket.
async fn write_acks(stream: Rc<Stream>, shared: Rc<Shared>, ctx: Arc<NetCtx>) {
    let mut out: Vec<u8> = Vec::with_capacity(256);
    let max = ctx.settings.record_bytes_max;
    loop {
        out.clear();
        for line in shared.rejects.borrow_mut().drain(..) {
            use std::io::Write;
            let _ = writeln!(
                out,
                "error {line} record_too_large the line exceeds record_bytes_max ({max} bytes) and was not stored"
            );
        }
        let dropped = shared.rejects_dropped.replace(0);
        if dropped > 0 {
            use std::io::Write;
            let _ = writeln!(
                out,
                "error - record_too_large {dropped} more lines refused (not listed)"
            );
        }
        // An ack moved: its delay is counted from the oldest batch it covers.
        let since = shared.acks.borrow_mut().take_ack(&mut out);
        // A connection-level error goes out last, after the final ack.
        let finished = shared.drained.get();
        let fatal = if finished {
            shared.fatal.borrow_mut().take()
        } else {
            None
        };
        if let Some((code, detail)) = &fatal {
            use std::io::Write;
            let _ = writeln!(out, "error - {code} {detail}");
        }
        if !out.is_empty() {
            let (res, back) = stream.write_all(std::mem::take(&mut out)).await;
            out = back;
            if res.is_err() {
                return;
            }
            if let Some(t) = since {
                ctx.observed
                    .tcp_acks
                    .record_ns(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
        }
        if fatal.is_some() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if finished {
            return;
        }
        shared.wake.notified().await;
    }
}
