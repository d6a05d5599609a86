//! The FUSE pass-through filesystem: every operation is done on the backing directory
//! at once (so reads see what was written), and reported to the [`Model`] first, which
//! remembers how to undo what is not durable yet.
//!
//! Inodes are this mount's own numbers for backing paths (1 is the root), stable
//! across renames; the table lives as long as the mount. The kernel's `forget` is
//! ignored: a mount sees a few hundred files between two cuts.

use std::{
    collections::HashMap,
    ffi::OsStr,
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use crate::model::{Model, NameOp};

/// How long the kernel may cache attributes and names: every change goes through this
/// filesystem, and a cut remounts (dropping the kernel's caches), so caching is safe.
const TTL: Duration = Duration::from_secs(1);

/// `FOPEN_DIRECT_IO`: this open file bypasses the kernel's page cache.
const FOPEN_DIRECT_IO: u32 = 1;

/// The state one mount shares with the harness (which cuts it once unmounted).
#[derive(Debug)]
pub struct Shared {
    /// Durability bookkeeping.
    pub model: Model,
    /// Relative backing path of each inode.
    pub paths: HashMap<u64, PathBuf>,
    /// Inode of each relative backing path.
    pub inos: HashMap<PathBuf, u64>,
    /// The next inode number to give.
    pub next_ino: u64,
    /// Open files, by handle.
    pub files: HashMap<u64, (u64, File)>,
    /// The next handle.
    pub next_fh: u64,
    /// Opens that asked for `O_DIRECT` (answered with `FOPEN_DIRECT_IO`).
    pub direct_opens: u64,
}

impl Shared {
    /// A mount of `backing` with trash in `trash`, everything durable.
    pub fn new(backing: PathBuf, trash: PathBuf) -> Shared {
        let mut s = Shared {
            model: Model::new(backing, trash),
            paths: HashMap::new(),
            inos: HashMap::new(),
            next_ino: 2,
            files: HashMap::new(),
            next_fh: 1,
            direct_opens: 0,
        };
        s.paths.insert(1, PathBuf::new());
        s.inos.insert(PathBuf::new(), 1);
        s
    }

    fn ino_of(&mut self, rel: &Path) -> u64 {
        if let Some(&i) = self.inos.get(rel) {
            return i;
        }
        let i = self.next_ino;
        self.next_ino += 1;
        self.inos.insert(rel.to_owned(), i);
        self.paths.insert(i, rel.to_owned());
        i
    }

    fn rel(&self, ino: u64) -> Option<PathBuf> {
        self.paths.get(&ino).cloned()
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        self.model.backing.join(rel)
    }

    /// Moves the inode at `from` (and everything under it) to `to` in the tables.
    fn moved(&mut self, from: &Path, to: &Path) {
        let under: Vec<(PathBuf, u64)> = self
            .inos
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (p, i) in under {
            self.inos.remove(&p);
            let rest = p.strip_prefix(from).expect("filtered on the prefix");
            // `join("")` would add a trailing slash, which makes a file's path fail.
            let np = if rest.as_os_str().is_empty() {
                to.to_owned()
            } else {
                to.join(rest)
            };
            self.inos.insert(np.clone(), i);
            self.paths.insert(i, np);
        }
    }

    fn attr(&mut self, rel: &Path) -> io::Result<FileAttr> {
        let md = fs::symlink_metadata(self.abs(rel))?;
        let ino = self.ino_of(rel);
        Ok(to_attr(ino, &md))
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn to_attr(ino: u64, md: &fs::Metadata) -> FileAttr {
    let kind = if md.is_dir() {
        FileType::Directory
    } else if md.file_type().is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino,
        size: md.len(),
        blocks: md.blocks(),
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind,
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The filesystem the kernel talks to; all state is in [`Shared`].
pub struct PowerCutFs {
    /// Shared with the harness, which cuts the model after unmounting.
    pub shared: Arc<Mutex<Shared>>,
}

impl PowerCutFs {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.lock();
        let Some(dir) = s.rel(parent) else {
            return reply.error(libc::ENOENT);
        };
        match s.attr(&dir.join(name)) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let mut s = self.lock();
        let Some(rel) = s.rel(ino) else {
            return reply.error(libc::ENOENT);
        };
        match s.attr(&rel) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut s = self.lock();
        let Some(rel) = s.rel(ino) else {
            return reply.error(libc::ENOENT);
        };
        let path = s.abs(&rel);
        let r = (|| -> io::Result<()> {
            if let Some(m) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(m & 0o7777))?;
            }
            if let Some(len) = size {
                let f = OpenOptions::new().read(true).write(true).open(&path)?;
                s.model.before_set_len(ino, &f, len)?;
                f.set_len(len)?;
            }
            Ok(())
        })();
        match r.and_then(|()| s.attr(&rel)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let Some(dir) = s.rel(parent) else {
            return reply.error(libc::ENOENT);
        };
        let rel = dir.join(name);
        match fs::create_dir(s.abs(&rel)).and_then(|()| s.attr(&rel)) {
            Ok(a) => {
                s.model.journal(NameOp::Created { path: rel }, &[parent]);
                reply.entry(&TTL, &a, 0)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        remove(&mut self.lock(), parent, name, false, reply)
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        remove(&mut self.lock(), parent, name, true, reply)
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if flags != 0 {
            // RENAME_NOREPLACE / EXCHANGE: not used by ringstash, not modelled.
            return reply.error(libc::EINVAL);
        }
        let mut s = self.lock();
        let (Some(d1), Some(d2)) = (s.rel(parent), s.rel(newparent)) else {
            return reply.error(libc::ENOENT);
        };
        let (from, to) = (d1.join(name), d2.join(newname));
        let r = (|| -> io::Result<Option<PathBuf>> {
            let replaced = if fs::symlink_metadata(s.abs(&to)).is_ok() {
                let t = s.model.trash_path();
                fs::rename(s.abs(&to), &t)?;
                Some(t)
            } else {
                None
            };
            if let Err(e) = fs::rename(s.abs(&from), s.abs(&to)) {
                if let Some(t) = &replaced {
                    let _ = fs::rename(t, s.abs(&to));
                }
                return Err(e);
            }
            Ok(replaced)
        })();
        match r {
            Ok(replaced) => {
                if let Some(old) = s.inos.remove(&to) {
                    // The replaced inode now lives in the trash (for its rollback).
                    let t = replaced.clone().expect("a replaced name was trashed");
                    let t = t
                        .strip_prefix(&s.model.backing)
                        .map(Path::to_owned)
                        .unwrap_or_else(|_| relative_to(&s.model.backing, &t));
                    s.paths.insert(old, t);
                }
                s.moved(&from, &to);
                s.model
                    .journal(NameOp::Renamed { from, to, replaced }, &[parent, newparent]);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let mut s = self.lock();
        let Some(rel) = s.rel(ino) else {
            return reply.error(libc::ENOENT);
        };
        match open_backing(&s.abs(&rel), flags, false) {
            Ok(f) => {
                let fh = s.next_fh;
                s.next_fh += 1;
                s.files.insert(fh, (ino, f));
                reply.opened(fh, open_flags(&mut s, flags))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.lock();
        let Some(dir) = s.rel(parent) else {
            return reply.error(libc::ENOENT);
        };
        let rel = dir.join(name);
        let existed = fs::symlink_metadata(s.abs(&rel)).is_ok();
        let r = open_backing(&s.abs(&rel), flags, true).and_then(|f| {
            if !existed {
                f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
            }
            Ok(f)
        });
        match r.and_then(|f| Ok((f, s.attr(&rel)?))) {
            Ok((f, a)) => {
                if !existed {
                    s.model.created_file(a.ino);
                    s.model.journal(NameOp::Created { path: rel }, &[parent]);
                }
                let fh = s.next_fh;
                s.next_fh += 1;
                s.files.insert(fh, (a.ino, f));
                let fl = open_flags(&mut s, flags);
                reply.created(&TTL, &a, 0, fh, fl)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let s = self.lock();
        let Some((_, f)) = s.files.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match f.read_at(&mut buf[got..], offset as u64 + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(&e)),
            }
        }
        reply.data(&buf[..got])
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut s = self.lock();
        let Shared { files, model, .. } = &mut *s;
        let Some((ino, f)) = files.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        let r = model
            .before_write(*ino, f, offset as u64, data.len() as u64)
            .and_then(|()| f.write_all_at(data, offset as u64));
        match r {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        // close() is not a sync: nothing becomes durable.
        reply.ok()
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().files.remove(&fh);
        reply.ok()
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // The backing file is not synced: durability is the model's, not the disk's.
        self.lock().model.synced(ino);
        reply.ok()
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = self.lock();
        let Some(dir) = s.rel(ino) else {
            return reply.error(libc::ENOENT);
        };
        let rd = match fs::read_dir(s.abs(&dir)) {
            Ok(rd) => rd,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut entries = vec![
            (ino, FileType::Directory, OsStr::new(".").to_owned()),
            (1, FileType::Directory, OsStr::new("..").to_owned()),
        ];
        for e in rd.flatten() {
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => FileType::Directory,
                Ok(t) if t.is_symlink() => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            let i = s.ino_of(&dir.join(e.file_name()));
            entries.push((i, kind, e.file_name()));
        }
        for (n, (i, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(i, (n + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        self.lock().model.synced_dir(ino);
        reply.ok()
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let s = self.lock();
        let c = std::ffi::CString::new(s.model.backing.as_os_str().as_encoded_bytes())
            .expect("no NUL in a path");
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and a zeroed out-parameter of the right type.
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return reply.error(errno(&io::Error::last_os_error()));
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            st.f_namemax as u32,
            st.f_frsize as u32,
        )
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok()
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let Shared { files, model, .. } = &mut *s;
        let Some((_, f)) = files.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        // Plain allocation (0 or KEEP_SIZE) changes no byte; a punch or zero range
        // overwrites, so its old bytes are saved like a write's.
        let overwrites = mode & !libc::FALLOC_FL_KEEP_SIZE != 0;
        if overwrites && let Err(e) = model.before_write(ino, f, offset as u64, length as u64) {
            return reply.error(errno(&e));
        }
        if !overwrites && mode & libc::FALLOC_FL_KEEP_SIZE == 0 {
            // Only the length changes; noted so a cut restores it.
            if let Err(e) = model.before_set_len(ino, f, f.metadata().map_or(0, |m| m.len())) {
                return reply.error(errno(&e));
            }
        }
        use std::os::fd::AsRawFd;
        // SAFETY: an open descriptor and plain integers.
        let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, offset, length) };
        if r != 0 {
            return reply.error(errno(&io::Error::last_os_error()));
        }
        reply.ok()
    }
}

/// Removes `name` from directory `parent` by moving it to the trash, journalled.
fn remove(s: &mut Shared, parent: u64, name: &OsStr, dir: bool, reply: ReplyEmpty) {
    let Some(d) = s.rel(parent) else {
        return reply.error(libc::ENOENT);
    };
    let rel = d.join(name);
    let abs = s.abs(&rel);
    let r = (|| -> io::Result<()> {
        let md = fs::symlink_metadata(&abs)?;
        if dir {
            if !md.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            if fs::read_dir(&abs)?.next().is_some() {
                return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
            }
        } else if md.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        Ok(())
    })();
    if let Err(e) = r {
        return reply.error(errno(&e));
    }
    let trash = s.model.trash_path();
    if let Err(e) = fs::rename(&abs, &trash) {
        return reply.error(errno(&e));
    }
    let trash_rel = relative_to(&s.model.backing, &trash);
    s.moved(&rel, &trash_rel);
    s.model
        .journal(NameOp::Removed { path: rel, trash }, &[parent]);
    reply.ok()
}

/// `to` as a path relative to `base` (with `..`), for inodes moved to the trash.
fn relative_to(base: &Path, to: &Path) -> PathBuf {
    let mut up = PathBuf::new();
    let mut b = base;
    loop {
        if let Ok(rest) = to.strip_prefix(b) {
            return up.join(rest);
        }
        up.push("..");
        b = b.parent().expect("base and trash share the root");
    }
}

/// Opens the backing file for a FUSE open: same access mode, without `O_DIRECT` (the
/// durability is modelled, the backing disk's cache does not matter) nor the flags the
/// kernel has already acted on.
fn open_backing(path: &Path, flags: i32, create: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    match flags & libc::O_ACCMODE {
        libc::O_RDONLY => o.read(true),
        libc::O_WRONLY => o.write(true),
        _ => o.read(true).write(true),
    };
    if create {
        o.create(true);
    }
    // Reads for the undo log need the file readable even when opened write-only.
    o.read(true);
    o.custom_flags(flags & libc::O_CLOEXEC).open(path)
}

/// The open flags to answer: `FOPEN_DIRECT_IO` for an `O_DIRECT` open, so that its
/// writes bypass the kernel's cache here too.
fn open_flags(s: &mut Shared, flags: i32) -> u32 {
    if flags & libc::O_DIRECT != 0 {
        s.direct_opens += 1;
        FOPEN_DIRECT_IO
    } else {
        0
    }
}
