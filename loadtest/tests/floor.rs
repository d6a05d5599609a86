//! `loadtest floor` on a real disk: exact counts from the schedule, latencies that
//! contain the syncs they waited for, no files left behind, bad settings refused.

mod support;

use std::process::Command;

use support::{LOADTEST, serial, stdout_of, u};

fn floor(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let out = stdout_of(
        Command::new(LOADTEST)
            .args(["floor", "--dir"])
            .arg(dir)
            // 102,400 records/s in 1024-record batches: one batch every 10 ms.
            .args([
                "--rate", "102400", "-d", "1s", "--warmup", "200ms", "--json",
            ])
            .args(extra),
        "loadtest floor",
    );
    serde_json::from_slice(&out).expect("the report is JSON")
}

fn check(r: &serde_json::Value, mode: &str) {
    assert_eq!(r["mode"], mode, "{r}");
    // Batches 20..120 of the schedule fall in the measured second: 100 x 1024.
    assert_eq!(u(r, "records"), 102_400, "{r}");
    let syncs = u(r, "syncs");
    assert!((1..=100).contains(&syncs), "{r}");
    assert_eq!(u(r, "latency_us.count"), 100, "{r}");
    assert_eq!(u(r, "fdatasync_us.count"), syncs, "{r}");
    // Every byte of the window went through a sync: 100 batches of 1024 x 128 B. The
    // first measured sync may also carry warm-up batches that arrived while the sync
    // before it was slow (the report counts what each sync wrote), so whole batches
    // of the 20 warm-up ones may come on top, never a part of one.
    let per_sync = r["bytes_per_sync_mean"].as_f64().unwrap();
    let (window, batch) = (13_107_200.0, 131_072.0);
    let extra = per_sync * syncs as f64 - window;
    let whole = (extra / batch).round();
    assert!(
        (extra - whole * batch).abs() < 1.0 && (0.0..=20.0).contains(&whole),
        "{r}"
    );
    // A batch is acknowledged only after the fdatasync that covers it: its latency
    // holds at least that call (and the write before it).
    assert!(
        u(r, "latency_us.min") >= u(r, "fdatasync_us.min") + u(r, "write_us.min"),
        "{r}"
    );
    assert!(u(r, "latency_us.max") >= u(r, "fdatasync_us.max"), "{r}");
}

#[test]
fn the_ideal_writer_counts_every_scheduled_batch_and_waits_for_its_sync() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    check(&floor(dir.path(), &[]), "append");
    // 4 MiB files for the window's 13 MB: overwriting wraps to the start three times,
    // appending starts three new files.
    check(
        &floor(dir.path(), &["--overwrite", "--file-bytes", "4194304"]),
        "overwrite",
    );
    check(&floor(dir.path(), &["--file-bytes", "4194304"]), "append");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the data files are removed"
    );
}

#[test]
fn bad_settings_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["--rate", "0"][..], "--rate"),
        (&["--rate", "1000", "--batch", "0"][..], "--batch"),
        (&["--rate", "1000", "-d", "0s"][..], "--duration"),
    ] {
        let out = Command::new(LOADTEST)
            .args(["floor", "--dir"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
