//! Damage in the newest segment against the real binary (issue 13): a bad frame with
//! valid frames after it is corruption, not a torn tail. Recovery keeps the records
//! after it and says so; `check` exits 1 naming the byte; `cat` prints every intact
//! record, marks the gap on stderr and exits 3; the read API serves the records after
//! it with their own offsets and a `gaps` marker; `recovery = strict` refuses to start.
//! A genuine torn tail (an incomplete last frame, zeros to the end) is still cut.

use std::{
    fs::{self, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

mod common;

use common::{wal::*, *};
use ringstash::wal::segment::list_segments;

/// Records in the fixture: about 100 KB, several index intervals, one segment.
const RECORDS: u64 = 2000;

/// A data directory holding `RECORDS` acknowledged records (payload `record-<i>-...`)
/// in one segment, written through the acked TCP port and stopped cleanly. Returns the
/// payloads, the segment's path and its records as parsed by the test's own parser.
fn fixture(dir: &Path) -> (Vec<String>, PathBuf, Vec<OnDisk>) {
    fixture_of(dir, RECORDS, 37)
}

/// As [`fixture`], with `records` records of up to `filler_max` filler bytes each.
fn fixture_of(dir: &Path, records: u64, filler_max: u64) -> (Vec<String>, PathBuf, Vec<OnDisk>) {
    fixture_with(dir, records, filler_max, &[])
}

/// As [`fixture_of`], written by a server started with `flags`.
fn fixture_with(
    dir: &Path,
    records: u64,
    filler_max: u64,
    flags: &[&str],
) -> (Vec<String>, PathBuf, Vec<OnDisk>) {
    let s = Server::start(dir, flags);
    let payloads: Vec<String> = (0..records)
        .map(|i| format!("record-{i:06}-{}", "x".repeat((i % filler_max) as usize)))
        .collect();
    let mut body = payloads.join("\n");
    body.push('\n');
    let said = tcp_send_all(s.tcp_acked, body.as_bytes());
    assert_eq!(last_ack(&said), Some((records, records - 1)), "{said}");
    assert!(s.stop().success());
    let bases = list_segments(dir).unwrap();
    assert_eq!(bases, [0], "one segment");
    let seg = ringstash::wal::segment::segment_path(dir, 0);
    let recs = parse_segment(&seg);
    assert_eq!(recs.len() as u64, records);
    (payloads, seg, recs)
}

/// XORs byte `at` of `path` with 0x24.
fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x24], at).unwrap();
}

/// `ringstash cat --meta` on `dir`: (exit code, (offset, payload) per line, stderr).
fn cat_meta(dir: &Path) -> (i32, Records, String) {
    let out = run(&["cat", "--meta", "--data-dir", dir.to_str().unwrap()]);
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let offset = f.next().unwrap().parse().unwrap();
            let _ts = f.next().unwrap();
            (offset, f.next().unwrap().to_owned())
        })
        .collect();
    (
        out.status.code().expect("cat exited normally"),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Records as (offset, payload).
type Records = Vec<(u64, String)>;

/// Adds the records of JSON message `v` (read API or WebSocket) to `records`, as
/// (offset, data), and its `gaps` entries to `gaps`, as (from, to).
fn take_message(v: &serde_json::Value, records: &mut Records, gaps: &mut Vec<(u64, u64)>) {
    for r in v["records"].as_array().unwrap() {
        records.push((
            r["offset"].as_u64().unwrap(),
            r["data"].as_str().unwrap().to_owned(),
        ));
    }
    for g in v["gaps"].as_array().into_iter().flatten() {
        gaps.push((g["from"].as_u64().unwrap(), g["to"].as_u64().unwrap()));
    }
}

/// Every record `GET /v1/logs` serves from offset 0, page by page, as (offset, data),
/// and every `gaps` entry the pages carried, as (from, to).
fn read_api_all(s: &Server) -> (Records, Vec<(u64, u64)>) {
    let (mut records, mut gaps, mut from) = (Vec::new(), Vec::new(), 0u64);
    loop {
        let v = http(
            s.http,
            "GET",
            &format!("/v1/logs?from={from}&limit=700"),
            &[],
            b"",
        )
        .json();
        take_message(&v, &mut records, &mut gaps);
        let next = v["next"].as_u64().unwrap();
        if next >= v["committed_end"].as_u64().unwrap() {
            return (records, gaps);
        }
        assert!(next > from, "the read API must move on: {v}");
        from = next;
    }
}

/// A JSON WebSocket subscription from offset 0, read until `n` records arrived: the
/// records as (offset, data) and the `gaps` entries the messages carried.
fn subscribe_all(s: &Server, n: usize) -> (Records, Vec<(u64, u64)>) {
    let mut ws = common::ws::subscribe(common::ws::ws_addr(s), "from=0");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut records, mut gaps) = (Vec::new(), Vec::new());
    while records.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n}",
            records.len()
        );
        let tungstenite::Message::Text(t) = ws.read().expect("subscription") else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        take_message(&v, &mut records, &mut gaps);
    }
    (records, gaps)
}

