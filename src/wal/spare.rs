//! The spare segment: a file of `segment_bytes_max` zeros, written and synced ahead of
//! time by a thread of its own, that the writer renames into place at rotation.
//!
//! Why: an fdatasync after an *append* must also make the file's new size and its
//! newly allocated extents durable, which on ext4 and XFS means a journal commit on
//! every group; after an *overwrite* of blocks already written it flushes only the
//! data. On this project's VMs (fio, 80 KiB writes, one fdatasync each) that halves
//! the fdatasync median and cuts its p99 by a third to a half; the peers' measurements
//! (`shared/peers/RESULTS.md`) show the p99 of 64 KiB appends at 8.7 ms against 1.1 ms
//! for overwrites on a bad day. Group commit time is what an ack waits for, so this is
//! the ack latency tail.
//!
//! The cost is writing every segment twice (zeros, then records), off the data path,
//! and one segment of disk space held in advance. The writer asks for a spare once the
//! active segment is a quarter full (so a log that never fills one never pays it) and
//! right after each rotation (the log is rotating: the next one will be needed); if the
//! spare
//! is not ready at rotation (a disk slower than the ingest), the writer creates the
//! next segment the ordinary way and nothing waits.
//!
//! Crash safety: spare `n` is built as `spare-<n>.seg.tmp`, synced, then renamed to
//! `spare-<n>.seg`, so a `spare-<n>.seg` is always whole. Every spare has a name of its
//! own, so the writer renaming one into place never races the preparer publishing the
//! next. The writer writes the segment header into it and syncs that *before* renaming
//! it to the segment's name, so a segment file never has a bad header. The active segment is longer than its data while it is
//! pre-written: the writer truncates it to its data at rotation and at a clean close,
//! and recovery cuts the zeros after a crash like any unwritten tail.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use super::{
    Inner, Prewrite, WalStats,
    aligned::{self, AlignedBuf},
    segment::sync_dir,
};

/// Whether the writer should have spares built, by `segment_prewrite`: under `auto`,
/// not where the directory is in memory (tmpfs, ramfs; `Prewrite` says why), which is
/// then recorded for the start-up banner and logged.
pub(crate) fn wanted(inner: &Inner) -> bool {
    match inner.config.segment_prewrite {
        Prewrite::On => true,
        Prewrite::Off => false,
        Prewrite::Auto => match memory_fs(&inner.config.dir) {
            Ok(Some(fs)) => {
                let why = format!(
                    "{} is on {fs}, in memory: an fdatasync there costs nothing to save, and a spare would hold a segment of memory",
                    inner.config.dir.display()
                );
                tracing::info!("segment_prewrite auto: off: {why}");
                let _ = inner.prewrite_off.set(why);
                false
            }
            Ok(None) => true,
            Err(e) => {
                // Not knowing the filesystem is no reason to give the disk's case up.
                tracing::warn!(error = %e, "segment_prewrite auto: cannot tell the filesystem of the data directory; pre-writing");
                true
            }
        },
    }
}

/// The name of `dir`'s filesystem if it keeps files in memory only.
fn memory_fs(dir: &Path) -> std::io::Result<Option<&'static str>> {
    let c = c_path(dir)?;
    // SAFETY: statfs writes into a zeroed struct we own; the path is NUL-terminated.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // `linux/magic.h`; libc has no RAMFS_MAGIC.
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    // The magic numbers' type differs between libc targets (`f_type` too).
    #[allow(clippy::unnecessary_cast)]
    Ok(match s.f_type as i64 {
        t if t == libc::TMPFS_MAGIC as i64 => Some("tmpfs"),
        RAMFS_MAGIC => Some("ramfs"),
        _ => None,
    })
}

/// Spare `n` is `spare-<n>.seg` in the data directory (not a segment name, so
/// readers, retention and `check` ignore it); while being written, `spare-<n>.seg.tmp`.
fn spare_name(n: u64) -> String {
    format!("spare-{n}.seg")
}

/// The number of a ready spare's file name.
fn spare_number(name: &str) -> Option<u64> {
    name.strip_prefix("spare-")?
        .strip_suffix(".seg")?
        .parse()
        .ok()
}

/// Zeros written per call while preparing; the stop flag is checked between calls.
const CHUNK_BYTES: usize = 128 << 10;

