//! Test harness: the real `ringstash serve` binary on ephemeral loopback ports in a
//! temp data directory, and minimal real clients (raw TCP, HTTP/1.1 over TcpStream).
#![allow(dead_code)]

pub mod browser;
pub mod certs;
pub mod otlp;
pub mod rsyslog;
pub mod seccomp;
mod spawn_serve;
#[allow(unused_imports)]
pub use spawn_serve::serve_command;
pub mod wal;
pub mod ws;

use std::{
    ffi::CString,
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringstash");

/// A running server.
pub struct Server {
    pub child: Child,
    /// The one-way raw TCP listener (nothing is written back).
    pub tcp: SocketAddr,
    /// The raw TCP listener with acks.
    pub tcp_acked: SocketAddr,
    /// Syslog over TCP.
    pub syslog: SocketAddr,
    /// RELP.
    pub relp: SocketAddr,
    pub http: SocketAddr,
    pub ws: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// Everything the server printed on stderr so far.
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `ringstash serve` on `data_dir` with extra flags; waits for "listening".
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_env(data_dir, extra, &[])
    }

    /// As [`Server::start`], with environment variables for the server alone (such as
    /// `RINGSTASH_FAILPOINTS`: set on the process, it would reach every server other
    /// tests start meanwhile).
    pub fn start_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::try_start_env(data_dir, extra, env)
            .unwrap_or_else(|stderr| panic!("server did not start; stderr:\n{stderr}"))
    }

    /// Starts on `data_dir` with `extra` (naming fixed ports) after a SIGKILL of the
    /// server that held them, retrying for up to 10 s while a port is still in use:
    /// the dead server's io_uring instance is torn down by the kernel after the
    /// process is reaped, and until then its listening sockets (held by their pending
    /// accepts) still exist (measured: about 30 ms). A supervisor restarting it at
    /// once meets the same.
    pub fn restart_after_kill(data_dir: &Path, extra: &[&str]) -> Server {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Server::try_start_env(data_dir, extra, &[]) {
                Ok(s) => return s,
                Err(e) if e.contains("Address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("server did not restart; stderr:\n{e}"),
            }
        }
    }

    /// Starts as [`Server::start_env`] does; the server's stderr if it does not listen.
    pub fn try_start_env(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        Server::try_start_with(data_dir, extra, env, |_| {})
    }

    /// As [`Server::try_start_env`], with `prepare` applied to the command before it
    /// is spawned (e.g. [`seccomp::block_io_uring`]).
    pub fn try_start_with(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&mut Command),
    ) -> Result<Server, String> {
        let mut cmd = spawn_serve::serve_command(Path::new(BIN), data_dir, extra);
        cmd.envs(env.iter().copied());
        prepare(&mut cmd);
        let mut child = cmd.spawn().expect("spawn ringstash serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        sink.lock().unwrap().push_str(&line);
                        if line.starts_with("listening ") {
                            let _ = tx.send(line.clone());
                        }
                    }
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(stderr.lock().unwrap().clone());
            }
        };
        let addr = |key: &str| -> Option<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(|a| a.parse().expect("address"))
        };
        Ok(Server {
            child,
            tcp: addr("tcp=").expect("tcp address"),
            tcp_acked: addr("tcp_acked=").expect("tcp_acked address"),
            syslog: addr("syslog=").expect("syslog address"),
            relp: addr("relp=").expect("relp address"),
            http: addr("http=").expect("http address"),
            ws: addr("ws="),
            data_dir: data_dir.to_owned(),
            stderr,
        })
    }

    /// Starts `ringstash serve` on a new temp dir; returns the dir (keep it alive) too.
    pub fn start_in_tempdir(extra: &[&str]) -> (tempfile::TempDir, Server) {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), extra);
        (dir, server)
    }

    /// The syslog UDP socket's address, from the listening line (a server started
    /// with `--syslog-udp-addr`).
    pub fn syslog_udp(&self) -> SocketAddr {
        self.stderr_text()
            .split_whitespace()
            .find_map(|w| w.strip_prefix("syslog_udp="))
            .expect("the listening line names the UDP socket")
            .parse()
            .unwrap()
    }

    /// SIGTERM, then waits; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_timeout(&mut self.child, Duration::from_secs(30))
            .expect("server did not stop within 30 s")
    }

    /// SIGKILL, then waits.
    pub fn kill9(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Segments of 64 KiB, groups of 16 KiB and records of at most 1 KiB: a few thousand
/// short records rotate many times.
pub const SMALL_SEGMENTS: [&str; 6] = [
    "--segment-bytes-max",
    "65536",
    "--group-bytes-max",
    "16384",
    "--record-bytes-max",
    "1024",
];

/// [`SMALL_SEGMENTS`] followed by `more` flags.
pub fn small_segments_and(more: &[&'static str]) -> Vec<&'static str> {
    [SMALL_SEGMENTS.as_slice(), more].concat()
}

/// Runs `cmd` to its end; fails the test, with what it printed on stderr, unless it
/// exited 0.
#[track_caller]
pub fn run_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Fails, showing `text`, unless it contains `part`.
#[track_caller]
pub fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "{part:?} not in {text:?}");
}

/// The value of the series `name` in `/metrics`, written as the exposition writes it:
/// the family's name and, for a labelled family, its labels in their declared order
/// (`ringstash_records_received_total{protocol="tcp"}`). Fails if it is absent or not
/// a whole number (see [`metric_f64`] for the `_seconds` families).
#[track_caller]
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let v = metric_text(addr, name);
    v.parse().unwrap_or_else(|e| panic!("{name} {v}: {e}"))
}

