#!/usr/bin/env bash
# Interleaved A/B of two ringstash binaries (OLD=, NEW=; default /tmp/ringstash-old and -new), tcp-acked peak and http-ingest, fresh server each round.
set -u
cd "$(dirname "$0")/.."
. loadtest/serve-lib.sh
LT=./target/release/loadtest
declare -A BIN=([old]="${OLD:-/tmp/ringstash-old}" [new]="${NEW:-/tmp/ringstash-new}")
for round in 1 2 3; do
  for which in old new; do
    mkdir -p target; d=$(mktemp -d "${WORKDIR:-$PWD/target}/ab.XXXX")
    start_ringstash ${BIN[$which]} "$d/data" "$d/log" || exit 1
    t=$("$LT" run --mode tcp-acked --addr "$RS_TCP" -c 4 -b 1024 -d 5s --warmup 1s --json 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["records_per_s"]), r["latency_us"]["p99"])' 2>/dev/null)
    h=$("$LT" run --mode http-ingest --addr "$RS_HTTP" -c 4 -b 1024 -d 5s --warmup 1s --json 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["records_per_s"]))' 2>/dev/null)
    echo "round $round $which tcp-acked $t http-ingest $h"
    kill $RS_PID; wait $RS_PID 2>/dev/null; rm -rf "$d"
  done
done
