//! `ringstash serve` starting, stopping and crashing (the real binary, bytes on disk):
//! SIGKILL mid-stream, config files refused at start, retention by size and by age,
//! graceful shutdown, and a second server on the same ports.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::Command,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use common::*;

#[test]
fn sigkill_mid_stream_loses_no_acked_record_and_serves_nothing_torn() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let server = Server::start(dir.path(), &[]);
        const CONNS: usize = 4;
        let stop_at = Instant::now() + Duration::from_millis(400 + round * 450);
        // The kill waits for a first ack too (at most ACK_WAIT): a slow first fsync on
        // a busy disk must not make the round kill a server that acked nothing yet.
        const ACK_WAIT: Duration = Duration::from_secs(20);
        let give_up = Instant::now() + ACK_WAIT;
        let any_acked = &std::sync::atomic::AtomicBool::new(false);
        // Each producer sends numbered lines and records the highest ack it read.
        let acked: Vec<(String, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..CONNS)
                .map(|c| {
                    let addr = server.tcp_acked;
                    s.spawn(move || {
                        let tag = format!("r{round}c{c}");
                        let mut w = TcpStream::connect(addr).unwrap();
                        let mut r = BufReader::new(w.try_clone().unwrap());
                        r.get_ref()
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        let reader = s.spawn(move || {
                            let mut best = 0u64;
                            let mut line = String::new();
                            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                                if let Some((n, _)) = parse_ack(&line) {
                                    best = best.max(n);
                                    if n > 0 {
                                        any_acked.store(true, Ordering::Relaxed);
                                    }
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
            while Instant::now() < stop_at
                || (!any_acked.load(Ordering::Relaxed) && Instant::now() < give_up)
            {
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
    let said = tcp_send_all(server.tcp_acked, b"12345\n1234\n");
    assert!(
        said.contains("error 1 record_too_large"),
        "flag (4) overrides file (8): {said}"
    );
    assert!(server.stop().success());
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
        assert_eq!(acked_count(server.tcp_acked, &payload), Some(1000));
    }
    let stats = stats_json(server.http);
    let start = stats["log"]["start_offset"].as_u64().unwrap();
    assert!(stats["log"]["segments_purged"].as_u64().unwrap() > 0);
    assert!(start > 0);
    let total = segment_bytes(dir.path());
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
    assert_eq!(acked_count(server.tcp_acked, &payload), Some(3000));
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
    let mut w = TcpStream::connect(server.tcp_acked).unwrap();
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
            .args([
                "--tcp-acked-addr",
                "127.0.0.1:0",
                "--syslog-addr",
                "127.0.0.1:0",
                "--relp-addr",
                "127.0.0.1:0",
            ])
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
        let said = tcp_send_all(first.tcp_acked, format!("line {i}\n").as_bytes());
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
