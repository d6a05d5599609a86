//! `ringstash serve` end to end: the real binary, real sockets, bytes on disk.

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use common::*;

#[test]
fn tcp_lines_from_many_connections_land_in_order_with_matching_acks() {
    let (dir, server) = Server::start_in_tempdir(&[]);
    const CONNS: usize = 8;
    const LINES: usize = 3000;
    let acks: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CONNS)
            .map(|c| {
                let addr = server.tcp;
                s.spawn(move || {
                    let mut payload = Vec::new();
                    for i in 0..LINES {
                        // Mixed line endings; every line a record.
                        let end = if i % 3 == 0 { "\r\n" } else { "\n" };
                        payload.extend_from_slice(format!("conn{c} line{i}{end}").as_bytes());
                    }
                    let said = tcp_send_all(addr, &payload);
                    assert!(!said.contains("error"), "server said: {said}");
                    last_ack(&said).expect("an ack")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Every group commit is in the histogram, and the percentiles come from it.
    let m = metrics(server.http);
    let metric = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing"))
            .trim()
            .parse::<f64>()
            .unwrap() as u64
    };
    let groups = metric("ringstash_groups_committed_total ");
    assert!(groups > 0);
    assert_eq!(
        metric("ringstash_group_commit_seconds_bucket{le=\"+Inf\"} "),
        groups
    );
    assert_eq!(metric("ringstash_group_commit_seconds_count "), groups);
    let stats = stats_json(server.http);
    let (p50, p99) = (
        stats["log"]["group_commit_us_p50"].as_u64().unwrap(),
        stats["log"]["group_commit_us_p99"].as_u64().unwrap(),
    );
    assert!(p50 > 0 && p50 <= p99, "{p50} {p99}");
    assert!(server.stop().success());
    let records = cat(dir.path());
    assert_eq!(records.len(), CONNS * LINES);
    // Offsets contiguous from 0.
    for (i, (off, _)) in records.iter().enumerate() {
        assert_eq!(*off, i as u64);
    }
    // Per connection: all lines, in order, and the final ack names the last one.
    let mut per_conn: HashMap<usize, Vec<(u64, usize)>> = HashMap::new();
    for (off, p) in &records {
        let (c, i) = p.strip_prefix("conn").unwrap().split_once(" line").unwrap();
        per_conn
            .entry(c.parse().unwrap())
            .or_default()
            .push((*off, i.parse().unwrap()));
    }
    for c in 0..CONNS {
        let v = &per_conn[&c];
        assert_eq!(
            v.iter().map(|x| x.1).collect::<Vec<_>>(),
            (0..LINES).collect::<Vec<_>>(),
            "conn {c} order"
        );
        assert_eq!(
            acks[c],
            (LINES as u64, v.last().unwrap().0),
            "conn {c} final ack"
        );
    }
}

#[test]
fn tcp_refuses_too_long_lines_alone_and_stores_a_final_unterminated_line() {
    let (dir, server) = Server::start_in_tempdir(&["--record-bytes-max", "16"]);
    let long = "x".repeat(100);
    let said = tcp_send_all(
        server.tcp,
        format!("ok1\n{long}\nok2\n\nlast-no-newline").as_bytes(),
    );
    assert!(
        said.contains("error 2 record_too_large"),
        "error line names line 2: {said}"
    );
    assert_eq!(last_ack(&said), Some((3, 2)), "{said}");
    assert!(server.stop().success());
    let payloads: Vec<String> = stored_payloads(dir.path());
    assert_eq!(payloads, vec!["ok1", "ok2", "last-no-newline"]);
}

#[test]
fn http_ingest_endpoints_with_keep_alive_pipelining_and_chunked() {
    let (dir, server) = Server::start_in_tempdir(&["--json-enrich", "false"]);
    let s = TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);

    w.write_all(&request("POST", "/ingest", &[], b"alpha\nbeta\n"))
        .unwrap();
    let a = read_response(&mut r).unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        serde_json::json!({"count": 2, "first_offset": 0, "last_offset": 1})
    );

    // Two requests in one write (pipelined): answered in order on the same connection.
    let mut two = request(
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        br#"[{"service":"auth_service","level":"INFO","message":"login"},{"z":1,"a":2}]"#,
    );
    two.extend(request(
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/x-ndjson")],
        b"{\"n\": 1}\n\n{\"n\": 2}\n",
    ));
    w.write_all(&two).unwrap();
    let b = read_response(&mut r).unwrap();
    assert_eq!(
        b.json(),
        serde_json::json!({"count": 2, "first_offset": 2, "last_offset": 3})
    );
    let c = read_response(&mut r).unwrap();
    assert_eq!(
        c.json(),
        serde_json::json!({"count": 2, "first_offset": 4, "last_offset": 5})
    );

    // Chunked body, with Expect: 100-continue.
    w.write_all(
        b"POST /ingest HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut cont = String::new();
    r.read_line(&mut cont).unwrap();
    assert!(cont.starts_with("HTTP/1.1 100"), "{cont}");
    r.read_line(&mut cont).unwrap();
    w.write_all(b"6\r\ngamma\n\r\n6\r\ndelta\n\r\n0\r\n\r\n")
        .unwrap();
    let d = read_response(&mut r).unwrap();
    assert_eq!(
        d.json(),
        serde_json::json!({"count": 2, "first_offset": 6, "last_offset": 7})
    );

    let h = {
        w.write_all(&request("GET", "/healthz", &[], b"")).unwrap();
        read_response(&mut r).unwrap()
    };
    assert_eq!(
        (h.status, h.json()),
        (200, serde_json::json!({"status": "ok"}))
    );
    drop((w, r));
    assert!(server.stop().success());
    let payloads: Vec<String> = stored_payloads(dir.path());
    assert_eq!(
        payloads,
        vec![
            "alpha",
            "beta",
            r#"{"service":"auth_service","level":"INFO","message":"login"}"#,
            r#"{"z":1,"a":2}"#,
            r#"{"n":1}"#,
            r#"{"n":2}"#,
            "gamma",
            "delta"
        ]
    );
}

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
    let mut good = TcpStream::connect(server.tcp).unwrap();
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
        text.contains("ringstash_http_responses_4xx_total 11"),
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
    let a = TcpStream::connect(server.tcp).unwrap();
    let b = TcpStream::connect(server.http).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let said = tcp_send_all(server.tcp, b"x\n");
    assert!(said.starts_with("error - too_many_connections"), "{said}");
    let r = http(server.http, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "too_many_connections");
    drop((a, b));
    std::thread::sleep(Duration::from_millis(300));
    let said = tcp_send_all(server.tcp, b"x\n");
    assert_eq!(
        last_ack(&said),
        Some((1, 0)),
        "a slot frees when a connection closes: {said}"
    );
    assert_metrics(server.http, &["ringstash_connections_refused_total 2"]);
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
    let mut t = TcpStream::connect(server.tcp).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t.write_all(b"one\n").unwrap();
    let mut said = String::new();
    t.read_to_string(&mut said).unwrap();
    assert!(
        said.contains("ack 1 0") && said.contains("error - idle_timeout"),
        "{said}"
    );
    // Slowloris: half a request head, then silence.
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
    assert_metrics(
        server.http,
        &[
            "ringstash_tcp_idle_closed_total 1",
            "ringstash_http_idle_closed_total 1",
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
                let addr = server.tcp;
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
    let m = metrics(server.http);
    let waits: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("ringstash_ring_full_waits_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        waits > 0,
        "the ring was never full; the test did not exercise backpressure"
    );
    assert!(server.stop().success());
    assert_eq!(cat(dir.path()).len(), CONNS * LINES);
}

#[test]
fn sigkill_mid_stream_loses_no_acked_record_and_serves_nothing_torn() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let server = Server::start(dir.path(), &[]);
        const CONNS: usize = 4;
        let stop_at = Instant::now() + Duration::from_millis(400 + round * 450);
        // Each producer sends numbered lines and records the highest ack it read.
        let acked: Vec<(String, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..CONNS)
                .map(|c| {
                    let addr = server.tcp;
                    s.spawn(move || {
                        let tag = format!("r{round}c{c}");
                        let mut w = TcpStream::connect(addr).unwrap();
                        let mut r = BufReader::new(w.try_clone().unwrap());
                        r.get_ref()
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        let reader = std::thread::spawn(move || {
                            let mut best = 0u64;
                            let mut line = String::new();
                            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                                if let Some((n, _)) = parse_ack(&line) {
                                    best = best.max(n);
                                }
                                line.clear();
                            }
                            best
                        });
                        let mut i = 0u64;
                        while w
                            .write_all(format!("{tag} {i:08} payload-payload-payload\n").as_bytes())
                            .is_ok()
                        {
                            i += 1;
                            if i.is_multiple_of(64) {
                                std::thread::yield_now();
                            }
                        }
                        (tag, reader.join().unwrap())
                    })
                })
                .collect();
            while Instant::now() < stop_at {
                std::thread::sleep(Duration::from_millis(10));
            }
            unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) };
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        drop(server);
        // Restart: recovery cuts any torn tail; every acked record is there exactly once.
        let server = Server::start(dir.path(), &[]);
        assert!(server.stop().success());
        let records = cat(dir.path());
        for (i, (off, _)) in records.iter().enumerate() {
            assert_eq!(*off, i as u64, "offsets contiguous after recovery");
        }
        for (tag, n) in &acked {
            let mine: Vec<u64> = records
                .iter()
                .filter_map(|(_, p)| p.strip_prefix(&format!("{tag} ")))
                .map(|rest| {
                    assert!(
                        rest.ends_with(" payload-payload-payload"),
                        "torn record served: {rest:?}"
                    );
                    rest[..8].parse().unwrap()
                })
                .collect();
            assert!(
                mine.len() as u64 >= *n,
                "{tag}: {n} acked but only {} stored",
                mine.len()
            );
            // Stored records of a connection are a prefix of what it sent, once each.
            assert_eq!(
                mine,
                (0..mine.len() as u64).collect::<Vec<_>>(),
                "{tag}: order/duplicates"
            );
        }
        assert!(
            acked.iter().any(|(_, n)| *n > 0),
            "round {round}: nothing was acked before the kill"
        );
        assert_check_clean(dir.path());
    }
}

