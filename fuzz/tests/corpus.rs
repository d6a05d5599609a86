//! The bounded fuzz run of the normal test suite: every seed of every corpus and every
//! input a fuzzer once broke a target with (`regressions/`) goes through the same
//! target function the AFL binary runs, without AFL. A target's panic or failed
//! invariant fails the test, naming the file.

use std::path::{Path, PathBuf};

/// The files of `dir` (sorted), skipping dotfiles such as `.gitkeep`.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for target in fuzz::TARGETS {
        for file in inputs(&root.join(kind).join(target)) {
            let data = std::fs::read(&file).expect("read input");
            let caught = std::panic::catch_unwind(|| fuzz::run(target, &data));
            assert!(caught.is_ok(), "{target} failed on {}", file.display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_corpus_seed_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for target in fuzz::TARGETS {
        assert!(
            !inputs(&root.join("corpus").join(target)).is_empty(),
            "no seeds for {target}"
        );
        assert!(
            root.join("dict").join(format!("{target}.dict")).is_file(),
            "no dictionary for {target}"
        );
    }
    assert!(replay("corpus") > 0);
}

#[test]
fn every_kept_crash_passes_its_target() {
    replay("regressions");
}
