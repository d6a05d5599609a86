//! How every test harness starts `ringstash serve`: on ports it picks itself (port 0,
//! read back from its "listening" line), logging warnings only, stderr piped for the
//! harness to read. One file for `tests/common` and `loadtest/tests/support` (which
//! includes it by path), so that both start the server the same way.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
};

/// Every listener's flag, on loopback port 0 unless a test gives its own address.
const PORT_ZERO: [&str; 6] = [
    "--tcp-addr",
    "--tcp-acked-addr",
    "--syslog-addr",
    "--relp-addr",
    "--http-addr",
    "--ws-addr",
];

/// The `serve` command for `data_dir` with `extra` flags; every listener that `extra`
/// does not place (a restart on the same port passes its address) goes on loopback
/// port 0.
pub fn serve_command(bin: &Path, data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--data-dir"]).arg(data_dir);
    for flag in PORT_ZERO.into_iter().filter(|f| !extra.contains(f)) {
        cmd.args([flag, "127.0.0.1:0"]);
    }
    cmd.args(extra)
        .env("RINGSTASH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Spawns `bin serve --data-dir data_dir` with `extra` flags (see [`serve_command`]).
pub fn spawn_serve(bin: &Path, data_dir: &Path, extra: &[&str]) -> Child {
    serve_command(bin, data_dir, extra)
        .spawn()
        .expect("spawn ringstash serve")
}
