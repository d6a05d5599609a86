#!/usr/bin/env bash
# Issue 14's measurement, in one interleaved run: ringstash with write_mode=direct
# against write_mode=buffered against rsyslog's async and durable-batch setups
# (shared/peers/), all fed by the same independent sender (`loadtest run --mode tcp`:
# fire and forget, CONNS connections, SIZE-byte lines), and ringstash acked
# (`loadtest run --mode tcp-acked`, closed loop) in both modes.
#
# Per round (even rounds in the reverse order):
#   oneway-direct / oneway-buffered / rsyslog-async / rsyslog-durable-batch
#       landed records/s (ringstash: its durable-records counter; rsyslog: its file),
#       server CPU µs per record, peak RSS; then, on ringstash's data, the catch-up
#       read throughput of `ringstash cat` over every segment (under direct writes the
#       page cache does not hold them; under buffered it mostly does)
#   acked-direct / acked-buffered      closed-loop peak, CPU per record, RSS
#   floor                              `loadtest floor` at half the round's direct peak
#   half-direct / half-buffered        open loop at that rate: ack p99
#   floor-after                        the floor again, right after them
# Then medians, ratios, and the ack p99 bar per round (2 x the floor's fdatasync p99 +
# 1 ms, judged where the floor's own p99 is under 2 ms: the floor before, as issue 14
# asks). The floor after is shown beside it, not judged on: this VM's disk changes
# phase within the seconds between the floor and the runs (docs/benchmarks.md), and a
# round whose floor after is slow ran while the disk was.
#
# Usage: loadtest/direct-bench.sh    Environment: ROUNDS (3), DURATION (5s), WARMUP (1s),
#   CONNS (4), BATCH (1024), SIZE (128), WORKDIR (target/direct-bench, not tmpfs),
#   PEERS_DIR (../shared/peers), SETTLE (2: seconds of pause after each run).
# Per-thread CPU split (`perf record -g`): loadtest/direct-bench.sh perf MODE.
set -euo pipefail
# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
bench_setup 1024 3
peers_dir="${PEERS_DIR:-$root/../shared/peers}"
[ -d "$peers_dir" ] || peers_dir="/work/shared/peers"
bench_workdir direct-bench

oneway() { # round mode: one-way TCP into a fresh server, then the catch-up read
    local r=$1 m=$2 d="$work/rs"
    rm -rf "$d"; mkdir -p "$d"
    RINGSTASH_WRITE_MODE=$m start_ringstash "$RS" "$d/data" "$d/serve.log"
    "$LT" run --mode tcp --format text --addr "$RS_TCP_ONEWAY" "${common[@]}" --server-pid "$RS_PID" \
        --landed-metric "$RS_HTTP/ringstash_records_committed_total" \
        --json-file "$res/oneway-$m-$r.json" >/dev/null
    kill "$RS_PID"; wait "$RS_PID" 2>/dev/null || true
    local t0 t1 n bytes
    bytes=$(du -sb "$d/data" | cut -f1)
    t0=$(date +%s.%N)
    n=$("$RS" cat --data-dir "$d/data" | wc -l)
    t1=$(date +%s.%N)
    python3 -c 'import json,sys; n,b,s=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]); json.dump({"records":n,"bytes":b,"s":s,"records_per_s":n/s,"mb_per_s":b/s/1e6},open(sys.argv[4],"w"))' \
        "$n" "$bytes" "$(echo "$t1 - $t0" | bc)" "$res/catchup-$m-$r.json"
    rm -rf "$d"
}

rsyslog() { # round conf
    local r=$1 conf=$2 d="$work/rsyslog" port pid
    rm -rf "$d"; mkdir -p "$d"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$port|g" "$peers_dir/rsyslog-$conf.conf" >"$d/rsyslog.conf"
    rsyslogd -n -f "$d/rsyslog.conf" -i "$d/rsyslog.pid" >"$d/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    "$LT" run --mode tcp --format text --addr "127.0.0.1:$port" "${common[@]}" --server-pid $pid \
        --landed-file "$d/out.log" --json-file "$res/rsyslog-$conf-$r.json" >/dev/null
    kill $pid; wait $pid 2>/dev/null || true
    rm -rf "$d"
}

acked() { # round mode [rate]: closed loop, or open loop at rate
    local r=$1 m=$2 rate=${3:-} d="$work/rs" name
    rm -rf "$d"; mkdir -p "$d"
    RINGSTASH_WRITE_MODE=$m start_ringstash "$RS" "$d/data" "$d/serve.log"
    if [ -n "$rate" ]; then name="half-$m-$r"; set -- --rate "$rate"; else name="acked-$m-$r"; set --; fi
    "$LT" run --mode tcp-acked --addr "$RS_TCP" "${common[@]}" --server-pid "$RS_PID" "$@" \
        --json-file "$res/$name.json" >/dev/null
    kill "$RS_PID"; wait "$RS_PID" 2>/dev/null || true
    rm -rf "$d"
}

if [ "${1:-}" = perf ]; then
    # One run of MODE under `perf record -g`, then the share of the server's samples
    # per thread and the top symbols of the heaviest ones.
    m=${2:-direct}; mkdir -p "$work"; d="$work/perf-$m"; rm -rf "$d"; mkdir -p "$d"
    RINGSTASH_WRITE_MODE=$m start_ringstash "$RS" "$d/data" "$d/serve.log"
    perf record -g -o "$d/perf.data" -p "$RS_PID" -- sleep "$((${duration%s} + ${warmup%s} + 1))" 2>/dev/null &
    perf_pid=$!
    "$LT" run --mode tcp --format text --addr "$RS_TCP_ONEWAY" "${common[@]}" --server-pid "$RS_PID" \
        --landed-metric "$RS_HTTP/ringstash_records_committed_total" --json-file "$d/run.json" >/dev/null
    wait $perf_pid || true
    kill "$RS_PID"; wait "$RS_PID" 2>/dev/null || true
    echo "perf $m: $(json "$d/run.json" '"%d records/s, %s us CPU/record" % (r["landed"]["records_per_s"], r["server"]["cpu_us_per_record"])')"
    perf report -i "$d/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -12
    perf report -i "$d/perf.data" --no-children --sort comm,sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -25
    rm -rf "$d/data"
    exit 0
