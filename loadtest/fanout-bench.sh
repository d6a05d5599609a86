#!/usr/bin/env bash
# What WebSocket subscribers cost ringstash's producers, and end-to-end latency, in
# one run on loopback (issue 5's targets).
#
# Per round, each on a fresh `ringstash serve` (release build, fsync = always, data
# directory on the disk under test), `loadtest run --mode ws-e2e` with the producer
# in acked TCP, closed loop, large batches:
#   peak-0        0 subscribers                     (the reference)
#   live-1        1 live subscriber                 (--allow-lag: it may fall behind)
#   live-100      100 live subscribers              (--allow-lag)
#   stalled-1     0 live + 1 subscriber that never reads
# then, open loop at half of that round's peak-0 rate with 1 live subscriber that must
# receive every record exactly once:
#   e2e-half      end-to-end latency (send time from the schedule -> receipt of a
#                 batch's last record), coordinated omission corrected.
# Every subscriber in every run is checked for gaps and duplicates (the run fails on
# any). Throughputs are the producer's acked records/s; the table gives ratios to
# peak-0 of the same round, medians over rounds.
#
# Targets: live-100 >= 0.90 x peak-0; stalled-1 costs nothing measurable (within the
# noise band NOISE, default 5 %); e2e p99 < 5 ms at half of peak load.
#
# NOTE: loadtest, its subscribers and the server share the machine's cores. The
# subscribers' reading (100 of them, each receiving every record) and the server's
# fan-out compete with the producer path for CPU: on a 2-core VM that, not a lock,
# is what live subscribers cost. Use `uptime` to check the machine is otherwise idle.
#
# Usage: loadtest/fanout-bench.sh        (from anywhere inside the repository)
# Environment:
#   DURATION  measured time per run (default 5s)   WARMUP  warm-up (default 1s)
#   CONNS     producer connections (default 4)     BATCH   records per batch (default 4096)
#   SIZE      record bytes incl. \n (default 128)  ROUNDS  rounds (default 2)
#   SUBS      the large subscriber count (default 100)
#   NOISE     stalled-1 "costs nothing" band, percent (default 5)
#   FORMAT    the live subscribers' message format, json or binary (default json)
#   WORKDIR   scratch directory on the disk under test, not tmpfs
#             (default target/fanout-bench); its results/ is replaced
# Output: the table on stdout; JSON reports and .hgrm files under $WORKDIR/results/.
set -euo pipefail

# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
bench_setup 4096 2
subs="${SUBS:-100}"
noise="${NOISE:-5}"
format="${FORMAT:-json}"
case "$format" in json | binary) ;; *) echo "fanout-bench: FORMAT must be json or binary" >&2; exit 2 ;; esac
work="${WORKDIR:-${CARGO_TARGET_DIR:-$root/target}/fanout-bench}"

log() { echo "fanout-bench: $*" >&2; }

mkdir -p "$work"
refuse_tmpfs fanout-bench "$work"
results="$work/results"
rm -rf "$results" "$work/data"
mkdir -p "$results"

log "building release binaries"
cargo build --release -q --workspace
bin="${CARGO_TARGET_DIR:-$root/target}/release"
LT="$bin/loadtest"
RS="$bin/ringstash"

{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) cores"
    echo "uptime: $(uptime)"
    echo "disk: $(df -h --output=source,fstype,size,avail "$work" | tail -1) ($fstype)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "settings: DURATION=$duration WARMUP=$warmup CONNS=$conns BATCH=$batch SIZE=$size ROUNDS=$rounds SUBS=$subs NOISE=$noise"
} >"$results/env.txt"
log "$(grep uptime: "$results/env.txt")"

server_pid=""
stop_server() {
    [ -n "$server_pid" ] || return 0
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}
trap stop_server EXIT

# Starts a fresh server; sets TCP, WS and server_pid.
start_server() { # name
    rm -rf "$work/data"
    start_ringstash "$RS" "$work/data" "$results/serve-$1.log" || exit 1
    server_pid=$RS_PID
    TCP=$RS_TCP
    WS=$RS_WS
}

common=(--mode ws-e2e -d "$duration" --warmup "$warmup" -c "$conns" -b "$batch"
    --record-size "$size" -q --ws-path "/v1/stream?from=latest&format=$format")

run() { # name round loadtest-args...
    local name=$1 r=$2
    shift 2
    start_server "$name-$r"
    log "round $r: $name ($*)"
    local rc=0
    "$LT" run "${common[@]}" --addr "$TCP" --ws-addr "$WS" --server-pid "$server_pid" \
        --json-file "$results/$name-$r.json" --hgrm "$results/$name-$r.hgrm" "$@" \
        >"$results/$name-$r.txt" 2>"$results/$name-$r.err" || rc=$?
    stop_server
    rm -rf "$work/data"
    if [ $rc -ne 0 ]; then
        log "round $r: $name failed (exit $rc):"
        cat "$results/$name-$r.err" >&2
        echo "$rc" >"$results/$name-$r.failed"
    fi
}

rps() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["records_per_s"])' "$1"; }

t0=$(date +%s)
for r in $(seq 1 "$rounds"); do
    run peak-0 "$r" --subscribers 0
    run live-1 "$r" --subscribers 1 --allow-lag
    run "live-$subs" "$r" --subscribers "$subs" --allow-lag
    run stalled-1 "$r" --subscribers 0 --stalled-subscribers 1
    peak="$(rps "$results/peak-0-$r.json")"
    half="$(python3 -c "print(max(1000, round($peak / 2)))")"
    run e2e-half "$r" --subscribers 1 --rate "$half"
