//! Fault injection through named failpoints (`--features failpoints`; the README's test
//! command enables it): a failed fdatasync, and a writer so slow the ring stays full.
#![cfg(feature = "failpoints")]

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::{
    otlp::{assert_otlp_retry, otlp_request, post_otlp},
    *,
};

/// Starts serve with failpoints armed.
/// The failpoints go to this server's environment alone: set on the test process, the
/// variable raced the other tests' spawns (they run in parallel) and a server could
/// start with another test's failpoints or none, as CI once saw (a 200 where the
/// armed EIO should have made a 500).
fn start_armed(dir: &std::path::Path, failpoints: &str, extra: &[&str]) -> Server {
    Server::start_env(dir, extra, &[("RINGSTASH_FAILPOINTS", failpoints)])
}

#[test]
fn a_failed_fdatasync_acknowledges_nothing_it_covered_and_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // Five groups succeed; the sixth fdatasync fails with EIO.
    let mut server = start_armed(
        dir.path(),
        "fsync_eio_after=5",
        &["--groups-in-flight-max", "1"],
    );
    let mut acked = 0u64;
    let mut failed_line = None;
    for i in 0..20 {
        let said = tcp_send_all(server.tcp_acked, format!("batch {i} record\n").as_bytes());
        match (
            last_ack(&said),
            said.lines().find(|l| l.starts_with("error - ")),
        ) {
            (Some((1, _)), None) => acked += 1,
            (_, Some(e)) => {
                failed_line = Some(e.to_owned());
                break;
            }
            other => panic!("unexpected reply {said:?} {other:?}"),
        }
    }
    assert_eq!(
        acked, 5,
        "exactly the records of the five good fdatasyncs were acked"
    );
    let err = failed_line.expect("the failed fdatasync was reported");
    assert!(
        err.starts_with("error - log_failed") && err.contains("fdatasync"),
        "{err}"
    );
    let data_dir = dir.path().to_str().unwrap();
    assert!(
        !err.contains(data_dir),
        "a server path in the error line: {err}"
    );
    // The server drains and exits non-zero, naming the cause, so a supervisor restarts it.
    let status = wait_timeout(&mut server.child, Duration::from_secs(20))
        .expect("server exits after the failure");
    assert!(!status.success());
    assert!(
        server.stderr_text().contains("fdatasync"),
        "{}",
        server.stderr_text()
    );
    // The acked records are there after a restart, exact and in order. The batch whose
    // fdatasync failed may be there too (its write went through; it was never acked),
    // and nothing after it: the writer stopped at the failure.
    let stored: Vec<String> = stored_payloads(dir.path());
    assert!(
        (5..=6).contains(&stored.len()),
        "the 5 acked records and at most the unacknowledged sixth: {stored:?}"
    );
    for (i, got) in stored.iter().enumerate() {
        assert_eq!(got, &format!("batch {i} record"));
    }
}

#[test]
fn a_failed_fdatasync_in_append_never_prints_the_batch_it_covered() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::wal::spawn_append_printing_offsets(
        dir.path(),
        &["--batch-records", "1"],
        &[("RINGSTASH_FAILPOINTS", "fsync_eio_after=3")],
    );
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = Vec::new();
    for i in 0..10 {
        if writeln!(stdin, "line {i}")
            .and_then(|()| stdin.flush())
            .is_err()
        {
            break;
        }
        let mut l = String::new();
        if out.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        printed.push(l.trim().to_owned());
    }
    drop(stdin);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        printed,
        vec!["0 0", "1 1", "2 2"],
        "only durable batches were printed"
    );
    assert!(!status.success());
    assert!(
        err.contains("fdatasync") && err.contains("Input/output error"),
        "{err}"
    );
}

