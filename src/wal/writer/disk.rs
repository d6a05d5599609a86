//! The writer's way to the disk: io_uring, or (the epoll driver, where io_uring is
//! blocked) a few I/O threads calling pwrite(2) and fdatasync(2).
//!
//! Both take the same four operations, each with a user-data word, and hand back
//! completions as `(user_data, result)` pairs with io_uring's meaning (a byte count, or
//! `-errno`), so the group-commit logic above them is written once: groups in flight,
//! completions in any order, retirement in order, short writes resubmitted, a write
//! linked to its group's fdatasync.
//!
//! Why threads and not the writer itself calling pwrite + fdatasync: with the
//! syscalls made on the writer thread, nothing would be gathered while a sync blocks,
//! and the ring would fill behind it. With `groups_in_flight_max` threads (plus one
//! for the `interval` policy's lone sync and three for a sealed segment's syncs),
//! group N+1 is gathered and written while
//! group N's fdatasync runs, as under io_uring; and a chain (write → sync) runs on one
//! thread, in order, as `IOSQE_IO_LINK` orders it there.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use io_uring::{IoUring, opcode, squeue, types};

/// One operation the writer asks for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    /// One write(2) of `len` bytes from `ptr` at `offset` of `fd`; a short count is
    /// the caller's to resubmit. `ptr..ptr+len` must stay valid and untouched until
    /// the completion is reaped.
    Write {
        fd: RawFd,
        ptr: *const u8,
        len: u32,
        offset: u64,
    },
    /// fdatasync(2).
    Datasync { fd: RawFd },
    /// Completes (with `-ETIME`) once `after` has passed.
    Timeout { after: Duration },
    /// Reads eventfd `fd`'s 8-byte counter into `into` (valid until reaped) once it is
    /// non-zero.
    ReadEventfd { fd: RawFd, into: *mut u64 },
}

/// Where the writer's operations go.
pub(super) enum Disk {
    Uring(UringDisk),
    Threads(ThreadDisk),
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Disk::Uring(_) => "Disk::Uring",
            Disk::Threads(_) => "Disk::Threads",
        })
    }
}

impl Disk {
    /// Queues `chain`: each operation runs only once the one before it completed in
    /// full (a write of every byte asked, a sync without error); otherwise the rest
    /// complete with `-ECANCELED`. A chain of one is a lone operation. Nothing runs
    /// before [`Disk::submit`] (or [`Disk::submit_and_wait`]).
    ///
    /// # Safety
    /// Every pointer in `chain` stays valid, and its memory untouched by anyone else,
    /// until that operation's completion has been taken by [`Disk::reap`].
    pub(super) unsafe fn push(&mut self, chain: &[(Op, u64)]) -> io::Result<()> {
        match self {
            // SAFETY: forwarded, same contract.
            Disk::Uring(u) => unsafe { u.push(chain) },
            Disk::Threads(t) => {
                t.push(chain);
                Ok(())
            }
        }
    }

    /// Starts what was pushed, without waiting.
    pub(super) fn submit(&mut self) -> io::Result<()> {
        match self {
            Disk::Uring(u) => u.ring.submit().map(drop),
            Disk::Threads(t) => t.submit(),
        }
    }

    /// Starts what was pushed and blocks until at least one completion is ready.
    /// May return early with `EINTR`.
    pub(super) fn submit_and_wait(&mut self) -> io::Result<()> {
        match self {
            Disk::Uring(u) => u.ring.submit_and_wait(1).map(drop),
            Disk::Threads(t) => t.submit_and_wait(),
        }
    }

    /// Appends every ready completion to `out`.
    pub(super) fn reap(&mut self, out: &mut Vec<(u64, i32)>) {
        match self {
            Disk::Uring(u) => out.extend(u.ring.completion().map(|c| (c.user_data(), c.result()))),
            Disk::Threads(t) => t.reap(out),
        }
    }

    /// After a fatal failure: the disk is dropped without waiting for operations in
    /// flight (I/O threads stuck on a failing device are left to the process's exit).
    pub(super) fn detach(&mut self) {
        if let Disk::Threads(t) = self {
            t.threads.clear();
        }
    }

    /// Most completions one reap can return (the capacity to reserve for it).
    pub(super) fn completions_max(&self) -> usize {
        match self {
            Disk::Uring(u) => u.ring.params().cq_entries() as usize,
            Disk::Threads(t) => t.threads.len() * 2 + 2,
        }
    }
}

/// io_uring: one SQE per operation, chains linked with `IOSQE_IO_LINK`.
pub(super) struct UringDisk {
    ring: IoUring,
    /// The target of the pending timeout, boxed so its address is stable (at most one
    /// timeout is pending: the writer arms one at a time).
    timeout_spec: Box<types::Timespec>,
}

