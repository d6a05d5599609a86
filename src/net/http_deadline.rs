//! The clock of one HTTP connection: idle between requests, a deadline for the whole
//! request head, a minimum rate for the body.
//!
//! Why three: an idle timer restarts on every byte, so a head or a body trickled a
//! byte at a time (slowloris) is never cut by it and holds its connection slot for
//! ever. The head therefore has a deadline from its first byte
//! (`http_head_timeout_ms`), and the body must keep `http_body_rate_bytes_per_s_min`
//! over each `http_body_rate_window_ms`; the idle timeout still cuts silence.
//!
//! One watchdog task per connection owns the clock; the connection only says what it
//! waits for ([`Phase`]) and records what it reads. When a deadline passes mid-request
//! the watchdog records why ([`Cut`]) and shuts the socket's reading side, which
//! completes the connection's pending read with EOF (nothing is cancelled; see
//! [`super::reactor`]); the connection then answers 408 itself and closes. One that
//! does not get its answer out within `http_idle_timeout_ms` more is shut both ways.

use std::{
    cell::Cell,
    os::fd::RawFd,
    rc::Rc,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use super::NetCtx;
use crate::http_proto::HttpError;

/// What the connection is waiting for, which decides its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests with nothing buffered: only the idle timeout applies.
    Idle,
    /// A request head whose first byte arrived at `since`.
    Head {
        /// When its first byte arrived.
        since: Instant,
    },
    /// A request body, measured in windows: the current one began at `since`, when
    /// the connection had read `read_at` bytes in all and the body had `left` bytes to
    /// come (`None`: chunked, unknown).
    Body {
        /// When the current window began.
        since: Instant,
        /// `Clock::bytes_read` then.
        read_at: u64,
        /// Bytes of the body still to come then, if known.
        left: Option<u64>,
    },
    /// Handling a request (storing it, answering it): only the idle timeout applies,
    /// which cuts a client that stopped reading its response.
    Busy,
}

/// Why the watchdog cut a request short; the connection answers it with 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The head was not complete within `http_head_timeout_ms`.
    HeadTimeout,
    /// The body arrived slower than `http_body_rate_bytes_per_s_min`.
    BodyTooSlow,
    /// Nothing arrived for `http_idle_timeout_ms` in the middle of a request.
    IdleMidRequest,
}

impl Cut {
    /// The 408 the client is sent, naming the setting it ran into.
    pub fn error(self, limits: &Limits) -> HttpError {
        let detail = match self {
            Cut::HeadTimeout => format!(
                "the request head was not complete within http_head_timeout_ms ({} ms)",
                limits.head.as_millis()
            ),
            Cut::BodyTooSlow => format!(
                "the request body arrived slower than http_body_rate_bytes_per_s_min ({} bytes/s over {} ms)",
                limits.body_rate_bytes_per_s_min,
                limits.body_window.as_millis()
            ),
            Cut::IdleMidRequest => format!(
                "nothing arrived for http_idle_timeout_ms ({} ms) in the middle of the request",
                limits.idle.as_millis()
            ),
        };
        HttpError::new(408, "request_timeout", detail)
    }
}

/// The settings the clock applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `http_idle_timeout_ms`.
    pub idle: Duration,
    /// `http_head_timeout_ms`.
    pub head: Duration,
    /// `http_body_rate_bytes_per_s_min`.
    pub body_rate_bytes_per_s_min: u64,
    /// `http_body_rate_window_ms`.
    pub body_window: Duration,
}

impl Limits {
    /// The clock's settings out of the ingest stage's.
    pub fn of(ctx: &NetCtx) -> Self {
        let s = &ctx.settings;
        Limits {
            idle: Duration::from_millis(s.http_idle_timeout_ms),
            head: Duration::from_millis(s.http_head_timeout_ms),
            body_rate_bytes_per_s_min: s.http_body_rate_bytes_per_s_min,
            body_window: Duration::from_millis(s.http_body_rate_window_ms),
        }
    }

    /// Bytes a body window must bring, when `left` bytes of the body were to come at
    /// its start: the rate's share of the window, or what is left if that is less.
    fn window_bytes_min(&self, left: Option<u64>) -> u64 {
        let by_rate = (u128::from(self.body_rate_bytes_per_s_min) * self.body_window.as_millis()
            / 1000)
            .min(u128::from(u64::MAX)) as u64;
        left.map_or(by_rate, |l| l.min(by_rate))
    }
}

/// The state the connection and its watchdog share. Lives on the connection's
/// reactor thread (`Rc`, `Cell`).
#[derive(Debug)]
pub struct Clock {
    phase: Cell<Phase>,
    /// When bytes last arrived.
    last_read: Cell<Instant>,
    /// Bytes read on the connection so far.
    bytes_read: Cell<u64>,
    /// Set by the watchdog when it cut the current request.
    cut: Cell<Option<Cut>>,
    /// Wakes the watchdog when the phase changes: the new phase may have an earlier
    /// deadline than the one it sleeps until (idle, then a head's).
    changed: tokio::sync::Notify,
}

