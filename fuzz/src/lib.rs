//! Coverage-guided fuzz targets for ringstash's parsers (issue 13).
//!
//! # Layout
//!
//! | piece | what it is |
//! |-------|------------|
//! | [`targets`] | one function per parser family, `fn(&[u8])`: the whole body of a fuzz target, invariants included |
//! | `src/bin/<target>.rs` | the AFL binaries: `afl::fuzz!` around the library function, nothing else |
//! | `corpus/<target>/` | seeds: small real inputs of each protocol |
//! | `dict/<target>.dict` | AFL dictionaries: the protocols' tokens |
//! | `regressions/<target>/` | inputs that once crashed or hung a target, kept after the fix |
//! | `tests/corpus.rs` | replays every corpus and regression file through [`targets`] in the normal test suite, without AFL |
//!
//! `soak/fuzz.sh TARGET SECONDS` runs one target under `cargo afl fuzz`; the
//! "Fuzzing" section of `docs/reliability.md` says how, and what the runs found.
//!
//! A target does more than survive its input: it asserts what the parser promises
//! (nothing consumed past the input, no record over its bound, our own answers parse
//! back, a frame's proper prefix is incomplete rather than an error...), so that AFL
//! reports a broken promise as a crash.

pub mod targets;

/// The names of the targets, as used for `corpus/`, `dict/`, `regressions/` and the
/// binaries; [`run`] maps each to its function.
pub const TARGETS: &[&str] = &[
    "lines",
    "syslog_frame",
    "relp",
    "http_head",
    "logs_body",
    "query",
    "record_decode",
    "ws_handshake",
];

/// Runs target `name` on `data`.
///
/// # Panics
/// If `name` is not one of [`TARGETS`], or if the target's invariants fail on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "lines" => targets::lines(data),
        "syslog_frame" => targets::syslog_frame(data),
        "relp" => targets::relp(data),
        "http_head" => targets::http_head(data),
        "logs_body" => targets::logs_body(data),
        "query" => targets::query(data),
        "record_decode" => targets::record_decode(data),
        "ws_handshake" => targets::ws_handshake(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// Splits `N` parameter bytes off the front of a fuzz input (zeros when it is shorter),
/// so that one input chooses both the parser's bounds and the bytes it parses: AFL then
/// explores the edges of small bounds instead of never reaching the default ones.
pub(crate) fn params<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    match data.split_first_chunk::<N>() {
        Some((p, rest)) => (*p, rest),
        None => ([0; N], &[]),
    }
}

/// Runs target `name` once on each file named on the command line, or on stdin when
/// none is: how a plain (non-AFL) build of a target binary reproduces a finding.
///
/// # Errors
/// A file that cannot be read.
///
/// # Panics
/// As [`run`] does, on the input that breaks the target.
pub fn replay(name: &str) -> std::io::Result<()> {
    use std::io::Read;
    let paths: Vec<_> = std::env::args_os().skip(1).collect();
    if paths.is_empty() {
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data)?;
        run(name, &data);
    }
    for p in paths {
        eprintln!("{name}: {}", p.to_string_lossy());
        run(name, &std::fs::read(&p)?);
    }
    Ok(())
}
