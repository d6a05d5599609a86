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
        if let Some(s) = self.session.take() {
            s.join();
        }
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
        if let Some(s) = self.session.take() {
            s.join();
        }
    }
}