/// The value of the series `name` in `/metrics` as a number that may have a fraction
/// (the `_seconds` families).
#[track_caller]
pub fn metric_f64(addr: SocketAddr, name: &str) -> f64 {
    let v = metric_text(addr, name);
    v.parse().unwrap_or_else(|e| panic!("{name} {v}: {e}"))
}

#[track_caller]
fn metric_text(addr: SocketAddr, name: &str) -> String {
    let m = metrics(addr);
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{m}"))
        .to_string()
}

/// Each JSON record's `keys`, joined by `|` (strings as they are, other values as
/// JSON; a missing key as `null`), for comparing the fields of many records at once.
pub fn columns(records: &[serde_json::Value], keys: &[&str]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let cell = |k: &&str| match &r[*k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            keys.iter().map(cell).collect::<Vec<_>>().join("|")
        })
        .collect()
}

/// `ringstash cat --meta` as (offset, payload) pairs.
pub fn cat(data_dir: &Path) -> Vec<(u64, String)> {
    let out = run_ok(
        Command::new(BIN)
            .args(["cat", "--meta", "--data-dir"])
            .arg(data_dir),
        "cat",
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let off = parts.next().unwrap().parse().unwrap();
            let _ts = parts.next().unwrap();
            (off, parts.next().unwrap_or("").to_owned())
        })
        .collect()
}

/// The payloads `ringstash cat` prints, in offset order.
pub fn stored_payloads(data_dir: &Path) -> Vec<String> {
    cat(data_dir).into_iter().map(|r| r.1).collect()
}

/// Parses "ack <count> <last>" lines; returns the last one seen.
pub fn last_ack(text: &str) -> Option<(u64, u64)> {
    text.lines().filter_map(parse_ack).next_back()
}

