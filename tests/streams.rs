//! Streams and partitions against the real server: records kept apart by stream,
//! placed by FNV-1a of their key, retention per stream, a partition count that cannot
//! change under existing data, and every refusal in words.

mod common;

use std::{collections::BTreeMap, io::Write, net::TcpStream, time::Duration};

use common::*;

/// FNV-1a, 32 bits, written here from the published definition (offset basis
/// 2166136261, prime 16777619), independently of the server's.
fn fnv1a32(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &c| {
        (h ^ u32::from(c)).wrapping_mul(16_777_619)
    })
}

#[test]
fn the_test_hash_matches_the_published_vectors() {
    assert_eq!(fnv1a32(b""), 0x811c_9dc5);
    assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
    assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
}

/// `stream`'s partition count file in `data_dir` holds `n`.
#[track_caller]
fn assert_count_file(data_dir: &std::path::Path, stream: &str, n: u32) {
    let file = data_dir.join(stream).join("partitions");
    assert_eq!(std::fs::read_to_string(file).unwrap(), format!("{n}\n"));
}

/// A server whose `streams` setting is `streams`.
fn start_streams(dir: &std::path::Path, streams: &str) -> Server {
    Server::start_env(dir, &[], &[("RINGSTASH_STREAMS", streams)])
}

fn post_ndjson(s: &Server, stream: Option<&str>, lines: &[String]) -> HttpResponse {
    let body = lines.join("\n");
    let mut headers = vec![("Content-Type", "application/x-ndjson")];
    if let Some(st) = stream {
        headers.push(("Ringstash-Stream", st));
    }
    http(s.http, "POST", "/v1/logs", &headers, body.as_bytes())
}

/// Every record of `stream`'s partition `p`, as (offset, object), through the read API.
fn read_partition(s: &Server, stream: &str, p: u32) -> Vec<(u64, serde_json::Value)> {
    let (mut out, mut from) = (Vec::new(), 0u64);
    loop {
        let path = format!("/v1/logs?stream={stream}&partition={p}&from={from}&limit=10000");
        let r = http(s.http, "GET", &path, &[], b"");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        let got = v["records"].as_array().unwrap();
        for rec in got {
            out.push((
                rec["offset"].as_u64().unwrap(),
                serde_json::from_str(rec["data"].as_str().unwrap()).unwrap(),
            ));
        }
        let next = v["next"].as_u64().unwrap();
        if got.is_empty() || next >= v["committed_end"].as_u64().unwrap() {
            return out;
        }
        from = next;
    }
}

