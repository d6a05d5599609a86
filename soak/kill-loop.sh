#!/usr/bin/env bash
# The crash soak (issue 13): SIGKILL `ringstash serve` at random moments under acked
# raw TCP and HTTP load, then check every acked record exactly. See
# docs/reliability.md, "Process crash: the kill loop".
#
# Builds the release binaries, then runs `loadtest kill-loop` (loadtest/src/killloop.rs):
# each iteration starts `ringstash serve` on a data directory kept across iterations,
# drives acked producers (raw TCP on the acked listener, HTTP POST /ingest), each
# record with a unique id, notes the offsets every ack and response gave, SIGKILLs the
# server after a random delay, and checks: every acked record at an offset its ack
# allows with its exact payload, offsets dense and increasing, no record twice, every
# stored record intact, `ringstash check` and `ringstash cat` exit 0. A fresh data
# directory is started every FRESH_EVERY iterations (no retention, so each check
# covers the whole log). The last directory is checked once more after a recovery
# and a clean stop.
#
# Settings (environment):
#   ITERATIONS      kills to make (default 100)
#   SEED            seed of every random choice (default: from the clock; printed)
#   KILL_MIN_MS     shortest delay from "listening" to SIGKILL (default 5)
#   KILL_MAX_MS     longest delay (default 400)
#   TCP_PRODUCERS   acked raw TCP connections (default 2)
#   HTTP_PRODUCERS  HTTP POST /ingest connections (default 2)
#   RATE            records/s per producer at most, 0 = as fast as acks come (default 20000)
#   BATCH_MAX       records per write or request, 1..=BATCH_MAX (default 64)
#   SEGMENT_BYTES   serve --segment-bytes-max (default 1048576: rotations and pre-written
#                   spares every few kills)
#   FRESH_EVERY     iterations per data directory (default 50)
#   WORKDIR         where data directories and ledgers go (default: a new directory
#                   under ${TMPDIR:-/tmp}; kept on failure, removed on success)
#   RINGSTASH_SERVE_ARGS  more `serve` flags, split on spaces (e.g. "--write-mode buffered")
#
# Exit status 0 when every check passed; 3 on a mismatch (the iteration, the seed and
# what differed on stderr; WORKDIR kept); other non-zero for a tool that failed.
set -euo pipefail
# shellcheck source=soak/loop-lib.sh
. "$(dirname "$0")/loop-lib.sh"
soak_loop kill-loop loadtest loadtest kill-loop
