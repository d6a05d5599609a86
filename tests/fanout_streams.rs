//! Subscriptions to streams and partitions on `/v1/stream`, against the real binary
//! with real WebSocket clients: a partition's subscription gets exactly the records
//! whose key hashes to it (FNV-1a, computed here independently of the server), with
//! that partition's own contiguous offsets, live and from the files; a merged one gets
//! every record once, each naming its partition, in order per partition, and resumes
//! with a per-partition `from`; the refusals; the default stream stays apart.

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{ws::*, *};
use tungstenite::Message;

const PARTITIONS: u32 = 4;

/// FNV-1a, 32 bits (the FNV reference's `fnv_32a_str`), written here rather than taken
/// from the server so that the placement is checked, not assumed.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// One delivered record: partition (if named), offset, payload.
#[derive(Debug, Clone, PartialEq)]
struct PRec {
    partition: Option<u32>,
    offset: u64,
    data: String,
}

/// Parses one JSON message: its records, the message's own `partition`, `next`.
fn parse(text: &str) -> (Vec<PRec>, Option<u32>, u64) {
    let v: serde_json::Value = serde_json::from_str(text).expect("message is JSON");
    let part = v.get("partition").map(|p| p.as_u64().unwrap() as u32);
    let recs: Vec<PRec> = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| PRec {
            partition: r.get("partition").map(|p| p.as_u64().unwrap() as u32),
            offset: r["offset"].as_u64().unwrap(),
            data: r["data"].as_str().unwrap().to_owned(),
        })
        .collect();
    // A message holds one partition's records, and says which.
    for r in &recs {
        assert_eq!(r.partition, part, "record and message partition in {text}");
    }
    (recs, part, v["next"].as_u64().unwrap())
}

/// Reads messages until `n` records arrived; also returns the last `next` per message
/// partition (`None` for messages that name none).
fn read_n(ws: &mut Ws, n: usize, within: Duration) -> (Vec<PRec>, Vec<(Option<u32>, u64)>) {
    let deadline = Instant::now() + within;
    let (mut out, mut nexts) = (Vec::new(), Vec::<(Option<u32>, u64)>::new());
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records arrived",
            out.len()
        );
        match ws.read() {
            Ok(Message::Text(t)) => {
                let (recs, part, next) = parse(&t);
                assert!(!recs.is_empty(), "empty message {t}");
                assert!(next > recs.last().unwrap().offset, "next past the records");
                nexts.retain(|(p, _)| *p != part);
                nexts.push((part, next));
                out.extend(recs);
            }
            Ok(_) => {}
            Err(e) => panic!("subscription failed after {} records: {e}", out.len()),
        }
    }
    (out, nexts)
}

/// Asserts that nothing more arrives within 300 ms.
fn assert_quiet(ws: &mut Ws) {
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match ws.read() {
        Err(tungstenite::Error::Io(_)) => {}
        other => panic!("expected nothing more, got {other:?}"),
    }
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
}

