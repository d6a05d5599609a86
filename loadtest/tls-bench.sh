#!/usr/bin/env bash
# Issue 15's measurement: what TLS costs on acked raw TCP and on HTTP ingest, plain
# and TLS side by side in one interleaved run, a fresh server per run, on the disk
# under WORKDIR.
#
# Per round (even rounds in the reverse order), for each of plain and tls:
#   acked-<v>   acked raw TCP, closed loop: records/s, server CPU µs per record, ack p99
#   http-<v>    HTTP ingest (POST /ingest, lines), closed loop: records/s, CPU µs/record
# then, at half of the lower of the two acked peaks of the round (both at the same
# rate, each at or under half of its own peak):
#   half-<v>    acked raw TCP, open loop: ack p50/p99
# Then medians and the tls/plain ratios. The harness's own CPU per record is shown
# too: on a small machine it shares the cores with the server, and its encryption is
# part of what a TLS peak costs there.
#
# TLS: the server gets --tcp-acked-tls true --http-tls true and an ECDSA P-256
# certificate for localhost signed by a CA made here with openssl (both in WORKDIR);
# loadtest trusts that CA (--tls-ca) and makes every handshake before its clock
# starts, so the figures are the steady state of long-lived connections: encryption,
# decryption and TLS framing per byte and per write, not handshakes.
#
# Usage: loadtest/tls-bench.sh    Environment: ROUNDS (3), DURATION (5s), WARMUP (1s),
#   CONNS (4), BATCH (1024), SIZE (128), WORKDIR (target/tls-bench, not tmpfs),
#   SETTLE (2: seconds of pause after each run).
set -euo pipefail
# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
bench_setup 1024 3
bench_workdir tls-bench

certs() { # an ECDSA P-256 CA and a server certificate for localhost it signs, in $work/certs
    local d="$work/certs" ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7)
    mkdir -p "$d"
    openssl req -x509 "${ec[@]}" -keyout "$d/ca.key" -out "$d/ca.pem" -subj /CN=tls-bench-ca 2>/dev/null
    openssl req -x509 "${ec[@]}" -keyout "$d/server.key" -out "$d/server.pem" -subj /CN=localhost \
        -CA "$d/ca.pem" -CAkey "$d/ca.key" -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth 2>/dev/null
    tls_serve=(--tcp-acked-tls true --http-tls true --tls-cert-file "$d/server.pem" --tls-key-file "$d/server.key")
    tls_run=(--tls-ca "$d/ca.pem")
}

one() { # round variant what [rate]: a fresh server, plain or TLS, one loadtest run
    local r=$1 v=$2 what=$3 rate=${4:-} d="$work/rs" more=() serve=() client=()
    rm -rf "$d"; mkdir -p "$d"
    if [ "$v" = tls ]; then serve=("${tls_serve[@]}"); client=("${tls_run[@]}"); fi
    start_ringstash "$RS" "$d/data" "$d/serve.log" "${serve[@]}"
    if [ "$v" = tls ]; then
        grep -q '^tls: tcp_acked http ' "$d/serve.log" || { echo "tls-bench: TLS is not on:" >&2; cat "$d/serve.log" >&2; exit 1; }
    fi
    case "$what" in
    acked) more=(--mode tcp-acked --addr "$RS_TCP") ;;
    http) more=(--mode http-ingest --addr "$RS_HTTP") ;;
    half) more=(--mode tcp-acked --addr "$RS_TCP" --rate "$rate") ;;
    esac
    "$LT" run "${more[@]}" "${client[@]}" "${common[@]}" --server-pid "$RS_PID" --json-file "$res/$what-$v-$r.json" >/dev/null
    kill "$RS_PID"; wait "$RS_PID" 2>/dev/null || true
    rm -rf "$d"
    sync; sleep "$settle"
}

rm -rf "$work"; mkdir -p "$res"
certs
echo "tls-bench: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), $fstype, $rounds rounds, $conns conns, batch $batch, $size-byte lines"
for r in $(seq 1 "$rounds"); do
    variants=(plain tls)
    [ $((r % 2)) = 0 ] && variants=(tls plain)
    for v in "${variants[@]}"; do one "$r" "$v" acked; one "$r" "$v" http; done
    half=$(python3 -c 'import json,sys; print(int(min(json.load(open(f)) ["records_per_s"] for f in sys.argv[1:]) / 2))' \
        "$res/acked-plain-$r.json" "$res/acked-tls-$r.json")
    for v in "${variants[@]}"; do one "$r" "$v" half "$half"; done
    line="round $r:"
    for v in plain tls; do
        line+=" | $v acked $(json "$res/acked-$v-$r.json" 'int(r["records_per_s"])')/s"
        line+=" ($(json "$res/acked-$v-$r.json" 'r["server"]["cpu_us_per_record"]') µs/rec, p99 $(json "$res/acked-$v-$r.json" 'r["latency_us"]["p99"]') µs)"
        line+=" http $(json "$res/http-$v-$r.json" 'int(r["records_per_s"])')/s"
        line+=" ($(json "$res/http-$v-$r.json" 'r["server"]["cpu_us_per_record"]') µs/rec)"
        line+=" at $half/s ack p50/p99 $(json "$res/half-$v-$r.json" 'r["latency_us"]["p50"]')/$(json "$res/half-$v-$r.json" 'r["latency_us"]["p99"]') µs"
    done
    echo "$line"
done
echo "tls-bench: done, load $(cut -d' ' -f1-3 /proc/loadavg); TLS $(json "$res/acked-tls-1.json" 'r["run"]["tls"]["protocol"] + " " + r["run"]["tls"]["cipher_suite"]')"
python3 - "$res" "$rounds" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
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
print(f"\n| medians of {n} rounds | plain | tls | tls / plain |")
print("|---|---:|---:|---:|")
for label, what, f, fmt in rows:
    a, b = med(f"{what}-plain", f), med(f"{what}-tls", f)
    print(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {b / a:.2f}x |")
PY
