//! The RELP connection driver (tokio-uring): read → parse → render → push, and every
//! command answered in TXNR order, a `syslog` only once its record is durable.
//!
//! RELP (`docs/protocol.md`, "RELP") is what rsyslog's `omrelp` forwards with: each
//! message is a command the server answers, and the client keeps every unanswered one
//! to send again after a reconnect. So an answer `200 OK` here means exactly what an
//! ack means on `tcp_acked_addr`: the record is on disk (fdatasync'ed), and a crash
//! after it loses nothing; a crash before it makes the client resend (at-least-once).
//!
//! Two tasks per connection, both on the reactor's thread:
//! - the reader: reads, parses frames ([`crate::syslog::relp`]), renders each
//!   message into the connection's batch with the syslog listener's renderer
//!   ([`SyslogRenderer`]: same records, same enrichment), pushes one batch per read
//!   (no allocation per record), and hands the answerer, in order, what is owed: a
//!   batch's [`Completion`] with the run of TXNRs it holds, or a reply that needs
//!   nothing durable (the answer to `open`, to `close`, a refusal);
//! - the answerer: awaits each completion in order and writes `TXNR rsp 6 200 OK` for
//!   every TXNR of the batch, and the replies in their place, coalescing what is ready
//!   into one write. It is the only task that writes to the socket.
//!
//! The window: a connection with `relp_window_max` transactions unanswered stops
//! reading until answers go out, so the kernel's TCP window pushes back on a client
//! that ignores its own RELP window (omrelp's is 128).
//!
//! Endings: after `close` its `200 OK` is the last thing written. A refusal is answered
//! `rsp 500 <reason>` and followed by the `serverclose` hint. When the server ends the
//! session (idle timeout, shutdown, a failed batch) the answers owed for durable
//! records go out first, then `serverclose`. Messages of a batch that failed are never
//! answered: the client sends them again on its next connection.

use tokio::sync::mpsc;

use super::driver::*;
use super::{
    framing::{Enrichment, SyslogRenderer},
    tcp::read_more,
};
use crate::{
    syslog::relp::{self, FrameError, Parsed, Session, Step},
    wal::{Completion, format::RECORD_HEADER_BYTES},
};

/// Answers the answerer gathers into one write at most (it writes sooner when the
/// next answer is not ready yet).
const WRITE_BYTES_MAX: usize = 64 << 10;

/// What the answerer owes the client, in the order the reader found it.
#[derive(Debug)]
enum Answer {
    /// `count` syslog messages with consecutive TXNRs from `first`, in one batch:
    /// each answered `200 OK` once the batch is durable.
    Stored {
        completion: Completion,
        first: u32,
        count: u32,
    },
    /// Bytes that need nothing durable, answering `answers` transactions (the reply
    /// to `open`, or a `500` for a message refused as too large).
    Reply { bytes: Vec<u8>, answers: usize },
    /// The last bytes of the connection: the answer to `close`, or a refusal with the
    /// `serverclose` hint.
    Last(Vec<u8>),
}

impl Answer {
    /// True if answering it needs no waiting.
    fn ready(&self) -> bool {
        match self {
            Answer::Stored { completion, .. } => completion.try_result().is_some(),
            Answer::Reply { .. } | Answer::Last(_) => true,
        }
    }
}

/// Why the reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client ended the stream (a FIN, a reset, an error): nothing more to say
    /// beyond the answers owed.
    Client,
    /// The server ends the session (idle, shutdown, a refused or failed batch): the
    /// answers owed, then `serverclose`.
    Server,
    /// An [`Answer::Last`] was queued: the answerer closes after it.
    Answered,
}

/// What the reader and the answerer share; on the reactor's thread only.
#[derive(Debug, Default)]
struct Shared {
    /// Transactions read and not yet answered (bounded by `relp_window_max`).
    unanswered: Cell<usize>,
    /// The session must end: the idle timeout fired, a batch failed, the socket failed.
    stop: Cell<bool>,
    /// Wakes a reader waiting for the window or for `stop`.
    wake: tokio::sync::Notify,
}

impl Shared {
    fn stop(&self) {
        self.stop.set(true);
        self.wake.notify_one();
    }
}

