//! Shared test helpers: the real `ringstash serve` on free loopback ports in a temp
//! data directory, and the `loadtest` binary run with `--json`.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

#[path = "../../../tests/common/spawn_serve.rs"]
mod spawn_serve;

mod bin;
pub use bin::ringstash_bin;

pub const LOADTEST: &str = env!("CARGO_BIN_EXE_loadtest");

/// Timing-sensitive tests take this so they do not share the 2 cores with each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, close).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A running `ringstash serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub tcp: String,
    pub http: String,
    pub ws: String,
    pub data_dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts with extra `serve` flags, on ports the server picks itself (port 0), read
    /// back from its "listening" line: ports picked here and passed in could be taken
    /// by another test's server in between.
    pub fn start_with(extra: &[&str]) -> Server {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut child = spawn_serve::spawn_serve(ringstash_bin(), data_dir.path(), extra);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        // Reads stderr to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut line = String::new();
            while matches!(stderr.read_line(&mut line), Ok(n) if n > 0) {
                if line.starts_with("listening ") {
                    let _ = tx.send(line.clone());
                }
                line.clear();
            }
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
            let st = child.try_wait();
            let _ = child.kill();
            panic!("ringstash serve did not start listening (exit: {st:?})");
        };
        let addr = |key: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                .to_owned()
        };
        Server {
            tcp: addr("tcp_acked="),
            http: addr("http="),
            ws: addr("ws="),
            child,
            data_dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Records stored, by `ringstash cat --data-dir D | wc -l`.
    pub fn stored_records(&self) -> u64 {
        let out = stdout_of(
            Command::new(ringstash_bin())
                .args(["cat", "--data-dir"])
                .arg(self.data_dir.path()),
            "ringstash cat",
        );
        out.iter().filter(|&&b| b == b'\n').count() as u64
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to its end and returns its stdout.
///
/// # Panics
/// If it cannot be started, or exits unsuccessfully (the message holds `what` and
/// its stderr).
pub fn stdout_of(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Polls `cond` every 20 ms until it holds.
///
/// # Panics
/// If it does not within 30 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `loadtest run ARGS --json -q` to its end.
fn run_json(args: &[&str]) -> std::process::Output {
    Command::new(LOADTEST)
        .arg("run")
        .args(args)
        .args(["--json", "-q"])
        .output()
        .expect("run loadtest")
}

/// Runs `loadtest run ARGS --json -q` and returns the parsed report.
pub fn loadtest_json(args: &[&str]) -> serde_json::Value {
    let out = run_json(args);
    // The report (stdout) is printed even when the run fails: keep it in the message,
    // it says whether the producer lost a connection (errors, reconnects) or a
    // subscriber missed records.
    assert!(
        out.status.success(),
        "loadtest {args:?} failed: {}\nreport: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs `loadtest run ARGS --json -q`: exit code, parsed report (`Null` if stdout
/// is not JSON), stderr.
pub fn loadtest_run(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = run_json(args);
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`loadtest_json`] with the arguments as one whitespace-separated string.
pub fn lt(args: &str) -> serde_json::Value {
    loadtest_json(&args.split_whitespace().collect::<Vec<_>>())
}

/// The value at a dotted `path` (`latency_us.p99`) in `v`.
fn at<'a>(v: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    path.split('.').fold(v, |cur, k| &cur[k])
}

/// The unsigned integer at a dotted `path` in `v`.
///
/// # Panics
/// If there is none.
pub fn u(v: &serde_json::Value, path: &str) -> u64 {
    at(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not a u64 in {v}"))
}

/// The number at a dotted `path` in `v`.
///
/// # Panics
/// If there is none.
pub fn f(v: &serde_json::Value, path: &str) -> f64 {
    at(v, path)
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}
