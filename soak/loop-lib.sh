# Sourced by soak/kill-loop.sh and soak/power-cut.sh: one run of a loop binary that
# takes `loadtest kill-loop`'s flags, with the settings both scripts document read
# from the environment.
#
# soak_loop NAME PACKAGE COMMAND...
#   Builds ringstash and PACKAGE (release), runs COMMAND (a path under the release
#   directory, then its arguments) with the kill loop's flags, keeps WORKDIR on a
#   failure and removes one it made itself on success; exits with the loop's status.
soak_loop() {
    local name=$1 package=$2 cmd=$3
    shift 3
    local root target own_workdir=0 status=0 seed_args=() serve_args=()
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    cd "$root"
    target="${CARGO_TARGET_DIR:-$root/target}"
    cargo build --release -q -p ringstash -p "$package"
    if [ -z "${WORKDIR:-}" ]; then
        WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/ringstash-$name.XXXXXX")"
        own_workdir=1
    fi
    if [ -n "${SEED:-}" ]; then
        seed_args=(--seed "$SEED")
    fi
    if [ -n "${RINGSTASH_SERVE_ARGS:-}" ]; then
        read -r -a serve_args <<<"$RINGSTASH_SERVE_ARGS"
    fi
    "$target/release/$cmd" "$@" \
        --ringstash "$target/release/ringstash" \
        --work-dir "$WORKDIR" \
        --iterations "${ITERATIONS:-100}" \
        "${seed_args[@]}" \
        --kill-min-ms "${KILL_MIN_MS:-5}" \
        --kill-max-ms "${KILL_MAX_MS:-400}" \
        --tcp-producers "${TCP_PRODUCERS:-2}" \
        --http-producers "${HTTP_PRODUCERS:-2}" \
        --rate "${RATE:-20000}" \
        --batch-max "${BATCH_MAX:-64}" \
        --segment-bytes-max "${SEGMENT_BYTES:-1048576}" \
        --fresh-every "${FRESH_EVERY:-50}" \
        -- "${serve_args[@]}" || status=$?
    if [ "$status" -eq 0 ] && [ "$own_workdir" -eq 1 ]; then
        rm -rf "$WORKDIR"
    elif [ "$status" -ne 0 ]; then
        echo "$name.sh: data directories and ledgers kept in $WORKDIR" >&2
    fi
    exit "$status"
}
