//! The producers people already run, against the real binary: fire-and-forget raw TCP
//! senders that close without reading, `logger` over TCP with both syslog framings and
//! both message formats, and the end of a stream (a clean FIN against a reset).
//! Every test checks the records stored and what filters see, not only a status.

mod common;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use common::{Server, columns, get_logs, http, metric, require_tool, run_ok, stored_payloads};

/// Waits until the server has committed `n` records (GET /v1/logs's committed_end).
fn wait_committed(s: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = http(s.http, "GET", "/v1/logs?from=latest&limit=1", &[], b"").json();
        let end = v["committed_end"].as_u64().unwrap();
        if end >= n {
            assert_eq!(end, n, "more records than were sent");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {end} of {n} records committed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `bytes` to a one-way listener, ends with a FIN, and reads until the server
/// closes: it must have written nothing back.
fn send_one_way(to: std::net::SocketAddr, bytes: &[u8]) {
    let mut c = TcpStream::connect(to).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(bytes).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut said = Vec::new();
    c.read_to_end(&mut said).unwrap();
    assert!(said.is_empty(), "the server wrote {said:?}");
}

#[test]
fn fire_and_forget_senders_that_close_without_reading_lose_nothing() {
    let (_dir, s) = Server::start_in_tempdir(&[]);
    const RUNS: u64 = 3;
    const LINES: u64 = 300_000;
    for run in 0..RUNS {
        // One write of 300,000 lines of 128 bytes, then close without reading: what
        // scripts, `nc` and forwarders' TCP outputs do.
        let mut body = Vec::with_capacity((LINES * 128) as usize);
        for i in 0..LINES {
            let head = format!("run{run}-{i:07}-");
            body.extend_from_slice(head.as_bytes());
            body.resize(body.len() + 127 - head.len(), b'x');
            body.push(b'\n');
        }
        let mut c = TcpStream::connect(s.tcp).unwrap();
        c.write_all(&body).unwrap();
        drop(c);
        // The close returns with megabytes still in the sockets' buffers: the next run
        // starts once this one is stored, so that the runs cannot interleave (the next
        // connection may go to the other reactor).
        wait_committed(&s, (run + 1) * LINES);
    }
    let stored = stored_payloads(&s.data_dir);
    assert_eq!(stored.len() as u64, RUNS * LINES);
    // Each run's lines arrive whole and in order, one run after the other.
    for (k, p) in stored.iter().enumerate() {
        let (run, i) = (k as u64 / LINES, k as u64 % LINES);
        assert_eq!(p.len(), 127, "record {k} is whole");
        assert!(
            p.starts_with(&format!("run{run}-{i:07}-")),
            "record {k}: {p}"
        );
    }
    assert_eq!(metric(s.http, "ringstash_tcp_partial_discarded_total"), 0);
}

#[test]
fn the_one_way_listener_never_writes_and_counts_its_refusals() {
    let (_dir, s) = Server::start_in_tempdir(&["--record-bytes-max", "64"]);
    let long = "y".repeat(100);
    send_one_way(s.tcp, format!("first\n{long}\nlast\n").as_bytes());
    wait_committed(&s, 2);
    assert_eq!(stored_payloads(&s.data_dir), ["first", "last"]);
    assert_eq!(
        metric(s.http, "ringstash_frames_too_large_total{protocol=\"tcp\"}"),
        1
    );
    // The acked listener still answers.
    let acks = common::tcp_send_all(s.tcp_acked, b"acked\n");
    assert_eq!(acks, "ack 1 2\n");
}

#[test]
fn a_partial_last_line_is_a_record_after_a_fin_and_discarded_after_a_reset() {
    let (_dir, s) = Server::start_in_tempdir(&[]);
    // Clean end: the unterminated last line is a record.
    let mut c = TcpStream::connect(s.tcp).unwrap();
    c.write_all(b"one\ntwo-without-newline").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    wait_committed(&s, 2);
    // Reset: SO_LINGER 0 makes close() send a RST. The complete line is stored, the
    // cut-off one is not.
    let c = TcpStream::connect(s.tcp).unwrap();
    (&c).write_all(b"three\nfour-cut-off").unwrap();
    // The server has read both once "three" is committed: one write, one segment on
    // loopback, so the cut-off line came with it.
    wait_committed(&s, 3);
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    wait_committed(&s, 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(s.http, "ringstash_tcp_partial_discarded_total") == 0 {
        assert!(
            Instant::now() < deadline,
            "the partial line was not counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        stored_payloads(&s.data_dir),
        ["one", "two-without-newline", "three"]
    );
    assert_eq!(metric(s.http, "ringstash_tcp_partial_discarded_total"), 1);
}

/// `logger --tcp` to the syslog listener with these extra arguments.
fn logger(s: &Server, args: &[&str]) {
    let Some(logger) = require_tool("logger", "bsdutils") else {
        return;
    };
    let port = s.syslog.port().to_string();
    run_ok(
        Command::new(logger)
            .args(["--tcp", "-n", "127.0.0.1", "-P", &port])
            .args(args),
        "logger",
    );
}

#[test]
fn logger_in_both_framings_and_formats_lands_with_its_fields() {
    if require_tool("logger", "bsdutils").is_none() {
        return;
    }
    let (_dir, s) = Server::start_in_tempdir(&["--node-id", "n1"]);
    // Each logger is a connection of its own, and records of different connections
    // are ordered only by when they were committed (the reactors take connections
    // in parallel): each is awaited before the next, so the records come in call order.
    logger(
        &s,
        &[
            "--rfc5424",
            "-t",
            "billing",
            "-p",
            "local0.err",
            "--msgid",
            "PAY",
            "card declined",
        ],
    );
    wait_committed(&s, 1);
    logger(
        &s,
        &[
            "--rfc5424",
            "--octet-count",
            "-t",
            "billing",
            "-p",
            "local0.info",
            "paid",
        ],
    );
    wait_committed(&s, 2);
    logger(
        &s,
        &["--rfc3164", "-t", "cron", "-p", "cron.warning", "job late"],
    );
    wait_committed(&s, 3);
    logger(
        &s,
        &[
            "--rfc3164",
            "--octet-count",
            "-t",
            "cron",
            "-p",
            "cron.debug",
            "tick",
        ],
    );
    wait_committed(&s, 4);
    let all = get_logs(&s, "from=earliest");
    assert_eq!(
        columns(&all, &["service", "level", "severity", "message", "syslog"]),
        [
            "billing|error|3|card declined|rfc5424",
            "billing|info|6|paid|rfc5424",
            "cron|warn|4|job late|rfc3164",
            "cron|debug|7|tick|rfc3164",
        ],
        "the length prefix is framing, not payload: {all:#?}"
    );
    assert_eq!(all[0]["facility"], "local0");
    assert_eq!(all[0]["msgid"], "PAY");
    assert_eq!(all[2]["facility"], "cron");
    for r in &all {
        assert_eq!(r["node_id"], "n1");
        assert_eq!(r["client_ip"], "127.0.0.1");
        assert!(r["host"].is_string() && r["timestamp"].is_string(), "{r}");
    }
    // What the filters (read API, subscriptions, dashboard) see.
    let errors = get_logs(&s, "from=earliest&service=billing&level=error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["message"], "card declined");
    assert_eq!(get_logs(&s, "from=earliest&service=cron").len(), 2);
    assert_eq!(
        metric(
            s.http,
            "ringstash_records_received_total{protocol=\"syslog\"}"
        ),
        4
    );
    assert_eq!(metric(s.http, "ringstash_syslog_unparsed_total"), 0);
}

#[test]
fn syslog_keeps_what_does_not_parse_and_refuses_oversized_frames_whole() {
    let (_dir, s) = Server::start_in_tempdir(&["--syslog-frame-bytes-max", "512"]);
    let big = "z".repeat(600);
    let counted = format!("{} <13>1 - h app - - - {big}", 20 + big.len());
    send_one_way(
        s.syslog,
        format!("not syslog at all\n{counted}<14>1 - h app - - - after\n<11>cut\n27 <11>1 - h app - - - trunc")
            .as_bytes(),
    );
    wait_committed(&s, 3);
    let all = get_logs(&s, "from=earliest");
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(all[0]["unparsed"], true);
    assert_eq!(all[0]["message"], "not syslog at all");
    assert_eq!(all[1]["message"], "after");
    assert_eq!(all[2]["message"], "cut");
    assert_eq!(all[2]["level"], "error", "a bare <PRI> still counts");
    assert_eq!(
        metric(
            s.http,
            "ringstash_frames_too_large_total{protocol=\"syslog\"}"
        ),
        1
    );
    assert_eq!(metric(s.http, "ringstash_syslog_unparsed_total"), 1);
    assert_eq!(metric(s.http, "ringstash_syslog_truncated_total"), 1);
}

#[test]
fn syslog_over_udp_lands_with_its_fields_and_counts_refusals() {
    if require_tool("logger", "bsdutils").is_none() {
        return;
    }
    let (_dir, s) = Server::start_in_tempdir(&[
        "--syslog-udp-addr",
        "127.0.0.1:0",
        "--syslog-frame-bytes-max",
        "512",
    ]);
    let udp = s.syslog_udp();
    let port = udp.port().to_string();
    for (i, pri) in ["local1.err", "local1.info", "local1.debug"]
        .iter()
        .enumerate()
    {
        let out = Command::new("logger")
            .args([
                "--udp",
                "-n",
                "127.0.0.1",
                "-P",
                &port,
                "--rfc5424",
                "-t",
                "udpapp",
            ])
            .args(["-p", pri, &format!("datagram {i}")])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(format!("<11>{}", "x".repeat(600)).as_bytes(), udp)
        .unwrap();
    sock.send_to(b"<14>Dec  2 10:00:00 h raw: last one", udp)
        .unwrap();
    wait_committed(&s, 4);
    let all = get_logs(&s, "from=earliest");
    assert_eq!(
        columns(&all, &["service", "level", "message"]),
        [
            "udpapp|error|datagram 0",
            "udpapp|info|datagram 1",
            "udpapp|debug|datagram 2",
            "raw|info|last one",
        ]
    );
    assert_eq!(all[0]["client_ip"], "127.0.0.1");
    assert_eq!(metric(s.http, "ringstash_syslog_udp_datagrams_total"), 5);
    assert_eq!(
        metric(
            s.http,
            "ringstash_frames_too_large_total{protocol=\"syslog\"}"
        ),
        1
    );
    assert_eq!(metric(s.http, "ringstash_syslog_udp_drops_total"), 0);
}
