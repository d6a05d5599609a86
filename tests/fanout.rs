//! The fan-out core against the real binary: real WebSocket clients (tungstenite) on
//! `/v1/stream`, the read API, and the dashboard in headless Chromium.

mod common;

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use common::{Server, http, tcp_send_all};
use tungstenite::{Message, WebSocket, protocol::frame::coding::CloseCode};

type Ws = WebSocket<TcpStream>;

/// One delivered record.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    offset: u64,
    data: String,
    service: Option<String>,
    level: Option<String>,
}

fn ws_addr(s: &Server) -> SocketAddr {
    s.ws.expect("the server prints ws=")
}

/// Opens a subscription; panics on a refused handshake.
fn subscribe(addr: SocketAddr, query: &str) -> Ws {
    subscribe_on(TcpStream::connect(addr).expect("connect ws"), addr, query)
}

fn subscribe_on(stream: TcpStream, addr: SocketAddr, query: &str) -> Ws {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let url = format!("ws://{addr}/v1/stream?{query}");
    let (ws, resp) = tungstenite::client::client(url.as_str(), stream)
        .unwrap_or_else(|e| panic!("subscribe {url}: {e:?}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// The refusal of a subscription: status and JSON body.
fn refused(
    addr: SocketAddr,
    path_and_query: &str,
    origin: Option<&str>,
) -> (u16, serde_json::Value) {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{addr}{path_and_query}"
    ))
    .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    match tungstenite::client::client(req, stream) {
        Ok(_) => panic!("{path_and_query} was accepted"),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&body)));
            (resp.status().as_u16(), json)
        }
        Err(e) => panic!("{path_and_query}: unexpected {e:?}"),
    }
}

fn parse_message(text: &str) -> (Vec<Rec>, u64, u64) {
    let v: serde_json::Value = serde_json::from_str(text).expect("message is JSON");
    let recs = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| Rec {
            offset: r["offset"].as_u64().unwrap(),
            data: r["data"].as_str().unwrap().to_owned(),
            service: r["service"].as_str().map(str::to_owned),
            level: r["level"].as_str().map(str::to_owned),
        })
        .collect();
    (
        recs,
        v["next"].as_u64().unwrap(),
        v["committed_end"].as_u64().unwrap(),
    )
}

/// Reads messages until `n` records arrived (or panics after `within`), handing each
/// data message to `parse` for (records, next, committed_end). Returns the records and
/// the last `next`.
fn read_until<T>(
    ws: &mut Ws,
    n: usize,
    within: Duration,
    mut parse: impl FnMut(Message) -> Option<(Vec<T>, u64, u64)>,
) -> (Vec<T>, u64) {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut next = 0;
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records arrived",
            out.len()
        );
        match ws.read() {
            Ok(m) => {
                let Some((recs, nx, end)) = parse(m) else {
                    continue;
                };
                assert!(nx <= end, "next {nx} beyond committed_end {end}");
                assert!(!recs.is_empty(), "empty message");
                next = nx;
                out.extend(recs);
            }
            Err(e) => panic!("subscription failed after {} records: {e}", out.len()),
        }
    }
    (out, next)
}

/// JSON records until `n` arrived; see [`read_until`].
fn read_records(ws: &mut Ws, n: usize, within: Duration) -> (Vec<Rec>, u64) {
    read_until(ws, n, within, |m| match m {
        Message::Text(t) => Some(parse_message(&t)),
        _ => None,
    })
}

/// Ingests `lines` over one TCP connection and returns (count, last_offset) of the ack.
fn ingest_lines(s: &Server, lines: &[String]) -> (u64, u64) {
    let mut payload = lines.join("\n");
    payload.push('\n');
    let acks = tcp_send_all(s.tcp, payload.as_bytes());
    common::last_ack(&acks).unwrap_or_else(|| panic!("no ack in {acks:?}"))
}

fn stats(s: &Server) -> serde_json::Value {
    http(s.http, "GET", "/stats", &[], b"").json()
}

