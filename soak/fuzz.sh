#!/usr/bin/env bash
# Coverage-guided fuzzing of one parser (issue 13): runs `cargo afl fuzz` on one
# target of the `fuzz/` crate for a bounded time, with its corpus and dictionary, then
# prints AFL's figures. See docs/reliability.md, "Fuzzing".
#
#   soak/fuzz.sh TARGET SECONDS
#
# TARGET is one of: lines syslog_frame relp http_head logs_body query record_decode
# ws_handshake (fuzz/src/targets/). Needs cargo-afl (`cargo install cargo-afl`; it
# builds AFL++ on first use). One AFL process: on a shared machine run one at a time.
#
# Settings (environment):
#   OUT         AFL's output directory (default target/fuzz-out/TARGET); findings are
#               in OUT/default/crashes and OUT/default/hangs
#   RESUME      1 = continue the queue already in OUT instead of starting from the
#               corpus (default 0: OUT is emptied first)
#   TIMEOUT_MS  AFL's per-input timeout (default 1000): slower is a hang
#   CPU_SECONDS stop once the run has used this much CPU (fuzzer and targets, as
#               sampled below), even before SECONDS of wall time: on a shared machine
#               a run at `nice` gets what is idle, and the CPU is what the issue counts
#
# A finding is reproduced without AFL by the plain build of the same binary:
#   cargo run -p fuzz --bin TARGET -- OUT/default/crashes/id:...
# then minimised (`cargo afl tmin`), fixed, and kept under fuzz/regressions/TARGET/,
# which the normal test suite replays (fuzz/tests/corpus.rs).
set -euo pipefail

if [ $# -ne 2 ]; then
    sed -n '5,6p' "$0" >&2
    exit 2
fi
target=$1
seconds=$2
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/target/fuzz-out/$target}
timeout_ms=${TIMEOUT_MS:-1000}
[ -d "$root/fuzz/corpus/$target" ] || { echo "fuzz.sh: no target $target" >&2; exit 2; }

# Its own target directory: AFL's instrumented flags would otherwise rebuild the
# normal build's artefacts every time one or the other runs.
export CARGO_TARGET_DIR=$root/target/afl
(cd "$root" && cargo afl build --release -p fuzz --bin "$target")
bin=$CARGO_TARGET_DIR/release/$target

input=$root/fuzz/corpus/$target
if [ "${RESUME:-0}" = 1 ] && [ -d "$out/default/queue" ]; then
    input=-
else
    rm -rf "$out"
fi
mkdir -p "$out"

# No UI (not a terminal); no CPU binding (the cores are shared); the host's
# core_pattern and CPU governor are not ours to change.
export AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
echo "fuzz.sh: $target for ${seconds}s, output in $out"
started=$(date -u +%FT%TZ)
# CPU time, sampled every 2 s from /proc, as a snapshot per round: afl-fuzz itself,
# each fork server (its own CPU and that of the target processes it reaped), and each
# target process still running (in persistent mode one runs for many inputs, and its
# CPU reaches the fork server's only when it is reaped). The latest round is the
# total; up to 2 s of the last moments, and of a target process that ended between
# two rounds, are missed. On a shared machine that, not the wall time, is what the
# run cost.
cpu_sampler() {
    local afl_pid="" p q round=0
    while :; do
        afl_pid=$(pgrep -x -P "$1" afl-fuzz || true)
        [ -n "$afl_pid" ] && break
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.2
    done
    while kill -0 "$afl_pid" 2>/dev/null; do
        round=$((round + 1))
        {
            # Clock ticks: utime + stime (fields 14, 15), cutime + cstime (16, 17).
            awk -v r="$round" '{ print r, $14 + $15 }' "/proc/$afl_pid/stat" 2>/dev/null
            for p in $(pgrep -P "$afl_pid"); do
                awk -v r="$round" '{ print r, $14 + $15 + $16 + $17 }' "/proc/$p/stat" 2>/dev/null
                for q in $(pgrep -P "$p"); do
                    awk -v r="$round" '{ print r, $14 + $15 }' "/proc/$q/stat" 2>/dev/null
                done
            done
        } >>"$out/cpu-samples" || true
        if [ -n "${CPU_SECONDS:-}" ] && [ "$(cpu_used)" -ge "$CPU_SECONDS" ]; then
            # AFL stops on SIGINT as at the end of -V: stats written, exit 0.
            kill -INT "$afl_pid" 2>/dev/null || true
            return 0
        fi
        sleep 2
    done
}

# CPU seconds: the largest round of samples (the total only grows; the last round
# may have been cut short).
cpu_used() {
    awk -v hz="$(getconf CLK_TCK)" '
        { n[$1] += $2 }
        END { m = 0; for (r in n) if (n[r] > m) m = n[r]; printf "%.0f", m / hz }' "$out/cpu-samples" 2>/dev/null || echo 0
}

(cd "$root" && exec cargo afl fuzz -i "$input" -o "$out" -x "$root/fuzz/dict/$target.dict" \
    -t "$timeout_ms" -V "$seconds" -- "$bin") >"$out/afl.log" 2>&1 &
fuzz_pid=$!
cpu_sampler "$fuzz_pid" &
sampler_pid=$!
status=0
wait "$fuzz_pid" || status=$?
wait "$sampler_pid" || true
if [ "$status" -ne 0 ]; then
    tail -20 "$out/afl.log" >&2
    exit 1
fi

stats=$out/default/fuzzer_stats
field() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
cpu_s=$(cpu_used)
echo "fuzz.sh: $target started $started, ran $(field run_time) s, CPU ${cpu_s} s (fuzzer and targets)"
for k in execs_done execs_per_sec corpus_count corpus_found edges_found total_edges \
    bitmap_cvg stability saved_crashes saved_hangs; do
    printf '  %-14s %s\n' "$k" "$(field "$k")"
done
crashes=$(find "$out/default/crashes" "$out/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
if [ "$crashes" -gt 0 ]; then
    echo "fuzz.sh: $crashes finding(s), the first ones:"
    find "$out/default/crashes" "$out/default/hangs" -type f -name 'id:*' | sort | head -5
    exit 3
fi
