#!/usr/bin/env bash
# ringstash vs its peers vs the machine's physical limits, in one run, on loopback.
#
# Starts `ringstash serve` and the peer receivers (rsyslog and syslog-ng from Debian
# packages, with the private configurations in shared/peers/*.conf, each writing the
# raw lines to one file), drives each with the same load from `loadtest`, and
# measures alongside the disk (fio: sequential appends, one fdatasync per group of
# the size ringstash's writer actually committed; `loadtest floor`: the ack latency
# an ideal durable writer gets at the half-peak rate) and loopback bandwidth (iperf3, or
# `loadtest` blasting its own discard sink if iperf3 cannot be installed).
# Prints one table with ratios. Systems are alternated within each round; with
# ROUNDS > 1 the table shows medians.
#
# What is compared: ringstash in `tcp-acked` mode counts records when its cumulative
# ack says they are durable. The peers do not acknowledge anything, so they are
# driven fire-and-forget (`tcp` mode) and measured by the rate at which their output
# file grew (`--landed-file`): bytes landed since the measurement started, until the
# last byte sent landed. For durable peers that is the rate at which lines were
# written and fsync'ed.
#
# Usage: loadtest/compare.sh            (from anywhere inside the repository)
# Environment:
#   DURATION  measured time per run (default 5s)      WARMUP   warm-up (default 1s)
#   CONNS     connections (default 4)                 BATCH    records per batch (default 1024)
#   SIZE      record bytes including \n (default 128) ROUNDS   interleaved rounds (default 1)
#   PEERS     peer configurations to run (default: all in shared/peers/ except
#             syslog-ng-async-threaded); "" runs ringstash and the limits only
#   WORKDIR   scratch directory on the disk under test, not tmpfs
#             (default target/compare); it is emptied first
#   PEERS_DIR where the peer configurations are (default ../shared/peers)
#   NO_INSTALL=1  do not apt-get anything; skip what is missing
#   SETTLE    pause before the half-peak run and before the disk's floor (default 5)
# Output: the table on stdout; every run's JSON report under $WORKDIR/results/.
set -euo pipefail

# shellcheck source=loadtest/serve-lib.sh
. "$(dirname "$0")/serve-lib.sh"
bench_setup 1024 1
peers_dir="${PEERS_DIR:-$root/../shared/peers}"
[ -d "$peers_dir" ] || peers_dir="/work/shared/peers"
default_peers="rsyslog-async rsyslog-durable rsyslog-durable-batch syslog-ng-async-default syslog-ng-async syslog-ng-durable syslog-ng-durable-batch"
peers="${PEERS-$default_peers}"
work="${WORKDIR:-${CARGO_TARGET_DIR:-$root/target}/compare}"
# Absolute: rsyslogd changes directory before it writes its pid file.
work="$(realpath -m "$work")"
settle="${SETTLE:-5}"
export DEBIAN_FRONTEND=noninteractive
case "$duration" in
*[0-9]s) dur_s="${duration%s}" ;;
*) echo "compare: DURATION must be whole seconds like 5s" >&2; exit 2 ;;
esac

log() { echo "compare: $*" >&2; }

refuse_tmpfs compare "$(dirname "$work")" "$work"
rm -rf "$work"
mkdir -p "$work/results"
results="$work/results"

# ---------------------------------------------------------------- installs
apt_updated=0
apt_install() {
    [ "${NO_INSTALL:-0}" = 1 ] && return 1
    if [ $apt_updated = 0 ]; then
        apt-get update -qq >/dev/null 2>&1 || true
        apt_updated=1
    fi
    # Keep Debian's maintainer scripts from starting system-wide daemons (rsyslog,
    # iperf3): we run private instances only.
    local created=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created=1
    fi
    local rc=0
    apt-get install -y -qq --no-install-recommends "$@" >"$work/apt.log" 2>&1 || rc=$?
    [ $created = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || { log "apt-get install $* failed:"; tail -3 "$work/apt.log" >&2; }
    return $rc
}

need_python() { command -v python3 >/dev/null || apt_install python3; }
need_python

command -v fio >/dev/null || apt_install fio || log "fio unavailable: no disk figures"
command -v iperf3 >/dev/null || apt_install iperf3 || log "iperf3 unavailable: loopback measured with loadtest's sink"

want_rsyslog=0
want_sng=0
for p in $peers; do
    case "$p" in rsyslog-*) want_rsyslog=1 ;; syslog-ng-*) want_sng=1 ;; esac
