//! Live JSON subscriptions on `/v1/stream` against the real binary (tungstenite
//! clients): exactly the committed records in order, resume after a disconnect and a
//! restart, filters, and the writer's wake-up of the commit follower.

mod common;

use std::time::Duration;

use common::{ws::*, *};
use tungstenite::{Message, protocol::frame::coding::CloseCode};

#[test]
fn subscribers_receive_exactly_the_committed_records_in_order_with_offsets() {
    let (_dir, s) = Server::start_in_tempdir(&[]);
    let ws_at = ws_addr(&s);
    let mut early = subscribe(ws_at, "from=earliest");
    let mut live = subscribe(ws_at, "from=latest");
    let lines: Vec<String> = (0..5000)
        .map(|i| format!("line {i} {}", "x".repeat(i % 50)))
        .collect();
    for part in lines.chunks(1000) {
        ingest_lines(&s, part);
    }
    let (got, next) = read_records(&mut early, lines.len(), Duration::from_secs(30));
    assert_exact(&got, 0, &lines);
    assert_eq!(next, lines.len() as u64);
    let (got, _) = read_records(&mut live, lines.len(), Duration::from_secs(30));
    assert_exact(&got, 0, &lines);
    // Batching: far fewer messages than records.
    let st = stats(&s);
    let msgs = st["server"]["ws_messages_sent_total"].as_u64().unwrap();
    assert!(
        msgs < 2 * lines.len() as u64 / 10,
        "{msgs} messages for {} records",
        2 * lines.len()
    );
    assert_eq!(st["server"]["ws_subscribers_open"], 2);
    // A late subscriber from an offset gets exactly the rest, from the files.
    let mut late = subscribe(ws_at, "from=4990");
    let (got, _) = read_records(&mut late, 10, Duration::from_secs(10));
    assert_exact(&got, 4990, &lines[4990..]);
    // Nothing more arrives than was committed.
    late.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(matches!(late.read(), Err(tungstenite::Error::Io(_))));
    assert!(s.stop().success());
}

#[test]
fn resume_after_disconnect_and_after_restart_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<String> = Vec::new();
    let mut got: Vec<Rec> = Vec::new();
    let s = Server::start(dir.path(), &[]);
    // Ingests the next 700 lines, and remembers them.
    let more = |s: &Server, all: &mut Vec<String>| {
        let b: Vec<String> = (all.len()..all.len() + 700)
            .map(|i| format!("r{i}"))
            .collect();
        ingest_lines(s, &b);
        all.extend(b);
    };
    // Subscribes from `resume` and reads the records not yet received.
    let rest = |s: &Server, resume: u64, got: &mut Vec<Rec>, all: &[String]| {
        let mut ws = subscribe(ws_addr(s), &format!("from={resume}"));
        let (part, next) = read_records(&mut ws, all.len() - got.len(), Duration::from_secs(10));
        got.extend(part);
        (ws, next)
    };
    more(&s, &mut all);
    // Take part of it, then hang up mid-stream.
    let mut ws = subscribe(ws_addr(&s), "from=earliest");
    let (part, next) = read_records(&mut ws, 300, Duration::from_secs(10));
    got.extend(part);
    let mut resume = next;
    drop(ws);
    more(&s, &mut all);
    // Resume from `next`: the rest, once.
    let (mut ws, next) = rest(&s, resume, &mut got, &all);
    resume = next;
    // Server restart: the subscriber is told (1001) and resumes on the new process.
    assert!(s.stop().success());
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::Away);
                break;
            }
            Ok(Message::Close(None)) => panic!("close without a code"),
            Ok(Message::Text(t)) => {
                let (part, next, _) = parse_message(&t);
                got.extend(part);
                resume = next;
            }
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
    let s = Server::start(dir.path(), &[]);
    more(&s, &mut all);
    rest(&s, resume, &mut got, &all);
    assert_exact(&got, 0, &all);
    assert!(s.stop().success());
}