#[test]
fn http_gets_503_with_retry_after_when_the_ring_stays_full() {
    let dir = tempfile::tempdir().unwrap();
    // The writer is held until the file goes (a fixed delay, once used here, could
    // run out before the two refused requests on a slow machine).
    let hold_dir = tempfile::tempdir().unwrap();
    let hold = hold_dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let server = start_armed(
        dir.path(),
        &format!("group_hold_file={}", hold.display()),
        &[
            "--ring-batches-max",
            "1",
            "--groups-in-flight-max",
            "1",
            "--enqueue-timeout-ms",
            "200",
        ],
    );
    // Three producers: one batch in the writer (delayed), one in the ring, the rest wait.
    let mut busy: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut s = TcpStream::connect(server.tcp_acked).unwrap();
            s.write_all(format!("filler {i}\n").as_bytes()).unwrap();
            s
        })
        .collect();
    // The writer holds a batch (it took one from the ring: two were accepted) and
    // another waits in the ring: it stays full while the writer is held.
    // A full-ring wait alone is not enough: it can be met before the writer takes its
    // first batch, and the POST could then take the slot that frees.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = &stats_json(server.http)["log"];
        let (appended, depth) = (
            log["batches_appended"].as_u64().unwrap(),
            log["ring_depth"].as_u64().unwrap(),
        );
        if appended >= 2 && depth >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the ring never filled: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = http(server.http, "POST", "/ingest", &[], b"refused\n");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"], "ring_full");
    assert_eq!(r.header("retry-after"), Some("1"));
    // OTLP: the same 503 and Retry-After (retryable for exporters), a Status body.
    let r = post_otlp(server.http, &otlp_request("api", &["refused"]));
    assert_otlp_retry(&r, "1", "ring_full");
    assert_metrics(server.http, &["ringstash_http_ring_full_total 2"]);
    std::fs::remove_file(&hold).unwrap();
    // The waiting TCP producers are not refused: their records land once the writer moves.
    for s in &mut busy {
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut said = String::new();
        s.read_to_string(&mut said).unwrap();
        assert_eq!(last_ack(&said).map(|a| a.0), Some(1), "{said}");
    }
    assert!(server.stop().success());
    let stored: Vec<String> = stored_payloads(dir.path());
    assert_eq!(stored.len(), 3);
    assert!(!stored.iter().any(|s| s == "refused"));
}

#[test]
fn short_writes_are_completed_before_anything_is_acknowledged() {
    for fsync in ["always", "never"] {
        let dir = tempfile::tempdir().unwrap();
        let server = start_armed(dir.path(), "short_writes=1", &["--fsync", fsync]);
        let payload: String = (0..5000)
            .map(|i| format!("short {i:05} {}\n", "w".repeat(50)))
            .collect();
        let said = tcp_send_all(server.tcp_acked, payload.as_bytes());
        assert_eq!(last_ack(&said), Some((5000, 4999)), "{fsync}: {said}");
        assert!(server.stop().success());
        let stored = cat(dir.path());
        assert_eq!(stored.len(), 5000, "{fsync}");
        for (i, (off, p)) in stored.iter().enumerate() {
            assert_eq!(*off, i as u64);
            assert!(p.starts_with(&format!("short {i:05} ")), "{fsync}: {p}");
        }
        assert_check_clean(dir.path());
    }
}

/// The epoll driver, whose I/O threads `sync_delay_ms` and `sync_hold_alone` hold
/// back, and groups of 256 KiB,
/// so that a few MB of input make many.
const SLOW_SYNC_FLAGS: [&str; 6] = [
    "--io-driver",
    "epoll",
    "--group-bytes-max",
    "262144",
    "--record-bytes-max",
    "1024",
];

/// The log in `dir` holds exactly `n` records, offsets 0.., record `i` beginning with
/// `prefix(i)`, and `check` finds it clean.
fn assert_stored_in_order(dir: &std::path::Path, n: u64, prefix: impl Fn(u64) -> String) {
    let stored = cat(dir);
    assert_eq!(stored.len() as u64, n);
    for (i, (off, p)) in stored.iter().enumerate() {
        assert_eq!(*off, i as u64);
        assert!(p.starts_with(&prefix(i as u64)), "offset {off}: {p}");
    }
    assert_check_clean(dir);
}

/// `n` lines of about 100 bytes, numbered from `from`.
fn numbered(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("shared {i:06} {}\n", "c".repeat(85)))
        .collect()
}

