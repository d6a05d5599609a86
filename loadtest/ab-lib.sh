# Sourced by the A/B bench scripts (driver-bench.sh, tls-bench.sh), after
# serve-lib.sh's bench_setup and bench_workdir: two variants of one server side by
# side in one interleaved run, a fresh server and data directory per run.
#
# ab_bench NAME A B
#   Per round (even rounds in the reverse order), for each variant V of A and B:
#     acked-V   acked raw TCP, closed loop: records/s, server CPU µs per record, ack p99
#     http-V    HTTP ingest (POST /ingest, lines), closed loop: records/s, CPU µs/record
#   then, at half of the lower of the round's two acked peaks (both at the same rate,
#   each at or under half of its own peak):
#     half-V    acked raw TCP, open loop: ack p50/p99
#   One line per round, then the medians with the B/A ratios (the harness's own CPU
#   per record too: on a small machine it shares the cores with the server).
#   The caller defines:
#     ab_serve V      sets AB_SERVE (serve flags) and AB_CLIENT (loadtest run flags)
#     ab_started V LOG  succeeds if the server's stderr (LOG) shows it runs as V
ab_one() { # round variant what [rate]
    local r=$1 v=$2 what=$3 rate=${4:-} d="$work/rs" more=()
    rm -rf "$d"; mkdir -p "$d"
    ab_serve "$v"
    start_ringstash "$RS" "$d/data" "$d/serve.log" "${AB_SERVE[@]}"
    ab_started "$v" "$d/serve.log" || { echo "$ab_name: the server is not $v:" >&2; cat "$d/serve.log" >&2; exit 1; }
    case "$what" in
    acked) more=(--mode tcp-acked --addr "$RS_TCP") ;;
    http) more=(--mode http-ingest --addr "$RS_HTTP") ;;
    half) more=(--mode tcp-acked --addr "$RS_TCP" --rate "$rate") ;;
    esac
    "$LT" run "${more[@]}" "${AB_CLIENT[@]}" "${common[@]}" --server-pid "$RS_PID" \
        --json-file "$res/$what-$v-$r.json" >/dev/null
    kill "$RS_PID"; wait "$RS_PID" 2>/dev/null || true
    rm -rf "$d"
    sync; sleep "$settle"
}

ab_bench() { # name A B
    ab_name=$1
    local a=$2 b=$3 r v half line variants
    echo "$ab_name: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), $fstype, $rounds rounds, $conns conns, batch $batch, $size-byte lines"
    for r in $(seq 1 "$rounds"); do
        variants=("$a" "$b")
        [ $((r % 2)) = 0 ] && variants=("$b" "$a")
        for v in "${variants[@]}"; do ab_one "$r" "$v" acked; ab_one "$r" "$v" http; done
        half=$(python3 -c 'import json,sys; print(int(min(json.load(open(f))["records_per_s"] for f in sys.argv[1:]) / 2))' \
            "$res/acked-$a-$r.json" "$res/acked-$b-$r.json")
        for v in "${variants[@]}"; do ab_one "$r" "$v" half "$half"; done
        line="round $r:"
        for v in "$a" "$b"; do
            line+=" | $v acked $(json "$res/acked-$v-$r.json" 'int(r["records_per_s"])')/s"
            line+=" ($(json "$res/acked-$v-$r.json" 'r["server"]["cpu_us_per_record"]') µs/rec, p99 $(json "$res/acked-$v-$r.json" 'r["latency_us"]["p99"]') µs)"
            line+=" http $(json "$res/http-$v-$r.json" 'int(r["records_per_s"])')/s"
            line+=" ($(json "$res/http-$v-$r.json" 'r["server"]["cpu_us_per_record"]') µs/rec)"
            line+=" at $half/s ack p50/p99 $(json "$res/half-$v-$r.json" 'r["latency_us"]["p50"]')/$(json "$res/half-$v-$r.json" 'r["latency_us"]["p99"]') µs"
        done
        echo "$line"
    done
    python3 - "$res" "$rounds" "$a" "$b" <<'PY'
import json, statistics, sys
d, n, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def j(name, r): return json.load(open(f"{d}/{name}-{r}.json"))
def med(name, f): return statistics.median(f(j(name, r)) for r in range(1, n + 1))
rps = lambda r: r["records_per_s"]
cpu = lambda r: r["server"]["cpu_us_per_record"]
client_cpu = lambda r: r["client"]["cpu_s"] / max(r["records"], 1) * 1e6
p = lambda q: lambda r: r["latency_us"][q]
rows = [
    ("acked TCP peak, records/s", "acked", rps, "{:,.0f}"),
    ("acked TCP, server CPU µs/record", "acked", cpu, "{:.3f}"),
    ("acked TCP, loadtest CPU µs/record", "acked", client_cpu, "{:.3f}"),
    ("acked TCP peak, ack p99 µs", "acked", p("p99"), "{:,.0f}"),
    ("HTTP ingest peak, records/s", "http", rps, "{:,.0f}"),
    ("HTTP ingest, server CPU µs/record", "http", cpu, "{:.3f}"),
    ("HTTP ingest, loadtest CPU µs/record", "http", client_cpu, "{:.3f}"),
    ("at half of peak: rate, records/s", "half", lambda r: r["run"]["rate_target"], "{:,.0f}"),
    ("at half of peak: ack p50 µs", "half", p("p50"), "{:,.0f}"),
    ("at half of peak: ack p99 µs", "half", p("p99"), "{:,.0f}"),
]
print(f"\n| medians of {n} rounds | {a} | {b} | {b} / {a} |")
print("|---|---:|---:|---:|")
for label, what, f, fmt in rows:
    x, y = med(f"{what}-{a}", f), med(f"{what}-{b}", f)
    print(f"| {label} | {fmt.format(x)} | {fmt.format(y)} | {y / x:.2f}x |")
PY
}
