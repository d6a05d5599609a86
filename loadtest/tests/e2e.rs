//! `ws-e2e` against the real `ringstash serve` (debug build): records sent over TCP
//! reach every live WebSocket subscriber exactly once, latencies are sane, and
//! subscribers that never read do not stop the run.

mod support;

use std::time::{Duration, Instant};

use support::{Server, f, loadtest_json, loadtest_run, serial, u};

/// `--mode ws-e2e` against `srv`, then `args` (whitespace-separated).
fn e2e_args<'a>(srv: &'a Server, args: &'a str) -> Vec<&'a str> {
    let mut v = vec!["--mode", "ws-e2e", "--addr", &srv.tcp, "--ws-addr", &srv.ws];
    v.extend(args.split_whitespace());
    v
}

fn check_sane(r: &serde_json::Value, h: &str) {
    let (min, p50, p99, max) = (
        u(r, &format!("{h}.min")),
        u(r, &format!("{h}.p50")),
        u(r, &format!("{h}.p99")),
        u(r, &format!("{h}.max")),
    );
    assert!(
        min > 0 && min <= p50 && p50 <= p99 && p99 <= max,
        "{h}: {r}"
    );
    // Generous: a debug server on a shared 2-core machine.
    assert!(max < 30_000_000, "{h}: {r}");
}

fn check_delivery(r: &serde_json::Value, subscribers: usize, n: u64) {
    let e = &r["e2e"];
    assert_eq!(e["ok"], true, "{r}");
    assert_eq!(u(e, "expected_records"), n, "{r}");
    let subs = e["per_subscriber"].as_array().unwrap();
    assert_eq!(subs.len(), subscribers, "{r}");
    for s in subs {
        assert_eq!(u(s, "delivered"), n, "{r}");
        assert_eq!(u(s, "missed"), 0, "{r}");
        assert_eq!(u(s, "undelivered"), 0, "{r}");
        assert_eq!(u(s, "duplicates"), 0, "{r}");
        assert_eq!(u(s, "foreign"), 0, "{r}");
        assert!(s["error"].is_null(), "{r}");
    }
}

/// Every record reaches every live subscriber exactly once, acked or not, text or
/// JSON records, JSON or binary subscriptions; one latency sample per batch and
/// subscriber; the records are stored too.
#[test]
fn every_record_reaches_every_subscriber_exactly_once() {
    let _g = serial();
    let srv = Server::start();
    let mut stored = 0;
    let runs = [
        "-n 30000 -c 3 --batch 500 --subscribers 3",
        "-n 10007 -c 2 --batch 64 --subscribers 2 --e2e-send unacked --format json --record-size 150-400",
        // Binary subscriptions: the stored frames, the tags found in raw payloads.
        "-n 20000 -c 2 --batch 256 --subscribers 2 --ws-path /v1/stream?from=latest&format=binary",
    ];
    for extra in runs {
        let r = loadtest_json(&e2e_args(&srv, extra));
        let words: Vec<&str> = extra.split_whitespace().collect();
        let n: u64 = words[1].parse().unwrap();
        let subs: usize = words[7].parse().unwrap();
        assert_eq!(r["run"]["mode"], "ws-e2e");
        assert_eq!(u(&r, "records"), n, "{r}");
        assert_eq!(u(&r, "errors_total"), 0, "{r}");
        assert_eq!(u(&r, "server_acked_total"), n, "{r}");
        check_delivery(&r, subs, n);
        // One end-to-end sample per batch and live subscriber; the producer's own
        // completions per batch.
        let batches = u(&r, "batches");
        assert_eq!(u(&r, "latency_us.count"), batches * subs as u64, "{r}");
        assert_eq!(u(&r, "e2e.producer_latency_us.count"), batches, "{r}");
        check_sane(&r, "latency_us");
        check_sane(&r, "service_time_us");
        check_sane(&r, "e2e.producer_latency_us");
        // Delivery comes after the send, and (acked) after the ack, so the
        // end-to-end median cannot be below the producer's by much.
        stored += n;
        assert_eq!(srv.stored_records(), stored);
    }
}

