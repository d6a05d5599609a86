#!/usr/bin/env bash
# Two builds of the server side by side in one interleaved run, a fresh server per run,
# on the disk under WORKDIR: what a change costs the data path end to end (issue 17:
# the time index on the writer, the aggregates and the commit clock beside it).
#
# The runs and the table are ab-lib.sh's (`ab_bench`); variant `base` runs BASE_BIN
# (a ringstash binary built from an earlier commit, for example
# `git worktree add /tmp/base REV && cargo build --release -p ringstash` there),
# variant `head` this checkout's release build. Both are checked by their start-up line
# (`listening ...`). The records are JSON (service, level, message, labels), so
# whatever parses them (the aggregates) does its real work.
#
# Usage: BASE_BIN=/tmp/base/target/release/ringstash loadtest/build-bench.sh
#   Environment: ROUNDS (3), DURATION (5s), WARMUP (1s), CONNS (4), BATCH (1024),
#   SIZE (128), FORMAT (json), WORKDIR (target/build-bench, not tmpfs), SETTLE (2).
set -euo pipefail
# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
# shellcheck source=loadtest/ab-lib.sh
. "$(dirname "$0")/ab-lib.sh"
: "${BASE_BIN:?set BASE_BIN to the ringstash binary to compare against}"
[ -x "$BASE_BIN" ] || { echo "build-bench: $BASE_BIN is not an executable" >&2; exit 2; }
bench_setup 1024 3
bench_workdir build-bench
head_bin=$RS

ab_serve() {
    case "$1" in base) RS=$BASE_BIN ;; head) RS=$head_bin ;; esac
    AB_SERVE=()
    AB_CLIENT=(--format "${FORMAT:-json}")
}
ab_started() { grep -q "^listening " "$2"; }

rm -rf "$work"; mkdir -p "$res"
ab_bench build-bench base head