/// Keyed JSON records `from..to`, over 20 services.
fn records(from: usize, to: usize) -> Vec<String> {
    (from..to)
        .map(|i| format!(r#"{{"service":"svc-{}","seq":{i}}}"#, i % 20))
        .collect()
}

fn partition_of(line: &str) -> u32 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    fnv1a32(v["service"].as_str().unwrap().as_bytes()) % PARTITIONS
}

/// Posts `lines` to `stream` (the `Ringstash-Stream` header; none: `http_stream`).
fn post(http_at: SocketAddr, stream: Option<&str>, lines: &[String]) {
    let body = lines.join("\n") + "\n";
    let headers: Vec<(&str, &str)> = stream
        .map(|s| ("Ringstash-Stream", s))
        .into_iter()
        .collect();
    let r = http(http_at, "POST", "/ingest", &headers, body.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["count"], lines.len());
}

/// `sent`'s records of partition `k`, in the order sent.
fn of_partition(sent: &[String], k: u32) -> Vec<String> {
    sent.iter()
        .filter(|l| partition_of(l) == k)
        .cloned()
        .collect()
}

/// Exactly `expected`, tagged `k`, at offsets `first..`.
fn assert_partition(got: &[PRec], k: u32, first: u64, expected: &[String]) {
    let data: Vec<&str> = got.iter().map(|r| r.data.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(data, want, "partition {k}'s records");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(
            r.offset,
            first + i as u64,
            "partition {k}: offset of record {i}"
        );
        assert_eq!(r.partition, Some(k), "partition {k}: record {i} names it");
    }
}

fn start() -> (tempfile::TempDir, Server) {
    start_with(&[])
}

/// As [`start`], with more environment.
fn start_with(env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![("RINGSTASH_STREAMS", "audit:partitions=4")];
    all.extend_from_slice(env);
    let s = Server::start_env(dir.path(), &[], &all);
    (dir, s)
}

#[test]
fn partition_subscriptions_get_their_partition_live_and_from_the_files() {
    let (_dir, s) = start();
    let ws_at = ws_addr(&s);
    let mut live: Vec<Ws> = (0..PARTITIONS)
        .map(|k| subscribe(ws_at, &format!("stream=audit&partition={k}")))
        .collect();
    let mut default_live = subscribe(ws_at, "from=latest");
    let sent = records(0, 3000);
    for chunk in sent.chunks(500) {
        post(s.http, Some("audit"), chunk);
    }
    let default_lines: Vec<String> = (0..50).map(|i| format!("default {i}")).collect();
    post(s.http, None, &default_lines);
    // Every partition got records (20 services over 4 partitions).
    let expected: Vec<Vec<String>> = (0..PARTITIONS).map(|k| of_partition(&sent, k)).collect();
    assert!(
        expected.iter().all(|e| !e.is_empty()),
        "placement {expected:?}"
    );
    for (k, ws) in live.iter_mut().enumerate() {
        let k = k as u32;
        let want = &expected[k as usize];
        let (got, nexts) = read_n(ws, want.len(), Duration::from_secs(30));
        assert_partition(&got, k, 0, want);
        assert_eq!(nexts, vec![(Some(k), want.len() as u64)]);
        assert_quiet(ws);
    }
    // The default subscription sees the default stream alone, as before streams: no
    // partition named.
    let (got, _) = read_records(&mut default_live, 50, Duration::from_secs(30));
    assert_exact(&got, 0, &default_lines);
    assert_quiet(&mut default_live);
    // Catch-up from the files, and from the middle.
    for k in 0..PARTITIONS {
        let want = &expected[k as usize];
        let mut ws = subscribe(ws_at, &format!("stream=audit&partition={k}&from=0"));
        let (got, _) = read_n(&mut ws, want.len(), Duration::from_secs(30));
        assert_partition(&got, k, 0, want);
        assert_quiet(&mut ws);
        let mid = want.len() / 2;
        let mut ws = subscribe(ws_at, &format!("stream=audit&partition={k}&from={mid}"));
        let (got, _) = read_n(&mut ws, want.len() - mid, Duration::from_secs(30));
        assert_partition(&got, k, mid as u64, &want[mid..]);
        // Filters apply within the partition: the first service placed in it.
        let svc = serde_json::from_str::<serde_json::Value>(&want[0]).unwrap()["service"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut ws = subscribe(
            ws_at,
            &format!("stream=audit&partition={k}&from=earliest&service={svc}"),
        );
        let of_svc: Vec<&String> = want
            .iter()
            .filter(|l| l.contains(&format!("\"{svc}\"")))
            .collect();
        let (got, _) = read_n(&mut ws, of_svc.len(), Duration::from_secs(30));
        let data: Vec<&String> = got.iter().map(|r| &r.data).collect();
        assert_eq!(data, of_svc);
        assert_quiet(&mut ws);
    }
    // The read API agrees with the subscriptions.
    for k in 0..PARTITIONS {
        let v = http(
            s.http,
            "GET",
            &format!("/v1/logs?stream=audit&partition={k}&limit=10000"),
            &[],
            b"",
        )
        .json();
        let data: Vec<&str> = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["data"].as_str().unwrap())
            .collect();
        assert_eq!(data, expected[k as usize]);
    }
    assert!(s.stop().success());
}

#[test]
fn merged_subscriptions_get_every_record_once_in_order_per_partition_and_resume() {
    let (_dir, s) = start();
    let ws_at = ws_addr(&s);
    let mut merged_live = subscribe(ws_at, "stream=audit");
    let sent = records(0, 2000);
    for chunk in sent.chunks(400) {
        post(s.http, Some("audit"), chunk);
    }
    post(s.http, None, &["not audit".to_owned()]);
    let expected: Vec<Vec<String>> = (0..PARTITIONS).map(|k| of_partition(&sent, k)).collect();
    let check = |got: &[PRec], from: &[u64]| {
        for k in 0..PARTITIONS {
            let mine: Vec<PRec> = got
                .iter()
                .filter(|r| r.partition == Some(k))
                .cloned()
                .collect();
            let first = from[k as usize];
            assert_partition(&mine, k, first, &expected[k as usize][first as usize..]);
        }
        assert!(
            got.iter()
                .all(|r| r.partition.is_some_and(|p| p < PARTITIONS))
        );
    };
    let (got, nexts) = read_n(&mut merged_live, sent.len(), Duration::from_secs(30));
    check(&got, &[0; 4]);
    assert_quiet(&mut merged_live);
    // Each partition's last `next` is its end: the resume point.
    for k in 0..PARTITIONS {
        assert!(
            nexts.contains(&(Some(k), expected[k as usize].len() as u64)),
            "{nexts:?}"
        );
    }
    // From the files.
    let mut merged = subscribe(ws_at, "stream=audit&from=earliest");
    let (got, _) = read_n(&mut merged, sent.len(), Duration::from_secs(30));
    check(&got, &[0; 4]);
    assert_quiet(&mut merged);
    // Resuming with one offset per partition: exactly the rest of each.
    let from: Vec<u64> = expected.iter().map(|e| (e.len() - 3) as u64).collect();
    let list: Vec<String> = from
        .iter()
        .enumerate()
        .map(|(k, o)| format!("{k}:{o}"))
        .collect();
    let mut resumed = subscribe(ws_at, &format!("stream=audit&from={}", list.join(",")));
    let (got, _) = read_n(&mut resumed, 12, Duration::from_secs(30));
    check(&got, &from);
    assert_quiet(&mut resumed);
    // A partition the list leaves out starts at its oldest record.
    let mut partial = subscribe(ws_at, &format!("stream=audit&from=1:{}", from[1]));
    let n = 3 + expected[0].len() + expected[2].len() + expected[3].len();
    let (got, _) = read_n(&mut partial, n, Duration::from_secs(30));
    check(&got, &[0, from[1], 0, 0]);
    assert_quiet(&mut partial);
    // Live again, after the resume.
    let more = records(2000, 2400);
    post(s.http, Some("audit"), &more);
    let (got, _) = read_n(&mut resumed, more.len(), Duration::from_secs(30));
    for k in 0..PARTITIONS {
        let mine: Vec<&str> = got
            .iter()
            .filter(|r| r.partition == Some(k))
            .map(|r| r.data.as_str())
            .collect();
        assert_eq!(
            mine,
            of_partition(&more, k),
            "partition {k} after the resume"
        );
    }
    assert!(s.stop().success());
}

#[test]
fn binary_partition_subscriptions_carry_the_partitions_frames() {
    let (_dir, s) = start();
    let ws_at = ws_addr(&s);
    let sent = records(0, 600);
    post(s.http, Some("audit"), &sent);
    let k = 2;
    let want = of_partition(&sent, k);
    let mut ws = subscribe(
        ws_at,
        &format!("stream=audit&partition={k}&from=0&format=binary"),
    );
    let (frames, next) = read_until(&mut ws, want.len(), Duration::from_secs(30), |m| match m {
        Message::Binary(b) => {
            let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
            let (next, end) = (u64_at(0), u64_at(8));
            let mut recs = Vec::new();
            let mut at = 16;
            while at < b.len() {
                let len = u32::from_le_bytes(b[at + 12..at + 16].try_into().unwrap()) as usize;
                recs.push((u64_at(at), b[at + 24..at + 24 + len].to_vec()));
                at += 24 + len;
            }
            Some((recs, next, end))
        }
        _ => None,
    });
    assert_eq!(next, want.len() as u64);
    for (i, ((offset, payload), line)) in frames.iter().zip(&want).enumerate() {
        assert_eq!(*offset, i as u64);
        assert_eq!(payload, line.as_bytes());
    }
    assert!(s.stop().success());
}

#[test]
fn unknown_streams_and_partitions_are_refused_and_counted() {
    let (_dir, s) = start();
    let ws_at = ws_addr(&s);
    let before = stats(&s)["server"]["ws_bad_requests_total"]
        .as_u64()
        .unwrap();
    let (status, body) = refused(ws_at, "/v1/stream?stream=nope", None);
    assert_eq!(status, 404);
    assert_eq!(body["error"], "unknown_stream");
    assert_contains(body["detail"].as_str().unwrap(), "\"nope\"");
    let (status, body) = refused(ws_at, "/v1/stream?stream=audit&partition=4", None);
    assert_eq!(status, 400);
    assert_contains(body["detail"].as_str().unwrap(), "0..=3");
    let (status, body) = refused(ws_at, "/v1/stream?partition=1", None);
    assert_eq!(status, 400, "the default stream has one partition: {body}");
    assert_contains(body["detail"].as_str().unwrap(), "0..=0");
    let (status, body) = refused(ws_at, "/v1/stream?stream=audit&format=binary", None);
    assert_eq!(status, 400);
    assert_contains(body["detail"].as_str().unwrap(), "partition=0..=3");
    let (status, body) = refused(ws_at, "/v1/stream?stream=audit&from=12", None);
    assert_eq!(status, 400);
    assert_contains(
        body["detail"].as_str().unwrap(),
        "from=<partition>:<offset>",
    );
    let (status, body) = refused(ws_at, "/v1/stream?stream=audit&from=0:1,7:2", None);
    assert_eq!(status, 400);
    assert_contains(body["detail"].as_str().unwrap(), "partition 7");
    let (status, _) = refused(ws_at, "/v1/stream?stream=audit&partition=1&from=2:5", None);
    assert_eq!(status, 400);
    let after = stats(&s)["server"]["ws_bad_requests_total"]
        .as_u64()
        .unwrap();
    assert_eq!(after - before, 7);
    // A stream of one partition is that partition: no partition named.
    let mut ws = subscribe(ws_at, "stream=default&from=earliest");
    post(s.http, None, &["one".to_owned()]);
    let (got, _) = read_n(&mut ws, 1, Duration::from_secs(30));
    assert_eq!(
        got,
        vec![PRec {
            partition: None,
            offset: 0,
            data: "one".into()
        }]
    );
    assert!(s.stop().success());
}

/// CPU time (user + system) the process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis((f[0] + f[1]) * 1000 / hz)
}

