//! The harness against its own in-process sink: ack accounting, HTTP framing,
//! open-loop pacing and coordinated-omission correction, without a real server.

mod support;

use std::{sync::atomic::Ordering, time::Duration};

use loadtest::sink::{Sink, SinkReply};
use support::{f, lt, serial, u, wait_until};

fn sink(reply: SinkReply) -> Sink {
    Sink::start("127.0.0.1:0".parse().unwrap(), reply).unwrap()
}

/// Runs `loadtest run --addr <s> ARGS` and returns the report.
fn run_at(s: &Sink, args: &str) -> serde_json::Value {
    lt(&format!("--addr {} {args}", s.addr))
}

/// Runs `loadtest run --addr <s> ARGS` while `s` stops reading for 200 ms, half a
/// second after the run started sending; returns the report.
fn run_across_a_stall(s: &Sink, args: &str) -> serde_json::Value {
    let args = format!("--addr {} {args}", s.addr);
    let t = std::thread::spawn(move || lt(&args));
    let before = s.lines.load(Ordering::Relaxed);
    wait_until("the run to start", || {
        s.lines.load(Ordering::Relaxed) > before
    });
    std::thread::sleep(Duration::from_millis(500));
    s.paused.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    s.paused.store(false, Ordering::Relaxed);
    t.join().unwrap()
}

#[test]
fn acked_and_http_counts_match_the_sink() {
    let _g = serial();
    let s = sink(SinkReply::Ack);
    let r = run_at(&s, "--mode tcp-acked -n 100003 -c 3 --batch 1000");
    assert_eq!(u(&r, "records"), 100_003);
    assert_eq!(u(&r, "server_acked_total"), 100_003);
    assert_eq!(u(&r, "bytes"), 100_003 * 128);
    assert_eq!(s.lines.load(Ordering::Relaxed), 100_003);
    let h = sink(SinkReply::Http);
    for body in ["json-array", "ndjson"] {
        let r = run_at(
            &h,
            &format!("--mode http-logs --body {body} -n 5000 -c 2 --batch 100"),
        );
        assert_eq!(u(&r, "records"), 5000, "{r}");
        assert_eq!(u(&r, "errors_total"), 0, "{r}");
    }
    assert_eq!(h.lines.load(Ordering::Relaxed), 10_000);
}

#[test]
fn open_loop_rate_and_stall_correction() {
    let _g = serial();
    let s = sink(SinkReply::Ack);
    let r = run_at(&s, "--mode tcp-acked --rate 50000 -d 2s -c 2 --batch 100");
    assert_eq!(u(&r, "sent_records_total"), 100_000);
    let rate = f(&r, "records_per_s");
    assert!((45_000.0..=55_000.0).contains(&rate), "{rate}: {r}");

    let r = run_across_a_stall(&s, "--mode tcp-acked --rate 10000 -d 2s -c 1 --batch 10");
    let (p50, p99, max) = (
        u(&r, "latency_us.p50"),
        u(&r, "latency_us.p99"),
        u(&r, "latency_us.max"),
    );
    assert!(
        max >= 170_000 && p99 >= 100_000 && p50 < 100_000,
        "p50 {p50} p99 {p99} max {max}: {r}"
    );
}

#[test]
fn closed_loop_hides_what_open_loop_shows() {
    // The same stall in closed loop with one batch in flight: only the one batch on
    // the wire waits, so the p99 over many fast batches barely moves. This is the
    // coordinated omission that open loop corrects.
    let _g = serial();
    let s = sink(SinkReply::Ack);
    let r = run_across_a_stall(&s, "--mode tcp-acked -d 2s -c 1 --batch 10");
    assert!(u(&r, "latency_us.max") >= 170_000, "{r}");
    assert!(u(&r, "latency_us.p99") < 50_000, "{r}");
}

/// ws-e2e without a WebSocket server: a clear error before anything is sent.
#[test]
fn ws_e2e_without_a_subscription_endpoint_fails_clearly() {
    let ws = format!("127.0.0.1:{}", support::free_port());
    let out = std::process::Command::new(support::LOADTEST)
        .args(["run", "--mode", "ws-e2e", "-n", "1", "--ws-addr", &ws])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("subscriber 0") && err.contains(&ws), "{err}");
}

#[test]
fn gen_is_deterministic() {
    let run = |seed: &str| {
        std::process::Command::new(support::LOADTEST)
            .args([
                "gen",
                "-n",
                "1000",
                "--seed",
                seed,
                "--base-time",
                "1795000000",
                "--format",
                "json",
            ])
            .output()
            .unwrap()
            .stdout
    };
    let a = run("5");
    assert_eq!(a, run("5"));
    assert_ne!(a, run("6"));
    assert_eq!(a.len(), 1000 * 128);
}
