#!/usr/bin/env bash
# Issue 18's ingest measurement: one log against a stream of 1, 4 and 16 partitions,
# in one interleaved run, a fresh server and data directory per run, on the disk under
# WORKDIR.
#
# Variants: `single` (no streams setting: the default stream's one log, as every
# earlier release), `p1`, `p4`, `p16` (`--streams p:partitions=N`, the acked TCP and
# HTTP listeners writing to it). The records are loadtest's JSON (`--format json`,
# with a "service" field from 8 services), so each record is placed by FNV-1a of its
# service: a partitioned stream reads every record's key on the reactor and splits
# batches by partition (`streams::route`); `single` and `p1` hand batches on unread.
# Per run: acked raw TCP closed loop (records/s, server CPU µs per record, ack p99) and
# HTTP POST /v1/logs NDJSON closed loop (records/s, server CPU µs per record).
#
# Usage: loadtest/partitions-bench.sh   Environment: ROUNDS (3), DURATION (5s),
#   WARMUP (1s), CONNS (4), BATCH (1024), SIZE (128), WORKDIR (target/partitions-bench,
#   not tmpfs), SETTLE (2), VARIANTS ("single p1 p4 p16").
set -euo pipefail
# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
bench_setup 1024 3
bench_workdir partitions-bench
variants=(${VARIANTS:-single p1 p4 p16})

one() { # round variant what
    local r=$1 v=$2 what=$3 d="$work/rs" serve=() more=()
    rm -rf "$d"; mkdir -p "$d"
    case "$v" in
    single) ;;
    p*) serve=(--streams "p:partitions=${v#p}" --tcp-acked-stream p --http-stream p) ;;
    esac
    start_ringstash "$RS" "$d/data" "$d/serve.log" "${serve[@]}"
    case "$what" in
    acked) more=(--mode tcp-acked --addr "$RS_TCP" --format json) ;;
    http) more=(--mode http-logs --addr "$RS_HTTP" --body ndjson) ;;
    esac
    "$LT" run "${more[@]}" "${common[@]}" --server-pid "$RS_PID" \
        --json-file "$res/$what-$v-$r.json" >/dev/null
    kill "$RS_PID"; wait "$RS_PID" 2>/dev/null || true
    rm -rf "$d"
    sync; sleep "$settle"
}

rm -rf "$work"; mkdir -p "$res"
echo "partitions-bench: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), $fstype, $rounds rounds, $conns conns, batch $batch, $size-byte JSON records"
for r in $(seq 1 "$rounds"); do
    order=("${variants[@]}")
    if [ $((r % 2)) = 0 ]; then
        order=(); for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[i]}"); done
    fi
    line="round $r:"
    for v in "${order[@]}"; do
        one "$r" "$v" acked; one "$r" "$v" http
        line+=" | $v acked $(json "$res/acked-$v-$r.json" 'int(r["records_per_s"])')/s ($(json "$res/acked-$v-$r.json" 'r["server"]["cpu_us_per_record"]') µs/rec, p99 $(json "$res/acked-$v-$r.json" 'r["latency_us"]["p99"]') µs) http $(json "$res/http-$v-$r.json" 'int(r["records_per_s"])')/s"
    done
    echo "$line"
done
python3 - "$res" "$rounds" "${variants[@]}" <<'PY'
import json, statistics, sys
d, n, vs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def med(what, v, f): return statistics.median(f(json.load(open(f"{d}/{what}-{v}-{r}.json"))) for r in range(1, n + 1))
rows = [
    ("acked TCP peak, records/s", "acked", lambda r: r["records_per_s"], "{:,.0f}"),
    ("acked TCP, server CPU µs/record", "acked", lambda r: r["server"]["cpu_us_per_record"], "{:.3f}"),
    ("acked TCP peak, ack p99 µs", "acked", lambda r: r["latency_us"]["p99"], "{:,.0f}"),
    ("HTTP /v1/logs peak, records/s", "http", lambda r: r["records_per_s"], "{:,.0f}"),
    ("HTTP /v1/logs, server CPU µs/record", "http", lambda r: r["server"]["cpu_us_per_record"], "{:.3f}"),
]
base = vs[0]
print(f"\n| medians of {n} rounds | " + " | ".join(vs) + " |")
print("|---|" + "---:|" * len(vs))
for label, what, f, fmt in rows:
    x = med(what, base, f)
    cells = [fmt.format(x)] + [f"{fmt.format(med(what, v, f))} ({med(what, v, f) / x:.2f}x)" for v in vs[1:]]
    print(f"| {label} | " + " | ".join(cells) + " |")
PY
