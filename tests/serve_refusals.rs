//! Refusals the server owes its clients in words (the real binary, real sockets): a
//! request head or body trickled in (slowloris) is cut at its deadline with 408; every
//! connection over `connections_max` is told why, even in a burst; a request on a
//! keep-alive connection during a drain gets 503; a last line keeps its `\r`; error
//! bodies carry no server paths; stderr carries no colour codes unless it is a
//! terminal.

mod common;

use std::{
    io::{BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use common::*;

#[test]
fn a_trickled_head_is_cut_with_408_at_its_deadline_while_others_are_served() {
    let (_dir, s) =
        Server::start_in_tempdir(&["--http-head-timeout-ms", "1000", "--connections-max", "64"]);
    const TRICKLERS: usize = 60;
    let head = b"POST /ingest HTTP/1.1\r\nHost: slow\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    // All connected first (the threads only send), so that the server sees all sixty
    // within its head deadline however slowly threads start.
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|_| {
            let conn = TcpStream::connect(s.http).unwrap();
            let started = Instant::now();
            let head = head.clone();
            std::thread::spawn(move || {
                trickle_on(
                    conn,
                    started,
                    &head,
                    Duration::from_millis(200),
                    Duration::from_secs(8),
                )
            })
        })
        .collect();
    // While they trickle, other clients are served, alongside all sixty: /stats answers
    // with them open (and itself), once the server has accepted them all.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = stats_json(s.http)["server"]["connections_open"]
            .as_u64()
            .unwrap();
        if open > TRICKLERS as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "served alongside the tricklers: {open} open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..10 {
        assert_eq!(http(s.http, "GET", "/healthz", &[], b"").status, 200);
    }
    for t in tricklers {
        let t = t.join().unwrap();
        assert_cut_at_deadline(&t, "http_head_timeout_ms", Duration::from_secs(1));
    }
    assert_metrics(
        s.http,
        &[
            "ringstash_http_head_timeouts_total 60",
            "ringstash_http_body_too_slow_total 0",
        ],
    );
    assert_eq!(
        http(s.http, "GET", "/healthz", &[], b"").status,
        200,
        "every slot came back"
    );
    assert!(s.stop().success());
}

#[test]
fn a_body_slower_than_the_minimum_rate_gets_408_and_a_slow_one_within_it_succeeds() {
    let (dir, s) = Server::start_in_tempdir(&[
        "--http-body-rate-bytes-per-s-min",
        "100",
        "--http-body-rate-window-ms",
        "1000",
    ]);
    let body: Vec<u8> = (0..60)
        .flat_map(|i| format!("line {i:03}\n").into_bytes())
        .collect();
    assert_eq!(body.len(), 540);
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let send = |piece: usize, every: Duration| {
        let mut c = TcpStream::connect(s.http).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut w = c.try_clone().unwrap();
        let body = body.clone();
        let writer = std::thread::spawn(move || {
            for p in body.chunks(piece) {
                std::thread::sleep(every);
                if w.write_all(p).is_err() {
                    return;
                }
            }
        });
        let r = read_response(&mut BufReader::new(c)).expect("a response");
        let took = started.elapsed();
        writer.join().unwrap();
        (r, took)
    };
    // 450 bytes/s, 4.5 times the minimum, in 45-byte pieces over 1.2 s (more than a
    // window): stored. At twice the minimum, a sender thread held up half a second on
    // a busy machine could fall below it in one window.
    let (r, took) = send(45, Duration::from_millis(100));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["count"], 60);
    assert!(took >= Duration::from_millis(1100), "it was slow: {took:?}");
    // 20 bytes/s: cut at the end of the first window, nothing stored.
    let (r, took) = send(5, Duration::from_millis(250));
    assert_eq!(r.status, 408, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"], "request_timeout");
    assert_contains(
        r.json()["detail"].as_str().unwrap(),
        "http_body_rate_bytes_per_s_min",
    );
    assert!(took < Duration::from_millis(3000), "cut late: {took:?}");
    assert_metrics(s.http, &["ringstash_http_body_too_slow_total 1"]);
    assert!(s.stop().success());
    assert_eq!(cat(dir.path()).len(), 60, "only the body within the rate");
}

