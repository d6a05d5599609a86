//! What the power-cut filesystem remembers about durability, apart from FUSE: per
//! file, how to roll its bytes back to the last fsync/fdatasync; per directory
//! operation (create, mkdir, rename, unlink, rmdir), how to undo it until an fsync of
//! every directory it touched. [`Model::cut`] applies both to the backing directory.
//!
//! The model (docs/reliability.md, "Power cut"):
//! - **Data and size**: a file's durable content is its content at its last `fsync`
//!   or `fdatasync` (both count for data and size). Every write or truncate since is
//!   volatile and is dropped *whole* by a cut: the harshest outcome a real disk
//!   allows, not the only one (no torn sector, no partially surviving tail).
//! - **Names**: an entry made or removed in a directory (create, mkdir, unlink, rmdir,
//!   either side of a rename) is durable only once every directory it touched was
//!   fsynced (`fsyncdir`); a cut reverts every operation that is not, newest first. An
//!   fsync of the *file* does not make its name durable (ext4 often does; POSIX does
//!   not promise it).
//! - At mount everything in the backing directory is durable.

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

/// The undo state of one file modified since its last fsync (by inode of the mount).
#[derive(Debug, Default)]
pub struct Volatile {
    /// The file's length as of its last fsync (or when first modified in this mount).
    pub durable_len: u64,
    /// Old bytes of every region below `durable_len` overwritten since, in order:
    /// applied newest first, the oldest copy of each byte (its durable value) wins.
    pub undo: Vec<(u64, Vec<u8>)>,
}

/// One directory operation not yet known durable.
#[derive(Debug)]
pub enum NameOp {
    /// A file or directory made at `path`.
    Created { path: PathBuf },
    /// `from` renamed to `to`; what `to` named before, if anything, was moved to
    /// `replaced` (the trash) so that a revert can put it back.
    Renamed {
        from: PathBuf,
        to: PathBuf,
        replaced: Option<PathBuf>,
    },
    /// The file or empty directory at `path` removed: moved to `trash`.
    Removed { path: PathBuf, trash: PathBuf },
}

/// A journalled directory operation and the directories still to be fsynced before it
/// is durable.
#[derive(Debug)]
pub struct Journalled {
    /// What was done (paths relative to the backing directory).
    pub op: NameOp,
    /// Inodes of the directories it touched that have not been fsynced since.
    pub pending: Vec<u64>,
}

/// What a cut did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose volatile writes or size changes were rolled back.
    pub files_rolled_back: u64,
    /// Bytes of volatile writes restored to their durable value.
    pub bytes_restored: u64,
    /// Directory operations reverted (not fsynced).
    pub names_reverted: u64,
    /// Directory operations kept (fsynced).
    pub names_kept: u64,
}

/// The durability state of one mount. Lives exactly as long as the mount: after a cut
/// the backing directory *is* the durable state, so the next mount starts empty.
#[derive(Debug)]
pub struct Model {
    /// The directory holding the real bytes.
    pub backing: PathBuf,
    /// Where removed and replaced entries wait until their removal is durable (same
    /// filesystem as `backing`, outside it).
    pub trash: PathBuf,
    /// Files modified since their last fsync, by inode.
    pub volatile: HashMap<u64, Volatile>,
    /// Directory operations, oldest first.
    pub journal: Vec<Journalled>,
    /// Names given to trashed entries.
    pub trash_seq: u64,
}

impl Model {
    /// A model of a mount whose backing directory is wholly durable.
    pub fn new(backing: PathBuf, trash: PathBuf) -> Model {
        Model {
            backing,
            trash,
            volatile: HashMap::new(),
            journal: Vec::new(),
            trash_seq: 0,
        }
    }

    /// A fresh trash path (absolute).
    pub fn trash_path(&mut self) -> PathBuf {
        self.trash_seq += 1;
        self.trash.join(self.trash_seq.to_string())
    }

    /// Before a write of `len` bytes at `offset` to inode `ino`, whose backing file is
    /// `file`: saves the durable bytes it overwrites.
    ///
    /// # Errors
    /// The backing file could not be read.
    pub fn before_write(&mut self, ino: u64, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let cur_len = file.metadata()?.len();
        let v = self.volatile_of(ino, file)?;
        // Bytes between the current and the durable length were saved by the
        // truncate that removed them; only those still in the file are read.
        let end = (offset + len).min(v.durable_len).min(cur_len);
        if offset < end {
            let mut old = vec![0u8; (end - offset) as usize];
            file.read_exact_at(&mut old, offset)?;
            v.undo.push((offset, old));
        }
        Ok(())
    }

    /// Before inode `ino` is truncated or extended to `new_len`: saves the durable
    /// bytes a shrink drops (an extension only adds bytes past the durable length).
    ///
    /// # Errors
    /// The backing file could not be read.
    pub fn before_set_len(&mut self, ino: u64, file: &File, new_len: u64) -> io::Result<()> {
        let cur_len = file.metadata()?.len();
        let v = self.volatile_of(ino, file)?;
        // As in a write: what an earlier shrink cut is saved already.
        let end = v.durable_len.min(cur_len);
        if new_len < end {
            let mut old = vec![0u8; (end - new_len) as usize];
            file.read_exact_at(&mut old, new_len)?;
            v.undo.push((new_len, old));
        }
        Ok(())
    }

