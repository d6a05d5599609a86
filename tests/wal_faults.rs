//! Process- and system-level faults of the durable segment log, on the real binary or
//! real files: SIGKILL while appending loses no acknowledged record, a full disk (a
//! size-limited tmpfs) refuses batches cleanly and recovers. (io_uring blocked by
//! seccomp: `tests/io_driver.rs`.)

use std::{
    collections::VecDeque,
    fs,
    io::{BufRead, BufReader, Write},
    path::Path,
    time::Duration,
};

use ringstash::{
    error::AppendError,
    wal::{
        Committed, Completion, Log, Reader, Record,
        segment::{list_segments, segment_path},
    },
};

mod common;

use common::{wal::*, *};

// ---------------------------------------------------------------------------------------
// SIGKILL while appending
// ---------------------------------------------------------------------------------------

/// Runs `ringstash append --print-offsets` on `dir`, feeding it lines `{tag}-{i}` as fast
/// as it takes them, and SIGKILLs it `delay` after it has acknowledged `kill_after`
/// batches. Returns the acknowledged (first, last) offsets it printed.
fn append_and_kill(dir: &Path, tag: &str, kill_after: usize, delay: Duration) -> Vec<(u64, u64)> {
    use std::os::unix::process::ExitStatusExt;
    let flags = ["--batch-records", "16", "--segment-bytes-max", "65536"];
    let mut child = spawn_append_printing_offsets(dir, &flags, &[]);
    let stdin = child.stdin.take().unwrap();
    let tag_owned = tag.to_owned();
    let feeder = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(4096, stdin);
        // Far more than the child can take before it is killed; the pipe blocks us.
        for i in 0..50_000_000u64 {
            if writeln!(w, "{tag_owned}-{i}").is_err() {
                return;
            }
        }
        panic!("the child took every line; it was not killed mid-stream");
    });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut acks = Vec::new();
    let mut killed = false;
    let mut line = String::new();
    loop {
        if !killed && acks.len() >= kill_after {
            std::thread::sleep(delay);
            child.kill().unwrap();
            killed = true;
        }
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let Some(l) = line.strip_suffix('\n') else {
            break; // cut off mid-line by the kill: not an acknowledgement
        };
        let (a, b) = l
            .split_once(' ')
            .unwrap_or_else(|| panic!("bad ack line {l:?}"));
        acks.push((a.parse().unwrap(), b.parse().unwrap()));
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child should have died of SIGKILL mid-stream ({status}, {} acks): {stderr}",
        acks.len()
    );
    feeder.join().unwrap();
    acks
}

#[test]
fn sigkill_while_appending_loses_no_acknowledged_record() {
    let (_tmp, dir) = temp_data_dir("d");
    // Every run continues the same log, so later runs also recover earlier crashes.
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let runs = [
        (0, Duration::from_millis(15)),
        (1, Duration::ZERO),
        (8, Duration::from_millis(2)),
        (40, Duration::ZERO),
        (3, Duration::from_millis(25)),
    ];
    for (run, (kill_after, delay)) in runs.into_iter().enumerate() {
        let start = expected.len() as u64;
        let tag = format!("run{run}");
        let acks = append_and_kill(&dir, &tag, kill_after, delay);
        assert!(acks.len() >= kill_after);

        // Acks are printed in order and cover consecutive offsets from where the log
        // stood when the run began.
        let mut next = start;
        for &(first, last) in &acks {
            assert_eq!(first, next, "run {run}: acks not contiguous: {acks:?}");
            assert!(last >= first);
            next = last + 1;
        }

        let log = Log::open(default_config(&dir)).unwrap();
        let end = log.committed_end();
        assert!(
            end >= next,
            "run {run}: acked up to {next} but only {end} survived"
        );
        let all = drain(log.reader(0).unwrap());
        drop(log);
        assert_eq!(all.len() as u64, end);
        // Earlier runs' records are untouched; this run's records are its lines in
        // order, each exactly once, the acknowledged ones included.
        for (o, rec) in all.iter().enumerate() {
            assert_eq!(rec.offset, o as u64);
            if (o as u64) < start {
                assert_eq!(
                    rec.payload, expected[o],
                    "run {run}: earlier record {o} changed"
                );
            } else {
                let want = format!("{tag}-{}", o as u64 - start).into_bytes();
                assert_eq!(rec.payload, want, "run {run}: offset {o}");
            }
        }
        expected = all.into_iter().map(|r| r.payload).collect();
        assert_check_clean(&dir);
    }
    assert!(
        list_segments(&dir).unwrap().len() > 1,
        "the runs should have rotated"
    );
}