/// With syncs slower than writes, groups are submitted while two fdatasyncs are out
/// (the default four in flight): they are written alone and share a covering sync, so
/// there are fewer fdatasyncs than groups; every record is acknowledged once durable
/// and reads back exact. The epoll driver's I/O threads are where the failpoint can
/// slow a sync (under io_uring the kernel runs it), and the covering sync is the same
/// code under either driver.
#[test]
fn groups_past_two_syncs_share_a_covering_sync_and_every_record_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    // Held until two groups wait for a cover, however slowly the reactor delivers.
    let server = start_armed(
        dir.path(),
        "sync_hold_alone=2,sync_delay_ms=100",
        &SLOW_SYNC_FLAGS,
    );
    // One 2 MB send: the reactor reads it in 64 KiB batches, eight groups or more,
    // while the first two groups' syncs wait.
    let n = 20_000;
    let said = tcp_send_all(server.tcp_acked, numbered(0, n).as_bytes());
    assert_eq!(last_ack(&said), Some((n as u64, n as u64 - 1)), "{said}");
    let groups = metric(server.http, "ringstash_groups_committed_total");
    let syncs = metric(server.http, "ringstash_fsyncs_total");
    assert!(
        syncs >= 1 && syncs < groups,
        "{syncs} fdatasyncs for {groups} groups"
    );
    assert!(server.stop().success());
    assert_stored_in_order(dir.path(), n as u64, |i| format!("shared {i:06} "));
}

/// A covering fdatasync that fails stops the log as a group's own does: nothing it
/// covered is acknowledged. The first two groups' own syncs are held until two more
/// groups have been written alone (`sync_hold_alone=2`) and succeed; the covering
/// sync of those two, issued when the first comes back, fails (`cover_eio=1`) and
/// says it was shared. (A fixed sync delay and "the third sync fails" once made this
/// depend on timing: a debug build's reactor beside the other tests delivered too
/// slowly for two groups to be written alone in time, or a later group's own sync
/// finished before the covering one.)
#[test]
fn a_failed_covering_sync_acknowledges_nothing_it_covered() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_armed(
        dir.path(),
        "sync_hold_alone=2,cover_eio=1",
        &SLOW_SYNC_FLAGS,
    );
    let n = 20_000;
    // The server may stop before it has read everything: what it said before it
    // closed is what counts, so a refused write is not the test's failure.
    let said = {
        let mut s = TcpStream::connect(server.tcp_acked).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(numbered(0, n).as_bytes());
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8(out).unwrap()
    };
    let acked = last_ack(&said).map_or(0, |a| a.0);
    assert!(acked < n as u64, "{said}");
    let err = said
        .lines()
        .find(|l| l.starts_with("error - "))
        .unwrap_or_else(|| panic!("no error line: {said}"));
    assert!(
        err.starts_with("error - log_failed")
            && err.contains("fdatasync")
            && err.contains(", a sync shared by 2 groups)"),
        "{err}\n{said}"
    );
    // Nothing the failed sync covered was acknowledged. (A group before it whose own
    // sync was still out when it failed is not acknowledged either.)
    let covered_from: u64 = err
        .split("(offsets ")
        .nth(1)
        .and_then(|r| r.split("..").next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no covered range: {err}"));
    assert!(acked <= covered_from, "{said}");
    let status = wait_timeout(&mut server.child, Duration::from_secs(20))
        .expect("server exits after the failure");
    assert!(!status.success());
    let log = server.stderr_text();
    assert!(log.contains("a sync shared by"), "{log}");
    // Everything acknowledged is stored, exact and in order; what follows is at most
    // what the failed sync covered (written, never acknowledged).
    let stored = stored_payloads(dir.path());
    assert!(stored.len() as u64 >= acked, "{} < {acked}", stored.len());
    for (i, p) in stored.iter().enumerate() {
        assert!(p.starts_with(&format!("shared {i:06} ")), "record {i}: {p}");
    }
}