/// A `format=binary` WebSocket subscription from offset 0, read until `n` records
/// arrived: the records as (offset, payload) and the gap markers the messages carried
/// (frames whose crc32c and length are u32::MAX: offset = from, timestamp = to).
fn subscribe_binary_all(s: &Server, n: usize) -> (Records, Vec<(u64, u64)>) {
    let mut ws = common::ws::subscribe(common::ws::ws_addr(s), "from=0&format=binary");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut records, mut gaps) = (Vec::new(), Vec::new());
    let u64_at = |m: &[u8], at: usize| u64::from_le_bytes(m[at..at + 8].try_into().unwrap());
    let u32_at = |m: &[u8], at: usize| u32::from_le_bytes(m[at..at + 4].try_into().unwrap());
    while records.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n}",
            records.len()
        );
        let tungstenite::Message::Binary(m) = ws.read().expect("subscription") else {
            continue;
        };
        let mut at = 16;
        while at < m.len() {
            let (offset, crc, len) = (u64_at(&m, at), u32_at(&m, at + 8), u32_at(&m, at + 12));
            if (crc, len) == (u32::MAX, u32::MAX) {
                gaps.push((offset, u64_at(&m, at + 16)));
                at += 24;
                continue;
            }
            let payload = &m[at + 24..at + 24 + len as usize];
            records.push((offset, String::from_utf8(payload.to_vec()).unwrap()));
            at += 24 + len as usize;
        }
    }
    (records, gaps)
}

/// The records expected from offset 0 with `lost` missing, as (offset, payload).
fn all_but(payloads: &[String], lost: &[u64]) -> Records {
    (0..payloads.len() as u64)
        .filter(|o| !lost.contains(o))
        .map(|o| (o, payloads[o as usize].clone()))
        .collect()
}