#[test]
fn keyed_records_land_in_their_fnv1a_partition_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_streams(dir.path(), "audit:partitions=4");
    let lines: Vec<String> = (0..400)
        .map(|i| {
            format!(
                r#"{{"service":"svc-{}","message":"m{i}","seq":{i}}}"#,
                i % 23
            )
        })
        .collect();
    for chunk in lines.chunks(100) {
        let r = post_ndjson(&s, Some("audit"), chunk);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["count"], 100);
    }
    let mut seen = 0;
    for p in 0..4u32 {
        let recs = read_partition(&s, "audit", p);
        // Offsets are the partition's own: 0, 1, 2, ...
        let offsets: Vec<u64> = recs.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (0..recs.len() as u64).collect::<Vec<_>>());
        let mut last_seq: BTreeMap<String, u64> = BTreeMap::new();
        for (_, r) in &recs {
            let svc = r["service"].as_str().unwrap().to_owned();
            assert_eq!(fnv1a32(svc.as_bytes()) % 4, p, "{svc} in partition {p}");
            let seq = r["seq"].as_u64().unwrap();
            if let Some(prev) = last_seq.insert(svc.clone(), seq) {
                assert!(
                    seq > prev,
                    "{svc}: {seq} after {prev}: a key's order was lost"
                );
            }
        }
        assert!(
            !recs.is_empty(),
            "23 services leave no partition of 4 empty"
        );
        seen += recs.len();
    }
    assert_eq!(seen, 400);
    // Nothing leaked into the default stream; a POST without the header goes there.
    assert_eq!(get_logs(&s, "").len(), 0);
    let r = post_ndjson(
        &s,
        None,
        &[r#"{"service":"svc-1","message":"d"}"#.to_owned()],
    );
    assert_eq!(r.status, 200);
    assert_eq!(get_logs(&s, "")[0]["message"], "d");
    assert_count_file(dir.path(), "audit", 4);
    // The per-partition series say the same.
    let m = metrics(s.http);
    for p in 0..4u32 {
        let n = read_partition(&s, "audit", p).len();
        let line =
            format!("ringstash_partition_committed_end{{stream=\"audit\",partition=\"{p}\"}} {n}");
        assert!(m.contains(&line), "no {line:?} in /metrics");
    }
    let st = stats_json(s.http);
    assert_eq!(st["streams"]["partitions"].as_array().unwrap().len(), 5);
    assert!(st["streams"]["memory_bytes"].as_u64().unwrap() > 0);
    assert_promtool_clean(&m);
    assert!(s.stop().success());
    // `cat` names the stream and partition; `check` goes through every partition.
    for p in 0..4u32 {
        let out = run(&[
            "cat",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--stream",
            "audit",
            "--partition",
            &p.to_string(),
        ]);
        assert!(out.status.success());
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(fnv1a32(v["service"].as_str().unwrap().as_bytes()) % 4, p);
        }
    }
    let out = run(&[
        "cat",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--stream",
        "nope",
    ]);
    assert!(!out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        "holds no stream \"nope\"",
    );
    let out = run(&[
        "cat",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--stream",
        "audit",
        "--partition",
        "4",
    ]);
    assert!(!out.status.success());
    assert_contains(&String::from_utf8_lossy(&out.stderr), "has 4 partition(s)");
    let (code, text) = check(dir.path());
    assert_eq!(code, 0, "{text}");
    for p in 0..4 {
        assert_contains(&text, &format!("stream audit partition {p}:"));
    }
}

#[test]
fn acked_tcp_into_a_partitioned_stream_acks_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_env(
        dir.path(),
        &[],
        &[
            ("RINGSTASH_STREAMS", "audit:partitions=3"),
            ("RINGSTASH_TCP_ACKED_STREAM", "audit"),
        ],
    );
    let mut payload = String::new();
    for i in 0..3000 {
        payload.push_str(&format!("{{\"service\":\"s{}\",\"i\":{i}}}\n", i % 7));
    }
    // Plain lines have no key: a connection's go to one partition, in order.
    for i in 0..500 {
        payload.push_str(&format!("plain {i}\n"));
    }
    assert_eq!(acked_count(s.tcp_acked, &payload), Some(3500));
    let parts: Vec<Vec<(u64, String)>> =
        (0..3).map(|p| read_partition_raw(&s, "audit", p)).collect();
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 3500);
    let plain: Vec<usize> = (0..3)
        .filter(|&p| parts[p].iter().any(|(_, d)| d.starts_with("plain ")))
        .collect();
    assert_eq!(
        plain.len(),
        1,
        "keyless records of one connection in one partition"
    );
    let got: Vec<&str> = parts[plain[0]]
        .iter()
        .filter(|(_, d)| d.starts_with("plain "))
        .map(|(_, d)| d.as_str())
        .collect();
    let want: Vec<String> = (0..500).map(|i| format!("plain {i}")).collect();
    assert_eq!(got, want);
    assert!(s.stop().success());
}

