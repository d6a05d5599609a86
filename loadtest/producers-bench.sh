#!/usr/bin/env bash
# One-way producers, in one interleaved run: ringstash's one-way raw TCP listener and
# its syslog listener (RFC 3164, LF-framed and octet-counted) against rsyslog's
# durable-batch setup (omfile sync="on", dequeue batches of 1024: durable, as ringstash
# is) and rsyslog's imtcp writing to a file
# (shared/peers/rsyslog-async.conf: its fastest, non-durable setup), fed by the same
# sender (`loadtest run --mode tcp`, fire and forget, the same corpus per protocol).
# Syslog LF also runs with `--json-enrich false` ("syslog-lean": records without
# received_at, client_ip and node_id, which rsyslog's file does not have either).
#
# Neither side acks, so both are measured by what landed: rsyslog by the growth of its
# output file (--landed-file), ringstash by its durable-records counter
# (--landed-metric .../ringstash_records_committed_total; fsync=always, so each of
# those records was fdatasync'ed). Rate = records landed since the measurement
# started, divided by the time until the last one landed.
#
# RELP, acknowledged: the same sender feeds a private rsyslog (imtcp in, omrelp out,
# forwarding each line as it came, windowSize RELP_WINDOW) that forwards either to
# ringstash's RELP listener (each message answered once fdatasync'ed) or to a second
# rsyslog with imrelp writing to a file with sync="on" (rsyslog-durable-batch's omfile;
# imrelp answers once a message is queued, before it is written, so that side promises
# less). Landed as above: ringstash's durable-records counter, the receiver's file.
#
# Usage: loadtest/producers-bench.sh      Environment: DURATION (5s), WARMUP (1s),
#   CONNS (4), BATCH (1024), SIZE (128), ROUNDS (3), WORKDIR (target/producers, not
#   tmpfs), PEERS_DIR (../shared/peers), RELP_WINDOW (1024; omrelp's default is 128,
#   which caps either receiver near 3,000 messages/s on loopback: see
#   docs/protocol.md, RELP).
# Output: one line per run, then medians and ratios; JSON reports under $WORKDIR/results.
set -euo pipefail
# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
bench_setup 1024 3
peers_dir="${PEERS_DIR:-$root/../shared/peers}"
[ -d "$peers_dir" ] || peers_dir="/work/shared/peers"
work="$(realpath -m "${WORKDIR:-${CARGO_TARGET_DIR:-$root/target}/producers}")"
refuse_tmpfs producers-bench "$(dirname "$work")" "$work"
rm -rf "$work"
mkdir -p "$work/results"
command -v rsyslogd >/dev/null || { echo "producers-bench: rsyslogd is not installed (apt-get install rsyslog)" >&2; exit 2; }
[ -f /usr/lib/x86_64-linux-gnu/rsyslog/omrelp.so ] || { echo "producers-bench: rsyslog's RELP modules are not installed (apt-get install rsyslog-relp)" >&2; exit 2; }
relp_window="${RELP_WINDOW:-1024}"
cargo build --release -q -p ringstash -p loadtest
bin="${CARGO_TARGET_DIR:-$root/target}/release"
LT="$bin/loadtest"
RS="$bin/ringstash"
common=(-d "$duration" --warmup "$warmup" -c "$conns" -b "$batch" --record-size "$size" -q)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# start_relp_sender DIR TARGET_PORT
#   A private rsyslog in DIR: imtcp on a free port (SENDER_PORT), each line forwarded
#   as it came (%rawmsg%) with omrelp to 127.0.0.1:TARGET_PORT. Sets SENDER_PID.
start_relp_sender() {
    local d=$1 target=$2
    mkdir -p "$d"
    SENDER_PORT=$(free_port)
    cat >"$d/rsyslog.conf" <<EOF
global(workDirectory="$d")
module(load="imtcp")
module(load="omrelp")
template(name="raw" type="string" string="%rawmsg%")
input(type="imtcp" address="127.0.0.1" port="$SENDER_PORT" ruleset="fwd")
ruleset(name="fwd") {
  action(type="omrelp" target="127.0.0.1" port="$target" template="raw" windowSize="$relp_window")
}
EOF
    rsyslogd -n -f "$d/rsyslog.conf" -i "$d/rsyslog.pid" >"$d/daemon.log" 2>&1 &
    SENDER_PID=$!
    wait_port "$SENDER_PORT"
}

