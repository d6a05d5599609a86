//! `write_mode`: direct group writes (`O_DIRECT`, whole blocks, the partial last block
//! written again with the next group) against buffered ones, the fallback where the
//! filesystem refuses direct I/O, pre-writing left off on a filesystem in memory, and
//! live readers fed from the recent groups in memory
//! rather than from the files. Real files and the real binary.

mod common;

use std::{fs, time::Duration};

use ringstash::wal::{Log, WriteMode, segment::segment_path};

use common::{wal::*, ws::*, *};

/// Many small groups, each ending inside a block: under `direct` every one rewrites the
/// block the previous left partial, the active file stays whole blocks long while the
/// log is open, and a clean close cuts it to its records; under `buffered` the file is
/// always exactly its records. In both, every record reads back exact, from the live
/// reader and from the files, and `check` finds nothing wrong.
#[test]
fn small_groups_rewrite_the_partial_block_and_the_segment_is_sealed_exact() {
    for mode in [WriteMode::Direct, WriteMode::Buffered] {
        let (_tmp, dir) = temp_data_dir("data");
        let mut config = small_config(&dir);
        config.write_mode = mode;
        config.segment_bytes_max = 1 << 20;
        let log = Log::open(config).unwrap();
        assert_eq!(log.write_mode(), (mode, None), "ext4 takes O_DIRECT");
        let mut rng = Rng(11);
        let mut expected = Vec::new();
        let active = segment_path(&dir, 0);
        for i in 0..300u64 {
            // One batch per group: the writer is idle when each arrives.
            let batch = vec![payload(i, &mut rng, 90)];
            let done = append_wait(&log, i, &batch);
            assert_eq!(done.first_offset, i);
            expected.extend(batch);
            let len = fs::metadata(&active).unwrap().len();
            let end = data_end(&active);
            match mode {
                WriteMode::Direct => assert!(
                    len.is_multiple_of(4096) && len >= end && len - end < 4096,
                    "{mode:?}: file {len} bytes, records end at {end}"
                ),
                WriteMode::Buffered => assert_eq!(len, end, "{mode:?}"),
            }
        }
        assert_records(&drain(log.reader(0).unwrap()), &expected, 0, "live");
        drop(log);
        assert_eq!(
            fs::metadata(&active).unwrap().len(),
            data_end(&active),
            "{mode:?}: a clean close leaves the segment exactly as long as its records"
        );
        let on_disk = drain(ringstash::wal::Reader::open_dir(&dir, 0).unwrap());
        assert_records(&on_disk, &expected, 0, "files");
        assert_check_clean(&dir);
    }
}

