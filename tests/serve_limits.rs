//! `ringstash serve` at its limits (the real binary, real sockets): bad HTTP input, the
//! connection cap, idle timeouts, a full ring, and a full disk, each refused or waited
//! out explicitly while the rest keeps working.

mod common;

use std::{
    io::{BufReader, Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use common::{
    otlp::{assert_otlp_retry, otlp_request, post_otlp},
    *,
};

#[test]
fn bad_http_input_gets_its_status_and_costs_only_its_connection() {
    let (dir, server) = Server::start_in_tempdir(&[
        "--http-body-bytes-max",
        "1000",
        "--http-header-bytes-max",
        "1024",
        "--record-bytes-max",
        "100",
    ]);
    // A healthy TCP producer keeps its connection open across all the bad requests.
    let mut good = TcpStream::connect(server.tcp_acked).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    good.write_all(b"before\n").unwrap();

    let json = [("Content-Type", "application/json")];
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"BLAH\x01 / HTTP/1.1\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            b"POST /ingest HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            411,
            "length_required",
        ),
        (
            request("POST", "/ingest", &[], &[b'a'; 1001]),
            413,
            "payload_too_large",
        ),
        (
            request("POST", "/ingest", &[], &[b'a'; 200]),
            413,
            "payload_too_large",
        ),
        (
            request("POST", "/v1/logs", &[("Content-Type", "text/plain")], b"{}"),
            415,
            "unsupported_media_type",
        ),
        (
            request("POST", "/v1/logs", &json, b"[1,2]"),
            400,
            "bad_request",
        ),
        (
            request("POST", "/v1/logs", &json, b"{not json"),
            400,
            "bad_request",
        ),
        (
            format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(2000)).into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            b"POST /ingest HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            400,
            "bad_request",
        ),
        (request("GET", "/nowhere", &[], b""), 404, "not_found"),
        (
            request("GET", "/ingest", &[], b""),
            405,
            "method_not_allowed",
        ),
    ];
    for (req, status, code) in cases {
        let s = TcpStream::connect(server.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.try_clone().unwrap().write_all(&req).unwrap();
        let resp = read_response(&mut BufReader::new(s)).expect("a response");
        assert_eq!(
            resp.status,
            status,
            "{}",
            String::from_utf8_lossy(&req[..req.len().min(60)])
        );
        assert_eq!(resp.json()["error"], code);
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }
    good.write_all(b"after\n").unwrap();
    good.shutdown(std::net::Shutdown::Write).unwrap();
    let mut said = String::new();
    good.read_to_string(&mut said).unwrap();
    assert_eq!(last_ack(&said).map(|a| a.0), Some(2), "{said}");
    let m = http(server.http, "GET", "/metrics", &[], b"");
    let text = String::from_utf8(m.body).unwrap();
    assert!(
        text.contains("ringstash_http_responses_total{code=\"4xx\"} 11"),
        "{text}"
    );
    assert!(server.stop().success());
    let payloads: Vec<String> = stored_payloads(dir.path());
    assert_eq!(
        payloads,
        vec!["before", "after"],
        "no bad request stored anything"
    );
}

#[test]
fn connections_over_the_limit_are_refused_with_a_reason() {
    let (_dir, server) = Server::start_in_tempdir(&["--connections-max", "2"]);
    // One round trip on each held connection: both are then accepted and counted,
    // however slowly the server's reactors get to them.
    let (a, ack) = held_acked_connection(server.tcp_acked);
    assert_eq!(ack, Some((1, 0)), "the held tcp connection");
    let mut b = BufReader::new(TcpStream::connect(server.http).unwrap());
    b.get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    b.get_mut()
        .write_all(&request("GET", "/healthz", &[], b""))
        .unwrap();
    let r = read_response(&mut b).expect("the held http connection's answer");
    assert_eq!(r.status, 200, "the held http connection");
    let said = tcp_send_all(server.tcp_acked, b"x\n");
    assert!(said.starts_with("error - too_many_connections"), "{said}");
    let r = http(server.http, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "too_many_connections");
    drop((a, b));
    // The server sees the closes when its reactors get to them: until then a new
    // connection is still refused, and counted as such.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused_while_freeing = 0;
    let said = loop {
        let said = tcp_send_all(server.tcp_acked, b"x\n");
        if !said.starts_with("error - too_many_connections") || Instant::now() > deadline {
            break said;
        }
        refused_while_freeing += 1;
        std::thread::sleep(Duration::from_millis(20));
    };
    // The held connection's "x" took offset 0.
    assert_eq!(
        last_ack(&said),
        Some((1, 1)),
        "a slot frees when a connection closes: {said}"
    );
    assert_metrics(
        server.http,
        &[&format!(
            "ringstash_connections_refused_total{{reason=\"connections_max\"}} {}\n",
            2 + refused_while_freeing
        )],
    );
    assert!(server.stop().success());
}

