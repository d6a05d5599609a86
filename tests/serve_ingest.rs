//! `ringstash serve` ingest end to end (the real binary, real sockets, bytes on disk):
//! TCP lines from many connections with matching acks, too-long lines, the HTTP ingest
//! endpoints, real clients (nc, curl, logger), JSON enrichment and validation, and
//! batches that never overflow.

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
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
                let addr = server.tcp_acked;
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
    // One observation per fdatasync; groups past two syncs in flight share one.
    let groups = metric("ringstash_groups_committed_total ");
    let syncs = metric("ringstash_fsyncs_total ");
    assert!(
        groups > 0 && (1..=groups).contains(&syncs),
        "{syncs} {groups}"
    );
    assert_eq!(
        metric("ringstash_group_commit_seconds_bucket{le=\"+Inf\"} "),
        syncs
    );
    assert_eq!(metric("ringstash_group_commit_seconds_count "), syncs);
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
        server.tcp_acked,
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
fn real_clients_nc_curl_logger() {
    let (dir, server) = Server::start_in_tempdir(&[]);
    let mut expected = Vec::new();
    // Each client is required: a missing one is a SKIP here, a failure under CI.
    let have = |cmd: &str, package: &str| common::require_tool(cmd, package).is_some();
    if have("curl", "curl") {
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
    }
    if have("nc", "netcat-openbsd") {
        let out = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "printf 'from nc\\n' | nc -q 2 {} {} || printf 'from nc\\n' | nc -N {} {}",
                    server.tcp_acked.ip(),
                    server.tcp_acked.port(),
                    server.tcp_acked.ip(),
                    server.tcp_acked.port()
                ),
            ])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("ack 1 "), "nc printed: {said}");
        expected.push("from nc".to_owned());
    }
    if have("logger", "bsdutils") {
        let st = Command::new("logger")
            .args([
                "--tcp",
                "-n",
                &server.tcp_acked.ip().to_string(),
                "-P",
                &server.tcp_acked.port().to_string(),
                "-t",
                "rstest",
                "from logger",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        expected.push("from logger".to_owned());
    }
    // logger does not wait for an ack: its record is in once the server has committed
    // all of them, which a busy machine may take a while to do.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(server.http, "ringstash_records_committed_total") < expected.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {} records committed",
            metric(server.http, "ringstash_records_committed_total"),
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    let said = tcp_send_all(server.tcp_acked, body.as_bytes());
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

#[test]
fn connections_are_spread_evenly_over_the_reactors_and_every_line_lands() {
    // The kernel's pick among the reactors' SO_REUSEPORT listeners is a hash: 16
    // connections over 3 reactors end up within one of each other by chance in about
    // one case of seven. The reactors hand connections over so that they always do.
    let (dir, server) = Server::start_in_tempdir(&["--reactor-threads", "3"]);
    // /stats is read over one kept-alive connection, counted from the start like the
    // others: a connection per request would still be counted, on its way out, when
    // the next one is placed, and tip the placement (CI saw [6, 4, 6] so).
    let stats_conn = TcpStream::connect(server.http).unwrap();
    stats_conn
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let stats_conn =
        std::cell::RefCell::new((stats_conn.try_clone().unwrap(), BufReader::new(stats_conn)));
    let loads = || -> Vec<u64> {
        let (w, r) = &mut *stats_conn.borrow_mut();
        w.write_all(&request("GET", "/stats", &[], b"")).unwrap();
        let s = read_response(r).expect("a /stats response").json();
        s["reactors"]["connections"]
            .as_array()
            .expect("reactors.connections")
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    // Open connections one at a time, each counted before the next is made (the
    // /stats connection is counted too).
    let mut conns = Vec::new();
    for i in 0..15 {
        let addr = if i % 3 == 2 {
            server.syslog
        } else {
            server.tcp
        };
        conns.push((addr, TcpStream::connect(addr).unwrap()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while loads().iter().sum::<u64>() < i + 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "connection {i} never counted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let l = loads();
    assert_eq!(l.len(), 3);
    assert_eq!(l.iter().sum::<u64>(), 16, "{l:?}");
    assert!(
        l.iter().max().unwrap() - l.iter().min().unwrap() <= 1,
        "connections per reactor {l:?}"
    );
    let handed = metric(server.http, "ringstash_connections_handed_over_total");
    assert!(handed > 0, "no connection was handed over: {l:?}");
    let text = metrics(server.http);
    assert_promtool_clean(&text);
    for r in 0..3 {
        assert_contains(
            &text,
            &format!("ringstash_reactor_connections{{reactor=\"{r}\"}} "),
        );
    }

    // Every connection, wherever it is served, stores what it is sent.
    for (i, (addr, c)) in conns.iter_mut().enumerate() {
        let line = if *addr == server.syslog {
            format!("<14>Dec  6 04:27:01 host app{i}: line {i}\n")
        } else {
            format!("line {i}\n")
        };
        c.write_all(line.as_bytes()).unwrap();
    }
    drop(conns);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(server.http, "ringstash_records_committed_total") < 15 {
        assert!(std::time::Instant::now() < deadline, "{:?}", loads());
        std::thread::sleep(Duration::from_millis(5));
    }
    // Ended connections are no longer counted (only the /stats connection).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while loads().iter().sum::<u64>() != 1 {
        assert!(std::time::Instant::now() < deadline, "{:?}", loads());
        std::thread::sleep(Duration::from_millis(5));
    }
    server.stop();
    let mut seen: Vec<String> = cat(dir.path())
        .into_iter()
        .map(
            |(_, payload)| match serde_json::from_str::<serde_json::Value>(&payload) {
                Ok(syslog) => syslog["message"].as_str().unwrap().to_owned(),
                Err(_) => payload,
            },
        )
        .collect();
    seen.sort();
    let mut want: Vec<String> = (0..15).map(|i| format!("line {i}")).collect();
    want.sort();
    assert_eq!(seen, want);
}
