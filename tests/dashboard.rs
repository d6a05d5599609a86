//! The dashboard and the aggregates behind it: `GET /v1/aggregates` against records
//! sent by level and service, and the page in a real headless Chromium (Debian's
//! `chromium`, over the DevTools protocol) against the real server, at a high ingest
//! rate and at a low one. Screenshots go to `target/artefacts/dashboard/` (or
//! `$RINGSTASH_ARTEFACTS_DIR/dashboard/`).

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::{browser::Browser, ws::*, *};

fn json_lines(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            serde_json::json!({"service": if i % 2 == 0 {"checkout"} else {"search"},
                               "level": if i % 4 == 0 {"error"} else {"info"},
                               "message": format!("{tag}-{i}")})
            .to_string()
        })
        .collect()
}

fn send_lines(tcp: SocketAddr, lines: &[String]) {
    let mut payload = lines.join("\n");
    payload.push('\n');
    let acks = tcp_send_all(tcp, payload.as_bytes());
    assert_eq!(common::last_ack(&acks).unwrap().0, lines.len() as u64);
}

fn unix_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Sleeps until `frac` of the way into the next whole second; returns that second.
fn sleep_to_next_second(frac: f64) -> u64 {
    let now = unix_s();
    let s = now.floor() as u64 + 1;
    std::thread::sleep(Duration::from_secs_f64(s as f64 + frac - now));
    s
}

