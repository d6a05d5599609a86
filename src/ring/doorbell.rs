//! The doorbell: how one thread that sleeps in the kernel is woken by threads that
//! publish work, without a system call while it is awake.
//!
//! Two places use it: the writer, which sleeps in `io_uring_enter` with a read pending
//! on the doorbell of the [`super::BatchRing`] (rung by producers after a push), and
//! the fan-out core, which sleeps in `epoll_wait` on the commit doorbell (rung by the
//! writer after a commit, see `wal::CommitFollower`).
//!
//! # The handshake (Dekker)
//!
//! The sleeper announces a sleep ([`Doorbell::prepare_sleep`]): it stores `sleeping`,
//! issues a SeqCst fence, then looks for work once more. The ringer publishes its work
//! (a push, a store of the committed offset), issues a SeqCst fence, then loads
//! `sleeping` ([`Doorbell::ring`]). The two fences are ordered in the single total order
//! of SeqCst operations; whichever comes second sees the other side's store: either
//! the sleeper sees the work and does not sleep, or the ringer sees the flag and writes
//! the eventfd. Both stores and loads around the fences may therefore be Relaxed. The
//! ringer claims the wake-up with a swap (AcqRel), so that of several ringers only one
//! pays the `write`. A wake-up nobody needed (the sleeper found work and cleared the
//! flag late) only makes one `io_uring_enter` or `epoll_wait` return early.
//!
//! While the sleeper is awake, ringing costs a fence and one load.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering, fence},
    },
};

/// An eventfd with a "about to sleep" flag; see the module docs for the handshake.
/// One sleeper, any number of ringers.
#[derive(Debug, Default)]
pub struct Doorbell {
    /// Set by the sleeper just before it sleeps; the ringer that finds it set clears it
    /// and writes the eventfd.
    sleeping: AtomicBool,
    /// The eventfd the sleeper waits on. Created by [`Doorbell::new`], or on first
    /// [`Doorbell::open`] for a doorbell that may never get a sleeper (the commit
    /// doorbell: a log without a fan-out needs no descriptor). Lives as long as the bell.
    fd: OnceLock<OwnedFd>,
}

impl Doorbell {
    /// A doorbell with its eventfd.
    ///
    /// # Errors
    /// The OS error if the eventfd cannot be created.
    pub fn new() -> io::Result<Doorbell> {
        let bell = Doorbell::default();
        bell.open()?;
        Ok(bell)
    }

    /// Creates the eventfd if the doorbell has none yet. Idempotent.
    ///
    /// # Errors
    /// The OS error if the eventfd cannot be created.
    pub fn open(&self) -> io::Result<()> {
        if self.fd.get().is_some() {
            return Ok(());
        }
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own. A lost race drops ours.
        let _ = self.fd.set(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(())
    }

    /// The eventfd to wait on (readable after a wake-up).
    ///
    /// # Panics
    /// If the doorbell was never opened.
    pub fn fd(&self) -> RawFd {
        self.fd.get().expect("doorbell opened").as_raw_fd()
    }

    /// Ringer side, after publishing work: wakes the sleeper if it announced a sleep.
    pub fn ring(&self) {
        // Orders the publication before the load of the flag (see the module docs).
        fence(Ordering::SeqCst);
        self.ring_after_fence();
    }

    /// As [`Doorbell::ring`], for a ringer that already issued a SeqCst fence after
    /// publishing its work (the writer's commit notify, whose one fence also orders
    /// its condition-variable check).
    pub fn ring_after_fence(&self) {
        // Relaxed: ordered by the caller's fence. The plain load first keeps an awake
        // sleeper's cost to one load; the swap lets one ringer only pay the write.
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            self.write();
        }
    }

    /// Writes the eventfd whatever the flag says (shutdown, which must not depend on an
    /// announced sleep).
    pub fn force_ring(&self) {
        self.write();
    }

    fn write(&self) {
        let Some(fd) = self.fd.get() else {
            // Never opened: nobody can be waiting on it.
            return;
        };
        let one: u64 = 1;
        // SAFETY: an 8-byte write from a live u64 to our own eventfd. EAGAIN (the
        // counter saturated) still leaves the sleeper woken, so the result is ignored.
        unsafe {
            libc::write(
                fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Sleeper side: announces an imminent sleep. `work_pending` is the sleeper's last
    /// look for work, made after the fence; if it finds some, the announcement is
    /// withdrawn and this returns false (the caller must then not sleep).
    pub fn prepare_sleep(&self, work_pending: impl FnOnce() -> bool) -> bool {
        // Relaxed: ordered before `work_pending` by the fence (see the module docs).
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if work_pending() {
            self.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Sleeper side: the sleep ended (woken or not); ringers need not write the fd.
    pub fn cancel_sleep(&self) {
        // Relaxed: a stale `true` seen by a ringer costs one spurious write, no more.
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Sleeper side, for a sleeper that waits with poll/epoll rather than a read: the
    /// sleep ended; clears the flag and resets the eventfd's counter.
    pub fn woke(&self) {
        self.cancel_sleep();
        let Some(fd) = self.fd.get() else {
            return;
        };
        let mut buf = 0u64;
        // SAFETY: an 8-byte read into a live u64 from our own non-blocking eventfd;
        // EAGAIN (nothing written) is expected and ignored.
        unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut buf as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(bell: &Doorbell) -> bool {
        let mut buf = 0u64;
        // SAFETY: an 8-byte read into a live u64 from a non-blocking eventfd.
        let n = unsafe { libc::read(bell.fd(), (&mut buf as *mut u64).cast(), 8) };
        n == 8
    }

    #[test]
    fn rings_only_after_an_announced_sleep() {
        let bell = Doorbell::new().unwrap();
        bell.ring();
        assert!(!readable(&bell), "an awake sleeper is not written to");
        assert!(bell.prepare_sleep(|| false));
        bell.ring();
        assert!(readable(&bell), "an announced sleep is woken");
        bell.ring();
        assert!(!readable(&bell), "the first ringer took the wake-up");
        assert!(!bell.prepare_sleep(|| true), "work found: no sleep");
        bell.ring();
        assert!(!readable(&bell));
        bell.force_ring();
        assert!(readable(&bell));
    }

    #[test]
    fn an_unopened_bell_rings_nobody() {
        let bell = Doorbell::default();
        assert!(bell.prepare_sleep(|| false));
        bell.ring();
        bell.woke();
        bell.open().unwrap();
        bell.open().unwrap();
        assert!(!readable(&bell));
    }
}