/// The fan-out core sleeps on every followed partition's eventfd: a record committed
/// to another partition than the default stream's wakes it at once (well under the
/// poll timeout a missed wake-up would cost, stretched here from 100 ms to 3 s so that
/// a fan-out thread slow to get a CPU on a busy machine is not taken for one), and
/// idle subscribers of several partitions cost next to no CPU.
#[test]
fn a_partition_subscriber_is_woken_by_its_commit_and_idle_subscribers_do_not_spin() {
    let (_dir, s) = start_with(&[("RINGSTASH_FAILPOINTS", "fanout_poll_ms=3000")]);
    let ws_at = ws_addr(&s);
    // svc-0's partition, and a merged subscriber too.
    let k = fnv1a32(b"svc-0") % PARTITIONS;
    let mut one = subscribe(ws_at, &format!("stream=audit&partition={k}"));
    let mut merged = subscribe(ws_at, "stream=audit");
    std::thread::sleep(Duration::from_millis(300));
    let pid = s.child.id();
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(2));
    let idle = cpu_time(pid) - before;
    // A spinning core would use the whole 2 s; the bound leaves room for a slow
    // machine's housekeeping (tick rounding, timers) without letting a spin pass.
    assert!(
        idle < Duration::from_millis(500),
        "idle server used {idle:?} of CPU in 2 s"
    );
    let mut latencies = Vec::new();
    for i in 0..21 {
        let line = format!(r#"{{"service":"svc-0","seq":{i}}}"#);
        post(s.http, Some("audit"), std::slice::from_ref(&line));
        // The POST is answered once the record is committed: from here on only the
        // wake-up is measured, not the connect, the request and the fdatasync, which
        // a slow machine stretches. A missed wake-up waits for the 3 s poll.
        let t = Instant::now();
        let (got, _) = read_n(&mut one, 1, Duration::from_secs(10));
        latencies.push(t.elapsed());
        assert_eq!(got[0].data, line);
        assert_eq!(got[0].offset, i);
        let (got, _) = read_n(&mut merged, 1, Duration::from_secs(10));
        assert_eq!((got[0].partition, got[0].offset), (Some(k), i));
        // Apart, so that each record finds the core asleep.
        std::thread::sleep(Duration::from_millis(20));
    }
    latencies.sort();
    assert!(
        latencies[20] < Duration::from_secs(1),
        "slowest commit-to-delivery {:?} (all {latencies:?})",
        latencies[20]
    );
    assert!(s.stop().success());
}

