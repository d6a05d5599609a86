//! `/metrics` as Prometheus reads it: a server that has taken traffic over every ingest
//! protocol is scraped over a socket, and the exposition is handed to Prometheus's own
//! checker (`promtool check metrics`, Debian package `prometheus`), which must find
//! nothing to say. The labelled series must then hold what was sent, and agree with
//! `/stats`, whose flat keys name the same counters.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::*;

/// One RELP frame as a client sends it (RFC-less; librelp's format, docs/protocol.md).
fn relp_frame(txnr: u32, command: &str, data: &[u8]) -> Vec<u8> {
    let mut f = format!("{txnr} {command} {}", data.len()).into_bytes();
    if !data.is_empty() {
        f.push(b' ');
        f.extend_from_slice(data);
    }
    f.push(b'\n');
    f
}

/// Opens a RELP session, sends `messages` as syslog commands, reads their `200 OK`
/// answers (each means durable), closes the session.
fn relp_send(s: &Server, messages: &[&str]) {
    let mut c = TcpStream::connect(s.relp).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let offers = b"relp_version=0\nrelp_software=librelp,1.11.0,x\ncommands=syslog";
    let mut out = relp_frame(1, "open", offers);
    for (i, m) in messages.iter().enumerate() {
        out.extend(relp_frame(i as u32 + 2, "syslog", m.as_bytes()));
    }
    let close = messages.len() as u32 + 2;
    out.extend(relp_frame(close, "close", b""));
    c.write_all(&out).unwrap();
    let mut said = String::new();
    c.read_to_string(&mut said).unwrap();
    for i in 0..messages.len() as u32 {
        assert!(
            said.contains(&format!("{} rsp 6 200 OK\n", i + 2)),
            "{said}"
        );
    }
    assert!(said.ends_with(&format!("{close} rsp 6 200 OK\n")), "{said}");
}

/// `pid`'s user + system CPU time from /proc, in seconds: what `process_cpu_seconds_total`
/// must lie between when read before and after a scrape.
fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[0] + f[1]) as f64 / tick
}