#[test]
fn idle_connections_are_closed_with_a_reason() {
    let (_dir, server) = Server::start_in_tempdir(&[
        "--tcp-idle-timeout-ms",
        "300",
        "--http-idle-timeout-ms",
        "300",
    ]);
    let mut t = TcpStream::connect(server.tcp_acked).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t.write_all(b"one\n").unwrap();
    let mut said = String::new();
    t.read_to_string(&mut said).unwrap();
    assert!(
        said.contains("ack 1 0") && said.contains("error - idle_timeout"),
        "{said}"
    );
    // Half a request head, then silence: told why (408), then closed.
    let mut h = TcpStream::connect(server.http).unwrap();
    h.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    h.write_all(b"POST /ingest HTTP/1.1\r\nHost:").unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = h.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by the server, not the read timeout"
    );
    let (status, body) = status_and_body(&buf);
    assert_eq!(status, 408, "{body}");
    assert_contains(body["detail"].as_str().unwrap(), "http_idle_timeout_ms");
    assert_metrics(
        server.http,
        &[
            "ringstash_idle_closed_total{listener=\"stream\"} 1",
            "ringstash_idle_closed_total{listener=\"http\"} 1",
        ],
    );
    assert!(server.stop().success());
}

#[test]
fn a_full_ring_makes_producers_wait_and_loses_nothing() {
    let (dir, server) = Server::start_in_tempdir(&[
        "--ring-batches-max",
        "1",
        "--groups-in-flight-max",
        "1",
        "--group-bytes-max",
        "65536",
        "--record-bytes-max",
        "1024",
        "--read-buffer-bytes",
        "4096",
    ]);
    const CONNS: usize = 6;
    const LINES: usize = 5000;
    let counts: Vec<u64> = std::thread::scope(|s| {
        (0..CONNS)
            .map(|c| {
                let addr = server.tcp_acked;
                s.spawn(move || {
                    let payload: String = (0..LINES)
                        .map(|i| format!("c{c}-{i:06}-{}\n", "p".repeat(60)))
                        .collect();
                    last_ack(&tcp_send_all(addr, payload.as_bytes())).unwrap().0
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(counts, vec![LINES as u64; CONNS]);
    let waits = metric(server.http, "ringstash_ring_full_waits_total");
    assert!(
        waits > 0,
        "the ring was never full; the test did not exercise backpressure"
    );
    assert!(server.stop().success());
    assert_eq!(cat(dir.path()).len(), CONNS * LINES);
}

#[test]
fn full_disk_is_refused_explicitly_and_writing_resumes_when_space_returns() {
    let Some(fs) = Tmpfs::mount("3m") else { return };
    let data = fs.path().join("data");
    let server = Server::start(
        &data,
        &[
            "--segment-bytes-max",
            "1048576",
            "--group-bytes-max",
            "262144",
            "--record-bytes-max",
            "4096",
        ],
    );
    // Take most of the space with a file we can delete later.
    let filler = fs.path().join("filler");
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", filler.display()),
            "bs=64k",
            "count=32",
        ])
        .output()
        .unwrap();
    // Fill the rest over TCP until the server refuses.
    let line = format!("{}\n", "f".repeat(200));
    let mut refused_tcp = None;
    let mut full_connections = 0;
    for _ in 0..200 {
        let said = tcp_send_all(server.tcp_acked, line.repeat(500).as_bytes());
        if let Some(l) = said.lines().find(|l| l.starts_with("error - ")) {
            refused_tcp = Some((l.to_owned(), last_ack(&said).map_or(0, |a| a.0)));
            break;
        }
        assert_eq!(last_ack(&said).map(|a| a.0), Some(500), "{said}");
        full_connections += 1;
    }
    assert!(
        full_connections > 0,
        "some records were stored before the disk filled"
    );
    let (err, acked_in_failed_conn) = refused_tcp.expect("the disk never filled");
    assert!(err.starts_with("error - disk_full"), "{err}");
    // Clients learn what failed, never where the server keeps its data.
    let mount = fs.path().to_str().unwrap();
    assert!(
        !err.contains(mount),
        "a server path in the error line: {err}"
    );
    let r = http(
        server.http,
        "POST",
        "/ingest",
        &[],
        line.repeat(200).as_bytes(),
    );
    assert_eq!(r.status, 507, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"], "disk_full");
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        !detail.contains(mount),
        "a server path in the 507: {detail}"
    );
    assert_contains(&detail, "No space left on device");
    // OTLP exporters retry only 429/502/503/504: a full disk is their 503.
    let big = line.repeat(15);
    let r = post_otlp(server.http, &otlp_request("api", &[big.as_str(); 20]));
    assert_otlp_retry(&r, "10", "disk_full");
    let m = metrics(server.http);
    assert!(
        !m.contains("ringstash_write_errors_total{reason=\"disk_full\"} 0\n"),
        "{m}"
    );
    assert_eq!(
        http(server.http, "GET", "/healthz", &[], b"").status,
        200,
        "a full disk is not a failure"
    );

    std::fs::remove_file(&filler).unwrap();
    let said = tcp_send_all(server.tcp_acked, b"after space returned\n");
    assert_eq!(last_ack(&said).map(|a| a.0), Some(1), "{said}");
    let r = http(
        server.http,
        "POST",
        "/ingest",
        &[],
        b"http after space returned\n",
    );
    assert_eq!(r.status, 200);
    assert!(server.stop().success());

    // Every acked record is there, the log is clean, and nothing half-written remains.
    assert_check_clean(&data);
    let records = cat(&data);
    let full = records.iter().filter(|r| r.1.len() == 200).count();
    assert!(
        full as u64 >= full_connections * 500 + acked_in_failed_conn,
        "every acked record is stored"
    );
    assert_eq!(records[records.len() - 2].1, "after space returned");
    assert_eq!(records[records.len() - 1].1, "http after space returned");
}