#[test]
fn every_connection_over_the_limit_is_told_why_even_in_a_burst_of_300() {
    let (_dir, s) = Server::start_in_tempdir(&["--connections-max", "4"]);
    // One round trip on each: all four are accepted and counted before the burst.
    let held: Vec<BufReader<TcpStream>> = (0..4)
        .map(|_| {
            let (c, ack) = held_acked_connection(s.tcp_acked);
            assert_eq!(ack.map(|a| a.0), Some(1), "a held connection");
            c
        })
        .collect();
    const BURST: usize = 300;
    // All at once, and each keeps its socket open until every one has its answer:
    // the server holds all 300 refusals in flight at the same time.
    let go = Arc::new(Barrier::new(BURST));
    let done = Arc::new(Barrier::new(BURST));
    let clients: Vec<_> = (0..BURST)
        .map(|i| {
            let (go, done) = (go.clone(), done.clone());
            let (addr, ask) = if i % 2 == 0 {
                (s.tcp_acked, b"x\n".to_vec())
            } else {
                (s.http, request("GET", "/healthz", &[], b""))
            };
            std::thread::spawn(move || {
                go.wait();
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let _ = c.write_all(&ask);
                let mut said = Vec::new();
                let _ = c.read_to_end(&mut said);
                done.wait();
                (i, String::from_utf8_lossy(&said).into_owned())
            })
        })
        .collect();
    let mut bare = Vec::new();
    for c in clients {
        let (i, said) = c.join().unwrap();
        let told = if i % 2 == 0 {
            said.starts_with("error - too_many_connections connections_max (4) reached\n")
        } else {
            said.starts_with("HTTP/1.1 503") && said.contains("\"too_many_connections\"")
        };
        if !told {
            bare.push((i, said));
        }
    }
    assert!(
        bare.is_empty(),
        "{} of {BURST} refused connections were not told why, e.g. {:?}",
        bare.len(),
        &bare[..bare.len().min(3)]
    );
    drop(held);
    // The scrape needs a free slot: the server frees them when its reactors see the
    // closes, and counts what it refuses until then.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused_while_freeing = 0;
    let m = loop {
        let r = http(s.http, "GET", "/metrics", &[], b"");
        if r.status == 200 {
            break String::from_utf8(r.body).unwrap();
        }
        assert!(Instant::now() < deadline, "no slot freed: {}", r.status);
        refused_while_freeing += 1;
        std::thread::sleep(Duration::from_millis(20));
    };
    for line in [
        format!(
            "ringstash_connections_refused_total{{reason=\"connections_max\"}} {}\n",
            BURST + refused_while_freeing
        ),
        "ringstash_refusals_unlingered_total 0\n".to_owned(),
    ] {
        assert!(m.contains(&line), "{line} in {m}");
    }
    assert!(s.stop().success());
}

#[test]
fn a_request_on_a_keep_alive_connection_during_a_drain_gets_503() {
    let (dir, s) = Server::start_in_tempdir(&[]);
    // A keep-alive client, idle after its first request.
    let idle = TcpStream::connect(s.http).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut idle_w = idle.try_clone().unwrap();
    let mut idle_r = BufReader::new(idle);
    idle_w
        .write_all(&request("GET", "/healthz", &[], b""))
        .unwrap();
    assert_eq!(read_response(&mut idle_r).unwrap().status, 200);
    // A client halfway through its body keeps the drain going.
    let busy = TcpStream::connect(s.http).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut busy_w = busy.try_clone().unwrap();
    busy_w
        .write_all(b"POST /ingest HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\nbefore")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    // SIGTERM: the server drains. The idle connection asks until the drain has reached
    // its reactor (a fixed pause, once used here, could end before on a slow machine);
    // until then it is answered as usual and stays open.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        idle_w
            .write_all(&request("GET", "/healthz", &[], b""))
            .unwrap();
        let r = read_response(&mut idle_r).expect("an answer, not EOF");
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "shutting_down");
    assert_eq!(r.header("connection"), Some("close"));
    // The request under way when the drain began completes, and closes.
    busy_w.write_all(b" drain\n").unwrap();
    let r = read_response(&mut BufReader::new(busy)).expect("the stored request's answer");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("connection"), Some("close"));
    let mut s = s;
    let status = wait_timeout(&mut s.child, Duration::from_secs(20)).expect("it stops");
    assert!(status.success());
    assert_eq!(stored_payloads(dir.path()), vec!["before drain"]);
}

#[test]
fn a_last_line_without_newline_keeps_its_carriage_return() {
    let (dir, s) = Server::start_in_tempdir(&[]);
    tcp_send_all(s.tcp, b"tcp one\r\ntcp last\r");
    let r = http(s.http, "POST", "/ingest", &[], b"http one\r\nhttp last\r");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["count"], 2);
    let r = http(s.http, "GET", "/v1/logs?from=0", &[], b"").json();
    let mut got: Vec<&str> = r["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data"].as_str().unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec!["http last\r", "http one", "tcp last\r", "tcp one"]
    );
    assert!(s.stop().success());
    drop(dir);
}

#[test]
fn the_logs_on_stderr_carry_no_colour_codes_when_it_is_not_a_terminal() {
    // serve, logging at debug (the writer's last line is logged at its stop).
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_env(dir.path(), &[], &[("RINGSTASH_LOG", "debug")]);
    assert_eq!(http(s.http, "POST", "/ingest", &[], b"x\n").status, 200);
    let stderr = s.stderr.clone();
    assert!(s.stop().success());
    let text = stderr.lock().unwrap().clone();
    assert_contains(&text, "writer stopped cleanly");
    assert!(
        !text.contains('\x1b'),
        "colour codes in serve's stderr: {text:?}"
    );
    // append, at its default level.
    let mut child = Command::new(BIN)
        .args(["append", "--data-dir"])
        .arg(dir.path().join("append"))
        .env_remove("RINGSTASH_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a\nb\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert_contains(&text, "appended");
    assert!(
        !text.contains('\x1b'),
        "colour codes in append's stderr: {text:?}"
    );
}