rate() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["landed"]; print(int(r["records_per_s"]) if r["complete"] else "incomplete:%d" % r["records_per_s"])' "$1"; }

run_ringstash() { # round format listener [name suffix, server flags...]: a fresh server
    # and data directory per run, so no run pays for the page cache and writeback an
    # earlier one left behind
    local r=$1 f=$2 listener=$3 suffix=${4:-} d="$work/ringstash-$1-$2${4:-}" addr
    shift $(($# < 4 ? $# : 4))
    mkdir -p "$d"
    start_ringstash "$RS" "$d/data" "$d/serve.log" "$@"
    case $listener in tcp) addr=$RS_TCP_ONEWAY ;; syslog) addr=$RS_SYSLOG ;; esac
    "$LT" run --mode tcp --format "$f" --addr "$addr" "${common[@]}" --server-pid "$RS_PID" \
        --landed-metric "$RS_HTTP/ringstash_records_committed_total" \
        --json-file "$work/results/ringstash-$([ "$listener" = tcp ] && echo tcp || echo "$f")$suffix-$r.json" >/dev/null
    kill "$RS_PID"; wait "$RS_PID" 2>/dev/null || true
    rm -rf "$d/data"
}

run_rsyslog() { # round format [peer config: async (default) or durable-batch]
    local r=$1 f=$2 conf=${3:-async} port pid
    local name="rsyslog-$f" d="$work/rsyslog-$1-$2-$conf"
    [ "$conf" = async ] || name="rsyslog-$conf-$f"
    mkdir -p "$d"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$port|g" "$peers_dir/rsyslog-$conf.conf" >"$d/rsyslog.conf"
    rsyslogd -n -f "$d/rsyslog.conf" -i "$d/rsyslog.pid" >"$d/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    "$LT" run --mode tcp --format "$f" --addr "127.0.0.1:$port" "${common[@]}" --server-pid $pid \
        --landed-file "$d/out.log" --json-file "$work/results/$name-$r.json" >/dev/null
    kill $pid; wait $pid 2>/dev/null || true
    rm -f "$d/out.log"
}

run_ringstash_relp() { # round: a fresh server, fed through an omrelp sender
    local r=$1 d="$work/ringstash-$1-relp"
    mkdir -p "$d"
    start_ringstash "$RS" "$d/data" "$d/serve.log"
    start_relp_sender "$d/sender" "${RS_RELP##*:}"
    "$LT" run --mode tcp --format syslog --addr "127.0.0.1:$SENDER_PORT" "${common[@]}" --server-pid "$RS_PID" \
        --landed-metric "$RS_HTTP/ringstash_records_committed_total" \
        --json-file "$work/results/ringstash-relp-$r.json" >/dev/null
    kill "$SENDER_PID" "$RS_PID"; wait "$SENDER_PID" "$RS_PID" 2>/dev/null || true
    rm -rf "$d/data"
}

run_rsyslog_relp() { # round: the same sender into rsyslog's imrelp, written with sync="on"
    local r=$1 d="$work/rsyslog-$1-relp" port pid
    mkdir -p "$d/receiver"
    port=$(free_port)
    cat >"$d/receiver/rsyslog.conf" <<EOF
global(workDirectory="$d/receiver")
main_queue(queue.dequeueBatchSize="1024")
module(load="imrelp")
template(name="raw" type="string" string="%rawmsg%\n")
input(type="imrelp" address="127.0.0.1" port="$port" ruleset="bench")
ruleset(name="bench") {
  action(type="omfile" file="$d/out.log" template="raw"
         sync="on" flushOnTXEnd="on" asyncWriting="off" ioBufferSize="1m")
}
EOF
    rsyslogd -n -f "$d/receiver/rsyslog.conf" -i "$d/receiver/rsyslog.pid" >"$d/receiver/daemon.log" 2>&1 &
    pid=$!
    wait_port "$port"
    start_relp_sender "$d/sender" "$port"
    "$LT" run --mode tcp --format syslog --addr "127.0.0.1:$SENDER_PORT" "${common[@]}" --server-pid $pid \
        --landed-file "$d/out.log" --json-file "$work/results/rsyslog-relp-$r.json" >/dev/null
    kill "$SENDER_PID" $pid; wait "$SENDER_PID" $pid 2>/dev/null || true
    rm -f "$d/out.log"
}