/// Rotations that find no spare ready ask for one while it is being built; every
/// record still lands in the segment named for it (an earlier design could rename the
/// wrong spare into place and lose a segment's records).
#[test]
fn slow_spares_are_missed_or_used_and_no_record_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    // Pre-writing forced: `auto` leaves it off where the temp dir is a tmpfs.
    let server = start_armed(
        dir.path(),
        "spare_delay_ms=2000",
        &small_segments_and(&["--segment-prewrite", "true"]),
    );
    // Bursts of about six segments each, sent at once: within a burst rotations come
    // far faster than a spare is built (each takes over 2 s: missed); between bursts
    // the test waits until one is ready (used by the next burst's first rotation). The
    // pace of many small acknowledged sends, once used here, depended on the machine's
    // load (on a busy one every spare was ready), and so did a fixed pause between
    // bursts.
    let mut sent = 0u64;
    for burst in 0..3 {
        if burst > 0 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while stats_json(server.http)["log"]["spare_ready"].as_u64() != Some(1) {
                assert!(Instant::now() < deadline, "no spare was made ready");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let payload: String = (0..4000)
            .map(|i| format!("spare {:05} {}\n", sent + i, "s".repeat(80)))
            .collect();
        let said = tcp_send_all(server.tcp_acked, payload.as_bytes());
        sent += 4000;
        assert_eq!(last_ack(&said).map(|a| a.1), Some(sent - 1), "{said}");
    }
    let stats = stats_json(server.http);
    let log = &stats["log"];
    assert!(log["spares_used"].as_u64().unwrap() > 0, "{log}");
    assert!(log["spares_missed"].as_u64().unwrap() > 0, "{log}");
    assert!(server.stop().success());
    assert_stored_in_order(dir.path(), sent, |i| format!("spare {i:05} "));
}

/// The 500 of a request whose fdatasync failed names the failure, not the server's
/// paths; /healthz says why too, in the same words.
#[test]
fn a_failed_fdatasync_is_a_500_without_server_paths() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_armed(dir.path(), "fsync_eio_after=0", &[]);
    let r = http(server.http, "POST", "/ingest", &[], b"never acked\n");
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"], "log_failed");
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert_contains(&detail, "fdatasync");
    let data_dir = dir.path().to_str().unwrap();
    assert!(
        !detail.contains(data_dir),
        "a server path in the 500: {detail}"
    );
    // The server's own log keeps the path, on the failure's line (not only on the
    // start-up line, which names the data directory too), which may reach the log
    // after the answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server
        .stderr_text()
        .lines()
        .any(|l| l.contains("fdatasync") && l.contains(data_dir))
    {
        assert!(
            Instant::now() < deadline,
            "the server's own log keeps the path: {}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A time index is derived data: on a disk that refuses every `.tix` write, sync and
/// creation (a pre-written spare holds the `.log`, the 16-byte `.tix` header does not
/// fit), start-up, rotation and sealing carry on, every record is acked and readable,
/// time reads still find them, and the errors are counted. The next start rebuilds
/// the indexes.
#[test]
fn time_index_errors_never_stop_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_armed(dir.path(), "tix_enospc=1", &SMALL_SEGMENTS);
    let mut sent = 0u64;
    for chunk in 0..10 {
        let payload: String = (0..200)
            .map(|i| format!("tix {:05} {}\n", chunk * 200 + i, "t".repeat(80)))
            .collect();
        let said = tcp_send_all(server.tcp_acked, payload.as_bytes());
        sent += 200;
        assert_eq!(last_ack(&said).map(|a| a.1), Some(sent - 1), "{said}");
    }
    let log = &stats_json(server.http)["log"];
    assert!(log["segments_rotated"].as_u64().unwrap() >= 3, "{log}");
    // At least the first segment's creation and one per rotation.
    let errors = metric(server.http, "ringstash_time_index_errors_total");
    assert!(errors >= 4, "{errors}");
    wait_stderr(&server, "time index", 1);
    assert!(server.stop().success());
    // Readers without a usable index start earlier and still find every record.
    let stored = cat(dir.path());
    assert_eq!(stored.len() as u64, sent);
    let since = run_ok(
        std::process::Command::new(BIN)
            .args(["cat", "--since", "1970-01-02T00:00:00Z", "--data-dir"])
            .arg(dir.path()),
        "cat --since",
    );
    assert_eq!(
        String::from_utf8(since.stdout).unwrap().lines().count() as u64,
        sent
    );
    // Unarmed, the next start rebuilds every index and the directory checks clean.
    let server = Server::start(dir.path(), &SMALL_SEGMENTS);
    assert_eq!(metric(server.http, "ringstash_time_index_errors_total"), 0);
    assert!(server.stop().success());
    assert_check_clean(dir.path());
}