/// Serves one RELP connection until `close`, EOF, a refusal, idle timeout or shutdown.
pub async fn serve(
    stream: Stream,
    peer: SocketAddr,
    ctx: Arc<NetCtx>,
    registry: Rc<Registry>,
    source: SourceGuard,
) {
    let fd = stream.as_raw_fd();
    let stream = Rc::new(stream);
    let guard = ConnGuard::new(registry, fd, ctx.clone(), false);
    ctx.stats
        .relp_connections_total
        .fetch_add(1, Ordering::Relaxed);
    let shared = Rc::new(Shared::default());
    let last_activity = Rc::new(Cell::new(Instant::now()));
    {
        let shared = shared.clone();
        conn::spawn_stream_idle_watchdog(fd, &ctx, &last_activity, &guard, move || shared.stop());
    }
    let (tx, rx) = mpsc::channel::<Answer>(ctx.settings.connection_batches_max);
    let answerer = spawn_local(answer(stream.clone(), rx, shared.clone(), fd));
    let enrich = ctx.json_policy.enrich.then(|| Enrichment {
        client_ip: peer.ip().to_string(),
        node_id: ctx.json_policy.node_id.clone(),
    });
    let source = std::cell::RefCell::new(source);
    let reader = Reader {
        stream: &stream,
        ctx: &ctx,
        shared: &shared,
        last_activity: &last_activity,
        source: &source,
        hint: fd as u64,
    };
    let end = reader.read_loop(tx, enrich).await;

    // The answers owed go out first; a client that does not read them gets a bounded
    // time, then is cut.
    let grace = Duration::from_millis(
        ctx.settings
            .shutdown_timeout_ms
            .min(ctx.settings.tcp_idle_timeout_ms),
    );
    let closed = match tokio::time::timeout(grace, answerer).await {
        Ok(Ok(closed)) => closed,
        Ok(Err(_)) | Err(_) => true,
    };
    if !closed && (end == End::Server || shared.stop.get()) {
        let hint = stream.write_all(relp::SERVERCLOSE.to_vec());
        let _ = tokio::time::timeout(grace, hint).await;
    }
    let _ = tokio::time::timeout(grace, stream.finish()).await;
    // SAFETY: the guard is alive, so fd is still this connection's socket.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    drop(guard);
}

/// The reading side of one connection.
struct Reader<'a> {
    stream: &'a Stream,
    ctx: &'a NetCtx,
    shared: &'a Shared,
    last_activity: &'a Cell<Instant>,
    /// Its source's limits: a batch over them waits before it is pushed.
    source: &'a std::cell::RefCell<SourceGuard>,
    /// Places its records without a partition key (`streams::Router::split`).
    hint: u64,
}

/// The batch being built and the run of TXNRs its records answer.
struct Pending {
    builder: BatchBuilder,
    /// TXNR of the batch's first record.
    first: u32,
}

/// One connection's protocol state: its session, its renderer and the batch being built.
struct Decoder<'a> {
    session: Session,
    renderer: SyslogRenderer<'a>,
    pending: Pending,
}

