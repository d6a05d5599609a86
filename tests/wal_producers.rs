//! Producers of the durable segment log: concurrent producers get exactly the offsets
//! that read back, the log's bounds and one-writer exclusivity, `ringstash append`
//! acknowledging without waiting for more input, a malformed batch refused while the
//! log keeps serving, and completions waited on by several threads.

use std::{
    collections::{BTreeMap, VecDeque},
    io::{BufRead, BufReader, Write},
    process::Command,
    time::Duration,
};

use ringstash::{
    error::{AppendError, OpenError},
    wal::{
        BatchBuilder, Committed, Completion, Log, Reader, Record, TryAppendError,
        segment::list_segments,
    },
};

mod common;

use common::{wal::*, *};

// ---------------------------------------------------------------------------------------
// Concurrent producers
// ---------------------------------------------------------------------------------------

#[test]
fn concurrent_producers_get_exactly_the_offsets_that_read_back() {
    // One group at a time, two (every group its own linked sync), the default four
    // and the most (groups beyond two syncs out share covering syncs).
    for groups_in_flight_max in [1, 2, 4, 8] {
        concurrent_producers(groups_in_flight_max);
    }
}

fn concurrent_producers(groups_in_flight_max: usize) {
    const PRODUCERS: u64 = 4;
    const BATCHES: u64 = 100;
    let (_tmp, dir) = temp_data_dir("d");
    let mut config = small_config(&dir);
    config.ring_batches_max = 8; // small, so producers also meet a full ring
    config.groups_in_flight_max = groups_in_flight_max;
    let log = Log::open(config).unwrap();

    // A follower reads while the producers write: it must see every committed record in
    // order, and never one beyond the committed offset.
    let total_records = std::sync::atomic::AtomicU64::new(u64::MAX);
    let (acks, followed) = std::thread::scope(|s| {
        let follower = s.spawn(|| {
            let mut r = log.reader(0).unwrap();
            let mut seen: Vec<Record> = Vec::new();
            loop {
                let end = log.committed_end();
                while let Some(rec) = r.next().unwrap() {
                    assert!(
                        rec.offset < log.committed_end(),
                        "read past the committed offset"
                    );
                    assert_eq!(
                        rec.offset,
                        seen.len() as u64,
                        "follower skipped or repeated"
                    );
                    seen.push(rec.into());
                }
                let total = total_records.load(std::sync::atomic::Ordering::Acquire);
                if seen.len() as u64 == total {
                    return seen;
                }
                log.wait_committed_beyond(end.max(seen.len() as u64), Duration::from_millis(20));
            }
        });
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let app = log.appender();
                let max = log.config().record_bytes_max;
                s.spawn(move || {
                    let mut rng = Rng(100 + p);
                    let mut builder = BatchBuilder::new(8 << 10, max);
                    let mut seq = 0u64;
                    let mut in_flight: VecDeque<(Completion, Vec<Vec<u8>>)> = VecDeque::new();
                    let mut acked: Vec<(Committed, Vec<Vec<u8>>)> = Vec::new();
                    for _ in 0..BATCHES {
                        let n = 1 + rng.below(12);
                        let mut batch = Vec::new();
                        for _ in 0..n {
                            let mut pl = format!("p{p}-s{seq:06}-").into_bytes();
                            pl.extend(std::iter::repeat_n(b'a' + p as u8, rng.below(200) as usize));
                            builder.push(seq, &pl).unwrap();
                            batch.push(pl);
                            seq += 1;
                        }
                        let (frames, records) = builder.take();
                        in_flight.push_back((app.append(frames, records).unwrap(), batch));
                        if in_flight.len() > 4 {
                            let (c, b) = in_flight.pop_front().unwrap();
                            acked.push((c.wait().unwrap(), b));
                        }
                    }
                    for (c, b) in in_flight {
                        acked.push((c.wait().unwrap(), b));
                    }
                    acked
                })
            })
            .collect();
        let acks: Vec<Vec<(Committed, Vec<Vec<u8>>)>> =
            producers.into_iter().map(|h| h.join().unwrap()).collect();
        let total: u64 = acks
            .iter()
            .flatten()
            .map(|(c, _)| u64::from(c.records))
            .sum();
        total_records.store(total, std::sync::atomic::Ordering::Release);
        (acks, follower.join().unwrap())
    });

    let all = drain(log.reader(0).unwrap());
    assert_eq!(all.len() as u64, log.committed_end());
    assert_eq!(
        all, followed,
        "the follower saw something else than the log holds"
    );
    let mut owner: BTreeMap<u64, u64> = BTreeMap::new();
    for (p, producer_acks) in acks.iter().enumerate() {
        let mut last_offset = None;
        let mut seq = 0u64;
        for (c, batch) in producer_acks {
            assert_eq!(c.records as usize, batch.len());
            // Per-producer order: each batch lands after the previous one.
            assert!(
                last_offset.is_none_or(|l| c.first_offset > l),
                "producer {p} reordered"
            );
            last_offset = Some(c.last_offset());
            for (k, pl) in batch.iter().enumerate() {
                let o = c.first_offset + k as u64;
                let rec = &all[o as usize];
                assert_eq!(
                    &rec.payload, pl,
                    "offset {o} holds another record than producer {p} was told"
                );
                assert_eq!(rec.timestamp_ns, seq);
                seq += 1;
                assert!(
                    owner.insert(o, p as u64).is_none(),
                    "offset {o} given twice"
                );
            }
        }
    }
    // No gaps, no duplicates: the acknowledged offsets are exactly 0..end.
    assert_eq!(owner.len(), all.len());
    assert_eq!(
        owner.keys().copied().collect::<Vec<_>>(),
        (0..all.len() as u64).collect::<Vec<_>>()
    );
    assert!(
        list_segments(&dir).unwrap().len() > 1,
        "the run should rotate"
    );
    // At most two groups in flight: one fdatasync each. More: groups written while two
    // syncs were out share a covering one, so never more syncs than groups (how many
    // share depends on the disk's timing; the peak benchmark shows it).
    let st = log.stats();
    let (groups, syncs) = (
        st.groups_committed
            .load(std::sync::atomic::Ordering::Relaxed),
        st.fsyncs.load(std::sync::atomic::Ordering::Relaxed),
    );
    if groups_in_flight_max > 2 {
        assert!(syncs <= groups, "{syncs} fdatasyncs for {groups} groups");
    } else {
        assert_eq!(syncs, groups);
    }
}