fi

rm -rf "$work"; mkdir -p "$res"
echo "direct-bench: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), $fstype, $rounds rounds, $conns conns, batch $batch, $size-byte lines"
for r in $(seq 1 "$rounds"); do
    steps=("oneway $r direct" "oneway $r buffered" "rsyslog $r async" "rsyslog $r durable-batch" "acked $r direct" "acked $r buffered")
    if [ $((r % 2)) = 0 ]; then
        rev=(); for ((i = ${#steps[@]} - 1; i >= 0; i--)); do rev+=("${steps[i]}"); done; steps=("${rev[@]}")
    fi
    for s in "${steps[@]}"; do $s; sync; sleep "$settle"; done
    half=$(json "$res/acked-direct-$r.json" 'int(r["records_per_s"] / 2)')
    "$LT" floor --dir "$work/floor" --rate "$half" -b "$batch" -d "$duration" --warmup "$warmup" --json >"$res/floor-$r.json"
    sync; sleep "$settle"
    for m in direct buffered; do acked "$r" "$m" "$half"; sync; sleep "$settle"; done
    rm -rf "$work/floor"
    "$LT" floor --dir "$work/floor" --rate "$half" -b "$batch" -d "$duration" --warmup "$warmup" --json >"$res/floor-after-$r.json"
    rm -rf "$work/floor"; sync; sleep "$settle"
    echo "round $r: one-way direct $(json "$res/oneway-direct-$r.json" 'int(r["landed"]["records_per_s"])')" \
        "buffered $(json "$res/oneway-buffered-$r.json" 'int(r["landed"]["records_per_s"])')" \
        "rsyslog-async $(json "$res/rsyslog-async-$r.json" 'int(r["landed"]["records_per_s"])')" \
        "durable-batch $(json "$res/rsyslog-durable-batch-$r.json" 'int(r["landed"]["records_per_s"])')" \
        "| acked direct $(json "$res/acked-direct-$r.json" 'int(r["records_per_s"])')" \
        "buffered $(json "$res/acked-buffered-$r.json" 'int(r["records_per_s"])')" \
        "| at $half/s ack p99 direct $(json "$res/half-direct-$r.json" 'r["latency_us"]["p99"]')" \
        "buffered $(json "$res/half-buffered-$r.json" 'r["latency_us"]["p99"]')" \
        "floor $(json "$res/floor-$r.json" 'r["latency_us"]["p99"]') (fdatasync p99 $(json "$res/floor-$r.json" 'r["fdatasync_us"]["p99"]'))" \
        "after $(json "$res/floor-after-$r.json" 'r["latency_us"]["p99"]') µs"
done
python3 - "$res" "$rounds" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
def j(name, r): return json.load(open(f"{d}/{name}-{r}.json"))
def med(name, f): return statistics.median(f(j(name, r)) for r in range(1, n + 1))
landed = lambda r: r["landed"]["records_per_s"]
cpu = lambda r: r["server"]["cpu_us_per_record"]
rss = lambda r: r["server"]["rss_bytes_max"] / 2**20
print("\n| one-way TCP, medians | records/s | server CPU µs/record | peak RSS MiB |")
print("|---|---:|---:|---:|")
for name in ["oneway-direct", "oneway-buffered", "rsyslog-async", "rsyslog-durable-batch"]:
    print(f"| {name} | {med(name, landed):,.0f} | {med(name, cpu):.3f} | {med(name, rss):.0f} |")
direct = med("oneway-direct", landed)
for peer in ["oneway-buffered", "rsyslog-async", "rsyslog-durable-batch"]:
    print(f"- direct vs {peer}: {direct / med(peer, landed):.2f}x")
print("\n| acked TCP, closed loop, medians | records/s | server CPU µs/record | peak RSS MiB |")
print("|---|---:|---:|---:|")
for name in ["acked-direct", "acked-buffered"]:
    print(f"| {name} | {med(name, lambda r: r['records_per_s']):,.0f} | {med(name, cpu):.3f} | {med(name, rss):.0f} |")
print("\n| catch-up read (`ringstash cat`), medians | records/s | MB/s |")
print("|---|---:|---:|")
for m in ["direct", "buffered"]:
    print(f"| after {m} writes | {med('catchup-' + m, lambda r: r['records_per_s']):,.0f} | {med('catchup-' + m, lambda r: r['mb_per_s']):,.0f} |")
print("\n| round | rate | floor p99 (fdatasync p99) | bar | direct ack p99 | buffered ack p99 | floor p99 after |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in range(1, n + 1):
    f = j("floor", r)
    bar = 2 * f["fdatasync_us"]["p99"] + 1000
    judged = f["latency_us"]["p99"] < 2000
    cell = lambda m: (lambda p: f"**{p:,}**" if judged and p <= bar else f"{p:,}")(j(f"half-{m}", r)["latency_us"]["p99"])
    print(f"| {r} | {j('half-direct', r)['run']['rate_target']:,.0f} | {f['latency_us']['p99']:,} ({f['fdatasync_us']['p99']:,}) | {bar:,}{'' if judged else ' (not judged)'} | {cell('direct')} | {cell('buffered')} | {j('floor-after', r)['latency_us']['p99']:,} |")
PY
