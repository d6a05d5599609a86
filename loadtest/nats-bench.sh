#!/usr/bin/env bash
# Forwarding into NATS JetStream (issue 18): what forwarding costs ingest, how fast
# committed records reach JetStream, and how fast a lag drains; against one
# nats-server and a 3-node JetStream cluster (R3), all on this machine.
#
# Each case: a fresh ringstash (release build), fresh nats-server(s), then an acked
# TCP load (loadtest tcp-acked); the forwarder's confirmed cursor is read from
# /metrics before and after, and then how long the lag left at the end of the load
# takes to drain to 0 (its rate is the forwarder's throughput). Loads: a burst of
# BURST records (closed loop), and RATE records/s for DURATION (open loop: does
# forwarding keep up?). Then the closed-loop ingest peak for DURATION with
# forwarding on (not drained) and off: what forwarding costs ingest.
#
#   loadtest/nats-bench.sh    # DURATION=3s CONNS=4 BATCH=1024 WINDOWS="256 1024" BURST=500000 RATE=20000
#
# Needs nats-server and curl. Results in target/nats-bench/results.
set -euo pipefail
source "$(dirname "$0")/serve-lib.sh"
duration_default=3s
DURATION="${DURATION:-$duration_default}"
bench_setup 1024 1
bench_workdir nats-bench
windows="${WINDOWS:-256 1024}"
burst="${BURST:-500000}"
rate="${RATE:-20000}"
NATS="$(command -v nats-server || echo /usr/sbin/nats-server)"
rm -rf "$work"
mkdir -p "$work" "$res"

log() { echo "nats-bench: $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { curl -s "http://$RS_HTTP/metrics" | awk -v n="$1" '$1==n {print $2}'; }
now() { date +%s.%N; }
CURSOR='ringstash_forward_cursor_offset{stream="default",partition="0"}'
LAG='ringstash_forward_lag_records{stream="default",partition="0"}'

nats_pids=()
stop_nats() {
    for p in "${nats_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${nats_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    nats_pids=()
}
# start_nats N: N servers (a cluster if N > 1); sets NATS_URL.
start_nats() {
    local n=$1 i cports=() ports=() urls=()
    for i in $(seq 0 $((n - 1))); do ports+=("$(free_port)"); cports+=("$(free_port)"); done
    for i in $(seq 0 $((n - 1))); do
        {
            echo "server_name: n$i"
            echo "listen: 127.0.0.1:${ports[$i]}"
            echo "jetstream { store_dir: \"$work/js-n$i\", max_memory_store: 64MB, max_file_store: 8GB }"
            if [ "$n" -gt 1 ]; then
                local routes=() j
                for j in $(seq 0 $((n - 1))); do
                    [ "$j" = "$i" ] || routes+=("nats-route://127.0.0.1:${cports[$j]}")
                done
                echo "cluster { name: bench, listen: 127.0.0.1:${cports[$i]}, routes: [$(IFS=,; echo "${routes[*]}")] }"
            fi
        } >"$work/n$i.conf"
        "$NATS" -c "$work/n$i.conf" >"$res/nats-n$i.log" 2>&1 &
        nats_pids+=($!)
        urls+=("nats://127.0.0.1:${ports[$i]}")
    done
    NATS_URL=$(IFS=,; echo "${urls[*]}")
}

stop_server() {
    kill "$RS_PID" 2>/dev/null || true
    wait "$RS_PID" 2>/dev/null || true
}

# run_case NAME NATS_SERVERS WINDOW DRAIN LOADTEST-ARGS...: prints one result line.
run_case() {
    local name=$1 servers=$2 window=$3 drain=$4 flags=()
    shift 4
    rm -rf "$work/data" "$work"/js-*
    if [ "$servers" -gt 0 ]; then
        start_nats "$servers"
        flags=(--nats-url "$NATS_URL" --node-id bench --nats-replicas "$servers"
               --nats-publish-window-max "$window")
    fi
    start_ringstash "$RS" "$work/data" "$res/serve-$name.log" "${flags[@]}" || exit 1
    if [ "$servers" -gt 0 ]; then
        # Forwarding ready: the stream exists once one record went through.
        printf 'warm\n' | nc -q1 "${RS_TCP%:*}" "${RS_TCP#*:}" >/dev/null || true
        for _ in $(seq 1 200); do [ "$(metric "$CURSOR")" = 1 ] && break; sleep 0.05; done
    fi
    local c0 t0 t1 c1 lag1 t2
    c0=$(metric "$CURSOR"); c0=${c0:-0}
    t0=$(now)
    "$LT" run --mode tcp-acked --addr "$RS_TCP" -c "$conns" -b "$batch" --record-size "$size" \
        -q --warmup 0s "$@" --json-file "$res/$name.json" >/dev/null
    t1=$(now)
    c1=$(metric "$CURSOR"); c1=${c1:-0}
    lag1=$(metric "$LAG"); lag1=${lag1:-0}
    t2=$t1
    if [ "$servers" -gt 0 ] && [ "$drain" = drain ]; then
        for _ in $(seq 1 6000); do [ "$(metric "$LAG")" = 0 ] && break; sleep 0.05; done
        t2=$(now)
    fi
    local rps
    rps=$(json "$res/$name.json" 'round(r["records_per_s"])')
    python3 - "$name" "$rps" "$c0" "$c1" "$lag1" "$t0" "$t1" "$t2" <<'PY'
import sys
name, rps, c0, c1, lag1, t0, t1, t2 = sys.argv[1:]
rps, c0, c1, lag1 = int(rps), int(c0), int(c1), int(lag1)
t0, t1, t2 = float(t0), float(t1), float(t2)
load = t1 - t0
fwd = (c1 - c0) / load
drain = t2 - t1
drain_rate = lag1 / drain if drain > 0 and lag1 else 0
line = (f"{name:<28} ingest {rps:>10,} rec/s  forwarded during load {fwd:>8,.0f} rec/s  "
        f"lag at end {lag1:>10,}")
if drain > 0:
    line += f"  drained in {drain:5.1f} s ({drain_rate:,.0f} rec/s)"
print(line)
PY
    stop_server
    stop_nats
    sleep "$settle"
}

log "duration $duration, $conns conns x $batch records of $size B, tcp-acked closed loop"
{
    for w in $windows; do
        run_case "single-w$w-burst" 1 "$w" drain -n "$burst"
        run_case "cluster-r3-w$w-burst" 3 "$w" drain -n "$burst"
    done
    run_case "single-w256-rate$rate" 1 256 drain --rate "$rate" -d "$duration"
    run_case "cluster-r3-w256-rate$rate" 3 256 drain --rate "$rate" -d "$duration"
    run_case "single-w256-peak" 1 256 no -d "$duration"
    run_case "forwarding-off-peak" 0 0 no -d "$duration"
} | tee "$res/summary.txt"
