//! RELP on `relp_addr`: the protocol byte by byte over a raw TcpStream (the answers,
//! the refusals, `rsp 200` only once the record is durable), then rsyslog's own
//! `omrelp` against the real binary: every message lands exactly once, and after a
//! SIGKILL mid-stream and a restart none is lost (RELP is at-least-once across a crash).

mod common;

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::{
    Server, assert_metrics, get_logs, http,
    rsyslog::{Rsyslog, check_order, order_index, orders, require_omrelp},
    wait_records,
};

/// What librelp's client offers in its `open`.
const OFFERS: &[u8] =
    b"relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog";

/// One RELP frame as a client sends it.
fn frame(txnr: u32, command: &str, data: &[u8]) -> Vec<u8> {
    let mut f = format!("{txnr} {command} {}", data.len()).into_bytes();
    if !data.is_empty() {
        f.push(b' ');
        f.extend_from_slice(data);
    }
    f.push(b'\n');
    f
}

/// The server's answer to an accepted `open` with TXNR 1.
fn open_ok() -> Vec<u8> {
    let body = format!(
        "200 OK\nrelp_version=0\nrelp_software=ringstash,{}\ncommands=syslog",
        env!("CARGO_PKG_VERSION")
    );
    format!("1 rsp {} {body}\n", body.len()).into_bytes()
}

/// A connection whose session is open: `open` sent and its answer read.
fn open_session(s: &Server) -> TcpStream {
    let mut c = connect(s);
    c.write_all(&frame(1, "open", OFFERS)).unwrap();
    expect(&mut c, &open_ok());
    c
}

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(s.relp).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

/// `TXNR rsp DATALEN 500 <text>` and its LF, as the server refuses a command.
fn rsp500(txnr: u32, text: &str) -> String {
    format!("{txnr} rsp {} 500 {text}\n", text.len() + 4)
}

