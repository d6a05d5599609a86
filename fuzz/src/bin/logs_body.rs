//! The `logs_body` target ([`fuzz::targets::logs_body`]). Built by `cargo afl build` (which sets
//! `--cfg fuzzing`) it is AFL's persistent-mode harness; built plainly it replays the
//! files named on its command line (or stdin) through the same function, to reproduce
//! a crash without AFL. The body lives in the library so that `fuzz/tests/corpus.rs`
//! runs the very same code.

#[cfg(fuzzing)]
fn main() {
    afl::fuzz!(|data: &[u8]| {
        fuzz::targets::logs_body(data);
    });
}

#[cfg(not(fuzzing))]
fn main() -> std::io::Result<()> {
    fuzz::replay("logs_body")
}
