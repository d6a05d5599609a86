"""Sends logs to ringstash with the real OpenTelemetry Python SDK (tests/otlp.rs).

usage: otlp_send.py ENDPOINT SERVICE COUNT [gzip]

Configures a LoggerProvider whose resource carries service.name = SERVICE, a
BatchLogRecordProcessor and an OTLPLogExporter (OTLP/HTTP, protobuf) posting to
ENDPOINT, then emits COUNT logs through the standard `logging` module, cycling over
DEBUG, INFO, WARNING, ERROR, CRITICAL, each with the attributes `order_id` (an int) and
`user` (a string), all inside one span. Prints one JSON line, {"trace_id": "<hex>"},
and exits 0 only if every export succeeded.
"""

import json
import logging
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

LEVELS = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]


class Checked(LogRecordExporter):
    """Wraps the exporter to remember whether any export failed (the SDK only logs it)."""

    def __init__(self, inner):
        self.inner = inner
        self.failures = 0

    def export(self, batch):
        result = self.inner.export(batch)
        if result.name != "SUCCESS":
            self.failures += 1
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def main():
    endpoint, service, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    gzip = len(sys.argv) > 4 and sys.argv[4] == "gzip"
    resource = Resource.create({"service.name": service, "host.name": "test-host"})
    exporter = Checked(
        OTLPLogExporter(
            endpoint=endpoint,
            compression=Compression.Gzip if gzip else Compression.NoCompression,
            timeout=10,
        )
    )
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, max_export_batch_size=64, schedule_delay_millis=50)
    )
    log = logging.getLogger("shop.orders")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))

    tracer = TracerProvider(resource=resource).get_tracer("shop.orders")
    with tracer.start_as_current_span("checkout") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        for i in range(count):
            level = LEVELS[i % len(LEVELS)]
            log.log(level, "order %d %s", i, logging.getLevelName(level),
                    extra={"order_id": i, "user": f"u{i}"})
    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"trace_id": trace_id}))
    sys.exit(1 if exporter.failures else 0)


if __name__ == "__main__":
    main()