/// Reads exactly `want.len()` bytes and checks they are `want`.
#[track_caller]
fn expect(c: &mut TcpStream, want: &[u8]) {
    let mut got = vec![0; want.len()];
    c.read_exact(&mut got).unwrap_or_else(|e| {
        panic!(
            "reading {:?}: {e}",
            String::from_utf8_lossy(want).into_owned()
        )
    });
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

/// Reads to the end of the connection: what the server said before it closed.
#[track_caller]
fn rest(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    c.read_to_end(&mut out).expect("the server closes");
    String::from_utf8(out).unwrap()
}

/// The stored records, as the JSON objects their payloads hold.
fn logs(s: &Server) -> Vec<serde_json::Value> {
    get_logs(s, "from=earliest&limit=1000")
}

#[test]
fn open_syslog_close_answers_byte_by_byte_and_200_means_stored() {
    let (_dir, s) = Server::start_in_tempdir(&[]);
    let mut c = open_session(&s);
    // Two messages in one write: one batch, answered in TXNR order.
    let mut two = frame(
        2,
        "syslog",
        b"<11>1 2026-12-02T10:00:00Z web01 shop 42 - - first",
    );
    two.extend(frame(
        3,
        "syslog",
        b"<14>Dec  2 10:00:01 web02 cart[7]: second",
    ));
    c.write_all(&two).unwrap();
    expect(&mut c, b"2 rsp 6 200 OK\n3 rsp 6 200 OK\n");
    // Answered means durable, and so readable at once.
    let stored = logs(&s);
    assert_eq!(stored.len(), 2, "{stored:?}");
    let (first, second) = (&stored[0], &stored[1]);
    assert_eq!(
        (&first["service"], &first["level"], &first["host"]),
        (&"shop".into(), &"error".into(), &"web01".into())
    );
    assert_eq!(first["message"], "first");
    assert_eq!(first["syslog"], "rfc5424");
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert_eq!(
        (&second["service"], &second["level"], &second["host"]),
        (&"cart".into(), &"info".into(), &"web02".into())
    );
    assert_eq!(second["syslog"], "rfc3164");
    // A hint (TXNR 0) is not answered; close is, and is the last thing said.
    c.write_all(&frame(0, "hint", b"")).unwrap();
    c.write_all(&frame(4, "close", b"")).unwrap();
    assert_eq!(rest(&mut c), "4 rsp 6 200 OK\n");
    assert_metrics(
        s.http,
        &[
            "ringstash_connections_accepted_total{protocol=\"relp\"} 1",
            "ringstash_records_received_total{protocol=\"relp\"} 2",
            "ringstash_relp_protocol_errors_total 0",
        ],
    );
}

#[test]
fn frames_split_across_writes_are_answered_once_whole() {
    let (_dir, s) = Server::start_in_tempdir(&[]);
    let mut c = connect(&s);
    c.set_nodelay(true).unwrap();
    let mut all = frame(1, "open", OFFERS);
    for i in 0..50u32 {
        all.extend(frame(
            i + 2,
            "syslog",
            format!("<13>1 - h app - - - piece {i}").as_bytes(),
        ));
    }
    all.extend(frame(52, "close", b""));
    for piece in all.chunks(7) {
        c.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut want = String::from_utf8(open_ok()).unwrap();
    for t in 2..=52 {
        want += &format!("{t} rsp 6 200 OK\n");
    }
    assert_eq!(rest(&mut c), want);
    let stored = logs(&s);
    assert_eq!(stored.len(), 50);
    for (i, r) in stored.iter().enumerate() {
        assert_eq!(r["message"], format!("piece {i}"));
    }
}

/// Each refusal is `rsp 500 <reason>` (TXNR 0 when the frame's own could not be read),
/// the `serverclose` hint, and the end of that connection only; nothing refused is
/// stored, and every refusal is counted.
#[test]
fn bad_input_gets_rsp_500_and_costs_only_its_connection() {
    let (_dir, s) = Server::start_in_tempdir(&["--relp-frame-bytes-max", "1024"]);
    let refused = |input: &[u8], want: String| {
        let mut c = open_session(&s);
        c.write_all(input).unwrap();
        assert_eq!(
            rest(&mut c),
            format!("{want}0 serverclose 0\n"),
            "{input:?}"
        );
    };
    // Oversize: refused as soon as DATALEN is read, before any of DATA.
    refused(
        b"2 syslog 2000 ",
        rsp500(
            2,
            "frame too large: DATALEN 2000 over relp_frame_bytes_max 1024",
        ),
    );
    refused(
        b"hello\n",
        rsp500(0, "malformed frame: TXNR is not 1 to 9 digits then a space"),
    );
    refused(
        b"2 syslog 3 abcd\n",
        rsp500(2, "malformed frame: no LF after DATA"),
    );
    refused(
        &frame(3, "syslog", b"x"),
        rsp500(3, "txnr 3 out of sequence, expected 2"),
    );
    refused(
        &frame(2, "starttls", b""),
        rsp500(2, "command not supported: starttls"),
    );
    refused(
        &frame(2, "open", OFFERS),
        rsp500(2, "protocol error: connection already open"),
    );
    // Before open.
    let mut c = connect(&s);
    c.write_all(&frame(1, "syslog", b"<13>early")).unwrap();
    assert_eq!(
        rest(&mut c),
        rsp500(1, "session not open") + "0 serverclose 0\n"
    );
    let mut c = connect(&s);
    c.write_all(&frame(1, "open", b"relp_version=0\ncommands=eventlog"))
        .unwrap();
    assert_eq!(
        rest(&mut c),
        rsp500(1, "invalid offers: commands lacks syslog") + "0 serverclose 0\n"
    );
    assert!(logs(&s).is_empty(), "nothing refused is stored");
    assert_metrics(
        s.http,
        &[
            "ringstash_frames_too_large_total{protocol=\"relp\"} 1",
            "ringstash_relp_protocol_errors_total 7",
        ],
    );
    // The listener goes on serving.
    let mut c = connect(&s);
    c.write_all(&frame(1, "open", OFFERS)).unwrap();
    c.write_all(&frame(2, "syslog", b"<13>1 - h app - - - after"))
        .unwrap();
    c.write_all(&frame(3, "close", b"")).unwrap();
    let want = [open_ok(), b"2 rsp 6 200 OK\n3 rsp 6 200 OK\n".to_vec()].concat();
    assert_eq!(rest(&mut c), String::from_utf8(want).unwrap());
    assert_eq!(logs(&s).len(), 1);
}

/// A message whose record would exceed `record_bytes_max` is refused alone: `500` for
/// its TXNR, in its place, and the session goes on.
#[test]
fn a_record_over_record_bytes_max_is_refused_alone() {
    let (_dir, s) = Server::start_in_tempdir(&["--record-bytes-max", "512"]);
    let mut c = open_session(&s);
    let long = format!("<13>1 - h app - - - {}", "y".repeat(600));
    let mut three = frame(2, "syslog", b"<13>1 - h app - - - before");
    three.extend(frame(3, "syslog", long.as_bytes()));
    three.extend(frame(4, "syslog", b"<13>1 - h app - - - after"));
    three.extend(frame(5, "close", b""));
    c.write_all(&three).unwrap();
    let want = format!(
        "2 rsp 6 200 OK\n{}4 rsp 6 200 OK\n5 rsp 6 200 OK\n",
        rsp500(3, "record too large: rendered over record_bytes_max 512")
    );
    assert_eq!(rest(&mut c), want);
    let stored: Vec<_> = logs(&s).iter().map(|r| r["message"].clone()).collect();
    assert_eq!(stored, ["before", "after"]);
    assert_metrics(
        s.http,
        &["ringstash_frames_too_large_total{protocol=\"relp\"} 1"],
    );
}

/// On SIGTERM a session gets the answers owed for what became durable, then
/// `serverclose`; the server exits cleanly.
#[test]
fn shutdown_answers_what_is_owed_then_serverclose() {
    let (_dir, s) = Server::start_in_tempdir(&[]);
    let mut c = open_session(&s);
    c.write_all(&frame(2, "syslog", b"<13>1 - h app - - - last"))
        .unwrap();
    expect(&mut c, b"2 rsp 6 200 OK\n");
    let stopping = std::thread::spawn(move || s.stop());
    assert_eq!(rest(&mut c), "0 serverclose 0\n");
    assert!(stopping.join().unwrap().success());
}

#[test]
fn over_connections_max_the_open_gets_500_and_idle_sessions_get_serverclose() {
    let (_dir, s) =
        Server::start_in_tempdir(&["--connections-max", "1", "--tcp-idle-timeout-ms", "3000"]);
    let mut first = open_session(&s);
    let mut second = connect(&s);
    second.write_all(&frame(1, "open", OFFERS)).unwrap();
    assert_eq!(
        rest(&mut second),
        rsp500(1, "too_many_connections connections_max (1) reached") + "0 serverclose 0\n"
    );
    // Idle: the server ends the session with the hint. (The idle timeout is long
    // enough that the first session is still open when the second asks, however slow
    // the machine: closed for idleness first, it would leave the second its slot.)
    let t = Instant::now();
    assert_eq!(rest(&mut first), "0 serverclose 0\n");
    assert!(t.elapsed() < Duration::from_secs(20));
    // The slot is given back just after the socket is shut: until then /metrics
    // itself is over connections_max.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let r = http(s.http, "GET", "/metrics", &[], b"");
        if r.status == 200 {
            break String::from_utf8(r.body).unwrap();
        }
        assert!(Instant::now() < deadline, "status {}", r.status);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        metrics.contains("ringstash_idle_closed_total{listener=\"stream\"} 1"),
        "{metrics}"
    );
    let refused = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("ringstash_connections_refused_total{reason=\"connections_max\"} ")
        })
        .unwrap();
    assert!(refused.parse::<u64>().unwrap() >= 1, "{metrics}");
}