/// As [`read_partition`], payloads as text.
fn read_partition_raw(s: &Server, stream: &str, p: u32) -> Vec<(u64, String)> {
    let path = format!("/v1/logs?stream={stream}&partition={p}&limit=10000");
    let v = http(s.http, "GET", &path, &[], b"").json();
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["offset"].as_u64().unwrap(),
                r["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn listeners_and_syslog_rules_choose_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_env(
        dir.path(),
        &[],
        &[
            ("RINGSTASH_STREAMS", "audit; web"),
            ("RINGSTASH_TCP_STREAM", "web"),
            (
                "RINGSTASH_SYSLOG_STREAM_RULES",
                "facility=local0:audit; app=nginx:web",
            ),
        ],
    );
    tcp_send_all(s.tcp, b"one\ntwo\n");
    // local0.info (134) to audit; user.info (14) from nginx to web; from sshd to the
    // syslog listener's stream, the default.
    let msgs = [
        "<134>1 2026-12-06T10:00:00Z h app1 - - - to audit\n",
        "<14>1 2026-12-06T10:00:00Z h nginx - - - to web\n",
        "<14>1 2026-12-06T10:00:00Z h sshd - - - to default\n",
    ];
    tcp_send_all(s.syslog, msgs.concat().as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let web = read_partition_raw(&s, "web", 0);
        let audit = read_partition(&s, "audit", 0);
        let def = get_logs(&s, "");
        if web.len() == 3 && audit.len() == 1 && def.len() == 1 {
            assert_eq!(web[0].1, "one");
            assert_eq!(web[1].1, "two");
            let nginx: serde_json::Value = serde_json::from_str(&web[2].1).unwrap();
            assert_eq!(nginx["message"], "to web");
            assert_eq!(audit[0].1["message"], "to audit");
            assert_eq!(audit[0].1["facility"], "local0");
            assert_eq!(def[0]["message"], "to default");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "web {web:?} audit {audit:?} default {def:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.stop().success());
}

#[test]
fn unknown_streams_and_partitions_are_refused_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_streams(dir.path(), "audit:partitions=4");
    let r = post_ndjson(&s, Some("nope"), &[r#"{"message":"x"}"#.to_owned()]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "unknown_stream");
    let r = http(s.http, "GET", "/v1/logs?stream=nope", &[], b"");
    assert_eq!(r.status, 404);
    let r = http(s.http, "GET", "/v1/logs?stream=audit", &[], b"");
    assert_eq!(r.status, 400);
    assert_contains(
        &String::from_utf8_lossy(&r.body),
        "name one with partition=0..=3",
    );
    let r = http(s.http, "GET", "/v1/logs?stream=audit&partition=4", &[], b"");
    assert_eq!(r.status, 400);
    assert_contains(&String::from_utf8_lossy(&r.body), "there is no partition 4");
    assert_eq!(metric(s.http, "ringstash_unknown_stream_total"), 2);
    assert_eq!(get_logs(&s, "").len(), 0);
    assert!(s.stop().success());
    // Settings that do not hold together stop the start, naming the setting.
    for (env, says) in [
        (vec![("RINGSTASH_TCP_STREAM", "nope")], "tcp_stream"),
        (
            vec![("RINGSTASH_SYSLOG_STREAM_RULES", "app=x:nope")],
            "syslog_stream_rules",
        ),
        (
            vec![
                ("RINGSTASH_STREAMS", "a;b;c"),
                ("RINGSTASH_STREAMS_MAX", "3"),
            ],
            "exceed streams_max = 3",
        ),
        (
            vec![("RINGSTASH_STREAMS", "a:partitions=65")],
            "stream_partitions_max = 64",
        ),
        (
            vec![("RINGSTASH_STREAMS", "a:partitions=64")],
            "over streams_memory_bytes_max",
        ),
        (vec![("RINGSTASH_STREAMS", "Bad")], "streams as"),
    ] {
        let d = tempfile::tempdir().unwrap();
        let e = Server::try_start_env(d.path(), &[], &env)
            .err()
            .expect("refused");
        assert_contains(&e, says);
    }
}

#[test]
fn a_streams_partition_count_cannot_change_under_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_streams(dir.path(), "audit:partitions=4");
    assert_eq!(
        post_ndjson(&s, Some("audit"), &[r#"{"service":"a"}"#.into()]).status,
        200
    );
    assert!(s.stop().success());
    let e = Server::try_start_env(
        dir.path(),
        &[],
        &[("RINGSTASH_STREAMS", "audit:partitions=8")],
    )
    .err()
    .expect("refused");
    assert_contains(&e, "stream \"audit\" was created with 4 partition(s)");
    assert_contains(&e, "the settings ask for 8");
    // The same count starts, with the record still there.
    let s = start_streams(dir.path(), "audit:partitions=4");
    let p = fnv1a32(b"a") % 4;
    assert_eq!(read_partition(&s, "audit", p).len(), 1);
    assert!(s.stop().success());
    // A data directory from before streams (segments, no count file) is one partition.
    let old = tempfile::tempdir().unwrap();
    let s = Server::start(old.path(), &[]);
    tcp_send_all(s.tcp, b"{\"old\":1}\n");
    wait_records(&s, 1, Duration::from_secs(10), String::new);
    assert!(s.stop().success());
    std::fs::remove_dir_all(old.path().join("default")).unwrap();
    let e = Server::try_start_env(
        old.path(),
        &[],
        &[("RINGSTASH_STREAMS", "default:partitions=2")],
    )
    .err()
    .expect("refused");
    assert_contains(&e, "stream \"default\" was created with 1 partition(s)");
    // With one partition it starts, a new stream beside it, and the old record is
    // where it was: the default stream's partition 0, the data directory.
    let s = Server::start_env(
        old.path(),
        &[],
        &[("RINGSTASH_STREAMS", "audit:partitions=2")],
    );
    assert_eq!(get_logs(&s, "")[0]["old"], 1);
    assert!(s.stop().success());
    assert_count_file(old.path(), "default", 1);
}

#[test]
fn retention_is_each_streams_own() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_env(
        dir.path(),
        &small_segments_and(&[]),
        &[(
            "RINGSTASH_STREAMS",
            "short:retention_bytes_max=200000; long",
        )],
    );
    let line = |i: usize| format!(r#"{{"service":"x","pad":"{}","i":{i}}}"#, "p".repeat(400));
    let lines: Vec<String> = (0..2000).map(line).collect();
    for stream in ["short", "long"] {
        for chunk in lines.chunks(250) {
            assert_eq!(post_ndjson(&s, Some(stream), chunk).status, 200);
        }
    }
    let st = stats_json(s.http);
    let start = |name: &str| {
        st["streams"]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["stream"] == name)
            .unwrap()["start_offset"]
            .as_u64()
            .unwrap()
    };
    assert!(
        start("short") > 0,
        "retention removed short's oldest segments"
    );
    assert_eq!(start("long"), 0, "long keeps everything");
    assert_eq!(read_partition(&s, "long", 0).len(), 2000);
    let short = read_partition(&s, "short", 0);
    assert!(short.len() < 2000);
    assert_eq!(short.last().unwrap().1["i"], 1999);
    let seg_bytes = segment_bytes(&dir.path().join("short/0"));
    // Sealed segments over the bound are gone; the active one (and a sealed one
    // within the bound) remain.
    assert!(
        seg_bytes <= 200_000 + 2 * 65_536,
        "{seg_bytes} bytes left in short"
    );
    assert!(s.stop().success());
}

#[test]
fn check_finds_damage_in_any_partition() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_streams(dir.path(), "audit:partitions=2");
    let lines: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"service":"k{}","message":"m{i}"}}"#, i % 5))
        .collect();
    assert_eq!(post_ndjson(&s, Some("audit"), &lines).status, 200);
    assert!(s.stop().success());
    let (code, text) = check(dir.path());
    assert_eq!(code, 0, "{text}");
    // A flipped byte in the first record of partition 1's segment, with valid
    // records after it: corruption, exit 1.
    let seg = std::fs::read_dir(dir.path().join("audit/1"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[32 + 24 + 5] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let (code, text) = check(dir.path());
    assert_eq!(code, 1, "{text}");
    assert_contains(&text, "stream audit partition 1:");
    assert_contains(&text, "ERROR");
}

#[test]
fn a_connection_that_is_never_read_still_lands_in_its_stream() {
    // One-way TCP into a partitioned stream: keyless lines of one connection, in
    // order, in one partition; the server writes nothing back.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_env(
        dir.path(),
        &[],
        &[
            ("RINGSTASH_STREAMS", "web:partitions=4"),
            ("RINGSTASH_TCP_STREAM", "web"),
        ],
    );
    let mut conn = TcpStream::connect(s.tcp).unwrap();
    let body: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    conn.write_all(body.as_bytes()).unwrap();
    drop(conn);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let parts: Vec<Vec<(u64, String)>> =
            (0..4).map(|p| read_partition_raw(&s, "web", p)).collect();
        let total: usize = parts.iter().map(Vec::len).sum();
        if total == 1000 {
            let full: Vec<&Vec<(u64, String)>> = parts.iter().filter(|p| !p.is_empty()).collect();
            assert_eq!(full.len(), 1);
            let got: Vec<&str> = full[0].iter().map(|(_, d)| d.as_str()).collect();
            let want: Vec<String> = (0..1000).map(|i| format!("line {i}")).collect();
            assert_eq!(got, want);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{total} of 1000");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.stop().success());
}

#[test]
fn the_default_stream_can_be_partitioned_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_streams(dir.path(), "default:partitions=2");
    let lines: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"service":"d{}","i":{i}}}"#, i % 6))
        .collect();
    assert_eq!(post_ndjson(&s, None, &lines).status, 200);
    let counts: Vec<usize> = (0..2)
        .map(|p| read_partition(&s, "default", p).len())
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 50);
    for p in 0..2u32 {
        for (_, r) in read_partition(&s, "default", p) {
            assert_eq!(fnv1a32(r["service"].as_str().unwrap().as_bytes()) % 2, p);
        }
    }
    assert!(s.stop().success());
    // It starts again with the same count: partition 0 is the data directory.
    let s = start_streams(dir.path(), "default:partitions=2");
    assert_eq!(
        (0..2)
            .map(|p| read_partition(&s, "default", p).len())
            .sum::<usize>(),
        50
    );
    assert!(s.stop().success());
    assert_count_file(dir.path(), "default", 2);
}