/// ramfs has no direct I/O: `write_mode = "direct"` falls back to buffered writes and
/// says so at start and in `/stats`, and ingest works as ever.
#[test]
fn a_filesystem_without_direct_io_falls_back_to_buffered_and_says_so() {
    let Some(fs) = Tmpfs::mount_ramfs() else {
        return;
    };
    let dir = fs.path().join("data");
    // The flag wins over RINGSTASH_WRITE_MODE, which `.ci/run` sets for its second pass.
    let server = Server::start(&dir, &["--write-mode", "direct"]);
    let err = server.stderr_text();
    assert_contains(&err, "write_mode=buffered");
    assert_contains(
        &err,
        "write_mode: direct was asked for, but the filesystem of",
    );
    assert_contains(&err, "refuses O_DIRECT");
    assert_eq!(stats(&server)["log"]["write_mode"], "buffered");
    assert_eq!(metric(server.http, "ringstash_write_direct"), 0);
    let lines: Vec<String> = (0..1000).map(|i| format!("ramfs line {i}")).collect();
    assert_eq!(ingest_lines(&server, &lines), (1000, 999));
    server.stop();
    let out = run(&["cat", "--data-dir", dir.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1000);
    assert_contains(&text, "ramfs line 999");
    // And where direct I/O works, the banner says direct.
    let (_tmp, ext4) = Server::start_in_tempdir(&["--write-mode", "direct"]);
    assert_contains(&ext4.stderr_text(), "write_mode=direct");
    assert_eq!(metric(ext4.http, "ringstash_write_direct"), 1);
}

/// `segment_prewrite = "auto"` (the default) pre-writes no spare where the data
/// directory is in memory (a tmpfs): the banner says why, `/stats` and `/metrics` say
/// off, no `spare-*` file appears through several rotations, and every record is
/// stored. `true` pre-writes there anyway; on the disk `auto` pre-writes.
#[test]
fn auto_prewrite_is_off_in_memory_and_said() {
    let Some(fs) = Tmpfs::mount("64m") else {
        return;
    };
    let dir = fs.path().join("auto");
    let server = Server::start(&dir, &SMALL_SEGMENTS);
    assert_contains(&server.stderr_text(), "segment_prewrite: off, because ");
    assert_contains(&server.stderr_text(), "is on tmpfs, in memory");
    assert_eq!(stats(&server)["log"]["segment_prewrite"], 0);
    assert_eq!(metric(server.http, "ringstash_segment_prewrite"), 0);
    let lines: Vec<String> = (0..3000)
        .map(|i| format!("tmpfs line {i:05} {}", "m".repeat(80)))
        .collect();
    assert_eq!(ingest_lines(&server, &lines), (3000, 2999));
    let log = &stats(&server)["log"];
    assert!(log["segments_rotated"].as_u64().unwrap() >= 3, "{log}");
    assert_eq!(log["spares_prepared"], 0, "{log}");
    let spare_files = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("spare-"))
        .count();
    assert_eq!(spare_files, 0);
    server.stop();
    let out = run(&["cat", "--data-dir", dir.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3000);
    assert_contains(&text, "tmpfs line 02999 ");

    // Forced on, on the same tmpfs: spares are built, and nothing is said.
    let forced = fs.path().join("forced");
    let server = Server::start(
        &forced,
        &small_segments_and(&["--segment-prewrite", "true"]),
    );
    assert!(!server.stderr_text().contains("segment_prewrite: off"));
    assert_eq!(metric(server.http, "ringstash_segment_prewrite"), 1);
    assert_eq!(ingest_lines(&server, &lines), (3000, 2999));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stats(&server)["log"]["spares_prepared"].as_u64() == Some(0) {
        assert!(std::time::Instant::now() < deadline, "no spare built");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();

    // On the disk (the build's own temp dir, not /tmp, which may be a tmpfs), `auto`
    // pre-writes.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let disk = Server::start(&tmp.path().join("data"), &[]);
    assert!(!disk.stderr_text().contains("segment_prewrite: off"));
    assert_eq!(stats(&disk)["log"]["segment_prewrite"], 1);
}

/// A live subscriber is fed from the recent groups in memory: what was just written is
/// never read back from the files. After a restart nothing is in memory, and a
/// subscriber catching up from offset 0 reads the files.
#[test]
fn live_subscribers_are_fed_from_memory_and_catch_up_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let first: Vec<String> = (0..2000).map(|i| format!("before {i}")).collect();
    assert_eq!(ingest_lines(&server, &first), (2000, 1999));
    let mut live = subscribe(ws_addr(&server), "");
    let second: Vec<String> = (0..5000).map(|i| format!("live {i}")).collect();
    // The subscription is registered once the fan-out has answered the handshake; a
    // record committed after that is delivered live.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(ingest_lines(&server, &second), (5000, 6999));
    let (got, _) = read_records(&mut live, 5000, Duration::from_secs(20));
    assert_exact(&got, 2000, &second);
    assert!(
        metric(
            server.http,
            "ringstash_reader_bytes_total{source=\"memory\"}"
        ) > 0
    );
    assert_eq!(
        metric(server.http, "ringstash_reader_bytes_total{source=\"file\"}"),
        0,
        "a live subscriber read back from the files what was just written"
    );
    drop(live);
    server.stop();

    let server = Server::start(dir.path(), &[]);
    let mut catch_up = subscribe(ws_addr(&server), "from=0");
    let (got, _) = read_records(&mut catch_up, 7000, Duration::from_secs(20));
    assert_exact(&got[..2000], 0, &first);
    assert_exact(&got[2000..], 2000, &second);
    assert!(
        metric(server.http, "ringstash_reader_bytes_total{source=\"file\"}") > 0,
        "records from before the restart come from the files"
    );
}

/// The writer's group buffers come back from the recent groups for reuse: once the
/// window has filled, steady ingest of groups of varying sizes maps next to no new
/// one, and every record still reads back exact. (The bursts of evictions that made
/// the writer unmap and map again are `recent`'s unit tests: one group at a time does
/// not make them.)
#[test]
fn group_buffers_are_reused_once_the_recent_window_has_filled() {
    let (_tmp, dir) = temp_data_dir("data");
    let mut config = default_config(&dir);
    config.recent_bytes_max = 2 << 20;
    config.segment_bytes_max = 256 << 20;
    let log = Log::open(config).unwrap();
    let mut rng = Rng(5);
    let mut expected = Vec::new();
    let mut next = 0u64;
    let mut mapped_after_round = Vec::new();
    for _round in 0..10 {
        for _ in 0..40 {
            // One batch per group (the writer is idle when each arrives), of 70 to
            // 500 records of 1,000 bytes: groups of about 70 to 500 KiB.
            let records = 70 + rng.below(431);
            let batch: Vec<Vec<u8>> = (0..records)
                .map(|k| {
                    let mut p = payload(next + k, &mut rng, 0);
                    p.resize(1000, b'x');
                    p
                })
                .collect();
            assert_eq!(append_wait(&log, next, &batch).first_offset, next);
            next += records;
            expected.extend(batch);
        }
        mapped_after_round.push(log.view().group_buffers_mapped());
    }
    // The first rounds fill the window and the buffers kept beside it.
    let steady = mapped_after_round[9] - mapped_after_round[4];
    assert!(
        steady <= 2,
        "{steady} group buffers mapped in the last 200 groups; after each round of 40: {mapped_after_round:?}"
    );
    assert_records(&drain(log.reader(0).unwrap()), &expected, 0, "live");
}
