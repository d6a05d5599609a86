//! Named fault-injection points for tests, compiled only with the `failpoints` feature
//! (never in a release build without it). Armed by the environment variable
//! `RINGSTASH_FAILPOINTS`, read once, a comma-separated list of:
//!
//! - `fsync_eio_after=N`: the first N fdatasyncs of groups succeed; every later one
//!   fails with EIO, as a dying disk would report it.
//! - `cover_eio=1`: every covering fdatasync (one shared by the groups written alone
//!   while two syncs were out) fails with EIO; the groups' own syncs do not.
//! - `fanout_poll_ms=M`: the fan-out core's poll, while subscribers are open, times
//!   out after M ms instead of 100, so that a missed wake-up costs M ms: a test can
//!   tell one from a thread slow to get a CPU.
//! - `group_hold_file=PATH`: the writer waits before submitting each group for as
//!   long as PATH exists (at most 30 s): a test holds the writer exactly as long as
//!   it needs, however slow the machine.
//! - `group_delay_ms=M`: the writer sleeps M ms before submitting each group, as a
//!   very slow disk would make it wait.
//! - `short_writes=1`: every write is submitted for half of what remains (at least one
//!   byte, or one block under direct writes), so the kernel returns short counts and the writer must resubmit the rest.
//! - `sync_delay_ms=M`: under the epoll driver, each I/O thread sleeps M ms before
//!   every fdatasync it runs, as a disk with slow flushes would make it wait; so groups
//!   are submitted while two syncs are out, and share a covering one. (Under io_uring
//!   the syncs run in the kernel: nothing is delayed.)
//! - `sync_hold_alone=K`: under the epoll driver, each I/O thread waits before every
//!   fdatasync until the writer has seen K groups' writes come back whole without a
//!   sync of their own (at most 10 s), then sleeps `sync_delay_ms`; so the first two
//!   syncs are held until K groups wait for a covering one, however slowly the
//!   reactors deliver (a debug build beside other tests can take longer than any fixed
//!   delay), and the covering sync issued when they return covers all K.
//! - `spare_delay_ms=M`: the spare thread sleeps M ms before publishing each spare, so
//!   that rotations find none ready and ask again while one is being built.
//! - `tix_enospc=1`: every write and sync of a time index (`.tix`) by the writer, and
//!   every creation of one at rotation, fails with ENOSPC, as on a full disk.
//!
//! Tests start the real binary with the variable set; see `tests/failpoints.rs`.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

#[derive(Debug, Default)]
struct Armed {
    cover_eio: bool,
    fanout_poll_ms: Option<u64>,
    fsync_eio_after: Option<u64>,
    group_delay_ms: u64,
    group_hold_file: Option<std::path::PathBuf>,
    short_writes: bool,
    sync_delay_ms: u64,
    sync_hold_alone: u64,
    spare_delay_ms: u64,
    tix_enospc: bool,
}

static ARMED: OnceLock<Armed> = OnceLock::new();
static FSYNCS: AtomicU64 = AtomicU64::new(0);
/// Groups whose write came back whole without a sync of their own, so far.
static WRITTEN_ALONE: AtomicU64 = AtomicU64::new(0);

fn armed() -> &'static Armed {
    ARMED.get_or_init(|| {
        let mut a = Armed::default();
        let spec = std::env::var("RINGSTASH_FAILPOINTS").unwrap_or_default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some(("cover_eio", n)) => a.cover_eio = n == "1",
                Some(("fanout_poll_ms", n)) => a.fanout_poll_ms = n.parse().ok(),
                Some(("fsync_eio_after", n)) => a.fsync_eio_after = n.parse().ok(),
                Some(("group_hold_file", p)) => a.group_hold_file = Some(p.into()),
                Some(("group_delay_ms", n)) => a.group_delay_ms = n.parse().unwrap_or(0),
                Some(("short_writes", n)) => a.short_writes = n == "1",
                Some(("sync_delay_ms", n)) => a.sync_delay_ms = n.parse().unwrap_or(0),
                Some(("sync_hold_alone", n)) => a.sync_hold_alone = n.parse().unwrap_or(0),
                Some(("spare_delay_ms", n)) => a.spare_delay_ms = n.parse().unwrap_or(0),
                Some(("tix_enospc", n)) => a.tix_enospc = n == "1",
                _ => panic!("unknown failpoint {item:?} in RINGSTASH_FAILPOINTS"),
            }
        }
        if !spec.is_empty() {
            tracing::warn!(%spec, "failpoints armed");
        }
        a
    })
}

/// Called with each group fdatasync's result; returns the result to act on.
pub(crate) fn fsync_result(res: i32) -> i32 {
    let Some(after) = armed().fsync_eio_after else {
        return res;
    };
    // Relaxed: only the writer thread counts.
    if res >= 0 && FSYNCS.fetch_add(1, Ordering::Relaxed) >= after {
        return -libc::EIO;
    }
    res
}

/// Called with each covering fdatasync's result (after [`fsync_result`]); returns the
/// result to act on.
pub(crate) fn cover_result(res: i32) -> i32 {
    if armed().cover_eio && res >= 0 {
        return -libc::EIO;
    }
    res
}

/// The fan-out core's poll timeout while subscribers are open, given its default.
pub(crate) fn fanout_poll(default: std::time::Duration) -> std::time::Duration {
    armed()
        .fanout_poll_ms
        .map_or(default, std::time::Duration::from_millis)
}

/// Called before each group is submitted.
pub(crate) fn before_group() {
    if let Some(hold) = &armed().group_hold_file {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while hold.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let ms = armed().group_delay_ms;
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Called by the writer when a group's write has come back whole without a linked
/// sync (it waits for a covering one).
pub(crate) fn written_alone() {
    // Relaxed: a count the I/O threads poll, nothing published with it.
    WRITTEN_ALONE.fetch_add(1, Ordering::Relaxed);
}

/// Called by an I/O thread of the epoll driver before each fdatasync.
pub(crate) fn before_sync() {
    let hold = armed().sync_hold_alone;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while WRITTEN_ALONE.load(Ordering::Relaxed) < hold && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let ms = armed().sync_delay_ms;
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Called with the length of each write about to be submitted, which must stay a
/// multiple of `align` (direct writes: a block); returns the length to submit.
pub(crate) fn write_len(len: usize, align: usize) -> usize {
    if armed().short_writes && len > align {
        (len / 2 / align).max(1) * align
    } else {
        len
    }
}

/// Called by the spare thread before it publishes a spare.
pub(crate) fn before_spare_published() {
    let ms = armed().spare_delay_ms;
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Called before each time-index write, sync or creation; an error to report instead.
pub(crate) fn tix_io() -> std::io::Result<()> {
    if armed().tix_enospc {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    Ok(())
}