fn assert_exact(recs: &[Rec], first: u64, expected: &[String]) {
    assert_eq!(recs.len(), expected.len(), "record count");
    for (i, (r, e)) in recs.iter().zip(expected).enumerate() {
        assert_eq!(r.offset, first + i as u64, "offset of record {i}");
        assert_eq!(&r.data, e, "payload of offset {}", r.offset);
    }
}

#[test]
fn subscribers_receive_exactly_the_committed_records_in_order_with_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
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

/// One record of a binary message: offset, timestamp, payload.
type Frame = (u64, u64, Vec<u8>);

/// Parses one `format=binary` message independently of the server's code, byte by
/// byte as `docs/protocol.md` and `docs/format.md` describe it: (next, committed_end,
/// records as (offset, ts, payload)). Every frame's CRC-32C is checked.
fn parse_binary(m: &[u8]) -> (u64, u64, Vec<Frame>) {
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    assert!(m.len() >= 16, "short binary message");
    let (next, end) = (u64_at(m, 0), u64_at(m, 8));
    let mut recs = Vec::new();
    let mut at = 16;
    while at < m.len() {
        let len = u32_at(m, at + 12) as usize;
        let frame_end = at + 24 + len;
        assert!(frame_end <= m.len(), "frame at {at} overruns the message");
        assert_eq!(
            u32_at(m, at + 8),
            crc32c::crc32c(&m[at + 12..frame_end]),
            "crc of the frame at {at}"
        );
        recs.push((
            u64_at(m, at),
            u64_at(m, at + 16),
            m[at + 24..frame_end].to_vec(),
        ));
        at = frame_end;
    }
    assert!(!recs.is_empty(), "empty binary message");
    (next, end, recs)
}

/// Binary records until `n` arrived; see [`read_until`].
fn read_binary(ws: &mut Ws, n: usize, within: Duration) -> (Vec<Frame>, u64) {
    read_until(ws, n, within, |m| match m {
        Message::Binary(b) => {
            let (next, end, recs) = parse_binary(&b);
            assert!(
                next > recs.last().unwrap().0,
                "next is past the last record"
            );
            Some((recs, next, end))
        }
        Message::Text(t) => panic!("a text message on a binary subscription: {t}"),
        _ => None,
    })
}

#[test]
fn binary_subscribers_receive_the_stored_frames_exactly_filtered_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let ws_at = ws_addr(&s);
    let mut all = subscribe(ws_at, "from=earliest&format=binary");
    let mut errors = subscribe(ws_at, "from=latest&format=binary&level=error");
    let lines: Vec<String> = (0..6000)
        .map(|i| {
            let level = if i % 7 == 0 { "error" } else { "info" };
            format!(
                r#"{{"service":"s{}","level":"{level}","message":"m{i} {}"}}"#,
                i % 3,
                "y".repeat(i % 40)
            )
        })
        .collect();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for part in lines.chunks(1500) {
        ingest_lines(&s, part);
    }
    let (got, next) = read_binary(&mut all, lines.len(), Duration::from_secs(30));
    assert_eq!(
        next,
        lines.len() as u64,
        "unfiltered: next follows the last record"
    );
    assert_eq!(got.len(), lines.len());
    for (i, ((offset, ts, payload), want)) in got.iter().zip(&lines).enumerate() {
        assert_eq!(*offset, i as u64);
        assert_eq!(payload, want.as_bytes(), "payload of offset {offset}");
        assert!(
            *ts >= before - 60_000_000_000,
            "receive time of offset {offset}"
        );
    }
    // The filtered subscription: exactly the error records, with their own offsets.
    let want: Vec<(u64, &String)> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 == 0)
        .map(|(i, l)| (i as u64, l))
        .collect();
    let (got, _) = read_binary(&mut errors, want.len(), Duration::from_secs(30));
    let got: Vec<(u64, Vec<u8>)> = got.into_iter().map(|(o, _, p)| (o, p)).collect();
    let want: Vec<(u64, Vec<u8>)> = want
        .into_iter()
        .map(|(o, l)| (o, l.as_bytes().to_vec()))
        .collect();
    assert_eq!(got, want);
    // Resume from an offset in the middle: exactly the rest, byte for byte as on disk.
    let mut resumed = subscribe(ws_at, "from=5990&format=binary");
    let (got, _) = read_binary(&mut resumed, 10, Duration::from_secs(10));
    let offsets: Vec<u64> = got.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (5990..6000).collect::<Vec<_>>());
    resumed
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(matches!(resumed.read(), Err(tungstenite::Error::Io(_))));
    assert!(s.stop().success());
}

