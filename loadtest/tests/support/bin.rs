//! The debug `ringstash` binary for tests outside its package (loadtest's, and
//! powercut's, which include this file by path): built once per test process unless it
//! is newer than its sources.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The workspace's target directory.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// Newest modification time of the files ringstash is built from.
fn newest_source(root: &Path) -> std::time::SystemTime {
    fn walk(p: &Path, newest: &mut std::time::SystemTime) {
        let Ok(meta) = std::fs::metadata(p) else {
            return;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), newest);
            }
        } else if let Ok(m) = meta.modified() {
            *newest = (*newest).max(m);
        }
    }
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for p in ["src", "Cargo.toml", "Cargo.lock"] {
        walk(&root.join(p), &mut newest);
    }
    newest
}

/// Path of the `ringstash` binary (debug), built once per test process unless it
/// is newer than its sources (as after `cargo test --workspace`, which builds it:
/// building it again with `-p ringstash` alone could unify features differently and
/// relink it for nothing).
pub fn ringstash_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = target_dir().join("debug/ringstash");
        let fresh = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .is_ok_and(|built| built >= newest_source(&root));
        if !fresh {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-q", "-p", "ringstash", "--bin", "ringstash"])
                .current_dir(&root)
                .status()
                .expect("run cargo build -p ringstash");
            assert!(st.success(), "cargo build -p ringstash failed");
        }
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
}
