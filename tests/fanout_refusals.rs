//! Subscriptions the fan-out refuses or ends: a stalled subscriber is closed with 4008
//! while producers are unaffected, and bad subscriptions get an HTTP error before the
//! upgrade.

mod common;

use std::{
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
    // A healthy subscriber alongside.
    let mut healthy = subscribe(ws_at, "from=earliest");
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
    let (got, _) = read_records(&mut healthy, lines.len(), Duration::from_secs(30));
    let mut offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
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
        "ringstash_ws_stalled_closed_total 0",
        "ringstash_ws_subscribers_refused_total 1",
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
