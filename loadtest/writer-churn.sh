#!/usr/bin/env bash
# What the writer thread spends beside its I/O during an acked run at a fixed rate:
# its mmap and munmap calls and page faults (the group buffers it maps when none is
# free to reuse), its CPU time, the whole server's CPU time, the group buffers it
# mapped (`ringstash_group_buffers_mapped_total`), and the client's ack latency.
# Alternate RS_BIN between two builds for an A/B.
#
# Usage: loadtest/writer-churn.sh
# Environment: RATE (1675000), ROUNDS (3), CONNS (4), BATCH (1024), DURATION (6s),
#   WARMUP (1s), SETTLE (2), WORKDIR (target/writer-churn, not tmpfs), RS_BIN (the
#   server binary, default the release build), SERVE_FLAGS (extra `serve` flags).
# Needs perf (linux-perf) with the syscalls tracepoints.
set -euo pipefail
# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
DURATION="${DURATION:-6s}" bench_setup 1024 3
bench_workdir writer-churn
RS="${RS_BIN:-$RS}"
rate="${RATE:-1675000}"
read -ra serve_flags <<<"${SERVE_FLAGS:-}"
command -v perf >/dev/null || { echo "writer-churn: perf is not installed" >&2; exit 2; }
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
perf_pid=""
# shellcheck disable=SC2317 # called by the trap
cleanup() { [ -z "$perf_pid" ] || kill "$perf_pid" 2>/dev/null || true; [ -z "${RS_PID:-}" ] || kill "$RS_PID" 2>/dev/null || true; }
trap cleanup EXIT

echo "writer-churn: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), rate $rate, $rounds rounds, $RS"
for r in $(seq 1 "$rounds"); do
    rm -rf "$work"; mkdir -p "$res"
    start_ringstash "$RS" "$work/data" "$work/serve.log" "${serve_flags[@]}"
    # Every partition's writer is named rs-writer: with streams configured this counts
    # the first found, so run it with the default stream alone.
    writer=$(grep -l '^rs-writer$' /proc/"$RS_PID"/task/*/comm | head -1 | cut -d/ -f5 || true)
    [ -n "$writer" ] || { echo "writer-churn: no rs-writer thread in $RS_PID" >&2; exit 1; }
    perf stat -x, -e syscalls:sys_enter_munmap,syscalls:sys_enter_mmap,page-faults,task-clock \
        -t "$writer" -o "$res/perf.csv" &
    perf_pid=$!
    cpu0=$(cpu "$RS_PID")
    "$LT" run --mode tcp-acked --addr "$RS_TCP" -c "$conns" -b "$batch" --rate "$rate" \
        -d "$duration" --warmup "$warmup" -q --json-file "$res/run.json" >/dev/null
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    cpu1=$(cpu "$RS_PID")
    mapped=$(curl -s "http://$RS_HTTP/metrics" | awk '$1 == "ringstash_group_buffers_mapped_total" {print $2}' || true)
    kill "$RS_PID"; wait "$RS_PID" 2>/dev/null || true
    RS_PID=""; perf_pid=""
    counted() { awk -F, -v e="$1" '$3 == e {print $1}' "$res/perf.csv"; }
    echo "round $r: writer munmap $(counted syscalls:sys_enter_munmap) mmap $(counted syscalls:sys_enter_mmap)" \
        "page faults $(counted page-faults) cpu $(counted task-clock | cut -d. -f1) ms" \
        "| server cpu $(( (cpu1 - cpu0) * 1000 / ticks )) ms | group buffers mapped ${mapped:-?}" \
        "| client p50/p99/p99.9 $(json "$res/run.json" '"%d %d %d" % (r["latency_us"]["p50"], r["latency_us"]["p99"], r["latency_us"]["p99_9"])')"
    sync; sleep "$settle"
done
rm -rf "$work"
