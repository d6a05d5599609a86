//! The `ws_handshake` target ([`fuzz::targets::ws_handshake`]). Built by `cargo afl build` (which sets
//! `--cfg fuzzing`) it is AFL's persistent-mode harness; built plainly it replays the
//! files named on its command line (or stdin) through the same function, to reproduce
//! a crash without AFL. The body lives in the library so that `fuzz/tests/corpus.rs`
//! runs the very same code.

#[cfg(fuzzing)]
fn main() {
    // Before the fork server starts (inside `fuzz!`): every child inherits the logs
    // and runs only the handshake, so no input's coverage holds the setup's.
    fuzz::targets::ws_handshake_setup();
    afl::fuzz!(|data: &[u8]| {
        fuzz::targets::ws_handshake(data);
    });
}

#[cfg(not(fuzzing))]
fn main() -> std::io::Result<()> {
    fuzz::replay("ws_handshake")
}