// ---------------------------------------------------------------------------------------
// Full disk
// ---------------------------------------------------------------------------------------

#[test]
fn full_disk_refuses_batches_keeps_the_log_clean_and_recovers_when_space_returns() {
    let Some(tmpfs) = Tmpfs::mount("2m") else {
        return;
    };
    let mnt = tmpfs.path().to_owned();
    // A file to delete later, to give space back.
    let filler = mnt.join("filler");
    fs::write(&filler, vec![7u8; 512 << 10]).unwrap();
    let dir = mnt.join("data");
    let log = Log::open(small_config(&dir)).unwrap();
    let mut rng = Rng(7);

    // Append with several batches in flight until the disk is full, then more: on a
    // full disk, failed writes leave partial data in the last page until they are cut
    // back, and small batches still fit in its slack and succeed. A live follower reads
    // all the while; it must see exactly the committed records, never bytes of a write
    // that failed (which a reader could have buffered before the cut).
    let mut succeeded: Vec<(Committed, Vec<Vec<u8>>)> = Vec::new();
    let mut seq = 0u64;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let followed = std::thread::scope(|s| {
        let follower = s.spawn(|| {
            let mut r = log.reader(0).unwrap();
            let mut seen: Vec<Record> = Vec::new();
            loop {
                let stopping = stop.load(std::sync::atomic::Ordering::Acquire);
                while let Some(rec) = r.next().unwrap() {
                    seen.push(rec.into());
                }
                if stopping {
                    return seen;
                }
                log.wait_committed_beyond(seen.len() as u64, Duration::from_millis(5));
            }
        });
        let mut disk_full = 0;
        let mut in_flight: VecDeque<(Completion, Vec<Vec<u8>>)> = VecDeque::new();
        let mut batches = 0;
        let mut settle = |c: Completion, batch: Vec<Vec<u8>>, disk_full: &mut u32| match c.wait() {
            Ok(done) => succeeded.push((done, batch)),
            Err(AppendError::DiskFull(why)) => {
                assert!(why.contains("No space left"), "{why}");
                *disk_full += 1;
            }
            Err(other) => panic!("expected success or DiskFull, got {other}"),
        };
        while disk_full < 300 {
            batches += 1;
            assert!(batches < 20_000, "the disk never filled up");
            let n = 1 + rng.below(if disk_full > 0 && batches % 2 == 0 {
                2
            } else {
                20
            });
            let batch: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    seq += 1;
                    payload(seq, &mut rng, 300)
                })
                .collect();
            // Timestamps are not checked here: ts(0) for all.
            in_flight.push_back((
                append(&log, 0, &batch).expect("accepted while the disk is full"),
                batch,
            ));
            if in_flight.len() >= 8 {
                let (c, b) = in_flight.pop_front().unwrap();
                settle(c, b, &mut disk_full);
            }
        }
        for (c, b) in in_flight.drain(..) {
            settle(c, b, &mut disk_full);
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        follower.join().unwrap()
    });
    assert_eq!(
        followed,
        drain(log.reader(0).unwrap()),
        "the live follower saw records that are not in the log"
    );
    assert!(
        log.failure().is_none(),
        "a full disk must not stop the writer: {:?}",
        log.failure()
    );
    assert!(
        log.stats()
            .disk_full_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );

    // Every batch that succeeded is in the log, contiguous, and nothing else is: not in
    // the live view, and not on disk either (failed writes were cut back).
    let verify = |log: &Log, succeeded: &[(Committed, Vec<Vec<u8>>)]| {
        let mut acked: Vec<&(Committed, Vec<Vec<u8>>)> = succeeded.iter().collect();
        acked.sort_by_key(|(c, _)| c.first_offset);
        let mut flat: Vec<&[u8]> = Vec::new();
        for (c, batch) in acked {
            assert_eq!(
                c.first_offset,
                flat.len() as u64,
                "gap or overlap in acked offsets"
            );
            flat.extend(batch.iter().map(|p| &p[..]));
        }
        assert_eq!(log.committed_end(), flat.len() as u64);
        let live = drain(log.reader(0).unwrap());
        let on_disk = drain(Reader::open_dir(&log.config().dir, 0).unwrap());
        for got in [&live, &on_disk] {
            assert_eq!(got.len(), flat.len());
            for (r, want) in got.iter().zip(&flat) {
                assert_eq!(&r.payload[..], *want, "offset {}", r.offset);
            }
        }
    };
    verify(&log, &succeeded);
    assert!(!succeeded.is_empty());
    assert_check_clean(&dir);

    // Space returns: appends succeed again and continue the numbering. Fill the active
    // segment until a large batch no longer fits in it.
    fs::remove_file(&filler).unwrap();
    let segment_bytes_max = log.config().segment_bytes_max;
    let big: Vec<Vec<u8>> = (0..50).map(|i| vec![b'A' + (i % 26) as u8; 280]).collect();
    let big_bytes: u64 = big.iter().map(|p| RECORD_HEADER + p.len() as u64).sum();
    loop {
        let active = segment_path(&dir, *list_segments(&dir).unwrap().last().unwrap());
        if segment_bytes_max - data_end(&active) < big_bytes {
            break;
        }
        let batch = vec![payload(seq, &mut rng, 200)];
        seq += 1;
        let done = append(&log, 0, &batch)
            .unwrap()
            .wait()
            .expect("space is back");
        succeeded.push((done, batch));
    }
    verify(&log, &succeeded);

    // Now fill the disk from outside, so that the rotation the large batch needs cannot
    // create the next segment: the batch is refused with DiskFull, no half-made segment
    // is left behind, and the writer keeps going.
    let segments = list_segments(&dir).unwrap();
    let filler = mnt.join("filler2");
    {
        let mut f = fs::File::create(&filler).unwrap();
        let chunk = vec![9u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }
    match append(&log, 0, &big).unwrap().wait() {
        Err(AppendError::DiskFull(_)) => {}
        other => panic!("a rotation on a full disk must fail with DiskFull, got {other:?}"),
    }
    assert_eq!(
        list_segments(&dir).unwrap(),
        segments,
        "half-made segment left behind"
    );
    assert!(log.failure().is_none());
    verify(&log, &succeeded);
    assert_check_clean(&dir);

    fs::remove_file(&filler).unwrap();
    let done = append(&log, 0, &big)
        .unwrap()
        .wait()
        .expect("space is back");
    assert_eq!(done.first_offset, log.committed_end() - big.len() as u64);
    succeeded.push((done, big.clone()));
    assert_eq!(
        list_segments(&dir).unwrap().len(),
        segments.len() + 1,
        "should have rotated"
    );
    assert_eq!(
        *list_segments(&dir).unwrap().last().unwrap(),
        done.first_offset
    );
    verify(&log, &succeeded);
    drop(log);
    assert_check_clean(&dir);
    let log = Log::open(small_config(&dir)).unwrap();
    assert_eq!(log.recovery_report().torn_bytes_cut, 0);
    verify(&log, &succeeded);
}