/// Starts reading (first offset, count) records from each subscriber at once, one
/// thread each; [`check_binary_reads`] joins them.
fn read_binary_each(
    subs: Vec<(Ws, u64, usize)>,
) -> Vec<std::thread::JoinHandle<(u64, Vec<Frame>)>> {
    subs.into_iter()
        .map(|(mut ws, first, n)| {
            std::thread::spawn(move || (first, read_binary(&mut ws, n, Duration::from_secs(60)).0))
        })
        .collect()
}

/// Checks binary records: offsets `first..` in order, payloads `lines[offset]`.
fn check_frames(first: u64, got: &[Frame], lines: &[String]) {
    for (k, (offset, _, payload)) in got.iter().enumerate() {
        assert_eq!(*offset, first + k as u64, "offsets from {first}");
        assert_eq!(
            payload,
            lines[*offset as usize].as_bytes(),
            "payload of {offset}"
        );
    }
}

/// Joins the readers and checks every record ([`check_frames`]).
fn check_binary_reads(threads: Vec<std::thread::JoinHandle<(u64, Vec<Frame>)>>, lines: &[String]) {
    for t in threads {
        let (first, got) = t.join().expect("reader thread");
        check_frames(first, &got, lines);
    }
}

/// Unfiltered binary subscribers share the messages one tail reader builds (the binary
/// window); one that starts below the window, between two of its messages, or ahead of
/// its end reads on its own until it meets it. Each still gets exactly its records.
#[test]
fn binary_subscribers_from_anywhere_share_the_window_and_get_exactly_their_records() {
    let lines: Vec<String> = (0..6000)
        .map(|i| format!("b{i:05} {}", "z".repeat(60 + i % 50)))
        .collect();
    let total = lines.len() as u64;

    // Subscribers that follow the log as it is written. The window starts at the
    // committed end (2000) when the first binary subscriber opens: `earliest` and
    // `middle` read up to it on their own, `future` joins once the log reaches 4500,
    // and `live` reads nothing on its own. Without the window every subscriber would
    // read every record it receives itself.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--subscriber-send-buffer-bytes", "8192"]);
    let ws_at = ws_addr(&s);
    ingest_lines(&s, &lines[..2000]);
    let earliest = subscribe(ws_at, "from=earliest&format=binary");
    let middle = subscribe(ws_at, "from=1237&format=binary");
    let future = subscribe(ws_at, "from=4500&format=binary");
    let live = subscribe(ws_at, "from=latest&format=binary");
    let filtered = subscribe(ws_at, "from=earliest&format=binary&q=b0123");
    let readers = read_binary_each(vec![
        (earliest, 0, 6000),
        (middle, 1237, 6000 - 1237),
        (future, 4500, 1500),
        (live, 2000, 4000),
    ]);
    for part in lines[2000..].chunks(250) {
        ingest_lines(&s, part);
        std::thread::sleep(Duration::from_millis(20));
    }
    check_binary_reads(readers, &lines);
    let mut filtered = filtered;
    let (got, _) = read_binary(&mut filtered, 10, Duration::from_secs(20));
    let offsets: Vec<u64> = got.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (1230..1240).collect::<Vec<_>>(), "q=b0123");
    let st = stats(&s);
    let delivered = st["server"]["ws_records_sent_total"].as_u64().unwrap();
    let own = st["server"]["ws_catchup_records_total"].as_u64().unwrap();
    assert!(delivered >= 6000 + 4763 + 1500 + 4000 + 10, "{st}");
    // On their own: `filtered` all 6000, `earliest` 2000, `middle` 763, and `future`
    // what it reads before it meets the window (none when `live` keeps up; all 1500
    // at worst). With a reader each, it would be all 22,263 (`filtered` included).
    assert!(
        own <= total + 2763 + 1500,
        "{own} of {delivered} records read by subscribers' own readers: the window was not shared"
    );
    assert!(s.stop().success());

    // A window of 64 KiB (about 500 of these records) and subscribers read one after
    // the other: those waiting fall below the window, read the files on their own, and
    // join it again; nothing is lost or repeated on the way.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--subscriber-send-buffer-bytes",
            "4096",
            "--fanout-window-bytes-max",
            "65536",
        ],
    );
    let ws_at = ws_addr(&s);
    let mut subs: Vec<(Ws, u64)> = vec![
        (subscribe(ws_at, "from=latest&format=binary"), 0),
        (subscribe(ws_at, "from=latest&format=binary"), 0),
    ];
    ingest_lines(&s, &lines[..3000]);
    subs.push((subscribe(ws_at, "from=777&format=binary"), 777));
    for part in lines[3000..].chunks(1000) {
        ingest_lines(&s, part);
    }
    for (mut ws, first) in subs {
        let (got, next) = read_binary(&mut ws, (total - first) as usize, Duration::from_secs(60));
        assert_eq!(next, total);
        check_frames(first, &got, &lines);
    }
    let own = stats(&s)["server"]["ws_catchup_records_total"]
        .as_u64()
        .unwrap();
    assert!(
        own > 0,
        "subscribers left below a 64 KiB window read on their own"
    );
    assert!(s.stop().success());
}