/// The value of `series` (name and labels) in an exposition `text`.
#[track_caller]
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_pass_promtool_and_count_each_protocol_under_its_label() {
    let Some(_promtool) = require_tool("promtool", "prometheus") else {
        return;
    };
    let spawned = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let (_dir, s) = Server::start_in_tempdir(&[]);

    // Raw TCP with acks: 5 lines, acked once durable.
    let tcp_lines: String = (0..5).map(|i| format!("tcp line {i}\n")).collect();
    assert_eq!(acked_count(s.tcp_acked, &tcp_lines), Some(5));
    // Syslog over TCP (LF-framed): 3 messages, one-way.
    let mut sys = TcpStream::connect(s.syslog).unwrap();
    sys.write_all(
        b"<14>Dec  2 10:00:01 web02 cart[7]: one\n<14>Dec  2 10:00:02 web02 cart[7]: two\n\
          <11>1 2026-12-02T10:00:03Z web01 shop 42 - - three\n",
    )
    .unwrap();
    drop(sys);
    // RELP: 2 messages.
    relp_send(
        &s,
        &[
            "<14>Dec  2 10:00:04 web03 pay[9]: relp one",
            "<14>Dec  2 10:00:05 web03 pay[9]: relp two",
        ],
    );
    // HTTP: 4 lines on /ingest, and an OTLP/JSON export of 2 records on /v1/logs.
    let r = http(s.http, "POST", "/ingest", &[], b"h1\nh2\nh3\nh4\n");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let otlp = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"body":{"stringValue":"otlp one"}},{"body":{"stringValue":"otlp two"}}]}]}]}"#;
    let r = http(
        s.http,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        otlp,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // A 4xx, for the code label.
    assert_eq!(http(s.http, "GET", "/nowhere", &[], b"").status, 404);

    let total = 5 + 3 + 2 + 4 + 2;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(s.http, "ringstash_records_committed_total") < total {
        assert!(Instant::now() < deadline, "{}", metrics(s.http));
        std::thread::sleep(Duration::from_millis(20));
    }

    let pid = s.child.id();
    let cpu_before = cpu_seconds_of(pid);
    let text = metrics(s.http);
    let cpu_after = cpu_seconds_of(pid);
    let stats = stats_json(s.http);

    // Prometheus's own checker: exit 0 and not a word (it prints every lint finding).
    assert_promtool_clean(&text);

    // Each protocol under its label, as sent (http counts OTLP's records too).
    let received = |p: &str| {
        value(
            &text,
            &format!("ringstash_records_received_total{{protocol=\"{p}\"}}"),
        )
    };
    assert_eq!(
        ["tcp", "syslog", "relp", "http"].map(received),
        [5.0, 3.0, 2.0, 6.0]
    );
    assert_eq!(value(&text, "ringstash_otlp_records_total"), 2.0);
    let accepted = |p: &str| {
        value(
            &text,
            &format!("ringstash_connections_accepted_total{{protocol=\"{p}\"}}"),
        )
    };
    assert_eq!(["tcp", "syslog", "relp"].map(accepted), [1.0, 1.0, 1.0]);
    assert!(accepted("http") >= 3.0, "{text}");
    assert!(value(&text, "ringstash_http_responses_total{code=\"2xx\"}") >= 2.0);
    assert_eq!(
        value(&text, "ringstash_http_responses_total{code=\"4xx\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "ringstash_records_committed_total"),
        total as f64
    );

    // The same counters under /stats's flat keys, in its raw units.
    let server = &stats["server"];
    for (series, key) in [
        (
            "ringstash_records_received_total{protocol=\"tcp\"}",
            "tcp_records_total",
        ),
        (
            "ringstash_records_received_total{protocol=\"syslog\"}",
            "syslog_records_total",
        ),
        (
            "ringstash_records_received_total{protocol=\"relp\"}",
            "relp_records_total",
        ),
        (
            "ringstash_records_received_total{protocol=\"http\"}",
            "http_records_total",
        ),
        (
            "ringstash_connections_accepted_total{protocol=\"relp\"}",
            "relp_connections_total",
        ),
        (
            "ringstash_http_responses_total{code=\"4xx\"}",
            "http_responses_4xx_total",
        ),
    ] {
        assert_eq!(
            value(&text, series),
            server[key].as_u64().unwrap() as f64,
            "{key}"
        );
    }
    // Seconds from the writer's nanoseconds; nothing was written between the two reads.
    let fsync_ns = stats["log"]["fsync_ns_total"].as_u64().unwrap();
    assert!(fsync_ns > 0);
    assert_eq!(
        value(&text, "ringstash_fsync_seconds_total"),
        fsync_ns as f64 / 1e9
    );
    assert!(
        value(&text, "ringstash_fsync_seconds_max")
            <= value(&text, "ringstash_fsync_seconds_total")
    );
    // The histogram's count is its +Inf bucket: every fdatasync, one per group or
    // fewer (groups past two syncs in flight share one).
    let groups = value(&text, "ringstash_groups_committed_total");
    let syncs = value(&text, "ringstash_fsyncs_total");
    assert!(
        groups >= 1.0 && syncs >= 1.0 && syncs <= groups,
        "{syncs} {groups}"
    );
    assert_eq!(
        value(&text, "ringstash_group_commit_seconds_bucket{le=\"+Inf\"}"),
        syncs
    );
    assert_eq!(value(&text, "ringstash_group_commit_seconds_count"), syncs);
    // The acked TCP connection got at least one ack, each counted from a read to the
    // ack written: after a group commit, so no shorter than the quickest one.
    let acks = value(&text, "ringstash_tcp_ack_seconds_count");
    assert!((1.0..=5.0).contains(&acks), "{acks}");
    assert_eq!(
        value(&text, "ringstash_tcp_ack_seconds_bucket{le=\"+Inf\"}"),
        acks
    );
    let quickest_commit = text
        .lines()
        .filter_map(|l| l.strip_prefix("ringstash_group_commit_seconds_bucket{le=\""))
        .filter_map(|l| l.split_once("\"} "))
        .find(|(_, n)| n.parse::<f64>().unwrap() > 0.0)
        .map(|(le, _)| le.parse::<f64>().unwrap() / 2.0)
        .unwrap();
    assert!(
        value(&text, "ringstash_tcp_ack_seconds_sum") >= acks * quickest_commit,
        "{text}"
    );
    let (p50, p99) = (
        server["tcp_ack_us_p50"].as_u64().unwrap(),
        server["tcp_ack_us_p99"].as_u64().unwrap(),
    );
    assert!(p50 >= 1 && p99 >= p50, "{p50} {p99}");

    // The process, as /proc tells it to anyone.
    let cpu = value(&text, "process_cpu_seconds_total");
    assert!(
        cpu_before <= cpu && cpu <= cpu_after,
        "{cpu_before} {cpu} {cpu_after}"
    );
    let started = value(&text, "process_start_time_seconds");
    assert!(
        (started - spawned.as_secs_f64()).abs() < 5.0,
        "started {started}, spawned {spawned:?}"
    );
    let (open, max) = (
        value(&text, "process_open_fds"),
        value(&text, "process_max_fds"),
    );
    assert!(open >= 8.0 && open < max, "{open} {max}");
    assert!(value(&text, "process_resident_memory_bytes") > 1e6);
    assert!(
        value(&text, "process_virtual_memory_bytes")
            >= value(&text, "process_resident_memory_bytes")
    );

    // What was built and what runs.
    let driver = stats["log"]["io_driver"].as_str().unwrap();
    let info = text
        .lines()
        .find(|l| l.starts_with("ringstash_build_info{"))
        .unwrap();
    let want = format!(
        "ringstash_build_info{{version=\"{}\",revision=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(info.starts_with(&want), "{info}");
    assert!(
        info.ends_with(&format!("\",io_driver=\"{driver}\"}} 1")),
        "{info}"
    );
    let revision = info.split('"').nth(3).unwrap();
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match git {
        // Built from this checkout (build.rs reruns when HEAD moves): its commit.
        Ok(o) if o.status.success() && std::env::var_os("RINGSTASH_REVISION").is_none() => {
            assert_eq!(
                revision,
                String::from_utf8_lossy(&o.stdout).trim(),
                "{info}"
            );
        }
        _ => assert!(!revision.is_empty(), "{info}"),
    }
    assert!(s.stop().success());
}