#[derive(Debug, Default)]
struct State {
    /// A whole, synced spare and its path, waiting for the writer.
    ready: Option<(File, PathBuf)>,
    /// The writer asked for a spare and none is being built or ready.
    requested: bool,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    bytes: u64,
    state: Mutex<State>,
    cv: Condvar,
    /// Set (under the lock, so the preparer's wait sees it) to stop; read without the
    /// lock between the chunks of a preparation.
    stopping: AtomicBool,
    /// The number the next spare is built under.
    next_number: AtomicU64,
    /// Zeros are written `O_DIRECT` (the writer writes direct).
    direct: bool,
}

/// The writer's handle on the preparer thread.
#[derive(Debug)]
pub(crate) struct Spares {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// A spare was requested (or is ready) for the current active segment.
    requested: bool,
}

impl Spares {
    /// Starts the preparer for the log's directory and segment size. One whole spare
    /// left by an earlier run (of the right size) is kept; every other `spare-*` file
    /// is removed.
    pub(crate) fn start(inner: Arc<Inner>) -> std::io::Result<Self> {
        let dir = &inner.config.dir;
        let bytes = inner.config.segment_bytes_max;
        // Keep one whole spare of the right size; remove partial ones and the rest.
        let mut ready = None;
        let mut highest = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with("spare-") {
                continue;
            }
            let path = entry.path();
            match spare_number(name) {
                Some(n) if ready.is_none() && entry.metadata()?.len() == bytes => {
                    highest = highest.max(n);
                    let f = OpenOptions::new().read(true).write(true).open(&path)?;
                    ready = Some((f, path));
                }
                n => {
                    highest = highest.max(n.unwrap_or(0));
                    std::fs::remove_file(&path)?;
                }
            }
        }
        if ready.is_some() {
            inner.stats.spares_ready.store(1, Ordering::Relaxed);
        }
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            bytes,
            state: Mutex::new(State {
                ready,
                ..State::default()
            }),
            cv: Condvar::new(),
            stopping: AtomicBool::new(false),
            next_number: AtomicU64::new(highest + 1),
            direct: inner.direct_writes.load(Ordering::Relaxed),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rs-spare".into())
            .spawn(move || prepare_loop(&s, &inner.stats))?;
        Ok(Spares {
            shared,
            thread: Some(thread),
            requested: false,
        })
    }

    /// Asks for a spare for the next rotation, once per active segment.
    pub(crate) fn request(&mut self) {
        if self.requested {
            return;
        }
        self.requested = true;
        let mut st = self.shared.state.lock().expect("spare lock");
        if st.ready.is_none() {
            st.requested = true;
            self.shared.cv.notify_one();
        }
    }

    /// The ready spare, if there is one; the next segment's request is re-armed.
    pub(crate) fn take(&mut self, stats: &WalStats) -> Option<(File, PathBuf)> {
        self.requested = false;
        let spare = self.shared.state.lock().expect("spare lock").ready.take()?;
        stats.spares_ready.store(0, Ordering::Relaxed);
        Some(spare)
    }

    /// Stops the preparer (abandoning a spare half-built) and waits for it.
    pub(crate) fn stop(&mut self) {
        {
            let _st = self.shared.state.lock().expect("spare lock");
            self.shared.stopping.store(true, Ordering::Relaxed);
            self.shared.cv.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        self.stop();
    }
}

fn prepare_loop(shared: &Shared, stats: &WalStats) {
    loop {
        {
            let mut st = shared.state.lock().expect("spare lock");
            let stopping = || shared.stopping.load(Ordering::Relaxed);
            while !stopping() && !st.requested {
                st = shared.cv.wait(st).expect("spare lock");
            }
            if stopping() {
                return;
            }
            st.requested = false;
        }
        let built = prepare(shared);
        #[cfg(feature = "failpoints")]
        super::failpoints::before_spare_published();
        match built {
            Ok(Some(spare)) => {
                let mut st = shared.state.lock().expect("spare lock");
                // A request that came in while this spare was being built is answered
                // by it.
                st.requested = false;
                if let Some((_, stale)) = st.ready.replace(spare) {
                    let _ = std::fs::remove_file(stale);
                }
                stats.spares_prepared.fetch_add(1, Ordering::Relaxed);
                stats.spares_ready.store(1, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(Skip::LowSpace { free }) => {
                stats.spares_skipped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    free_bytes = free,
                    segment_bytes = shared.bytes,
                    "not pre-writing the next segment: less than two segments of free space"
                );
            }
            Err(Skip::Io(what, e)) => {
                stats.spares_skipped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "pre-writing the next segment failed ({what}); it will be created empty");
            }
        }
    }
}