impl UringDisk {
    pub(super) fn new(ring: IoUring) -> Self {
        UringDisk {
            ring,
            timeout_spec: Box::new(types::Timespec::new()),
        }
    }

    /// # Safety
    /// As [`Disk::push`].
    unsafe fn push(&mut self, chain: &[(Op, u64)]) -> io::Result<()> {
        // Room for the whole chain, so that a link is never split across submissions
        // (a split link's sync could run before its write).
        let free = |ring: &mut IoUring| {
            let sq = ring.submission();
            sq.capacity() - sq.len()
        };
        if free(&mut self.ring) < chain.len() {
            self.ring.submit()?;
            if free(&mut self.ring) < chain.len() {
                return Err(io::Error::other(
                    "io_uring submission queue still full after a submit",
                ));
            }
        }
        for (i, &(op, ud)) in chain.iter().enumerate() {
            let sqe = match op {
                Op::Write {
                    fd,
                    ptr,
                    len,
                    offset,
                } => opcode::Write::new(types::Fd(fd), ptr, len)
                    .offset(offset)
                    .build(),
                Op::Datasync { fd } => opcode::Fsync::new(types::Fd(fd))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build(),
                Op::Timeout { after } => {
                    *self.timeout_spec = types::Timespec::from(after);
                    opcode::Timeout::new(&*self.timeout_spec as *const _).build()
                }
                Op::ReadEventfd { fd, into } => {
                    opcode::Read::new(types::Fd(fd), into.cast(), 8).build()
                }
            };
            let sqe = if i + 1 < chain.len() {
                sqe.flags(squeue::Flags::IO_LINK)
            } else {
                sqe
            }
            .user_data(ud);
            // SAFETY: the caller keeps every pointer valid until the CQE is reaped;
            // the timeout's target is ours and outlives it. Room was made above.
            unsafe { self.ring.submission().push(&sqe) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        Ok(())
    }
}

/// A chain for an I/O thread. The pointers in it cross threads; [`Disk::push`]'s
/// contract keeps what they point at alive and untouched until the completion is
/// reaped, which happens after the thread has finished with them.
struct Chain {
    ops: [(Op, u64); 2],
    len: usize,
}

// SAFETY: see `Chain`: the memory behind the pointers is owned by the writer, which
// neither touches nor frees it until the I/O thread has posted the completion.
unsafe impl Send for Chain {}

/// Completions posted by the I/O threads, and the eventfd that says there are some.
struct Posted {
    done: Mutex<Vec<(u64, i32)>>,
    efd: OwnedFd,
}

impl Posted {
    fn post(&self, ud: u64, res: i32) {
        self.done.lock().expect("completions lock").push((ud, res));
        let one: u64 = 1;
        // SAFETY: efd is an open eventfd; the buffer is 8 valid bytes. A full counter
        // (EAGAIN) cannot happen: the writer drains it on every wait.
        unsafe { libc::write(self.efd.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// The epoll driver's disk: chains run on a pool of threads; the writer waits with
/// ppoll(2) on the completions' eventfd and the doorbell.
pub(super) struct ThreadDisk {
    /// Chains pushed since the last submit.
    queued: Vec<Chain>,
    jobs: Option<mpsc::Sender<Chain>>,
    posted: Arc<Posted>,
    /// Completions made on the writer's own thread (the doorbell's read, the timer).
    local: Vec<(u64, i32)>,
    /// The pending timeout: when it fires, and its user data.
    timeout: Option<(Instant, u64)>,
    /// The pending eventfd read: its fd, target and user data.
    read: Option<(RawFd, *mut u64, u64)>,
    threads: Vec<JoinHandle<()>>,
}

// SAFETY: the one raw pointer it holds (`read`'s target) is the writer's own
// `wake_buf`, used only on the writer's thread, which owns this disk; the disk is
// moved to that thread once, before any operation is pushed.
unsafe impl Send for ThreadDisk {}

impl ThreadDisk {
    /// Starts `threads` I/O threads (at least one).
    pub(super) fn start(threads: usize) -> io::Result<Self> {
        // SAFETY: plain eventfd creation; the fd is checked and owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let posted = Arc::new(Posted {
            done: Mutex::new(Vec::new()),
            // SAFETY: fd was just created and is owned by nothing else.
            efd: unsafe { OwnedFd::from_raw_fd(fd) },
        });
        let (tx, rx) = mpsc::channel::<Chain>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..threads.max(1))
            .map(|i| {
                let (rx, posted) = (rx.clone(), posted.clone());
                std::thread::Builder::new()
                    .name(format!("rs-writer-io-{i}"))
                    .spawn(move || io_thread(&rx, &posted))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ThreadDisk {
            queued: Vec::new(),
            jobs: Some(tx),
            posted,
            local: Vec::new(),
            timeout: None,
            read: None,
            threads,
        })
    }

    fn push(&mut self, chain: &[(Op, u64)]) {
        let mut io = Vec::with_capacity(2);
        for &(op, ud) in chain {
            match op {
                Op::Timeout { after } => self.timeout = Some((Instant::now() + after, ud)),
                Op::ReadEventfd { fd, into } => self.read = Some((fd, into, ud)),
                Op::Write { .. } | Op::Datasync { .. } => io.push((op, ud)),
            }
        }
        assert!(io.len() <= 2, "a chain is a write and its sync at most");
        if let Some(&first) = io.first() {
            let second = io.get(1).copied().unwrap_or(first);
            self.queued.push(Chain {
                ops: [first, second],
                len: io.len(),
            });
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        let jobs = self.jobs.as_ref().expect("I/O threads running");
        for chain in self.queued.drain(..) {
            jobs.send(chain)
                .map_err(|_| io::Error::other("the writer's I/O threads are gone"))?;
        }
        Ok(())
    }

    fn submit_and_wait(&mut self) -> io::Result<()> {
        self.submit()?;
        loop {
            if !self.local.is_empty()
                || !self
                    .posted
                    .done
                    .lock()
                    .expect("completions lock")
                    .is_empty()
            {
                return Ok(());
            }
            if let Some((at, ud)) = self.timeout
                && Instant::now() >= at
            {
                self.timeout = None;
                self.local.push((ud, -libc::ETIME));
                return Ok(());
            }
            let mut fds = [
                libc::pollfd {
                    fd: self.posted.efd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.read.map_or(-1, |(fd, _, _)| fd),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let left = self
                .timeout
                .map(|(at, _)| at.saturating_duration_since(Instant::now()));
            let ts = left.map(|d| libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            });
            let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
            // SAFETY: fds and ts are valid for the call; a negative fd is ignored.
            let r = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, tsp, std::ptr::null()) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            if fds[0].revents != 0 {
                let mut n: u64 = 0;
                // SAFETY: an open non-blocking eventfd and 8 valid bytes; resets it.
                unsafe { libc::read(fds[0].fd, (&raw mut n).cast(), 8) };
            }
            if fds[1].revents != 0
                && let Some((fd, into, ud)) = self.read
            {
                // SAFETY: the caller keeps `into` valid until this completion is reaped
                // (Disk::push); the eventfd is non-blocking.
                let n = unsafe { libc::read(fd, into.cast(), 8) };
                if n == 8 {
                    self.read = None;
                    self.local.push((ud, 8));
                } else if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::WouldBlock {
                        self.read = None;
                        self.local
                            .push((ud, -e.raw_os_error().unwrap_or(libc::EIO)));
                    }
                }
            }
        }
    }

    fn reap(&mut self, out: &mut Vec<(u64, i32)>) {
        out.append(&mut self.local);
        out.append(&mut self.posted.done.lock().expect("completions lock"));
    }
}

impl Drop for ThreadDisk {
    fn drop(&mut self) {
        // Closing the channel ends the threads once they finish what they hold.
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// An I/O thread: runs chains as they come, posting each operation's completion as
/// soon as it has one (a write's before its sync runs, so that the writer may gather
/// the next group meanwhile, as under io_uring).
fn io_thread(rx: &Mutex<mpsc::Receiver<Chain>>, posted: &Posted) {
    loop {
        let chain = match rx.lock().expect("jobs lock").recv() {
            Ok(c) => c,
            Err(_) => return,
        };
        let mut broken = false;
        for &(op, ud) in &chain.ops[..chain.len] {
            let res = if broken { -libc::ECANCELED } else { run(op) };
            // As IOSQE_IO_LINK: an error or a short write cancels the rest.
            broken = broken || res < 0 || matches!(op, Op::Write { len, .. } if (res as u32) < len);
            posted.post(ud, res);
        }
    }
}

/// One operation, as io_uring would complete it: the count, or `-errno`.
fn run(op: Op) -> i32 {
    // SAFETY: Disk::push's contract keeps `ptr..ptr+len` valid and untouched.
    let r = match op {
        Op::Write {
            fd,
            ptr,
            len,
            offset,
        } => unsafe { libc::pwrite(fd, ptr.cast(), len as usize, offset as libc::off_t) as i64 },
        Op::Datasync { fd } => {
            #[cfg(feature = "failpoints")]
            crate::wal::failpoints::before_sync();
            unsafe { libc::fdatasync(fd) as i64 }
        }
        Op::Timeout { .. } | Op::ReadEventfd { .. } => {
            unreachable!("timeouts and eventfd reads run on the writer thread")
        }
    };
    if r < 0 {
        -io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        r as i32
    }
}