/// Reads until the server closes; returns the records and the close code and reason.
fn read_to_close(ws: &mut Ws, within: Duration) -> (Vec<PRec>, Option<(u16, String)>) {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no close after {} records",
            out.len()
        );
        match ws.read() {
            Ok(Message::Text(t)) => out.extend(parse(&t).0),
            Ok(Message::Close(c)) => {
                return (out, c.map(|c| (u16::from(c.code), c.reason.to_string())));
            }
            Ok(_) => {}
            Err(e) => panic!("subscription failed after {} records: {e}", out.len()),
        }
    }
}

/// `since`/`until` hold in a partition and in every partition of a merged
/// subscription, which closes with 1000 `until reached` once all of them are complete.
#[test]
fn time_ranges_hold_per_partition_and_close_a_merged_subscription_when_all_are_complete() {
    let (_dir, s) = start_with(&[("RINGSTASH_TIME_SKEW_MS_MAX", "200")]);
    let ws_at = ws_addr(&s);
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let before = records(0, 400);
    post(s.http, Some("audit"), &before);
    std::thread::sleep(Duration::from_millis(300));
    let since = unix();
    let inside = records(400, 800);
    post(s.http, Some("audit"), &inside);
    std::thread::sleep(Duration::from_millis(300));
    let until = unix();
    std::thread::sleep(Duration::from_millis(300));
    post(s.http, Some("audit"), &records(800, 1200));
    let range = format!("since={since:.6}&until={until:.6}");
    let k = 1;
    let mut one = subscribe(ws_at, &format!("stream=audit&partition={k}&{range}"));
    let (got, close) = read_to_close(&mut one, Duration::from_secs(20));
    let data: Vec<String> = got.iter().map(|r| r.data.clone()).collect();
    assert_eq!(data, of_partition(&inside, k));
    assert_eq!(close, Some((1000, "until reached".to_owned())));
    let mut merged = subscribe(ws_at, &format!("stream=audit&{range}"));
    let (got, close) = read_to_close(&mut merged, Duration::from_secs(20));
    assert_eq!(close, Some((1000, "until reached".to_owned())));
    assert_eq!(got.len(), inside.len());
    for k in 0..PARTITIONS {
        let mine: Vec<String> = got
            .iter()
            .filter(|r| r.partition == Some(k))
            .map(|r| r.data.clone())
            .collect();
        assert_eq!(mine, of_partition(&inside, k), "partition {k}");
    }
    assert!(s.stop().success());
}