// ---------------------------------------------------------------------------------------
// Bounds and exclusivity
// ---------------------------------------------------------------------------------------

#[test]
fn a_directory_is_written_by_one_log_only_and_oversized_batches_are_refused() {
    let (_tmp, dir) = temp_data_dir("d");
    let config = small_config(&dir);
    let log = Log::open(config.clone()).unwrap();
    assert!(matches!(Log::open(config.clone()), Err(OpenError::Locked(d)) if d == dir));
    let out = run(&["append", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{out:?}"
    );

    // A batch over group_bytes_max is refused whole, and the log goes on.
    let mut b = BatchBuilder::new(32 << 10, config.record_bytes_max);
    while b.bytes() <= config.group_bytes_max {
        b.push(0, &[1u8; 1000]).unwrap();
    }
    let (frames, n) = b.take();
    match log.appender().try_append(frames, n) {
        Err(ringstash::wal::TryAppendError::Refused(AppendError::BatchTooLarge {
            max, ..
        })) => {
            assert_eq!(max, config.group_bytes_max);
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    let p = vec![b"fine".to_vec()];
    assert_eq!(append_wait(&log, 0, &p).first_offset, 0);
    assert_records(&drain(log.reader(0).unwrap()), &p, 0, "after refusal");
    drop(log);
    // Released on drop.
    drop(Log::open(config).unwrap());
}

#[test]
fn a_directory_reopens_right_after_close_even_if_a_child_was_forked_meanwhile() {
    use std::os::unix::process::CommandExt;
    let (_tmp, dir) = temp_data_dir("d");
    let config = small_config(&dir);
    let log = Log::open(config.clone()).unwrap();
    // A child forked while the log is open holds copies of every descriptor, the lock
    // file's included, until it execs (the lock file is close-on-exec). Here the gap
    // between fork and exec is stretched to 300 ms; in a busy process that spawns
    // children it is short but real.
    let mut cmd = Command::new("true");
    // SAFETY: nanosleep is async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            let t = libc::timespec {
                tv_sec: 0,
                tv_nsec: 300_000_000,
            };
            libc::nanosleep(&t, std::ptr::null_mut());
            Ok(())
        })
    };
    let child = std::thread::spawn(move || cmd.status().unwrap());
    std::thread::sleep(Duration::from_millis(50)); // let the fork happen
    drop(log);
    // The lock is released by this process; the child's copy goes away at its exec.
    let log = Log::open(config).expect("reopen after close must not report Locked");
    assert!(child.join().unwrap().success());
    drop(log);
}

