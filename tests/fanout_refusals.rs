//! Subscriptions the fan-out refuses or ends: a stalled subscriber is closed with 4008
//! while producers are unaffected, and bad subscriptions get an HTTP error before the
//! upgrade.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use common::{ws::*, *};
use tungstenite::Message;

#[test]
fn a_stalled_subscriber_is_closed_with_4008_and_producers_are_unaffected() {
    let (_dir, s) = Server::start_in_tempdir(&[
        "--subscriber-stall-ms-max",
        "300",
        "--subscriber-send-buffer-bytes",
        "16384",
    ]);
    let ws_at = ws_addr(&s);
    // A subscriber with a small receive buffer that reads nothing.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(8192).unwrap();
    sock.connect(&ws_at.into()).unwrap();
    let mut stalled = subscribe_on(sock.into(), ws_at, "from=earliest");
    // A healthy subscriber alongside, read from the start: one left unread while the
    // producers run would stall too (a slow debug build can take longer than the
    // stall limit to ingest everything) and be closed with 4008 as well.
    let mut healthy = subscribe(ws_at, "from=earliest");
    let healthy = std::thread::spawn(move || {
        let (got, _) = read_records(&mut healthy, 40_000, Duration::from_secs(60));
        got.iter().map(|r| r.offset).collect::<Vec<u64>>()
    });
    // Producers: 40 000 records of 100 bytes over 4 connections, every ack checked.
    let lines: Vec<String> = (0..40_000)
        .map(|i| format!("{i:08} {}", "p".repeat(91)))
        .collect();
    let started = Instant::now();
    let producers: Vec<_> = lines
        .chunks(10_000)
        .map(|c| {
            let c = c.to_vec();
            let tcp = s.tcp_acked;
            std::thread::spawn(move || {
                let mut payload = c.join("\n");
                payload.push('\n');
                let acks = tcp_send_all(tcp, payload.as_bytes());
                common::last_ack(&acks).expect("acks").0
            })
        })
        .collect();
    let acked: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    assert_eq!(acked, lines.len() as u64, "every record acked");
    eprintln!(
        "40000 records acked in {:?} with a stalled subscriber",
        started.elapsed()
    );
    let mut offsets = healthy.join().unwrap();
    offsets.dedup();
    assert_eq!(offsets.len(), lines.len());
    // The stalled one is closed within a few stall periods.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(&s)["server"]["ws_stalled_closed_total"].as_u64() != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the stalled subscriber was not closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It reads what it was sent, then the close frame with the code and reason.
    let mut got: Vec<Rec> = Vec::new();
    let mut resume = 0;
    loop {
        match stalled.read() {
            Ok(Message::Text(t)) => {
                let (part, next, _) = parse_message(&t);
                got.extend(part);
                resume = next;
            }
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 4008);
                assert_eq!(f.reason.as_str(), "stalled");
                break;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("expected the 4008 close frame, got {e}"),
        }
    }
    assert!(resume < lines.len() as u64, "it stalled before the end");
    // And it resumes from its last `next` with nothing lost or repeated.
    let mut again = subscribe(ws_at, &format!("from={resume}"));
    let (rest, _) = read_records(&mut again, lines.len() - got.len(), Duration::from_secs(30));
    got.extend(rest);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
    }
    assert!(s.stop().success());
}

#[test]
fn bad_subscriptions_get_an_http_error_before_the_upgrade() {
    let (_dir, s) = Server::start_in_tempdir(&[
        "--filter-bytes-max",
        "32",
        "--subscribers-max",
        "2",
        "--ws-allowed-origins",
        "http://good.example",
    ]);
    let ws_at = ws_addr(&s);
    for (pq, status, code) in [
        ("/v1/stream?from=abc", 400, "bad_request"),
        ("/v1/stream?from=-3", 400, "bad_request"),
        ("/v1/stream?frm=1", 400, "bad_request"),
        ("/v1/stream?from=1&from=2", 400, "bad_request"),
        ("/v1/stream?q=%zz", 400, "bad_request"),
        ("/v1/stream?limit=3", 400, "bad_request"),
        ("/v1/stream?format=xml", 400, "bad_request"),
        (
            "/v1/stream?q=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            400,
            "filter_too_long",
        ),
        ("/elsewhere", 404, "not_found"),
    ] {
        let (st, body) = refused(ws_at, pq, None);
        assert_eq!(
            (st, body["error"].as_str().unwrap()),
            (status, code),
            "{pq}: {body}"
        );
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    let (st, body) = refused(ws_at, "/v1/stream", Some("http://evil.example"));
    assert_eq!(
        (st, body["error"].as_str().unwrap()),
        (403, "origin_not_allowed")
    );
    let _ok = subscribe_with_origin(ws_at, "http://good.example");
    // Not a WebSocket request at all.
    let r = http(ws_at, "GET", "/v1/stream?from=1", &[], b"");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
    // subscribers_max = 2: the third is refused with 503.
    let _second = subscribe(ws_at, "from=latest");
    std::thread::sleep(Duration::from_millis(100));
    let (st, body) = refused_raw(ws_at);
    assert_eq!(
        (st, body["error"].as_str().unwrap()),
        (503, "too_many_subscribers")
    );
    let st = stats(&s);
    let sv = &st["server"];
    assert!(sv["ws_bad_requests_total"].as_u64().unwrap() >= 9, "{sv}");
    assert_eq!(sv["ws_origin_refused_total"], 1);
    assert_eq!(sv["filter_too_long_total"], 1);
    assert_eq!(sv["ws_subscribers_refused_total"], 1);
    let metrics = String::from_utf8(http(s.http, "GET", "/metrics", &[], b"").body).unwrap();
    for m in [
        "ringstash_ws_subscribers_open 2",
        "ringstash_ws_lag_records_max ",
        "ringstash_ws_closed_total{reason=\"stalled\"} 0",
        "ringstash_ws_refused_total{reason=\"subscribers_max\"} 1",
        "ringstash_filter_too_long_total 1",
    ] {
        assert!(metrics.contains(m), "{m} missing from /metrics");
    }
    // The read API refuses bad parameters the same way.
    for q in ["from=x", "limit=0", "limit=10001", "bogus=1"] {
        let r = http(s.http, "GET", &format!("/v1/logs?{q}"), &[], b"");
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.json()["error"], "bad_request", "{q}");
    }
    assert!(s.stop().success());
}