/// `GET /v1/aggregates?<query>`, once the aggregates have counted every committed
/// record.
fn aggregates(http_at: SocketAddr, query: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http(http_at, "GET", &format!("/v1/aggregates?{query}"), &[], b"");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        if v["read_end"] == v["committed_end"] {
            return v;
        }
        assert!(Instant::now() < deadline, "aggregates stayed behind: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `/v1/aggregates` counts what was sent, by level (normalised) and by service, in
/// the seconds it was received, in both steps; past `aggregates_services_max`
/// services, the rest are "other" and their number is in `/stats`; ack latency has a
/// sample per record; bad parameters are refused with a reason.
#[test]
fn aggregates_count_records_by_level_and_service_with_the_services_bound() {
    let (_dir, s) = Server::start_in_tempdir(&[
        "--aggregates-services-max",
        "3",
        "--aggregates-response-buckets-max",
        "60",
    ]);
    let since = unix_s() as u64;
    // 5 services (a..e, in order of first appearance), 4 levels.
    let levels = ["info", "ERROR", "Warning", "debug"];
    let lines: Vec<String> = (0..1000)
        .map(|i| {
            let svc = ["a", "b", "c", "d", "e"][i % 5];
            let mut v = serde_json::json!({"service": svc, "message": format!("m{i}")});
            if i % 10 != 9 {
                v["level"] = levels[i % 4].into();
            }
            v.to_string()
        })
        .chain((0..7).map(|i| format!("plain line {i}")))
        .collect();
    let sent = Instant::now();
    send_lines(s.tcp_acked, &lines);
    let acked_us = sent.elapsed().as_micros() as u64;
    let v = aggregates(s.http, &format!("since={since}"));
    let t = &v["totals"];
    assert_eq!(t["records"], 1007);
    let bytes: usize = lines.iter().map(String::len).sum();
    assert_eq!(t["bytes"], bytes);
    assert_eq!(
        v["levels"],
        serde_json::json!([
            "trace",
            "debug",
            "info",
            "warn",
            "error",
            "fatal",
            "other",
            "none",
            "unsampled"
        ])
    );
    let count = |pred: &dyn Fn(usize) -> bool| (0..1000).filter(|&i| pred(i)).count();
    let by_level = |l: usize| count(&|i| i % 10 != 9 && i % 4 == l);
    assert_eq!(
        t["levels"],
        serde_json::json!([
            0,
            by_level(3),
            by_level(0),
            by_level(2),
            by_level(1),
            0,
            0,
            count(&|i| i % 10 == 9) + 7,
            0
        ])
    );
    // Under aggregates_records_per_s_max: every record read.
    assert_eq!(t["unsampled"], 0);
    assert_eq!(t["services_unsampled"], 0);
    // Names once, per slot; the buckets count by slot.
    assert_eq!(v["services"], serde_json::json!(["a", "b", "c"]));
    assert_eq!(
        t["services"],
        serde_json::json!({"0": 200, "1": 200, "2": 200})
    );
    assert_eq!(t["services_other"], 400);
    assert_eq!(t["ack_us"]["count"], 1007, "one latency sample per record");
    assert!(t["ack_us"]["p99"].as_u64().unwrap() >= t["ack_us"]["p50"].as_u64().unwrap());
    // Receipt to commit, as the writer noted it: within what this producer waited for
    // its acks (a percentile is its histogram bucket's upper bound, within 25 %), with
    // no subscriber to wake the fan-out core.
    let max = t["ack_us"]["max"].as_u64().unwrap();
    assert!(
        max > 0 && max <= acked_us + acked_us / 4 + 1,
        "{max} µs > {acked_us} µs"
    );
    // The buckets add up to the totals, each a second.
    let buckets = v["buckets"].as_array().unwrap();
    let sum: u64 = buckets.iter().map(|b| b["records"].as_u64().unwrap()).sum();
    assert_eq!(sum, 1007);
    assert!(
        buckets
            .windows(2)
            .all(|w| w[1]["t"].as_u64().unwrap() == w[0]["t"].as_u64().unwrap() + 1)
    );
    assert_eq!(v["services_overflowed"], 2);
    // Per minute: the same totals.
    let m = aggregates(s.http, &format!("step=1m&since={since}"));
    assert_eq!(m["step_s"], 60);
    assert_eq!(m["totals"]["records"], 1007);
    assert_eq!(m["totals"]["services"], t["services"]);
    assert_eq!(m["totals"]["services_other"], 400);
    // What /stats says about the bound.
    let st = stats_json(s.http);
    assert_eq!(st["server"]["aggregates_services"], 3);
    assert_eq!(st["server"]["aggregates_services_overflowed"], 2);
    assert_eq!(st["server"]["aggregates_lag_records"], 0);
    assert_eq!(st["server"]["aggregates_commit_notes_merged_total"], 0);
    assert!(st["server"]["aggregates_memory_bytes"].as_u64().unwrap() > 0);
    // A range before these records holds none of them.
    let before = aggregates(s.http, &format!("since={}&until={since}", since - 10));
    assert_eq!(before["totals"]["records"], 0);
    assert_eq!(before["buckets"].as_array().unwrap().len(), 10);
    for bad in [
        "step=2s",
        "since=yesterday",
        "until=1&since=2",
        "colour=blue",
    ] {
        let r = http(s.http, "GET", &format!("/v1/aggregates?{bad}"), &[], b"");
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["detail"].as_str().unwrap().len() > 10, "{bad}");
    }
    // A range longer than aggregates_response_buckets_max is cut, and says where to
    // continue; the rest holds the records.
    let cut = http(
        s.http,
        "GET",
        &format!("/v1/aggregates?since={}&until={}", since - 100, since + 10),
        &[],
        b"",
    )
    .json();
    assert_eq!(cut["buckets"].as_array().unwrap().len(), 60);
    assert_eq!(cut["truncated"], true);
    assert_eq!(cut["until"], since - 40);
    let rest = aggregates(
        s.http,
        &format!("since={}&until={}", since - 40, since + 10),
    );
    assert_eq!(rest["truncated"], false);
    assert_eq!(rest["totals"]["records"], 1007);
    assert_eq!(
        stats_json(s.http)["server"]["aggregates_responses_truncated_total"],
        1
    );
    assert!(s.stop().success());
}

/// Past `aggregates_records_per_s_max`, the aggregates skip whole commit groups and
/// count them from the writer's notes: the totals stay exact (records and payload
/// bytes), the skipped records are "unsampled" (a level, and a count beside the
/// services), have no ack-latency sample, and `/stats` counts them.
#[test]
fn past_the_read_bound_the_totals_stay_exact_and_the_rest_is_unsampled() {
    let (_dir, s) = Server::start_in_tempdir(&["--aggregates-records-per-s-max", "1000"]);
    let since = unix_s() as u64;
    let lines: Vec<String> = (0..50_000)
        .map(|i| {
            let level = ["info", "warn"][i % 2];
            serde_json::json!({"service": "svc", "level": level,
                               "message": format!("m{}", "x".repeat(i % 37))})
            .to_string()
        })
        .collect();
    // In several connections' worth of batches, so that there are many groups.
    for chunk in lines.chunks(5_000) {
        send_lines(s.tcp_acked, chunk);
    }
    let v = aggregates(s.http, &format!("since={since}"));
    let t = &v["totals"];
    assert_eq!(t["records"], 50_000);
    let bytes: usize = lines.iter().map(String::len).sum();
    assert_eq!(t["bytes"], bytes, "payload bytes, exact from the notes");
    let levels: Vec<u64> = serde_json::from_value(t["levels"].clone()).unwrap();
    assert_eq!(levels.len(), 9);
    assert_eq!(levels.iter().sum::<u64>(), 50_000);
    let unsampled = t["unsampled"].as_u64().unwrap();
    assert_eq!(levels[8], unsampled);
    assert!(unsampled > 0, "some groups skipped: {t}");
    assert_eq!(levels[2] + levels[3] + unsampled, 50_000, "{t}");
    assert_eq!(t["services_unsampled"], unsampled);
    let read = 50_000 - unsampled;
    // (No slot at all if every group was skipped.)
    assert_eq!(t["services"]["0"].as_u64().unwrap_or(0), read, "{t}");
    assert_eq!(
        t["ack_us"]["count"], read,
        "samples for the records read only"
    );
    let st = stats_json(s.http);
    assert_eq!(
        st["server"]["aggregates_unsampled_records_total"],
        unsampled
    );
    assert_eq!(st["server"]["aggregates_lag_records"], 0);
    assert!(s.stop().success());
}

/// A service name longer than `aggregates_service_bytes_max` is counted as other (and
/// in `/stats`), and a service named "other" is a service like any other.
#[test]
fn long_service_names_count_as_other() {
    let (_dir, s) = Server::start_in_tempdir(&["--aggregates-service-bytes-max", "8"]);
    let since = unix_s() as u64;
    let lines: Vec<String> = ["other", "abcdefgh", "abcdefghi", "abcdefgh"]
        .iter()
        .map(|svc| serde_json::json!({"service": svc, "message": "m"}).to_string())
        .collect();
    send_lines(s.tcp_acked, &lines);
    let v = aggregates(s.http, &format!("since={since}"));
    let names = v["services"].as_array().unwrap();
    assert_eq!(names.len(), 20, "aggregates_services_max slots");
    assert_eq!(names[0], "other");
    assert_eq!(names[1], "abcdefgh");
    assert!(names[2..].iter().all(|n| n.is_null()));
    let t = &v["totals"];
    assert_eq!(t["records"], 4);
    assert_eq!(t["services"], serde_json::json!({"0": 1, "1": 2}));
    assert_eq!(t["services_other"], 1);
    let st = stats_json(s.http);
    assert_eq!(st["server"]["aggregates_service_names_too_long_total"], 1);
    assert_eq!(st["server"]["aggregates_services"], 2);
    assert!(s.stop().success());
}

/// A producer sending acked batches over raw TCP at `per_s` records/s until `stop`;
/// counts what was acknowledged.
fn load(tcp: SocketAddr, per_s: u64, stop: Arc<AtomicBool>, acked: Arc<AtomicU64>) {
    let stream = TcpStream::connect(tcp).unwrap();
    let mut acks = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    const BATCH: u64 = 500;
    let started = Instant::now();
    let (mut sent, mut line) = (0u64, String::new());
    let mut payload = String::new();
    while !stop.load(Ordering::Relaxed) {
        // Pace: no more than per_s on average.
        let due = Duration::from_secs_f64(sent as f64 / per_s as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        payload.clear();
        for i in sent..sent + BATCH {
            let level = ["info", "info", "warn", "error", "debug"][(i % 5) as usize];
            let svc = ["checkout", "search", "auth", "billing"][(i % 4) as usize];
            payload.push_str(&format!(
                r#"{{"service":"{svc}","level":"{level}","message":"load record {i} with a long-token-{}"}}"#,
                "x".repeat((i % 7 * 20) as usize)
            ));
            payload.push('\n');
        }
        out.write_all(payload.as_bytes()).unwrap();
        sent += BATCH;
        // Wait for this batch's ack: acked batches, one at a time.
        loop {
            line.clear();
            assert!(acks.read_line(&mut line).unwrap() > 0, "server closed");
            if let Some((n, _)) = parse_ack(line.trim()) {
                acked.store(n, Ordering::Relaxed);
                if n >= sent {
                    break;
                }
            }
        }
    }
}

fn aggregates_of(http_at: SocketAddr, query: &str) -> serde_json::Value {
    let r = http(http_at, "GET", &format!("/v1/aggregates?{query}"), &[], b"");
    assert_eq!(r.status, 200);
    r.json()
}

fn aggregates_read_end(http_at: SocketAddr) -> u64 {
    let r = http(http_at, "GET", "/v1/aggregates?since=0&until=1", &[], b"");
    r.json()["read_end"].as_u64().unwrap()
}

fn committed(http_at: SocketAddr) -> u64 {
    stats_json(http_at)["log"]["records_committed"]
        .as_u64()
        .unwrap()
}

/// At a high ingest rate the dashboard shows the server's rate (its own per-second
/// counts), within 10 %, on its records/s chart (the numbers drawn, read from the
/// chart), the tail says it samples (shown N of M, N < M), and a level filter shows
/// only that level. Screenshots in both themes.
#[test]
fn dashboard_at_a_high_rate_shows_the_servers_rate_and_samples_the_tail() {
    let Some(chromium) = common::require_tool("chromium", "chromium") else {
        return;
    };
    let (_dir, s) = Server::start_in_tempdir(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    // Two producers of 50,000 records/s each, the rate the issue was seen at, on 2
    // cores shared with the browser and a debug build of the server.
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, tcp) = (stop.clone(), s.tcp_acked);
            let acked = Arc::new(AtomicU64::new(0));
            let counted = acked.clone();
            (
                std::thread::spawn(move || load(tcp, 50_000, stop, counted)),
                acked,
            )
        })
        .collect();
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::open(&chromium, profile.path(), &format!("http://{}/", s.http));
    b.wait_for(
        "document.getElementById('conn').textContent === 'live'",
        Duration::from_secs(20),
    );
    // Let the load settle, then measure the server's own rate over whole seconds.
    std::thread::sleep(Duration::from_secs(3));
    let s0 = sleep_to_next_second(0.0);
    let c0 = committed(s.http);
    std::thread::sleep(Duration::from_secs(5));
    let s1 = sleep_to_next_second(0.0);
    let c1 = committed(s.http);
    let elapsed = s1 - s0;
    // Read over HTTP from a saturated server, so its window is only roughly s0..s1.
    let counter_rate = (c1 - c0) as f64 / elapsed as f64;
    // The aggregates count committed records behind the data path: once they have
    // counted everything committed by s1, the chart's points for those seconds (as
    // drawn) are final.
    let end_at_s1 = stats_json(s.http)["log"]["committed_end"].as_u64().unwrap();
    let lag = stats_json(s.http)["server"]["aggregates_lag_records"].clone();
    println!("aggregates lag at the end of the measurement: {lag} records");
    let deadline = Instant::now() + Duration::from_secs(30);
    while aggregates_read_end(s.http) < end_at_s1 {
        assert!(Instant::now() < deadline, "the aggregates never caught up");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Under this load too, every record read has an ack latency sample (none go
    // missing when commits come faster than the fan-out core takes them, so the p99
    // is not read too low). A starved fan-out core (a debug build beside the browser)
    // may fall more behind than aggregates_records_per_s_max lets it read: those
    // records are counted unread, with no sample.
    let v = aggregates_of(s.http, &format!("since={s0}&until={s1}"));
    // The server's own count of the records received in exactly the seconds s0..s1:
    // what the chart must draw.
    let server_rate = v["totals"]["records"].as_u64().unwrap() as f64 / elapsed as f64;
    println!(
        "server {server_rate:.0} records/s by its aggregates, {counter_rate:.0} by its committed counter"
    );
    // Well past what the tail renders (ROWS_PER_FRAME = 40 a frame, 2,400 records/s at
    // 60 frames/s), so the tail must sample; no more is asked of a debug build sharing
    // 2 cores with the browser.
    assert!(
        server_rate >= 5_000.0,
        "the load reached only {server_rate:.0} records/s"
    );
    for b in v["buckets"].as_array().unwrap() {
        assert!(b["records"].as_u64().unwrap() > 0, "{b}");
        assert_eq!(
            b["ack_us"]["count"].as_u64().unwrap() + b["unsampled"].as_u64().unwrap(),
            b["records"].as_u64().unwrap(),
            "{b}"
        );
    }
    // The page polls the aggregates: its points can lag the server's by a poll or two
    // (a slow browser beside a debug build), so it is read until it agrees, and judged
    // on what it drew last if it never does.
    let points_js = "document.getElementById('c-records').dataset.points || '[]'";
    let deadline = Instant::now() + Duration::from_secs(20);
    let (chart_rate, off) = loop {
        let pts: Vec<(u64, f64)> =
            serde_json::from_str(b.eval(points_js).as_str().unwrap()).unwrap();
        let inside: Vec<f64> = pts
            .iter()
            .filter(|(t, _)| (s0..s1).contains(t))
            .map(|p| p.1)
            .collect();
        let whole = inside.len() as u64 == elapsed;
        let chart_rate = inside.iter().sum::<f64>() / elapsed as f64;
        let off = (chart_rate - server_rate).abs() / server_rate;
        if whole && off <= 0.10 {
            break (chart_rate, off);
        }
        assert!(
            Instant::now() < deadline,
            "the chart never drew {s0}..{s1} at the server's rate ({server_rate:.0} records/s): {pts:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    println!(
        "server {server_rate:.0} records/s, chart {chart_rate:.0} records/s ({:.1} % off) over {elapsed} s",
        off * 100.0
    );
    // The tail samples, and says so.
    b.wait_for_showing(
        "(() => { const r = document.getElementById('readout'); return r.dataset.sampling === 'true' && Number(r.dataset.shown) > 0 && Number(r.dataset.shown) < Number(r.dataset.committed) && r.textContent.startsWith('sampling: shown '); })()",
        Duration::from_secs(20),
        "document.getElementById('readout').textContent",
    );
    let readout = b.eval("document.getElementById('readout').textContent");
    println!("tail: {readout}");
    // Both themes: the one the page took from prefers-color-scheme, then the other.
    let dir = common::browser::artefacts_dir();
    let first = b.eval("document.documentElement.dataset.theme");
    let first = first.as_str().unwrap().to_owned();
    let other = if first == "light" { "dark" } else { "light" };
    let shot1 = dir.join(format!("high-rate-{first}.png"));
    assert!(b.screenshot(&shot1) > 10_000);
    b.eval("document.getElementById('theme').click()");
    assert_eq!(b.eval("document.documentElement.dataset.theme"), other);
    assert_ne!(
        b.eval("getComputedStyle(document.body).backgroundColor"),
        serde_json::Value::Null
    );
    std::thread::sleep(Duration::from_millis(300));
    let shot2 = dir.join(format!("high-rate-{other}.png"));
    assert!(b.screenshot(&shot2) > 10_000);
    println!("screenshots: {} {}", shot1.display(), shot2.display());
    // A level filter, still under load: only that level.
    b.eval("document.getElementById('level').value = 'warn'; document.getElementById('level').onchange()");
    let rows = "[...document.querySelectorAll('#rows tr.rec')]";
    b.wait_for_showing(
        &format!("{rows}.length >= 20 && {rows}.every(r => r.querySelector('.c-level').textContent === 'warn')"),
        Duration::from_secs(20),
        "[document.getElementById('conn').textContent, document.getElementById('readout').textContent, document.getElementById('cursor').textContent].join(' | ')",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        b.eval(&format!(
            "{rows}.every(r => r.querySelector('.c-level').textContent === 'warn' && Number(r.querySelector('.c-msg').textContent.split(' ')[2]) % 5 === 2)"
        )),
        true,
        "only warn records (each producer's every fifth, from the third)"
    );
    assert!(b.screenshot(&dir.join(format!("high-rate-filtered-{other}.png"))) > 10_000);
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for (p, n) in producers {
        p.join().unwrap();
        total += n.load(Ordering::Relaxed);
    }
    assert!(total >= c1, "the producers' acks cover what was measured");
    drop(b);
    assert!(s.stop().success());
}

/// The time-range picker and history search: a custom range returns the records
/// received in it (their receive times, as stored, decide), and no others.
#[test]
fn dashboard_time_range_picker_returns_the_records_of_that_range() {
    let Some(chromium) = common::require_tool("chromium", "chromium") else {
        return;
    };
    let (_dir, s) = Server::start_in_tempdir(&[]);
    send_lines(s.tcp_acked, &json_lines("before", 30));
    let sent_at = sleep_to_next_second(0.2);
    send_lines(s.tcp_acked, &json_lines("inside", 40));
    sleep_to_next_second(0.5);
    sleep_to_next_second(0.2);
    send_lines(s.tcp_acked, &json_lines("after", 30));
    // The range is the second the inside batch was received in, as stored: a thread
    // woken late on a busy machine may send it a second after the one slept to. The
    // batches before and after are at least a second away from it either way.
    let all = http(s.http, "GET", "/v1/logs?limit=1000", &[], b"").json();
    let s0 = all["records"][30]["ts"].as_u64().unwrap() / 1_000_000_000;
    assert!(
        s0 >= sent_at,
        "received at {s0}, before it was sent at {sent_at}"
    );
    // What the range [s0, s0 + 1) holds, by the stored receive times.
    let expected: Vec<u64> = all["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ts"].as_u64().unwrap() / 1_000_000_000 == s0)
        .map(|r| r["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(
        expected,
        (30..70).collect::<Vec<_>>(),
        "the inside batch alone"
    );
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::open(&chromium, profile.path(), &format!("http://{}/", s.http));
    b.wait_for(
        "document.getElementById('conn').textContent === 'live'",
        Duration::from_secs(20),
    );
    b.eval(&format!(
        "document.getElementById('range').value = 'custom'; document.getElementById('range').onchange();
         document.getElementById('since').value = toLocalInput({});
         document.getElementById('until').value = toLocalInput({});
         document.getElementById('search').click()",
        s0 * 1000,
        (s0 + 1) * 1000
    ));
    b.wait_for_showing(
        "document.getElementById('readout').dataset.found !== undefined",
        Duration::from_secs(20),
        "document.getElementById('readout').textContent",
    );
    let offsets: Vec<u64> = serde_json::from_value(
        b.eval("[...document.querySelectorAll('#rows tr.rec')].map(r => Number(r.dataset.offset))"),
    )
    .unwrap();
    assert_eq!(offsets, expected);
    assert_eq!(
        b.eval("document.getElementById('readout').dataset.found"),
        "40"
    );
    // The charts show the same range: its 40 records, 10 of them errors.
    b.wait_for_showing(
        "JSON.parse(document.getElementById('c-records').dataset.points || '[]').reduce((a, p) => a + p[1], 0) === 40",
        Duration::from_secs(10),
        "document.getElementById('c-records').dataset.points",
    );
    let levels: Vec<serde_json::Value> = serde_json::from_str(
        b.eval("document.getElementById('c-levels').dataset.series")
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let error = levels.iter().find(|s| s["name"] == "error").unwrap();
    assert_eq!(error["points"], serde_json::json!([[s0, 10]]));
    // And its services by name (the answer names each slot once).
    let services: Vec<serde_json::Value> = serde_json::from_str(
        b.eval("document.getElementById('c-services').dataset.series")
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut named: Vec<(String, serde_json::Value)> = services
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["points"].clone()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        named,
        [
            ("checkout".to_owned(), serde_json::json!([[s0, 20]])),
            ("search".to_owned(), serde_json::json!([[s0, 20]]))
        ]
    );
    // With a level filter too: the error records of that range only.
    b.eval("document.getElementById('level').value = 'error'; document.getElementById('search').click()");
    b.wait_for(
        "[...document.querySelectorAll('#rows tr.rec')].length === 10",
        Duration::from_secs(20),
    );
    let offsets: Vec<u64> = serde_json::from_value(
        b.eval("[...document.querySelectorAll('#rows tr.rec')].map(r => Number(r.dataset.offset))"),
    )
    .unwrap();
    assert_eq!(offsets, (30..70).step_by(4).collect::<Vec<_>>());
    assert!(b.screenshot(&common::browser::artefacts_dir().join("range-search.png")) > 5_000);
    drop(b);
    assert!(s.stop().success());
}

const ROWS: &str = "document.querySelectorAll('#rows tr.rec')";

fn has(m: &str) -> String {
    format!("[...{ROWS}].some(r => r.querySelector('.c-msg').textContent === '{m}')")
}

/// The dashboard in headless Chromium against the real server at a low rate: history
/// on load, live records in columns (time, level, service, message) with the raw
/// record on expand, pause/resume, a level filter, and resuming after a server
/// restart with nothing lost or repeated.
#[test]
fn dashboard_shows_ingested_records_in_headless_chromium() {
    let Some(chromium) = common::require_tool("chromium", "chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Ports the server bound itself (port 0); the restart below takes the same ones, so
    // the page reconnects where it was. (Picking free ports first and passing them on
    // would race anyone binding in between.)
    let server = Server::start(dir.path(), &[]);
    let (http_at, ws_at) = (server.http, ws_addr(&server));
    let (http_flag, ws_flag) = (http_at.to_string(), ws_at.to_string());
    let fixed = ["--http-addr", &http_flag, "--ws-addr", &ws_flag];
    let tcp = server.tcp_acked;
    send_lines(tcp, &json_lines("history", 10));
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{http_at}/");
    let mut b = Browser::open(&chromium, profile.path(), &url);
    let count = format!("{ROWS}.length");
    // History, then live records.
    b.wait_for(&has("history-9"), Duration::from_secs(20));
    b.wait_for(
        "document.getElementById('conn').textContent === 'live'",
        Duration::from_secs(10),
    );
    send_lines(tcp, &json_lines("live", 10));
    b.wait_for(&has("live-9"), Duration::from_secs(10));
    assert_eq!(b.eval(&count), 20);
    // Columns, and the raw record on a click.
    let cells = b.eval(&format!(
        "[...{ROWS}][0].querySelectorAll('td').length + ' ' + [...[...{ROWS}][0].querySelectorAll('td')].slice(1).map(t => t.textContent).join('|')"
    ));
    assert_eq!(cells, "4 error|checkout|history-0");
    b.eval(&format!("[...{ROWS}][0].click()"));
    let raw = b.eval("document.querySelector('#rows tr.raw').innerText");
    let raw = raw.as_str().unwrap();
    assert!(
        raw.contains("offset 0") && raw.contains("\"message\": \"history-0\""),
        "{raw}"
    );
    b.eval(&format!("[...{ROWS}][0].click()"));
    assert_eq!(
        b.eval("document.querySelectorAll('#rows tr.raw').length"),
        0
    );
    // Nothing was dropped: no sampling.
    b.wait_for(
        "document.getElementById('readout').textContent === 'shown 20 of 20 committed'",
        Duration::from_secs(20),
    );
    // Pause holds records back; resume shows them.
    b.eval("document.getElementById('pause').click()");
    send_lines(tcp, &json_lines("paused", 4));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(b.eval(&has("paused-3")), false, "paused tail must not grow");
    b.eval("document.getElementById('pause').click()");
    b.wait_for(&has("paused-3"), Duration::from_secs(10));
    // The server restarts; the page reconnects and resumes from its last offset. The
    // wait first puts the old server's records more than the few seconds a poll
    // refetches behind the restart: the page must drop them itself.
    std::thread::sleep(Duration::from_secs(5));
    assert!(server.stop().success());
    let server = Server::restart_after_kill(dir.path(), &fixed);
    let tcp = server.tcp_acked;
    send_lines(tcp, &json_lines("restarted", 6));
    b.wait_for(&has("restarted-5"), Duration::from_secs(30));
    let offsets = b.eval(&format!("[...{ROWS}].map(d => Number(d.dataset.offset))"));
    let offsets: Vec<u64> = serde_json::from_value(offsets).unwrap();
    assert_eq!(
        offsets,
        (0..30).collect::<Vec<_>>(),
        "every record once, in order"
    );
    // The charts count what the server counted since it restarted.
    b.wait_for_showing(
        "JSON.parse(document.getElementById('c-records').dataset.points || '[]').reduce((a, p) => a + p[1], 0) === 6",
        Duration::from_secs(15),
        "document.getElementById('c-records').dataset.points",
    );
    // A level filter keeps only that level.
    b.eval("document.getElementById('level').value = 'error'; document.getElementById('level').onchange()");
    b.wait_for_showing(
        &format!("{count} === 9 && [...{ROWS}].every(d => d.querySelector('.c-level').textContent === 'error')"),
        Duration::from_secs(20),
        &format!("[...{ROWS}].map(d => d.querySelector('.c-level').textContent).join(',')"),
    );
    assert_eq!(b.eval(&count), 9, "the 9 error records of 30");
    // A screenshot for people to look at.
    let shot = common::browser::artefacts_dir().join("low-rate.png");
    assert!(b.screenshot(&shot) > 5_000);
    println!("dashboard screenshot: {}", shot.display());
    // "Last hour" is drawn per second, as the docs say; six hours per minute.
    for (range, what) in [("3600", "per second"), ("21600", "per minute")] {
        b.eval(&format!(
            "document.getElementById('range').value = '{range}'; document.getElementById('range').onchange()"
        ));
        b.wait_for(
            &format!("document.getElementById('rangeInfo').textContent.startsWith('{what}')"),
            Duration::from_secs(10),
        );
    }
    drop(b);
    assert!(server.stop().success());
}

/// Waits until the series `name` reaches `at_least`.
fn wait_scraped(http_at: SocketAddr, token: &str, name: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::metric_with_token(http_at, token, name) < at_least {
        assert!(Instant::now() < deadline, "{name} stayed below {at_least}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The dashboard in headless Chromium against a server that asks for tokens. Opened as
/// `/?access_token=<read token>`, it takes the token out of the address bar, keeps it
/// in sessionStorage, and shows history, live records and the charts: its
/// `/v1/config` and `/v1/aggregates` fetches carried the token as Bearer and its
/// WebSocket as `access_token` (the server refuses them without). Its `/stats` polls
/// carry the token too: they are refused 403 for want of the metrics scope, never 401
/// for want of a token. Opened without a token, it says so, refuses a wrong one typed
/// in, and works once the right one is.
#[test]
fn dashboard_sends_its_token_in_headless_chromium() {
    let Some(chromium) = common::require_tool("chromium", "chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let common::Token {
        token: read_token,
        line: read_line,
    } = common::make_token("read", "dashboard");
    let common::Token {
        token: scrape_token,
        line: scrape_line,
    } = common::make_token("metrics", "scrape");
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("{read_line}\n{scrape_line}\n")).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--auth-token-file", file.to_str().unwrap()],
    );
    let http_at = server.http;
    // /v1/aggregates needs the read scope.
    assert_eq!(http(http_at, "GET", "/v1/aggregates", &[], b"").status, 401);
    let bearer = format!("Bearer {scrape_token}");
    let r = http(
        http_at,
        "GET",
        "/v1/aggregates",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 403);
    send_lines(server.tcp_acked, &json_lines("history", 5));
    let conn_is = |t: &str| format!("document.getElementById('conn').textContent === '{t}'");

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{http_at}/?access_token={read_token}");
    let mut b = Browser::open(&chromium, profile.path(), &url);
    b.wait_for(&has("history-4"), Duration::from_secs(20));
    b.wait_for(&conn_is("live"), Duration::from_secs(10));
    send_lines(server.tcp_acked, &json_lines("live", 3));
    b.wait_for(&has("live-2"), Duration::from_secs(10));
    b.wait_for(
        "JSON.parse(document.getElementById('c-records').dataset.points || '[]').reduce((a, p) => a + p[1], 0) === 8",
        Duration::from_secs(15),
    );
    assert_eq!(
        b.eval("location.search"),
        "",
        "the token left the address bar"
    );
    assert_eq!(
        b.eval("sessionStorage.getItem('ringstash.access_token')"),
        serde_json::Value::String(read_token.clone())
    );
    wait_scraped(
        http_at,
        &scrape_token,
        "ringstash_auth_refused_total{listener=\"http\",reason=\"forbidden\"}",
        2,
    );
    let http_missing = "ringstash_auth_refused_total{listener=\"http\",reason=\"missing\"}";
    for refused in [
        http_missing,
        "ringstash_auth_refused_total{listener=\"http\",reason=\"invalid\"}",
        "ringstash_auth_refused_total{listener=\"ws\",reason=\"missing\"}",
        "ringstash_auth_refused_total{listener=\"ws\",reason=\"invalid\"}",
    ] {
        let want = u64::from(refused == http_missing); // ours, above
        assert_eq!(
            common::metric_with_token(http_at, &scrape_token, refused),
            want,
            "{refused}"
        );
    }
    assert_eq!(
        common::metric_with_token(http_at, &scrape_token, "ringstash_ws_subscribers_total"),
        1
    );
    drop(b);

    // Without a token: asked for, a wrong one refused, the right one works.
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::open(&chromium, profile.path(), &format!("http://{http_at}/"));
    b.wait_for(&conn_is("access token required"), Duration::from_secs(20));
    assert_eq!(b.eval("document.getElementById('auth').hidden"), false);
    assert_eq!(b.eval(&format!("{ROWS}.length")), 0);
    let submit = |t: &str| {
        format!(
            "document.getElementById('token').value = '{t}'; document.getElementById('auth').requestSubmit()"
        )
    };
    b.eval(&submit("rst_not-this-servers"));
    b.wait_for(&conn_is("token refused"), Duration::from_secs(10));
    b.eval(&submit(&read_token));
    b.wait_for(&has("live-2"), Duration::from_secs(20));
    b.wait_for(&conn_is("live"), Duration::from_secs(10));
    assert!(common::metric_with_token(http_at, &scrape_token, http_missing) >= 1);
    assert!(
        common::metric_with_token(
            http_at,
            &scrape_token,
            "ringstash_auth_refused_total{listener=\"http\",reason=\"invalid\"}"
        ) >= 1
    );
    drop(b);
    assert!(server.stop().success());
}

/// FNV-1a, 32 bits, computed here rather than taken from the server.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The stream picker: the live tail and the history search follow the stream (all
/// its partitions, merged, or one) picked from `/v1/config`'s streams, and the page
/// says that the charts stay the default stream's.
#[test]
fn dashboard_stream_picker_follows_the_stream_picked() {
    let Some(chromium) = common::require_tool("chromium", "chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(
        dir.path(),
        &[],
        &[("RINGSTASH_STREAMS", "audit:partitions=5")],
    );
    let http_at = server.http;
    let post_audit = |lines: &[String]| {
        let body = lines.join("\n") + "\n";
        let r = http(
            http_at,
            "POST",
            "/ingest",
            &[("Ringstash-Stream", "audit")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200);
    };
    send_lines(server.tcp_acked, &json_lines("plain", 6));
    post_audit(&json_lines("audit", 8));
    let config = http(http_at, "GET", "/v1/config", &[], b"").json();
    assert_eq!(config["streams"][0]["name"], "default");
    assert_eq!(config["streams"][1]["name"], "audit");
    assert_eq!(config["streams"][1]["partitions"], 5);
    let ends: Vec<u64> =
        serde_json::from_value(config["streams"][1]["committed_end"].clone()).unwrap();
    assert_eq!(ends.iter().sum::<u64>(), 8);
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::open(&chromium, profile.path(), &format!("http://{http_at}/"));
    b.wait_for(&has("plain-5"), Duration::from_secs(20));
    assert_eq!(b.eval("document.getElementById('aggNote').hidden"), true);
    let pick = |b: &mut Browser, v: &str| {
        b.eval(&format!(
            "document.getElementById('stream').value = '{v}'; document.getElementById('stream').onchange()"
        ));
    };
    let messages = format!("[...{ROWS}].map(r => r.querySelector('.c-msg').textContent).join(',')");
    // The whole stream, merged: its records (history, then live), none of the default's.
    pick(&mut b, "audit|");
    b.wait_for(&has("audit-7"), Duration::from_secs(20));
    post_audit(&json_lines("later", 4));
    b.wait_for(&has("later-3"), Duration::from_secs(20));
    // Each partition's records come in their own messages, in no order across them:
    // all twelve, however slowly the page gets them.
    b.wait_for(&format!("{ROWS}.length === 12"), Duration::from_secs(20));
    let shown = b.eval(&messages);
    let mut got: Vec<&str> = shown.as_str().unwrap().split(',').collect();
    got.sort();
    assert_eq!(
        got,
        [
            "audit-0", "audit-1", "audit-2", "audit-3", "audit-4", "audit-5", "audit-6", "audit-7",
            "later-0", "later-1", "later-2", "later-3"
        ]
    );
    assert_eq!(b.eval("document.getElementById('aggNote').hidden"), false);
    // One partition: checkout's records alone (the even ones), at its own offsets.
    let k = fnv1a32(b"checkout") % 5;
    assert_ne!(
        k,
        fnv1a32(b"search") % 5,
        "the test wants the two services apart"
    );
    pick(&mut b, &format!("audit|{k}"));
    b.wait_for(&format!("{ROWS}.length === 6"), Duration::from_secs(20));
    assert_eq!(
        b.eval(&messages),
        "audit-0,audit-2,audit-4,audit-6,later-0,later-2"
    );
    let offsets = b.eval(&format!("[...{ROWS}].map(d => Number(d.dataset.offset))"));
    assert_eq!(offsets, serde_json::json!([0, 1, 2, 3, 4, 5]));
    // The search reads the stream picked too: every partition, merged by time.
    pick(&mut b, "audit|");
    b.eval("document.getElementById('search').click()");
    b.wait_for(
        "document.getElementById('readout').dataset.found === '12'",
        Duration::from_secs(20),
    );
    let shown = b.eval(&messages);
    assert!(!shown.as_str().unwrap().contains("plain"), "{shown}");
    assert!(b.screenshot(&common::browser::artefacts_dir().join("stream-picker.png")) > 5_000);
    // Back to the default stream.
    b.eval("document.getElementById('live').click()");
    pick(&mut b, "default|");
    b.wait_for(&has("plain-5"), Duration::from_secs(20));
    assert_eq!(b.eval(&format!("{ROWS}.length")), 6);
    assert_eq!(b.eval("document.getElementById('aggNote').hidden"), true);
    drop(b);
    assert!(server.stop().success());
}
