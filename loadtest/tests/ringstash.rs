//! The harness against the real `ringstash serve` (debug build) on free loopback
//! ports: counts, report fields, open-loop pacing, coordinated-omission correction.

mod support;

use std::time::Duration;

use support::{Server, f, loadtest_json, lt, serial, u, wait_until};

/// Every record sent is completed, acked by the server, and on disk, in every mode.
#[test]
fn every_record_sent_is_acked_and_on_disk() {
    let _g = serial();
    let srv = Server::start();
    let mut expected = 0;
    let runs: &[(&str, &[&str])] = &[
        ("tcp-acked", &["-n", "50000", "-c", "4", "--batch", "1000"]),
        // Fire and forget: the final ack after our half-close says what was stored.
        ("tcp", &["-n", "20000", "-c", "2", "--batch", "500"]),
        ("http-ingest", &["-n", "20000", "-c", "2", "--batch", "500"]),
        ("http-logs", &["-n", "10000", "-c", "2", "--batch", "250"]),
        (
            "http-logs",
            &[
                "-n", "10000", "-c", "1", "--batch", "250", "--body", "ndjson",
            ],
        ),
        // Uneven split over connections and a short last batch.
        (
            "tcp-acked",
            &[
                "-n",
                "10007",
                "-c",
                "3",
                "--batch",
                "64",
                "--record-size",
                "100-400",
            ],
        ),
    ];
    for (mode, extra) in runs {
        let addr = if mode.starts_with("http") {
            &srv.http
        } else {
            &srv.tcp
        };
        let mut args = vec!["--mode", mode, "--addr", addr.as_str()];
        args.extend_from_slice(extra);
        let r = loadtest_json(&args);
        let n: u64 = extra[1].parse().unwrap();
        assert_eq!(u(&r, "records"), n, "{mode} {extra:?}: {r}");
        assert_eq!(u(&r, "sent_records_total"), n, "{mode}: {r}");
        assert_eq!(u(&r, "completed_records_total"), n, "{mode}: {r}");
        assert_eq!(u(&r, "failed_records_total"), 0, "{mode}: {r}");
        assert_eq!(u(&r, "errors_total"), 0, "{mode}: {r}");
        if !mode.starts_with("http") {
            assert_eq!(u(&r, "server_acked_total"), n, "{mode}: {r}");
        }
        expected += n;
        assert_eq!(srv.stored_records(), expected, "after {mode} {extra:?}");
    }
}

/// The JSON report parses and carries the documented fields, server figures included.
#[test]
fn json_report_has_the_documented_fields() {
    let _g = serial();
    let srv = Server::start();
    let hgrm = tempfile::NamedTempFile::new().unwrap();
    let pid = srv.pid().to_string();
    let r = lt(&format!(
        "--mode tcp-acked --addr {} -d 1s --warmup 300ms -c 2 --batch 256 --server-pid {pid} --hgrm {}",
        srv.tcp,
        hgrm.path().display()
    ));
    assert_eq!(u(&r, "version"), 1);
    for k in [
        "mode",
        "target",
        "load",
        "connections",
        "threads",
        "batch_records",
        "inflight",
        "record_bytes",
        "format",
        "seed",
        "warmup_s",
    ] {
        assert!(!r["run"][k].is_null(), "run.{k} missing: {r}");
    }
    assert_eq!(r["run"]["mode"], "tcp-acked");
    assert_eq!(r["run"]["load"], "closed");
    assert!(r["run"]["rate_target"].is_null());
    for k in ["duration_s", "records_per_s", "mb_per_s"] {
        assert!(f(&r, k) > 0.0, "{k}: {r}");
    }
    for k in [
        "records",
        "bytes",
        "batches",
        "sent_records_total",
        "completed_records_total",
        "failed_records_total",
        "server_acked_total",
        "errors_total",
        "reconnects",
    ] {
        u(&r, k);
    }
    assert!(r["errors"].is_object());
    for h in ["latency_us", "service_time_us"] {
        for k in [
            "count", "min", "p50", "p90", "p99", "p99_9", "p99_99", "max",
        ] {
            u(&r, &format!("{h}.{k}"));
        }
        f(&r, &format!("{h}.mean"));
        assert!(u(&r, &format!("{h}.p50")) <= u(&r, &format!("{h}.p99")));
        assert!(u(&r, &format!("{h}.p99")) <= u(&r, &format!("{h}.max")));
    }
    assert_eq!(u(&r, "latency_us.count"), u(&r, "batches"));
    // Warm-up records were sent and acked but are not in the window.
    assert!(u(&r, "completed_records_total") > u(&r, "records"), "{r}");
    assert_eq!(u(&r, "server.pid"), srv.pid() as u64);
    assert!(u(&r, "server.rss_bytes_end") > 1 << 20, "{r}");
    assert!(u(&r, "server.rss_bytes_max") >= u(&r, "server.rss_bytes_end"));
    assert!(f(&r, "server.cpu_s") > 0.0, "{r}");
    assert!(f(&r, "server.cpu_us_per_record") > 0.0);
    assert!(f(&r, "client.cpu_s") >= 0.0);
    assert!(r["landed"].is_null());
    let text = std::fs::read_to_string(hgrm.path()).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert!(
        text.contains(&format!(
            "Total count    = {:>12}]",
            u(&r, "latency_us.count")
        )),
        "{text}"
    );
}