#[test]
fn real_clients_nc_curl_logger() {
    let (dir, server) = Server::start_in_tempdir(&[]);
    let mut expected = Vec::new();
    let have = |cmd: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .output()
            .unwrap()
            .status
            .success()
    };
    if have("curl") {
        let out = Command::new("curl")
            .args([
                "-s",
                "-d",
                "from curl",
                &format!("http://{}/ingest", server.http),
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["count"], 1);
        expected.push("from curl".to_owned());
    } else {
        println!("SKIP curl: not installed");
    }
    if have("nc") {
        let out = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "printf 'from nc\\n' | nc -q 2 {} {} || printf 'from nc\\n' | nc -N {} {}",
                    server.tcp.ip(),
                    server.tcp.port(),
                    server.tcp.ip(),
                    server.tcp.port()
                ),
            ])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("ack 1 "), "nc printed: {said}");
        expected.push("from nc".to_owned());
    } else {
        println!("SKIP nc: not installed");
    }
    if have("logger") {
        let st = Command::new("logger")
            .args([
                "--tcp",
                "-n",
                &server.tcp.ip().to_string(),
                "-P",
                &server.tcp.port().to_string(),
                "-t",
                "rstest",
                "from logger",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        expected.push("from logger".to_owned());
    } else {
        println!("SKIP logger: not installed");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.stop().success());
    let got: Vec<String> = stored_payloads(dir.path());
    for e in &expected {
        assert!(
            got.iter().any(|g| g.contains(e.as_str())),
            "{e:?} not stored; got {got:?}"
        );
    }
    assert_eq!(got.len(), expected.len());
}

#[test]
fn config_file_unknown_keys_and_bad_values_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ringstash.toml");
    // Writes `contents` as the config file; serve must refuse to start, saying `says`.
    let refused = |contents: &str, says: &str| {
        std::fs::write(&cfg, contents).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(says));
    };
    refused("conections_max = 5\n", "conections_max");
    refused("connections_max = 0\n", "connections_max = 0 is outside");
    // A valid file is used, and flags override it.
    std::fs::write(&cfg, "connections_max = 1\nrecord_bytes_max = 8\n").unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        &["--config", cfg.to_str().unwrap(), "--record-bytes-max", "4"],
    );
    let said = tcp_send_all(server.tcp, b"12345\n1234\n");
    assert!(
        said.contains("error 1 record_too_large"),
        "flag (4) overrides file (8): {said}"
    );
    assert!(server.stop().success());
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
        let said = tcp_send_all(server.tcp, line.repeat(500).as_bytes());
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
    let r = http(
        server.http,
        "POST",
        "/ingest",
        &[],
        line.repeat(200).as_bytes(),
    );
    assert_eq!(r.status, 507, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"], "disk_full");
    let m = metrics(server.http);
    assert!(!m.contains("ringstash_disk_full_errors_total 0\n"), "{m}");
    assert_eq!(
        http(server.http, "GET", "/healthz", &[], b"").status,
        200,
        "a full disk is not a failure"
    );

    std::fs::remove_file(&filler).unwrap();
    let said = tcp_send_all(server.tcp, b"after space returned\n");
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

#[test]
fn json_logs_are_enriched_and_optionally_validated() {
    let (dir, server) =
        Server::start_in_tempdir(&["--json-validate", "true", "--node-id", "node-a"]);
    let json = [("Content-Type", "application/json")];
    let now = ringstash::cli::format_ts(ringstash::wal::now_ns());
    let good = format!(
        r#"[{{"service":"auth_service","level":"WARN","message":"slow","timestamp":"{now}","client_ip":"spoofed"}}]"#
    );
    let r = http(server.http, "POST", "/v1/logs", &json, good.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // One bad object refuses the whole request, naming the object and the field.
    let bad = br#"[{"service":"s","message":"ok"},{"service":"s","message":""}]"#;
    let r = http(server.http, "POST", "/v1/logs", &json, bad);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_log");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("log object 1: `message` is empty")
    );
    let stale = br#"{"service":"s","message":"m","timestamp":"2001-01-01T00:00:00Z"}"#;
    let r = http(server.http, "POST", "/v1/logs", &json, stale);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_log"))
    );
    assert!(server.stop().success());
    let stored = cat(dir.path());
    assert_eq!(stored.len(), 1, "refused requests stored nothing");
    let v: serde_json::Value = serde_json::from_str(&stored[0].1).unwrap();
    assert_eq!(v["service"], "auth_service");
    assert_eq!(v["node_id"], "node-a");
    assert_eq!(
        v["client_ip"], "127.0.0.1",
        "enrichment overwrites what the client claimed"
    );
    assert!(v["received_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn retention_removes_the_oldest_segments_by_size_and_readers_start_at_the_oldest_kept() {
    let (dir, server) =
        Server::start_in_tempdir(&small_segments_and(&["--retention-bytes-max", "200000"]));
    // About 1 MB of records: many rotations, of which retention keeps about 200 kB.
    for c in 0..10 {
        let payload: String = (0..1000)
            .map(|i| format!("c{c:02} {i:04} {}\n", "r".repeat(80)))
            .collect();
        assert_eq!(
            last_ack(&tcp_send_all(server.tcp, payload.as_bytes())).map(|a| a.0),
            Some(1000)
        );
    }
    let stats = stats_json(server.http);
    let start = stats["log"]["start_offset"].as_u64().unwrap();
    assert!(stats["log"]["segments_purged"].as_u64().unwrap() > 0);
    assert!(start > 0);
    let total: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        total <= 200_000 + 65_536,
        "retention bound held (one active segment may be on top): {total}"
    );
    assert!(server.stop().success());
    // What is kept is contiguous from the new start to the end, and checks clean.
    let records = cat(dir.path());
    assert_eq!(records.first().unwrap().0, start);
    assert_eq!(records.last().unwrap().0, 9999);
    for w in records.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1);
    }
    assert_check_clean(dir.path());
}