echo "producers-bench: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), $fstype, $rounds rounds, $conns conns, batch $batch, $size-byte records"
for r in $(seq 1 "$rounds"); do
    run_ringstash "$r" text tcp
    run_rsyslog "$r" text
    run_rsyslog "$r" text durable-batch
    run_ringstash "$r" syslog syslog
    # The same without the enrichment fields (received_at, client_ip, node_id): a
    # quarter fewer bytes per record, for the bytes-bound case (docs/benchmarks.md).
    run_ringstash "$r" syslog syslog -lean --json-enrich false
    run_rsyslog "$r" syslog
    run_rsyslog "$r" syslog durable-batch
    run_ringstash "$r" syslog-octet syslog
    run_rsyslog "$r" syslog-octet
    run_ringstash_relp "$r"
    run_rsyslog_relp "$r"
    echo "round $r: ringstash tcp $(rate "$work/results/ringstash-tcp-$r.json") syslog $(rate "$work/results/ringstash-syslog-$r.json") syslog-lean $(rate "$work/results/ringstash-syslog-lean-$r.json") syslog-octet $(rate "$work/results/ringstash-syslog-octet-$r.json") relp $(rate "$work/results/ringstash-relp-$r.json") | rsyslog-async text $(rate "$work/results/rsyslog-text-$r.json") syslog $(rate "$work/results/rsyslog-syslog-$r.json") syslog-octet $(rate "$work/results/rsyslog-syslog-octet-$r.json") | rsyslog-durable-batch text $(rate "$work/results/rsyslog-durable-batch-text-$r.json") syslog $(rate "$work/results/rsyslog-durable-batch-syslog-$r.json") | rsyslog imrelp+sync $(rate "$work/results/rsyslog-relp-$r.json") records/s"
done
python3 - "$work/results" "$rounds" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
def med(name):
    v = [json.load(open(f"{d}/{name}-{r}.json"))["landed"]["records_per_s"] for r in range(1, n + 1)]
    return statistics.median(v)
for ours, theirs, what in [("ringstash-tcp", "rsyslog-text", "one-way tcp"),
                           ("ringstash-syslog", "rsyslog-syslog", "syslog LF"),
                           ("ringstash-syslog-lean", "rsyslog-syslog", "syslog LF, no enrich"),
                           ("ringstash-syslog-octet", "rsyslog-syslog-octet", "syslog octet-counted")]:
    a, b = med(ours), med(theirs)
    print(f"median landed records/s: ringstash {what:<20} {a:>12,.0f} vs rsyslog-async {b:>12,.0f} = {a/b:.2f}x")
for ours, theirs, what in [("ringstash-tcp", "rsyslog-durable-batch-text", "one-way tcp"),
                           ("ringstash-syslog", "rsyslog-durable-batch-syslog", "syslog LF")]:
    a, b = med(ours), med(theirs)
    print(f"median landed records/s: ringstash {what:<20} {a:>12,.0f} vs rsyslog-durable-batch {b:>12,.0f} = {a/b:.2f}x")
a, b = med("ringstash-relp"), med("rsyslog-relp")
print(f"median landed records/s: omrelp -> ringstash relp {a:>12,.0f} vs -> rsyslog imrelp+omfile sync {b:>12,.0f} = {a/b:.2f}x")
PY