done
if [ $want_rsyslog = 1 ] && ! command -v rsyslogd >/dev/null; then
    apt_install rsyslog || log "rsyslog unavailable: skipped"
fi
# syslog-ng conflicts with rsyslog as a Debian package: unpack it privately and
# install only its libraries.
sng_root="${SYSLOG_NG_ROOT:-${CARGO_TARGET_DIR:-$root/target}/syslog-ng-pkg}"
if [ $want_sng = 1 ] && [ ! -x "$sng_root/usr/sbin/syslog-ng" ] && [ "${NO_INSTALL:-0}" != 1 ]; then
    mkdir -p "$sng_root.dl"
    (
        cd "$sng_root.dl"
        [ $apt_updated = 1 ] || apt-get update -qq >/dev/null 2>&1 || true
        apt-get download syslog-ng-core >/dev/null 2>&1
        dpkg -x syslog-ng-core_*.deb "$sng_root"
    ) || log "syslog-ng-core download failed: skipped"
    if [ -x "$sng_root/usr/sbin/syslog-ng" ]; then
        libs="$(apt-cache depends --no-recommends --no-suggests syslog-ng-core 2>/dev/null |
            awk '/Depends:/ {print $2}' | grep -E '^lib' | tr -d '<>' | sort -u | tr '\n' ' ')"
        [ -z "$libs" ] || apt_install $libs || true
    fi
fi
sng_moddir="$(ls -d "$sng_root"/usr/lib/syslog-ng/[0-9]* 2>/dev/null | head -1 || true)"

# ---------------------------------------------------------------- build
log "building release binaries"
cargo build --release -q -p ringstash -p loadtest
bin="${CARGO_TARGET_DIR:-$root/target}/release"
LT="$bin/loadtest"
RS="$bin/ringstash"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # port pid
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

common=(-d "$duration" --warmup "$warmup" -c "$conns" -b "$batch" --record-size "$size" -q)

# ---------------------------------------------------------------- runs
run_ringstash() { # round
    local r=$1 d="$work/ringstash-$1" pid
    mkdir -p "$d"
    start_ringstash "$RS" "$d/data" "$d/serve.log" || return 1
    pid=$RS_PID
    "$LT" run --mode tcp-acked --addr "$RS_TCP" "${common[@]}" --server-pid $pid \
        --json-file "$results/ringstash-tcp-acked-$r.json" >/dev/null
    # The writer's real fsync cadence during the peak run, for fio.
    python3 - "$RS_HTTP" >"$results/ringstash-stats-$r.json" <<'EOF' || true
import sys, urllib.request
print(urllib.request.urlopen("http://%s/stats" % sys.argv[1], timeout=5).read().decode())
EOF
    local peak
    peak=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["records_per_s"])' \
        "$results/ringstash-tcp-acked-$r.json")
    # Ack latency at half of peak load (open loop, coordinated omission corrected),
    # after the peak run's writes have settled: a steady half load, not the tail of a
    # burst (the disk here stays slow for seconds after several GB).
    sync
    sleep "$settle"
    "$LT" run --mode tcp-acked --addr "$RS_TCP" "${common[@]}" --server-pid $pid \
        --rate "$(python3 -c "print(max(1000, $peak / 2))")" \
        --json-file "$results/ringstash-half-peak-$r.json" \
        --hgrm "$results/ringstash-half-peak-$r.hgrm" >/dev/null
    sleep "$settle"
    # The disk's own floor at that rate, right after, on the same file system: the
    # ideal durable writer's per-batch latency and its per-call fdatasync times.
    "$LT" floor --dir "$d/floor" --rate "$(python3 -c "print(max(1000, $peak / 2))")" \
        -b "$batch" --record-size "$size" -d "$duration" --warmup "$warmup" --json \
        >"$results/floor-$r.json" || log "loadtest floor failed"
    "$LT" run --mode http-ingest --addr "$RS_HTTP" "${common[@]}" --server-pid $pid \
        --json-file "$results/ringstash-http-ingest-$r.json" >/dev/null
    stop_pid $pid
    rm -rf "$d/data"
}