/// Open loop sends at the target rate on a lightly loaded server (`--fsync never`).
#[test]
fn open_loop_keeps_its_rate() {
    let _g = serial();
    // The harness is under test here, not the disk: without fdatasync the
    // latencies are not at the mercy of whatever else is writing to this disk.
    let srv = Server::start_with(&["--fsync", "never"]);
    for (mode, addr) in [("tcp-acked", &srv.tcp), ("http-ingest", &srv.http)] {
        let r = lt(&format!(
            "--mode {mode} --addr {addr} --rate 20000 -d 2s -c 2 --batch 50"
        ));
        assert_eq!(r["run"]["load"], "open");
        assert_eq!(f(&r, "run.rate_target"), 20000.0);
        // The schedule intends exactly 40,000 records in 2 s ...
        assert_eq!(u(&r, "sent_records_total"), 40_000, "{r}");
        assert_eq!(u(&r, "records"), 40_000, "{r}");
        // ... and the measured rate (over first send to last completion) is within 10 %.
        let rate = f(&r, "records_per_s");
        assert!(
            (18_000.0..=22_000.0).contains(&rate),
            "{mode}: {rate} records/s: {r}"
        );
        assert_eq!(u(&r, "errors_total"), 0);
    }
}

/// A 200 ms server stall (SIGSTOP) shows in the open-loop p99: every batch due
/// during the stall waits for it, measured from when it was due.
#[test]
fn coordinated_omission_correction_shows_a_stall() {
    let _g = serial();
    // The harness is under test here, not the disk: without fdatasync the
    // latencies are not at the mercy of whatever else is writing to this disk.
    let srv = Server::start_with(&["--fsync", "never"]);
    let tcp = srv.tcp.clone();
    let runner = std::thread::spawn(move || {
        lt(&format!(
            "--mode tcp-acked --addr {tcp} --rate 10000 -d 2s -c 2 --batch 10"
        ))
    });
    // Stall once the run is under way (the binary may start slowly on a busy box).
    wait_until("records on disk", || srv.stored_records() > 0);
    std::thread::sleep(Duration::from_millis(500));
    srv.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(200));
    srv.signal(libc::SIGCONT);
    let r = runner.join().unwrap();
    // ~10 % of the 2000 batches were due during the stall, waiting 0..200 ms.
    let p99 = u(&r, "latency_us.p99");
    let max = u(&r, "latency_us.max");
    let p50 = u(&r, "latency_us.p50");
    assert!(
        max >= 170_000,
        "max {max} µs does not show the 200 ms stall: {r}"
    );
    assert!(
        p99 >= 100_000,
        "p99 {p99} µs does not reflect the stall: {r}"
    );
    assert!(
        p50 < 100_000,
        "p50 {p50} µs: only the stalled batches should be slow: {r}"
    );
    assert_eq!(u(&r, "records"), 20_000);
}

/// Refusals are counted by kind and as failed records, and the run still ends with
/// the right totals: records over `record_bytes_max` on TCP (the connection goes on)
/// and over-size HTTP bodies (413, the server closes, the harness reconnects).
#[test]
fn refusals_are_errors_by_kind() {
    let _g = serial();
    let srv = Server::start_with(&[
        "--record-bytes-max",
        "150",
        "--http-body-bytes-max",
        "20000",
    ]);
    let r = lt(&format!(
        "--mode tcp-acked --addr {} -n 5000 -c 2 --batch 100 --record-size 100-200",
        srv.tcp
    ));
    let refused = u(&r, "errors.record_too_large");
    assert!(refused > 1000 && refused < 4000, "{r}");
    assert_eq!(u(&r, "failed_records_total"), refused, "{r}");
    assert_eq!(u(&r, "records") + refused, 5000, "{r}");
    assert_eq!(u(&r, "server_acked_total"), u(&r, "records"), "{r}");
    assert_eq!(srv.stored_records(), u(&r, "records"));

    // 100 records of 128 B = 12,800 B fit; 200 = 25,600 B do not.
    let r = lt(&format!(
        "--mode http-ingest --addr {} -n 1000 -c 1 --batch 200",
        srv.http
    ));
    assert_eq!(u(&r, "errors.http_413_payload_too_large"), 5, "{r}");
    assert_eq!(u(&r, "failed_records_total"), 1000, "{r}");
    assert_eq!(u(&r, "records"), 0);
    assert!(u(&r, "reconnects") >= 4, "{r}");
    let r = lt(&format!(
        "--mode http-ingest --addr {} -n 1000 -c 1 --batch 100",
        srv.http
    ));
    assert_eq!(u(&r, "records"), 1000, "{r}");
    assert_eq!(u(&r, "errors_total"), 0, "{r}");
}

/// A server that dies mid-run ends the run (after the drain timeout), with the loss
/// reported, instead of hanging a count-mode run forever.
#[test]
fn a_dead_server_ends_the_run() {
    let _g = serial();
    let srv = Server::start();
    let tcp = srv.tcp.clone();
    let t = std::thread::spawn(move || {
        lt(&format!(
            "--mode tcp-acked --addr {tcp} -n 1000000000 -c 2 --batch 100 --drain-timeout 1s"
        ))
    });
    wait_until("records on disk", || srv.stored_records() >= 1000);
    std::thread::sleep(Duration::from_millis(200));
    srv.signal(libc::SIGKILL);
    let r = t.join().unwrap();
    assert!(u(&r, "errors_total") > 0, "{r}");
    assert_eq!(u(&r, "errors.gave_up_reconnecting"), 2, "{r}");
    assert!(u(&r, "records") > 0, "{r}");
}