#[test]
fn bit_rot_in_the_middle_of_the_active_segment_is_reported_skipped_and_never_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (payloads, seg, recs) = fixture(dir.path());
    let victim = recs[1000];
    // A payload byte: the frame stays complete, its checksum fails.
    flip(&seg, victim.position + RECORD_HEADER + 3);
    let len_before = fs::metadata(&seg).unwrap().len();
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();

    // `check` (before any restart): exit 1, naming the segment and the byte.
    let (code, text) = check(dir.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&name) && text.contains(&format!("damaged at byte {}", victim.position)),
        "{text}"
    );
    assert!(text.contains("offsets 1000..1001 lost"), "{text}");
    assert!(!text.contains("torn tail"), "not a torn tail: {text}");

    // `cat`: every intact record with its offset, the gap on stderr, exit 3.
    let (code, lines, stderr) = cat_meta(dir.path());
    assert_eq!(lines, all_but(&payloads, &[1000]));
    assert_eq!(
        code, 3,
        "cat must not exit 0 having skipped records: {stderr}"
    );
    assert!(
        stderr.contains("gap: offsets 1000..1001 lost")
            && stderr.contains(&name)
            && stderr.contains(&format!("damaged at byte {}", victim.position)),
        "{stderr}"
    );

    // Restart: the damage is found, logged with segment and byte, counted, not cut.
    let s = Server::start(dir.path(), &[]);
    let log = s.stderr_text();
    assert!(
        log.contains(&name) && log.contains(&format!("damaged at byte {}", victim.position)),
        "recovery must name the damage:\n{log}"
    );
    assert_eq!(fs::metadata(&seg).unwrap().len(), len_before, "nothing cut");
    assert_eq!(stats_json(s.http)["log"]["recovery_damaged_ranges"], 1);
    assert_metrics(s.http, &["ringstash_recovery_damaged_ranges 1"]);

    // The read API serves every record after the damage with its own offset, and
    // marks the lost one.
    let (records, gaps) = read_api_all(&s);
    assert_eq!(records, all_but(&payloads, &[1000]));
    assert_eq!(gaps, [(1000, 1001)]);
    assert!(metric(s.http, "ringstash_damaged_ranges_skipped_total") >= 1);
    // From inside the damaged range: the first record after it, and the marker.
    let v = http(s.http, "GET", "/v1/logs?from=1000&limit=1", &[], b"").json();
    assert_eq!(v["records"][0]["offset"], 1001, "{v}");
    assert_eq!(
        v["gaps"],
        serde_json::json!([{"from": 1000, "to": 1001}]),
        "{v}"
    );

    // `cat` while the server holds the directory: the same, after letting writes that
    // might be in flight settle once.
    let (code, lines, stderr) = cat_meta(dir.path());
    assert_eq!((code, lines), (3, all_but(&payloads, &[1000])), "{stderr}");

    // A WebSocket subscriber from offset 0 gets the same records and a `gaps` marker.
    let (records, gaps) = subscribe_all(&s, RECORDS as usize - 1);
    assert_eq!(records, all_but(&payloads, &[1000]));
    assert_eq!(gaps, [(1000, 1001)]);
    // A binary subscriber gets them too, and a gap marker frame where the loss is.
    let (records, gaps) = subscribe_binary_all(&s, RECORDS as usize - 1);
    assert_eq!(records, all_but(&payloads, &[1000]));
    assert_eq!(gaps, [(1000, 1001)]);

    // New records continue the numbering after the last record on disk.
    let said = tcp_send_all(s.tcp_acked, b"after-1\nafter-2\n");
    assert_eq!(last_ack(&said), Some((2, RECORDS + 1)), "{said}");
    assert!(s.stop().success());
    let (code, lines, _) = cat_meta(dir.path());
    assert_eq!(code, 3);
    assert_eq!(
        lines[lines.len() - 2..],
        [(RECORDS, "after-1".into()), (RECORDS + 1, "after-2".into())]
    );
    // The damage stays reported: it is never cut.
    assert_eq!(check(dir.path()).0, 1);
}

#[test]
fn a_bad_frame_before_the_last_records_is_not_cut_as_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (payloads, seg, recs) = fixture(dir.path());
    // The checksum field of the third record from the end: the last index interval,
    // the part recovery used to scan and cut.
    let victim = recs[recs.len() - 3];
    flip(&seg, victim.position + 9);
    let len_before = fs::metadata(&seg).unwrap().len();
    let lost = RECORDS - 3;

    let (code, text) = check(dir.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("damaged at byte {}", victim.position)),
        "{text}"
    );

    let s = Server::start(dir.path(), &[]);
    assert_eq!(fs::metadata(&seg).unwrap().len(), len_before, "nothing cut");
    let (records, gaps) = read_api_all(&s);
    assert_eq!(records, all_but(&payloads, &[lost]));
    assert_eq!(gaps, [(lost, lost + 1)]);
    let said = tcp_send_all(s.tcp_acked, b"after\n");
    assert_eq!(last_ack(&said), Some((1, RECORDS)), "{said}");
    assert!(s.stop().success());

    // Under `recovery = strict` the server refuses to start, naming segment and byte.
    let err = match Server::try_start_env(dir.path(), &["--recovery", "strict"], &[]) {
        Ok(_) => panic!("strict recovery must refuse damage"),
        Err(stderr) => stderr,
    };
    let name = seg.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(name)
            && err.contains(&format!("corrupt at byte {}", victim.position))
            && err.contains("recovery = strict"),
        "{err}"
    );
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        len_before + RECORD_HEADER + 5,
        "strict touches nothing"
    );
}