    /// A file created empty in this mount: nothing of it is durable but its length 0.
    pub fn created_file(&mut self, ino: u64) {
        self.volatile.insert(ino, Volatile::default());
    }

    /// fsync or fdatasync of inode `ino`: its current content is durable.
    pub fn synced(&mut self, ino: u64) {
        self.volatile.remove(&ino);
    }

    /// fsyncdir of directory inode `dir`: every operation that touched it has one
    /// directory fewer to wait for.
    pub fn synced_dir(&mut self, dir: u64) {
        for j in &mut self.journal {
            j.pending.retain(|&d| d != dir);
        }
    }

    /// Journals a directory operation that touched the directories `dirs`.
    pub fn journal(&mut self, op: NameOp, dirs: &[u64]) {
        let mut pending = dirs.to_vec();
        pending.dedup();
        self.journal.push(Journalled { op, pending });
    }

    fn volatile_of(&mut self, ino: u64, file: &File) -> io::Result<&mut Volatile> {
        match self.volatile.entry(ino) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                // First change since the last sync (or the mount): what is there is durable.
                let durable_len = file.metadata()?.len();
                Ok(e.insert(Volatile {
                    durable_len,
                    undo: Vec::new(),
                }))
            }
        }
    }

    /// The power cut, on an unmounted backing directory: rolls every volatile file
    /// back to its durable bytes and length (`path_of` gives each inode's current
    /// backing path, relative; `None` for one no longer anywhere), then reverts every
    /// directory operation not fsynced, newest first, and empties the trash of
    /// removals that were durable.
    ///
    /// # Errors
    /// The backing directory could not be changed; the cut is then incomplete and the
    /// run must stop.
    pub fn cut(&mut self, path_of: impl Fn(u64) -> Option<PathBuf>) -> io::Result<CutReport> {
        let mut report = CutReport::default();
        for (ino, v) in self.volatile.drain() {
            let Some(rel) = path_of(ino) else { continue };
            let path = self.backing.join(&rel);
            let file = match OpenOptions::new().write(true).open(&path) {
                Ok(f) => f,
                // Its name was removed and its trash entry is gone: nothing to restore.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(with_path(e, "open for rollback", &path)),
            };
            for (off, old) in v.undo.iter().rev() {
                file.write_all_at(old, *off)
                    .map_err(|e| with_path(e, "restore", &path))?;
                report.bytes_restored += old.len() as u64;
            }
            file.set_len(v.durable_len)
                .map_err(|e| with_path(e, "truncate to durable length", &path))?;
            report.files_rolled_back += 1;
        }
        for j in self.journal.drain(..).rev() {
            let durable = j.pending.is_empty();
            let b = |p: &Path| self.backing.join(p);
            match (j.op, durable) {
                (NameOp::Created { path }, false) => {
                    let p = b(&path);
                    let r = if p.is_dir() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                    match r {
                        Ok(()) => {}
                        // Already gone with a directory whose removal was durable.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(with_path(e, "revert create", &p)),
                    }
                    report.names_reverted += 1;
                }
                (NameOp::Renamed { from, to, replaced }, false) => {
                    fs::rename(b(&to), b(&from))
                        .map_err(|e| with_path(e, "revert rename", &b(&to)))?;
                    if let Some(t) = replaced {
                        fs::rename(&t, b(&to)).map_err(|e| with_path(e, "restore replaced", &t))?;
                    }
                    report.names_reverted += 1;
                }
                (NameOp::Removed { path, trash }, false) => {
                    let to = b(&path);
                    if to.parent().is_some_and(Path::exists) {
                        fs::rename(&trash, &to).map_err(|e| with_path(e, "revert removal", &to))?;
                        report.names_reverted += 1;
                    } else {
                        // Its directory's own removal was durable (an unlink inside a
                        // directory, then the directory removed and its parent
                        // synced): nothing can name the entry again.
                        remove_any(&trash)?;
                        report.names_kept += 1;
                    }
                }
                (NameOp::Renamed { replaced, .. }, true) => {
                    if let Some(t) = replaced {
                        remove_any(&t)?;
                    }
                    report.names_kept += 1;
                }
                (NameOp::Removed { trash, .. }, true) => {
                    remove_any(&trash)?;
                    report.names_kept += 1;
                }
                (NameOp::Created { .. }, true) => report.names_kept += 1,
            }
        }
        Ok(report)
    }
}

fn remove_any(p: &Path) -> io::Result<()> {
    let r = if p.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    };
    r.map_err(|e| with_path(e, "empty trash", p))
}

fn with_path(e: io::Error, op: &str, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", p.display()))
}
