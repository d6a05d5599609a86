//! A worker thread: one `mio` poll loop over its connections and a [`Timer`] for the
//! open-loop schedule; each connection advances through [`State`]: sending,
//! draining, closing, done. Completions are recorded here, in the worker's own
//! [`Stats`] (merged after the run), so the hot path shares nothing but two relaxed
//! progress counters; once a second the worker's [`SecondRecorder`] sends the second
//! it has left to the main thread for the time series.

use std::{
    io,
    net::Shutdown,
    ops::ControlFlow,
    os::fd::{AsFd, AsRawFd},
    sync::atomic::Ordering,
    time::Duration,
};

use mio::{Events, Interest, Poll, Token, unix::SourceFd};

use super::{Completion, Conn, EngineConfig, Progress, State, Times};
use crate::{
    clock::{Timer, mono_ns},
    series::SecondRecorder,
    stats::{Stats, record_ns},
    workload::Corpus,
};

/// Unexpected server lines a worker shows on stderr; the rest are only counted.
pub(super) const BAD_LINES_SHOWN_MAX: u32 = 3;

/// The poll token of the worker's [`Timer`] (connections use their local index).
const TIMER: Token = Token(usize::MAX);

/// One worker's view of the run; lives on that worker's thread only.
pub(super) struct Worker<'a> {
    pub(super) cfg: &'a EngineConfig,
    pub(super) corpus: &'a Corpus,
    pub(super) progress: &'a Progress,
    pub(super) times: Times,
    pub(super) completion: Completion,
    pub(super) stats: Stats,
    /// This second's counters and latencies for the run's time series; completions
    /// record their corrected latency there, and it adds each second into
    /// `stats.latency_us` when it ships it.
    pub(super) series: SecondRecorder,
    /// Unexpected server lines shown on stderr so far (see [`BAD_LINES_SHOWN_MAX`]).
    pub(super) bad_lines_shown: u32,
    /// TLS errors shown on stderr so far (as many as bad lines at most).
    pub(super) tls_errors_shown: u32,
}

impl<'a> Worker<'a> {
    pub(super) fn new(
        cfg: &'a EngineConfig,
        corpus: &'a Corpus,
        progress: &'a Progress,
        times: Times,
        completion: Completion,
        series: SecondRecorder,
    ) -> Self {
        Worker {
            cfg,
            corpus,
            progress,
            times,
            completion,
            stats: Stats::default(),
            series,
            bad_lines_shown: 0,
            tls_errors_shown: 0,
        }
    }
}