fn subscribe_with_origin(addr: SocketAddr, origin: &str) -> Ws {
    let stream = TcpStream::connect(addr).unwrap();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{addr}/v1/stream"
    ))
    .unwrap();
    req.headers_mut().insert("Origin", origin.parse().unwrap());
    tungstenite::client::client(req, stream)
        .expect("allowed origin")
        .0
}

/// A refusal written before any handshake (subscribers_max): a plain HTTP response.
fn refused_raw(addr: SocketAddr) -> (u16, serde_json::Value) {
    let r = http(
        addr,
        "GET",
        "/v1/stream",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    );
    (r.status, r.json())
}

/// The upgrade request of a raw client, with `key` and `extra` header lines.
fn upgrade_request(query: &str, key: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET /v1/stream?{query} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A raw subscriber, upgraded: the socket, with the 101's head read.
fn raw_subscriber(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&upgrade_request(
        "from=latest",
        "dGhlIHNhbXBsZSBub25jZQ==",
        "",
    ))
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "EOF in the 101: {head:?}");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    s
}

/// A client frame: FIN, `rsv` bits, `opcode`, masked unless `unmasked`.
fn frame(opcode: u8, rsv: u8, payload: &[u8], unmasked: bool) -> Vec<u8> {
    let mut f = vec![0x80 | rsv | opcode];
    let mask_bit = if unmasked { 0 } else { 0x80 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if unmasked {
        f.extend_from_slice(payload);
    } else {
        let mask = [7u8, 1, 2, 3];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
    f
}

#[test]
fn websocket_protocol_errors_get_a_close_frame_with_the_rfc_6455_code() {
    let (_dir, s) = Server::start_in_tempdir(&["--ws-message-bytes-max", "1024"]);
    let ws_at = ws_addr(&s);
    let cases: [(&str, Vec<u8>, u16); 7] = [
        ("unmasked", frame(0x1, 0, b"hello", true), 1002),
        ("reserved opcode", frame(0x3, 0, b"x", false), 1002),
        ("reserved control opcode", frame(0xB, 0, b"x", false), 1002),
        (
            "RSV1 without an extension",
            frame(0x1, 0x40, b"x", false),
            1002,
        ),
        (
            "ping over 125 bytes",
            frame(0x9, 0, &[b'p'; 200], false),
            1002,
        ),
        ("text not UTF-8", frame(0x1, 0, b"ok \xff\xfe", false), 1007),
        (
            "message over ws_message_bytes_max",
            frame(0x2, 0, &[0; 2000], false),
            1009,
        ),
    ];
    for (what, bad, code) in cases {
        let mut c = raw_subscriber(ws_at);
        c.write_all(&bad).unwrap();
        // The close frame first: unmasked, opcode 8, the code big-endian.
        let mut head = [0u8; 2];
        c.read_exact(&mut head)
            .unwrap_or_else(|e| panic!("{what}: no close frame ({e})"));
        assert_eq!(head[0], 0x88, "{what}: not a close frame: {head:?}");
        let mut payload = vec![0u8; usize::from(head[1])];
        c.read_exact(&mut payload).unwrap();
        assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            code,
            "{what}: {}",
            String::from_utf8_lossy(&payload[2..])
        );
        // Then the TCP close, once the client answered the close.
        c.write_all(&frame(0x8, 0, &payload[..2], false)).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest)
            .unwrap_or_else(|e| panic!("{what}: {e} instead of the TCP close"));
        assert!(rest.is_empty(), "{what}: {rest:?}");
    }
    let sv = &stats(&s)["server"];
    assert_eq!(sv["ws_protocol_errors_total"], 6, "{sv}");
    assert_eq!(sv["ws_message_too_large_total"], 1, "{sv}");
    assert!(s.stop().success());
}

