//! A private `rsyslogd` (its own config, work directory and pid file, no system
//! inputs) with an imtcp input the tests feed, forwarding to ringstash with whatever
//! action a test gives (`omfwd`, `omrelp`); and the messages the tests send through it,
//! with the check that a stored record is the message it should be.

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// rsyslogd with its GnuTLS network stream driver (Debian package `rsyslog-gnutls`),
/// or None (SKIP) where either is missing; under CI a failure.
#[track_caller]
pub fn require_gtls() -> Option<PathBuf> {
    let bin = require_rsyslogd()?;
    let module = Path::new(MODULE_DIR).join("lmnsd_gtls.so");
    if !module.is_file() {
        let why = format!(
            "{} is missing (Debian package rsyslog-gnutls)",
            module.display()
        );
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        println!("SKIP: {why}");
        return None;
    }
    Some(bin)
}

/// Where Debian's rsyslog keeps its modules.
const MODULE_DIR: &str = "/usr/lib/x86_64-linux-gnu/rsyslog";

/// rsyslogd, or None (SKIP) where it is not installed; under CI a failure.
#[track_caller]
pub fn require_rsyslogd() -> Option<PathBuf> {
    super::require_tool("rsyslogd", "rsyslog")
}

/// rsyslogd with its `omrelp` module (Debian package `rsyslog-relp`), or None (SKIP)
/// where either is missing; under CI a failure, since `.ci/run` installs both.
#[track_caller]
pub fn require_omrelp() -> Option<PathBuf> {
    let bin = require_rsyslogd()?;
    let module = Path::new(MODULE_DIR).join("omrelp.so");
    if !module.is_file() {
        let why = format!(
            "{} is missing (Debian package rsyslog-relp)",
            module.display()
        );
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        println!("SKIP: {why}");
        return None;
    }
    Some(bin)
}

/// A running private rsyslogd; killed on drop.
pub struct Rsyslog {
    child: Child,
    /// Where its imtcp input listens.
    pub input: SocketAddr,
}

impl Rsyslog {
    /// Starts rsyslogd in `dir` with an imtcp input on a port it picks, whose messages
    /// go to `action` (an rsyslog `action(...)` statement); `modules` are loaded first
    /// (e.g. `omrelp`).
    pub fn start(bin: &Path, dir: &Path, modules: &[&str], action: &str) -> Rsyslog {
        Rsyslog::start_with(bin, dir, "", modules, action)
    }

    /// As [`Rsyslog::start`], with `globals` (e.g. the TLS driver's CA and certificate
    /// files) added to its `global(...)` statement.
    pub fn start_with(
        bin: &Path,
        dir: &Path,
        globals: &str,
        modules: &[&str],
        action: &str,
    ) -> Rsyslog {
        let port_file = dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let loads: String = modules
            .iter()
            .map(|m| format!("module(load=\"{m}\")\n"))
            .collect();
        let conf = format!(
            r#"global(workDirectory="{dir}" {globals})
module(load="imtcp")
{loads}input(type="imtcp" port="0" address="127.0.0.1" listenPortFileName="{port}" ruleset="fwd")
ruleset(name="fwd") {{
  {action}
}}
"#,
            dir = dir.display(),
            port = port_file.display(),
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rsyslogd");
        let deadline = Instant::now() + Duration::from_secs(20);
        // The port is taken once rsyslogd answers on it: the file can be read while
        // it is half written ("45" of "45123" parses), or before the input listens (a
        // CI run once got ConnectionRefused feeding the port it named).
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file)
                && let Ok(p) = p.trim().parse::<u16>()
                && TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], p))).is_ok()
            {
                break p;
            }
            assert!(Instant::now() < deadline, "rsyslogd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        };
        Rsyslog {
            child,
            input: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Sends `body` (LF-framed messages) to the imtcp input on one connection.
    pub fn feed(&self, body: &[u8]) {
        let mut c = TcpStream::connect(self.input).unwrap();
        c.write_all(body).unwrap();
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages `from..to` as RFC 3164 lines, `order <i> placed` from `shop` on `web01`,
/// local3.err for every tenth, local3.info otherwise.
pub fn orders(from: usize, to: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in from..to {
        let pri = if i.is_multiple_of(10) {
            8 * 19 + 3
        } else {
            8 * 19 + 6
        };
        writeln!(
            body,
            "<{pri}>Dec  2 10:00:00 web01 shop[42]: order {i:06} placed"
        )
        .unwrap();
    }
    body
}

/// Which message of [`orders`] a stored record is; panics if it is none of them, or
/// not whole.
pub fn order_index(r: &serde_json::Value) -> usize {
    let m = r["message"].as_str().unwrap_or_default();
    m.strip_prefix("order ")
        .and_then(|m| m.strip_suffix(" placed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a message sent, or not whole: {r}"))
}

/// Checks that record `r` is message `i` of [`orders`] with every field, as rsyslog
/// forwarded it in `syslog` form (`rfc5424` or `rfc3164`).
#[track_caller]
pub fn check_order(i: usize, r: &serde_json::Value, syslog: &str) {
    assert_eq!(
        r["message"],
        format!("order {i:06} placed"),
        "message {i} missing or twice"
    );
    assert_eq!(r["service"], "shop", "record {i}: {r}");
    assert_eq!(r["host"], "web01", "record {i}: {r}");
    assert_eq!(r["facility"], "local3", "record {i}: {r}");
    let level = if i.is_multiple_of(10) {
        "error"
    } else {
        "info"
    };
    assert_eq!(r["level"], level, "record {i}: {r}");
    assert_eq!(r["syslog"], syslog, "record {i}: {r}");
}
