#!/usr/bin/env bash
# Issue 16's measurement: the io_uring and the epoll driver side by side in one
# interleaved run, a fresh server per run, on the disk under WORKDIR.
#
# The runs and the table are ab-lib.sh's (`ab_bench`), with variants uring and
# epoll (`--io-driver`, checked in the server's start-up line).
#
# Usage: loadtest/driver-bench.sh    Environment: ROUNDS (3), DURATION (5s), WARMUP (1s),
#   CONNS (4), BATCH (1024), SIZE (128), WORKDIR (target/driver-bench, not tmpfs),
#   SETTLE (2: seconds of pause after each run).
set -euo pipefail
# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
# shellcheck source=loadtest/ab-lib.sh
. "$(dirname "$0")/ab-lib.sh"
bench_setup 1024 3
bench_workdir driver-bench

ab_serve() { AB_SERVE=(--io-driver "$1"); AB_CLIENT=(); }
ab_started() { grep -q "io_driver=$1" "$2"; }

rm -rf "$work"; mkdir -p "$res"
ab_bench driver-bench uring epoll