/// With the writer slowed down, `rsp 200` waits for the group commit (the open's
/// answer, which needs nothing durable, does not); at `relp_window_max` unanswered
/// transactions the connection stops reading, and /metrics says so.
#[cfg(feature = "failpoints")]
#[test]
fn rsp_200_waits_for_the_commit_and_the_window_stops_reading() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_env(
        dir.path(),
        &["--relp-window-max", "4", "--groups-in-flight-max", "1"],
        &[("RINGSTASH_FAILPOINTS", "group_delay_ms=300")],
    );
    let mut c = open_session(&s);
    let t = Instant::now();
    c.write_all(&frame(2, "syslog", b"<13>1 - h app - - - slow"))
        .unwrap();
    expect(&mut c, b"2 rsp 6 200 OK\n");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "answered before the commit: {:?}",
        t.elapsed()
    );
    // Twelve in separate writes against a window of four.
    for i in 0..12u32 {
        c.write_all(&frame(
            i + 3,
            "syslog",
            format!("<13>1 - h app - - - w{i}").as_bytes(),
        ))
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    c.write_all(&frame(15, "close", b"")).unwrap();
    let want: String = (3..=15).map(|t| format!("{t} rsp 6 200 OK\n")).collect();
    assert_eq!(rest(&mut c), want);
    let waits = common::metric(s.http, "ringstash_relp_window_full_waits_total");
    assert!(waits >= 1, "{waits}");
    assert_eq!(logs(&s).len(), 13);
}

