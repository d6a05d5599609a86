"""Throughput of POST /v1/logs: OTLP protobuf vs OTLP/JSON vs plain JSON (docs/benchmarks.md).

usage: otlp-bench.py HOST:PORT [--records N] [--requests R] [--connections C]

Prebuilds one body per kind carrying the same N log records (service, severity,
message, two attributes, trace and span ids), then C keep-alive connections each post
it R times, closed loop (the next request once the previous one is acked, that is
durable). Prints records/s per kind and the server's CPU time per record (from
/proc/PID/stat of the process listening on PORT, if found). Needs the opentelemetry-proto
Python package (a dependency of opentelemetry-exporter-otlp-proto-http).
"""

import argparse
import http.client
import json
import os
import threading
import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from google.protobuf.json_format import MessageToDict

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")


def otlp_request(n):
    now = time.time_ns()
    records = [
        LogRecord(
            time_unix_nano=now,
            severity_number=9 + 4 * (i % 3),
            severity_text=["INFO", "WARN", "ERROR"][i % 3],
            body=AnyValue(string_value=f"order {i} processed in {i % 97} ms"),
            attributes=[
                KeyValue(key="order_id", value=AnyValue(int_value=i)),
                KeyValue(key="user", value=AnyValue(string_value=f"u{i}")),
            ],
            trace_id=TRACE,
            span_id=SPAN,
        )
        for i in range(n)
    ]
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value="checkout"))]
                ),
                scope_logs=[ScopeLogs(log_records=records)],
            )
        ]
    )


def otlp_json(req):
    """OTLP/JSON: protobuf's JSON mapping with enums as integers and ids in hex."""
    d = MessageToDict(req, use_integers_for_enums=True)
    for r in d["resourceLogs"][0]["scopeLogs"][0]["logRecords"]:
        r["traceId"], r["spanId"] = TRACE.hex(), SPAN.hex()
    return json.dumps(d, separators=(",", ":")).encode()


def plain_body(n):
    return json.dumps(
        [
            {
                "timestamp": "2026-12-06T04:00:00.000000Z",
                "service": "checkout",
                "level": ["info", "warn", "error"][i % 3],
                "message": f"order {i} processed in {i % 97} ms",
                "attributes": {"order_id": i, "user": f"u{i}"},
                "trace_id": TRACE.hex(),
                "span_id": SPAN.hex(),
            }
            for i in range(n)
        ],
        separators=(",", ":"),
    ).encode()


def server_cpu_s(port):
    """CPU seconds (user + system) of the process listening on PORT, or None."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].split(":")[1], 16) == port:
                inode = parts[9]
    if inode is None:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return None


def run(addr, content_type, body, requests, connections):
    host, port = addr.rsplit(":", 1)
    errors = []

    def worker():
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        for _ in range(requests):
            c.request("POST", "/v1/logs", body, {"Content-Type": content_type})
            r = c.getresponse()
            out = r.read()
            if r.status != 200:
                errors.append((r.status, out[:200]))
                return
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{content_type}: {errors[0]}")
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--connections", type=int, default=2)
    a = p.parse_args()
    req = otlp_request(a.records)
    kinds = [
        ("otlp-protobuf", "application/x-protobuf", req.SerializeToString()),
        ("otlp-json", "application/json", otlp_json(req)),
        ("plain-json", "application/json", plain_body(a.records)),
    ]
    port = int(a.addr.rsplit(":", 1)[1])
    total = a.records * a.requests * a.connections
    for name, ct, body in kinds:
        run(a.addr, ct, body, max(1, a.requests // 10), a.connections)  # warm-up
        cpu0 = server_cpu_s(port)
        secs = run(a.addr, ct, body, a.requests, a.connections)
        cpu1 = server_cpu_s(port)
        cpu = f"{(cpu1 - cpu0) / total * 1e6:.2f} us server CPU/record" if cpu0 is not None else "server CPU n/a"
        print(
            f"{name:14} body {len(body):7} B ({len(body) / a.records:5.0f} B/record)  "
            f"{total / secs:9.0f} records/s  {a.requests * a.connections / secs:6.0f} requests/s  {cpu}"
        )


if __name__ == "__main__":
    main()
