//! Direct I/O: turning `O_DIRECT` on for the active segment, and the block the next
//! group starts in.
//!
//! Why direct: a buffered write copies every group into the page cache (on these
//! machines the kernel worker doing it took half of the server's CPU), and the cache
//! then holds data nobody reads back: live readers get recent groups from memory
//! ([`crate::wal::recent`]). A direct write takes the group's own buffer to the device.
//!
//! The cost is the block rule: a direct write covers whole blocks from a block
//! boundary. A group rarely ends on one, so the writer keeps the bytes of the last,
//! partial block (`Writer::tail`) and the next group writes them again in front of its
//! own records; the padding after a group's records is zeros, which the next group
//! overwrites and sealing cuts. Two writes of one block must never be in flight at
//! once: a group gathered while the one before it is written is staged, and submitted
//! only once that write is all back (`Writer::submit_staged`). Crash safety is unchanged: the rewritten prefix holds
//! the same bytes as before, so a torn block write leaves committed records intact,
//! and recovery cuts trailing zeros as the unwritten rest of the segment (see
//! `docs/format.md`).
//!
//! `O_DIRECT` is set with `fcntl(F_SETFL)` on the descriptor the writer already has:
//! the kernel refuses it there, with `EINVAL`, on filesystems without direct I/O
//! (tmpfs, some FUSE mounts), and the writer then writes buffered and says so.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
    sync::atomic::Ordering,
};

use crate::wal::{Inner, WriteMode, aligned, recovery::ActiveSegment};

/// At start: under `write_mode = "direct"`, turns `O_DIRECT` on for the active segment
/// and returns the bytes of the block its end falls in, before the end. `None`: write
/// buffered (the setting, or the filesystem's refusal, recorded for the banner).
pub(super) fn start(inner: &Inner, active: &mut ActiveSegment) -> Option<Vec<u8>> {
    if inner.config.write_mode != WriteMode::Direct {
        return None;
    }
    let tail = block_before(&active.file, active.end_pos).and_then(|tail| {
        enable(&active.file)?;
        Ok(tail)
    });
    match tail {
        Ok(tail) => {
            inner.direct_writes.store(true, Ordering::Relaxed);
            Some(tail)
        }
        Err(e) => {
            let why = format!(
                "the filesystem of {} refuses O_DIRECT ({e}); writing through the page cache",
                inner.config.dir.display()
            );
            tracing::warn!("write_mode direct: {why}");
            let _ = inner.direct_refused.set(why);
            None
        }
    }
}

/// Turns `O_DIRECT` on for `file`'s descriptor.
///
/// # Errors
/// `EINVAL` where the filesystem has no direct I/O; any other `fcntl` error.
pub(super) fn enable(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; results checked.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The bytes of `file` from the block boundary at or before `end` up to `end`: what the
/// next direct write must carry in front of its records. Read before `O_DIRECT` is on
/// (a direct read would need an aligned buffer).
fn block_before(file: &File, end: u64) -> io::Result<Vec<u8>> {
    let from = aligned::round_down(end);
    let mut tail = vec![0; (end - from) as usize];
    file.read_exact_at(&mut tail, from)?;
    Ok(tail)
}