#[test]
fn syslog_over_udp_follows_the_rules_into_a_partitioned_stream() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_env(
        dir.path(),
        &["--syslog-udp-addr", "127.0.0.1:0"],
        &[
            ("RINGSTASH_STREAMS", "audit:partitions=2"),
            ("RINGSTASH_SYSLOG_STREAM_RULES", "facility=local0:audit"),
        ],
    );
    let udp = s.syslog_udp();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // local0.info (134) from four apps to audit; user.info (14) to the default stream.
    for i in 0..20 {
        let msg = format!("<134>1 2026-12-06T10:00:00Z h u{} - - - a{i}", i % 4);
        sock.send_to(msg.as_bytes(), udp).unwrap();
    }
    sock.send_to(b"<14>1 2026-12-06T10:00:00Z h other - - - d", udp)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let parts: Vec<Vec<(u64, serde_json::Value)>> =
            (0..2).map(|p| read_partition(&s, "audit", p)).collect();
        let def = get_logs(&s, "");
        if parts.iter().map(Vec::len).sum::<usize>() == 20 && def.len() == 1 {
            for (p, recs) in parts.iter().enumerate() {
                for (_, r) in recs {
                    let app = r["service"].as_str().unwrap();
                    assert_eq!(fnv1a32(app.as_bytes()) % 2, p as u32, "{app}");
                    assert_eq!(r["facility"], "local0");
                }
            }
            assert_eq!(def[0]["message"], "d");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{parts:?} {def:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.stop().success());
}