impl Reader<'_> {
    /// Reads, parses, renders and pushes until the session ends; returns why.
    async fn read_loop(&self, tx: mpsc::Sender<Answer>, enrich: Option<Enrichment>) -> End {
        let (ctx, shared) = (self.ctx, self.shared);
        let s = &ctx.settings;
        let mut buf: Vec<u8> = Vec::with_capacity(s.read_buffer_bytes);
        let mut decoder = Decoder {
            session: Session::new(),
            renderer: SyslogRenderer::new(enrich, &ctx.stats),
            // Starts at two reads' worth and grows only under load, as on TCP.
            pending: Pending {
                builder: BatchBuilder::new(2 * s.read_buffer_bytes, s.record_bytes_max),
                first: 0,
            },
        };
        loop {
            if shared.unanswered.get() >= s.relp_window_max && !shared.stop.get() {
                ctx.stats
                    .relp_window_full_waits_total
                    .fetch_add(1, Ordering::Relaxed);
                while shared.unanswered.get() >= s.relp_window_max && !shared.stop.get() {
                    shared.wake.notified().await;
                }
            }
            if shared.stop.get() {
                conn::discard_partial(self.ctx, &buf);
                return End::Server;
            }
            let Ok(n) = read_more(self.stream, &mut buf).await else {
                conn::discard_partial(self.ctx, &buf); // a reset or an error
                return End::Client;
            };
            if n == 0 {
                // An incomplete frame is never answered, so the client still holds it.
                conn::discard_partial(self.ctx, &buf);
                let ours = shared.stop.get() || ctx.shutting_down.load(Ordering::Relaxed);
                let fin = self.stream.ended_by_peer();
                return if ours && !fin {
                    End::Server
                } else {
                    End::Client
                };
            }
            self.last_activity.set(Instant::now());
            let (consumed, last) = match self.frames(&buf, &mut decoder, &tx).await {
                Ok(done) => done,
                Err(end) => return end,
            };
            if !self.push(&mut decoder.pending, &tx).await {
                return End::Server;
            }
            if let Some(last) = last {
                let _ = tx.send(last).await;
                return End::Answered;
            }
            buf.drain(..consumed);
            if buf.capacity() > 4 * s.read_buffer_bytes && buf.len() < s.read_buffer_bytes {
                buf.shrink_to(s.read_buffer_bytes);
            }
        }
    }

    /// Takes the complete frames at the start of `input` (one read's worth): renders
    /// each message into the batch, pushing it when full, and queues the other answers
    /// in their place. Returns the bytes consumed (the rest is an incomplete frame)
    /// and the session's last answer if a frame ended it (`close`, a refusal).
    ///
    /// # Errors
    /// The [`End`] when the connection must stop now (the log refused a batch, or the
    /// answerer is gone).
    async fn frames(
        &self,
        input: &[u8],
        d: &mut Decoder<'_>,
        tx: &mpsc::Sender<Answer>,
    ) -> Result<(usize, Option<Answer>), End> {
        let (ctx, shared) = (self.ctx, self.shared);
        let s = &ctx.settings;
        let ts = wal::now_ns(); // one timestamp per read
        let mut start = 0;
        loop {
            if shared.stop.get() {
                // The session is ending (a failed batch, the idle timeout): nothing read
                // after this is stored, since it would never be answered and the client
                // would send it again.
                return Err(End::Server);
            }
            let frame = match relp::parse(&input[start..], s.relp_frame_bytes_max) {
                Ok(Parsed::Incomplete) => return Ok((start, None)),
                Ok(Parsed::Frame(frame, n)) => {
                    start += n;
                    frame
                }
                Err(e) => return Ok((start, Some(self.refuse_frame(&e)))),
            };
            let step = match d.session.step(frame) {
                Ok(step) => step,
                Err(e) => {
                    ctx.stats
                        .relp_protocol_errors_total
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok((start, Some(refusal(e.txnr(), &e.to_string()))));
                }
            };
            let reply = match step {
                Step::Hint => continue,
                Step::Syslog { txnr, message } => {
                    shared.unanswered.set(shared.unanswered.get() + 1);
                    match self.store(txnr, message, ts, d, tx).await? {
                        None => continue,
                        Some(refused) => refused,
                    }
                }
                Step::Open { txnr } => {
                    shared.unanswered.set(shared.unanswered.get() + 1);
                    let mut bytes = Vec::new();
                    relp::write_open_ok(&mut bytes, txnr);
                    Answer::Reply { bytes, answers: 1 }
                }
                Step::Close { txnr } => {
                    let mut bytes = Vec::new();
                    relp::write_ok(&mut bytes, txnr);
                    return Ok((start, Some(Answer::Last(bytes))));
                }
            };
            // In its place among the answers: after the records read before it.
            if !self.push(&mut d.pending, tx).await || tx.send(reply).await.is_err() {
                return Err(End::Server);
            }
        }
    }

    /// Renders one `syslog` message into the connection's batch (pushing the batch
    /// first if it is full). `Some(rsp 500)` when the rendered record is over
    /// `record_bytes_max`: that message alone is refused, and the session goes on.
    ///
    /// # Errors
    /// [`End::Server`] when a full batch could not be pushed.
    async fn store(
        &self,
        txnr: u32,
        message: &[u8],
        ts: u64,
        d: &mut Decoder<'_>,
        tx: &mpsc::Sender<Answer>,
    ) -> Result<Option<Answer>, End> {
        let s = &self.ctx.settings;
        let batch_max = super::batch_bytes_max(s);
        let record = d.renderer.render(message, ts);
        let b = &d.pending.builder;
        // A batch holds what one read brought, up to batch_max.
        let full = !b.is_empty() && b.bytes() + RECORD_HEADER_BYTES + record.len() > batch_max;
        if full && !self.push(&mut d.pending, tx).await {
            return Err(End::Server);
        }
        if d.pending.builder.is_empty() {
            d.pending.first = txnr;
        }
        if d.pending.builder.push(ts, record).is_ok() {
            return Ok(None);
        }
        self.ctx
            .stats
            .relp_frames_too_large_total
            .fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::new();
        let why = format!(
            "record too large: rendered over record_bytes_max {}",
            s.record_bytes_max
        );
        relp::write_rsp(&mut bytes, txnr, 500, &why, b"");
        Ok(Some(Answer::Reply { bytes, answers: 1 }))
    }

    /// The answer to a frame that cannot be parsed: counted, `rsp 500` with its TXNR
    /// (0 when even that could not be read), then `serverclose`.
    fn refuse_frame(&self, e: &FrameError) -> Answer {
        let counter = match e {
            FrameError::TooLarge { .. } => &self.ctx.stats.relp_frames_too_large_total,
            _ => &self.ctx.stats.relp_protocol_errors_total,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        refusal(e.txnr().unwrap_or(0), &e.to_string())
    }

    /// Pushes the batch being built, if any, and hands its completion to the
    /// answerer; false if the connection must stop (the log refused it, or the
    /// answerer is gone).
    async fn push(&self, pending: &mut Pending, tx: &mpsc::Sender<Answer>) -> bool {
        if pending.builder.is_empty() {
            return true;
        }
        let ctx = self.ctx;
        let (frames, records) = pending.builder.take();
        let bytes = super::limits::payload_bytes(frames.len(), records);
        super::limits::pace(self.source, self.last_activity, u64::from(records), bytes).await;
        match conn::push_batch(ctx, ctx.dests.relp, self.hint, frames, records, None).await {
            Ok(completion) => {
                ctx.stats
                    .relp_records_total
                    .fetch_add(u64::from(records), Ordering::Relaxed);
                let answer = Answer::Stored {
                    completion,
                    first: pending.first,
                    count: records,
                };
                tx.send(answer).await.is_ok()
            }
            Err(PushFail::Refused(e)) => {
                // Not answered, so the client sends them again elsewhere or later. (A batch
                // split over partitions may have had parts stored before this one was
                // refused: those are then stored twice, at least once.)
                tracing::info!(error = %e, "a RELP batch was refused by the log; ending the session");
                self.shared.stop();
                false
            }
            Err(PushFail::TimedOut) => unreachable!("no deadline given"),
        }
    }
}