enum Skip {
    LowSpace { free: u64 },
    Io(&'static str, std::io::Error),
}

/// Builds one spare. `Ok(None)`: stopped half-way. A partial file is removed.
fn prepare(shared: &Shared) -> Result<Option<(File, PathBuf)>, Skip> {
    let n = shared.next_number.fetch_add(1, Ordering::Relaxed);
    let path = shared.dir.join(spare_name(n));
    let tmp = shared.dir.join(format!("{}.tmp", spare_name(n)));
    let built = build(shared, &tmp, &path);
    if !matches!(built, Ok(Some(_))) {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(built?.map(|f| (f, path)))
}

fn build(shared: &Shared, tmp: &Path, path: &Path) -> Result<Option<File>, Skip> {
    let free = free_bytes(&shared.dir).map_err(|e| Skip::Io("statvfs", e))?;
    // Leave at least a segment's worth for the writer besides the spare itself.
    if free < shared.bytes.saturating_mul(2) {
        return Err(Skip::LowSpace { free });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| Skip::Io("create", e))?;
    let whole = if shared.direct {
        zero_direct(shared, &file, tmp)?
    } else {
        zero_buffered(shared, &file)?
    };
    if !whole {
        return Ok(None);
    }
    finish(shared, file, tmp, path)
}

/// Publishes a zeroed spare: synced, renamed into place, the directory synced.
fn finish(shared: &Shared, file: File, tmp: &Path, path: &Path) -> Result<Option<File>, Skip> {
    file.sync_all().map_err(|e| Skip::Io("fsync", e))?;
    std::fs::rename(tmp, path).map_err(|e| Skip::Io("rename", e))?;
    sync_dir(&shared.dir).map_err(|e| Skip::Io("sync directory", e))?;
    Ok(Some(file))
}

/// Writes the zeros through the page cache. Returns false if stopped half-way.
///
/// One chunk at a time, each written back and waited for (`sync_file_range`) before
/// the next: never more than a chunk queued ahead of the writer's group fdatasyncs (a
/// segment's worth of dirty pages flushed at once floods the device queue they wait
/// in), and the zeros stay in the page cache. That matters for buffered group writes: a
/// group write that ends inside a page not in the cache makes the kernel read that page
/// from the disk first, and every group ends inside a page.
fn zero_buffered(shared: &Shared, file: &File) -> Result<bool, Skip> {
    let zeros = vec![0u8; CHUNK_BYTES];
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    let mut at = 0u64;
    while at < shared.bytes {
        if shared.stopping.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let n = (shared.bytes - at).min(CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..n], at)
            .map_err(|e| Skip::Io("write", e))?;
        // SAFETY: plain syscall on our open file; the result is checked.
        let r = unsafe {
            libc::sync_file_range(
                fd,
                at as libc::off64_t,
                n as libc::off64_t,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )
        };
        if r != 0 {
            return Err(Skip::Io("sync_file_range", std::io::Error::last_os_error()));
        }
        at += n as u64;
    }
    Ok(true)
}

/// Writes the zeros `O_DIRECT` from one aligned zero buffer: no copy into the page
/// cache, which direct group writes never read (they rewrite whole blocks). A direct
/// write returns once the device has the chunk, so one chunk at a time again keeps
/// the preparer from queueing ahead of the writer's syncs. Returns false if stopped.
fn zero_direct(shared: &Shared, buffered: &File, tmp: &Path) -> Result<bool, Skip> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(tmp)
        .map_err(|e| Skip::Io("open O_DIRECT", e))?;
    let mut zeros = AlignedBuf::new(CHUNK_BYTES);
    zeros.extend_from_slice(&[0; CHUNK_BYTES]);
    let mut at = 0u64;
    while at < shared.bytes {
        if shared.stopping.load(Ordering::Relaxed) {
            return Ok(false);
        }
        // Segment sizes are not always whole blocks: the last piece goes buffered.
        let left = shared.bytes - at;
        let n = left.min(CHUNK_BYTES as u64) as usize;
        let to = if n.is_multiple_of(aligned::BLOCK_BYTES) {
            &file
        } else {
            buffered
        };
        to.write_all_at(&zeros[..n], at)
            .map_err(|e| Skip::Io("write", e))?;
        at += n as u64;
    }
    Ok(true)
}

fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let c = c_path(dir)?;
    // SAFETY: statvfs writes into a zeroed struct we own; the path is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s.f_bavail as u64 * s.f_frsize as u64)
}

/// `dir` as a C string, for the `statfs` family.
fn c_path(dir: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}