#[test]
fn the_upgrade_request_is_refused_as_the_http_port_refuses_a_request() {
    let (_dir, s) = Server::start_in_tempdir(&[]);
    let ws_at = ws_addr(&s);
    let good_key = "dGhlIHNhbXBsZSBub25jZQ==";
    let big = format!("X-Big: {}\r\n", "b".repeat(20 << 10));
    for (what, req, status, code) in [
        (
            "a key of 3 bytes",
            upgrade_request("from=latest", "abcd", ""),
            400,
            "bad_request",
        ),
        (
            "a key that is not base64",
            upgrade_request("from=latest", "!!!!!!!!!!!!!!!!!!!!!!==", ""),
            400,
            "bad_request",
        ),
        (
            "an empty pair",
            upgrade_request("from=latest&&format=json", good_key, ""),
            400,
            "bad_request",
        ),
        (
            "a pair with no name",
            upgrade_request("=", good_key, ""),
            400,
            "bad_request",
        ),
        (
            "a 20 KiB header",
            upgrade_request("from=latest", good_key, &big),
            431,
            "headers_too_large",
        ),
    ] {
        let c = TcpStream::connect(ws_at).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (&c).write_all(&req).unwrap();
        let r = read_response(&mut std::io::BufReader::new(c))
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(
            (r.status, r.json()["error"].as_str().unwrap()),
            (status, code),
            "{what}"
        );
    }
    // The HTTP port answers the same requests alike.
    let r = http(s.http, "GET", "/v1/logs?from=0&&limit=1", &[], b"");
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (400, "bad_request")
    );
    let r = http(s.http, "GET", "/", &[("X-Big", &"b".repeat(20 << 10))], b"");
    assert_eq!(r.status, 431);
    assert_eq!(stats(&s)["server"]["ws_bad_requests_total"], 5);
    assert!(s.stop().success());
}

#[test]
fn a_trickled_upgrade_request_is_cut_with_408_at_its_deadline() {
    let (_dir, s) = Server::start_in_tempdir(&["--ws-handshake-timeout-ms", "1000"]);
    let req = upgrade_request("from=latest", "dGhlIHNhbXBsZSBub25jZQ==", "");
    let t = trickle(
        ws_addr(&s),
        &req,
        Duration::from_millis(200),
        Duration::from_secs(8),
    );
    assert_cut_at_deadline(&t, "ws_handshake_timeout_ms", Duration::from_secs(1));
    assert_eq!(stats(&s)["server"]["ws_handshake_timeouts_total"], 1);
    assert!(s.stop().success());
}

#[test]
fn a_half_closed_subscriber_is_unsubscribed() {
    let (_dir, s) = Server::start_in_tempdir(&[]);
    let ws_at = ws_addr(&s);
    let open = |s: &Server| stats(s)["server"]["ws_subscribers_open"].as_u64().unwrap();
    // Subscribed, then its write side shut.
    let ws = subscribe(ws_at, "from=latest");
    // And one whose FIN follows its upgrade request at once.
    let mut early = TcpStream::connect(ws_at).unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    early
        .write_all(&upgrade_request(
            "from=latest",
            "dGhlIHNhbXBsZSBub25jZQ==",
            "",
        ))
        .unwrap();
    early.shutdown(std::net::Shutdown::Write).unwrap();
    ws.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
    // Each sees the server close its connection (EOF), and neither counts as open.
    let mut rest = Vec::new();
    let _ = early.read_to_end(&mut rest);
    assert!(rest.starts_with(b"HTTP/1.1 101"), "{rest:?}");
    let mut sock = ws.into_inner();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    sock.read_to_end(&mut rest)
        .expect("EOF from the server, not a timeout");
    // Within the close grace (ws_close_grace_ms, 5 s) and a margin: in one CI pass
    // the gauge still said 1 after 5 s (the early one's read above ignores a time-out,
    // so it may not have seen an EOF). The likely cause: its FIN came with the upgrade
    // request, the handshake read only the request, and the edge-triggered poll never
    // signalled the FIN again. Its input is read right after the handshake since.
    let deadline = Instant::now() + Duration::from_secs(15);
    while open(&s) != 0 {
        assert!(Instant::now() < deadline, "still subscribed: {}", open(&s));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Records ingested now reach nobody.
    ingest_lines(&s, &["after".to_string()]);
    assert_eq!(stats(&s)["server"]["ws_messages_sent_total"], 0);
    assert!(s.stop().success());
}