#[test]
fn a_genuine_torn_tail_is_still_cut_and_not_reported_as_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let (payloads, _, recs) = fixture(&pristine);
    let last = *recs.last().unwrap();
    let end = last.position + last.frame_bytes;

    for (what, torn) in [("incomplete last frame", true), ("zeros to the end", false)] {
        let dir = tmp.path().join(what.replace(' ', "-"));
        copy_dir(&pristine, &dir);
        let seg = ringstash::wal::segment::segment_path(&dir, 0);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        if torn {
            f.set_len(last.position + 10).unwrap();
        } else {
            f.set_len(end + 8192).unwrap();
        }
        drop(f);
        let kept = if torn { RECORDS - 1 } else { RECORDS };

        let (code, text) = check(&dir);
        assert_eq!(code, 0, "{what}: {text}");
        assert!(text.contains("torn tail"), "{what}: {text}");
        let (code, lines, stderr) = cat_meta(&dir);
        assert_eq!(code, 0, "{what}: {stderr}");
        assert!(!stderr.contains("gap"), "{what}: {stderr}");
        assert_eq!(lines, all_but(&payloads[..kept as usize], &[]), "{what}");

        let s = Server::start(&dir, &[]);
        let cut_to = if torn { last.position } else { end };
        assert_eq!(fs::metadata(&seg).unwrap().len(), cut_to, "{what}: cut");
        assert_eq!(
            stats_json(s.http)["log"]["recovery_damaged_ranges"],
            0,
            "{what}"
        );
        let (records, gaps) = read_api_all(&s);
        assert_eq!(records, all_but(&payloads[..kept as usize], &[]), "{what}");
        assert!(gaps.is_empty(), "{what}");
        let said = tcp_send_all(s.tcp_acked, b"next\n");
        assert_eq!(last_ack(&said), Some((1, kept)), "{what}: {said}");
        assert!(s.stop().success());
        assert_check_clean(&dir);
    }
}

/// Default `groups_in_flight_max` × (`group_bytes_max` + two 4 KiB blocks): how far
/// from the end of the data writes in flight at a crash can reach.
const IN_FLIGHT_BYTES_MAX: u64 = 4 * ((4 << 20) + 8192);

#[test]
fn zeros_with_records_after_them_are_a_crash_hole_near_the_end_and_damage_far_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    // About 23 MB: the first records lie beyond the window from the end.
    let records = 200_000;
    let (payloads, _, recs) = fixture_of(&pristine, records, 150);
    let last = *recs.last().unwrap();
    let end = last.position + last.frame_bytes;

    for (what, victim) in [("far", 1000usize), ("near", records as usize - 5)] {
        let rec = recs[victim];
        let in_flight = end - rec.position <= IN_FLIGHT_BYTES_MAX;
        assert_eq!(
            in_flight,
            what == "near",
            "{what}: the fixture spans the window"
        );
        let dir = tmp.path().join(what);
        copy_dir(&pristine, &dir);
        let seg = ringstash::wal::segment::segment_path(&dir, 0);
        // The record's whole frame "never reached the disk".
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .write_all_at(&vec![0u8; rec.frame_bytes as usize], rec.position)
            .unwrap();
        let lost = rec.offset;

        // `cat` on the directory before any server recovers it judges as `check` does:
        // the log ends at a crash's hole; damage is skipped and marked.
        let (code, got, stderr) = cat_meta(&dir);
        if in_flight {
            assert_eq!(code, 0, "{what}: {stderr}");
            assert_eq!(got.len() as u64, lost, "{what}: ends at the hole");
            assert!(!stderr.contains("gap"), "{what}: {stderr}");
        } else {
            assert_eq!(code, 3, "{what}: {stderr}");
            assert_eq!(got.len() as u64, records - 1, "{what}");
        }

        let text = assert_check_judges(&dir, rec.position, in_flight, what);
        if in_flight {
            assert!(
                text.contains("writes in flight at a crash"),
                "{what}: {text}"
            );
        }

        let s = Server::start(&dir, &[]);
        let len = fs::metadata(&seg).unwrap().len();
        let v = http(
            s.http,
            "GET",
            &format!("/v1/logs?from={}&limit=10", lost - 3),
            &[],
            b"",
        )
        .json();
        let (mut got, mut gaps) = (Vec::new(), Vec::new());
        take_message(&v, &mut got, &mut gaps);
        let offsets: Vec<u64> = got.iter().map(|r| r.0).collect();
        let said = tcp_send_all(s.tcp_acked, b"next\n");
        if in_flight {
            // Cut with everything after it, as a torn tail: the records after it were
            // never acknowledged by a server that had them in flight.
            assert_eq!(len, rec.position, "{what}");
            assert_eq!(offsets, [lost - 3, lost - 2, lost - 1], "{what}: {v}");
            assert!(gaps.is_empty(), "{what}: {v}");
            assert_eq!(stats_json(s.http)["log"]["recovery_damaged_ranges"], 0);
            assert_eq!(last_ack(&said), Some((1, lost)), "{what}: {said}");
        } else {
            assert_eq!(len, end, "{what}: nothing cut");
            let want: Vec<u64> = (lost - 3..lost + 8).filter(|&o| o != lost).collect();
            assert_eq!(offsets, want, "{what}: {v}");
            assert_eq!(
                v["gaps"],
                serde_json::json!([{"from": lost, "to": lost + 1}])
            );
            assert_eq!(stats_json(s.http)["log"]["recovery_damaged_ranges"], 1);
            assert_eq!(last_ack(&said), Some((1, records)), "{what}: {said}");
        }
        assert_eq!(
            v["records"][0]["data"].as_str().unwrap(),
            payloads[(lost - 3) as usize]
        );
        assert!(s.stop().success());
    }
}