#[test]
fn filters_select_exactly_what_they_should() {
    let (_dir, s) = Server::start_in_tempdir(&[]);
    let ws_at = ws_addr(&s);
    let services = ["api", "db", "web"];
    let levels = ["error", "warn", "info"];
    let mut body = String::new();
    let mut expected_all = Vec::new();
    for i in 0..300 {
        let svc = services[i % 3];
        let lvl = levels[(i / 3) % 3];
        let msg = if i % 7 == 0 {
            "disk full on /var"
        } else {
            "ok"
        };
        let rec =
            serde_json::json!({"service": svc, "level": lvl, "message": format!("{msg} #{i}")});
        body.push_str(&rec.to_string());
        body.push('\n');
        expected_all.push((i as u64, svc, lvl, format!("{msg} #{i}")));
    }
    // Plain lines that mention the filter words but are not JSON records.
    let r = http(
        s.http,
        "POST",
        "/ingest",
        &[],
        b"api error disk full plain\n",
    );
    assert_eq!(r.status, 200);
    let r = http(
        s.http,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let end = 301u64;
    type Expected<'a> = (u64, &'a str, &'a str, String);
    type Case<'a> = (&'a str, Box<dyn Fn(&Expected<'_>) -> bool>, bool);
    let cases: Vec<Case<'_>> = vec![
        ("service=api", Box::new(|r| r.1 == "api"), false),
        ("level=ERROR", Box::new(|r| r.2 == "error"), false),
        (
            "service=api,db&level=warn",
            Box::new(|r| (r.1 == "api" || r.1 == "db") && r.2 == "warn"),
            false,
        ),
        ("q=disk+full", Box::new(|r| r.3.contains("disk full")), true),
        (
            "service=web&q=disk%20full",
            Box::new(|r| r.1 == "web" && r.3.contains("disk full")),
            false,
        ),
    ];
    for (query, pred, plain_matches) in cases {
        let mut want: Vec<u64> = expected_all
            .iter()
            .filter(|r| pred(r))
            .map(|r| r.0 + 1)
            .collect();
        if plain_matches {
            want.insert(0, 0);
        }
        let mut ws = subscribe(ws_at, &format!("from=earliest&{query}"));
        let (got, _) = read_records(&mut ws, want.len(), Duration::from_secs(10));
        let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, want, "subscription {query}");
        // Nothing else trickles in.
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(
            matches!(ws.read(), Err(tungstenite::Error::Io(_))),
            "{query}"
        );
        // The read API applies the same filter.
        let r = http(
            s.http,
            "GET",
            &format!("/v1/logs?from=0&limit=1000&{query}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 200);
        let v = r.json();
        let offsets: Vec<u64> = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, want, "read {query}");
        assert_eq!(v["next"].as_u64(), Some(end));
    }
    // JSON records carry their fields in the message.
    let mut ws = subscribe(ws_at, "from=1&service=db");
    let (got, _) = read_records(&mut ws, 1, Duration::from_secs(10));
    assert_eq!(got[0].service.as_deref(), Some("db"));
    assert!(got[0].level.is_some());
    assert!(s.stop().success());
}

/// The writer's wake-up of the fan-out core: an eventfd written after a commit only
/// when the follower announced a sleep, and never missed (Dekker with the flag).
/// The JSON window moves to a subscriber that starts ahead of it once its last reader
/// left (as the dashboard resubscribes at the newest records); a subscriber left below
/// it reads the files on its own, and one with a time range (which always reads on its
/// own) neither holds the window nor moves it. Each gets exactly its records, offsets
/// contiguous, while more is ingested.
#[test]
fn the_json_window_moves_ahead_and_subscribers_below_it_get_exactly_their_records() {
    let (_dir, s) = Server::start_in_tempdir(&[
        "--subscriber-send-buffer-bytes",
        "4096",
        "--fanout-window-bytes-max",
        "65536",
    ]);
    let ws_at = ws_addr(&s);
    let lines: Vec<String> = (0..6000)
        .map(|i| format!("j{i:05} {}", "w".repeat(150 + i % 50)))
        .collect();
    let total = lines.len() as u64;
    // The window follows this reader to 2000, keeping the last 64 KiB (about 300
    // records) of it; then the reader leaves.
    let mut first = subscribe(ws_at, "from=latest");
    ingest_lines(&s, &lines[..2000]);
    let (got, _) = read_records(&mut first, 2000, Duration::from_secs(30));
    assert_exact(&got, 0, &lines[..2000]);
    drop(first);
    ingest_lines(&s, &lines[2000..4000]);
    // In the window (a time range: reads on its own), below it, and ahead of it, each
    // read as it arrives while the rest is ingested.
    let readers: Vec<_> = [
        ("from=1900&since=0", 1900u64),
        ("from=500", 500),
        ("from=3500", 3500),
    ]
    .into_iter()
    .map(|(q, from)| {
        let mut ws = subscribe(ws_at, q);
        std::thread::spawn(move || {
            let n = (total - from) as usize;
            let (got, next) = read_records(&mut ws, n, Duration::from_secs(60));
            (from, got, next)
        })
    })
    .collect();
    for part in lines[4000..].chunks(250) {
        ingest_lines(&s, part);
        std::thread::sleep(Duration::from_millis(20));
    }
    for r in readers {
        let (from, got, next) = r.join().expect("reader");
        assert_exact(&got, from, &lines[from as usize..]);
        assert_eq!(next, total, "from={from}");
    }
    assert!(s.stop().success());
}

#[test]
fn the_commit_follower_is_woken_only_when_it_sleeps() {
    use ringstash::wal::{BatchBuilder, Log};
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(common::wal::default_config(dir.path())).unwrap();
    let f = log.follower().unwrap();
    let readable = |ms: i32| {
        let mut p = libc::pollfd {
            fd: f.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    };
    let append = |n: usize| {
        let mut b = BatchBuilder::new(4096, 1024);
        for i in 0..n {
            b.push(1, format!("r{i}").as_bytes()).unwrap();
        }
        let (frames, count) = b.take();
        log.appender()
            .append(frames, count)
            .unwrap()
            .wait()
            .unwrap();
    };
    // Not sleeping: a commit costs the writer no write to the eventfd.
    append(3);
    assert!(!readable(50), "woken although not asleep");
    // Asleep at the current end: the next commit wakes it.
    let seen = f.committed_end();
    assert_eq!(seen, 3);
    assert!(f.prepare_sleep(seen));
    append(2);
    assert!(
        readable(2000),
        "a commit did not wake the sleeping follower"
    );
    f.woke();
    assert!(!readable(0), "woke() resets the eventfd");
    // Announcing a sleep with a stale end is refused: there is work already.
    assert!(!f.prepare_sleep(seen));
    assert_eq!(f.committed_end(), 5);
    // Each commit was timed by the writer, in order, sleeping follower or not.
    let view = log.view();
    let notes: Vec<(u64, u64, u64)> = std::iter::from_fn(|| view.take_commit_note()).collect();
    assert_eq!(notes.iter().map(|n| n.0).collect::<Vec<_>>(), [3, 5]);
    // With the framed bytes committed so far: 24 bytes of header and "rN" a record.
    assert_eq!(notes.iter().map(|n| n.2).collect::<Vec<_>>(), [78, 130]);
    assert!(notes[0].1 > 0 && notes[0].1 <= notes[1].1);
    assert!(notes[1].1 <= ringstash::wal::now_ns());
    assert_eq!(view.commit_notes_merged(), 0);
}