#[test]
fn retention_by_age_removes_sealed_segments_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &SMALL_SEGMENTS);
    let payload: String = (0..3000)
        .map(|i| format!("{i:05} {}\n", "a".repeat(90)))
        .collect();
    assert_eq!(
        last_ack(&tcp_send_all(server.tcp, payload.as_bytes())).map(|a| a.0),
        Some(3000)
    );
    assert!(server.stop().success());
    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 4, "several segments: {logs:?}");
    // Age the two oldest segments by two days.
    for p in &logs[..2] {
        assert!(
            Command::new("touch")
                .args(["-d", "2 days ago"])
                .arg(p)
                .status()
                .unwrap()
                .success()
        );
    }
    let server = Server::start(
        dir.path(),
        &small_segments_and(&["--retention-ms", "86400000"]),
    );
    let stats = stats_json(server.http);
    assert_eq!(stats["log"]["segments_purged"], 2);
    assert!(server.stop().success());
    assert!(!logs[0].exists() && !logs[1].exists() && logs[2].exists());
    let records = cat(dir.path());
    assert_eq!(records.last().unwrap().0, 2999, "nothing newer was touched");
    assert!(records[0].1.starts_with(&format!("{:05}", records[0].0)));
}

#[test]
fn graceful_shutdown_acks_every_record_it_stored() {
    let (dir, server) = Server::start_in_tempdir(&[]);
    let mut w = TcpStream::connect(server.tcp).unwrap();
    let mut r = BufReader::new(w.try_clone().unwrap());
    r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = r.read_to_string(&mut all);
        all
    });
    let sender = std::thread::spawn(move || {
        let chunk: String = (0..256)
            .map(|i| format!("stream {i:03} {}\n", "s".repeat(100)))
            .collect();
        while w.write_all(chunk.as_bytes()).is_ok() {}
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(server.stop().success());
    let said = reader.join().unwrap();
    sender.join().unwrap();
    let (acked, last) = last_ack(&said).expect("acks before the shutdown");
    assert!(
        said.trim_end()
            .ends_with("error - shutting_down the server is shutting down"),
        "{}",
        &said[said.len().saturating_sub(200)..]
    );
    let stored = cat(dir.path());
    assert_eq!(
        acked,
        stored.len() as u64,
        "the final ack covers exactly what was stored (else a client resends stored records)"
    );
    assert_eq!(last, stored.len() as u64 - 1);
}

#[test]
fn a_long_line_after_short_ones_never_overflows_a_batch() {
    // The reviewer's reproduction: small groups, a record bound close to the group size,
    // short lines then a long one in the same read.
    let (dir, server) = Server::start_in_tempdir(&[
        "--group-bytes-max",
        "4096",
        "--record-bytes-max",
        "4000",
        "--read-buffer-bytes",
        "4096",
    ]);
    let mut body = String::new();
    for i in 0..19 {
        body.push_str(&format!("{i:02}{}\n", "s".repeat(97)));
    }
    body.push_str(&"L".repeat(2000));
    body.push('\n');
    let said = tcp_send_all(server.tcp, body.as_bytes());
    assert_eq!(last_ack(&said).map(|a| a.0), Some(20), "{said}");
    let r = http(server.http, "POST", "/ingest", &[], body.as_bytes());
    assert_eq!(
        (r.status, r.json()["count"].as_u64()),
        (200, Some(20)),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(server.stop().success());
    assert_eq!(cat(dir.path()).len(), 40);
}

/// SO_REUSEPORT must not let a second server (or a second listener of this one) share
/// a port: the kernel would split the producers' connections between them. A second
/// server on the first's ports refuses to start and names the address; the first
/// still receives every connection.
#[test]
fn a_second_server_on_the_same_ports_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(&dir.path().join("a"), &[]);
    let (tcp, http) = (first.tcp.to_string(), first.http.to_string());
    let refused = |args: &[&str], says: &str| {
        let mut second = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("b"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // One that binds keeps running: give it a bounded time, then fail.
        let status = wait_timeout(&mut second, Duration::from_secs(10));
        if status.is_none() {
            let _ = second.kill();
        }
        let mut err = String::new();
        second
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let _ = second.wait();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{args:?} started: {err}"
        );
        assert!(err.contains(says), "{args:?}: {err}");
    };
    // Its TCP port, then its HTTP port, each taken by the other's listener.
    refused(
        &[
            "--tcp-addr",
            &tcp,
            "--http-addr",
            "127.0.0.1:0",
            "--ws-addr",
            "127.0.0.1:0",
        ],
        &format!("binding the TCP listener on {tcp}"),
    );
    refused(
        &[
            "--tcp-addr",
            "127.0.0.1:0",
            "--http-addr",
            &tcp,
            "--ws-addr",
            "127.0.0.1:0",
        ],
        &format!("binding the HTTP listener on {tcp}"),
    );
    refused(
        &[
            "--tcp-addr",
            &http,
            "--http-addr",
            "127.0.0.1:0",
            "--ws-addr",
            "127.0.0.1:0",
        ],
        "does not share its ports",
    );
    // One server's own TCP and HTTP listeners on one port.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    refused(
        &[
            "--tcp-addr",
            &free,
            "--http-addr",
            &free,
            "--ws-addr",
            "127.0.0.1:0",
        ],
        "tcp_addr and http_addr are the same address",
    );
    // 20 connections, one record each: all land in the first server's log.
    for i in 0..20 {
        let said = tcp_send_all(first.tcp, format!("line {i}\n").as_bytes());
        assert!(said.starts_with("ack 1 "), "connection {i}: {said}");
    }
    let data = first.data_dir.clone();
    assert!(first.stop().success());
    let out = Command::new(BIN)
        .args(["cat", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 20);
}