impl Clock {
    /// A clock for a connection accepted now: idle, nothing read.
    pub fn new() -> Rc<Self> {
        Rc::new(Clock {
            phase: Cell::new(Phase::Idle),
            last_read: Cell::new(Instant::now()),
            bytes_read: Cell::new(0),
            cut: Cell::new(None),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// Records `n` bytes read now.
    pub fn read(&self, n: usize) {
        self.last_read.set(Instant::now());
        self.bytes_read.set(self.bytes_read.get() + n as u64);
    }

    /// What the connection waits for from now on.
    pub fn set(&self, phase: Phase) {
        if self.phase.replace(phase) != phase {
            self.changed.notify_one();
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Starts the body's first window, `left` bytes of it to come (if known).
    pub fn start_body(&self, left: Option<u64>) {
        self.set(Phase::Body {
            since: Instant::now(),
            read_at: self.bytes_read.get(),
            left,
        });
    }

    /// Why the current request was cut, if it was.
    pub fn cut(&self) -> Option<Cut> {
        self.cut.get()
    }

    /// The next deadline in the current phase and what passing it means (`None`: a
    /// silent close between requests or while busy). A body window that passed with
    /// its bytes in is rolled over here, so the deadline returned is always ahead or
    /// a real cut.
    fn next_deadline(&self, limits: &Limits, now: Instant) -> (Instant, Option<Cut>) {
        let idle_at = self.last_read.get() + limits.idle;
        let earlier = |at: Instant, cut: Cut| {
            if at < idle_at {
                (at, Some(cut))
            } else {
                (idle_at, Some(Cut::IdleMidRequest))
            }
        };
        match self.phase.get() {
            Phase::Idle | Phase::Busy => (idle_at, None),
            Phase::Head { since } => earlier(since + limits.head, Cut::HeadTimeout),
            Phase::Body {
                since,
                read_at,
                left,
            } => {
                let end = since + limits.body_window;
                let got = self.bytes_read.get() - read_at;
                if now >= end && got >= limits.window_bytes_min(left) {
                    // The window kept the rate: the next one starts.
                    self.phase.set(Phase::Body {
                        since: end,
                        read_at: self.bytes_read.get(),
                        left: left.map(|l| l.saturating_sub(got)),
                    });
                    return self.next_deadline(limits, now);
                }
                earlier(end, Cut::BodyTooSlow)
            }
        }
    }
}

/// Runs the clock of the connection on `fd` until it closes (`closed`): sleeps until
/// the phase's next deadline and, when one passes, counts it and cuts the connection
/// (see the module doc).
pub fn spawn_watchdog(
    fd: RawFd,
    clock: Rc<Clock>,
    closed: Rc<Cell<bool>>,
    limits: Limits,
    ctx: Arc<NetCtx>,
) {
    tokio::task::spawn_local(async move {
        let cut = loop {
            if closed.get() {
                return;
            }
            let now = Instant::now();
            let (at, cut) = clock.next_deadline(&limits, now);
            if now >= at {
                break cut;
            }
            // Until the deadline, or until the phase changes (and so may the deadline).
            let _ = tokio::time::timeout_at(at.into(), clock.changed.notified()).await;
        };
        let stats = &ctx.stats;
        let counter = match cut {
            Some(Cut::HeadTimeout) => &stats.http_head_timeouts_total,
            Some(Cut::BodyTooSlow) => &stats.http_body_too_slow_total,
            Some(Cut::IdleMidRequest) | None => &stats.http_idle_closed_total,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let Some(cut) = cut else {
            // SAFETY: not closed (checked in the loop, on this same thread, with no
            // await since), so fd is still this connection's socket.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            return;
        };
        clock.cut.set(Some(cut));
        // SAFETY: as above.
        unsafe { libc::shutdown(fd, libc::SHUT_RD) };
        // The connection answers 408 and closes; one whose client does not take the
        // answer is cut after the idle timeout more.
        tokio::time::sleep(limits.idle).await;
        if !closed.get() {
            // SAFETY: not closed (checked just above, with no await since).
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            idle: Duration::from_secs(30),
            head: Duration::from_secs(1),
            body_rate_bytes_per_s_min: 100,
            body_window: Duration::from_secs(2),
        }
    }

    /// A head has a deadline from its first byte however recently a byte came; a body
    /// window that kept the rate rolls over, one that did not is a cut.
    #[test]
    fn head_deadline_and_body_windows() {
        let l = limits();
        let c = Clock::new();
        let t0 = Instant::now();
        c.set(Phase::Head { since: t0 });
        c.read(1);
        assert_eq!(
            c.next_deadline(&l, t0),
            (t0 + l.head, Some(Cut::HeadTimeout))
        );
        c.start_body(Some(1000));
        let Phase::Body { since, .. } = c.phase() else {
            panic!("body")
        };
        c.read(200); // the window's share: 100 B/s over 2 s
        let later = since + l.body_window;
        let (at, cut) = c.next_deadline(&l, later);
        assert_eq!((at, cut), (later + l.body_window, Some(Cut::BodyTooSlow)));
        assert_eq!(
            c.phase(),
            Phase::Body {
                since: later,
                read_at: 201,
                left: Some(800)
            }
        );
        c.read(199);
        let end = later + l.body_window;
        assert_eq!(c.next_deadline(&l, end), (end, Some(Cut::BodyTooSlow)));
        // A window needs no more than the body has left.
        c.set(Phase::Body {
            since: t0,
            read_at: c.bytes_read.get(),
            left: Some(5),
        });
        c.read(5);
        let (at, _) = c.next_deadline(&l, t0 + l.body_window);
        assert!(at > t0 + l.body_window);
    }
}