run_peer() { # name round
    local name=$1 r=$2 d="$work/$1-$2" port conf pid
    [ -f "$peers_dir/$name.conf" ] || { log "no $peers_dir/$name.conf: skipped"; return 0; }
    mkdir -p "$d"
    port=$(free_port)
    conf="$d/$name.conf"
    sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$port|g" "$peers_dir/$name.conf" >"$conf"
    case "$name" in
    rsyslog-*)
        command -v rsyslogd >/dev/null || { log "rsyslogd missing: $name skipped"; return 0; }
        rsyslogd -n -f "$conf" -i "$d/rsyslog.pid" >"$d/daemon.log" 2>&1 &
        pid=$!
        ;;
    syslog-ng-*)
        [ -n "$sng_moddir" ] || { log "syslog-ng missing: $name skipped"; return 0; }
        LD_LIBRARY_PATH="$sng_root/usr/lib/syslog-ng" SYSLOGNG_PREFIX="$sng_root/usr" \
            "$sng_root/usr/sbin/syslog-ng" -F --no-caps -f "$conf" -R "$d/persist" \
            -p "$d/syslog-ng.pid" -c "$d/ctl" --module-path="$sng_moddir" >"$d/daemon.log" 2>&1 &
        pid=$!
        ;;
    esac
    if ! wait_port "$port" $pid; then
        log "$name did not start:"
        tail -5 "$d/daemon.log" >&2
        stop_pid $pid
        return 0
    fi
    "$LT" run --mode tcp --addr "127.0.0.1:$port" "${common[@]}" --server-pid $pid \
        --landed-file "$d/out.log" --drain-timeout 2s \
        --json-file "$results/$name-$r.json" >/dev/null || log "$name: loadtest failed"
    stop_pid $pid
    rm -f "$d/out.log"
}

