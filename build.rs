//! Build facts for `ringstash_build_info`: the git commit the binary was built from.
//!
//! `RINGSTASH_REVISION` in the environment wins (a packager that knows the commit, such
//! as a Nix build from a flake, sets it); otherwise `git rev-parse`, if git and a
//! repository are there; otherwise `unknown` (a tarball, a sandbox without git). The
//! build never fails for want of git.

use std::{path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RINGSTASH_REVISION");
    let revision = std::env::var("RINGSTASH_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=RINGSTASH_REVISION={revision}");
}

/// The short commit id of HEAD, and a rerun whenever HEAD moves. Only files that exist
/// are named for rerun-if-changed: cargo reruns on every build for one that does not.
fn git_revision() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    // Only this package's own repository: a tarball unpacked inside some other
    // checkout must not take that one's commit.
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    if top.canonicalize().ok()? != here.canonicalize().ok()? {
        return None;
    }
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD itself (a checkout), the branch's ref (a commit) and packed-refs (where a
    // ref goes after `git gc`).
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    // The reflog, appended to by every commit, checkout and reset whether refs are
    // packed or loose: after `git gc` the loose ref is gone and a new commit writes a
    // file that was not watched.
    watch.push(git(&["rev-parse", "--git-path", "logs/HEAD"]));
    for path in watch.into_iter().flatten().map(PathBuf::from) {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(revision)
}
