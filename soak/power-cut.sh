#!/usr/bin/env bash
# The power-cut soak (issue 13): the kill loop on a FUSE filesystem that drops what
# was not made durable. After every SIGKILL of `ringstash serve` the mount is cut:
# writes since a file's last fsync/fdatasync are rolled back, entries created, renamed
# or removed since their directory's last fsync are reverted; then every acked record
# is checked exactly. See docs/reliability.md, "Power cut".
#
# Builds the release binaries, then runs `powercut` (powercut/src/main.rs), which takes
# the flags of `loadtest kill-loop`. Needs /dev/fuse and root (or fusermount3, Debian
# package fuse3). WORKDIR holds the ledgers, backing/ (the real bytes), trash/ and mnt/
# (the mount, where the data directories are).
#
# Settings (environment): as soak/kill-loop.sh, with ITERATIONS the number of cuts:
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
soak_loop power-cut powercut powercut
