//! The crash soak's bounded CI run (issue 13): `loadtest kill-loop` against the real
//! `ringstash serve` (debug build) for 15 SIGKILLs, then the checker's self-check: the
//! data directory it passed must fail against a ledger that claims one more acked
//! record, or an acked record at another offset, and a copy of it with one byte
//! flipped must fail too. The long run is `soak/kill-loop.sh` (docs/reliability.md).

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use support::{LOADTEST, ringstash_bin, serial};

fn kill_check(data: &Path, ledger: &Path) -> Output {
    Command::new(LOADTEST)
        .args(["kill-check", "--ringstash"])
        .arg(ringstash_bin())
        .arg("--data-dir")
        .arg(data)
        .arg("--ledger")
        .arg(ledger)
        .output()
        .expect("run loadtest kill-check")
}

fn kill_loop(work: &Path, args: &[&str]) -> Output {
    Command::new(LOADTEST)
        .args(["kill-loop", "--ringstash"])
        .arg(ringstash_bin())
        .arg("--work-dir")
        .arg(work)
        .args(args)
        .output()
        .expect("run loadtest kill-loop")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The number before `word` in `s` ("... 15 kills, 1234 acked records ...").
fn figure(s: &str, word: &str) -> u64 {
    let i = s
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} not in {s}"));
    s[..i]
        .trim_end()
        .rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {word:?} in {s}"))
}

#[test]
fn fifteen_kills_lose_nothing_acked_and_the_checker_catches_damage() {
    let _g = serial();
    let work = tempfile::tempdir().unwrap();
    let out = kill_loop(
        work.path(),
        &[
            "--iterations",
            "15",
            "--seed",
            "13",
            "--fresh-every",
            "8",
            "--kill-min-ms",
            "5",
            "--kill-max-ms",
            "300",
            "--segment-bytes-max",
            "262144",
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "kill loop failed:\n{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("kill-loop: seed 13,"), "{all}");
    let last = stdout
        .lines()
        .find(|l| l.starts_with("kill-loop: PASSED: seed 13: "))
        .unwrap_or_else(|| panic!("no PASSED line:\n{all}"));
    assert_eq!(figure(last, "kills"), 15, "{last}");
    assert_eq!(figure(last, "data dirs"), 2, "{last}");
    // Records were acked and checked, and segments rotated under the kills.
    assert!(figure(last, "acked records") >= 1000, "{last}");
    assert!(figure(last, "rotations crossed") >= 2, "{last}");
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(": ok")).count(),
        15,
        "one checked line per kill:\n{all}"
    );

    // The directory and ledger the loop left (the second data directory).
    let data = work.path().join("data-1");
    let ledger = work.path().join("ledger-1");
    let good = kill_check(&data, &ledger);
    assert!(good.status.success(), "{}", text(&good));
    let lines: Vec<String> = fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(lines.len() >= 100, "{} acked records", lines.len());

    let write_ledger = |name: &str, lines: &[String]| -> PathBuf {
        let p = work.path().join(name);
        fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    };
    let must_fail = |data: &Path, ledger: &Path, what: &str| {
        let o = kill_check(data, ledger);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("kill-check: FAILED"), "{}", text(&o));
        assert!(err.contains(what), "wanted {what:?}: {}", text(&o));
    };

    // A ledger claiming an acked record the data does not hold (as if the server had
    // lost it).
    let mut lost = lines.clone();
    let (id, lo, hi) = parse(&lines[lines.len() / 2]);
    lost.push(format!("{id}9999999 {} {}", lo + 1_000_000, hi + 1_000_000));
    let p = write_ledger("ledger-lost", &lost);
    must_fail(&data, &p, &format!("acked record {id}9999999 "));
    must_fail(&data, &p, "missing");

    // An acked record at another offset than its ack said.
    let mut moved = lines.clone();
    moved[lines.len() / 2] = format!("{id} {} {}", hi + 1, hi + 1);
    let p = write_ledger("ledger-moved", &moved);
    must_fail(
        &data,
        &p,
        &format!("its ack allows {}..={}", hi + 1, hi + 1),
    );

    // A copy of the data with one byte flipped in the middle of the first (sealed)
    // segment: `ringstash check` must refuse it.
    let copy = work.path().join("copy");
    fs::create_dir(&copy).unwrap();
    let mut segments = Vec::new();
    for e in fs::read_dir(&data).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            continue; // `default/partitions`: the streams' count files, not the log
        }
        fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        if e.path().extension().is_some_and(|x| x == "log") {
            segments.push(e.file_name());
        }
    }
    segments.sort();
    assert!(segments.len() >= 2, "no sealed segment: {segments:?}");
    let seg = copy.join(&segments[0]);
    let mut bytes = fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    fs::write(&seg, bytes).unwrap();
    must_fail(&copy, &ledger, "ringstash check exited");
}

fn parse(line: &str) -> (&str, u64, u64) {
    let mut it = line.split(' ');
    let id = it.next().unwrap();
    let lo = it.next().unwrap().parse().unwrap();
    let hi = it.next().unwrap().parse().unwrap();
    (id, lo, hi)
}

/// A loop that cannot go on says where it stopped and with which seed, and exits 3:
/// here `serve` refuses a flag, so iteration 0 fails.
#[test]
fn a_failure_names_the_iteration_and_the_seed() {
    let _g = serial();
    let work = tempfile::tempdir().unwrap();
    let out = kill_loop(
        work.path(),
        &["--iterations", "3", "--seed", "42", "--", "--no-such-flag"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kill loop FAILED at iteration 0 (seed 42, "),
        "{}",
        text(&out)
    );
    assert!(err.contains("--no-such-flag"), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("PASSED"),
        "{}",
        text(&out)
    );
}