pub fn parse_ack(line: &str) -> Option<(u64, u64)> {
    let mut w = line.split_whitespace();
    if w.next()? != "ack" {
        return None;
    }
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

/// An acked TCP connection to `addr` that has sent `x\n` and read its ack: accepted
/// and counted by the server, however slowly its reactors got to it. Returns the
/// connection (30 s read timeout) and the ack's (count, last offset).
pub fn held_acked_connection(addr: SocketAddr) -> (BufReader<TcpStream>, Option<(u64, u64)>) {
    let mut c = BufReader::new(TcpStream::connect(addr).expect("connect"));
    c.get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    c.get_mut().write_all(b"x\n").unwrap();
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    (c, parse_ack(&line))
}

/// Sends `payload` on a new TCP connection, half-closes, returns all the server said.
pub fn tcp_send_all(addr: SocketAddr, payload: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(payload).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read acks");
    out
}

/// Sends `payload` as in [`tcp_send_all`]; the record count of the last ack, if any.
pub fn acked_count(addr: SocketAddr, payload: &str) -> Option<u64> {
    last_ack(&tcp_send_all(addr, payload.as_bytes())).map(|a| a.0)
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads one HTTP response from a buffered stream; None on EOF before a status line.
pub fn read_response(r: &mut BufReader<TcpStream>) -> Option<HttpResponse> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(&head).expect("valid response head");
    let status = resp.code.unwrap();
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

/// One request on a fresh connection.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(&request(method, path, headers, body)).unwrap();
    read_response(&mut BufReader::new(s)).expect("a response")
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A size-limited tmpfs (or a ramfs, which has no direct I/O), unmounted on drop, also
/// when a test fails.
pub struct Tmpfs {
    target: CString,
    path: PathBuf,
    /// The temp dir [`Tmpfs::mount`] made to mount on; removed after the unmount (fields
    /// drop after [`Drop::drop`]).
    _dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// Mounts on a new temp dir; None (with a printed SKIP reason) where the machine does
    /// not allow mounting.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        Tmpfs::mount_new("tmpfs", &format!("size={size}"))
    }

    /// A ramfs on a new temp dir: a filesystem that refuses `O_DIRECT`.
    pub fn mount_ramfs() -> Option<Tmpfs> {
        Tmpfs::mount_new("ramfs", "")
    }

    fn mount_new(fstype: &str, options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        match Tmpfs::mount_type(dir.path(), fstype, options) {
            Ok(mut t) => {
                t._dir = Some(dir);
                Some(t)
            }
            Err(why) => {
                assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
                println!("SKIP: {why}");
                None
            }
        }
    }

    /// Mounts on `target` (an existing directory); the error says why it could not.
    pub fn mount_at(target: &Path, size: &str) -> Result<Tmpfs, String> {
        Tmpfs::mount_type(target, "tmpfs", &format!("size={size}"))
    }

    fn mount_type(target: &Path, fstype: &str, options: &str) -> Result<Tmpfs, String> {
        let c = |s: &str| CString::new(s).unwrap();
        let (source, fstype_c, options) = (c(fstype), c(fstype), c(options));
        let path = target.to_owned();
        let target = c(target.to_str().unwrap());
        // SAFETY: all arguments are valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype_c.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(format!(
                "mount -t {fstype} failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Tmpfs {
            target,
            path,
            _dir: None,
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: a valid path; MNT_DETACH so that a failing test cannot leave it behind.
        unsafe { libc::umount2(self.target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Runs the binary with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RINGSTASH_LOG", "warn")
        .output()
        .expect("run ringstash")
}

/// Runs `ringstash check` on `dir`; returns (exit code, stdout + stderr).
pub fn check(dir: &Path) -> (i32, String) {
    let out = run(&["check", "--data-dir", dir.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("check exited normally"), text)
}

/// Asserts that `ringstash check` finds every segment in `dir` intact: exit 0 and
/// "errors 0".
#[track_caller]
pub fn assert_check_clean(dir: &Path) {
    let (code, text) = check(dir);
    assert_eq!(code, 0, "ringstash check failed:\n{text}");
    assert!(text.contains("errors 0"), "check output:\n{text}");
}

/// The server's `/metrics` text.
pub fn metrics(addr: SocketAddr) -> String {
    String::from_utf8(http(addr, "GET", "/metrics", &[], b"").body).expect("metrics are UTF-8")
}

/// Asserts that the server's `/metrics` text has every one of `lines` (e.g.
/// "ringstash_idle_closed_total{listener=\"stream\"} 1"); returns the text for further checks.
#[track_caller]
pub fn assert_metrics(addr: SocketAddr, lines: &[&str]) -> String {
    let m = metrics(addr);
    for l in lines {
        assert!(m.contains(l), "{m}");
    }
    m
}

/// The server's `/stats` JSON.
pub fn stats_json(addr: SocketAddr) -> serde_json::Value {
    http(addr, "GET", "/stats", &[], b"").json()
}

/// The path of a tool a test runs (`logger`, `rsyslogd`...), looked up in PATH and
/// the sbin directories. Missing: under CI (`CI` set) the test fails, since `.ci/run`
/// installs it (Debian package `package`); elsewhere it prints SKIP and returns None.
#[track_caller]
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = format!("{name} is not installed (Debian package {package})");
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        println!("SKIP: {why}");
    }
    found
}

/// The records `GET /v1/logs?<query>` returns, as parsed JSON objects (their `data`).
pub fn get_logs(s: &Server, query: &str) -> Vec<serde_json::Value> {
    let v = http(s.http, "GET", &format!("/v1/logs?{query}"), &[], b"").json();
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r["data"].as_str().unwrap()).unwrap())
        .collect()
}

/// Reads records from `GET /v1/logs` from offset 0 until `n` have arrived, as the JSON
/// objects their payloads hold, in offset order. Fails after `within`, with `why()`
/// in the message (e.g. a forwarder's own log).
#[track_caller]
pub fn wait_records(
    s: &Server,
    n: usize,
    within: Duration,
    why: impl Fn() -> String,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + within;
    let (mut records, mut from) = (Vec::with_capacity(n), 0u64);
    while records.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} records arrived; {}",
            records.len(),
            why()
        );
        let path = format!("/v1/logs?from={from}&limit=10000");
        let v = http(s.http, "GET", &path, &[], b"").json();
        let got = v["records"].as_array().unwrap();
        for r in got {
            records.push(serde_json::from_str(r["data"].as_str().unwrap()).unwrap());
        }
        from = v["next"].as_u64().unwrap();
        if got.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    records
}

