//! SIGKILL during start-up: while recovery verifies the active segment, cuts a torn
//! tail, deals with pre-written spares and retention, and the listeners open. Every
//! kill lands at a random moment within a start-up's duration (seeded, printed); after
//! all of them a clean start must hold every record acknowledged before, exact and in
//! order, and `check` must pass.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

use common::{wal::Rng, *};

/// Spawns `serve` on `dir` with small segments (many files, spares and rotations);
/// the returned flag turns true once it has printed its `listening` line.
fn spawn(dir: &Path) -> (Child, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    // The harness's own command (every listener on port 0), stderr piped.
    // Pre-writing forced: `auto` leaves it off where the temp dir is a tmpfs.
    let mut cmd = serve_command(
        Path::new(BIN),
        dir,
        &small_segments_and(&["--segment-prewrite", "true"]),
    );
    let mut child = cmd.spawn().unwrap();
    let listening = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (err, flag) = (child.stderr.take().unwrap(), listening.clone());
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines() {
            let Ok(l) = l else { break };
            if l.starts_with("listening ") {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    (child, listening)
}

/// Sends `n` lines `<tag> <i>` on one acked connection and returns how many were
/// acknowledged before the server died (all of them, if it did not).
fn produce(addr: std::net::SocketAddr, tag: &str, n: usize) -> usize {
    let Ok(mut c) = TcpStream::connect(addr) else {
        return 0;
    };
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body: String = (0..n).map(|i| format!("{tag} {i:07}\n")).collect();
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(body.as_bytes());
    });
    let mut acked = 0;
    let mut line = String::new();
    let mut r = BufReader::new(&mut c);
    while acked < n {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some((count, _)) = parse_ack(&line) {
                    acked = count as usize;
                }
            }
        }
    }
    let _ = writer.join();
    acked
}

#[test]
fn sigkill_at_random_moments_of_start_up_loses_nothing_acknowledged() {
    let seed = std::env::var("STARTUP_KILLS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("startup kills: seed {seed} (replay with STARTUP_KILLS_SEED={seed})");
    let mut rng = Rng(seed);
    let (_tmp, dir) = common::wal::temp_data_dir("d");

    // A log of many segments, acked; every eighth round a SIGKILL under load (a torn
    // tail and half-prepared spares for the next start to deal with); the other
    // rounds a SIGKILL at a random moment of a start-up.
    // What was acknowledged, in the order it was: `(tag, count)`; unacknowledged
    // records of a killed round may be stored too, after its acknowledged ones.
    let mut acked: Vec<(String, usize)> = Vec::new();
    let (mut before, mut after) = (0, 0);
    let mut startup = Duration::from_millis(50);
    for k in 0..48 {
        if k % 8 == 0 {
            let t0 = Instant::now();
            let s = Server::restart_after_kill(&dir, &small_segments_and(&[]));
            // The quickest start-up seen: one stretched by a busy moment would spread
            // the kills past the start-ups and leave too few inside them.
            startup = if k == 0 {
                t0.elapsed()
            } else {
                startup.min(t0.elapsed())
            };
            let tag = format!("r{k}a");
            assert_eq!(produce(s.tcp_acked, &tag, 5_000), 5_000);
            acked.push((tag, 5_000));
            let (addr, tag) = (s.tcp_acked, format!("r{k}b"));
            let tail = {
                let tag = tag.clone();
                std::thread::spawn(move || produce(addr, &tag, 300_000))
            };
            std::thread::sleep(Duration::from_millis(5 + rng.below(40)));
            s.kill9();
            acked.push((tag, tail.join().unwrap()));
            continue;
        }
        let (mut child, listening) = spawn(&dir);
        let at = Duration::from_micros(rng.below(startup.as_micros() as u64 * 3 / 2 + 1));
        std::thread::sleep(at);
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none() || status.code() == Some(1),
            "kill {k} at {at:?}: exited {status} (1: the previous run's lock or ports still held)"
        );
        if listening.load(std::sync::atomic::Ordering::SeqCst) {
            after += 1;
        } else {
            before += 1;
        }
    }
    println!(
        "startup kills: {before} before the listening line, {after} after; start-up took {startup:?}"
    );
    assert!(
        before >= 10,
        "too few kills landed inside start-up ({before})"
    );

    let s = Server::restart_after_kill(&dir, &small_segments_and(&[]));
    assert_eq!(
        produce(s.tcp_acked, "last", 100),
        100,
        "the log takes records after the kills"
    );
    acked.push(("last".into(), 100));
    assert!(s.stop().success());
    // Every acknowledged record, exact, once, in order; records of a round that were
    // stored without their ack may sit after that round's acknowledged ones.
    let stored = stored_payloads(&dir);
    let mut at = 0;
    for (tag, n) in &acked {
        for i in 0..*n {
            let want = format!("{tag} {i:07}");
            while at < stored.len() && stored[at] != want {
                assert!(
                    !stored[at].starts_with(&format!("{tag} ")),
                    "seed {seed}: {:?} where {want:?} was expected",
                    stored[at]
                );
                at += 1;
            }
            assert!(at < stored.len(), "seed {seed}: acknowledged {want:?} lost");
            at += 1;
        }
    }
    let total: usize = acked.iter().map(|(_, n)| n).sum();
    let unique: std::collections::HashSet<&String> = stored.iter().collect();
    assert_eq!(
        unique.len(),
        stored.len(),
        "seed {seed}: a record stored twice"
    );
    println!(
        "startup kills: {total} acknowledged records checked, {} stored",
        stored.len()
    );
    assert_check_clean(&dir);
}
