#!/usr/bin/env bash
# Issue 16's measurement: the io_uring and the epoll driver side by side in one
# interleaved run, a fresh server per run, on the disk under WORKDIR.
#
# Per round (even rounds in the reverse order), for each driver:
#   acked-<driver>   acked raw TCP, closed loop: records/s, server CPU µs per record, ack p99
#   http-<driver>    HTTP ingest (POST /v1/logs, NDJSON), closed loop: records/s, CPU µs/record
# then, at half of the lower of the two acked peaks of the round (both drivers at the
# same rate, each at or under half of its own peak):
#   half-<driver>    acked raw TCP, open loop: ack p50/p99
# Then medians and the epoll/uring ratios.
#
# Usage: loadtest/driver-bench.sh    Environment: ROUNDS (3), DURATION (5s), WARMUP (1s),
#   CONNS (4), BATCH (1024), SIZE (128), WORKDIR (target/driver-bench, not tmpfs),
#   SETTLE (2: seconds of pause after each run).
set -euo pipefail
# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
bench_setup 1024 3
bench_workdir driver-bench

one() { # round driver what [rate]: a fresh server under DRIVER, one loadtest run
    local r=$1 drv=$2 what=$3 rate=${4:-} d="$work/rs" more=()
    rm -rf "$d"; mkdir -p "$d"
    start_ringstash "$RS" "$d/data" "$d/serve.log" --io-driver "$drv"
    grep -q "io_driver=$drv" "$d/serve.log" || { echo "driver-bench: not on $drv:" >&2; cat "$d/serve.log" >&2; exit 1; }
    case "$what" in
    acked) more=(--mode tcp-acked --addr "$RS_TCP") ;;
    http) more=(--mode http-ingest --addr "$RS_HTTP") ;;
    half) more=(--mode tcp-acked --addr "$RS_TCP" --rate "$rate") ;;
    esac
    "$LT" run "${more[@]}" "${common[@]}" --server-pid "$RS_PID" --json-file "$res/$what-$drv-$r.json" >/dev/null
    kill "$RS_PID"; wait "$RS_PID" 2>/dev/null || true
    rm -rf "$d"
    sync; sleep "$settle"
}

rm -rf "$work"; mkdir -p "$res"
echo "driver-bench: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), $fstype, $rounds rounds, $conns conns, batch $batch, $size-byte lines"
for r in $(seq 1 "$rounds"); do
    drivers=(uring epoll)
    [ $((r % 2)) = 0 ] && drivers=(epoll uring)
    for drv in "${drivers[@]}"; do one "$r" "$drv" acked; one "$r" "$drv" http; done
    half=$(python3 -c 'import json,sys; print(int(min(json.load(open(f)) ["records_per_s"] for f in sys.argv[1:]) / 2))' \
        "$res/acked-uring-$r.json" "$res/acked-epoll-$r.json")
    for drv in "${drivers[@]}"; do one "$r" "$drv" half "$half"; done
    line="round $r:"
    for drv in uring epoll; do
        line+=" | $drv acked $(json "$res/acked-$drv-$r.json" 'int(r["records_per_s"])')/s"
        line+=" http $(json "$res/http-$drv-$r.json" 'int(r["records_per_s"])')/s"
        line+=" at $half/s ack p99 $(json "$res/half-$drv-$r.json" 'r["latency_us"]["p99"]') µs"
    done
    echo "$line"
done
python3 - "$res" "$rounds" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
def j(name, r): return json.load(open(f"{d}/{name}-{r}.json"))
def med(name, f): return statistics.median(f(j(name, r)) for r in range(1, n + 1))
rps = lambda r: r["records_per_s"]
cpu = lambda r: r["server"]["cpu_us_per_record"]
p = lambda q: lambda r: r["latency_us"][q]
rows = [
    ("acked TCP peak, records/s", "acked", rps, "{:,.0f}"),
    ("acked TCP, server CPU µs/record", "acked", cpu, "{:.3f}"),
    ("acked TCP peak, ack p99 µs", "acked", p("p99"), "{:,.0f}"),
    ("HTTP ingest peak, records/s", "http", rps, "{:,.0f}"),
    ("HTTP ingest, server CPU µs/record", "http", cpu, "{:.3f}"),
    ("at half of peak: rate, records/s", "half", lambda r: r["run"]["rate_target"], "{:,.0f}"),
    ("at half of peak: ack p50 µs", "half", p("p50"), "{:,.0f}"),
    ("at half of peak: ack p99 µs", "half", p("p99"), "{:,.0f}"),
]
print(f"\n| medians of {n} rounds | uring | epoll | epoll / uring |")
print("|---|---:|---:|---:|")
for label, what, f, fmt in rows:
    u, e = med(f"{what}-uring", f), med(f"{what}-epoll", f)
    print(f"| {label} | {fmt.format(u)} | {fmt.format(e)} | {e / u:.2f}x |")
PY