// ---------------------------------------------------------------------------------------
// `ringstash append` acknowledges without waiting for more input
// ---------------------------------------------------------------------------------------

#[test]
fn append_acknowledges_a_line_before_the_next_one_arrives() {
    let (_tmp, dir) = temp_data_dir("d");
    let mut child = spawn_append_printing_offsets(&dir, &[], &[]);
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // A producer that writes a line and waits for its ack before writing the next one
    // (a slow source, or a person at a terminal) must get each ack while it waits. The
    // timeout is only there so that a hang fails instead of blocking the suite.
    let mut acked = Vec::new();
    for (i, line) in ["first\n", "second\n", "third\n"].iter().enumerate() {
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(ack) => assert_eq!(ack, format!("{i} {i}")),
            Err(e) => {
                let _ = child.kill();
                panic!("no ack for line {i} while the producer waits for it ({e})");
            }
        }
        acked.push(line.trim_end().as_bytes().to_vec());
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    // Timestamps are the receive time here, so compare offsets and payloads only.
    let got = drain(Reader::open_dir(&dir, 0).unwrap());
    assert_eq!(
        got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        acked
    );
}

// ---------------------------------------------------------------------------------------
// A writer that cannot go on stops loudly
// ---------------------------------------------------------------------------------------

#[test]
fn a_malformed_batch_is_refused_by_the_producer_and_the_log_keeps_serving() {
    let (_tmp, dir) = temp_data_dir("d");
    let log = Log::open(small_config(&dir)).unwrap();
    let good = vec![b"good".to_vec()];
    assert_eq!(append_wait(&log, 0, &good).first_offset, 0);

    // A batch whose record count disagrees with its frames, and one with a frame that
    // runs past the buffer: a producer's bug. Refused on the producer's side, before the
    // writer sees it; the log keeps serving everyone else.
    let mut b = BatchBuilder::new(1024, 64);
    b.push(ts(1), b"one").unwrap();
    b.push(ts(2), b"two").unwrap();
    let (frames, _) = b.take();
    let mut cut = frames.clone();
    cut.truncate(frames.len() - 1);
    for (bad, records, want) in [
        (frames, 3, "2 frames, 3 declared"),
        (cut, 2, "past the end"),
    ] {
        match log.appender().try_append(bad, records) {
            Err(TryAppendError::Refused(AppendError::MalformedBatch(why))) => {
                assert!(why.contains(want), "{why}")
            }
            other => panic!("a malformed batch was not refused: {other:?}"),
        }
    }
    assert_eq!(
        append_wait(&log, 1, &good).first_offset,
        1,
        "the log still serves"
    );
    assert!(log.failure().is_none());
    let outcome = "malformed batches refused";
    let good = vec![good[0].clone(), good[0].clone()];
    drop(log);
    // The good record is still there, the bad ones are not, and the directory reopens.
    let log = Log::open(small_config(&dir)).unwrap();
    assert_records(&drain(log.reader(0).unwrap()), &good, 0, outcome);
}

// ---------------------------------------------------------------------------------------
// Completions
// ---------------------------------------------------------------------------------------

#[test]
fn several_threads_waiting_on_one_completion_all_learn_the_outcome() {
    let (_tmp, dir) = temp_data_dir("d");
    let log = Log::open(small_config(&dir)).unwrap();
    // Queue a lot of work ahead, so that the waiters below are all parked before the
    // batch they wait on becomes durable.
    let mut ahead = Vec::new();
    for i in 0..100u64 {
        let batch: Vec<Vec<u8>> = (0..40).map(|k| vec![b'a' + (k % 26) as u8; 300]).collect();
        ahead.push(append(&log, i, &batch).unwrap());
    }
    let c = std::sync::Arc::new(append(&log, 0, &[b"watched".to_vec()]).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..4 {
        let (c, tx) = (c.clone(), tx.clone());
        std::thread::spawn(move || tx.send(c.wait()));
    }
    for _ in 0..4 {
        // Only so that a hang fails the test instead of blocking the suite.
        let r = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a thread waiting on the completion was never woken");
        assert_eq!(r.unwrap().first_offset, 100 * 40);
    }
    for a in ahead {
        a.wait().unwrap();
    }
}