done
log "runs took $(($(date +%s) - t0)) s"

python3 - "$results" "$rounds" "$subs" "$noise" <<'EOF' | tee "$results/table.md"
import json, os, statistics, sys
res, rounds, subs, noise = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])

def load(name, r):
    p = os.path.join(res, f"{name}-{r}.json")
    if not os.path.exists(p) or os.path.exists(os.path.join(res, f"{name}-{r}.failed")):
        return None
    return json.load(open(p))

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

rows = []
names = ["peak-0", "live-1", f"live-{subs}", "stalled-1", "e2e-half"]
what = {
    "peak-0": "0 subscribers (reference)",
    "live-1": "1 live subscriber",
    f"live-{subs}": f"{subs} live subscribers",
    "stalled-1": "1 stalled subscriber",
    "e2e-half": "1 live subscriber, open loop at half of peak",
}
ratio = {}
summary = {}
for n in names:
    runs = [load(n, r) for r in range(1, rounds + 1)]
    base = [load("peak-0", r) for r in range(1, rounds + 1)]
    rps = med([j and j["records_per_s"] for j in runs])
    ratios = [j["records_per_s"] / b["records_per_s"] for j, b in zip(runs, base)
              if j and b and b["records_per_s"] > 0]
    ratio[n] = med(ratios)
    per_round = ", ".join(f"{x:.2f}" for x in ratios)
    e2e = [j["e2e"] for j in runs if j]
    live = [j for j in runs if j and j["e2e"]["subscribers"] > 0]
    delivered = med([sum(s["delivered"] for s in j["e2e"]["per_subscriber"]) /
                     max(1, j["e2e"]["subscribers"]) / max(1, j["e2e"]["expected_records"])
                     for j in live])
    summary[n] = dict(
        rps=rps,
        ratio=ratio[n],
        ack_p99=med([e["producer_latency_us"]["p99"] for e in e2e]),
        # No sample when a lagging subscriber got nothing past the warm-up.
        e2e_p50=med([j["latency_us"]["p50"] for j in live if j["latency_us"]["count"]]),
        e2e_p99=med([j["latency_us"]["p99"] for j in live if j["latency_us"]["count"]]),
        per_round=per_round,
        delivered=delivered,
        ok=all(e["ok"] for e in e2e) and len(e2e) == rounds,
        rss=med([(j.get("server") or {}).get("rss_bytes_max") for j in runs if j]),
        cpu=med([(j.get("server") or {}).get("cpu_percent") for j in runs if j]),
        client=med([(j.get("client") or {}).get("cpu_percent") for j in runs if j]),
    )

def f(x, fmt="{:,.0f}"):
    return "-" if x is None else fmt.format(x)

print(f"ringstash fan-out: producer cost of subscribers and end-to-end latency "
      f"(medians of {rounds} round(s); ratios to 0 subscribers of the same round)")
print()
print("| run | producer records/s | vs 0 subs | per round | producer ack p99 µs | e2e p50 µs | e2e p99 µs "
      "| share of records delivered per live sub | checks | server CPU % | server RSS MB | loadtest CPU % |")
print("|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|")
for n in names:
    s = summary[n]
    print(f"| {what[n]} | {f(s['rps'])} | {f(s['ratio'], '{:.3f}')} | {s['per_round']} | {f(s['ack_p99'])} "
          f"| {f(s['e2e_p50'])} | {f(s['e2e_p99'])} | {f(s['delivered'], '{:.1%}')} "
          f"| {'ok' if s['ok'] else 'FAILED'} | {f(s['cpu'])} "
          f"| {f(s['rss'] and s['rss'] / 1e6, '{:.1f}')} | {f(s['client'])} |")
base = [load("peak-0", r) for r in range(1, rounds + 1)]
base = [b["records_per_s"] for b in base if b]
if len(base) > 1:
    print()
    print(f"Noise: the 0-subscriber reference itself ranged {min(base):,.0f} .. {max(base):,.0f} "
          f"records/s over the rounds ({(max(base) - min(base)) / max(base):.0%} spread).")
print()
r100 = ratio.get(f"live-{subs}")
rst = ratio.get("stalled-1")
p99 = summary["e2e-half"]["e2e_p99"]
def verdict(ok):
    return "MET" if ok else "NOT MET"
print(f"- {subs} live subscribers cost producers under 10 % of throughput: "
      f"{f(r100, '{:.3f}')} x  -> {verdict(r100 is not None and r100 >= 0.90)}")
print(f"- one stalled subscriber costs nothing measurable (within {noise:g} %): "
      f"{f(rst, '{:.3f}')} x  -> {verdict(rst is not None and rst >= 1 - noise / 100)}")
print(f"- end-to-end p99 under 5 ms at half of peak load: "
      f"{f(p99)} µs  -> {verdict(p99 is not None and p99 < 5000 and summary['e2e-half']['ok'])}")
print(f"- every subscriber in every run: in order, no gaps, no duplicates"
      f"{'' if all(s['ok'] for s in summary.values()) else ': NO, see the .err files'}")
EOF
cat "$results/env.txt"