run_fio() { # round
    command -v fio >/dev/null || return 0
    local r=$1 bs
    # Bytes per fdatasync that ringstash's writer used in the peak run.
    bs=$(python3 - "$results/ringstash-stats-$r.json" <<'EOF' 2>/dev/null || echo 1048576
import json, sys
log = json.load(open(sys.argv[1]))["log"]
per = log["bytes_committed"] / max(1, log["fsyncs"])
print(max(4096, int(per) // 4096 * 4096))
EOF
)
    rm -f "$work/fio.dat"
    fio --name=append --filename="$work/fio.dat" --rw=write --bs="$bs" --size=32g \
        --runtime="$dur_s" --time_based=0 --ioengine=psync --iodepth=1 --fdatasync=1 \
        --fallocate=none --end_fsync=0 --output-format=json >"$results/fio-$r.json" 2>"$work/fio.err" ||
        log "fio failed: $(tail -1 "$work/fio.err")"
    rm -f "$work/fio.dat"
}

run_loopback() { # round
    local r=$1 port pid
    port=$(free_port)
    if command -v iperf3 >/dev/null; then
        # Not `-1`: the readiness probe would be its one client.
        iperf3 -s -p "$port" >/dev/null 2>&1 &
        pid=$!
        wait_port "$port" $pid || true
        sleep 0.3
        iperf3 -c 127.0.0.1 -p "$port" -t "$dur_s" -J >"$results/iperf3-$r.json" 2>/dev/null ||
            log "iperf3 failed"
        stop_pid $pid
    else
        "$LT" sink --addr "127.0.0.1:$port" >/dev/null &
        pid=$!
        wait_port "$port" $pid
        "$LT" run --mode tcp --addr "127.0.0.1:$port" -d "$duration" -c 1 -b 8192 -q \
            --json-file "$results/blast-$r.json" >/dev/null
        stop_pid $pid
    fi
}

log "$(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), $fstype, $rounds round(s) of: ringstash, $peers, fio, loopback"
for r in $(seq 1 "$rounds"); do
    log "round $r: ringstash"
    run_ringstash "$r"
    for p in $peers; do
        log "round $r: $p"
        run_peer "$p" "$r"
    done
    log "round $r: fio"
    run_fio "$r"
    log "round $r: loopback"
    run_loopback "$r"
done

# ---------------------------------------------------------------- table
python3 - "$results" "$rounds" "$duration" "$warmup" "$conns" "$batch" "$size" "$peers" <<'EOF'
import glob, json, os, statistics, sys

res, rounds, duration, warmup, conns, batch, size, peers = sys.argv[1:9]
rounds = int(rounds)

def load(name):
    out = []
    for r in range(1, rounds + 1):
        p = os.path.join(res, f"{name}-{r}.json")
        if os.path.exists(p):
            try:
                out.append(json.load(open(p)))
            except ValueError:
                pass
    return out

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, nd=0):
    if x is None:
        return "-"
    return f"{x:,.{nd}f}"

rows = []
def lt_row(label, runs, landed=False):
    if not runs:
        return
    if landed:
        rate = med([(j.get("landed") or {}).get("records_per_s") for j in runs])
        mbs = med([(j.get("landed") or {}).get("mb_per_s") for j in runs])
        complete = all((j.get("landed") or {}).get("complete") for j in runs)
        p99 = None
    else:
        rate = med([j["records_per_s"] for j in runs])
        mbs = med([j["mb_per_s"] for j in runs])
        complete = all(j["failed_records_total"] == 0 and j["errors_total"] == 0 for j in runs)
        p99 = med([j["latency_us"]["p99"] for j in runs])
    cpu = med([(j.get("server") or {}).get("cpu_us_per_record") for j in runs])
    if landed and rate:
        # cpu_us_per_record is per record *sent in the window*; per landed line is
        # what matters for a peer: CPU seconds over lines landed.
        cpu = med([((j.get("server") or {}).get("cpu_s", 0) * 1e6 /
                    max(1, (j["landed"]["records_per_s"] or 0) * j["landed"]["elapsed_s"]))
                   if j.get("landed") else None for j in runs])
    rss = med([(j.get("server") or {}).get("rss_bytes_max") for j in runs])
    rows.append((label, rate, mbs, p99, cpu, rss / 1e6 if rss else None, complete))

lt_row("ringstash tcp-acked (durable, acked)", load("ringstash-tcp-acked"))
lt_row("ringstash http-ingest (durable, acked)", load("ringstash-http-ingest"))
labels = {
    "rsyslog-async": "rsyslog default (async, no fsync)",
    "rsyslog-durable": "rsyslog sync=on (most durable)",
    "rsyslog-durable-batch": "rsyslog sync=on + batch 1024",
    "syslog-ng-async-default": "syslog-ng 3.38 defaults (no fsync)",
    "syslog-ng-async": "syslog-ng threaded(no), no fsync",
    "syslog-ng-durable": "syslog-ng fsync(yes) (most durable)",
    "syslog-ng-durable-batch": "syslog-ng fsync(yes) + flush 1000",
    "syslog-ng-async-threaded": "syslog-ng threaded(yes)+flow-ctl",
}
for p in peers.split():
    lt_row(labels.get(p, p) + " [landed]", load(p), landed=True)

base = rows[0][1] if rows and rows[0][0].startswith("ringstash tcp-acked") else None
print(f"# ringstash vs peers, {size} B records, {conns} connections x {batch} records/batch, "
      f"{duration} measured after {warmup} warm-up, {rounds} round(s), medians")
print(f"# {os.cpu_count()} cpus, load {open('/proc/loadavg').read().split()[0]} at the end")
print()
print("| system | records/s | MB/s | ringstash / this | ack p99 µs | server CPU µs/record | server RSS MB | complete |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for label, rate, mbs, p99, cpu, rss, complete in rows:
    ratio = f"{base / rate:.2f}x" if base and rate else "-"
    print(f"| {label} | {fmt(rate)} | {fmt(mbs, 1)} | {ratio} | {fmt(p99)} | {fmt(cpu, 2)} | {fmt(rss, 1)} | {'yes' if complete else 'NO'} |")

print()
print("| limit | figure |")
print("|---|---|")
fio_runs = load("fio")
fsync_p99_us = None
if fio_runs:
    bw = med([j["jobs"][0]["write"]["bw_bytes"] / 1e6 for j in fio_runs])
    bs = fio_runs[0]["jobs"][0]["job options"].get("bs", "?")
    syncs = med([j["jobs"][0]["write"]["total_ios"] / max(1e-9, j["jobs"][0]["write"]["runtime"] / 1000) for j in fio_runs])
    pct = [j["jobs"][0].get("sync", {}).get("lat_ns", {}).get("percentile", {}) for j in fio_runs]
    p50 = med([p.get("50.000000") for p in pct])
    p99 = med([p.get("99.000000") for p in pct])
    fsync_p99_us = p99 / 1000 if p99 else None
    recs = bw * 1e6 / int(size) if bw else None
    ratio = f", ringstash reaches {base / recs:.2f} of it" if base and recs else ""
    print(f"| disk: fio append, bs={bs} (ringstash's mean group), fdatasync per write | "
          f"{fmt(bw, 1)} MB/s = {fmt(recs)} records/s of {size} B{ratio}; {fmt(syncs)} fdatasync/s, "
          f"p50 {fmt(p50 / 1000 if p50 else None)} µs, p99 {fmt(fsync_p99_us)} µs |")
ip = load("iperf3")
if ip:
    gbit = med([j["end"]["sum_received"]["bits_per_second"] / 1e9 for j in ip if "sum_received" in j.get("end", {})])
    if gbit:
        print(f"| loopback: iperf3, 1 stream | {gbit:.2f} Gbit/s = {gbit * 1e9 / 8 / 1e6:,.0f} MB/s |")
bl = load("blast")
if bl:
    print(f"| loopback: loadtest tcp into its discard sink, 1 connection | {fmt(med([j['mb_per_s'] for j in bl]), 0)} MB/s |")
half = load("ringstash-half-peak")
if half:
    p99 = med([j["latency_us"]["p99"] for j in half])
    rate = med([j["records_per_s"] for j in half])
    line = f"| ringstash ack latency at half peak ({fmt(rate)} records/s, open loop) | p50 {fmt(med([j['latency_us']['p50'] for j in half]))} µs, p99 {fmt(p99)} µs"
    if fsync_p99_us:
        bar = 2 * fsync_p99_us + 1000
        line += f"; bar 2 x fio's fdatasync p99 + 1 ms = {fmt(bar)} µs: {'met' if p99 <= bar else 'NOT met'}"
    print(line + " |")
floor = load("floor")
if floor:
    fp99 = med([j["latency_us"]["p99"] for j in floor])
    sp99 = med([j["fdatasync_us"]["p99"] for j in floor])
    print(f"| disk's ack floor at that rate (`loadtest floor`, right after each half-peak run) | "
          f"per batch p50 {fmt(med([j['latency_us']['p50'] for j in floor]))} µs, p99 {fmt(fp99)} µs; "
          f"its fdatasync p99 {fmt(sp99)} µs |")
    if half:
        # Round by round: each half-peak run against the floor measured right after it.
        verdicts = []
        for h, f in zip(half, floor):
            a, s99, f99 = h["latency_us"]["p99"], f["fdatasync_us"]["p99"], f["latency_us"]["p99"]
            verdicts.append(f"{fmt(a)} µs vs {fmt(2 * s99 + 1000)} (2 x fdatasync p99 + 1 ms) "
                            f"and {fmt(f99 + 1000)} (floor p99 + 1 ms)")
        print(f"| ringstash ack p99 at half peak against the same round's disk | {'; '.join(verdicts)} |")
print()
print(f"# JSON reports: {res}")
EOF
