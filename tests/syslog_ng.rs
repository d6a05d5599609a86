//! A private syslog-ng forwarding to ringstash with its `network()` destination (BSD
//! syslog, LF-framed) and its `syslog()` destination (RFC 5424, octet-counted). The
//! `network()` destination treats anything readable on its socket as the end of the
//! connection, so a server that writes to it makes it reconnect and lose messages:
//! this checks that every message lands, once, over one connection.
//!
//! Debian's `syslog-ng-core` conflicts with `rsyslog` in dpkg; `.ci/run` unpacks it to
//! `/opt/syslog-ng` (or set `SYSLOG_NG_ROOT`).

mod common;

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Server, metric, wait_records};

/// Where syslog-ng was unpacked; None (SKIP) outside CI, a failure under CI.
fn syslog_ng_root() -> Option<PathBuf> {
    let root = std::env::var_os("SYSLOG_NG_ROOT")
        .map_or_else(|| PathBuf::from("/opt/syslog-ng"), PathBuf::from);
    if root.join("usr/sbin/syslog-ng").is_file() {
        return Some(root);
    }
    let why = format!(
        "syslog-ng is not unpacked in {} (apt-get download syslog-ng-core; dpkg -x)",
        root.display()
    );
    assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
    println!("SKIP: {why}");
    None
}

/// A private syslog-ng: a network() source on `input`, one destination.
struct SyslogNg {
    child: Child,
    input: SocketAddr,
}

impl SyslogNg {
    fn start(root: &Path, dir: &Path, destination: &str) -> SyslogNg {
        // syslog-ng cannot listen on port 0 and report it: take a free port and hand
        // it over (the window for someone else to take it is short).
        let input = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let conf = format!(
            r#"@version: 3.38
options {{ keep-hostname(yes); time-reopen(1); stats-freq(0); log-fifo-size(200000); }};
source s_in {{ network(ip("127.0.0.1") port({port}) transport("tcp") log-iw-size(200000) max-connections(4)); }};
destination d_out {{ {destination}; }};
log {{ source(s_in); destination(d_out); }};
"#,
            port = input.port()
        );
        let conf_path = dir.join("syslog-ng.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let lib = root.join("usr/lib/syslog-ng");
        let child = Command::new(root.join("usr/sbin/syslog-ng"))
            .args(["-F", "-e", "-f"])
            .arg(&conf_path)
            .arg(format!("--module-path={}", lib.join("3.38").display()))
            .arg(format!("--persist-file={}", dir.join("persist").display()))
            .arg(format!("--pidfile={}", dir.join("pid").display()))
            .arg(format!("--control={}", dir.join("ctl").display()))
            .env("LD_LIBRARY_PATH", &lib)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("spawn syslog-ng");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(input).is_err() {
            assert!(Instant::now() < deadline, "syslog-ng did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        SyslogNg { child, input }
    }
}

impl Drop for SyslogNg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `N` messages through syslog-ng's `destination` and checks each landed once.
fn delivers_every_message(destination: impl Fn(SocketAddr) -> String, protocol: &str) {
    let Some(root) = syslog_ng_root() else {
        return;
    };
    const N: usize = 100_000;
    let (dir, s) = Server::start_in_tempdir(&[]);
    let ng = SyslogNg::start(&root, dir.path(), &destination(s.syslog));
    let mut body = Vec::new();
    for i in 0..N {
        let pri = if i.is_multiple_of(4) {
            8 * 3 + 4
        } else {
            8 * 3 + 6
        }; // daemon.warning / daemon.info
        writeln!(
            body,
            "<{pri}>Dec  2 10:00:00 db01 pgsql[7]: checkpoint {i:06}"
        )
        .unwrap();
    }
    let mut c = TcpStream::connect(ng.input).unwrap();
    c.write_all(&body).unwrap();
    drop(c);
    let said = || {
        let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
        format!("syslog-ng said:\n{log}")
    };
    let mut seen = vec![0u32; N];
    for r in wait_records(&s, N, Duration::from_secs(120), said) {
        let m = r["message"].as_str().unwrap();
        let i: usize = m
            .strip_prefix("checkpoint ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a message sent, or not whole: {r}"));
        seen[i] += 1;
        assert_eq!(r["service"], "pgsql", "{r}");
        assert_eq!(r["host"], "db01", "{r}");
        let level = if i.is_multiple_of(4) { "warn" } else { "info" };
        assert_eq!(r["level"], level, "{r}");
        assert_eq!(r["syslog"], protocol, "{r}");
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let twice = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!((missing, twice), (0, 0), "every message exactly once");
    // One connection from syslog-ng for the whole run: it never saw a reason to reconnect.
    assert_eq!(
        metric(
            s.http,
            "ringstash_connections_accepted_total{protocol=\"syslog\"}"
        ),
        1
    );
    assert_eq!(metric(s.http, "ringstash_syslog_unparsed_total"), 0);
}

#[test]
fn syslog_ng_network_destination_delivers_every_message_on_one_connection() {
    delivers_every_message(
        |a| {
            format!(
                r#"network("{}" port({}) transport("tcp"))"#,
                a.ip(),
                a.port()
            )
        },
        "rfc3164",
    );
}

#[test]
fn syslog_ng_syslog_destination_octet_counted_delivers_every_message() {
    delivers_every_message(
        |a| {
            format!(
                r#"syslog("{}" port({}) transport("tcp"))"#,
                a.ip(),
                a.port()
            )
        },
        "rfc5424",
    );
}
