//! Creating an io_uring instance, and saying clearly why it failed when it does.
//!
//! The usual causes on servers: the `kernel.io_uring_disabled` sysctl, a seccomp
//! profile (container runtimes' defaults block `io_uring_setup`), a kernel older than
//! 5.6, or a locked-memory limit on kernels before 5.12.

use std::io;

use io_uring::IoUring;

use crate::{error::OpenError, wal::IoDriver};

/// What the log runs on, once `io_driver` is resolved.
pub(crate) struct Chosen {
    /// The writer's ring, or None for the epoll driver.
    pub ring: Option<IoUring>,
    /// `Uring` or `Epoll`.
    pub driver: IoDriver,
    /// Why `auto` chose epoll.
    pub why_epoll: Option<String>,
}

/// Resolves `io_driver`: `auto` tries to set up a ring and takes epoll, with the
/// cause, where that fails.
///
/// # Errors
/// [`OpenError::UringUnavailable`] under `uring` where no ring can be set up.
pub(crate) fn choose(driver: IoDriver) -> Result<Chosen, OpenError> {
    let uring = |ring| Chosen {
        ring: Some(ring),
        driver: IoDriver::Uring,
        why_epoll: None,
    };
    let epoll = |why_epoll| Chosen {
        ring: None,
        driver: IoDriver::Epoll,
        why_epoll,
    };
    match driver {
        IoDriver::Uring => new_ring(64).map(uring),
        IoDriver::Epoll => Ok(epoll(None)),
        IoDriver::Auto => match new_ring(64) {
            Ok(ring) => Ok(uring(ring)),
            Err(OpenError::UringUnavailable(why)) => Ok(epoll(Some(why))),
            Err(e) => Err(e),
        },
    }
}

/// Creates a ring with `entries` submission entries.
///
/// # Errors
/// [`OpenError::UringUnavailable`] with a sentence naming the most likely cause.
pub fn new_ring(entries: u32) -> Result<IoUring, OpenError> {
    IoUring::builder()
        .build(entries)
        .map_err(|e| OpenError::UringUnavailable(diagnose(&e)))
}

/// Explains an `io_uring_setup` failure in terms an operator can act on.
pub fn diagnose(e: &io::Error) -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_owned());
    let seccomp = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim().to_owned()))
        });
    let errno = e.raw_os_error().unwrap_or(0);
    let filtered = seccomp.as_deref().is_some_and(|s| s != "0");
    let cause = if errno == libc::ENOSYS && filtered && kernel_has_io_uring() {
        // Podman's and some Kubernetes runtimes' default profiles answer ENOSYS.
        format!(
            "io_uring_setup was blocked by a seccomp profile (Seccomp: {} in /proc/self/status; \
             it answered ENOSYS, but this kernel has io_uring); allow io_uring_setup, \
             io_uring_enter and io_uring_register, or run unconfined",
            seccomp.as_deref().unwrap_or("?")
        )
    } else if errno == libc::ENOSYS {
        "the kernel does not implement io_uring_setup (older than 5.1, or built without CONFIG_IO_URING)".to_owned()
    } else if matches!(sysctl.as_deref(), Some("2")) {
        "it is disabled by the sysctl kernel.io_uring_disabled=2".to_owned()
    } else if matches!(sysctl.as_deref(), Some("1")) && errno == libc::EPERM {
        "the sysctl kernel.io_uring_disabled=1 restricts it to the group in kernel.io_uring_group"
            .to_owned()
    } else if errno == libc::EPERM && filtered {
        format!(
            "io_uring_setup was blocked by a seccomp profile (Seccomp: {} in /proc/self/status); \
             allow io_uring_setup, io_uring_enter and io_uring_register, or run unconfined",
            seccomp.as_deref().unwrap_or("?")
        )
    } else if errno == libc::ENOMEM {
        "the locked-memory limit (ulimit -l) is too low for the ring on this kernel".to_owned()
    } else if errno == libc::EPERM {
        "permission denied by the kernel (a security module or sysctl)".to_owned()
    } else {
        "unexpected error from io_uring_setup".to_owned()
    };
    format!("{cause} ({e})")
}

/// Whether the running kernel is one that has io_uring (5.1 or later), from uname(2).
fn kernel_has_io_uring() -> bool {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    // SAFETY: uname NUL-terminates release.
    let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (5, 1)
}
