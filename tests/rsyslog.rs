//! A private `rsyslogd` forwarding to ringstash's syslog listener with `omfwd`, in
//! both RFC 6587 framings: what an rsyslog user switching to ringstash runs. The
//! records stored are checked one by one.

mod common;

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Server, http, require_tool, wait_records};

/// A private rsyslogd: its own config, work directory and pid file, no system inputs.
struct Rsyslog {
    child: Child,
    /// Where its imtcp input listens.
    input: SocketAddr,
}

impl Rsyslog {
    /// Starts rsyslogd with an imtcp input on a port it picks, whose messages go to
    /// `action` (an rsyslog `action(...)` statement).
    fn start(bin: &Path, dir: &Path, action: &str) -> Rsyslog {
        let port_file = dir.join("port");
        let conf = format!(
            r#"global(workDirectory="{dir}")
module(load="imtcp")
input(type="imtcp" port="0" address="127.0.0.1" listenPortFileName="{port}" ruleset="fwd")
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
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file)
                && let Ok(p) = p.trim().parse::<u16>()
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
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Feeds `n` messages to rsyslog and checks that ringstash stored each one, whole and
/// once, with its fields.
fn forwards_every_message(framing: &str) {
    let Some(rsyslogd) = require_tool("rsyslogd", "rsyslog") else {
        return;
    };
    const N: usize = 100_000;
    let (dir, s) = Server::start_in_tempdir(&[]);
    let rdir = dir.path().join("rsyslog");
    std::fs::create_dir(&rdir).unwrap();
    let action = format!(
        r#"action(type="omfwd" target="127.0.0.1" port="{}" protocol="tcp" TCP_Framing="{framing}" template="RSYSLOG_SyslogProtocol23Format")"#,
        s.syslog.port()
    );
    let r = Rsyslog::start(&rsyslogd, &rdir, &action);
    let mut c = TcpStream::connect(r.input).unwrap();
    let mut body = Vec::new();
    for i in 0..N {
        // local3.err for every tenth, local3.info otherwise.
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
    c.write_all(&body).unwrap();
    drop(c);
    let mut records = wait_records(&s, N, Duration::from_secs(120), || framing.to_owned());
    assert_eq!(records.len(), N, "no more than were sent");
    // rsyslog's queue may reorder; every message must be there exactly once.
    let index = |r: &serde_json::Value| -> usize {
        let m = r["message"].as_str().unwrap();
        m.strip_prefix("order ")
            .and_then(|m| m.strip_suffix(" placed"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a message sent, or not whole: {r}"))
    };
    records.sort_by_key(index);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r["message"],
            format!("order {i:06} placed"),
            "message {i} missing or twice"
        );
        assert_eq!(r["service"], "shop", "record {i}: {r}");
        assert_eq!(r["host"], "web01");
        assert_eq!(r["facility"], "local3");
        assert_eq!(
            r["level"],
            if i.is_multiple_of(10) {
                "error"
            } else {
                "info"
            }
        );
        assert_eq!(r["syslog"], "rfc5424");
    }
    let errors = http(
        s.http,
        "GET",
        "/v1/logs?from=earliest&service=shop&level=error&limit=10000",
        &[],
        b"",
    )
    .json();
    assert_eq!(errors["records"].as_array().unwrap().len(), N / 10);
}

#[test]
fn rsyslog_omfwd_octet_counted_lands_every_message() {
    forwards_every_message("octet-counted");
}

#[test]
fn rsyslog_omfwd_lf_framed_lands_every_message() {
    forwards_every_message("traditional");
}