impl Worker<'_> {
    /// Counts an error of `kind`.
    pub(super) fn err(&mut self, kind: &str) {
        self.stats.error(kind);
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Shows a TLS error on stderr (the first few): a `tls_error` count alone cannot
    /// tell an untrusted certificate from a refused client certificate.
    pub(super) fn show_tls_error(&mut self, conn: usize, stage: &str, e: &io::Error) {
        if self.tls_errors_shown < BAD_LINES_SHOWN_MAX {
            self.tls_errors_shown += 1;
            eprintln!("loadtest: connection {conn}: TLS {stage}: {e}");
        }
    }

    /// Completes the oldest batch of `c` at `now`, successfully or not, and records
    /// its latencies if it was sent after the warm-up.
    pub(super) fn complete_front(&mut self, c: &mut Conn, now: u64, ok: bool) {
        let Some(p) = c.pending.pop_front() else {
            return;
        };
        let n = u64::from(p.records);
        if ok {
            // Records the server refused inside a completed batch are failures; their
            // bytes are estimated from the batch's mean record size.
            let refused = u64::from(p.refused.min(p.records));
            let ok_n = n - refused;
            let ok_bytes = u64::from(p.bytes) * ok_n / n.max(1);
            self.stats.failed_records_total += refused;
            self.stats.completed_records_total += ok_n;
            self.stats.bytes_total += ok_bytes;
            // Relaxed: a progress counter, read for display only.
            self.progress.records.fetch_add(ok_n, Ordering::Relaxed);
            if p.measured {
                self.series.completed(
                    now,
                    ok_n,
                    ok_bytes,
                    now.saturating_sub(p.intended_ns),
                    &mut self.stats.latency_us,
                );
                record_ns(&mut self.stats.service_us, now.saturating_sub(p.sent_ns));
                self.stats.records += ok_n;
                self.stats.bytes += ok_bytes;
                self.stats.batches += 1;
                self.stats.last_completion_ns = self.stats.last_completion_ns.max(now);
            }
        } else {
            self.stats.failed_records_total += n;
        }
    }

    /// Drives `conns` until every one of them is done.
    ///
    /// # Errors
    /// The poll loop or its timer could not be set up, or polling failed.
    pub(super) fn run(&mut self, conns: &mut [Conn]) -> io::Result<()> {
        let mut poll = Poll::new()?;
        let mut timer = Timer::new()?;
        poll.registry().register(
            &mut SourceFd(&timer.as_fd().as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        for c in conns.iter_mut() {
            if let Some(s) = c.sock.as_mut() {
                poll.registry()
                    .register(s, c.token, Interest::READABLE | Interest::WRITABLE)?;
            }
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let now = mono_ns();
            if now >= self.times.measure {
                // An idle worker still ships its seconds (the poll wakes at least
                // every 200 ms), so the main thread can summarise them.
                self.series.tick(now, &mut self.stats.latency_us);
            }
            let mut wake = u64::MAX;
            let mut all_done = true;
            for c in conns.iter_mut() {
                if let Some(t) = self.step(c, &poll, now) {
                    wake = wake.min(t);
                }
                all_done &= c.state == State::Done;
            }
            if all_done {
                return Ok(());
            }
            let timeout = if wake <= now {
                Some(Duration::ZERO)
            } else {
                if wake != u64::MAX {
                    timer.arm(wake);
                }
                Some(Duration::from_millis(200))
            };
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = mono_ns();
            for ev in events.iter() {
                if ev.token() == TIMER {
                    timer.drain();
                    continue;
                }
                let c = &mut conns[ev.token().0];
                if ev.is_writable() {
                    c.writable = true;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.on_readable(c, &poll, now);
                }
            }
        }
    }

    /// Advances one connection; returns when it next needs waking up by time.
    fn step(&mut self, c: &mut Conn, poll: &Poll, now: u64) -> Option<u64> {
        if c.state == State::Done {
            return None;
        }
        if c.sock.is_none()
            && let ControlFlow::Break(wake) = self.revive(c, poll, now)
        {
            return wake;
        }
        match self.send_rounds(c, poll, now) {
            ControlFlow::Continue(wake) => self.wind_down(c, poll, now, wake),
            ControlFlow::Break(wake) => wake,
        }
    }

    /// A connection without a socket: reconnects when it is time, or gives up.
    /// `Break(wake)` when it still has no socket (`wake`: when to try again).
    fn revive(&mut self, c: &mut Conn, poll: &Poll, now: u64) -> ControlFlow<Option<u64>> {
        // Give up on a server that stays unreachable for the drain timeout, or once
        // the run's time is over: a count-mode run must end too.
        let gone_too_long = c
            .lost_since
            .is_some_and(|t| now - t > self.cfg.drain_timeout.as_nanos() as u64);
        if gone_too_long || self.times.send_end.is_some_and(|end| now >= end) {
            if gone_too_long {
                self.err("gave_up_reconnecting");
            }
            c.state = State::Done;
            return ControlFlow::Break(None);
        }
        match c.reconnect_at {
            Some(t) if t <= now => self.reconnect(c, poll, now),
            Some(t) => return ControlFlow::Break(Some(t)),
            None => {
                c.state = State::Done;
                return ControlFlow::Break(None);
            }
        }
        if c.sock.is_none() {
            return ControlFlow::Break(c.reconnect_at);
        }
        ControlFlow::Continue(())
    }

    /// After sending: a draining connection half-closes once everything completed
    /// (or gives up at its deadline), a closing one waits for the server's EOF until
    /// its deadline. Returns when to wake the connection next (`wake` while sending).
    fn wind_down(&mut self, c: &mut Conn, poll: &Poll, now: u64, wake: Option<u64>) -> Option<u64> {
        match c.state {
            State::Draining { deadline } => {
                let tls_unsent = c.tls.as_ref().is_some_and(|t| t.wants_write());
                if c.pending.is_empty() && c.wbuf.is_empty() && !tls_unsent {
                    if self.cfg.mode.is_http() {
                        self.drop_socket(c, poll, now, None);
                        c.state = State::Done;
                        return None;
                    }
                    // Half-close: ringstash answers with its final ack and closes;
                    // other receivers close too. Over TLS the half-close is
                    // close_notify (the server takes it as the end), then the TCP
                    // one if the alert went out at once; if not, `flush` sends it
                    // on the next writable event.
                    c.state = State::Closing { deadline };
                    if let Some(tls) = c.tls.as_mut() {
                        tls.send_close_notify();
                        if !self.flush(c, poll, now) {
                            return None;
                        }
                        if c.tls.as_ref().is_some_and(|t| t.wants_write()) {
                            return Some(deadline);
                        }
                    }
                    let sock = c.sock.as_ref().expect("checked above");
                    let _ = sock.shutdown(Shutdown::Write);
                    return Some(deadline);
                }
                if now >= deadline {
                    let n = c.pending.len() as u64;
                    for _ in 0..n {
                        self.err("drain_timeout");
                    }
                    self.drop_socket(c, poll, now, None);
                    c.state = State::Done;
                    return None;
                }
                Some(deadline)
            }
            State::Closing { deadline } => {
                if now >= deadline {
                    self.drop_socket(c, poll, now, None);
                    c.state = State::Done;
                    return None;
                }
                Some(deadline)
            }
            _ => wake,
        }
    }
}