#[test]
fn resume_after_disconnect_and_after_restart_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<String> = Vec::new();
    let mut got: Vec<Rec> = Vec::new();
    let s = Server::start(dir.path(), &[]);
    let batch =
        |from: usize| -> Vec<String> { (from..from + 700).map(|i| format!("r{i}")).collect() };
    let b = batch(0);
    ingest_lines(&s, &b);
    all.extend(b);
    // Take part of it, then hang up mid-stream.
    let mut ws = subscribe(ws_addr(&s), "from=earliest");
    let (part, next) = read_records(&mut ws, 300, Duration::from_secs(10));
    got.extend(part);
    let mut resume = next;
    drop(ws);
    let b = batch(700);
    ingest_lines(&s, &b);
    all.extend(b);
    // Resume from `next`: the rest, once.
    let mut ws = subscribe(ws_addr(&s), &format!("from={resume}"));
    let want = all.len() - got.len();
    let (part, next) = read_records(&mut ws, want, Duration::from_secs(10));
    got.extend(part);
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
    let b = batch(1400);
    ingest_lines(&s, &b);
    all.extend(b);
    let mut ws = subscribe(ws_addr(&s), &format!("from={resume}"));
    let want = all.len() - got.len();
    let (part, _) = read_records(&mut ws, want, Duration::from_secs(10));
    got.extend(part);
    assert_exact(&got, 0, &all);
    assert!(s.stop().success());
}

#[test]
fn a_stalled_subscriber_is_closed_with_4008_and_producers_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--subscriber-stall-ms-max",
            "300",
            "--subscriber-send-buffer-bytes",
            "16384",
        ],
    );
    let ws_at = ws_addr(&s);
    // A subscriber with a small receive buffer that reads nothing.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(8192).unwrap();
    sock.connect(&ws_at.into()).unwrap();
    let mut stalled = subscribe_on(sock.into(), ws_at, "from=earliest");
    // A healthy subscriber alongside.
    let mut healthy = subscribe(ws_at, "from=earliest");
    // Producers: 40 000 records of 100 bytes over 4 connections, every ack checked.
    let lines: Vec<String> = (0..40_000)
        .map(|i| format!("{i:08} {}", "p".repeat(91)))
        .collect();
    let started = Instant::now();
    let producers: Vec<_> = lines
        .chunks(10_000)
        .map(|c| {
            let c = c.to_vec();
            let tcp = s.tcp;
            std::thread::spawn(move || {
                let mut payload = c.join("\n");
                payload.push('\n');
                let acks = tcp_send_all(tcp, payload.as_bytes());
                common::last_ack(&acks).expect("acks").0
            })
        })
        .collect();
    let acked: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    assert_eq!(acked, lines.len() as u64, "every record acked");
    eprintln!(
        "40000 records acked in {:?} with a stalled subscriber",
        started.elapsed()
    );
    let (got, _) = read_records(&mut healthy, lines.len(), Duration::from_secs(30));
    let mut offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    offsets.dedup();
    assert_eq!(offsets.len(), lines.len());
    // The stalled one is closed within a few stall periods.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(&s)["server"]["ws_stalled_closed_total"].as_u64() != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the stalled subscriber was not closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It reads what it was sent, then the close frame with the code and reason.
    let mut got: Vec<Rec> = Vec::new();
    let mut resume = 0;
    loop {
        match stalled.read() {
            Ok(Message::Text(t)) => {
                let (part, next, _) = parse_message(&t);
                got.extend(part);
                resume = next;
            }
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 4008);
                assert_eq!(f.reason.as_str(), "stalled");
                break;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("expected the 4008 close frame, got {e}"),
        }
    }
    assert!(resume < lines.len() as u64, "it stalled before the end");
    // And it resumes from its last `next` with nothing lost or repeated.
    let mut again = subscribe(ws_at, &format!("from={resume}"));
    let (rest, _) = read_records(&mut again, lines.len() - got.len(), Duration::from_secs(30));
    got.extend(rest);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
    }
    assert!(s.stop().success());
}