/// Open loop: latency counts from the intended send time; the rate holds roughly.
#[test]
fn open_loop_end_to_end_latency() {
    let _g = serial();
    // Other disk users do not decide the rate.
    let srv = Server::start_with(&["--fsync", "never"]);
    let r = loadtest_json(&e2e_args(
        &srv,
        "--rate 20000 -d 1500ms --warmup 300ms -c 2 --batch 100",
    ));
    let sent = u(&r, "sent_records_total");
    check_delivery(&r, 1, sent);
    assert_eq!(r["run"]["load"], "open");
    let rate = f(&r, "records_per_s");
    assert!((10_000.0..30_000.0).contains(&rate), "{r}");
    // Warm-up batches are delivered and checked, but not timed.
    assert!(u(&r, "latency_us.count") <= u(&r, "batches"), "{r}");
    assert!(u(&r, "latency_us.count") > 0, "{r}");
    check_sane(&r, "latency_us");
    assert!(u(&r, "latency_us.p50") >= u(&r, "e2e.producer_latency_us.p50") / 2);
}

/// Subscribers that connect and never read cost the run nothing that stops it:
/// the producer finishes, the live subscriber gets everything.
#[test]
fn stalled_subscribers_do_not_stop_the_run() {
    let _g = serial();
    let srv = Server::start();
    // 200,000 x 128 B = 25 MB: far more than the stalled sockets' buffers hold.
    let n = 200_000u64;
    let t0 = Instant::now();
    let r = loadtest_json(&e2e_args(
        &srv,
        "-n 200000 -c 2 --batch 2000 --subscribers 1 --stalled-subscribers 2",
    ));
    assert!(t0.elapsed() < Duration::from_secs(120));
    assert_eq!(u(&r, "records"), n, "{r}");
    assert_eq!(u(&r, "server_acked_total"), n, "{r}");
    assert_eq!(u(&r, "e2e.stalled_subscribers"), 2, "{r}");
    check_delivery(&r, 1, n);
    // Producer only, next to a stalled subscriber.
    let r = loadtest_json(&e2e_args(
        &srv,
        "-n 100000 --batch 2000 --subscribers 0 --stalled-subscribers 1",
    ));
    assert_eq!(u(&r, "records"), 100_000, "{r}");
    assert_eq!(r["e2e"]["ok"], true, "{r}");
    assert_eq!(srv.stored_records(), n + 100_000);
}

/// A subscriber that does not receive the records fails the run (exit code 3), with
/// the report still printed: here a filter that matches nothing.
#[test]
fn a_subscriber_missing_records_fails_the_run() {
    let _g = serial();
    let srv = Server::start();
    let (code, r, err) = loadtest_run(&e2e_args(
        &srv,
        "--ws-path /v1/stream?from=latest&q=no-such-text -n 1000 --batch 100 --drain-timeout 1s",
    ));
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(r["e2e"]["ok"], false, "{r}");
    let sub = &r["e2e"]["per_subscriber"][0];
    assert_eq!(u(sub, "delivered"), 0, "{r}");
    assert_eq!(u(sub, "undelivered"), 1000, "{r}");
    assert!(err.contains("subscriber 0 received 0 of 1000"), "{err}");
    // With --allow-lag, being behind is no failure (nothing arrived out of order).
    let (code, r, err) = loadtest_run(&e2e_args(
        &srv,
        "--ws-path /v1/stream?from=latest&q=no-such-text -n 1000 --allow-lag",
    ));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["e2e"]["ok"], true, "{r}");
    assert_eq!(
        u(&r["e2e"]["per_subscriber"][0], "undelivered"),
        1000,
        "{r}"
    );
    // A subscription the server refuses: its HTTP status in the error.
    let (code, _, err) = loadtest_run(&e2e_args(&srv, "--ws-path /v1/stream?from=nonsense -n 10"));
    assert_eq!(code, Some(1));
    assert!(err.contains("HTTP 400"), "{err}");
}
