//! How every test harness starts `ringstash serve`: on ports it picks itself (port 0,
//! read back from its "listening" line), logging warnings only, stderr piped for the
//! harness to read. One file for `tests/common` and `loadtest/tests/support` (which
//! includes it by path), so that both start the server the same way.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
};

/// Spawns `bin serve --data-dir data_dir` on loopback port 0 with `extra` flags.
pub fn spawn_serve(bin: &Path, data_dir: &Path, extra: &[&str]) -> Child {
    Command::new(bin)
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--tcp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args([
            "--tcp-acked-addr",
            "127.0.0.1:0",
            "--syslog-addr",
            "127.0.0.1:0",
        ])
        .args(["--relp-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0"])
        .args(extra)
        .env("RINGSTASH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringstash serve")
}