/// What [`write_answer`] did with one answer.
enum Written {
    /// Wrote this many answers into the buffer.
    Answers(usize),
    /// Wrote the connection's last bytes.
    Last,
    /// The batch failed: nothing was written, and nothing after it may be.
    Failed,
}

/// Awaits `a` (a batch's durability) and writes what it answers into `out`.
async fn write_answer(a: Answer, out: &mut Vec<u8>, shared: &Shared, fd: i32) -> Written {
    match a {
        Answer::Stored {
            completion,
            first,
            count,
        } => match completion.await {
            Ok(_) => {
                let mut txnr = first;
                for _ in 0..count {
                    relp::write_ok(out, txnr);
                    txnr = relp::next_txnr(txnr);
                }
                Written::Answers(count as usize)
            }
            Err(e) => {
                tracing::warn!(error = %e, "a RELP batch failed; its messages are not answered");
                shared.stop();
                // Stop the reader: its pending read returns 0.
                // SAFETY: the connection (and so fd) outlives this task: serve() awaits it.
                unsafe { libc::shutdown(fd, libc::SHUT_RD) };
                Written::Failed
            }
        },
        Answer::Reply { bytes, answers } => {
            out.extend_from_slice(&bytes);
            Written::Answers(answers)
        }
        Answer::Last(bytes) => {
            out.extend_from_slice(&bytes);
            Written::Last
        }
    }
}

/// `rsp 500 <why>` for `txnr`, then the `serverclose` hint: the connection's last bytes.
fn refusal(txnr: u32, why: &str) -> Answer {
    let mut bytes = Vec::new();
    relp::write_rsp(&mut bytes, txnr, 500, why, b"");
    bytes.extend_from_slice(relp::SERVERCLOSE);
    Answer::Last(bytes)
}

/// Writes the answers in order; the only writer on the socket. Returns true if it
/// wrote the connection's last bytes (or the socket failed): nothing may follow.
///
/// Once a batch has failed nothing after it is answered, even batches that became
/// durable: RELP answers each command, but a client (librelp) that sees its oldest
/// transactions unanswered resends from there anyway, and stopping at the first gap
/// keeps "answered" meaning "stored" without exception.
async fn answer(
    stream: Rc<Stream>,
    mut rx: mpsc::Receiver<Answer>,
    shared: Rc<Shared>,
    fd: i32,
) -> bool {
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut held: Option<Answer> = None;
    let mut failed = false;
    loop {
        let next = match held.take() {
            Some(a) => a,
            None => match rx.recv().await {
                Some(a) => a,
                None => return false,
            },
        };
        let (mut answered, mut last) = (0usize, false);
        let mut item = Some(next);
        while let Some(a) = item.take() {
            match write_answer(a, &mut out, &shared, fd).await {
                Written::Answers(n) => answered += n,
                Written::Last => {
                    last = true;
                    break;
                }
                Written::Failed => {
                    failed = true;
                    break;
                }
            }
            // Gather what is ready into the same write.
            if out.len() < WRITE_BYTES_MAX
                && let Ok(a) = rx.try_recv()
            {
                if a.ready() {
                    item = Some(a);
                } else {
                    held = Some(a);
                }
            }
        }
        if !out.is_empty() {
            let (res, back) = stream.write_all(std::mem::take(&mut out)).await;
            out = back;
            out.clear();
            if res.is_err() {
                shared.stop();
                return true;
            }
        }
        shared
            .unanswered
            .set(shared.unanswered.get().saturating_sub(answered));
        shared.wake.notify_one();
        if last {
            return true;
        }
        if failed {
            // Nothing after a failed batch is answered; the reader is stopping.
            drop(held);
            while rx.recv().await.is_some() {}
            return false;
        }
    }
}