/// The header's in-flight window field (bytes 12..16, in KiB; docs/format.md).
fn header_window_kib(seg: &Path) -> u32 {
    let mut b = [0u8; 4];
    fs::File::open(seg)
        .unwrap()
        .read_exact_at(&mut b, 12)
        .unwrap();
    u32::from_le_bytes(b)
}

/// (case, flags the log was written with, its header made older, flags the next server
/// starts with, the hole cut).
type Case<'a> = (&'a str, &'a [&'a str], bool, &'a [&'a str], bool);

/// A hole is judged by the in-flight window of the writer that left it, which the
/// segment's header records, not by the settings of the server that starts next. The
/// same zeros, 2 MiB beyond the 2-group window from the end of the data (inside the
/// default 4-group one), in a log written:
/// - at 2 in flight, started at the default 4: damage, the acknowledged records after
///   it kept (the running window would cut them);
/// - the same with the header of a version before the field (judged by the old
///   default of 2): kept;
/// - at the default 4, started at 2: a crash's hole, cut (the running window would
///   keep unacknowledged records);
/// - under `fsync = never`, started durable: any unsynced write, cut (there, the
///   zeros are farther from the end than either window).
///
/// Each time the new server writes on in a segment of its own, recording its window.
#[test]
fn a_hole_is_judged_by_the_window_of_the_writer_that_left_it() {
    use ringstash::wal::format::{InFlightWindow, encode_segment_header};
    const WINDOW_AT_2: u64 = 2 * ((4 << 20) + 8192);
    let tmp = tempfile::tempdir().unwrap();
    let records = 200_000;
    let at_2: &[&str] = &["--groups-in-flight-max", "2"];
    let cases: [Case; 4] = [
        // (case, written with, header made older, started with, cut)
        ("recorded", at_2, false, &[], false),
        ("not-recorded", at_2, true, &[], false),
        ("wider-than-running", &[], false, at_2, true),
        ("unsynced", &["--fsync", "never"], false, &[], true),
    ];
    for (what, written_with, older, started_with, cut) in cases {
        let dir = tmp.path().join(what);
        let (payloads, seg, recs) = fixture_with(&dir, records, 150, written_with);
        let recorded = match written_with {
            [] => IN_FLIGHT_BYTES_MAX / 1024,
            ["--fsync", _] => u64::from(u32::MAX),
            _ => WINDOW_AT_2 / 1024,
        };
        assert_eq!(
            u64::from(header_window_kib(&seg)),
            recorded,
            "{what}: the writer recorded its window"
        );
        let last = *recs.last().unwrap();
        let end = last.position + last.frame_bytes;
        let rec = if what == "unsynced" {
            let far = recs[1000];
            assert!(
                end - far.position > IN_FLIGHT_BYTES_MAX,
                "beyond both windows"
            );
            far
        } else {
            let between = recs[recs
                .iter()
                .rposition(|r| end - r.position > WINDOW_AT_2 + (2 << 20))
                .unwrap()];
            assert!(
                end - between.position < IN_FLIGHT_BYTES_MAX,
                "between the windows"
            );
            between
        };
        let lost = rec.offset;
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        if older {
            // The header as versions before the field wrote it.
            f.write_all_at(&encode_segment_header(0, InFlightWindow::NotRecorded), 0)
                .unwrap();
            assert_eq!(header_window_kib(&seg), 0);
        }
        f.write_all_at(&vec![0u8; rec.frame_bytes as usize], rec.position)
            .unwrap();
        drop(f);

        assert_check_judges(&dir, rec.position, cut, what);

        let s = Server::start(&dir, started_with);
        let said = tcp_send_all(s.tcp_acked, b"next\n");
        let v = http(
            s.http,
            "GET",
            &format!("/v1/logs?from={}&limit=3", lost - 1),
            &[],
            b"",
        )
        .json();
        assert_eq!(
            v["records"][0]["data"],
            payloads[(lost - 1) as usize].as_str()
        );
        let next = if cut {
            assert_eq!(fs::metadata(&seg).unwrap().len(), rec.position, "{what}");
            assert_eq!(stats_json(s.http)["log"]["recovery_damaged_ranges"], 0);
            assert_eq!(v["records"][1]["data"], "next", "{what}: {v}");
            lost
        } else {
            assert_eq!(
                fs::metadata(&seg).unwrap().len(),
                end,
                "{what}: nothing cut"
            );
            assert_eq!(stats_json(s.http)["log"]["recovery_damaged_ranges"], 1);
            assert_eq!(v["records"][1]["offset"], lost + 1, "{what}: {v}");
            assert_eq!(
                v["records"][1]["data"],
                payloads[(lost + 1) as usize].as_str()
            );
            records
        };
        assert_eq!(last_ack(&said), Some((1, next)), "{what}: {said}");
        assert!(s.stop().success());
        // Its writes went to a segment of their own, which records its window.
        assert_eq!(list_segments(&dir).unwrap(), [0, next], "{what}");
        let running = if started_with.is_empty() {
            IN_FLIGHT_BYTES_MAX
        } else {
            WINDOW_AT_2
        };
        let newest = ringstash::wal::segment::segment_path(&dir, next);
        assert_eq!(
            u64::from(header_window_kib(&newest)) * 1024,
            running,
            "{what}"
        );
        assert_check_clean_or_damaged(&dir, !cut);
        // Started again the same way, it writes on in that segment.
        let s = Server::start(&dir, started_with);
        let said = tcp_send_all(s.tcp_acked, b"again\n");
        assert_eq!(last_ack(&said), Some((1, next + 1)), "{what}: {said}");
        assert!(s.stop().success());
        assert_eq!(list_segments(&dir).unwrap(), [0, next], "{what}");
    }
}

