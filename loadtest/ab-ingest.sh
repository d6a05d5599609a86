#!/usr/bin/env bash
# Interleaved A/B of two ringstash binaries (OLD=, NEW=; default /tmp/ringstash-old and -new), fresh server each round:
# tcp-acked peak (records/s, ack p99 µs), http-ingest peak, and ws-e2e (acked producer with one live subscriber: records/s, end-to-end p99 µs). ROUNDS (3).
set -u
cd "$(dirname "$0")/.."
. loadtest/serve-lib.sh
LT=./target/release/loadtest
declare -A BIN=([old]="${OLD:-/tmp/ringstash-old}" [new]="${NEW:-/tmp/ringstash-new}")
for round in $(seq 1 "${ROUNDS:-3}"); do
  for which in old new; do
    mkdir -p target; d=$(mktemp -d "${WORKDIR:-$PWD/target}/ab.XXXX")
    start_ringstash ${BIN[$which]} "$d/data" "$d/log" || exit 1
    t=$("$LT" run --mode tcp-acked --addr "$RS_TCP" -c 4 -b 1024 -d 5s --warmup 1s --json 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["records_per_s"]), r["latency_us"]["p99"])' 2>/dev/null)
    h=$("$LT" run --mode http-ingest --addr "$RS_HTTP" -c 4 -b 1024 -d 5s --warmup 1s --json 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["records_per_s"]))' 2>/dev/null)
    e=$("$LT" run --mode ws-e2e --addr "$RS_TCP" --ws-addr "$RS_WS" --subscribers 1 --allow-lag -c 4 -b 1024 -d 5s --warmup 1s --json 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["records_per_s"]), r["latency_us"]["p99"])' 2>/dev/null)
    echo "round $round $which tcp-acked $t http-ingest $h ws-e2e $e"
    kill $RS_PID; wait $RS_PID 2>/dev/null; rm -rf "$d"
  done
done