/// A failed fdatasync: the messages it covered are never answered `200`; the session
/// ends with `serverclose` (the client resends them after reconnecting).
#[cfg(feature = "failpoints")]
#[test]
fn a_failed_fdatasync_is_never_answered_200() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_env(
        dir.path(),
        &["--groups-in-flight-max", "1"],
        &[("RINGSTASH_FAILPOINTS", "fsync_eio_after=1")],
    );
    let mut c = open_session(&s);
    c.write_all(&frame(2, "syslog", b"<13>1 - h app - - - durable"))
        .unwrap();
    expect(&mut c, b"2 rsp 6 200 OK\n");
    c.write_all(&frame(3, "syslog", b"<13>1 - h app - - - lost"))
        .unwrap();
    assert_eq!(rest(&mut c), "0 serverclose 0\n");
    let status = common::wait_timeout(&mut s.child, Duration::from_secs(20))
        .expect("the server exits after the failure");
    assert!(!status.success());
}

/// Starts a private rsyslogd forwarding its imtcp input to `relp_port` with omrelp,
/// with a short reconnect interval, and `windowSize` when given (omrelp's default is
/// 128).
fn rsyslog_to(
    rsyslogd: &std::path::Path,
    dir: &std::path::Path,
    relp_port: u16,
    window: Option<u32>,
) -> Rsyslog {
    let rdir = dir.join("rsyslog");
    std::fs::create_dir_all(&rdir).unwrap();
    let window = window
        .map(|w| format!(r#" windowSize="{w}""#))
        .unwrap_or_default();
    let action = format!(
        r#"action(type="omrelp" target="127.0.0.1" port="{relp_port}"{window} timeout="5" conn.timeout="2" action.resumeRetryCount="-1" action.resumeInterval="1")"#
    );
    Rsyslog::start(rsyslogd, &rdir, &["omrelp"], &action)
}

#[test]
fn rsyslog_omrelp_lands_every_message_exactly_once() {
    let Some(rsyslogd) = require_omrelp() else {
        return;
    };
    const N: usize = 100_000;
    let (dir, s) = Server::start_in_tempdir(&[]);
    // The window the README recommends (with omrelp's default of 128 this takes about
    // 30 s, spent in the client: docs/protocol.md, RELP).
    let r = rsyslog_to(&rsyslogd, dir.path(), s.relp.port(), Some(1024));
    let t = Instant::now();
    r.feed(&orders(0, N));
    let mut records = wait_records(&s, N, Duration::from_secs(180), || "omrelp".into());
    println!(
        "{N} messages through omrelp in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(records.len(), N, "no more than were sent");
    records.sort_by_key(order_index);
    for (i, r) in records.iter().enumerate() {
        // omrelp's default template (RSYSLOG_ForwardFormat) is BSD syslog with an
        // RFC 3339 timestamp.
        check_order(i, r, "rfc3164");
    }
    assert_metrics(
        s.http,
        &[&format!(
            "ringstash_records_received_total{{protocol=\"relp\"}} {N}"
        )],
    );
}

/// SIGKILL in the middle of a stream, restart on the same data directory and port:
/// omrelp reconnects and resends what was not answered. Every message is there at
/// least once; those answered before the kill may come twice (counted, printed).
#[test]
fn rsyslog_omrelp_resends_after_a_sigkill_and_nothing_is_lost() {
    let Some(rsyslogd) = require_omrelp() else {
        return;
    };
    const N: usize = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[]);
    let relp = s.relp.to_string();
    // omrelp's default window: up to 128 messages unanswered when the server dies.
    let r = rsyslog_to(&rsyslogd, dir.path(), s.relp.port(), None);
    r.feed(&orders(0, N));
    // Kill once part of the stream is stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = common::stats_json(s.http)["log"]["committed_end"]
            .as_u64()
            .unwrap_or(0);
        if stored >= (N / 4) as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "only {stored} stored");
        std::thread::sleep(Duration::from_millis(5));
    }
    s.kill9();
    let s = Server::restart_after_kill(&data, &["--relp-addr", &relp]);
    assert_eq!(s.relp.to_string(), relp);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen: HashMap<usize, u32> = HashMap::new();
    let mut from = 0u64;
    while seen.len() < N {
        assert!(
            Instant::now() < deadline,
            "{} of {N} messages arrived after the restart",
            seen.len()
        );
        let v = http(
            s.http,
            "GET",
            &format!("/v1/logs?from={from}&limit=10000"),
            &[],
            b"",
        )
        .json();
        let got = v["records"].as_array().unwrap();
        for rec in got {
            let r: serde_json::Value = serde_json::from_str(rec["data"].as_str().unwrap()).unwrap();
            let i = order_index(&r);
            assert!(i < N);
            if !seen.contains_key(&i) {
                check_order(i, &r, "rfc3164");
            }
            *seen.entry(i).or_default() += 1;
        }
        from = v["next"].as_u64().unwrap();
        if got.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!(
        "after the SIGKILL: {N} messages all present, {duplicates} stored twice (at-least-once)"
    );
}

/// FNV-1a, 32 bits, from its published definition (docs/streams.md).
fn fnv1a32(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &c| {
        (h ^ u32::from(c)).wrapping_mul(16_777_619)
    })
}