/// `check` on `dir`, which holds zeros at byte `position` with records after them:
/// a crash's hole (`crash`: exit 0, "zeros at byte") or damage (exit 1, "damaged at
/// byte"). Returns its output.
fn assert_check_judges(dir: &Path, position: u64, crash: bool, what: &str) -> String {
    let (code, text) = check(dir);
    let (want_code, want) = if crash { (0, "zeros") } else { (1, "damaged") };
    assert_eq!(code, want_code, "{what}: {text}");
    assert!(
        text.contains(&format!("{want} at byte {position}")),
        "{what}: {text}"
    );
    text
}

/// `check` on `dir`: clean, or (`damaged`) exactly one damaged range and nothing else.
fn assert_check_clean_or_damaged(dir: &Path, damaged: bool) {
    if !damaged {
        assert_check_clean(dir);
        return;
    }
    let (code, text) = check(dir);
    assert_eq!(code, 1, "{text}");
    assert_eq!(text.matches("damaged at byte").count(), 1, "{text}");
}

/// Runs `ringstash <cmd>` on `dir` with the smallest resync window the setting allows
/// (4 KiB) and `more`.
fn window_args(cmd: &str, dir: &Path, more: &[&str]) -> std::process::Output {
    let mut args = vec![cmd, "--damage-resync-window-bytes", "4096"];
    args.extend_from_slice(more);
    args.extend_from_slice(&["--data-dir", dir.to_str().unwrap()]);
    run(&args)
}

