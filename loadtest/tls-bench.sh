#!/usr/bin/env bash
# Issue 15's measurement: what TLS costs on acked raw TCP and on HTTP ingest, plain
# and TLS side by side in one interleaved run, a fresh server per run, on the disk
# under WORKDIR.
#
# The runs and the table are ab-lib.sh's (`ab_bench`), with variants plain and tls.
# The harness's own CPU per record matters here: on a small machine it shares the
# cores with the server, and its encryption is part of what a TLS peak costs there.
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
# shellcheck source=loadtest/ab-lib.sh
. "$(dirname "$0")/ab-lib.sh"
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

ab_serve() { # plain or tls
    AB_SERVE=(); AB_CLIENT=()
    if [ "$1" = tls ]; then AB_SERVE=("${tls_serve[@]}"); AB_CLIENT=("${tls_run[@]}"); fi
}
ab_started() { [ "$1" = plain ] || grep -q '^tls: tcp_acked http ' "$2"; }

rm -rf "$work"; mkdir -p "$res"
certs
ab_bench tls-bench plain tls
echo "tls-bench: done, load $(cut -d' ' -f1-3 /proc/loadavg); TLS $(json "$res/acked-tls-1.json" 'r["run"]["tls"]["protocol"] + " " + r["run"]["tls"]["cipher_suite"]')"