#[test]
fn a_batch_split_over_partitions_is_answered_in_txnr_order_once_all_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_env(
        dir.path(),
        &[],
        &[
            ("RINGSTASH_STREAMS", "audit:partitions=3"),
            ("RINGSTASH_RELP_STREAM", "audit"),
        ],
    );
    let mut c = open_session(&s);
    // 30 messages from 7 apps in one write: one batch, split over the partitions.
    let mut all = Vec::new();
    let mut want = String::new();
    for i in 0..30u32 {
        let msg = format!("<14>1 2026-12-06T10:00:00Z h app{} - - - m{i}", i % 7);
        all.extend(frame(i + 2, "syslog", msg.as_bytes()));
        want.push_str(&format!("{} rsp 6 200 OK\n", i + 2));
    }
    c.write_all(&all).unwrap();
    expect(&mut c, want.as_bytes());
    // Answered means durable: every message is readable in its app's partition, in
    // the order sent.
    let mut seen = 0;
    for p in 0..3u32 {
        let path = format!("/v1/logs?stream=audit&partition={p}&limit=100");
        let v = http(s.http, "GET", &path, &[], b"").json();
        let mut last = None;
        for r in v["records"].as_array().unwrap() {
            let rec: serde_json::Value = serde_json::from_str(r["data"].as_str().unwrap()).unwrap();
            let app = rec["service"].as_str().unwrap();
            assert_eq!(fnv1a32(app.as_bytes()) % 3, p, "{app} in partition {p}");
            let i: u32 = rec["message"].as_str().unwrap()[1..].parse().unwrap();
            assert!(last.is_none_or(|l| l < i), "order within the partition");
            last = Some(i);
            seen += 1;
        }
    }
    assert_eq!(seen, 30);
    assert!(logs(&s).is_empty(), "nothing in the default stream");
}