#[test]
fn filters_select_exactly_what_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
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

#[test]
fn bad_subscriptions_get_an_http_error_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--filter-bytes-max",
            "32",
            "--subscribers-max",
            "2",
            "--ws-allowed-origins",
            "http://good.example",
        ],
    );
    let ws_at = ws_addr(&s);
    for (pq, status, code) in [
        ("/v1/stream?from=abc", 400, "bad_request"),
        ("/v1/stream?from=-3", 400, "bad_request"),
        ("/v1/stream?frm=1", 400, "bad_request"),
        ("/v1/stream?from=1&from=2", 400, "bad_request"),
        ("/v1/stream?q=%zz", 400, "bad_request"),
        ("/v1/stream?limit=3", 400, "bad_request"),
        ("/v1/stream?format=xml", 400, "bad_request"),
        (
            "/v1/stream?q=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            400,
            "filter_too_long",
        ),
        ("/elsewhere", 404, "not_found"),
    ] {
        let (st, body) = refused(ws_at, pq, None);
        assert_eq!(
            (st, body["error"].as_str().unwrap()),
            (status, code),
            "{pq}: {body}"
        );
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    let (st, body) = refused(ws_at, "/v1/stream", Some("http://evil.example"));
    assert_eq!(
        (st, body["error"].as_str().unwrap()),
        (403, "origin_not_allowed")
    );
    let _ok = subscribe_with_origin(ws_at, "http://good.example");
    // Not a WebSocket request at all.
    let r = http(ws_at, "GET", "/v1/stream?from=1", &[], b"");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
    // subscribers_max = 2: the third is refused with 503.
    let _second = subscribe(ws_at, "from=latest");
    std::thread::sleep(Duration::from_millis(100));
    let (st, body) = refused_raw(ws_at);
    assert_eq!(
        (st, body["error"].as_str().unwrap()),
        (503, "too_many_subscribers")
    );
    let st = stats(&s);
    let sv = &st["server"];
    assert!(sv["ws_bad_requests_total"].as_u64().unwrap() >= 9, "{sv}");
    assert_eq!(sv["ws_origin_refused_total"], 1);
    assert_eq!(sv["filter_too_long_total"], 1);
    assert_eq!(sv["ws_subscribers_refused_total"], 1);
    let metrics = String::from_utf8(http(s.http, "GET", "/metrics", &[], b"").body).unwrap();
    for m in [
        "ringstash_ws_subscribers_open 2",
        "ringstash_ws_lag_records_max ",
        "ringstash_ws_stalled_closed_total 0",
        "ringstash_ws_subscribers_refused_total 1",
        "ringstash_filter_too_long_total 1",
    ] {
        assert!(metrics.contains(m), "{m} missing from /metrics");
    }
    // The read API refuses bad parameters the same way.
    for q in ["from=x", "limit=0", "limit=10001", "bogus=1"] {
        let r = http(s.http, "GET", &format!("/v1/logs?{q}"), &[], b"");
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.json()["error"], "bad_request", "{q}");
    }
    assert!(s.stop().success());
}

