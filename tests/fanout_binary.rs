//! Binary subscriptions on `/v1/stream`: the stored frames exactly, filtered and
//! resumable, and subscribers from anywhere in the log sharing the read window.

mod common;

use std::time::Duration;

use common::{ws::*, *};
use tungstenite::Message;

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
    let (_dir, s) = Server::start_in_tempdir(&[]);
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
    let (_dir, s) = Server::start_in_tempdir(&["--subscriber-send-buffer-bytes", "8192"]);
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
    let (_dir, s) = Server::start_in_tempdir(&[
        "--subscriber-send-buffer-bytes",
        "4096",
        "--fanout-window-bytes-max",
        "65536",
    ]);
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
