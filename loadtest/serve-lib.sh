# Sourced by the bench scripts (compare.sh, fanout-bench.sh, ack-bar.sh).
#
# bench_setup BATCH_DEFAULT ROUNDS_DEFAULT
#   Sets root to the repository (the parent of the script's directory) and changes
#   to it; then the load settings the bench scripts share, from the environment with
#   their defaults: duration (DURATION, 5s), warmup (WARMUP, 1s), conns (CONNS, 4),
#   batch (BATCH), size (SIZE, 128) and rounds (ROUNDS).
# shellcheck disable=SC2034 # the variables are the scripts'
bench_setup() {
    root="$(cd "$(dirname "$0")/.." && pwd)"
    cd "$root"
    duration="${DURATION:-5s}"
    warmup="${WARMUP:-1s}"
    conns="${CONNS:-4}"
    batch="${BATCH:-$1}"
    size="${SIZE:-128}"
    rounds="${ROUNDS:-$2}"
}

# bench_workdir NAME
#   After bench_setup, for the scripts that run fresh servers from a release build on
#   a disk: settle (SETTLE, 2 s of pause after each run), work (WORKDIR, default
#   target/NAME; refused on tmpfs), res (work/results), the release binaries (bin, LT,
#   RS, built here), the loadtest flags every run shares (common), and json FILE EXPR
#   (prints EXPR of the JSON in FILE as r).
bench_workdir() {
    settle="${SETTLE:-2}"
    work="$(realpath -m "${WORKDIR:-${CARGO_TARGET_DIR:-$root/target}/$1}")"
    refuse_tmpfs "$1" "$(dirname "$work")" "$work"
    cargo build --release -q -p ringstash -p loadtest
    bin="${CARGO_TARGET_DIR:-$root/target}/release"
    LT="$bin/loadtest"
    RS="$bin/ringstash"
    common=(-d "$duration" --warmup "$warmup" -c "$conns" -b "$batch" --record-size "$size" -q)
    res="$work/results"
}

json() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"r": r}))' "$@"; }

# refuse_tmpfs NAME DIR [SHOWN]
#   Sets fstype to the file system type under DIR. If it is tmpfs, where fdatasync
#   costs nothing, says so (as NAME, about SHOWN, default DIR) and exits 2.
refuse_tmpfs() {
    fstype="$(findmnt -no FSTYPE --target "$2" 2>/dev/null || echo unknown)"
    if [ "$fstype" = tmpfs ]; then
        echo "$1: ${3:-$2} is on tmpfs, where fdatasync costs nothing; set WORKDIR to a disk" >&2
        exit 2
    fi
}

# idle_note
#   Prints how this machine's idle CPUs wake: the cpuidle driver and, under the
#   guest `haltpoll` driver, its `guest_halt_poll_ns`. On this project's VMs a halted
#   vCPU's wake-up costs milliseconds, which moves every tail measured here (the
#   floor's too): a latency figure means little without it (docs/benchmarks.md,
#   "the VM's idle vCPUs").
idle_note() {
    local d=/sys/devices/system/cpu/cpuidle/current_driver p=/sys/module/haltpoll/parameters/guest_halt_poll_ns
    printf 'cpuidle %s' "$(cat "$d" 2>/dev/null || echo none)"
    [ -r "$p" ] && printf ', guest_halt_poll_ns %s' "$(cat "$p")"
    echo
}

#
# start_ringstash RS DATA_DIR LOG [serve flags...]
#   Starts `RS serve` in the background on loopback ports it picks itself (port 0:
#   ports chosen here and passed in could be taken by someone else in between) and
#   reads them back from its "listening tcp=... http=... ws=..." line on stderr
#   (written to LOG). Sets RS_PID and RS_TCP (the acked raw TCP listener), RS_TCP_ONEWAY,
#   RS_SYSLOG, RS_RELP (empty for a binary without RELP), RS_HTTP, RS_WS (host:port).
#   A binary from before the acked listener was split off (an A/B's old side) has one
#   raw TCP listener: RS_TCP is that one.
#   Returns 1, with the log on stderr, if the server exits or does not listen within 10 s.
start_ringstash() {
    local rs=$1 data=$2 logf=$3 line="" more=()
    shift 3
    if "$rs" serve --help 2>/dev/null | grep -q -- '--tcp-acked-addr'; then
        more=(--tcp-acked-addr 127.0.0.1:0 --syslog-addr 127.0.0.1:0)
    fi
    if "$rs" serve --help 2>/dev/null | grep -q -- '--relp-addr'; then
        more+=(--relp-addr 127.0.0.1:0)
    fi
    RINGSTASH_LOG=warn "$rs" serve --data-dir "$data" --tcp-addr 127.0.0.1:0 \
        --http-addr 127.0.0.1:0 --ws-addr 127.0.0.1:0 "${more[@]}" "$@" 2>"$logf" &
    RS_PID=$!
    for _ in $(seq 1 200); do
        line=$(grep -m1 '^listening ' "$logf" || true)
        [ -n "$line" ] && break
        kill -0 "$RS_PID" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$line" ]; then
        echo "ringstash did not start:" >&2
        cat "$logf" >&2
        return 1
    fi
    RS_TCP_ONEWAY=$(sed -n 's/.*tcp=\([^ ]*\).*/\1/p' <<<"$line")
    RS_TCP=$(sed -n 's/.*tcp_acked=\([^ ]*\).*/\1/p' <<<"$line")
    [ -n "$RS_TCP" ] || RS_TCP=$RS_TCP_ONEWAY
    RS_SYSLOG=$(sed -n 's/.*syslog=\([^ ]*\).*/\1/p' <<<"$line")
    RS_HTTP=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$line")
    RS_RELP=$(sed -n 's/.*relp=\([^ ]*\).*/\1/p' <<<"$line")
    RS_WS=$(sed -n 's/.*ws=\([^ ]*\).*/\1/p' <<<"$line")
}
