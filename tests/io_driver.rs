//! The I/O driver where io_uring is blocked, as in a container under its runtime's
//! default seccomp profile: `io_driver = "auto"` runs the epoll driver, says so and
//! why in one start-up line, and keeps every promise (acked = durable) on the same
//! listeners; `io_driver = "uring"` refuses to start, naming the cause. The rest of
//! the suite runs once per driver (`.ci/run` sets `RINGSTASH_IO_DRIVER`).

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod common;

use common::{
    seccomp::{block_io_uring, block_io_uring_with},
    wal::temp_data_dir,
    *,
};

/// The start-up line `auto` prints where seccomp blocked io_uring_setup.
const FALLBACK_LINE: &str = "io_driver: epoll, because io_uring is unavailable: io_uring_setup was blocked by a seccomp profile";

#[test]
fn auto_runs_the_epoll_driver_where_seccomp_blocks_io_uring_and_keeps_every_promise() {
    let (_tmp, dir) = temp_data_dir("d");
    // `auto` whatever the suite's pass sets (the child's env wins over the inherited).
    let s = Server::try_start_with(
        &dir,
        &[],
        &[("RINGSTASH_IO_DRIVER", "auto")],
        block_io_uring,
    )
    .unwrap_or_else(|e| panic!("must start without io_uring; stderr:\n{e}"));
    let said = s.stderr_text();
    assert_contains(&said, FALLBACK_LINE);
    assert_contains(&said, "io_driver=epoll");
    assert_eq!(
        said.lines().filter(|l| l.starts_with("io_driver:")).count(),
        1,
        "one line says which driver runs and why: {said}"
    );

    // Acked TCP: the ack comes once the records are durable.
    assert_eq!(acked_count(s.tcp_acked, "a1\na2\na3\n"), Some(3));
    // HTTP ingest.
    let r = http(
        s.http,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/x-ndjson")],
        b"{\"service\":\"api\",\"level\":\"info\",\"message\":\"h1\"}\n",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // One-way TCP, delivered by FIN.
    assert_eq!(tcp_send_all(s.tcp, b"o1\no2\n"), "");
    // The one-way records are in once the read API's end has reached them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while http(s.http, "GET", "/v1/logs?from=0&limit=100", &[], b"").json()["next"] != 6 {
        assert!(Instant::now() < deadline, "6 records never committed");
        std::thread::sleep(Duration::from_millis(50));
    }

    let stats = stats_json(s.http);
    assert_eq!(stats["log"]["io_driver"], "epoll", "{stats}");
    assert_eq!(metric(s.http, "ringstash_io_uring"), 0);

    assert!(s.stop().success(), "a clean stop under the epoll driver");
    let payloads = stored_payloads(&dir);
    assert_eq!(&payloads[..3], ["a1", "a2", "a3"]);
    assert!(payloads[3].contains("\"message\":\"h1\""), "{payloads:?}");
    assert_eq!(&payloads[4..], ["o1", "o2"]);
    assert_check_clean(&dir);
}

#[test]
fn uring_forced_where_seccomp_blocks_it_refuses_to_start_naming_the_cause() {
    let (_tmp, dir) = temp_data_dir("d");
    let err = match Server::try_start_with(&dir, &["--io-driver", "uring"], &[], block_io_uring) {
        Ok(_) => panic!("io_driver = uring must not start without io_uring"),
        Err(stderr) => stderr,
    };
    assert_contains(&err, "io_uring is unavailable");
    assert_contains(&err, "seccomp");
    assert_contains(&err, "io_uring_setup");
    assert!(!err.contains("listening"), "no listener may open: {err}");

    // The same directory serves with io_uring once the filter is gone: the refused
    // start left nothing in the way.
    let s = Server::start(&dir, &["--io-driver", "uring"]);
    assert_contains(&s.stderr_text(), "io_driver: uring (io_driver = \"uring\")");
    assert_eq!(acked_count(s.tcp_acked, "after\n"), Some(1));
    assert_eq!(stats_json(s.http)["log"]["io_driver"], "uring");
    assert_eq!(metric(s.http, "ringstash_io_uring"), 1);
    assert!(s.stop().success());
    assert_eq!(stored_payloads(&dir), ["after"]);
}

/// Podman's default seccomp profile answers ENOSYS, which alone would read as a kernel
/// without io_uring: the cause named is still the filter.
#[test]
fn a_seccomp_profile_answering_enosys_is_named_as_seccomp_not_the_kernel() {
    let (_tmp, dir) = temp_data_dir("d");
    let s = Server::try_start_with(&dir, &[], &[("RINGSTASH_IO_DRIVER", "auto")], |cmd| {
        block_io_uring_with(cmd, libc::ENOSYS)
    })
    .unwrap_or_else(|e| panic!("must start without io_uring; stderr:\n{e}"));
    let said = s.stderr_text();
    assert_contains(&said, FALLBACK_LINE);
    assert_contains(&said, "it answered ENOSYS, but this kernel has io_uring");
    assert!(!said.contains("does not implement"), "{said}");
    assert_eq!(acked_count(s.tcp_acked, "x\n"), Some(1));
    assert!(s.stop().success());
}

/// The sample configuration the repository ships (`deploy/ringstash.toml`) is one the
/// binary takes, `io_driver` included (on loopback ports and a temp directory here).
#[test]
fn the_shipped_sample_configuration_starts() {
    let (_tmp, dir) = temp_data_dir("d");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ringstash.toml");
    let s = Server::start(&dir, &["--config", sample]);
    assert_eq!(acked_count(s.tcp_acked, "sample\n"), Some(1));
    assert!(s.stop().success());
    assert_eq!(stored_payloads(&dir), ["sample"]);
}

#[test]
fn auto_takes_io_uring_where_it_works_and_says_so() {
    let (_tmp, dir) = temp_data_dir("d");
    let s = Server::start_env(&dir, &[], &[("RINGSTASH_IO_DRIVER", "auto")]);
    let said = s.stderr_text();
    assert_contains(
        &said,
        "io_driver: uring (io_uring set up; io_driver = \"auto\")",
    );
    assert_contains(&said, "io_driver=uring");
    assert!(s.stop().success());
}

/// `ringstash append` opens the log the same way: it falls back under `auto`, and
/// under `uring` fails naming the cause.
#[test]
fn append_follows_io_driver_where_seccomp_blocks_io_uring() {
    let (_tmp, dir) = temp_data_dir("d");
    let append = |driver: &str, input: &[u8]| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "append",
            "--print-offsets",
            "--io-driver",
            driver,
            "--data-dir",
        ])
        .arg(&dir)
        .env("RINGSTASH_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        block_io_uring(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        // A refused start may exit before it reads: a broken pipe here is its answer,
        // which the status and stderr below judge.
        let _ = child.stdin.take().unwrap().write_all(input);
        child.wait_with_output().unwrap()
    };
    let out = append("uring", b"refused\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "must fail without io_uring: {stderr}"
    );
    assert_contains(&stderr, "io_uring is unavailable");
    assert_contains(&stderr, "seccomp");

    let out = append("auto", b"one\ntwo\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "auto must append on epoll: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0 1\n");
    assert_eq!(stored_payloads(&dir), ["one", "two"]);
}
