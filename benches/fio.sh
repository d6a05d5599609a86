#!/usr/bin/env bash
# The disk's own durable append rate, for comparison with `cargo bench --bench wal`.
#
# Sequential appends to a new file (it grows: fallocate=none, so every write extends
# it, as the writer's segments do) with one fdatasync after every write, i.e. one
# fdatasync per group of BS bytes: the same fsync cadence as the ringstash writer with
# groups of BS bytes. Queue depth 1, engines io_uring and psync.
#
# Usage: benches/fio.sh [DIR]
#   DIR      directory on the filesystem under test; default: the writer benches'
#            directory (target/bench-wal, or $RINGSTASH_BENCH_DIR). Never tmpfs.
# Environment:
#   SIZES    block sizes = bytes per fdatasync (default "256k 608k 1m 3648k 4m"; 608k is
#            one 4096-record batch of 128-byte records = the writer's group when
#            group_bytes_max = 1 MiB, 3648k is six of them = its group at 4 MiB;
#            256k is about the group of 1-record batches, which the ring's 1024
#            slots bound)
#   ENGINES  default "io_uring psync"
#   RUNTIME  seconds per run (default 5)
#   ROUNDS   interleaved rounds; the median is printed (default 3)
#   MODES    default "append". Also available, to size proposals for the writer:
#            "overwrite" (the file is pre-written with zeros and synced first, then
#            overwritten in place: no size or extent change for fdatasync to journal)
#            and "direct" (O_DIRECT appends: no page-cache copy; still fdatasync'ed).
#            Their rows are labelled engine/mode.
#
# Prints one line per run and a table of medians. MB/s = 1e6 bytes/s.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${RINGSTASH_BENCH_DIR:-${CARGO_TARGET_DIR:-$here/target}/bench-wal}}"
sizes="${SIZES:-256k 608k 1m 3648k 4m}"
engines="${ENGINES:-io_uring psync}"
runtime="${RUNTIME:-5}"
rounds="${ROUNDS:-3}"
modes="${MODES:-append}"

if ! command -v fio >/dev/null; then
    echo "fio missing: installing it (apt-get)" >&2
    apt-get update -qq && apt-get install -y -qq fio >/dev/null
fi
mkdir -p "$dir/fio"
fstype="$(findmnt -no FSTYPE --target "$dir" 2>/dev/null || stat -f -c %T "$dir")"
if [ "$fstype" = tmpfs ]; then
    echo "$dir is on tmpfs: fdatasync costs nothing there; pass a directory on the disk" >&2
    exit 2
fi

echo "# fio $(fio --version) on $(uname -r), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# dir $dir ($fstype)"
df -h "$dir" | sed 's/^/# /'
echo "# rw=write, modes: $modes (append = file grows), fdatasync=1, iodepth=1, runtime=${runtime}s, rounds=$rounds"

results="$(mktemp)"
trap 'rm -f "$results"; rm -rf "$dir/fio"' EXIT
for round in $(seq 1 "$rounds"); do
    for bs in $sizes; do
        for mode in $modes; do
            for engine in $engines; do
                label="$engine"
                [ "$mode" = append ] || label="$engine/$mode"
                f="$dir/fio/$mode-$bs-$engine"
                rm -f "$f"
                extra=(--size=32g --fallocate=none)
                case "$mode" in
                    append) ;;
                    direct) extra+=(--direct=1) ;;
                    overwrite)
                        # 2 GiB written and synced before the timed run; fio then wraps
                        # around inside it, so every timed write is an overwrite.
                        dd if=/dev/zero of="$f" bs=4M count=512 conv=fdatasync status=none
                        extra=(--size=2g --overwrite=1 --time_based) ;;
                    *) echo "unknown mode $mode" >&2; exit 2 ;;
                esac
                # Let the previous run's writeback and (with -o discard) its discards
                # settle, so that one run's cleanup is not billed to the next.
                sync
                sleep 2
                json="$(fio --name="$mode" --filename="$f" --rw=write --bs="$bs" \
                    --runtime="$runtime" --ioengine="$engine" --iodepth=1 \
                    --fdatasync=1 --end_fsync=0 "${extra[@]}" --output-format=json)"
                rm -f "$f"
                line="$(python3 -c '
import json, sys
j = json.loads(sys.stdin.read())
job = j["jobs"][0]
w = job["write"]
secs = w["runtime"] / 1000.0
sync = job.get("sync", {})
pct = sync.get("lat_ns", {}).get("percentile", {})
def p(k):
    v = pct.get(k)
    return "%.0f" % (v / 1000.0) if v else "-"
print("%.1f %.0f %s %s" % (w["bw_bytes"] / 1e6, w["total_ios"] / secs if secs else 0,
      p("50.000000"), p("99.000000")))
' <<<"$json")"
                read -r mbps syncs p50 p99 <<<"$line"
                echo "round $round bs=$bs engine=$label: $mbps MB/s, $syncs fdatasync/s, fdatasync p50 ${p50} us p99 ${p99} us, load $(cut -d' ' -f1 /proc/loadavg)"
                echo "$bs $label $mbps $syncs $p50 $p99" >>"$results"
            done
        done
    done
done

echo
echo "| bs (bytes per fdatasync) | engine | MB/s median (min-max) | fdatasync/s | fdatasync p50 / p99 us |"
echo "|---|---|---|---|---|"
for bs in $sizes; do
    for engine in $(awk '{print $2}' "$results" | awk '!seen[$0]++'); do
        awk -v bs="$bs" -v e="$engine" '$1 == bs && $2 == e' "$results" | sort -k3,3n | awk -v bs="$bs" -v e="$engine" '
            { mb[NR] = $3; sy[NR] = $4; p50[NR] = $5; p99[NR] = $6 }
            END {
                m = int((NR + 1) / 2)
                printf "| %s | %s | %s (%s-%s) | %s | %s / %s |\n", bs, e, mb[m], mb[1], mb[NR], sy[m], p50[m], p99[m]
            }'
    done
done