/// The two bounds of damage handling are settings: `damage_resync_window_bytes`
/// (`serve`, and a flag of `cat` and `check`) at its smallest against a damaged range
/// several windows long, and `cat`'s `--damage-settle-ms`, each refused out of range.
#[test]
fn the_damage_bounds_are_settings_checked_at_start_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let (payloads, seg, recs) = fixture(dir.path());
    // Records 500..700 overwritten with garbage: more than two of the smallest resync
    // windows between the first bad byte and the next valid record.
    let (from, to) = (500u64, 700u64);
    let (bad, good) = (recs[from as usize].position, recs[to as usize].position);
    assert!(good - bad > 2 * 4096, "{} bytes", good - bad);
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .write_all_at(&vec![0x5a; (good - bad) as usize], bad)
        .unwrap();
    let lost: Vec<u64> = (from..to).collect();
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();

    // Out of range: refused before anything is read, naming the setting.
    for (cmd, flag, value) in [
        ("check", "--damage-resync-window-bytes", "4095"),
        ("cat", "--damage-resync-window-bytes", "67108865"),
        ("cat", "--damage-settle-ms", "0"),
        ("cat", "--damage-settle-ms", "60001"),
    ] {
        let out = run(&[cmd, flag, value, "--data-dir", dir.path().to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd} {flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{cmd} {flag} {value}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{cmd} {flag} {value}");
    }
    let err = match Server::try_start_env(dir.path(), &["--damage-resync-window-bytes", "100"], &[])
    {
        Ok(_) => panic!("a window below 4096 must be refused"),
        Err(stderr) => stderr,
    };
    assert!(
        err.contains("damage_resync_window_bytes = 100 is outside 4096..=67108864"),
        "{err}"
    );
    let err = match Server::try_start_env(
        dir.path(),
        &[],
        &[("RINGSTASH_DAMAGE_RESYNC_WINDOW_BYTES", "67108865")],
    ) {
        Ok(_) => panic!("a window above 64 MiB must be refused"),
        Err(stderr) => stderr,
    };
    assert!(
        err.contains("damage_resync_window_bytes = 67108865"),
        "{err}"
    );

    // The smallest window finds the records after the damage, window by window.
    let out = window_args("check", dir.path(), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("damaged at byte {bad}"))
            && text.contains(&format!("offsets {from}..{to} lost")),
        "{text}"
    );
    let out = window_args("cat", dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let want: Vec<&str> = all_but(&payloads, &lost)
        .iter()
        .map(|(o, _)| payloads[*o as usize].as_str())
        .collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), want);
    assert!(
        stderr.contains(&format!("gap: offsets {from}..{to} lost")),
        "{stderr}"
    );
    assert!(!stderr.contains("settle:"), "no server, no wait: {stderr}");

    // The server with the smallest window: recovery finds the range, readers skip it.
    let s = Server::start(dir.path(), &["--damage-resync-window-bytes", "4096"]);
    assert_eq!(stats_json(s.http)["log"]["recovery_damaged_ranges"], 1);
    let (records, gaps) = read_api_all(&s);
    assert_eq!(records, all_but(&payloads, &lost));
    assert_eq!(gaps, [(from, to)]);
    let (ws_records, ws_gaps) = subscribe_all(&s, payloads.len() - lost.len());
    assert_eq!((ws_records, ws_gaps), (records, gaps));

    // While the server holds the directory, `cat` waits `--damage-settle-ms` once at
    // the bad record before calling it damage, and says so.
    for settle_ms in [1u64, 1500] {
        let started = std::time::Instant::now();
        let out = window_args(
            "cat",
            dir.path(),
            &["--damage-settle-ms", &settle_ms.to_string()],
        );
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().lines().count(),
            want.len()
        );
        let said = format!(
            "settle: waited {settle_ms} ms at offset {from} ({}, byte {bad})",
            seg.display()
        );
        assert_eq!(stderr.matches("settle:").count(), 1, "{stderr}");
        assert!(stderr.contains(&said) && stderr.contains(&name), "{stderr}");
        assert!(
            took >= std::time::Duration::from_millis(settle_ms),
            "{settle_ms} ms: took {took:?}"
        );
        // The wait itself is the one stderr names (the same setting sleeps and is
        // printed); this only rules out a wait of another order, leaving a slow
        // machine its start-up and read time.
        if settle_ms == 1 {
            assert!(took < std::time::Duration::from_secs(10), "{took:?}");
        }
    }
    assert!(s.stop().success());
}
