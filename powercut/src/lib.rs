//! # A power-cut harness for ringstash (issue 13)
//!
//! A SIGKILL keeps the page cache, so the kill loop cannot tell whether "acked =
//! durable" survives losing what was not synced. This crate mounts a FUSE
//! pass-through filesystem over a backing directory that remembers what was not made
//! durable (per file: writes since the last fsync/fdatasync; per directory: entries
//! made, renamed or removed since its last fsync) and, on a "power cut", unmounts and
//! drops exactly that, the way LazyFS does for Jepsen. The model is in [`model`] and
//! docs/reliability.md ("Power cut").
//!
//! # Layout
//! - [`model`]: the durability bookkeeping and the cut itself, apart from FUSE.
//! - [`fs`]: the FUSE filesystem (fuser), pass-through to the backing directory.
//! - [`Mount`]: mounts, cuts (unmount, roll back, mount again) and unmounts.
//! - `main.rs`: `powercut`, the kill loop of `loadtest` with a cut after every kill.

pub mod fs;
pub mod model;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::Context;
use fuser::{BackgroundSession, MountOption};

pub use model::CutReport;

/// A mounted power-cut filesystem.
pub struct Mount {
    /// Where it is mounted.
    mountpoint: PathBuf,
    /// The real bytes.
    backing: PathBuf,
    /// Removed entries until their removal is durable (beside `backing`).
    trash: PathBuf,
    /// The running session; `None` only inside [`Mount::cut`].
    session: Option<BackgroundSession>,
    /// The current mount's state (a new one per mount).
    shared: Arc<Mutex<fs::Shared>>,
    /// `O_DIRECT` opens seen over all mounts.
    direct_opens: u64,
}

impl Mount {
    /// Mounts `backing` (created if missing, wholly durable) at `mountpoint`, keeping
    /// removed entries in `trash` (same filesystem as `backing`).
    ///
    /// # Errors
    /// The directories cannot be made or the FUSE mount fails (no /dev/fuse, not root
    /// and no `fusermount3`).
    pub fn new(backing: &Path, mountpoint: &Path, trash: &Path) -> anyhow::Result<Mount> {
        for d in [backing, mountpoint, trash] {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        }
        let mut m = Mount {
            mountpoint: mountpoint.to_owned(),
            backing: backing.canonicalize()?,
            trash: trash.canonicalize()?,
            session: None,
            shared: Arc::new(Mutex::new(fs::Shared::new(PathBuf::new(), PathBuf::new()))),
            direct_opens: 0,
        };
        m.mount()?;
        Ok(m)
    }

    fn mount(&mut self) -> anyhow::Result<()> {
        self.shared = Arc::new(Mutex::new(fs::Shared::new(
            self.backing.clone(),
            self.trash.clone(),
        )));
        let fs = fs::PowerCutFs {
            shared: self.shared.clone(),
        };
        let opts = [
            MountOption::FSName("powercut".into()),
            MountOption::RW,
            MountOption::DefaultPermissions,
        ];
        self.session = Some(
            fuser::spawn_mount2(fs, &self.mountpoint, &opts)
                .with_context(|| format!("FUSE mount at {}", self.mountpoint.display()))?,
        );
        Ok(())
    }

    /// The power cut: unmounts (nothing may have the mount open: kill and reap the
    /// server first), drops from the backing directory everything not durable, mounts
    /// again with everything durable.
    ///
    /// # Errors
    /// The rollback or the new mount failed; the backing directory is then not a
    /// state a power cut could leave.
    pub fn cut(&mut self) -> anyhow::Result<CutReport> {
        self.abort()?;
        self.end_session()?;
        self.unmounted()?;
        let report = {
            let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            self.direct_opens += s.direct_opens;
            let paths = s.paths.clone();
            s.model
                .cut(|ino| paths.get(&ino).cloned())
                .context("roll back to the durable state")?
        };
        self.mount()?;
        Ok(report)
    }

    /// Drops the session (its lazy unmount) and waits for its thread to let go of the
    /// filesystem, so that no request is served while the cut changes the backing
    /// directory. Not `BackgroundSession::join`, which panics when the aborted
    /// session's loop ends with an error.
    fn end_session(&mut self) -> anyhow::Result<()> {
        drop(self.session.take());
        for _ in 0..500 {
            if Arc::strong_count(&self.shared) == 1 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        anyhow::bail!("the FUSE session did not end within 5 s of its abort")
    }

    /// Makes sure nothing is mounted at the mount point any more: after an abort the
    /// session's own lazy unmount can miss (the next mount then fails with ENOTCONN).
    fn unmounted(&self) -> anyhow::Result<()> {
        use std::os::unix::{ffi::OsStrExt, fs::MetadataExt};
        let parent = self.mountpoint.parent().unwrap_or(Path::new("/"));
        let parent_dev = std::fs::metadata(parent)?.dev();
        let c = std::ffi::CString::new(self.mountpoint.as_os_str().as_bytes())?;
        for _ in 0..500 {
            match std::fs::metadata(&self.mountpoint) {
                Ok(m) if m.dev() == parent_dev => return Ok(()),
                _ => {
                    // SAFETY: a valid C string.
                    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        anyhow::bail!("{} still mounted after 5 s", self.mountpoint.display())
    }

    /// Aborts the FUSE connection, the way power takes a disk away: requests still
    /// queued fail and the session ends. A lazy unmount alone can leave the session
    /// waiting forever: a killed server's io_uring is torn down asynchronously and may
    /// still hold the mount's files.
    fn abort(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let ctl = Path::new("/sys/fs/fuse/connections");
        if std::fs::read_dir(ctl).map_or(true, |mut d| d.next().is_none()) {
            // Not mounted yet (empty): fusectl, as root; fails harmlessly if it is.
            let _ = std::process::Command::new("mount")
                .args(["-t", "fusectl", "none"])
                .arg(ctl)
                .stderr(std::process::Stdio::null())
                .status();
        }
        let dev = std::fs::metadata(&self.mountpoint)
            .with_context(|| format!("stat {}", self.mountpoint.display()))?
            .dev();
        // The connection is named by the superblock's device number (major 0 for
        // FUSE, so the minor alone).
        let abort = ctl.join(libc::minor(dev).to_string()).join("abort");
        std::fs::write(&abort, b"1").with_context(|| format!("write {}", abort.display()))
    }

    /// `O_DIRECT` opens seen (each answered with `FOPEN_DIRECT_IO`), over all mounts
    /// so far including the current one.
    pub fn direct_opens(&self) -> u64 {
        self.direct_opens + self.shared.lock().map_or(0, |s| s.direct_opens)
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.session.is_some() {
            let _ = self.abort();
            let _ = self.end_session();
            let _ = self.unmounted();
        }
    }
}
