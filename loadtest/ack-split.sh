#!/usr/bin/env bash
# Where an acked producer's latency goes, round by round: the client's ack latency
# (`loadtest run --mode tcp-acked`, open loop at RATE) beside the server's own
# histograms for the same run, `ringstash_tcp_ack_seconds` (from the read that
# completed the oldest batch an ack covers to the ack written) and
# `ringstash_group_commit_seconds` (a group's write and fdatasync), and the disk's
# floor at that rate (`loadtest floor`) with issue 4's bar from it (2 x the floor's
# fdatasync p99 + 1 ms; judged where the floor's own p99 is under 2 ms). The
# histograms are the difference of two /metrics scrapes, before and after the run
# (warm-up included); their quantiles are bucket upper bounds (powers of two, µs).
#
# Usage: loadtest/ack-split.sh
# Environment: RATE (2600000), ROUNDS (3), CONNS (4), BATCH (1024), DURATION (6s),
#   WARMUP (1s), SETTLE (2), WORKDIR (target/ack-split, not tmpfs),
#   SERVE_FLAGS (extra `ringstash serve` flags, default none), RS_BIN (the server
#   binary, default the release build: for an A/B of two builds),
#   NICE_THREADS / NICE: a `case` pattern of server thread names (e.g. 'rs-writer')
#   reniced to NICE (default -10) once the server is up (needs CAP_SYS_NICE),
#   SERVER_DATA (the directory the server's data directory is made in, default the
#   work directory; the floor stays there): on tmpfs (/dev/shm) it takes the disk
#   out of the server's path, to see what of the tail is not the disk's.
set -euo pipefail
# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
DURATION="${DURATION:-6s}" bench_setup 1024 3
bench_workdir ack-split
RS="${RS_BIN:-$RS}"
rate="${RATE:-2600000}"
data="${SERVER_DATA:-$work}/ack-split-data"
read -ra serve_flags <<<"${SERVE_FLAGS:-}"

histogram() { # family before after: "count p50 p99 p99.9"
    python3 - "$@" <<'PY'
import sys
fam, a, b = sys.argv[1:4]
def read(p):
    return {k: float(v) for k, v in (l.split() for l in open(p) if l.startswith(fam + "_bucket"))}
x, y = read(a), read(b)
rows = [(k.split('le="')[1].rstrip('"}'), y[k] - x.get(k, 0)) for k in y]
total = rows[-1][1]
def q(p):
    for le, c in rows:
        if c >= total * p:
            return "<=%g" % (float(le) * 1e6) if le != "+Inf" else ">2^31"
print(int(total), q(0.5), q(0.99), q(0.999))
PY
}

# An interrupted round must not leave its server running (it holds the data directory).
# shellcheck disable=SC2317 # called by the trap
cleanup() { [ -z "${RS_PID:-}" ] || { kill "$RS_PID" 2>/dev/null; wait "$RS_PID" 2>/dev/null; } || true; }
trap cleanup EXIT

data_fs="$(findmnt -no FSTYPE --target "${SERVER_DATA:-$work/..}" 2>/dev/null || echo unknown)"
echo "ack-split: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), $fstype (server data: $data_fs), rate $rate, $rounds rounds, $(idle_note)"
for r in $(seq 1 "$rounds"); do
    rm -rf "$work"; mkdir -p "$res"
    "$LT" floor --dir "$work/floor" --rate "$rate" -b "$batch" -d "$duration" --warmup "$warmup" \
        --json > "$res/floor.json"
    rm -rf "$work/floor"; sync; sleep "$settle"
    start_ringstash "$RS" "$data" "$work/serve.log" "${serve_flags[@]}"
    if [ -n "${NICE_THREADS:-}" ]; then
        for t in /proc/"$RS_PID"/task/*; do
            # shellcheck disable=SC2254
            case "$(cat "$t/comm")" in $NICE_THREADS) renice -n "${NICE:--10}" -p "$(basename "$t")" >/dev/null ;; esac
        done
    fi
    curl -s "http://$RS_HTTP/metrics" > "$res/before.txt"
    "$LT" run --mode tcp-acked --addr "$RS_TCP" -c "$conns" -b "$batch" --rate "$rate" \
        -d "$duration" --warmup "$warmup" -q --json-file "$res/run.json" >/dev/null
    curl -s "http://$RS_HTTP/metrics" > "$res/after.txt"
    kill "$RS_PID"; wait "$RS_PID" 2>/dev/null || true
    RS_PID=""
    rm -rf "$data"
    echo "round $r: client p50/p99/p99.9 $(json "$res/run.json" '"%d %d %d" % (r["latency_us"]["p50"], r["latency_us"]["p99"], r["latency_us"]["p99_9"])')" \
        "| floor p99 (fdatasync p99) $(json "$res/floor.json" '"%d (%d)" % (r["latency_us"]["p99"], r["fdatasync_us"]["p99"])')" \
        "| bar $(json "$res/floor.json" '2 * r["fdatasync_us"]["p99"] + 1000')" \
        "| server ack n/p50/p99/p99.9 $(histogram ringstash_tcp_ack_seconds "$res/before.txt" "$res/after.txt")" \
        "| group commit n/p50/p99/p99.9 $(histogram ringstash_group_commit_seconds "$res/before.txt" "$res/after.txt")"
    sync; sleep "$settle"
done