/// What a trickling client ([`trickle`]) got: the bytes the server sent, and when the first of them
/// came (from the connect).
pub struct Trickled {
    pub said: Vec<u8>,
    pub after: Option<Duration>,
}

/// Connects to `addr` and sends `bytes` one at a time, `every` apart, until the server
/// answers (or closes); then reads the answer to its end. Gives up after `within`.
pub fn trickle(addr: SocketAddr, bytes: &[u8], every: Duration, within: Duration) -> Trickled {
    let s = TcpStream::connect(addr).unwrap();
    trickle_on(s, Instant::now(), bytes, every, within)
}

/// [`trickle`] on a connection made by the caller at `started` (so that a test can
/// know its clients are connected before it goes on).
pub fn trickle_on(
    mut s: TcpStream,
    started: Instant,
    bytes: &[u8],
    every: Duration,
    within: Duration,
) -> Trickled {
    s.set_read_timeout(Some(every)).unwrap();
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    let mut next = 0;
    let mut after = None;
    while started.elapsed() < within {
        if next < bytes.len() && s.write_all(&bytes[next..next + 1]).is_ok() {
            next += 1;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                after.get_or_insert(started.elapsed());
                said.extend_from_slice(&buf[..n]);
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = s.read_to_end(&mut said);
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    Trickled { said, after }
}

/// The status and the JSON body of a raw response.
pub fn status_and_body(said: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8_lossy(said);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, json)
}

/// Asserts that a trickling client was answered 408 `request_timeout` naming `setting`,
/// about `deadline` after its connect (not before it, and not much later).
#[track_caller]
pub fn assert_cut_at_deadline(t: &Trickled, setting: &str, deadline: Duration) {
    let after = t.after.expect("the trickled request was answered");
    assert!(
        after >= deadline.mul_f64(0.9) && after < deadline * 3,
        "answered {after:?} after the connect; {setting} is {deadline:?}"
    );
    let (status, body) = status_and_body(&t.said);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"], "request_timeout");
    assert_contains(body["detail"].as_str().unwrap(), setting);
}

/// A token made by `ringstash token`, and its line for the token file (or
/// `auth_tokens`).
pub struct Token {
    pub token: String,
    pub line: String,
}

/// Makes a token with `ringstash token --scopes <scopes> --name <name>`.
pub fn make_token(scopes: &str, name: &str) -> Token {
    let out = run_ok(
        Command::new(BIN).args(["token", "--scopes", scopes, "--name", name]),
        "ringstash token",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k:?} in {text:?}"))
            .to_owned()
    };
    let t = Token {
        token: field("token: "),
        line: field("line: "),
    };
    assert!(t.token.starts_with("rst_"), "{}", t.token);
    assert!(t.line.ends_with(&format!(" {scopes} {name}")), "{}", t.line);
    t
}

/// A series from `/metrics` (named as for [`metric`]), scraped with `token` (auth on:
/// it needs the `metrics` scope).
pub fn metric_with_token(addr: SocketAddr, token: &str, name: &str) -> u64 {
    let bearer = format!("Bearer {token}");
    let r = http(addr, "GET", "/metrics", &[("Authorization", &bearer)], b"");
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// Pipes a `/metrics` exposition through Prometheus's own checker, `promtool check
/// metrics`, and asserts it exits 0 without a word (it prints every lint finding).
/// Fails under CI where promtool is missing; elsewhere says SKIP and returns false.
#[track_caller]
pub fn assert_promtool_clean(text: &str) -> bool {
    let Some(promtool) = require_tool("promtool", "prometheus") else {
        return false;
    };
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n--- the exposition:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    true
}

/// Bytes of the segment files (`*.log`) directly in `dir`.
pub fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Waits (up to 20 s) until the server's stderr has said `part` `count` times: a
/// counter or an answer can come before the line that explains it reaches the log.
pub fn wait_stderr(s: &Server, part: &str, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.stderr_text().matches(part).count() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "{part:?} not said:\n{}",
            s.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