fn subscribe_with_origin(addr: SocketAddr, origin: &str) -> Ws {
    let stream = TcpStream::connect(addr).unwrap();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{addr}/v1/stream"
    ))
    .unwrap();
    req.headers_mut().insert("Origin", origin.parse().unwrap());
    tungstenite::client::client(req, stream)
        .expect("allowed origin")
        .0
}

/// A refusal written before any handshake (subscribers_max): a plain HTTP response.
fn refused_raw(addr: SocketAddr) -> (u16, serde_json::Value) {
    let r = http(
        addr,
        "GET",
        "/v1/stream",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    );
    (r.status, r.json())
}

#[test]
fn read_api_returns_committed_records_and_post_still_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--read-records-max", "50"]);
    let lines: Vec<String> = (0..120).map(|i| format!("rec {i}")).collect();
    ingest_lines(&s, &lines);
    let r = http(s.http, "GET", "/v1/logs", &[], b"");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        v["records"].as_array().unwrap().len(),
        50,
        "default 100 capped at read_records_max"
    );
    let r = http(s.http, "GET", "/v1/logs?from=100&limit=50", &[], b"").json();
    let recs = r["records"].as_array().unwrap();
    assert_eq!(recs.len(), 20);
    assert_eq!(recs[0]["offset"], 100);
    assert_eq!(recs[0]["data"], "rec 100");
    assert_eq!(
        (r["next"].as_u64(), r["committed_end"].as_u64()),
        (Some(120), Some(120))
    );
    let r = http(s.http, "GET", "/v1/logs?from=latest", &[], b"").json();
    assert_eq!(r["records"].as_array().unwrap().len(), 0);
    assert_eq!(
        http(s.http, "GET", "/v1/logs?limit=51", &[], b"").status,
        400
    );
    // POST /v1/logs still ingests; other methods get 405 with Allow.
    let r = http(
        s.http,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        br#"[{"service":"x","message":"y"}]"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["first_offset"], 120);
    let r = http(s.http, "PUT", "/v1/logs", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD, POST"));
    // The dashboard and its settings.
    let page = http(s.http, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(
        page.header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8(page.body).unwrap();
    assert!(
        html.contains("/v1/config") && !html.contains("https://"),
        "self-contained"
    );
    let cfg = http(s.http, "GET", "/v1/config", &[], b"").json();
    assert_eq!(cfg["ws_port"].as_u64(), Some(u64::from(ws_addr(&s).port())));
    assert_eq!(cfg["ws_path"], "/v1/stream");
    assert!(s.stop().success());
}

/// Starts `ringstash serve` on fixed HTTP and WebSocket ports (so that a page can
/// reconnect to a restarted server); returns it and its TCP address.
fn start_fixed(
    data_dir: &std::path::Path,
    http: SocketAddr,
    ws: SocketAddr,
) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(common::BIN)
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--tcp-addr", "127.0.0.1:0"])
        .args([
            "--http-addr",
            &http.to_string(),
            "--ws-addr",
            &ws.to_string(),
        ])
        .env("RINGSTASH_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ringstash serve");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        if line.starts_with("listening ") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let tcp = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tcp="))
        .unwrap()
        .parse()
        .unwrap();
    (child, tcp)
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A headless Chromium driven over the DevTools protocol (flattened sessions).
struct Browser {
    child: std::process::Child,
    ws: Ws,
    session: String,
    next_id: u64,
}

impl Browser {
    fn open(chromium: &str, profile: &std::path::Path, url: &str) -> Browser {
        use std::io::BufRead;
        let mut child = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run chromium");
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let endpoint = loop {
            line.clear();
            if err.read_line(&mut line).unwrap() == 0 {
                panic!("chromium exited without a DevTools endpoint");
            }
            if let Some(i) = line.find("ws://") {
                break line[i..].trim().to_owned();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let host = endpoint
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .unwrap()
            .to_owned();
        let (ws, _) = tungstenite::client::client(
            endpoint.as_str(),
            TcpStream::connect(host).expect("DevTools port"),
        )
        .expect("DevTools WebSocket");
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = b.call(
            None,
            "Target.createTarget",
            serde_json::json!({ "url": url }),
        );
        let id = target["targetId"].as_str().unwrap().to_owned();
        let attached = b.call(
            None,
            "Target.attachToTarget",
            serde_json::json!({ "targetId": id, "flatten": true }),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b
    }

    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        loop {
            let Message::Text(t) = self.ws.read().expect("DevTools message") else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates JavaScript in the page; returns its value.
    fn eval(&mut self, js: &str) -> serde_json::Value {
        let s = self.session.clone();
        let r = self.call(
            Some(&s),
            "Runtime.evaluate",
            serde_json::json!({ "expression": js, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `js` evaluates to true.
    fn wait_for(&mut self, js: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(js) == serde_json::Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "page never satisfied {js}; tail:\n{}",
                self.eval("document.getElementById('tail').innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// The dashboard in headless Chromium against the real server: history on load, live
/// records, pause/resume, a level filter, and resuming after a server restart with
/// nothing lost or repeated. Keeps a screenshot in target/tmp/fanout-dashboard/.
#[test]
fn dashboard_shows_ingested_records_in_headless_chromium() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(chromium) = chromium else {
        println!("SKIP: chromium is not installed (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (http_at, ws_at) = (free_port(), free_port());
    let (mut server, tcp) = start_fixed(dir.path(), http_at, ws_at);
    send_lines(tcp, &json_lines("history", 10));
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{http_at}/");
    let mut b = Browser::open(chromium, profile.path(), &url);
    let count = "document.querySelectorAll('#tail .rec').length";
    let has = |m: &str| format!("document.getElementById('tail').innerText.includes('\"{m}\"')");
    // History, then live records.
    b.wait_for(&has("history-9"), Duration::from_secs(20));
    b.wait_for(
        "document.getElementById('conn').textContent === 'live'",
        Duration::from_secs(10),
    );
    send_lines(tcp, &json_lines("live", 10));
    b.wait_for(&has("live-9"), Duration::from_secs(10));
    assert_eq!(b.eval(count), 20);
    // Pause holds records back; resume shows them.
    b.eval("document.getElementById('pause').click()");
    send_lines(tcp, &json_lines("paused", 4));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(b.eval(&has("paused-3")), false, "paused tail must not grow");
    b.eval("document.getElementById('pause').click()");
    b.wait_for(&has("paused-3"), Duration::from_secs(10));
    // The server restarts; the page reconnects and resumes from its last offset.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
    let (mut server, tcp) = start_fixed(dir.path(), http_at, ws_at);
    send_lines(tcp, &json_lines("restarted", 6));
    b.wait_for(&has("restarted-5"), Duration::from_secs(30));
    let offsets =
        b.eval("[...document.querySelectorAll('#tail .rec')].map(d => Number(d.dataset.offset))");
    let offsets: Vec<u64> = serde_json::from_value(offsets).unwrap();
    assert_eq!(
        offsets,
        (0..30).collect::<Vec<_>>(),
        "every record once, in order"
    );
    // Levels and services are shown; a level filter keeps only that level.
    assert!(b.eval("document.getElementById('levels').innerText.includes('error')") == true);
    b.eval("document.getElementById('level').value = 'error'; document.getElementById('level').onchange()");
    b.wait_for(
        &format!("{count} > 0 && [...document.querySelectorAll('#tail .rec')].every(d => d.innerText.includes(' error '))"),
        Duration::from_secs(10),
    );
    assert_eq!(b.eval(count), 9, "the 9 error records of 30");
    drop(b);
    // A screenshot for people to look at.
    let out_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fanout-dashboard");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("dashboard screenshot: {}", shot.display());
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
}

/// The writer's wake-up of the fan-out core: an eventfd written after a commit only
/// when the follower announced a sleep, and never missed (Dekker with the flag).
#[test]
fn the_commit_follower_is_woken_only_when_it_sleeps() {
    use ringstash::wal::{BatchBuilder, Log, LogConfig};
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(LogConfig::new(dir.path())).unwrap();
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
}
