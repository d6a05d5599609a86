//! The monotonic clock every stage of the harness shares: the engine's send and
//! completion times, the `ws-e2e` subscribers' receipt times and the runner's waits
//! are all [`mono_ns`] values, so they can be subtracted from one another across
//! threads. [`Timer`] wakes the engine's poll loops at those same instants.
//!
//! This module depends on nothing else in the crate, so every module that needs the
//! time imports it from here, below itself (no import cycle through the engine).

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

/// Monotonic clock in nanoseconds (`CLOCK_MONOTONIC`, the clock `timerfd` uses).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A `timerfd` armed at absolute [`mono_ns`] times: sub-millisecond wake-ups for the
/// open-loop schedule (epoll's own timeout has millisecond resolution). It becomes
/// readable when the time is reached; register [`Timer::as_fd`] with the poll loop.
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
    /// The time it is armed at, 0 when not armed: re-arming at the same time is a
    /// no-op, which saves a syscall per loop round while waiting on one batch.
    armed_at: u64,
}

impl Timer {
    /// A disarmed, non-blocking timer on `CLOCK_MONOTONIC`.
    ///
    /// # Errors
    /// `timerfd_create` failed (out of file descriptors).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Timer {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            armed_at: 0,
        })
    }

    /// Arms the timer to fire at `at_ns` on the [`mono_ns`] clock (replacing any
    /// earlier time).
    pub fn arm(&mut self, at_ns: u64) {
        if self.armed_at == at_ns {
            return;
        }
        self.armed_at = at_ns;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid fd and pointers.
        unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
    }

    /// Consumes the expiry after the timer fired, so it stops being readable.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into an 8-byte buffer from our own fd.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        self.armed_at = 0;
    }
}

impl AsFd for Timer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
