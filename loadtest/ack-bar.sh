#!/usr/bin/env bash
# Issue 4's third bar, judged round by round: ringstash's ack latency at a fixed rate
# against the disk's own floor at that rate (`loadtest floor`), interleaved.
#
# Per round, each on the disk under test, with a sync and a pause after every run (the
# file system may send discards for deleted files, which the next run would meet):
#   floor-append     the ideal durable writer, appending (its fdatasync p99 sets the bar)
#   floor-overwrite  the same, overwriting a pre-written file
#   rs:<flags>       a fresh `ringstash serve <flags>`, driven open loop at RATE
# Even rounds run in the reverse order. One line per run; then, per round, the bar
# (2 x the append floor's fdatasync p99 + 1 ms) and each server configuration's verdict.
#
# Usage: loadtest/ack-bar.sh
# Environment:
#   RATE     records/s (default 1775000)        ROUNDS  rounds (default 3)
#   CONNS    connections (default 4)            BATCH   records per batch (default 1024)
#   DURATION measured time (default 6s)         WARMUP  warm-up (default 1s)
#   CONFIGS  '|'-separated server flag sets; "default" is no flags
#            (default: "default|--segment-prewrite false")
#   SETTLE   pause after each run, seconds (default 2)
#   WORKDIR  scratch directory on the disk under test (default target/ack-bar)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rate="${RATE:-1775000}"; rounds="${ROUNDS:-3}"; conns="${CONNS:-4}"; batch="${BATCH:-1024}"
duration="${DURATION:-6s}"; warmup="${WARMUP:-1s}"; settle="${SETTLE:-2}"
work="$(realpath -m "${WORKDIR:-${CARGO_TARGET_DIR:-$root/target}/ack-bar}")"
IFS='|' read -ra configs <<<"${CONFIGS:-default|--segment-prewrite false}"
rm -rf "$work"
mkdir -p "$work/results"
cargo build --release -q -p ringstash -p loadtest
bin="${CARGO_TARGET_DIR:-$root/target}/release"
# shellcheck source=loadtest/serve-lib.sh
. "$root/loadtest/serve-lib.sh"
log() { echo "ack-bar: $*" >&2; }

run() { # round name
    local r=$1 name=$2 out="$work/results/$2-$1.json"
    out="${out// /_}"
    case "$name" in
    floor-append) "$bin/loadtest" floor --dir "$work/floor" --rate "$rate" -b "$batch" \
        -d "$duration" --warmup "$warmup" --json >"$out" ;;
    floor-overwrite) "$bin/loadtest" floor --dir "$work/floor" --rate "$rate" -b "$batch" \
        -d "$duration" --warmup "$warmup" --overwrite --json >"$out" ;;
    rs:*)
        local flags="${name#rs:}" pid
        [ "$flags" = default ] && flags=""
        # shellcheck disable=SC2086 # flags are words
        start_ringstash "$bin/ringstash" "$work/data" "$work/serve.log" $flags || exit 1
        pid=$RS_PID
        "$bin/loadtest" run --mode tcp-acked --addr "$RS_TCP" \
            -c "$conns" -b "$batch" --rate "$rate" -d "$duration" --warmup "$warmup" -q \
            --json-file "$out" >/dev/null
        kill $pid
        wait $pid 2>/dev/null || true
        rm -rf "$work/data" ;;
    esac
    sync
    sleep "$settle"
}

log "$(nproc) cpus, $(idle_note), rate $rate"
names=(floor-append floor-overwrite)
for c in "${configs[@]}"; do names+=("rs:$c"); done
for r in $(seq 1 "$rounds"); do
    order=("${names[@]}")
    if [ $((r % 2)) = 0 ]; then
        order=()
        for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[i]}"); done
    fi
    for n in "${order[@]}"; do
        log "round $r: $n"
        run "$r" "$n"
    done
done

python3 - "$work/results" "$rounds" "$rate" "${names[@]}" <<'EOF'
import json, os, sys
res, rounds, rate, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def load(name, r):
    p = os.path.join(res, f"{name}-{r}.json".replace(" ", "_"))
    return json.load(open(p)) if os.path.exists(p) else None
print(f"# ack p99 vs the disk at {int(float(rate)):,} records/s, µs; bar = 2 x the append floor's fdatasync p99 + 1 ms")
print("| round | " + " | ".join(names) + " | bar |")
print("|---" * (len(names) + 2) + "|")
met = {n: 0 for n in names if n.startswith("rs:")}
for r in range(1, rounds + 1):
    fa = load("floor-append", r)
    bar = 2 * fa["fdatasync_us"]["p99"] + 1000 if fa else None
    cells = []
    for n in names:
        j = load(n, r)
        if not j:
            cells.append("-")
            continue
        p99 = j["latency_us"]["p99"]
        extra = f" ({j['fdatasync_us']['p99']:,})" if n.startswith("floor") else ""
        ok = n.startswith("rs:") and bar is not None and p99 <= bar
        if ok:
            met[n] += 1
        cells.append(f"**{p99:,}**{extra}" if ok else f"{p99:,}{extra}")
    print(f"| {r} | " + " | ".join(cells) + (f" | {bar:,} |" if bar else " | - |"))
print()
for n, k in met.items():
    print(f"- {n[3:]}: within the bar in {k} of {rounds} rounds")
EOF
